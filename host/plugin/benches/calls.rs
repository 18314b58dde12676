//! Per-call latency (a fresh instance per call) of each reference plugin
//! and of the well-behaved test fixture, a chain of 8 spec-mutators, and
//! load time from the on-disk compile cache.
//!
//! `cargo bench -p berth-plugin --bench calls` (reference plugins: build
//! them first with `cargo xtask build-plugins`; missing ones are skipped).

#[path = "../tests/common/mod.rs"]
mod common;
mod inputs;

use std::path::PathBuf;

use berth_plugin::{HostFacts, HostOptions, LoadRequest, LoadedPlugin, PluginHost, PluginKind, ResolveRequest};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use serde_json::json;

fn plugin_dir() -> PathBuf {
    std::env::var_os("BERTH_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::target_dir().join("wasm32-wasip2/plugin"))
}

/// (name, path, config) of every plugin present.
fn plugins() -> Vec<(String, PathBuf, serde_json::Value)> {
    let mut out = Vec::new();
    let dir = plugin_dir();
    for (name, config) in inputs::reference_plugins() {
        let path = dir.join(format!("{name}.wasm"));
        if path.is_file() {
            out.push((name.to_string(), path, config));
        } else {
            eprintln!("skipping {name}: {} not built (cargo xtask build-plugins)", path.display());
        }
    }
    if let Some(fixtures) = common::fixtures() {
        out.push(("fixture-good".into(), common::fixture(fixtures, "good"), json!({})));
    }
    out
}

fn call(p: &LoadedPlugin, view: &berth_spec::ContainerView, facts: &HostFacts, request: &ResolveRequest) {
    match p.kind() {
        PluginKind::SpecMutator => {
            std::hint::black_box(p.mutate(view).expect("mutate"));
        }
        PluginKind::SnapshotterSelector => {
            std::hint::black_box(p.select(facts).expect("select"));
        }
        PluginKind::SourceResolver => {
            std::hint::black_box(p.resolve(request).expect("resolve"));
        }
    }
}

fn benches(c: &mut Criterion) {
    let cache = tempfile::tempdir().expect("tempdir");
    let options = HostOptions { cache_dir: Some(cache.path().join("cache")), ..HostOptions::default() };
    let host = PluginHost::new(options.clone()).expect("host");
    let (view, facts, request) = (inputs::view(), inputs::facts(), inputs::resolve_request());
    let list = plugins();
    let loaded: Vec<LoadedPlugin> = list
        .iter()
        .map(|(name, path, config)| host.load(LoadRequest::new(name, path).config(config.clone())).expect("load"))
        .collect();

    let mut group = c.benchmark_group("call");
    if let Some(p) = loaded.first() {
        // Instantiation plus the smallest call there is.
        group.bench_function(format!("{}-info", p.name()), |b| b.iter(|| std::hint::black_box(p.call_info().expect("info"))));
        if p.kind() == PluginKind::SpecMutator {
            // The same call with an almost empty view: the cost of moving the view.
            let empty = berth_spec::ContainerView { id: "bench".into(), ..Default::default() };
            group.bench_function(format!("{}-empty-view", p.name()), |b| {
                b.iter(|| std::hint::black_box(p.mutate(&empty).expect("mutate")))
            });
        }
    }
    for p in &loaded {
        group.bench_function(p.name(), |b| b.iter(|| call(p, &view, &facts, &request)));
    }
    group.finish();

    // The chain an operator would load: the reference spec-mutators, in
    // turn, eight calls. The second chain also cycles through the echo test
    // fixture (it renders the whole view into its output, ~2x a reference
    // call): the composition measured before, kept for comparison.
    let mutators: Vec<&LoadedPlugin> = loaded.iter().filter(|p| p.kind() == PluginKind::SpecMutator).collect();
    let reference: Vec<&LoadedPlugin> = mutators.iter().copied().filter(|p| !p.name().starts_with("fixture-")).collect();
    for (name, members) in [("chain-of-8", &reference), ("chain-of-8-with-echo-fixture", &mutators)] {
        if members.is_empty() || (name != "chain-of-8" && members.len() == reference.len()) {
            continue;
        }
        let chain: Vec<&LoadedPlugin> = members.iter().copied().cycle().take(8).collect();
        c.bench_function(name, |b| {
            b.iter(|| {
                for p in &chain {
                    std::hint::black_box(p.mutate(&view).expect("mutate"));
                }
            })
        });
    }

    // Load from the disk cache: a new host each time, so the in-memory map is empty.
    let mut group = c.benchmark_group("load-cached");
    for (name, path, config) in list.iter().take(3) {
        group.bench_function(name.as_str(), |b| {
            b.iter_batched(
                || PluginHost::new(options.clone()).expect("host"),
                |host| {
                    let p = host.load(LoadRequest::new(name, path).config(config.clone())).expect("load");
                    assert_eq!(p.cache_outcome(), berth_plugin::CacheOutcome::Disk);
                    (host, p)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(calls, benches);
criterion_main!(calls);
