//! The container process's own attributes, set by the init right before
//! exec: rlimits, user and groups, capabilities, cwd, the executable.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use caps::{CapSet, Capability};
use oci_spec::runtime::{Capabilities, Process};

use crate::sys::cvt;

fn oci_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// OCI capability names -> `caps` values; unknown names are an error naming them.
pub fn cap_set(set: Option<&Capabilities>) -> Result<HashSet<Capability>> {
    set.into_iter()
        .flatten()
        .map(|c| {
            let n = oci_name(c);
            n.parse::<Capability>().map_err(|_| anyhow::anyhow!("unknown capability {n}"))
        })
        .collect()
}

fn rlimit_resource(name: &str) -> Result<libc::__rlimit_resource_t> {
    Ok(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        other => bail!("unknown rlimit {other}"),
    })
}

pub fn apply_rlimits(p: &Process) -> Result<()> {
    for r in p.rlimits().iter().flatten() {
        let name = oci_name(&r.typ());
        let lim = libc::rlimit { rlim_cur: r.soft(), rlim_max: r.hard() };
        // SAFETY: valid struct.
        cvt(unsafe { libc::setrlimit(rlimit_resource(&name)?, &lim) })
            .with_context(|| format!("setrlimit {name} soft={} hard={}", r.soft(), r.hard()))?;
    }
    Ok(())
}

/// Groups, gid, uid, then the five capability sets, in the order the kernel
/// allows: the bounding set shrinks while CAP_SETPCAP is still held, the
/// permitted set survives the uid change through PR_SET_KEEPCAPS.
pub fn set_user_and_capabilities(p: &Process) -> Result<()> {
    let user = p.user();
    let wanted = p.capabilities().as_ref();
    if let Some(c) = wanted {
        let bounding = cap_set(c.bounding().as_ref())?;
        for cap in caps::read(None, CapSet::Bounding).context("read the bounding set")? {
            if !bounding.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap).with_context(|| format!("drop {cap} from the bounding set"))?;
            }
        }
    }
    let mut groups: Vec<libc::gid_t> = user.additional_gids().clone().unwrap_or_default();
    groups.dedup();
    // SAFETY: plain syscalls with valid pointers.
    unsafe {
        // EPERM here means a user namespace with setgroups denied; only a
        // problem when groups were asked for.
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0 && !groups.is_empty() {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("setgroups {groups:?}"));
        }
        cvt(libc::setresgid(user.gid(), user.gid(), user.gid())).with_context(|| format!("setresgid {}", user.gid()))?;
        cvt(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0)).context("PR_SET_KEEPCAPS")?;
        cvt(libc::setresuid(user.uid(), user.uid(), user.uid())).with_context(|| format!("setresuid {}", user.uid()))?;
        cvt(libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0)).context("PR_SET_KEEPCAPS")?;
    }
    let Some(c) = wanted else {
        // No capabilities object: none at all (as runc).
        for set in [CapSet::Effective, CapSet::Inheritable, CapSet::Permitted] {
            caps::clear(None, set).with_context(|| format!("clear {set:?}"))?;
        }
        return Ok(());
    };
    let effective = cap_set(c.effective().as_ref())?;
    let permitted = cap_set(c.permitted().as_ref())?;
    let inheritable = cap_set(c.inheritable().as_ref())?;
    let ambient = cap_set(c.ambient().as_ref())?;
    let current_p = caps::read(None, CapSet::Permitted)?;
    // Effective first (it must stay within both the old and the new permitted set).
    let e_now: HashSet<_> = effective.intersection(&current_p).copied().collect();
    caps::set(None, CapSet::Effective, &e_now).context("set effective capabilities")?;
    caps::set(None, CapSet::Inheritable, &inheritable).context("set inheritable capabilities")?;
    caps::set(None, CapSet::Permitted, &permitted).context("set permitted capabilities")?;
    caps::set(None, CapSet::Effective, &effective).context("set effective capabilities")?;
    // Ambient capabilities need to be in both the permitted and inheritable
    // sets; one that cannot be raised is skipped with a warning (as runc does).
    for cap in ambient {
        if let Err(e) = caps::raise(None, CapSet::Ambient, cap) {
            tracing::warn!("ambient capability {cap} not raised: {e}");
        }
    }
    Ok(())
}

/// chdir to the process's cwd and check where we ended up: a cwd reached
/// through a leaked host descriptor would show as "(unreachable)" (CVE-2024-21626).
pub fn enter_cwd(p: &Process) -> Result<()> {
    let cwd = p.cwd();
    if !cwd.is_absolute() {
        bail!("cwd {} is not absolute", cwd.display());
    }
    std::env::set_current_dir(cwd).with_context(|| format!("chdir to cwd {}", cwd.display()))?;
    let now = std::env::current_dir().context("getcwd")?;
    if !now.is_absolute() || now.as_os_str().as_bytes().starts_with(b"(unreachable)") {
        bail!("cwd {} is outside the container root", cwd.display());
    }
    Ok(())
}

fn env_value<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter().rev().find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

fn is_executable(p: &Path) -> bool {
    let Ok(c) = crate::sys::cstr(p) else { return false };
    // SAFETY: valid C string.
    p.is_file() && unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0
}

/// args[0] resolved as execvp would, with the container's PATH.
pub fn find_executable(arg0: &str, env: &[String]) -> Result<PathBuf> {
    if arg0.contains('/') {
        let p = PathBuf::from(arg0);
        if !is_executable(&p) {
            bail!("{arg0}: not found or not executable in the container");
        }
        return Ok(p);
    }
    let path = env_value(env, "PATH").unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let cand = Path::new(dir).join(arg0);
        if is_executable(&cand) {
            return Ok(cand);
        }
    }
    bail!("{arg0}: executable file not found in the container's PATH ({path})")
}

/// execve; returns only on failure.
pub fn exec(path: &Path, args: &[String], env: &[String]) -> anyhow::Error {
    let to_c = |v: &[String]| v.iter().map(|s| CString::new(s.as_bytes())).collect::<Result<Vec<_>, _>>();
    let (Ok(argv), Ok(envp), Ok(file)) = (to_c(args), to_c(env), crate::sys::cstr(path)) else {
        return anyhow::anyhow!("exec {}: argument with a NUL byte", path.display());
    };
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|c| c.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    // SAFETY: NUL-terminated arrays of valid C strings.
    unsafe { libc::execve(file.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
    anyhow::Error::new(std::io::Error::last_os_error()).context(format!("exec {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_lookup_uses_the_container_path() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        assert!(find_executable("sh", &env).unwrap().ends_with("sh"));
        let err = find_executable("no-such-binary-berth", &env).unwrap_err();
        assert!(err.to_string().contains("/nonexistent:/bin:/usr/bin"));
    }

    #[test]
    fn capability_names_map_and_unknown_ones_fail() {
        let set: Capabilities = serde_json::from_str(r#"["CAP_CHOWN","CAP_NET_RAW"]"#).unwrap();
        let caps = cap_set(Some(&set)).unwrap();
        assert!(caps.contains(&Capability::CAP_CHOWN) && caps.contains(&Capability::CAP_NET_RAW));
    }

    #[test]
    fn rlimit_names() {
        assert_eq!(rlimit_resource("RLIMIT_NOFILE").unwrap(), libc::RLIMIT_NOFILE);
        assert!(rlimit_resource("RLIMIT_BOGUS").is_err());
    }
}
