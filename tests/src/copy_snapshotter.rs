//! A minimal but real directory snapshotter for the tests: every snapshot
//! is a directory, a new one starts as a full copy (`cp -a`) of its parent,
//! mounts are bind mounts, metadata lives in memory. Enough for containerd
//! to unpack images into and run containers on through
//! `berth snapshotter serve`'s gRPC service, before berth-snapshot's own
//! snapshotters are wired in (they replace it in the matrix).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::Context;
use berth_snapshot::{Error, Info, Kind, Labels, Mount, Result, Snapshotter, Usage};

pub struct CopySnapshotter {
    root: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// key or name -> (directory id, info)
    snapshots: BTreeMap<String, (u64, Info)>,
}

impl CopySnapshotter {
    pub fn new(root: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root.join("snapshots"))?;
        Ok(CopySnapshotter { root: root.to_path_buf(), state: Mutex::new(State::default()) })
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.root.join("snapshots").join(id.to_string())
    }

    fn mounts_of(&self, id: u64, kind: Kind) -> Vec<Mount> {
        let mode = if kind == Kind::Active { "rw" } else { "ro" };
        vec![Mount {
            kind: "bind".into(),
            source: self.dir(id).to_string_lossy().into_owned(),
            options: vec!["rbind".into(), mode.into()],
        }]
    }

    fn create(&self, kind: Kind, key: &str, parent: Option<&str>, labels: Labels) -> Result<Vec<Mount>> {
        let mut state = self.state.lock().unwrap();
        if key.is_empty() {
            return Err(Error::InvalidArgument("snapshot key must not be empty".into()));
        }
        if state.snapshots.contains_key(key) {
            return Err(Error::AlreadyExists(key.into()));
        }
        let parent_dir = match parent {
            None => None,
            Some(parent) => match state.snapshots.get(parent) {
                None => return Err(Error::NotFound(parent.into())),
                Some((_, info)) if info.kind != Kind::Committed => {
                    return Err(Error::InvalidArgument(format!("parent {parent} is not a committed snapshot")));
                }
                Some((id, _)) => Some(self.dir(*id)),
            },
        };
        state.next_id += 1;
        let id = state.next_id;
        let dir = self.dir(id);
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        if let Some(parent_dir) = parent_dir {
            let status = Command::new("cp").arg("-a").arg("--").arg(parent_dir.join(".")).arg(&dir).status().context("cp")?;
            if !status.success() {
                std::fs::remove_dir_all(&dir).ok();
                return Err(Error::Other(anyhow::anyhow!("copying the parent of {key} failed: {status}")));
            }
        }
        let now = SystemTime::now();
        let info = Info { kind, name: key.into(), parent: parent.map(str::to_string), labels, created: now, updated: now };
        state.snapshots.insert(key.into(), (id, info));
        Ok(self.mounts_of(id, kind))
    }
}

impl Snapshotter for CopySnapshotter {
    fn name(&self) -> &str {
        "copy"
    }

    fn stat(&self, key: &str) -> Result<Info> {
        let state = self.state.lock().unwrap();
        state.snapshots.get(key).map(|(_, info)| info.clone()).ok_or_else(|| Error::NotFound(key.into()))
    }

    fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let mut state = self.state.lock().unwrap();
        let (_, current) = state.snapshots.get_mut(&info.name).ok_or_else(|| Error::NotFound(info.name.clone()))?;
        if fieldpaths.is_empty() {
            current.labels = info.labels.clone();
        }
        for path in fieldpaths {
            if path == "labels" {
                current.labels = info.labels.clone();
            } else if let Some(key) = path.strip_prefix("labels.") {
                match info.labels.get(key) {
                    Some(value) => current.labels.insert(key.into(), value.clone()),
                    None => current.labels.remove(key),
                };
            } else {
                return Err(Error::InvalidArgument(format!("cannot update {path:?} of snapshot {}", info.name)));
            }
        }
        current.updated = SystemTime::now();
        Ok(current.clone())
    }

    fn usage(&self, key: &str) -> Result<Usage> {
        let id = self.state.lock().unwrap().snapshots.get(key).map(|(id, _)| *id).ok_or_else(|| Error::NotFound(key.into()))?;
        let mut usage = Usage::default();
        let mut seen = std::collections::HashSet::new();
        let mut pending = vec![self.dir(id)];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
                let entry = entry.map_err(anyhow::Error::from)?;
                let meta = entry.metadata().map_err(anyhow::Error::from)?;
                if seen.insert(meta.ino()) {
                    usage.inodes += 1;
                    usage.size += meta.blocks() as i64 * 512;
                }
                if meta.is_dir() {
                    pending.push(entry.path());
                }
            }
        }
        Ok(usage)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let state = self.state.lock().unwrap();
        let (id, info) = state.snapshots.get(key).ok_or_else(|| Error::NotFound(key.into()))?;
        Ok(self.mounts_of(*id, info.kind))
    }

    fn prepare(&self, key: &str, parent: Option<&str>, labels: Labels) -> Result<Vec<Mount>> {
        self.create(Kind::Active, key, parent, labels)
    }

    fn view(&self, key: &str, parent: Option<&str>, labels: Labels) -> Result<Vec<Mount>> {
        self.create(Kind::View, key, parent, labels)
    }

    fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()> {
        let mut state = self.state.lock().unwrap();
        if state.snapshots.contains_key(name) {
            return Err(Error::AlreadyExists(name.into()));
        }
        match state.snapshots.get(key) {
            None => return Err(Error::NotFound(key.into())),
            Some((_, info)) if info.kind != Kind::Active => {
                return Err(Error::FailedPrecondition(format!("snapshot {key} is not active")));
            }
            Some(_) => {}
        }
        let (id, mut info) = state.snapshots.remove(key).expect("checked above");
        info.kind = Kind::Committed;
        info.name = name.into();
        info.labels = labels;
        info.updated = SystemTime::now();
        state.snapshots.insert(name.into(), (id, info));
        Ok(())
    }

    fn remove(&self, key: &str) -> Result<()> {
        let mut state = self.state.lock().unwrap();
        let (id, _) = state.snapshots.get(key).ok_or_else(|| Error::NotFound(key.into()))?;
        let id = *id;
        if state.snapshots.values().any(|(_, info)| info.parent.as_deref() == Some(key)) {
            return Err(Error::FailedPrecondition(format!("snapshot {key} has children")));
        }
        std::fs::remove_dir_all(self.dir(id)).with_context(|| format!("removing {}", self.dir(id).display()))?;
        state.snapshots.remove(key);
        Ok(())
    }

    fn walk(&self, filters: &[String], f: &mut dyn FnMut(&Info) -> Result<()>) -> Result<()> {
        let parsed: Vec<Vec<Term>> = filters.iter().map(|f| parse_filter(f)).collect::<Result<_>>()?;
        let infos: Vec<Info> = self.state.lock().unwrap().snapshots.values().map(|(_, info)| info.clone()).collect();
        for info in infos {
            // containerd: filters[0] OR filters[1] ...; terms within one AND.
            if parsed.is_empty() || parsed.iter().any(|terms| terms.iter().all(|t| t.matches(&info))) {
                f(&info)?;
            }
        }
        Ok(())
    }

    fn close(&self) -> Result<()> {
        Ok(())
    }
}

/// One `field==value`, `field!=value` or `field` (present) term.
struct Term {
    field: Vec<String>,
    op: Option<(bool, String)>,
}

impl Term {
    fn matches(&self, info: &Info) -> bool {
        let value = match self.field.first().map(String::as_str) {
            Some("kind") => Some(info.kind.as_str().to_lowercase()),
            Some("name") => Some(info.name.clone()),
            Some("parent") => info.parent.clone(),
            Some("labels") => self.field.get(1).and_then(|k| info.labels.get(k).cloned()),
            _ => None,
        };
        match (&self.op, value) {
            (None, value) => value.is_some(),
            (Some((true, want)), Some(value)) => *want == value,
            (Some((false, want)), Some(value)) => *want != value,
            (Some((equal, _)), None) => !equal,
        }
    }
}

/// The subset of containerd's filter syntax the tests use: comma-separated
/// terms, `labels."dotted.key"`, double-quoted values.
fn parse_filter(filter: &str) -> Result<Vec<Term>> {
    filter
        .split(',')
        .map(|term| {
            let (field, op) = match term.split_once("==").map(|(f, v)| (f, true, v)).or_else(|| term.split_once("!=").map(|(f, v)| (f, false, v))) {
                Some((field, equal, value)) => (field, Some((equal, value.trim().trim_matches('"').to_string()))),
                None => (term, None),
            };
            let field = field.trim();
            let path = match field.split_once('.') {
                Some((head, rest)) => vec![head.to_string(), rest.trim_matches('"').to_string()],
                None => vec![field.to_string()],
            };
            if path[0].is_empty() || !["kind", "name", "parent", "labels"].contains(&path[0].as_str()) {
                return Err(Error::InvalidArgument(format!("filter {filter:?}: unknown field {field:?}")));
            }
            Ok(Term { field: path, op })
        })
        .collect()
}
