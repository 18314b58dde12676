//! A containerd of its own for a test: a temp dir holding root, state, a
//! generated config.toml and the sockets; the log captured to a file; the
//! daemon, its shims and their containers stopped by pid, mounts undone and
//! the dir removed by closers that always run.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::closers::Closers;
use crate::logs::{PrintLogOnPanic, read_log};
use crate::{mounts, process};

const SOCKET_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What the generated config.toml holds beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct DaemonConfig {
    /// The containerd binary (default `containerd` on PATH).
    pub binary: Option<PathBuf>,
    /// `[proxy_plugins.<name>] type = "snapshot" address = <socket>`.
    pub proxy_snapshotters: Vec<(String, PathBuf)>,
    /// The OCI runtime binary of the legacy `io.containerd.runtime.v1.linux`
    /// runtime (`[plugins."io.containerd.runtime.v1.linux"] runtime = ...`).
    /// `io.containerd.runc.v2` takes its binary per container instead
    /// (`RuntimeSelection::Runc { binary_name }`): without CRI, containerd
    /// has no daemon-wide runc v2 options.
    pub legacy_linux_runtime: Option<PathBuf>,
    /// Extra TOML appended verbatim.
    pub extra: String,
    /// Environment added to the daemon's (e.g. a PATH with other shims).
    pub env: Vec<(String, String)>,
}

impl DaemonConfig {
    /// The config.toml for a daemon living in `dir`.
    pub fn render(&self, dir: &Path) -> String {
        let mut toml = format!(
            r#"version = 2
root = {root:?}
state = {state:?}
# CRI listens on fixed ports and needs its own setup: off, so daemons can run side by side.
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = {grpc:?}

[ttrpc]
  address = {ttrpc:?}

[debug]
  address = {debug:?}
  level = "debug"
"#,
            root = dir.join("root"),
            state = dir.join("state"),
            grpc = dir.join("containerd.sock"),
            ttrpc = dir.join("containerd.sock.ttrpc"),
            debug = dir.join("debug.sock"),
        );
        for (name, address) in &self.proxy_snapshotters {
            write!(toml, "\n[proxy_plugins.{name:?}]\n  type = \"snapshot\"\n  address = {address:?}\n").unwrap();
        }
        if let Some(runtime) = &self.legacy_linux_runtime {
            write!(toml, "\n[plugins.\"io.containerd.runtime.v1.linux\"]\n  runtime = {runtime:?}\n  shim_debug = true\n").unwrap();
        }
        toml.push_str(&self.extra);
        toml
    }
}

/// A running containerd. Dropping it (or `stop`) tears everything down.
pub struct ContainerdDaemon {
    dir: PathBuf,
    address: PathBuf,
    log_path: PathBuf,
    pid: u32,
    closers: Closers,
}

impl ContainerdDaemon {
    pub fn start() -> Result<Self> {
        Self::start_with(DaemonConfig::default())
    }

    pub fn start_with(config: DaemonConfig) -> Result<Self> {
        let mut closers = Closers::new();
        let dir = tempfile::Builder::new().prefix("berth-containerd-").tempdir()?.keep();
        {
            let dir = dir.clone();
            closers.push(format!("removing {}", dir.display()), move || {
                std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))
            });
        }
        {
            let dir = dir.clone();
            closers.push(format!("unmounting under {}", dir.display()), move || mounts::unmount_all_under(&dir));
        }
        // Namespaces the daemon had, learnt while deleting its tasks.
        let namespaces = Arc::new(Mutex::new(Vec::<String>::new()));
        {
            let namespaces = namespaces.clone();
            closers.push("removing per-namespace cgroup and runc dirs", move || {
                remove_namespace_dirs(&namespaces.lock().unwrap());
                Ok(())
            });
        }
        let address = dir.join("containerd.sock");
        let config_path = dir.join("config.toml");
        std::fs::write(&config_path, config.render(&dir))?;
        let log_path = dir.join("containerd.log");
        let log = File::create(&log_path)?;
        let binary = config.binary.clone().unwrap_or_else(|| "containerd".into());
        let mut command = Command::new(&binary);
        command.arg("--config").arg(&config_path).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        command.envs(config.env.iter().map(|(k, v)| (k, v)));
        // Its own process group: a ^C to the test run reaches the closers, not the daemon first.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id();
        let child = Arc::new(Mutex::new(child));
        {
            let address = address.clone();
            closers.push("killing shims and their containers", move || {
                process::kill_shims(&address);
                Ok(())
            });
        }
        {
            let child = child.clone();
            closers.push(format!("stopping containerd (pid {pid})"), move || {
                process::stop_child(&mut child.lock().unwrap(), STOP_GRACE)
            });
        }
        {
            let address = address.clone();
            closers.push("deleting tasks", move || delete_all_tasks(&address, &namespaces));
        }
        let daemon = ContainerdDaemon { dir, address, log_path, pid, closers };
        daemon.wait_for_socket(&mut child.lock().unwrap())?;
        Ok(daemon)
    }

    /// Waits until the socket accepts connections; fails early, with the
    /// daemon's log, when the daemon exits.
    fn wait_for_socket(&self, child: &mut std::process::Child) -> Result<()> {
        process::wait_for_socket(&self.address, child, SOCKET_TIMEOUT, || self.logs()).context("containerd")
    }

    pub fn address(&self) -> &Path {
        &self.address
    }

    /// The temp dir holding root, state, config and sockets.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn logs(&self) -> String {
        read_log(&self.log_path)
    }

    /// A guard printing the daemon's log if the test panics while it lives.
    pub fn print_log_on_panic(&self) -> PrintLogOnPanic {
        PrintLogOnPanic::new(format!("containerd {}", self.address.display()), &self.log_path)
    }

    /// Runs a closer before the daemon's own (e.g. stopping a snapshotter
    /// the daemon uses, after the daemon).
    pub fn push_closer(&mut self, what: &str, closer: impl FnOnce() -> Result<()> + Send + 'static) {
        // Closers run newest first; the daemon's must run before this one:
        // move them after it.
        let own = std::mem::take(&mut self.closers);
        self.closers.push(what, closer);
        self.closers.append(own);
    }

    /// Stops everything now, reporting what could not be cleaned up.
    pub fn stop(mut self) -> Result<()> {
        self.closers.close()
    }

    /// `ctr` against this daemon.
    pub fn ctr(&self, namespace: &str) -> Command {
        let mut command = Command::new("ctr");
        command.arg("--address").arg(&self.address).arg("--namespace").arg(namespace);
        command
    }
}

/// Kills and deletes every task in every namespace through `ctr`, so the
/// shims unmount the rootfs, remove the cgroups and exit by themselves.
fn delete_all_tasks(address: &Path, seen: &Mutex<Vec<String>>) -> Result<()> {
    if std::os::unix::net::UnixStream::connect(address).is_err() {
        return Ok(()); // the daemon never came up or is gone: nothing to ask
    }
    let ctr = |args: &[&str]| -> Result<String> {
        let output = Command::new("ctr").arg("--address").arg(address).args(args).stdin(Stdio::null()).output()?;
        if !output.status.success() {
            anyhow::bail!("ctr {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    for namespace in ctr(&["namespaces", "ls", "-q"])?.lines() {
        seen.lock().unwrap().push(namespace.to_string());
        let tasks = ctr(&["--namespace", namespace, "tasks", "ls", "-q"])?;
        for task in tasks.lines() {
            ctr(&["--namespace", namespace, "tasks", "delete", "--force", task])?;
        }
    }
    Ok(())
}

/// containerd creates `/<namespace>` cgroups and the shims runc state dirs
/// `/run/containerd/runc/<namespace>`, and never removes them. Removes
/// them when empty (another daemon may share the name: then they stay).
fn remove_namespace_dirs(namespaces: &[String]) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else { return };
    let hierarchies: Vec<PathBuf> = hierarchies.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    for namespace in namespaces {
        for hierarchy in hierarchies.iter().chain(std::iter::once(&PathBuf::from("/sys/fs/cgroup"))) {
            std::fs::remove_dir(hierarchy.join(namespace)).ok();
        }
        std::fs::remove_dir(Path::new("/run/containerd/runc").join(namespace)).ok();
    }
}
