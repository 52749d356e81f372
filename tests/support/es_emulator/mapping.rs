//! Mappings: merging templates, checking a document against a mapping (strict / false / true
//! dynamic, field types), dynamic mapping updates, and date parsing.
//!
//! Error texts follow Elasticsearch 8.x (`document_parsing_exception`,
//! `strict_dynamic_mapping_exception`, each with the `[line:column]` prefix). The column is found
//! by looking for the key in the source text, which is close to, not always exactly, Jackson's.

use serde_json::{Map, Value};

use super::json::{cause, J};

/// Metadata fields that may not appear inside a document.
const METADATA_FIELDS: &[&str] = &[
    "_id",
    "_index",
    "_source",
    "_routing",
    "_seq_no",
    "_primary_term",
    "_version",
    "_ignored",
    "_tier",
    "_field_names",
    "_data_stream_timestamp",
    "_nested_path",
    "_ignored_source",
];

/// Default `format` of `date` and `date_nanos` fields.
pub const DEFAULT_DATE_FORMAT: &str = "strict_date_optional_time||epoch_millis";

/// Expands dotted property names (`"event.id": {…}` → `"event": {"properties": {"id": …}}`),
/// recursively, as Elasticsearch does when it reads a mapping.
pub fn normalize(mapping: &Value) -> Value {
    let Value::Object(obj) = mapping else {
        return mapping.clone();
    };
    let mut out = Map::new();
    for (k, v) in obj {
        if k == "properties" {
            if let Value::Object(props) = v {
                let mut new_props = Value::Object(Map::new());
                for (name, field) in props {
                    let parts: Vec<&str> = name.split('.').collect();
                    let mut nested = normalize(field);
                    for part in parts[1..].iter().rev() {
                        let mut p = Map::new();
                        p.insert((*part).to_owned(), nested);
                        let mut o = Map::new();
                        o.insert("properties".to_owned(), Value::Object(p));
                        nested = Value::Object(o);
                    }
                    let mut wrapper = Map::new();
                    wrapper.insert(parts[0].to_owned(), nested);
                    merge_into(&mut new_props, &Value::Object(wrapper));
                }
                out.insert(k.clone(), new_props);
                continue;
            }
        }
        out.insert(k.clone(), v.clone());
    }
    Value::Object(out)
}

/// Deep merge of `overlay` into `base` (objects merge key by key, anything else is replaced),
/// which is how component templates and the index template's own mappings combine.
pub fn merge_into(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        merge_into(existing, v)
                    }
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dynamic {
    True,
    False,
    Strict,
    Runtime,
}

fn dynamic_of(node: &Value, inherited: Dynamic) -> Dynamic {
    match node.get("dynamic") {
        Some(Value::Bool(true)) => Dynamic::True,
        Some(Value::Bool(false)) => Dynamic::False,
        Some(Value::String(s)) => match s.as_str() {
            "true" => Dynamic::True,
            "false" => Dynamic::False,
            "strict" => Dynamic::Strict,
            "runtime" => Dynamic::Runtime,
            _ => inherited,
        },
        _ => inherited,
    }
}

fn is_object_mapping(field: &Value) -> bool {
    field.get("properties").is_some()
        || matches!(
            field.get("type").and_then(Value::as_str),
            None | Some("object") | Some("nested")
        )
}

fn enabled(field: &Value) -> bool {
    !matches!(field.get("enabled"), Some(Value::Bool(false)))
}

/// A mapping change the document needs (dynamic mapping), applied once the document is accepted.
pub type Addition = (Vec<String>, Value);

/// Checks `source` against `mappings`; returns the dynamic additions it needs, or the error
/// cause of the rejected item.
pub fn check_document(
    mappings: &Value,
    source: &Map<String, Value>,
    raw: &str,
    id: &str,
) -> Result<Vec<Addition>, J> {
    let date_detection = !matches!(mappings.get("date_detection"), Some(Value::Bool(false)));
    let mut walker = Walker {
        raw,
        id,
        date_detection,
        additions: Vec::new(),
        src_path: Vec::new(),
    };
    let root_dynamic = dynamic_of(mappings, Dynamic::True);
    walker.walk_object(source, mappings, &mut Vec::new(), root_dynamic)?;
    Ok(walker.additions)
}

/// Applies dynamic mapping additions to an index's mappings.
pub fn apply_additions(mappings: &mut Value, additions: Vec<Addition>) {
    for (path, field) in additions {
        let mut node = &mut *mappings;
        for (i, part) in path.iter().enumerate() {
            if !node.is_object() {
                break;
            }
            let props = node
                .as_object_mut()
                .expect("checked object")
                .entry("properties")
                .or_insert_with(|| Value::Object(Map::new()));
            if !props.is_object() {
                *props = Value::Object(Map::new());
            }
            let props = props.as_object_mut().expect("checked object");
            if i + 1 == path.len() {
                match props.get_mut(part.as_str()) {
                    Some(existing) => merge_into(existing, &field),
                    None => {
                        props.insert(part.clone(), field.clone());
                    }
                }
                break;
            }
            node = props
                .entry(part.clone())
                .or_insert_with(|| serde_json::json!({"properties": {}}));
        }
    }
}

/// Column (1-based) of the value reached through `keys` in `raw`, approximating Jackson's
/// token location that Elasticsearch prints as `[1:N]`.
fn locate(raw: &str, keys: &[&str]) -> usize {
    let bytes = raw.as_bytes();
    let mut pos = 0;
    for key in keys {
        let needle = serde_json::to_string(key).unwrap_or_default();
        let Some(i) = raw.get(pos..).and_then(|rest| rest.find(&needle)) else {
            break;
        };
        let mut p = pos + i + needle.len();
        while p < bytes.len() && bytes[p].is_ascii_whitespace() {
            p += 1;
        }
        if p < bytes.len() && bytes[p] == b':' {
            p += 1;
        }
        while p < bytes.len() && bytes[p].is_ascii_whitespace() {
            p += 1;
        }
        pos = p;
    }
    raw.get(..pos).map_or(pos, |s| s.chars().count()) + 1
}

/// Column just after the document (where Elasticsearch reports a missing `@timestamp`).
pub fn end_column(raw: &str) -> usize {
    raw.trim_end().chars().count()
}

/// Java-style `toString` preview of a value, as in "Preview of field's value: '…'".
fn preview(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => {
            let inner: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", preview(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
        Value::Array(a) => {
            let inner: Vec<String> = a.iter().map(preview).collect();
            format!("[{}]", inner.join(", "))
        }
        other => other.to_string(),
    }
}

fn token_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "VALUE_NULL",
        Value::Bool(true) => "VALUE_TRUE",
        Value::Bool(false) => "VALUE_FALSE",
        Value::Number(n) if n.is_f64() => "VALUE_NUMBER_FLOAT",
        Value::Number(_) => "VALUE_NUMBER_INT",
        Value::String(_) => "VALUE_STRING",
        Value::Array(_) => "START_ARRAY",
        Value::Object(_) => "START_OBJECT",
    }
}

struct Walker<'a> {
    raw: &'a str,
    id: &'a str,
    date_detection: bool,
    additions: Vec<Addition>,
    /// Source keys leading to the current value (for the `[1:N]` column).
    src_path: Vec<&'a str>,
}

/// `path.name` as an owned path (only built for errors and dynamic additions).
fn full_path(path: &[&str], name: &str) -> Vec<String> {
    path.iter()
        .map(|p| (*p).to_owned())
        .chain(std::iter::once(name.to_owned()))
        .collect()
}

impl<'a> Walker<'a> {
    fn col(&self) -> usize {
        locate(self.raw, &self.src_path)
    }

    /// `path` holds the object path of `node` (empty at the root); it is restored on return.
    fn walk_object(
        &mut self,
        obj: &'a Map<String, Value>,
        node: &Value,
        path: &mut Vec<&'a str>,
        dynamic: Dynamic,
    ) -> Result<(), J> {
        for (key, value) in obj {
            self.src_path.push(key.as_str());
            if path.is_empty() && METADATA_FIELDS.contains(&key.as_str()) {
                return Err(cause(
                    "document_parsing_exception",
                    format!(
                        "[1:{}] Field [{key}] is a metadata field and cannot be added inside a document. Use the index API request parameters.",
                        self.col()
                    ),
                ));
            }
            let result = if key.contains('.') {
                let parts: Vec<&'a str> = key.split('.').collect();
                self.walk_field(&parts, value, node, path, dynamic)
            } else {
                self.walk_field(&[key.as_str()], value, node, path, dynamic)
            };
            result?;
            self.src_path.pop();
        }
        Ok(())
    }

    fn walk_field(
        &mut self,
        parts: &[&'a str],
        value: &'a Value,
        node: &Value,
        path: &mut Vec<&'a str>,
        dynamic: Dynamic,
    ) -> Result<(), J> {
        let name = parts[0];
        let child = node.get("properties").and_then(|p| p.get(name));
        if parts.len() > 1 {
            // A dotted key: `name` is an intermediate object.
            return match child {
                Some(c) if is_object_mapping(c) => {
                    if !enabled(c) {
                        return Ok(());
                    }
                    let d = dynamic_of(c, dynamic);
                    path.push(name);
                    let result = self.walk_field(&parts[1..], value, c, path, d);
                    path.pop();
                    result
                }
                Some(c) => {
                    let full = full_path(path, name).join(".");
                    Err(cause(
                        "document_parsing_exception",
                        format!(
                            "[1:{}] Could not dynamically add mapping for field [{full}.{}]. Existing mapping for [{full}] must be of type object but found [{}].",
                            self.col(),
                            parts[1..].join("."),
                            c.get("type").and_then(Value::as_str).unwrap_or("object")
                        ),
                    ))
                }
                None => match dynamic {
                    Dynamic::Strict => Err(self.strict(name, path)),
                    Dynamic::False => Ok(()),
                    Dynamic::True | Dynamic::Runtime => {
                        let mut nested = value.clone();
                        for part in parts[1..].iter().rev() {
                            let mut m = Map::new();
                            m.insert((*part).to_owned(), nested);
                            nested = Value::Object(m);
                        }
                        if let Some(m) = self.infer(&nested) {
                            self.additions.push((full_path(path, name), m));
                        }
                        Ok(())
                    }
                },
            };
        }
        if value.is_null() {
            return Ok(());
        }
        match child {
            None => match dynamic {
                Dynamic::Strict => {
                    if matches!(value, Value::Array(a) if a.iter().all(Value::is_null)) {
                        return Ok(());
                    }
                    Err(self.strict(name, path))
                }
                Dynamic::False => Ok(()),
                Dynamic::True | Dynamic::Runtime => {
                    if let Some(m) = self.infer(value) {
                        self.additions.push((full_path(path, name), m));
                    }
                    Ok(())
                }
            },
            Some(c) if is_object_mapping(c) => {
                if !enabled(c) {
                    return Ok(());
                }
                let d = dynamic_of(c, dynamic);
                path.push(name);
                let result = self.walk_values(value, c, path, d);
                path.pop();
                result
            }
            Some(c) => match value {
                Value::Array(_) => {
                    for element in flatten(value) {
                        self.check_concrete(c, element, path, name)?;
                    }
                    Ok(())
                }
                single => self.check_concrete(c, single, path, name),
            },
        }
    }

    /// The value(s) of an object field; `path` ends with the field's name.
    fn walk_values(
        &mut self,
        value: &'a Value,
        node: &Value,
        path: &mut Vec<&'a str>,
        dynamic: Dynamic,
    ) -> Result<(), J> {
        match value {
            Value::Object(o) => self.walk_object(o, node, path, dynamic),
            Value::Null => Ok(()),
            Value::Array(items) => {
                for item in items {
                    self.walk_values(item, node, path, dynamic)?;
                }
                Ok(())
            }
            _ => Err(cause(
                "document_parsing_exception",
                format!(
                    "[1:{}] object mapping for [{}] tried to parse field [{}] as object, but found a concrete value",
                    self.col(),
                    path.join("."),
                    path.last().copied().unwrap_or_default()
                ),
            )),
        }
    }

    fn strict(&self, name: &str, path: &[&str]) -> J {
        let parent = if path.is_empty() {
            "_doc".to_owned()
        } else {
            path.join(".")
        };
        cause(
            "strict_dynamic_mapping_exception",
            format!(
                "[1:{}] mapping set to strict, dynamic introduction of [{name}] within [{parent}] is not allowed",
                self.col()
            ),
        )
    }

    /// Checks one (non-array) value of a concrete field.
    fn check_concrete(
        &self,
        field: &Value,
        value: &Value,
        path: &[&str],
        name: &str,
    ) -> Result<(), J> {
        if value.is_null() || matches!(field.get("ignore_malformed"), Some(Value::Bool(true))) {
            return Ok(());
        }
        let ty = field
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("object");
        self.check_scalar(field, ty, value).map_err(|caused_by| {
            cause(
                "document_parsing_exception",
                format!(
                    "[1:{}] failed to parse field [{}] of type [{ty}] in document with id '{}'. Preview of field's value: '{}'",
                    self.col(),
                    full_path(path, name).join("."),
                    self.id,
                    preview(value)
                ),
            )
            .set("caused_by", caused_by)
        })
    }

    fn check_scalar(&self, field: &Value, ty: &str, v: &Value) -> Result<(), J> {
        let not_numeric = || {
            cause(
                "x_content_parse_exception",
                format!(
                    "[1:{}] Current token ({}) not numeric, can not use numeric value accessors",
                    self.col(),
                    token_name(v)
                ),
            )
        };
        match ty {
            "long" | "integer" | "short" | "byte" | "unsigned_long" => {
                let number = match v {
                    Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
                    Value::String(s) => s.parse::<f64>().map_err(|_| {
                        cause(
                            "illegal_argument_exception",
                            format!("For input string: \"{s}\""),
                        )
                    })?,
                    _ => return Err(not_numeric()),
                };
                let (min, max, article) = match ty {
                    "integer" => (i32::MIN as f64, i32::MAX as f64, "an integer"),
                    "short" => (i16::MIN as f64, i16::MAX as f64, "a short"),
                    "byte" => (i8::MIN as f64, i8::MAX as f64, "a byte"),
                    "unsigned_long" => (0.0, u64::MAX as f64, "an unsigned long"),
                    _ => (i64::MIN as f64, i64::MAX as f64, "a long"),
                };
                let exact_u64_overflow = ty == "long"
                    && matches!(v, Value::Number(n) if n.is_u64() && n.as_i64().is_none());
                if !number.is_finite()
                    || number.trunc() < min
                    || number.trunc() > max
                    || exact_u64_overflow
                {
                    return Err(cause(
                        "illegal_argument_exception",
                        format!("Value [{}] is out of range for {article}", preview(v)),
                    ));
                }
                Ok(())
            }
            "float" | "double" | "half_float" | "scaled_float" => match v {
                Value::Number(_) => Ok(()),
                Value::String(s) => s.trim().parse::<f64>().map(|_| ()).map_err(|_| {
                    cause(
                        "illegal_argument_exception",
                        format!("For input string: \"{s}\""),
                    )
                }),
                _ => Err(not_numeric()),
            },
            "date" | "date_nanos" => {
                let format = field
                    .get("format")
                    .and_then(Value::as_str)
                    .unwrap_or(DEFAULT_DATE_FORMAT);
                let ok = match v {
                    Value::String(s) => parse_date(s, format).is_some(),
                    Value::Number(n) => {
                        format.contains("epoch_millis") || format.contains("epoch_second") || {
                            parse_date(&n.to_string(), format).is_some()
                        }
                    }
                    _ => false,
                };
                if ok {
                    return Ok(());
                }
                let inner = if format.contains("||") {
                    "Failed to parse with all enclosed parsers".to_owned()
                } else {
                    format!("Text '{}' could not be parsed at index 0", preview(v))
                };
                Err(cause(
                    "illegal_argument_exception",
                    format!(
                        "failed to parse date field [{}] with format [{format}]",
                        preview(v)
                    ),
                )
                .set("caused_by", cause("date_time_parse_exception", inner)))
            }
            "boolean" => match v {
                Value::Bool(_) => Ok(()),
                Value::String(s) if s == "true" || s == "false" || s.is_empty() => Ok(()),
                other => Err(cause(
                    "illegal_argument_exception",
                    format!(
                        "Failed to parse value [{}] as only [true] or [false] are allowed.",
                        preview(other)
                    ),
                )),
            },
            "ip" => match v {
                Value::String(s) if s.parse::<std::net::IpAddr>().is_ok() => Ok(()),
                other => Err(cause(
                    "illegal_argument_exception",
                    format!("'{}' is not an IP string literal.", preview(other)),
                )),
            },
            "keyword" | "text" | "match_only_text" | "wildcard" | "constant_keyword"
            | "version" | "search_as_you_type" => match v {
                Value::Object(_) => Err(cause(
                    "illegal_state_exception",
                    format!("Can't get text on a START_OBJECT at 1:{}", self.col()),
                )),
                _ => Ok(()),
            },
            // geo_point, flattened, dense_vector, range types, …: accepted as they come.
            _ => Ok(()),
        }
    }

    /// The mapping dynamic mapping gives a new value (`None` for nulls and empty arrays).
    fn infer(&self, v: &Value) -> Option<Value> {
        match v {
            Value::Null => None,
            Value::Bool(_) => Some(serde_json::json!({"type": "boolean"})),
            Value::Number(n) if n.is_f64() => Some(serde_json::json!({"type": "float"})),
            Value::Number(_) => Some(serde_json::json!({"type": "long"})),
            Value::String(s) => {
                if self.date_detection && parse_date(s, "strict_date_optional_time").is_some() {
                    Some(serde_json::json!({"type": "date"}))
                } else {
                    Some(serde_json::json!({
                        "type": "text",
                        "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}
                    }))
                }
            }
            Value::Array(items) => {
                let mut merged: Option<Value> = None;
                for item in items {
                    if let Some(m) = self.infer(item) {
                        match merged.as_mut() {
                            Some(existing) if existing.get("properties").is_some() => {
                                merge_into(existing, &m)
                            }
                            Some(_) => {}
                            None => merged = Some(m),
                        }
                    }
                }
                merged
            }
            Value::Object(obj) => {
                let mut props = Value::Object(Map::new());
                for (k, v) in obj {
                    let parts: Vec<&str> = k.split('.').collect();
                    let mut nested = v.clone();
                    for part in parts[1..].iter().rev() {
                        let mut m = Map::new();
                        m.insert((*part).to_owned(), nested);
                        nested = Value::Object(m);
                    }
                    if let Some(m) = self.infer(&nested) {
                        let mut wrapper = Map::new();
                        wrapper.insert(parts[0].to_owned(), m);
                        merge_into(&mut props, &Value::Object(wrapper));
                    }
                }
                Some(serde_json::json!({ "properties": props }))
            }
        }
    }
}

/// Array elements (nested arrays flattened), or the value itself.
fn flatten(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items.iter().flat_map(flatten).collect(),
        other => vec![other],
    }
}

/// Finds the mapping of a field by its dotted path (multi-fields such as `message.keyword`
/// included); returns the field mapping and the source path holding its values.
pub fn lookup<'a>(mappings: &'a Value, path: &str) -> Option<(&'a Value, String)> {
    let parts: Vec<&str> = path.split('.').collect();
    let mut node = mappings;
    for (i, part) in parts.iter().enumerate() {
        if !is_object_mapping(node) || node.get("properties").is_none() {
            // A concrete field: the rest names one of its multi-fields.
            let sub = node.get("fields")?.get(parts[i..].join("."))?;
            return Some((sub, parts[..i].join(".")));
        }
        node = node.get("properties")?.get(*part)?;
    }
    Some((node, path.to_owned()))
}

/// Values found at a dotted path in a source, whether nested (`{"a":{"b":1}}`) or dotted
/// (`{"a.b":1}`); arrays are flattened.
pub fn values_at<'a>(source: &'a Value, path: &str) -> Vec<&'a Value> {
    let parts: Vec<&str> = path.split('.').collect();
    let mut out = Vec::new();
    collect_values(source, &parts, &mut out);
    out
}

fn collect_values<'a>(v: &'a Value, parts: &[&str], out: &mut Vec<&'a Value>) {
    if parts.is_empty() {
        for element in flatten(v) {
            if !element.is_null() {
                out.push(element);
            }
        }
        return;
    }
    match v {
        Value::Object(obj) => {
            for n in 1..=parts.len() {
                if let Some(child) = obj.get(&parts[..n].join(".")) {
                    collect_values(child, &parts[n..], out);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_values(item, parts, out);
            }
        }
        _ => {}
    }
}

/// Parses a date with an Elasticsearch `format` (`a||b||…`); returns epoch milliseconds.
///
/// Built-in names handled: `strict_date_optional_time`, `date_optional_time`, their `_nanos`
/// variants, `strict_date_time`, `date_time`, `strict_date`, `date`, `epoch_millis`,
/// `epoch_second`. Java-time patterns with `yyyy MM dd HH mm ss S… X Z` and quoted literals are
/// interpreted; other pattern letters make the format accept any text.
pub fn parse_date(text: &str, format: &str) -> Option<i64> {
    format
        .split("||")
        .map(str::trim)
        .find_map(|f| parse_one_format(text, f))
}

fn parse_one_format(text: &str, format: &str) -> Option<i64> {
    match format {
        "strict_date_optional_time" | "strict_date_optional_time_nanos" => iso(text, true, false),
        "date_optional_time" | "date_optional_time_nanos" => iso(text, false, false),
        "strict_date_time" | "date_time" => {
            iso(text, format.starts_with("strict"), true).filter(|_| text.contains('T'))
        }
        "strict_date" | "date" | "strict_year_month_day" | "year_month_day" => {
            iso(text, format.starts_with("strict"), false).filter(|_| !text.contains('T'))
        }
        "epoch_millis" => epoch(text, 1.0),
        "epoch_second" => epoch(text, 1000.0),
        pattern => java_pattern(text, pattern),
    }
}

fn epoch(text: &str, factor: f64) -> Option<i64> {
    let n: f64 = text.trim().parse().ok()?;
    n.is_finite().then_some((n * factor) as i64)
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, min: usize, max: usize) -> Option<i64> {
        let start = self.i;
        while self.i < self.b.len() && self.i - start < max && self.b[self.i].is_ascii_digit() {
            self.i += 1;
        }
        if self.i - start < min {
            self.i = start;
            return None;
        }
        std::str::from_utf8(&self.b[start..self.i])
            .ok()?
            .parse()
            .ok()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn done(&self) -> bool {
        self.i == self.b.len()
    }

    /// `Z`, `+HH`, `+HHmm`, `+HH:mm`; returns the offset in minutes.
    fn zone(&mut self) -> Option<i64> {
        if self.eat(b'Z') || self.eat(b'z') {
            return Some(0);
        }
        let sign = if self.eat(b'+') {
            1
        } else if self.eat(b'-') {
            -1
        } else {
            return None;
        };
        let h = self.digits(2, 2)?;
        self.eat(b':');
        let m = self.digits(2, 2).unwrap_or(0);
        (h < 24 && m < 60).then_some(sign * (h * 60 + m))
    }
}

/// Epoch milliseconds of `[year, month, day]`, `[hour, minute, second, nanos]` at an offset.
fn millis([y, mo, d]: [i64; 3], [h, mi, s, nanos]: [i64; 4], off_min: i64) -> Option<i64> {
    let date = chrono::NaiveDate::from_ymd_opt(
        i32::try_from(y).ok()?,
        u32::try_from(mo).ok()?,
        u32::try_from(d).ok()?,
    )?;
    let time = chrono::NaiveTime::from_hms_nano_opt(
        u32::try_from(h).ok()?,
        u32::try_from(mi).ok()?,
        u32::try_from(s).ok()?,
        u32::try_from(nanos).ok()?,
    )?;
    let utc = chrono::NaiveDateTime::new(date, time).and_utc();
    Some(utc.timestamp_millis() - off_min * 60_000)
}

/// `yyyy[-MM[-dd[THH[:mm[:ss[.S…]]][zone]]]]`; strict means fixed-width fields.
fn iso(text: &str, strict: bool, need_time: bool) -> Option<i64> {
    let mut c = Cursor {
        b: text.as_bytes(),
        i: 0,
    };
    let w = |n: usize| if strict { n } else { 1 };
    let year = c.digits(4, if strict { 4 } else { 9 })?;
    let (mut month, mut day) = (1, 1);
    let (mut hour, mut minute, mut second, mut nanos, mut offset) = (0, 0, 0, 0, 0);
    let mut has_time = false;
    if c.eat(b'-') {
        month = c.digits(w(2), 2)?;
        if c.eat(b'-') {
            day = c.digits(w(2), 2)?;
            if c.eat(b'T') {
                has_time = true;
                hour = c.digits(w(2), 2)?;
                if c.eat(b':') {
                    minute = c.digits(w(2), 2)?;
                    if c.eat(b':') {
                        second = c.digits(w(2), 2)?;
                        if c.eat(b'.') || c.eat(b',') {
                            let start = c.i;
                            let frac = c.digits(1, 9)?;
                            let len = c.i - start;
                            nanos = frac * 10_i64.pow(9 - len as u32);
                        }
                    }
                }
                if !c.done() {
                    offset = c.zone()?;
                }
            }
        }
    }
    if !c.done() || (need_time && !has_time) {
        return None;
    }
    millis([year, month, day], [hour, minute, second, nanos], offset)
}

/// A subset of Java-time patterns (`yyyy/MM/dd HH:mm:ss`, `dd.MM.yyyy`, …).
fn java_pattern(text: &str, pattern: &str) -> Option<i64> {
    let mut c = Cursor {
        b: text.as_bytes(),
        i: 0,
    };
    let p: Vec<char> = pattern.chars().collect();
    let (mut y, mut mo, mut d, mut h, mut mi, mut s, mut nanos, mut off) =
        (1970, 1, 1, 0, 0, 0, 0, 0);
    let mut i = 0;
    while i < p.len() {
        let ch = p[i];
        let mut run = 1;
        while i + run < p.len() && p[i + run] == ch {
            run += 1;
        }
        match ch {
            '\'' => {
                // Quoted literal ('T').
                let end = p[i + 1..].iter().position(|&x| x == '\'')? + i + 1;
                for lit in p[i + 1..end].iter() {
                    if !c.eat(*lit as u8) {
                        return None;
                    }
                }
                i = end + 1;
                continue;
            }
            'y' | 'u' => {
                y = c.digits(
                    if run == 2 { 2 } else { 4.min(run.max(1)) },
                    if run == 2 { 2 } else { 9 },
                )?
            }
            'M' => mo = c.digits(run.min(2), 2)?,
            'd' => d = c.digits(run.min(2), 2)?,
            'H' => h = c.digits(run.min(2), 2)?,
            'm' => mi = c.digits(run.min(2), 2)?,
            's' => s = c.digits(run.min(2), 2)?,
            'S' => {
                let start = c.i;
                let frac = c.digits(1, 9)?;
                nanos = frac * 10_i64.pow(9 - (c.i - start) as u32);
            }
            'X' | 'Z' | 'x' => off = c.zone()?,
            other if other.is_ascii_alphabetic() => return Some(0),
            other => {
                for _ in 0..run {
                    if !c.eat(other as u8) {
                        return None;
                    }
                }
            }
        }
        i += run;
    }
    if !c.done() {
        return None;
    }
    if p.iter().filter(|&&ch| ch == 'y' || ch == 'u').count() == 2 {
        y += 2000;
    }
    millis([y, mo, d], [h, mi, s, nanos], off)
}
