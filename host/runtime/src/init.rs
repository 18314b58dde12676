//! The init helper: a fresh, single-threaded process (the runtime's binary
//! re-executed with [`INIT_ARG`]) that forks the container's init into its
//! namespaces. Nothing here runs in the caller's (possibly multi-threaded,
//! tokio) process.
//!
//! ```text
//! parent (runtime)              helper (stage 1)                 init (stage 2, pid 1)
//!   spawn, Config ──────────▶   (exec, relocation) recv Config
//!   cgroups += helper           setns(join...)  unshare(user)
//!   (v1: the first write waits  UserNs ─┐
//!    for an RCU grace period,          │
//!    10-15 ms, while the               │
//!    helper and init go on)            │
//!   write uid/gid maps ◀───────────────┘
//!   Go ─────────────────────▶   setresuid(0)  unshare(others)  fork ─▶ hostname, mounts,
//!   ◀────────────────────────  Pid(init)  exit                   devices (unshare(cgroup)
//!   cgroups += init (fast now);                                  waits for Attached first)
//!   Attached ───────────────────────────────────────────────▶  wait Attached
//!   prestart/createRuntime ◀────────────────────────────────── Hooks (mounts done)
//!   Go ─────────────────────────────────────────────────────▶  createContainer, pivot_root,
//!                                                               rlimits, user, caps, cwd
//!   ◀────────────────────────────────────────────────────────  Ready; block on exec.fifo
//!   start: read exec.fifo ───────────────────────────────────▶  startContainer, LSM attr/exec,
//!                                                               nnp, seccomp, close_range, execve
//! ```
//!
//! CVE-2019-5736: the helper marks itself non-dumpable before it joins or
//! forks anything (the init inherits it), so no container process without
//! CAP_SYS_PTRACE can open `/proc/<pid>/exe` (the runtime binary) while it
//! runs, and the init execs the container's program itself, so pid 1's
//! `/proc/1/exe` is the container's binary, never the runtime's. And the
//! helper itself runs from a sealed handle of the binary
//! ([`crate::cloned_binary`]): a process granted CAP_SYS_PTRACE that opens
//! `/proc/<helper>/exe` cannot write through it.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::config::{InitConfig, Mode};
use crate::rootfs::{LinuxSyscall, RootfsSetup, setup_rootfs};
use crate::sync::{Msg, SyncSocket};
use crate::sys::{self, cvt};
use crate::{hooks, process, seccomp};

/// argv[1] of the re-executed binary.
pub const INIT_ARG: &str = "__berth_init";
/// The sync socket's descriptor number, in the helper's environment.
pub const INIT_FD_ENV: &str = "_BERTH_INIT_FD";
/// The parent's [`BUILD`], in the helper's environment.
pub const INIT_BUILD_ENV: &str = "_BERTH_INIT_BUILD";
/// This build of the init protocol (the crate's version and a hash of its
/// sources, from build.rs): a helper binary from another build refuses the
/// configuration instead of misreading it.
pub const BUILD: &str = env!("BERTH_INIT_BUILD");

/// Call first thing in `main` of any binary the native executor re-executes
/// (the `berth` binary, `berth-init`): when this process is an init helper it
/// never returns.
pub fn maybe_run_init() {
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == INIT_ARG) {
        helper_main();
    }
}

fn helper_main() -> ! {
    // Non-dumpable from the start (inherited by the forked init): no process
    // in a namespace we join can open /proc/<pid>/exe, the runtime binary
    // (CVE-2019-5736). execve of the container's program resets it.
    // SAFETY: prctl on ourselves.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let fd: i32 = match std::env::var(INIT_FD_ENV).ok().and_then(|v| v.parse().ok()) {
        Some(fd) => fd,
        None => {
            eprintln!("berth init: {INIT_FD_ENV} is not set; this entry point is internal");
            std::process::exit(2);
        }
    };
    // SAFETY: the descriptor was placed there by the parent for us.
    let sock = SyncSocket(unsafe { OwnedFd::from_raw_fd(fd) });
    let _ = sys::set_cloexec(fd, true);
    let parent_build = std::env::var(INIT_BUILD_ENV).ok();
    // SAFETY: unsetenv in a single-threaded process.
    unsafe {
        std::env::remove_var(INIT_FD_ENV);
        std::env::remove_var(INIT_BUILD_ENV);
    }
    if let Err(e) = check_build(parent_build.as_deref()) {
        // The reply to the configuration, so the parent reads it where it
        // reads every other error (not as a broken pipe on its send).
        let _ = sock.recv();
        let _ = sock.send(&Msg::Error(format!("{e:#}")));
        std::process::exit(1);
    }
    if let Err(e) = helper(&sock) {
        let _ = sock.send(&Msg::Error(format!("{e:#}")));
        std::process::exit(1);
    }
    std::process::exit(0);
}

/// A helper from another build than its parent (a stale `berth-init`
/// installed beside a newer `berth`) refuses to go on. The error reaches the
/// parent as the reply to its configuration (the framing of [`Msg::Error`]
/// is the one part of the protocol that never changes).
fn check_build(parent: Option<&str>) -> Result<()> {
    match parent {
        Some(p) if p != BUILD => {
            let me = std::env::args_os().next().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
            bail!(
                "the init helper {me} is from another build than the berth that started it \
                 (helper {BUILD}, berth {p}): install the berth-init built with this berth beside it, \
                 or remove it (berth then runs itself as the helper)"
            )
        }
        _ => Ok(()),
    }
}

fn helper(sock: &SyncSocket) -> Result<()> {
    let cfg: InitConfig = match sock.recv().context("receive the init configuration")? {
        Msg::Config(b) => serde_json::from_slice(&b).context("decode the init configuration")?,
        other => bail!("expected the configuration, got {other:?}"),
    };
    for (flag, path) in &cfg.join {
        let f = std::fs::File::open(path).with_context(|| format!("open namespace {}", path.display()))?;
        // SAFETY: valid descriptor; this process is single-threaded (required for user/mnt).
        cvt(unsafe { libc::setns(f.as_raw_fd(), *flag) }).with_context(|| format!("setns {}", path.display()))?;
    }
    let flags = cfg.clone_flags & !libc::CLONE_NEWCGROUP;
    if flags & libc::CLONE_NEWUSER != 0 {
        // The user namespace first, so it owns every namespace made after it.
        // SAFETY: plain syscall in a single-threaded process.
        cvt(unsafe { libc::unshare(libc::CLONE_NEWUSER) }).context("unshare the user namespace")?;
        sock.send(&Msg::UserNs)?;
        sock.expect(&Msg::Go).context("waiting for the id maps")?;
        // SAFETY: plain syscalls.
        unsafe {
            cvt(libc::setresgid(0, 0, 0)).context("setresgid 0 in the user namespace")?;
            cvt(libc::setresuid(0, 0, 0)).context("setresuid 0 in the user namespace")?;
        }
    }
    let rest = flags & !libc::CLONE_NEWUSER;
    if rest != 0 {
        // SAFETY: plain syscall. CLONE_NEWPID applies to the child forked next.
        cvt(unsafe { libc::unshare(rest) }).context("unshare namespaces")?;
    }
    // SAFETY: this process is single-threaded: fork is safe.
    let pid = cvt(unsafe { libc::fork() }).context("fork the init")?;
    if pid == 0 {
        let err = match init(&cfg, sock) {
            Ok(never) => match never {},
            Err(e) => e,
        };
        let _ = sock.send(&Msg::Error(format!("{err:#}")));
        // SAFETY: leave without running the parent's exit handlers twice.
        unsafe { libc::_exit(1) };
    }
    sock.send(&Msg::Pid(pid))?;
    Ok(())
}

enum Never {}

fn init(cfg: &InitConfig, sock: &SyncSocket) -> Result<Never> {
    // The parent moves the helper, then us, into the container's cgroups
    // (on cgroup v1 the first write waits for an RCU grace period) while we
    // make the mounts; nothing that must run in them (hooks, the cgroup
    // namespace, pivot_root and all after it, an exec'd process) starts
    // before it says so.
    let attached = std::cell::Cell::new(false);
    let wait_attached = || -> Result<()> {
        if !attached.get() {
            sock.expect(&Msg::Attached).context("waiting for the cgroup")?;
            attached.set(true);
        }
        Ok(())
    };
    if cfg.mode != Mode::Create || cfg.clone_flags & libc::CLONE_NEWCGROUP != 0 {
        wait_attached()?;
    }
    let process = cfg.spec.process().clone().context("the spec has no process")?;
    let mut fifo_dir = None;
    if cfg.mode == Mode::Create {
        if cfg.clone_flags & libc::CLONE_NEWCGROUP != 0 {
            // In our cgroups now: they become the namespace's root.
            // SAFETY: plain syscall.
            cvt(unsafe { libc::unshare(libc::CLONE_NEWCGROUP) }).context("unshare the cgroup namespace")?;
        }
        if cfg.clone_flags & libc::CLONE_NEWUTS != 0 {
            if let Some(h) = cfg.spec.hostname() {
                // SAFETY: valid buffer.
                cvt(unsafe { libc::sethostname(h.as_ptr().cast(), h.len()) }).with_context(|| format!("sethostname {h}"))?;
            }
            if let Some(d) = cfg.spec.domainname() {
                // SAFETY: valid buffer.
                cvt(unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) }).with_context(|| format!("setdomainname {d}"))?;
            }
        }
        if let Some(fifo) = &cfg.fifo {
            // Held across pivot_root to reach the fifo; close-on-exec, closed before exec.
            let dir = fifo.parent().context("fifo path")?;
            fifo_dir = Some(sys::open(dir, libc::O_PATH | libc::O_DIRECTORY, 0).with_context(|| format!("open {}", dir.display()))?);
        }
        if cfg.clone_flags & libc::CLONE_NEWNS == 0 {
            bail!("a new mount namespace is required");
        }
        let setup = RootfsSetup::from_config(cfg)?;
        let mut syscalls =
            LinuxSyscall { userns: cfg.clone_flags & libc::CLONE_NEWUSER != 0, mount_label: cfg.lsm.mount_label.clone() };
        let hooks = cfg.spec.hooks().clone().unwrap_or_default();
        setup_rootfs(&setup, &mut syscalls, &mut || {
            wait_attached()?;
            let runtime_side = hooks.prestart().iter().flatten().count() + hooks.create_runtime().iter().flatten().count();
            if runtime_side > 0 {
                sock.send(&Msg::Hooks)?;
                sock.expect(&Msg::Go).context("waiting for the runtime's hooks")?;
            }
            hooks::run(hooks.create_container().as_deref().unwrap_or_default(), &cfg.state_json, "createContainer")
        })?;
    }
    wait_attached()?;
    // The process.
    if let Some(fd) = cfg.console_fd {
        setup_terminal(fd, &process).context("set up the terminal")?;
    }
    if let Some(adj) = process.oom_score_adj() {
        sys::write_file(Path::new("/proc/self/oom_score_adj"), &adj.to_string()).context("oom_score_adj")?;
    }
    process::apply_rlimits(&process)?;
    let nnp = process.no_new_privileges().unwrap_or(false);
    if let Some(bpf) = &cfg.seccomp_bpf
        && !nnp
    {
        // Without no_new_privs the filter needs CAP_SYS_ADMIN: load it while we have it.
        seccomp::load(bpf, cfg.seccomp_flags).context("load the seccomp filter")?;
    }
    process::set_user_and_capabilities(&process)?;
    process::enter_cwd(&process)?;
    let args = process.args().clone().unwrap_or_default();
    let env = process.env().clone().unwrap_or_default();
    let arg0 = args.first().context("the process has no args")?;
    let exe = process::find_executable(arg0, &env)?;
    if let Some(mask) = process.user().umask() {
        // SAFETY: plain syscall.
        unsafe { libc::umask(mask) };
    }
    sock.send(&Msg::Ready)?;
    if let (Some(dir), Some(fifo)) = (fifo_dir.take(), &cfg.fifo) {
        let name = sys::cstr(fifo.file_name().context("fifo name")?)?;
        // Blocks until `start` opens the read end.
        // SAFETY: valid dirfd and C string.
        let fd = cvt(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) })
            .context("open the exec fifo")?;
        // SAFETY: fresh descriptor.
        let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        f.write_all(b"0").context("write the exec fifo")?;
        drop(f);
        drop(dir);
        let hooks = cfg.spec.hooks().clone().unwrap_or_default();
        hooks::run(hooks.start_container().as_deref().unwrap_or_default(), &cfg.state_json, "startContainer")?;
    }
    // AppArmor profile / SELinux label for the execve below: after the hooks
    // (their exec would take it), before no_new_privs and the seccomp filter
    // loaded with it (runc also writes these before both).
    crate::lsm::apply(&cfg.lsm, &mut crate::lsm::ProcAttr)?;
    if nnp {
        // SAFETY: prctl on ourselves.
        cvt(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }).context("no_new_privs")?;
        if let Some(bpf) = &cfg.seccomp_bpf {
            seccomp::load(bpf, cfg.seccomp_flags).context("load the seccomp filter")?;
        }
    }
    // Nothing but stdio (and --preserve-fds) crosses exec (CVE-2024-21626).
    sys::cloexec_from(3 + cfg.preserve_fds).context("close_range")?;
    Err(process::exec(&exe, &args, &env))
}

/// A pty from the container's devpts: the slave becomes stdio and the
/// controlling terminal, the master goes to the console socket (SCM_RIGHTS).
fn setup_terminal(console_fd: i32, process: &oci_spec::runtime::Process) -> Result<()> {
    // SAFETY: the descriptor was placed for us by the parent.
    let console = unsafe { OwnedFd::from_raw_fd(console_fd) };
    let master = sys::open(Path::new("/dev/ptmx"), libc::O_RDWR | libc::O_NOCTTY, 0).context("open /dev/ptmx")?;
    let mut n: libc::c_int = 0;
    let mut unlock: libc::c_int = 0;
    // SAFETY: ioctls on our pty master with valid pointers.
    unsafe {
        cvt(libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &mut unlock)).context("unlockpt")?;
        cvt(libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n)).context("ptsname")?;
    }
    if let Some(size) = process.console_size() {
        let ws = libc::winsize { ws_row: size.height() as u16, ws_col: size.width() as u16, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: valid winsize.
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    let slave_path = format!("/dev/pts/{n}");
    let slave = sys::open(Path::new(&slave_path), libc::O_RDWR | libc::O_NOCTTY, 0).with_context(|| format!("open {slave_path}"))?;
    send_fd(&console, &master, "/dev/ptmx").context("send the pty master to the console socket")?;
    drop(master);
    drop(console);
    // SAFETY: plain syscalls on descriptors we own.
    unsafe {
        cvt(libc::setsid()).context("setsid")?;
        cvt(libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0)).context("TIOCSCTTY")?;
        for target in 0..3 {
            cvt(libc::dup2(slave.as_raw_fd(), target)).context("dup2 the pty slave")?;
        }
    }
    Ok(())
}

fn send_fd(socket: &OwnedFd, fd: &OwnedFd, name: &str) -> std::io::Result<()> {
    let mut data = name.as_bytes().to_vec();
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: msg points at valid buffers of the declared sizes.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd.as_raw_fd());
        if libc::sendmsg(socket.as_raw_fd(), &msg, 0) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
