//! A plain loop of plugin calls for `perf record` (criterion's own work and
//! the one-off compilation stay out of the profile):
//! `target/release/examples/profile_calls PLUGIN [ITERATIONS]`, where PLUGIN
//! is a reference plugin's name (target/wasm32-wasip2/plugin/PLUGIN.wasm) or
//! a path to a .wasm file (to compare two builds of a plugin with one host),
//! or `chain` (the bench's chain of 8: the four reference spec-mutators
//! twice; the time printed is per chain). `PROFILE_VIEW=empty` calls with an
//! almost empty view, `PROFILE_VIEW=info` calls `info` instead;
//! `PROFILE_DIR=DIR` takes the reference plugins from DIR. Each plugin gets
//! the bench's config (benches/inputs) unless `PROFILE_CONFIG='{...}'`
//! gives another; snapshotter-selectors and source-resolvers are called with
//! the bench's facts and request.
use std::path::{Path, PathBuf};
use std::time::Instant;

use berth_plugin::{HostOptions, LoadRequest, LoadedPlugin, PluginHost, PluginKind};

#[path = "../benches/inputs/mod.rs"]
mod inputs;

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
        Err(_) => inputs::config(&stem),
    };
    let p = host.load(LoadRequest::new(&stem, path).config(config))?;
    // `profile_calls chain N`: the bench's chain of 8 (the four reference
    // spec-mutators twice, one after the other), N chains.
    let chain = if name == "chain" {
        let mut loaded = Vec::new();
        for m in inputs::SPEC_MUTATORS {
            loaded.push(host.load(LoadRequest::new(m, dir.join(format!("{m}.wasm"))).config(inputs::config(m)))?);
        }
        let twice: Vec<_> = loaded.iter().chain(loaded.iter()).cloned().collect();
        twice
    } else {
        Vec::new()
    };
    let view = inputs::view();
    let empty = berth_spec::ContainerView { id: "bench".into(), ..Default::default() };
    let which = std::env::var("PROFILE_VIEW").unwrap_or_default();
    let v = if which == "empty" { &empty } else { &view };
    let (facts, resolve) = (inputs::facts(), inputs::resolve_request());
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


/// This thread's time on a CPU (first field of /proc/thread-self/schedstat), in ns.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
