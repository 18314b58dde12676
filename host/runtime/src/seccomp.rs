//! OCI seccomp profile -> BPF program, compiled with libseccomp in the
//! runtime process and cached in memory keyed by the profile's SHA-256; the
//! init only loads the bytes (`seccomp(SECCOMP_SET_MODE_FILTER)`), so a
//! thousand containers with the default profile compile it once.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::os::fd::{FromRawFd, OwnedFd};
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
    let key: [u8; 32] = Sha256::digest(serde_json::to_vec(profile)?).into();
    if let Some(hit) = cache().lock().unwrap().get(&key) {
        return Ok(hit.clone());
    }
    let compiled = Arc::new(compile(profile)?);
    cache().lock().unwrap().insert(key, compiled.clone());
    Ok(compiled)
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
