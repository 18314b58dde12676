//! containerd's snapshotter conformance suite (snapshots/testsuite), in
//! Rust, run against every snapshotter berth has, with real mounts.
//!
//! `cargo test --release -p berth-snapshot --test conformance`
//! (`-- overlayfs::` for one snapshotter, `-- ::Walk` for one case).
//! Needs root (mounts); a snapshotter this host cannot run is reported as
//! ignored with the reason.

mod cases;
mod fstest;

use std::path::Path;
use std::process::ExitCode;

use berth_snapshot::Snapshotter;
use libtest_mimic::{Arguments, Failed, Trial};

pub type Case = fn(&dyn Snapshotter, &Path) -> anyhow::Result<()>;

fn skip_reason(name: &str) -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("needs root (the suite mounts what snapshotters return)".into());
    }
    let dir = tempfile::tempdir().ok()?;
    let facts = berth_snapshot::probe::probe(dir.path());
    match name {
        "overlayfs" if !facts.overlay_supported => Some(format!("overlayfs unusable here: {}", facts.overlay_error.unwrap_or_default())),
        "fuse-overlayfs" if facts.fuse_overlayfs_binary.is_none() => Some("fuse-overlayfs is not on PATH".into()),
        "fuse-overlayfs" if !facts.dev_fuse => Some("/dev/fuse is missing".into()),
        _ => None,
    }
}

fn run_case(snapshotter: &str, case: Case) -> Result<(), Failed> {
    let dir = tempfile::Builder::new().prefix(&format!("snapshot-suite-{snapshotter}-")).tempdir().map_err(|e| Failed::from(e.to_string()))?;
    let root = dir.path().join("root");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).map_err(|e| Failed::from(e.to_string()))?;
    let sn = berth_snapshot::open(snapshotter, &root).map_err(|e| Failed::from(format!("opening {snapshotter}: {e:#}")))?;
    let result = case(sn.as_ref(), &work);
    sn.close().map_err(|e| Failed::from(format!("close: {e:#}")))?;
    result.map_err(|e| Failed::from(format!("{e:#}")))
}

fn main() -> ExitCode {
    // containerd's suite clears the umask so modes are exactly the requested ones.
    rustix::process::umask(rustix::fs::Mode::empty());
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for snapshotter in berth_snapshot::SNAPSHOTTERS {
        let skip = skip_reason(snapshotter);
        if let Some(reason) = &skip {
            eprintln!("skipping snapshotter {snapshotter}: {reason}");
        }
        for (name, case) in cases::all() {
            let skipped = skip.is_some();
            trials.push(
                Trial::test(format!("{snapshotter}::{name}"), move || {
                    if skipped {
                        return Ok(());
                    }
                    run_case(snapshotter, case)
                })
                .with_ignored_flag(skipped),
            );
        }
    }
    libtest_mimic::run(&args, trials).exit_code()
}
