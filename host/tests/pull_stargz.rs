//! Source resolution through the wasm source-resolver plugins: a request
//! whose labels carry `containerd.io/snapshot/remote/stargz.*` resolves,
//! through `stargz-labels` then `hosts-resolver`, to the same hosts as the
//! image itself; those hosts (a mirror, then the registry, both
//! docker-registry on 127.0.0.1) then serve the pull.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_content::ContentStore;
use berth_content::pull::{Credentials, ProgressMode, PullOptions, Puller, Reference, TargetPlatform};
use berth_host::cli::pull::sources_from_plugins;
use berth_plugin::{HostOptions, LoadRequest, LoadedPlugin, PluginHost, PluginKind};
use serde_json::json;
use sha2::Digest as _;

fn plugin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/plugin").join(format!("{name}.wasm"))
}

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

struct Registry {
    port: u16,
    child: Child,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        std::fs::create_dir_all(dir).unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("storage").display()
            ),
        )
        .unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("registry.err")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "registry on {port} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry { port, child }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn push(&self, layout: &Path, reference: &str) {
        let policy = layout.with_extension("policy.json");
        std::fs::write(&policy, r#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
        let out = Command::new("/usr/bin/skopeo")
            .arg("--policy")
            .arg(&policy)
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(format!("docker://{}/{reference}", self.host()))
            .env("HOME", layout.parent().unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// A one-layer image (busybox) as an OCI layout tagged v1; returns (layout, layer digest).
fn layout(dir: &Path) -> (PathBuf, String) {
    let layout = dir.join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = sha(data);
        std::fs::write(blobs.join(&d[7..]), data).unwrap();
        d
    };
    let mut tar = tar::Builder::new(Vec::new());
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_size(busybox.len() as u64);
    h.set_mode(0o755);
    tar.append_data(&mut h, "bin/busybox", &busybox[..]).unwrap();
    let tar = tar.into_inner().unwrap();
    let layer = put(&tar);
    let config = serde_json::to_vec(&json!({
        "architecture": TargetPlatform::host().architecture, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": tar.len()}],
    }))
    .unwrap();
    let m = put(&manifest);
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}))
        .unwrap(),
    )
    .unwrap();
    std::fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    (layout, layer)
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
    let (layout, _uncompressed_layer) = layout(dir.path());
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
