//! `_bulk` with the only action the prober sends, `create` with `_index` and `_id`: per item,
//! in request order, an injected 429 (seeded ratio), an injected 400 (`set_reject_field`), a
//! 409 for an id already written to that `_index`, or 201.

use rand::Rng;
use serde_json::{json, Value};

use super::rest::Reply;
use super::State;

/// One `create` of the request body.
struct Create<'a> {
    index: String,
    id: String,
    source: &'a [u8],
}

/// Splits the NDJSON body into `create` actions, or the 400 for a body the emulator does not
/// take (another action, a missing `_index` or `_id`, a missing source line).
fn parse(body: &[u8]) -> Result<Vec<Create<'_>>, String> {
    let mut lines = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace));
    let mut creates = Vec::new();
    while let Some(line) = lines.next() {
        let action: Value = serde_json::from_slice(line)
            .map_err(|e| format!("action line {} is not JSON: {e}", creates.len() + 1))?;
        let meta = action
            .get("create")
            .filter(|_| action.as_object().map(|o| o.len()) == Some(1));
        let (Some(index), Some(id)) = (
            meta.and_then(|m| m["_index"].as_str()),
            meta.and_then(|m| m["_id"].as_str()),
        ) else {
            return Err(format!(
                "the emulator takes only {{\"create\":{{\"_index\":…,\"_id\":…}}}} actions, got {action}"
            ));
        };
        let source = lines
            .next()
            .ok_or_else(|| format!("the create of [{id}] has no source line"))?;
        creates.push(Create {
            index: index.to_owned(),
            id: id.to_owned(),
            source,
        });
    }
    if creates.is_empty() {
        return Err("Validation Failed: 1: no requests added;".to_owned());
    }
    Ok(creates)
}

/// The value at a dotted path of a document (`iaso.limit_ms`), objects only.
fn field<'v>(doc: &'v Value, dotted: &str) -> Option<&'v Value> {
    dotted
        .split('.')
        .try_fold(doc, |v, key| v.get(key))
        .filter(|v| !v.is_null())
}

/// The injected item error of `set_reject_field`, or `None`.
fn injected_400(st: &State, create: &Create<'_>) -> Option<Value> {
    let name = st.reject_field.as_deref()?;
    let doc: Value = serde_json::from_slice(create.source).ok()?;
    let value = field(&doc, name)?;
    let shown = value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned);
    Some(cause(
        "document_parsing_exception",
        &format!(
            "[1:1] failed to parse field [{name}] in document with id '{}'. Preview of field's value: '{shown}' (injected by the emulator)",
            create.id
        ),
    ))
}

/// An item's error: `type` and `reason` (no `root_cause`, unlike a whole-request error).
fn cause(error_type: &str, reason: &str) -> Value {
    json!({"type": error_type, "reason": reason})
}

/// Handles one `_bulk` request.
pub fn bulk(st: &mut State, body: &[u8]) -> Reply {
    let creates = match parse(body) {
        Ok(c) => c,
        Err(reason) => return Reply::error(400, "illegal_argument_exception", &reason),
    };
    let total = creates.len();
    let mut items = Vec::with_capacity(total);
    let mut errors = false;
    for create in creates {
        // One draw per item, in request order, so a seed always rejects the same positions.
        let rejected = match st.item_429.as_mut() {
            Some((ratio, rng)) => rng.gen::<f64>() < *ratio,
            None => false,
        };
        let (status, error) = if rejected {
            let reason = format!(
                "rejected execution of processing of [indices:data/write/bulk[s][p]]: request: BulkShardRequest [[{}][0]] containing [{total}] requests (injected by the emulator)",
                create.index
            );
            (429, Some(cause("es_rejected_execution_exception", &reason)))
        } else if let Some(error) = injected_400(st, &create) {
            (400, Some(error))
        } else {
            let target = st.targets.entry(create.index.clone()).or_default();
            if target.ids.insert(create.id.clone()) {
                target.order.push(create.id.clone());
                (201, None)
            } else {
                let reason = format!(
                    "[{}]: version conflict, document already exists (current version [1])",
                    create.id
                );
                (
                    409,
                    Some(cause("version_conflict_engine_exception", &reason)),
                )
            }
        };
        let stats = &mut st.bulk_stats;
        stats.items += 1;
        match status {
            201 => stats.created_201 += 1,
            409 => stats.conflicts_409 += 1,
            429 => stats.rejected_429 += 1,
            _ => stats.errors_400 += 1,
        }
        let mut item = json!({"_index": create.index, "_id": create.id, "status": status});
        match error {
            Some(e) => {
                errors = true;
                item["error"] = e;
            }
            None => {
                item["_version"] = json!(1);
                item["result"] = json!("created");
            }
        }
        items.push(json!({ "create": item }));
    }
    Reply::json(200, json!({"errors": errors, "took": 1, "items": items}))
}
