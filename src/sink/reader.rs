//! Reads the journal forward from a position, complete lines only. A partial last line is
//! left for later while its segment is the newest (the writer is mid-line); in an older
//! segment it was torn by a crash and is skipped with a warning.

use super::checkpoint::Position;
use super::journal::{segment_name, segments};
use bytes::Bytes;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// One journal line and the position just after it.
#[derive(Debug, Clone)]
pub(crate) struct JournalLine {
    pub line: Bytes,
    pub end: Position,
}

pub(crate) struct JournalReader {
    dir: PathBuf,
    pos: Position,
    /// Lines skipped because a crash tore them.
    pub torn: u64,
}

impl JournalReader {
    pub fn new(dir: &Path, pos: Position) -> Self {
        Self {
            dir: dir.to_owned(),
            pos,
            torn: 0,
        }
    }

    /// Up to `max_docs` lines / about `max_bytes` bytes from the current position.
    pub(crate) fn read_batch(
        &mut self,
        max_docs: usize,
        max_bytes: usize,
    ) -> io::Result<Vec<JournalLine>> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        loop {
            let segs = segments(&self.dir)?;
            // Start at the first segment at or after the position (older ones are shipped).
            let Some((seg, _)) = segs.iter().find(|(n, _)| *n >= self.pos.segment).cloned() else {
                return Ok(out);
            };
            if seg != self.pos.segment {
                self.pos = Position {
                    segment: seg,
                    offset: 0,
                };
            }
            let newer_exists = segs.iter().any(|(n, _)| *n > seg);
            let path = self.dir.join(segment_name(seg));
            let mut r = BufReader::with_capacity(256 * 1024, File::open(&path)?);
            r.seek(SeekFrom::Start(self.pos.offset))?;
            let mut buf = Vec::new();
            loop {
                if out.len() >= max_docs || bytes >= max_bytes {
                    return Ok(out);
                }
                buf.clear();
                let n = r.read_until(b'\n', &mut buf)?;
                if n == 0 {
                    break; // end of segment
                }
                if buf.last() != Some(&b'\n') {
                    if newer_exists {
                        self.torn += 1;
                        tracing::warn!(segment = %path.display(), offset = self.pos.offset, bytes = n, "skipping a journal line torn by a crash");
                        self.pos.offset += n as u64;
                        break;
                    }
                    return Ok(out); // the writer is mid-line: read it next time
                }
                self.pos.offset += n as u64;
                buf.pop();
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                }
                if buf.is_empty() {
                    continue;
                }
                bytes += buf.len();
                out.push(JournalLine {
                    line: Bytes::copy_from_slice(&buf),
                    end: self.pos,
                });
            }
            if !newer_exists {
                return Ok(out);
            }
            self.pos = Position {
                segment: seg + 1,
                offset: 0,
            };
        }
    }

    /// Complete lines from the current position to the end of the journal (for "unshipped").
    pub(crate) fn count_remaining(dir: &Path, from: Position) -> io::Result<u64> {
        let mut r = JournalReader::new(dir, from);
        let mut n = 0;
        loop {
            let batch = r.read_batch(10_000, usize::MAX)?;
            if batch.is_empty() {
                return Ok(n);
            }
            n += batch.len() as u64;
        }
    }
}

/// What the metrics read of shipping at scrape.
impl crate::metrics::ShippingCounters for super::shipper::ShipperCounters {
    fn snapshot(&self) -> crate::metrics::ShippingSnapshot {
        let position = self.position;
        crate::metrics::ShippingSnapshot {
            bulk_statuses: self.bulk_statuses.clone(),
            stored: self.stored,
            duplicates: self.duplicates,
            dead_lettered: self.dead_lettered,
            paused: self.paused.is_some() || self.outage_since.is_some(),
            lines_done: self.lines_done,
            oldest_unshipped: Box::new(move |dir| timestamp_at(dir, position)),
        }
    }
}

/// `@timestamp` of the first complete line at or after `from` (the oldest unshipped result
/// when `from` is the shipping position); None when there is none or it cannot be read.
pub(crate) fn timestamp_at(dir: &Path, from: Position) -> Option<chrono::DateTime<chrono::Utc>> {
    #[derive(serde::Deserialize)]
    struct Stamp {
        #[serde(rename = "@timestamp")]
        timestamp: chrono::DateTime<chrono::Utc>,
    }
    let line = JournalReader::new(dir, from)
        .read_batch(1, 1)
        .ok()?
        .into_iter()
        .next()?;
    serde_json::from_slice::<Stamp>(&line.line)
        .ok()
        .map(|s| s.timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn reads_across_segments_and_resumes_from_a_position() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(segment_name(1)), "{\"a\":1}\n{\"a\":2}\n").unwrap();
        fs::write(d.path().join(segment_name(2)), "{\"a\":3}\n").unwrap();
        let mut r = JournalReader::new(d.path(), Position::default());
        let b = r.read_batch(2, usize::MAX).unwrap();
        assert_eq!(b.len(), 2);
        let mut r2 = JournalReader::new(d.path(), b[1].end);
        let rest = r2.read_batch(10, usize::MAX).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(&rest[0].line[..], b"{\"a\":3}");
        assert_eq!(
            JournalReader::count_remaining(d.path(), b[0].end).unwrap(),
            2
        );
    }

    #[test]
    fn leaves_a_partial_line_of_the_newest_segment_for_later() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(segment_name(1));
        fs::write(&p, "{\"a\":1}\n{\"a\":").unwrap();
        let mut r = JournalReader::new(d.path(), Position::default());
        assert_eq!(r.read_batch(10, usize::MAX).unwrap().len(), 1);
        assert_eq!(r.read_batch(10, usize::MAX).unwrap().len(), 0);
        fs::write(&p, "{\"a\":1}\n{\"a\":2}\n").unwrap();
        assert_eq!(r.read_batch(10, usize::MAX).unwrap().len(), 1);
    }

    #[test]
    fn skips_a_torn_line_of_an_older_segment() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(segment_name(1)), "{\"a\":1}\n{\"a\":").unwrap();
        fs::write(d.path().join(segment_name(2)), "{\"a\":3}\n").unwrap();
        let mut r = JournalReader::new(d.path(), Position::default());
        let b = r.read_batch(10, usize::MAX).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(r.torn, 1);
    }
}
