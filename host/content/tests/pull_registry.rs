//! `Puller` against real `docker-registry` instances on 127.0.0.1 (http),
//! each in a temp dir; images pushed with skopeo from an OCI layout built
//! here from busybox-static (an index with the host's platform and arm64).
//! Nothing outside loopback is contacted.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_content::ContentStore;
use berth_content::pull::{
    Credential, Credentials, PullError, PullOptions, PullSource, ProgressMode, Puller, Scheme, TargetPlatform,
};
use serde_json::json;
use sha2::Digest as _;

const REGISTRY: &str = "/usr/bin/docker-registry";
const SKOPEO: &str = "/usr/bin/skopeo";
const BUSYBOX: &str = "/bin/busybox";

fn skip_reason() -> Option<String> {
    for bin in [REGISTRY, SKOPEO, BUSYBOX] {
        if !Path::new(bin).is_file() {
            return Some(format!("{bin} missing (docker-registry, skopeo, busybox-static)"));
        }
    }
    None
}

macro_rules! skip_unless_ready {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("SKIP: {why}");
            return;
        }
    };
}

// ---------------------------------------------------------------- registry

struct Registry {
    port: u16,
    storage: PathBuf,
    child: Child,
    log: PathBuf,
}

impl Registry {
    fn start(dir: &Path, htpasswd: Option<(&str, &str)>) -> Registry {
        Self::start_with(dir, htpasswd, "")
    }

    /// `http_extra`: more YAML under `http:` (TLS).
    fn start_with(dir: &Path, htpasswd: Option<(&str, &str)>, http_extra: &str) -> Registry {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let storage = dir.join("storage");
        let mut auth = String::new();
        if let Some((user, pass)) = htpasswd {
            let hash = bcrypt::hash(pass, 4).unwrap();
            let file = dir.join("htpasswd");
            std::fs::write(&file, format!("{user}:{hash}\n")).unwrap();
            auth = format!("auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n", file.display());
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{http_extra}{auth}",
            storage.display()
        );
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.join("registry.log");
        let child = Command::new(REGISTRY)
            .args(["serve"])
            .arg(&config_path)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("registry.err")).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let r = Registry { port, storage, child, log };
        r.wait_ready();
        r
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn source(&self) -> PullSource {
        PullSource::new(self.host(), Scheme::Http)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
                let mut buf = [0u8; 16];
                if std::io::Read::read(&mut s, &mut buf).unwrap_or(0) > 0 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("registry on port {} not ready; log: {}", self.port, std::fs::read_to_string(&self.log).unwrap_or_default());
    }

    /// The registry's own file for a blob.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.storage.join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }

    fn push(&self, layout: &Path, tag: &str, repo: &str, creds: Option<(&str, &str)>) {
        let policy = layout.with_extension("policy.json");
        std::fs::write(&policy, r#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
        let mut cmd = Command::new(SKOPEO);
        cmd.arg("--policy").arg(&policy).args(["copy", "--all", "--quiet", "--dest-tls-verify=false"]);
        if let Some((u, p)) = creds {
            cmd.arg(format!("--dest-creds={u}:{p}"));
        }
        cmd.arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repo}:{tag}", self.host()))
            .env("HOME", layout.parent().unwrap());
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A port nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    free_port()
}

// ---------------------------------------------------------------- image

struct Image {
    layout: PathBuf,
    index_digest: String,
    /// The host platform's manifest and its layers.
    manifest_digest: String,
    config_digest: String,
    layers: Vec<(String, u64)>,
    arm64_config: String,
    total_size: u64,
}

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

fn host_arch() -> &'static str {
    TargetPlatform::host().architecture.leak()
}

fn build_image(dir: &Path) -> Image {
    let layout = dir.join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> String {
        let d = sha(data);
        std::fs::write(blobs.join(&d[7..]), data).unwrap();
        d
    };
    let mut tar1 = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    let busybox = std::fs::read(BUSYBOX).unwrap();
    h.set_size(busybox.len() as u64);
    h.set_mode(0o755);
    h.set_mtime(1_700_000_000);
    tar1.append_data(&mut h, "bin/busybox", &busybox[..]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    tar1.append_link(&mut h, "bin/sh", "busybox").unwrap();
    let tar1 = tar1.into_inner().unwrap();
    let mut tar2 = tar::Builder::new(Vec::new());
    let passwd = b"root:x:0:0:root:/root:/bin/sh\n";
    let mut h = tar::Header::new_ustar();
    h.set_size(passwd.len() as u64);
    h.set_mode(0o644);
    tar2.append_data(&mut h, "etc/passwd", &passwd[..]).unwrap();
    let tar2 = tar2.into_inner().unwrap();

    let mut layers = Vec::new();
    let mut layer_descs = Vec::new();
    let mut diff_ids = Vec::new();
    for t in [&tar1, &tar2] {
        diff_ids.push(sha(t));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(t).unwrap();
        let gz = gz.finish().unwrap();
        let d = put(&gz);
        layers.push((d.clone(), gz.len() as u64));
        layer_descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": gz.len()}));
    }
    let manifest_for = |arch: &str| -> (String, String, usize) {
        let config = serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let config_digest = put(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": layer_descs,
        }))
        .unwrap();
        (put(&manifest), config_digest, manifest.len() + config.len())
    };
    let other = if host_arch() == "arm64" { "amd64" } else { "arm64" };
    let (host_manifest, host_config, host_meta) = manifest_for(host_arch());
    let (other_manifest, other_config, _) = manifest_for(other);
    let size_of = |d: &str| std::fs::metadata(blobs.join(&d[7..])).unwrap().len();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": other_manifest, "size": size_of(&other_manifest),
             "platform": {"os": "linux", "architecture": other}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": host_manifest, "size": size_of(&host_manifest),
             "platform": {"os": "linux", "architecture": host_arch()}},
        ],
    }))
    .unwrap();
    let index_digest = put(&index);
    let top = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": index_digest, "size": index.len(),
                       "annotations": {"org.opencontainers.image.ref.name": "v1"}}],
    }))
    .unwrap();
    std::fs::write(layout.join("index.json"), top).unwrap();
    std::fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let total_size = index.len() as u64 + host_meta as u64 + layers.iter().map(|(_, s)| s).sum::<u64>();
    Image {
        layout,
        index_digest,
        manifest_digest: host_manifest,
        config_digest: host_config,
        layers,
        arm64_config: other_config,
        total_size,
    }
}

// ---------------------------------------------------------------- helpers

struct Env {
    dir: tempfile::TempDir,
    image: Image,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let image = build_image(dir.path());
    Env { dir, image }
}

fn puller(root: &Path, creds: Credentials) -> (Arc<ContentStore>, Puller) {
    let store = Arc::new(ContentStore::open(root).unwrap());
    let p = Puller::new(store.clone(), creds).unwrap();
    (store, p)
}

fn opts() -> PullOptions {
    PullOptions { progress: ProgressMode::Lines, ..PullOptions::default() }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn assert_complete(store: &ContentStore, image: &Image) {
    for d in [&image.index_digest, &image.manifest_digest, &image.config_digest] {
        assert!(store.contains(d), "{d} not stored");
    }
    for (d, _) in &image.layers {
        assert!(store.contains(d), "layer {d} not stored");
    }
    assert!(!store.contains(&image.arm64_config), "the other platform's config was pulled");
}

// ---------------------------------------------------------------- cases

#[test]
fn mirror_with_the_image_serves_everything() {
    skip_unless_ready!();
    let e = env();
    let upstream = Registry::start(&e.dir.path().join("upstream"), None);
    let mirror = Registry::start(&e.dir.path().join("mirror"), None);
    upstream.push(&e.image.layout, "v1", "test/busybox", None);
    mirror.push(&e.image.layout, "v1", "test/busybox", None);
    let (store, p) = puller(&e.dir.path().join("root"), Credentials::default());
    let reference = format!("{}/test/busybox:v1", upstream.host());
    let pulled = rt().block_on(p.pull(&reference, &[mirror.source(), upstream.source()], &opts())).unwrap();
    assert_eq!(pulled.target.digest().to_string(), e.image.index_digest);
    assert_eq!(pulled.manifest.digest().to_string(), e.image.manifest_digest);
    assert_eq!(pulled.config.digest().to_string(), e.image.config_digest);
    assert_eq!(pulled.layers.len(), 2);
    assert_complete(&store, &e.image);
    let mirror_url = mirror.source().to_string();
    for (digest, from) in &pulled.served_by {
        assert_eq!(from, &mirror_url, "{digest} came from {from}");
    }
    assert_eq!(pulled.downloaded, e.image.total_size);

    // A second pull finds everything stored and downloads only the index.
    let again = rt().block_on(p.pull(&reference, &[mirror.source(), upstream.source()], &opts())).unwrap();
    assert_eq!(again.target.digest(), pulled.target.digest());
    assert!(again.downloaded < e.image.total_size / 10);
}

#[test]
fn a_mirror_that_is_down_or_empty_falls_back_to_the_registry() {
    skip_unless_ready!();
    let e = env();
    let upstream = Registry::start(&e.dir.path().join("upstream"), None);
    let empty_mirror = Registry::start(&e.dir.path().join("empty"), None);
    upstream.push(&e.image.layout, "v1", "test/busybox", None);
    let down = PullSource::new(format!("127.0.0.1:{}", closed_port()), Scheme::Http);
    let (store, p) = puller(&e.dir.path().join("root"), Credentials::default());
    let reference = format!("{}/test/busybox:v1", upstream.host());
    let pulled = rt()
        .block_on(p.pull(&reference, &[down, empty_mirror.source(), upstream.source()], &opts()))
        .unwrap();
    assert_complete(&store, &e.image);
    let upstream_url = upstream.source().to_string();
    assert!(pulled.served_by.values().all(|v| v == &upstream_url), "{:?}", pulled.served_by);
}

#[test]
fn basic_auth_registry_needs_the_hosts_credentials() {
    skip_unless_ready!();
    let e = env();
    let reg = Registry::start(&e.dir.path().join("auth"), Some(("berth", "s3cret")));
    reg.push(&e.image.layout, "v1", "test/busybox", Some(("berth", "s3cret")));
    let reference = format!("{}/test/busybox:v1", reg.host());

    // No credentials: refused, and the pull stops there.
    let (store, p) = puller(&e.dir.path().join("root0"), Credentials::default());
    let err = rt().block_on(p.pull(&reference, &[reg.source()], &opts())).unwrap_err();
    assert!(format!("{err:#}").contains("unauthorized"), "{err:#}");
    assert!(!store.contains(&e.image.index_digest));

    // Wrong password: refused.
    let mut wrong = Credentials::default();
    wrong.insert(&reg.host(), Credential { username: "berth".into(), password: "nope".into() });
    let (_, p) = puller(&e.dir.path().join("root1"), wrong);
    let err = rt().block_on(p.pull(&reference, &[reg.source()], &opts())).unwrap_err();
    assert!(format!("{err:#}").contains("credentials refused"), "{err:#}");

    // From a docker config.json.
    let auth_file = e.dir.path().join("config.json");
    let auth = base64_encode(b"berth:s3cret");
    std::fs::write(&auth_file, format!(r#"{{"auths":{{"http://{}":{{"auth":"{auth}"}}}}}}"#, reg.host())).unwrap();
    let creds = Credentials::from_auth_file(&auth_file).unwrap();
    let (store, p) = puller(&e.dir.path().join("root2"), creds);
    rt().block_on(p.pull(&reference, &[reg.source()], &opts())).unwrap();
    assert_complete(&store, &e.image);
}

#[test]
fn digest_pinned_pull() {
    skip_unless_ready!();
    let e = env();
    let reg = Registry::start(&e.dir.path().join("reg"), None);
    reg.push(&e.image.layout, "v1", "test/busybox", None);
    let (store, p) = puller(&e.dir.path().join("root"), Credentials::default());
    let reference = format!("{}/test/busybox@{}", reg.host(), e.image.index_digest);
    let pulled = rt().block_on(p.pull(&reference, &[reg.source()], &opts())).unwrap();
    assert_eq!(pulled.target.digest().to_string(), e.image.index_digest);
    assert_complete(&store, &e.image);

    // A digest the registry does not have.
    let missing = format!("{}/test/busybox@sha256:{}", reg.host(), "0".repeat(64));
    let err = rt().block_on(p.pull(&missing, &[reg.source()], &opts())).unwrap_err();
    match err.downcast_ref::<PullError>() {
        Some(PullError::AllSourcesFailed { not_found, .. }) => assert!(*not_found, "{err:#}"),
        _ => panic!("unexpected error {err:#}"),
    }
}

#[test]
fn corrupt_blob_is_detected_and_not_stored() {
    skip_unless_ready!();
    let e = env();
    let reg = Registry::start(&e.dir.path().join("reg"), None);
    reg.push(&e.image.layout, "v1", "test/busybox", None);
    // Tamper the big layer in the registry's storage: same length, other bytes.
    let (layer, size) = e.image.layers[0].clone();
    let file = reg.blob_file(&layer);
    let mut data = std::fs::read(&file).unwrap();
    assert_eq!(data.len() as u64, size);
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&file, &data).unwrap();

    let root = e.dir.path().join("root");
    let (store, p) = puller(&root, Credentials::default());
    let reference = format!("{}/test/busybox:v1", reg.host());
    let err = rt().block_on(p.pull(&reference, &[reg.source()], &opts())).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("does not match") && msg.contains(&layer), "{msg}");
    match err.downcast_ref::<PullError>() {
        Some(PullError::AllSourcesFailed { digest_mismatch, .. }) => assert!(*digest_mismatch),
        _ => panic!("unexpected error {msg}"),
    }
    assert!(!store.contains(&layer), "the corrupt layer was stored");
    assert!(!p.partial_path(&layer).unwrap().exists(), "the corrupt partial file was kept");
    // A mirror with the good blob completes the pull.
    let good = Registry::start(&e.dir.path().join("good"), None);
    good.push(&e.image.layout, "v1", "test/busybox", None);
    let pulled = rt().block_on(p.pull(&reference, &[reg.source(), good.source()], &opts())).unwrap();
    assert_eq!(pulled.served_by[&layer], good.source().to_string());
    assert_complete(&store, &e.image);
}

#[test]
fn partial_blob_is_resumed_with_a_range() {
    skip_unless_ready!();
    let e = env();
    let reg = Registry::start(&e.dir.path().join("reg"), None);
    reg.push(&e.image.layout, "v1", "test/busybox", None);
    let (store, p) = puller(&e.dir.path().join("root"), Credentials::default());
    let (layer, size) = e.image.layers[0].clone();
    let blob = std::fs::read(e.image.layout.join("blobs/sha256").join(&layer[7..])).unwrap();
    let half = size / 2;
    std::fs::write(p.partial_path(&layer).unwrap(), &blob[..half as usize]).unwrap();
    let reference = format!("{}/test/busybox:v1", reg.host());
    let pulled = rt().block_on(p.pull(&reference, &[reg.source()], &opts())).unwrap();
    assert_complete(&store, &e.image);
    assert_eq!(pulled.downloaded, e.image.total_size - half, "resumed bytes were downloaded again");
    assert!(!p.partial_path(&layer).unwrap().exists());

    // A partial file with wrong bytes: detected, thrown away, downloaded whole.
    let (store2, p2) = puller(&e.dir.path().join("root2"), Credentials::default());
    std::fs::write(p2.partial_path(&layer).unwrap(), vec![0u8; half as usize]).unwrap();
    let pulled = rt().block_on(p2.pull(&reference, &[reg.source()], &opts())).unwrap();
    assert_complete(&store2, &e.image);
    assert_eq!(pulled.served_by[&layer], reg.source().to_string());
}

#[test]
fn https_is_the_default_and_http_only_where_a_source_says() {
    skip_unless_ready!();
    let e = env();
    let reg = Registry::start(&e.dir.path().join("reg"), None);
    reg.push(&e.image.layout, "v1", "test/busybox", None);
    let (_, p) = puller(&e.dir.path().join("root"), Credentials::default());
    let reference = format!("{}/test/busybox:v1", reg.host());
    // No sources: the registry itself over https, which this plain-http registry refuses.
    let err = rt().block_on(p.pull(&reference, &[], &opts())).unwrap_err();
    assert!(format!("{err:#}").contains(&format!("https://{}/v2", reg.host())), "{err:#}");
}

#[test]
fn https_registry_with_a_self_signed_certificate_needs_skip_verify() {
    skip_unless_ready!();
    if !Path::new("/usr/bin/openssl").is_file() {
        eprintln!("SKIP: /usr/bin/openssl missing (needed to make a test certificate)");
        return;
    }
    let e = env();
    let tls = e.dir.path().join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let out = Command::new("/usr/bin/openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(tls.join("key.pem"))
        .arg("-out")
        .arg(tls.join("cert.pem"))
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    let extra = format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        tls.join("cert.pem").display(),
        tls.join("key.pem").display()
    );
    let reg = Registry::start_with(&e.dir.path().join("reg"), None, &extra);
    reg.push(&e.image.layout, "v1", "test/busybox", None);
    let reference = format!("{}/test/busybox:v1", reg.host());
    let (store, p) = puller(&e.dir.path().join("root"), Credentials::default());
    // https by default, and the certificate is not trusted.
    let err = rt().block_on(p.pull(&reference, &[], &opts())).unwrap_err();
    assert!(matches!(err.downcast_ref::<PullError>(), Some(PullError::AllSourcesFailed { .. })), "{err:#}");
    assert!(!store.contains(&e.image.index_digest));
    // The source says skip-verify: accepted.
    let mut source = PullSource::new(reg.host(), Scheme::Https);
    source.skip_verify = true;
    rt().block_on(p.pull(&reference, &[source], &opts())).unwrap();
    assert_complete(&store, &e.image);
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------- bearer tokens

/// base64url without padding (JWT).
fn base64url(data: &[u8]) -> String {
    base64_encode(data).trim_end_matches('=').replace('+', "-").replace('/', "_")
}

fn openssl(args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new("/usr/bin/openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.unwrap_or_default()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// A token server as distribution's token auth expects one: checks the
/// client's Basic credentials and answers with an RS256 JWT carrying its
/// signing certificate (x5c), which the registry trusts through its
/// rootcertbundle. Records every request's query and whether it was
/// authenticated.
struct TokenServer {
    port: u16,
    seen: Arc<std::sync::Mutex<Vec<(String, bool)>>>,
}

impl TokenServer {
    const ISSUER: &str = "berth-test-issuer";
    const SERVICE: &str = "berth-test-registry";

    fn start(dir: &Path, user: &str, pass: &str, repository: &str) -> TokenServer {
        let key = dir.join("token-key.pem");
        let cert = dir.join("token-cert.pem");
        openssl(
            &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=berth-test-token", "-keyout",
              key.to_str().unwrap(), "-out", cert.to_str().unwrap()],
            None,
        );
        let der = openssl(&["x509", "-in", cert.to_str().unwrap(), "-outform", "DER"], None);
        let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [base64_encode(&der)]});
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let claims = json!({
            "iss": Self::ISSUER, "sub": user, "aud": Self::SERVICE,
            "exp": now + 3600, "nbf": now - 60, "iat": now - 60, "jti": format!("berth-{now}"),
            "access": [{"type": "repository", "name": repository, "actions": ["pull", "push"]}],
        });
        let signing_input = format!("{}.{}", base64url(header.to_string().as_bytes()), base64url(claims.to_string().as_bytes()));
        let signature = openssl(&["dgst", "-sha256", "-sign", key.to_str().unwrap()], Some(signing_input.as_bytes()));
        let token = format!("{signing_input}.{}", base64url(&signature));
        let expected = format!("Basic {}", base64_encode(format!("{user}:{pass}").as_bytes()));

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if std::io::BufRead::read_line(&mut reader, &mut request_line).is_err() {
                    continue;
                }
                let mut authorized = false;
                loop {
                    let mut line = String::new();
                    if std::io::BufRead::read_line(&mut reader, &mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("authorization")
                    {
                        authorized = value.trim() == expected;
                    }
                }
                let target = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
                log.lock().unwrap().push((target, authorized));
                let (status, body) = if authorized {
                    ("200 OK", json!({"token": token, "access_token": token, "expires_in": 3600}).to_string())
                } else {
                    ("401 Unauthorized", r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.to_string())
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        std::fs::rename(&cert, dir.join("token-root.pem")).unwrap();
        TokenServer { port, seen }
    }

    /// The registry's `auth:` section trusting this server.
    fn registry_auth(&self, dir: &Path) -> String {
        format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            self.port,
            Self::SERVICE,
            Self::ISSUER,
            dir.join("token-root.pem").display()
        )
    }
}

#[test]
fn bearer_token_registry_gets_a_token_with_the_hosts_credentials() {
    skip_unless_ready!();
    if !Path::new("/usr/bin/openssl").is_file() {
        eprintln!("SKIP: /usr/bin/openssl missing (needed to sign test tokens)");
        return;
    }
    let e = env();
    let dir = e.dir.path().join("token");
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = TokenServer::start(&dir, "berth", "t0ken-pass", "test/busybox");
    // `auth:` at the top level, after the `http:` block start_with writes.
    let reg = Registry::start_with(&e.dir.path().join("reg"), None, &tokens.registry_auth(&dir));
    reg.push(&e.image.layout, "v1", "test/busybox", Some(("berth", "t0ken-pass")));
    let reference = format!("{}/test/busybox:v1", reg.host());
    tokens.seen.lock().unwrap().clear();

    // Without credentials the token server refuses; nothing is stored.
    let (store, p) = puller(&e.dir.path().join("root0"), Credentials::default());
    let err = rt().block_on(p.pull(&reference, &[reg.source()], &opts())).unwrap_err();
    assert!(format!("{err:#}").contains("token server"), "{err:#}");
    assert!(!store.contains(&e.image.index_digest));

    // With the host's credentials for the registry: a token for the
    // repository's pull scope, then the whole image.
    let mut creds = Credentials::default();
    creds.insert(&reg.host(), Credential { username: "berth".into(), password: "t0ken-pass".into() });
    let (store, p) = puller(&e.dir.path().join("root1"), creds);
    rt().block_on(p.pull(&reference, &[reg.source()], &opts())).unwrap();
    assert_complete(&store, &e.image);
    let seen = tokens.seen.lock().unwrap().clone();
    let granted: Vec<_> = seen.iter().filter(|(_, ok)| *ok).collect();
    assert!(!granted.is_empty(), "no authenticated token request: {seen:?}");
    for (target, _) in &granted {
        assert!(target.starts_with("/token?"), "{target}");
        assert!(target.contains("service=berth-test-registry"), "{target}");
        assert!(target.contains("scope=repository%3Atest%2Fbusybox%3Apull"), "{target}");
    }
}
