//! `berth snapshot ...`: berth's snapshotters, for debugging, in the style
//! of `ctr snapshot`. Snapshots live under `<--root>/snapshots/<name>`, or
//! behind `[worker] proxy-snapshotter-socket` when berth.toml sets it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use berth_snapshot::{Info, Labels, Mount, Snapshotter};

use super::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct SnapshotArgs {
    /// The snapshotter (`overlayfs`, `fuse-overlayfs`, `native`, or `auto`:
    /// the first one usable on this host).
    #[arg(long, global = true, default_value = "overlayfs")]
    pub snapshotter: String,
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum SnapshotCommand {
    /// List snapshots (KEY PARENT KIND), optionally filtered
    /// (containerd syntax: `kind==committed`, `labels."a.b"==c`; several are OR-ed).
    #[command(alias = "list")]
    Ls { filters: Vec<String> },
    /// Show the parent/child tree.
    Tree,
    /// Print the mount commands for KEY at TARGET.
    #[command(alias = "m", alias = "mount")]
    Mounts { target: PathBuf, key: String },
    /// Create an active snapshot KEY on PARENT (committed) and print its mounts at --target.
    Prepare {
        key: String,
        parent: Option<String>,
        #[arg(long)]
        target: Option<PathBuf>,
        /// Labels, `k=v`.
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// Create a read-only view KEY on PARENT.
    View {
        key: String,
        parent: Option<String>,
        #[arg(long)]
        target: Option<PathBuf>,
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// Commit the active snapshot KEY as NAME.
    Commit {
        name: String,
        key: String,
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// Remove snapshots.
    #[command(alias = "remove", alias = "delete", alias = "del")]
    Rm {
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Disk usage of snapshots (their own layer): KEY SIZE INODES.
    Usage {
        keys: Vec<String>,
        /// Sizes in bytes rather than human units.
        #[arg(short = 'b')]
        bytes: bool,
    },
    /// A snapshot's info as JSON.
    Info { key: String },
    /// Set (`k=v`) or remove (`k=`) labels of a snapshot.
    Label { key: String, labels: Vec<String> },
    /// The host facts the snapshotter-selector plugin gets, as JSON.
    Probe,
}

pub fn run(global: &GlobalArgs, args: SnapshotArgs) -> anyhow::Result<ExitCode> {
    let berth_root = global.root.clone().unwrap_or_else(|| PathBuf::from("/var/lib/berth"));
    let snapshots_root = berth_root.join("snapshots");
    if let SnapshotCommand::Probe = args.command {
        let facts = berth_snapshot::probe::probe(&snapshots_root);
        println!("{}", serde_json::to_string_pretty(&facts)?);
        return Ok(ExitCode::SUCCESS);
    }
    // `[worker] proxy-snapshotter-socket`: the proxy's snapshots, as
    // `berth run` and `berth image import` see them.
    let (config, _) = crate::config::Config::load(global.config.as_deref())?;
    let sn = match &config.worker.proxy_snapshotter_socket {
        Some(socket) => {
            let name = match &config.worker.snapshotter {
                crate::config::worker::SnapshotterChoice::Named(configured) => configured.clone(),
                crate::config::worker::SnapshotterChoice::Auto => args.snapshotter.clone(),
            };
            crate::container::native::open_proxy_snapshotter(&config.worker, socket, &name)?
        }
        None => open_named(&resolve_name(&args.snapshotter, &snapshots_root)?, &snapshots_root)?,
    };
    let result = command(sn.as_ref(), args.command);
    sn.close()?;
    result.map(|()| ExitCode::SUCCESS)
}

/// `auto`: the first snapshotter usable on this host (probed natively).
pub fn resolve_name(name: &str, snapshots_root: &Path) -> anyhow::Result<String> {
    if name != "auto" {
        return Ok(name.to_string());
    }
    let facts = berth_snapshot::probe::probe(snapshots_root);
    facts.snapshotters.iter().find(|n| facts.usable(n)).cloned().context("no snapshotter is usable on this host")
}

/// The snapshotter `name` stored under `<snapshots_root>/<name>`.
pub fn open_named(name: &str, snapshots_root: &Path) -> anyhow::Result<Arc<dyn Snapshotter>> {
    let dir = snapshots_root.join(name);
    berth_snapshot::open(name, &dir).with_context(|| format!("opening snapshotter {name} at {}", dir.display()))
}

fn parse_labels(pairs: &[String]) -> anyhow::Result<Labels> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("label {pair:?} is not KEY=VALUE"),
        })
        .collect()
}

fn all(sn: &dyn Snapshotter, filters: &[String]) -> anyhow::Result<Vec<Info>> {
    let mut infos = Vec::new();
    sn.walk(filters, &mut |info| {
        infos.push(info.clone());
        Ok(())
    })?;
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(infos)
}

fn command(sn: &dyn Snapshotter, command: SnapshotCommand) -> anyhow::Result<()> {
    match command {
        SnapshotCommand::Ls { filters } => {
            let infos = all(sn, &filters)?;
            let width = infos.iter().map(|i| i.name.len()).max().unwrap_or(0).max(3);
            let pwidth = infos.iter().map(|i| i.parent.as_deref().unwrap_or("").len()).max().unwrap_or(0).max(6);
            println!("{:width$} {:pwidth$} KIND", "KEY", "PARENT");
            for info in infos {
                println!("{:width$} {:pwidth$} {}", info.name, info.parent.as_deref().unwrap_or(""), info.kind.as_str());
            }
        }
        SnapshotCommand::Tree => {
            let infos = all(sn, &[])?;
            fn print(infos: &[Info], parent: Option<&str>, depth: usize) {
                for info in infos.iter().filter(|i| i.parent.as_deref() == parent) {
                    let prefix = if depth == 0 { String::new() } else { format!("{}\\_ ", "  ".repeat(depth - 1)) };
                    println!("{prefix}{} ({})", info.name, info.kind.filter_name());
                    print(infos, Some(&info.name), depth + 1);
                }
            }
            print(&infos, None, 0);
        }
        SnapshotCommand::Mounts { target, key } => print_mounts(&sn.mounts(&key)?, &target),
        SnapshotCommand::Prepare { key, parent, target, labels } => {
            let mounts = sn.prepare(&key, parent.as_deref(), parse_labels(&labels)?)?;
            if let Some(target) = target {
                print_mounts(&mounts, &target);
            }
        }
        SnapshotCommand::View { key, parent, target, labels } => {
            let mounts = sn.view(&key, parent.as_deref(), parse_labels(&labels)?)?;
            if let Some(target) = target {
                print_mounts(&mounts, &target);
            }
        }
        SnapshotCommand::Commit { name, key, labels } => sn.commit(&name, &key, parse_labels(&labels)?)?,
        SnapshotCommand::Rm { keys } => {
            let mut failed = Vec::new();
            for key in keys {
                if let Err(err) = sn.remove(&key) {
                    eprintln!("berth: removing snapshot {key}: {err}");
                    failed.push(key);
                }
            }
            if !failed.is_empty() {
                bail!("{} snapshot(s) not removed: {}", failed.len(), failed.join(", "));
            }
        }
        SnapshotCommand::Usage { keys, bytes } => {
            let keys = if keys.is_empty() { all(sn, &[])?.into_iter().map(|i| i.name).collect() } else { keys };
            let width = keys.iter().map(String::len).max().unwrap_or(0).max(3);
            println!("{:width$} SIZE INODES", "KEY");
            for key in keys {
                let usage = sn.usage(&key)?;
                let size = if bytes { usage.size.to_string() } else { human(usage.size) };
                println!("{key:width$} {size} {}", usage.inodes);
            }
        }
        SnapshotCommand::Info { key } => {
            let info = sn.stat(&key)?;
            let epoch = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
            let json = serde_json::json!({
                "Kind": info.kind.as_str(),
                "Name": info.name,
                "Parent": info.parent,
                "Labels": info.labels,
                "Created": epoch(info.created),
                "Updated": epoch(info.updated),
            });
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
        SnapshotCommand::Label { key, labels } => {
            let mut info = sn.stat(&key)?;
            let changes = parse_labels(&labels)?;
            let paths: Vec<String> = changes.keys().map(|k| format!("labels.{k}")).collect();
            info.labels = changes;
            let info = sn.update(info, &paths)?;
            for (k, v) in info.labels {
                println!("{k}={v}");
            }
        }
        SnapshotCommand::Probe => unreachable!("handled before opening"),
    }
    Ok(())
}

/// As `ctr snapshot mounts`: one `mount` command per mount.
fn print_mounts(mounts: &[Mount], target: &Path) {
    for m in mounts {
        println!("mount -t {} {} {} -o {}", m.kind, m.source, target.display(), m.options.join(","));
    }
}

fn human(size: i64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = size as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{size} B") } else { format!("{value:.1} {}", units[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_sizes() {
        assert_eq!(parse_labels(&["a=1".into(), "b=".into()]).unwrap(), Labels::from([("a".into(), "1".into()), ("b".into(), "".into())]));
        assert!(parse_labels(&["=1".into()]).is_err() && parse_labels(&["novalue".into()]).is_err());
        assert_eq!(human(12), "12 B");
        assert_eq!(human(1536), "1.5 KiB");
    }

    #[test]
    fn commands_on_a_native_root() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(resolve_name("native", dir.path()).unwrap(), "native");
        let sn = open_named("native", dir.path()).unwrap();
        command(sn.as_ref(), SnapshotCommand::Prepare { key: "a".into(), parent: None, target: None, labels: vec!["x=1".into()] }).unwrap();
        command(sn.as_ref(), SnapshotCommand::Commit { name: "base".into(), key: "a".into(), labels: vec![] }).unwrap();
        command(sn.as_ref(), SnapshotCommand::Label { key: "base".into(), labels: vec!["team=a".into()] }).unwrap();
        assert_eq!(sn.stat("base").unwrap().labels.get("team").map(String::as_str), Some("a"));
        command(sn.as_ref(), SnapshotCommand::Label { key: "base".into(), labels: vec!["team=".into()] }).unwrap();
        assert!(sn.stat("base").unwrap().labels.is_empty());
        command(sn.as_ref(), SnapshotCommand::View { key: "v".into(), parent: Some("base".into()), target: None, labels: vec![] }).unwrap();
        assert!(command(sn.as_ref(), SnapshotCommand::Rm { keys: vec!["base".into()] }).is_err(), "base has a child");
        command(sn.as_ref(), SnapshotCommand::Rm { keys: vec!["v".into(), "base".into()] }).unwrap();
        assert!(all(sn.as_ref(), &[]).unwrap().is_empty());
    }
}
