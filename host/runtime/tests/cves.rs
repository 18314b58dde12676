//! Regression tests for runtime CVEs: each builds the hostile image or spec
//! and checks the host is untouched.

mod common;

use berth_runtime::{Executor, Stdio};
use common::{env, run, spec, unique};
use oci_spec::runtime::Mount;

/// CVE-2021-30465 class: a mount target that is a symlink pointing out of
/// the rootfs must resolve inside it.
#[test]
fn symlinked_mount_target_stays_in_the_rootfs() {
    require_root!();
    let e = env();
    let host_dir = e.tmp.path().join("host-victim");
    std::fs::create_dir(&host_dir).unwrap();
    std::os::unix::fs::symlink(format!("/../../../../..{}", host_dir.display()), e.rootfs.join("evil")).unwrap();
    for ex in e.backends() {
        let mut s = spec("echo pwned > /evil/pwned && echo wrote");
        let mut mounts = s.mounts().clone().unwrap();
        mounts.push(serde_json::from_value::<Mount>(serde_json::json!({
            "destination": "/evil", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]})).unwrap());
        s.set_mounts(Some(mounts));
        let r = run(&*ex, &e, s);
        assert!(!host_dir.join("pwned").exists(), "{}: the container wrote into the host: {r:?}", ex.name());
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mi.contains(host_dir.to_str().unwrap()), "{}: a mount landed on the host", ex.name());
    }
}

/// CVE-2026-41579: an image whose /dev is a symlink to a host directory must
/// not get device nodes (or mounts) created through it.
#[test]
fn dev_symlink_is_refused() {
    require_root!();
    let e = env();
    let host_dir = e.tmp.path().join("host-dev");
    std::fs::create_dir(&host_dir).unwrap();
    std::fs::remove_dir(e.rootfs.join("dev")).unwrap();
    std::os::unix::fs::symlink(&host_dir, e.rootfs.join("dev")).unwrap();
    let ex = e.native();
    let err = ex.create(&unique("devlink"), &e.bundle(spec("true")), Stdio::Null).unwrap_err();
    assert!(format!("{err:#}").contains("CVE-2026-41579"), "{err:#}");
    assert_eq!(std::fs::read_dir(&host_dir).unwrap().count(), 0, "nothing created in the host directory");
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mi.contains(host_dir.to_str().unwrap()));
    assert_eq!(std::fs::read_dir(&ex.root).unwrap().count(), 0, "the failed create cleaned its state");
}

/// CVE-2024-21626: a cwd through a descriptor the runtime holds
/// (`/proc/self/fd/N`) must not give the process a host directory.
#[test]
fn cwd_through_a_leaked_descriptor_is_refused() {
    require_root!();
    let e = env();
    let ex = e.native();
    for fd in 3..=8 {
        let mut s = spec("pwd; ls");
        s.process_mut().as_mut().unwrap().set_cwd(format!("/proc/self/fd/{fd}").into());
        match run(&ex, &e, s) {
            Err(err) => {
                let msg = format!("{err:#}");
                assert!(msg.contains("cwd"), "fd {fd}: {msg}");
            }
            Ok(r) => {
                for host_only in ["exec.fifo", "state.json", "rootfs\n"] {
                    assert!(!r.stdout.contains(host_only), "fd {fd}: host directory visible: {r:?}");
                }
            }
        }
    }
}

/// CVE-2019-5736: the container's pid 1 is the container's own binary, not
/// the runtime (which the container could otherwise overwrite via /proc/1/exe).
#[test]
fn container_pid1_is_not_the_runtime_binary() {
    require_root!();
    let e = env();
    let r = run(&e.native(), &e, spec("readlink /proc/1/exe; echo x >> /proc/1/exe 2>/dev/null && echo WROTE")).unwrap();
    assert_eq!(r.stdout.lines().next(), Some("/bin/busybox"), "{r:?}");
    let init = std::fs::metadata(env!("CARGO_BIN_EXE_berth-init")).unwrap();
    assert!(init.len() > 0);
}
