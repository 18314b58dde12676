//! Linux security modules: the AppArmor profile (`process.apparmorProfile`),
//! the SELinux process label (`process.selinuxLabel`) and mount label
//! (`linux.mountLabel`) of a container.
//!
//! Two halves, as runc does it:
//! - [`plan`], in the runtime (parent) before anything is created: checks the
//!   host against what the spec asks for. A profile or label on a host whose
//!   module is not enabled is an error naming it (the container would
//!   otherwise run unconfined while its spec says it is confined), except
//!   AppArmor's `unconfined`, which such a host satisfies anyway.
//! - [`apply`], in the init as its last step before execve: writes the
//!   profile/label to the thread's `attr/exec`, so the kernel switches domain
//!   at that execve. The write goes through [`AttrWriter`] so the decisions
//!   are unit-tested without root or an LSM.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Where the kernel says AppArmor is enabled (`Y`).
pub const APPARMOR_ENABLED: &str = "/sys/module/apparmor/parameters/enabled";
/// Exists when SELinux is enabled (selinuxfs mounted).
pub const SELINUX_ENFORCE: &str = "/sys/fs/selinux/enforce";
/// AppArmor's own attr directory (kernels with LSM stacking, 5.8+).
pub const APPARMOR_EXEC: &str = "/proc/thread-self/attr/apparmor/exec";
/// The major LSM's exec attr (SELinux's).
pub const ATTR_EXEC: &str = "/proc/thread-self/attr/exec";
/// The process's exec attr: AppArmor's on kernels without the per-module
/// directory, [`ATTR_EXEC`] on kernels without /proc/thread-self (the init
/// is single-threaded: the same thing).
pub const ATTR_EXEC_SELF: &str = "/proc/self/attr/exec";

/// What this host's kernel has enabled.
pub trait HostLsm {
    fn apparmor_enabled(&self) -> bool;
    fn selinux_enabled(&self) -> bool;
}

/// The running kernel, as /sys shows it.
pub struct Host;

impl HostLsm for Host {
    fn apparmor_enabled(&self) -> bool {
        std::fs::read_to_string(APPARMOR_ENABLED).is_ok_and(|s| s.trim_start().starts_with('Y'))
    }
    fn selinux_enabled(&self) -> bool {
        Path::new(SELINUX_ENFORCE).exists()
    }
}

/// A spec asks for something the host cannot give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LsmError {
    #[error(
        "AppArmor profile {0:?} was requested (process.apparmorProfile), but AppArmor is not enabled on this host \
         ({APPARMOR_ENABLED} is not \"Y\"); refusing to run the container unconfined"
    )]
    AppArmorNotEnabled(String),
    #[error(
        "SELinux label {label:?} was requested ({field}), but SELinux is not enabled on this host \
         ({SELINUX_ENFORCE} does not exist); refusing to run the container unlabelled"
    )]
    SelinuxNotEnabled { field: &'static str, label: String },
}

/// What the init applies (decided by [`plan`]; sent to it in its configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// AppArmor profile to change to at exec.
    pub apparmor_profile: Option<String>,
    /// SELinux context of the process after exec.
    pub selinux_label: Option<String>,
    /// SELinux context of the container's tmpfs/devpts/... mounts (`context=`).
    pub mount_label: Option<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        *self == Plan::default()
    }
}

/// The host checked against a process's profile/label and the spec's mount label.
pub fn plan(process: Option<&oci_spec::runtime::Process>, mount_label: Option<&str>, host: &dyn HostLsm) -> Result<Plan, LsmError> {
    let nonempty = |s: Option<&String>| s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let mut out = Plan::default();
    if let Some(profile) = nonempty(process.and_then(|p| p.apparmor_profile().as_ref())) {
        if host.apparmor_enabled() {
            out.apparmor_profile = Some(profile);
        } else if profile != "unconfined" {
            return Err(LsmError::AppArmorNotEnabled(profile));
        }
        // "unconfined" without AppArmor: that is what the process gets anyway.
    }
    let selinux = |field, label: Option<String>| match label {
        Some(label) if !host.selinux_enabled() => Err(LsmError::SelinuxNotEnabled { field, label }),
        other => Ok(other),
    };
    out.selinux_label = selinux("process.selinuxLabel", nonempty(process.and_then(|p| p.selinux_label().as_ref())))?;
    out.mount_label = selinux("linux.mountLabel", mount_label.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string))?;
    Ok(out)
}

/// An exec'd process: its own profile/label where it has one, else the
/// container's (runc's rule).
pub fn inherit(exec: &oci_spec::runtime::Process, container: Option<&oci_spec::runtime::Process>) -> oci_spec::runtime::Process {
    let mut p = exec.clone();
    let unset = |v: &Option<String>| v.as_deref().is_none_or(|s| s.trim().is_empty());
    if let Some(c) = container {
        if unset(p.apparmor_profile()) {
            p.set_apparmor_profile(c.apparmor_profile().clone());
        }
        if unset(p.selinux_label()) {
            p.set_selinux_label(c.selinux_label().clone());
        }
    }
    p
}

/// Writes one `/proc` attribute file (the privileged step of [`apply`]).
pub trait AttrWriter {
    /// Writes `value` to `path`; `Ok(false)` when the kernel has no such file
    /// (the caller tries the next one).
    fn write(&mut self, path: &Path, value: &[u8]) -> io::Result<bool>;
}

/// The real writes: open without creating, one write(2) (the kernel takes
/// an attribute in one call).
pub struct ProcAttr;

impl AttrWriter for ProcAttr {
    fn write(&mut self, path: &Path, value: &[u8]) -> io::Result<bool> {
        use std::io::Write as _;
        let mut f = match std::fs::OpenOptions::new().write(true).open(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            other => other?,
        };
        f.write_all(value)?;
        Ok(true)
    }
}

/// `value` to the first of `paths` the kernel has. `not_found` explains a
/// write refused with ENOENT (AppArmor: no such profile loaded).
fn write_first(w: &mut dyn AttrWriter, what: &str, paths: &[&str], value: &[u8], not_found: &str) -> anyhow::Result<()> {
    for p in paths {
        match w.write(Path::new(p), value) {
            Ok(true) => return Ok(()),
            Ok(false) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(anyhow::Error::new(e).context(format!("{what}: write {p}: {not_found}")));
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("{what}: write {p}"))),
        }
    }
    anyhow::bail!("{what}: this kernel has none of {}", paths.join(", "))
}

/// Sets the profile/label the next execve of this thread switches to. Call
/// last before execve: any exec before it (a hook) would consume the change.
pub fn apply(plan: &Plan, w: &mut dyn AttrWriter) -> anyhow::Result<()> {
    if let Some(label) = &plan.selinux_label {
        let what = format!("set the SELinux exec label {label:?}");
        write_first(w, &what, &[ATTR_EXEC, ATTR_EXEC_SELF], label.as_bytes(), "refused")?;
    }
    if let Some(profile) = &plan.apparmor_profile {
        // AppArmor's change_onexec: "exec <profile>".
        let what = format!("apply the AppArmor profile {profile:?}");
        let value = format!("exec {profile}");
        write_first(w, &what, &[APPARMOR_EXEC, ATTR_EXEC_SELF], value.as_bytes(), "no profile of that name is loaded")?;
    }
    Ok(())
}

/// Filesystems that get `context=<mount label>` (runc's choice: not proc,
/// sysfs or cgroup, whose labels come from policy, nor mqueue, whose
/// superblock exists before the mount: its root gets [`set_file_label`];
/// never a bind mount).
pub fn takes_mount_label(fstype: &str, bind: bool) -> bool {
    !bind && !matches!(fstype, "proc" | "sysfs" | "mqueue" | "cgroup" | "cgroup2" | "")
}

/// Sets a file's SELinux label (`security.selinux`), following `path` (a
/// `/proc/self/fd/N` of an `O_PATH` descriptor reaches the file it holds).
pub fn set_file_label(path: &Path, label: &str) -> io::Result<()> {
    let c = crate::sys::cstr(path)?;
    // SAFETY: valid C strings and a buffer of the given length.
    crate::sys::cvt(unsafe {
        libc::setxattr(c.as_ptr(), c"security.selinux".as_ptr(), label.as_ptr().cast(), label.len(), 0)
    })?;
    Ok(())
}

/// Mount data with the SELinux context option added.
pub fn with_mount_label(data: &str, label: &str) -> String {
    let opt = format!("context=\"{label}\"");
    if data.is_empty() { opt } else { format!("{data},{opt}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        apparmor: bool,
        selinux: bool,
    }
    impl HostLsm for Fake {
        fn apparmor_enabled(&self) -> bool {
            self.apparmor
        }
        fn selinux_enabled(&self) -> bool {
            self.selinux
        }
    }
    const NONE: Fake = Fake { apparmor: false, selinux: false };
    const BOTH: Fake = Fake { apparmor: true, selinux: true };

    fn process(apparmor: Option<&str>, selinux: Option<&str>) -> oci_spec::runtime::Process {
        let mut p = oci_spec::runtime::Process::default();
        p.set_apparmor_profile(apparmor.map(str::to_string));
        p.set_selinux_label(selinux.map(str::to_string));
        p
    }

    #[test]
    fn a_profile_on_a_host_without_apparmor_is_an_error_naming_it() {
        let err = plan(Some(&process(Some("berth-test"), None)), None, &NONE).unwrap_err();
        assert_eq!(err, LsmError::AppArmorNotEnabled("berth-test".into()));
        let text = err.to_string();
        assert!(text.contains("\"berth-test\"") && text.contains("AppArmor is not enabled"), "{text}");
    }

    #[test]
    fn unconfined_or_empty_needs_no_apparmor() {
        for p in [Some("unconfined"), Some(""), None] {
            assert_eq!(plan(Some(&process(p, None)), None, &NONE).unwrap(), Plan::default(), "{p:?}");
        }
        assert!(plan(None, None, &NONE).unwrap().is_empty());
    }

    #[test]
    fn an_enabled_host_gets_the_profile_unconfined_included() {
        let got = plan(Some(&process(Some("berth-test"), None)), None, &BOTH).unwrap();
        assert_eq!(got.apparmor_profile.as_deref(), Some("berth-test"));
        let got = plan(Some(&process(Some("unconfined"), None)), None, &BOTH).unwrap();
        assert_eq!(got.apparmor_profile.as_deref(), Some("unconfined"));
    }

    #[test]
    fn selinux_labels_need_selinux_and_the_error_names_the_field() {
        let err = plan(Some(&process(None, Some("system_u:system_r:container_t:s0"))), None, &NONE).unwrap_err();
        assert!(err.to_string().contains("process.selinuxLabel") && err.to_string().contains("container_t"), "{err}");
        let err = plan(None, Some("system_u:object_r:container_file_t:s0"), &NONE).unwrap_err();
        assert!(err.to_string().contains("linux.mountLabel"), "{err}");
        let ok = plan(Some(&process(None, Some("a:b:c:s0"))), Some("x:y:z:s0"), &BOTH).unwrap();
        assert_eq!((ok.selinux_label.as_deref(), ok.mount_label.as_deref()), (Some("a:b:c:s0"), Some("x:y:z:s0")));
    }

    #[test]
    fn an_exec_keeps_the_containers_profile_and_label_unless_it_has_its_own() {
        let container = process(Some("berth-test"), Some("a:b:c:s0"));
        let got = inherit(&process(None, None), Some(&container));
        assert_eq!((got.apparmor_profile().as_deref(), got.selinux_label().as_deref()), (Some("berth-test"), Some("a:b:c:s0")));
        let got = inherit(&process(Some("other"), Some("")), Some(&container));
        assert_eq!((got.apparmor_profile().as_deref(), got.selinux_label().as_deref()), (Some("other"), Some("a:b:c:s0")));
        assert_eq!(inherit(&process(None, None), None).apparmor_profile(), &None);
    }

    /// Records writes; `missing` paths do not exist; a write of `unknown` fails with ENOENT.
    #[derive(Default)]
    struct Recorder {
        missing: Vec<&'static str>,
        unknown: Option<&'static str>,
        writes: Vec<(String, String)>,
    }
    impl AttrWriter for Recorder {
        fn write(&mut self, path: &Path, value: &[u8]) -> io::Result<bool> {
            if self.missing.iter().any(|m| Path::new(m) == path) {
                return Ok(false);
            }
            if self.unknown.is_some_and(|u| u.as_bytes() == value) {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            self.writes.push((path.display().to_string(), String::from_utf8_lossy(value).into_owned()));
            Ok(true)
        }
    }

    #[test]
    fn apparmor_writes_exec_profile_to_its_own_attr_then_falls_back() {
        let p = Plan { apparmor_profile: Some("berth-test".into()), ..Plan::default() };
        let mut w = Recorder::default();
        apply(&p, &mut w).unwrap();
        assert_eq!(w.writes, vec![(APPARMOR_EXEC.to_string(), "exec berth-test".to_string())]);
        let mut w = Recorder { missing: vec![APPARMOR_EXEC], ..Recorder::default() };
        apply(&p, &mut w).unwrap();
        assert_eq!(w.writes, vec![(ATTR_EXEC_SELF.to_string(), "exec berth-test".to_string())]);
        let mut w = Recorder { missing: vec![APPARMOR_EXEC, ATTR_EXEC_SELF], ..Recorder::default() };
        let err = format!("{:#}", apply(&p, &mut w).unwrap_err());
        assert!(err.contains("berth-test") && err.contains("none of"), "{err}");
        let mut w = Recorder { unknown: Some("exec berth-test"), ..Recorder::default() };
        let err = format!("{:#}", apply(&p, &mut w).unwrap_err());
        assert!(err.contains("\"berth-test\"") && err.contains("no profile of that name is loaded"), "{err}");
    }

    #[test]
    fn selinux_label_goes_to_attr_exec_and_nothing_is_written_for_an_empty_plan() {
        let mut w = Recorder::default();
        apply(&Plan::default(), &mut w).unwrap();
        assert!(w.writes.is_empty());
        let p = Plan { selinux_label: Some("a:b:c:s0".into()), ..Plan::default() };
        apply(&p, &mut w).unwrap();
        assert_eq!(w.writes, vec![(ATTR_EXEC.to_string(), "a:b:c:s0".to_string())]);
    }

    #[test]
    fn mount_labels_go_where_runc_puts_them() {
        assert!(takes_mount_label("tmpfs", false) && takes_mount_label("devpts", false));
        for fs in ["proc", "sysfs", "mqueue", "cgroup", "cgroup2"] {
            assert!(!takes_mount_label(fs, false), "{fs}");
        }
        assert!(!takes_mount_label("tmpfs", true));
        assert_eq!(with_mount_label("mode=755", "x:y:z:s0"), "mode=755,context=\"x:y:z:s0\"");
        assert_eq!(with_mount_label("", "x:y:z:s0"), "context=\"x:y:z:s0\"");
    }
}
