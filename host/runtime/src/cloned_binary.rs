//! CVE-2019-5736: the init helper is executed from a handle the container
//! cannot write through, never from the runtime's binary on disk.
//!
//! The native executor re-executes a binary of the host (`berth` or
//! `berth-init`) as its helper, and the helper's fork is the container's init
//! until it execs the container's program. A process in the container able to
//! open `/proc/<that pid>/exe` (CAP_SYS_PTRACE defeats the non-dumpable flag)
//! could keep the descriptor and, once the helper has exec'd away (no more
//! ETXTBSY), reopen it for writing and replace the host binary.
//!
//! So the helper is executed through `/proc/self/fd/N` of a sealed handle,
//! made once per berth process and per binary (the cost is paid once):
//! 1. a read-only overlayfs (two lower layers, no upper: the kernel refuses
//!    every write) over the binary's directory, created with the new mount
//!    API as a detached mount that no mount namespace can see or remount; the
//!    handle is an `O_PATH` descriptor of the binary inside it. A few
//!    syscalls, independent of the binary's size (as runc 1.2).
//! 2. else a memfd copy sealed against writes, shrinking and growing
//!    (`F_SEAL_SEAL|F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_WRITE`, as runc ≤ 1.1
//!    and crun): costs a copy of the whole binary, in time and memory.
//! 3. else the binary itself, with a warning.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};

use crate::sys::{self, cvt};

/// How the handle was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An `O_PATH` descriptor in a detached read-only overlayfs.
    Overlay,
    /// A sealed memfd copy.
    Memfd,
}

/// A handle to a binary's contents that nothing can write through.
#[derive(Debug)]
pub struct SealedExe {
    pub fd: OwnedFd,
    pub kind: Kind,
    /// The binary it was made from.
    pub source: PathBuf,
}

impl SealedExe {
    /// Makes the handle: overlayfs first, memfd second.
    pub fn new(path: &Path) -> Result<SealedExe> {
        let overlay_err = match overlay(path) {
            Ok(fd) => return Ok(SealedExe { fd, kind: Kind::Overlay, source: path.to_path_buf() }),
            Err(e) => e,
        };
        tracing::debug!("sealing {} with overlayfs failed ({overlay_err:#}); copying it into a memfd", path.display());
        match memfd(path) {
            Ok(fd) => Ok(SealedExe { fd, kind: Kind::Memfd, source: path.to_path_buf() }),
            Err(e) => Err(e.context(format!("overlayfs: {overlay_err:#}"))),
        }
    }

    /// A duplicate of the handle numbered at least `min` (so a child's
    /// dup2 onto low descriptor numbers cannot clobber it), close-on-exec.
    /// Exec `/proc/self/fd/<it>`: the kernel opens the file before it
    /// closes close-on-exec descriptors.
    pub fn dup_at_least(&self, min: i32) -> Result<OwnedFd> {
        // SAFETY: fcntl on a descriptor we own; the result is a new one.
        let fd = cvt(unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) })
            .context("duplicate the sealed helper binary's descriptor")?;
        // SAFETY: just created, owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// What [`for_binary`] remembers per binary: the handle or why there is none.
type Cached = std::result::Result<Arc<SealedExe>, String>;
static CACHE: Mutex<Vec<(PathBuf, Cached)>> = Mutex::new(Vec::new());

/// The sealed handle of `path`, made on first use and kept for the life of
/// the process. None (warned once per binary) when neither way works.
pub fn for_binary(path: &Path) -> Option<Arc<SealedExe>> {
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, c)) = cache.iter().find(|(p, _)| p == path) {
        return c.as_ref().ok().cloned();
    }
    let made = SealedExe::new(path).map(Arc::new).map_err(|e| format!("{e:#}"));
    if let Err(e) = &made {
        tracing::warn!(
            "CVE-2019-5736 protection off: cannot seal the init helper binary {} ({e}); it is executed from disk, \
             and a container process with CAP_SYS_PTRACE could rewrite it",
            path.display()
        );
    }
    cache.push((path.to_path_buf(), made.clone()));
    made.ok()
}

// The new mount API (linux/mount.h); libc has the syscall numbers only.
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;

fn fsconfig(ctx: &OwnedFd, cmd: libc::c_uint, key: Option<&str>, value: Option<&[u8]>) -> Result<()> {
    let key = key.map(|k| CString::new(k).expect("no NUL"));
    let value = value.map(|v| CString::new(v).context("NUL in an overlay option")).transpose()?;
    // SAFETY: valid C strings or NULL, as the command wants.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            ctx.as_raw_fd(),
            cmd,
            key.as_ref().map_or(std::ptr::null(), |k| k.as_ptr()),
            value.as_ref().map_or(std::ptr::null(), |v| v.as_ptr()),
            0,
        )
    };
    if r < 0 {
        let what = key.map_or_else(|| "create".to_string(), |k| k.to_string_lossy().into_owned());
        return Err(std::io::Error::last_os_error()).with_context(|| format!("fsconfig overlay {what}"));
    }
    Ok(())
}

/// `a:b` lowerdir syntax: `:` and `\` escaped.
fn escape_lower(p: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for b in p.as_os_str().as_bytes() {
        if matches!(b, b':' | b'\\') {
            out.push(b'\\');
        }
        out.push(*b);
    }
    out
}

/// An empty directory for the overlay's second (bottom) layer, unrelated to
/// `bin_dir` (overlayfs refuses nested layers); removed on drop (the mount
/// keeps its own reference).
struct DummyLower(PathBuf);

impl DummyLower {
    fn new(bin_dir: &Path) -> Result<DummyLower> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for base in ["/run", "/tmp", "/dev/shm", "/var/tmp"] {
            let dir = Path::new(base).join(format!(".berth-sealed-{}-{n}", std::process::id()));
            if bin_dir.starts_with(&dir) || dir.starts_with(bin_dir) {
                continue;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(DummyLower(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let _ = std::fs::remove_dir(&dir);
                    if std::fs::DirBuilder::new().mode(0o700).create(&dir).is_ok() {
                        return Ok(DummyLower(dir));
                    }
                }
                Err(_) => continue,
            }
        }
        bail!("no directory for the overlay's empty layer (tried /run, /tmp, /dev/shm, /var/tmp)")
    }
}

impl Drop for DummyLower {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// An `O_PATH` descriptor of `path` inside a detached, read-only overlayfs
/// whose layers are the binary's directory (top) and an empty one.
fn overlay(path: &Path) -> Result<OwnedFd> {
    let real = std::fs::canonicalize(path).with_context(|| format!("resolve {}", path.display()))?;
    let (Some(dir), Some(name)) = (real.parent(), real.file_name()) else { bail!("{} has no directory", real.display()) };
    // SAFETY: valid C string; returns a new descriptor.
    let ctx = unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) };
    if ctx < 0 {
        return Err(std::io::Error::last_os_error()).context("fsopen overlay");
    }
    // SAFETY: just created, ours.
    let ctx = unsafe { OwnedFd::from_raw_fd(ctx as i32) };
    let dummy = DummyLower::new(dir)?;
    // Layer by layer ("lowerdir+", Linux 6.8), else the escaped list.
    if fsconfig(&ctx, FSCONFIG_SET_STRING, Some("lowerdir+"), Some(dir.as_os_str().as_bytes())).is_ok() {
        fsconfig(&ctx, FSCONFIG_SET_STRING, Some("lowerdir+"), Some(dummy.0.as_os_str().as_bytes()))?;
    } else {
        let mut list = escape_lower(dir);
        list.push(b':');
        list.extend(escape_lower(&dummy.0));
        fsconfig(&ctx, FSCONFIG_SET_STRING, Some("lowerdir"), Some(&list))?;
    }
    // xino is of no use here and logs when the layers are on two filesystems.
    let _ = fsconfig(&ctx, FSCONFIG_SET_STRING, Some("xino"), Some(b"off"));
    fsconfig(&ctx, FSCONFIG_CMD_CREATE, None, None)?;
    // SAFETY: a configured context; returns a new descriptor of a detached mount.
    let mnt = unsafe {
        libc::syscall(libc::SYS_fsmount, ctx.as_raw_fd(), FSMOUNT_CLOEXEC, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)
    };
    if mnt < 0 {
        return Err(std::io::Error::last_os_error()).context("fsmount overlay");
    }
    // SAFETY: just created, ours.
    let mnt = unsafe { OwnedFd::from_raw_fd(mnt as i32) };
    let cname = CString::new(name.as_bytes()).context("NUL in the binary's name")?;
    // SAFETY: valid descriptor and C string; returns a new descriptor (it
    // keeps the detached mount alive after `mnt` is closed).
    let fd = cvt(unsafe { libc::openat(mnt.as_raw_fd(), cname.as_ptr(), libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) })
        .with_context(|| format!("open {} in the sealed overlay", name.to_string_lossy()))?;
    // SAFETY: just created, ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let (inside, outside) = (sys::fstat(&fd)?, std::fs::metadata(&real)?);
    use std::os::unix::fs::MetadataExt;
    if inside.st_mode & libc::S_IFMT != libc::S_IFREG || inside.st_size as u64 != outside.size() {
        bail!("{} in the sealed overlay is not the binary", name.to_string_lossy());
    }
    Ok(fd)
}

/// A sealed memfd copy of `path`.
fn memfd(path: &Path) -> Result<OwnedFd> {
    const MFD_EXEC: libc::c_uint = 0x10;
    let name = c"berth-init";
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // MFD_EXEC (Linux 6.3) keeps it executable when vm.memfd_noexec asks for noexec by default.
    // SAFETY: valid C string; returns a new descriptor.
    let mut fd = unsafe { libc::memfd_create(name.as_ptr(), flags | MFD_EXEC) };
    if fd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // SAFETY: as above.
        fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    }
    let mem = cvt(fd).context("memfd_create")?;
    // SAFETY: just created, ours.
    let mem = unsafe { OwnedFd::from_raw_fd(mem) };
    let src = sys::open(path, libc::O_RDONLY | libc::O_CLOEXEC, 0).with_context(|| format!("open {}", path.display()))?;
    let size = sys::fstat(&src)?.st_size;
    // SAFETY: plain syscall on our descriptor.
    cvt(unsafe { libc::ftruncate(mem.as_raw_fd(), size) }).context("size the memfd")?;
    let mut off: libc::off_t = 0;
    while off < size {
        // SAFETY: valid descriptors and offset pointer.
        let n = unsafe { libc::sendfile(mem.as_raw_fd(), src.as_raw_fd(), &mut off, (size - off) as usize) };
        if n < 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("copy {} into a memfd", path.display()));
        }
        if n == 0 {
            bail!("{} shrank while it was copied", path.display());
        }
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on our descriptor.
    cvt(unsafe { libc::fcntl(mem.as_raw_fd(), libc::F_ADD_SEALS, seals) }).context("seal the memfd")?;
    Ok(mem)
}

/// Both ways, for tests and measurements: (overlay, memfd).
pub fn each_kind(path: &Path) -> (Result<OwnedFd>, Result<OwnedFd>) {
    (overlay(path), memfd(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        // SAFETY: plain getter.
        let r = unsafe { libc::geteuid() } == 0;
        if !r {
            eprintln!("skipped: needs root");
        }
        r
    }

    /// An ELF executable in its own directory (a script would not do: its
    /// interpreter opens /proc/self/fd/N after close-on-exec closed it).
    fn tool(dir: &Path) -> PathBuf {
        let p = dir.join("tool");
        std::fs::copy("/bin/echo", &p).unwrap();
        p
    }

    fn reopen_for_write(fd: &OwnedFd) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new().append(true).open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
    }

    #[test]
    fn both_handles_run_the_binary_and_refuse_writes() {
        if !root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let bin = tool(tmp.path());
        let (ov, mem) = each_kind(&bin);
        for (kind, fd) in [("overlay", ov.unwrap()), ("memfd", mem.unwrap())] {
            let out = std::process::Command::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).arg("sealed-ok").output().unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), "sealed-ok\n", "{kind}");
            // Reopening through /proc (what an attacker holding /proc/<pid>/exe does).
            let wrote = reopen_for_write(&fd).and_then(|mut f| std::io::Write::write_all(&mut f, b"pwned"));
            let err = wrote.expect_err(kind);
            assert!(
                [libc::EROFS, libc::EPERM].contains(&err.raw_os_error().unwrap_or(0)),
                "{kind}: {err}"
            );
        }
        assert_eq!(std::fs::read(&bin).unwrap(), std::fs::read("/bin/echo").unwrap(), "the binary is unchanged");
        // The overlay's empty layer is gone; nothing is mounted anywhere.
        let leftovers: Vec<_> = std::fs::read_dir("/run")
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&format!(".berth-sealed-{}-", std::process::id())))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        // Ours only: other berth processes on the host (parallel tests) seal too.
        let ours = format!(".berth-sealed-{}-", std::process::id());
        assert!(!std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(&ours));
    }

    #[test]
    fn for_binary_is_made_once_per_binary() {
        if !root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let bin = tool(tmp.path());
        let a = for_binary(&bin).unwrap();
        let b = for_binary(&bin).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        if std::fs::read_to_string("/proc/filesystems").unwrap_or_default().contains("\toverlay\n") {
            assert_eq!(a.kind, Kind::Overlay, "this kernel has overlayfs: the cheap way is taken");
        }
        let d = a.dup_at_least(100).unwrap();
        assert!(d.as_raw_fd() >= 100);
        assert!(for_binary(&tmp.path().join("missing")).is_none());
    }

    /// Not an assertion on time: prints what each way costs for the real
    /// binaries (`cargo test --release -p berth-runtime --lib sealing_cost -- --nocapture`).
    #[test]
    fn sealing_cost() {
        if !root() {
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let release = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
        for bin in [release.join("berth"), release.join("berth-init")] {
            let Ok(meta) = std::fs::metadata(&bin) else { continue };
            let t = std::time::Instant::now();
            let ov = overlay(&bin);
            let ov_time = t.elapsed();
            let t = std::time::Instant::now();
            let mem = memfd(&bin);
            let mem_time = t.elapsed();
            eprintln!(
                "sealing {} ({} MB): overlayfs {:?} ({}), memfd copy {:?} ({})",
                bin.display(),
                meta.len() / 1_000_000,
                ov_time,
                if ov.is_ok() { "ok" } else { "failed" },
                mem_time,
                if mem.is_ok() { "ok" } else { "failed" },
            );
        }
    }
}
