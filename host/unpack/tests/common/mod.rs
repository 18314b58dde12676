//! Test helpers: tars with raw (unchecked) names, tree snapshots.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::Digest as _;

/// A tar builder that writes names as given (absolute, `..`, empty), like
/// containerd's tartest, with long names as PAX records.
pub struct RawTar {
    builder: tar::Builder<Vec<u8>>,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

pub enum Kind<'a> {
    Dir,
    File(&'a [u8]),
    Symlink(&'a str),
    Link(&'a str),
    Char(u32, u32),
    Fifo,
}

impl Default for RawTar {
    fn default() -> Self {
        Self::new()
    }
}

impl RawTar {
    pub fn new() -> RawTar {
        RawTar { builder: tar::Builder::new(Vec::new()), uid: 0, gid: 0, mtime: 1_700_000_000 }
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.entry(name, Kind::Dir, mode, &[])
    }
    pub fn file(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Self {
        self.entry(name, Kind::File(data), mode, &[])
    }
    pub fn symlink(&mut self, target: &str, name: &str) -> &mut Self {
        self.entry(name, Kind::Symlink(target), 0o777, &[])
    }
    pub fn link(&mut self, target: &str, name: &str) -> &mut Self {
        self.entry(name, Kind::Link(target), 0o644, &[])
    }

    pub fn entry(&mut self, name: &str, kind: Kind, mode: u32, xattrs: &[(&str, &[u8])]) -> &mut Self {
        let mut pax: Vec<(String, Vec<u8>)> = xattrs.iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.to_vec())).collect();
        let mut header = tar::Header::new_ustar();
        let (ty, data): (tar::EntryType, &[u8]) = match kind {
            Kind::Dir => (tar::EntryType::Directory, &[]),
            Kind::File(d) => (tar::EntryType::Regular, d),
            Kind::Symlink(_) => (tar::EntryType::Symlink, &[]),
            Kind::Link(_) => (tar::EntryType::Link, &[]),
            Kind::Char(..) => (tar::EntryType::Char, &[]),
            Kind::Fifo => (tar::EntryType::Fifo, &[]),
        };
        header.set_entry_type(ty);
        header.set_mode(mode);
        header.set_uid(self.uid);
        header.set_gid(self.gid);
        header.set_mtime(self.mtime);
        header.set_size(data.len() as u64);
        if let Kind::Char(major, minor) = kind {
            header.set_device_major(major).unwrap();
            header.set_device_minor(minor).unwrap();
        }
        let raw = header.as_old_mut();
        if name.len() <= 100 {
            raw.name[..name.len()].copy_from_slice(name.as_bytes());
        } else {
            pax.push(("path".into(), name.as_bytes().to_vec()));
            raw.name[..10].copy_from_slice(b"long-name!");
        }
        if let Kind::Symlink(t) | Kind::Link(t) = kind {
            if t.len() <= 100 {
                raw.linkname[..t.len()].copy_from_slice(t.as_bytes());
            } else {
                pax.push(("linkpath".into(), t.as_bytes().to_vec()));
            }
        }
        if !pax.is_empty() {
            self.builder.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).unwrap();
        }
        header.set_cksum();
        self.builder.append(&header, data).unwrap();
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// Everything about a tree that an apply could change: per path, type,
/// mode, owner, size, content digest, link target, mtime, xattrs.
pub fn snapshot(dir: &Path, skip: Option<&Path>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(dir, dir, skip, &mut out);
    out
}

fn walk(base: &Path, dir: &Path, skip: Option<&Path>, out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if Some(path.as_path()) == skip {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let rel = path.strip_prefix(base).unwrap().display().to_string();
        let ft = meta.file_type();
        let content = if ft.is_file() {
            sha256(&std::fs::read(&path).unwrap())
        } else if ft.is_symlink() {
            std::fs::read_link(&path).unwrap().display().to_string()
        } else {
            String::new()
        };
        let mtime = if ft.is_dir() { 0 } else { meta.mtime() };
        out.insert(rel, format!("{:o} {}:{} {} {} {}", meta.mode(), meta.uid(), meta.gid(), meta.len(), content, mtime));
        if ft.is_dir() {
            walk(base, &path, skip, out);
        }
    }
}

/// GOARCH of this host.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn write_blob(blobs: &Path, data: &[u8]) -> String {
    let digest = sha256(data);
    std::fs::write(blobs.join(&digest["sha256:".len()..]), data).unwrap();
    digest
}

/// An OCI layout at `dir` with `layers` (uncompressed tars, stored gzipped)
/// named `name` (containerd annotation) with the ref tag `tag` (for umoci).
/// Returns the manifest digest.
pub fn write_layout(dir: &Path, layers: &[Vec<u8>], name: &str, tag: &str) -> String {
    write_layout_with(dir, layers, name, tag, None)
}

pub fn write_layout_with(dir: &Path, layers: &[Vec<u8>], name: &str, tag: &str, diff_ids: Option<Vec<String>>) -> String {
    use std::io::Write;
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let mut descs = Vec::new();
    let mut ids = Vec::new();
    for layer in layers {
        ids.push(sha256(layer));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(layer).unwrap();
        let gz = gz.finish().unwrap();
        descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": write_blob(&blobs, &gz),
            "size": gz.len(),
        }));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": host_arch(),
        "os": "linux",
        "config": { "Cmd": ["sh"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids.unwrap_or(ids) },
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": write_blob(&blobs, &config), "size": config.len() },
        "layers": descs,
    }))
    .unwrap();
    let manifest_digest = write_blob(&blobs, &manifest);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": { "io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag },
        }],
    }))
    .unwrap();
    std::fs::write(dir.join("index.json"), index).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    manifest_digest
}

/// busybox-static and its applets as symlinks, then /etc files: the
/// busybox image of tests/src/image.rs, built the same way.
pub fn busybox_layers() -> Option<Vec<Vec<u8>>> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.is_file() {
        return None;
    }
    let out = std::process::Command::new(busybox).arg("--list-full").output().ok()?;
    let applets: std::collections::BTreeSet<String> =
        String::from_utf8(out.stdout).ok()?.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    let mut t = RawTar::new();
    for d in ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "run", "etc", "root", "var"] {
        t.dir(d, 0o755);
    }
    t.dir("tmp", 0o1777);
    t.file("bin/busybox", &std::fs::read(busybox).ok()?, 0o755);
    for a in applets.iter().filter(|a| *a != "bin/busybox") {
        t.symlink("/bin/busybox", a);
    }
    let l1 = t.finish();
    let mut t = RawTar::new();
    t.dir("etc", 0o755)
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
        .file("etc/group", b"root:x:0:\n", 0o644);
    Some(vec![l1, t.finish()])
}
