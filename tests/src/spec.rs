//! The base spec of the cases: containerd 1.6's default spec, as `ctr oci
//! spec` prints it (fixtures/containerd-1.6-default-spec.json), plus what
//! the image config would add (PATH, args).

use oci_spec::runtime::{LinuxCapabilities, Mount, Spec};

pub const CONTAINERD_DEFAULT_SPEC: &str = include_str!("../fixtures/containerd-1.6-default-spec.json");

/// containerd's default spec with PATH set and no cgroup path (the fixture
/// has containerd's `/default` for an empty id; each backend sets its own).
pub fn base_spec() -> Spec {
    let mut spec: Spec = serde_json::from_str(CONTAINERD_DEFAULT_SPEC).expect("the fixture is a valid spec");
    if let Some(linux) = spec.linux_mut() {
        linux.set_cgroups_path(None);
    }
    if let Some(process) = spec.process_mut() {
        process.set_env(Some(vec![crate::image::PATH_ENV.to_string()]));
    }
    spec
}

/// The base spec running `args`.
pub fn spec_running(args: &[&str]) -> Spec {
    let mut spec = base_spec();
    set_args(&mut spec, args);
    spec
}

pub fn set_args(spec: &mut Spec, args: &[&str]) {
    spec.process_mut().as_mut().expect("base spec has a process").set_args(Some(args.iter().map(|a| a.to_string()).collect()));
}

pub fn add_env(spec: &mut Spec, entry: &str) {
    let process = spec.process_mut().as_mut().expect("base spec has a process");
    let mut env = process.env().clone().unwrap_or_default();
    env.push(entry.to_string());
    process.set_env(Some(env));
}

/// Mounts the container's own cgroups read-only at /sys/fs/cgroup, as
/// Docker does (containerd's default spec has no such mount).
pub fn mount_cgroups(spec: &mut Spec) {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    let mut cgroup = Mount::default();
    cgroup.set_destination("/sys/fs/cgroup".into());
    cgroup.set_typ(Some("cgroup".into()));
    cgroup.set_source(Some("cgroup".into()));
    cgroup.set_options(Some(["ro", "nosuid", "noexec", "nodev"].map(String::from).to_vec()));
    mounts.push(cgroup);
    spec.set_mounts(Some(mounts));
}

/// Removes `cap` (e.g. `CAP_NET_RAW`) from every capability set.
pub fn drop_capability(spec: &mut Spec, cap: oci_spec::runtime::Capability) {
    let process = spec.process_mut().as_mut().expect("base spec has a process");
    let mut caps: LinuxCapabilities = process.capabilities().clone().unwrap_or_default();
    let without = |set: &Option<oci_spec::runtime::Capabilities>| set.clone().map(|mut s| {
        s.remove(&cap);
        s
    });
    caps.set_bounding(without(caps.bounding()));
    caps.set_effective(without(caps.effective()));
    caps.set_permitted(without(caps.permitted()));
    caps.set_inheritable(without(caps.inheritable()));
    caps.set_ambient(without(caps.ambient()));
    process.set_capabilities(Some(caps));
}
