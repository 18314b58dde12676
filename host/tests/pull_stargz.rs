//! Source resolution through the wasm source-resolver plugins: a request
//! whose labels carry `containerd.io/snapshot/remote/stargz.*` resolves,
//! through `stargz-labels` then `hosts-resolver`, to the same hosts as the
//! image itself; those hosts (a mirror, then the registry, both
//! docker-registry on 127.0.0.1) then serve the pull.

use std::path::Path;
use std::sync::Arc;

mod common;

use berth_content::ContentStore;
use berth_content::pull::{Credentials, ProgressMode, PullOptions, Puller, Reference};
use berth_host::cli::pull::sources_from_plugins;
use berth_plugin::{HostOptions, LoadRequest, LoadedPlugin, PluginHost, PluginKind};
use common::{Registry, busybox_layout, plugin};
use serde_json::json;

fn skip_reason() -> Option<String> {
    for p in [plugin("stargz-labels"), plugin("hosts-resolver")] {
        if !p.is_file() {
            return Some(format!("{} missing: run `cargo xtask build-plugins`", p.display()));
        }
    }
    for bin in ["/usr/bin/docker-registry", "/usr/bin/skopeo", "/bin/busybox"] {
        if !Path::new(bin).is_file() {
            return Some(format!("{bin} missing"));
        }
    }
    None
}

fn load(host: &PluginHost, name: &str, config: serde_json::Value) -> LoadedPlugin {
    host.load(LoadRequest::new(name, plugin(name)).kind(PluginKind::SourceResolver).config(config)).unwrap()
}

#[test]
fn stargz_labels_resolve_to_the_same_hosts_as_the_image() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIP: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let upstream = Registry::start(&dir.path().join("upstream"));
    let mirror = Registry::start(&dir.path().join("mirror"));
    let (layout, _layer) = busybox_layout(dir.path(), &[]);
    upstream.push(&layout, "test/busybox:v1");
    mirror.push(&layout, "test/busybox:v1");

    let host = PluginHost::new(HostOptions::default()).unwrap();
    let stargz = load(&host, "stargz-labels", json!({}));
    let hosts = load(
        &host,
        "hosts-resolver",
        json!({ upstream.host(): {
            "server": format!("http://{}", upstream.host()),
            "host": [{ "url": format!("http://{}", mirror.host()), "capabilities": ["pull", "resolve"] }],
        }}),
    );
    let resolvers = [&stargz, &hosts];
    let image = format!("{}/test/busybox:v1", upstream.host());
    let reference: Reference = image.parse().unwrap();

    let image_sources = sources_from_plugins(&resolvers, &reference, &[]).unwrap();
    let hosts_of: Vec<String> = image_sources.iter().map(|s| s.to_string()).collect();
    assert_eq!(hosts_of, vec![format!("http://{}/v2", mirror.host()), format!("http://{}/v2", upstream.host())]);

    // The image's layer as the registry has it (skopeo compresses on push).
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let options = PullOptions { progress: ProgressMode::Quiet, ..PullOptions::default() };
    let first = Arc::new(ContentStore::open(&dir.path().join("root1")).unwrap());
    let pulled = rt
        .block_on(Puller::new(first, Credentials::default()).unwrap().pull(&image, &image_sources, &options))
        .unwrap();
    let remote_layer = pulled.layers[0].digest().to_string();

    let labels = vec![
        ("containerd.io/snapshot/remote/stargz.reference.0".to_string(), image.clone()),
        ("containerd.io/snapshot/remote/stargz.digest.0".to_string(), remote_layer.clone()),
        ("containerd.io/snapshot/remote/stargz.layers.0".to_string(), remote_layer.clone()),
    ];
    // The request is about some other name: the labels alone say where the layer lives.
    let other: Reference = "example.invalid/whatever/else:latest".parse().unwrap();
    let layer_sources = sources_from_plugins(&resolvers, &other, &labels).unwrap();
    assert_eq!(layer_sources, image_sources, "the stargz labels did not resolve to the image's hosts");

    // And those hosts serve the layer: the mirror first.
    let store = Arc::new(ContentStore::open(&dir.path().join("root2")).unwrap());
    let puller = Puller::new(store.clone(), Credentials::default()).unwrap();
    let pulled = rt.block_on(puller.pull(&image, &layer_sources, &options)).unwrap();
    assert_eq!(pulled.served_by[&remote_layer], format!("http://{}/v2", mirror.host()));
    assert!(store.contains(&remote_layer));
}
