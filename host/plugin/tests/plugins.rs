//! The plugin host against real wasm components built in this test run:
//! hostile plugins fail with their own named error and the same host keeps
//! serving; the sandbox is empty; the cache is hit; bad files are named.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use berth_plugin::*;
use berth_spec::ContainerView;

fn view(id: &str) -> ContainerView {
    ContainerView { id: id.to_string(), ..Default::default() }
}

fn host() -> PluginHost {
    PluginHost::new(HostOptions::default()).expect("plugin host")
}

fn load(host: &PluginHost, dir: &Path, name: &str) -> LoadedPlugin {
    host.load(LoadRequest::new(name, common::fixture(dir, name))).unwrap_or_else(|e| panic!("load {name}: {e}"))
}

fn assert_good(good: &LoadedPlugin, id: &str) {
    let adj = good.mutate(&view(id)).expect("the well-behaved plugin answers");
    assert_eq!(adj.env_set, vec![("BERTH_FIXTURE".to_string(), "good".to_string())]);
    assert_eq!(adj.annotations, vec![("fixture.id".to_string(), id.to_string())]);
}

#[test]
fn hostile_plugins_fail_with_named_errors_and_the_host_keeps_serving() {
    let Some(dir) = common::fixtures() else { return };
    let host = host();
    let good = load(&host, dir, "good");
    let spin = host
        .load(LoadRequest::new("spin", common::fixture(dir, "spin")).limits(Limits {
            timeout: Duration::from_millis(50),
            ..Limits::default()
        }))
        .unwrap();
    let membomb = host
        .load(LoadRequest::new("membomb", common::fixture(dir, "membomb")).limits(Limits {
            memory_bytes: 16 << 20,
            ..Limits::default()
        }))
        .unwrap();
    let trap = load(&host, dir, "trap");
    let oversized = load(&host, dir, "oversized");

    assert_good(&good, "before");
    // Twice round: a failed call must not leak its pool slot or state.
    for round in 0..2 {
        match spin.mutate(&view("c")) {
            Err(CallError::Timeout { plugin, timeout }) => {
                assert_eq!(plugin, "spin");
                assert_eq!(timeout, Duration::from_millis(50));
            }
            other => panic!("spin: expected Timeout, got {other:?}"),
        }
        assert_good(&good, &format!("after-spin-{round}"));

        match membomb.mutate(&view("c")) {
            Err(CallError::OutOfMemory { plugin, requested, limit }) => {
                assert_eq!(plugin, "membomb");
                assert_eq!(limit, 16 << 20);
                assert!(requested > limit);
            }
            other => panic!("membomb: expected OutOfMemory, got {other:?}"),
        }
        assert_good(&good, &format!("after-membomb-{round}"));

        match trap.mutate(&view("boom")) {
            Err(CallError::Trap { plugin, detail }) => {
                assert_eq!(plugin, "trap");
                assert!(detail.contains("unreachable"), "{detail}");
                // The panic message reaches the error through captured stderr.
                assert!(detail.contains("fixture trap for boom"), "{detail}");
            }
            other => panic!("trap: expected Trap, got {other:?}"),
        }
        assert_good(&good, &format!("after-trap-{round}"));

        match oversized.mutate(&view("c")) {
            Err(CallError::OutputTooLarge { plugin, size, limit }) => {
                assert_eq!(plugin, "oversized");
                assert_eq!(limit, Limits::default().output_bytes);
                assert!(size > 2 << 20, "{size}");
            }
            other => panic!("oversized: expected OutputTooLarge, got {other:?}"),
        }
        assert_good(&good, &format!("after-oversized-{round}"));
    }
    // Every error's message names its plugin.
    for (plugin, err) in [
        ("spin", spin.mutate(&view("c")).unwrap_err()),
        ("membomb", membomb.mutate(&view("c")).unwrap_err()),
        ("trap", trap.mutate(&view("c")).unwrap_err()),
        ("oversized", oversized.mutate(&view("c")).unwrap_err()),
    ] {
        assert_eq!(err.plugin(), plugin);
        assert!(err.to_string().contains(&format!("`{plugin}`")), "{err}");
    }
}

#[test]
fn plugin_errors_and_malformed_answers_are_distinct() {
    let Some(dir) = common::fixtures() else { return };
    let host = host();
    let reject = host
        .load(LoadRequest::new("picky", common::fixture(dir, "good")).config(serde_json::json!({"reject": true})))
        .unwrap();
    match reject.mutate(&view("c1")) {
        Err(CallError::Rejected { plugin, error: PluginError::Rejected(msg) }) => {
            assert_eq!(plugin, "picky");
            assert!(msg.contains("c1"), "{msg}");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    let bad = host
        .load(LoadRequest::new("badcap", common::fixture(dir, "good")).config(serde_json::json!({"bad-cap": true})))
        .unwrap();
    match bad.mutate(&view("c")) {
        Err(CallError::MalformedOutput { plugin, detail }) => {
            assert_eq!(plugin, "badcap");
            assert!(detail.contains("not-a-capability"), "{detail}");
        }
        other => panic!("expected MalformedOutput, got {other:?}"),
    }
    // A plugin that floods stderr is cut off quietly, not failed.
    let spam = host
        .load(LoadRequest::new("spam", common::fixture(dir, "good")).config(serde_json::json!({"spam-stderr": true})))
        .unwrap();
    assert_good(&spam, "spam");
    // The config reaches the plugin.
    let named = host
        .load(LoadRequest::new("named", common::fixture(dir, "good")).config(serde_json::json!({"hostname": "web-1"})))
        .unwrap();
    assert_eq!(named.mutate(&view("c")).unwrap().hostname.as_deref(), Some("web-1"));
}

#[test]
fn the_sandbox_is_empty() {
    let Some(dir) = common::fixtures() else { return };
    // Things a plugin must not see even if the host has them.
    // SAFETY: set before any plugin runs; no other thread reads it.
    unsafe { std::env::set_var("BERTH_SECRET_FOR_SNOOP", "hunter2") };
    let host = host();
    let snoop = load(&host, dir, "snoop");
    let adj = snoop.mutate(&view("c")).unwrap();
    let get = |k: &str| adj.annotations.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(get("env-count"), "0");
    assert_eq!(get("args-count"), "0");
    for key in ["read-dir-root", "read-etc-passwd", "write-tmp", "tcp-connect"] {
        assert!(get(key).starts_with("error"), "{key}: {}", get(key));
    }
    assert_eq!(get("stdin"), "Ok(0)", "stdin is closed (EOF)");
    assert!(!Path::new("/tmp/berth-snoop").exists());
}

#[test]
fn log_and_stderr_reach_the_host_log_with_the_plugin_name() {
    let Some(dir) = common::fixtures() else { return };
    #[derive(Clone, Default)]
    struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let host = host();
    let good = host.load(LoadRequest::new("chatty", common::fixture(dir, "good"))).unwrap();
    tracing::subscriber::with_default(subscriber, || {
        good.mutate(&view("c-42")).unwrap();
    });
    let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let line = |needle: &str| log.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no `{needle}` in:\n{log}"));
    let logged = line("mutating");
    assert!(logged.contains("plugin=\"chatty\"") || logged.contains("plugin=chatty"), "{logged}");
    assert!(logged.contains("id=\"c-42\""), "{logged}");
    let stderr = line("stderr line for c-42");
    assert!(stderr.contains("chatty"), "{stderr}");
}

#[test]
fn second_load_hits_the_disk_cache() {
    let Some(dir) = common::fixtures() else { return };
    let cache = tempfile::tempdir().unwrap();
    let options = HostOptions { cache_dir: Some(cache.path().join("cache")), ..HostOptions::default() };
    let first = PluginHost::new(options.clone()).unwrap();
    let a = load(&first, dir, "good");
    assert_eq!(a.cache_outcome(), CacheOutcome::Compiled);
    let again = load(&first, dir, "good");
    assert_eq!(again.cache_outcome(), CacheOutcome::Memory);

    let entries: Vec<_> = std::fs::read_dir(cache.path().join("cache")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let cwasm = entries[0].clone();
    assert_eq!(cwasm.extension().unwrap(), "cwasm");
    let modified = std::fs::metadata(&cwasm).unwrap().modified().unwrap();

    let second = PluginHost::new(options.clone()).unwrap();
    let b = load(&second, dir, "good");
    assert_eq!(b.cache_outcome(), CacheOutcome::Disk);
    assert_eq!(b.digest(), a.digest());
    assert_good(&b, "from-cache");
    assert_eq!(std::fs::metadata(&cwasm).unwrap().modified().unwrap(), modified, "not rewritten");

    // A corrupt cache entry is discarded and rebuilt, not trusted. (Replaced
    // by rename, as berth itself writes entries: truncating a file another
    // host has mapped would SIGBUS that host.)
    let tmp = cache.path().join("corrupt");
    std::fs::write(&tmp, b"garbage").unwrap();
    std::fs::rename(&tmp, &cwasm).unwrap();
    let third = PluginHost::new(options).unwrap();
    let c = load(&third, dir, "good");
    assert_eq!(c.cache_outcome(), CacheOutcome::Compiled);
    assert_good(&c, "rebuilt");

    // A precompiled artifact is not accepted as a plugin.
    match first.load(LoadRequest::new("cwasm", &cwasm)) {
        Err(e @ LoadError::Precompiled { .. }) => assert!(e.to_string().contains(&cwasm.display().to_string())),
        other => panic!("expected Precompiled, got {other:?}"),
    }
}

#[test]
fn a_cache_dir_others_can_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let cache = tempfile::tempdir().unwrap();
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let host = PluginHost::new(HostOptions { cache_dir: Some(cache.path().to_path_buf()), ..HostOptions::default() })
        .unwrap();
    assert_eq!(host.cache_dir(), None);
}

#[test]
fn bad_files_and_wrong_kinds_are_named() {
    let Some(dir) = common::fixtures() else { return };
    let host = host();
    let tmp = tempfile::tempdir().unwrap();

    let garbage = tmp.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm\x0d\0\x01\0this is not wasm").unwrap();
    match host.load(LoadRequest::new("garbage", &garbage)) {
        Err(e @ LoadError::Invalid { .. }) => assert!(e.to_string().contains(&garbage.display().to_string()), "{e}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    let text = tmp.path().join("text.wasm");
    std::fs::write(&text, b"hello").unwrap();
    let err = host.load(LoadRequest::new("text", &text)).unwrap_err();
    assert!(matches!(err, LoadError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("text.wasm"), "{err}");

    let missing = tmp.path().join("missing.wasm");
    let err = host.load(LoadRequest::new("missing", &missing)).unwrap_err();
    assert!(matches!(err, LoadError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.wasm"), "{err}");

    let selector_path = common::fixture(dir, "selector");
    match host.load(LoadRequest::new("sel", &selector_path).kind(PluginKind::SpecMutator)) {
        Err(e @ LoadError::KindMismatch { expected: PluginKind::SpecMutator, actual: PluginKind::SnapshotterSelector, .. }) => {
            assert!(e.to_string().contains("fixture_selector.wasm"), "{e}")
        }
        other => panic!("expected KindMismatch, got {other:?}"),
    }
    // Kind detected from the exports; calling the wrong kind's function is an error.
    let selector = host.load(LoadRequest::new("sel", &selector_path)).unwrap();
    assert_eq!(selector.kind(), PluginKind::SnapshotterSelector);
    assert!(matches!(
        selector.mutate(&view("c")),
        Err(CallError::WrongKind { expected: PluginKind::SpecMutator, actual: PluginKind::SnapshotterSelector, .. })
    ));
}

#[test]
fn info_digest_and_wit_version() {
    let Some(dir) = common::fixtures() else { return };
    let host = host();
    let good = load(&host, dir, "good");
    assert_eq!(good.kind(), PluginKind::SpecMutator);
    assert_eq!(good.info().name, "good");
    assert_eq!(good.info().version, "0.0.1");
    assert_eq!(good.wit_version(), "0.1.0");
    let bytes = std::fs::read(common::fixture(dir, "good")).unwrap();
    use sha2::Digest;
    assert_eq!(good.digest(), format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes))));
    assert_eq!(good.call_info().unwrap(), *good.info());
}

#[test]
fn selector_and_resolver_calls() {
    let Some(dir) = common::fixtures() else { return };
    let host = host();
    let selector = load(&host, dir, "selector");
    let facts = HostFacts {
        overlay_supported: true,
        available: vec!["overlayfs".into(), "native".into()],
        ..Default::default()
    };
    let choice = selector.select(&facts).unwrap();
    assert_eq!(choice.name, "overlayfs");
    let native = selector.select(&HostFacts { overlay_supported: false, ..facts.clone() }).unwrap();
    assert_eq!(native.name, "native");
    // The host checks the answer against what it has.
    let forced = host
        .load(LoadRequest::new("forced", common::fixture(dir, "selector")).config(serde_json::json!({"name": "zfs"})))
        .unwrap();
    match forced.select(&facts) {
        Err(CallError::MalformedOutput { plugin, detail }) => {
            assert_eq!(plugin, "forced");
            assert!(detail.contains("zfs"), "{detail}");
        }
        other => panic!("expected MalformedOutput, got {other:?}"),
    }

    let resolver = load(&host, dir, "resolver");
    let request = ResolveRequest {
        reference: ImageReference {
            registry: "docker.io".into(),
            repository: "library/busybox".into(),
            tag: Some("latest".into()),
            digest: None,
        },
        ..Default::default()
    };
    let sources = resolver.resolve(&request).unwrap();
    assert_eq!(sources.len(), 2);
    match &sources[1].location {
        SourceLocation::Registry(h) => {
            assert_eq!(h.host, "docker.io");
            assert_eq!(h.scheme, "https");
            assert!(h.capabilities.pull && h.capabilities.resolve && !h.capabilities.push);
        }
        other => panic!("{other:?}"),
    }
    let ftp = host
        .load(LoadRequest::new("ftp", common::fixture(dir, "resolver")).config(serde_json::json!({"scheme": "ftp"})))
        .unwrap();
    assert!(matches!(ftp.resolve(&request), Err(CallError::MalformedOutput { .. })));
}

#[test]
fn concurrent_calls_from_many_threads() {
    let Some(dir) = common::fixtures() else { return };
    let host = host();
    let good = load(&host, dir, "good");
    std::thread::scope(|s| {
        for t in 0..4 {
            let good = good.clone();
            s.spawn(move || {
                for i in 0..50 {
                    assert_good(&good, &format!("t{t}-{i}"));
                }
            });
        }
    });
}

#[test]
fn limits_above_the_host_ceiling_are_refused() {
    let Some(dir) = common::fixtures() else { return };
    let host = PluginHost::new(HostOptions { max_memory_bytes: 32 << 20, limits: Limits { memory_bytes: 16 << 20, ..Limits::default() }, ..HostOptions::default() }).unwrap();
    let err = host
        .load(LoadRequest::new("big", common::fixture(dir, "good")).limits(Limits { memory_bytes: 64 << 20, ..Limits::default() }))
        .unwrap_err();
    assert!(matches!(err, LoadError::Limits { .. }), "{err:?}");
}

/// Every list of the view reaches the guest intact (the host lowers them in
/// batches, host/plugin/src/lower.rs): the `good` fixture echoes them back.
#[test]
fn the_view_reaches_the_guest_intact() {
    let Some(dir) = common::fixtures() else { return };
    let host = host();
    let echo = host
        .load(LoadRequest::new("echo", common::fixture(dir, "good")).config(serde_json::json!({"echo-view": true})))
        .unwrap();
    let strings = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut v = view("echo");
    v.image_config.env = strings(&["PATH=/bin", "Ü=ñ"]);
    v.image_config.entrypoint = strings(&["/bin/sh", "", "-c"]);
    v.image_config.exposed_ports = strings(&["80/tcp"]);
    v.process.args = strings(&["sh", "-c", "echo hi"]);
    v.process.capabilities = (0..40).map(|i| format!("CAP_{i}")).collect();
    v.process.cwd = "/work dir".into();
    v.mounts = vec![
        berth_spec::adjustment::Mount { destination: "/proc".into(), kind: "proc".into(), source: "proc".into(), options: vec![] },
        berth_spec::adjustment::Mount {
            destination: "/dev".into(),
            kind: "tmpfs".into(),
            source: "".into(),
            options: strings(&["nosuid", "strictatime", "mode=755", "size=65536k"]),
        },
        berth_spec::adjustment::Mount { destination: "/x".repeat(300), kind: "bind".into(), source: "/src".into(), options: strings(&["rbind", "ro"]) },
    ];
    let mut expected = String::new();
    let ic = &v.image_config;
    let p = &v.process;
    for (name, list) in [
        ("ic.env", &ic.env),
        ("ic.entrypoint", &ic.entrypoint),
        ("ic.cmd", &ic.cmd),
        ("ic.exposed-ports", &ic.exposed_ports),
        ("ic.volumes", &ic.volumes),
        ("args", &p.args),
        ("env", &p.env),
        ("capabilities", &p.capabilities),
    ] {
        expected.push_str(&format!("{name}={};", list.join(",")));
    }
    for m in &v.mounts {
        expected.push_str(&format!("mount={}|{}|{}|{};", m.destination, m.kind, m.source, m.options.join(",")));
    }
    expected.push_str(&format!("cwd={};", p.cwd));
    // The same view through 0.1.0 (`good`: the whole record) and 0.2.0
    // (`view`: the `container` resource's getters).
    let lazy = load(&host, dir, "view");
    assert_eq!(echo.wit_version(), "0.1.0");
    assert_eq!(lazy.wit_version(), "0.2.0");
    v.image = Some("docker.io/library/busybox:latest".into());
    v.hostname = Some("h".into());
    v.readonly_rootfs = true;
    v.options = vec![("memory".into(), "64m".into()), ("cpu".into(), "".into())];
    v.annotations = vec![("a".into(), "ñ".into())];
    v.image_config.labels = vec![("l".into(), "1".into())];
    v.image_config.working_dir = Some("/w".into());
    v.process.uid = 7;
    v.process.additional_gids = vec![1, 2];
    v.namespaces = vec![
        berth_spec::view::NamespaceView { kind: berth_spec::adjustment::NamespaceKind::Pid, path: None },
        berth_spec::view::NamespaceView { kind: berth_spec::adjustment::NamespaceKind::Network, path: Some("/run/netns/x".into()) },
    ];
    let rest = "id=echo;image=Some(\"docker.io/library/busybox:latest\");hostname=Some(\"h\");readonly=true;annotations=a=ñ;\
                labels=l=1;user=None;workdir=Some(\"/w\");uid=7;gid=0;gids=[1, 2];terminal=false;nnp=false;\
                ns=NamespaceKind::Pid:,NamespaceKind::Network:/run/netns/x";
    let annotation = |adj: &berth_spec::Adjustment, key: &str| {
        adj.annotations.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    };
    for _ in 0..3 {
        let adj = echo.mutate(&v).expect("echo answers");
        assert_eq!(annotation(&adj, "fixture.view").as_deref(), Some(expected.as_str()));
        let adj = lazy.mutate(&v).expect("view answers");
        assert_eq!(annotation(&adj, "fixture.view").as_deref(), Some(expected.as_str()));
        assert_eq!(annotation(&adj, "fixture.options").as_deref(), Some("memory=64m,cpu="));
        assert_eq!(annotation(&adj, "fixture.rest").as_deref(), Some(rest));
    }
    // A plugin that reads only the options gets only those.
    let options_only = host
        .load(LoadRequest::new("options-only", common::fixture(dir, "view")).config(serde_json::json!({"only-options": true})))
        .unwrap();
    let adj = options_only.mutate(&v).unwrap();
    assert_eq!(adj.annotations, vec![("fixture.options".to_string(), "memory=64m,cpu=".to_string())]);
}

/// A component built against berth:plugin@0.1.0 (wit/compat/0.1.0: every
/// fixture but `view`) still loads and mutates on this 0.2.0 host, whatever
/// its kind.
#[test]
fn a_0_1_0_component_still_loads_and_mutates() {
    let Some(dir) = common::fixtures() else { return };
    let host = host();
    assert_eq!(SUPPORTED_WIT_VERSIONS, &["0.2.0", "0.1.0"]);
    let good = load(&host, dir, "good");
    assert_eq!(good.wit_version(), "0.1.0");
    assert_good(&good, "old");
    for name in ["selector", "resolver"] {
        assert_eq!(load(&host, dir, name).wit_version(), "0.1.0", "{name}");
    }
}

/// The output-size check of an adjustment carrying a seccomp profile (which
/// skips escaping the profile when even 6 bytes per byte would fit) refuses
/// exactly what the plain JSON measure refuses, and reports that size.
#[test]
fn a_seccomp_profile_answer_is_measured_like_any_other() {
    let Some(path) = common::reference_plugin("seccomp-default") else { return };
    let host = host();
    let v = view("c");
    let adj = host.load(LoadRequest::new("seccomp", &path)).unwrap().mutate(&v).expect("default limits");
    assert!(matches!(adj.seccomp, Some(berth_spec::adjustment::Seccomp::Profile(_))));
    let exact = berth_plugin::output_size(&adj);
    let with_limit = |output_bytes| {
        host.load(LoadRequest::new("seccomp", &path).limits(Limits { output_bytes, ..Limits::default() })).unwrap().mutate(&v)
    };
    assert_eq!(with_limit(exact).expect("at the limit"), adj);
    match with_limit(exact - 1) {
        Err(CallError::OutputTooLarge { size, limit, .. }) => assert_eq!((size, limit), (exact, exact - 1)),
        other => panic!("expected OutputTooLarge, got {other:?}"),
    }
}
