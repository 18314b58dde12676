//! `berth gc`: remove content and snapshots nothing references (see berth-gc).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use berth_content::{ContentStore, ImageStore};
use berth_gc::{BlobDir, Collector, GcLock, LeaseStore, Policy, Report, SnapshotRef};
use berth_snapshot::{Info, Labels, Mount, Snapshotter, Usage};

use super::GlobalArgs;
use crate::config::Config;
use crate::config::worker::{ByteSize, HumanDuration, SnapshotterChoice, WorkerConfig};

#[derive(Debug, Clone, clap::Args)]
pub struct GcArgs {
    /// Report what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only remove (oldest first) while usage is above this, e.g. 10GB.
    #[arg(long, value_name = "SIZE")]
    pub keep_storage: Option<ByteSize>,
    /// Never remove unreferenced data younger than this, e.g. 48h.
    #[arg(long, value_name = "DURATION")]
    pub keep_duration: Option<HumanDuration>,
}

pub fn run(global: &GlobalArgs, args: &GcArgs) -> anyhow::Result<ExitCode> {
    let (config, _) = Config::load(global.config.as_deref())?;
    let root = config.worker.root_dir(global.root.as_deref());
    let policy = Policy { keep_storage: args.keep_storage.map(|b| b.0), keep_duration: args.keep_duration.map(|d| d.0) };
    let report = collect(&root, &config.worker, policy, args.dry_run)?;
    let verb = if args.dry_run { "would remove" } else { "removed" };
    for item in &report.removed {
        println!("{verb} {item}");
    }
    for lease in &report.expired_leases {
        println!("{verb} expired lease {lease}");
    }
    println!(
        "{verb} {} items, {} bytes (of {} bytes); kept {} blobs, {} snapshots",
        report.removed.len(),
        report.freed(),
        report.usage_before,
        report.kept_content,
        report.kept_snapshots
    );
    Ok(ExitCode::SUCCESS)
}

/// One collection under `root` (image store targets are the roots; every
/// snapshotter with a directory under `<root>/snapshots` is walked, and
/// the `[worker] proxy-snapshotter-socket` proxy's snapshots berth made).
pub fn collect(root: &Path, worker: &WorkerConfig, policy: Policy, dry_run: bool) -> anyhow::Result<Report> {
    let _lock = GcLock::exclusive(root)?;
    let content = ContentStore::open(root)?;
    let images = ImageStore::open(&content);
    let image_roots =
        images.list().context("cannot list images")?.into_iter().map(|r| r.target.digest().to_string()).collect();
    let mut opened = Vec::new();
    for name in berth_snapshot::SNAPSHOTTERS {
        if root.join("snapshots").join(name).is_dir() {
            // Skipping a snapshotter never removes anything: its snapshots
            // wait for the next collection (its metadata may be held open by
            // another berth process, e.g. a detached container's monitor).
            match crate::container::native::open_snapshotter(root, name) {
                Ok(sn) => opened.push((name.to_string(), sn)),
                Err(e) => eprintln!("berth gc: snapshotter {name} skipped (its snapshots are kept): {e:#}"),
            }
        }
    }
    // The proxy: under its own name (a local snapshotter may have the same one).
    let mut proxy = None;
    if let Some(socket) = &worker.proxy_snapshotter_socket {
        let name = match &worker.snapshotter {
            SnapshotterChoice::Named(name) => name.clone(),
            SnapshotterChoice::Auto => "auto".to_string(),
        };
        match crate::container::native::open_proxy_snapshotter(worker, socket, &name) {
            Ok(sn) => proxy = Some((proxy_gc_name(socket, &worker.proxy_snapshotter_namespace, &name), BerthMade(sn))),
            Err(e) => eprintln!("berth gc: proxy snapshotter skipped (its snapshots are kept): {e:#}"),
        }
    }
    let leases = LeaseStore::open(root)?;
    let blobs = BlobDir::new(root);
    let collector = Collector {
        content: &blobs,
        snapshotters: opened
            .iter()
            .map(|(n, s)| (n.clone(), s.as_ref()))
            .chain(proxy.iter().map(|(n, s)| (n.clone(), s as &dyn Snapshotter)))
            .collect(),
        leases: &leases,
        image_roots,
        pinned_snapshots: container_snapshots(root)?,
    };
    let mut report = collector.collect(policy, dry_run)?;
    // Partial downloads a day old will not be resumed.
    report.removed.extend(berth_gc::clean_partials(root, std::time::Duration::from_secs(86400), dry_run)?);
    Ok(report)
}

/// The active snapshot of every container berth has a record of
/// (`<root>/containers/<id>.json`; the snapshot's key is the container id),
/// running or not: it is removed with `berth rm`, never by GC.
fn container_snapshots(root: &Path) -> anyhow::Result<Vec<SnapshotRef>> {
    #[derive(serde::Deserialize)]
    struct Record {
        id: String,
        snapshotter: String,
        #[serde(default)]
        proxy_socket: Option<PathBuf>,
        #[serde(default)]
        proxy_namespace: Option<String>,
    }
    let dir = root.join("containers");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        // A record GC cannot read stops it: better keep everything than guess.
        let r: Record = serde_json::from_str(&text).with_context(|| format!("invalid container record {}", path.display()))?;
        let snapshotter = match &r.proxy_socket {
            Some(socket) => {
                let namespace = r.proxy_namespace.unwrap_or_else(|| berth_containerd::proxy_snapshotter::DEFAULT_NAMESPACE.into());
                proxy_gc_name(socket, &namespace, &r.snapshotter)
            }
            None => r.snapshotter,
        };
        out.push(SnapshotRef { snapshotter, key: r.id });
    }
    Ok(out)
}

/// Automatic GC after adding data: only when `[worker.gc]` is enabled and
/// sets keep-storage.
pub fn auto(root: &Path, config: &Config) -> anyhow::Result<Option<Report>> {
    let gc = &config.worker.gc;
    let Some(keep) = gc.keep_storage.filter(|_| gc.enabled) else { return Ok(None) };
    let policy = Policy { keep_storage: Some(keep.0), keep_duration: gc.keep_duration.map(|d| d.0) };
    collect(root, &config.worker, policy, false).map(Some)
}

/// The collector's name for a proxy snapshotter (its absolute socket, the
/// containerd namespace and the name): never a local snapshotter's, and the
/// same for a record made through it (records keep the absolute socket; a
/// relative one in berth.toml must match them).
fn proxy_gc_name(socket: &Path, namespace: &str, name: &str) -> String {
    let socket = std::path::absolute(socket).unwrap_or_else(|_| socket.to_path_buf());
    format!("proxy:{}:{namespace}:{name}", socket.display())
}

/// A proxy snapshotter as GC sees it: only the snapshots berth made (its
/// unpacked layers, its containers'), since others (containerd's, say) may
/// share the proxy and are not berth's to collect.
struct BerthMade(std::sync::Arc<dyn Snapshotter>);

impl BerthMade {
    fn is_berths(info: &Info) -> bool {
        info.labels.contains_key(berth_unpack::image::LABEL_LAYER_DIGEST) || info.labels.contains_key("berth.io/container")
    }
}

impl Snapshotter for BerthMade {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn stat(&self, key: &str) -> berth_snapshot::Result<Info> {
        self.0.stat(key)
    }
    fn update(&self, info: Info, fieldpaths: &[String]) -> berth_snapshot::Result<Info> {
        self.0.update(info, fieldpaths)
    }
    fn usage(&self, key: &str) -> berth_snapshot::Result<Usage> {
        self.0.usage(key)
    }
    fn mounts(&self, key: &str) -> berth_snapshot::Result<Vec<Mount>> {
        self.0.mounts(key)
    }
    fn prepare(&self, key: &str, parent: Option<&str>, labels: Labels) -> berth_snapshot::Result<Vec<Mount>> {
        self.0.prepare(key, parent, labels)
    }
    fn view(&self, key: &str, parent: Option<&str>, labels: Labels) -> berth_snapshot::Result<Vec<Mount>> {
        self.0.view(key, parent, labels)
    }
    fn commit(&self, name: &str, key: &str, labels: Labels) -> berth_snapshot::Result<()> {
        self.0.commit(name, key, labels)
    }
    /// A layer another client's snapshots build on stays (its children are
    /// not berth's, so the collector could not see them).
    fn remove(&self, key: &str) -> berth_snapshot::Result<()> {
        match self.0.remove(key) {
            Err(berth_snapshot::Error::FailedPrecondition(why)) => {
                eprintln!("berth gc: proxy snapshot {key} kept: {why}");
                Ok(())
            }
            other => other,
        }
    }
    fn walk(&self, filters: &[String], f: &mut dyn FnMut(&Info) -> berth_snapshot::Result<()>) -> berth_snapshot::Result<()> {
        self.0.walk(filters, &mut |info| {
            if !Self::is_berths(info) {
                return Ok(());
            }
            // The gc.root label the proxy client puts on what it makes is
            // for containerd's collector (containerd's own snapshots service
            // as the proxy); here berth's references decide.
            let mut info = info.clone();
            info.labels.remove(berth_containerd::proxy_snapshotter::GC_ROOT_LABEL);
            f(&info)
        })
    }
    fn close(&self) -> berth_snapshot::Result<()> {
        self.0.close()
    }
}
