//! `_search` and `_count`: a small, mapping-aware subset of the query DSL (`match_all`,
//! `match_none`, `term`, `terms`, `ids`, `exists`, `range`, `prefix`, `match`, `bool`), `size`,
//! `from`, `sort` and `track_total_hits`. Every write is visible at once (as if refreshed).

use std::cmp::Ordering;

use serde_json::Value;

use super::json::{cause, J};
use super::mapping::{self, DEFAULT_DATE_FORMAT};
use super::store::{Doc, Index};

/// A parsed query.
pub enum Query {
    MatchAll,
    MatchNone,
    Term(String, Value),
    Terms(String, Vec<Value>),
    Ids(Vec<String>),
    Exists(String),
    Range(String, Vec<(String, Value)>),
    Prefix(String, String),
    Match(String, String),
    Bool {
        must: Vec<Query>,
        should: Vec<Query>,
        must_not: Vec<Query>,
        minimum_should_match: usize,
    },
}

fn parsing(reason: String) -> J {
    cause("parsing_exception", reason)
        .set("line", 1u64)
        .set("col", 1u64)
}

/// `{"field": value}` or `{"field": {"<inner>": value, …}}`.
fn field_and_value<'a>(kind: &str, body: &'a Value, inner: &str) -> Result<(String, &'a Value), J> {
    let obj = body.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
        parsing(format!(
            "[{kind}] query malformed, no start_object after query name"
        ))
    })?;
    let (field, v) = obj.iter().next().expect("one field");
    match v {
        Value::Object(o) => o
            .get(inner)
            .map(|x| (field.clone(), x))
            .ok_or_else(|| parsing(format!("[{kind}] query does not support [{inner}] missing"))),
        other => Ok((field.clone(), other)),
    }
}

pub fn parse_query(q: &Value) -> Result<Query, J> {
    let obj = q
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(|| parsing("query malformed, must start with start_object".into()))?;
    let (kind, body) = obj.iter().next().expect("one key");
    let list = |v: Option<&Value>| -> Result<Vec<Query>, J> {
        match v {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items.iter().map(parse_query).collect(),
            Some(single) => Ok(vec![parse_query(single)?]),
        }
    };
    Ok(match kind.as_str() {
        "match_all" => Query::MatchAll,
        "match_none" => Query::MatchNone,
        "term" => {
            let (f, v) = field_and_value(kind, body, "value")?;
            Query::Term(f, v.clone())
        }
        "terms" => {
            let obj = body
                .as_object()
                .ok_or_else(|| parsing("[terms] query malformed".into()))?;
            let (f, v) = obj
                .iter()
                .find(|(k, _)| k.as_str() != "boost")
                .ok_or_else(|| parsing("[terms] query malformed".into()))?;
            let values = v.as_array().ok_or_else(|| {
                parsing("[terms] query does not support lookups in the emulator".into())
            })?;
            Query::Terms(f.clone(), values.clone())
        }
        "ids" => Query::Ids(
            body.get("values")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        "exists" => Query::Exists(
            body.get("field")
                .and_then(Value::as_str)
                .ok_or_else(|| parsing("[exists] must be provided with a [field]".into()))?
                .to_owned(),
        ),
        "range" => {
            let obj = body
                .as_object()
                .filter(|o| o.len() == 1)
                .ok_or_else(|| parsing("[range] query malformed".into()))?;
            let (f, bounds) = obj.iter().next().expect("one field");
            let bounds = bounds
                .as_object()
                .ok_or_else(|| parsing("[range] query malformed".into()))?
                .iter()
                .filter(|(k, _)| matches!(k.as_str(), "gt" | "gte" | "lt" | "lte"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Query::Range(f.clone(), bounds)
        }
        "prefix" => {
            let (f, v) = field_and_value(kind, body, "value")?;
            Query::Prefix(f, v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        }
        "match" | "match_phrase" => {
            let (f, v) = field_and_value(kind, body, "query")?;
            Query::Match(f, v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        }
        "bool" => {
            let mut must = list(body.get("must"))?;
            must.extend(list(body.get("filter"))?);
            let should = list(body.get("should"))?;
            let default_msm = usize::from(must.is_empty() && !should.is_empty());
            Query::Bool {
                must,
                should,
                must_not: list(body.get("must_not"))?,
                minimum_should_match: body
                    .get("minimum_should_match")
                    .and_then(Value::as_u64)
                    .map_or(default_msm, |n| n as usize),
            }
        }
        other => return Err(parsing(format!("unknown query [{other}]"))),
    })
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_millis(v: &Value, format: &str) -> Option<i64> {
    match v {
        Value::String(s) => mapping::parse_date(s, format),
        Value::Number(n) => n.as_f64().map(|f| f as i64),
        _ => None,
    }
}

/// A doc value, typed by the field mapping, for comparisons.
#[derive(Clone, Debug, PartialEq)]
pub enum Key {
    Num(f64),
    Text(String),
}

fn key_of(field: &Value, v: &Value) -> Option<Key> {
    let ty = field
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("keyword");
    match ty {
        "long" | "integer" | "short" | "byte" | "unsigned_long" | "float" | "double"
        | "half_float" | "scaled_float" => as_number(v).map(Key::Num),
        "date" | "date_nanos" => {
            let format = field
                .get("format")
                .and_then(Value::as_str)
                .unwrap_or(DEFAULT_DATE_FORMAT);
            as_millis(v, format).map(|m| Key::Num(m as f64))
        }
        "boolean" => match v {
            Value::Bool(b) => Some(Key::Text(b.to_string())),
            Value::String(s) if s.is_empty() => Some(Key::Text("false".into())),
            Value::String(s) => Some(Key::Text(s.clone())),
            _ => None,
        },
        _ => Some(Key::Text(as_text(v))),
    }
}

fn compare(a: &Key, b: &Key) -> Ordering {
    match (a, b) {
        (Key::Num(x), Key::Num(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        (Key::Text(x), Key::Text(y)) => x.cmp(y),
        (Key::Num(_), Key::Text(_)) => Ordering::Less,
        (Key::Text(_), Key::Num(_)) => Ordering::Greater,
    }
}

/// Indexed values of a field in a document (nothing for unmapped or non-indexed fields).
fn indexed<'a>(
    index: &'a Index,
    source: &'a Value,
    field: &str,
) -> Option<(&'a Value, Vec<&'a Value>)> {
    let (mapping, path) = mapping::lookup(&index.mappings, field)?;
    if mapping.get("properties").is_some()
        || matches!(mapping.get("index"), Some(Value::Bool(false)))
    {
        return None;
    }
    let ignore_above = mapping.get("ignore_above").and_then(Value::as_u64);
    let values = mapping::values_at(source, &path)
        .into_iter()
        .filter(|v| match (ignore_above, v) {
            (Some(limit), Value::String(s)) => (s.chars().count() as u64) <= limit,
            _ => true,
        })
        .collect();
    Some((mapping, values))
}

pub fn matches(q: &Query, index: &Index, doc: &Doc, source: &Value) -> bool {
    let meta = |field: &str| -> Option<String> {
        match field {
            "_id" => Some(doc.id.clone()),
            "_index" => Some(index.name.clone()),
            _ => None,
        }
    };
    let term_match = |field: &str, wanted: &Value| -> bool {
        if let Some(m) = meta(field) {
            return m == as_text(wanted);
        }
        let Some((mapping, values)) = indexed(index, source, field) else {
            return false;
        };
        let ty = mapping
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("keyword");
        if ty == "text" || ty == "match_only_text" {
            let wanted = as_text(wanted);
            return values.iter().any(|v| tokens(&as_text(v)).contains(&wanted));
        }
        let Some(want) = key_of(mapping, wanted) else {
            return false;
        };
        values
            .iter()
            .filter_map(|v| key_of(mapping, v))
            .any(|k| compare(&k, &want) == Ordering::Equal)
    };
    match q {
        Query::MatchAll => true,
        Query::MatchNone => false,
        Query::Term(f, v) => term_match(f, v),
        Query::Terms(f, vs) => vs.iter().any(|v| term_match(f, v)),
        Query::Ids(ids) => ids.contains(&doc.id),
        Query::Exists(f) => {
            meta(f).is_some() || indexed(index, source, f).is_some_and(|(_, v)| !v.is_empty())
        }
        Query::Prefix(f, p) => {
            if let Some(m) = meta(f) {
                return m.starts_with(p.as_str());
            }
            indexed(index, source, f)
                .is_some_and(|(_, vs)| vs.iter().any(|v| as_text(v).starts_with(p.as_str())))
        }
        Query::Match(f, text) => {
            if meta(f).is_some() {
                return term_match(f, &Value::String(text.clone()));
            }
            let Some((mapping, values)) = indexed(index, source, f) else {
                return false;
            };
            let ty = mapping
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("keyword");
            if ty == "text" || ty == "match_only_text" {
                let wanted = tokens(text);
                values
                    .iter()
                    .any(|v| tokens(&as_text(v)).iter().any(|t| wanted.contains(t)))
            } else {
                term_match(f, &Value::String(text.clone()))
            }
        }
        Query::Range(f, bounds) => {
            let Some((mapping, values)) = indexed(index, source, f) else {
                return false;
            };
            values.iter().filter_map(|v| key_of(mapping, v)).any(|k| {
                bounds.iter().all(|(op, b)| {
                    let Some(b) = key_of(mapping, b) else {
                        return false;
                    };
                    let o = compare(&k, &b);
                    match op.as_str() {
                        "gt" => o == Ordering::Greater,
                        "gte" => o != Ordering::Less,
                        "lt" => o == Ordering::Less,
                        _ => o != Ordering::Greater,
                    }
                })
            })
        }
        Query::Bool {
            must,
            should,
            must_not,
            minimum_should_match,
        } => {
            must.iter().all(|q| matches(q, index, doc, source))
                && !must_not.iter().any(|q| matches(q, index, doc, source))
                && should
                    .iter()
                    .filter(|q| matches(q, index, doc, source))
                    .count()
                    >= *minimum_should_match
        }
    }
}

/// One sort criterion.
pub struct SortKey {
    pub field: String,
    pub descending: bool,
}

pub fn parse_sort(v: &Value) -> Result<Vec<SortKey>, J> {
    let one = |v: &Value| -> Result<SortKey, J> {
        match v {
            Value::String(f) => Ok(SortKey {
                field: f.clone(),
                descending: f == "_score",
            }),
            Value::Object(o) if o.len() == 1 => {
                let (f, spec) = o.iter().next().expect("one key");
                let order = match spec {
                    Value::String(s) => s.clone(),
                    Value::Object(so) => so
                        .get("order")
                        .and_then(Value::as_str)
                        .unwrap_or("asc")
                        .to_owned(),
                    _ => "asc".to_owned(),
                };
                Ok(SortKey {
                    field: f.clone(),
                    descending: order == "desc",
                })
            }
            _ => Err(parsing("malformed sort".into())),
        }
    };
    match v {
        Value::Array(items) => items.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

/// The value a hit sorts by (and reports in `sort`).
pub fn sort_value(index: &Index, doc: &Doc, source: &Value, field: &str) -> Option<(Key, J)> {
    match field {
        "_id" => return Some((Key::Text(doc.id.clone()), J::from(doc.id.as_str()))),
        "_doc" | "_score" => return None,
        _ => {}
    }
    let (mapping, values) = indexed(index, source, field)?;
    let v = values.first()?;
    let key = key_of(mapping, v)?;
    let shown = match &key {
        Key::Num(n) if n.fract() == 0.0 => J::from(*n as i64),
        Key::Num(n) => J::from(*n),
        Key::Text(t) => J::from(t.as_str()),
    };
    Some((key, shown))
}

/// Orders two hits by their sort values (missing values last, whatever the direction).
pub fn order(a: &[Option<(Key, J)>], b: &[Option<(Key, J)>], keys: &[SortKey]) -> Ordering {
    for (i, key) in keys.iter().enumerate() {
        let o = match (&a[i], &b[i]) {
            (Some((x, _)), Some((y, _))) => {
                let o = compare(x, y);
                if key.descending {
                    o.reverse()
                } else {
                    o
                }
            }
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}
