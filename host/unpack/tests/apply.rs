//! Layer application: entry kinds, whiteouts in both modes (checked against
//! a real overlay mount), compression, DiffIDs and bad input.

mod common;

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use berth_unpack::{ApplyOptions, Compression, Error, WhiteoutMode, apply_layer};
use common::{Kind, RawTar, sha256, snapshot};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn long(n: usize) -> String {
    // A path of n bytes in directories of at most 200.
    let mut s = String::new();
    while s.len() + 201 < n {
        s.push_str(&"d".repeat(199));
        s.push('/');
    }
    s.push_str(&"f".repeat(n - s.len()));
    s
}

fn layer1() -> Vec<u8> {
    let mut t = RawTar::new();
    t.dir("a", 0o750).dir("a/b", 0o755).file("a/b/file", b"in b", 0o644);
    t.dir("c", 0o755).file("c/x", b"x", 0o644).file("c/y", b"y", 0o600);
    t.dir("d", 0o755).file("d/old", b"old", 0o644).dir("d/sub", 0o700).file("d/sub/deep", b"deep", 0o644);
    t.uid = 1000;
    t.gid = 1001;
    t.file("setuid", b"#!/bin/true\n", 0o4755);
    t.uid = 0;
    t.gid = 0;
    t.entry("withxattr", Kind::File(b"x"), 0o644, &[("user.berth", b"yes"), ("trusted.overlay.opaque", b"y")]);
    t.entry("fifo", Kind::Fifo, 0o600, &[]);
    t.entry("null", Kind::Char(1, 3), 0o666, &[]);
    t.symlink("setuid", "link-to-setuid");
    t.link("link-to-setuid", "hardlink-to-symlink");
    t.link("c/x", "hardlink-to-x");
    let l = long(150);
    t.dir(l.rsplit_once('/').map(|(d, _)| d).unwrap_or(""), 0o755);
    t.file(&l, b"long", 0o644);
    let l = long(400);
    for (i, _) in l.match_indices('/') {
        t.dir(&l[..i], 0o755);
    }
    t.file(&l, b"longer", 0o644);
    t.symlink(&long(300), "long-symlink");
    t.finish()
}

/// Whiteouts and opaque markers in both orders relative to the entries of
/// the same layer.
fn layer2() -> Vec<u8> {
    let mut t = RawTar::new();
    t.mtime = 1_600_000_000;
    t.file("a/.wh.b", b"", 0o644); // whiteout of a lower dir (parent not in the layer)
    t.dir("c", 0o755).file("c/.wh.x", b"", 0o644).file("c/z", b"z", 0o644); // whiteout first
    t.dir("d", 0o711).file("d/new", b"new", 0o644).file("d/.wh..wh..opq", b"", 0o644); // opaque after an entry
    t.file("e/.wh..wh..opq", b"", 0o644).file("e/fresh", b"fresh", 0o644); // opaque first, dir not in lower
    t.file("withxattr", b"replaced", 0o600);
    t.file(".wh.fifo", b"", 0o644);
    t.finish()
}

fn plain(dir: &Path, layer: &[u8]) {
    apply_layer(dir, layer, Some(&sha256(layer)), &ApplyOptions::default()).unwrap();
}

#[test]
fn entry_kinds_and_plain_whiteouts() {
    if !is_root() {
        eprintln!("skipped: needs root (owners, devices)");
        return;
    }
    let td = tempfile::tempdir().unwrap();
    let root = td.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let l1 = layer1();
    let stats = apply_layer(&root, l1.as_slice(), Some(&sha256(&l1)), &ApplyOptions::default()).unwrap();
    assert_eq!(stats.compression, Compression::None);

    let m = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap();
    assert_eq!(m("setuid").mode() & 0o7777, 0o4755, "setuid kept after chown");
    assert_eq!((m("setuid").uid(), m("setuid").gid()), (1000, 1001));
    assert!(m("fifo").file_type().is_fifo());
    assert!(m("null").file_type().is_char_device());
    assert_eq!(m("null").rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(m("a").mode() & 0o777, 0o750);
    assert_eq!(m("a").mtime(), 1_700_000_000, "directory time restored after its children");
    assert_eq!(m("hardlink-to-symlink").ino(), m("link-to-setuid").ino(), "the symlink inode is linked");
    assert!(m("hardlink-to-symlink").file_type().is_symlink());
    assert_eq!(m("hardlink-to-x").ino(), m("c/x").ino());
    assert_eq!(xattr(&root.join("withxattr"), "user.berth").as_deref(), Some(&b"yes"[..]));
    assert_eq!(xattr(&root.join("withxattr"), "trusted.overlay.opaque"), None, "overlay xattrs are filtered");
    assert_eq!(std::fs::read(root.join(long(150))).unwrap(), b"long");
    assert_eq!(std::fs::read(root.join(long(400))).unwrap(), b"longer");
    assert_eq!(std::fs::read_link(root.join("long-symlink")).unwrap().to_str().unwrap(), long(300));

    plain(&root, &layer2());
    let exists = |p: &str| std::fs::symlink_metadata(root.join(p)).is_ok();
    assert!(!exists("a/b"));
    assert!(exists("a"));
    assert!(!exists("c/x") && exists("c/y") && exists("c/z"));
    assert!(exists("d/new") && !exists("d/old") && !exists("d/sub"), "opaque after an entry keeps the entry");
    assert_eq!(m("d").mode() & 0o777, 0o711);
    assert!(exists("e/fresh"));
    assert!(!exists("fifo"));
    assert_eq!(std::fs::read(root.join("withxattr")).unwrap(), b"replaced");
    assert_eq!(xattr(&root.join("withxattr"), "user.berth"), None, "a replaced file loses the old xattrs");
    assert!(exists("hardlink-to-x"), "a whited-out name's other links stay");
}

#[test]
fn overlay_whiteouts_match_plain_through_a_real_mount() {
    if !is_root() {
        eprintln!("skipped: needs root (overlay mount)");
        return;
    }
    let td = tempfile::tempdir().unwrap();
    let (lower, upper, work, merged, expected) =
        (td.path().join("l"), td.path().join("u"), td.path().join("w"), td.path().join("m"), td.path().join("plain"));
    for d in [&lower, &upper, &work, &merged, &expected] {
        std::fs::create_dir(d).unwrap();
    }
    let (l1, l2) = (layer1(), layer2());
    plain(&lower, &l1);
    plain(&expected, &l1);
    plain(&expected, &l2);
    let opts = ApplyOptions { whiteouts: WhiteoutMode::Overlay { userxattr: false }, lowers: vec![lower.clone()], no_openat2: false };
    apply_layer(&upper, l2.as_slice(), Some(&sha256(&l2)), &opts).unwrap();

    let wh = std::fs::symlink_metadata(upper.join("a/b")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "overlay whiteout is char 0/0");
    assert_eq!(std::fs::symlink_metadata(upper.join("a")).unwrap().mode() & 0o777, 0o750, "parent made as in the lower");
    assert_eq!(xattr(&upper.join("d"), "trusted.overlay.opaque").as_deref(), Some(&b"y"[..]));
    assert_eq!(xattr(&upper.join("e"), "trusted.overlay.opaque").as_deref(), Some(&b"y"[..]));
    assert!(upper.join("d/new").exists());

    let data = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
    let data = std::ffi::CString::new(data).unwrap();
    if let Err(e) = rustix::mount::mount("overlay", &merged, "overlay", rustix::mount::MountFlags::empty(), Some(data.as_c_str())) {
        eprintln!("skipped the merged comparison: overlay mount failed: {e}");
        return;
    }
    let got = snapshot(&merged, None);
    rustix::mount::unmount(&merged, rustix::mount::UnmountFlags::DETACH).unwrap();
    let want = snapshot(&expected, None);
    assert_eq!(got, want);
}

#[test]
fn compression_and_diff_ids() {
    let td = tempfile::tempdir().unwrap();
    let mut t = RawTar::new();
    t.file("hello", b"hello", 0o644);
    let raw = t.finish();
    let diff_id = sha256(&raw);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(raw.as_slice(), 3).unwrap();
    for (i, (blob, kind)) in [(&raw, Compression::None), (&gz, Compression::Gzip), (&zst, Compression::Zstd)].into_iter().enumerate() {
        let dir = td.path().join(format!("ok{i}"));
        std::fs::create_dir(&dir).unwrap();
        let stats = apply_layer(&dir, blob.as_slice(), Some(&diff_id), &ApplyOptions::default()).unwrap();
        assert_eq!((stats.compression, stats.diff_id.as_str()), (kind, diff_id.as_str()));
        assert_eq!(std::fs::read(dir.join("hello")).unwrap(), b"hello");

        let dir = td.path().join(format!("bad{i}"));
        std::fs::create_dir(&dir).unwrap();
        let wrong = sha256(b"something else");
        match apply_layer(&dir, blob.as_slice(), Some(&wrong), &ApplyOptions::default()) {
            Err(Error::DiffIdMismatch { expected, actual }) => assert_eq!((expected, actual), (wrong, diff_id.clone())),
            other => panic!("{kind:?}: want a DiffID mismatch, got {other:?}"),
        }
    }
    // Trailing bytes after the tar's end are part of the DiffID.
    let mut padded = raw.clone();
    padded.extend_from_slice(&[0u8; 1024]);
    let dir = td.path().join("padded");
    std::fs::create_dir(&dir).unwrap();
    assert!(apply_layer(&dir, padded.as_slice(), Some(&diff_id), &ApplyOptions::default()).unwrap_err().is_diff_id_mismatch());
    apply_layer(&dir, padded.as_slice(), Some(&sha256(&padded)), &ApplyOptions::default()).unwrap();
}

#[test]
fn truncated_streams_fail() {
    let td = tempfile::tempdir().unwrap();
    let mut t = RawTar::new();
    t.file("big", &vec![7u8; 100_000], 0o644).file("second", b"2", 0o644);
    let raw = t.finish();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(raw.as_slice(), 3).unwrap();
    let cases: Vec<(&str, &[u8])> = vec![
        ("tar mid-data", &raw[..50_000]),
        ("tar mid-header", &raw[..512 + 100_352 + 100]),
        ("gzip", &gz[..gz.len() / 2]),
        ("gzip without trailer", &gz[..gz.len() - 4]),
        ("zstd", &zst[..zst.len() / 2]),
    ];
    for (i, (what, blob)) in cases.into_iter().enumerate() {
        let dir = td.path().join(i.to_string());
        std::fs::create_dir(&dir).unwrap();
        // Without a DiffID to compare, the stream itself must be rejected.
        let err = apply_layer(&dir, blob, None, &ApplyOptions::default());
        assert!(err.is_err(), "{what}: applied");
    }
}

#[test]
fn root_entries_are_ignored() {
    let td = tempfile::tempdir().unwrap();
    let root = td.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut t = RawTar::new();
    t.file("./", b"not a dir", 0o600).symlink("/etc", ".").link("etc/passwd", "/").file("..", b"x", 0o600).dir("/", 0o700);
    t.file("kept", b"k", 0o644);
    let raw = t.finish();
    apply_layer(&root, raw.as_slice(), Some(&sha256(&raw)), &ApplyOptions::default()).unwrap();
    let meta = std::fs::symlink_metadata(&root).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.mode() & 0o777, 0o755);
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1);
    assert_eq!(std::fs::read(root.join("kept")).unwrap(), b"k");
}

#[test]
fn bad_entries_are_refused() {
    for (what, tar) in [
        ("device out of range", {
            let mut t = RawTar::new();
            t.entry("dev", Kind::Char(0x1000, 0), 0o600, &[]);
            t.finish()
        }),
        ("hardlink to a missing file", {
            let mut t = RawTar::new();
            t.link("nothere", "l");
            t.finish()
        }),
        ("hardlink to a directory", {
            let mut t = RawTar::new();
            t.dir("d", 0o755).link("d", "l");
            t.finish()
        }),
    ] {
        let td = tempfile::tempdir().unwrap();
        let err = apply_layer(td.path(), tar.as_slice(), None, &ApplyOptions::default()).unwrap_err();
        assert!(matches!(err, Error::InvalidArchive(_)), "{what}: {err:#}");
    }
}

#[test]
fn a_hundred_thousand_entries_apply() {
    let td = tempfile::tempdir().unwrap();
    let mut t = RawTar::new();
    for d in 0..100 {
        t.dir(&format!("d{d}"), 0o755);
        for f in 0..1000 {
            t.file(&format!("d{d}/f{f}"), b"", 0o644);
        }
    }
    let raw = t.finish();
    let stats = apply_layer(td.path(), raw.as_slice(), Some(&sha256(&raw)), &ApplyOptions::default()).unwrap();
    assert_eq!(stats.apply.entries, 100_100);
    assert_eq!(std::fs::read_dir(td.path().join("d99")).unwrap().count(), 1000);
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(path, name, &mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}
