//! The `oci-runtime` executor: writes a bundle (config.json + the rootfs
//! mounted on the host) and calls runc or crun, so every feature can be
//! compared against them on the same spec.
//!
//! crun 1.8 refuses a hybrid cgroup host (v1 controllers + a cgroup2 tree at
//! /sys/fs/cgroup/unified); each crun call therefore runs in a private mount
//! namespace where that cgroup2 mount is detached.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, anyhow, bail};
use oci_spec::runtime::{Process, RootBuilder, State};

use crate::config::RootMount;
use crate::{Bundle, Error, ExitStatus, Executor, Result, Rootfs, Stdio, state, sys};

#[derive(Debug, Clone)]
pub struct OciRuntimeExecutor {
    /// `runc`, `crun` or a path.
    pub binary: PathBuf,
    /// The runtime's own `--root`.
    pub root: PathBuf,
    /// Where bundles are written (`<bundles>/<id>`).
    pub bundles: PathBuf,
    name: String,
}

const HOST_MOUNTS: &str = "host-mounts.json";

fn is_hybrid() -> bool {
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers.
    unsafe { libc::statfs(c"/sys/fs/cgroup/unified".as_ptr(), &mut st) == 0 && st.f_type as i64 == 0x63677270 }
}

impl OciRuntimeExecutor {
    pub fn new(binary: impl Into<PathBuf>, root: impl Into<PathBuf>, bundles: impl Into<PathBuf>) -> OciRuntimeExecutor {
        let binary = binary.into();
        let name = binary.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "oci".into());
        OciRuntimeExecutor { binary, root: root.into(), bundles: bundles.into(), name }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root);
        if self.name.contains("crun") && is_hybrid() {
            // SAFETY: only raw syscalls on static strings in the child.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::unshare(libc::CLONE_NEWNS) != 0
                        || libc::mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_SLAVE, std::ptr::null()) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::umount2(c"/sys/fs/cgroup/unified".as_ptr(), libc::MNT_DETACH);
                    Ok(())
                })
            };
        }
        cmd
    }

    /// Runs a subcommand to completion; its stderr becomes the error.
    fn run(&self, args: &[&str]) -> anyhow::Result<Vec<u8>> {
        let out = self
            .command()
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .with_context(|| format!("run {}", self.binary.display()))?;
        if !out.status.success() {
            bail!("{} {}: {}: {}", self.name, args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(out.stdout)
    }

    fn bundle_dir(&self, id: &str) -> PathBuf {
        self.bundles.join(id)
    }

    fn pid(&self, id: &str) -> anyhow::Result<i32> {
        let p = self.bundle_dir(id).join("pid");
        std::fs::read_to_string(&p)?.trim().parse().with_context(|| format!("read {}", p.display()))
    }

    fn undo_mounts(dir: &Path) {
        if let Ok(data) = std::fs::read(dir.join(HOST_MOUNTS))
            && let Ok(mounts) = serde_json::from_slice::<Vec<PathBuf>>(&data)
        {
            for m in mounts.iter().rev() {
                let _ = sys::umount2(m, libc::MNT_DETACH);
            }
        }
    }

    fn create_inner(&self, id: &str, bundle: &Bundle, stdio: Stdio, dir: &Path) -> anyhow::Result<i32> {
        let mut spec = bundle.spec.clone();
        let rootfs = match &bundle.rootfs {
            Rootfs::Path(p) => {
                if p.is_absolute() { p.clone() } else { bundle.dir.join(p) }
            }
            Rootfs::Mounts(ms) => {
                let r = dir.join("rootfs");
                std::fs::create_dir(&r)?;
                // Recorded first: a failure half-way still gets unmounted.
                std::fs::write(dir.join(HOST_MOUNTS), serde_json::to_vec(&vec![&r])?)?;
                for m in ms {
                    mount_on_host(&RootMount::from(m), &r)?;
                }
                r
            }
        };
        // Absent means writable (the OCI default); oci-spec's RootBuilder
        // would otherwise default to readonly.
        let readonly = spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false);
        let root = RootBuilder::default().path(rootfs).readonly(readonly);
        spec.set_root(Some(root.build()?));
        std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&spec)?)?;
        crate::become_subreaper()?;
        let mut cmd = self.command();
        let log = dir.join("runtime.log");
        cmd.arg("--log").arg(&log).arg("create").arg("--bundle").arg(dir).arg("--pid-file").arg(dir.join("pid")).arg(id);
        let null = std::process::Stdio::null;
        match stdio {
            Stdio::Inherit => {}
            Stdio::Null => {
                cmd.stdin(null()).stdout(null()).stderr(null());
            }
            Stdio::Files { stdout, stderr } => {
                let open = |p: &Path| std::fs::OpenOptions::new().create(true).append(true).open(p);
                cmd.stdin(null()).stdout(open(&stdout)?).stderr(open(&stderr)?);
            }
            Stdio::Terminal { .. } => bail!("{}: terminals are not supported through this executor", self.name),
            Stdio::Fds { stdin, stdout, stderr } => {
                cmd.stdin(stdin.map_or_else(null, std::process::Stdio::from));
                cmd.stdout(std::process::Stdio::from(stdout)).stderr(std::process::Stdio::from(stderr));
            }
        }
        let status = cmd.status().with_context(|| format!("run {}", self.binary.display()))?;
        if !status.success() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("{} create: {status}: {}", self.name, log.trim());
        }
        self.pid(id)
    }
}

/// Mounts a snapshot mount at `target` in the host's namespace.
fn mount_on_host(m: &RootMount, target: &Path) -> anyhow::Result<()> {
    let mut flags = 0;
    let mut data = Vec::new();
    for o in &m.options {
        match o.as_str() {
            "ro" => flags |= libc::MS_RDONLY,
            "rw" => {}
            "bind" => flags |= libc::MS_BIND,
            "rbind" => flags |= libc::MS_BIND | libc::MS_REC,
            other => data.push(other),
        }
    }
    if m.kind == "bind" || m.kind == "rbind" {
        flags |= libc::MS_BIND | if m.kind == "rbind" { libc::MS_REC } else { 0 };
    }
    let (fstype, data) = if flags & libc::MS_BIND != 0 { (None, None) } else { (Some(m.kind.as_str()), Some(data.join(","))) };
    sys::mount(Some(&m.source), target, fstype, flags & !libc::MS_RDONLY, data.as_deref())
        .with_context(|| format!("mount {} ({}) at {}", m.source, m.kind, target.display()))?;
    if flags & libc::MS_RDONLY != 0 && flags & libc::MS_BIND != 0 {
        sys::mount(None, target, None, libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY, None)?;
    }
    Ok(())
}

impl Executor for OciRuntimeExecutor {
    fn name(&self) -> &str {
        &self.name
    }

    fn create(&self, id: &str, bundle: &Bundle, stdio: Stdio) -> Result<i32> {
        crate::validate_id(id)?;
        std::fs::create_dir_all(&self.bundles).with_context(|| format!("create {}", self.bundles.display()))?;
        let dir = self.bundle_dir(id);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(Error::AlreadyExists(id.into())),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("mkdir {}", dir.display())).into()),
        }
        match self.create_inner(id, bundle, stdio, &dir) {
            Ok(pid) => Ok(pid),
            Err(e) => {
                let _ = self.run(&["delete", "--force", id]);
                Self::undo_mounts(&dir);
                let _ = std::fs::remove_dir_all(&dir);
                Err(e.context(format!("create container {id} with {}", self.name)).into())
            }
        }
    }

    fn start(&self, id: &str) -> Result<()> {
        self.run(&["start", id])?;
        Ok(())
    }

    fn state(&self, id: &str) -> Result<State> {
        if !self.bundle_dir(id).exists() {
            return Err(Error::NotFound(id.into()));
        }
        let out = self.run(&["state", id])?;
        Ok(serde_json::from_slice(&out).with_context(|| format!("{} state output", self.name))?)
    }

    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let sig = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, sig.as_str()]);
        self.run(&args)?;
        Ok(())
    }

    fn wait(&self, id: &str) -> Result<ExitStatus> {
        let dir = self.bundle_dir(id);
        if let Ok(d) = std::fs::read(dir.join(state::EXIT_FILE))
            && let Ok(s) = serde_json::from_slice(&d)
        {
            return Ok(s);
        }
        let pid = self.pid(id)?;
        let status = crate::waitpid(pid).with_context(|| format!("container {id}: not a child of this process"))?;
        let _ = std::fs::write(dir.join(state::EXIT_FILE), serde_json::to_vec(&status).unwrap_or_default());
        Ok(status)
    }

    fn delete(&self, id: &str, force: bool) -> Result<()> {
        let dir = self.bundle_dir(id);
        if !dir.exists() {
            return Err(Error::NotFound(id.into()));
        }
        let mut args = vec!["delete"];
        if force {
            args.push("--force");
        }
        args.push(id);
        self.run(&args)?;
        Self::undo_mounts(&dir);
        std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
        Ok(())
    }

    fn exec(&self, id: &str, process: &Process, stdio: Stdio) -> Result<i32> {
        let dir = self.bundle_dir(id);
        let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let pjson = dir.join(format!("exec-{n}.json"));
        let pidf = dir.join(format!("exec-{n}.pid"));
        std::fs::write(&pjson, serde_json::to_vec(process).context("encode process")?).context("write process.json")?;
        crate::become_subreaper()?;
        let mut cmd = self.command();
        cmd.arg("exec").arg("--detach").arg("--process").arg(&pjson).arg("--pid-file").arg(&pidf).arg(id);
        match stdio {
            Stdio::Inherit => {}
            Stdio::Null => {
                cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
            }
            Stdio::Files { stdout, stderr } => {
                let open = |p: &Path| std::fs::OpenOptions::new().create(true).append(true).open(p);
                cmd.stdin(std::process::Stdio::null()).stdout(open(&stdout).context("log")?).stderr(open(&stderr).context("log")?);
            }
            Stdio::Terminal { .. } => return Err(anyhow!("{}: terminals are not supported through this executor", self.name).into()),
            Stdio::Fds { stdin, stdout, stderr } => {
                cmd.stdin(stdin.map_or_else(std::process::Stdio::null, std::process::Stdio::from));
                cmd.stdout(std::process::Stdio::from(stdout)).stderr(std::process::Stdio::from(stderr));
            }
        }
        let st = cmd.status().context("run exec")?;
        let _ = std::fs::remove_file(&pjson);
        if !st.success() {
            return Err(anyhow!("{} exec {id}: {st}", self.name).into());
        }
        let pid = std::fs::read_to_string(&pidf).context("exec pid file")?.trim().parse().context("exec pid")?;
        let _ = std::fs::remove_file(&pidf);
        Ok(pid)
    }
}
