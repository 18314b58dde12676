//! `[worker]` security keys through `berth run`, on the native backend and
//! on a containerd of the test's own (both assemble the spec the same way):
//! `--worker-apparmor-profile` confines the container or, on a host without
//! AppArmor, refuses with an error naming the key and the profile
//! (`unconfined` runs); `--worker-selinux` and `--worker-rootless` are
//! refused with errors naming their keys where berth cannot honour them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{Berth, busybox_layout};

fn skip_reason() -> Option<String> {
    common::cannot_run_containers(&[])
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|s| s.starts_with('Y'))
}

/// A berth root with the busybox image imported as `box`.
fn setup(dir: &Path) -> Berth {
    let (layout, _) = busybox_layout(dir, &["sh", "cat", "echo", "true"]);
    let config = dir.join("berth.toml");
    std::fs::write(&config, "").unwrap();
    let berth = Berth { root: dir.join("root"), config };
    berth.ok(&["image", "import", "--name", "box", layout.to_str().unwrap()]);
    berth
}

/// Every refusal, checked on one backend (`backend` = extra `berth run` flags).
fn check_refusals(berth: &Berth, backend: &[&str], what: &str) {
    let run = |flags: &[&str], cmd: &[&str]| {
        let args: Vec<&str> = ["run", "--rm"].iter().chain(backend).chain(flags).chain(&["box"]).chain(cmd).copied().collect();
        berth.run(&args)
    };
    if apparmor_enabled() {
        // The profile is set by the worker step (unconfined is always loaded).
        let out = run(&["--explain", "--worker-apparmor-profile", "unconfined"], &["cat", "/proc/self/attr/current"]);
        assert!(out.status.success(), "{what}: {}", text(&out));
        let all = text(&out);
        assert!(all.contains("worker:") && all.contains("/process/apparmorProfile: set \"unconfined\""), "{what}: {all}");
        assert!(all.contains("unconfined"), "{what}: {all}");
    } else {
        let out = run(&["--worker-apparmor-profile", "berth-test"], &["true"]);
        assert!(!out.status.success(), "{what}: a profile ran on a host without AppArmor");
        let all = text(&out);
        assert!(
            all.contains("worker.apparmor-profile") && all.contains("\"berth-test\"") && all.contains("AppArmor is not enabled"),
            "{what}: {all}"
        );
        // unconfined is what a host without AppArmor gives anyway: it runs.
        let out = run(&["--explain", "--worker-apparmor-profile", "unconfined"], &["echo", "ran-unconfined"]);
        assert!(out.status.success() && text(&out).contains("ran-unconfined"), "{what}: {}", text(&out));
    }
    let out = run(&["--worker-selinux", "true"], &["true"]);
    assert!(!out.status.success() && text(&out).contains("worker.selinux"), "{what}: {}", text(&out));
    let out = run(&["--worker-rootless", "true"], &["true"]);
    assert!(!out.status.success() && text(&out).contains("worker.rootless"), "{what}: {}", text(&out));
    // Detached: refused by the command itself (not only in the child's log).
    let mut args = vec!["run", "-d"];
    args.extend(backend);
    args.extend(["--worker-selinux", "true", "box", "true"]);
    let out = berth.run(&args);
    assert!(!out.status.success() && text(&out).contains("worker.selinux"), "{what} -d: {}", text(&out));
}

#[test]
fn native_backend_applies_or_refuses_the_worker_keys() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIP: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let berth = setup(dir.path());
    check_refusals(&berth, &[], "native");
    // Nothing of the refused runs is left behind.
    let ps = berth.ok(&["ps", "-q"]);
    assert!(ps.trim().is_empty(), "containers left: {ps}");
}

/// A containerd of this test's own: private sockets in its temp dir, killed by pid.
struct Containerd {
    child: Child,
    address: PathBuf,
}

impl Containerd {
    fn start(dir: &Path) -> Option<Containerd> {
        let bin = ["/usr/bin/containerd", "/usr/local/bin/containerd"].into_iter().map(PathBuf::from).find(|p| p.exists())?;
        let address = dir.join("c.sock");
        let config = dir.join("containerd.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = {:?}\nstate = {:?}\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = {:?}\n[ttrpc]\n  address = {:?}\n[debug]\n  address = {:?}\n",
                dir.join("root"),
                dir.join("state"),
                address,
                dir.join("c.sock.ttrpc"),
                dir.join("debug.sock"),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new(bin).arg("--config").arg(&config).stdout(Stdio::null()).stderr(log).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !address.exists() {
            assert!(Instant::now() < deadline, "containerd did not listen on {}", address.display());
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Containerd { child, address })
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // SAFETY: a signal to the daemon this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn containerd_backend_applies_or_refuses_the_worker_keys() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIP: {why}");
        return;
    }
    let dir = tempfile::Builder::new().prefix("bws").tempdir_in("/tmp").unwrap();
    let Some(containerd) = Containerd::start(dir.path()) else {
        eprintln!("SKIP: containerd is not installed");
        return;
    };
    let berth = setup(dir.path());
    let address = containerd.address.to_str().unwrap().to_string();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check_refusals(&berth, &["--backend", "containerd", "--address", &address, "--namespace", "berth-ws"], "containerd");
        // containerd's containers live under containerd's namespace
        // (`/<namespace>/<id>`), not berth's own executor's.
        let out = berth.run(&[
            "run", "--rm", "--backend", "containerd", "--address", &address, "--namespace", "berth-ws", "box", "cat", "/proc/self/cgroup",
        ]);
        let all = text(&out);
        let elsewhere = all.lines().any(|l| l.contains(":/berth") && !l.contains(":/berth-ws/"));
        assert!(out.status.success() && all.contains(":/berth-ws/") && !elsewhere, "cgroups of a containerd run: {all}");
    }));
    if result.is_err() {
        eprintln!("containerd log:\n{}", std::fs::read_to_string(dir.path().join("containerd.log")).unwrap_or_default());
    }
    drop(containerd);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
