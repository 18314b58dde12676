//! OCI seccomp profile -> BPF program, compiled with libseccomp in the
//! runtime process and cached in memory keyed by the profile's SHA-256; the
//! init only loads the bytes (`seccomp(SECCOMP_SET_MODE_FILTER)`), so a
//! thousand containers with the default profile compile it once.
//!
//! [`compile_cached_in`] also keeps the program on disk, in a root-only
//! directory of the executor's state root: every `berth run` is a new
//! process, and compiling the default profile (~350 rules) costs libseccomp
//! ~10 ms, more than the rest of the container's creation. The file's name
//! is the SHA-256 of the profile, libseccomp's version and the
//! architecture; its content carries its own SHA-256, so a torn or edited
//! file is recompiled, never loaded.

use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, Result, bail};
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};
use sha2::{Digest, Sha256};

/// A compiled filter: `struct sock_filter` array and `SECCOMP_FILTER_FLAG_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    pub bpf: Vec<u8>,
    pub flags: u32,
}

fn cache() -> &'static Mutex<HashMap<[u8; 32], Arc<Compiled>>> {
    static CACHE: OnceLock<Mutex<HashMap<[u8; 32], Arc<Compiled>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Compiles `profile`, or returns the cached program of an identical one.
pub fn compile_cached(profile: &LinuxSeccomp) -> Result<Arc<Compiled>> {
    compile_cached_in(profile, None)
}

/// [`compile_cached`], also looking in and filling the on-disk cache in
/// `disk` (created 0700; a directory someone else could write to is not
/// used). A disk cache that cannot be read or written only costs the compile.
pub fn compile_cached_in(profile: &LinuxSeccomp, disk: Option<&Path>) -> Result<Arc<Compiled>> {
    let json = serde_json::to_vec(profile)?;
    let key: [u8; 32] = Sha256::digest(&json).into();
    if let Some(hit) = cache().lock().unwrap().get(&key) {
        return Ok(hit.clone());
    }
    let disk = disk.map(|dir| (dir, disk_name(&json)));
    let from_disk = disk.as_ref().and_then(|(dir, name)| disk_read(dir, name));
    let compiled = match from_disk {
        Some(compiled) => Arc::new(compiled),
        None => {
            let compiled = Arc::new(compile(profile)?);
            if let Some((dir, name)) = &disk
                && let Err(err) = disk_write(dir, name, &compiled)
            {
                tracing::debug!(dir = %dir.display(), "seccomp program not cached on disk: {err:#}");
            }
            compiled
        }
    };
    cache().lock().unwrap().insert(key, compiled.clone());
    Ok(compiled)
}

/// The disk cache's directory in an executor's state root: not a valid
/// container id, so no container's state directory can take its place.
pub const CACHE_DIR: &str = "@seccomp";

/// Format of a cache file: magic, SHA-256 of the rest, flags (u32 LE), BPF.
const DISK_MAGIC: &[u8; 8] = b"berthsc1";
const DISK_HEADER: usize = 8 + 32 + 4;
/// The kernel's BPF_MAXINSNS, 8 bytes each.
const MAX_BPF_BYTES: usize = 4096 * 8;

/// What the compiled bytes depend on: the profile, libseccomp's version
/// (its code generation changes between releases) and the architecture.
fn disk_name(profile_json: &[u8]) -> String {
    let version = libseccomp::ScmpVersion::current().map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro)).unwrap_or_default();
    let mut h = Sha256::new();
    // v2: binary-tree programs (the v1 files hold linear ones).
    h.update(b"berth-seccomp-cache-v2\0");
    h.update(version.as_bytes());
    h.update(b"\0");
    h.update(std::env::consts::ARCH.as_bytes());
    h.update(b"\0");
    h.update(profile_json);
    format!("{}.bpf", hex::encode(h.finalize()))
}

/// The directory is ours alone: owned by this user, writable by no one else.
fn disk_dir_ok(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: no arguments, cannot fail.
    let euid = unsafe { libc::geteuid() };
    std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == euid && m.mode() & 0o022 == 0)
}

fn disk_read(dir: &Path, name: &str) -> Option<Compiled> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    if !disk_dir_ok(dir) {
        return None;
    }
    let mut file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(dir.join(name)).ok()?;
    let meta = file.metadata().ok()?;
    // SAFETY: no arguments, cannot fail.
    let euid = unsafe { libc::geteuid() };
    if !meta.is_file() || meta.uid() != euid || meta.mode() & 0o022 != 0 || meta.len() as usize > DISK_HEADER + MAX_BPF_BYTES {
        return None;
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut data).ok()?;
    if data.len() <= DISK_HEADER || &data[..8] != DISK_MAGIC || Sha256::digest(&data[40..]).as_slice() != &data[8..40] {
        tracing::debug!(file = %dir.join(name).display(), "ignoring a damaged seccomp cache file");
        return None;
    }
    let flags = u32::from_le_bytes(data[40..44].try_into().ok()?);
    let bpf = data[DISK_HEADER..].to_vec();
    bpf.len().is_multiple_of(8).then_some(Compiled { bpf, flags })
}

/// Writes a temporary file and renames it into place: readers see a whole
/// file or none.
fn disk_write(dir: &Path, name: &str, compiled: &Compiled) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if compiled.bpf.len() > MAX_BPF_BYTES {
        return Ok(());
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
    }
    if !disk_dir_ok(dir) {
        bail!("{} is not a directory only this user can write", dir.display());
    }
    let mut body = Vec::with_capacity(4 + compiled.bpf.len());
    body.extend_from_slice(&compiled.flags.to_le_bytes());
    body.extend_from_slice(&compiled.bpf);
    let mut data = Vec::with_capacity(DISK_HEADER + compiled.bpf.len());
    data.extend_from_slice(DISK_MAGIC);
    data.extend_from_slice(&Sha256::digest(&body));
    data.extend_from_slice(&body);
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&data))
        .and_then(|()| std::fs::rename(&tmp, dir.join(name)));
    if written.is_err() {
        std::fs::remove_file(&tmp).ok();
    }
    written.with_context(|| format!("writing {}", dir.join(name).display()))
}

/// The OCI name of an enum value (`SCMP_ACT_ERRNO`, `SCMP_ARCH_X86_64`...).
fn name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction> {
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => ScmpAction::KillThread,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno.unwrap_or(libc::EPERM as u32) as i32),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno.unwrap_or(libc::EPERM as u32) as u16),
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        other => bail!("seccomp action {} is not supported", name(&other)),
    })
}

fn compare(arg: &oci_spec::runtime::LinuxSeccompArg) -> Result<ScmpArgCompare> {
    use LinuxSeccompOperator as O;
    let op = match arg.op() {
        O::ScmpCmpNe => ScmpCompareOp::NotEqual,
        O::ScmpCmpLt => ScmpCompareOp::Less,
        O::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        O::ScmpCmpEq => ScmpCompareOp::Equal,
        O::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        O::ScmpCmpGt => ScmpCompareOp::Greater,
        O::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(arg.value()),
    };
    let datum = if matches!(arg.op(), O::ScmpCmpMaskedEq) { arg.value_two().unwrap_or(0) } else { arg.value() };
    if arg.index() > 5 {
        bail!("seccomp argument index {} out of range", arg.index());
    }
    Ok(ScmpArgCompare::new(arg.index() as u32, op, datum))
}

/// Compiles without the cache.
pub fn compile(profile: &LinuxSeccomp) -> Result<Compiled> {
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).context("seccomp_init")?;
    // The runtime sets no_new_privs itself when the spec asks.
    ctx.set_ctl_nnp(false)?;
    // A binary tree over the syscall numbers instead of one comparison after
    // another: the default profile's ~1000-instruction linear program made
    // the seccomp(2) load itself take ~1.5 ms (the kernel runs the filter
    // for every syscall number of each architecture to build its allow
    // cache), and every syscall walk it. libseccomp before 2.5 has no such
    // level: the linear program is as correct.
    if let Err(e) = ctx.set_ctl_optimize(2) {
        tracing::debug!("seccomp: no binary-tree optimization ({e}); the program stays linear");
    }
    for arch in profile.architectures().iter().flatten() {
        let n = name(arch);
        let a: ScmpArch = n.parse().with_context(|| format!("seccomp architecture {n}"))?;
        if a != ScmpArch::native() {
            ctx.add_arch(a).with_context(|| format!("seccomp architecture {n}"))?;
        }
    }
    for rule in profile.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret().or(profile.default_errno_ret()))?;
        if act == default {
            continue; // libseccomp refuses rules equal to the default action
        }
        let args: Vec<ScmpArgCompare> = rule.args().iter().flatten().map(compare).collect::<Result<_>>()?;
        for sc in rule.names() {
            // Names unknown to this libseccomp (newer syscalls) are skipped, as runc does.
            let Ok(sys) = ScmpSyscall::from_name(sc) else { continue };
            let added = if args.is_empty() {
                ctx.add_rule(act, sys)
            } else {
                ctx.add_rule_conditional(act, sys, &args)
            };
            added.with_context(|| format!("seccomp rule for {sc}"))?;
        }
    }
    let mut flags = 0u32;
    for f in profile.flags().iter().flatten() {
        flags |= match name(f).as_str() {
            "SECCOMP_FILTER_FLAG_TSYNC" => 1,
            "SECCOMP_FILTER_FLAG_LOG" => 2,
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => 4,
            other => bail!("seccomp flag {other} is not supported"),
        };
    }
    // Export through a memfd (libseccomp 2.5 has no in-memory export).
    // SAFETY: plain syscall; the descriptor is ours.
    let fd = unsafe { libc::memfd_create(c"berth-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("memfd_create");
    }
    // SAFETY: fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    ctx.export_bpf(&fd).context("seccomp_export_bpf")?;
    let mut file = std::fs::File::from(fd);
    file.rewind()?;
    let mut bpf = Vec::new();
    file.read_to_end(&mut bpf)?;
    if bpf.is_empty() || !bpf.len().is_multiple_of(8) {
        bail!("seccomp: exported program has {} bytes", bpf.len());
    }
    Ok(Compiled { bpf, flags })
}

/// Loads a compiled program into the calling thread (the init).
pub fn load(bpf: &[u8], flags: u32) -> std::io::Result<()> {
    let prog = libc::sock_fprog {
        len: (bpf.len() / 8) as u16,
        filter: bpf.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prog points at `len` filters that live through the call.
    let r = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, flags, &prog) };
    if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn compiles_and_caches_by_content() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86"],
                "syscalls":[{"names":["mkdir","mkdirat","no_such_syscall"],"action":"SCMP_ACT_ERRNO","errnoRet":1},
                            {"names":["personality"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        let a = compile_cached(&p).unwrap();
        let b = compile_cached(&p.clone()).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "second compile of the same profile comes from the cache");
        assert!(a.bpf.len() > 8 && a.bpf.len().is_multiple_of(8));
    }

    #[test]
    fn disk_cache_serves_a_new_process_and_ignores_damage() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("seccomp");
        // A profile no other test compiles: the memory cache cannot answer.
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_LOG"],
                "syscalls":[{"names":["acct","swapon"],"action":"SCMP_ACT_ERRNO","errnoRet":38}]}"#,
        );
        let fresh = compile(&p).unwrap();
        let first = compile_cached_in(&p, Some(&disk)).unwrap();
        assert_eq!(*first, fresh);
        let name = disk_name(&serde_json::to_vec(&p).unwrap());
        let file = disk.join(&name);
        assert_eq!(disk_read(&disk, &name), Some(fresh.clone()), "the program is on disk");
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&disk).unwrap().permissions().mode() & 0o777, 0o700);
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // A flipped bit in the program: ignored, recompiled, rewritten.
        let mut data = std::fs::read(&file).unwrap();
        let last = data.len() - 1;
        data[last] ^= 1;
        std::fs::write(&file, &data).unwrap();
        assert_eq!(disk_read(&disk, &name), None);
        let key: [u8; 32] = Sha256::digest(serde_json::to_vec(&p).unwrap()).into();
        cache().lock().unwrap().remove(&key);
        assert_eq!(*compile_cached_in(&p, Some(&disk)).unwrap(), fresh);
        assert_eq!(disk_read(&disk, &name), Some(fresh.clone()), "the damaged file was replaced");
        // A directory others can write to is not trusted.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&disk, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        assert_eq!(disk_read(&disk, &name), None);
    }

    #[test]
    fn unsupported_action_is_an_error_naming_it() {
        let p = profile(r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#);
        assert!(compile(&p).unwrap_err().to_string().contains("SCMP_ACT_NOTIFY"));
    }

    #[test]
    fn flags_are_translated() {
        let p = profile(r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_LOG"]}"#);
        assert_eq!(compile(&p).unwrap().flags, 2);
    }
}
