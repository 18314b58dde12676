//! A directory that paths are resolved in as if it were `/`: symlinks
//! (absolute or with `..`) never lead outside it.
//!
//! `openat2(RESOLVE_IN_ROOT)` does it in the kernel. Where openat2 is
//! refused (kernel < 5.6, seccomp returning ENOSYS/EPERM) the same walk is
//! done by hand: one `openat(O_PATH|O_NOFOLLOW)` per component, symlinks read
//! with `readlinkat` and re-walked from the root (absolute) or the current
//! directory (relative), `..` never above the root, at most 40 links.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

const MAX_SYMLINKS: usize = 40;

/// A path inside a root, as cleaned components (no `.`, `..`, or empty parts).
pub type Components = Vec<Vec<u8>>;

/// Cleans a path the way containerd does (`filepath.Join("/", name)`):
/// `.` and empty parts dropped, `..` removes the previous part and never
/// goes above the root.
pub fn clean(path: &[u8]) -> Components {
    let mut out: Components = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            p => out.push(p.to_vec()),
        }
    }
    out
}

pub fn join(components: &[Vec<u8>]) -> Vec<u8> {
    components.join(&b'/')
}

pub fn os(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

pub struct Root {
    fd: OwnedFd,
    openat2: AtomicBool,
}

impl Root {
    /// Opens `path` as a root (must be a directory; not followed if a symlink).
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(Root { fd, openat2: AtomicBool::new(true) })
    }

    /// Resolve without openat2 from now on (for tests of the fallback, and
    /// once the kernel refused it).
    pub fn disable_openat2(&self) {
        self.openat2.store(false, Ordering::Relaxed);
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// An `O_PATH` descriptor of the directory at `components`, symlinks
    /// resolved inside the root.
    pub fn open_dir(&self, components: &[Vec<u8>]) -> io::Result<OwnedFd> {
        if components.is_empty() {
            return Ok(rustix::fs::openat(&self.fd, ".", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?);
        }
        if self.openat2.load(Ordering::Relaxed) {
            let path = join(components);
            match rustix::fs::openat2(
                &self.fd,
                os(&path),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
            ) {
                Ok(fd) => return Ok(fd),
                // Refused: the kernel has no openat2, or a seccomp filter
                // answers ENOSYS/EPERM for it. Walk by hand from now on.
                Err(Errno::NOSYS | Errno::PERM) => {
                    tracing::debug!("openat2 refused; resolving paths component by component");
                    self.disable_openat2();
                }
                // A mount point crossed inside the root (NO_XDEV) is odd for
                // a snapshot but not unsafe: the manual walk handles it.
                // A missing component followed by `..` resolves for
                // containerd: the walk below treats missing parts lexically.
                Err(Errno::XDEV | Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.walk(components)
    }

    fn walk(&self, components: &[Vec<u8>]) -> io::Result<OwnedFd> {
        // `None`: a component that does not exist, kept lexically so that
        // a later `..` can leave it (containerd's `fs.RootPath` does the same).
        let mut stack: Vec<Option<OwnedFd>> = Vec::new();
        let mut pending: VecDeque<Vec<u8>> = components.iter().cloned().collect();
        let mut links = 0;
        while let Some(part) = pending.pop_front() {
            match part.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    stack.pop();
                    continue;
                }
                _ => {}
            }
            let cur = match stack.last() {
                Some(Some(fd)) => fd.as_fd(),
                Some(None) => {
                    stack.push(None);
                    continue;
                }
                None => self.fd.as_fd(),
            };
            let fd = match rustix::fs::openat(cur, os(&part), OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    stack.push(None);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let st = rustix::fs::fstat(&fd)?;
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => stack.push(Some(fd)),
                FileType::Symlink => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(Errno::LOOP.into());
                    }
                    let target = rustix::fs::readlinkat(cur, os(&part), Vec::new())?;
                    let target = target.as_bytes();
                    if target.starts_with(b"/") {
                        stack.clear();
                    }
                    for (i, p) in target.split(|&b| b == b'/').enumerate() {
                        pending.insert(i, p.to_vec());
                    }
                }
                _ => return Err(Errno::NOTDIR.into()),
            }
        }
        match stack.pop() {
            Some(Some(fd)) => Ok(fd),
            Some(None) => Err(Errno::NOENT.into()),
            None => Ok(rustix::fs::openat(&self.fd, ".", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?),
        }
    }
}

/// `lstat` of `name` in `dir`; `None` when absent.
pub fn lstat_at(dir: impl AsFd, name: &[u8]) -> io::Result<Option<rustix::fs::Stat>> {
    match rustix::fs::statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Removes `name` in `dir` and, if it is a directory, everything below it.
/// Never follows symlinks.
pub fn remove_all(dir: impl AsFd, name: &[u8]) -> io::Result<()> {
    let dir = dir.as_fd();
    match rustix::fs::unlinkat(dir, os(name), AtFlags::empty()) {
        Ok(()) => return Ok(()),
        Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR | Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    let child = match rustix::fs::openat(dir, os(name), OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    empty_dir(&child)?;
    match rustix::fs::unlinkat(dir, os(name), AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes everything in the directory `dir`.
pub fn empty_dir(dir: &OwnedFd) -> io::Result<()> {
    for name in list_dir(dir)? {
        remove_all(dir, &name)?;
    }
    Ok(())
}

/// Names in a directory, without `.` and `..`.
pub fn list_dir(dir: impl AsFd) -> io::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    // Works for O_PATH descriptors too.
    let fd = rustix::fs::openat(dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let reader = rustix::fs::Dir::new(fd)?;
    for entry in reader {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push(name.to_vec());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_clamps_at_root() {
        let c = |p: &str| String::from_utf8(join(&clean(p.as_bytes()))).unwrap();
        assert_eq!(c("./a//b/"), "a/b");
        assert_eq!(c("../../etc/passwd"), "etc/passwd");
        assert_eq!(c("a/../../b"), "b");
        assert_eq!(c("/"), "");
        assert_eq!(c(".."), "");
        assert_eq!(c("dne/../.wh.etc"), ".wh.etc");
    }

    #[test]
    fn both_resolvers_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", root.join("rel")).unwrap();
        std::os::unix::fs::symlink("x/../../etc", root.join("updown")).unwrap();
        std::fs::create_dir(root.join("x")).unwrap();
        for manual in [false, true] {
            let r = Root::open(&root).unwrap();
            if manual {
                r.disable_openat2();
            }
            let etc_ino = std::fs::metadata(root.join("etc")).unwrap();
            for link in ["abs", "rel", "updown", "etc"] {
                let fd = r.open_dir(&clean(link.as_bytes())).unwrap();
                let st = rustix::fs::fstat(&fd).unwrap();
                use std::os::unix::fs::MetadataExt;
                assert_eq!(st.st_ino, etc_ino.ino(), "{link} manual={manual}");
            }
        }
    }
}
