//! The plugin chain: every adjustment field, grants, conflicts, overrides,
//! optional plugins, and the explanation. Mutators are native stand-ins.

use std::sync::Arc;

use berth_spec::adjustment::*;
use berth_spec::explain::Outcome;
use berth_spec::json::to_value;
use berth_spec::{
    Adjustment, ChainEntry, Field, FixedMutator, FnMutator, Grants, HostFacts, MutatorError, Request, SpecError,
    assemble,
};
use serde_json::{Value, json};

fn host() -> HostFacts {
    HostFacts {
        dev_dir: "/dev".into(),
        capabilities: berth_spec::json::CAPABILITY_NAMES.iter().map(|c| c.to_string()).collect(),
        arch: "amd64".into(),
        default_seccomp: Some(Arc::new(|arch: &str, caps: &[String]| {
            json!({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                   "syscalls": [{"names": ["read", arch], "action": "SCMP_ACT_ALLOW"}],
                   "flags": [], "listenerMetadata": caps.join(",")})
        })),
    }
}

fn request() -> Request {
    Request {
        id: "c1".into(),
        image_config: berth_spec::view::ImageConfigView { cmd: vec!["sh".into()], ..Default::default() },
        ..Default::default()
    }
}

fn entry(name: &str, adj: Adjustment) -> ChainEntry {
    ChainEntry::new(Box::new(FixedMutator::new(name, adj)), Grants::all())
}

#[allow(clippy::result_large_err)]
fn run(chain: &[ChainEntry]) -> Result<Value, SpecError> {
    assemble(&request(), chain, &host()).map(|a| to_value(&a.spec))
}

fn one(adj: Adjustment) -> Value {
    run(&[entry("p", adj)]).unwrap()
}

fn at<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    v.pointer(pointer).unwrap_or(&Value::Null)
}

#[test]
fn args_env_cwd_user_hostname() {
    let v = one(Adjustment {
        args: Some(vec!["/bin/app".into(), "-x".into()]),
        env_set: vec![("A".into(), "1".into()), ("PATH".into(), "/opt".into())],
        cwd: Some("/work".into()),
        user: Some(User::Ids { uid: 7, gid: 8, additional_gids: vec![9] }),
        hostname: Some("box".into()),
        ..Default::default()
    });
    assert_eq!(at(&v, "/process/args"), &json!(["/bin/app", "-x"]));
    assert_eq!(at(&v, "/process/env"), &json!(["PATH=/opt", "A=1"]));
    assert_eq!(at(&v, "/process/cwd"), &json!("/work"));
    assert_eq!(at(&v, "/process/user"), &json!({"uid": 7, "gid": 8, "additionalGids": [9]}));
    assert_eq!(at(&v, "/hostname"), &json!("box"));

    let v = one(Adjustment { env_unset: vec!["PATH".into()], ..Default::default() });
    assert_eq!(at(&v, "/process/env"), &json!([]));
}

#[test]
fn user_names_need_and_use_the_rootfs() {
    let adj = Adjustment { user: Some(User::Name("www".into())), ..Default::default() };
    let err = run(&[entry("p", adj.clone())]).unwrap_err();
    assert!(matches!(&err, SpecError::Invalid { plugin, field: Field::User, .. } if plugin == "p"), "{err}");

    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    std::fs::write(root.path().join("etc/passwd"), "www:x:33:33::/:/bin/false\n").unwrap();
    std::fs::write(root.path().join("etc/group"), "www:x:33:\nextra:x:50:www\n").unwrap();
    let request = Request { rootfs: Some(root.path().to_path_buf()), ..request() };
    let spec = assemble(&request, &[entry("p", adj)], &host()).unwrap().spec;
    let v = to_value(&spec);
    assert_eq!(at(&v, "/process/user"), &json!({"uid": 33, "gid": 33, "additionalGids": [50]}));
    assert_eq!(at(&v, "/root/path"), &json!(root.path()));
}

#[test]
fn capabilities_and_no_new_privileges() {
    let v = one(Adjustment {
        capabilities_add: vec!["CAP_SYS_ADMIN".into(), "net_admin".into()],
        capabilities_drop: vec!["CAP_NET_RAW".into()],
        no_new_privileges: Some(false),
        ..Default::default()
    });
    for set in ["bounding", "effective", "permitted"] {
        let caps = at(&v, &format!("/process/capabilities/{set}")).as_array().unwrap();
        assert!(caps.contains(&json!("CAP_SYS_ADMIN")) && caps.contains(&json!("CAP_NET_ADMIN")), "{set}");
        assert!(!caps.contains(&json!("CAP_NET_RAW")), "{set}");
        assert_eq!(caps.len(), 15, "{set}");
    }
    assert_eq!(at(&v, "/process/capabilities/inheritable"), &Value::Null);
    assert_eq!(at(&v, "/process/noNewPrivileges"), &Value::Null);

    let err =
        run(&[entry("p", Adjustment { capabilities_add: vec!["CAP_FLY".into()], ..Default::default() })]).unwrap_err();
    assert!(err.to_string().contains("CAP_FLY") && err.to_string().contains("\"p\""), "{err}");
}

#[test]
fn mounts_add_and_remove() {
    let v = one(Adjustment {
        mounts_remove: vec!["/run/".into()],
        mounts_add: vec![Mount {
            destination: "/data".into(),
            kind: "bind".into(),
            source: "/srv".into(),
            options: vec!["rbind".into(), "ro".into()],
        }],
        ..Default::default()
    });
    let mounts = at(&v, "/mounts").as_array().unwrap();
    assert!(!mounts.iter().any(|m| m["destination"] == "/run"));
    assert_eq!(
        mounts.last().unwrap(),
        &json!({"destination": "/data", "type": "bind", "source": "/srv", "options": ["rbind", "ro"]})
    );

    for bad in [
        Mount { destination: "data".into(), kind: "bind".into(), source: "/srv".into(), options: vec![] },
        Mount { destination: "/data".into(), kind: "bind".into(), source: "srv".into(), options: vec![] },
        Mount { destination: "/data".into(), kind: "".into(), source: "/srv".into(), options: vec![] },
    ] {
        let err = run(&[entry("p", Adjustment { mounts_add: vec![bad], ..Default::default() })]).unwrap_err();
        assert!(matches!(err, SpecError::Invalid { field: Field::Mounts, .. }), "{err}");
    }
}

#[test]
fn devices_given_and_resolved_from_the_host() {
    let v = one(Adjustment {
        devices: vec![
            Device {
                path: "/dev/fake".into(),
                kind: DeviceType::Block,
                major: 8,
                minor: 1,
                file_mode: Some(0o660),
                uid: None,
                gid: None,
            },
            Device {
                path: "/dev/null".into(),
                kind: DeviceType::Char,
                major: -1,
                minor: -1,
                file_mode: None,
                uid: None,
                gid: None,
            },
        ],
        device_rules: vec![DeviceRule {
            allow: true,
            kind: Some("b".into()),
            major: Some(8),
            minor: None,
            access: "rw".into(),
        }],
        ..Default::default()
    });
    let devices = at(&v, "/linux/devices").as_array().unwrap();
    assert_eq!(devices[0], json!({"path": "/dev/fake", "type": "b", "major": 8, "minor": 1, "fileMode": 0o660}));
    assert_eq!((&devices[1]["type"], &devices[1]["major"], &devices[1]["minor"]), (&json!("c"), &json!(1), &json!(3)));
    let rules = at(&v, "/linux/resources/devices").as_array().unwrap();
    // deny-all, then WithLinuxDevice's allow for /dev/null, then the rule.
    assert_eq!(rules[1], json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}));
    assert_eq!(rules[2], json!({"allow": true, "type": "b", "major": 8, "access": "rw"}));

    let err = run(&[entry(
        "p",
        Adjustment {
            device_rules: vec![DeviceRule { allow: true, kind: None, major: None, minor: None, access: "rx".into() }],
            ..Default::default()
        },
    )])
    .unwrap_err();
    assert!(matches!(err, SpecError::Invalid { field: Field::Devices, .. }), "{err}");
}

#[test]
fn namespaces_new_host_join() {
    let v = one(Adjustment {
        namespaces: vec![
            NamespaceSetting { kind: NamespaceKind::Network, mode: NamespaceMode::Join("/var/run/netns/n1".into()) },
            NamespaceSetting { kind: NamespaceKind::Ipc, mode: NamespaceMode::Host },
            NamespaceSetting { kind: NamespaceKind::Cgroup, mode: NamespaceMode::New },
        ],
        ..Default::default()
    });
    assert_eq!(
        at(&v, "/linux/namespaces"),
        &json!([{"type": "pid"}, {"type": "uts"}, {"type": "mount"}, {"type": "network", "path": "/var/run/netns/n1"}, {"type": "cgroup"}])
    );
}

#[test]
fn resources_and_rlimits() {
    let v = one(Adjustment {
        resources: Some(Resources {
            memory_limit: Some(64 << 20),
            memory_reservation: Some(32 << 20),
            memory_swap: Some(128 << 20),
            cpu_shares: Some(512),
            cpu_quota: Some(50000),
            cpu_period: Some(100000),
            cpuset_cpus: Some("0-1".into()),
            cpuset_mems: Some("0".into()),
            pids_limit: Some(100),
        }),
        rlimits: vec![
            Rlimit { kind: "RLIMIT_NOFILE".into(), soft: 4096, hard: 8192 },
            Rlimit { kind: "rlimit_nproc".into(), soft: 10, hard: 10 },
        ],
        ..Default::default()
    });
    assert_eq!(
        at(&v, "/linux/resources/memory"),
        &json!({"limit": 64 << 20, "reservation": 32 << 20, "swap": 128 << 20})
    );
    assert_eq!(
        at(&v, "/linux/resources/cpu"),
        &json!({"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"})
    );
    assert_eq!(at(&v, "/linux/resources/pids"), &json!({"limit": 100}));
    assert_eq!(
        at(&v, "/process/rlimits"),
        &json!([{"type": "RLIMIT_NOFILE", "hard": 8192, "soft": 4096}, {"type": "RLIMIT_NPROC", "hard": 10, "soft": 10}])
    );
    let err = run(&[entry(
        "p",
        Adjustment { rlimits: vec![Rlimit { kind: "RLIMIT_X".into(), soft: 1, hard: 1 }], ..Default::default() },
    )])
    .unwrap_err();
    assert!(matches!(err, SpecError::Invalid { field: Field::Rlimits, .. }), "{err}");
    let err = run(&[entry(
        "p",
        Adjustment { rlimits: vec![Rlimit { kind: "RLIMIT_CORE".into(), soft: 2, hard: 1 }], ..Default::default() },
    )])
    .unwrap_err();
    assert!(matches!(err, SpecError::Invalid { field: Field::Rlimits, .. }), "{err}");
}

#[test]
fn seccomp_default_unconfined_profile_and_malformed() {
    let v = one(Adjustment { seccomp: Some(Seccomp::Default), ..Default::default() });
    assert_eq!(at(&v, "/linux/seccomp/defaultAction"), &json!("SCMP_ACT_ERRNO"));
    // The default profile is built for the host's arch and the bounding set.
    assert_eq!(at(&v, "/linux/seccomp/syscalls/0/names"), &json!(["read", "amd64"]));
    assert!(at(&v, "/linux/seccomp/listenerMetadata").as_str().unwrap().contains("CAP_CHOWN"));

    let profile = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["ptrace"],"action":"SCMP_ACT_ERRNO"}]}"#;
    let v = one(Adjustment { seccomp: Some(Seccomp::Profile(profile.into())), ..Default::default() });
    assert_eq!(at(&v, "/linux/seccomp/syscalls/0/names"), &json!(["ptrace"]));

    let v = run(&[
        entry("a", Adjustment { seccomp: Some(Seccomp::Default), ..Default::default() }),
        entry("b", Adjustment { seccomp: Some(Seccomp::Unconfined), ..Default::default() }).may_override(true),
    ])
    .unwrap();
    assert_eq!(at(&v, "/linux/seccomp"), &Value::Null);

    for bad in ["{not json", "[]", r#"{"syscalls":[]}"#, r#"{"defaultAction":"SCMP_ACT_NOPE"}"#] {
        let err =
            run(&[entry("sec", Adjustment { seccomp: Some(Seccomp::Profile(bad.into())), ..Default::default() })])
                .unwrap_err();
        assert!(
            matches!(&err, SpecError::Invalid { plugin, field: Field::Seccomp, .. } if plugin == "sec"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn rootfs_sysctls_hooks_annotations_paths() {
    let v = one(Adjustment {
        readonly_rootfs: Some(true),
        sysctls: vec![("net.ipv4.ip_forward".into(), "1".into())],
        hooks: vec![Hook {
            stage: HookStage::CreateRuntime,
            path: "/usr/bin/hook".into(),
            args: vec!["hook".into()],
            env: vec![],
            timeout: Some(5),
        }],
        annotations: vec![("io.berth/x".into(), "y".into())],
        masked_paths_add: vec!["/proc/secret".into()],
        masked_paths_remove: vec!["/proc/kcore".into()],
        readonly_paths_add: vec!["/proc/x".into()],
        readonly_paths_remove: vec!["/proc/sys".into()],
        ..Default::default()
    });
    assert_eq!(at(&v, "/root/readonly"), &json!(true));
    assert_eq!(at(&v, "/linux/sysctl"), &json!({"net.ipv4.ip_forward": "1"}));
    assert_eq!(at(&v, "/hooks/createRuntime"), &json!([{"path": "/usr/bin/hook", "args": ["hook"], "timeout": 5}]));
    assert_eq!(at(&v, "/annotations"), &json!({"io.berth/x": "y"}));
    let masked = at(&v, "/linux/maskedPaths").as_array().unwrap();
    assert!(masked.contains(&json!("/proc/secret")) && !masked.contains(&json!("/proc/kcore")));
    let ro = at(&v, "/linux/readonlyPaths").as_array().unwrap();
    assert!(ro.contains(&json!("/proc/x")) && !ro.contains(&json!("/proc/sys")));
    let err = run(&[entry(
        "p",
        Adjustment {
            hooks: vec![Hook {
                stage: HookStage::Poststop,
                path: "rel".into(),
                args: vec![],
                env: vec![],
                timeout: None,
            }],
            ..Default::default()
        },
    )])
    .unwrap_err();
    assert!(matches!(err, SpecError::Invalid { field: Field::Hooks, .. }), "{err}");
}

#[test]
fn privileged_bits_each_on_their_own() {
    let sysfs =
        one(Adjustment { privileged: Privileged { sysfs_rw: true, ..Default::default() }, ..Default::default() });
    let sys = at(&sysfs, "/mounts").as_array().unwrap().iter().find(|m| m["type"] == "sysfs").unwrap().clone();
    assert_eq!(sys["options"], json!(["nosuid", "noexec", "nodev", "rw"]));
    assert!(at(&sysfs, "/linux/maskedPaths").is_array(), "sysfs-rw alone keeps masked paths");

    let v = one(Adjustment {
        privileged: Privileged { all_capabilities: true, ..Default::default() },
        ..Default::default()
    });
    assert_eq!(at(&v, "/process/capabilities/bounding").as_array().unwrap().len(), 41);
    assert_eq!(at(&v, "/process/capabilities/effective"), at(&v, "/process/capabilities/permitted"));

    let v = one(Adjustment {
        privileged: Privileged {
            clear_masked_paths: true,
            clear_readonly_paths: true,
            all_devices: true,
            ..Default::default()
        },
        ..Default::default()
    });
    assert_eq!(at(&v, "/linux/maskedPaths"), &Value::Null);
    assert_eq!(at(&v, "/linux/readonlyPaths"), &Value::Null);
    assert_eq!(at(&v, "/linux/resources/devices"), &json!([{"allow": true, "access": "rwm"}]));

    let v =
        one(Adjustment { privileged: Privileged { host_devices: true, ..Default::default() }, ..Default::default() });
    let devices = at(&v, "/linux/devices").as_array().unwrap();
    assert!(devices.iter().any(|d| d["path"] == "/dev/null" && d["major"] == 1 && d["minor"] == 3), "{devices:?}");
    assert!(!devices.iter().any(|d| d["path"] == "/dev/console"));
}

#[test]
fn fields_outside_grants_are_refused_naming_plugin_and_field() {
    let adj = Adjustment { env_set: vec![("A".into(), "1".into())], hostname: Some("h".into()), ..Default::default() };
    let chain = [ChainEntry::new(Box::new(FixedMutator::new("envy", adj)), Grants::parse(["env"]).unwrap())];
    let err = run(&chain).unwrap_err();
    match &err {
        SpecError::NotGranted { plugin, field, .. } => {
            assert_eq!((plugin.as_str(), *field), ("envy", Field::Hostname))
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("\"envy\"") && err.to_string().contains("not granted \"hostname\""), "{err}");

    // Privilege is given, never assumed: no grants, no fields.
    let chain = [ChainEntry::new(
        Box::new(FixedMutator::new("none", Adjustment { cwd: Some("/".into()), ..Default::default() })),
        Grants::none(),
    )];
    assert!(matches!(run(&chain), Err(SpecError::NotGranted { field: Field::Cwd, .. })));
    // An empty adjustment needs no grant.
    let chain = [ChainEntry::new(Box::new(FixedMutator::new("noop", Adjustment::default())), Grants::none())];
    assert!(run(&chain).is_ok());
}

#[test]
fn conflicts_name_both_plugins_and_the_field() {
    let cases: Vec<(Adjustment, Adjustment, &str)> = vec![
        (
            Adjustment { hostname: Some("a".into()), ..Default::default() },
            Adjustment { hostname: Some("b".into()), ..Default::default() },
            "hostname",
        ),
        (
            Adjustment { cwd: Some("/a".into()), ..Default::default() },
            Adjustment { cwd: Some("/b".into()), ..Default::default() },
            "cwd",
        ),
        (
            Adjustment { user: Some(User::Ids { uid: 1, gid: 1, additional_gids: vec![] }), ..Default::default() },
            Adjustment { user: Some(User::Ids { uid: 2, gid: 1, additional_gids: vec![] }), ..Default::default() },
            "user",
        ),
        (
            Adjustment { readonly_rootfs: Some(true), ..Default::default() },
            Adjustment { readonly_rootfs: Some(false), ..Default::default() },
            "readonly-rootfs",
        ),
        (
            Adjustment {
                resources: Some(Resources { memory_limit: Some(1 << 20), ..Default::default() }),
                ..Default::default()
            },
            Adjustment {
                resources: Some(Resources { memory_limit: Some(2 << 20), ..Default::default() }),
                ..Default::default()
            },
            "resources.memory-limit",
        ),
        (
            Adjustment { env_set: vec![("MODE".into(), "a".into())], ..Default::default() },
            Adjustment { env_set: vec![("MODE".into(), "b".into())], ..Default::default() },
            "env MODE",
        ),
        (
            Adjustment { env_set: vec![("MODE".into(), "a".into())], ..Default::default() },
            Adjustment { env_unset: vec!["MODE".into()], ..Default::default() },
            "env MODE",
        ),
        (
            Adjustment { seccomp: Some(Seccomp::Default), ..Default::default() },
            Adjustment { seccomp: Some(Seccomp::Unconfined), ..Default::default() },
            "seccomp",
        ),
        (
            Adjustment { capabilities_add: vec!["CAP_SYS_ADMIN".into()], ..Default::default() },
            Adjustment { capabilities_drop: vec!["CAP_SYS_ADMIN".into()], ..Default::default() },
            "capability CAP_SYS_ADMIN",
        ),
        (
            Adjustment {
                namespaces: vec![NamespaceSetting { kind: NamespaceKind::Network, mode: NamespaceMode::Host }],
                ..Default::default()
            },
            Adjustment {
                namespaces: vec![NamespaceSetting {
                    kind: NamespaceKind::Network,
                    mode: NamespaceMode::Join("/run/netns/x".into()),
                }],
                ..Default::default()
            },
            "namespace network",
        ),
    ];
    for (a, b, key) in cases {
        let err = run(&[entry("first", a.clone()), entry("second", b.clone())]).unwrap_err();
        match &err {
            SpecError::Conflict { key: k, first, second, .. } => {
                assert_eq!((k.as_str(), first.as_str(), second.as_str()), (key, "first", "second"), "{err}")
            }
            other => panic!("{key}: expected a conflict, got {other}"),
        }
        let text = err.to_string();
        assert!(text.contains("\"first\"") && text.contains("\"second\"") && text.contains(key), "{text}");

        // The later one may override: it wins and the explanation says so.
        let assembled =
            assemble(&request(), &[entry("first", a.clone()), entry("second", b.clone()).may_override(true)], &host())
                .unwrap();
        let step = assembled.explanation.step("second").unwrap();
        assert_eq!(step.overrides.len(), 1, "{key}");
        assert_eq!(step.overrides[0].previous_plugin, "first");

        // The same value twice is no conflict.
        assert!(run(&[entry("first", a.clone()), entry("second", a)]).is_ok(), "{key}");
    }
}

#[test]
fn override_wins_for_a_scalar() {
    let v = run(&[
        entry(
            "base",
            Adjustment {
                resources: Some(Resources { memory_limit: Some(100), ..Default::default() }),
                ..Default::default()
            },
        ),
        entry(
            "ops",
            Adjustment {
                resources: Some(Resources { memory_limit: Some(200), ..Default::default() }),
                ..Default::default()
            },
        )
        .may_override(true),
    ])
    .unwrap();
    assert_eq!(at(&v, "/linux/resources/memory/limit"), &json!(200));
}

#[test]
fn optional_plugins_are_skipped_and_recorded_required_ones_fail_closed() {
    let failing =
        || FnMutator::new("flaky", |_: &berth_spec::ContainerView| Err(MutatorError::Internal("boom".into())));
    let good = entry("good", Adjustment { hostname: Some("ok".into()), ..Default::default() });

    let chain = [ChainEntry::new(Box::new(failing()), Grants::all()).optional(true), good];
    let assembled = assemble(&request(), &chain, &host()).unwrap();
    assert_eq!(assembled.spec.hostname().as_deref(), Some("ok"));
    let step = assembled.explanation.step("flaky").unwrap();
    assert!(matches!(&step.outcome, Outcome::Skipped { error } if error.contains("boom")), "{step:?}");
    assert!(assembled.explanation.to_string().contains("flaky: skipped"));

    let chain = [ChainEntry::new(Box::new(failing()), Grants::all())];
    let err = run(&chain).unwrap_err();
    assert!(
        matches!(&err, SpecError::Plugin { plugin, source: MutatorError::Internal(_) } if plugin == "flaky"),
        "{err}"
    );

    // An optional plugin's bad adjustment leaves nothing half-applied.
    let bad = Adjustment { hostname: Some("half".into()), cwd: Some("relative".into()), ..Default::default() };
    let chain = [entry("bad", bad).optional(true)];
    let assembled = assemble(&request(), &chain, &host()).unwrap();
    assert_eq!(assembled.spec.hostname(), &None);
    // ... and a forbidden field in an optional plugin skips it too.
    let chain = [ChainEntry::new(
        Box::new(FixedMutator::new("nosy", Adjustment { hostname: Some("x".into()), ..Default::default() })),
        Grants::none(),
    )
    .optional(true)];
    let assembled = assemble(&request(), &chain, &host()).unwrap();
    assert!(matches!(assembled.explanation.step("nosy").unwrap().outcome, Outcome::Skipped { .. }));
}

#[test]
fn plugins_see_the_spec_as_earlier_plugins_left_it() {
    let chain = [
        entry(
            "first",
            Adjustment { hostname: Some("h1".into()), env_set: vec![("X".into(), "1".into())], ..Default::default() },
        ),
        ChainEntry::new(
            Box::new(FnMutator::new("second", |view: &berth_spec::ContainerView| {
                assert_eq!(view.id, "c1");
                assert_eq!(view.hostname.as_deref(), Some("h1"));
                assert!(view.process.env.contains(&"X=1".to_string()));
                assert!(view.process.capabilities.contains(&"CAP_CHOWN".to_string()));
                assert_eq!(view.namespaces.len(), 5);
                Ok(Adjustment { annotations: vec![("seen".into(), view.options[0].1.clone())], ..Default::default() })
            })),
            Grants::parse(["annotations"]).unwrap(),
        ),
    ];
    let request = Request { options: vec![("k".into(), "v".into())], ..request() };
    let assembled = assemble(&request, &chain, &host()).unwrap();
    assert_eq!(to_value(&assembled.spec)["annotations"], json!({"seen": "v"}));
}

#[test]
fn explanation_names_who_changed_what() {
    let chain = [
        entry(
            "mem",
            Adjustment {
                resources: Some(Resources { memory_limit: Some(1 << 20), ..Default::default() }),
                ..Default::default()
            },
        ),
        entry(
            "net",
            Adjustment {
                namespaces: vec![NamespaceSetting { kind: NamespaceKind::Network, mode: NamespaceMode::Host }],
                ..Default::default()
            },
        ),
    ];
    let assembled = assemble(&request(), &chain, &host()).unwrap();
    let e = &assembled.explanation;
    assert_eq!(e.changed_by("/linux/resources/memory/limit"), vec!["mem"]);
    assert_eq!(e.changed_by("/linux/namespaces"), vec!["net"]);
    assert_eq!(e.changed_by("/process/args"), vec!["image-config"]);
    let text = e.to_string();
    assert!(text.contains("mem:\n  /linux/resources/memory: set {\"limit\":1048576}"), "{text}");
    assert!(text.contains("net:\n  /linux/namespaces: -{\"type\":\"network\"}"), "{text}");
}

#[test]
fn default_seccomp_is_berth_seccomps_profile_for_the_final_caps() {
    let host = HostFacts::detect();
    let base = assemble(
        &request(),
        &[entry("s", Adjustment { seccomp: Some(Seccomp::Default), ..Default::default() })],
        &host,
    )
    .unwrap();
    let v = to_value(&base.spec);
    assert_eq!(at(&v, "/linux/seccomp/defaultAction"), &json!("SCMP_ACT_ERRNO"));
    let names = |v: &Value| -> Vec<String> {
        at(v, "/linux/seccomp/syscalls")
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "SCMP_ACT_ALLOW" && r.get("args").is_none())
            .flat_map(|r| r["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()))
            .collect()
    };
    assert!(!names(&v).contains(&"mount".to_string()));
    // The profile follows the bounding set as the chain left it: an earlier
    // plugin adding CAP_SYS_ADMIN unlocks mount.
    let chain = [
        entry("caps", Adjustment { capabilities_add: vec!["CAP_SYS_ADMIN".into()], ..Default::default() }),
        entry("s", Adjustment { seccomp: Some(Seccomp::Default), ..Default::default() }),
    ];
    let v = to_value(&assemble(&request(), &chain, &host).unwrap().spec);
    assert!(names(&v).contains(&"mount".to_string()));
}
