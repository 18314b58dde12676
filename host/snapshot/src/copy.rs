//! A full copy of a directory tree for the native snapshotter: contents,
//! owners, modes (setuid kept: owner is set before mode), xattrs (after the
//! owner, so `security.capability` survives), hardlinks as hardlinks,
//! symlinks, devices, fifos, sockets, and timestamps (directories last).
//! The source is a snapshot of this snapshotter: trusted, not changing.

use std::collections::HashMap;
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, Timespec, Timestamps, Uid};

pub(crate) fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let mut links = HashMap::new();
    let mut dirs = Vec::new();
    let root = std::fs::symlink_metadata(src).with_context(|| format!("stat {}", src.display()))?;
    copy_dir(src, dst, &root, &mut links, &mut dirs)?;
    // Deepest first: setting a directory's times must follow every change inside it.
    for (path, meta) in dirs.iter().rev() {
        set_times(path, meta)?;
    }
    Ok(())
}

fn copy_dir(
    src: &Path,
    dst: &Path,
    meta: &Metadata,
    links: &mut HashMap<(u64, u64), PathBuf>,
    dirs: &mut Vec<(PathBuf, Metadata)>,
) -> Result<()> {
    set_attributes(src, dst, meta, false)?;
    dirs.push((dst.to_path_buf(), meta.clone()));
    for entry in std::fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let entry = entry.with_context(|| format!("reading {}", src.display()))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&from).with_context(|| format!("stat {}", from.display()))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            std::fs::create_dir(&to).with_context(|| format!("creating {}", to.display()))?;
            copy_dir(&from, &to, &meta, links, dirs)?;
            continue;
        }
        if meta.nlink() > 1 {
            if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                std::fs::hard_link(first, &to).with_context(|| format!("linking {} to {}", to.display(), first.display()))?;
                continue;
            }
            links.insert((meta.dev(), meta.ino()), to.clone());
        }
        if kind.is_file() {
            std::fs::copy(&from, &to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&from).with_context(|| format!("reading link {}", from.display()))?;
            std::os::unix::fs::symlink(&target, &to).with_context(|| format!("creating symlink {}", to.display()))?;
        } else {
            let file_type = if kind.is_char_device() {
                FileType::CharacterDevice
            } else if kind.is_block_device() {
                FileType::BlockDevice
            } else if kind.is_fifo() {
                FileType::Fifo
            } else {
                FileType::Socket
            };
            rustix::fs::mknodat(CWD, &to, file_type, Mode::from_raw_mode(meta.mode() & 0o7777), meta.rdev())
                .with_context(|| format!("creating node {}", to.display()))?;
        }
        set_attributes(&from, &to, &meta, kind.is_symlink())?;
        set_times(&to, &meta)?;
    }
    Ok(())
}

/// Owner, then mode (chown clears setuid/setgid), then xattrs (chown clears
/// `security.capability`).
fn set_attributes(src: &Path, dst: &Path, meta: &Metadata, symlink: bool) -> Result<()> {
    rustix::fs::chownat(
        CWD,
        dst,
        Some(Uid::from_raw(meta.uid())),
        Some(Gid::from_raw(meta.gid())),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .with_context(|| format!("chown {}", dst.display()))?;
    if !symlink {
        rustix::fs::chmodat(CWD, dst, Mode::from_raw_mode(meta.mode() & 0o7777), AtFlags::empty())
            .with_context(|| format!("chmod {}", dst.display()))?;
    }
    copy_xattrs(src, dst)
}

fn copy_xattrs(src: &Path, dst: &Path) -> Result<()> {
    let mut names = vec![0u8; 64 * 1024];
    let len = match rustix::fs::llistxattr(src, &mut names[..]) {
        Ok(len) => len,
        Err(e) if e == rustix::io::Errno::NOTSUP => return Ok(()),
        Err(e) => return Err(io::Error::from(e)).with_context(|| format!("listing xattrs of {}", src.display())),
    };
    let mut value = vec![0u8; 64 * 1024];
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = std::ffi::OsStr::from_bytes(name);
        let n = rustix::fs::lgetxattr(src, name, &mut value[..])
            .with_context(|| format!("reading xattr {name:?} of {}", src.display()))?;
        match rustix::fs::lsetxattr(dst, name, &value[..n], rustix::fs::XattrFlags::empty()) {
            Ok(()) => {}
            // user.* xattrs cannot be set on symlinks; the copy keeps what the target fs allows.
            Err(e) if e == rustix::io::Errno::PERM || e == rustix::io::Errno::NOTSUP => {
                tracing::debug!("xattr {name:?} not copied to {}: {e}", dst.display());
            }
            Err(e) => return Err(io::Error::from(e)).with_context(|| format!("setting xattr {name:?} on {}", dst.display())),
        }
    }
    Ok(())
}

fn set_times(path: &Path, meta: &Metadata) -> Result<()> {
    let times = Timestamps {
        last_access: Timespec { tv_sec: meta.atime(), tv_nsec: meta.atime_nsec() as _ },
        last_modification: Timespec { tv_sec: meta.mtime(), tv_nsec: meta.mtime_nsec() as _ },
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).with_context(|| format!("setting times of {}", path.display()))
}
