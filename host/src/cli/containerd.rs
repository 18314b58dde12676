//! `berth snapshotter serve`: one of berth's snapshotters over containerd's
//! snapshots gRPC API on a unix socket, for containerd's
//! `[proxy_plugins.<name>] type = "snapshot" address = "<socket>"`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use berth_snapshot::Snapshotter;

use super::GlobalArgs;

#[derive(Debug, clap::Subcommand)]
pub enum SnapshotterCommand {
    /// Serve a snapshotter to containerd over its snapshots v1 gRPC API.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Unix socket to listen on (a stale socket there is replaced).
    #[arg(long)]
    pub address: PathBuf,
    /// The snapshotter to serve (`overlayfs`, `fuse-overlayfs`, `native`,
    /// `auto`); it stores under `<--root>/snapshots/<name>`.
    #[arg(long, default_value = "overlayfs")]
    pub snapshotter: String,
}

pub fn run(global: &GlobalArgs, command: SnapshotterCommand) -> anyhow::Result<ExitCode> {
    match command {
        SnapshotterCommand::Serve(args) => serve(global, args),
    }
}

fn serve(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let berth_root = global.root.clone().unwrap_or_else(|| PathBuf::from("/var/lib/berth"));
    let root = berth_root.join("snapshots").join(&args.snapshotter);
    let snapshotter = open_snapshotter(&args.snapshotter, &root)?;
    let root = berth_root.join("snapshots").join(snapshotter.name());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = berth_containerd::snapshots_service::bind(&args.address)?;
        eprintln!("berth: serving snapshotter {} ({}) on {}", args.snapshotter, root.display(), args.address.display());
        berth_containerd::snapshots_service::serve_on(listener, &args.address, snapshotter, shutdown_signal()).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without signal handlers the process still dies by the signal.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// The snapshotter named `name` (`auto`: the first one usable on this
/// host), storing under `root`.
fn open_snapshotter(name: &str, root: &Path) -> anyhow::Result<Arc<dyn Snapshotter>> {
    let snapshots_root = root.parent().context("the snapshotter root has a parent")?;
    let name = super::snapshot::resolve_name(name, snapshots_root)?;
    super::snapshot::open_named(&name, snapshots_root)
}
