//! Cluster state: indices and their documents, data streams, templates, ILM policies, and the
//! rules that turn a name into a write target or a list of indices to read.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use serde_json::{Map, Value};

use super::json::{cause, glob, J};
use super::mapping;
use super::{BulkStats, EmulatorOptions, Fault, RecordedRequest};

/// Replicas are configured (1) but never assigned on a single node, like a fresh cluster.
pub fn shards_header() -> J {
    J::obj()
        .set("total", 2u64)
        .set("successful", 1u64)
        .set("failed", 0u64)
}

/// One stored document. `source` is a slice of the request body that carried it (shared with the
/// recorded request), so 100 000 documents cost about their own size.
#[derive(Clone, Debug)]
pub struct Doc {
    pub id: String,
    pub source: Bytes,
    pub version: u64,
    pub seq_no: u64,
}

/// An index: a plain one or a data stream's backing index. One shard, primary term 1.
#[derive(Debug)]
pub struct Index {
    pub name: String,
    pub uuid: String,
    pub data_stream: Option<String>,
    pub mappings: Value,
    /// Flat settings (`index.lifecycle.name` …), values as strings like Elasticsearch keeps them.
    pub settings: Map<String, Value>,
    docs: Vec<Option<Doc>>,
    by_id: HashMap<String, usize>,
    live: usize,
    next_seq_no: u64,
    pub creation_date: i64,
}

impl Index {
    pub fn get(&self, id: &str) -> Option<&Doc> {
        self.by_id
            .get(id)
            .and_then(|&slot| self.docs[slot].as_ref())
    }

    /// Stores a document (new, or replacing one); returns (version, seq_no, created).
    pub fn put(&mut self, id: &str, source: Bytes) -> (u64, u64, bool) {
        let seq_no = self.next_seq_no;
        self.next_seq_no += 1;
        if let Some(&slot) = self.by_id.get(id) {
            let doc = self.docs[slot].as_mut().expect("live slot");
            doc.version += 1;
            doc.seq_no = seq_no;
            doc.source = source;
            return (doc.version, seq_no, false);
        }
        self.by_id.insert(id.to_owned(), self.docs.len());
        self.docs.push(Some(Doc {
            id: id.to_owned(),
            source,
            version: 1,
            seq_no,
        }));
        self.live += 1;
        (1, seq_no, true)
    }

    /// Deletes a document; returns (version, seq_no) when it existed.
    pub fn delete(&mut self, id: &str) -> Option<(u64, u64)> {
        let slot = self.by_id.remove(id)?;
        let doc = self.docs[slot].take()?;
        self.live -= 1;
        let seq_no = self.next_seq_no;
        self.next_seq_no += 1;
        Some((doc.version + 1, seq_no))
    }

    /// A sequence number for an operation that writes nothing (a `not_found` delete).
    pub fn bump_seq_no(&mut self) -> u64 {
        let seq_no = self.next_seq_no;
        self.next_seq_no += 1;
        seq_no
    }

    pub fn docs(&self) -> impl Iterator<Item = &Doc> {
        self.docs.iter().flatten()
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn hidden(&self) -> bool {
        self.name.starts_with('.')
            || self
                .settings
                .get("index.hidden")
                .is_some_and(|v| v == "true")
    }
}

#[derive(Debug)]
pub struct DataStream {
    pub name: String,
    pub template: String,
    /// Backing index names, oldest first; the last one is the write index.
    pub indices: Vec<String>,
    pub generation: u32,
    pub hidden: bool,
}

impl DataStream {
    pub fn write_index(&self) -> &str {
        self.indices
            .last()
            .expect("a data stream has a write index")
    }
}

#[derive(Debug, Clone)]
pub struct IlmPolicy {
    pub version: u64,
    pub modified_date: String,
    pub policy: Value,
}

/// A template resolved for one index name: merged mappings and settings.
pub struct Resolved {
    pub name: String,
    pub mappings: Value,
    pub settings: Map<String, Value>,
    pub data_stream: Option<Value>,
    pub allow_auto_create: Option<bool>,
}

/// Where a write goes.
pub enum WriteTarget {
    DataStream(String),
    Index(String),
}

pub struct State {
    pub options: EmulatorOptions,
    pub slow: Option<Duration>,
    pub bulk_faults: VecDeque<Fault>,
    pub any_faults: VecDeque<Fault>,
    pub max_request_bytes: Option<usize>,
    pub item_429: Option<(f64, StdRng)>,
    pub reject_field: Option<String>,
    pub ilm: BTreeMap<String, IlmPolicy>,
    pub component_templates: BTreeMap<String, Value>,
    pub index_templates: BTreeMap<String, Value>,
    pub data_streams: BTreeMap<String, DataStream>,
    pub indices: BTreeMap<String, Index>,
    pub requests: Vec<RecordedRequest>,
    pub bulk_stats: BulkStats,
    counter: u64,
}

/// splitmix64: cheap, deterministic, well spread — for ids and uuids.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64url(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(B64URL[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub fn now_iso() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Flattens settings to `index.*` dotted keys with string values.
pub fn flatten_settings(settings: &Value) -> Map<String, Value> {
    fn walk(v: &Value, prefix: &str, out: &mut Map<String, Value>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(v, &key, out);
                }
            }
            Value::String(s) => {
                out.insert(prefix.to_owned(), Value::String(s.clone()));
            }
            Value::Null => {}
            Value::Array(_) => {
                out.insert(prefix.to_owned(), v.clone());
            }
            other => {
                out.insert(prefix.to_owned(), Value::String(other.to_string()));
            }
        }
    }
    let mut flat = Map::new();
    walk(settings, "", &mut flat);
    flat.into_iter()
        .map(|(k, v)| {
            if k.starts_with("index.") {
                (k, v)
            } else {
                (format!("index.{k}"), v)
            }
        })
        .collect()
}

/// `index_not_found_exception` with the fields Elasticsearch adds.
pub fn index_not_found(name: &str, reason: Option<String>) -> J {
    cause(
        "index_not_found_exception",
        reason.unwrap_or_else(|| format!("no such index [{name}]")),
    )
    .set("resource.type", "index_or_alias")
    .set("resource.id", name)
    .set("index_uuid", "_na_")
    .set("index", name)
}

/// Checks an index or data stream name like `MetadataCreateIndexService`.
pub fn validate_index_name(name: &str) -> Result<(), J> {
    let invalid = |why: &str| {
        Err(cause(
            "invalid_index_name_exception",
            format!("Invalid index name [{name}], {why}"),
        )
        .set("index_uuid", "_na_")
        .set("index", name))
    };
    if name.chars().any(|c| "\\/*?\"<>| ,#:".contains(c)) {
        return invalid(
            "must not contain the following characters [' ','\"','*',',','/','<','>','?','\\','|']",
        );
    }
    if name.starts_with(['_', '-', '+']) {
        return invalid("must not start with '_', '-', or '+'");
    }
    if name == "." || name == ".." {
        return invalid("must not be '.' or '..'");
    }
    if name.len() > 255 {
        return invalid(&format!("index name is too long, ({} > 255)", name.len()));
    }
    if name.to_lowercase() != name {
        return invalid("must be lowercase");
    }
    Ok(())
}

impl State {
    pub fn new(options: EmulatorOptions) -> State {
        State {
            options,
            slow: None,
            bulk_faults: VecDeque::new(),
            any_faults: VecDeque::new(),
            max_request_bytes: None,
            item_429: None,
            reject_field: None,
            ilm: BTreeMap::new(),
            component_templates: BTreeMap::new(),
            index_templates: BTreeMap::new(),
            data_streams: BTreeMap::new(),
            indices: BTreeMap::new(),
            requests: Vec::new(),
            bulk_stats: BulkStats::default(),
            counter: 0,
        }
    }

    fn next(&mut self) -> u64 {
        self.counter += 1;
        mix(self.counter)
    }

    /// A 20-character id like Elasticsearch's auto-generated ones (deterministic per emulator).
    pub fn generate_id(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        let mut bytes = [0u8; 15];
        bytes[..8].copy_from_slice(&a.to_be_bytes());
        bytes[8..].copy_from_slice(&b.to_be_bytes()[..7]);
        b64url(&bytes)
    }

    /// A 22-character index uuid.
    pub fn generate_uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&a.to_be_bytes());
        bytes[8..].copy_from_slice(&b.to_be_bytes());
        b64url(&bytes)
    }

    /// The index template with the highest priority whose patterns match `name`.
    pub fn matching_template(&self, name: &str) -> Option<&str> {
        self.index_templates
            .iter()
            .filter(|(_, t)| {
                t.get("index_patterns")
                    .map(patterns_of)
                    .unwrap_or_default()
                    .iter()
                    .any(|p| glob(p, name))
            })
            .max_by_key(|(_, t)| t.get("priority").and_then(Value::as_i64).unwrap_or(0))
            .map(|(n, _)| n.as_str())
    }

    /// Merges a template's component templates (in `composed_of` order) and its own `template`.
    pub fn resolve_template(&self, template_name: &str) -> Resolved {
        let tpl = &self.index_templates[template_name];
        let mut mappings = Value::Object(Map::new());
        let mut settings = Map::new();
        let mut parts: Vec<&Value> = Vec::new();
        for component in tpl
            .get("composed_of")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if let Some(ct) = self.component_templates.get(component) {
                if let Some(t) = ct.get("template") {
                    parts.push(t);
                }
            }
        }
        if let Some(t) = tpl.get("template") {
            parts.push(t);
        }
        for part in parts {
            if let Some(m) = part.get("mappings") {
                mapping::merge_into(&mut mappings, &mapping::normalize(m));
            }
            if let Some(s) = part.get("settings") {
                settings.extend(flatten_settings(s));
            }
        }
        Resolved {
            name: template_name.to_owned(),
            mappings,
            settings,
            data_stream: tpl.get("data_stream").cloned(),
            allow_auto_create: tpl.get("allow_auto_create").and_then(Value::as_bool),
        }
    }

    /// Creates an index (no existence check).
    pub fn create_index(
        &mut self,
        name: &str,
        mappings: Value,
        settings: Map<String, Value>,
        data_stream: Option<String>,
    ) {
        let uuid = self.generate_uuid();
        self.indices.insert(
            name.to_owned(),
            Index {
                name: name.to_owned(),
                uuid,
                data_stream,
                mappings,
                settings,
                docs: Vec::new(),
                by_id: HashMap::new(),
                live: 0,
                next_seq_no: 0,
                creation_date: now_millis(),
            },
        );
    }

    /// Adds the next backing index to a data stream, with mappings from the template as it is
    /// now (like a real rollover). Returns (old write index, new write index).
    pub fn add_backing_index(&mut self, ds_name: &str) -> (Option<String>, String) {
        let (template, generation, old) = {
            let ds = &self.data_streams[ds_name];
            (
                ds.template.clone(),
                ds.generation + 1,
                ds.indices.last().cloned(),
            )
        };
        let (mut mappings, settings) = if self.index_templates.contains_key(&template) {
            let r = self.resolve_template(&template);
            (r.mappings, r.settings)
        } else {
            (Value::Object(Map::new()), Map::new())
        };
        // Data streams always map their timestamp as a date.
        if mapping::lookup(&mappings, "@timestamp").is_none() {
            mapping::apply_additions(
                &mut mappings,
                vec![(
                    vec!["@timestamp".to_owned()],
                    serde_json::json!({"type": "date"}),
                )],
            );
        }
        let date = chrono::Utc::now().format("%Y.%m.%d");
        let name = format!(".ds-{ds_name}-{date}-{generation:06}");
        self.create_index(&name, mappings, settings, Some(ds_name.to_owned()));
        let ds = self.data_streams.get_mut(ds_name).expect("data stream");
        ds.generation = generation;
        ds.indices.push(name.clone());
        (old, name)
    }

    pub fn create_data_stream(&mut self, name: &str, template: &str) {
        let hidden = self.index_templates[template]
            .get("data_stream")
            .and_then(|d| d.get("hidden"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        self.data_streams.insert(
            name.to_owned(),
            DataStream {
                name: name.to_owned(),
                template: template.to_owned(),
                indices: Vec::new(),
                generation: 0,
                hidden,
            },
        );
        self.add_backing_index(name);
    }

    /// Resolves a write to `name`, creating the data stream or index when a template allows it.
    /// `op` is the bulk action name.
    pub fn resolve_write(&mut self, name: &str, op: &str) -> Result<WriteTarget, (u16, J)> {
        if self.data_streams.contains_key(name) {
            return Ok(WriteTarget::DataStream(name.to_owned()));
        }
        if let Some(index) = self.indices.get(name) {
            if let Some(ds) = &index.data_stream {
                if op == "create" || op == "index" {
                    return Err((
                        400,
                        cause(
                            "illegal_argument_exception",
                            format!("index request with op_type={op} targeting backing indices is disallowed, target corresponding data stream [{ds}] instead"),
                        ),
                    ));
                }
            }
            return Ok(WriteTarget::Index(name.to_owned()));
        }
        validate_index_name(name).map_err(|e| (400, e))?;
        if op == "delete" || op == "update" {
            // Bulk does not auto-create an index for deletes; updates fail on the missing doc.
            return Err((404, index_not_found(name, None)));
        }
        match self.matching_template(name).map(str::to_owned) {
            Some(template) => {
                let resolved = self.resolve_template(&template);
                if resolved.allow_auto_create == Some(false) {
                    return Err((
                        404,
                        index_not_found(
                            name,
                            Some(format!("no such index [{name}] and composable template [{template}] forbids index auto creation")),
                        ),
                    ));
                }
                if resolved.data_stream.is_some() {
                    self.create_data_stream(name, &template);
                    Ok(WriteTarget::DataStream(name.to_owned()))
                } else {
                    self.create_index(name, resolved.mappings, resolved.settings, None);
                    Ok(WriteTarget::Index(name.to_owned()))
                }
            }
            None => {
                self.create_index(name, Value::Object(Map::new()), Map::new(), None);
                Ok(WriteTarget::Index(name.to_owned()))
            }
        }
    }

    /// Like [`State::resolve_read`], but a missing name resolves to nothing.
    pub fn resolve_lenient(&self, expr: &str) -> Vec<String> {
        self.resolve(expr, true).unwrap_or_default()
    }

    fn resolve(&self, expr: &str, lenient: bool) -> Result<Vec<String>, String> {
        let mut out: Vec<String> = Vec::new();
        for part in expr.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some(excluded) = part.strip_prefix('-') {
                let drop = self.resolve_lenient(excluded);
                out.retain(|n| !drop.contains(n));
                continue;
            }
            let part = if part == "_all" { "*" } else { part };
            if part.contains('*') {
                let include_hidden = part.starts_with('.');
                for ds in self.data_streams.values() {
                    if glob(part, &ds.name) && (include_hidden || !ds.hidden) {
                        out.extend(ds.indices.iter().cloned());
                    }
                }
                for index in self.indices.values() {
                    if glob(part, &index.name) && (include_hidden || !index.hidden()) {
                        out.push(index.name.clone());
                    }
                }
            } else if let Some(ds) = self.data_streams.get(part) {
                out.extend(ds.indices.iter().cloned());
            } else if self.indices.contains_key(part) {
                out.push(part.to_owned());
            } else if !lenient {
                return Err(part.to_owned());
            }
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|n| seen.insert(n.clone()));
        Ok(out)
    }
}

/// `index_patterns` as a list (a single string is allowed).
pub fn patterns_of(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => s.split(',').map(|p| p.trim().to_owned()).collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}
