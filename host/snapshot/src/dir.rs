//! The directory snapshotters: every snapshot is `<root>/s/<id>/` holding
//! `fs/` (its own layer: the overlay upper dir, or a full copy for native)
//! and, for active overlay snapshots, `work/`. Metadata is in
//! `<root>/metadata.redb`.
//!
//! Creation is crash-safe: the directory is built under `<root>/tmp/`,
//! renamed to `<root>/s/<id>` inside the metadata transaction, and the
//! transaction commits last. Opening removes whatever a kill left behind:
//! everything in `tmp/`, and directories in `s/` whose id has no record.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::Context;

use crate::failpoint;
use crate::metadata::{Metadata, Record};
use crate::{Error, Info, Kind, Labels, Mount, Result, Snapshotter, Usage};

/// How snapshots are layered and mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flavor {
    /// Kernel overlayfs: `index=off` when the kernel has the index feature,
    /// `userxattr` inside a user namespace.
    Overlay { index_off: bool, userxattr: bool },
    /// fuse-overlayfs (mount kind `fuse3.fuse-overlayfs`).
    FuseOverlay,
    /// Full copies and bind mounts: works on any filesystem.
    Native,
}

impl Flavor {
    pub fn overlay_for_host() -> Flavor {
        Flavor::Overlay {
            index_off: Path::new("/sys/module/overlay/parameters/index").exists(),
            userxattr: crate::probe::in_user_namespace(),
        }
    }

    /// fuse-overlayfs when its binary and /dev/fuse are here.
    pub fn fuse_for_host() -> Result<Flavor> {
        if crate::probe::find_binary("fuse-overlayfs").is_none() {
            return Err(Error::FailedPrecondition("snapshotter fuse-overlayfs: the fuse-overlayfs binary is not on PATH".into()));
        }
        if !Path::new("/dev/fuse").exists() {
            return Err(Error::FailedPrecondition("snapshotter fuse-overlayfs: /dev/fuse is missing".into()));
        }
        Ok(Flavor::FuseOverlay)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Flavor::Overlay { .. } => "overlayfs",
            Flavor::FuseOverlay => "fuse-overlayfs",
            Flavor::Native => "native",
        }
    }
}

pub struct DirSnapshotter {
    root: PathBuf,
    flavor: Flavor,
    meta: Metadata,
    closed: AtomicBool,
    tmp_counter: AtomicU64,
}

fn io_context<T>(result: std::io::Result<T>, what: impl FnOnce() -> String) -> Result<T> {
    result.with_context(what).map_err(Error::Other)
}

/// Creates `path` (if missing) and sets its mode, whatever the umask.
fn private_dir(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::create_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {}
        Err(e) => return io_context(Err(e), || format!("creating {}", path.display())),
    }
    io_context(std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)), || format!("chmod {}", path.display()))
}

impl DirSnapshotter {
    /// Opens the snapshotter stored under `root` (created 0700 when missing)
    /// and removes what an interrupted operation left there.
    pub fn open(root: &Path, flavor: Flavor) -> Result<DirSnapshotter> {
        Self::open_with(root, flavor, crate::Durability::EveryChange)
    }

    /// [`DirSnapshotter::open`] with the given [`crate::Durability`].
    pub fn open_with(root: &Path, flavor: Flavor, durability: crate::Durability) -> Result<DirSnapshotter> {
        io_context(std::fs::create_dir_all(root), || format!("creating {}", root.display()))?;
        let root = io_context(root.canonicalize(), || format!("resolving {}", root.display()))?;
        private_dir(&root, 0o700)?;
        private_dir(&root.join("s"), 0o700)?;
        private_dir(&root.join("tmp"), 0o700)?;
        let meta = Metadata::open(&root.join("metadata.redb"), durability)?;
        let snapshotter = DirSnapshotter { root, flavor, meta, closed: AtomicBool::new(false), tmp_counter: AtomicU64::new(0) };
        snapshotter.remove_orphans()?;
        Ok(snapshotter)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn flavor(&self) -> &Flavor {
        &self.flavor
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.root.join("s").join(id.to_string())
    }

    fn fs(&self, id: u64) -> PathBuf {
        self.dir(id).join("fs")
    }

    /// Removes `tmp/*` and the directories of `s/` no record names.
    fn remove_orphans(&self) -> Result<()> {
        let tmp = self.root.join("tmp");
        for entry in io_context(std::fs::read_dir(&tmp), || format!("reading {}", tmp.display()))? {
            let path = io_context(entry, || format!("reading {}", tmp.display()))?.path();
            tracing::info!("removing the leftover {}", path.display());
            remove_path(&path)?;
        }
        let ids = self.meta.ids()?;
        let s = self.root.join("s");
        for entry in io_context(std::fs::read_dir(&s), || format!("reading {}", s.display()))? {
            let entry = io_context(entry, || format!("reading {}", s.display()))?;
            let known = entry.file_name().to_str().and_then(|n| n.parse::<u64>().ok()).is_some_and(|id| ids.contains(&id));
            if !known {
                tracing::info!("removing the orphan snapshot directory {}", entry.path().display());
                remove_path(&entry.path())?;
            }
        }
        Ok(())
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::FailedPrecondition(format!("snapshotter {} at {} is closed", self.flavor.name(), self.root.display())));
        }
        Ok(())
    }

    fn new_tmp_dir(&self) -> Result<PathBuf> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let path = self.root.join("tmp").join(format!("new-{}-{nanos}-{n}", std::process::id()));
        private_dir(&path, 0o700)?;
        Ok(path)
    }

    fn create(&self, kind: Kind, key: &str, parent: Option<&str>, labels: Labels) -> Result<Vec<Mount>> {
        self.check_open()?;
        let parent_record = self.meta.check_new(key, parent, &labels)?;
        let tmp = self.new_tmp_dir()?;
        let built = self.build_dir(&tmp, kind, parent_record.as_ref());
        if let Err(err) = built {
            remove_path(&tmp).ok();
            return Err(err);
        }
        failpoint::hit("create-after-build");
        let mut placed = None;
        let created = self.meta.create(kind, key, parent, labels, |id| {
            let dir = self.dir(id);
            io_context(std::fs::rename(&tmp, &dir), || format!("moving {} to {}", tmp.display(), dir.display()))?;
            placed = Some(dir);
            failpoint::hit("create-after-rename");
            Ok(())
        });
        let record = match created {
            Ok(record) => record,
            Err(err) => {
                remove_path(placed.as_deref().unwrap_or(&tmp)).ok();
                return Err(err);
            }
        };
        failpoint::hit("create-after-commit");
        self.mounts_of(&record)
    }

    /// Fills the new snapshot directory `tmp` (`fs/`, `work/`).
    fn build_dir(&self, tmp: &Path, kind: Kind, parent: Option<&Record>) -> Result<()> {
        let fs = tmp.join("fs");
        private_dir(&fs, 0o755)?;
        let Some(parent) = parent else { return Ok(()) };
        let parent_fs = self.fs(parent.id);
        match self.flavor {
            // A view of native binds its parent read-only: no copy needed.
            Flavor::Native if kind == Kind::Active => {
                crate::copy::copy_tree(&parent_fs, &fs).with_context(|| format!("copying {}", parent_fs.display())).map_err(Error::Other)?
            }
            Flavor::Native => {}
            Flavor::Overlay { .. } | Flavor::FuseOverlay => {
                // The merged root takes the upper dir's owner and mode: the parent's.
                use std::os::unix::fs::MetadataExt;
                let meta = io_context(std::fs::metadata(&parent_fs), || format!("stat {}", parent_fs.display()))?;
                io_context(std::os::unix::fs::lchown(&fs, Some(meta.uid()), Some(meta.gid())), || format!("chown {}", fs.display()))?;
                io_context(std::fs::set_permissions(&fs, meta.permissions()), || format!("chmod {}", fs.display()))?;
                if kind == Kind::Active {
                    private_dir(&tmp.join("work"), 0o700)?;
                }
            }
        }
        Ok(())
    }

    fn mounts_of(&self, record: &Record) -> Result<Vec<Mount>> {
        let path = |id: u64| self.fs(id).to_string_lossy().into_owned();
        let bind = |id: u64, writable: bool| {
            vec![Mount { kind: "bind".into(), source: path(id), options: vec!["rbind".into(), if writable { "rw" } else { "ro" }.into()] }]
        };
        match record.kind {
            Kind::Committed => {
                return Err(Error::FailedPrecondition("a committed snapshot has no mounts: prepare or view it".into()));
            }
            Kind::Active if record.parent_ids.is_empty() => return Ok(bind(record.id, true)),
            Kind::View if record.parent_ids.is_empty() => return Ok(bind(record.id, false)),
            Kind::View if record.parent_ids.len() == 1 || self.flavor == Flavor::Native => return Ok(bind(record.parent_ids[0], false)),
            Kind::Active if self.flavor == Flavor::Native => return Ok(bind(record.id, true)),
            Kind::View | Kind::Active => {}
        }
        let mut options = Vec::new();
        if let Flavor::Overlay { index_off, userxattr } = self.flavor {
            if index_off {
                options.push("index=off".to_string());
            }
            if userxattr {
                options.push("userxattr".to_string());
            }
        }
        if record.kind == Kind::Active {
            options.push(format!("workdir={}", self.dir(record.id).join("work").display()));
            options.push(format!("upperdir={}", path(record.id)));
        }
        let lower: Vec<String> = record.parent_ids.iter().map(|id| path(*id)).collect();
        options.push(format!("lowerdir={}", lower.join(":")));
        let kind = if self.flavor == Flavor::FuseOverlay { "fuse3.fuse-overlayfs" } else { "overlay" };
        Ok(vec![Mount { kind: kind.into(), source: "overlay".into(), options }])
    }
}

/// Removes a file or a tree; missing is fine.
fn remove_path(path: &Path) -> Result<()> {
    let result = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        _ => std::fs::remove_file(path),
    };
    io_context(result, || format!("removing {}", path.display()))
}

impl Snapshotter for DirSnapshotter {
    fn name(&self) -> &str {
        self.flavor.name()
    }

    fn stat(&self, key: &str) -> Result<Info> {
        self.check_open()?;
        Ok(self.meta.require(key)?.info(key))
    }

    fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        self.check_open()?;
        Ok(self.meta.update(&info, fieldpaths)?.info(&info.name))
    }

    fn usage(&self, key: &str) -> Result<Usage> {
        self.check_open()?;
        let record = self.meta.require(key)?;
        crate::usage::disk_usage(&self.fs(record.id)).map_err(Error::Other)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        self.check_open()?;
        let record = self.meta.require(key)?;
        self.mounts_of(&record)
    }

    fn prepare(&self, key: &str, parent: Option<&str>, labels: Labels) -> Result<Vec<Mount>> {
        self.create(Kind::Active, key, parent.filter(|p| !p.is_empty()), labels)
    }

    fn view(&self, key: &str, parent: Option<&str>, labels: Labels) -> Result<Vec<Mount>> {
        self.create(Kind::View, key, parent.filter(|p| !p.is_empty()), labels)
    }

    fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()> {
        self.check_open()?;
        self.meta.commit(name, key, labels)?;
        Ok(())
    }

    fn remove(&self, key: &str) -> Result<()> {
        self.check_open()?;
        let record = self.meta.remove(key)?;
        failpoint::hit("remove-after-db-commit");
        // The record is gone; the directory goes to tmp/ first so that a
        // kill mid-removal leaves it where opening cleans up.
        let dir = self.dir(record.id);
        let trash = self.root.join("tmp").join(format!("rm-{}", record.id));
        match std::fs::rename(&dir, &trash) {
            Ok(()) => {
                failpoint::hit("remove-after-rename");
                if let Err(err) = remove_path(&trash) {
                    tracing::warn!("snapshot {key:?} removed, its directory not yet: {err:#}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("snapshot {key:?} removed, its directory {} not: {e}", dir.display()),
        }
        Ok(())
    }

    fn walk(&self, filters: &[String], f: &mut dyn FnMut(&Info) -> Result<()>) -> Result<()> {
        self.check_open()?;
        let filters = crate::filter::Filters::parse(filters)?;
        // Collected first: the callback may call back into the snapshotter.
        let infos: Vec<Info> = self.meta.all()?.iter().map(|(k, r)| r.info(k)).filter(|i| filters.matches(i)).collect();
        for info in &infos {
            f(info)?;
        }
        Ok(())
    }

    fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        Ok(())
    }
}
