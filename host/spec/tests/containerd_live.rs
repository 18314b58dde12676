//! Golden checks against a real containerd: for each case, `ctr containers
//! create --rootfs <flags>` makes containerd build a spec with its own
//! SpecOpts (`WithPrivileged`, `WithHostNamespace`, `WithAddedCapabilities`,
//! `WithMemoryLimit`, `WithDevices`, `seccomp.WithDefaultProfile`...); berth
//! assembles the same container from the adjustment a plugin would answer
//! for those options, and the two specs are compared field by field.
//!
//! Needs root and the containerd + ctr binaries; skips with the reason
//! otherwise. containerd runs in a temp dir on a private socket and is
//! killed by pid.

mod support;

use std::sync::Arc;

use berth_spec::adjustment::*;
use berth_spec::json::to_value;
use berth_spec::{Adjustment, ChainEntry, FixedMutator, Grants, HostFacts, Request, assemble};
use serde_json::Value;
use support::containerd::{Containerd, hostname, with_image_config_env};
use support::differences;

fn berth_spec_for(ctd: &Containerd, id: &str, args: &[&str], adjustment: Adjustment, seccomp: Option<Value>) -> Value {
    let mut host = HostFacts::detect();
    if let Some(profile) = seccomp {
        // The default profile itself is berth-seccomp's to match; here the
        // host's placement of it is what is checked.
        host.default_seccomp = Some(Arc::new(move |_arch: &str, _caps: &[String]| profile.clone()));
    }
    let request = Request {
        id: id.into(),
        namespace: "nomad".into(),
        args: Some(args.iter().map(|a| a.to_string()).collect()),
        rootfs: Some(ctd.rootfs()),
        default_unix_devices: true,
        ..Default::default()
    };
    let chain = [ChainEntry::new(Box::new(FixedMutator::new("golden", adjustment)), Grants::all())];
    to_value(&assemble(&request, &chain, &host).unwrap().spec)
}

fn assert_same(case: &str, berth: &Value, containerd: &Value) {
    let mut diffs = Vec::new();
    differences(berth, containerd, "", &mut diffs);
    assert!(diffs.is_empty(), "{case}: berth's spec differs from containerd's:\n{}", diffs.join("\n"));
}

fn mount(dest: &str, src: &str) -> Mount {
    Mount {
        destination: dest.into(),
        kind: "bind".into(),
        source: src.into(),
        options: vec!["rbind".into(), "ro".into()],
    }
}

#[test]
fn containerd_golden_specs() {
    let ctd = match Containerd::start() {
        Ok(c) => c,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return;
        }
    };

    // A nomad task's options, through ctr's equivalents: host network (with
    // /etc/hosts and resolv.conf; ctr also sets HOSTNAME), a netns path,
    // readonly rootfs, cap add/drop, env, memory, CFS quota, a device, a
    // bind mount, the default seccomp profile, new privileges allowed, cwd.
    let flags = [
        "--net-host",
        "--read-only",
        "--cap-add",
        "CAP_SYS_ADMIN",
        "--cap-drop",
        "CAP_NET_RAW",
        "--env",
        "NOMAD_TASK_NAME=web",
        "--memory-limit",
        "268435456",
        "--device",
        "/dev/null",
        "--mount",
        "type=bind,src=/srv/app,dst=/etc/app,options=rbind:ro",
        "--seccomp",
        "--with-ns",
        "network:/var/run/netns/n1",
        "--cpu-quota",
        "50000",
        "--cpu-period",
        "100000",
        "--allow-new-privs",
        "--cwd",
        "/w",
    ];
    let args = ["/bin/sleep", "300"];
    let theirs = ctd.spec("task", &flags, &args);
    let profile = theirs["linux"]["seccomp"].clone();
    assert!(profile.is_object(), "ctr --seccomp set no profile");
    let adjustment = Adjustment {
        env_set: vec![("NOMAD_TASK_NAME".into(), "web".into()), ("HOSTNAME".into(), hostname())],
        cwd: Some("/w".into()),
        capabilities_add: vec!["CAP_SYS_ADMIN".into()],
        capabilities_drop: vec!["CAP_NET_RAW".into()],
        no_new_privileges: Some(false),
        mounts_add: vec![
            mount("/etc/app", "/srv/app"),
            mount("/etc/hosts", "/etc/hosts"),
            mount("/etc/resolv.conf", "/etc/resolv.conf"),
        ],
        devices: vec![Device {
            path: "/dev/null".into(),
            kind: DeviceType::Char,
            major: -1,
            minor: -1,
            file_mode: None,
            uid: None,
            gid: None,
        }],
        namespaces: vec![NamespaceSetting {
            kind: NamespaceKind::Network,
            mode: NamespaceMode::Join("/var/run/netns/n1".into()),
        }],
        resources: Some(Resources {
            memory_limit: Some(268435456),
            cpu_quota: Some(50000),
            cpu_period: Some(100000),
            ..Default::default()
        }),
        seccomp: Some(Seccomp::Default),
        readonly_rootfs: Some(true),
        ..Default::default()
    };
    let ours = berth_spec_for(&ctd, "task", &args, adjustment, Some(profile));
    assert_same("nomad-like task", &ours, &with_image_config_env(theirs));

    // `ctr run --privileged`: WithPrivileged + WithAllDevicesAllowed +
    // WithHostDevices, i.e. every privileged bit.
    let theirs = ctd.spec("priv", &["--privileged"], &["sh"]);
    let adjustment = Adjustment {
        privileged: Privileged {
            sysfs_rw: true,
            cgroupfs_rw: true,
            all_devices: true,
            host_devices: true,
            all_capabilities: true,
            unconfined_apparmor: true,
            clear_masked_paths: true,
            clear_readonly_paths: true,
        },
        ..Default::default()
    };
    let ours = berth_spec_for(&ctd, "priv", &["sh"], adjustment, None);
    assert_same("privileged", &ours, &with_image_config_env(theirs));

    // Host network alone removes the network namespace.
    let theirs = ctd.spec("hostnet", &["--net-host"], &["sh"]);
    let adjustment = Adjustment {
        env_set: vec![("HOSTNAME".into(), hostname())],
        mounts_add: vec![mount("/etc/hosts", "/etc/hosts"), mount("/etc/resolv.conf", "/etc/resolv.conf")],
        namespaces: vec![NamespaceSetting { kind: NamespaceKind::Network, mode: NamespaceMode::Host }],
        ..Default::default()
    };
    let ours = berth_spec_for(&ctd, "hostnet", &["sh"], adjustment, None);
    assert_same("host network", &ours, &with_image_config_env(theirs));
}
