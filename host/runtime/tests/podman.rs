//! berth as podman's OCI runtime (`podman --runtime <link named berth-runc>`),
//! plain and with a terminal (conmon's console socket). Needs root, podman,
//! busybox and a built `berth` (`BERTH_BIN` overrides target/release/berth).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn podman_runs_containers_through_berth() {
    require_root!();
    let Some(podman) = common::which("podman") else {
        eprintln!("skipped: podman not installed");
        return;
    };
    let berth = std::env::var_os("BERTH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/berth"));
    if !berth.is_file() {
        eprintln!("skipped: no berth binary (cargo build --release -p berth-host, or set BERTH_BIN)");
        return;
    }
    let t = tempfile::Builder::new().prefix("berth-podman").tempdir_in("/tmp").unwrap();
    let d = t.path();
    common::busybox_rootfs(&d.join("rootfs"));
    let runc = d.join("berth-runc");
    std::os::unix::fs::symlink(std::fs::canonicalize(&berth).unwrap(), &runc).unwrap();
    let podman_run = |extra: &[&str], script: &str| {
        let mut c = Command::new(&podman);
        c.arg("--root").arg(d.join("storage")).arg("--runroot").arg(d.join("run"));
        c.args(["--cgroup-manager", "cgroupfs", "--events-backend", "none", "run", "--rm", "--net", "none"]);
        // podman asks for nofile/nproc 1048576, more than a sandboxed root may raise.
        c.args(["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--runtime"]).arg(&runc);
        c.args(extra).arg("--rootfs").arg(d.join("rootfs")).args(["/bin/sh", "-c", script]);
        c.stdin(std::process::Stdio::null());
        c.output().unwrap()
    };
    let out = podman_run(&[], "echo via-podman; grep CapEff /proc/self/status; exit 4");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("via-podman\nCapEff:"), "{text}");
    let out = podman_run(&["-t"], "tty");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.trim() == "/dev/pts/0", "{text} {}", String::from_utf8_lossy(&out.stderr));
}
