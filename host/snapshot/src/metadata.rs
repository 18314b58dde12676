//! Snapshot metadata in one redb database: every key (active, view,
//! committed) in one key space, with containerd's rules and error kinds.
//! Each operation is one transaction; `create` runs the caller's
//! filesystem step (renaming the prepared directory into place) inside the
//! transaction, before it commits.

use std::collections::HashSet;
use std::mem::ManuallyDrop;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use anyhow::Context;
use redb::backends::FileBackend;
use redb::{BackendError, Builder, Database, ReadableDatabase, ReadableTable, StorageBackend, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::{Error, Info, Kind, Labels, Result};

/// key or name -> JSON [`Record`].
const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
/// `parent \0 child` -> (): children of a snapshot without a scan.
const CHILDREN: TableDefinition<&str, ()> = TableDefinition::new("children");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
const NEXT_ID: &str = "next_id";

/// containerd's limit on one label (key and value together).
const MAX_LABEL_SIZE: usize = 4096;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    /// Names the snapshot's directory; never reused while the record exists.
    pub id: u64,
    pub kind: Kind,
    pub parent: Option<String>,
    /// Ids of the parent chain, nearest first (parents are immutable while
    /// they have children, so this never goes stale).
    pub parent_ids: Vec<u64>,
    pub labels: Labels,
    pub created: SystemTime,
    pub updated: SystemTime,
}

impl Record {
    pub fn info(&self, name: &str) -> Info {
        Info {
            kind: self.kind,
            name: name.to_string(),
            parent: self.parent.clone(),
            labels: self.labels.clone(),
            created: self.created,
            updated: self.updated,
        }
    }
}

fn db_error(e: impl Into<redb::Error>) -> Error {
    Error::Other(anyhow::Error::new(e.into()).context("snapshot metadata database"))
}

fn decode(key: &str, bytes: &[u8]) -> Result<Record> {
    serde_json::from_slice(bytes).with_context(|| format!("decoding the metadata of snapshot {key:?}")).map_err(Error::Other)
}

fn child_key(parent: &str, child: &str) -> String {
    format!("{parent}\0{child}")
}

fn validate_key(what: &str, key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidArgument(format!("snapshot {what} must not be empty")));
    }
    if key.contains('\0') {
        return Err(Error::InvalidArgument(format!("snapshot {what} {key:?} contains a NUL byte")));
    }
    Ok(())
}

pub(crate) fn validate_labels(labels: &Labels) -> Result<()> {
    for (key, value) in labels {
        if key.len() + value.len() > MAX_LABEL_SIZE {
            return Err(Error::InvalidArgument(format!(
                "label {key:?}: key and value length ({} bytes) greater than maximum size ({MAX_LABEL_SIZE} bytes)",
                key.len() + value.len()
            )));
        }
    }
    Ok(())
}

/// The metadata database. Every durable commit records redb's allocator
/// state (quick repair), so a handle is let go of without redb's close:
/// that close is one more allocator-state commit and a clean-shutdown
/// header, four fdatasyncs per handle (a `berth run --rm` opens two). The
/// file is left as a crash right after the last commit would leave it, and
/// the next open loads the recorded allocator state instead of rebuilding it
/// (one header fdatasync there). What is durable and when is unchanged.
pub(crate) struct Metadata {
    db: ManuallyDrop<Database>,
    file: Releasable,
    durability: redb::Durability,
    /// A non-durable transaction was begun since the open
    /// (`Durability::AtClose`): the drop makes it durable first, with one
    /// more durable commit.
    pending: AtomicBool,
}

impl Drop for Metadata {
    fn drop(&mut self) {
        let settled = !self.pending.load(Ordering::Acquire)
            || self.begin_write_with(redb::Durability::Immediate).and_then(|txn| txn.commit().map_err(db_error)).is_ok();
        if !settled || std::thread::panicking() {
            // redb's own close makes pending commits durable (or logs why not).
            // SAFETY: `db` is not used after this.
            unsafe { ManuallyDrop::drop(&mut self.db) };
            return;
        }
        // SAFETY: `db` is not used after this; leaked, never closed by redb.
        std::mem::forget(unsafe { ManuallyDrop::take(&mut self.db) });
        self.file.release();
    }
}

/// redb's file backend behind a switch: [`Metadata`]'s drop closes the
/// file here (releasing its locks, so other processes may open it) once the
/// database that uses it is leaked.
#[derive(Debug, Clone)]
struct Releasable(Arc<RwLock<Option<FileBackend>>>);

impl Releasable {
    fn with<R, E: From<std::io::Error>>(&self, f: impl FnOnce(&FileBackend) -> std::result::Result<R, E>) -> std::result::Result<R, E> {
        match self.0.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(backend) => f(backend),
            None => Err(std::io::Error::other("the snapshot metadata file was closed").into()),
        }
    }

    fn release(&self) {
        if let Some(backend) = self.0.write().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = backend.close();
        }
    }
}

impl StorageBackend for Releasable {
    fn len(&self) -> std::io::Result<u64> {
        self.with(|b| b.len())
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.with(|b| b.read(offset, out))
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.with(|b| b.set_len(len))
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.with(|b| b.sync_data())
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.with(|b| b.write(offset, data))
    }
    fn close(&self) -> std::io::Result<()> {
        self.release();
        Ok(())
    }
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> std::result::Result<bool, BackendError> {
        self.with(|b| b.try_lock_range(start, end))
    }
    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> std::result::Result<bool, BackendError> {
        self.with(|b| b.try_lock_shared_range(start, end))
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> std::result::Result<(), BackendError> {
        self.with(|b| b.lock_range(start, end))
    }
    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> std::result::Result<(), BackendError> {
        self.with(|b| b.lock_shared_range(start, end))
    }
    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> std::result::Result<(), BackendError> {
        self.with(|b| b.unlock_range(start, end))
    }
    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> std::result::Result<bool, BackendError> {
        self.with(|b| b.query_lock_range(start, end))
    }
}

impl Metadata {
    pub fn open(path: &Path, durability: crate::Durability) -> Result<Metadata> {
        let context = || format!("opening snapshot metadata {}", path.display());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(context)
            .map_err(Error::Other)?;
        let file = Releasable(Arc::new(RwLock::new(Some(FileBackend::new(file).with_context(context).map_err(Error::Other)?))));
        let db = Builder::new().create_with_backend(file.clone()).with_context(context).map_err(Error::Other)?;
        // The tables are created once: a write transaction on every open
        // cost a durable commit (an fdatasync) even when they were all there.
        let ready = {
            let txn = db.begin_read().map_err(db_error)?;
            txn.open_table(SNAPSHOTS).is_ok() && txn.open_table(CHILDREN).is_ok() && txn.open_table(COUNTERS).is_ok()
        };
        if !ready {
            let mut txn = db.begin_write().map_err(db_error)?;
            txn.set_quick_repair(true);
            txn.open_table(SNAPSHOTS).map_err(db_error)?;
            txn.open_table(CHILDREN).map_err(db_error)?;
            txn.open_table(COUNTERS).map_err(db_error)?;
            txn.commit().map_err(db_error)?;
        }
        let durability = match durability {
            crate::Durability::EveryChange => redb::Durability::Immediate,
            // redb's close commits durably whatever came before it.
            crate::Durability::AtClose => redb::Durability::None,
        };
        Ok(Metadata { db: ManuallyDrop::new(db), file, durability, pending: AtomicBool::new(false) })
    }

    /// A write transaction with this handle's durability.
    fn begin_write(&self) -> Result<WriteTransaction> {
        self.begin_write_with(self.durability)
    }

    fn begin_write_with(&self, durability: redb::Durability) -> Result<WriteTransaction> {
        let mut txn = self.db.begin_write().map_err(db_error)?;
        txn.set_durability(durability).map_err(|e| Error::Other(anyhow::anyhow!("snapshot metadata database: {e}")))?;
        // What lets the drop skip redb's close (see `Metadata`). Non-durable
        // commits are made durable by the next durable one. Noted before the
        // commit: a failed one is then made durable (or closed) properly.
        if matches!(durability, redb::Durability::None) {
            self.pending.store(true, Ordering::Release);
        } else {
            txn.set_quick_repair(true);
        }
        Ok(txn)
    }

    pub fn get(&self, key: &str) -> Result<Option<Record>> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(SNAPSHOTS).map_err(db_error)?;
        match table.get(key).map_err(db_error)? {
            Some(bytes) => Ok(Some(decode(key, bytes.value())?)),
            None => Ok(None),
        }
    }

    pub fn require(&self, key: &str) -> Result<Record> {
        self.get(key)?.ok_or_else(|| Error::NotFound(key.to_string()))
    }

    /// Every snapshot, in key order, from one consistent read.
    pub fn all(&self) -> Result<Vec<(String, Record)>> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(SNAPSHOTS).map_err(db_error)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(db_error)? {
            let (key, value) = entry.map_err(db_error)?;
            out.push((key.value().to_string(), decode(key.value(), value.value())?));
        }
        Ok(out)
    }

    pub fn ids(&self) -> Result<HashSet<u64>> {
        Ok(self.all()?.into_iter().map(|(_, r)| r.id).collect())
    }

    /// The committed parent's record, checked as containerd does.
    pub fn check_new(&self, key: &str, parent: Option<&str>, labels: &Labels) -> Result<Option<Record>> {
        validate_key("key", key)?;
        validate_labels(labels)?;
        if self.get(key)?.is_some() {
            return Err(Error::AlreadyExists(key.to_string()));
        }
        parent.map(|p| self.committed_parent(p)).transpose()
    }

    fn committed_parent(&self, parent: &str) -> Result<Record> {
        let record = self.get(parent)?.ok_or_else(|| Error::NotFound(parent.to_string()))?;
        if record.kind != Kind::Committed {
            return Err(Error::InvalidArgument(format!("parent {parent:?} is not a committed snapshot (it is {})", record.kind.filter_name())));
        }
        Ok(record)
    }

    /// Records a new snapshot and, inside the same transaction, runs
    /// `place(id)` (moving its directory into place); the record commits
    /// only when `place` succeeded.
    pub fn create(
        &self,
        kind: Kind,
        key: &str,
        parent: Option<&str>,
        labels: Labels,
        place: impl FnOnce(u64) -> Result<()>,
    ) -> Result<Record> {
        let txn = self.begin_write()?;
        let record = {
            let mut snapshots = txn.open_table(SNAPSHOTS).map_err(db_error)?;
            if snapshots.get(key).map_err(db_error)?.is_some() {
                return Err(Error::AlreadyExists(key.to_string()));
            }
            let parent_ids = match parent {
                None => Vec::new(),
                Some(p) => {
                    let bytes = snapshots.get(p).map_err(db_error)?.ok_or_else(|| Error::NotFound(p.to_string()))?;
                    let record = decode(p, bytes.value())?;
                    if record.kind != Kind::Committed {
                        return Err(Error::InvalidArgument(format!("parent {p:?} is not a committed snapshot")));
                    }
                    std::iter::once(record.id).chain(record.parent_ids).collect()
                }
            };
            let id = next_id(&txn)?;
            let now = SystemTime::now();
            let record = Record { id, kind, parent: parent.map(str::to_string), parent_ids, labels, created: now, updated: now };
            snapshots.insert(key, serde_json::to_vec(&record).expect("records serialize").as_slice()).map_err(db_error)?;
            if let Some(p) = parent {
                txn.open_table(CHILDREN).map_err(db_error)?.insert(child_key(p, key).as_str(), ()).map_err(db_error)?;
            }
            record
        };
        place(record.id)?;
        crate::failpoint::hit("create-before-db-commit");
        txn.commit().map_err(db_error)?;
        Ok(record)
    }

    pub fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<Record> {
        validate_key("name", name)?;
        validate_labels(&labels)?;
        let txn = self.begin_write()?;
        let record = {
            let mut snapshots = txn.open_table(SNAPSHOTS).map_err(db_error)?;
            let mut record = match snapshots.get(key).map_err(db_error)? {
                Some(bytes) => decode(key, bytes.value())?,
                None => return Err(Error::NotFound(key.to_string())),
            };
            if record.kind != Kind::Active {
                return Err(Error::FailedPrecondition(format!(
                    "snapshot {key:?} is not active (it is {}): only active snapshots can be committed",
                    record.kind.filter_name()
                )));
            }
            if snapshots.get(name).map_err(db_error)?.is_some() {
                return Err(Error::AlreadyExists(name.to_string()));
            }
            snapshots.remove(key).map_err(db_error)?;
            let now = SystemTime::now();
            record.kind = Kind::Committed;
            record.labels = labels;
            record.created = now;
            record.updated = now;
            snapshots.insert(name, serde_json::to_vec(&record).expect("records serialize").as_slice()).map_err(db_error)?;
            if let Some(p) = &record.parent {
                let mut children = txn.open_table(CHILDREN).map_err(db_error)?;
                children.remove(child_key(p, key).as_str()).map_err(db_error)?;
                children.insert(child_key(p, name).as_str(), ()).map_err(db_error)?;
            }
            record
        };
        txn.commit().map_err(db_error)?;
        Ok(record)
    }

    /// Forgets `key` (its directory is the caller's to remove after).
    /// Durable when it returns whatever the handle's durability: the
    /// directory goes right after, and a record must not outlive it.
    pub fn remove(&self, key: &str) -> Result<Record> {
        let txn = self.begin_write_with(redb::Durability::Immediate)?;
        let record = {
            let mut snapshots = txn.open_table(SNAPSHOTS).map_err(db_error)?;
            let record = match snapshots.get(key).map_err(db_error)? {
                Some(bytes) => decode(key, bytes.value())?,
                None => return Err(Error::NotFound(key.to_string())),
            };
            let mut children = txn.open_table(CHILDREN).map_err(db_error)?;
            let (start, end) = (format!("{key}\0"), format!("{key}\u{1}"));
            let kids: Vec<String> = children
                .range(start.as_str()..end.as_str())
                .map_err(db_error)?
                .map(|e| e.map(|(k, _)| k.value()[start.len()..].to_string()))
                .collect::<std::result::Result<_, _>>()
                .map_err(db_error)?;
            if !kids.is_empty() {
                return Err(Error::FailedPrecondition(format!(
                    "cannot remove snapshot {key:?}: it is the parent of {}",
                    kids.join(", ")
                )));
            }
            snapshots.remove(key).map_err(db_error)?;
            if let Some(p) = &record.parent {
                children.remove(child_key(p, key).as_str()).map_err(db_error)?;
            }
            record
        };
        txn.commit().map_err(db_error)?;
        Ok(record)
    }

    /// containerd's UpdateInfo: only labels are mutable.
    pub fn update(&self, info: &Info, fieldpaths: &[String]) -> Result<Record> {
        let key = info.name.as_str();
        let txn = self.begin_write()?;
        let record = {
            let mut snapshots = txn.open_table(SNAPSHOTS).map_err(db_error)?;
            let mut record = match snapshots.get(key).map_err(db_error)? {
                Some(bytes) => decode(key, bytes.value())?,
                None => return Err(Error::NotFound(key.to_string())),
            };
            if fieldpaths.is_empty() {
                record.labels = info.labels.clone();
            }
            for path in fieldpaths {
                if path == "labels" {
                    record.labels = info.labels.clone();
                } else if let Some(label) = path.strip_prefix("labels.") {
                    match info.labels.get(label).filter(|v| !v.is_empty()) {
                        Some(value) => record.labels.insert(label.to_string(), value.clone()),
                        None => record.labels.remove(label),
                    };
                } else {
                    return Err(Error::InvalidArgument(format!("cannot update {path:?} field on snapshot {key:?}: only labels are mutable")));
                }
            }
            record.labels.retain(|_, v| !v.is_empty());
            validate_labels(&record.labels)?;
            record.updated = SystemTime::now();
            snapshots.insert(key, serde_json::to_vec(&record).expect("records serialize").as_slice()).map_err(db_error)?;
            record
        };
        txn.commit().map_err(db_error)?;
        Ok(record)
    }
}

fn next_id(txn: &WriteTransaction) -> Result<u64> {
    let mut counters = txn.open_table(COUNTERS).map_err(db_error)?;
    let id = counters.get(NEXT_ID).map_err(db_error)?.map(|v| v.value()).unwrap_or(1);
    counters.insert(NEXT_ID, id + 1).map_err(db_error)?;
    Ok(id)
}
