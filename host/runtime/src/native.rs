//! The native executor: berth's own namespaces, mounts, cgroups,
//! capabilities and seccomp. The parent side of [`crate::init`].

use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use oci_spec::runtime::{ContainerState, LinuxNamespaceType, Process, Spec, State};

use crate::cgroups::{self, CgroupManager};
use crate::spawn::{Helper, Slot};
use crate::config::{InitConfig, Mode, RootMount};
use crate::init::{INIT_ARG, INIT_BUILD_ENV, INIT_FD_ENV};
use crate::state::{self, Record};
use crate::sync::{Msg, SyncSocket};
use crate::{Bundle, Error, ExitStatus, Executor, Result, Rootfs, Stdio, hooks, seccomp, sys};

/// The native executor; its state lives under `root` (default /run/berth).
#[derive(Debug, Clone)]
pub struct NativeExecutor {
    pub root: PathBuf,
    /// The binary re-executed as the init helper (it must call
    /// [`crate::init::maybe_run_init`] first thing): by default
    /// [`default_init_binary`], the small `berth-init` installed beside the
    /// current executable, else the current executable itself. It is
    /// executed from a sealed handle ([`crate::cloned_binary`]), never from
    /// this path.
    pub init_binary: PathBuf,
    /// `--no-pivot`: MS_MOVE + chroot instead of pivot_root (ramdisk roots).
    pub no_pivot: bool,
    /// Descriptors 3..3+N of this process handed to the container (runc `--preserve-fds`).
    pub preserve_fds: u32,
}

pub const DEFAULT_ROOT: &str = "/run/berth";

/// The name of the helper binary looked for beside the current executable.
pub const INIT_BINARY_NAME: &str = "berth-init";

/// The init helper for this process: `berth-init` beside the current
/// executable when it is installed there (a 26 MB binary starts in about
/// half the time of the 220 MB `berth`: fewer relocations and page faults,
/// and its exec is on a container's critical path), else the current
/// executable itself. Chosen once per process. A `berth-init` from another
/// build is refused when it starts ([`crate::init::BUILD`]), with an error
/// that says so.
pub fn default_init_binary() -> PathBuf {
    static CHOSEN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CHOSEN
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
            init_binary_beside(&exe)
        })
        .clone()
}

/// [`default_init_binary`] for an executable at `exe`.
pub fn init_binary_beside(exe: &Path) -> PathBuf {
    let candidate = exe.with_file_name(INIT_BINARY_NAME);
    if candidate == exe {
        return exe.to_path_buf();
    }
    match std::fs::metadata(&candidate) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {
            tracing::debug!("init helper: {}", candidate.display());
            candidate
        }
        Ok(_) => {
            tracing::warn!(
                "{} is not an executable file; the init helper is {} itself",
                candidate.display(),
                exe.display()
            );
            exe.to_path_buf()
        }
        Err(e) => {
            tracing::debug!("no {} ({e}); the init helper is {} itself", candidate.display(), exe.display());
            exe.to_path_buf()
        }
    }
}

impl NativeExecutor {
    pub fn new(root: impl Into<PathBuf>) -> NativeExecutor {
        NativeExecutor {
            root: root.into(),
            init_binary: default_init_binary(),
            no_pivot: false,
            preserve_fds: 0,
        }
    }

    pub fn with_init_binary(mut self, path: impl Into<PathBuf>) -> NativeExecutor {
        self.init_binary = path.into();
        self
    }

    /// Spawns the init helper: the sync socket lands on fd 3+N (after the
    /// preserved descriptors), a console socket right after it. Returns the
    /// console socket's number in the helper.
    fn spawn_helper(&self, stdio: Stdio) -> anyhow::Result<(Helper, SyncSocket, Option<i32>)> {
        let (parent, child) = SyncSocket::pair().context("socketpair")?;
        let keep = self.preserve_fds as i32;
        let sync_fd = 3 + keep;
        // CVE-2019-5736: run the helper from a sealed handle of the binary
        // (numbered above every descriptor the child dup2s onto), so no
        // container process can write to the binary through /proc/<pid>/exe.
        let sealed = match crate::cloned_binary::for_binary(&self.init_binary) {
            Some(s) => Some(s.dup_at_least(sync_fd + 2)?),
            None => None,
        };
        let program = match &sealed {
            Some(fd) => std::ffi::OsString::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
            None => self.init_binary.clone().into_os_string(),
        };
        // Preserved descriptors 3..3+keep are already in place (not
        // close-on-exec in the caller: that is the caller's contract).
        let mut slots: Vec<(i32, Slot)> = vec![(sync_fd, Slot::Fd(child.0))];
        let null_stdio = [(0, Slot::Null), (1, Slot::Null), (2, Slot::Null)];
        let mut console_fd = None;
        match stdio {
            Stdio::Inherit => {}
            Stdio::Terminal { console_socket } => {
                slots.extend(null_stdio);
                slots.push((sync_fd + 1, Slot::Fd(console_socket)));
                console_fd = Some(sync_fd + 1);
            }
            Stdio::Null => slots.extend(null_stdio),
            Stdio::Files { stdout, stderr } => {
                let open = |p: &Path| {
                    std::fs::OpenOptions::new().create(true).append(true).open(p).with_context(|| format!("open log {}", p.display()))
                };
                slots.push((0, Slot::Null));
                slots.push((1, Slot::Fd(open(&stdout)?.into())));
                slots.push((2, Slot::Fd(open(&stderr)?.into())));
            }
            Stdio::Fds { stdin, stdout, stderr } => {
                slots.push((0, stdin.map_or(Slot::Null, Slot::Fd)));
                slots.push((1, Slot::Fd(stdout)));
                slots.push((2, Slot::Fd(stderr)));
            }
        }
        let sync = sync_fd.to_string();
        let proc_ = crate::spawn::spawn(
            &program,
            &[self.init_binary.as_os_str(), std::ffi::OsStr::new(INIT_ARG)],
            &[(INIT_FD_ENV, &sync), (INIT_BUILD_ENV, crate::init::BUILD)],
            slots,
        )
        .with_context(|| format!("spawn the init helper {}", self.init_binary.display()))?;
        drop(sealed);
        Ok((proc_, parent, console_fd))
    }

    fn record(&self, id: &str) -> Result<Record> {
        state::load(&self.root, id)
    }
}

fn ns_flag(t: LinuxNamespaceType) -> anyhow::Result<i32> {
    Ok(match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => bail!("time namespaces are not supported"),
    })
}

/// (namespaces to create, namespaces to join by path, user first).
pub fn namespaces(spec: &Spec) -> anyhow::Result<(i32, Vec<(i32, PathBuf)>)> {
    let mut create = 0;
    let mut join = Vec::new();
    for ns in spec.linux().as_ref().and_then(|l| l.namespaces().clone()).unwrap_or_default() {
        let flag = ns_flag(ns.typ())?;
        match ns.path() {
            Some(p) if !p.as_os_str().is_empty() => join.push((flag, p.clone())),
            _ => create |= flag,
        }
    }
    join.sort_by_key(|(f, _)| if *f == libc::CLONE_NEWUSER { 0 } else if *f == libc::CLONE_NEWNS { 2 } else { 1 });
    Ok((create, join))
}

fn write_id_maps(pid: u32, spec: &Spec) -> anyhow::Result<()> {
    let linux = spec.linux().clone().unwrap_or_default();
    for (file, maps) in [("uid_map", linux.uid_mappings()), ("gid_map", linux.gid_mappings())] {
        let maps = maps.as_ref().filter(|m| !m.is_empty()).with_context(|| format!("a user namespace needs {file} entries"))?;
        let text: String =
            maps.iter().map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size())).collect();
        let path = format!("/proc/{pid}/{file}");
        sys::write_file(Path::new(&path), &text).with_context(|| format!("write {path}: {}", text.trim()))?;
    }
    Ok(())
}

/// Puts the init helper into the container's cgroups right after it was
/// spawned. On cgroup v1 the first `cgroup.procs` write of a while waits for
/// an RCU grace period (10-15 ms): it now runs while the helper execs and
/// forks and the init makes its mounts, instead of after the fork with the
/// init waiting. The init itself is added when its pid arrives
/// ([`attach_init`]; an init forked after this returns is in the cgroups
/// already). A helper that died first is reported with its own error, not
/// the write's ESRCH.
fn attach_helper(cg: &dyn CgroupManager, helper_pid: u32, helper: Option<&mut Helper>, sock: &SyncSocket) -> anyhow::Result<()> {
    if let Err(e) = cg.add(helper_pid as i32) {
        if let Some(h) = helper
            && matches!(h.try_wait(), Ok(Some(_)))
            && let Ok(Msg::Error(m)) = sock.recv()
        {
            bail!(m);
        }
        return Err(e.context("cgroup"));
    }
    Ok(())
}

/// Adds the init and tells it it is in its cgroups. Right after
/// [`attach_helper`]'s write the grace period has passed and stays so for a
/// while: this write does not wait.
fn attach_init(cg: &dyn CgroupManager, pid: i32, sock: &SyncSocket) -> anyhow::Result<()> {
    cg.add(pid).context("cgroup")?;
    sock.send(&Msg::Attached).context("tell the init it is in its cgroups")
}

/// Undoes a half-made container.
struct Cleanup<'a> {
    dir: PathBuf,
    cgroup: Option<Box<dyn CgroupManager>>,
    helper: Option<Helper>,
    init_pid: i32,
    armed: bool,
    _root: &'a Path,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(mut h) = self.helper.take() {
            let _ = h.kill();
            let _ = h.wait();
        }
        if self.init_pid > 0 {
            // SAFETY: plain syscalls on a process we made.
            unsafe {
                libc::kill(self.init_pid, libc::SIGKILL);
                libc::waitpid(self.init_pid, std::ptr::null_mut(), 0);
            }
        }
        if let Some(cg) = &self.cgroup {
            let _ = cg.destroy();
        }
        let _ = remove_state_dir(&self.dir);
    }
}

/// Removes the state directory, refusing to recurse into a mount.
fn remove_state_dir(dir: &Path) -> anyhow::Result<()> {
    let rootfs = dir.join("rootfs");
    if let (Ok(a), Ok(b)) = (std::fs::metadata(&rootfs), std::fs::metadata(dir)) {
        use std::os::unix::fs::MetadataExt;
        if a.dev() != b.dev() {
            let _ = sys::umount2(&rootfs, libc::MNT_DETACH);
            if std::fs::metadata(&rootfs).map(|m| m.dev()).ok() != Some(b.dev()) {
                bail!("{} is still a mount point; not removing", rootfs.display());
            }
        }
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).with_context(|| format!("remove {}", dir.display())),
        _ => Ok(()),
    }
}

impl NativeExecutor {
    fn create_inner(&self, id: &str, bundle: &Bundle, stdio: Stdio, cleanup: &mut Cleanup) -> anyhow::Result<i32> {
        let spec = &bundle.spec;
        let linux = spec.linux().clone().unwrap_or_default();
        // Before anything exists: a profile/label the host cannot apply fails here.
        let lsm = crate::lsm::plan(spec.process().as_ref(), linux.mount_label().as_deref(), &crate::lsm::Host)?;
        let (clone_flags, join) = namespaces(spec)?;
        if clone_flags & libc::CLONE_NEWNS == 0 {
            bail!("the spec must ask for a new mount namespace");
        }
        // The helper first: its exec (the whole berth binary) runs while
        // the cgroups, the seccomp program and the fifo are made here; it
        // waits for its configuration, and is attached once the limits are
        // written.
        crate::become_subreaper()?;
        let (child, sock, console_fd) = self.spawn_helper(stdio)?;
        let helper_pid = child.id();
        tracing::debug!(id, "create: helper spawned");
        cleanup.helper = Some(child);
        let rel = cgroups::relative_path(linux.cgroups_path().as_deref(), id);
        let cg = cgroups::manager_for(&rel)?;
        cleanup.cgroup = Some(cgroups::manager_for(&rel)?);
        cg.apply(linux.resources().as_ref()).context("cgroup")?;
        tracing::debug!(id, "create: cgroups made");
        let dir = cleanup.dir.clone();
        let (rootfs, root_mounts) = match &bundle.rootfs {
            Rootfs::Path(p) => {
                let p = if p.is_absolute() { p.clone() } else { bundle.dir.join(p) };
                (std::fs::canonicalize(&p).with_context(|| format!("rootfs {}", p.display()))?, vec![])
            }
            Rootfs::Mounts(ms) => {
                let r = dir.join("rootfs");
                std::fs::create_dir(&r).with_context(|| format!("mkdir {}", r.display()))?;
                (r, ms.iter().map(RootMount::from).collect())
            }
        };
        let compiled = linux.seccomp().as_ref().map(|p| seccomp::compile_cached_in(p, Some(&self.root.join(seccomp::CACHE_DIR)))).transpose().context("seccomp profile")?;
        // The init (maybe a non-root user by then) opens the fifo for writing.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))?;
        let fifo = dir.join(state::FIFO);
        let c = sys::cstr(&fifo)?;
        // SAFETY: valid C string.
        sys::cvt(unsafe { libc::mkfifo(c.as_ptr(), 0o622) }).with_context(|| format!("mkfifo {}", fifo.display()))?;
        std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o622))?;
        let mut rec = Record {
            id: id.to_string(),
            pid: 0,
            start_time: 0,
            bundle: bundle.dir.clone(),
            rootfs: rootfs.clone(),
            cgroup: rel.clone(),
            created: state::now(),
            spec: spec.clone(),
            host_mounts: vec![],
        };
        let state_of = |rec: &Record, s| serde_json::to_string(&state::oci_state(rec, s)).unwrap_or_default();
        let cfg = InitConfig {
            mode: Mode::Create,
            id: id.to_string(),
            spec: spec.clone(),
            bundle: bundle.dir.clone(),
            rootfs,
            root_mounts,
            fifo: Some(fifo),
            no_pivot: self.no_pivot,
            clone_flags,
            join,
            seccomp_bpf: compiled.as_ref().map(|c| c.bpf.clone()),
            seccomp_flags: compiled.as_ref().map_or(0, |c| c.flags),
            preserve_fds: self.preserve_fds,
            cgroup_views: cg.views(),
            state_json: state_of(&rec, ContainerState::Creating),
            console_fd,
            lsm,
        };
        sock.send(&Msg::Config(serde_json::to_vec(&cfg)?)).context("send the configuration")?;
        tracing::debug!(id, "create: configuration sent");
        attach_helper(&*cg, helper_pid, cleanup.helper.as_mut(), &sock)?;
        tracing::debug!(id, "create: helper attached");
        loop {
            match sock.recv() {
                Ok(Msg::UserNs) => {
                    write_id_maps(helper_pid, spec)?;
                    sock.send(&Msg::Go)?;
                }
                Ok(Msg::Pid(pid)) => {
                    cleanup.init_pid = pid;
                    rec.pid = pid;
                    let st = cleanup.helper.take().expect("helper").wait().context("wait for the init helper")?;
                    if !st.success() {
                        bail!("the init helper failed: {st}");
                    }
                    attach_init(&*cg, pid, &sock)?;
                    tracing::debug!(id, "create: init attached");
                }
                Ok(Msg::Hooks) => {
                    let h = spec.hooks().clone().unwrap_or_default();
                    let json = state_of(&rec, ContainerState::Creating);
                    hooks::run(h.prestart().as_deref().unwrap_or_default(), &json, "prestart")?;
                    hooks::run(h.create_runtime().as_deref().unwrap_or_default(), &json, "createRuntime")?;
                    sock.send(&Msg::Go)?;
                }
                Ok(Msg::Ready) => break,
                Ok(Msg::Error(e)) => return Err(anyhow!(e)),
                Ok(other) => bail!("unexpected message from the init: {other:?}"),
                Err(e) => return Err(anyhow::Error::new(e).context("the init exited during setup")),
            }
        }
        rec.start_time = sys::pid_start_time(rec.pid).context("the init vanished")?;
        state::save(&self.root, &rec)?;
        Ok(rec.pid)
    }
}

impl Executor for NativeExecutor {
    fn name(&self) -> &str {
        "native"
    }

    fn create(&self, id: &str, bundle: &Bundle, stdio: Stdio) -> Result<i32> {
        crate::validate_id(id)?;
        std::fs::create_dir_all(&self.root).with_context(|| format!("create {}", self.root.display()))?;
        let dir = state::dir(&self.root, id);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(Error::AlreadyExists(id.into())),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("mkdir {}", dir.display())).into()),
        }
        let mut cleanup = Cleanup { dir, cgroup: None, helper: None, init_pid: 0, armed: true, _root: &self.root };
        let pid = self
            .create_inner(id, bundle, stdio, &mut cleanup)
            .with_context(|| format!("create container {id}"))?;
        cleanup.armed = false;
        Ok(pid)
    }

    fn start(&self, id: &str) -> Result<()> {
        let rec = self.record(id)?;
        let st = state::status(&self.root, &rec);
        if st != ContainerState::Created {
            return Err(Error::WrongState { id: id.into(), state: st, want: "start needs created" });
        }
        let fifo = state::dir(&self.root, id).join(state::FIFO);
        let f = sys::open(&fifo, libc::O_RDONLY | libc::O_NONBLOCK, 0).with_context(|| format!("open {}", fifo.display()))?;
        loop {
            let mut pfd = libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, 50) };
            if n > 0 && pfd.revents & libc::POLLIN != 0 {
                let mut b = [0u8; 1];
                // SAFETY: valid buffer.
                unsafe { libc::read(f.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
                break;
            }
            if !state::alive(&rec) {
                return Err(anyhow!("container {id}: the init exited before start").into());
            }
        }
        let _ = std::fs::remove_file(&fifo);
        let h = rec.spec.hooks().clone().unwrap_or_default();
        let json = serde_json::to_string(&state::oci_state(&rec, ContainerState::Running)).unwrap_or_default();
        if let Err(e) = hooks::run(h.poststart().as_deref().unwrap_or_default(), &json, "poststart") {
            tracing::warn!("container {id}: {e:#}");
        }
        Ok(())
    }

    fn state(&self, id: &str) -> Result<State> {
        let rec = self.record(id)?;
        Ok(state::oci_state(&rec, state::status(&self.root, &rec)))
    }

    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let rec = self.record(id)?;
        let st = state::status(&self.root, &rec);
        if st == ContainerState::Stopped {
            return Err(Error::WrongState { id: id.into(), state: st, want: "kill needs created or running" });
        }
        if all {
            let cg = cgroups::manager_for(&rec.cgroup)?;
            for pid in cg.pids()? {
                // SAFETY: plain syscall.
                unsafe { libc::kill(pid, signal) };
            }
            return Ok(());
        }
        // SAFETY: plain syscall; the pid was checked against its start time.
        sys::cvt(unsafe { libc::kill(rec.pid, signal) }).with_context(|| format!("kill {} {signal}", rec.pid))?;
        Ok(())
    }

    fn wait(&self, id: &str) -> Result<ExitStatus> {
        let rec = self.record(id)?;
        if let Some(s) = state::load_exit(&self.root, id) {
            return Ok(s);
        }
        let status = crate::waitpid(rec.pid).with_context(|| format!("container {id}: not a child of this process"))?;
        state::save_exit(&self.root, id, status);
        Ok(status)
    }

    fn delete(&self, id: &str, force: bool) -> Result<()> {
        let rec = self.record(id)?;
        let st = state::status(&self.root, &rec);
        if st != ContainerState::Stopped {
            if !force {
                return Err(Error::WrongState { id: id.into(), state: st, want: "delete needs stopped (or force)" });
            }
            // SAFETY: plain syscall.
            unsafe { libc::kill(rec.pid, libc::SIGKILL) };
            if crate::waitpid(rec.pid).is_err() {
                while state::alive(&rec) {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            }
        } else if state::load_exit(&self.root, id).is_none() {
            // Reap it if it is our (adopted) child, so no zombie stays.
            // SAFETY: non-blocking waitpid.
            unsafe { libc::waitpid(rec.pid, std::ptr::null_mut(), libc::WNOHANG) };
        }
        let cg = cgroups::manager_for(&rec.cgroup)?;
        cg.destroy().with_context(|| format!("container {id}: remove cgroup"))?;
        for m in &rec.host_mounts {
            let _ = sys::umount2(m, libc::MNT_DETACH);
        }
        let h = rec.spec.hooks().clone().unwrap_or_default();
        let json = serde_json::to_string(&state::oci_state(&rec, ContainerState::Stopped)).unwrap_or_default();
        if let Err(e) = hooks::run(h.poststop().as_deref().unwrap_or_default(), &json, "poststop") {
            tracing::warn!("container {id}: {e:#}");
        }
        remove_state_dir(&state::dir(&self.root, id))?;
        Ok(())
    }

    fn exec(&self, id: &str, process: &Process, stdio: Stdio) -> Result<i32> {
        let rec = self.record(id)?;
        let st = state::status(&self.root, &rec);
        if st == ContainerState::Stopped {
            return Err(Error::WrongState { id: id.into(), state: st, want: "exec needs a live container" });
        }
        let mut spec = rec.spec.clone();
        // Without its own profile/label the process gets the container's (as runc):
        // an exec must not be a way out of the container's confinement.
        spec.set_process(Some(crate::lsm::inherit(process, rec.spec.process().as_ref())));
        let mut join = Vec::new();
        // User first (it grants the rights over the rest), mount last.
        for (name, flag) in [
            ("user", libc::CLONE_NEWUSER),
            ("ipc", libc::CLONE_NEWIPC),
            ("uts", libc::CLONE_NEWUTS),
            ("net", libc::CLONE_NEWNET),
            ("pid", libc::CLONE_NEWPID),
            ("cgroup", libc::CLONE_NEWCGROUP),
            ("mnt", libc::CLONE_NEWNS),
        ] {
            let theirs = PathBuf::from(format!("/proc/{}/ns/{name}", rec.pid));
            let differ = match (std::fs::read_link(&theirs), std::fs::read_link(format!("/proc/self/ns/{name}"))) {
                (Ok(a), Ok(b)) => a != b,
                _ => false,
            };
            if differ {
                join.push((flag, theirs));
            }
        }
        let linux = spec.linux().clone().unwrap_or_default();
        // The exec'd process's own profile/label (the mounts exist already).
        let lsm = crate::lsm::plan(spec.process().as_ref(), None, &crate::lsm::Host).map_err(anyhow::Error::new)?;
        let compiled = linux.seccomp().as_ref().map(|p| seccomp::compile_cached_in(p, Some(&self.root.join(seccomp::CACHE_DIR)))).transpose().context("seccomp profile")?;
        let cfg = InitConfig {
            mode: Mode::Exec,
            id: id.to_string(),
            spec,
            bundle: rec.bundle.clone(),
            rootfs: rec.rootfs.clone(),
            root_mounts: vec![],
            fifo: None,
            no_pivot: self.no_pivot,
            clone_flags: 0,
            join,
            seccomp_bpf: compiled.as_ref().map(|c| c.bpf.clone()),
            seccomp_flags: compiled.as_ref().map_or(0, |c| c.flags),
            preserve_fds: self.preserve_fds,
            cgroup_views: vec![],
            state_json: String::new(),
            console_fd: None,
            lsm,
        };
        crate::become_subreaper()?;
        let (mut child, sock, console_fd) = self.spawn_helper(stdio)?;
        let cfg = InitConfig { console_fd, ..cfg };
        sock.send(&Msg::Config(serde_json::to_vec(&cfg).context("encode")?)).context("send the configuration")?;
        let mut pid = 0;
        let result: anyhow::Result<()> = (|| {
            let cg = cgroups::manager_for(&rec.cgroup)?;
            attach_helper(&*cg, child.id(), Some(&mut child), &sock)?;
            loop {
                match sock.recv() {
                    Ok(Msg::Pid(p)) => {
                        pid = p;
                        let st = child.wait().context("wait for the init helper")?;
                        if !st.success() {
                            bail!("the init helper failed: {st}");
                        }
                        attach_init(&*cg, p, &sock)?;
                    }
                    Ok(Msg::Ready) => return Ok(()),
                    Ok(Msg::Error(e)) => bail!(e),
                    Ok(other) => bail!("unexpected message from the exec helper: {other:?}"),
                    Err(e) => return Err(anyhow::Error::new(e).context("the exec helper exited")),
                }
            }
        })();
        if let Err(e) = result {
            let _ = child.kill();
            let _ = child.wait();
            if pid > 0 {
                // SAFETY: our (adopted) child.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, std::ptr::null_mut(), 0);
                }
            }
            return Err(e.context(format!("exec in container {id}")).into());
        }
        Ok(pid)
    }
}

/// The container ids under `root`.
pub fn list(root: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(state::STATE_FILE).exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn berth_init_beside_the_executable_is_preferred() {
        let tmp = tempfile::tempdir().unwrap();
        let exe = tmp.path().join("berth");
        std::fs::write(&exe, b"").unwrap();
        assert_eq!(init_binary_beside(&exe), exe, "absent: the executable itself");
        let init = tmp.path().join(INIT_BINARY_NAME);
        std::fs::write(&init, b"").unwrap();
        std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(init_binary_beside(&exe), exe, "not executable: the executable itself");
        std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(init_binary_beside(&exe), init);
        assert_eq!(init_binary_beside(&init), init, "berth-init itself");
    }
}
