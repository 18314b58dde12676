//! Remapped snapshots (containerd's WithRemappedSnapshot) on every
//! snapshotter that can run here: owners shifted, symlinks never followed,
//! setuid kept, the remapped parent created once and reused.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use berth_snapshot::mount::Mounted;
use berth_snapshot::remap::{ensure_remapped, prepare_remapped, remapped_name};
use berth_snapshot::{Kind, Labels};

fn remap_on(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let sn = berth_snapshot::open(name, &dir.path().join("root")).unwrap();
    let mounts = sn.prepare("base-a", None, Labels::new()).unwrap();
    let fs = Path::new(&mounts[0].source);
    std::fs::create_dir(fs.join("bin")).unwrap();
    std::fs::write(fs.join("bin/su"), "su").unwrap();
    std::fs::set_permissions(fs.join("bin/su"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::os::unix::fs::lchown(fs.join("bin"), Some(0), Some(0)).unwrap();
    std::fs::write(fs.join("owned"), "x").unwrap();
    std::os::unix::fs::lchown(fs.join("owned"), Some(5), Some(7)).unwrap();
    // A symlink out of the snapshot: the host file must stay untouched.
    let outside = dir.path().join("outside");
    std::fs::write(&outside, "host").unwrap();
    std::os::unix::fs::symlink(&outside, fs.join("escape")).unwrap();
    sn.commit("base", "base-a", Labels::new()).unwrap();

    let (uid, gid) = (100_000, 200_000);
    let mounts = prepare_remapped(sn.as_ref(), "ctr", "base", uid, gid, Labels::new()).unwrap();
    let remapped = remapped_name("base", uid, gid);
    assert_eq!(sn.stat(&remapped).unwrap().kind, Kind::Committed);
    assert_eq!(sn.stat("ctr").unwrap().parent.as_deref(), Some(remapped.as_str()));
    let target = dir.path().join("mnt");
    std::fs::create_dir(&target).unwrap();
    {
        let mounted = Mounted::new(&mounts, &target).unwrap();
        let root = mounted.path();
        let meta = std::fs::symlink_metadata(root.join("bin")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (uid, gid));
        let su = std::fs::symlink_metadata(root.join("bin/su")).unwrap();
        assert_eq!((su.uid(), su.mode() & 0o7777), (uid, 0o4755), "setuid kept");
        let owned = std::fs::symlink_metadata(root.join("owned")).unwrap();
        assert_eq!((owned.uid(), owned.gid()), (uid + 5, gid + 7));
        let link = std::fs::symlink_metadata(root.join("escape")).unwrap();
        assert_eq!(link.uid(), uid, "the symlink itself is shifted");
        let root_meta = std::fs::metadata(root).unwrap();
        assert_eq!(root_meta.uid(), uid);
        mounted.unmount().unwrap();
    }
    assert_eq!(std::fs::metadata(&outside).unwrap().uid(), 0, "never follows symlinks");

    // Reused: a second container with the same mapping makes nothing new.
    assert_eq!(ensure_remapped(sn.as_ref(), "base", uid, gid).unwrap(), remapped);
    let mut count = 0;
    sn.walk(&[], &mut |_| {
        count += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(count, 3, "base, its remapped copy, ctr");
}

fn runnable(name: &str) -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping: needs root");
        return false;
    }
    let dir = tempfile::tempdir().unwrap();
    let usable = berth_snapshot::probe::probe(dir.path()).usable(name);
    if !usable {
        eprintln!("skipping: {name} unusable here");
    }
    usable
}

#[test]
fn remap_native() {
    if runnable("native") {
        remap_on("native");
    }
}

#[test]
fn remap_overlayfs() {
    if runnable("overlayfs") {
        remap_on("overlayfs");
    }
}

#[test]
fn remap_fuse_overlayfs() {
    if runnable("fuse-overlayfs") {
        remap_on("fuse-overlayfs");
    }
}

/// The idmapped path: no chowned copy, on-disk owners unchanged, owners
/// shifted through the mount.
fn idmapped_on(name: &str) {
    if !runnable(name) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let facts = berth_snapshot::probe::probe(&dir.path().join("probe"));
    if !facts.idmapped_mounts {
        eprintln!("skipping: idmapped mounts unsupported here");
        return;
    }
    let sn = berth_snapshot::open(name, &dir.path().join("root")).unwrap();
    let mounts = sn.prepare("base-a", None, Labels::new()).unwrap();
    let on_disk = Path::new(&mounts[0].source).join("owned");
    std::fs::write(&on_disk, "x").unwrap();
    std::os::unix::fs::lchown(&on_disk, Some(5), Some(7)).unwrap();
    sn.commit("base0", "base-a", Labels::new()).unwrap();
    // A second layer, so that overlay stacks two lower dirs.
    sn.prepare("base-b", Some("base0"), Labels::new()).unwrap();
    sn.commit("base", "base-b", Labels::new()).unwrap();
    let (uid, gid) = (100_000, 200_000);
    let mounts = berth_snapshot::remap::prepare_idmapped(sn.as_ref(), "ctr", "base", uid, gid, Labels::new(), true).unwrap();
    assert!(mounts[0].options.iter().any(|o| o.starts_with("uidmap=")), "{mounts:?}");
    assert!(matches!(sn.stat(&remapped_name("base", uid, gid)), Err(berth_snapshot::Error::NotFound(_))), "no chowned copy");
    let target = dir.path().join("mnt");
    std::fs::create_dir(&target).unwrap();
    let mounted = Mounted::new(&mounts, &target).unwrap();
    let seen = std::fs::metadata(mounted.path().join("owned")).unwrap();
    assert_eq!((seen.uid(), seen.gid()), (uid + 5, gid + 7));
    mounted.unmount().unwrap();
    let disk = std::fs::metadata(on_disk).unwrap();
    assert_eq!((disk.uid(), disk.gid()), (5, 7));
}

#[test]
fn idmapped_native() {
    idmapped_on("native");
}

#[test]
fn idmapped_overlayfs() {
    idmapped_on("overlayfs");
}
