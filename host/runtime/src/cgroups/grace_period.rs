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
//! hierarchy, then exits; the cgroup is removed once it is empty. Nothing
//! else is moved, no limit is set, and no cgroup but berth's own is written.
//! Started ~10 ms before the container's attach (while the snapshot is
//! prepared and the spec assembled), the attach then finds the grace period
//! passed. When the timing misses, the attach simply waits as before.
//! cgroup v2 hosts are left alone (a single thread cannot be moved there
//! outside threaded cgroups, and v2 runtimes can create into the cgroup).

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

/// A throwaway cgroup and the thread paying the grace period in it.
pub struct AttachGracePeriod {
    dir: PathBuf,
    /// Whether the thread got into the cgroup.
    thread: Option<JoinHandle<bool>>,
}

impl AttachGracePeriod {
    /// Starts paying the grace period; None where it does not apply (cgroup
    /// v2, no v1 pids hierarchy, not allowed to make a cgroup).
    pub fn start() -> Option<AttachGracePeriod> {
        if super::is_v2_host() {
            return None;
        }
        let hierarchies = super::v1_hierarchies().ok()?;
        let pids = hierarchies.iter().find(|(name, _)| name.split(',').any(|c| c == "pids"))?;
        Self::start_in(&pids.1)
    }

    fn start_in(hierarchy: &Path) -> Option<AttachGracePeriod> {
        let dir = hierarchy.join(format!("berth-grace-{}-{}", std::process::id(), unique()));
        std::fs::create_dir(&dir).ok()?;
        let tasks = dir.join("tasks");
        let thread = std::thread::Builder::new()
            .name("berth-cgroup-grace".into())
            .spawn(move || {
                // SAFETY: plain syscall.
                let tid = unsafe { libc::gettid() };
                // This write is the wait; its success or failure changes
                // nothing for the container (the attach then waits itself).
                std::fs::write(&tasks, tid.to_string()).is_ok()
            });
        match thread {
            Ok(thread) => Some(AttachGracePeriod { dir, thread: Some(thread) }),
            Err(_) => {
                let _ = std::fs::remove_dir(&dir);
                None
            }
        }
    }

    /// Waits for the thread and removes its cgroup (also done on drop);
    /// whether the thread got in (and so paid the wait).
    pub fn finish(mut self) -> bool {
        self.clean_up()
    }

    fn clean_up(&mut self) -> bool {
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
    /// throwaway cgroup, and the cgroup is gone after finish.
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
        assert!(grace.finish(), "the thread did not get into {}", dir.display());
        assert!(!dir.exists(), "{} is left", dir.display());
    }
}
