//! berth as the OCI runtime binary of containerd's `io.containerd.runc.v2`
//! shim (`BinaryName`, here through `ctr run --runc-binary`): a private
//! containerd in a temp dir, a busybox image built with umoci, and the
//! `berth` binary reached through a link named `berth-runc`.
//!
//! Needs root, containerd, ctr, umoci, busybox and a built `berth`
//! (`cargo build --release -p berth-host`; `BERTH_BIN` overrides the path).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn berth_bin() -> Option<PathBuf> {
    let p = std::env::var_os("BERTH_BIN").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/berth")
    });
    p.is_file().then(|| std::fs::canonicalize(p).unwrap())
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn containerd_runc_shim_runs_containers_through_berth() {
    require_root!();
    for tool in ["containerd", "ctr", "umoci", "containerd-shim-runc-v2"] {
        if common::which(tool).is_none() {
            eprintln!("skipped: {tool} not installed");
            return;
        }
    }
    let Some(berth) = berth_bin() else {
        eprintln!("skipped: no berth binary (cargo build --release -p berth-host, or set BERTH_BIN)");
        return;
    };
    let t = tempfile::Builder::new().prefix("berth-ctd").tempdir_in("/tmp").unwrap();
    let d = t.path();
    // Image: busybox in one layer.
    sh(Command::new("umoci").args(["init", "--layout"]).arg(d.join("oci")));
    sh(Command::new("umoci").args(["new", "--image"]).arg(format!("{}:bb", d.join("oci").display())));
    sh(Command::new("umoci").args(["unpack", "--image"]).arg(format!("{}:bb", d.join("oci").display())).arg(d.join("bundle")));
    common::busybox_rootfs(&d.join("bundle/rootfs"));
    sh(Command::new("umoci").args(["repack", "--image"]).arg(format!("{}:bb", d.join("oci").display())).arg(d.join("bundle")));
    sh(Command::new("tar").arg("-C").arg(d.join("oci")).arg("-cf").arg(d.join("bb.tar")).arg("."));
    // A private containerd.
    let sock = d.join("ctd.sock");
    std::fs::write(
        d.join("config.toml"),
        format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{1}\"\n",
            d.display(),
            sock.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(d.join("containerd.log")).unwrap();
    let _daemon = Daemon(
        Command::new("containerd").arg("--config").arg(d.join("config.toml")).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "containerd did not start: {}", std::fs::read_to_string(d.join("containerd.log")).unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    let ctr = || {
        let mut c = Command::new("ctr");
        c.arg("-a").arg(&sock).arg("-n").arg("berth-test");
        c
    };
    sh(ctr().args(["images", "import", "--index-name", "docker.io/library/bb:latest"]).arg(d.join("bb.tar")));
    let runc = d.join("berth-runc");
    std::os::unix::fs::symlink(&berth, &runc).unwrap();
    let runtime_root = "/run/containerd/runc/berth-test";

    // Foreground: output and exit code come back through the shim.
    let out = ctr()
        .args(["run", "--rm", "--runc-binary"])
        .arg(&runc)
        .args(["docker.io/library/bb:latest", "fg", "/bin/sh", "-c", "echo via-berth; readlink /proc/1/exe; exit 5"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.lines().collect::<Vec<_>>(), ["via-berth", "/bin/busybox"]);

    // Detached: task ls, exec into its namespaces, ps, kill, delete.
    sh(ctr().args(["run", "-d", "--runc-binary"]).arg(&runc).args(["docker.io/library/bb:latest", "bg", "/bin/sleep", "100"]));
    assert!(sh(ctr().args(["task", "ls"])).contains("RUNNING"));
    let exec = sh(ctr().args(["task", "exec", "--exec-id", "e1", "bg", "/bin/sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"]));
    assert_eq!(exec.trim(), "/bin/sleep 100", "exec joined the container's pid namespace");
    let ps = sh(ctr().args(["task", "ps", "bg"]));
    assert_eq!(ps.lines().count(), 2, "{ps}");
    // berth's own state, under the root the shim passed.
    let state = sh(Command::new(&runc).args(["--root", runtime_root, "state", "bg"]));
    assert!(state.contains("\"running\""), "{state}");
    sh(ctr().args(["task", "kill", "-s", "SIGKILL", "bg"]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sh(ctr().args(["task", "ls"])).contains("STOPPED") {
        assert!(Instant::now() < deadline, "task did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    sh(ctr().args(["task", "delete", "bg"]));
    sh(ctr().args(["container", "rm", "bg"]));
    assert!(!Path::new(runtime_root).join("bg").exists(), "berth's state was deleted");
    // The namespace's parent cgroups and runtime root (containerd's, not the container's).
    for (_, mp) in berth_runtime::cgroups::v1_hierarchies().unwrap() {
        let _ = std::fs::remove_dir(mp.join("berth-test"));
    }
    let _ = std::fs::remove_dir(runtime_root);
}
