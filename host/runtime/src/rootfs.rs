//! The container's filesystem view, built inside its new mount namespace.
//!
//! The order of the steps lives in [`setup_rootfs`]; every privileged step goes
//! through the [`Syscall`] trait, so the order is unit-tested with a recorder
//! and the real steps ([`LinuxSyscall`]) stay small.
//!
//! Mount targets are opened under the rootfs with `openat2(RESOLVE_IN_ROOT)`
//! and mounted through `/proc/self/fd/N`: a symlink in the image (or one
//! swapped in by a racing container, CVE-2021-30465) resolves inside the
//! rootfs, never to the host.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::config::{CgroupView, InitConfig, RootMount};
use crate::mounts::{self, MountPlan};
use crate::sys::{self, cstr, cvt, fd_path, open_in_root};

/// A device node to create under /dev.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Absolute path inside the container (`/dev/null`).
    pub path: PathBuf,
    /// `S_IFCHR`, `S_IFBLK` or `S_IFIFO`.
    pub kind: libc::mode_t,
    pub major: u64,
    pub minor: u64,
    pub mode: libc::mode_t,
    pub uid: u32,
    pub gid: u32,
}

/// The devices every container gets (as runc and crun).
pub fn default_devices() -> Vec<Device> {
    [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)]
        .into_iter()
        .map(|(name, major, minor)| Device {
            path: PathBuf::from("/dev").join(name),
            kind: libc::S_IFCHR,
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        })
        .collect()
}

/// Everything the rootfs steps need, derived from the configuration.
#[derive(Debug, Clone)]
pub struct RootfsSetup {
    pub rootfs: PathBuf,
    pub root_mounts: Vec<RootMount>,
    pub root_propagation: libc::c_ulong,
    pub mounts: Vec<MountPlan>,
    pub cgroup_views: Vec<CgroupView>,
    pub devices: Vec<Device>,
    pub symlinks: Vec<(String, PathBuf)>,
    pub sysctls: Vec<(String, String)>,
    pub masked: Vec<PathBuf>,
    pub readonly_paths: Vec<PathBuf>,
    pub readonly_root: bool,
    pub no_pivot: bool,
}

impl RootfsSetup {
    pub fn from_config(cfg: &InitConfig) -> Result<RootfsSetup> {
        let spec = &cfg.spec;
        let linux = spec.linux().clone().unwrap_or_default();
        let mut mounts = spec.mounts().iter().flatten().map(mounts::plan).collect::<Result<Vec<_>>>()?;
        if let Some(label) = &cfg.lsm.mount_label {
            // SELinux (checked by the parent): tmpfs, devpts... carry the container's file label.
            for m in mounts.iter_mut().filter(|m| crate::lsm::takes_mount_label(&m.fstype, m.bind)) {
                m.data = crate::lsm::with_mount_label(&m.data, label);
            }
        }
        let mut devices = default_devices();
        for d in linux.devices().iter().flatten() {
            use oci_spec::runtime::LinuxDeviceType as T;
            let kind = match d.typ() {
                T::C | T::U => libc::S_IFCHR,
                T::B => libc::S_IFBLK,
                T::P => libc::S_IFIFO,
                T::A => bail!("device {}: type 'a' cannot be created", d.path().display()),
            };
            devices.retain(|x| x.path != *d.path());
            devices.push(Device {
                path: d.path().clone(),
                kind,
                major: d.major() as u64,
                minor: d.minor() as u64,
                mode: d.file_mode().unwrap_or(0o666) & 0o7777,
                uid: d.uid().unwrap_or(0),
                gid: d.gid().unwrap_or(0),
            });
        }
        let mut symlinks = vec![
            ("/proc/self/fd".to_string(), PathBuf::from("/dev/fd")),
            ("/proc/self/fd/0".to_string(), PathBuf::from("/dev/stdin")),
            ("/proc/self/fd/1".to_string(), PathBuf::from("/dev/stdout")),
            ("/proc/self/fd/2".to_string(), PathBuf::from("/dev/stderr")),
            ("/proc/kcore".to_string(), PathBuf::from("/dev/core")),
        ];
        if mounts.iter().any(|m| m.destination == Path::new("/dev/pts"))
            && !devices.iter().any(|d| d.path == Path::new("/dev/ptmx"))
        {
            symlinks.push(("pts/ptmx".to_string(), PathBuf::from("/dev/ptmx")));
        }
        let mut sysctls: Vec<(String, String)> =
            linux.sysctl().iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
        sysctls.sort();
        Ok(RootfsSetup {
            rootfs: cfg.rootfs.clone(),
            root_mounts: cfg.root_mounts.clone(),
            root_propagation: mounts::propagation_flags(linux.rootfs_propagation().as_deref())?,
            mounts,
            cgroup_views: cfg.cgroup_views.clone(),
            devices,
            symlinks,
            sysctls,
            masked: linux.masked_paths().iter().flatten().map(PathBuf::from).collect(),
            readonly_paths: linux.readonly_paths().iter().flatten().map(PathBuf::from).collect(),
            readonly_root: spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false),
            no_pivot: cfg.no_pivot,
        })
    }
}

/// The privileged steps, one method each.
pub trait Syscall {
    /// mount(NULL, target, NULL, flags): propagation change.
    fn set_propagation(&mut self, target: &Path, flags: libc::c_ulong) -> Result<()>;
    /// A snapshot mount onto the (empty) rootfs directory.
    fn mount_root(&mut self, m: &RootMount, rootfs: &Path) -> Result<()>;
    /// Bind a populated rootfs directory onto itself (pivot_root needs a mount point).
    fn bind_self(&mut self, rootfs: &Path) -> Result<()>;
    /// Refuse an image whose /dev is a symlink (CVE-2026-41579).
    fn check_dev(&mut self, rootfs: &Path) -> Result<()>;
    fn mount_in_root(&mut self, rootfs: &Path, m: &MountPlan, views: &[CgroupView]) -> Result<()>;
    fn create_device(&mut self, rootfs: &Path, d: &Device) -> Result<()>;
    fn symlink_in_root(&mut self, rootfs: &Path, target: &str, link: &Path) -> Result<()>;
    fn pivot_root(&mut self, rootfs: &Path) -> Result<()>;
    /// `--no-pivot`: MS_MOVE the rootfs onto / and chroot.
    fn move_root(&mut self, rootfs: &Path) -> Result<()>;
    fn write_sysctl(&mut self, key: &str, value: &str) -> Result<()>;
    fn mask_path(&mut self, path: &Path) -> Result<()>;
    fn readonly_path(&mut self, path: &Path) -> Result<()>;
    fn remount_root_readonly(&mut self) -> Result<()>;
}

/// The rootfs, in order. `before_pivot` runs once everything is mounted and
/// before the root changes (prestart/createRuntime/createContainer hooks).
pub fn setup_rootfs(
    s: &RootfsSetup,
    sys: &mut dyn Syscall,
    before_pivot: &mut dyn FnMut() -> Result<()>,
) -> Result<()> {
    // Nothing we mount propagates back to the host.
    let base = if s.root_propagation & (libc::MS_SHARED | libc::MS_SLAVE) != 0 {
        libc::MS_SLAVE | libc::MS_REC
    } else {
        libc::MS_PRIVATE | libc::MS_REC
    };
    sys.set_propagation(Path::new("/"), base)?;
    if s.root_mounts.is_empty() {
        sys.bind_self(&s.rootfs)?;
    } else {
        for m in &s.root_mounts {
            sys.mount_root(m, &s.rootfs)?;
        }
    }
    if s.root_propagation != base {
        sys.set_propagation(&s.rootfs, s.root_propagation)?;
    }
    sys.check_dev(&s.rootfs)?;
    for m in &s.mounts {
        sys.mount_in_root(&s.rootfs, m, &s.cgroup_views)?;
    }
    for d in &s.devices {
        sys.create_device(&s.rootfs, d)?;
    }
    for (target, link) in &s.symlinks {
        sys.symlink_in_root(&s.rootfs, target, link)?;
    }
    before_pivot()?;
    if s.no_pivot {
        sys.move_root(&s.rootfs)?;
    } else {
        sys.pivot_root(&s.rootfs)?;
    }
    for (k, v) in &s.sysctls {
        sys.write_sysctl(k, v)?;
    }
    for p in &s.masked {
        sys.mask_path(p)?;
    }
    for p in &s.readonly_paths {
        sys.readonly_path(p)?;
    }
    if s.readonly_root {
        sys.remount_root_readonly()?;
    }
    Ok(())
}

/// The real steps.
pub struct LinuxSyscall {
    /// In a new user namespace: device nodes are bind-mounted from the host
    /// (mknod is not allowed there).
    pub userns: bool,
    /// SELinux `linux.mountLabel` (checked by the parent): the label of the
    /// cgroup v1 tmpfs and of mqueue mounts (tmpfs/devpts... get it as
    /// `context=` in their plans, [`RootfsSetup::from_config`]).
    pub mount_label: Option<String>,
}

fn is_errno(e: &io::Error, errno: i32) -> bool {
    e.raw_os_error() == Some(errno)
}

/// `path` inside the container, relative (no leading `/`).
fn rel(path: &Path) -> PathBuf {
    path.components().filter(|c| !matches!(c, Component::RootDir)).collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Dir,
    File,
}

fn open_root(rootfs: &Path) -> Result<OwnedFd> {
    sys::open(rootfs, libc::O_PATH | libc::O_DIRECTORY, 0).with_context(|| format!("open rootfs {}", rootfs.display()))
}

/// Opens `path` under `root` (O_PATH), creating missing directories (and, for
/// `Kind::File`, the last component as an empty file), never leaving `root`.
fn ensure_in_root(root: &OwnedFd, path: &Path, kind: Kind) -> Result<OwnedFd> {
    let path = rel(path);
    match open_in_root(root, &path, libc::O_PATH) {
        Ok(fd) => return Ok(fd),
        Err(e) if is_errno(&e, libc::ENOENT) => {}
        Err(e) => return Err(e).with_context(|| format!("open {} in the rootfs", path.display())),
    }
    let comps: Vec<_> = path.components().collect();
    let mut cur = PathBuf::new();
    for (i, comp) in comps.iter().enumerate() {
        let next = cur.join(comp);
        match open_in_root(root, &next, libc::O_PATH) {
            Ok(_) => {}
            Err(e) if is_errno(&e, libc::ENOENT) => {
                let parent = open_in_root(root, &cur, libc::O_PATH | libc::O_DIRECTORY)
                    .with_context(|| format!("open {} in the rootfs", cur.display()))?;
                let name = cstr(comp.as_os_str())?;
                if i + 1 == comps.len() && kind == Kind::File {
                    // SAFETY: valid dirfd and C string; O_NOFOLLOW: never through a symlink.
                    let fd = cvt(unsafe {
                        libc::openat(
                            parent.as_raw_fd(),
                            name.as_ptr(),
                            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                            0o644,
                        )
                    })
                    .with_context(|| format!("create {} in the rootfs", next.display()))?;
                    // SAFETY: fresh descriptor.
                    drop(unsafe { OwnedFd::from_raw_fd(fd) });
                } else {
                    sys::mkdirat(&parent, &name, 0o755)
                        .or_else(|e| if is_errno(&e, libc::EEXIST) { Ok(()) } else { Err(e) })
                        .with_context(|| format!("mkdir {} in the rootfs", next.display()))?;
                }
            }
            Err(e) => return Err(e).with_context(|| format!("open {} in the rootfs", next.display())),
        }
        cur = next;
    }
    open_in_root(root, &path, libc::O_PATH).with_context(|| format!("open {} in the rootfs", path.display()))
}

fn split_parent(path: &Path) -> Result<(PathBuf, CString)> {
    let name = path.file_name().with_context(|| format!("{} has no file name", path.display()))?;
    Ok((path.parent().map(rel).unwrap_or_default(), cstr(name)?))
}

impl LinuxSyscall {
    fn bind(&self, source: &str, target: &OwnedFd, recursive: bool) -> io::Result<()> {
        let flags = libc::MS_BIND | if recursive { libc::MS_REC } else { 0 };
        sys::mount(Some(source), &fd_path(target), None, flags, None)
    }

    /// Remount a bind mount with `flags`, keeping the flags the kernel locks
    /// (nosuid, nodev... inherited from a mount in a less privileged namespace).
    fn remount_bind(&self, target: &Path, flags: libc::c_ulong) -> io::Result<()> {
        let base = libc::MS_BIND | libc::MS_REMOUNT;
        match sys::mount(None, target, None, base | flags, None) {
            Err(e) if is_errno(&e, libc::EPERM) => {
                let locked = sys::mount_flags_of(target)?;
                sys::mount(None, target, None, base | flags | locked, None)
            }
            other => other,
        }
    }

    fn mount_cgroup(&mut self, root: &OwnedFd, m: &MountPlan, views: &[CgroupView]) -> Result<()> {
        let dest = ensure_in_root(root, &m.destination, Kind::Dir)?;
        let ro = m.flags & libc::MS_RDONLY != 0;
        if let [single] = views
            && single.name.is_empty()
        {
            // cgroup v2: the container's own cgroup directory.
            self.bind(&single.host_path.to_string_lossy(), &dest, true)
                .with_context(|| format!("bind cgroup {} at {}", single.host_path.display(), m.destination.display()))?;
            if ro {
                let dest = open_in_root(root, &rel(&m.destination), libc::O_PATH)?;
                self.remount_bind(&fd_path(&dest), libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC)?;
            }
            return Ok(());
        }
        // cgroup v1: a tmpfs with one directory per hierarchy.
        let data = match &self.mount_label {
            Some(label) => crate::lsm::with_mount_label("mode=755", label),
            None => "mode=755".to_string(),
        };
        sys::mount(
            Some("tmpfs"),
            &fd_path(&dest),
            Some("tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            Some(&data),
        )
        .with_context(|| format!("mount tmpfs at {}", m.destination.display()))?;
        for v in views {
            let sub = m.destination.join(&v.name);
            let fd = ensure_in_root(root, &sub, Kind::Dir)?;
            self.bind(&v.host_path.to_string_lossy(), &fd, false)
                .with_context(|| format!("bind {} at {}", v.host_path.display(), sub.display()))?;
            if ro {
                let fd = open_in_root(root, &rel(&sub), libc::O_PATH)?;
                self.remount_bind(&fd_path(&fd), libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC)
                    .with_context(|| format!("remount {} read-only", sub.display()))?;
            }
        }
        if ro {
            let fd = open_in_root(root, &rel(&m.destination), libc::O_PATH)?;
            sys::mount(None, &fd_path(&fd), None, libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, Some("mode=755"))
                .with_context(|| format!("remount {} read-only", m.destination.display()))?;
        }
        Ok(())
    }
}

impl Syscall for LinuxSyscall {
    fn set_propagation(&mut self, target: &Path, flags: libc::c_ulong) -> Result<()> {
        sys::mount(None, target, None, flags, None)
            .with_context(|| format!("set propagation of {}", target.display()))
    }

    fn mount_root(&mut self, m: &RootMount, rootfs: &Path) -> Result<()> {
        let (mut flags, mut data) = (0, Vec::new());
        for o in &m.options {
            match o.as_str() {
                "ro" => flags |= libc::MS_RDONLY,
                "rw" => {}
                "bind" => flags |= libc::MS_BIND,
                "rbind" => flags |= libc::MS_BIND | libc::MS_REC,
                other => data.push(other),
            }
        }
        let data = data.join(",");
        if m.kind == "bind" || m.kind == "rbind" || flags & libc::MS_BIND != 0 {
            let rec = if m.kind == "rbind" { libc::MS_REC } else { 0 };
            sys::mount(Some(&m.source), rootfs, None, libc::MS_BIND | rec | (flags & libc::MS_REC), None)
                .with_context(|| format!("bind {} at {}", m.source, rootfs.display()))?;
            if flags & libc::MS_RDONLY != 0 {
                self.remount_bind(rootfs, libc::MS_RDONLY)
                    .with_context(|| format!("remount {} read-only", rootfs.display()))?;
            }
        } else {
            sys::mount(Some(&m.source), rootfs, Some(&m.kind), flags, Some(&data))
                .with_context(|| format!("mount {} ({}) at {} with {data}", m.source, m.kind, rootfs.display()))?;
        }
        Ok(())
    }

    fn bind_self(&mut self, rootfs: &Path) -> Result<()> {
        let s = rootfs.to_string_lossy();
        sys::mount(Some(&s), rootfs, None, libc::MS_BIND | libc::MS_REC, None)
            .with_context(|| format!("bind rootfs {} onto itself", rootfs.display()))
    }

    fn check_dev(&mut self, rootfs: &Path) -> Result<()> {
        let root = open_root(rootfs)?;
        match sys::fstatat(&root, c"dev", libc::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => {
                let target = std::fs::read_link(rootfs.join("dev")).unwrap_or_default();
                bail!(
                    "the image's /dev is a symlink (to {}): refusing to set up devices through it (CVE-2026-41579)",
                    target.display()
                )
            }
            Ok(st) if st.st_mode & libc::S_IFMT != libc::S_IFDIR => {
                bail!("the image's /dev is not a directory")
            }
            _ => Ok(()),
        }
    }

    fn mount_in_root(&mut self, rootfs: &Path, m: &MountPlan, views: &[CgroupView]) -> Result<()> {
        let root = open_root(rootfs)?;
        let what = || format!("mount {} ({}) at {}", m.source.as_deref().unwrap_or(""), m.fstype, m.destination.display());
        if m.fstype == "cgroup" || m.fstype == "cgroup2" {
            return self.mount_cgroup(&root, m, views).with_context(what);
        }
        if m.bind {
            let source = m.source.as_deref().with_context(|| format!("bind mount {} has no source", m.destination.display()))?;
            let kind = match std::fs::metadata(source) {
                Ok(md) if !md.is_dir() => Kind::File,
                Ok(_) => Kind::Dir,
                Err(e) => return Err(e).with_context(|| format!("bind source {source}")).with_context(what),
            };
            let target = ensure_in_root(&root, &m.destination, kind).with_context(what)?;
            self.bind(source, &target, m.recursive).with_context(what)?;
            let extra = m.flags & !libc::MS_REMOUNT;
            if extra != 0 {
                let target = open_in_root(&root, &rel(&m.destination), libc::O_PATH).with_context(what)?;
                self.remount_bind(&fd_path(&target), extra).with_context(what)?;
            }
        } else {
            let target = ensure_in_root(&root, &m.destination, Kind::Dir).with_context(what)?;
            let source = m.source.clone().unwrap_or_else(|| m.fstype.clone());
            let data = (!m.data.is_empty()).then_some(m.data.as_str());
            match sys::mount(Some(&source), &fd_path(&target), Some(&m.fstype), m.flags, data) {
                Ok(()) => {}
                // In a user namespace without its own network namespace sysfs
                // cannot be mounted: show the host's read-only instead (runc does too).
                Err(e) if self.userns && is_errno(&e, libc::EPERM) && m.fstype == "sysfs" => {
                    self.bind("/sys", &target, true).with_context(what)?;
                    let t = open_in_root(&root, &rel(&m.destination), libc::O_PATH)?;
                    self.remount_bind(&fd_path(&t), libc::MS_RDONLY | m.flags).with_context(what)?;
                }
                Err(e) => return Err(e).with_context(what),
            }
            if let (Some(label), "mqueue") = (&self.mount_label, m.fstype.as_str()) {
                // The IPC namespace's mqueue superblock exists before this mount
                // (no context= option): label its root instead, as runc does.
                let t = open_in_root(&root, &rel(&m.destination), libc::O_PATH).with_context(what)?;
                crate::lsm::set_file_label(&fd_path(&t), label).with_context(what)?;
            }
        }
        if m.propagation != 0 {
            let target = open_in_root(&root, &rel(&m.destination), libc::O_PATH).with_context(what)?;
            sys::mount(None, &fd_path(&target), None, m.propagation, None).with_context(what)?;
        }
        Ok(())
    }

    fn create_device(&mut self, rootfs: &Path, d: &Device) -> Result<()> {
        let root = open_root(rootfs)?;
        let what = || format!("create device {}", d.path.display());
        let (parent_rel, name) = split_parent(&d.path)?;
        let parent = ensure_in_root(&root, &parent_rel, Kind::Dir).with_context(what)?;
        // A dir fd to create in (O_PATH descriptors cannot be written through).
        let parent = open_in_root(&parent, Path::new("."), libc::O_DIRECTORY | libc::O_RDONLY).with_context(what)?;
        if sys::fstatat(&parent, &name, libc::AT_SYMLINK_NOFOLLOW).is_ok() {
            return Ok(()); // a bind mount or the image already provides it
        }
        if !self.userns {
            // SAFETY: valid dirfd and C string.
            let made = cvt(unsafe {
                libc::mknodat(parent.as_raw_fd(), name.as_ptr(), d.kind | d.mode, libc::makedev(d.major as u32, d.minor as u32))
            });
            if made.is_ok() {
                // SAFETY: as above; mknod's mode is filtered by the umask, set it exactly.
                cvt(unsafe { libc::fchmodat(parent.as_raw_fd(), name.as_ptr(), d.mode, 0) }).with_context(what)?;
                cvt(unsafe { libc::fchownat(parent.as_raw_fd(), name.as_ptr(), d.uid, d.gid, libc::AT_SYMLINK_NOFOLLOW) })
                    .with_context(what)?;
                return Ok(());
            }
            let e = made.unwrap_err();
            if !is_errno(&e, libc::EPERM) {
                return Err(e).with_context(what);
            }
        }
        // Bind the host's node onto an empty file.
        let file = ensure_in_root(&root, &d.path, Kind::File).with_context(what)?;
        self.bind(&d.path.to_string_lossy(), &file, false).with_context(what)
    }

    fn symlink_in_root(&mut self, rootfs: &Path, target: &str, link: &Path) -> Result<()> {
        let root = open_root(rootfs)?;
        let (parent_rel, name) = split_parent(link)?;
        let parent = ensure_in_root(&root, &parent_rel, Kind::Dir)?;
        let parent = open_in_root(&parent, Path::new("."), libc::O_DIRECTORY | libc::O_RDONLY)?;
        let t = CString::new(target)?;
        // SAFETY: valid C strings and dirfd.
        match cvt(unsafe { libc::symlinkat(t.as_ptr(), parent.as_raw_fd(), name.as_ptr()) }) {
            Ok(_) => Ok(()),
            Err(e) if is_errno(&e, libc::EEXIST) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("symlink {} -> {target}", link.display())),
        }
    }

    fn pivot_root(&mut self, rootfs: &Path) -> Result<()> {
        let new_root = sys::open(rootfs, libc::O_DIRECTORY | libc::O_RDONLY, 0)
            .with_context(|| format!("open {}", rootfs.display()))?;
        // SAFETY: plain syscalls on valid descriptors/strings.
        unsafe {
            cvt(libc::fchdir(new_root.as_raw_fd())).context("fchdir to the rootfs")?;
            // pivot_root(".", "."): the old root ends up stacked under the new
            // one and is detached right away: no directory for it is needed.
            cvt(libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) as libc::c_int)
                .with_context(|| format!("pivot_root to {}", rootfs.display()))?;
        }
        sys::mount(None, Path::new("."), None, libc::MS_SLAVE | libc::MS_REC, None).context("make the old root rslave")?;
        sys::umount2(Path::new("."), libc::MNT_DETACH).context("detach the old root")?;
        std::env::set_current_dir("/").context("chdir /")?;
        Ok(())
    }

    fn move_root(&mut self, rootfs: &Path) -> Result<()> {
        std::env::set_current_dir(rootfs).with_context(|| format!("chdir {}", rootfs.display()))?;
        sys::mount(Some(&rootfs.to_string_lossy()), Path::new("/"), None, libc::MS_MOVE, None)
            .with_context(|| format!("move {} onto /", rootfs.display()))?;
        // SAFETY: valid C string.
        cvt(unsafe { libc::chroot(c".".as_ptr()) }).context("chroot")?;
        std::env::set_current_dir("/").context("chdir /")?;
        Ok(())
    }

    fn write_sysctl(&mut self, key: &str, value: &str) -> Result<()> {
        if key.contains("..") || key.contains('/') && key.contains('.') {
            bail!("sysctl {key:?}: malformed name");
        }
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        sys::write_file(&path, value).with_context(|| format!("sysctl {key}={value}"))
    }

    fn mask_path(&mut self, path: &Path) -> Result<()> {
        let md = match std::fs::metadata(path) {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("mask {}", path.display())),
        };
        if md.is_dir() {
            sys::mount(Some("tmpfs"), path, Some("tmpfs"), libc::MS_RDONLY, None)
        } else {
            sys::mount(Some("/dev/null"), path, None, libc::MS_BIND, None)
        }
        .with_context(|| format!("mask {}", path.display()))
    }

    fn readonly_path(&mut self, path: &Path) -> Result<()> {
        let s = path.to_string_lossy();
        match sys::mount(Some(&s), path, None, libc::MS_BIND | libc::MS_REC, None) {
            Err(e) if is_errno(&e, libc::ENOENT) => return Ok(()),
            other => other.with_context(|| format!("bind {} read-only", path.display()))?,
        }
        self.remount_bind(path, libc::MS_RDONLY | libc::MS_REC)
            .with_context(|| format!("remount {} read-only", path.display()))
    }

    fn remount_root_readonly(&mut self) -> Result<()> {
        self.remount_bind(Path::new("/"), libc::MS_RDONLY).context("remount / read-only")
    }
}

/// `name` as a C string, used by callers that resolve one component.
pub fn component_cstr(name: &std::ffi::OsStr) -> Result<CString> {
    Ok(CString::new(name.as_bytes())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the steps instead of doing them.
    #[derive(Default)]
    struct Recorder(Vec<String>);

    impl Syscall for Recorder {
        fn set_propagation(&mut self, t: &Path, f: libc::c_ulong) -> Result<()> {
            self.0.push(format!("propagation {} {f:#x}", t.display()));
            Ok(())
        }
        fn mount_root(&mut self, m: &RootMount, _: &Path) -> Result<()> {
            self.0.push(format!("root {}", m.kind));
            Ok(())
        }
        fn bind_self(&mut self, _: &Path) -> Result<()> {
            self.0.push("bind-self".into());
            Ok(())
        }
        fn check_dev(&mut self, _: &Path) -> Result<()> {
            self.0.push("check-dev".into());
            Ok(())
        }
        fn mount_in_root(&mut self, _: &Path, m: &MountPlan, _: &[CgroupView]) -> Result<()> {
            self.0.push(format!("mount {}", m.destination.display()));
            Ok(())
        }
        fn create_device(&mut self, _: &Path, d: &Device) -> Result<()> {
            self.0.push(format!("device {}", d.path.display()));
            Ok(())
        }
        fn symlink_in_root(&mut self, _: &Path, _: &str, l: &Path) -> Result<()> {
            self.0.push(format!("symlink {}", l.display()));
            Ok(())
        }
        fn pivot_root(&mut self, _: &Path) -> Result<()> {
            self.0.push("pivot".into());
            Ok(())
        }
        fn move_root(&mut self, _: &Path) -> Result<()> {
            self.0.push("move-root".into());
            Ok(())
        }
        fn write_sysctl(&mut self, k: &str, _: &str) -> Result<()> {
            self.0.push(format!("sysctl {k}"));
            Ok(())
        }
        fn mask_path(&mut self, p: &Path) -> Result<()> {
            self.0.push(format!("mask {}", p.display()));
            Ok(())
        }
        fn readonly_path(&mut self, p: &Path) -> Result<()> {
            self.0.push(format!("ro {}", p.display()));
            Ok(())
        }
        fn remount_root_readonly(&mut self) -> Result<()> {
            self.0.push("ro-root".into());
            Ok(())
        }
    }

    fn config(spec: oci_spec::runtime::Spec) -> InitConfig {
        InitConfig {
            mode: crate::config::Mode::Create,
            id: "c1".into(),
            spec,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            root_mounts: vec![RootMount { kind: "overlay".into(), source: "overlay".into(), options: vec![] }],
            fifo: None,
            no_pivot: false,
            clone_flags: 0,
            join: vec![],
            seccomp_bpf: None,
            seccomp_flags: 0,
            preserve_fds: 0,
            cgroup_views: vec![],
            state_json: String::new(),
            console_fd: None,
            lsm: Default::default(),
        }
    }

    fn index(steps: &[String], prefix: &str) -> usize {
        steps.iter().position(|s| s.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} in {steps:?}"))
    }

    #[test]
    fn steps_run_in_order_private_root_mounts_devices_hooks_pivot_masks() {
        let mut spec = oci_spec::runtime::Spec::default();
        spec.root_mut().as_mut().unwrap().set_readonly(Some(true));
        let mut linux = spec.linux().clone().unwrap();
        linux.set_sysctl(Some([("net.ipv4.ip_forward".to_string(), "1".to_string())].into()));
        spec.set_linux(Some(linux));
        let setup = RootfsSetup::from_config(&config(spec)).unwrap();
        let mut rec = Recorder::default();
        let mut hooked = 0;
        setup_rootfs(&setup, &mut rec, &mut || {
            hooked += 1;
            Ok(())
        })
        .unwrap();
        let steps = rec.0;
        assert_eq!(hooked, 1);
        assert!(steps[0].starts_with("propagation / "), "{steps:?}");
        assert_eq!(steps[1], "root overlay");
        let proc_ = index(&steps, "mount /proc");
        let dev = index(&steps, "mount /dev");
        let pts = index(&steps, "mount /dev/pts");
        assert!(index(&steps, "check-dev") < dev);
        assert!(proc_ < dev && dev < pts, "spec order kept: {steps:?}");
        let null = index(&steps, "device /dev/null");
        assert!(pts < null);
        let ptmx = index(&steps, "symlink /dev/ptmx");
        let pivot = index(&steps, "pivot");
        assert!(null < ptmx && ptmx < pivot);
        let sysctl = index(&steps, "sysctl");
        let mask = index(&steps, "mask /proc/kcore");
        let ro = index(&steps, "ro /proc/sys");
        assert!(pivot < sysctl && sysctl < mask && mask < ro);
        assert_eq!(steps.last().unwrap(), "ro-root");
    }

    #[test]
    fn a_mount_label_reaches_tmpfs_and_devpts_but_not_proc_sysfs_mqueue_or_binds() {
        let mut cfg = config(oci_spec::runtime::Spec::default());
        cfg.lsm.mount_label = Some("system_u:object_r:container_file_t:s0:c1,c2".into());
        let setup = RootfsSetup::from_config(&cfg).unwrap();
        let data = |dest: &str| setup.mounts.iter().find(|m| m.destination == Path::new(dest)).unwrap().data.clone();
        let ctx = "context=\"system_u:object_r:container_file_t:s0:c1,c2\"";
        assert!(data("/dev").ends_with(ctx) && data("/dev/shm").ends_with(ctx) && data("/dev/pts").ends_with(ctx));
        for plain in ["/proc", "/sys", "/dev/mqueue"] {
            assert!(!data(plain).contains("context="), "{plain}: {}", data(plain));
        }
        let unlabelled = RootfsSetup::from_config(&config(oci_spec::runtime::Spec::default())).unwrap();
        assert!(unlabelled.mounts.iter().all(|m| !m.data.contains("context=")));
    }

    #[test]
    fn no_pivot_moves_and_a_plain_rootfs_is_bound_onto_itself() {
        let mut spec = oci_spec::runtime::Spec::default();
        spec.root_mut().as_mut().unwrap().set_readonly(Some(false));
        let mut cfg = config(spec);
        cfg.no_pivot = true;
        cfg.root_mounts.clear();
        let setup = RootfsSetup::from_config(&cfg).unwrap();
        let mut rec = Recorder::default();
        setup_rootfs(&setup, &mut rec, &mut || Ok(())).unwrap();
        assert_eq!(rec.0[1], "bind-self");
        assert!(rec.0.contains(&"move-root".to_string()));
        assert!(!rec.0.contains(&"pivot".to_string()));
        assert!(!rec.0.contains(&"ro-root".to_string()));
    }

    #[test]
    fn spec_devices_replace_defaults_of_the_same_path() {
        let mut spec = oci_spec::runtime::Spec::default();
        let mut linux = spec.linux().clone().unwrap();
        linux.set_devices(Some(vec![
            oci_spec::runtime::LinuxDeviceBuilder::default()
                .path("/dev/null")
                .typ(oci_spec::runtime::LinuxDeviceType::C)
                .major(1)
                .minor(3)
                .file_mode(0o600u32)
                .build()
                .unwrap(),
        ]));
        spec.set_linux(Some(linux));
        let setup = RootfsSetup::from_config(&config(spec)).unwrap();
        let nulls: Vec<_> = setup.devices.iter().filter(|d| d.path == Path::new("/dev/null")).collect();
        assert_eq!(nulls.len(), 1);
        assert_eq!(nulls[0].mode, 0o600);
    }

    #[test]
    fn a_failing_step_stops_the_sequence() {
        struct FailPivot(Recorder);
        impl Syscall for FailPivot {
            fn set_propagation(&mut self, t: &Path, f: libc::c_ulong) -> Result<()> { self.0.set_propagation(t, f) }
            fn mount_root(&mut self, m: &RootMount, r: &Path) -> Result<()> { self.0.mount_root(m, r) }
            fn bind_self(&mut self, r: &Path) -> Result<()> { self.0.bind_self(r) }
            fn check_dev(&mut self, r: &Path) -> Result<()> { self.0.check_dev(r) }
            fn mount_in_root(&mut self, r: &Path, m: &MountPlan, v: &[CgroupView]) -> Result<()> { self.0.mount_in_root(r, m, v) }
            fn create_device(&mut self, r: &Path, d: &Device) -> Result<()> { self.0.create_device(r, d) }
            fn symlink_in_root(&mut self, r: &Path, t: &str, l: &Path) -> Result<()> { self.0.symlink_in_root(r, t, l) }
            fn pivot_root(&mut self, _: &Path) -> Result<()> { bail!("pivot_root: EINVAL") }
            fn move_root(&mut self, r: &Path) -> Result<()> { self.0.move_root(r) }
            fn write_sysctl(&mut self, k: &str, v: &str) -> Result<()> { self.0.write_sysctl(k, v) }
            fn mask_path(&mut self, p: &Path) -> Result<()> { self.0.mask_path(p) }
            fn readonly_path(&mut self, p: &Path) -> Result<()> { self.0.readonly_path(p) }
            fn remount_root_readonly(&mut self) -> Result<()> { self.0.remount_root_readonly() }
        }
        let setup = RootfsSetup::from_config(&config(oci_spec::runtime::Spec::default())).unwrap();
        let mut sys = FailPivot(Recorder::default());
        let err = setup_rootfs(&setup, &mut sys, &mut || Ok(())).unwrap_err();
        assert!(err.to_string().contains("pivot_root"));
        assert!(!sys.0.0.iter().any(|s| s.starts_with("mask")));
    }
}
