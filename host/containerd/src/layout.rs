//! Reading an OCI image layout, from a directory or from a tar of one,
//! without unpacking the tar: blobs are read in place.
//!
//! Everything named by the layout is untrusted: digests are checked to be
//! `sha256:`/`sha512:` with lowercase hex before they become a path, and
//! sizes are checked against the blobs.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use oci_spec::image::{Descriptor, Digest, DigestAlgorithm, ImageIndex};

/// Manifests and configs are small; refuse anything claiming more.
pub const MAX_METADATA_BLOB: u64 = 16 << 20;

/// An OCI image layout.
pub struct OciLayout {
    path: PathBuf,
    source: Source,
    index: ImageIndex,
}

enum Source {
    Dir,
    /// Path inside the archive -> (offset of the data, size).
    Tar(HashMap<String, (u64, u64)>),
}

impl OciLayout {
    /// Opens a layout directory (with `index.json` and `blobs/`) or a tar of one.
    pub fn open(path: &Path) -> Result<OciLayout> {
        let meta = std::fs::metadata(path).with_context(|| format!("image layout {}", path.display()))?;
        let source = if meta.is_dir() { Source::Dir } else { Source::Tar(tar_entries(path)?) };
        let mut layout = OciLayout { path: path.to_path_buf(), source, index: ImageIndex::default() };
        let index = layout.read_file("index.json", MAX_METADATA_BLOB)?;
        layout.index = serde_json::from_slice(&index)
            .with_context(|| format!("{}: index.json is not an OCI image index", path.display()))?;
        Ok(layout)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn index(&self) -> &ImageIndex {
        &self.index
    }

    /// Whether the layout holds the blob `digest`.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        let Ok(path) = blob_path(digest) else { return false };
        match &self.source {
            Source::Dir => self.path.join(path).is_file(),
            Source::Tar(entries) => entries.contains_key(&path),
        }
    }

    /// A small blob (manifest, index, config), whole, checked against `desc`.
    pub fn read_blob(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        if desc.size() > MAX_METADATA_BLOB {
            bail!("{}: blob {} claims {} bytes, more than a manifest or config may have", self.path.display(), desc.digest(), desc.size());
        }
        let data = self.read_file(&blob_path(desc.digest())?, desc.size())?;
        if data.len() as u64 != desc.size() {
            bail!("{}: blob {} has {} bytes, its descriptor says {}", self.path.display(), desc.digest(), data.len(), desc.size());
        }
        if digest_of(desc.digest().algorithm(), &data)? != *desc.digest() {
            bail!("{}: blob {} does not match its digest", self.path.display(), desc.digest());
        }
        Ok(data)
    }

    /// A blob as a stream of `desc.size()` bytes (containerd verifies the digest on commit).
    pub fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send>> {
        let inner = blob_path(desc.digest())?;
        let (file, size) = self.open_file(&inner)?;
        if size != desc.size() {
            bail!("{}: blob {} has {size} bytes, its descriptor says {}", self.path.display(), desc.digest(), desc.size());
        }
        Ok(Box::new(file.take(size)))
    }

    fn read_file(&self, inner: &str, limit: u64) -> Result<Vec<u8>> {
        let (file, size) = self.open_file(inner)?;
        if size > limit {
            bail!("{}: {inner} has {size} bytes, more than the {limit} allowed", self.path.display());
        }
        let mut data = Vec::with_capacity(size as usize);
        file.take(size).read_to_end(&mut data).with_context(|| format!("{}: reading {inner}", self.path.display()))?;
        Ok(data)
    }

    /// The file at `inner` positioned at its data, and its size.
    fn open_file(&self, inner: &str) -> Result<(File, u64)> {
        match &self.source {
            Source::Dir => {
                let path = self.path.join(inner);
                let file = File::open(&path).with_context(|| format!("{}: no {inner}", self.path.display()))?;
                let size = file.metadata()?.len();
                Ok((file, size))
            }
            Source::Tar(entries) => {
                let &(offset, size) =
                    entries.get(inner).with_context(|| format!("{}: the archive has no {inner}", self.path.display()))?;
                let mut file = File::open(&self.path).with_context(|| format!("opening {}", self.path.display()))?;
                file.seek(SeekFrom::Start(offset))?;
                Ok((file, size))
            }
        }
    }
}

/// The regular files of a tar and where their data lies.
fn tar_entries(path: &Path) -> Result<HashMap<String, (u64, u64)>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut archive = tar::Archive::new(file);
    let mut entries = HashMap::new();
    let not_layout = || format!("{} is neither an OCI layout directory nor an uncompressed tar of one", path.display());
    for entry in archive.entries().with_context(not_layout)? {
        let entry = entry.with_context(not_layout)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().with_context(not_layout)?.to_string_lossy().trim_start_matches("./").to_string();
        entries.insert(name, (entry.raw_file_position(), entry.size()));
    }
    if !entries.contains_key("index.json") {
        bail!("{}: no index.json", not_layout());
    }
    Ok(entries)
}

/// `blobs/<alg>/<hex>` for a digest whose algorithm berth can verify.
fn blob_path(digest: &Digest) -> Result<String> {
    match digest.algorithm() {
        // The Digest parser checked the length and lowercase hex of these two.
        DigestAlgorithm::Sha256 | DigestAlgorithm::Sha512 => Ok(format!("blobs/{}/{}", digest.algorithm(), digest.digest())),
        other => bail!("digest {digest}: unsupported algorithm {other}"),
    }
}

pub(crate) fn digest_of(algorithm: &DigestAlgorithm, data: &[u8]) -> Result<Digest> {
    use sha2::Digest as _;
    let hex = match algorithm {
        DigestAlgorithm::Sha256 => hex::encode(sha2::Sha256::digest(data)),
        DigestAlgorithm::Sha512 => hex::encode(sha2::Sha512::digest(data)),
        other => bail!("unsupported digest algorithm {other}"),
    };
    Ok(format!("{algorithm}:{hex}").parse()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_paths_only_for_verifiable_digests() {
        let d: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        assert_eq!(blob_path(&d).unwrap(), format!("blobs/sha256/{}", "a".repeat(64)));
        // Other algorithms carry free-form encodings: never a path.
        let odd: Digest = "foo:abc".parse().unwrap();
        assert!(blob_path(&odd).is_err());
        assert!("sha256:../../etc/passwd".parse::<Digest>().is_err());
    }

    #[test]
    fn reads_a_layout_directory_and_verifies_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let digest = digest_of(&DigestAlgorithm::Sha256, config).unwrap();
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        std::fs::write(dir.path().join("blobs/sha256").join(digest.digest()), config).unwrap();
        std::fs::write(dir.path().join("index.json"), br#"{"schemaVersion":2,"manifests":[]}"#).unwrap();
        let layout = OciLayout::open(dir.path()).unwrap();
        let desc = Descriptor::new(oci_spec::image::MediaType::ImageConfig, config.len() as u64, digest.clone());
        assert_eq!(layout.read_blob(&desc).unwrap(), config);
        // A blob whose content does not match its name is refused.
        std::fs::write(dir.path().join("blobs/sha256").join(digest.digest()), b"x".repeat(config.len())).unwrap();
        let err = layout.read_blob(&desc).unwrap_err().to_string();
        assert!(err.contains("does not match its digest"), "{err}");
    }
}
