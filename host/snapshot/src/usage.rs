//! Disk usage of one directory tree, as containerd's `fs.DiskUsage`:
//! allocated blocks and inodes, each hardlinked inode counted once,
//! never following symlinks or crossing into other filesystems' mounts.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::Context;

use crate::Usage;

pub(crate) fn disk_usage(dir: &Path) -> anyhow::Result<Usage> {
    let root = std::fs::symlink_metadata(dir).with_context(|| format!("stat {}", dir.display()))?;
    let mut seen = HashSet::new();
    let mut usage = Usage::default();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current).with_context(|| format!("reading {}", current.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", current.display()))?;
            let meta = entry.metadata().with_context(|| format!("stat {}", entry.path().display()))?;
            if meta.dev() != root.dev() {
                continue;
            }
            if seen.insert(meta.ino()) {
                usage.inodes += 1;
                usage.size += meta.blocks() as i64 * 512;
            }
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    Ok(usage)
}
