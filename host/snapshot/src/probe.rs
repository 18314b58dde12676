//! Host facts for the snapshotter-selector plugin, probed natively: is
//! overlayfs usable on the snapshot root (a real overlay mount is tried),
//! is `userxattr` needed, are fuse-overlayfs and /dev/fuse here, are we in
//! a user namespace, the root's filesystem type, the kernel version, the
//! snapshotters compiled in.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostFacts {
    /// An overlay mount with two lower dirs and an upper dir worked under the root.
    pub overlay_supported: bool,
    /// Why not, when it did not.
    pub overlay_error: Option<String>,
    /// overlayfs must be mounted with `userxattr` (in a user namespace).
    pub needs_userxattr: bool,
    pub fuse_overlayfs_binary: Option<PathBuf>,
    pub dev_fuse: bool,
    pub in_user_namespace: bool,
    /// An idmapped bind mount of a directory under the root worked.
    pub idmapped_mounts: bool,
    /// Of the snapshot root (`ext4`, `xfs`, `btrfs`, `tmpfs`, `overlay`...).
    pub filesystem_type: String,
    /// `uname -r`.
    pub kernel_version: String,
    /// Names `crate::open` accepts.
    pub snapshotters: Vec<String>,
}

impl HostFacts {
    /// Whether `name` can work here.
    pub fn usable(&self, name: &str) -> bool {
        match name {
            "overlayfs" => self.overlay_supported,
            "fuse-overlayfs" => self.fuse_overlayfs_binary.is_some() && self.dev_fuse,
            "native" => true,
            _ => false,
        }
    }
}

/// Probes the host for a snapshot root at `root` (created if missing; the
/// overlay trial runs in a temporary directory inside it).
pub fn probe(root: &Path) -> HostFacts {
    let in_userns = in_user_namespace();
    let overlay = std::fs::create_dir_all(root)
        .with_context(|| format!("creating {}", root.display()))
        .and_then(|()| try_overlay(root, in_userns));
    let mut facts = cheap_facts(root);
    facts.overlay_supported = overlay.is_ok();
    facts.overlay_error = overlay.err().map(|e| format!("{e:#}"));
    facts.idmapped_mounts = try_idmapped(root).is_ok();
    facts
}

/// [`probe`], with the results of the mount trials (overlay, idmapped)
/// kept in `<root>/probe.json` and reused while what they depend on is
/// unchanged: the boot (`/proc/sys/kernel/random/boot_id`: modules, kernel
/// and mount table start over), the kernel release, the user namespace,
/// this user, the device and filesystem type of `root`. The other facts are
/// cheap and read every time. Each trial mounts in a fresh directory on the
/// root's filesystem, and `berth run` with `snapshotter = "auto"` (the
/// default) asked for them on every run. A missing or unreadable cache just
/// probes (and rewrites it).
pub fn probe_cached(root: &Path) -> HostFacts {
    let Some(key) = probe_key(root) else { return probe(root) };
    let cache = root.join("probe.json");
    if let Some(cached) = std::fs::read(&cache).ok().and_then(|data| serde_json::from_slice::<CachedTrials>(&data).ok())
        && cached.key == key
    {
        let mut facts = cheap_facts(root);
        facts.overlay_supported = cached.overlay_supported;
        facts.overlay_error = cached.overlay_error;
        facts.idmapped_mounts = cached.idmapped_mounts;
        return facts;
    }
    let facts = probe(root);
    let trials = CachedTrials {
        key,
        overlay_supported: facts.overlay_supported,
        overlay_error: facts.overlay_error.clone(),
        idmapped_mounts: facts.idmapped_mounts,
    };
    // Written whole then renamed: a reader sees the old file, the new one or none.
    let tmp = root.join(format!(".probe.json.{}", std::process::id()));
    let written = serde_json::to_vec(&trials)
        .map_err(std::io::Error::other)
        .and_then(|data| std::fs::write(&tmp, data))
        .and_then(|()| std::fs::rename(&tmp, &cache));
    if let Err(err) = written {
        std::fs::remove_file(&tmp).ok();
        tracing::debug!("not caching the snapshotter probe in {}: {err}", cache.display());
    }
    facts
}

/// What the mount trials depend on (None: cannot tell, probe every time).
fn probe_key(root: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    std::fs::create_dir_all(root).ok()?;
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let dev = std::fs::metadata(root).ok()?.dev();
    Some(format!(
        "v1 boot={} kernel={} userns={} euid={} dev={dev} fs={}",
        boot_id.trim(),
        rustix::system::uname().release().to_string_lossy(),
        in_user_namespace(),
        rustix::process::geteuid().as_raw(),
        filesystem_type(root),
    ))
}

#[derive(Serialize, serde::Deserialize)]
struct CachedTrials {
    key: String,
    overlay_supported: bool,
    overlay_error: Option<String>,
    idmapped_mounts: bool,
}

/// Every fact but the mount trials' (which say "not supported").
fn cheap_facts(root: &Path) -> HostFacts {
    let in_userns = in_user_namespace();
    HostFacts {
        overlay_supported: false,
        overlay_error: None,
        needs_userxattr: in_userns,
        fuse_overlayfs_binary: find_binary("fuse-overlayfs"),
        dev_fuse: Path::new("/dev/fuse").exists(),
        in_user_namespace: in_userns,
        idmapped_mounts: false,
        filesystem_type: filesystem_type(root),
        kernel_version: rustix::system::uname().release().to_string_lossy().into_owned(),
        snapshotters: crate::SNAPSHOTTERS.iter().map(|s| s.to_string()).collect(),
    }
}

/// True unless this process's uid map is the initial namespace's identity map.
pub fn in_user_namespace() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(map) => {
            let fields: Vec<&str> = map.split_whitespace().collect();
            fields != ["0", "0", "4294967295"]
        }
        Err(_) => false,
    }
}

/// `name` on PATH.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// Mounts an overlay (two lowers, an upper) in a temporary directory under
/// `root`, checks a lower file is visible, and unmounts.
fn try_overlay(root: &Path, userxattr: bool) -> Result<()> {
    let dir = tempfile_dir(root)?;
    let result = (|| -> Result<()> {
        for sub in ["l1", "l2", "upper", "work", "merged"] {
            std::fs::create_dir(dir.join(sub)).with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        std::fs::write(dir.join("l2/probe"), b"x")?;
        let mut options = Vec::new();
        if Path::new("/sys/module/overlay/parameters/index").exists() {
            options.push("index=off".to_string());
        }
        if userxattr {
            options.push("userxattr".to_string());
        }
        options.push(format!("workdir={}", dir.join("work").display()));
        options.push(format!("upperdir={}", dir.join("upper").display()));
        options.push(format!("lowerdir={}:{}", dir.join("l1").display(), dir.join("l2").display()));
        let mount = crate::Mount { kind: "overlay".into(), source: "overlay".into(), options };
        let merged = dir.join("merged");
        crate::mount::mount_all(&[mount], &merged)?;
        let visible = merged.join("probe").is_file();
        crate::mount::unmount_all(&merged)?;
        anyhow::ensure!(visible, "a file of the lower dir is not visible through the overlay");
        Ok(())
    })();
    std::fs::remove_dir_all(&dir).ok();
    result
}

/// Mounts a directory under `root` idmapped (0 -> 100000) and checks the
/// owner seen through it.
fn try_idmapped(root: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile_dir(root)?;
    let result = (|| -> Result<()> {
        std::fs::create_dir(dir.join("src"))?;
        std::fs::create_dir(dir.join("mnt"))?;
        let options = vec!["rbind".into(), "ro".into(), "uidmap=0:100000:65536".into(), "gidmap=0:100000:65536".into()];
        let mount = crate::Mount { kind: "bind".into(), source: dir.join("src").to_string_lossy().into_owned(), options };
        crate::mount::mount_all(&[mount], &dir.join("mnt"))?;
        let uid = std::fs::metadata(dir.join("mnt")).map(|m| m.uid());
        crate::mount::unmount_all(&dir.join("mnt"))?;
        anyhow::ensure!(uid? == 100_000, "the idmapped mount does not shift owners");
        Ok(())
    })();
    std::fs::remove_dir_all(&dir).ok();
    result
}

fn tempfile_dir(root: &Path) -> Result<PathBuf> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let dir = root.join(format!(".probe-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The filesystem type of `path` by its statfs magic number.
pub fn filesystem_type(path: &Path) -> String {
    let Ok(stat) = rustix::fs::statfs(path) else { return "unknown".into() };
    #[allow(clippy::unnecessary_cast)]
    let magic = stat.f_type as u64;
    match magic {
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlay",
        0x2FC1_2FC1 => "zfs",
        0x6969 => "nfs",
        0x6573_5546 => "fuse",
        0xF2F5_2010 => "f2fs",
        0x0000_4244 => "hfs",
        0x5346_544E => "ntfs",
        other => return format!("unknown (0x{other:x})"),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_of_this_host() {
        let dir = tempfile::tempdir().unwrap();
        let facts = probe(dir.path());
        assert!(facts.snapshotters.contains(&"native".to_string()));
        assert!(!facts.kernel_version.is_empty());
        assert!(!facts.filesystem_type.starts_with("unknown"), "{facts:?}");
        assert!(facts.usable("native") && !facts.usable("zfs"));
        if rustix::process::geteuid().is_root() && !facts.in_user_namespace && facts.filesystem_type != "overlay" {
            assert!(facts.overlay_supported, "{facts:?}");
        }
        // Nothing is left under the root.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn cached_probe_reuses_the_trials_until_its_key_changes() {
        let dir = tempfile::tempdir().unwrap();
        let first = probe_cached(dir.path());
        assert_eq!(first, probe(dir.path()));
        let cache = dir.path().join("probe.json");
        let mut cached: serde_json::Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
        // A cached answer is used as is: flip it and see it come back.
        cached["overlay_supported"] = (!first.overlay_supported).into();
        cached["idmapped_mounts"] = (!first.idmapped_mounts).into();
        std::fs::write(&cache, serde_json::to_vec(&cached).unwrap()).unwrap();
        let again = probe_cached(dir.path());
        assert_eq!(again.overlay_supported, !first.overlay_supported);
        assert_eq!(again.idmapped_mounts, !first.idmapped_mounts);
        assert_eq!(again.kernel_version, first.kernel_version);
        // Another boot (or kernel, user namespace...): probed again, rewritten.
        cached["key"] = "v1 boot=another".into();
        std::fs::write(&cache, serde_json::to_vec(&cached).unwrap()).unwrap();
        assert_eq!(probe_cached(dir.path()), first);
        // A damaged file is probed over too.
        std::fs::write(&cache, b"{not json").unwrap();
        assert_eq!(probe_cached(dir.path()), first);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["probe.json"], "only the cache is left under the root");
    }
}
