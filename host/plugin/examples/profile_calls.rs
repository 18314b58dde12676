//! A plain loop of plugin calls for `perf record` (criterion's own work and
//! the one-off compilation stay out of the profile):
//! `target/release/examples/profile_calls PLUGIN [ITERATIONS]`, where PLUGIN
//! is a reference plugin's name (target/wasm32-wasip2/plugin/PLUGIN.wasm) or
//! a path to a .wasm file (to compare two builds of a plugin with one host),
//! or `chain` (the bench's chain of 8: the four reference spec-mutators
//! twice; the time printed is per chain). `PROFILE_VIEW=empty` calls with an
//! almost empty view, `PROFILE_VIEW=info` calls `info` instead;
//! `PROFILE_DIR=DIR` takes the reference plugins from DIR. Each plugin gets
//! the bench's config (benches/calls.rs) unless `PROFILE_CONFIG='{...}'`
//! gives another; snapshotter-selectors and source-resolvers are called with
//! the bench's facts and request.
use std::path::{Path, PathBuf};
use std::time::Instant;

use berth_plugin::{
    HostFacts, HostOptions, ImageReference, LoadRequest, LoadedPlugin, Operation, PluginHost, PluginKind,
    ResolveRequest,
};

/// The config benches/calls.rs gives the reference plugin `name`.
fn bench_config(name: &str) -> serde_json::Value {
    match name {
        "nomad-task" => serde_json::json!({"env": {"A": "1"}}),
        "hosts-resolver" => {
            serde_json::json!({"docker.io": {"host": {"https://mirror.example.com": {"capabilities": ["pull"]}}}})
        }
        _ => serde_json::json!({}),
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "privileged".into());
    let n: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20_000);
    // `PROFILE_DIR`: another build of the reference plugins (e.g. an A/B).
    let dir = std::env::var_os("PROFILE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/wasm32-wasip2/plugin"));
    let options = HostOptions { cache_dir: Some(std::env::temp_dir().join("berth-profile-cache")), ..HostOptions::default() };
    let host = PluginHost::new(options)?;
    let path = if name.ends_with(".wasm") {
        PathBuf::from(&name)
    } else if name == "chain" {
        dir.join("privileged.wasm")
    } else {
        dir.join(format!("{name}.wasm"))
    };
    // The plugin's name without a directory or `.wasm` picks the bench config
    // (cargo's `nomad_task.wasm` is `nomad-task`).
    let stem = Path::new(&name).file_stem().and_then(|s| s.to_str()).unwrap_or(&name).replace('_', "-");
    let config = match std::env::var("PROFILE_CONFIG") {
        Ok(text) => serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("PROFILE_CONFIG: {e}"))?,
        Err(_) => bench_config(&stem),
    };
    let p = host.load(LoadRequest::new(&stem, path).config(config))?;
    // `profile_calls chain N`: the bench's chain of 8 (the four reference
    // spec-mutators twice, one after the other), N chains.
    let chain = if name == "chain" {
        let mut loaded = Vec::new();
        // The bench's configs (benches/calls.rs).
        for (m, config) in [
            ("privileged", serde_json::json!({})),
            ("resources", serde_json::json!({})),
            ("seccomp-default", serde_json::json!({})),
            ("nomad-task", serde_json::json!({"env": {"A": "1"}})),
        ] {
            loaded.push(host.load(LoadRequest::new(m, dir.join(format!("{m}.wasm"))).config(config))?);
        }
        let twice: Vec<_> = loaded.iter().chain(loaded.iter()).cloned().collect();
        twice
    } else {
        Vec::new()
    };
    let request = berth_spec::Request {
        id: "bench".into(),
        image: Some("docker.io/library/busybox:latest".into()),
        image_config: berth_spec::view::ImageConfigView {
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            cmd: vec!["sh".into()],
            ..Default::default()
        },
        options: vec![("memory".into(), "64m".into()), ("cpu".into(), "512".into())],
        ..Default::default()
    };
    let (spec, _) = berth_spec::base_spec(&request)?;
    let view = berth_spec::container_view(&spec, &request);
    let empty = berth_spec::ContainerView { id: "bench".into(), ..Default::default() };
    let which = std::env::var("PROFILE_VIEW").unwrap_or_default();
    let v = if which == "empty" { &empty } else { &view };
    let (facts, resolve) = (facts(), resolve_request());
    let one = |p: &LoadedPlugin| -> anyhow::Result<()> {
        match p.kind() {
            PluginKind::SpecMutator => drop(std::hint::black_box(p.mutate(v)?)),
            PluginKind::SnapshotterSelector => drop(std::hint::black_box(p.select(&facts)?)),
            PluginKind::SourceResolver => drop(std::hint::black_box(p.resolve(&resolve)?)),
        }
        Ok(())
    };
    for _ in 0..1000 {
        one(&p)?;
        for p in &chain {
            std::hint::black_box(p.mutate(v)?);
        }
    }
    let cpu0 = thread_cpu_ns();
    let t = Instant::now();
    for _ in 0..n {
        if !chain.is_empty() {
            for p in &chain {
                std::hint::black_box(p.mutate(v)?);
            }
        } else if which == "info" {
            std::hint::black_box(p.call_info()?);
        } else {
            one(&p)?;
        }
    }
    let wall = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let cpu = (thread_cpu_ns() - cpu0) as f64 / 1e3 / n as f64;
    println!("{name}: {cpu:.1} µs/call on cpu, {wall:.1} µs/call wall");
    Ok(())
}

/// benches/calls.rs's facts.
fn facts() -> HostFacts {
    HostFacts {
        root: "/var/lib/berth/snapshots".into(),
        filesystem_type: "ext4".into(),
        kernel_version: "6.1.0".into(),
        overlay_supported: true,
        available: vec!["overlayfs".into(), "fuse-overlayfs".into(), "native".into()],
        ..Default::default()
    }
}

/// benches/calls.rs's resolve request.
fn resolve_request() -> ResolveRequest {
    ResolveRequest {
        reference: ImageReference {
            registry: "docker.io".into(),
            repository: "library/busybox".into(),
            tag: Some("latest".into()),
            digest: None,
        },
        labels: vec![],
        operation: Operation::Pull,
    }
}

/// This thread's time on a CPU (first field of /proc/thread-self/schedstat), in ns.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
