//! Cleanup that always runs: closers run last-in first-out, on `close` or
//! on drop (also while a test panics), each even when an earlier one failed
//! or panicked; their errors are collected into one.

use std::panic::{AssertUnwindSafe, catch_unwind};

type Closer = Box<dyn FnOnce() -> anyhow::Result<()> + Send>;

#[derive(Default)]
pub struct Closers {
    // A Mutex only to make Closers Sync (held in shared backends); every
    // method takes &mut self and uses get_mut.
    closers: std::sync::Mutex<Vec<(String, Closer)>>,
}

impl Closers {
    pub fn new() -> Self {
        Closers::default()
    }

    /// Adds a closer; it runs before every closer added earlier.
    pub fn push(&mut self, what: impl Into<String>, closer: impl FnOnce() -> anyhow::Result<()> + Send + 'static) {
        self.list().push((what.into(), Box::new(closer)));
    }

    /// Moves every closer of `other` here, to run before the ones already here.
    pub fn append(&mut self, mut other: Closers) {
        let mut theirs = std::mem::take(other.list());
        self.list().append(&mut theirs);
    }

    fn list(&mut self) -> &mut Vec<(String, Closer)> {
        self.closers.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn is_empty(&self) -> bool {
        self.closers.lock().map(|c| c.is_empty()).unwrap_or(true)
    }

    /// Runs every closer, newest first; fails naming each that failed.
    pub fn close(&mut self) -> anyhow::Result<()> {
        let mut failures = Vec::new();
        while let Some((what, closer)) = self.list().pop() {
            match catch_unwind(AssertUnwindSafe(closer)) {
                Ok(Ok(())) => {}
                Ok(Err(err)) => failures.push(format!("{what}: {err:#}")),
                Err(_) => failures.push(format!("{what}: panicked")),
            }
        }
        if failures.is_empty() { Ok(()) } else { anyhow::bail!("cleanup failed: {}", failures.join("; ")) }
    }
}

impl Drop for Closers {
    fn drop(&mut self) {
        if let Err(err) = self.close() {
            eprintln!("{err:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn run_lifo_all_of_them_and_collect_errors() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut closers = Closers::new();
        for i in 0..3 {
            let order = order.clone();
            closers.push(format!("closer {i}"), move || {
                order.lock().unwrap().push(i);
                if i == 1 { anyhow::bail!("boom") } else { Ok(()) }
            });
        }
        closers.push("panicking", || panic!("closer panic"));
        let err = closers.close().unwrap_err().to_string();
        assert_eq!(*order.lock().unwrap(), vec![2, 1, 0]);
        assert!(err.contains("closer 1: boom"), "{err}");
        assert!(err.contains("panicking: panicked"), "{err}");
        assert!(closers.is_empty());
    }

    #[test]
    fn run_on_drop() {
        let ran = Arc::new(Mutex::new(false));
        {
            let mut closers = Closers::new();
            let ran = ran.clone();
            closers.push("flag", move || {
                *ran.lock().unwrap() = true;
                Ok(())
            });
        }
        assert!(*ran.lock().unwrap());
    }
}
