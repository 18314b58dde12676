//! `berth gc` while a container runs: pull (docker-registry on 127.0.0.1,
//! through the hosts-resolver plugin), `berth run -d`, gc, and the container
//! is still running with its snapshot; after it stops its snapshot is still
//! kept (its record pins it) until `berth rm`; the image's chain stays.

use std::path::Path;

mod common;

use common::{Berth, ContainerGuard, Registry, busybox_layout, plugin};

fn skip_reason() -> Option<String> {
    common::cannot_run_containers(&[
        &plugin("hosts-resolver"),
        Path::new("/usr/bin/docker-registry"),
        Path::new("/usr/bin/skopeo"),
    ])
}

#[test]
fn gc_keeps_a_running_containers_snapshot() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIP: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(&dir.path().join("registry"));
    let port = registry.port;
    let (layout, _layer) = busybox_layout(dir.path(), &["sh", "sleep"]);
    registry.push(&layout, "test/sleeper:v1");
    let image = format!("127.0.0.1:{port}/test/sleeper:v1");

    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "[[plugin]]\nname = \"hosts-resolver\"\npath = \"{}\"\nkind = \"source-resolver\"\n[plugin.config.\"127.0.0.1:{port}\"]\nserver = \"http://127.0.0.1:{port}\"\n",
            plugin("hosts-resolver").display()
        ),
    )
    .unwrap();
    let berth = Berth { root: dir.path().join("root"), config };
    berth.ok(&["image", "pull", "-q", &image]);
    let id = berth.ok(&["run", "-d", "--snapshotter", "native", &image, "sleep", "300"]).trim().to_string();
    let cleanup = ContainerGuard { berth: &berth, id: id.clone() };
    berth.wait_ps("the container starting", |ps| ps.contains("running"));

    // GC while it runs: nothing of it goes, it keeps running.
    berth.ok(&["gc"]);
    assert!(berth.ok(&["ps"]).contains("running"), "gc stopped the container");

    // Stopped but not removed: its snapshot is still pinned by its record.
    berth.ok(&["kill", "--signal", "KILL", &id]);
    berth.wait_ps("the container stopping", |ps| !ps.contains("running"));
    berth.ok(&["gc"]);
    let snaps = berth.ok(&["snapshot", "--snapshotter", "native", "ls"]);
    assert!(snaps.contains(&id), "gc removed a stopped container's snapshot:\n{snaps}");
    assert!(snaps.contains("Committed"), "gc removed the image's chain:\n{snaps}");

    // Removed: now only the image's chain remains, and gc finds nothing more.
    berth.ok(&["rm", &id]);
    let report = berth.ok(&["gc"]);
    assert!(report.contains("removed 0 items"), "{report}");
    let snaps = berth.ok(&["snapshot", "--snapshotter", "native", "ls"]);
    assert!(!snaps.contains(&id) && snaps.contains("Committed"), "{snaps}");
    drop(cleanup);
}
