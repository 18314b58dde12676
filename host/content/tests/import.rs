//! Import: OCI layout directory and tar, docker-save archives (with a
//! symlinked duplicate layer), multi-platform indexes, names, and the
//! size bounds and digest checks on untrusted archives.

use std::io::Write;
use std::path::Path;

use berth_content::{ContentStore, Error, ImageStore, ImportOptions, Platform, import, resolve_image, sha256_digest};
use serde_json::json;

fn layer(name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, data).unwrap();
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn put(blobs: &Path, data: &[u8]) -> String {
    let d = sha256_digest(data);
    std::fs::create_dir_all(blobs).unwrap();
    std::fs::write(blobs.join(&d[7..]), data).unwrap();
    d
}

/// A manifest for `arch` with one gzip layer; returns (digest, size).
fn manifest(blobs: &Path, arch: &str, content: &[u8]) -> (String, usize) {
    let raw = layer("file", content);
    let gz = gzip(&raw);
    let config = serde_json::to_vec(&json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": [sha256_digest(&raw)]}})).unwrap();
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(blobs, &config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(blobs, &gz), "size": gz.len()}],
    }))
    .unwrap();
    (put(blobs, &m), m.len())
}

fn host_arch() -> String {
    Platform::host().architecture
}

fn tar_dir(dir: &Path, out: &Path) {
    let mut b = tar::Builder::new(std::fs::File::create(out).unwrap());
    b.append_dir_all(".", dir).unwrap();
    b.into_inner().unwrap();
}

fn stores(dir: &Path) -> (ContentStore, ImageStore) {
    let c = ContentStore::open(&dir.join("root")).unwrap();
    let i = ImageStore::open(&c);
    (c, i)
}

#[test]
fn oci_layout_dir_and_tar_with_two_platforms() {
    let td = tempfile::tempdir().unwrap();
    let layout = td.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    let (here, here_size) = manifest(&blobs, &host_arch(), b"here");
    let other_arch = if host_arch() == "amd64" { "arm64" } else { "amd64" };
    let (other, other_size) = manifest(&blobs, other_arch, b"other");
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": other, "size": other_size, "platform": {"os": "linux", "architecture": other_arch}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": here, "size": here_size, "platform": {"os": "linux", "architecture": host_arch()}},
    ]}))
    .unwrap();
    let (index_digest, index_size) = (put(&blobs, &index), index.len());
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json", "digest": index_digest, "size": index_size,
            "annotations": {"org.opencontainers.image.ref.name": "example.com/multi:1"}}]}))
        .unwrap(),
    )
    .unwrap();
    std::fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let layout_tar = td.path().join("layout.tar");
    tar_dir(&layout, &layout_tar);

    for (i, source) in [&layout, &layout_tar].into_iter().enumerate() {
        let (content, images) = stores(&td.path().join(i.to_string()));
        let records = import(&content, &images, source, &ImportOptions::default()).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].name, "example.com/multi:1");
        let image = resolve_image(&content, &records[0].target, &Platform::host()).unwrap();
        assert_eq!(image.manifest_desc.digest().to_string(), here);
        // The other platform's manifest is stored, its layers are not.
        let other_image = resolve_image(&content, &records[0].target, &format!("linux/{other_arch}").parse().unwrap());
        let other_layer_missing = match other_image {
            Ok(img) => !content.contains(&img.manifest.layers()[0].digest().to_string()),
            Err(_) => true,
        };
        assert!(other_layer_missing, "layers of other platforms are not copied");
        assert!(matches!(
            resolve_image(&content, &records[0].target, &"linux/s390x".parse().unwrap()),
            Err(Error::NotFound(_))
        ));
        // Importing again is idempotent.
        import(&content, &images, source, &ImportOptions::default()).unwrap();
        assert_eq!(images.list().unwrap().len(), 1);
    }

    // A layout naming nothing needs --name.
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": here, "size": here_size}]})).unwrap(),
    )
    .unwrap();
    let (content, images) = stores(&td.path().join("unnamed"));
    let err = import(&content, &images, &layout, &ImportOptions::default()).unwrap_err();
    assert!(err.to_string().contains("--name"), "{err}");
    let opts = ImportOptions { name: Some("mine:1".into()), ..Default::default() };
    assert_eq!(import(&content, &images, &layout, &opts).unwrap()[0].name, "mine:1");
}

#[test]
fn docker_save_archive_with_a_symlinked_layer() {
    let td = tempfile::tempdir().unwrap();
    let l1 = layer("a", b"a");
    let l2 = gzip(&layer("b", b"b"));
    let config = serde_json::to_vec(&json!({"architecture": host_arch(), "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(&l1), sha256_digest(&layer("b", b"b")), sha256_digest(&l1)]}}))
    .unwrap();
    let save = td.path().join("save.tar");
    let mut b = tar::Builder::new(Vec::new());
    let add = |b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    };
    add(&mut b, "cfg.json", &config);
    add(&mut b, "one/layer.tar", &l1);
    add(&mut b, "two/layer.tar", &l2);
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "three/layer.tar", "../one/layer.tar").unwrap();
    let manifest = json!([{"Config": "cfg.json", "RepoTags": ["app:2", "example.com/app:2"], "Layers": ["one/layer.tar", "two/layer.tar", "three/layer.tar"]}]);
    add(&mut b, "manifest.json", &serde_json::to_vec(&manifest).unwrap());
    std::fs::write(&save, b.into_inner().unwrap()).unwrap();

    let (content, images) = stores(td.path());
    let records = import(&content, &images, &save, &ImportOptions::default()).unwrap();
    let names: Vec<_> = records.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["docker.io/library/app:2", "example.com/app:2"]);
    let image = resolve_image(&content, &records[0].target, &Platform::host()).unwrap();
    let types: Vec<_> = image.manifest.layers().iter().map(|l| l.media_type().to_string()).collect();
    assert_eq!(
        types,
        ["application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.layer.v1.tar"]
    );
    assert_eq!(image.manifest.layers()[0].digest(), image.manifest.layers()[2].digest());

    // Paths leaving the archive are refused.
    let mut b = tar::Builder::new(Vec::new());
    let manifest = json!([{"Config": "../../etc/passwd", "RepoTags": ["x:1"], "Layers": []}]);
    add(&mut b, "manifest.json", &serde_json::to_vec(&manifest).unwrap());
    let evil = td.path().join("evil.tar");
    std::fs::write(&evil, b.into_inner().unwrap()).unwrap();
    assert!(import(&content, &images, &evil, &ImportOptions::default()).is_err());
}

#[test]
fn oversized_and_corrupt_metadata_is_refused() {
    let td = tempfile::tempdir().unwrap();
    let layout = td.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    let (m, size) = manifest(&blobs, &host_arch(), b"x");
    std::fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let write_index = |digest: &str, size: u64| {
        std::fs::write(
            layout.join("index.json"),
            serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest, "size": size, "annotations": {"io.containerd.image.name": "x:1"}}]}))
            .unwrap(),
        )
        .unwrap();
    };
    // A descriptor claiming more than 4 MiB.
    write_index(&m, 5 << 20);
    let (content, images) = stores(&td.path().join("a"));
    let err = import(&content, &images, &layout, &ImportOptions::default()).unwrap_err();
    assert!(format!("{err:#}").contains("more than"), "{err:#}");
    // Content that does not match its digest.
    let fake = format!("sha256:{}", "1".repeat(64));
    std::fs::copy(blobs.join(&m[7..]), blobs.join(&fake[7..])).unwrap();
    write_index(&fake, size as u64);
    let err = import(&content, &images, &layout, &ImportOptions::default()).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:#}");
    assert!(!content.contains(&fake));
    // An index.json over the bound.
    std::fs::write(layout.join("index.json"), vec![b' '; (4 << 20) + 1]).unwrap();
    assert!(import(&content, &images, &layout, &ImportOptions::default()).is_err());
    assert!(images.list().unwrap().is_empty());
}
