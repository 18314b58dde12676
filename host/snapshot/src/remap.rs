//! Remapped snapshots for user namespaces, as containerd's
//! `WithRemappedSnapshot`/`WithRemappedSnapshotView`: the committed
//! snapshot `<parent>-<uid>-<gid>` is the parent with every owner shifted
//! by (uid, gid) (container root becomes host `uid`), created once and
//! reused by every container with the same mapping.
//!
//! The shift is done with `lchown` through a directory-fd walk that never
//! follows a symlink; setuid/setgid bits cleared by chown are restored.
//!
//! [`prepare_idmapped`] avoids the copy where the kernel can: the bind or
//! overlay mount gets `uidmap=`/`gidmap=` options (containerd 2's
//! spelling) and [`crate::mount`] makes it an idmapped mount (for overlay,
//! every layer idmapped); on-disk owners stay unshifted. fuse-overlayfs
//! falls back to the chown path.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use anyhow::Context;
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Uid};

use crate::mount::Mounted;
use crate::{Error, Kind, Labels, Mount, Result, Snapshotter};

/// The name of `parent` remapped to (uid, gid).
pub fn remapped_name(parent: &str, uid: u32, gid: u32) -> String {
    format!("{parent}-{uid}-{gid}")
}

/// The committed remapped snapshot of `parent`, created when missing.
pub fn ensure_remapped(sn: &dyn Snapshotter, parent: &str, uid: u32, gid: u32) -> Result<String> {
    let name = remapped_name(parent, uid, gid);
    match sn.stat(&name) {
        Ok(info) if info.kind == Kind::Committed => return Ok(name),
        Ok(info) => {
            return Err(Error::FailedPrecondition(format!(
                "{name:?} exists but is {} rather than a committed remapped snapshot",
                info.kind.filter_name()
            )));
        }
        Err(Error::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let key = format!("{name}-remap-{}-{nanos}", std::process::id());
    let mounts = sn.prepare(&key, Some(parent), Labels::new())?;
    let shifted = shift_mounted(&mounts, uid, gid);
    if let Err(err) = shifted {
        sn.remove(&key).ok();
        return Err(err);
    }
    match sn.commit(&name, &key, Labels::new()) {
        Ok(()) => Ok(name),
        // Another caller made it meanwhile: theirs is as good.
        Err(Error::AlreadyExists(_)) => {
            sn.remove(&key)?;
            Ok(name)
        }
        Err(e) => {
            sn.remove(&key).ok();
            Err(e)
        }
    }
}

/// containerd's `WithRemappedSnapshot`: an active `key` on the remapped parent.
pub fn prepare_remapped(sn: &dyn Snapshotter, key: &str, parent: &str, uid: u32, gid: u32, labels: Labels) -> Result<Vec<Mount>> {
    let remapped = ensure_remapped(sn, parent, uid, gid)?;
    sn.prepare(key, Some(&remapped), labels)
}

/// containerd's `WithRemappedSnapshotView`.
pub fn view_remapped(sn: &dyn Snapshotter, key: &str, parent: &str, uid: u32, gid: u32, labels: Labels) -> Result<Vec<Mount>> {
    let remapped = ensure_remapped(sn, parent, uid, gid)?;
    sn.view(key, Some(&remapped), labels)
}

/// The container's id range (`0:HOST:SIZE`) mapped by an idmapped mount.
pub const IDMAP_SIZE: u32 = 65536;

/// An active `key` on `parent` whose owners appear shifted by (uid, gid):
/// an idmapped bind or overlay mount when the kernel supports idmapped
/// mounts on the snapshotter's filesystem, else
/// [`prepare_remapped`] (a chowned `<parent>-<uid>-<gid>` parent).
pub fn prepare_idmapped(sn: &dyn Snapshotter, key: &str, parent: &str, uid: u32, gid: u32, labels: Labels, idmapped_supported: bool) -> Result<Vec<Mount>> {
    if idmapped_supported {
        let mut mounts = sn.prepare(key, Some(parent), labels.clone())?;
        if mounts.len() == 1 && (mounts[0].kind == "bind" || mounts[0].kind == "overlay") {
            mounts[0].options.push(format!("uidmap=0:{uid}:{IDMAP_SIZE}"));
            mounts[0].options.push(format!("gidmap=0:{gid}:{IDMAP_SIZE}"));
            return Ok(mounts);
        }
        sn.remove(key)?;
    }
    prepare_remapped(sn, key, parent, uid, gid, labels)
}

fn shift_mounted(mounts: &[Mount], uid: u32, gid: u32) -> Result<()> {
    let dir = std::env::temp_dir().join(format!(
        "berth-remap-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
    ));
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display())).map_err(Error::Other)?;
    let result = (|| -> anyhow::Result<()> {
        let mounted = Mounted::new(mounts, &dir)?;
        shift_owners(mounted.path(), uid, gid)?;
        mounted.unmount()
    })();
    std::fs::remove_dir(&dir).ok();
    result.map_err(Error::Other)
}

/// Shifts the owner of `root` and everything under it by (uid, gid),
/// never following symlinks.
pub fn shift_owners(root: &Path, uid: u32, gid: u32) -> anyhow::Result<()> {
    let fd = rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
        .with_context(|| format!("opening {}", root.display()))?;
    shift_one(&fd, c"", uid, gid, root)?;
    shift_dir(fd, uid, gid, root)
}

fn shifted(id: u32, by: u32, path: &Path) -> anyhow::Result<u32> {
    id.checked_add(by).filter(|v| *v != u32::MAX).with_context(|| format!("{}: owner {id} + {by} overflows", path.display()))
}

/// Shifts the entry `name` of `dir` (`dir` itself when `name` is empty).
fn shift_one(dir: &OwnedFd, name: &std::ffi::CStr, uid: u32, gid: u32, path: &Path) -> anyhow::Result<FileType> {
    let flags = if name.is_empty() { AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW } else { AtFlags::SYMLINK_NOFOLLOW };
    let st = rustix::fs::statat(dir.as_fd(), name, flags).with_context(|| format!("stat {}", path.display()))?;
    let (new_uid, new_gid) = (shifted(st.st_uid, uid, path)?, shifted(st.st_gid, gid, path)?);
    rustix::fs::chownat(dir.as_fd(), name, Some(Uid::from_raw(new_uid)), Some(Gid::from_raw(new_gid)), flags)
        .with_context(|| format!("chown {}", path.display()))?;
    let file_type = FileType::from_raw_mode(st.st_mode);
    let special = st.st_mode & 0o6000;
    if special != 0 && file_type != FileType::Symlink {
        // chown cleared setuid/setgid; put the mode back (never a symlink here).
        let mode = Mode::from_raw_mode(st.st_mode & 0o7777);
        if name.is_empty() {
            rustix::fs::fchmod(dir.as_fd(), mode)
        } else {
            rustix::fs::chmodat(dir.as_fd(), name, mode, AtFlags::empty())
        }
        .with_context(|| format!("chmod {}", path.display()))?;
    }
    Ok(file_type)
}

fn shift_dir(fd: OwnedFd, uid: u32, gid: u32, path: &Path) -> anyhow::Result<()> {
    let mut entries = Vec::new();
    for entry in rustix::fs::Dir::read_from(&fd).with_context(|| format!("reading {}", path.display()))? {
        let entry = entry.with_context(|| format!("reading {}", path.display()))?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            entries.push(name.to_owned());
        }
    }
    for name in entries {
        let child_path = path.join(std::ffi::OsStr::new(&*name.to_string_lossy()));
        if shift_one(&fd, &name, uid, gid, &child_path)? == FileType::Directory {
            let child = rustix::fs::openat(fd.as_fd(), &name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                .with_context(|| format!("opening {}", child_path.display()))?;
            shift_dir(child, uid, gid, &child_path)?;
        }
    }
    Ok(())
}
