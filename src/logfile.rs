//! The log for bug reports: connection events, faults, errors and refused commands, one line
//! each with wall-clock and session time, in a size-rotated file (`drivebench.log`, then
//! `drivebench.log.1` … `.3`, 1 MB each) under `$XDG_STATE_HOME/drivebench/` (by default
//! `~/.local/state/drivebench/`; `DRIVEBENCH_LOG_DIR` overrides). Logging is off until
//! [`init`] is called (the command line does; tests and library users stay silent), and a log
//! that cannot be written never stops the bench.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};

/// Bytes per log file before it rotates.
pub const FILE_BYTES: usize = 1_000_000;
/// Rotated files kept besides the current one.
pub const KEEP_FILES: usize = 3;

struct Log {
    path: PathBuf,
    file: Mutex<FileRotate<AppendCount>>,
}

static LOG: OnceLock<Log> = OnceLock::new();

/// Where the log goes by default.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DRIVEBENCH_LOG_DIR") {
        return Some(PathBuf::from(dir));
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(state.join("drivebench"))
}

/// Opens the log in `dir` (once per process). Returns the file's path, or why there is none.
pub fn init(dir: &Path) -> Result<PathBuf, String> {
    if let Some(log) = LOG.get() {
        return Ok(log.path.clone());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join("drivebench.log");
    // Fail here, not inside the rotating writer, if the place is not writable.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let file = FileRotate::new(
        &path,
        AppendCount::new(KEEP_FILES),
        ContentLimit::BytesSurpassed(FILE_BYTES),
        Compression::None,
        #[cfg(unix)]
        None,
    );
    let _ = LOG.set(Log { path: path.clone(), file: Mutex::new(file) });
    line("drivebench", &format!("started, version {}", env!("CARGO_PKG_VERSION")));
    Ok(path)
}

/// The log file, if logging is on.
pub fn path() -> Option<&'static Path> {
    LOG.get().map(|l| l.path.as_path())
}

/// Appends one line: wall-clock time (UTC), the source (a drive name, `app`, …), the text.
pub fn line(source: &str, text: &str) {
    let Some(log) = LOG.get() else { return };
    let stamp = humantime::format_rfc3339_millis(SystemTime::now());
    let text = text.replace('\n', " ⏎ ");
    if let Ok(mut f) = log.file.lock() {
        let _ = writeln!(f, "{stamp} [{source}] {text}");
        let _ = f.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_go_to_the_file_and_it_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = init(dir.path()).unwrap();
        assert_eq!(super::path(), Some(path.as_path()));
        line("drive1", "connected");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().any(|l| l.ends_with("[drive1] connected")), "{text}");
        let long = "x".repeat(1000);
        for _ in 0..(FILE_BYTES / 1000 + 10) {
            line("drive1", &long);
        }
        assert!(dir.path().join("drivebench.log.1").exists(), "rotated after {FILE_BYTES} bytes");
        assert!(std::fs::metadata(&path).unwrap().len() < FILE_BYTES as u64);
    }
}
