//! `berth gc` while a container runs: pull (docker-registry on 127.0.0.1,
//! through the hosts-resolver plugin), `berth run -d`, gc, and the container
//! is still running with its snapshot; after it stops its snapshot is still
//! kept (its record pins it) until `berth rm`; the image's chain stays.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::Digest as _;

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

fn plugin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/plugin/hosts-resolver.wasm")
}

fn skip_reason() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("needs root (berth run)".into());
    }
    if !plugin().is_file() {
        return Some(format!("{} missing: run `cargo xtask build-plugins`", plugin().display()));
    }
    ["/usr/bin/docker-registry", "/usr/bin/skopeo", "/bin/busybox"]
        .iter()
        .find(|b| !Path::new(b).is_file())
        .map(|b| format!("{b} missing"))
}

struct Registry(Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

fn header() -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

/// busybox with sh and sleep links, tagged v1.
fn layout(dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = sha(data);
        std::fs::write(blobs.join(&d[7..]), data).unwrap();
        d
    };
    let mut tar = tar::Builder::new(Vec::new());
    for d in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
        let mut h = header();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        tar.append_data(&mut h, format!("{d}/"), std::io::empty()).unwrap();
    }
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let mut h = header();
    h.set_size(busybox.len() as u64);
    h.set_mode(0o755);
    tar.append_data(&mut h, "bin/busybox", &busybox[..]).unwrap();
    for l in ["sh", "sleep"] {
        let mut h = header();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        tar.append_link(&mut h, format!("bin/{l}"), "busybox").unwrap();
    }
    let tar = tar.into_inner().unwrap();
    let layer = put(&tar);
    let config = serde_json::to_vec(&json!({
        "architecture": berth_content::pull::TargetPlatform::host().architecture, "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
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
    layout
}

fn berth(root: &Path, config: &Path, args: &[&str]) -> Output {
    let out = Command::new(BERTH).arg("--root").arg(root).arg("--config").arg(config).args(args).output().unwrap();
    eprintln!(
        "berth {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ok(root: &Path, config: &Path, args: &[&str]) -> String {
    let out = berth(root, config, args);
    if !out.status.success() {
        for entry in std::fs::read_dir(root.join("logs")).into_iter().flatten().flatten() {
            eprintln!("{}:\n{}", entry.path().display(), std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
        panic!("berth {args:?} failed");
    }
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn gc_keeps_a_running_containers_snapshot() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIP: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let reg_config = dir.path().join("registry.yml");
    std::fs::write(
        &reg_config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("storage").display()
        ),
    )
    .unwrap();
    let _registry = Registry(
        Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&reg_config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let layout = layout(dir.path());
    let policy = dir.path().join("policy.json");
    std::fs::write(&policy, r#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
    let image = format!("127.0.0.1:{port}/test/sleeper:v1");
    let out = Command::new("/usr/bin/skopeo")
        .arg("--policy")
        .arg(&policy)
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{image}"))
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));

    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "[[plugin]]\nname = \"hosts-resolver\"\npath = \"{}\"\nkind = \"source-resolver\"\n[plugin.config.\"127.0.0.1:{port}\"]\nserver = \"http://127.0.0.1:{port}\"\n",
            plugin().display()
        ),
    )
    .unwrap();
    let root = dir.path().join("root");
    ok(&root, &config, &["image", "pull", "-q", &image]);
    let id = ok(&root, &config, &["run", "-d", "--snapshotter", "native", &image, "sleep", "300"]).trim().to_string();
    let cleanup = scopeguard(&root, &config, &id);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok(&root, &config, &["ps"]).contains("running") {
        assert!(Instant::now() < deadline, "the container did not start");
        std::thread::sleep(Duration::from_millis(100));
    }

    // GC while it runs: nothing of it goes, it keeps running.
    ok(&root, &config, &["gc"]);
    assert!(ok(&root, &config, &["ps"]).contains("running"), "gc stopped the container");

    // Stopped but not removed: its snapshot is still pinned by its record.
    ok(&root, &config, &["kill", "--signal", "KILL", &id]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while ok(&root, &config, &["ps"]).contains("running") {
        assert!(Instant::now() < deadline, "the container did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    ok(&root, &config, &["gc"]);
    let snaps = ok(&root, &config, &["snapshot", "--snapshotter", "native", "ls"]);
    assert!(snaps.contains(&id), "gc removed a stopped container's snapshot:\n{snaps}");
    assert!(snaps.contains("Committed"), "gc removed the image's chain:\n{snaps}");

    // Removed: now only the image's chain remains, and gc finds nothing more.
    ok(&root, &config, &["rm", &id]);
    let report = ok(&root, &config, &["gc"]);
    assert!(report.contains("removed 0 items"), "{report}");
    let snaps = ok(&root, &config, &["snapshot", "--snapshotter", "native", "ls"]);
    assert!(!snaps.contains(&id) && snaps.contains("Committed"), "{snaps}");
    drop(cleanup);
}

/// Kills and removes the container if the test fails midway.
struct Guard(PathBuf, PathBuf, String);

fn scopeguard(root: &Path, config: &Path, id: &str) -> Guard {
    Guard(root.to_path_buf(), config.to_path_buf(), id.to_string())
}

impl Drop for Guard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = Command::new(BERTH).arg("--root").arg(&self.0).args(["kill", "--signal", "KILL", &self.2]).output();
            std::thread::sleep(Duration::from_millis(500));
            let _ = Command::new(BERTH).arg("--root").arg(&self.0).args(["rm", &self.2]).output();
        }
    }
}
