//! `[worker] proxy-snapshotter-socket` (issue 6): the worker's snapshotter
//! is containerd's snapshots gRPC service on that socket. The proxy here is
//! `berth snapshotter serve` on a private socket with its own root; a
//! second berth root whose berth.toml names the socket imports, runs and
//! removes through it, and keeps no snapshots of its own; `berth gc`
//! collects the proxy's snapshots berth made, and only those.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{BERTH, Berth, busybox_layout};

/// `berth snapshotter serve` as a child; stopped (SIGTERM, then SIGKILL
/// after 10s) and waited for on drop, also when a test panics.
struct Server {
    child: Option<Child>,
    log: PathBuf,
}

impl Server {
    /// Serves the snapshotter `served` stored under `root`.
    fn start(served: &str, root: &Path, socket: &Path, log: &Path) -> Server {
        let child = Command::new(BERTH)
            .arg("--root")
            .arg(root)
            .args(["snapshotter", "serve", "--snapshotter", served, "--address"])
            .arg(socket)
            .env_remove("BERTH_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let mut server = Server { child: Some(child), log: log.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("berth snapshotter serve exited ({status}):\n{}", server.log());
            }
            assert!(Instant::now() < deadline, "no socket at {} within 20s:\n{}", socket.display(), server.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM (the server closes its snapshotter), then waits.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let pid = rustix::process::Pid::from_child(&child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                eprintln!("berth snapshotter serve ignored SIGTERM for 10s; killing it");
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if std::thread::panicking() {
            eprintln!("berth snapshotter serve log:\n{}", self.log());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_worker_snapshotter_is_a_native_proxy() {
    through_proxy("native");
}

/// Overlay mounts (lowerdir/upperdir/workdir under the server's root) come
/// back over gRPC and mount in the client.
#[test]
fn the_worker_snapshotter_is_an_overlayfs_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let probe = Command::new(BERTH).arg("--root").arg(dir.path()).args(["snapshot", "probe"]).output().unwrap();
    let facts: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap_or_default();
    if facts["overlay_supported"] != serde_json::json!(true) {
        eprintln!("SKIP: overlay is not supported here: {}", facts["overlay_error"]);
        return;
    }
    through_proxy("overlayfs");
}

/// `served` is the snapshotter the proxy serves, and the name the client's
/// berth.toml gives it.
fn through_proxy(served: &str) {
    if let Some(why) = common::cannot_run_containers(&[]) {
        eprintln!("SKIP: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (layout, layer) = busybox_layout(dir.path(), &["sh", "cat"]);
    let server_root = dir.path().join("server-root");
    let socket = dir.path().join("proxy/snapshotter.sock");
    let mut server = Server::start(served, &server_root, &socket, &dir.path().join("serve.log"));

    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!("[worker]\nproxy-snapshotter-socket = \"{}\"\nsnapshotter = \"{served}\"\n", socket.display()),
    )
    .unwrap();
    let client_root = dir.path().join("client-root");
    let berth = Berth { root: client_root.clone(), config };
    let worker: serde_json::Value = serde_json::from_str(&berth.ok(&["worker", "--json"])).unwrap();
    assert_eq!(worker["proxySnapshotter"]["socket"].as_str(), socket.to_str(), "{worker}");
    assert_eq!(worker["proxySnapshotter"]["namespace"], "default", "{worker}");

    // Import unpacks through the proxy: the layer is a committed snapshot
    // on the server's side, named by its chain ID (= the diff ID here).
    let imported = berth.ok(&["image", "import", "--name", "proxybox", layout.to_str().unwrap()]);
    assert!(imported.contains(&format!("unpacked ({served})")), "{imported}");
    let listed = berth.ok(&["snapshot", "ls"]);
    let committed: Vec<&str> = listed.lines().filter(|l| l.ends_with("Committed")).collect();
    assert_eq!(committed.len(), 1, "one layer, one committed snapshot:\n{listed}");

    // Container names unique to this test: the tests of this binary run
    // at once, and two containers of one name would meet.
    let (rm_name, kept) = (format!("proxied-rm-{served}"), format!("proxied-{served}"));
    // A container on top; --rm removes its active snapshot through the proxy.
    let out = berth.ok(&["run", "--rm", "--name", &rm_name, "proxybox", "sh", "-c", "echo hi > /tmp/x; cat /tmp/x"]);
    assert_eq!(out.trim(), "hi");
    let listed = berth.ok(&["snapshot", "ls"]);
    assert!(!listed.contains(&rm_name), "--rm left the container's snapshot:\n{listed}");

    // Without --rm: the record remembers the socket, and `berth rm` reaches
    // the same snapshotter (here with no proxy in the config any more).
    let out = berth.ok(&["run", "--name", &kept, "proxybox", "sh", "-c", "cat /tmp/x 2>/dev/null || echo fresh"]);
    assert_eq!(out.trim(), "fresh", "a new container sees the image, not another container's writes");
    let record = std::fs::read_to_string(client_root.join(format!("containers/{kept}.json"))).unwrap();
    let record: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(record["proxy_socket"].as_str(), Some(socket.to_str().unwrap()), "{record}");
    assert_eq!(record["snapshotter"].as_str(), Some(served), "{record}");
    let listed = berth.ok(&["snapshot", "ls"]);
    assert!(listed.lines().any(|l| l.starts_with(&format!("{kept} ")) && l.ends_with("Active")), "{listed}");
    // Its mounts as the server made them: under the server's root.
    let mounts = berth.ok(&["snapshot", "mounts", "/target", &kept]);
    let kind = if served == "overlayfs" { "overlay" } else { "bind" };
    assert!(mounts.contains(kind) && mounts.contains(server_root.to_str().unwrap()), "{mounts}");
    let plain = Berth { root: client_root.clone(), config: dir.path().join("empty.toml") };
    std::fs::write(&plain.config, "").unwrap();
    plain.ok(&["rm", &kept]);
    let listed = berth.ok(&["snapshot", "ls"]);
    assert!(!listed.contains(&kept), "berth rm left the container's snapshot on the proxy:\n{listed}");

    // The client root holds no snapshots: they all live behind the socket.
    assert!(!client_root.join("snapshots").join(served).exists(), "a local {served} snapshotter was created");

    // The server's own root, read after the server stopped: the layer
    // committed (with the unpacker's labels), no container snapshot left.
    server.stop();
    let server_berth = Berth { root: server_root.clone(), config: plain.config.clone() };
    let listed = server_berth.ok(&["snapshot", "--snapshotter", served, "ls"]);
    let names: Vec<&str> = listed.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    // One uncompressed layer: its chain ID is its diff ID is its digest.
    let diff_id = layer;
    assert_eq!(names, [diff_id.as_str()], "{listed}");
    let info = server_berth.ok(&["snapshot", "--snapshotter", served, "info", &diff_id]);
    assert!(info.contains("Committed"), "{info}");
    assert!(server_root.join("snapshots").join(served).is_dir());

    // berth gc through the proxy (the server again, same root and socket):
    // the image's layer is kept while the image exists and goes after
    // `berth image rm`; a snapshot berth did not make is never touched.
    let mut server = Server::start(served, &server_root, &socket, &dir.path().join("serve2.log"));
    berth.ok(&["snapshot", "prepare", "foreign"]);
    berth.ok(&["gc"]);
    let listed = berth.ok(&["snapshot", "ls"]);
    assert!(listed.contains(&diff_id) && listed.contains("foreign"), "gc removed a referenced layer:\n{listed}");
    berth.ok(&["image", "rm", "proxybox"]);
    let report = berth.ok(&["gc"]);
    assert!(report.lines().any(|l| l.contains("proxy:") && l.contains(&diff_id)), "{report}");
    let listed = berth.ok(&["snapshot", "ls"]);
    let names: Vec<&str> = listed.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(names, ["foreign"], "{listed}");
    server.stop();
}

#[test]
fn a_missing_proxy_socket_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, _) = busybox_layout(dir.path(), &["sh"]);
    let socket = dir.path().join("no-such/snapshotter.sock");
    let config = dir.path().join("berth.toml");
    std::fs::write(&config, format!("[worker]\nproxy-snapshotter-socket = \"{}\"\nsnapshotter = \"stargz\"\n", socket.display()))
        .unwrap();
    let berth = Berth { root: dir.path().join("root"), config };

    let check = |out: std::process::Output, what: &str| {
        assert!(!out.status.success(), "{what} succeeded without its proxy");
        let err = stderr(&out);
        assert!(err.contains(socket.to_str().unwrap()), "{what}: the socket is not named:\n{err}");
        assert!(err.contains("worker.proxy-snapshotter-socket"), "{what}: the key is not named:\n{err}");
    };
    check(berth.run(&["image", "import", "--name", "box", layout.to_str().unwrap()]), "import");
    check(berth.run(&["snapshot", "ls"]), "snapshot ls");
    // Store only, then run: the run fails the same way (before any container exists).
    berth.ok(&["image", "import", "--no-unpack", "--name", "box", layout.to_str().unwrap()]);
    if common::is_root() {
        check(berth.run(&["run", "--rm", "box", "sh", "-c", "true"]), "run");
        assert!(!dir.path().join("root/containers").read_dir().map(|mut d| d.next().is_some()).unwrap_or(false));
    }
    // The flag overrides the file the same way.
    if common::is_root() {
        let other = dir.path().join("other.sock");
        let out = berth.run(&["run", "--rm", "--worker-proxy-snapshotter-socket", other.to_str().unwrap(), "box", "true"]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(other.to_str().unwrap()), "{}", stderr(&out));
    }
}

/// A proxy that accepts connections and never answers (a real listening
/// unix socket, nothing behind it): each berth command fails once
/// `proxy-snapshotter-timeout` passes, naming the socket and the call, and
/// leaves no container behind.
#[test]
fn a_proxy_that_never_answers_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, _) = busybox_layout(dir.path(), &["sh"]);
    let socket = dir.path().join("silent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    // Holds every connection open, reading nothing, until the test ends.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "[worker]\nproxy-snapshotter-socket = \"{}\"\nsnapshotter = \"overlayfs\"\nproxy-snapshotter-timeout = \"1s\"\n",
            socket.display()
        ),
    )
    .unwrap();
    let berth = Berth { root: dir.path().join("root"), config };

    let check = |out: std::process::Output, what: &str, call: &str| {
        assert!(!out.status.success(), "{what} succeeded without an answer from its proxy");
        let err = stderr(&out);
        assert!(err.contains(socket.to_str().unwrap()), "{what}: the socket is not named:\n{err}");
        assert!(err.contains(call) && err.contains("no answer within 1s"), "{what}: the call {call} is not named:\n{err}");
    };
    check(berth.run(&["image", "import", "--name", "box", layout.to_str().unwrap()]), "import", "stat ");
    check(berth.run(&["snapshot", "ls"]), "snapshot ls", "list");
    if common::is_root() {
        berth.ok(&["image", "import", "--no-unpack", "--name", "box", layout.to_str().unwrap()]);
        check(berth.run(&["run", "--rm", "--name", "silent-proxy", "box", "sh", "-c", "true"]), "run", "stat ");
        let records = dir.path().join("root/containers");
        assert!(!records.read_dir().map(|mut d| d.next().is_some()).unwrap_or(false), "a container record was left");
    }
}
