//! Applying one (uncompressed) layer tar to a directory.
//!
//! Every operation is relative to a directory descriptor: an entry's parent
//! is resolved inside the root ([`Root::open_dir`]), its last component is
//! used with `*at` calls that never follow it. Semantics follow containerd's
//! `archive.Apply` (paths cleaned as `filepath.Join("/", name)`, entries that
//! resolve to the root ignored, an existing non-directory replaced), with
//! OCI whiteouts either applied (plain directory) or converted to overlay
//! whiteouts (overlay upper directory).

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use crate::root::{self, Components, Root, lstat_at, os, remove_all};
use crate::{Error, Result};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";

/// How whiteouts are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// The root is the whole filesystem: whited-out paths are deleted,
    /// opaque directories emptied of what lower layers put there.
    Plain,
    /// The root is an overlay upper dir: whiteouts become char devices 0/0,
    /// opaque directories get the opaque xattr (`user.overlay.opaque` when
    /// the overlay is mounted with `userxattr`, else `trusted.overlay.opaque`).
    Overlay { userxattr: bool },
}

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub whiteouts: WhiteoutMode,
    /// Overlay mode: the lower layers (nearest first). A parent directory
    /// missing in the upper dir is created with the owner, mode and times
    /// it has in the nearest lower layer that has it.
    pub lowers: Vec<std::path::PathBuf>,
    /// Resolve paths without openat2 (tests of the fallback).
    pub no_openat2: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions { whiteouts: WhiteoutMode::Plain, lowers: Vec::new(), no_openat2: false }
    }
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyStats {
    pub entries: u64,
    pub bytes: u64,
}

/// Applies the tar stream `tar` to the directory `root`.
pub fn apply_tar(root: &Root, tar: impl Read, opts: &ApplyOptions) -> Result<ApplyStats> {
    let lowers = opts
        .lowers
        .iter()
        .map(|l| Root::open(l).map_err(|e| Error::Other(anyhow::anyhow!("lower layer {}: {e}", l.display()))))
        .collect::<Result<Vec<_>>>()?;
    if opts.no_openat2 {
        root.disable_openat2();
        lowers.iter().for_each(Root::disable_openat2);
    }
    let mut applier = Applier {
        root,
        opts,
        lowers,
        unpacked: HashSet::new(),
        dirs: Vec::new(),
        cache: None,
        buf: vec![0u8; 128 << 10],
        stats: ApplyStats::default(),
    };
    let mut archive = tar::Archive::new(tar);
    let entries = archive.entries().map_err(|e| Error::InvalidArchive(format!("reading the tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::InvalidArchive(format!("tar header: {e}")))?;
        let name = entry.path_bytes().into_owned();
        applier
            .entry(&mut entry)
            .map_err(|e| e.context(format!("entry {:?}", String::from_utf8_lossy(&name))))?;
        applier.stats.entries += 1;
    }
    applier.restore_dir_times()?;
    Ok(applier.stats)
}

struct Applier<'a> {
    root: &'a Root,
    opts: &'a ApplyOptions,
    lowers: Vec<Root>,
    /// Paths (and their ancestors) this layer created: whiteouts and opaque
    /// markers in the same layer never remove them.
    unpacked: HashSet<Vec<u8>>,
    /// Directory times, set once every entry is in (creating files changes them).
    dirs: Vec<(Components, Timestamps)>,
    /// The last parent directory resolved: tars list siblings together.
    cache: Option<(Components, OwnedFd)>,
    buf: Vec<u8>,
    stats: ApplyStats,
}

struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    times: Timestamps,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl<'a> Applier<'a> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<()> {
        let kind = entry.header().entry_type();
        if matches!(kind, tar::EntryType::XGlobalHeader | tar::EntryType::XHeader) {
            return Ok(());
        }
        let path = root::clean(&entry.path_bytes());
        let Some((base, parent)) = path.split_last() else {
            tracing::debug!("entry resolves to the root; ignored");
            return Ok(());
        };
        let (base, parent) = (base.clone(), parent.to_vec());

        if base.starts_with(WHITEOUT_PREFIX) {
            if base == WHITEOUT_OPAQUE {
                return self.opaque(&parent);
            }
            if base.starts_with(WHITEOUT_META_PREFIX) {
                return Ok(()); // aufs metadata (.wh..wh.plnk ...)
            }
            let name = &base[WHITEOUT_PREFIX.len()..];
            if name.is_empty() || name == b"." || name == b".." {
                return Err(Error::InvalidArchive(format!("whiteout {:?} names no file", String::from_utf8_lossy(&base))));
            }
            return self.whiteout(&parent, name);
        }

        let meta = self.meta(entry)?;
        let dir = self.parent(&parent, true)?.expect("created");
        let mut existing = lstat_at(&dir, &base)?;
        let is_dir = kind == tar::EntryType::Directory;
        if let Some(st) = existing.take() {
            let existing_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
            if !(existing_dir && is_dir) {
                if existing_dir {
                    self.cache = None; // cached descriptors may be below it
                }
                remove_all(&dir, &base)?;
            } else {
                existing = Some(st);
            }
        }

        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let fd = rustix::fs::openat(
                    &dir,
                    os(&base),
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )?;
                let mut file = File::from(fd);
                let want = entry.size();
                let got = copy(entry, &mut file, &mut self.buf)?;
                if got != want {
                    return Err(Error::InvalidArchive(format!("truncated: {got} of {want} bytes")));
                }
                self.stats.bytes += got;
                rustix::fs::fchown(&file, Some(uid(meta.uid)), Some(gid(meta.gid)))?;
                rustix::fs::fchmod(&file, Mode::from_raw_mode(meta.mode))?;
                for (k, v) in &meta.xattrs {
                    rustix::fs::fsetxattr(&file, os(k), v, XattrFlags::empty())
                        .map_err(|e| Error::Other(anyhow::anyhow!("xattr {}: {e}", String::from_utf8_lossy(k))))?;
                }
                rustix::fs::futimens(&file, &meta.times)?;
            }
            tar::EntryType::Directory => {
                if existing.is_none() {
                    rustix::fs::mkdirat(&dir, os(&base), Mode::from_raw_mode(0o700))?;
                }
                let fd = rustix::fs::openat(&dir, os(&base), OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
                rustix::fs::fchown(&fd, Some(uid(meta.uid)), Some(gid(meta.gid)))?;
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(meta.mode))?;
                for (k, v) in &meta.xattrs {
                    rustix::fs::fsetxattr(&fd, os(k), v, XattrFlags::empty())
                        .map_err(|e| Error::Other(anyhow::anyhow!("xattr {}: {e}", String::from_utf8_lossy(k))))?;
                }
                self.dirs.push((path.clone(), meta.times));
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Error::InvalidArchive("symlink without a target".into()))?
                    .into_owned();
                rustix::fs::symlinkat(os(&target), &dir, os(&base))?;
                self.node_meta(&dir, &base, &meta, false)?;
            }
            tar::EntryType::Link => {
                let target = root::clean(
                    &entry.link_name_bytes().ok_or_else(|| Error::InvalidArchive("hardlink without a target".into()))?,
                );
                let Some((tbase, tparent)) = target.split_last() else {
                    return Err(Error::InvalidArchive("hardlink to the root".into()));
                };
                if target == path {
                    return Ok(());
                }
                let tdir = self
                    .parent(tparent, false)?
                    .ok_or_else(|| Error::InvalidArchive(format!("hardlink target {:?} does not exist", String::from_utf8_lossy(&root::join(&target)))))?;
                match lstat_at(&tdir, tbase)? {
                    None => {
                        return Err(Error::InvalidArchive(format!(
                            "hardlink target {:?} does not exist",
                            String::from_utf8_lossy(&root::join(&target))
                        )));
                    }
                    Some(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                        return Err(Error::InvalidArchive("hardlink to a directory".into()));
                    }
                    Some(_) => {}
                }
                // Flags 0: a symlink target is linked itself, never followed.
                rustix::fs::linkat(&tdir, os(tbase), &dir, os(&base), AtFlags::empty())?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (file_type, dev) = if kind == tar::EntryType::Fifo {
                    (FileType::Fifo, 0)
                } else {
                    let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                    let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                    // Linux dev_t: 12-bit major, 20-bit minor.
                    if major > 0xfff || minor > 0xfffff {
                        return Err(Error::InvalidArchive(format!("device number {major}:{minor} out of range")));
                    }
                    let t = if kind == tar::EntryType::Char { FileType::CharacterDevice } else { FileType::BlockDevice };
                    (t, rustix::fs::makedev(major, minor))
                };
                rustix::fs::mknodat(&dir, os(&base), file_type, Mode::from_raw_mode(0o600), dev)?;
                self.node_meta(&dir, &base, &meta, true)?;
            }
            other => {
                return Err(Error::InvalidArchive(format!("unsupported entry type {:?}", other)));
            }
        }
        let mut key = path;
        while !key.is_empty() {
            if !self.unpacked.insert(root::join(&key)) {
                break; // ancestors are in already
            }
            key.pop();
        }
        Ok(())
    }

    /// Owner, mode (unless a symlink), xattrs and times of a non-regular,
    /// non-directory node, by name in `dir`, not following it.
    fn node_meta(&self, dir: &OwnedFd, name: &[u8], meta: &Meta, chmod: bool) -> Result<()> {
        rustix::fs::chownat(dir, os(name), Some(uid(meta.uid)), Some(gid(meta.gid)), AtFlags::SYMLINK_NOFOLLOW)?;
        if chmod {
            // A device or fifo just created by us (not a symlink: chmodat follows).
            rustix::fs::chmodat(dir, os(name), Mode::from_raw_mode(meta.mode), AtFlags::empty())?;
        }
        if !meta.xattrs.is_empty() {
            // lsetxattr on the name below the parent's descriptor: one
            // component, not followed.
            let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
            path.extend_from_slice(name);
            for (k, v) in &meta.xattrs {
                rustix::fs::lsetxattr(os(&path), os(k), v, XattrFlags::empty())
                    .map_err(|e| Error::Other(anyhow::anyhow!("xattr {}: {e}", String::from_utf8_lossy(k))))?;
            }
        }
        rustix::fs::utimensat(dir, os(name), &meta.times, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<R>) -> Result<Meta> {
        let header = entry.header();
        let bad = |what: &str, e: io::Error| Error::InvalidArchive(format!("{what}: {e}"));
        let uid = header.uid().map_err(|e| bad("uid", e))?;
        let gid = header.gid().map_err(|e| bad("gid", e))?;
        let mode = header.mode().map_err(|e| bad("mode", e))? & 0o7777;
        let mtime = header.mtime().map_err(|e| bad("mtime", e))?;
        let mut mtime = Timespec { tv_sec: mtime as i64, tv_nsec: 0 };
        let mut atime = None;
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(|e| bad("pax header", e))? {
            for ext in pax {
                let ext = ext.map_err(|e| bad("pax header", e))?;
                let key = ext.key_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    // Overlay's own attributes would change how the
                    // snapshot is merged: never taken from a layer.
                    if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
                        continue;
                    }
                    xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                } else if key == b"mtime" {
                    mtime = parse_pax_time(ext.value_bytes()).unwrap_or(mtime);
                } else if key == b"atime" {
                    atime = parse_pax_time(ext.value_bytes());
                }
            }
        }
        let uid = u32::try_from(uid).map_err(|_| Error::InvalidArchive(format!("uid {uid} out of range")))?;
        let gid = u32::try_from(gid).map_err(|_| Error::InvalidArchive(format!("gid {gid} out of range")))?;
        if uid == u32::MAX || gid == u32::MAX {
            return Err(Error::InvalidArchive("owner -1 is not an id".into()));
        }
        Ok(Meta { uid, gid, mode, times: Timestamps { last_access: atime.unwrap_or(mtime), last_modification: mtime }, xattrs })
    }

    /// The directory at `components`. `create`: missing directories are
    /// made (0755 root-owned, or as in the nearest lower layer); else
    /// `None` when it does not exist.
    fn parent(&mut self, components: &[Vec<u8>], create: bool) -> Result<Option<OwnedFd>> {
        if let Some((cached, fd)) = &self.cache
            && cached.as_slice() == components
        {
            return Ok(Some(fd.try_clone()?));
        }
        let fd = match self.root.open_dir(components) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                if !create {
                    return Ok(None);
                }
                self.make_parents(components)?
            }
            Err(e) if e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) && !create => return Ok(None),
            Err(e) => {
                return Err(Error::Other(anyhow::anyhow!(
                    "resolving {:?} in the root: {e}",
                    String::from_utf8_lossy(&root::join(components))
                )));
            }
        };
        self.cache = Some((components.to_vec(), fd.try_clone()?));
        Ok(Some(fd))
    }

    fn make_parents(&mut self, components: &[Vec<u8>]) -> Result<OwnedFd> {
        let mut dir = self.root.open_dir(&[])?;
        for i in 1..=components.len() {
            match self.root.open_dir(&components[..i]) {
                Ok(fd) => dir = fd,
                Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                    let name = &components[i - 1];
                    if lstat_at(&dir, name)?.is_some() {
                        // A dangling symlink: containerd would create its
                        // target; refusing is the safer half of that.
                        return Err(Error::InvalidArchive(format!(
                            "parent {:?} is a dangling symlink",
                            String::from_utf8_lossy(&root::join(&components[..i]))
                        )));
                    }
                    let lower = self.lower_dir_meta(&components[..i]);
                    rustix::fs::mkdirat(&dir, os(name), Mode::from_raw_mode(0o755))?;
                    let fd = rustix::fs::openat(&dir, os(name), OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
                    if let Some(st) = lower {
                        rustix::fs::fchown(&fd, Some(uid(st.st_uid)), Some(gid(st.st_gid)))?;
                        rustix::fs::fchmod(&fd, Mode::from_raw_mode(st.st_mode & 0o7777))?;
                        let t = |s: i64, n: i64| Timespec { tv_sec: s, tv_nsec: n as _ };
                        let times = Timestamps {
                            last_access: t(st.st_atime, st.st_atime_nsec as i64),
                            last_modification: t(st.st_mtime, st.st_mtime_nsec as i64),
                        };
                        self.dirs.push((components[..i].to_vec(), times));
                    }
                    dir = fd;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(dir)
    }

    fn lower_dir_meta(&self, components: &[Vec<u8>]) -> Option<rustix::fs::Stat> {
        for lower in &self.lowers {
            if let Ok(fd) = lower.open_dir(components)
                && let Ok(st) = rustix::fs::fstat(&fd) {
                    return Some(st);
                }
        }
        None
    }

    fn exists_in_lowers(&self, components: &[Vec<u8>]) -> bool {
        self.lower_dir_meta(components).is_some()
    }

    fn whiteout(&mut self, parent: &[Vec<u8>], name: &[u8]) -> Result<()> {
        let mut path = parent.to_vec();
        path.push(name.to_vec());
        if self.unpacked.contains(&root::join(&path)) {
            return Ok(()); // whiteouts hide lower layers only
        }
        match self.opts.whiteouts {
            WhiteoutMode::Plain => {
                let Some(dir) = self.parent(parent, false)? else { return Ok(()) };
                if let Some(st) = lstat_at(&dir, name)? {
                    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                        self.cache = None;
                    }
                    remove_all(&dir, name)?;
                }
            }
            WhiteoutMode::Overlay { .. } => {
                let create = parent.is_empty() || self.exists_in_lowers(parent);
                let Some(dir) = self.parent(parent, create)? else { return Ok(()) };
                if lstat_at(&dir, name)?.is_some() {
                    self.cache = None;
                    remove_all(&dir, name)?;
                }
                rustix::fs::mknodat(&dir, os(name), FileType::CharacterDevice, Mode::empty(), rustix::fs::makedev(0, 0))?;
            }
        }
        Ok(())
    }

    fn opaque(&mut self, dir_path: &[Vec<u8>]) -> Result<()> {
        match self.opts.whiteouts {
            WhiteoutMode::Plain => {
                let Some(dir) = self.parent(dir_path, false)? else { return Ok(()) };
                self.cache = None;
                self.remove_not_unpacked(&dir, dir_path.to_vec())?;
            }
            WhiteoutMode::Overlay { userxattr } => {
                let Some(_) = self.parent(dir_path, true)? else { return Ok(()) };
                let fd = match dir_path.split_last() {
                    None => rustix::fs::openat(self.root.fd(), ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?,
                    Some((base, parent)) => {
                        let p = self.parent(parent, false)?.expect("exists");
                        rustix::fs::openat(&p, os(base), OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?
                    }
                };
                let name = if userxattr { "user.overlay.opaque" } else { "trusted.overlay.opaque" };
                rustix::fs::fsetxattr(&fd, name, b"y", XattrFlags::empty())
                    .map_err(|e| Error::Other(anyhow::anyhow!("setting {name}: {e}")))?;
            }
        }
        Ok(())
    }

    /// containerd's opaque handling: below `dir`, everything not created
    /// by this layer goes; directories this layer created are walked.
    fn remove_not_unpacked(&self, dir: &OwnedFd, path: Components) -> Result<()> {
        for name in root::list_dir(dir)? {
            let mut child = path.clone();
            child.push(name.clone());
            if !self.unpacked.contains(&root::join(&child)) {
                remove_all(dir, &name)?;
                continue;
            }
            let Some(st) = lstat_at(dir, &name)? else { continue };
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                let sub = rustix::fs::openat(dir, os(&name), OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
                self.remove_not_unpacked(&sub, child)?;
            }
        }
        Ok(())
    }

    fn restore_dir_times(&mut self) -> Result<()> {
        let dirs = std::mem::take(&mut self.dirs);
        for (path, times) in dirs.iter().rev() {
            let Some((base, parent)) = path.split_last() else { continue };
            let Some(dir) = self.parent(parent, false)? else { continue };
            match lstat_at(&dir, base)? {
                Some(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                    rustix::fs::utimensat(&dir, os(base), times, AtFlags::SYMLINK_NOFOLLOW)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn copy(from: &mut impl Read, to: &mut File, buf: &mut [u8]) -> Result<u64> {
    let mut n = 0u64;
    loop {
        let got = match from.read(buf) {
            Ok(0) => return Ok(n),
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::InvalidArchive(format!("reading file data: {e}"))),
        };
        to.write_all(&buf[..got])?;
        n += got as u64;
    }
}

fn parse_pax_time(v: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let tv_sec: i64 = secs.parse().ok()?;
    let mut nanos = 0i64;
    for (i, c) in frac.chars().take(9).enumerate() {
        nanos += c.to_digit(10)? as i64 * 10i64.pow(8 - i as u32);
    }
    if tv_sec < 0 && nanos > 0 {
        return Some(Timespec { tv_sec: tv_sec - 1, tv_nsec: (1_000_000_000 - nanos) as _ });
    }
    Some(Timespec { tv_sec, tv_nsec: nanos as _ })
}

fn uid(raw: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw_unchecked(raw)
}

fn gid(raw: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw_unchecked(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        let t = parse_pax_time(b"1700000000.5").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec as i64), (1_700_000_000, 500_000_000));
        assert_eq!(parse_pax_time(b"12").unwrap().tv_sec, 12);
        assert!(parse_pax_time(b"x").is_none());
    }
}
