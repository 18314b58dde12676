//! Performing the [`Mount`]s a snapshotter returns, as containerd's
//! `mount.All` does: bind mounts (read-only through a remount), overlay
//! (with the lowerdir option compacted to relative paths when the options
//! would not fit in one page), and fuse-overlayfs through its binary.
//!
//! Privileged: every function here needs CAP_SYS_ADMIN in the mount
//! namespace of the caller.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use rustix::mount::{MountFlags, UnmountFlags};

use crate::Mount;

/// Above this many bytes of options, overlay's lowerdir is made relative
/// (the kernel takes one page of mount data; containerd keeps 512 bytes spare).
pub fn options_limit() -> usize {
    rustix::param::page_size() - 512
}

/// Mounts every mount of `mounts` on `target`, in order.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<()> {
    let target = target.canonicalize().with_context(|| format!("resolving mount target {}", target.display()))?;
    for m in mounts {
        mount_one(m, &target).with_context(|| format!("mounting {} {} ({}) on {}", m.kind, m.source, m.options.join(","), target.display()))?;
    }
    Ok(())
}

/// Splits containerd-style options into mount flags and filesystem data.
fn split_options(options: &[String]) -> (MountFlags, bool, Vec<String>) {
    let mut flags = MountFlags::empty();
    let mut readonly = false;
    let mut data = Vec::new();
    for option in options {
        match option.as_str() {
            "ro" => readonly = true,
            "rw" => readonly = false,
            "bind" => flags |= MountFlags::BIND,
            "rbind" => flags |= MountFlags::BIND | MountFlags::REC,
            "nosuid" => flags |= MountFlags::NOSUID,
            "nodev" => flags |= MountFlags::NODEV,
            "noexec" => flags |= MountFlags::NOEXEC,
            "noatime" => flags |= MountFlags::NOATIME,
            "relatime" => flags |= MountFlags::RELATIME,
            _ => data.push(option.clone()),
        }
    }
    (flags, readonly, data)
}

fn mount_one(m: &Mount, target: &Path) -> Result<()> {
    let (mut flags, readonly, data) = split_options(&m.options);
    if m.kind.starts_with("fuse3.") || m.kind.starts_with("fuse.") {
        return mount_fuse(m, target);
    }
    if m.kind == "bind" {
        flags |= MountFlags::BIND;
    }
    let idmap = idmap_options(&data);
    if flags.contains(MountFlags::BIND) && idmap.is_some() {
        let (uidmap, gidmap) = idmap.unwrap_or_default();
        return mount_idmapped_bind(Path::new(&m.source), target, &uidmap, &gidmap, readonly);
    }
    if flags.contains(MountFlags::BIND) {
        rustix::mount::mount(m.source.as_str(), target, "", flags, None)?;
        if readonly {
            // A bind mount is made read-only by a remount of the new mount.
            rustix::mount::mount_remount(target, flags | MountFlags::RDONLY, "")?;
        }
        return Ok(());
    }
    if readonly {
        flags |= MountFlags::RDONLY;
    }
    let joined = data.join(",");
    if m.kind == "overlay"
        && let Some((uidmap, gidmap)) = idmap
    {
        return mount_idmapped_overlay(m, target, flags, &data, &uidmap, &gidmap);
    }
    if m.kind == "overlay" && joined.len() >= options_limit() {
        return mount_compacted(m, target, flags, &data);
    }
    let data = CString::new(joined)?;
    rustix::mount::mount(m.source.as_str(), target, m.kind.as_str(), flags, Some(data.as_c_str()))?;
    Ok(())
}

/// `uidmap=`/`gidmap=` options (containerd's spelling, `CTR:HOST:SIZE`;
/// one range each), both or none.
fn idmap_options(data: &[String]) -> Option<(String, String)> {
    let uid = data.iter().find_map(|o| o.strip_prefix("uidmap="))?;
    let gid = data.iter().find_map(|o| o.strip_prefix("gidmap="))?;
    Some((uid.to_string(), gid.to_string()))
}

/// `CTR:HOST:SIZE` as a /proc/PID/uid_map line.
fn map_line(map: &str) -> Result<String> {
    let parts: Vec<u32> = map.split(':').map(str::parse).collect::<std::result::Result<_, _>>().with_context(|| format!("id map {map:?}"))?;
    anyhow::ensure!(parts.len() == 3 && parts[2] > 0, "id map {map:?} is not CONTAINER:HOST:SIZE");
    Ok(format!("{} {} {}\n", parts[0], parts[1], parts[2]))
}

/// A user namespace with the given maps, as an fd: a short-lived child
/// unshares it, the maps are written from here (privileged parent).
fn userns_with_maps(uidmap: &str, gidmap: &str) -> Result<std::os::fd::OwnedFd> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("cat");
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::null());
    // SAFETY: unshare is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWUSER).map_err(std::io::Error::from));
    }
    let mut child = cmd.spawn().context("starting a child in a new user namespace")?;
    let result = (|| -> Result<std::os::fd::OwnedFd> {
        let proc_dir = PathBuf::from(format!("/proc/{}", child.id()));
        std::fs::write(proc_dir.join("uid_map"), map_line(uidmap)?).context("writing uid_map")?;
        std::fs::write(proc_dir.join("gid_map"), map_line(gidmap)?).context("writing gid_map")?;
        let ns = std::fs::File::open(proc_dir.join("ns/user")).context("opening the user namespace")?;
        Ok(ns.into())
    })();
    child.kill().ok();
    child.wait().ok();
    result
}

/// The kernel's `struct mount_attr` (rustix has no mount_setattr).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// An idmapped bind mount: a detached clone of `source`, idmapped with a
/// user namespace holding the maps, moved onto `target`.
fn mount_idmapped_bind(source: &Path, target: &Path, uidmap: &str, gidmap: &str, readonly: bool) -> Result<()> {
    let userns = userns_with_maps(uidmap, gidmap)?;
    attach_idmapped(source, target, &userns, readonly)
}

/// Attaches an idmapped clone of `source` on `target`.
fn attach_idmapped(source: &Path, target: &Path, userns: &std::os::fd::OwnedFd, readonly: bool) -> Result<()> {
    use rustix::mount::{MoveMountFlags, OpenTreeFlags};
    use std::os::fd::AsRawFd;
    let tree = rustix::mount::open_tree(rustix::fs::CWD, source, OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC)
        .with_context(|| format!("open_tree {}", source.display()))?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP | if readonly { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr(2) reads `attr` (of the size given) and the empty path.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("idmapping the mount of {}", source.display()));
    }
    rustix::mount::move_mount(&tree, "", rustix::fs::CWD, target, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)
        .with_context(|| format!("attaching the idmapped mount on {}", target.display()))?;
    Ok(())
}

/// overlay with idmapped layers (kernel 5.19+): every lower dir, and the
/// directory holding upperdir and workdir, is attached idmapped under a
/// temporary directory; the overlay is mounted from those (overlayfs keeps
/// its own clones of the layers), then the temporary mounts are detached.
fn mount_idmapped_overlay(m: &Mount, target: &Path, flags: MountFlags, data: &[String], uidmap: &str, gidmap: &str) -> Result<()> {
    let userns = userns_with_maps(uidmap, gidmap)?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let tmp = std::env::temp_dir().join(format!("berth-idmap-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut attached: Vec<PathBuf> = Vec::new();
    let result = (|| -> Result<()> {
        let mut attach = |source: &Path, name: String| -> Result<PathBuf> {
            let point = tmp.join(name);
            std::fs::create_dir(&point)?;
            attach_idmapped(source, &point, &userns, false)?;
            attached.push(point.clone());
            Ok(point)
        };
        let upper = data.iter().find_map(|o| o.strip_prefix("upperdir=")).map(Path::new);
        let work = data.iter().find_map(|o| o.strip_prefix("workdir=")).map(Path::new);
        let upper_parent = match (upper, work) {
            (Some(u), Some(w)) if u.parent() == w.parent() && u.parent().is_some() => Some(attach(u.parent().unwrap_or(u), "u".into())?),
            (None, None) => None,
            _ => bail!("idmapped overlay: upperdir and workdir must share a parent directory"),
        };
        let mut options = Vec::new();
        for option in data {
            if option.starts_with("uidmap=") || option.starts_with("gidmap=") {
                continue;
            } else if let Some(lower) = option.strip_prefix("lowerdir=") {
                let mut points = Vec::new();
                for (i, dir) in lower.split(':').enumerate() {
                    points.push(attach(Path::new(dir), format!("{i}"))?.to_string_lossy().into_owned());
                }
                options.push(format!("lowerdir={}", points.join(":")));
            } else if let (Some(u), Some(p)) = (option.strip_prefix("upperdir="), &upper_parent) {
                options.push(format!("upperdir={}", p.join(Path::new(u).file_name().unwrap_or_default()).display()));
            } else if let (Some(w), Some(p)) = (option.strip_prefix("workdir="), &upper_parent) {
                options.push(format!("workdir={}", p.join(Path::new(w).file_name().unwrap_or_default()).display()));
            } else {
                options.push(option.clone());
            }
        }
        let joined = options.join(",");
        if joined.len() >= options_limit() {
            return mount_compacted(m, target, flags, &options);
        }
        let data = CString::new(joined)?;
        rustix::mount::mount(m.source.as_str(), target, m.kind.as_str(), flags, Some(data.as_c_str()))?;
        Ok(())
    })();
    for point in attached.iter().rev() {
        rustix::mount::unmount(point, UnmountFlags::DETACH).ok();
    }
    std::fs::remove_dir_all(&tmp).ok();
    result
}

/// The longest directory every path is under.
fn common_dir(paths: &[&str]) -> PathBuf {
    let mut common: Vec<std::path::Component> = Path::new(paths[0]).parent().map(|p| p.components().collect()).unwrap_or_default();
    for path in &paths[1..] {
        let components: Vec<_> = Path::new(path).components().collect();
        let shared = common.iter().zip(&components).take_while(|(a, b)| a == b).count();
        common.truncate(shared.min(components.len().saturating_sub(1)));
    }
    common.iter().collect()
}

/// containerd's `compactLowerdirOption`: lowerdir entries relative to
/// their common directory, and the mount performed from a thread whose
/// working directory (unshared from the process's) is that directory.
fn mount_compacted(m: &Mount, target: &Path, flags: MountFlags, data: &[String]) -> Result<()> {
    let lower = data.iter().find_map(|o| o.strip_prefix("lowerdir=")).context("overlay options without lowerdir")?;
    let dirs: Vec<&str> = lower.split(':').collect();
    let common = common_dir(&dirs);
    if common.as_os_str().is_empty() || common == Path::new("/") {
        bail!("overlay options are {} bytes and the lower dirs share no directory to make them shorter", data.join(",").len());
    }
    let relative: Vec<String> = dirs
        .iter()
        .map(|d| Path::new(d).strip_prefix(&common).map(|p| p.to_string_lossy().into_owned()))
        .collect::<std::result::Result<_, _>>()?;
    let options: Vec<String> =
        data.iter().map(|o| if o.starts_with("lowerdir=") { format!("lowerdir={}", relative.join(":")) } else { o.clone() }).collect();
    let joined = options.join(",");
    if joined.len() >= rustix::param::page_size() {
        bail!("overlay options are still {} bytes with lowerdir relative to {}", joined.len(), common.display());
    }
    let data = CString::new(joined)?;
    let (source, kind, target) = (m.source.clone(), m.kind.clone(), target.to_path_buf());
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<()> {
                // SAFETY: CLONE_FS only gives this thread its own working
                // directory; no file descriptor table is unshared.
                unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS) }.context("unshare(CLONE_FS)")?;
                rustix::process::chdir(&common).with_context(|| format!("chdir {}", common.display()))?;
                rustix::mount::mount(source.as_str(), &target, kind.as_str(), flags, Some(data.as_c_str()))?;
                Ok(())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the mounting thread panicked"))?
    })
}

fn mount_fuse(m: &Mount, target: &Path) -> Result<()> {
    let helper = m.kind.split_once('.').map(|(_, h)| h).unwrap_or("fuse-overlayfs");
    let binary = crate::probe::find_binary(helper).with_context(|| format!("{helper} is not on PATH"))?;
    let output = Command::new(&binary)
        .arg("-o")
        .arg(m.options.join(","))
        .arg(target)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    if !output.status.success() {
        bail!("{} exited with {}: {}", binary.display(), output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// Unmounts `target` (every mount stacked on it, as containerd's
/// `UnmountAll`), retrying briefly while it is busy and detaching at last.
pub fn unmount_all(target: &Path) -> Result<()> {
    let mut busy = 0;
    loop {
        match rustix::mount::unmount(target, UnmountFlags::NOFOLLOW) {
            Ok(()) => busy = 0,
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(rustix::io::Errno::BUSY) if busy < 50 => {
                busy += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(rustix::io::Errno::BUSY) => {
                rustix::mount::unmount(target, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW)
                    .with_context(|| format!("detaching {}", target.display()))?;
            }
            Err(e) => return Err(e).with_context(|| format!("unmounting {}", target.display())),
        }
    }
}

/// Mounts `mounts` on `target` for as long as the guard lives.
pub struct Mounted {
    target: PathBuf,
    active: bool,
}

impl Mounted {
    pub fn new(mounts: &[Mount], target: &Path) -> Result<Mounted> {
        mount_all(mounts, target)?;
        Ok(Mounted { target: target.to_path_buf(), active: true })
    }

    pub fn path(&self) -> &Path {
        &self.target
    }

    pub fn unmount(mut self) -> Result<()> {
        self.active = false;
        unmount_all(&self.target)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.active
            && let Err(err) = unmount_all(&self.target)
        {
            tracing::warn!("{err:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_dir_of_lower_dirs() {
        assert_eq!(common_dir(&["/r/s/1/fs", "/r/s/22/fs"]), Path::new("/r/s"));
        assert_eq!(common_dir(&["/r/s/1/fs"]), Path::new("/r/s/1"));
        assert_eq!(common_dir(&["/a/x", "/b/y"]), Path::new("/"));
    }

    #[test]
    fn options_are_split_into_flags_and_data() {
        let (flags, ro, data) = split_options(&["rbind".into(), "ro".into(), "index=off".into()]);
        assert!(flags.contains(MountFlags::BIND | MountFlags::REC) && ro && data == ["index=off"]);
    }
}
