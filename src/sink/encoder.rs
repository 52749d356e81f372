//! Encoder: a journal line → a bulk `create` action with its `_index` (data stream) and
//! deterministic `_id` (the document's `event.id`), the line itself as the source.

use bytes::Bytes;
use serde::Deserialize;

/// One document ready for `_bulk`.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkDoc {
    /// Data stream (`iaso-checks-lab`, …).
    pub index: String,
    /// `_id` = `event.id`.
    pub id: String,
    /// The journal line, unchanged (without newline).
    pub source: Bytes,
}

impl BulkDoc {
    /// The action line of this document.
    pub(crate) fn action_line(&self) -> Bytes {
        let v = serde_json::json!({"create": {"_index": self.index, "_id": self.id}});
        Bytes::from(serde_json::to_vec(&v).expect("plain json"))
    }
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "@timestamp")]
    timestamp: Option<serde::de::IgnoredAny>,
    event: Option<HeadEvent>,
    service: Option<HeadService>,
    data_stream: Option<HeadDataStream>,
}

#[derive(Deserialize)]
struct HeadDataStream {
    #[serde(rename = "type")]
    kind: String,
    dataset: String,
    namespace: String,
}

#[derive(Deserialize)]
struct HeadEvent {
    id: Option<String>,
    dataset: Option<String>,
}

#[derive(Deserialize)]
struct HeadService {
    environment: Option<String>,
}

/// Why a journal line cannot become a bulk document (it goes to the dead-letter file).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    #[error("journal line is not valid JSON: {0}")]
    Json(String),
    #[error("journal line lacks {0}")]
    Missing(&'static str),
    #[error("journal line has an unknown event.dataset `{0}`")]
    Dataset(String),
}

/// Encodes one journal line: to `<data_stream.type>-<data_stream.dataset>-<data_stream.namespace>`,
/// or, for a line written before documents carried `data_stream.*`, to the legacy stream
/// (`iaso-checks-<env>`, `iaso-jobs-<env>`) whose template still maps it.
pub fn encode(line: Bytes) -> Result<BulkDoc, EncodeError> {
    let head: Head = serde_json::from_slice(&line).map_err(|e| EncodeError::Json(e.to_string()))?;
    if head.timestamp.is_none() {
        return Err(EncodeError::Missing("@timestamp"));
    }
    let ev = head.event.ok_or(EncodeError::Missing("event"))?;
    let id = ev.id.ok_or(EncodeError::Missing("event.id"))?;
    let dataset = ev.dataset.ok_or(EncodeError::Missing("event.dataset"))?;
    let env = head
        .service
        .and_then(|s| s.environment)
        .ok_or(EncodeError::Missing("service.environment"))?;
    let prefix = match dataset.as_str() {
        "iaso.checks" => "iaso-checks",
        "iaso.jobs" => "iaso-jobs",
        other => return Err(EncodeError::Dataset(other.to_owned())),
    };
    let index = match head.data_stream {
        Some(ds) => format!("{}-{}-{}", ds.kind, ds.dataset, ds.namespace),
        None => format!("{prefix}-{env}"),
    };
    Ok(BulkDoc {
        index,
        id,
        source: line,
    })
}

/// The NDJSON body of a bulk request (each element is one line; the client adds newlines).
pub fn body(docs: &[BulkDoc]) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(docs.len() * 2);
    for d in docs {
        out.push(d.action_line());
        out.push(d.source.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Action, Outcome, ResultContext};

    #[test]
    fn encodes_a_result_into_its_data_stream_with_its_id() {
        let r = ResultContext::new("r", "qualif", "o").result(Action::JobEnd, Outcome::Success);
        let line = Bytes::from(serde_json::to_vec(&r).unwrap());
        let d = encode(line.clone()).unwrap();
        assert_eq!(d.index, "logs-iaso.jobs-qualif");
        assert_eq!(d.id, r.event.id);
        assert_eq!(d.source, line);
        assert_eq!(
            &d.action_line()[..],
            format!(
                "{{\"create\":{{\"_id\":\"{}\",\"_index\":\"logs-iaso.jobs-qualif\"}}}}",
                r.event.id
            )
            .as_bytes()
        );
    }

    #[test]
    fn a_line_without_data_stream_fields_goes_to_the_legacy_stream() {
        let mut r = ResultContext::new("r", "qualif", "o").result(Action::JobEnd, Outcome::Success);
        r.data_stream = None;
        let d = encode(Bytes::from(serde_json::to_vec(&r).unwrap())).unwrap();
        assert_eq!(d.index, "iaso-jobs-qualif");
    }

    #[test]
    fn rejects_lines_that_are_not_results() {
        assert!(matches!(
            encode(Bytes::from_static(b"{\"a\":")),
            Err(EncodeError::Json(_))
        ));
        assert_eq!(
            encode(Bytes::from_static(b"{\"event\":{}}")),
            Err(EncodeError::Missing("@timestamp"))
        );
    }
}
