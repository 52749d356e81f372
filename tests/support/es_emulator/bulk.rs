//! `_bulk`: NDJSON parsing, whole-request validation, and per-item results in request order
//! with Elasticsearch 8.x shapes.

use std::time::Instant;

use bytes::Bytes;
use rand::Rng;
use serde_json::{Map, Value};

use super::json::{cause, J};
use super::mapping;
use super::rest::Params;
use super::store::{index_not_found, shards_header, State, WriteTarget};

const OPS: &[&str] = &["create", "delete", "index", "update"];

const PARAMS: &[&str] = &[
    "refresh",
    "pipeline",
    "require_alias",
    "require_data_stream",
    "routing",
    "_source",
    "_source_includes",
    "_source_excludes",
    "timeout",
    "wait_for_active_shards",
    "include_source_on_error",
    "list_executed_pipelines",
    "filter_path",
    "error_trace",
    "pretty",
    "human",
    "format",
];

const META_ALL: &[&str] = &[
    "_index",
    "_id",
    "routing",
    "version",
    "version_type",
    "if_seq_no",
    "if_primary_term",
    "require_alias",
];
const META_INDEX: &[&str] = &[
    "pipeline",
    "dynamic_templates",
    "require_data_stream",
    "list_executed_pipelines",
];
const META_UPDATE: &[&str] = &["retry_on_conflict", "_source"];

struct Action {
    op: String,
    index: Option<String>,
    id: Option<String>,
    source: Option<Bytes>,
    pipeline: Option<String>,
    require_alias: bool,
    if_seq_no: Option<u64>,
    if_primary_term: Option<u64>,
}

fn token_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "VALUE_NULL",
        Value::Bool(_) => "VALUE_BOOLEAN",
        Value::Number(_) => "VALUE_NUMBER",
        Value::String(_) => "VALUE_STRING",
        Value::Array(_) => "START_ARRAY",
        Value::Object(_) => "START_OBJECT",
    }
}

fn whole(status: u16, error: J) -> (u16, J) {
    (status, error)
}

/// Handles one `_bulk` request; returns the HTTP status and the body (an error cause for
/// whole-request failures, which the REST layer wraps in the error envelope).
pub fn bulk(
    state: &mut State,
    path: &str,
    path_index: Option<&str>,
    params: &Params,
    body: &Bytes,
) -> Result<J, (u16, J)> {
    let started = Instant::now();
    let unknown: Vec<&str> = params.keys().filter(|k| !PARAMS.contains(k)).collect();
    if !unknown.is_empty() {
        let list = unknown
            .iter()
            .map(|k| format!("[{k}]"))
            .collect::<Vec<_>>()
            .join(", ");
        let noun = if unknown.len() == 1 {
            "parameter"
        } else {
            "parameters"
        };
        return Err(whole(
            400,
            cause(
                "illegal_argument_exception",
                format!("request [{path}] contains unrecognized {noun}: {list}"),
            ),
        ));
    }
    let refresh = params.get("refresh");
    if let Some(r) = refresh {
        if !matches!(r, "" | "true" | "false" | "wait_for") {
            return Err(whole(
                400,
                cause(
                    "illegal_argument_exception",
                    format!("Unknown value for refresh: [{r}]."),
                ),
            ));
        }
    }
    let forced_refresh = matches!(refresh, Some("" | "true"));
    if body.is_empty() {
        return Err(validation(&["no requests added".to_owned()]));
    }
    if body.last() != Some(&b'\n') {
        return Err(whole(
            400,
            cause(
                "illegal_argument_exception",
                "The bulk request must be terminated by a newline [\\n]",
            ),
        ));
    }
    let actions = parse(body, path_index)?;

    let request_pipeline = params.get("pipeline").map(str::to_owned);
    let require_alias = params.flag("require_alias");
    let require_data_stream = params.flag("require_data_stream");
    let total = actions.len();
    let mut items = Vec::with_capacity(total);
    let mut errors = false;
    for action in actions {
        // One draw per item, in request order, so a seed always rejects the same positions.
        let rejected = match state.item_429.as_mut() {
            Some((ratio, rng)) => rng.gen::<f64>() < *ratio,
            None => false,
        };
        let id = match (&action.id, action.op.as_str()) {
            (Some(id), _) => Some(id.clone()),
            (None, "create" | "index") => Some(state.generate_id()),
            (None, _) => None,
        };
        let ctx = ItemContext {
            rejected,
            total,
            forced_refresh,
            require_alias: require_alias || action.require_alias,
            require_data_stream,
            pipeline: action.pipeline.clone().or_else(|| request_pipeline.clone()),
        };
        let item = process(state, &action, id.as_deref(), &ctx);
        let status = item
            .get("status")
            .and_then(|s| match s {
                J::Num(n) => n.as_u64(),
                _ => None,
            })
            .unwrap_or(0) as u16;
        if item.get("error").is_some() {
            errors = true;
        }
        let stats = &mut state.bulk_stats;
        stats.items += 1;
        *stats.items_by_status.entry(status).or_default() += 1;
        match status {
            201 => stats.created_201 += 1,
            200 => stats.ok_200 += 1,
            409 => stats.conflicts_409 += 1,
            429 => stats.rejected_429 += 1,
            400 => stats.errors_400 += 1,
            404 => stats.not_found_404 += 1,
            _ => {}
        }
        items.push(J::obj().set(action.op.clone(), item));
    }
    Ok(J::obj()
        .set("errors", errors)
        .set("took", started.elapsed().as_millis() as u64)
        .set("items", J::Arr(items)))
}

fn validation(problems: &[String]) -> (u16, J) {
    let text: String = problems
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}: {p};", i + 1))
        .collect();
    (
        400,
        cause(
            "action_request_validation_exception",
            format!("Validation Failed: {text}"),
        ),
    )
}

/// Splits the body into actions; any malformed action line fails the whole request.
fn parse(body: &Bytes, path_index: Option<&str>) -> Result<Vec<Action>, (u16, J)> {
    let mut lines: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    for (i, b) in body.iter().enumerate() {
        if *b == b'\n' {
            let end = if i > start && body[i - 1] == b'\r' {
                i - 1
            } else {
                i
            };
            lines.push((start, end));
            start = i + 1;
        }
    }
    let malformed = |line: usize, what: String| {
        whole(
            400,
            cause(
                "illegal_argument_exception",
                format!("Malformed action/metadata line [{line}], {what}"),
            ),
        )
    };
    let mut actions = Vec::new();
    let mut problems = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let (s, e) = lines[i];
        let line_no = i + 1;
        i += 1;
        if body[s..e].iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value: Value = serde_json::from_slice(&body[s..e]).map_err(|err| {
            whole(
                400,
                cause(
                    "x_content_parse_exception",
                    format!("[{line_no}:{}] {err}", err.column()),
                ),
            )
        })?;
        let Value::Object(obj) = value else {
            return Err(malformed(
                line_no,
                format!(
                    "expected START_OBJECT or END_OBJECT but found [{}]",
                    token_of(&value)
                ),
            ));
        };
        if obj.is_empty() {
            return Err(malformed(
                line_no,
                "expected FIELD_NAME but found [END_OBJECT]".into(),
            ));
        }
        if obj.len() > 1 {
            return Err(malformed(
                line_no,
                "expected END_OBJECT but found [FIELD_NAME]".into(),
            ));
        }
        let (op, meta) = obj.into_iter().next().expect("one key");
        if !OPS.contains(&op.as_str()) {
            return Err(malformed(
                line_no,
                format!("expected one of [create, delete, index, update] but found [{op}]"),
            ));
        }
        let Value::Object(meta) = meta else {
            return Err(malformed(
                line_no,
                format!("expected START_OBJECT but found [{}]", token_of(&meta)),
            ));
        };
        for key in meta.keys() {
            let known = META_ALL.contains(&key.as_str())
                || ((op == "index" || op == "create") && META_INDEX.contains(&key.as_str()))
                || (op == "update" && META_UPDATE.contains(&key.as_str()));
            if !known {
                return Err(whole(
                    400,
                    cause(
                        "illegal_argument_exception",
                        format!("Action/metadata line [{line_no}] contains an unknown parameter [{key}]"),
                    ),
                ));
            }
        }
        let text = |k: &str| -> Option<String> {
            match meta.get(k) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                Some(Value::Bool(b)) => Some(b.to_string()),
                _ => None,
            }
        };
        let index = text("_index").or_else(|| path_index.map(str::to_owned));
        let id = text("_id");
        let source = if op == "delete" {
            None
        } else if i < lines.len() {
            let (s, e) = lines[i];
            i += 1;
            Some(body.slice(s..e))
        } else {
            // Elasticsearch silently drops a final action whose source line is missing.
            break;
        };
        if index.is_none() {
            problems.push("index is missing".to_owned());
        }
        match &id {
            None if op == "update" || op == "delete" => problems.push("id is missing".to_owned()),
            Some(id) if id.len() > 512 => problems.push(format!(
                "id [{id}] is too long, must be no longer than 512 bytes but was: {}",
                id.len()
            )),
            _ => {}
        }
        let if_seq_no = meta.get("if_seq_no").and_then(Value::as_u64);
        if op == "create" && if_seq_no.is_some() {
            problems
                .push("create operations do not support compare and set. use index instead".into());
        }
        actions.push(Action {
            op,
            index,
            id,
            source,
            pipeline: text("pipeline"),
            require_alias: text("require_alias").is_some_and(|v| v == "true"),
            if_seq_no,
            if_primary_term: meta.get("if_primary_term").and_then(Value::as_u64),
        });
    }
    if actions.is_empty() {
        problems.push("no requests added".to_owned());
    }
    if !problems.is_empty() {
        return Err(validation(&problems));
    }
    Ok(actions)
}

struct ItemContext {
    rejected: bool,
    total: usize,
    forced_refresh: bool,
    require_alias: bool,
    require_data_stream: bool,
    pipeline: Option<String>,
}

fn error_item(index: &str, id: Option<&str>, status: u16, error: J) -> J {
    J::obj()
        .set("_index", index)
        .set("_id", id)
        .set("status", status)
        .set("error", error)
}

fn ok_item(
    index: &str,
    id: &str,
    version: u64,
    result: &str,
    seq_no: u64,
    status: u16,
    forced_refresh: bool,
) -> J {
    J::obj()
        .set("_index", index)
        .set("_id", id)
        .set("_version", version)
        .set("result", result)
        .set_opt("forced_refresh", forced_refresh.then_some(true))
        .set("_shards", shards_header())
        .set("_seq_no", seq_no)
        .set("_primary_term", 1u64)
        .set("status", status)
}

fn conflict(index: &str, uuid: &str, reason: String) -> J {
    cause("version_conflict_engine_exception", reason)
        .set("index_uuid", uuid)
        .set("shard", "0")
        .set("index", index)
}

fn rejection(index: &str, total: usize) -> J {
    cause(
        "es_rejected_execution_exception",
        format!(
            "rejected execution of processing of [{}][indices:data/write/bulk[s][p]]: request: BulkShardRequest [[{index}][0]] containing [{total}] requests, target allocation id: WItygVvVSdaPTZIxELeQCw, primary term: 1 on EsThreadPoolExecutor[name = es-emulator/write, queue capacity = 10000, org.elasticsearch.common.util.concurrent.EsThreadPoolExecutor@184eb961[Running, pool size = 2, active threads = 2, queued tasks = 10000, completed tasks = 21687296]]",
            119_310_915 + total
        ),
    )
}

fn process(state: &mut State, action: &Action, id: Option<&str>, ctx: &ItemContext) -> J {
    let name = action.index.as_deref().expect("validated");
    if ctx.require_alias {
        return error_item(
            name,
            id,
            404,
            index_not_found(
                name,
                Some(format!("no such index [{name}] and [require_alias] request flag is [true] and [{name}] is not an alias")),
            ),
        );
    }
    if action.op != "delete" && action.op != "update" {
        if let Some(p) = ctx.pipeline.as_deref().filter(|p| *p != "_none") {
            return error_item(
                name,
                id,
                400,
                cause(
                    "illegal_argument_exception",
                    format!("pipeline with id [{p}] does not exist"),
                ),
            );
        }
    }
    let existed = state.data_streams.contains_key(name) || state.indices.contains_key(name);
    let target = match state.resolve_write(name, &action.op) {
        Ok(t) => t,
        Err((status, error)) => return error_item(name, id, status, error),
    };
    let (index_name, is_stream) = match target {
        WriteTarget::DataStream(ds) => {
            if action.op != "create" {
                return error_item(
                    &ds,
                    action.id.as_deref(),
                    400,
                    cause(
                        "illegal_argument_exception",
                        "only write ops with an op_type of create are allowed in data streams",
                    ),
                );
            }
            (state.data_streams[&ds].write_index().to_owned(), true)
        }
        WriteTarget::Index(n) => {
            if ctx.require_data_stream && (action.op == "create" || action.op == "index") {
                let reason = if existed {
                    format!("index [{n}] is not a data stream and [require_data_stream] request flag is [true]")
                } else {
                    format!("no such index [{n}] and [require_data_stream] request flag is [true] and [{n}] is not a data stream")
                };
                return error_item(&n, id, 404, index_not_found(&n, Some(reason)));
            }
            (n, false)
        }
    };
    if ctx.rejected {
        return error_item(&index_name, id, 429, rejection(&index_name, ctx.total));
    }
    let id = id.expect("ops without an id were rejected by validation");
    match action.op.as_str() {
        "delete" => delete(state, &index_name, id, action, ctx),
        "update" => update(state, &index_name, id, action, ctx),
        _ => write(state, &index_name, id, action, ctx, is_stream),
    }
}

/// Parses a source line into an object, or the item error Elasticsearch gives.
fn parse_source(raw: &[u8]) -> Result<Map<String, Value>, J> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(cause(
            "document_parsing_exception",
            "failed to parse, document is empty",
        ));
    }
    match serde_json::from_slice::<Value>(raw) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(_) => Err(cause(
            "document_parsing_exception",
            "[1:1] failed to parse: Malformed content, must start with an object",
        )),
        Err(err) => Err(cause(
            "document_parsing_exception",
            format!("[1:{}] failed to parse", err.column()),
        )
        .set("caused_by", cause("json_parse_exception", err.to_string()))),
    }
}

/// The emulator's injected mapping error for `set_reject_field`.
fn injected_rejection(
    state: &State,
    index: &str,
    source: &Value,
    raw: &str,
    id: &str,
) -> Option<J> {
    let field = state.reject_field.as_deref()?;
    let value = mapping::values_at(source, field).into_iter().next()?;
    let ty = state
        .indices
        .get(index)
        .and_then(|i| mapping::lookup(&i.mappings, field))
        .and_then(|(m, _)| m.get("type").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "long".to_owned());
    let shown = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let leaf = field.rsplit('.').next().unwrap_or(field);
    let col = raw
        .find(&format!("\"{leaf}\""))
        .map_or(1, |p| raw[..p].chars().count() + leaf.len() + 4);
    Some(
        cause(
            "document_parsing_exception",
            format!("[1:{col}] failed to parse field [{field}] of type [{ty}] in document with id '{id}'. Preview of field's value: '{shown}'"),
        )
        .set(
            "caused_by",
            cause(
                "illegal_argument_exception",
                format!("For input string: \"{shown}\""),
            ),
        ),
    )
}

/// Checks a document against the index mappings (and the data stream timestamp rule);
/// returns the dynamic mapping additions.
fn check(
    state: &State,
    index_name: &str,
    source: &Map<String, Value>,
    raw: &str,
    id: &str,
    is_stream: bool,
) -> Result<Vec<mapping::Addition>, J> {
    let index = &state.indices[index_name];
    let additions = mapping::check_document(&index.mappings, source, raw, id)?;
    if is_stream {
        let missing = |why: &str| {
            cause(
                "document_parsing_exception",
                format!("[1:{}] failed to parse: {why}", mapping::end_column(raw)),
            )
            .set("caused_by", cause("illegal_argument_exception", why))
        };
        let values = match source.get("@timestamp") {
            Some(Value::Array(items)) => items.iter().filter(|v| !v.is_null()).count(),
            Some(Value::Null) | None => 0,
            Some(_) => 1,
        };
        match values {
            0 => {
                return Err(missing(
                    "data stream timestamp field [@timestamp] is missing",
                ))
            }
            1 => {}
            _ => {
                return Err(missing(
                    "data stream timestamp field [@timestamp] encountered multiple values",
                ))
            }
        }
    }
    Ok(additions)
}

fn seq_no_conflict(
    action: &Action,
    index_name: &str,
    uuid: &str,
    id: &str,
    current: Option<u64>,
) -> Option<J> {
    let wanted = action.if_seq_no?;
    let term = action.if_primary_term.unwrap_or(0);
    match current {
        Some(seq) if seq == wanted && term == 1 => None,
        Some(seq) => Some(conflict(
            index_name,
            uuid,
            format!("[{id}]: version conflict, required seqNo [{wanted}], primary term [{term}]. current document has seqNo [{seq}] and primary term [1]"),
        )),
        None => Some(conflict(
            index_name,
            uuid,
            format!("[{id}]: version conflict, required seqNo [{wanted}], primary term [{term}]. but no document was found"),
        )),
    }
}

fn write(
    state: &mut State,
    index_name: &str,
    id: &str,
    action: &Action,
    ctx: &ItemContext,
    is_stream: bool,
) -> J {
    let raw_bytes = action.source.clone().unwrap_or_default();
    let raw = String::from_utf8_lossy(&raw_bytes);
    let source = match parse_source(&raw_bytes) {
        Ok(s) => s,
        Err(e) => return error_item(index_name, Some(id), 400, e),
    };
    let wrapped = Value::Object(source);
    if let Some(e) = injected_rejection(state, index_name, &wrapped, &raw, id) {
        return error_item(index_name, Some(id), 400, e);
    }
    let Value::Object(source) = wrapped else {
        unreachable!("wrapped an object")
    };
    let additions = match check(state, index_name, &source, &raw, id, is_stream) {
        Ok(a) => a,
        Err(e) => return error_item(index_name, Some(id), 400, e),
    };
    let index = state.indices.get_mut(index_name).expect("resolved index");
    let current = index.get(id).map(|d| (d.version, d.seq_no));
    if action.op == "create" {
        if let Some((version, _)) = current {
            let uuid = index.uuid.clone();
            return error_item(
                index_name,
                Some(id),
                409,
                conflict(
                    index_name,
                    &uuid,
                    format!("[{id}]: version conflict, document already exists (current version [{version}])"),
                ),
            );
        }
    } else if let Some(e) =
        seq_no_conflict(action, index_name, &index.uuid, id, current.map(|c| c.1))
    {
        return error_item(index_name, Some(id), 409, e);
    }
    mapping::apply_additions(&mut index.mappings, additions);
    let (version, seq_no, created) = index.put(id, raw_bytes);
    let (result, status) = if created {
        ("created", 201)
    } else {
        ("updated", 200)
    };
    ok_item(
        index_name,
        id,
        version,
        result,
        seq_no,
        status,
        ctx.forced_refresh,
    )
}

fn delete(state: &mut State, index_name: &str, id: &str, action: &Action, ctx: &ItemContext) -> J {
    let index = state.indices.get_mut(index_name).expect("resolved index");
    let current = index.get(id).map(|d| (d.version, d.seq_no));
    if let Some(e) = seq_no_conflict(action, index_name, &index.uuid, id, current.map(|c| c.1)) {
        return error_item(index_name, Some(id), 409, e);
    }
    match index.delete(id) {
        Some((version, seq_no)) => ok_item(
            index_name,
            id,
            version,
            "deleted",
            seq_no,
            200,
            ctx.forced_refresh,
        ),
        None => {
            let seq_no = index.bump_seq_no();
            ok_item(
                index_name,
                id,
                1,
                "not_found",
                seq_no,
                404,
                ctx.forced_refresh,
            )
        }
    }
}

fn update(state: &mut State, index_name: &str, id: &str, action: &Action, ctx: &ItemContext) -> J {
    let raw_bytes = action.source.clone().unwrap_or_default();
    let body = match parse_source(&raw_bytes) {
        Ok(b) => b,
        Err(e) => return error_item(index_name, Some(id), 400, e),
    };
    for key in body.keys() {
        if !matches!(
            key.as_str(),
            "doc"
                | "upsert"
                | "doc_as_upsert"
                | "script"
                | "scripted_upsert"
                | "detect_noop"
                | "_source"
        ) {
            return error_item(
                index_name,
                Some(id),
                400,
                cause(
                    "x_content_parse_exception",
                    format!("[1:2] [UpdateRequest] unknown field [{key}]"),
                ),
            );
        }
    }
    if body.contains_key("script") {
        return error_item(
            index_name,
            Some(id),
            400,
            cause(
                "illegal_argument_exception",
                "scripted updates are not supported by the emulator",
            ),
        );
    }
    let doc = body.get("doc").cloned();
    let index = &state.indices[index_name];
    let uuid = index.uuid.clone();
    let current = index.get(id).map(|d| {
        (
            d.seq_no,
            serde_json::from_slice::<Value>(&d.source).unwrap_or(Value::Null),
        )
    });
    if let Some(e) = seq_no_conflict(action, index_name, &uuid, id, current.as_ref().map(|c| c.0)) {
        return error_item(index_name, Some(id), 409, e);
    }
    let new_source = match (&current, &doc) {
        (Some((_, existing)), Some(doc)) => {
            let mut merged = existing.clone();
            mapping::merge_into(&mut merged, doc);
            let detect_noop = body
                .get("detect_noop")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            if detect_noop && &merged == existing {
                let d = index.get(id).expect("current document");
                return J::obj()
                    .set("_index", index_name)
                    .set("_id", id)
                    .set("_version", d.version)
                    .set("result", "noop")
                    .set(
                        "_shards",
                        J::obj()
                            .set("total", 0u64)
                            .set("successful", 0u64)
                            .set("failed", 0u64),
                    )
                    .set("_seq_no", d.seq_no)
                    .set("_primary_term", 1u64)
                    .set("status", 200u16);
            }
            merged
        }
        (Some((_, existing)), None) => existing.clone(),
        (None, _) => {
            let as_upsert = body
                .get("doc_as_upsert")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            match (as_upsert, &doc, body.get("upsert")) {
                (true, Some(doc), _) => doc.clone(),
                (_, _, Some(upsert)) => upsert.clone(),
                _ => {
                    return error_item(
                        index_name,
                        Some(id),
                        404,
                        cause(
                            "document_missing_exception",
                            format!("[{id}]: document missing"),
                        )
                        .set("index_uuid", uuid)
                        .set("shard", "0")
                        .set("index", index_name),
                    )
                }
            }
        }
    };
    let Value::Object(obj) = &new_source else {
        return error_item(
            index_name,
            Some(id),
            400,
            cause(
                "action_request_validation_exception",
                "Validation Failed: 1: script or doc is missing;",
            ),
        );
    };
    let serialized = serde_json::to_vec(&new_source).unwrap_or_default();
    let raw = String::from_utf8_lossy(&serialized).into_owned();
    let additions = match check(state, index_name, obj, &raw, id, false) {
        Ok(a) => a,
        Err(e) => return error_item(index_name, Some(id), 400, e),
    };
    let index = state.indices.get_mut(index_name).expect("resolved index");
    mapping::apply_additions(&mut index.mappings, additions);
    let (version, seq_no, created) = index.put(id, Bytes::from(serialized));
    let (result, status) = if created {
        ("created", 201)
    } else {
        ("updated", 200)
    };
    ok_item(
        index_name,
        id,
        version,
        result,
        seq_no,
        status,
        ctx.forced_refresh,
    )
}
