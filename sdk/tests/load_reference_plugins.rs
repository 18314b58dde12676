//! Smoke test: every reference plugin, as built by `cargo xtask build-plugins`,
//! loads in the real host (berth-plugin: wasmtime, empty WASI) and answers a
//! call with what its native unit tests expect. This is the check that the
//! SDK's WIT bindings and the host's agree.
//!
//! Needs the built plugins: `BERTH_PLUGIN_DIR`, else
//! `target/wasm32-wasip2/plugin`. Skips with the reason when they are absent
//! (it cannot build them itself: the outer cargo holds the target dir lock).

use std::path::PathBuf;

use berth_plugin::{HostOptions, LoadRequest, PluginHost, PluginKind};
use serde_json::json;

const PLUGINS: &[(&str, PluginKind)] = &[
    ("nomad-task", PluginKind::SpecMutator),
    ("privileged", PluginKind::SpecMutator),
    ("resources", PluginKind::SpecMutator),
    ("seccomp-default", PluginKind::SpecMutator),
    ("auto-snapshotter", PluginKind::SnapshotterSelector),
    ("hosts-resolver", PluginKind::SourceResolver),
    ("stargz-labels", PluginKind::SourceResolver),
];

fn plugin_dir() -> PathBuf {
    std::env::var_os("BERTH_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/plugin"))
}

fn built() -> Option<PathBuf> {
    let dir = plugin_dir();
    let missing: Vec<_> = PLUGINS.iter().filter(|(n, _)| !dir.join(format!("{n}.wasm")).is_file()).collect();
    if missing.is_empty() {
        Some(dir)
    } else {
        eprintln!("skipping: plugins not built in {} (run `cargo xtask build-plugins`): {missing:?}", dir.display());
        None
    }
}

fn view(options: &[(&str, &str)]) -> berth_spec::ContainerView {
    let mut v = berth_spec::ContainerView { id: "smoke".into(), ..Default::default() };
    v.image_config.entrypoint = vec!["/init".into()];
    v.process.capabilities = vec!["CAP_CHOWN".into(), "CAP_KILL".into()];
    v.options = options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    v
}

#[test]
fn every_reference_plugin_loads_and_answers() {
    let Some(dir) = built() else { return };
    let host = PluginHost::new(HostOptions::default()).unwrap();
    let load = |name: &str, kind: PluginKind, config: serde_json::Value| {
        host.load(LoadRequest::new(name, dir.join(format!("{name}.wasm"))).kind(kind).config(config))
            .unwrap_or_else(|e| panic!("loading {name}: {e}"))
    };
    for (name, kind) in PLUGINS {
        let p = load(name, *kind, json!({}));
        assert_eq!(p.info().name, *name);
        assert_eq!(p.call_info().unwrap().name, *name);
    }

    // spec-mutators
    let nomad = load("nomad-task", PluginKind::SpecMutator, json!({"env": {"A": "1"}}));
    let adj =
        nomad.mutate(&view(&[("command", "sh"), ("args", r#"["-c","true"]"#), ("host_network", "true")])).unwrap();
    assert_eq!(adj.args, Some(vec!["/init".into(), "sh".into(), "-c".into(), "true".into()]));
    assert_eq!(adj.env_set, vec![("A".to_string(), "1".to_string())]);
    assert_eq!(adj.mounts_add.len(), 2);
    let err = nomad.mutate(&view(&[("args", "x")])).unwrap_err();
    assert!(err.to_string().contains("Cannot set --args without --command"), "{err}");

    let adj = load("privileged", PluginKind::SpecMutator, json!({})).mutate(&view(&[])).unwrap();
    assert!(adj.privileged.all_capabilities && adj.privileged.all_devices && adj.privileged.sysfs_rw);
    assert_eq!(adj.seccomp, Some(berth_spec::adjustment::Seccomp::Unconfined));

    let adj = load("resources", PluginKind::SpecMutator, json!({})).mutate(&view(&[("memory", "64m")])).unwrap();
    assert_eq!(adj.resources.unwrap().memory_limit, Some(64 << 20));

    let adj = load("seccomp-default", PluginKind::SpecMutator, json!({})).mutate(&view(&[])).unwrap();
    match adj.seccomp {
        Some(berth_spec::adjustment::Seccomp::Profile(p)) => {
            let p: serde_json::Value = serde_json::from_str(&p).unwrap();
            assert_eq!(p, berth_seccomp::default_profile("amd64", &["CAP_CHOWN".into(), "CAP_KILL".into()]));
        }
        other => panic!("seccomp-default returned {other:?}"),
    }

    // snapshotter-selector
    let facts = berth_plugin::HostFacts {
        overlay_supported: false,
        available: vec!["overlayfs".into(), "native".into()],
        ..Default::default()
    };
    let choice = load("auto-snapshotter", PluginKind::SnapshotterSelector, json!({})).select(&facts).unwrap();
    assert_eq!(choice.name, "native");

    // source-resolvers
    let request = berth_plugin::ResolveRequest {
        reference: berth_plugin::ImageReference {
            registry: "docker.io".into(),
            repository: "library/busybox".into(),
            tag: Some("latest".into()),
            digest: None,
        },
        labels: vec![
            ("containerd.io/snapshot/remote/stargz.reference.1".into(), "docker.io/library/busybox:latest".into()),
            ("containerd.io/snapshot/remote/stargz.digest.1".into(), format!("sha256:{}", "a".repeat(64))),
        ],
        operation: berth_plugin::Operation::Pull,
    };
    let cfg = json!({"docker.io": {"host": {"https://mirror.example.com": {"capabilities": ["pull"]}}}});
    let sources = load("hosts-resolver", PluginKind::SourceResolver, cfg).resolve(&request).unwrap();
    let hosts: Vec<_> = sources
        .iter()
        .map(|s| match &s.location {
            berth_plugin::SourceLocation::Registry(h) => h.host.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(hosts, ["mirror.example.com", "registry-1.docker.io"]);
    let sources = load("stargz-labels", PluginKind::SourceResolver, json!({})).resolve(&request).unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0].target_digest.as_deref(), Some(format!("sha256:{}", "a".repeat(64)).as_str()));
}

/// Prints (does not assert) the median per-call time of each spec-mutator,
/// fresh instance per call, for the record.
#[test]
fn per_call_latency_is_printed() {
    let Some(dir) = built() else { return };
    let host = PluginHost::new(HostOptions::default()).unwrap();
    for name in ["nomad-task", "privileged", "resources", "seccomp-default"] {
        let p = host
            .load(LoadRequest::new(name, dir.join(format!("{name}.wasm"))).kind(PluginKind::SpecMutator))
            .unwrap();
        let v = view(&[("memory", "64m"), ("command", "sh")]);
        let mut times: Vec<_> = (0..200)
            .map(|_| {
                let t = std::time::Instant::now();
                p.mutate(&v).unwrap();
                t.elapsed()
            })
            .collect();
        times.sort();
        eprintln!("{name}: median {:?} per call (load {:?}, {:?})", times[100], p.load_time(), p.cache_outcome());
    }
}
