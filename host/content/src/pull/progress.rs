//! Pull progress: bars on a terminal, one plain line per event otherwise.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Bars when stderr is a terminal, lines otherwise.
    Auto,
    Bars,
    Lines,
    Quiet,
}

/// Shared by the concurrent downloads of one pull.
pub struct Progress {
    inner: Inner,
}

enum Inner {
    Bars(MultiProgress),
    Lines(Mutex<()>),
    Quiet,
}

/// One blob's progress.
pub struct BlobProgress<'a> {
    progress: &'a Progress,
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
}

impl Progress {
    pub fn new(mode: ProgressMode) -> Progress {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bars,
            ProgressMode::Auto => ProgressMode::Lines,
            m => m,
        };
        let inner = match mode {
            ProgressMode::Bars => Inner::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            ProgressMode::Lines => Inner::Lines(Mutex::new(())),
            _ => Inner::Quiet,
        };
        Progress { inner }
    }

    /// A message outside any blob (resolved digest, platform chosen...).
    pub fn note(&self, msg: &str) {
        match &self.inner {
            Inner::Bars(m) => {
                let _ = m.println(msg);
            }
            Inner::Lines(lock) => self.line(lock, msg),
            Inner::Quiet => {}
        }
    }

    fn line(&self, lock: &Mutex<()>, msg: &str) {
        let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(std::io::stderr().lock(), "{msg}");
    }

    /// Starts tracking `digest`; `resumed` bytes were already on disk.
    pub fn blob(&self, kind: &str, digest: &str, total: u64, resumed: u64) -> BlobProgress<'_> {
        let label = format!("{kind} {}", short(digest));
        let bar = match &self.inner {
            Inner::Bars(m) => {
                let bar = m.add(ProgressBar::new(total));
                bar.set_style(
                    ProgressStyle::with_template("{msg:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                bar.set_message(label.clone());
                bar.set_position(resumed);
                Some(bar)
            }
            Inner::Lines(lock) => {
                let msg = if resumed > 0 {
                    format!("{label}: resuming at {resumed} of {total} bytes")
                } else {
                    format!("{label}: downloading {total} bytes")
                };
                self.line(lock, &msg);
                None
            }
            Inner::Quiet => None,
        };
        BlobProgress { progress: self, bar, label, total }
    }
}

impl BlobProgress<'_> {
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Back to zero (the server ignored the range).
    pub fn restart(&self) {
        if let Some(bar) = &self.bar {
            bar.set_position(0);
        }
    }

    pub fn done(self, from: &str) {
        match (&self.progress.inner, &self.bar) {
            (Inner::Bars(_), Some(bar)) => bar.finish_with_message(format!("{} done", self.label)),
            (Inner::Lines(lock), _) => self.progress.line(lock, &format!("{}: done ({} bytes from {from})", self.label, self.total)),
            _ => {}
        }
    }

    pub fn failed(self, why: &str) {
        match (&self.progress.inner, &self.bar) {
            (Inner::Bars(_), Some(bar)) => bar.abandon_with_message(format!("{} failed", self.label)),
            (Inner::Lines(lock), _) => self.progress.line(lock, &format!("{}: failed: {why}", self.label)),
            _ => {}
        }
    }
}

/// `sha256:0123456789ab`.
pub fn short(digest: &str) -> &str {
    let end = digest.find(':').map(|i| i + 13).unwrap_or(12).min(digest.len());
    &digest[..end]
}
