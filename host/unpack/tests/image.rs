//! Whole images: busybox into every snapshotter (real mounts, runs `sh`),
//! chain-ID reuse, a failing layer leaves no snapshot, and the unpacked tree
//! compared with `umoci unpack` of the same image.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use berth_content::{ContentStore, ImageStore, ImportOptions, Platform, import, resolve_image};
use berth_snapshot::mount::Mounted;
use berth_unpack::{ApplyOptions, UnpackOptions, apply_layer, unpack_image, unpack_image_layers};
use common::{Kind, RawTar, busybox_layers, write_layout, write_layout_with};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn imported(td: &Path, layers: &[Vec<u8>], diff_ids: Option<Vec<String>>) -> (ContentStore, berth_content::ResolvedImage) {
    let layout = td.join("layout");
    write_layout_with(&layout, layers, "example.com/test:1", "1", diff_ids);
    let content = ContentStore::open(&td.join("berth")).unwrap();
    let images = ImageStore::open(&content);
    let records = import(&content, &images, &layout, &ImportOptions::default()).unwrap();
    assert_eq!(records[0].name, "example.com/test:1");
    let image = resolve_image(&content, &records[0].target, &Platform::host()).unwrap();
    (content, image)
}

#[test]
fn busybox_unpacks_into_every_snapshotter() {
    if !is_root() {
        eprintln!("skipped: needs root (mounts)");
        return;
    }
    let Some(layers) = busybox_layers() else {
        eprintln!("skipped: /bin/busybox missing (busybox-static)");
        return;
    };
    let td = tempfile::tempdir().unwrap();
    let (content, image) = imported(td.path(), &layers, None);
    for name in berth_snapshot::SNAPSHOTTERS {
        let root = td.path().join("berth/snapshots").join(name);
        let sn = match berth_snapshot::open(name, &root) {
            Ok(sn) => sn,
            Err(e) => {
                eprintln!("skipped {name}: {e}");
                continue;
            }
        };
        let first = unpack_image_layers(&content, &image, sn.as_ref(), &UnpackOptions::default()).unwrap();
        assert!(first.iter().all(|l| l.applied.is_some()), "{name}: first unpack applies every layer");
        let again = unpack_image_layers(&content, &image, sn.as_ref(), &UnpackOptions::default()).unwrap();
        assert!(again.iter().all(|l| l.applied.is_none()), "{name}: second unpack reuses the snapshots");
        let top = &first.last().unwrap().chain_id;
        assert_eq!(top, &berth_unpack::chain_ids(image.diff_ids()).pop().unwrap());

        let mounts = sn.view("check", Some(top), Default::default()).unwrap();
        let target = td.path().join(format!("mnt-{name}"));
        std::fs::create_dir(&target).unwrap();
        let mounted = Mounted::new(&mounts, &target).unwrap();
        assert_eq!(std::fs::read_link(target.join("bin/sh")).unwrap().to_str(), Some("/bin/busybox"));
        assert!(std::fs::read_to_string(target.join("etc/passwd")).unwrap().starts_with("root:"));
        let out = Command::new("chroot").arg(&target).args(["/bin/sh", "-c", "echo ok from $(cat /etc/group)"]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok from root:x:0:", "{name}: {out:?}");
        mounted.unmount().unwrap();
        sn.remove("check").unwrap();
        sn.close().unwrap();
    }
}

#[test]
fn a_diff_id_mismatch_leaves_no_snapshot() {
    if !is_root() {
        eprintln!("skipped: needs root (snapshotter roots are root-owned)");
        return;
    }
    let td = tempfile::tempdir().unwrap();
    let mut t = RawTar::new();
    t.file("a", b"a", 0o644);
    let good = t.finish();
    let mut t = RawTar::new();
    t.file("b", b"b", 0o644);
    let second = t.finish();
    let wrong = common::sha256(b"not the layer");
    let (content, image) = imported(td.path(), &[good.clone(), second], Some(vec![common::sha256(&good), wrong]));
    let sn = berth_snapshot::open("native", &td.path().join("snapshots")).unwrap();
    let err = unpack_image(&content, &image, sn.as_ref(), &UnpackOptions::default()).unwrap_err();
    assert!(err.is_diff_id_mismatch(), "{err:#}");
    let mut keys = Vec::new();
    sn.walk(&[], &mut |info| {
        keys.push((info.name.clone(), info.kind));
        Ok(())
    })
    .unwrap();
    // The good first layer is committed; nothing of the bad one remains.
    assert_eq!(keys, vec![(common::sha256(&good), berth_snapshot::Kind::Committed)]);
}

/// A multi-layer image with whiteouts, opaque dirs, hardlinks (also to
/// symlinks), symlinks, xattrs, devices, fifos, setuid, odd owners.
pub fn rich_layers() -> Vec<Vec<u8>> {
    let mut t = RawTar::new();
    t.dir("etc", 0o755).file("etc/hosts", b"127.0.0.1 localhost\n", 0o644);
    t.dir("usr", 0o755).dir("usr/lib", 0o755).file("usr/lib/libx.so.1", b"\x7fELF...", 0o755);
    t.symlink("libx.so.1", "usr/lib/libx.so");
    t.symlink("/usr/lib/libx.so.1", "usr/lib/libx-abs.so");
    t.symlink("../nowhere", "usr/dangling");
    t.link("usr/lib/libx.so.1", "usr/lib/libx-hard.so");
    t.link("usr/lib/libx.so", "usr/lib/hard-to-symlink");
    t.dir("opt", 0o700).dir("opt/app", 0o755).file("opt/app/old", b"old", 0o644).dir("opt/app/sub", 0o755).file("opt/app/sub/f", b"f", 0o644);
    t.dir("var", 0o755).dir("var/gone", 0o755).file("var/gone/x", b"x", 0o644).file("var/keep", b"keep", 0o640);
    t.uid = 1000;
    t.gid = 100;
    t.dir("home", 0o755).dir("home/user", 0o700).file("home/user/.profile", b"PS1=$\n", 0o600);
    t.uid = 0;
    t.gid = 0;
    t.file("usr/bin-su", b"#!su", 0o4755);
    t.file("usr/sgid", b"#!sg", 0o2755);
    t.dir("tmp", 0o1777);
    t.entry("usr/lib/cap", Kind::File(b"cap"), 0o755, &[("user.mime_type", b"application/x-executable"), ("user.other", b"2")]);
    t.entry("dev-null", Kind::Char(1, 3), 0o666, &[]);
    t.entry("pipe", Kind::Fifo, 0o644, &[]);
    let l1 = t.finish();

    let mut t = RawTar::new();
    t.mtime = 1_650_000_000;
    t.dir("opt", 0o755).dir("opt/app", 0o750).file("opt/app/.wh..wh..opq", b"", 0o644).file("opt/app/new", b"new", 0o644);
    t.dir("var", 0o755).file("var/.wh.gone", b"", 0o644);
    t.dir("etc", 0o755).file("etc/hosts", b"10.0.0.1 changed\n", 0o644).link("etc/hosts", "etc/hosts.bak");
    t.file("usr/lib/.wh.libx-hard.so", b"", 0o644);
    t.entry("etc/attrs", Kind::File(b"a"), 0o644, &[("user.layer", b"2")]);
    let l2 = t.finish();

    let mut t = RawTar::new();
    t.mtime = 1_660_000_000;
    t.dir("var", 0o755).dir("var/gone", 0o711).file("var/gone/again", b"again", 0o644);
    t.file(".wh.pipe", b"", 0o644);
    t.symlink("hosts", "etc/hosts-link");
    t.link("etc/hosts-link", "etc/hosts-link-hard");
    let l3 = t.finish();
    vec![l1, l2, l3]
}

/// Per path: type, mode, owner, size, content or link target, mtime for
/// non-directories, device number, user/security xattrs, and the index of
/// the path's hardlink group (paths sharing an inode).
fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<u64, String> = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    let mut all = Vec::new();
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p.clone());
            }
            all.push((p, m));
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    for (p, m) in all {
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let link_group = if !m.is_dir() && m.nlink() > 1 { inodes.entry(m.ino()).or_insert_with(|| rel.clone()).clone() } else { String::new() };
        let content = if m.is_file() {
            common::sha256(&std::fs::read(&p).unwrap())
        } else if m.file_type().is_symlink() {
            std::fs::read_link(&p).unwrap().display().to_string()
        } else {
            String::new()
        };
        let mtime = if m.is_dir() { 0 } else { m.mtime() };
        let mut names = vec![0u8; 4096];
        let n = rustix::fs::llistxattr(&p, &mut names).unwrap_or(0);
        let mut xattrs: Vec<String> = names[..n]
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .filter(|n| n.starts_with("user.") || n.starts_with("trusted."))
            .map(|name| {
                let mut v = vec![0u8; 4096];
                let k = rustix::fs::lgetxattr(&p, name.as_str(), &mut v).unwrap_or(0);
                format!("{name}={}", String::from_utf8_lossy(&v[..k]))
            })
            .collect();
        xattrs.sort();
        out.insert(
            rel,
            format!(
                "mode={:o} owner={}:{} size={} data={} mtime={} rdev={} xattrs={:?} links={}",
                m.mode(),
                m.uid(),
                m.gid(),
                if m.is_dir() { 0 } else { m.len() },
                content,
                mtime,
                m.rdev(),
                xattrs,
                link_group
            ),
        );
    }
    out
}

#[test]
fn same_tree_as_umoci_unpack() {
    if !is_root() {
        eprintln!("skipped: needs root (owners, devices; umoci unpack as root)");
        return;
    }
    if Command::new("umoci").arg("--version").output().is_err() {
        eprintln!("skipped: umoci not installed");
        return;
    }
    let td = tempfile::tempdir().unwrap();
    let layers = rich_layers();
    let layout = td.path().join("layout");
    write_layout(&layout, &layers, "example.com/rich:1", "rich");

    let bundle = td.path().join("bundle");
    let out = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:rich", layout.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(out.status.success(), "umoci unpack: {}", String::from_utf8_lossy(&out.stderr));

    // berth: import, resolve, apply every layer (plain mode) into one dir.
    let content = ContentStore::open(&td.path().join("berth")).unwrap();
    let images = ImageStore::open(&content);
    let rec = import(&content, &images, &layout, &ImportOptions::default()).unwrap().remove(0);
    let image = resolve_image(&content, &rec.target, &Platform::host()).unwrap();
    let rootfs = td.path().join("berth-rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    for (layer, diff_id) in image.manifest.layers().iter().zip(image.diff_ids()) {
        let blob = content.open_blob(&layer.digest().to_string()).unwrap();
        apply_layer(&rootfs, blob, Some(diff_id), &ApplyOptions::default()).unwrap();
    }

    let (want, got) = (describe(&bundle.join("rootfs")), describe(&rootfs));
    let mut diffs = Vec::new();
    for key in want.keys().chain(got.keys()).collect::<std::collections::BTreeSet<_>>() {
        if want.get(key) != got.get(key) {
            diffs.push(format!("{key}:\n  umoci: {:?}\n  berth: {:?}", want.get(key), got.get(key)));
        }
    }
    eprintln!("compared {} paths with umoci", want.len());
    assert!(diffs.is_empty(), "trees differ:\n{}", diffs.join("\n"));
    // Sanity: the tree has what the layers were built to exercise.
    assert!(got["usr/lib/hard-to-symlink"].contains("links=usr/lib/hard-to-symlink") || got["usr/lib/hard-to-symlink"].contains("links=usr/lib/libx.so"));
    assert!(!got.contains_key("opt/app/old") && got.contains_key("opt/app/new"));
    assert!(got.contains_key("var/gone/again") && !got.contains_key("var/gone/x"));
}
