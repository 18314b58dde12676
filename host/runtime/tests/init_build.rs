//! A `berth-init` from another build than the `berth` that executes it (a
//! stale helper installed beside a newer berth) refuses the configuration
//! with an error saying so, in reply to it, instead of misreading it.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

use berth_runtime::init::{BUILD, INIT_ARG, INIT_BUILD_ENV, INIT_FD_ENV};
use berth_runtime::sync::{Msg, SyncSocket};

/// Runs the helper with `build` as its parent's build, sends it a
/// configuration and returns its reply.
fn reply_to_config(build: &str) -> Msg {
    let (parent, child) = SyncSocket::pair().unwrap();
    let src = child.0.as_raw_fd();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth-runtime-init"));
    cmd.arg(INIT_ARG).env(INIT_FD_ENV, "3").env(INIT_BUILD_ENV, build);
    // SAFETY: dup2 only (async-signal-safe); fd 3 is not close-on-exec.
    unsafe {
        cmd.pre_exec(move || if libc::dup2(src, 3) < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) });
    }
    let mut helper = cmd.spawn().unwrap();
    drop(child);
    parent.send(&Msg::Config(b"not a configuration".to_vec())).unwrap();
    let reply = parent.recv().unwrap();
    let status = helper.wait().unwrap();
    assert!(!status.success());
    reply
}

#[test]
fn a_helper_from_another_build_refuses_with_a_clear_error() {
    let Msg::Error(e) = reply_to_config("0.0.0-0000000000000000") else { panic!("expected an error") };
    assert!(e.contains("another build"), "{e}");
    assert!(e.contains(BUILD) && e.contains("0.0.0-0000000000000000"), "names both builds: {e}");
    assert!(e.contains("berth-runtime-init"), "names the helper: {e}");
}

#[test]
fn a_helper_of_this_build_reads_the_configuration() {
    let Msg::Error(e) = reply_to_config(BUILD) else { panic!("expected an error") };
    assert!(e.contains("decode the init configuration"), "past the build check: {e}");
}
