//! Snapshotters with containerd's semantics: overlayfs, native, fuse-overlayfs,
//! metadata in an embedded database.
//!
//! The [`Snapshotter`] trait is the contract the rest of berth (unpack,
//! executors, the containerd snapshots service) builds on. Its semantics are
//! containerd's `snapshots.Snapshotter`, error kinds included.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

mod copy;
mod dir;
mod failpoint;
pub mod filter;
mod metadata;
pub mod mount;
pub mod probe;
pub mod remap;
mod usage;

pub use dir::{DirSnapshotter, Flavor};
pub use failpoint::FAILPOINT_ENV;

/// The snapshotters compiled into this berth, in the order `auto` prefers them.
pub const SNAPSHOTTERS: &[&str] = &["overlayfs", "fuse-overlayfs", "native"];

/// Opens (creating when needed) the snapshotter `name` storing under `root`.
/// Unknown names are `InvalidArgument` naming the known ones; a snapshotter
/// this host cannot run (no fuse-overlayfs binary...) is `FailedPrecondition`.
pub fn open(name: &str, root: &Path) -> Result<Arc<dyn Snapshotter>> {
    open_with(name, root, Durability::EveryChange)
}

/// When the metadata's changes reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Each operation is durable when it returns (containerd's semantics;
    /// what a long-lived snapshotter such as `berth snapshotter serve` needs).
    #[default]
    EveryChange,
    /// Creations, commits and label updates are durable once the
    /// snapshotter is closed (its last handle dropped), all at once; removals
    /// stay durable when they return (the directory goes right after, and a
    /// record must not outlive it). The close is one durable commit (two
    /// fdatasyncs) whatever came before it, so this pays off for a handle
    /// making several changes; for one change it costs what
    /// `EveryChange` does (redb's own close is skipped either way: see
    /// metadata.rs). A crash
    /// before the close loses those changes, consistently: the next open
    /// finds the records as they were and removes the directories of
    /// snapshots created meanwhile (no record names them).
    AtClose,
}

/// [`open`] with the given [`Durability`].
pub fn open_with(name: &str, root: &Path, durability: Durability) -> Result<Arc<dyn Snapshotter>> {
    let flavor = match name {
        "overlayfs" | "overlay" => Flavor::overlay_for_host(),
        "fuse-overlayfs" => Flavor::fuse_for_host()?,
        "native" => Flavor::Native,
        other => {
            return Err(Error::InvalidArgument(format!(
                "unknown snapshotter {other:?}; this berth has {}",
                SNAPSHOTTERS.join(", ")
            )));
        }
    };
    // The metadata database is one writer at a time across processes (an
    // exclusive file lock): another berth holding it briefly (a run
    // preparing its snapshot, gc, `berth snapshot`) is waited for; one that
    // keeps it (`berth snapshotter serve` on the same root) is named.
    let deadline = std::time::Instant::now() + OPEN_WAIT;
    let mut pause = std::time::Duration::from_millis(2);
    loop {
        match DirSnapshotter::open_with(root, flavor.clone(), durability) {
            Err(Error::Other(err)) if is_locked(&err) => {
                if std::time::Instant::now() >= deadline {
                    return Err(Error::Other(err.context(format!(
                        "snapshotter {name} at {}: its metadata is held by another process (a `berth snapshotter serve` \
                         on the same root?) for more than {}s",
                        root.display(),
                        OPEN_WAIT.as_secs()
                    ))));
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(50));
            }
            other => return Ok(Arc::new(other?)),
        }
    }
}

/// How long [`open`] waits for another process to release the metadata.
pub const OPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

fn is_locked(err: &anyhow::Error) -> bool {
    matches!(err.downcast_ref::<redb::DatabaseError>(), Some(redb::DatabaseError::DatabaseAlreadyOpen))
}

pub type Labels = BTreeMap<String, String>;

/// Kind of a snapshot, as in containerd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// Read-only view of a committed parent; cannot be committed.
    View,
    /// Writable; becomes a committed snapshot through `commit`.
    Active,
    /// Immutable; may be the parent of others.
    Committed,
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::View => "View",
            Kind::Active => "Active",
            Kind::Committed => "Committed",
        }
    }

    /// The spelling containerd's filters use (`kind==active`).
    pub fn filter_name(&self) -> &'static str {
        match self {
            Kind::View => "view",
            Kind::Active => "active",
            Kind::Committed => "committed",
        }
    }
}

/// What `stat` and `walk` return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub kind: Kind,
    /// The key (active/view) or name (committed).
    pub name: String,
    /// Name of the committed parent, if any.
    pub parent: Option<String>,
    pub labels: Labels,
    pub created: SystemTime,
    pub updated: SystemTime,
}

/// Disk usage of one snapshot (its own layer, not its parents).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub size: i64,
    pub inodes: i64,
}

/// A mount to perform, as containerd's `mount.Mount`: the caller mounts it
/// at a target of its choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `bind`, `overlay`, `fuse3.fuse-overlayfs`...
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

/// Error kinds a caller branches on (containerd's errdefs).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("snapshot {0}: not found")]
    NotFound(String),
    #[error("snapshot {0}: already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// containerd's snapshotter, synchronously. Implementations are safe to share
/// between threads; every method is atomic with respect to the metadata.
pub trait Snapshotter: Send + Sync {
    /// The name the snapshotter is selected by (`overlayfs`, `native`, ...).
    fn name(&self) -> &str;

    fn stat(&self, key: &str) -> Result<Info>;

    /// Update the labels of a snapshot. `fieldpaths` as containerd:
    /// empty means all labels are replaced; `labels` replaces them;
    /// `labels.KEY` sets or removes (when absent from `info`) one label.
    fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info>;

    fn usage(&self, key: &str) -> Result<Usage>;

    fn mounts(&self, key: &str) -> Result<Vec<Mount>>;

    /// A new active snapshot on a committed `parent` (or none).
    fn prepare(&self, key: &str, parent: Option<&str>, labels: Labels) -> Result<Vec<Mount>>;

    /// A new read-only view on a committed `parent` (or none).
    fn view(&self, key: &str, parent: Option<&str>, labels: Labels) -> Result<Vec<Mount>>;

    /// Turn the active snapshot `key` into the committed snapshot `name`.
    fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()>;

    /// Remove a snapshot; fails with FailedPrecondition while it has children.
    fn remove(&self, key: &str) -> Result<()>;

    /// Every snapshot matching any of `filters` (containerd filter syntax,
    /// e.g. `kind==committed`, `labels."a.b"==c`, `parent~=x`; the
    /// comma-separated terms of one filter must all match, as containerd's
    /// snapshots API defines: filters[0] or filters[1] or ...). An empty
    /// filter list matches all.
    fn walk(&self, filters: &[String], f: &mut dyn FnMut(&Info) -> Result<()>) -> Result<()>;

    /// Release resources; calling it twice is not an error.
    fn close(&self) -> Result<()>;
}
