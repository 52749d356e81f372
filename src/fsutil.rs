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
    let tmp = tmp_path(path);
    {
        let mut f = File::create(&tmp).map_err(named(&tmp))?;
        f.write_all(bytes).map_err(named(&tmp))?;
        f.sync_all().map_err(named(&tmp))?;
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
}
