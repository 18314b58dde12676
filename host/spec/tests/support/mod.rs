//! Shared by the golden tests: fixtures (fixtures/README.md), the field-by-field
//! comparison, and the adjustments nomad-task answers for the fixture tasks.
#![allow(dead_code)]

pub mod containerd;

use berth_spec::adjustment::*;
use berth_spec::json::{CAPABILITY_NAMES, to_value};
use berth_spec::view::ImageConfigView;
use berth_spec::{Adjustment, HostFacts, Request};
use serde_json::Value;

pub const NOMAD_TASK: &str = include_str!("../fixtures/nomad-task.json");
pub const NOMAD_TASK_PRIVILEGED: &str = include_str!("../fixtures/nomad-task-privileged.json");

pub fn differences(ours: &Value, theirs: &Value, path: &str, out: &mut Vec<String>) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                differences(
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    &format!("{path}/{k}"),
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(x, y, &format!("{path}/{i}"), out);
            }
        }
        (a, b) if a != b => out.push(format!("{path}: berth {a} != containerd {b}")),
        _ => {}
    }
}

pub fn expect(fixture: &str, spec: &oci_spec::runtime::Spec) {
    let theirs: oci_spec::runtime::Spec = serde_json::from_str(fixture).unwrap();
    let mut diffs = Vec::new();
    differences(&to_value(spec), &to_value(&theirs), "", &mut diffs);
    assert!(diffs.is_empty(), "berth's spec differs from the golden one:\n{}", diffs.join("\n"));
}

pub fn image_config() -> ImageConfigView {
    ImageConfigView {
        env: vec![berth_spec::defaults::DEFAULT_PATH_ENV.into()],
        cmd: vec!["/bin/sh".into()],
        ..Default::default()
    }
}

/// A root host: every capability, the real /dev.
pub fn root_host() -> HostFacts {
    HostFacts { capabilities: CAPABILITY_NAMES.iter().map(|c| c.to_string()).collect(), ..HostFacts::detect() }
}

pub fn bind(dst: &str, src: &str) -> Mount {
    Mount {
        destination: dst.into(),
        kind: "bind".into(),
        source: src.into(),
        options: vec!["rbind".into(), "ro".into()],
    }
}

/// What nomad-task answers for the task of fixtures/nomad-task.json.
pub fn nomad_task_adjustment() -> Adjustment {
    Adjustment {
        args: Some(vec!["/bin/sleep".into(), "300".into()]),
        env_set: vec![("NOMAD_TASK_NAME".into(), "web".into()), ("NOMAD_ALLOC_ID".into(), "a1".into())],
        capabilities_add: vec!["CAP_SYS_ADMIN".into()],
        capabilities_drop: vec!["CAP_NET_RAW".into()],
        mounts_add: vec![
            bind("/etc/hosts", "/etc/hosts"),
            bind("/etc/resolv.conf", "/etc/resolv.conf"),
            bind("/etc/app", "/srv/app"),
            bind("/secrets", "/var/nomad/alloc/a1/web/secrets"),
            bind("/local", "/var/nomad/alloc/a1/web/local"),
            bind("/alloc", "/var/nomad/alloc/a1/alloc"),
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
        namespaces: vec![NamespaceSetting { kind: NamespaceKind::Network, mode: NamespaceMode::Host }],
        resources: Some(Resources { memory_limit: Some(268435456), cpu_shares: Some(512), ..Default::default() }),
        readonly_rootfs: Some(true),
        ..Default::default()
    }
}

/// What nomad-task answers for the task of fixtures/nomad-task-privileged.json.
pub fn nomad_task_privileged_adjustment() -> Adjustment {
    Adjustment {
        privileged: Privileged {
            all_capabilities: true,
            clear_masked_paths: true,
            clear_readonly_paths: true,
            sysfs_rw: true,
            cgroupfs_rw: true,
            unconfined_apparmor: true,
            ..Default::default()
        },
        seccomp: Some(Seccomp::Unconfined),
        namespaces: vec![NamespaceSetting {
            kind: NamespaceKind::Network,
            mode: NamespaceMode::Join("/var/run/netns/a1".into()),
        }],
        resources: Some(Resources { memory_limit: Some(134217728), cpu_shares: Some(100), ..Default::default() }),
        ..Default::default()
    }
}

pub fn nomad_request(id: &str) -> Request {
    // nomad-driver-containerd uses containerd.WithNewSpec: no
    // WithDefaultUnixDevices.
    Request {
        id: id.into(),
        namespace: "nomad".into(),
        image_config: image_config(),
        default_unix_devices: false,
        ..Default::default()
    }
}
