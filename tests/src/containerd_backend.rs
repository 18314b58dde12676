//! The containerd backends of the matrix: a containerd of their own
//! ([`ContainerdDaemon`]) driven through berth's client
//! ([`berth_containerd::ContainerdBackend`]), with a built-in or proxy
//! snapshotter and a runc v2 runtime binary of choice.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use berth_containerd::{ContainerdBackend, RunRequest, RuntimeSelection, Stdio};
use berth_snapshot::Snapshotter;

use crate::backend::{Backend, ContainerRun, RunResult, RunningBackend, SkipReason, require_binary, require_root};
use crate::closers::Closers;
use crate::daemon::{ContainerdDaemon, DaemonConfig};
use crate::image::TestImage;
use crate::logs::read_log;
use crate::process;

/// The namespace the backends work in.
pub const NAMESPACE: &str = "berth-test";

/// Starts a snapshots gRPC server on the given socket path and registers
/// what stops it in the closers (they run after the daemon is stopped).
pub type ServeSnapshotter = Arc<dyn Fn(&Path, &mut Closers) -> anyhow::Result<()> + Send + Sync>;

#[derive(Clone)]
pub enum SnapshotterSetup {
    /// A snapshotter compiled into containerd (`overlayfs`, `native`).
    Builtin(String),
    /// `[proxy_plugins.<name>]` served by `serve` before the daemon starts.
    Proxy { name: String, serve: ServeSnapshotter },
}

impl SnapshotterSetup {
    pub fn name(&self) -> &str {
        match self {
            SnapshotterSetup::Builtin(name) | SnapshotterSetup::Proxy { name, .. } => name,
        }
    }
}

pub struct ContainerdTestBackend {
    pub name: String,
    pub snapshotter: SnapshotterSetup,
    pub runtime: RuntimeSelection,
    /// Binaries that must be on PATH (or paths that must exist).
    pub required: Vec<String>,
}

impl ContainerdTestBackend {
    /// containerd with overlayfs and runc: the `containerd` backend.
    pub fn plain() -> Self {
        ContainerdTestBackend {
            name: "containerd".into(),
            snapshotter: SnapshotterSetup::Builtin("overlayfs".into()),
            runtime: RuntimeSelection::default(),
            required: ["containerd", "ctr", "containerd-shim-runc-v2", "runc"].map(String::from).to_vec(),
        }
    }
}

/// `berth snapshotter serve` as the proxy snapshotter `name`: started as a
/// child with its own root and log in `dir`'s temp dir, waited for, stopped
/// by pid after the daemon. For `containerd+berth-snapshotter`.
pub fn serve_with_berth_cli(berth: PathBuf, snapshotter: String) -> ServeSnapshotter {
    Arc::new(move |socket: &Path, closers: &mut Closers| {
        let dir = tempfile::Builder::new().prefix("berth-snapshotter-").tempdir()?.keep();
        {
            let dir = dir.clone();
            closers.push(format!("removing {}", dir.display()), move || Ok(std::fs::remove_dir_all(&dir)?));
        }
        let log_path = dir.join("berth-snapshotter.log");
        let log = std::fs::File::create(&log_path)?;
        let mut child = Command::new(&berth)
            .arg("--root")
            .arg(dir.join("root"))
            .args(["snapshotter", "serve", "--snapshotter", &snapshotter, "--address"])
            .arg(socket)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", berth.display()))?;
        let waited = process::wait_for_socket(socket, &mut child, Duration::from_secs(20), || read_log(&log_path));
        let pid = child.id();
        let child = Arc::new(Mutex::new(child));
        closers.push(format!("stopping berth snapshotter serve (pid {pid})"), move || {
            process::stop_child(&mut child.lock().unwrap(), Duration::from_secs(10))
        });
        waited.with_context(|| format!("{} snapshotter serve", berth.display()))
    })
}

/// A snapshots service in this process (its own async runtime) serving
/// `snapshotter`; stopped by the closer it registers.
pub fn serve_in_process(snapshotter: Arc<dyn Snapshotter>) -> ServeSnapshotter {
    Arc::new(move |socket: &Path, closers: &mut Closers| {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let listener = {
            let _entered = runtime.enter();
            berth_containerd::snapshots_service::bind(socket)?
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (socket, snapshotter) = (socket.to_path_buf(), snapshotter.clone());
        let server = runtime.spawn(async move {
            let stopped = async {
                stopped.await.ok();
            };
            berth_containerd::snapshots_service::serve_on(listener, &socket, snapshotter, stopped).await
        });
        closers.push("stopping the in-process snapshots service", move || {
            stop.send(()).ok();
            runtime.block_on(server)?
        });
        Ok(())
    })
}

/// The `berth` binary: `BERTH_BIN`, else the workspace's target/release/berth
/// (`cargo build --release -p berth-host`).
pub fn berth_cli() -> PathBuf {
    std::env::var_os("BERTH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/berth"))
}

/// `berth-runc`: a symlink to the berth binary beside it (berth answers
/// runc's command line when called by a name ending in `runc`), what
/// containerd's shim runs as `BinaryName` in `containerd+berth-runtime`.
/// Created when missing; the path even when berth itself is missing (the
/// backend is then skipped for the missing binary).
pub fn berth_runc_link() -> PathBuf {
    let berth = berth_cli();
    let link = berth.with_file_name("berth-runc");
    if berth.is_file()
        && std::fs::symlink_metadata(&link).is_err()
        && let Err(err) = std::os::unix::fs::symlink("berth", &link)
    {
        eprintln!("cannot create {}: {err}", link.display());
    }
    link
}

impl ContainerdTestBackend {
    /// containerd using berth's snapshotter `snapshotter` through
    /// `berth snapshotter serve` (the `containerd+berth-snapshotter` backend).
    pub fn with_berth_snapshotter(berth: PathBuf, snapshotter: &str) -> Self {
        let mut required = Self::plain().required;
        required.push(berth.to_string_lossy().into_owned());
        ContainerdTestBackend {
            name: "containerd+berth-snapshotter".into(),
            snapshotter: SnapshotterSetup::Proxy { name: "berth".into(), serve: serve_with_berth_cli(berth, snapshotter.into()) },
            runtime: RuntimeSelection::default(),
            required,
        }
    }

    /// containerd's runc shim running berth's runc-compatible CLI (the
    /// `containerd+berth-runtime` backend).
    pub fn with_berth_runtime(berth_runtime: PathBuf) -> Self {
        let mut required = Self::plain().required;
        required.push(berth_runtime.to_string_lossy().into_owned());
        ContainerdTestBackend {
            name: "containerd+berth-runtime".into(),
            runtime: RuntimeSelection::runc_binary(berth_runtime),
            required,
            ..Self::plain()
        }
    }
}

impl Backend for ContainerdTestBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn available(&self) -> Result<(), SkipReason> {
        require_root()?;
        self.required.iter().try_for_each(|binary| require_binary(binary))
    }

    fn start(&self, image: &TestImage) -> anyhow::Result<Box<dyn RunningBackend>> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let mut snapshotter_closers = Closers::new();
        let mut config = DaemonConfig::default();
        let mut proxy_dir = None;
        if let SnapshotterSetup::Proxy { name, serve } = &self.snapshotter {
            let dir = tempfile::Builder::new().prefix("berth-proxy-").tempdir()?;
            let socket = dir.path().join("snapshotter.sock");
            serve(&socket, &mut snapshotter_closers).with_context(|| format!("serving snapshotter {name}"))?;
            config.proxy_snapshotters.push((name.clone(), socket));
            proxy_dir = Some(dir);
        }
        let daemon = ContainerdDaemon::start_with(config)?;
        let client = runtime
            .block_on(ContainerdBackend::connect(daemon.address(), NAMESPACE))
            .with_context(|| format!("connecting to {}", daemon.address().display()))?;
        runtime
            .block_on(client.import_image(&image.layout_dir, &image.name))
            .with_context(|| format!("importing {} into {}\n{}", image.name, daemon.address().display(), daemon.logs()))?;
        Ok(Box::new(RunningContainerd {
            name: self.name.clone(),
            daemon,
            _snapshotter_closers: snapshotter_closers,
            _proxy_dir: proxy_dir,
            client,
            runtime,
            image: image.name.clone(),
            snapshotter: self.snapshotter.name().to_string(),
            runtime_selection: self.runtime.clone(),
        }))
    }
}

/// Fields drop in declaration order: the daemon (with its shims) is
/// stopped before the snapshotter it used, the async runtime last.
pub struct RunningContainerd {
    name: String,
    daemon: ContainerdDaemon,
    _snapshotter_closers: Closers,
    _proxy_dir: Option<tempfile::TempDir>,
    client: ContainerdBackend,
    runtime: tokio::runtime::Runtime,
    image: String,
    snapshotter: String,
    runtime_selection: RuntimeSelection,
}

impl RunningContainerd {
    pub fn daemon(&self) -> &ContainerdDaemon {
        &self.daemon
    }

    pub fn client(&self) -> &ContainerdBackend {
        &self.client
    }

    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}

impl RunningBackend for RunningContainerd {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(&self, run: &ContainerRun) -> anyhow::Result<RunResult> {
        let request = RunRequest {
            snapshotter: Some(self.snapshotter.clone()),
            runtime: self.runtime_selection.clone(),
            stdio: Stdio::Capture,
            rm: true,
            ..RunRequest::new(&run.id, &self.image, run.spec.clone())
        };
        let outcome = self.runtime.block_on(self.client.run(request))?;
        Ok(RunResult {
            exit_code: outcome.status.code,
            stdout: String::from_utf8_lossy(&outcome.output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&outcome.output.stderr).into_owned(),
        })
    }

    fn logs(&self) -> String {
        self.daemon.logs()
    }
}
