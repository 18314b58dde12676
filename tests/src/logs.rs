//! Printing a daemon's log when a test fails.

use std::path::{Path, PathBuf};

/// Prints the file at `path` to stderr when dropped during a panic (a
/// failing test), and not otherwise.
pub struct PrintLogOnPanic {
    label: String,
    path: PathBuf,
}

impl PrintLogOnPanic {
    pub fn new(label: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        PrintLogOnPanic { label: label.into(), path: path.into() }
    }
}

impl Drop for PrintLogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_log(&self.label, &self.path);
        }
    }
}

/// Prints a log file to stderr between markers naming it.
pub fn print_log(label: &str, path: &Path) {
    let text = read_log(path);
    eprintln!("----- {label} log ({}) -----\n{text}\n----- end of {label} log -----", path.display());
}

/// The log's content, or a note saying why there is none.
pub fn read_log(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(data) => String::from_utf8_lossy(&data).into_owned(),
        Err(err) => format!("(no log: {err})"),
    }
}
