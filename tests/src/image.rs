//! A busybox test image built locally, no network: busybox-static as
//! /bin/busybox with its applets as symlinks, and /etc/passwd and
//! /etc/group in a second layer (so unpacking walks a real layer chain).
//! Written as an OCI layout directory and as a tar of it, with a config
//! whose Cmd is ["sh"].

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::json;
use sha2::Digest as _;

/// Where busybox-static lives on Debian.
pub const BUSYBOX: &str = "/bin/busybox";
pub const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A built image: its layout in two forms and what identifies it.
#[derive(Debug, Clone)]
pub struct TestImage {
    /// The name containerd knows it by (`io.containerd.image.name`).
    pub name: String,
    pub layout_dir: PathBuf,
    pub layout_tar: PathBuf,
    pub manifest_digest: String,
    /// Uncompressed layer digests, bottom first.
    pub diff_ids: Vec<String>,
}

/// Builds the image `name` (e.g. `docker.io/library/busybox:latest`) in `dir`.
pub fn build_busybox_image(dir: &Path, name: &str) -> Result<TestImage> {
    if !Path::new(BUSYBOX).is_file() {
        bail!("{BUSYBOX} is missing: install busybox-static");
    }
    let layout_dir = dir.join("busybox-oci");
    let blobs = layout_dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;

    let layers = [busybox_layer()?, etc_layer()?];
    let mut layer_descs = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in &layers {
        diff_ids.push(sha256(tar));
        let gz = gzip(tar)?;
        layer_descs.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": write_blob(&blobs, &gz)?,
            "size": gz.len(),
        }));
    }
    let arch = host_arch();
    let config = serde_json::to_vec(&json!({
        "architecture": arch,
        "os": "linux",
        "config": { "Env": [PATH_ENV], "Cmd": ["sh"], "WorkingDir": "/" },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": [
            { "created_by": "berth-tests: busybox-static and applet links" },
            { "created_by": "berth-tests: /etc/passwd, /etc/group" },
        ],
    }))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": write_blob(&blobs, &config)?,
            "size": config.len(),
        },
        "layers": layer_descs,
    }))?;
    let manifest_digest = write_blob(&blobs, &manifest)?;
    let tag = name.rsplit_once(':').map(|(_, t)| t).filter(|t| !t.contains('/')).unwrap_or("latest");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": { "architecture": arch, "os": "linux" },
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }))?;
    std::fs::write(layout_dir.join("index.json"), &index)?;
    std::fs::write(layout_dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;

    let layout_tar = dir.join("busybox-oci.tar");
    tar_dir(&layout_dir, &layout_tar)?;
    Ok(TestImage { name: name.to_string(), layout_dir, layout_tar, manifest_digest, diff_ids })
}

fn busybox_layer() -> Result<Vec<u8>> {
    let output = Command::new(BUSYBOX).arg("--list-full").output().context("busybox --list-full")?;
    if !output.status.success() {
        bail!("busybox --list-full failed");
    }
    let applets = String::from_utf8(output.stdout)?;
    let mut tar = Builder::new();
    for dir in ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "run", "etc", "root", "var"] {
        tar.dir(dir, 0o755)?;
    }
    tar.dir("tmp", 0o1777)?;
    tar.file("bin/busybox", &std::fs::read(BUSYBOX)?, 0o755)?;
    // Unique paths in a stable order: the layer's digest is reproducible.
    let links: BTreeMap<&str, ()> = applets.lines().map(|l| (l.trim(), ())).filter(|(l, _)| !l.is_empty()).collect();
    for link in links.keys().filter(|l| **l != "bin/busybox") {
        tar.symlink(link, "/bin/busybox")?;
    }
    tar.finish()
}

fn etc_layer() -> Result<Vec<u8>> {
    let mut tar = Builder::new();
    tar.dir("etc", 0o755)?;
    tar.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", 0o644)?;
    tar.file("etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644)?;
    tar.finish()
}

/// A tar of entries owned by root with a fixed mtime.
struct Builder(tar::Builder<Vec<u8>>);

impl Builder {
    fn new() -> Self {
        Builder(tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        header.set_size(size);
        header
    }

    fn dir(&mut self, path: &str, mode: u32) -> Result<()> {
        let mut header = Self::header(tar::EntryType::Directory, mode, 0);
        Ok(self.0.append_data(&mut header, format!("{path}/"), std::io::empty())?)
    }

    fn file(&mut self, path: &str, data: &[u8], mode: u32) -> Result<()> {
        let mut header = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        Ok(self.0.append_data(&mut header, path, data)?)
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        let mut header = Self::header(tar::EntryType::Symlink, 0o777, 0);
        Ok(self.0.append_link(&mut header, path, target)?)
    }

    fn finish(self) -> Result<Vec<u8>> {
        Ok(self.0.into_inner()?)
    }
}

fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(data)?;
    Ok(encoder.finish()?)
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

fn write_blob(blobs: &Path, data: &[u8]) -> Result<String> {
    let digest = sha256(data);
    std::fs::write(blobs.join(&digest["sha256:".len()..]), data)?;
    Ok(digest)
}

/// A plain tar of the layout dir's files (what `ctr images import` takes),
/// with paths relative to the layout (`index.json`, `blobs/sha256/...`).
fn tar_dir(dir: &Path, out: &Path) -> Result<()> {
    let mut tar = tar::Builder::new(std::fs::File::create(out)?);
    for name in ["oci-layout", "index.json"] {
        tar.append_path_with_name(dir.join(name), name)?;
    }
    let mut blobs: Vec<_> = std::fs::read_dir(dir.join("blobs/sha256"))?.collect::<Result<_, _>>()?;
    blobs.sort_by_key(|e| e.file_name());
    for blob in blobs {
        tar.append_path_with_name(blob.path(), Path::new("blobs/sha256").join(blob.file_name()))?;
    }
    tar.into_inner()?.sync_all()?;
    Ok(())
}

/// GOARCH of this host.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_verifiable_layout() {
        let dir = tempfile::tempdir().unwrap();
        let image = build_busybox_image(dir.path(), "example.com/busybox:test").unwrap();
        let layout = berth_containerd::layout::OciLayout::open(&image.layout_tar).unwrap();
        let manifest_desc = &layout.index().manifests()[0];
        assert_eq!(manifest_desc.digest().to_string(), image.manifest_digest);
        let manifest: oci_spec::image::ImageManifest = serde_json::from_slice(&layout.read_blob(manifest_desc).unwrap()).unwrap();
        let config: oci_spec::image::ImageConfiguration =
            serde_json::from_slice(&layout.read_blob(manifest.config()).unwrap()).unwrap();
        assert_eq!(config.config().as_ref().unwrap().cmd().as_ref().unwrap(), &vec!["sh".to_string()]);
        assert_eq!(config.rootfs().diff_ids(), &image.diff_ids);
        // The first layer holds busybox and an `sh` link to it.
        let mut gz = flate2::read::GzDecoder::new(layout.open_blob(&manifest.layers()[0]).unwrap());
        let mut tar_bytes = Vec::new();
        std::io::Read::read_to_end(&mut gz, &mut tar_bytes).unwrap();
        assert_eq!(sha256(&tar_bytes), image.diff_ids[0]);
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let sh = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path().unwrap().to_str() == Some("bin/sh"))
            .expect("bin/sh in the layer");
        assert_eq!(sh.link_name().unwrap().unwrap().to_str(), Some("/bin/busybox"));
        // Reproducible: the same input gives the same manifest.
        let again = build_busybox_image(&dir.path().join("again"), "example.com/busybox:test").unwrap();
        assert_eq!(again.manifest_digest, image.manifest_digest);
    }
}
