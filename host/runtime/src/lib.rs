//! Executors: native (namespaces, mounts, cgroups, capabilities, seccomp),
//! oci-runtime (runc/crun), behind one [`Executor`] trait.
//!
//! A binary that uses [`NativeExecutor`] must call [`init::maybe_run_init`]
//! first thing in `main` (the executor re-executes it as the init helper
//! unless a `berth-init` is installed beside it), or point
//! [`NativeExecutor::init_binary`] at a binary that does (`berth-init`).

use std::os::fd::OwnedFd;
use std::path::PathBuf;

pub mod cgroups;
pub mod cloned_binary;
pub mod config;
pub mod hooks;
pub mod init;
pub mod lsm;
pub mod mounts;
pub mod native;
pub mod oci_runtime;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod spawn;
pub mod state;
pub mod sync;
pub mod sys;

pub use native::NativeExecutor;
pub use oci_runtime::OciRuntimeExecutor;
pub use oci_spec::runtime::{ContainerState, Spec, State};

/// What becomes the container's `/`.
#[derive(Debug, Clone)]
pub enum Rootfs {
    /// A populated directory (an OCI bundle's rootfs, a mounted snapshot).
    Path(PathBuf),
    /// A snapshot's mounts, mounted in order onto the rootfs mount point.
    Mounts(Vec<berth_snapshot::Mount>),
}

impl Rootfs {
    /// A snapshot's mounts as a container's root. The executor mounts them
    /// inside the container's mount namespace, except FUSE mounts
    /// (fuse-overlayfs): a daemon of the host serves those, so they are
    /// mounted at `host_dir` now and handed over as a directory, for as long
    /// as the returned guard lives.
    pub fn for_snapshot(
        mounts: Vec<berth_snapshot::Mount>,
        host_dir: &std::path::Path,
    ) -> anyhow::Result<(Rootfs, Option<berth_snapshot::mount::Mounted>)> {
        if !mounts.iter().any(|m| m.kind.starts_with("fuse")) {
            return Ok((Rootfs::Mounts(mounts), None));
        }
        std::fs::create_dir_all(host_dir)?;
        let mounted = berth_snapshot::mount::Mounted::new(&mounts, host_dir)?;
        Ok((Rootfs::Path(host_dir.to_path_buf()), Some(mounted)))
    }
}

/// A container to create.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle directory (reported in the OCI state, given to hooks).
    pub dir: PathBuf,
    pub spec: Spec,
    pub rootfs: Rootfs,
}

/// The container process's stdin, stdout and stderr.
#[derive(Debug, Default)]
pub enum Stdio {
    /// The caller's own.
    #[default]
    Inherit,
    /// stdin from /dev/null, everything else to /dev/null.
    Null,
    /// stdin from /dev/null, stdout and stderr appended to files.
    Files { stdout: PathBuf, stderr: PathBuf },
    /// Given descriptors (pipes, a pty...).
    Fds { stdin: Option<OwnedFd>, stdout: OwnedFd, stderr: OwnedFd },
    /// A new pty (process.terminal): the container gets the slave as its
    /// controlling terminal; the master is sent over this connected unix
    /// socket (runc's `--console-socket` protocol: SCM_RIGHTS, one fd).
    Terminal { console_socket: OwnedFd },
}

/// How a container process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

impl ExitStatus {
    /// The shell convention: the code, or 128 + the signal.
    pub fn code(&self) -> i32 {
        match self {
            ExitStatus::Exited(c) => *c,
            ExitStatus::Signaled(s) => 128 + s,
        }
    }

    pub fn from_wait_status(status: i32) -> ExitStatus {
        if libc::WIFSIGNALED(status) {
            ExitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            ExitStatus::Exited(libc::WEXITSTATUS(status))
        }
    }
}

/// Errors a caller branches on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container {0}: not found")]
    NotFound(String),
    #[error("container {0}: already exists")]
    AlreadyExists(String),
    #[error("container {id}: is {state}, {want}")]
    WrongState { id: String, state: ContainerState, want: &'static str },
    #[error("invalid container id {0:?}")]
    InvalidId(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The container lifecycle (OCI runtime semantics). Blocking calls: from
/// async code, call them on a blocking thread.
pub trait Executor: Send + Sync {
    fn name(&self) -> &str;
    /// Namespaces, rootfs and cgroup ready; the process blocked before exec. Returns its pid.
    fn create(&self, id: &str, bundle: &Bundle, stdio: Stdio) -> Result<i32>;
    /// Lets the created process exec.
    fn start(&self, id: &str) -> Result<()>;
    fn state(&self, id: &str) -> Result<State>;
    /// Signals the init (or, with `all`, every process in its cgroup).
    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()>;
    /// Waits for the init to exit (only from the process that created it).
    fn wait(&self, id: &str) -> Result<ExitStatus>;
    /// Removes a stopped container (`force`: kill it first): cgroup, mounts, state.
    fn delete(&self, id: &str, force: bool) -> Result<()>;
    /// Starts `process` inside a running container; returns its pid.
    fn exec(&self, id: &str, process: &oci_spec::runtime::Process, stdio: Stdio) -> Result<i32>;
    /// Waits for a process started by `exec`.
    fn wait_exec(&self, pid: i32) -> Result<ExitStatus> {
        waitpid(pid).map_err(Error::Other)
    }
}

/// Container ids: what runc accepts (letters, digits, `_+-.`), no path tricks.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c));
    if ok { Ok(()) } else { Err(Error::InvalidId(id.to_string())) }
}

/// waitpid on a child (or, for a subreaper, an adopted grandchild).
pub fn waitpid(pid: i32) -> anyhow::Result<ExitStatus> {
    let mut status = 0;
    loop {
        // SAFETY: valid pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(ExitStatus::from_wait_status(status));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(anyhow::Error::new(e).context(format!("waitpid {pid}")));
        }
    }
}

/// Makes the calling process a subreaper, so container inits (grandchildren,
/// orphaned when the init helper exits) are reparented to it and can be waited for.
pub fn become_subreaper() -> anyhow::Result<()> {
    // SAFETY: prctl on ourselves.
    sys::cvt(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) })
        .map_err(|e| anyhow::Error::new(e).context("PR_SET_CHILD_SUBREAPER"))?;
    Ok(())
}

/// The hook through which spec-mutator plugins change a bundle's spec before
/// `berth runtime create` (set by the host; identity by default).
pub type SpecHook = dyn Fn(&str, &mut Spec) -> anyhow::Result<()> + Send + Sync;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_path_tricks() {
        assert!(validate_id("web-1_a.b").is_ok());
        for bad in ["", ".", "..", "a/b", "../x", "a b"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(ExitStatus::Exited(3).code(), 3);
        assert_eq!(ExitStatus::Signaled(9).code(), 137);
    }
}
