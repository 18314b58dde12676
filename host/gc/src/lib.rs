//! Garbage collection: mark what is referenced, sweep the rest.
//!
//! Roots: the image store's targets (given by the caller), leases, and
//! snapshots labelled `containerd.io/gc.root`. From a root: an index keeps
//! its manifests, a manifest its config and layers, a config the chain-ID
//! snapshots of its `rootfs.diff_ids` (in every snapshotter), a snapshot its
//! parents. Everything else is unreferenced: [`Policy::all`] removes all of
//! it; a keep-storage policy removes the oldest first only while usage is
//! above the limit, and never what is younger than keep-duration.
//!
//! Writers that create data before it is referenced (a pull before the image
//! record, an unpack before the container's lease) hold [`GcLock::shared`];
//! a collection holds [`GcLock::exclusive`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow};
use berth_snapshot::Snapshotter;
use serde_json::Value;
use sha2::Digest as _;

pub mod lease;

pub use lease::{Lease, LeaseStore, SnapshotRef};

/// Snapshots with this label are roots (containerd's label).
pub const GC_ROOT_LABEL: &str = "containerd.io/gc.root";
/// Indexes, manifests and configs larger than this are not parsed.
const MAX_METADATA: u64 = 4 << 20;

/// The blobs as GC sees them.
pub trait ContentView {
    fn list(&self) -> anyhow::Result<Vec<Blob>>;
    /// A whole blob of at most `limit` bytes (`None` when absent).
    fn read(&self, digest: &str, limit: u64) -> anyhow::Result<Option<Vec<u8>>>;
    fn delete(&self, digest: &str) -> anyhow::Result<()>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
    pub modified: SystemTime,
}

/// berth's blob layout, `<root>/content/blobs/sha256/<hex>` (berth-content's store).
pub struct BlobDir {
    dir: PathBuf,
}

impl BlobDir {
    pub fn new(root: &Path) -> BlobDir {
        BlobDir { dir: root.join("content/blobs/sha256") }
    }

    fn path(&self, digest: &str) -> anyhow::Result<PathBuf> {
        let hex = digest.strip_prefix("sha256:").ok_or_else(|| anyhow!("invalid digest {digest}"))?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return Err(anyhow!("invalid digest {digest}"));
        }
        Ok(self.dir.join(hex))
    }
}

impl ContentView for BlobDir {
    fn list(&self) -> anyhow::Result<Vec<Blob>> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", self.dir.display())),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            // Only finished blobs (64 hex); temp files of an ingest are not blobs.
            if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let meta = entry.metadata()?;
            out.push(Blob { digest: format!("sha256:{name}"), size: meta.len(), modified: meta.modified()? });
        }
        Ok(out)
    }

    fn read(&self, digest: &str, limit: u64) -> anyhow::Result<Option<Vec<u8>>> {
        let path = self.path(digest)?;
        match std::fs::metadata(&path) {
            Ok(m) if m.len() > limit => return Ok(None),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot stat {}", path.display())),
        }
        Ok(Some(std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?))
    }

    fn delete(&self, digest: &str) -> anyhow::Result<()> {
        let path = self.path(digest)?;
        std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))
    }
}

/// An flock on `<root>/gc.lock`.
pub struct GcLock {
    _file: std::fs::File,
}

impl GcLock {
    fn take(root: &Path, op: rustix::fs::FlockOperation) -> anyhow::Result<GcLock> {
        std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
        let path = root.join("gc.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        loop {
            match rustix::fs::flock(&file, op) {
                Ok(()) => return Ok(GcLock { _file: file }),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(anyhow!("cannot lock {}: {e}", path.display())),
            }
        }
    }

    /// Held while creating data that is not referenced yet.
    pub fn shared(root: &Path) -> anyhow::Result<GcLock> {
        Self::take(root, rustix::fs::FlockOperation::LockShared)
    }

    /// Held by a collection.
    pub fn exclusive(root: &Path) -> anyhow::Result<GcLock> {
        Self::take(root, rustix::fs::FlockOperation::LockExclusive)
    }
}

/// What to remove.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Remove unreferenced data only while usage is above this.
    pub keep_storage: Option<u64>,
    /// Never remove unreferenced data younger than this.
    pub keep_duration: Option<Duration>,
}

impl Policy {
    /// Everything unreferenced (`berth gc`).
    pub fn all() -> Policy {
        Policy::default()
    }
}

/// A removable (or removed) item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Blob { digest: String, size: u64 },
    Snapshot { snapshotter: String, key: String, size: u64 },
    /// A partial download under `<root>/content/ingest`.
    Partial { path: PathBuf, size: u64 },
}

impl Item {
    pub fn size(&self) -> u64 {
        match self {
            Item::Blob { size, .. } | Item::Snapshot { size, .. } | Item::Partial { size, .. } => *size,
        }
    }
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Blob { digest, size } => write!(f, "content {digest} ({size} bytes)"),
            Item::Snapshot { snapshotter, key, size } => write!(f, "snapshot {snapshotter}/{key} ({size} bytes)"),
            Item::Partial { path, size } => write!(f, "partial download {} ({size} bytes)", path.display()),
        }
    }
}

#[derive(Debug, Default)]
pub struct Report {
    /// In the order removed (or, on a dry run, that would be).
    pub removed: Vec<Item>,
    pub expired_leases: Vec<String>,
    /// Usage before, in bytes (blobs plus snapshots' own usage).
    pub usage_before: u64,
    pub kept_content: usize,
    pub kept_snapshots: usize,
}

impl Report {
    pub fn freed(&self) -> u64 {
        self.removed.iter().map(Item::size).sum()
    }
}

/// One collection over a content store and the snapshotters.
pub struct Collector<'a> {
    pub content: &'a dyn ContentView,
    /// `(name, snapshotter)`: the name leases and labels use.
    pub snapshotters: Vec<(String, &'a dyn Snapshotter)>,
    pub leases: &'a LeaseStore,
    /// Digests of the image store's targets.
    pub image_roots: Vec<String>,
    /// Snapshots in use that no lease names (e.g. a container record's).
    pub pinned_snapshots: Vec<SnapshotRef>,
}

struct SnapState {
    info: berth_snapshot::Info,
    size: u64,
}

impl Collector<'_> {
    /// Marks, then removes what `policy` allows (nothing when `dry_run`).
    /// The caller holds [`GcLock::exclusive`].
    pub fn collect(&self, policy: Policy, dry_run: bool) -> anyhow::Result<Report> {
        let now = SystemTime::now();
        let mut report = Report::default();

        // Leases: expired ones go first (then they keep nothing).
        let mut leases = Vec::new();
        for l in self.leases.list()? {
            if l.is_expired(now) {
                if !dry_run {
                    self.leases.delete(&l.id)?;
                }
                report.expired_leases.push(l.id);
            } else {
                leases.push(l);
            }
        }

        // Content marking.
        let mut content_roots: Vec<String> = self.image_roots.clone();
        for l in &leases {
            content_roots.extend(l.content.iter().cloned());
        }
        let mut kept_content = BTreeSet::new();
        let mut chain_ids = BTreeSet::new();
        let mut stack = content_roots;
        while let Some(d) = stack.pop() {
            if !kept_content.insert(d.clone()) {
                continue;
            }
            let Some(body) = self.content.read(&d, MAX_METADATA)? else { continue };
            let Ok(v) = serde_json::from_slice::<Value>(&body) else { continue };
            for desc in children(&v) {
                stack.push(desc);
            }
            if let Some(diffs) = v.pointer("/rootfs/diff_ids").and_then(Value::as_array) {
                let diffs: Vec<&str> = diffs.iter().filter_map(Value::as_str).collect();
                chain_ids.extend(chain_ids_of(&diffs));
            }
        }

        // Snapshot marking, per snapshotter.
        let mut snaps: BTreeMap<(String, String), SnapState> = BTreeMap::new();
        for (name, sn) in &self.snapshotters {
            let mut infos = Vec::new();
            sn.walk(&[], &mut |i| {
                infos.push(i.clone());
                Ok(())
            })
            .with_context(|| format!("cannot walk snapshotter {name}"))?;
            for info in infos {
                let size = sn.usage(&info.name).map(|u| u.size.max(0) as u64).unwrap_or(0);
                snaps.insert((name.clone(), info.name.clone()), SnapState { info, size });
            }
        }
        let mut kept_snaps: BTreeSet<(String, String)> = BTreeSet::new();
        let mut sstack: Vec<(String, String)> = Vec::new();
        for ((sn, key), st) in &snaps {
            if chain_ids.contains(key) || st.info.labels.contains_key(GC_ROOT_LABEL) {
                sstack.push((sn.clone(), key.clone()));
            }
        }
        for r in leases.iter().flat_map(|l| l.snapshots.iter()).chain(&self.pinned_snapshots) {
            sstack.push((r.snapshotter.clone(), r.key.clone()));
        }
        while let Some(k) = sstack.pop() {
            if !kept_snaps.insert(k.clone()) {
                continue;
            }
            if let Some(parent) = snaps.get(&k).and_then(|s| s.info.parent.clone()) {
                sstack.push((k.0.clone(), parent));
            }
        }

        // Candidates.
        let blobs = self.content.list()?;
        report.usage_before =
            blobs.iter().map(|b| b.size).sum::<u64>() + snaps.values().map(|s| s.size).sum::<u64>();
        report.kept_content = blobs.iter().filter(|b| kept_content.contains(&b.digest)).count();
        report.kept_snapshots = snaps.keys().filter(|k| kept_snaps.contains(*k)).count();
        let young = |t: SystemTime| policy.keep_duration.is_some_and(|d| now.duration_since(t).unwrap_or_default() < d);
        let mut blob_candidates: Vec<&Blob> =
            blobs.iter().filter(|b| !kept_content.contains(&b.digest) && !young(b.modified)).collect();
        let mut snap_left: BTreeMap<(String, String), &SnapState> = snaps
            .iter()
            .filter(|(k, s)| !kept_snaps.contains(*k) && !young(s.info.created))
            .map(|(k, s)| (k.clone(), s))
            .collect();
        // Children still present (kept or not): a snapshot goes only once it has none.
        let mut children: BTreeMap<(String, String), usize> = BTreeMap::new();
        for ((sn, _), s) in &snaps {
            if let Some(p) = &s.info.parent {
                *children.entry((sn.clone(), p.clone())).or_default() += 1;
            }
        }

        let mut usage = report.usage_before;
        let over = |usage: u64| policy.keep_storage.is_none_or(|limit| usage > limit);
        blob_candidates.sort_by_key(|b| b.modified);
        let mut blob_iter = blob_candidates.into_iter().peekable();
        while over(usage) {
            // The oldest among the next blob and the removable (leaf) snapshots.
            let leaf = snap_left
                .iter()
                .filter(|(k, _)| children.get(*k).copied().unwrap_or(0) == 0)
                .min_by_key(|(_, s)| s.info.created)
                .map(|(k, s)| (k.clone(), s.info.created, s.size));
            let take_snapshot = match (&leaf, blob_iter.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((_, t, _)), Some(b)) => *t <= b.modified,
            };
            let item = if take_snapshot {
                let ((sn, key), _, size) = leaf.expect("checked");
                snap_left.remove(&(sn.clone(), key.clone()));
                let parent = snaps[&(sn.clone(), key.clone())].info.parent.clone();
                if !dry_run {
                    let s = self.snapshotters.iter().find(|(n, _)| *n == sn).map(|(_, s)| *s).expect("walked");
                    s.remove(&key).with_context(|| format!("cannot remove snapshot {sn}/{key}"))?;
                }
                if let Some(p) = parent
                    && let Some(c) = children.get_mut(&(sn.clone(), p))
                {
                    *c -= 1;
                }
                Item::Snapshot { snapshotter: sn, key, size }
            } else {
                let b = blob_iter.next().expect("peeked");
                if !dry_run {
                    self.content.delete(&b.digest)?;
                }
                Item::Blob { digest: b.digest.clone(), size: b.size }
            };
            usage = usage.saturating_sub(item.size());
            tracing::info!("gc: {}{item}", if dry_run { "would remove " } else { "removed " });
            report.removed.push(item);
        }
        Ok(report)
    }
}

/// Partial downloads (`<root>/content/ingest/*.partial`, kept for resuming
/// a pull) not touched for `older_than`, with their lock files. Call with
/// [`GcLock::exclusive`] held: no pull is writing then.
pub fn clean_partials(root: &Path, older_than: Duration, dry_run: bool) -> anyhow::Result<Vec<Item>> {
    let dir = root.join("content/ingest");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let now = SystemTime::now();
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("partial") {
            continue;
        }
        let meta = std::fs::metadata(&path)?;
        if now.duration_since(meta.modified()?).unwrap_or_default() < older_than {
            continue;
        }
        if !dry_run {
            std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            let _ = std::fs::remove_file(path.with_extension("lock"));
        }
        out.push(Item::Partial { path, size: meta.len() });
    }
    Ok(out)
}

/// Digests an index or manifest references.
fn children(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |d: &Value| {
        if let Some(s) = d.get("digest").and_then(Value::as_str) {
            out.push(s.to_string());
        }
    };
    if let Some(c) = v.get("config")
        && c.is_object()
        && c.get("digest").is_some()
    {
        push(c);
    }
    for key in ["manifests", "layers"] {
        if let Some(list) = v.get(key).and_then(Value::as_array) {
            list.iter().for_each(&mut push);
        }
    }
    if let Some(s) = v.get("subject") {
        push(s);
    }
    out
}

/// OCI chain IDs: ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
pub fn chain_ids_of(diff_ids: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in diff_ids {
        let next = match out.last() {
            None => d.to_string(),
            Some(prev) => format!("sha256:{}", hex::encode(sha2::Sha256::digest(format!("{prev} {d}").as_bytes()))),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let c = chain_ids_of(&[&a, &b]);
        assert_eq!(c[0], a);
        let expect = format!("sha256:{}", hex::encode(sha2::Sha256::digest(format!("{a} {b}").as_bytes())));
        assert_eq!(c[1], expect);
    }

    #[test]
    fn children_of_index_and_manifest() {
        let v: Value = serde_json::from_str(
            r#"{"config":{"digest":"sha256:c"},"layers":[{"digest":"sha256:l1"},{"digest":"sha256:l2"}]}"#,
        )
        .unwrap();
        assert_eq!(children(&v), vec!["sha256:c", "sha256:l1", "sha256:l2"]);
        // An image config's "config" (Cmd, Env...) is not a descriptor.
        let v: Value = serde_json::from_str(r#"{"config":{"Cmd":["sh"]},"rootfs":{"diff_ids":[]}}"#).unwrap();
        assert!(children(&v).is_empty());
    }
}
