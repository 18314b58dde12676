//! containerd's default spec (`oci.GenerateSpec` on Linux, what `ctr oci spec`
//! prints), built from oci-spec types.

use std::path::PathBuf;

use oci_spec::runtime::{
    Capability, Linux, LinuxCapabilities, LinuxDeviceCgroup, LinuxDeviceType, LinuxNamespace, LinuxNamespaceType,
    LinuxResources, Mount, PosixRlimitBuilder, PosixRlimitType, Process, Root, Spec, User,
};

/// The OCI version containerd 1.6 writes.
pub const OCI_VERSION: &str = "1.0.2-dev";

/// containerd's `defaultUnixEnv`, used when the image config has no env.
pub const DEFAULT_PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// containerd's default capability set (bounding, effective, permitted), in
/// its order.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

pub const DEFAULT_MASKED_PATHS: [&str; 10] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

pub const DEFAULT_READONLY_PATHS: [&str; 5] =
    ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// (destination, type, source, options) of containerd's default mounts.
const DEFAULT_MOUNTS: [(&str, &str, &str, &[&str]); 7] = [
    ("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
    ("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
    ("/dev/pts", "devpts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
    ("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
    ("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
    ("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
    ("/run", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
];

/// containerd's default namespaces, in its order.
pub const DEFAULT_NAMESPACES: [LinuxNamespaceType; 5] = [
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Network,
];

/// The device-cgroup allow rules of containerd's `WithDefaultUnixDevices`
/// (type, major, minor): /dev/null, random, full, tty, zero, urandom,
/// console, the pts range, ptmx.
pub const DEFAULT_UNIX_DEVICE_RULES: [(LinuxDeviceType, i64, Option<i64>); 9] = [
    (LinuxDeviceType::C, 1, Some(3)),
    (LinuxDeviceType::C, 1, Some(8)),
    (LinuxDeviceType::C, 1, Some(7)),
    (LinuxDeviceType::C, 5, Some(0)),
    (LinuxDeviceType::C, 1, Some(5)),
    (LinuxDeviceType::C, 1, Some(9)),
    (LinuxDeviceType::C, 5, Some(1)),
    (LinuxDeviceType::C, 136, None),
    (LinuxDeviceType::C, 5, Some(2)),
];

pub fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(destination));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

pub fn default_capabilities() -> LinuxCapabilities {
    let set: oci_spec::runtime::Capabilities = DEFAULT_CAPABILITIES.into_iter().collect();
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()));
    caps.set_effective(Some(set.clone()));
    caps.set_permitted(Some(set));
    caps.set_inheritable(None);
    caps.set_ambient(None);
    caps
}

/// containerd's cgroups path for a container: `/<namespace>/<id>`
/// (`WithNamespacedCgroup`).
pub fn cgroups_path(namespace: &str, id: &str) -> PathBuf {
    let mut path = PathBuf::from("/");
    for part in [namespace, id] {
        if !part.is_empty() {
            path.push(part);
        }
    }
    path
}

/// containerd 1.6's default Linux spec for container `id` in containerd
/// namespace `namespace` (berth uses `default`). No env and no args: those
/// come from the image config.
pub fn default_spec(namespace: &str, id: &str) -> Spec {
    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_string());
    spec.set_hostname(None);
    spec.set_annotations(None);
    spec.set_hooks(None);

    let mut root = Root::default();
    root.set_path(PathBuf::from("rootfs"));
    root.set_readonly(None);
    spec.set_root(Some(root));

    spec.set_mounts(Some(DEFAULT_MOUNTS.iter().map(|(d, t, s, o)| mount(d, t, s, o)).collect()));

    let mut process = Process::default();
    process.set_terminal(None);
    process.set_user(User::default());
    process.set_args(None);
    process.set_env(None);
    process.set_cwd(PathBuf::from("/"));
    process.set_capabilities(Some(default_capabilities()));
    let nofile = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .hard(1024u64)
        .soft(1024u64)
        .build()
        .expect("a complete rlimit");
    process.set_rlimits(Some(vec![nofile]));
    process.set_no_new_privileges(Some(true));
    process.set_apparmor_profile(None);
    process.set_selinux_label(None);
    process.set_scheduler(None);
    process.set_io_priority(None);
    process.set_exec_cpu_affinity(None);
    spec.set_process(Some(process));

    let mut linux = Linux::default();
    linux.set_uid_mappings(None);
    linux.set_gid_mappings(None);
    linux.set_sysctl(None);
    let mut resources = LinuxResources::default();
    let mut deny_all = LinuxDeviceCgroup::default();
    deny_all.set_allow(false);
    deny_all.set_typ(None);
    deny_all.set_access(Some("rwm".to_string()));
    resources.set_devices(Some(vec![deny_all]));
    linux.set_resources(Some(resources));
    linux.set_cgroups_path(Some(cgroups_path(namespace, id)));
    linux.set_namespaces(Some(
        DEFAULT_NAMESPACES
            .into_iter()
            .map(|typ| {
                let mut ns = LinuxNamespace::default();
                ns.set_typ(typ);
                ns.set_path(None);
                ns
            })
            .collect(),
    ));
    linux.set_devices(None);
    linux.set_rootfs_propagation(None);
    linux.set_masked_paths(Some(DEFAULT_MASKED_PATHS.iter().map(|p| p.to_string()).collect()));
    linux.set_readonly_paths(Some(DEFAULT_READONLY_PATHS.iter().map(|p| p.to_string()).collect()));
    linux.set_mount_label(None);
    linux.set_seccomp(None);
    spec.set_linux(Some(linux));
    spec
}

/// containerd's `WithDefaultUnixDevices`: appends the allow rules for the
/// standard device nodes (what `ctr run` adds after the default spec).
pub fn with_default_unix_devices(spec: &mut Spec) {
    let linux = spec.linux_mut().get_or_insert_with(Default::default);
    let resources = linux.resources_mut().get_or_insert_with(Default::default);
    let rules = resources.devices_mut().get_or_insert_with(Vec::new);
    for (typ, major, minor) in DEFAULT_UNIX_DEVICE_RULES {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true);
        rule.set_typ(Some(typ));
        rule.set_major(Some(major));
        rule.set_minor(minor);
        rule.set_access(Some("rwm".to_string()));
        rules.push(rule);
    }
}
