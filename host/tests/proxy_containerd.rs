//! `[worker] proxy-snapshotter-socket` pointed at a real containerd's main
//! socket: containerd's own snapshots service is the proxy. Its calls need
//! the `containerd-namespace` header (`proxy-snapshotter-namespace`), and
//! what berth makes must outlive containerd's garbage collector (the
//! `containerd.io/gc.root` label). The containerd is the test's own (temp
//! dir, private socket, stopped by pid: berth_tests' ContainerdDaemon);
//! its snapshots are read back with `ctr`.

use std::path::Path;

mod common;

use berth_tests::daemon::ContainerdDaemon;
use common::{Berth, busybox_layout};

const CONTAINERD: &str = "/usr/bin/containerd";

/// `ctr snapshots ls` in `namespace`: (key, kind) rows.
fn snapshots(daemon: &ContainerdDaemon, namespace: &str, snapshotter: &str) -> Vec<(String, String)> {
    let out = daemon.ctr(namespace).args(["snapshots", "--snapshotter", snapshotter, "ls"]).output().unwrap();
    assert!(out.status.success(), "ctr snapshots ls: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            Some((fields.first()?.to_string(), fields.last()?.to_string()))
        })
        .collect()
}

fn keys(rows: &[(String, String)]) -> Vec<&str> {
    rows.iter().map(|(k, _)| k.as_str()).collect()
}

/// containerd's overlayfs snapshotter if it loaded (it probes its root's
/// filesystem), else its native one.
fn containerd_snapshotter(daemon: &ContainerdDaemon) -> &'static str {
    let out = daemon.ctr("default").args(["plugins", "ls"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let overlay_ok = text.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.first() == Some(&"io.containerd.snapshotter.v1") && f.get(1) == Some(&"overlayfs") && f.last() == Some(&"ok")
    });
    if overlay_ok { "overlayfs" } else { "native" }
}

#[test]
fn containerds_own_snapshots_service_is_the_proxy() {
    let ctr = Path::new("/usr/bin/ctr");
    if let Some(why) = common::cannot_run_containers(&[Path::new(CONTAINERD), ctr]) {
        eprintln!("SKIP: {why}");
        return;
    }
    let daemon = ContainerdDaemon::start_with(berth_tests::daemon::DaemonConfig {
        binary: Some(CONTAINERD.into()),
        ..Default::default()
    })
    .unwrap();
    let _log = daemon.print_log_on_panic();
    let socket = daemon.address().to_path_buf();
    let snapshotter = containerd_snapshotter(&daemon);
    eprintln!("containerd {} (pid {}), snapshotter {snapshotter}", socket.display(), daemon.pid());
    let namespace = "berth-proxy-test";

    let dir = tempfile::tempdir().unwrap();
    let (layout, layer) = busybox_layout(dir.path(), &["sh", "cat"]);
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "[worker]\nproxy-snapshotter-socket = \"{}\"\nsnapshotter = \"{snapshotter}\"\nproxy-snapshotter-namespace = \"{namespace}\"\n",
            socket.display()
        ),
    )
    .unwrap();
    let client_root = dir.path().join("client-root");
    let berth = Berth { root: client_root.clone(), config };

    // Import unpacks into containerd: the layer is a committed snapshot in
    // the configured namespace (one uncompressed layer: chain ID = digest),
    // and in no other.
    let imported = berth.ok(&["image", "import", "--name", "cbox", layout.to_str().unwrap()]);
    assert!(imported.contains(&format!("unpacked ({snapshotter})")), "{imported}");
    let rows = snapshots(&daemon, namespace, snapshotter);
    assert_eq!(rows, [(layer.clone(), "Committed".to_string())], "ctr -n {namespace} snapshots ls");
    assert!(snapshots(&daemon, "default", snapshotter).is_empty(), "a snapshot landed in containerd's default namespace");
    let info = daemon.ctr(namespace).args(["snapshots", "--snapshotter", snapshotter, "info", &layer]).output().unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("containerd.io/gc.root"), "not kept from containerd's GC: {info}");
    // berth sees the same through the proxy.
    let listed = berth.ok(&["snapshot", "ls"]);
    assert!(listed.contains(&layer), "{listed}");

    // --rm: the container's active snapshot is made and removed in containerd.
    let out = berth.ok(&["run", "--rm", "--name", "ctrd-proxy-rm", "cbox", "sh", "-c", "echo hi > /tmp/x; cat /tmp/x"]);
    assert_eq!(out.trim(), "hi");
    assert_eq!(keys(&snapshots(&daemon, namespace, snapshotter)), [layer.as_str()], "--rm left its snapshot in containerd");

    // Without --rm: the active snapshot is in containerd while the
    // container exists; the record keeps socket and namespace, so `berth
    // rm` reaches it with no proxy in the config.
    let out = berth.ok(&["run", "--name", "ctrd-proxy-keep", "cbox", "sh", "-c", "cat /tmp/x 2>/dev/null || echo fresh"]);
    assert_eq!(out.trim(), "fresh", "a new container sees the image, not another container's writes");
    let rows = snapshots(&daemon, namespace, snapshotter);
    assert!(rows.contains(&("ctrd-proxy-keep".to_string(), "Active".to_string())), "{rows:?}");
    let record = std::fs::read_to_string(client_root.join("containers/ctrd-proxy-keep.json")).unwrap();
    let record: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(record["proxy_namespace"].as_str(), Some(namespace), "{record}");
    assert_eq!(record["proxy_socket"].as_str(), socket.to_str(), "{record}");
    let mounts = berth.ok(&["snapshot", "mounts", "/target", "ctrd-proxy-keep"]);
    assert!(mounts.contains(daemon.dir().to_str().unwrap()), "the mounts are containerd's (under its root): {mounts}");

    // containerd's garbage collector, run now and waited for (deleting a
    // lease with --sync): berth's snapshots are roots, so they stay; a
    // control snapshot without the gc.root label (ctr adds one: removed
    // here) shows the collector ran.
    let ctr_ok = |args: &[&str]| {
        let out = daemon.ctr(namespace).args(args).output().unwrap();
        assert!(out.status.success(), "ctr {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    ctr_ok(&["snapshots", "--snapshotter", snapshotter, "prepare", "gc-control", ""]);
    ctr_ok(&["snapshots", "--snapshotter", snapshotter, "label", "gc-control", "containerd.io/gc.root="]);
    let lease = daemon.ctr(namespace).args(["leases", "create"]).output().unwrap();
    assert!(lease.status.success(), "{}", String::from_utf8_lossy(&lease.stderr));
    let lease = String::from_utf8_lossy(&lease.stdout).trim().to_string();
    let deleted = daemon.ctr(namespace).args(["leases", "delete", "--sync", &lease]).output().unwrap();
    assert!(deleted.status.success(), "{}", String::from_utf8_lossy(&deleted.stderr));
    let rows = snapshots(&daemon, namespace, snapshotter);
    assert!(keys(&rows).contains(&layer.as_str()) && keys(&rows).contains(&"ctrd-proxy-keep"), "containerd's GC took berth's: {rows:?}");
    assert!(!keys(&rows).contains(&"gc-control"), "containerd's GC did not run: {rows:?}");

    // berth gc keeps both too: the image references the layer, the
    // container's record (made in this namespace) its snapshot.
    berth.ok(&["gc"]);
    let rows = snapshots(&daemon, namespace, snapshotter);
    assert!(keys(&rows).contains(&layer.as_str()) && keys(&rows).contains(&"ctrd-proxy-keep"), "berth gc took what is in use: {rows:?}");

    let plain = Berth { root: client_root.clone(), config: dir.path().join("empty.toml") };
    std::fs::write(&plain.config, "").unwrap();
    plain.ok(&["rm", "ctrd-proxy-keep"]);
    assert_eq!(keys(&snapshots(&daemon, namespace, snapshotter)), [layer.as_str()], "berth rm left its snapshot in containerd");

    // berth's root holds no snapshots: they all live in containerd.
    assert!(!client_root.join("snapshots").exists(), "berth made local snapshots");

    // The image gone, berth gc removes the layer it made in containerd.
    berth.ok(&["image", "rm", "cbox"]);
    berth.ok(&["gc"]);
    assert!(snapshots(&daemon, namespace, snapshotter).is_empty(), "berth gc left the layer in containerd");

    daemon.stop().unwrap();
}
