//! `berth worker`: what this worker is, as `buildctl debug workers -v`
//! shows a buildkitd worker: a persistent id, its labels (the configured
//! `worker.labels` plus berth's own), platforms, snapshotter, network and
//! GC policy, after `berth.toml` and the worker flags.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::GlobalArgs;
use crate::config::worker::{NetworkMode, SnapshotterChoice, WorkerConfig, WorkerFlags};
use crate::container::{self, Settings};

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub worker: WorkerFlags,
}

/// Label keys berth sets itself (a configured label of the same key is
/// overridden, as buildkitd's own labels are).
pub const LABEL_EXECUTOR: &str = "berth.io/worker.executor";
pub const LABEL_SNAPSHOTTER: &str = "berth.io/worker.snapshotter";
pub const LABEL_NETWORK: &str = "berth.io/worker.network";
pub const LABEL_HOSTNAME: &str = "berth.io/worker.hostname";

/// The worker's id: random on first use, then kept in `<root>/worker-id`
/// (buildkitd's `workerid` file).
fn worker_id(root: &Path) -> anyhow::Result<String> {
    let path = root.join("worker-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    }
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let id = container::random_id();
    // Written whole, then linked into place: two first runs agree on one id.
    let tmp = root.join(format!(".worker-id.{}", std::process::id()));
    std::fs::write(&tmp, format!("{id}\n")).with_context(|| format!("writing {}", tmp.display()))?;
    let linked = std::fs::hard_link(&tmp, &path);
    std::fs::remove_file(&tmp).ok();
    match linked {
        Ok(()) => Ok(id),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => worker_id(root),
        Err(err) => Err(err).with_context(|| format!("writing {}", path.display())),
    }
}

fn network_name(mode: NetworkMode) -> &'static str {
    match mode {
        NetworkMode::Auto => "auto",
        NetworkMode::Host => "host",
        NetworkMode::None => "none",
        NetworkMode::Bridge => "bridge",
    }
}

/// The labels a worker reports: the configured ones, then berth's.
pub fn labels(worker: &WorkerConfig, snapshotter: &str) -> BTreeMap<String, String> {
    let mut labels = worker.labels.clone();
    labels.insert(LABEL_EXECUTOR.into(), "native".into());
    labels.insert(LABEL_SNAPSHOTTER.into(), snapshotter.into());
    labels.insert(LABEL_NETWORK.into(), network_name(worker.network.mode).into());
    if let Ok(name) = nix::unistd::gethostname() {
        labels.insert(LABEL_HOSTNAME.into(), name.to_string_lossy().into_owned());
    }
    labels
}

pub fn run(global: &GlobalArgs, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let mut settings = Settings::load(global, &Default::default())?;
    settings.config.worker.apply_flags(&args.worker);
    let worker = &settings.config.worker;
    let id = worker_id(&settings.root)?;
    let snapshotter = match &worker.snapshotter {
        SnapshotterChoice::Named(name) => name.clone(),
        SnapshotterChoice::Auto => container::native::choose_snapshotter(&settings, None)
            .with_context(|| "worker.snapshotter = auto: no snapshotter could be chosen")?,
    };
    let platforms: Vec<String> = if worker.platforms.is_empty() {
        vec![format!("linux/{}", container::go_arch())]
    } else {
        worker.platforms.iter().map(ToString::to_string).collect()
    };
    let labels = labels(worker, &snapshotter);
    let gc = &worker.gc;
    let keep_storage = gc.keep_storage.map(|b| b.0);
    let keep_duration = gc.keep_duration.map(|d| d.0.as_secs());
    let proxy = worker.proxy_snapshotter_socket.as_ref().map(|socket| {
        let options = worker.proxy_options();
        (socket, options.namespace, options.call_timeout.as_secs())
    });
    if args.json {
        let proxy = proxy.map(|(socket, namespace, timeout)| {
            serde_json::json!({"socket": socket, "namespace": namespace, "timeoutSeconds": timeout})
        });
        let value = serde_json::json!({
            "id": id,
            "root": settings.root,
            "state": settings.state_dir(),
            "namespace": crate::config::worker::container_namespace(&settings.root),
            "labels": labels,
            "platforms": platforms,
            "snapshotter": snapshotter,
            "proxySnapshotter": proxy,
            "network": network_name(worker.network.mode),
            "gc": {"enabled": gc.enabled, "keepStorage": keep_storage, "keepDurationSeconds": keep_duration},
            "maxParallelism": worker.max_parallelism,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("ID:\t\t{id}");
    println!("Root:\t\t{}", settings.root.display());
    println!("State:\t\t{}", settings.state_dir().display());
    println!("Platforms:\t{}", platforms.join(","));
    println!("Snapshotter:\t{snapshotter}");
    if let Some((socket, namespace, timeout)) = &proxy {
        println!("Proxy:\t\t{} (namespace {namespace}, timeout {timeout}s)", socket.display());
    }
    println!("Network:\t{}", network_name(worker.network.mode));
    let keep = |v: Option<u64>, unit: &str| v.map(|v| format!("{v}{unit}")).unwrap_or_else(|| "-".into());
    println!(
        "GC:\t\t{} (keep-storage {}, keep-duration {})",
        if gc.enabled { "enabled" } else { "disabled" },
        keep(keep_storage, " bytes"),
        keep(keep_duration, "s")
    );
    if let Some(n) = worker.max_parallelism {
        println!("Parallelism:\t{n}");
    }
    println!("Labels:");
    for (key, value) in &labels {
        println!("\t{key}={value}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let first = worker_id(&root).unwrap();
        assert_eq!(first.len(), 16);
        assert_eq!(worker_id(&root).unwrap(), first);
        assert_eq!(std::fs::read_to_string(root.join("worker-id")).unwrap().trim(), first);
    }

    #[test]
    fn berths_labels_override_configured_ones() {
        let mut worker = WorkerConfig::default();
        worker.labels.insert("zone".into(), "a".into());
        worker.labels.insert(LABEL_SNAPSHOTTER.into(), "lie".into());
        worker.network.mode = NetworkMode::Bridge;
        let labels = labels(&worker, "overlayfs");
        assert_eq!(labels["zone"], "a");
        assert_eq!(labels[LABEL_SNAPSHOTTER], "overlayfs");
        assert_eq!(labels[LABEL_NETWORK], "bridge");
        assert_eq!(labels[LABEL_EXECUTOR], "native");
    }

    #[test]
    fn flags_and_file_show_up() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("berth.toml");
        std::fs::write(
            &config,
            "[worker]\nsnapshotter = \"native\"\nlabels = { zone = \"a\" }\nplatforms = [\"linux/arm64\"]\n[worker.gc]\nkeep-storage = \"1GB\"\n",
        )
        .unwrap();
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from([
            "berth",
            "--config",
            config.to_str().unwrap(),
            "--root",
            dir.path().join("root").to_str().unwrap(),
            "worker",
            "--json",
            "--worker-label",
            "rack=7",
        ])
        .unwrap();
        let crate::cli::Command::Worker(args) = cli.command else { panic!("not the worker command") };
        assert_eq!(args.worker.worker_labels, vec![("rack".to_string(), "7".to_string())]);
        run(&cli.global, args).unwrap();
        assert!(dir.path().join("root/worker-id").exists());
    }
}
