//! Paying cgroup v1's attach grace period ahead of time.
//!
//! Moving a task between cgroups takes the kernel's global
//! `cgroup_threadgroup_rwsem` for writing. Unless the hierarchy was mounted
//! with `favordynmods`, the first writer after a quiet spell waits for an
//! RCU grace period (7-15 ms on the 2-core VM, HZ=250); writers within
//! roughly ten milliseconds of the last one pass at once. A container's
//! start pays that wait when its init helper is attached, with the init
//! waiting on it.
//!
//! [`AttachGracePeriod::start`] makes a berth thread take that wait instead,
//! early and in the background: the thread moves *itself* (one thread, by
//! its tid, through `tasks`) into a throwaway cgroup of its own in the pids
//! hierarchy; the cgroup is removed once the thread has left. Nothing else
//! is moved, no limit is set, and no cgroup but berth's own is written.
//! Started at berth's first moment (while the snapshot is prepared and the
//! spec assembled), the attach then finds the grace period passed.
//!
//! The kernel forgets a passed grace period one grace period after the last
//! writer: a wait paid too early would be paid again by the attach (seen:
//! 30 ms under load). So the thread keeps it passed: it writes itself into
//! its cgroup again every millisecond (a no-op move that passes at once)
//! until [`AttachGracePeriod::finish`], after the container's attaches, or
//! for two seconds at most. Meanwhile the host's forks and exits take the
//! rwsem's slower, atomic read path, as they do whenever any cgroup attach
//! is recent (and always under `favordynmods`).
//! cgroup v2 hosts are left alone (a single thread cannot be moved there
//! outside threaded cgroups, and v2 runtimes can create into the cgroup).

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the thread renews the passed grace period: well under the
/// shortest grace period (a few ticks).
const KEEP_PASSED_EVERY: Duration = Duration::from_millis(1);
/// The longest the thread keeps it passed when nobody finishes it.
const KEEP_PASSED_AT_MOST: Duration = Duration::from_secs(2);

/// A throwaway cgroup and the thread paying the grace period in it.
pub struct AttachGracePeriod {
    dir: PathBuf,
    /// Whether the thread got into the cgroup.
    thread: Option<JoinHandle<bool>>,
    /// Dropped to stop the thread.
    stop: Option<mpsc::Sender<()>>,
}

impl AttachGracePeriod {
    /// Starts paying the grace period; None where it does not apply (cgroup
    /// v2, no v1 pids hierarchy, not allowed to make a cgroup).
    pub fn start() -> Option<AttachGracePeriod> {
        if super::is_v2_host() {
            return None;
        }
        // The usual place first: a statfs instead of reading and parsing
        // mountinfo, on the path where every bit of delay delays the wait's
        // end. Directly under a /sys/fs/cgroup that is not cgroup2 (a tmpfs
        // on v1 hosts), a cgroup v1 filesystem is a hierarchy's root.
        if super::filesystem_type(c"/sys/fs/cgroup/pids") == Some(super::CGROUP_SUPER_MAGIC) {
            return Self::start_in(Path::new("/sys/fs/cgroup/pids"));
        }
        let hierarchies = super::v1_hierarchies().ok()?;
        let pids = hierarchies.iter().find(|(name, _)| name.split(',').any(|c| c == "pids"))?;
        Self::start_in(&pids.1)
    }

    fn start_in(hierarchy: &Path) -> Option<AttachGracePeriod> {
        let dir = hierarchy.join(format!("berth-grace-{}-{}", std::process::id(), unique()));
        std::fs::create_dir(&dir).ok()?;
        let tasks = dir.join("tasks");
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("berth-cgroup-grace".into())
            .spawn(move || {
                // SAFETY: plain syscall.
                let tid = unsafe { libc::gettid() }.to_string();
                let Ok(tasks) = std::fs::OpenOptions::new().write(true).open(&tasks) else { return false };
                // The first write is the wait; its success or failure
                // changes nothing for the container (the attach then waits
                // itself). Every later one renews the passed grace period.
                let mut moved = tasks.write_at(tid.as_bytes(), 0).is_ok();
                tracing::debug!(moved, "cgroup attach grace period paid");
                let until = Instant::now() + KEEP_PASSED_AT_MOST;
                while moved && Instant::now() < until {
                    match stopped.recv_timeout(KEEP_PASSED_EVERY) {
                        Err(mpsc::RecvTimeoutError::Timeout) => moved = tasks.write_at(tid.as_bytes(), 0).is_ok(),
                        _ => break,
                    }
                }
                moved
            });
        match thread {
            Ok(thread) => Some(AttachGracePeriod { dir, thread: Some(thread), stop: Some(stop) }),
            Err(_) => {
                let _ = std::fs::remove_dir(&dir);
                None
            }
        }
    }

    /// Stops the thread and removes its cgroup (also done on drop): call it
    /// once the container's attaches are done. Whether the thread got in
    /// (and so paid the wait) and stayed in.
    pub fn finish(mut self) -> bool {
        self.clean_up()
    }

    fn clean_up(&mut self) -> bool {
        drop(self.stop.take());
        let Some(thread) = self.thread.take() else { return false };
        let moved = thread.join().unwrap_or(false);
        // The thread's exit leaves the cgroup a moment after join returns
        // (the kernel clears the tid before it detaches the task).
        for _ in 0..200 {
            match std::fs::remove_dir(&self.dir) {
                Ok(()) => return moved,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return moved,
                Err(_) => std::thread::sleep(Duration::from_micros(250)),
            }
        }
        tracing::warn!("cannot remove the throwaway cgroup {}", self.dir.display());
        moved
    }
}

impl Drop for AttachGracePeriod {
    fn drop(&mut self) {
        let _ = self.clean_up();
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real cgroups (root, v1 pids hierarchy): the thread lands in the
    /// throwaway cgroup and stays there (keeping the grace period passed)
    /// until finish, after which the cgroup is gone.
    #[test]
    fn the_thread_moves_and_the_cgroup_goes() {
        // SAFETY: plain syscall.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIP: needs root");
            return;
        }
        let Some(grace) = AttachGracePeriod::start() else {
            eprintln!("SKIP: no cgroup v1 pids hierarchy here");
            return;
        };
        let dir = grace.dir.clone();
        assert!(dir.is_dir());
        // Longer than a grace period takes here, well under the 2 s cap.
        let mut inside = String::new();
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(20));
            inside = std::fs::read_to_string(dir.join("tasks")).unwrap();
            if !inside.trim().is_empty() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
        let still = std::fs::read_to_string(dir.join("tasks")).unwrap();
        assert_eq!(still.lines().count(), 1, "one thread, still inside 50 ms after it got in: {inside:?} then {still:?}");
        assert!(grace.finish(), "the thread did not get into {}", dir.display());
        assert!(!dir.exists(), "{} is left", dir.display());
    }
}
