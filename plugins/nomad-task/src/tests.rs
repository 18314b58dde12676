use super::*;
use berth_sdk::testing::{self, ContainerViewExt};
use serde_json::json;

fn run(view: ContainerView, cfg: Value) -> Result<Adjustment, PluginError> {
    testing::mutate::<NomadTask>(view, cfg)
}

fn task(t: Value) -> ContainerView {
    testing::container().with_annotation(ANNOTATION, &t.to_string())
}

#[test]
fn empty_task_changes_nothing() {
    assert!(run(testing::container(), json!({})).unwrap().is_empty());
}

#[test]
fn command_and_args_keep_the_entrypoint() {
    let view = task(json!({"command": "/bin/echo", "args": ["a", "b"]})).with_entrypoint(&["/init"], &["default"]);
    let adj = run(view, json!({})).unwrap();
    assert_eq!(adj.args, Some(vec!["/init".into(), "/bin/echo".into(), "a".into(), "b".into()]));
    let adj = run(task(json!({"command": "sh"})), json!({})).unwrap();
    assert_eq!(adj.args, Some(vec!["sh".into()]));
}

#[test]
fn args_without_command_is_an_error() {
    let e = run(task(json!({"args": ["x"]})), json!({})).unwrap_err();
    assert_eq!(e, PluginError::Rejected("Command is empty. Cannot set --args without --command.".into()));
}

#[test]
fn options_override_annotation_and_defaults() {
    let view = task(json!({"command": "from-annotation", "host_network": false}))
        .with_option("command", "from-option")
        .with_option("args", r#"["-c","echo hi"]"#)
        .with_option("cap_add", "NET_ADMIN, CAP_SYS_TIME");
    let adj = run(view, json!({"readonly_rootfs": true, "command": "from-defaults"})).unwrap();
    assert_eq!(adj.args, Some(vec!["from-option".into(), "-c".into(), "echo hi".into()]));
    assert_eq!(adj.readonly_rootfs, Some(true));
    assert_eq!(adj.capabilities_add, vec!["CAP_NET_ADMIN".to_string(), "CAP_SYS_TIME".to_string()]);
}

#[test]
fn privileged_is_with_privileged() {
    let adj = run(task(json!({"privileged": true})), json!({})).unwrap();
    assert_eq!(adj.privileged, with_privileged_bits());
    assert!(!adj.privileged.contains(Privileged::ALL_DEVICES), "WithPrivileged does not open the device cgroup");
    assert_eq!(adj.seccomp, Some(Seccomp::Unconfined));
    // seccomp=true comes after WithPrivileged in the driver: it wins.
    let adj = run(task(json!({"privileged": true, "seccomp": true})), json!({})).unwrap();
    assert_eq!(adj.seccomp, Some(Seccomp::Default));
    let e = run(task(json!({"privileged": true})), json!({"allow_privileged": false})).unwrap_err();
    assert!(e.message().contains("allow_privileged"));
}

#[test]
fn seccomp_default_and_custom() {
    let adj = run(task(json!({"seccomp": true})), json!({})).unwrap();
    assert_eq!(adj.seccomp, Some(Seccomp::Default));
    let e = run(task(json!({"seccomp_profile": "/etc/p.json"})), json!({})).unwrap_err();
    assert_eq!(e, PluginError::Rejected("seccomp must be set to true, if using a custom seccomp_profile.".into()));
    let profile = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []});
    let cfg = json!({"seccomp_profiles": {"/etc/p.json": profile}});
    let adj = run(task(json!({"seccomp": true, "seccomp_profile": "/etc/p.json"})), cfg).unwrap();
    match adj.seccomp {
        Some(Seccomp::Profile(p)) => assert_eq!(serde_json::from_str::<Value>(&p).unwrap(), profile),
        other => panic!("{other:?}"),
    }
    let adj = run(task(json!({"seccomp": true, "seccomp_profile": profile.to_string()})), json!({})).unwrap();
    assert!(matches!(adj.seccomp, Some(Seccomp::Profile(_))));
    let e = run(task(json!({"seccomp": true, "seccomp_profile": "/nope.json"})), json!({})).unwrap_err();
    assert!(e.message().contains("seccomp_profiles"));
    let e = run(task(json!({"seccomp": true, "seccomp_profile": "{\"syscalls\": []}"})), json!({})).unwrap_err();
    assert!(e.message().contains("defaultAction"));
}

#[test]
fn host_network_mounts_hosts_and_resolv_conf() {
    let adj = run(task(json!({"host_network": true})), json!({})).unwrap();
    assert_eq!(
        adj.mounts_add,
        vec![
            Mount::bind("/etc/hosts", "/etc/hosts", &["rbind", "ro"]),
            Mount::bind("/etc/resolv.conf", "/etc/resolv.conf", &["rbind", "ro"]),
        ]
    );
    assert_eq!(adj.namespaces, vec![NamespaceSetting { kind: NamespaceKind::Network, mode: NamespaceMode::Host }]);
}

#[test]
fn netns_path_is_joined() {
    let adj = run(task(json!({"netns_path": "/var/run/netns/n1"})), json!({})).unwrap();
    assert_eq!(
        adj.namespaces,
        vec![NamespaceSetting { kind: NamespaceKind::Network, mode: NamespaceMode::Join("/var/run/netns/n1".into()) }]
    );
}

#[test]
fn caps_env_resources() {
    let t = json!({
        "cap_add": ["CAP_NET_ADMIN"], "cap_drop": ["cap_chown"],
        "env": {"B": "2", "A": "1"}, "memory_limit": "256m", "cpu_shares": 512,
    });
    let adj = run(task(t), json!({})).unwrap();
    assert_eq!(adj.capabilities_add, vec!["CAP_NET_ADMIN".to_string()]);
    assert_eq!(adj.capabilities_drop, vec!["CAP_CHOWN".to_string()]);
    assert_eq!(adj.env_set, vec![KeyValue::new("A", "1"), KeyValue::new("B", "2")]);
    let r = adj.resources.unwrap();
    assert_eq!((r.memory_limit, r.cpu_shares), (Some(256 << 20), Some(512)));
    let adj = run(task(json!({"env": ["X=1=2", "Y"], "memory_limit": 0})), json!({})).unwrap();
    assert_eq!(adj.env_set, vec![KeyValue::new("X", "1=2"), KeyValue::new("Y", "")]);
    assert_eq!(adj.resources, None);
}

#[test]
fn devices() {
    let adj = run(
        task(json!({"devices": ["/dev/fuse", "/dev/sdb1", "/dev/foo:c:240:1",
            {"path": "/dev/bar", "type": "b", "major": 259, "minor": 3}]})),
        json!({}),
    )
    .unwrap();
    let nums: Vec<_> = adj.devices.iter().map(|d| (d.path.as_str(), d.type_, d.major, d.minor)).collect();
    assert_eq!(
        nums,
        vec![
            ("/dev/fuse", DeviceType::Char, 10, 229),
            ("/dev/sdb1", DeviceType::Block, 8, 17),
            ("/dev/foo", DeviceType::Char, 240, 1),
            ("/dev/bar", DeviceType::Block, 259, 3),
        ]
    );
    assert_eq!(adj.device_rules.len(), 4);
    assert!(adj.device_rules.iter().all(|r| r.allow && r.access == "rwm"));
    assert_eq!(adj.device_rules[1].type_.as_deref(), Some("b"));
    let e = run(task(json!({"devices": ["/dev/nvidia-uvm"]})), json!({})).unwrap_err();
    assert!(e.message().contains("/dev/nvidia-uvm:c:MAJOR:MINOR"));
    assert_eq!(known_device("/dev/loop3"), Some((DeviceType::Block, 7, 3)));
    assert_eq!(known_device("/dev/ttyS1"), Some((DeviceType::Char, 4, 65)));
    assert_eq!(known_device("/dev/sdq"), None);
}

#[test]
fn mounts_and_task_dirs() {
    let t = json!({
        "mounts": [{"type": "bind", "target": "/data", "source": "/srv/data", "options": ["rbind", "rw"]},
                   {"type": "tmpfs", "target": "/scratch", "source": "tmpfs"}],
        "secrets_dir": "/alloc/t/secrets", "task_dir": "/alloc/t/local", "alloc_dir": "/alloc/alloc",
    });
    let adj = run(task(t), json!({})).unwrap();
    let got: Vec<_> =
        adj.mounts_add.iter().map(|m| (m.destination.as_str(), m.source.as_str(), m.options.join(","))).collect();
    assert_eq!(
        got,
        vec![
            ("/data", "/srv/data", "rbind,rw".to_string()),
            ("/scratch", "tmpfs", String::new()),
            ("/secrets", "/alloc/t/secrets", "rbind,ro".to_string()),
            ("/local", "/alloc/t/local", "rbind,ro".to_string()),
            ("/alloc", "/alloc/alloc", "rbind,ro".to_string()),
        ]
    );
    for kind in ["bind", "volume"] {
        let e = run(task(json!({"mounts": [{"type": kind, "target": "/x", "source": "/y"}]})), json!({})).unwrap_err();
        assert_eq!(
            e.message(),
            format!("Options cannot be empty for mount type: {kind}. You need to atleast pass rbind and ro.")
        );
    }
}

#[test]
fn demo_style_config() {
    // Task keys at the top of the plugin config are defaults.
    let adj =
        run(testing::container(), json!({"env": {"DEMO_PLUGIN": "nomad-task"}, "cap_drop": ["CAP_NET_RAW"]})).unwrap();
    assert_eq!(adj.env_set, vec![KeyValue::new("DEMO_PLUGIN", "nomad-task")]);
    assert_eq!(adj.capabilities_drop, vec!["CAP_NET_RAW".to_string()]);
    let e = run(testing::container(), json!({"allow_privileged": "yes"})).unwrap_err();
    assert!(matches!(e, PluginError::InvalidConfig(_)));
}

#[test]
fn bad_input_names_the_key() {
    let e = run(task(json!({"privilegd": true})), json!({})).unwrap_err();
    assert!(matches!(&e, PluginError::Rejected(m) if m.contains("privilegd")), "{e:?}");
    let e = run(testing::container(), json!({"readonly": true})).unwrap_err();
    assert!(matches!(&e, PluginError::InvalidConfig(m) if m.contains("readonly")), "{e:?}");
    let e = run(testing::container().with_option("privileged", "sure"), json!({})).unwrap_err();
    assert!(e.message().contains("privileged=`sure`"));
    let e = run(testing::container().with_annotation(ANNOTATION, "[1]"), json!({})).unwrap_err();
    assert!(e.message().contains("not a JSON object"));
}

#[test]
fn sources_replace_keys_whole_and_errors_say_whose() {
    // A key set to null in a later source is set (to none).
    let adj = run(task(json!({"command": null})), json!({"command": "sh"})).unwrap();
    assert_eq!(adj.args, None);
    // env given as a list replaces a default table, and the other way round.
    let adj = run(task(json!({"env": ["B=2"]})), json!({"env": {"A": "1"}})).unwrap();
    assert_eq!(adj.env_set, vec![KeyValue::new("B", "2")]);
    // An option replaces the annotation's key before it is typed.
    let view = task(json!({"privileged": "yes"})).with_option("privileged", "false");
    assert!(run(view, json!({})).unwrap().is_empty());
    // A bad default is the operator's error even when the task overrides it.
    let e = run(task(json!({"cpu_shares": 2})), json!({"cpu_shares": "many"})).unwrap_err();
    assert!(matches!(&e, PluginError::InvalidConfig(m) if m.contains("invalid task config default")), "{e:?}");
    let e = run(testing::container(), json!({"annotation": 5})).unwrap_err();
    assert!(matches!(&e, PluginError::InvalidConfig(m) if m.starts_with("nomad-task: invalid type")), "{e:?}");
    let e = run(testing::container(), json!([1])).unwrap_err();
    assert_eq!(e, PluginError::InvalidConfig("nomad-task: config must be a table".into()));
    let e = testing::mutate::<NomadTask>(testing::container(), "{").unwrap_err();
    assert!(matches!(&e, PluginError::InvalidConfig(m) if m.starts_with("invalid plugin config")), "{e:?}");
    // The task's own mistakes are rejections naming the source.
    let e = run(task(json!({"env": 5})), json!({})).unwrap_err();
    assert!(
        matches!(&e, PluginError::Rejected(m) if m.contains(&format!("annotation {ANNOTATION}")) && m.contains("NAME=VALUE")),
        "{e:?}"
    );
    let e = run(testing::container().with_annotation(ANNOTATION, "{\"command\": "), json!({})).unwrap_err();
    assert!(matches!(&e, PluginError::Rejected(m) if m.starts_with(&format!("nomad-task: annotation {ANNOTATION}: "))));
    let e = run(testing::container().with_option("mounts", r#"{"type": "bind"}"#), json!({})).unwrap_err();
    assert!(matches!(&e, PluginError::Rejected(m) if m.contains("option mounts")), "{e:?}");
    let e = run(task(json!({"devices": [{"path": "/dev/x", "major": 1}]})), json!({})).unwrap_err();
    assert!(e.message().contains("minor"), "{e:?}");
}
