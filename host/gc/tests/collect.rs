//! GC over berth's blob layout and the real `native` snapshotter: an image's
//! content and chain-ID snapshots are kept, a running container's snapshot is
//! kept while its lease exists, the rest goes; keep-storage removes the
//! oldest unreferenced data first and only as much as needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use berth_gc::{BlobDir, Collector, ContentView, GC_ROOT_LABEL, GcLock, Item, LeaseStore, Policy, SnapshotRef, chain_ids_of};
use berth_snapshot::{Labels, Snapshotter};
use serde_json::json;
use sha2::Digest as _;

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

fn put(root: &Path, data: &[u8]) -> String {
    let d = sha(data);
    let dir = root.join("content/blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(&d[7..]), data).unwrap();
    d
}

fn age(root: &Path, digest: &str, ago: Duration) {
    let f = std::fs::File::options().write(true).open(root.join("content/blobs/sha256").join(&digest[7..])).unwrap();
    f.set_modified(SystemTime::now() - ago).unwrap();
}

struct Image {
    index: String,
    blobs: Vec<String>,
    chain: Vec<String>,
}

/// An index -> manifest -> config + 2 layers; the diff IDs are made up
/// (GC only derives chain IDs from them).
fn image(root: &Path, tag: &str) -> Image {
    let l1 = put(root, format!("layer-one-{tag}").as_bytes());
    let l2 = put(root, format!("layer-two-{tag}").as_bytes());
    let (d1, d2) = (sha(format!("diff1-{tag}").as_bytes()), sha(format!("diff2-{tag}").as_bytes()));
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [d1, d2]},
    }))
    .unwrap();
    let c = put(root, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": config.len()},
        "layers": [{"digest": l1, "size": 1}, {"digest": l2, "size": 1}],
    }))
    .unwrap();
    let m = put(root, &manifest);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m, "size": manifest.len()}],
    }))
    .unwrap();
    let i = put(root, &index);
    Image { index: i.clone(), blobs: vec![i, m, c, l1, l2], chain: chain_ids_of(&[&d1, &d2]) }
}

fn source_dir(sn: &dyn Snapshotter, key: &str) -> PathBuf {
    PathBuf::from(&sn.mounts(key).unwrap()[0].source)
}

/// Commits `chain` as snapshots named by chain ID, each with a file.
fn commit_chain(sn: &dyn Snapshotter, chain: &[String]) {
    let mut parent: Option<String> = None;
    for (i, id) in chain.iter().enumerate() {
        let key = format!("extract-{i}-{}", &id[7..19]);
        sn.prepare(&key, parent.as_deref(), Labels::new()).unwrap();
        std::fs::write(source_dir(sn, &key).join(format!("f{i}")), vec![b'x'; 4096]).unwrap();
        sn.commit(id, &key, Labels::new()).unwrap();
        parent = Some(id.clone());
    }
}

fn exists(sn: &dyn Snapshotter, key: &str) -> bool {
    sn.stat(key).is_ok()
}

#[test]
fn running_container_and_images_survive_gc() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let sn = berth_snapshot::open("native", &root.join("snapshots/native")).unwrap();
    let leases = LeaseStore::open(root).unwrap();

    let kept = image(root, "kept");
    let dropped = image(root, "dropped"); // not in the image store any more
    let junk = put(root, b"an unreferenced blob");
    commit_chain(sn.as_ref(), &kept.chain);
    commit_chain(sn.as_ref(), &dropped.chain);

    // A running container: its active snapshot on the image's top layer, in a lease.
    sn.prepare("ctr-1", Some(&kept.chain[1]), Labels::new()).unwrap();
    std::fs::write(source_dir(sn.as_ref(), "ctr-1").join("state"), b"running").unwrap();
    leases.create("container-ctr-1", None, BTreeMap::new()).unwrap();
    leases
        .add("container-ctr-1", &[], &[SnapshotRef { snapshotter: "native".into(), key: "ctr-1".into() }])
        .unwrap();
    // An orphan active snapshot (a container removed without cleanup), and a gc.root one.
    sn.prepare("orphan", Some(&dropped.chain[1]), Labels::new()).unwrap();
    let mut root_label = Labels::new();
    root_label.insert(GC_ROOT_LABEL.into(), "pinned".into());
    sn.prepare("pinned", None, root_label).unwrap();
    // An expired lease keeps nothing.
    leases.create("stale", Some(Duration::ZERO), BTreeMap::new()).unwrap();
    leases.add("stale", std::slice::from_ref(&junk), &[]).unwrap();

    let content = BlobDir::new(root);
    let collector = Collector {
        content: &content,
        snapshotters: vec![("native".into(), sn.as_ref())],
        leases: &leases,
        image_roots: vec![kept.index.clone()],
        pinned_snapshots: vec![],
    };
    let _lock = GcLock::exclusive(root).unwrap();

    // Dry run: reports, removes nothing.
    let dry = collector.collect(Policy::all(), true).unwrap();
    let names: Vec<String> = dry.removed.iter().map(|i| i.to_string()).collect();
    assert!(names.iter().any(|n| n.contains(&junk)), "{names:?}");
    assert!(names.iter().any(|n| n.contains("native/orphan")), "{names:?}");
    assert!(exists(sn.as_ref(), "orphan"));
    assert!(content.read(&junk, 1 << 20).unwrap().is_some());
    assert!(leases.get("stale").unwrap().is_some());

    let report = collector.collect(Policy::all(), false).unwrap();
    assert_eq!(report.expired_leases, vec!["stale".to_string()]);
    // Kept: the image's content and chain, the container's snapshot (and its data), the gc.root snapshot.
    for b in &kept.blobs {
        assert!(content.read(b, 1 << 20).unwrap().is_some(), "image blob {b} removed");
    }
    for c in &kept.chain {
        assert!(exists(sn.as_ref(), c), "chain snapshot {c} removed");
    }
    assert!(exists(sn.as_ref(), "ctr-1"), "the running container's snapshot was removed");
    assert_eq!(std::fs::read(source_dir(sn.as_ref(), "ctr-1").join("state")).unwrap(), b"running");
    assert!(exists(sn.as_ref(), "pinned"));
    // Removed: the dropped image's content and chain, the orphan, the junk.
    for b in dropped.blobs.iter().chain([&junk]) {
        assert!(content.read(b, 1 << 20).unwrap().is_none(), "{b} kept");
    }
    for c in dropped.chain.iter().map(String::as_str).chain(["orphan"]) {
        assert!(!exists(sn.as_ref(), c), "{c} kept");
    }
    // Children before parents.
    let pos = |k: &str| report.removed.iter().position(|i| matches!(i, Item::Snapshot { key, .. } if key == k)).unwrap();
    assert!(pos("orphan") < pos(&dropped.chain[1]) && pos(&dropped.chain[1]) < pos(&dropped.chain[0]));

    // The container stops: its lease goes, and so does its snapshot; the image stays.
    leases.delete("container-ctr-1").unwrap();
    let report = collector.collect(Policy::all(), false).unwrap();
    assert_eq!(report.removed.len(), 1, "{:?}", report.removed);
    assert!(!exists(sn.as_ref(), "ctr-1"));
    assert!(exists(sn.as_ref(), &kept.chain[1]));

    // Nothing left to collect.
    assert!(collector.collect(Policy::all(), false).unwrap().removed.is_empty());
}

#[test]
fn keep_storage_removes_oldest_unreferenced_first_and_only_as_needed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let leases = LeaseStore::open(root).unwrap();
    let kept = image(root, "kept");
    let old = put(root, &vec![1u8; 10_000]);
    let older = put(root, &vec![2u8; 10_000]);
    let fresh = put(root, &vec![3u8; 10_000]);
    age(root, &older, Duration::from_secs(3 * 86400));
    age(root, &old, Duration::from_secs(2 * 86400));
    let content = BlobDir::new(root);
    let collector = Collector { content: &content, snapshotters: vec![], leases: &leases, image_roots: vec![kept.index], pinned_snapshots: vec![] };
    let usage = collector.collect(Policy { keep_storage: Some(u64::MAX), keep_duration: None }, true).unwrap().usage_before;

    // Under the limit: nothing.
    let r = collector.collect(Policy { keep_storage: Some(usage), keep_duration: None }, false).unwrap();
    assert!(r.removed.is_empty());
    // 5000 bytes over: the oldest blob alone.
    let r = collector.collect(Policy { keep_storage: Some(usage - 5000), keep_duration: None }, false).unwrap();
    assert_eq!(r.removed, vec![Item::Blob { digest: older.clone(), size: 10_000 }]);
    // Far over, but the remaining candidates younger than 3 days stay except `old` (2 days) with keep-duration 1d.
    let r = collector
        .collect(Policy { keep_storage: Some(0), keep_duration: Some(Duration::from_secs(86400)) }, false)
        .unwrap();
    assert_eq!(r.removed, vec![Item::Blob { digest: old, size: 10_000 }]);
    assert!(content.read(&fresh, 1 << 20).unwrap().is_some(), "a blob younger than keep-duration was removed");
}

#[test]
fn stale_partial_downloads_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = dir.path().join("content/ingest");
    std::fs::create_dir_all(&ingest).unwrap();
    let (old, new) = (ingest.join(format!("{}.partial", "a".repeat(64))), ingest.join(format!("{}.partial", "b".repeat(64))));
    std::fs::write(&old, b"12345").unwrap();
    std::fs::write(&new, b"678").unwrap();
    std::fs::write(old.with_extension("lock"), b"").unwrap();
    let f = std::fs::File::options().write(true).open(&old).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(2 * 86400)).unwrap();
    let dry = berth_gc::clean_partials(dir.path(), Duration::from_secs(86400), true).unwrap();
    assert_eq!(dry.len(), 1);
    assert!(old.exists());
    let removed = berth_gc::clean_partials(dir.path(), Duration::from_secs(86400), false).unwrap();
    assert_eq!(removed.iter().map(Item::size).sum::<u64>(), 5);
    assert!(!old.exists() && !old.with_extension("lock").exists());
    assert!(new.exists(), "a recent partial (resumable) was removed");
}
