//! Shared readers for the static tests (`static_kibana.rs`, `static_compose.rs`): the repository's
//! Elasticsearch templates, the result schema table, the Kibana saved objects and a tiny KQL
//! scanner. Included with `#[path]`, so it is not a test crate of its own.

#![allow(dead_code)] // each test crate uses a different subset

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(path: impl AsRef<Path>) -> String {
    let path = root().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub fn read_json(path: impl AsRef<Path>) -> Value {
    let p = path.as_ref().to_owned();
    serde_json::from_str(&read(&p)).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `(name, body)` of every `*.json` in `config/elasticsearch/<dir>`, sorted by name.
pub fn es_resources(dir: &str) -> Vec<(String, Value)> {
    let base = root().join("config/elasticsearch").join(dir);
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&base)
        .unwrap_or_else(|e| panic!("{}: {e}", base.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, read_json(p.strip_prefix(root()).unwrap()))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// One mapped field: its ES type, and the mapping object it came from.
#[derive(Debug, Clone)]
pub struct Mapped {
    pub es_type: String,
    pub mapping: Value,
    /// A multi-field (`error.message.text`) rather than a field of the document.
    pub multi_field: bool,
}

/// Flattens mapping `properties` into dotted paths. Object fields (with `properties`) are not
/// listed themselves; multi-fields (`fields`) are listed as `<field>.<name>`.
pub fn flatten_properties(properties: &Value, prefix: &str, out: &mut BTreeMap<String, Mapped>) {
    let Some(map) = properties.as_object() else {
        panic!("`properties` under {prefix:?} is not an object");
    };
    for (name, mapping) in map {
        assert!(
            !name.contains('.'),
            "mapping uses the dotted name {prefix}{name}: nest `properties` objects instead"
        );
        let path = format!("{prefix}{name}");
        if let Some(children) = mapping.get("properties") {
            flatten_properties(children, &format!("{path}."), out);
            continue;
        }
        let es_type = mapping
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{path} has neither `type` nor `properties`"))
            .to_owned();
        if let Some(fields) = mapping.get("fields").and_then(Value::as_object) {
            for (sub, sub_mapping) in fields {
                out.insert(
                    format!("{path}.{sub}"),
                    Mapped {
                        es_type: sub_mapping["type"].as_str().unwrap_or("?").to_owned(),
                        mapping: sub_mapping.clone(),
                        multi_field: true,
                    },
                );
            }
        }
        out.insert(
            path,
            Mapped {
                es_type,
                mapping: mapping.clone(),
                multi_field: false,
            },
        );
    }
}

/// The mappings an index template gives its indices: its component templates (in
/// `composed_of` order), then its own `template.mappings`. Also returns the merged mapping
/// roots, to check `dynamic`.
pub fn index_template_fields(template: &Value) -> (BTreeMap<String, Mapped>, Vec<Value>) {
    let components: BTreeMap<String, Value> =
        es_resources("component_templates").into_iter().collect();
    let mut roots = Vec::new();
    for name in template["composed_of"].as_array().into_iter().flatten() {
        let name = name.as_str().unwrap();
        let component = components
            .get(name)
            .unwrap_or_else(|| panic!("component template {name} is not in config/elasticsearch"));
        if let Some(m) = component.pointer("/template/mappings") {
            roots.push(m.clone());
        }
    }
    if let Some(m) = template.pointer("/template/mappings") {
        roots.push(m.clone());
    }
    let mut fields = BTreeMap::new();
    for m in &roots {
        if let Some(p) = m.get("properties") {
            flatten_properties(p, "", &mut fields);
        }
    }
    (fields, roots)
}

/// Index template name → (its patterns, its mapped fields).
pub fn index_templates() -> Vec<(String, Vec<String>, BTreeMap<String, Mapped>)> {
    es_resources("index_templates")
        .into_iter()
        .map(|(name, t)| {
            let patterns = t["index_patterns"]
                .as_array()
                .unwrap_or_else(|| panic!("index template {name} has no index_patterns list"))
                .iter()
                .map(|p| p.as_str().unwrap().to_owned())
                .collect();
            (name, patterns, index_template_fields(&t).0)
        })
        .collect()
}

/// One row of the table in `docs/result-schema.md`.
#[derive(Debug, Clone)]
pub struct SchemaRow {
    pub field: String,
    /// First word of the type cell (`keyword`, `long`…).
    pub es_type: String,
    /// Multi-fields named in the type cell: `keyword (+ `.text` text)` → `[("text","text")]`.
    pub multi_fields: Vec<(String, String)>,
    /// Values listed in the meaning cell when the list is closed (no `…`, no "what the API
    /// said", no placeholder); empty when open or absent.
    pub closed_values: Vec<String>,
}

fn backticked(text: &str) -> Vec<String> {
    text.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_owned())
        .collect()
}

pub fn result_schema() -> Vec<SchemaRow> {
    let text = read("docs/result-schema.md");
    let mut rows = Vec::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `field` | type | written on | meaning |
        if cells.len() < 6 || !cells[1].starts_with('`') {
            continue;
        }
        let field = cells[1].trim_matches('`').to_owned();
        let es_type = cells[2].split_whitespace().next().unwrap().to_owned();
        let mut multi_fields = Vec::new();
        if let Some(extra) = cells[2].split_once("(+").map(|(_, e)| e) {
            let names = backticked(extra);
            for name in names {
                let after = extra.split(&format!("`{name}`")).nth(1).unwrap_or("");
                let ty = after
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .trim_end_matches(')');
                multi_fields.push((name.trim_start_matches('.').to_owned(), ty.to_owned()));
            }
        }
        let meaning = cells[4..cells.len() - 1].join("|");
        let values = backticked(&meaning);
        let open = meaning.contains('…')
            || meaning.contains("what the API")
            || values.iter().any(|v| v.contains('<'));
        rows.push(SchemaRow {
            field,
            es_type,
            multi_fields,
            closed_values: if open { Vec::new() } else { values },
        });
    }
    assert!(
        rows.len() >= 40,
        "docs/result-schema.md: parsed only {} table rows; did the table format change?",
        rows.len()
    );
    rows
}

/// A saved object read from `kibana/<file>`, with where it came from.
#[derive(Debug, Clone)]
pub struct SavedObject {
    pub file: String,
    pub line: usize,
    pub value: Value,
}

impl SavedObject {
    pub fn type_(&self) -> &str {
        self.value["type"].as_str().unwrap_or("")
    }
    pub fn id(&self) -> &str {
        self.value["id"].as_str().unwrap_or("")
    }
    pub fn attributes(&self) -> &Value {
        &self.value["attributes"]
    }
    pub fn references(&self) -> Vec<(&str, &str, &str)> {
        self.value["references"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    r["name"].as_str().unwrap_or(""),
                    r["type"].as_str().unwrap_or(""),
                    r["id"].as_str().unwrap_or(""),
                )
            })
            .collect()
    }
    pub fn reference(&self, name: &str) -> Option<(&str, &str)> {
        self.references()
            .into_iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, t, i)| (t, i))
    }
    pub fn at(&self) -> String {
        format!(
            "kibana/{}:{} ({} {})",
            self.file,
            self.line,
            self.type_(),
            self.id()
        )
    }
}

/// Every `kibana/*.ndjson` file name, sorted.
pub fn kibana_file_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("kibana"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".ndjson"))
        .collect();
    names.sort();
    names
}

/// Parses every non-blank line of every `kibana/*.ndjson`; panics naming the line if one is not
/// a JSON object on its own.
pub fn saved_objects() -> Vec<SavedObject> {
    let mut out = Vec::new();
    for file in kibana_file_names() {
        let text = read(Path::new("kibana").join(&file));
        for (i, line) in text.split('\n').enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let value: Value = serde_json::from_str(line).unwrap_or_else(|e| {
                panic!(
                    "kibana/{file}:{}: not one JSON value on its own line: {e}",
                    i + 1
                )
            });
            out.push(SavedObject {
                file: file.clone(),
                line: i + 1,
                value,
            });
        }
    }
    out
}

/// Decodes a JSON-encoded string attribute (`panelsJSON`…).
pub fn decode(value: &Value, what: &str) -> Value {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what} does not decode as JSON: {e}"))
}

/// `8.15.3` → `[8, 15, 3]`.
pub fn version(text: &str) -> Vec<u64> {
    text.split('.')
        .map(|p| {
            p.parse()
                .unwrap_or_else(|_| panic!("{text:?} is not a x.y.z version"))
        })
        .collect()
}

/// The Kibana version the saved objects are written for: the `version` stamped on every
/// dashboard panel (what Kibana itself writes there). All panels must agree.
pub fn pinned_kibana_version(objects: &[SavedObject]) -> String {
    let mut versions = BTreeSet::new();
    for o in objects.iter().filter(|o| o.type_() == "dashboard") {
        for panel in decode(&o.attributes()["panelsJSON"], "panelsJSON")
            .as_array()
            .unwrap()
        {
            versions.insert(panel["version"].as_str().unwrap_or("<none>").to_owned());
        }
    }
    assert_eq!(
        versions.len(),
        1,
        "dashboard panels must all carry the same Kibana version, found {versions:?}"
    );
    versions.into_iter().next().unwrap()
}

/// A `field : value` clause found in a KQL query.
#[derive(Debug, Clone, PartialEq)]
pub struct KqlClause {
    pub field: String,
    /// Quoted values (`"a"`, or `("a" or "b")`); empty for `*` or unquoted values.
    pub values: Vec<String>,
}

/// Scans a KQL query for `field : value` clauses. Enough for the queries we write (fields,
/// quoted values, `( … or … )` lists, `*`, `and`/`or`/`not`, parentheses); not a full parser.
pub fn kql_clauses(query: &str) -> Vec<KqlClause> {
    let chars: Vec<char> = query.chars().collect();
    let mut clauses = Vec::new();
    let mut i = 0;
    let is_ident = |c: char| c.is_alphanumeric() || matches!(c, '.' | '_' | '@' | '*' | '-');
    let read_string = |i: &mut usize| -> String {
        let mut s = String::new();
        *i += 1; // opening quote
        while *i < chars.len() && chars[*i] != '"' {
            if chars[*i] == '\\' && *i + 1 < chars.len() {
                *i += 1;
            }
            s.push(chars[*i]);
            *i += 1;
        }
        *i += 1; // closing quote
        s
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            read_string(&mut i);
            continue;
        }
        if !is_ident(c) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let mut j = i;
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        if j >= chars.len() || chars[j] != ':' {
            continue;
        }
        j += 1;
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        let mut values = Vec::new();
        if j < chars.len() && chars[j] == '"' {
            values.push(read_string(&mut j));
        } else if j < chars.len() && chars[j] == '(' {
            while j < chars.len() && chars[j] != ')' {
                if chars[j] == '"' {
                    values.push(read_string(&mut j));
                } else {
                    j += 1;
                }
            }
        }
        clauses.push(KqlClause {
            field: word,
            values,
        });
        i = j;
    }
    clauses
}

/// `iaso-checks-*` matches `iaso-checks-prod`; only `*` is special.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|&k| rest.is_char_boundary(k))
                .any(|k| glob_match(tail, &rest[k..]))
        }
    }
}

#[test]
fn kql_scanner_finds_fields_and_quoted_values() {
    let q = r#"(event.action : "job.end" and iaso.job.result : ("failure" or "timeout")) or not error.type : * and x:"a \"b\"""#;
    assert_eq!(
        kql_clauses(q),
        vec![
            KqlClause {
                field: "event.action".into(),
                values: vec!["job.end".into()]
            },
            KqlClause {
                field: "iaso.job.result".into(),
                values: vec!["failure".into(), "timeout".into()]
            },
            KqlClause {
                field: "error.type".into(),
                values: vec![]
            },
            KqlClause {
                field: "x".into(),
                values: vec!["a \"b\"".into()]
            },
        ]
    );
}

#[test]
fn glob_matches_only_with_star() {
    assert!(glob_match("iaso-checks-*", "iaso-checks-prod"));
    assert!(!glob_match("iaso-checks-*", "iaso-jobs-prod"));
    assert!(glob_match("a*c*", "abcxyz"));
    assert!(!glob_match("abc", "abcd"));
}
