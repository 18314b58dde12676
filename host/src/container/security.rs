//! The `[worker]` security keys, applied to every container berth runs
//! (native and containerd backends alike, through `assemble_spec`):
//!
//! - `apparmor-profile`: the profile of every container's process, set on
//!   the spec *before* the spec-mutator chain, so a plugin's choice wins
//!   (its `unconfined-apparmor` clears it) and `--explain` shows a `worker`
//!   step. On a host without AppArmor a profile is an error naming the key
//!   (the container would otherwise run unconfined), except `unconfined`.
//! - `selinux`: an error naming the key either way: without SELinux there is
//!   nothing to label with, and with it berth does not label containers yet
//!   (that needs a process/file label pair from the policy's container
//!   contexts and a relabelled rootfs).
//! - `rootless`: berth does not set up rootless mode itself; the key is
//!   accepted only when berth already runs inside a user namespace
//!   (rootlesskit and the like: what rootless needs then, e.g. overlay's
//!   `userxattr`, follows from probing that namespace), refused otherwise.

use anyhow::{Context, bail};
use berth_runtime::lsm::{APPARMOR_ENABLED, HostLsm, SELINUX_ENFORCE};
use berth_spec::explain::{self, Outcome, Step};
use berth_spec::{Assembled, ChainEntry, HostFacts, Request};

use crate::config::worker::WorkerConfig;

/// What the worker keys are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSecurity {
    pub apparmor: bool,
    pub selinux: bool,
    pub euid: u32,
    /// `/proc/self/uid_map`.
    pub uid_map: String,
}

impl HostSecurity {
    pub fn probe() -> HostSecurity {
        let lsm = berth_runtime::lsm::Host;
        HostSecurity {
            apparmor: lsm.apparmor_enabled(),
            selinux: lsm.selinux_enabled(),
            euid: rustix::process::geteuid().as_raw(),
            uid_map: std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default(),
        }
    }

    /// Not the initial user namespace (whose map is the identity over all ids).
    pub fn in_user_namespace(&self) -> bool {
        let fields: Vec<&str> = self.uid_map.split_whitespace().collect();
        !fields.is_empty() && fields != ["0", "0", "4294967295"]
    }
}

/// Refuses worker keys this host (or berth) cannot honour, naming the key.
pub fn check_worker(worker: &WorkerConfig, host: &HostSecurity) -> anyhow::Result<()> {
    if worker.rootless && !host.in_user_namespace() {
        bail!(
            "worker.rootless (--worker-rootless) is true, but berth runs as uid {} in the initial user namespace: \
             berth does not set up rootless mode itself; run it as a non-root user inside a user namespace \
             (e.g. under rootlesskit), or set worker.rootless = false",
            host.euid
        );
    }
    if worker.selinux {
        if !host.selinux {
            bail!(
                "worker.selinux (--worker-selinux) is true, but SELinux is not enabled on this host \
                 ({SELINUX_ENFORCE} does not exist); set worker.selinux = false"
            );
        }
        bail!(
            "worker.selinux (--worker-selinux) is true, but SELinux labelling of containers is not supported yet \
             (berth does not derive process and mount labels from the policy's container contexts); \
             set worker.selinux = false, or set process.selinuxLabel and linux.mountLabel in the spec yourself"
        );
    }
    if let Some(profile) = worker_apparmor_profile(worker)
        && !host.apparmor
        && profile != "unconfined"
    {
        bail!(
            "worker.apparmor-profile (--worker-apparmor-profile) is {profile:?}, but AppArmor is not enabled on this host \
             ({APPARMOR_ENABLED} is not \"Y\"); unset it, or use \"unconfined\""
        );
    }
    Ok(())
}

fn worker_apparmor_profile(worker: &WorkerConfig) -> Option<&str> {
    worker.apparmor_profile.as_deref().map(str::trim).filter(|p| !p.is_empty())
}

/// The worker's defaults on the base spec, as a `worker` step of the
/// explanation (nothing when there is nothing to set).
pub fn apply_worker_defaults(
    worker: &WorkerConfig,
    host: &HostSecurity,
    spec: &mut oci_spec::runtime::Spec,
    explanation: &mut berth_spec::Explanation,
) {
    let Some(profile) = worker_apparmor_profile(worker) else { return };
    if !host.apparmor {
        // Only "unconfined" gets here (check_worker): what the process is anyway;
        // runc would refuse to write it to a kernel without AppArmor.
        return;
    }
    let before = serde_json::to_value(&*spec).unwrap_or_default();
    let process = spec.process_mut().get_or_insert_with(Default::default);
    if process.apparmor_profile().as_deref().is_none_or(str::is_empty) {
        process.set_apparmor_profile(Some(profile.to_string()));
    }
    let changes = explain::diff(&before, &serde_json::to_value(&*spec).unwrap_or_default());
    explanation.steps.push(Step { source: "worker".into(), outcome: Outcome::Applied, changes, overrides: vec![] });
}

/// Default spec and image config, the worker's keys, then the chain.
pub fn assemble(
    worker: &WorkerConfig,
    host: &HostSecurity,
    request: &Request,
    chain: &[ChainEntry],
    facts: &HostFacts,
) -> anyhow::Result<Assembled> {
    check_worker(worker, host)?;
    let what = || format!("assembling the spec of container {}", request.id);
    let (mut spec, mut explanation) = berth_spec::base_spec(request).with_context(what)?;
    apply_worker_defaults(worker, host, &mut spec, &mut explanation);
    let spec = berth_spec::apply_chain(spec, request, chain, facts, &mut explanation).with_context(what)?;
    Ok(Assembled { spec, explanation })
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_spec::{Adjustment, FixedMutator, Grants};

    const ROOT_MAP: &str = "         0          0 4294967295\n";

    fn host(apparmor: bool, selinux: bool) -> HostSecurity {
        HostSecurity { apparmor, selinux, euid: 0, uid_map: ROOT_MAP.into() }
    }

    fn worker(profile: Option<&str>) -> WorkerConfig {
        WorkerConfig { apparmor_profile: profile.map(str::to_string), ..WorkerConfig::default() }
    }

    fn request() -> Request {
        Request { id: "c1".into(), namespace: "berth".into(), args: Some(vec!["true".into()]), ..Request::default() }
    }

    fn facts() -> HostFacts {
        HostFacts::detect()
    }

    fn profile_of(a: &Assembled) -> Option<String> {
        a.spec.process().as_ref().and_then(|p| p.apparmor_profile().clone())
    }

    #[test]
    fn the_worker_profile_is_set_and_explained() {
        let a = assemble(&worker(Some("berth-default")), &host(true, false), &request(), &[], &facts()).unwrap();
        assert_eq!(profile_of(&a).as_deref(), Some("berth-default"));
        assert_eq!(a.explanation.changed_by("/process/apparmorProfile"), vec!["worker"]);
        assert!(a.explanation.to_string().contains("worker:\n  /process/apparmorProfile: set \"berth-default\""), "{}", a.explanation);
    }

    #[test]
    fn a_plugins_unconfined_choice_wins_over_the_worker_profile() {
        let mut adj = Adjustment::default();
        adj.privileged.unconfined_apparmor = true;
        let chain = [ChainEntry::new(Box::new(FixedMutator::new("privileged-plugin", adj)), Grants::all())];
        let a = assemble(&worker(Some("berth-default")), &host(true, false), &request(), &chain, &facts()).unwrap();
        assert_eq!(profile_of(&a), None);
        assert_eq!(a.explanation.changed_by("/process/apparmorProfile"), vec!["worker", "privileged-plugin"]);
    }

    #[test]
    fn no_apparmor_on_the_host_is_an_error_naming_the_key_and_profile() {
        let err = assemble(&worker(Some("berth-default")), &host(false, false), &request(), &[], &facts()).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("worker.apparmor-profile") && text.contains("\"berth-default\"") && text.contains("not enabled"), "{text}");
    }

    #[test]
    fn unconfined_without_apparmor_is_fine_and_leaves_the_spec_alone() {
        for p in [Some("unconfined"), Some(""), None] {
            let a = assemble(&worker(p), &host(false, false), &request(), &[], &facts()).unwrap();
            assert_eq!(profile_of(&a), None, "{p:?}");
            assert!(a.explanation.step("worker").is_none());
        }
    }

    #[test]
    fn selinux_is_refused_naming_the_key_with_or_without_selinux() {
        let w = WorkerConfig { selinux: true, ..WorkerConfig::default() };
        let off = check_worker(&w, &host(false, false)).unwrap_err().to_string();
        assert!(off.contains("worker.selinux") && off.contains("not enabled"), "{off}");
        let on = check_worker(&w, &host(false, true)).unwrap_err().to_string();
        assert!(on.contains("worker.selinux") && on.contains("not supported yet"), "{on}");
    }

    #[test]
    fn rootless_is_refused_outside_a_user_namespace() {
        let w = WorkerConfig { rootless: true, ..WorkerConfig::default() };
        let err = check_worker(&w, &host(false, false)).unwrap_err().to_string();
        assert!(err.contains("worker.rootless") && err.contains("uid 0") && err.contains("does not set up rootless"), "{err}");
        let in_userns = HostSecurity { uid_map: "0 1000 1\n".into(), ..host(false, false) };
        assert!(in_userns.in_user_namespace());
        check_worker(&w, &in_userns).unwrap();
        let non_root = HostSecurity { euid: 1000, ..host(false, false) };
        assert!(check_worker(&w, &non_root).unwrap_err().to_string().contains("uid 1000"));
        assert!(!host(false, false).in_user_namespace());
    }
}
