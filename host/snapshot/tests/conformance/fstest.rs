//! The parts of continuity's `fstest` the conformance suite uses: appliers
//! (file operations applied to a directory) and a tree comparison (types,
//! modes, owners, contents, symlink targets, xattrs, hardlink identity).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

#[derive(Debug, Clone)]
pub enum Op {
    CreateFile(&'static str, Vec<u8>, u32),
    CreateDir(&'static str, u32),
    RemoveAll(&'static str),
    Chown(&'static str, u32, u32),
    Link(&'static str, &'static str),
    Rename(&'static str, &'static str),
    /// Owned paths for generated appliers.
    CreateFileAt(String, Vec<u8>, u32),
}

pub type Applier = Vec<Op>;

fn at(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

pub fn apply(root: &Path, ops: &[Op]) -> Result<()> {
    for op in ops {
        apply_one(root, op).with_context(|| format!("applying {op:?} in {}", root.display()))?;
    }
    Ok(())
}

fn apply_one(root: &Path, op: &Op) -> Result<()> {
    match op {
        Op::CreateFile(path, content, mode) => create_file(&at(root, path), content, *mode)?,
        Op::CreateFileAt(path, content, mode) => create_file(&at(root, path), content, *mode)?,
        Op::CreateDir(path, mode) => {
            let path = at(root, path);
            if !path.is_dir() {
                std::fs::create_dir(&path)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))?;
            }
        }
        Op::RemoveAll(path) => {
            let path = at(root, path);
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path)?,
                Ok(_) => std::fs::remove_file(&path)?,
                Err(_) => {}
            }
        }
        Op::Chown(path, uid, gid) => std::os::unix::fs::lchown(at(root, path), Some(*uid), Some(*gid))?,
        Op::Link(old, new) => std::fs::hard_link(at(root, old), at(root, new))?,
        Op::Rename(old, new) => rename(&at(root, old), &at(root, new))?,
    }
    Ok(())
}

/// rename(2), or what `mv` does when it fails with EXDEV: overlayfs
/// (without `redirect_dir`, as containerd mounts it) refuses to rename a
/// directory that comes from a lower layer, and applications copy instead.
/// (containerd's suite skips Rename on Linux for this reason.)
fn rename(old: &Path, new: &Path) -> Result<()> {
    match std::fs::rename(old, new) {
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let status = std::process::Command::new("cp").arg("-a").arg("--").arg(old).arg(new).status()?;
            anyhow::ensure!(status.success(), "cp -a {} {}: {status}", old.display(), new.display());
            std::fs::remove_dir_all(old)?;
            Ok(())
        }
        other => Ok(other?),
    }
}

fn create_file(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    std::fs::write(path, content)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    content: Option<Vec<u8>>,
    target: Option<PathBuf>,
    rdev: u64,
    xattrs: BTreeMap<String, Vec<u8>>,
}

struct Tree {
    entries: BTreeMap<PathBuf, Entry>,
    /// Paths sharing an inode, for inodes with several names.
    links: BTreeSet<Vec<PathBuf>>,
}

fn xattrs(path: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut names = vec![0u8; 64 * 1024];
    let len = match rustix::fs::llistxattr(path, &mut names[..]) {
        Ok(len) => len,
        Err(rustix::io::Errno::NOTSUP) => return Ok(BTreeMap::new()),
        Err(e) => return Err(e).with_context(|| format!("listxattr {}", path.display())),
    };
    let mut out = BTreeMap::new();
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let mut value = vec![0u8; 64 * 1024];
        let n = rustix::fs::lgetxattr(path, name.as_str(), &mut value[..]).with_context(|| format!("getxattr {name} {}", path.display()))?;
        value.truncate(n);
        out.insert(name, value);
    }
    Ok(out)
}

fn read_tree(root: &Path) -> Result<Tree> {
    let mut entries = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let meta = std::fs::symlink_metadata(&path)?;
            let rel = path.strip_prefix(root)?.to_path_buf();
            let ft = meta.file_type();
            let kind = if ft.is_dir() {
                pending.push(path.clone());
                "dir"
            } else if ft.is_file() {
                "file"
            } else if ft.is_symlink() {
                "symlink"
            } else {
                "special"
            };
            if ft.is_file() && meta.nlink() > 1 {
                inodes.entry(meta.ino()).or_default().push(rel.clone());
            }
            entries.insert(
                rel,
                Entry {
                    kind,
                    mode: if ft.is_symlink() { 0 } else { meta.mode() & 0o7777 },
                    uid: meta.uid(),
                    gid: meta.gid(),
                    content: if ft.is_file() { Some(std::fs::read(&path)?) } else { None },
                    target: if ft.is_symlink() { Some(std::fs::read_link(&path)?) } else { None },
                    rdev: meta.rdev(),
                    xattrs: xattrs(&path)?,
                },
            );
        }
    }
    let links = inodes
        .into_values()
        .filter(|paths| paths.len() > 1)
        .map(|mut paths| {
            paths.sort();
            paths
        })
        .collect();
    Ok(Tree { entries, links })
}

/// continuity's `CheckDirectoryEqual`: `Err` describing every difference.
pub fn check_directory_equal(expected: &Path, actual: &Path) -> Result<()> {
    let (a, b) = (read_tree(expected)?, read_tree(actual)?);
    let mut diffs = Vec::new();
    for (path, entry) in &a.entries {
        match b.entries.get(path) {
            None => diffs.push(format!("{}: missing", path.display())),
            Some(other) if other != entry => diffs.push(format!("{}: expected {entry:?}, found {other:?}", path.display())),
            Some(_) => {}
        }
    }
    for path in b.entries.keys().filter(|p| !a.entries.contains_key(*p)) {
        diffs.push(format!("{}: unexpected", path.display()));
    }
    if a.links != b.links {
        diffs.push(format!("hardlinks: expected {:?}, found {:?}", a.links, b.links));
    }
    if !diffs.is_empty() {
        bail!("{} differs from {}:\n  {}", actual.display(), expected.display(), diffs.join("\n  "));
    }
    Ok(())
}
