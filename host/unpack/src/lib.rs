//! Layer application through directory file descriptors: whiteouts,
//! hardlinks, xattrs, devices, DiffID verification, and unpacking an image
//! into a chain of committed snapshots.
//!
//! No path from a layer is ever joined to a root path as a string: entries
//! are created with `*at` calls relative to a parent directory descriptor
//! that was resolved inside the root (openat2 `RESOLVE_IN_ROOT`, or a
//! component-by-component walk where openat2 is refused).

pub mod apply;
pub mod image;
pub mod layer;
pub mod root;

pub use apply::{ApplyOptions, ApplyStats, WhiteoutMode, apply_tar};
pub use image::{UnpackOptions, UnpackedLayer, chain_ids, unpack_image, unpack_image_layers};
pub use layer::{Compression, LayerStats, apply_layer};

/// Errors callers branch on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("layer content does not match its DiffID: expected {expected}, got {actual}")]
    DiffIdMismatch { expected: String, actual: String },
    #[error("invalid layer archive: {0}")]
    InvalidArchive(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl Error {
    /// Adds where it happened, keeping the kind.
    pub fn context(self, what: String) -> Error {
        match self {
            Error::DiffIdMismatch { expected, actual } => {
                Error::Other(anyhow::Error::new(Error::DiffIdMismatch { expected, actual }).context(what))
            }
            Error::InvalidArchive(msg) => Error::InvalidArchive(format!("{what}: {msg}")),
            Error::Other(e) => Error::Other(e.context(what)),
        }
    }

    /// Whether this is (or wraps) a DiffID mismatch.
    pub fn is_diff_id_mismatch(&self) -> bool {
        match self {
            Error::DiffIdMismatch { .. } => true,
            Error::Other(e) => e.chain().any(|c| matches!(c.downcast_ref::<Error>(), Some(Error::DiffIdMismatch { .. }))),
            _ => false,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Error {
        Error::Other(err.into())
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(err: rustix::io::Errno) -> Error {
        Error::Other(std::io::Error::from(err).into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
