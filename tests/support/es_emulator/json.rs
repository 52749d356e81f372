//! Ordered JSON for responses, and the `filter_path` response filter.
//!
//! Elasticsearch writes fields in a fixed order (`errors` before `took`, `_index` before `_id`);
//! serde_json's map is sorted (the `preserve_order` feature is off in this tree), so responses are
//! built with [`J`], whose objects are vectors of pairs.

use std::borrow::Cow;

use bytes::Bytes;
use serde_json::Value;

/// An object key: literal keys cost no allocation.
pub type Key = Cow<'static, str>;

/// An ordered JSON value.
#[derive(Clone, Debug)]
pub enum J {
    Null,
    Bool(bool),
    Num(serde_json::Number),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(Key, J)>),
    /// Already serialised JSON (a stored `_source`), written verbatim like Elasticsearch does.
    Raw(Bytes),
}

impl J {
    /// An empty object, to be filled with [`J::set`].
    pub fn obj() -> J {
        J::Obj(Vec::new())
    }

    /// Appends `key: value` to an object (builder style).
    pub fn set(mut self, key: impl Into<Key>, value: impl Into<J>) -> J {
        self.push(key, value);
        self
    }

    /// Appends `key: value` to an object.
    pub fn push(&mut self, key: impl Into<Key>, value: impl Into<J>) {
        if let J::Obj(fields) = self {
            fields.push((key.into(), value.into()));
        }
    }

    /// Appends `key: value` when the value is present.
    pub fn set_opt<T: Into<J>>(self, key: impl Into<Key>, value: Option<T>) -> J {
        match value {
            Some(v) => self.set(key, v),
            None => self,
        }
    }

    /// Looks a key up in an object.
    pub fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Compact serialisation, as Elasticsearch sends it without `?pretty`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            J::Null => out.extend_from_slice(b"null"),
            J::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            J::Num(n) => out.extend_from_slice(n.to_string().as_bytes()),
            J::Str(s) => write_str(out, s),
            J::Arr(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write(out);
                }
                out.push(b']');
            }
            J::Obj(fields) => {
                out.push(b'{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_str(out, k);
                    out.push(b':');
                    v.write(out);
                }
                out.push(b'}');
            }
            J::Raw(raw) => out.extend_from_slice(raw),
        }
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    // serde_json's string escaping cannot fail on a Vec.
    serde_json::to_writer(&mut *out, s).expect("string serialisation");
}

impl From<&str> for J {
    fn from(s: &str) -> J {
        J::Str(s.to_owned())
    }
}
impl From<String> for J {
    fn from(s: String) -> J {
        J::Str(s)
    }
}
impl From<&String> for J {
    fn from(s: &String) -> J {
        J::Str(s.clone())
    }
}
impl From<bool> for J {
    fn from(b: bool) -> J {
        J::Bool(b)
    }
}
impl From<u64> for J {
    fn from(n: u64) -> J {
        J::Num(n.into())
    }
}
impl From<i64> for J {
    fn from(n: i64) -> J {
        J::Num(n.into())
    }
}
impl From<u32> for J {
    fn from(n: u32) -> J {
        J::Num(n.into())
    }
}
impl From<u16> for J {
    fn from(n: u16) -> J {
        J::Num(n.into())
    }
}
impl From<usize> for J {
    fn from(n: usize) -> J {
        J::Num((n as u64).into())
    }
}
impl From<f64> for J {
    fn from(n: f64) -> J {
        serde_json::Number::from_f64(n).map_or(J::Null, J::Num)
    }
}
impl From<Vec<J>> for J {
    fn from(items: Vec<J>) -> J {
        J::Arr(items)
    }
}
impl<T: Into<J>> From<Option<T>> for J {
    fn from(v: Option<T>) -> J {
        v.map_or(J::Null, Into::into)
    }
}
impl From<&Value> for J {
    fn from(v: &Value) -> J {
        match v {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Number(n) => J::Num(n.clone()),
            Value::String(s) => J::Str(s.clone()),
            Value::Array(a) => J::Arr(a.iter().map(J::from).collect()),
            Value::Object(m) => J::Obj(
                m.iter()
                    .map(|(k, v)| (Key::Owned(k.clone()), J::from(v)))
                    .collect(),
            ),
        }
    }
}
impl From<Value> for J {
    fn from(v: Value) -> J {
        J::from(&v)
    }
}

/// Simple `*` wildcard match, like Elasticsearch's `Regex.simpleMatch`.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != b'*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// Applies a `filter_path` expression (comma separated; `*` matches one key, `**` any depth,
/// a leading `-` excludes). Arrays are transparent; emptied objects and arrays disappear, and an
/// empty result is `{}` — so with `items.*.error` the successful items vanish from `items`.
pub fn filter_path(value: J, spec: &str) -> J {
    let mut includes: Vec<Vec<String>> = Vec::new();
    let mut excludes: Vec<Vec<String>> = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.strip_prefix('-') {
            Some(ex) => excludes.push(ex.split('.').map(str::to_owned).collect()),
            None => includes.push(part.split('.').map(str::to_owned).collect()),
        }
    }
    let mut out = value;
    if !includes.is_empty() {
        let pats: Vec<&[String]> = includes.iter().map(Vec::as_slice).collect();
        out = include(out, &pats).unwrap_or_else(J::obj);
    }
    if !excludes.is_empty() {
        let pats: Vec<&[String]> = excludes.iter().map(Vec::as_slice).collect();
        out = exclude(out, &pats).unwrap_or_else(J::obj);
    }
    out
}

/// The patterns that remain after matching `key` against each pattern's first segment.
fn advance<'a>(pats: &[&'a [String]], key: &str) -> Vec<&'a [String]> {
    let mut next = Vec::new();
    for p in pats {
        let Some(first) = p.first() else { continue };
        if first == "**" {
            // `**` consumes this key and may consume more, or matches nothing at all.
            next.push(*p);
            next.extend(advance(&[&p[1..]], key));
        } else if glob(first, key) {
            next.push(&p[1..]);
        }
    }
    next
}

fn include(value: J, pats: &[&[String]]) -> Option<J> {
    if pats
        .iter()
        .any(|p| p.is_empty() || (p.len() == 1 && p[0] == "**"))
    {
        return Some(value);
    }
    match value {
        J::Obj(fields) => {
            let kept: Vec<(Key, J)> = fields
                .into_iter()
                .filter_map(|(k, v)| {
                    let sub = advance(pats, &k);
                    if sub.is_empty() {
                        return None;
                    }
                    include(v, &sub).map(|v| (k, v))
                })
                .collect();
            (!kept.is_empty()).then_some(J::Obj(kept))
        }
        J::Arr(items) => {
            let kept: Vec<J> = items.into_iter().filter_map(|i| include(i, pats)).collect();
            (!kept.is_empty()).then_some(J::Arr(kept))
        }
        J::Raw(raw) => {
            let parsed: Value = serde_json::from_slice(&raw).ok()?;
            include(J::from(parsed), pats)
        }
        _ => None,
    }
}

fn exclude(value: J, pats: &[&[String]]) -> Option<J> {
    if pats.iter().any(|p| p.is_empty()) {
        return None;
    }
    match value {
        J::Obj(fields) => Some(J::Obj(
            fields
                .into_iter()
                .filter_map(|(k, v)| {
                    let sub = advance(pats, &k);
                    if sub.is_empty() {
                        Some((k, v))
                    } else {
                        exclude(v, &sub).map(|v| (k, v))
                    }
                })
                .collect(),
        )),
        J::Arr(items) => Some(J::Arr(
            items.into_iter().filter_map(|i| exclude(i, pats)).collect(),
        )),
        J::Raw(raw) => match serde_json::from_slice::<Value>(&raw) {
            Ok(parsed) => exclude(J::from(parsed), pats),
            Err(_) => Some(J::Raw(raw)),
        },
        other => Some(other),
    }
}

/// An Elasticsearch `ErrorCause`: `type`, `reason`, extra keys, then `caused_by`.
pub fn cause(ty: &str, reason: impl Into<String>) -> J {
    J::obj().set("type", ty).set("reason", reason.into())
}

/// The whole-request error envelope: `{"error":{"root_cause":[…],"type":…,"reason":…},"status":N}`.
/// `root_cause` repeats the error's own fields without `caused_by` (the causes the emulator nests
/// are plain Java exceptions, which Elasticsearch does not report as root causes).
pub fn error_envelope(err: J, status: u16) -> J {
    let root_fields = match &err {
        J::Obj(fields) => fields
            .iter()
            .filter(|(k, _)| k != "caused_by")
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    let mut fields = vec![(
        Key::Borrowed("root_cause"),
        J::Arr(vec![J::Obj(root_fields)]),
    )];
    if let J::Obj(rest) = err {
        fields.extend(rest);
    }
    J::obj().set("error", J::Obj(fields)).set("status", status)
}
