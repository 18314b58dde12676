//! containerd's snapshotter semantics that need no mounts: error kinds,
//! the one key space, Update's field paths, label limits, Walk filters
//! through the snapshotter, and the shape of the Mounts each flavor returns
//! (what unpack and the executors rely on). Runs without root.

use std::path::Path;

use berth_snapshot::{DirSnapshotter, Error, Flavor, Kind, Labels, Snapshotter};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn overlay(root: &Path, userxattr: bool) -> DirSnapshotter {
    DirSnapshotter::open(root, Flavor::Overlay { index_off: true, userxattr }).unwrap()
}

#[test]
fn error_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let sn = overlay(dir.path(), false);
    assert!(matches!(sn.prepare("", None, Labels::new()), Err(Error::InvalidArgument(_))));
    sn.prepare("a", None, Labels::new()).unwrap();
    // One key space: a view, an active or a committed name collide.
    assert!(matches!(sn.view("a", None, Labels::new()), Err(Error::AlreadyExists(_))));
    assert!(matches!(sn.prepare("b", Some("missing"), Labels::new()), Err(Error::NotFound(_))));
    assert!(matches!(sn.prepare("b", Some("a"), Labels::new()), Err(Error::InvalidArgument(_))), "parent must be committed");
    sn.commit("base", "a", Labels::new()).unwrap();
    assert!(matches!(sn.stat("a"), Err(Error::NotFound(_))));
    sn.prepare("c", Some("base"), Labels::new()).unwrap();
    assert!(matches!(sn.commit("base", "c", Labels::new()), Err(Error::AlreadyExists(_))));
    assert!(matches!(sn.commit("x", "missing", Labels::new()), Err(Error::NotFound(_))));
    sn.view("v", Some("base"), Labels::new()).unwrap();
    assert!(matches!(sn.commit("x", "v", Labels::new()), Err(Error::FailedPrecondition(_))), "views cannot be committed");
    assert!(matches!(sn.remove("base"), Err(Error::FailedPrecondition(_))), "has children");
    assert!(matches!(sn.mounts("base"), Err(Error::FailedPrecondition(_))), "committed snapshots have no mounts");
    assert!(matches!(sn.remove("missing"), Err(Error::NotFound(_))));
    assert!(matches!(sn.usage("missing"), Err(Error::NotFound(_))));
    let huge = "x".repeat(5000);
    assert!(matches!(sn.prepare("h", None, labels(&[("k", &huge)])), Err(Error::InvalidArgument(_))));
    sn.remove("c").unwrap();
    sn.remove("v").unwrap();
    sn.remove("base").unwrap();
    sn.close().unwrap();
    sn.close().unwrap();
    assert!(sn.stat("base").is_err(), "closed");
}

#[test]
fn metadata_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let info = {
        let sn = overlay(dir.path(), false);
        sn.prepare("a", None, labels(&[("l", "1")])).unwrap();
        sn.commit("base", "a", labels(&[("l", "2")])).unwrap();
        sn.prepare("c", Some("base"), Labels::new()).unwrap();
        sn.stat("base").unwrap()
    };
    let sn = overlay(dir.path(), false);
    assert_eq!(sn.stat("base").unwrap(), info);
    assert_eq!(sn.stat("c").unwrap().parent.as_deref(), Some("base"));
    assert!(matches!(sn.remove("base"), Err(Error::FailedPrecondition(_))), "the children index persisted");
    // Ids are not reused: a new snapshot gets a new directory.
    let mounts = sn.prepare("d", None, Labels::new()).unwrap();
    assert!(mounts[0].source.ends_with("/s/3/fs"), "{mounts:?}");
}

#[test]
fn update_field_paths() {
    let dir = tempfile::tempdir().unwrap();
    let sn = overlay(dir.path(), false);
    sn.prepare("a", None, labels(&[("keep", "1"), ("drop", "1")])).unwrap();
    let mut info = sn.stat("a").unwrap();
    info.labels = labels(&[("new", "2"), ("ignored", "3")]);
    let updated = sn.update(info.clone(), &["labels.new".into(), "labels.drop".into()]).unwrap();
    assert_eq!(updated.labels, labels(&[("keep", "1"), ("new", "2")]));
    assert!(updated.updated >= updated.created && updated.kind == Kind::Active);
    let updated = sn.update(info.clone(), &["labels".into()]).unwrap();
    assert_eq!(updated.labels, info.labels);
    info.labels = labels(&[("only", "1")]);
    assert_eq!(sn.update(info.clone(), &[]).unwrap().labels, labels(&[("only", "1")]));
    assert!(matches!(sn.update(info.clone(), &["kind".into()]), Err(Error::InvalidArgument(_))));
    info.name = "missing".into();
    assert!(matches!(sn.update(info, &[]), Err(Error::NotFound(_))));
}

#[test]
fn walk_filters() {
    let dir = tempfile::tempdir().unwrap();
    let sn = overlay(dir.path(), false);
    sn.prepare("base-a", None, Labels::new()).unwrap();
    sn.commit("sha256:aaa", "base-a", labels(&[("containerd.io/snapshot.ref", "x")])).unwrap();
    sn.prepare("ctr-1", Some("sha256:aaa"), labels(&[("team", "a")])).unwrap();
    sn.view("view-1", Some("sha256:aaa"), Labels::new()).unwrap();
    let names = |filters: &[&str]| {
        let mut out = Vec::new();
        let filters: Vec<String> = filters.iter().map(|s| s.to_string()).collect();
        sn.walk(&filters, &mut |i| {
            out.push(i.name.clone());
            Ok(())
        })
        .unwrap();
        out.sort();
        out
    };
    assert_eq!(names(&["name~=^sha256:"]), ["sha256:aaa"]);
    assert_eq!(names(&["parent==\"sha256:aaa\",kind==view"]), ["view-1"]);
    assert_eq!(names(&["labels.\"containerd.io/snapshot.ref\""]), ["sha256:aaa"]);
    assert_eq!(names(&["labels.team!=a"]), ["sha256:aaa", "view-1"]);
    assert!(matches!(sn.walk(&["name~=(".into()], &mut |_| Ok(())), Err(Error::InvalidArgument(_))));
}

#[test]
fn mounts_of_each_flavor() {
    let dir = tempfile::tempdir().unwrap();
    let sn = overlay(&dir.path().join("o"), true);
    let m = sn.prepare("a", None, Labels::new()).unwrap();
    assert_eq!((m[0].kind.as_str(), m[0].options.as_slice()), ("bind", ["rbind".to_string(), "rw".to_string()].as_slice()));
    let root = Path::new(&m[0].source).to_path_buf();
    sn.commit("l1", "a", Labels::new()).unwrap();
    sn.prepare("b", Some("l1"), Labels::new()).unwrap();
    sn.commit("l2", "b", Labels::new()).unwrap();
    // A view on one parent: a read-only bind of that parent.
    let v = sn.view("v1", Some("l1"), Labels::new()).unwrap();
    assert_eq!((v[0].kind.as_str(), v[0].source.as_str()), ("bind", root.to_str().unwrap()));
    assert!(v[0].options.contains(&"ro".to_string()));
    // Active on two layers: overlay, nearest parent first, userxattr, index=off.
    let m = sn.prepare("c", Some("l2"), Labels::new()).unwrap();
    assert_eq!(m[0].kind, "overlay");
    let opts = &m[0].options;
    assert_eq!(&opts[..2], ["index=off", "userxattr"]);
    let upper = opts.iter().find_map(|o| o.strip_prefix("upperdir=")).unwrap();
    assert!(Path::new(upper).is_dir(), "unpack writes into upperdir");
    let lower: Vec<&str> = opts.iter().find_map(|o| o.strip_prefix("lowerdir=")).unwrap().split(':').collect();
    assert_eq!(lower.len(), 2);
    assert!(lower[0].ends_with("/s/2/fs") && lower[1].ends_with("/s/1/fs"), "nearest first: {lower:?}");
    // A view on two layers: overlay without upper/work.
    let v = sn.view("v2", Some("l2"), Labels::new()).unwrap();
    assert!(v[0].kind == "overlay" && !v[0].options.iter().any(|o| o.starts_with("upperdir=")));

    let fuse = DirSnapshotter::open(&dir.path().join("f"), Flavor::FuseOverlay).unwrap();
    fuse.prepare("a", None, Labels::new()).unwrap();
    fuse.commit("l1", "a", Labels::new()).unwrap();
    let m = fuse.prepare("b", Some("l1"), Labels::new()).unwrap();
    assert_eq!(m[0].kind, "fuse3.fuse-overlayfs");
    assert!(!m[0].options.iter().any(|o| o == "index=off" || o == "userxattr"));

    let native = DirSnapshotter::open(&dir.path().join("n"), Flavor::Native).unwrap();
    let m = native.prepare("a", None, Labels::new()).unwrap();
    std::fs::write(Path::new(&m[0].source).join("f"), "x").unwrap();
    native.commit("l1", "a", Labels::new()).unwrap();
    let m = native.prepare("b", Some("l1"), Labels::new()).unwrap();
    assert_eq!(m[0].kind, "bind");
    assert_eq!(std::fs::read_to_string(Path::new(&m[0].source).join("f")).unwrap(), "x", "a native child is a copy");
    assert!(native.usage("b").unwrap().size > 0);
}

/// The snapshots service calls in from many threads: racing creations of
/// the same keys make each exactly once and leave nothing in tmp/.
#[test]
fn concurrent_creation() {
    let dir = tempfile::tempdir().unwrap();
    let sn = std::sync::Arc::new(DirSnapshotter::open(dir.path(), Flavor::Native).unwrap());
    sn.prepare("a", None, Labels::new()).unwrap();
    sn.commit("base", "a", Labels::new()).unwrap();
    let created: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let sn = sn.clone();
                scope.spawn(move || {
                    let mut made = 0;
                    for i in 0..30 {
                        match sn.prepare(&format!("k{i}"), Some("base"), Labels::new()) {
                            Ok(_) => made += 1,
                            Err(Error::AlreadyExists(_)) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                    made
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(created, 30);
    assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(dir.path().join("s")).unwrap().count(), 31);
}
