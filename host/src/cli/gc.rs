//! `berth gc`: remove content and snapshots nothing references (see berth-gc).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use berth_content::{ContentStore, ImageStore};
use berth_gc::{BlobDir, Collector, GcLock, LeaseStore, Policy, Report, SnapshotRef};

use super::GlobalArgs;
use crate::config::Config;
use crate::config::worker::{ByteSize, HumanDuration};

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
    let report = collect(&root, policy, args.dry_run)?;
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
/// snapshotter with a directory under `<root>/snapshots` is walked).
pub fn collect(root: &Path, policy: Policy, dry_run: bool) -> anyhow::Result<Report> {
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
    let leases = LeaseStore::open(root)?;
    let blobs = BlobDir::new(root);
    let collector = Collector {
        content: &blobs,
        snapshotters: opened.iter().map(|(n, s)| (n.clone(), s.as_ref())).collect(),
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
        out.push(SnapshotRef { snapshotter: r.snapshotter, key: r.id });
    }
    Ok(out)
}

/// Automatic GC after adding data: only when `[worker.gc]` is enabled and
/// sets keep-storage.
pub fn auto(root: &Path, config: &Config) -> anyhow::Result<Option<Report>> {
    let gc = &config.worker.gc;
    let Some(keep) = gc.keep_storage.filter(|_| gc.enabled) else { return Ok(None) };
    let policy = Policy { keep_storage: Some(keep.0), keep_duration: gc.keep_duration.map(|d| d.0) };
    collect(root, policy, false).map(Some)
}
