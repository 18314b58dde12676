//! Shared by the `berth` binary's integration tests: a busybox OCI layout,
//! a docker-registry on 127.0.0.1, and the `berth` command line.
#![allow(dead_code)] // each test binary uses a part

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::Digest as _;

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");
pub const BUSYBOX: &str = "/bin/busybox";

/// A reference plugin built by `cargo xtask build-plugins`.
pub fn plugin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/plugin").join(format!("{name}.wasm"))
}

/// The first of `needs` that is missing, as a skip reason.
pub fn missing(needs: &[&Path]) -> Option<String> {
    needs.iter().find(|p| !p.exists()).map(|p| format!("{} missing", p.display()))
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Why a test that runs containers cannot run here (not root, or missing
/// busybox-static and `needs`); None when it can. Print it and return.
pub fn cannot_run_containers(needs: &[&Path]) -> Option<String> {
    if !is_root() {
        return Some("needs root (berth run)".into());
    }
    missing(&[Path::new(BUSYBOX)]).or_else(|| missing(needs))
}

pub fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

fn header() -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

/// A one-layer image as an OCI layout at `dir/layout`, tagged v1: the
/// usual top-level dirs, /bin/busybox and a symlink per applet, PATH=/bin.
/// Returns the layout and the layer's digest.
pub fn busybox_layout(dir: &Path, applets: &[&str]) -> (PathBuf, String) {
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
    let busybox = std::fs::read(BUSYBOX).unwrap();
    let mut h = header();
    h.set_size(busybox.len() as u64);
    h.set_mode(0o755);
    tar.append_data(&mut h, "bin/busybox", &busybox[..]).unwrap();
    for applet in applets {
        let mut h = header();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        tar.append_link(&mut h, format!("bin/{applet}"), "busybox").unwrap();
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
    (layout, layer)
}

/// `docker-registry serve` on a free 127.0.0.1 port, stopped on drop.
pub struct Registry {
    pub port: u16,
    child: Child,
}

impl Registry {
    pub fn start(dir: &Path) -> Registry {
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
        let mut registry = Registry { port, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!("docker-registry exited ({status}): {}", std::fs::read_to_string(dir.join("registry.err")).unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "registry on {port} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes `layout`'s v1 as `<this registry>/<reference>` with skopeo.
    pub fn push(&self, layout: &Path, reference: &str) {
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

/// The `berth` binary with a root and a config file.
pub struct Berth {
    pub root: PathBuf,
    pub config: PathBuf,
}

impl Berth {
    pub fn run(&self, args: &[&str]) -> Output {
        let out =
            Command::new(BERTH).arg("--root").arg(&self.root).arg("--config").arg(&self.config).args(args).output().unwrap();
        eprintln!(
            "berth {args:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// This root's run-time state directory, as `berth worker` reports it.
    pub fn state_dir(&self) -> PathBuf {
        let worker: serde_json::Value = serde_json::from_str(&self.ok(&["worker", "--json"])).unwrap();
        PathBuf::from(worker["state"].as_str().expect("berth worker --json has no state"))
    }

    /// Runs and expects success; stdout. On failure, prints detached logs.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        if !out.status.success() {
            for entry in std::fs::read_dir(self.root.join("logs")).into_iter().flatten().flatten() {
                eprintln!("{}:\n{}", entry.path().display(), std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
            panic!("berth {args:?} failed");
        }
        String::from_utf8(out.stdout).unwrap()
    }

    /// Polls `berth ps` until `until` holds for its output.
    pub fn wait_ps(&self, what: &str, until: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ps = self.ok(&["ps"]);
            if until(&ps) {
                return ps;
            }
            assert!(Instant::now() < deadline, "{what}: gave up waiting; ps:\n{ps}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Kills and removes a container if the test fails midway.
pub struct ContainerGuard<'a> {
    pub berth: &'a Berth,
    pub id: String,
}

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.berth.run(&["kill", "--signal", "KILL", &self.id]);
            std::thread::sleep(Duration::from_millis(500));
            let _ = self.berth.run(&["rm", "--force", &self.id]);
        }
    }
}
