//! Network namespaces as files: a thread unshares its network namespace and
//! bind-mounts `/proc/thread-self/ns/net` onto a file, then ends; the mount
//! keeps the namespace alive until it is unmounted.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};

/// Creates a new network namespace pinned at `path` (which must not exist).
pub fn create(path: &Path) -> anyhow::Result<()> {
    // An empty file to mount on; O_EXCL: two creators never share one.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create netns file {}", path.display()))?;
    let target = path.to_path_buf();
    // Privileged: unshare(CLONE_NEWNET) moves only this short-lived thread
    // into the new namespace; the rest of the process stays where it was.
    let result = std::thread::spawn(move || -> anyhow::Result<()> {
        // SAFETY: NEWNET only; the fd table is not unshared.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
            .map_err(|e| anyhow!("unshare(CLONE_NEWNET): {e}"))?;
        rustix::mount::mount_bind("/proc/thread-self/ns/net", &target)
            .map_err(|e| anyhow!("bind mount of the new netns on {}: {e}", target.display()))?;
        Ok(())
    })
    .join()
    .map_err(|_| anyhow!("netns creation thread panicked"))?;
    if let Err(e) = result {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(())
}

/// Pins the namespace pinned at `from` also at `to` (which must not exist).
pub fn rebind(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .with_context(|| format!("cannot create netns file {}", to.display()))?;
    if let Err(e) = rustix::mount::mount_bind(from, to) {
        let _ = std::fs::remove_file(to);
        return Err(anyhow!("bind mount of {} on {}: {e}", from.display(), to.display()));
    }
    Ok(())
}

/// Unmounts and removes a namespace file; a missing file is not an error.
pub fn destroy(path: &Path) -> anyhow::Result<()> {
    match rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH) {
        Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(anyhow!("cannot unmount netns {}: {e}", path.display())),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove netns file {}", path.display())),
    }
}

/// Whether `path` is a pinned network namespace (a mount of an nsfs inode).
pub fn is_netns(path: &Path) -> bool {
    match rustix::fs::statfs(path) {
        // NSFS_MAGIC
        Ok(st) => st.f_type as u64 == 0x6e73_6673,
        Err(_) => false,
    }
}

/// Runs `f` on a thread that has joined the namespace at `path`.
pub fn run_in<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let path: PathBuf = path.to_path_buf();
    std::thread::spawn(move || -> anyhow::Result<T> {
        let fd = rustix::fs::open(&path, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())
            .map_err(|e| anyhow!("cannot open netns {}: {e}", path.display()))?;
        // Privileged: setns(CLONE_NEWNET) for this thread only.
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&fd),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(|e| anyhow!("setns into {}: {e}", path.display()))?;
        f()
    })
    .join()
    .map_err(|_| anyhow!("netns thread panicked"))?
}
