//! `berth run|ps|kill|rm|logs`: containers on a backend.
//!
//! - `native` (default): berth's image store, its snapshotter (chosen by the
//!   snapshotter-selector plugin unless `--snapshotter`), the spec-mutator
//!   chain and berth's own executor (or `--runtime runc|crun`).
//! - `containerd`: the same spec chain, containerd's content store,
//!   snapshotter and runc shim (nomad-driver-containerd's flow).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use berth_containerd::{ContainerdBackend, RunRequest, RuntimeSelection, Stdio, TaskState};
use berth_runtime::cgroups::grace_period::AttachGracePeriod;

use super::GlobalArgs;
use crate::container::{self, ContainerRequest};

/// Where a container runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// berth's own executor on berth's snapshots.
    Native,
    /// A containerd daemon (`--address`, `--namespace`).
    Containerd,
}

/// Flags shared by every command that talks to a backend.
#[derive(Debug, Clone, clap::Args)]
pub struct BackendArgs {
    /// Where containers run.
    #[arg(long, value_enum, default_value = "native")]
    pub backend: BackendKind,
    /// containerd's socket (`--backend containerd`).
    #[arg(long, default_value = "/run/containerd/containerd.sock")]
    pub address: PathBuf,
    /// containerd namespace (`--backend containerd`).
    #[arg(long, default_value = "berth")]
    pub namespace: String,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Remove the container (and its snapshot, cgroup, mounts) when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Start it and return; read its output with `berth logs`.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// The container id (default: a random one).
    #[arg(long)]
    pub name: Option<String>,
    /// Request options handed to the spec-mutator plugins (`memory=64m`...).
    #[arg(long = "opt", value_name = "KEY=VALUE")]
    pub opts: Vec<String>,
    /// Annotations on the container (seen by plugins, kept in the spec).
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Snapshotter (default: the snapshotter-selector plugin's choice; containerd's default on containerd).
    #[arg(long)]
    pub snapshotter: Option<String>,
    /// OCI runtime binary: `native` executor by default; `runc`/`crun` (or a path)
    /// for the native backend, containerd's runc shim `BinaryName` for containerd.
    #[arg(long)]
    pub runtime: Option<String>,
    /// Print which plugin changed which spec field before running.
    #[arg(long)]
    pub explain: bool,
    /// Network: `host`, `none` (loopback only), `bridge` (the CNI network of
    /// --cni-config-dir), or `auto`: the spec's own namespace, as the plugin
    /// chain left it (overrides worker.network.mode).
    #[arg(long, value_name = "MODE")]
    pub net: Option<crate::config::worker::NetworkMode>,
    #[command(flatten)]
    pub worker: crate::config::worker::WorkerFlags,

    #[command(flatten)]
    pub plugins: crate::cli::plugin::PluginFlags,
    /// The image (a name in berth's store, or containerd's with `--backend containerd`).
    pub image: String,
    /// The command and its arguments (default: the image's entrypoint and cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct PsArgs {
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Print the ids only.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct KillArgs {
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Signal number or name (`TERM`, `SIGKILL`, `9`).
    #[arg(long, short = 's', default_value = "TERM")]
    pub signal: String,
    pub id: String,
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Kill it first if it still runs.
    #[arg(long, short = 'f')]
    pub force: bool,
    #[arg(required = true)]
    pub ids: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Environment KEY=VALUE added to the container's (repeatable).
    #[arg(long, short = 'e')]
    pub env: Vec<String>,
    /// Working directory (default: the container's).
    #[arg(long, short = 'w')]
    pub workdir: Option<String>,
    /// UID[:GID] (default: the container's user).
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    pub id: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub backend: BackendArgs,
    pub id: String,
}

/// Set in the environment of the detached `berth run` that `-d` starts: the
/// id the parent printed. The child runs in the foreground as that id.
const DETACHED_ID_ENV: &str = "BERTH_DETACHED_ID";
/// Set with it for containerd: where the child relays the task's output.
const DETACHED_LOG_DIR_ENV: &str = "BERTH_DETACHED_LOG_DIR";

/// The detached re-execution of a run (see `detach`) takes its container
/// id out of the environment and becomes a foreground run of that name.
/// First thing in `main`, before any thread starts: removing a variable is
/// sound only while nothing else runs.
pub fn adopt_detached_id(args: &mut RunArgs) {
    if let Ok(id) = std::env::var(DETACHED_ID_ENV) {
        // SAFETY: single-threaded here (see above); nothing reads the
        // environment concurrently.
        unsafe { std::env::remove_var(DETACHED_ID_ENV) };
        args.name = Some(id);
        args.detach = false;
    }
}

/// The native executor's cgroup attach waits for an RCU grace period on
/// cgroup v1 (see berth_runtime::cgroups::grace_period): for a run that
/// will attach a container here (native backend and executor, in the
/// foreground), a thread starts paying it at once, while the configuration
/// is read, the image resolved, the snapshot prepared and the spec
/// assembled. It holds the host's cgroup lock while it waits, so the
/// creation's cgroup writes wait for it.
pub fn prepay_attach_grace_period(args: &RunArgs) -> Option<AttachGracePeriod> {
    let native_executor = args.runtime.as_deref().is_none_or(|r| r == "native");
    if args.backend.backend == BackendKind::Native && !args.detach && native_executor { AttachGracePeriod::start() } else { None }
}

pub fn run(global: &GlobalArgs, args: RunArgs, grace: Option<AttachGracePeriod>) -> anyhow::Result<ExitCode> {
    let id = args.name.clone().unwrap_or_else(container::random_id);
    let request = ContainerRequest {
        id: id.clone(),
        image: args.image.clone(),
        command: args.command.clone(),
        options: parse_pairs(&args.opts, "--opt")?,
        annotations: parse_pairs(&args.annotations, "--annotation")?,
    };
    match args.backend.backend {
        BackendKind::Native => crate::container::native::run(global, &args, request, grace),
        BackendKind::Containerd => block_on(run_on_containerd(global, &args, request)),
    }
}

async fn run_on_containerd(global: &GlobalArgs, args: &RunArgs, request: ContainerRequest) -> anyhow::Result<ExitCode> {
    let backend = connect(&args.backend).await?;
    let settings = crate::container::Settings::load_for_run(global, args)?;
    if backend.ensure_image(&request.image).await.is_err() {
        // Not in containerd yet: export it from berth's store, if there.
        let layout = crate::container::export_layout(&settings, &request.image).with_context(|| {
            format!("image {} is neither in containerd (namespace {}) nor in berth's store", request.image, args.backend.namespace)
        })?;
        backend.import_image(layout.path(), &request.image).await?;
    }
    let image_config = backend.image_config(&request.image).await?;
    let assembled = container::assemble_spec(&settings, &request, &image_config, None)?;
    if args.explain {
        eprint!("{}", assembled.explanation);
    }
    let mut spec = assembled.spec;
    // The cgroups path berth's own executor would use (its root's
    // namespace) gives way to containerd's `/<namespace>/<id>`, as a
    // containerd client's would.
    if let Some(linux) = spec.linux_mut() {
        linux.set_cgroups_path(None);
    }
    berth_containerd::spec::prepare_for_containerd(&mut spec, &args.backend.namespace, &request.id);
    let network = &settings.config.worker.network;
    if !args.detach {
        // A detached run networks the container in its child (this same
        // command line again), which also releases it with --rm.
        let namespace = crate::config::worker::container_namespace(&settings.root);
        container::network::join(network, &settings.state_dir(), &namespace, &request.id, &mut spec)?;
    }
    let mut run = RunRequest::new(&request.id, &request.image, spec);
    run.snapshotter = args.snapshotter.clone();
    run.rm = args.rm;
    if let Some(runtime) = &args.runtime {
        run.runtime = RuntimeSelection::runc_binary(resolve_binary(runtime)?);
    }
    if args.detach {
        // The task's output comes through FIFOs someone must read while it
        // runs: a detached `berth run` of its own does, into the log file.
        let log_dir = settings.log_dir();
        let mut child = spawn_detached(&request.id, Some(&log_dir), None)?;
        for _ in 0..600 {
            if backend.list().await?.iter().any(|c| c.id == request.id) {
                println!("{}", request.id);
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(status) = child.try_wait()? {
                bail!("the detached run of {} ended before its container existed ({status})", request.id);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        bail!("the detached run of {} did not create its container within 30s", request.id);
    }
    run.stdio = match std::env::var_os(DETACHED_LOG_DIR_ENV) {
        Some(dir) => Stdio::LogDir(PathBuf::from(dir)),
        None => Stdio::Inherit,
    };
    let outcome = backend.run(run).await;
    if args.rm || outcome.is_err() {
        container::network::leave(network, &settings.state_dir(), &request.id)?;
    }
    Ok(exit_code(outcome?.status.code))
}

pub fn ps(global: &GlobalArgs, args: PsArgs) -> anyhow::Result<ExitCode> {
    match args.backend.backend {
        BackendKind::Native => crate::container::native::ps(global, args.quiet),
        BackendKind::Containerd => block_on(async {
            let backend = connect(&args.backend).await?;
            let mut out = std::io::stdout().lock();
            if !args.quiet {
                writeln!(out, "{:<24} {:<40} {:<14} {:<8}", "ID", "IMAGE", "STATUS", "PID")?;
            }
            for container in backend.list().await? {
                if args.quiet {
                    writeln!(out, "{}", container.id)?;
                    continue;
                }
                let status = match container.state {
                    TaskState::None => "created".to_string(),
                    TaskState::Created => "created".to_string(),
                    TaskState::Running => "running".to_string(),
                    TaskState::Stopped { exit_code } => format!("exited({exit_code})"),
                    TaskState::Paused => "paused".to_string(),
                    TaskState::Unknown => "unknown".to_string(),
                };
                let pid = container.pid.map(|p| p.to_string()).unwrap_or_default();
                writeln!(out, "{:<24} {:<40} {:<14} {:<8}", container.id, container.image, status, pid)?;
            }
            Ok(ExitCode::SUCCESS)
        }),
    }
}

pub fn kill(global: &GlobalArgs, args: KillArgs) -> anyhow::Result<ExitCode> {
    let signal = parse_signal(&args.signal)?;
    match args.backend.backend {
        BackendKind::Native => crate::container::native::kill(global, &args.id, signal),
        BackendKind::Containerd => block_on(async {
            connect(&args.backend).await?.kill(&args.id, signal as u32, false).await?;
            Ok(ExitCode::SUCCESS)
        }),
    }
}

pub fn rm(global: &GlobalArgs, args: RmArgs) -> anyhow::Result<ExitCode> {
    match args.backend.backend {
        BackendKind::Native => {
            for id in &args.ids {
                crate::container::native::rm(global, id, args.force)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        BackendKind::Containerd => block_on(async {
            let backend = connect(&args.backend).await?;
            let (config, _) = crate::config::Config::load(global.config.as_deref())?;
            let state = config.worker.state_dir(&container::root_dir(global, &config));
            for id in &args.ids {
                backend.delete(id, args.force).await?;
                container::network::leave(&config.worker.network, &state, id)?;
            }
            Ok(ExitCode::SUCCESS)
        }),
    }
}

pub fn exec(global: &GlobalArgs, args: ExecArgs) -> anyhow::Result<ExitCode> {
    let request =
        crate::container::native::ExecRequest { args: args.command, env: args.env, cwd: args.workdir, user: args.user };
    match args.backend.backend {
        BackendKind::Native => crate::container::native::exec(global, &args.id, &request),
        BackendKind::Containerd => block_on(async {
            let backend = connect(&args.backend).await?;
            let spec = backend.container_spec(&args.id).await?;
            let process = crate::container::native::exec_process(&spec, &request)?;
            let exec_id = format!("berth-exec-{}", container::random_id());
            let outcome = backend.exec(&args.id, &exec_id, &process, &Stdio::Inherit).await?;
            Ok(exit_code(outcome.status.code))
        }),
    }
}

pub fn logs(global: &GlobalArgs, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let data = match args.backend.backend {
        BackendKind::Native => crate::container::native::logs(global, &args.id)?,
        BackendKind::Containerd => block_on(async { Ok(connect(&args.backend).await?.logs(&args.id).await?) })?,
    };
    std::io::stdout().write_all(&data)?;
    Ok(ExitCode::SUCCESS)
}

/// This same `berth run` command line again, in a session of its own with
/// no terminal, told through its environment to run in the foreground as
/// `id` (and, for containerd, to relay the task's output into `log_dir`):
/// stdin from /dev/null, stdout/stderr to `log` or /dev/null.
pub fn spawn_detached(id: &str, log_dir: Option<&std::path::Path>, log: Option<std::fs::File>) -> anyhow::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command.args(std::env::args_os().skip(1)).env(DETACHED_ID_ENV, id).stdin(std::process::Stdio::null());
    if let Some(dir) = log_dir {
        command.env(DETACHED_LOG_DIR_ENV, dir);
    }
    match log {
        Some(file) => {
            command.stdout(file.try_clone()?).stderr(file);
        }
        None => {
            command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        }
    }
    // A session of its own: the terminal's signals do not reach it.
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        command.pre_exec(|| nix::unistd::setsid().map(drop).map_err(std::io::Error::from));
    }
    command.spawn().context("starting the detached run")
}

async fn connect(args: &BackendArgs) -> anyhow::Result<ContainerdBackend> {
    Ok(ContainerdBackend::connect(&args.address, &args.namespace).await?)
}

fn block_on<T>(future: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future)
}

/// `runc`, `crun` or a path, resolved to an absolute path (containerd's shim
/// and the oci-runtime executor run it from elsewhere).
pub fn resolve_binary(name: &str) -> anyhow::Result<PathBuf> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        if !path.is_file() {
            bail!("runtime binary {name} does not exist");
        }
        return Ok(std::fs::canonicalize(&path)?);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .with_context(|| format!("runtime binary {name:?} is not on PATH"))
}

/// The process exit code for a container's: its code, 128+N for signal N.
pub fn exit_code(code: u32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(255))
}

/// `KEY=VALUE` pairs; `flag` names the flag in errors.
pub fn parse_pairs(pairs: &[String], flag: &str) -> anyhow::Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
            _ => bail!("{flag} {pair:?}: expected KEY=VALUE"),
        })
        .collect()
}

/// A signal by number (`9`) or name (`KILL`, `SIGKILL`).
pub fn parse_signal(text: &str) -> anyhow::Result<i32> {
    if let Ok(number) = text.parse::<i32>() {
        return Ok(number);
    }
    let name = text.to_ascii_uppercase();
    let name = if name.starts_with("SIG") { name } else { format!("SIG{name}") };
    name.parse::<nix::sys::signal::Signal>()
        .map(|signal| signal as i32)
        .map_err(|_| anyhow::anyhow!("unknown signal {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert!(parse_signal("NOPE").is_err());
    }

    #[test]
    fn pairs_need_a_key() {
        let parsed = parse_pairs(&["memory=64m".into(), "a==b".into()], "--opt").unwrap();
        assert_eq!(parsed["memory"], "64m");
        assert_eq!(parsed["a"], "=b");
        let err = parse_pairs(&["=x".into()], "--opt").unwrap_err();
        assert!(err.to_string().contains("--opt"), "{err}");
        assert!(parse_pairs(&["novalue".into()], "--opt").is_err());
    }
}
