//! The dead-letter file: documents Elasticsearch refused for good, one JSON record per line
//! (`@timestamp`, `error` {status, type, reason}, `_index`, `_id`, `document`). Written by the
//! shipper; read back by `iaso-probe ship --dead-letter`, which sends them again with the same
//! `_id` (so a document stored meanwhile answers 409, never a duplicate) and rewrites the file
//! with only those still refused.

use super::disk::DiskFaults;
use super::encoder::{self, BulkDoc};
use bytes::Bytes;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;

/// A document Elasticsearch will never take as it is.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub index: String,
    pub id: String,
    pub status: u16,
    pub error_type: String,
    pub reason: String,
    pub source: Bytes,
}

impl DeadLetter {
    /// `doc`, refused for good with this reason.
    pub fn refused(
        doc: BulkDoc,
        status: u16,
        error_type: impl Into<String>,
        reason: String,
    ) -> Self {
        Self {
            index: doc.index,
            id: doc.id,
            status,
            error_type: error_type.into(),
            reason,
            source: doc.source,
        }
    }

    fn record(&self, now: &str) -> serde_json::Value {
        let document =
            serde_json::from_slice::<serde_json::Value>(&self.source).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&self.source).into_owned())
            });
        serde_json::json!({
            "@timestamp": now,
            "error": {"status": self.status, "type": self.error_type, "reason": self.reason},
            "_index": self.index,
            "_id": self.id,
            "document": document,
        })
    }
}

fn named(path: &Path) -> impl Fn(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn encode_all(dead: &[DeadLetter]) -> Vec<u8> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut out = Vec::new();
    for d in dead {
        serde_json::to_writer(&mut out, &d.record(&now)).expect("plain json");
        out.push(b'\n');
    }
    out
}

/// Appends `dead` to the file at `path` and fsyncs it. All or nothing as far as the records
/// go: one write of whole lines (a full disk may cut it short; the reader skips a torn line).
pub fn append(path: &Path, dead: &[DeadLetter], faults: &DiskFaults) -> io::Result<()> {
    if dead.is_empty() {
        return Ok(());
    }
    let bytes = encode_all(dead);
    faults.check(bytes.len()).map_err(named(path))?;
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(named(path))?;
    f.write_all(&bytes).map_err(named(path))?;
    f.sync_data().map_err(named(path))?;
    for d in dead {
        tracing::warn!(id = %d.id, index = %d.index, status = d.status, error_type = %d.error_type, reason = %d.reason, file = %path.display(), "document refused by Elasticsearch, written to the dead-letter file");
    }
    Ok(())
}

/// What the file holds, for a re-send.
#[derive(Debug, Default)]
pub struct Contents {
    /// Documents to send again (same `_index` and `_id`, recomputed from the document).
    pub docs: Vec<BulkDoc>,
    /// Lines kept as they are: not a record, or a document that cannot be encoded (a journal
    /// line that was never valid JSON).
    pub kept: Vec<String>,
}

/// Reads the file (missing: empty).
pub fn read(path: &Path) -> io::Result<Contents> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Contents::default()),
        Err(e) => return Err(named(path)(e)),
    };
    let mut out = Contents::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let doc = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.get("document").filter(|d| d.is_object()).cloned())
            .and_then(|d| encoder::encode(Bytes::from(serde_json::to_vec(&d).ok()?)).ok());
        match doc {
            Some(d) => out.docs.push(d),
            None => out.kept.push(line.to_owned()),
        }
    }
    Ok(out)
}

/// Replaces the file with `kept` lines and the `dead` records (temporary file, fsync,
/// rename); nothing left → no file.
pub fn rewrite(
    path: &Path,
    kept: &[String],
    dead: &[DeadLetter],
    faults: &DiskFaults,
) -> io::Result<()> {
    if kept.is_empty() && dead.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(named(path)(e)),
            _ => Ok(()),
        };
    }
    let mut bytes = Vec::new();
    for k in kept {
        bytes.extend_from_slice(k.as_bytes());
        bytes.push(b'\n');
    }
    bytes.extend(encode_all(dead));
    super::disk::write_atomic(path, &bytes, faults)
}
