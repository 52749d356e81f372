//! Small files replaced whole: [`write_atomic`] is the one way a state file (checkpoint, job
//! handover, schedule state, dead-letter rewrite) is written, so a crash leaves the old
//! content or the new one, never half of it.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Replaces `path` with `bytes`: temporary file beside it (`<path>.tmp`), fsync, rename,
/// fsync of the folder (without it the rename itself may not survive a crash). Every error
/// names the file it was about.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// [`write_atomic`] of what `write` streams into the temporary file, through a buffer: a
/// large file (a million handed-over jobs: 200 MB of JSON) never sits whole in memory. On
/// an error the temporary file is removed and the old content kept.
pub(crate) fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = tmp_path(path);
    let written = File::create(&tmp).and_then(|f| {
        let mut w = io::BufWriter::with_capacity(1 << 16, f);
        write(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(named(&tmp)(e));
    }
    std::fs::rename(&tmp, path).map_err(named(path))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Best effort: some file systems refuse to open or fsync a directory.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The temporary file [`write_atomic`] writes before the rename.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

/// Prefixes an I/O error with the file it was about (keeping its kind).
pub fn named(p: &Path) -> impl Fn(io::Error) -> io::Error {
    let p = p.display().to_string();
    move |e: io::Error| io::Error::new(e.kind(), format!("{p}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_content_and_leaves_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        for (before, after) in [(None, "one"), (Some("old content"), "new"), (Some("x"), "")] {
            if let Some(b) = before {
                std::fs::write(&p, b).unwrap();
            }
            write_atomic(&p, after.as_bytes()).unwrap();
            assert_eq!(std::fs::read_to_string(&p).unwrap(), after);
            assert!(!tmp_path(&p).exists(), "{before:?} -> {after:?}");
        }
    }

    #[test]
    fn an_error_names_the_file_and_keeps_the_old_content() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("missing-dir").join("state.json");
        let e = write_atomic(&p, b"x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("state.json.tmp"), "{e}");
    }

    #[test]
    fn a_failed_streamed_write_keeps_the_old_content_and_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        std::fs::write(&p, "old").unwrap();
        let e = write_atomic_with(&p, |w| {
            w.write_all(&[b'x'; 100_000])?; // past the buffer: on disk already
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(e.to_string().contains("state.json.tmp: disk full"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old");
        assert!(!tmp_path(&p).exists());
        write_atomic_with(&p, |w| w.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
    }
}
