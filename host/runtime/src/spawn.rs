//! Starting the init helper with `posix_spawn` (glibc: `clone(CLONE_VM |
//! CLONE_VFORK)`), not `fork`: the caller (`berth`, a large process with
//! wasmtime's mappings) has no page tables copied and takes no copy-on-write
//! faults afterwards on everything it writes, and the child's descriptors
//! are put in place by file actions instead of code run between fork and
//! exec. std's `Command` takes the same path only without `pre_exec`, and it
//! cannot place a descriptor on a given number.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// A spawned helper process: a pid that is ours until waited for.
#[derive(Debug)]
pub struct Helper {
    pid: libc::pid_t,
    status: Option<ExitStatus>,
}

impl Helper {
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Waits for the exit (once; later calls return the same status).
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let mut raw = 0;
        loop {
            // SAFETY: waitpid on our own child.
            let r = unsafe { libc::waitpid(self.pid, &mut raw, 0) };
            if r >= 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        let s = ExitStatus::from_raw(raw);
        self.status = Some(s);
        Ok(s)
    }

    /// The exit status if it has exited, without waiting.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        let mut raw = 0;
        // SAFETY: non-blocking waitpid on our own child.
        let r = unsafe { libc::waitpid(self.pid, &mut raw, libc::WNOHANG) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        if r == 0 {
            return Ok(None);
        }
        let s = ExitStatus::from_raw(raw);
        self.status = Some(s);
        Ok(Some(s))
    }

    /// SIGKILL, unless it was reaped already (its pid may be another's then).
    pub fn kill(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        // SAFETY: plain syscall on our unreaped child.
        if unsafe { libc::kill(self.pid, libc::SIGKILL) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// What the child gets on a descriptor number.
#[derive(Debug)]
pub enum Slot {
    /// A duplicate of this descriptor (close-on-exec cleared by the dup).
    Fd(OwnedFd),
    /// /dev/null, opened for reading (0) or writing (others).
    Null,
}

/// Spawns `program` with `argv` (argv[0] included), this process's
/// environment with `env` set over it, and `slots` placed on their numbers
/// (every other descriptor of this process stays as it is: close-on-exec
/// ones close at the exec). Signals: an empty mask, SIGPIPE back to its
/// default (as std does).
pub fn spawn(program: &OsStr, argv: &[&OsStr], env: &[(&str, &str)], slots: Vec<(i32, Slot)>) -> io::Result<Helper> {
    let cstr = |s: &[u8]| CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in an argument"));
    let program = cstr(program.as_bytes())?;
    let argv: Vec<CString> = argv.iter().map(|a| cstr(a.as_bytes())).collect::<io::Result<_>>()?;
    let mut envp: Vec<CString> = Vec::new();
    for (k, v) in std::env::vars_os() {
        if env.iter().any(|(name, _)| k.as_bytes() == name.as_bytes()) {
            continue;
        }
        envp.push(cstr(&[k.as_bytes(), b"=", v.as_bytes()].concat())?);
    }
    for (k, v) in env {
        envp.push(cstr(format!("{k}={v}").as_bytes())?);
    }
    let mut argv_p: Vec<*mut libc::c_char> = argv.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv_p.push(std::ptr::null_mut());
    let mut envp_p: Vec<*mut libc::c_char> = envp.iter().map(|e| e.as_ptr().cast_mut()).collect();
    envp_p.push(std::ptr::null_mut());

    // Sources first moved above every target (close-on-exec), so no dup2
    // of the file actions clobbers a source not yet placed. Just above: a
    // descriptor past the table's size (64) makes the kernel grow the
    // table, and growing the shared table of a multi-threaded process
    // waits for an RCU grace period (~10 ms here).
    let above = slots.iter().map(|(t, _)| *t).max().unwrap_or(2) + 1;
    let mut sources: Vec<(i32, Option<OwnedFd>)> = Vec::with_capacity(slots.len());
    for (target, slot) in slots {
        match slot {
            Slot::Fd(fd) => {
                // SAFETY: fcntl on a descriptor we own; the result is new and ours.
                let high = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, above) };
                if high < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: just created.
                sources.push((target, Some(unsafe { OwnedFd::from_raw_fd(high) })));
            }
            Slot::Null => sources.push((target, None)),
        }
    }

    struct Actions(libc::posix_spawn_file_actions_t);
    impl Drop for Actions {
        fn drop(&mut self) {
            // SAFETY: initialised below before any Actions is made.
            unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
        }
    }
    struct Attr(libc::posix_spawnattr_t);
    impl Drop for Attr {
        fn drop(&mut self) {
            // SAFETY: initialised below before any Attr is made.
            unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
        }
    }
    let check = |r: libc::c_int| if r == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(r)) };
    // SAFETY: the posix_spawn family on properly initialised objects, C
    // strings and NULL-terminated arrays that outlive the call.
    unsafe {
        let mut actions = std::mem::MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
        check(libc::posix_spawn_file_actions_init(actions.as_mut_ptr()))?;
        let mut actions = Actions(actions.assume_init());
        for (target, src) in &sources {
            match src {
                Some(fd) => check(libc::posix_spawn_file_actions_adddup2(&mut actions.0, fd.as_raw_fd(), *target))?,
                None => {
                    let flags = if *target == 0 { libc::O_RDONLY } else { libc::O_WRONLY };
                    check(libc::posix_spawn_file_actions_addopen(&mut actions.0, *target, c"/dev/null".as_ptr(), flags, 0))?
                }
            }
        }
        let mut attr = std::mem::MaybeUninit::<libc::posix_spawnattr_t>::uninit();
        check(libc::posix_spawnattr_init(attr.as_mut_ptr()))?;
        let mut attr = Attr(attr.assume_init());
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        check(libc::posix_spawnattr_setsigmask(&mut attr.0, &empty))?;
        let mut pipe: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        check(libc::posix_spawnattr_setsigdefault(&mut attr.0, &pipe))?;
        let flags = libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
        check(libc::posix_spawnattr_setflags(&mut attr.0, flags as libc::c_short))?;
        let mut pid: libc::pid_t = 0;
        check(libc::posix_spawn(&mut pid, program.as_ptr(), &actions.0, &attr.0, argv_p.as_ptr(), envp_p.as_ptr()))?;
        Ok(Helper { pid, status: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_descriptors_and_environment() {
        let (r, w) = std::io::pipe().unwrap();
        let mut h = spawn(
            OsStr::new("/bin/sh"),
            &[OsStr::new("sh"), OsStr::new("-c"), OsStr::new("echo \"$BERTH_SPAWN_TEST\" >&7; read x; echo \"[$x]\" >&7")],
            &[("BERTH_SPAWN_TEST", "placed")],
            vec![(7, Slot::Fd(OwnedFd::from(w))), (0, Slot::Null)],
        )
        .unwrap();
        assert!(h.wait().unwrap().success());
        assert!(h.try_wait().unwrap().unwrap().success());
        h.kill().unwrap();
        assert_eq!(std::io::read_to_string(r).unwrap(), "placed\n[]\n");
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let e = spawn(OsStr::new("/nonexistent/berth-init"), &[OsStr::new("x")], &[], vec![]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
