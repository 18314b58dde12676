//! Content-addressed blob store, image store, OCI layout / docker-save import.
//!
//! Layout under a berth root:
//!
//! ```text
//! <root>/content/blobs/sha256/<hex>   verified blobs (written to a temp file in
//!                                     the same dir, fsynced, checked, renamed)
//! <root>/content/images.json          image name -> target descriptor
//! <root>/content/images.lock          flock serialising image-store writers
//! ```
//!
//! Everything read from an archive or a registry is untrusted: digests are
//! validated before they become a file name, sizes are bounded, and every
//! index, manifest and config read is limited to [`MAX_METADATA_SIZE`].
//!
//! The ingest API ([`ContentStore::ingest`]) is what a registry pull feeds
//! (`pull.rs` lands later); [`ContentStore::list`] and
//! [`ContentStore::delete`] are the garbage collector's hooks.

pub mod images;
pub mod import;
pub mod platform;
pub mod pull;
pub mod resolve;
pub mod store;

pub use images::{ImageRecord, ImageStore};
pub use import::{ImportOptions, import};
pub use platform::Platform;
pub use resolve::{ResolvedImage, resolve_image};
pub use store::{ContentStore, Ingested};

/// Indexes, manifests and configs larger than this are refused.
pub const MAX_METADATA_SIZE: u64 = 4 << 20;

/// Media types berth reads and writes.
pub mod media_types {
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

    pub fn is_index(media_type: &str) -> bool {
        media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
    }

    pub fn is_manifest(media_type: &str) -> bool {
        media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
    }
}

/// Errors callers branch on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: not found")]
    NotFound(String),
    #[error("blob {digest}: content does not match (got {actual}, {size} bytes)")]
    DigestMismatch { digest: String, actual: String, size: u64 },
    #[error("blob {digest}: size {actual} does not match the expected {expected}")]
    SizeMismatch { digest: String, expected: u64, actual: u64 },
    #[error("{0}: invalid digest (want sha256:<64 lowercase hex>)")]
    InvalidDigest(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Error {
        Error::Other(err.into())
    }
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// The hex part of a `sha256:` digest, validated (it becomes a file name).
pub fn digest_hex(digest: &str) -> Result<&str> {
    let hex = digest.strip_prefix("sha256:").ok_or_else(|| Error::InvalidDigest(digest.to_string()))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(Error::InvalidDigest(digest.to_string()));
    }
    Ok(hex)
}

/// Normalises a docker-style reference the way containerd and docker do:
/// `busybox` -> `docker.io/library/busybox:latest`,
/// `user/app:1` -> `docker.io/user/app:1`; a name with a registry host
/// (has `.` or `:` or is `localhost`) keeps it. Digest references are kept.
pub fn normalize_reference(name: &str) -> String {
    let (repo, suffix) = match name.find('@') {
        Some(at) => (&name[..at], &name[at..]),
        None => {
            // A tag is after the last ':' that follows the last '/'.
            let slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
            match name[slash..].rfind(':') {
                Some(c) => (&name[..slash + c], &name[slash + c..]),
                None => (name, ""),
            }
        }
    };
    let first = repo.split('/').next().unwrap_or("");
    let has_host = repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if has_host {
        repo.to_string()
    } else if repo.contains('/') {
        format!("docker.io/{repo}")
    } else {
        format!("docker.io/library/{repo}")
    };
    let suffix = if suffix.is_empty() { ":latest" } else { suffix };
    format!("{full}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalize_like_docker() {
        assert_eq!(normalize_reference("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normalize_reference("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(normalize_reference("user/app"), "docker.io/user/app:latest");
        assert_eq!(normalize_reference("localhost:5000/app:v1"), "localhost:5000/app:v1");
        assert_eq!(normalize_reference("example.com/a/b"), "example.com/a/b:latest");
        let d = format!("busybox@sha256:{}", "a".repeat(64));
        assert_eq!(normalize_reference(&d), format!("docker.io/library/{d}"));
    }

    #[test]
    fn digests_are_validated() {
        assert!(digest_hex(&format!("sha256:{}", "0".repeat(64))).is_ok());
        for bad in ["sha256:../../etc/passwd", "md5:abc", &format!("sha256:{}", "A".repeat(64)), "sha256:"] {
            assert!(matches!(digest_hex(bad), Err(Error::InvalidDigest(_))), "{bad}");
        }
    }
}
