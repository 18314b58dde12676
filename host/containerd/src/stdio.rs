//! A task's stdout and stderr: FIFOs the shim writes and berth reads, then
//! relays, captures or appends to a log file.
//!
//! Not the shim's own `file://` log URI: containerd 1.6's runc shim writes
//! both streams through one file it closes when either stream ends, and
//! loses the other's tail (the containerd-api log trial caught it).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustix::fs::{CWD, Mode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// Where a task's output goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Stdio {
    /// Discarded.
    #[default]
    Null,
    /// Copied to this process's stdout and stderr while the task runs.
    Inherit,
    /// Collected in memory and returned when the task exits.
    Capture,
    /// Appended to `<dir>/<id>.log` (both streams, in arrival order) while
    /// berth waits for the task; the file outlives the container and
    /// `logs` reads it.
    LogDir(PathBuf),
}

/// What a task wrote, when captured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// The container label recording the log file of a `LogDir` container.
pub(crate) const LOG_PATH_LABEL: &str = "berth.io/log-path";

/// Copies one FIFO until EOF; returns what it kept.
type Copier = JoinHandle<std::io::Result<Vec<u8>>>;

/// The IO of one task, set up before the task is created.
pub(crate) struct TaskIo {
    pub stdout: String,
    pub stderr: String,
    pub log_path: Option<PathBuf>,
    /// stdout's and stderr's copier.
    copiers: Option<(Copier, Copier)>,
    _fifo_dir: Option<tempfile::TempDir>,
}

impl TaskIo {
    /// FIFOs or a log file for task `id`. FIFOs are opened for reading now
    /// (non-blocking; Linux reports no hang-up until a writer came), so the
    /// shim's blocking open for writing finds its reader.
    pub fn open(stdio: &Stdio, id: &str) -> anyhow::Result<TaskIo> {
        let mut io = TaskIo { stdout: String::new(), stderr: String::new(), log_path: None, copiers: None, _fifo_dir: None };
        match stdio {
            Stdio::Null => {}
            Stdio::Inherit | Stdio::Capture | Stdio::LogDir(_) => {
                let dir = tempfile::Builder::new().prefix("berth-io-").tempdir().context("creating a dir for the task's FIFOs")?;
                let (out_sink, err_sink) = match stdio {
                    Stdio::Capture => (Sink::Keep, Sink::Keep),
                    Stdio::LogDir(log_dir) => {
                        let path = log_path(log_dir, id)?;
                        let file = std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(&path)
                            .with_context(|| format!("opening log {}", path.display()))?;
                        let file = Arc::new(tokio::sync::Mutex::new(tokio::fs::File::from_std(file)));
                        io.log_path = Some(path);
                        (Sink::File(file.clone()), Sink::File(file))
                    }
                    _ => (Sink::Stdout, Sink::Stderr),
                };
                let stdout = make_fifo(dir.path(), &format!("{id}-stdout"))?;
                let stderr = make_fifo(dir.path(), &format!("{id}-stderr"))?;
                let out = tokio::spawn(copy(open_reader(&stdout)?, out_sink));
                let err = tokio::spawn(copy(open_reader(&stderr)?, err_sink));
                io.stdout = stdout.to_string_lossy().into_owned();
                io.stderr = stderr.to_string_lossy().into_owned();
                io.copiers = Some((out, err));
                io._fifo_dir = Some(dir);
            }
        }
        Ok(io)
    }

    /// Waits for the shim to close both FIFOs (the task exited and its
    /// output is drained) and returns what was captured.
    pub async fn finish(mut self) -> anyhow::Result<Output> {
        let Some((out, err)) = self.copiers.take() else { return Ok(Output::default()) };
        let stdout = out.await.context("stdout copier")?.context("reading the task's stdout")?;
        let stderr = err.await.context("stderr copier")?.context("reading the task's stderr")?;
        Ok(Output { stdout, stderr })
    }
}

impl Drop for TaskIo {
    fn drop(&mut self) {
        if let Some((out, err)) = self.copiers.take() {
            out.abort();
            err.abort();
        }
    }
}

/// `<dir>/<id>.log` with `dir` created and made absolute (the shim and
/// later `logs` calls run elsewhere).
pub(crate) fn log_path(dir: &Path, id: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating log dir {}", dir.display()))?;
    let dir = dir.canonicalize().with_context(|| format!("log dir {}", dir.display()))?;
    Ok(dir.join(format!("{id}.log")))
}

fn make_fifo(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    rustix::fs::mkfifoat(CWD, &path, Mode::from_raw_mode(0o600)).with_context(|| format!("creating FIFO {}", path.display()))?;
    Ok(path)
}

fn open_reader(path: &Path) -> anyhow::Result<tokio::net::unix::pipe::Receiver> {
    tokio::net::unix::pipe::OpenOptions::new()
        .open_receiver(path)
        .with_context(|| format!("opening FIFO {} for reading", path.display()))
}

enum Sink {
    Keep,
    Stdout,
    Stderr,
    File(Arc<tokio::sync::Mutex<tokio::fs::File>>),
}

async fn copy(mut from: impl AsyncRead + Unpin, sink: Sink) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(kept);
        }
        match sink {
            Sink::Keep => kept.extend_from_slice(&buf[..n]),
            Sink::Stdout => write_all(tokio::io::stdout(), &buf[..n]).await?,
            Sink::Stderr => write_all(tokio::io::stderr(), &buf[..n]).await?,
            Sink::File(ref file) => write_all(&mut *file.lock().await, &buf[..n]).await?,
        }
    }
}

async fn write_all(mut to: impl tokio::io::AsyncWrite + Unpin, data: &[u8]) -> std::io::Result<()> {
    to.write_all(data).await?;
    to.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The FIFO mechanics without containerd: the reader is open before any
    /// writer (as before the shim's open), sees no EOF until a writer came
    /// and went, and keeps stdout and stderr apart.
    #[tokio::test]
    async fn capture_reads_until_the_writer_closes() {
        let io = TaskIo::open(&Stdio::Capture, "c1").unwrap();
        let (stdout, stderr) = (PathBuf::from(&io.stdout), PathBuf::from(&io.stderr));
        let writer = std::thread::spawn(move || {
            let mut out = std::fs::OpenOptions::new().write(true).open(&stdout).unwrap();
            let mut err = std::fs::OpenOptions::new().write(true).open(&stderr).unwrap();
            out.write_all(b"hello ").unwrap();
            err.write_all(b"oops").unwrap();
            out.write_all(b"world").unwrap();
        });
        let output = io.finish().await.unwrap();
        writer.join().unwrap();
        assert_eq!(output, Output { stdout: b"hello world".to_vec(), stderr: b"oops".to_vec() });
    }

    #[tokio::test]
    async fn log_dir_appends_both_streams_to_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let io = TaskIo::open(&Stdio::LogDir(dir.path().join("logs")), "c2").unwrap();
        let path = dir.path().canonicalize().unwrap().join("logs/c2.log");
        assert_eq!(io.log_path.as_deref(), Some(path.as_path()));
        let (stdout, stderr) = (PathBuf::from(&io.stdout), PathBuf::from(&io.stderr));
        let writer = std::thread::spawn(move || {
            std::fs::OpenOptions::new().write(true).open(&stdout).unwrap().write_all(b"out\n").unwrap();
            std::fs::OpenOptions::new().write(true).open(&stderr).unwrap().write_all(b"err\n").unwrap();
        });
        let output = io.finish().await.unwrap();
        writer.join().unwrap();
        assert_eq!(output, Output::default(), "nothing kept in memory");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "out\nerr\n");
    }
}
