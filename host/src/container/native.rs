//! The native backend: berth's image store, a snapshotter chosen by the
//! snapshotter-selector plugin, the spec-mutator chain, and berth's executor
//! (or runc/crun through the oci-runtime executor).
//!
//! A container's snapshot is the active snapshot named by its id on top of
//! the image's chain; its executor state lives under `<run root>/<id>`; a
//! small record at `<root>/containers/<id>.json` ties the two together so
//! `ps`, `kill`, `rm` and `logs` find them from another `berth` process.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use berth_content::{ContentStore, ImageStore, Platform};
use berth_runtime::{Bundle, Executor, NativeExecutor, OciRuntimeExecutor, Rootfs, Stdio};
use berth_snapshot::Snapshotter;
use serde::{Deserialize, Serialize};

use super::{ContainerRequest, Settings};
use crate::cli::GlobalArgs;
use crate::cli::run::RunArgs;

/// Where the state of containers made before records named it lived.
fn default_state() -> PathBuf {
    PathBuf::from(crate::config::worker::DEFAULT_STATE)
}

/// What another `berth` process needs to find a container's parts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub image: String,
    pub snapshotter: String,
    /// `native`, or the runc/crun binary of the oci-runtime executor.
    pub executor: String,
    pub log: Option<PathBuf>,
    /// The proxy snapshotter's socket (`[worker] proxy-snapshotter-socket`
    /// when the container was made), so `berth rm` reaches the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_socket: Option<PathBuf>,
    /// The containerd namespace its snapshot was made in through the proxy
    /// (`[worker] proxy-snapshotter-namespace`); absent: the default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_namespace: Option<String>,
    /// The worker's run-time state directory when the container was made
    /// (executor state, network attachment): `berth rm` looks there.
    #[serde(default = "default_state")]
    pub state: PathBuf,
}

fn records_dir(root: &Path) -> PathBuf {
    root.join("containers")
}

fn record_path(root: &Path, id: &str) -> anyhow::Result<PathBuf> {
    berth_runtime::validate_id(id)?;
    Ok(records_dir(root).join(format!("{id}.json")))
}

fn load_record(root: &Path, id: &str) -> anyhow::Result<ContainerRecord> {
    let path = record_path(root, id)?;
    let text = std::fs::read_to_string(&path).with_context(|| format!("container {id}: no such container under {}", root.display()))?;
    serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))
}

/// The executor named in a record or a flag, its state under `state`.
fn executor(state: &Path, root: &Path, name: &str) -> anyhow::Result<Box<dyn Executor>> {
    if name == "native" {
        return Ok(Box::new(NativeExecutor::new(state)));
    }
    let binary = crate::cli::run::resolve_binary(name)?;
    let stem = binary.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| name.to_string());
    Ok(Box::new(OciRuntimeExecutor::new(
        &binary,
        state.join(format!("@oci-{stem}")),
        root.join("bundles"),
    )))
}

/// The snapshotter: `--snapshotter`, else `[worker] snapshotter` unless
/// `auto`, else the snapshotter-selector plugin's choice on probed facts,
/// else the first usable one compiled in.
pub fn choose_snapshotter(settings: &Settings, flag: Option<&str>) -> anyhow::Result<String> {
    if let Some(name) = flag {
        return Ok(name.to_string());
    }
    if let crate::config::worker::SnapshotterChoice::Named(name) = &settings.config.worker.snapshotter {
        return Ok(name.clone());
    }
    let facts = berth_snapshot::probe::probe_cached(&settings.root.join("snapshots"));
    if let Some((resolved, selector)) = settings.plugins.selector()? {
        let choice = selector
            .select(&selector_facts(&facts))
            .with_context(|| format!("snapshotter-selector plugin `{}`", resolved.name))?;
        if !facts.snapshotters.contains(&choice.name) {
            bail!(
                "snapshotter-selector plugin `{}` chose {:?}, which this berth does not have ({})",
                resolved.name,
                choice.name,
                facts.snapshotters.join(", ")
            );
        }
        tracing::info!(plugin = %resolved.name, snapshotter = %choice.name, reason = %choice.reason, "snapshotter chosen");
        return Ok(choice.name);
    }
    facts
        .snapshotters
        .iter()
        .find(|name| facts.usable(name))
        .cloned()
        .context("no snapshotter is usable on this host")
}

/// The probed facts in the plugin contract's shape.
pub fn selector_facts(facts: &berth_snapshot::probe::HostFacts) -> berth_plugin::HostFacts {
    berth_plugin::HostFacts {
        root: String::new(),
        filesystem_type: facts.filesystem_type.clone(),
        kernel_version: facts.kernel_version.clone(),
        overlay_supported: facts.overlay_supported,
        overlay_error: facts.overlay_error.clone(),
        overlay_needs_userxattr: facts.needs_userxattr,
        fuse_overlayfs_binary: facts.fuse_overlayfs_binary.as_ref().map(|p| p.display().to_string()),
        dev_fuse: facts.dev_fuse,
        in_user_namespace: facts.in_user_namespace,
        idmapped_mounts: facts.idmapped_mounts,
        available: facts.snapshotters.clone(),
    }
}

pub fn open_snapshotter(root: &Path, name: &str) -> anyhow::Result<Arc<dyn Snapshotter>> {
    let dir = root.join("snapshots").join(name);
    berth_snapshot::open(name, &dir).with_context(|| format!("opening snapshotter {name} at {}", dir.display()))
}

/// `[worker] proxy-snapshotter-socket`: the snapshotter is containerd's
/// snapshots gRPC service on that socket, under `name` (buildkitd's worker
/// does the same; the snapshotter-selector plugin is not consulted), in
/// `worker`'s proxy-snapshotter-namespace and within its timeout.
pub fn open_proxy_snapshotter(
    worker: &crate::config::worker::WorkerConfig,
    socket: &Path,
    name: &str,
) -> anyhow::Result<Arc<dyn Snapshotter>> {
    let proxy = berth_containerd::ProxySnapshotter::connect_with(socket, name, worker.proxy_options()).with_context(|| {
        format!(
            "proxy snapshotter {name} (worker.proxy-snapshotter-socket = {}, namespace {})",
            socket.display(),
            worker.proxy_snapshotter_namespace
        )
    })?;
    Ok(Arc::new(proxy))
}

/// The name a proxy snapshotter is used under: `--snapshotter`, else
/// `[worker] snapshotter`, which must name it (`auto` chooses among local
/// snapshotters only).
pub fn proxy_snapshotter_name(worker: &crate::config::worker::WorkerConfig, flag: Option<&str>) -> anyhow::Result<String> {
    if let Some(name) = flag {
        return Ok(name.to_string());
    }
    match &worker.snapshotter {
        crate::config::worker::SnapshotterChoice::Named(name) => Ok(name.clone()),
        crate::config::worker::SnapshotterChoice::Auto => bail!(
            "worker.proxy-snapshotter-socket is set: worker.snapshotter (or --snapshotter) must name the proxy's snapshotter, not auto"
        ),
    }
}

/// The snapshotter a record was made with: its proxy (in the record's
/// namespace, within `worker`'s proxy-snapshotter-timeout), else the local one.
fn record_snapshotter(
    root: &Path,
    worker: &crate::config::worker::WorkerConfig,
    container: &ContainerRecord,
) -> anyhow::Result<Arc<dyn Snapshotter>> {
    match &container.proxy_socket {
        Some(socket) => {
            let options = berth_containerd::ProxyOptions {
                namespace: container.proxy_namespace.clone().unwrap_or_else(|| berth_containerd::ProxyOptions::default().namespace),
                ..worker.proxy_options()
            };
            let proxy = berth_containerd::ProxySnapshotter::connect_with(socket, &container.snapshotter, options).with_context(|| {
                format!("proxy snapshotter {} (the one container {} was made with)", container.snapshotter, container.id)
            })?;
            Ok(Arc::new(proxy))
        }
        None => open_snapshotter(root, &container.snapshotter),
    }
}

/// The container's active snapshot on the image's committed chain (unpacked
/// first where missing): (snapshotter name, proxy snapshotter socket, mounts).
fn prepare_snapshot(
    settings: &Settings,
    args: &RunArgs,
    request: &ContainerRequest,
    content: &ContentStore,
    image: &berth_content::ResolvedImage,
) -> anyhow::Result<(String, Option<PathBuf>, Vec<berth_snapshot::Mount>)> {
    let root = &settings.root;
    // Absolute in the record: `berth rm` may run from another directory.
    let proxy_socket = settings.config.worker.proxy_snapshotter_socket.clone().map(|p| std::path::absolute(&p).unwrap_or(p));
    let snapshotter_name = match &proxy_socket {
        Some(_) => proxy_snapshotter_name(&settings.config.worker, args.snapshotter.as_deref())?,
        None => choose_snapshotter(settings, args.snapshotter.as_deref())?,
    };
    // Its changes become durable all at once when it closes (the drop
    // below, before the container exists): one fdatasync less than a
    // durable prepare (see berth_snapshot::Durability::AtClose).
    let snapshotter = match &proxy_socket {
        Some(socket) => open_proxy_snapshotter(&settings.config.worker, socket, &snapshotter_name)?,
        None => {
            let snapshot_dir = root.join("snapshots").join(&snapshotter_name);
            berth_snapshot::open_with(&snapshotter_name, &snapshot_dir, berth_snapshot::Durability::AtClose)
                .with_context(|| format!("opening snapshotter {snapshotter_name} at {}", snapshot_dir.display()))?
        }
    };
    let chain = unpack(content, image, snapshotter.as_ref())
        .with_context(|| format!("unpacking {} into {snapshotter_name}", request.image))?;
    let mut labels = berth_snapshot::Labels::new();
    labels.insert("berth.io/container".into(), request.id.clone());
    let mounts = snapshotter
        .prepare(&request.id, chain.as_deref(), labels)
        .with_context(|| format!("preparing the snapshot of container {}", request.id))?;
    // The metadata takes one process at a time: not held while the
    // container runs, so other runs on this root go on.
    drop(snapshotter);
    tracing::debug!(id = %request.id, "run: snapshot prepared");
    Ok((snapshotter_name, proxy_socket, mounts))
}

/// `grace`: cgroup v1's attach grace period, being paid since berth
/// started (crate::cli::run::prepay_attach_grace_period).
pub fn run(
    global: &GlobalArgs,
    args: &RunArgs,
    request: ContainerRequest,
    mut grace: Option<berth_runtime::cgroups::grace_period::AttachGracePeriod>,
) -> anyhow::Result<ExitCode> {
    let settings = Settings::load_for_run(global, args)?;
    tracing::debug!(id = %request.id, "run: settings loaded");
    let root = settings.root.clone();
    let record_file = record_path(&root, &request.id)?;
    if record_file.exists() {
        bail!("container {} already exists (berth rm {} first)", request.id, request.id);
    }
    if args.detach {
        return detach(&settings, &request);
    }
    // Image -> committed chain -> the container's active snapshot.
    let content = ContentStore::open(&root)?;
    let images = ImageStore::open(&content);
    let record = images
        .find(&request.image)
        .with_context(|| format!("image {} is not in berth's store (berth image import/pull it first)", request.image))?;
    let image = berth_content::resolve_image(&content, &record.target, &Platform::host())?;
    // The snapshot (metadata commits: fdatasyncs, ~3-5 ms) is prepared
    // while the spec is assembled (the plugins: CPU); neither needs the
    // other. A failed prepare ends the run as before (the plugin calls have
    // no effect to undo); a failed assembly goes the way of any later error.
    let (prepared, assembled) = std::thread::scope(|scope| {
        let prepare = || prepare_snapshot(&settings, args, &request, &content, &image);
        let preparing = std::thread::Builder::new().name("berth-prepare".into()).spawn_scoped(scope, prepare);
        let assembled = super::assemble_spec(&settings, &request, &image.config, None);
        tracing::debug!(id = %request.id, "run: spec assembled");
        let prepared = match preparing {
            Ok(thread) => thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => prepare(),
        };
        (prepared, assembled)
    });
    let (snapshotter_name, proxy_socket, mounts) = prepared?;

    let executor_name = args.runtime.clone().unwrap_or_else(|| "native".to_string());
    let container = ContainerRecord {
        id: request.id.clone(),
        image: request.image.clone(),
        snapshotter: snapshotter_name.clone(),
        executor: executor_name.clone(),
        log: None,
        proxy_namespace: proxy_socket.as_ref().map(|_| settings.config.worker.proxy_snapshotter_namespace.clone()),
        proxy_socket,
        state: settings.config.worker.state_dir(&root),
    };
    std::fs::create_dir_all(records_dir(&root))?;
    std::fs::write(&record_file, serde_json::to_vec_pretty(&container)?)?;

    // Set when `--rm` removed the snapshot and the record already (beside
    // the executor's delete).
    let mut parts_removed = false;
    let outcome = (|| -> anyhow::Result<i32> {
        let assembled = assembled?;
        if args.explain {
            eprint!("{}", assembled.explanation);
        }
        let bundle_dir = root.join("bundles").join(&request.id);
        std::fs::create_dir_all(&bundle_dir)?;
        let (rootfs, mounted) = Rootfs::for_snapshot(mounts, &bundle_dir.join("rootfs"))?;
        let mut spec = assembled.spec;
        let namespace = crate::config::worker::container_namespace(&root);
        super::network::join(&settings.config.worker.network, &container.state, &namespace, &request.id, &mut spec)?;
        let bundle = Bundle { dir: bundle_dir, spec, rootfs };
        let executor = executor(&container.state, &root, &executor_name)?;
        // The spec as created: `berth exec` starts from its process.
        std::fs::write(bundle.dir.join("config.json"), serde_json::to_vec(&bundle.spec)?)?;
        executor.create(&request.id, &bundle, Stdio::Inherit)?;
        tracing::debug!(id = %request.id, "run: created");
        if let Some(grace) = grace.take() {
            grace.finish();
        }
        let status = (|| {
            executor.start(&request.id)?;
            executor.wait(&request.id)
        })();
        tracing::debug!(id = %request.id, "run: exited");
        if args.rm {
            // After the container's end, the native executor's delete
            // (cgroups in every hierarchy, the state dir) and the snapshot's
            // removal (its metadata commit, its directory) touch nothing of
            // each other's: they run side by side when nothing of the
            // container can still be running or use its rootfs (its own pid
            // namespace, whose processes all died with its init; no host
            // mount of the rootfs; no poststop hook, which runs before the
            // snapshot goes).
            if status.is_ok() && executor_name == "native" && mounted.is_none() && ends_with_its_init(&bundle.spec) {
                let worker = &settings.config.worker;
                let (deleted, removed) = std::thread::scope(|s| {
                    let removal = std::thread::Builder::new()
                        .name("berth-rm-parts".into())
                        .spawn_scoped(s, || remove_parts(&root, worker, &container, false));
                    let deleted = executor.delete(&request.id, true);
                    let removed = match removal {
                        Ok(thread) => thread.join().unwrap_or_else(|_| Err(anyhow::anyhow!("removing the snapshot of {}: panicked", request.id))),
                        // No thread: in turn.
                        Err(_) => remove_parts(&root, worker, &container, false),
                    };
                    (deleted, removed)
                });
                parts_removed = true;
                if let Err(err) = &removed
                    && deleted.is_err()
                {
                    tracing::warn!(id = %request.id, "{err:#}");
                }
                deleted?;
                removed?;
            } else {
                executor.delete(&request.id, true)?;
            }
        }
        Ok(status?.code())
    })();
    if !parts_removed && (args.rm || outcome.is_err()) {
        remove_parts(&root, &settings.config.worker, &container, outcome.is_err())?;
    }
    tracing::debug!(id = %request.id, "run: done");
    Ok(crate::cli::run::exit_code(outcome? as u32))
}

/// Whether every process of a container ends with its init: a pid
/// namespace of its own (not joined by path).
fn ends_with_its_init(spec: &oci_spec::runtime::Spec) -> bool {
    let own_pid_ns = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref()).is_some_and(|ns| {
        ns.iter().any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Pid && n.path().is_none())
    });
    let poststop = spec.hooks().as_ref().and_then(|h| h.poststop().as_ref()).is_some_and(|p| !p.is_empty());
    own_pid_ns && !poststop
}

/// `-d`: the same `berth run` in a new session, its output in a log file;
/// prints the id once the container exists.
fn detach(settings: &Settings, request: &ContainerRequest) -> anyhow::Result<ExitCode> {
    let log_dir = settings.log_dir();
    std::fs::create_dir_all(&log_dir)?;
    let log = log_dir.join(format!("{}.log", request.id));
    let out = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
    let mut child = crate::cli::run::spawn_detached(&request.id, None, Some(out))?;
    let record = record_path(&settings.root, &request.id)?;
    // Wait until the child wrote the record (the container exists) or died.
    for _ in 0..600 {
        if record.exists() {
            println!("{}", request.id);
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(status) = child.try_wait()? {
            bail!("the detached run of {} ended before the container existed ({status}); see {}", request.id, log.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    bail!("the detached run of {} did not create the container within 30s; see {}", request.id, log.display())
}

/// Removes the network, the snapshot and the record of a container (its
/// executor state is gone already).
fn remove_parts(
    root: &Path,
    worker: &crate::config::worker::WorkerConfig,
    container: &ContainerRecord,
    quiet: bool,
) -> anyhow::Result<()> {
    match super::network::leave(&worker.network, &container.state, &container.id) {
        Ok(()) => {}
        Err(err) if quiet => tracing::warn!(id = %container.id, "releasing the network: {err:#}"),
        Err(err) => return Err(err),
    }
    let removed = record_snapshotter(root, worker, container).and_then(|snapshotter| match snapshotter.remove(&container.id) {
        Ok(()) | Err(berth_snapshot::Error::NotFound(_)) => Ok(()),
        Err(err) => Err(err).with_context(|| format!("removing the snapshot of {}", container.id)),
    });
    match removed {
        Ok(()) => {}
        Err(err) if quiet => tracing::warn!(id = %container.id, "{err:#}"),
        Err(err) => return Err(err),
    }
    let _ = std::fs::remove_dir_all(root.join("bundles").join(&container.id));
    std::fs::remove_file(record_path(root, &container.id)?).ok();
    Ok(())
}

fn root_of(global: &GlobalArgs) -> anyhow::Result<PathBuf> {
    Ok(config_and_root(global)?.1)
}

fn config_and_root(global: &GlobalArgs) -> anyhow::Result<(crate::config::Config, PathBuf)> {
    let (config, _) = crate::config::Config::load(global.config.as_deref())?;
    let root = super::root_dir(global, &config);
    Ok((config, root))
}

pub fn ps(global: &GlobalArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let root = root_of(global)?;
    let mut rows = Vec::new();
    if let Ok(entries) = std::fs::read_dir(records_dir(&root)) {
        for entry in entries.flatten() {
            let Some(id) = entry.file_name().to_string_lossy().strip_suffix(".json").map(str::to_string) else { continue };
            let Ok(record) = load_record(&root, &id) else { continue };
            let state = executor(&record.state, &root, &record.executor).and_then(|e| Ok(e.state(&id)?));
            let (status, pid) = match state {
                Ok(state) => (format!("{:?}", state.status()).to_lowercase(), state.pid().map(|p| p.to_string()).unwrap_or_default()),
                Err(_) => ("unknown".to_string(), String::new()),
            };
            let addresses = super::network::addresses(&record.state, &id).join(",");
            rows.push((id, record.image, status, pid, addresses));
        }
    }
    rows.sort();
    if !quiet {
        println!("{:<24} {:<40} {:<10} {:<8} ADDRESSES", "ID", "IMAGE", "STATUS", "PID");
    }
    for (id, image, status, pid, addresses) in rows {
        if quiet {
            println!("{id}");
        } else {
            println!("{id:<24} {image:<40} {status:<10} {pid:<8} {addresses}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn kill(global: &GlobalArgs, id: &str, signal: i32) -> anyhow::Result<ExitCode> {
    let root = root_of(global)?;
    let record = load_record(&root, id)?;
    executor(&record.state, &root, &record.executor)?.kill(id, signal, false)?;
    Ok(ExitCode::SUCCESS)
}

pub fn rm(global: &GlobalArgs, id: &str, force: bool) -> anyhow::Result<()> {
    let (config, root) = config_and_root(global)?;
    let record = load_record(&root, id)?;
    let executor = executor(&record.state, &root, &record.executor)?;
    match executor.delete(id, force) {
        Ok(()) | Err(berth_runtime::Error::NotFound(_)) => {}
        Err(err) => return Err(err).with_context(|| format!("removing container {id}")),
    }
    remove_parts(&root, &config.worker, &record, false)
}

pub fn logs(global: &GlobalArgs, id: &str) -> anyhow::Result<Vec<u8>> {
    let root = root_of(global)?;
    load_record(&root, id)?;
    let log = root.join("logs").join(format!("{id}.log"));
    match std::fs::read(&log) {
        Ok(data) => Ok(data),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            bail!("container {id} was not started with -d: its output went to the terminal")
        }
        Err(err) => Err(err).with_context(|| format!("reading {}", log.display())),
    }
}

/// The image's layers as committed snapshots; the top one's name (its chain ID).
fn unpack(content: &ContentStore, image: &berth_content::ResolvedImage, snapshotter: &dyn Snapshotter) -> anyhow::Result<Option<String>> {
    if image.manifest.layers().is_empty() {
        return Ok(None);
    }
    Ok(Some(berth_unpack::unpack_image(content, image, snapshotter, &berth_unpack::UnpackOptions::default())?))
}

/// What `berth exec` asks for on top of the container's own process.
#[derive(Debug, Default)]
pub struct ExecRequest {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    /// `UID[:GID]`.
    pub user: Option<String>,
}

/// The container's process (from the spec it was created with) with the
/// request applied, as `runc exec` and `ctr task exec` do: same env,
/// capabilities, rlimits, user unless asked otherwise; never a terminal.
pub fn exec_process(spec: &oci_spec::runtime::Spec, request: &ExecRequest) -> anyhow::Result<oci_spec::runtime::Process> {
    let mut process = spec.process().clone().context("the container's spec has no process")?;
    if request.args.is_empty() {
        bail!("berth exec needs a command");
    }
    process.set_args(Some(request.args.clone()));
    process.set_terminal(Some(false));
    if !request.env.is_empty() {
        let mut env = process.env().clone().unwrap_or_default();
        for pair in &request.env {
            let key = pair.split_once('=').map(|(k, _)| k).filter(|k| !k.is_empty());
            let Some(key) = key else { bail!("--env {pair:?}: expected KEY=VALUE") };
            env.retain(|existing| existing.split_once('=').map(|(k, _)| k) != Some(key));
            env.push(pair.clone());
        }
        process.set_env(Some(env));
    }
    if let Some(cwd) = &request.cwd {
        if !cwd.starts_with('/') {
            bail!("--workdir {cwd:?} is not an absolute path");
        }
        process.set_cwd(cwd.into());
    }
    if let Some(user) = &request.user {
        let (uid, gid) = match user.split_once(':') {
            Some((uid, gid)) => (uid, Some(gid)),
            None => (user.as_str(), None),
        };
        let mut spec_user = process.user().clone();
        spec_user.set_uid(uid.parse().with_context(|| format!("--user {user:?}: the uid is not a number"))?);
        if let Some(gid) = gid {
            spec_user.set_gid(gid.parse().with_context(|| format!("--user {user:?}: the gid is not a number"))?);
        }
        spec_user.set_additional_gids(None);
        process.set_user(spec_user);
    }
    Ok(process)
}

/// `berth exec`: a process in a running container; its exit code.
pub fn exec(global: &GlobalArgs, id: &str, request: &ExecRequest) -> anyhow::Result<ExitCode> {
    let root = root_of(global)?;
    let record = load_record(&root, id)?;
    let spec_path = root.join("bundles").join(id).join("config.json");
    let spec: oci_spec::runtime::Spec = serde_json::from_slice(
        &std::fs::read(&spec_path).with_context(|| format!("container {id}: reading its spec {}", spec_path.display()))?,
    )
    .with_context(|| format!("container {id}: parsing {}", spec_path.display()))?;
    let process = exec_process(&spec, request)?;
    let executor = executor(&record.state, &root, &record.executor)?;
    let state = executor.state(id).with_context(|| format!("container {id}"))?;
    if !matches!(state.status(), oci_spec::runtime::ContainerState::Running) {
        bail!("container {id} is {}, not running", format!("{:?}", state.status()).to_lowercase());
    }
    let pid = executor.exec(id, &process, Stdio::Inherit).with_context(|| format!("exec in container {id}"))?;
    let status = executor.wait_exec(pid)?;
    Ok(crate::cli::run::exit_code(status.code() as u32))
}

#[cfg(test)]
mod exec_tests {
    use super::*;

    fn spec() -> oci_spec::runtime::Spec {
        let mut spec = oci_spec::runtime::Spec::default();
        let mut process = spec.process().clone().unwrap();
        process.set_env(Some(vec!["PATH=/bin".into(), "A=1".into()]));
        spec.set_process(Some(process));
        spec
    }

    #[test]
    fn exec_starts_from_the_containers_process() {
        let request = ExecRequest {
            args: vec!["sh".into()],
            env: vec!["A=2".into(), "B=3".into()],
            cwd: Some("/srv".into()),
            user: Some("7:8".into()),
        };
        let process = exec_process(&spec(), &request).unwrap();
        assert_eq!(process.args().as_deref(), Some(&["sh".to_string()][..]));
        assert_eq!(process.env().as_deref(), Some(&["PATH=/bin".to_string(), "A=2".into(), "B=3".into()][..]));
        assert_eq!(process.cwd().to_str(), Some("/srv"));
        assert_eq!((process.user().uid(), process.user().gid()), (7, 8));
        assert_eq!(process.terminal(), Some(false));
        // Capabilities and the rest stay the container's.
        assert_eq!(process.capabilities(), spec().process().as_ref().unwrap().capabilities());
    }

    #[test]
    fn bad_requests_say_which_flag() {
        let bad = |request: ExecRequest| format!("{:#}", exec_process(&spec(), &request).unwrap_err());
        assert!(bad(ExecRequest::default()).contains("needs a command"));
        let args = || vec!["true".to_string()];
        assert!(bad(ExecRequest { args: args(), env: vec!["NOEQ".into()], ..Default::default() }).contains("--env"));
        assert!(bad(ExecRequest { args: args(), cwd: Some("rel".into()), ..Default::default() }).contains("--workdir"));
        assert!(bad(ExecRequest { args: args(), user: Some("root".into()), ..Default::default() }).contains("--user"));
    }
}
