//! Leases: named sets of resources kept from GC while the lease exists (a
//! running container's active snapshot, a pull that has stored blobs but not
//! yet its image record). One JSON file per lease under `<root>/leases/`,
//! written to a temp file and renamed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// A snapshot a lease keeps.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SnapshotRef {
    pub snapshotter: String,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub id: String,
    /// Seconds since the epoch.
    pub created: u64,
    /// After this (seconds since the epoch) GC deletes the lease itself.
    #[serde(default)]
    pub expires: Option<u64>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Blob digests (an index or manifest keeps what it references too).
    #[serde(default)]
    pub content: Vec<String>,
    #[serde(default)]
    pub snapshots: Vec<SnapshotRef>,
}

impl Lease {
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|e| secs(now) >= e)
    }
}

pub struct LeaseStore {
    dir: PathBuf,
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn validate_id(id: &str) -> anyhow::Result<()> {
    if id.is_empty()
        || id.len() > 200
        || id.starts_with('.')
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        bail!("invalid lease id {id:?}");
    }
    Ok(())
}

impl LeaseStore {
    /// `<root>/leases`, created if missing.
    pub fn open(root: &Path) -> anyhow::Result<LeaseStore> {
        let dir = root.join("leases");
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(LeaseStore { dir })
    }

    fn path(&self, id: &str) -> anyhow::Result<PathBuf> {
        validate_id(id)?;
        Ok(self.dir.join(format!("{id}.json")))
    }

    /// Creates a lease; an existing one with this id is an error.
    pub fn create(&self, id: &str, ttl: Option<Duration>, labels: BTreeMap<String, String>) -> anyhow::Result<Lease> {
        let path = self.path(id)?;
        if path.exists() {
            bail!("lease {id} already exists");
        }
        let now = SystemTime::now();
        let lease = Lease {
            id: id.into(),
            created: secs(now),
            expires: ttl.map(|t| secs(now) + t.as_secs()),
            labels,
            content: vec![],
            snapshots: vec![],
        };
        self.write(&lease)?;
        Ok(lease)
    }

    fn write(&self, lease: &Lease) -> anyhow::Result<()> {
        let path = self.path(&lease.id)?;
        let tmp = self.dir.join(format!(".{}.tmp-{}", lease.id, std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec_pretty(lease)?).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot rename to {}", path.display()))?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> anyhow::Result<Option<Lease>> {
        let path = self.path(id)?;
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| format!("invalid lease {}", path.display()))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Adds resources to an existing lease.
    pub fn add(&self, id: &str, content: &[String], snapshots: &[SnapshotRef]) -> anyhow::Result<()> {
        let mut lease = self.get(id)?.with_context(|| format!("lease {id} does not exist"))?;
        for c in content {
            if !lease.content.contains(c) {
                lease.content.push(c.clone());
            }
        }
        for s in snapshots {
            if !lease.snapshots.contains(s) {
                lease.snapshots.push(s.clone());
            }
        }
        self.write(&lease)
    }

    /// Deletes a lease; a missing one is not an error.
    pub fn delete(&self, id: &str) -> anyhow::Result<()> {
        let path = self.path(id)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }

    pub fn list(&self) -> anyhow::Result<Vec<Lease>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).with_context(|| format!("cannot read {}", self.dir.display()))? {
            let name = entry?.file_name().to_string_lossy().to_string();
            if let Some(id) = name.strip_suffix(".json").filter(|_| !name.starts_with('.'))
                && let Some(l) = self.get(id)?
            {
                out.push(l);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let s = LeaseStore::open(dir.path()).unwrap();
        s.create("ctr-1", None, BTreeMap::new()).unwrap();
        assert!(s.create("ctr-1", None, BTreeMap::new()).is_err());
        let r = SnapshotRef { snapshotter: "native".into(), key: "ctr-1".into() };
        s.add("ctr-1", &["sha256:aa".into()], std::slice::from_ref(&r)).unwrap();
        s.add("ctr-1", &["sha256:aa".into()], std::slice::from_ref(&r)).unwrap();
        let l = s.get("ctr-1").unwrap().unwrap();
        assert_eq!((l.content.len(), l.snapshots.len()), (1, 1));
        assert!(!l.is_expired(SystemTime::now()));
        let t = s.create("tmp", Some(Duration::from_secs(10)), BTreeMap::new()).unwrap();
        assert!(t.is_expired(SystemTime::now() + Duration::from_secs(11)));
        assert_eq!(s.list().unwrap().len(), 2);
        s.delete("ctr-1").unwrap();
        s.delete("ctr-1").unwrap();
        assert!(s.get("ctr-1").unwrap().is_none());
        assert!(s.create("../x", None, BTreeMap::new()).is_err());
    }
}
