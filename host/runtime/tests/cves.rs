//! Regression tests for runtime CVEs: each builds the hostile image or spec
//! and checks the host is untouched.

mod common;

use berth_runtime::{Executor, NativeExecutor, Stdio};
use common::{caps, env, run, spec, unique};
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
    assert!(!r.stdout.contains("WROTE"), "{r:?}");
}

/// CVE-2019-5736, the attack itself: a container process with CAP_SYS_PTRACE
/// (which gets past the helper's non-dumpable flag) opens /proc/1/exe while
/// pid 1 is still berth's init helper (a created container, blocked before
/// its exec), keeps the descriptor, and once the helper has exec'd away (no
/// more ETXTBSY) reopens it for writing. The helper runs from a sealed handle
/// of the binary, so the write fails and the binary on the host is unchanged.
#[test]
fn helper_binary_cannot_be_rewritten_through_proc_exe() {
    require_root!();
    let e = env();
    // A private copy: a protection that fails must not corrupt the build's binary.
    let bin_dir = e.tmp.path().join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    let init = bin_dir.join("berth-init");
    std::fs::copy(env!("CARGO_BIN_EXE_berth-runtime-init"), &init).unwrap();
    let before = std::fs::read(&init).unwrap();
    let ex = NativeExecutor::new(e.tmp.path().join("state")).with_init_binary(&init);
    let id = unique("cve5736");
    ex.create(&id, &e.bundle(spec("sleep 30")), Stdio::Null).unwrap();
    let result = (|| -> Result<String, String> {
        let mut p = spec("").process().clone().unwrap();
        let names = [
            "CAP_SYS_PTRACE", "CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_SETGID", "CAP_FOWNER", "CAP_DAC_OVERRIDE",
        ];
        let mut c = p.capabilities().clone().unwrap();
        c.set_bounding(Some(caps(&names)));
        c.set_effective(Some(caps(&names)));
        c.set_permitted(Some(caps(&names)));
        p.set_capabilities(Some(c));
        let script = r#"
            exec 3</proc/1/exe || { echo NOOPEN; exit 1; }
            echo "helper=$(readlink /proc/1/exe)"
            touch /tmp/opened
            i=0
            while [ "$(readlink /proc/1/exe)" != /bin/busybox ]; do
                sleep 0.05; i=$((i+1)); [ $i -lt 400 ] || { echo TIMEOUT; exit 1; }
            done
            { echo pwned >> /proc/self/fd/3; } 2>&1 && echo WROTE || echo REFUSED
        "#;
        p.set_args(Some(vec!["/bin/sh".into(), "-c".into(), script.into()]));
        let out = e.tmp.path().join("attack.out");
        let pid = ex
            .exec(&id, &p, Stdio::Files { stdout: out.clone(), stderr: e.tmp.path().join("attack.err") })
            .map_err(|e| format!("{e:#}"))?;
        let opened = e.rootfs.join("tmp/opened");
        for _ in 0..1000 {
            if opened.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // Let pid 1 exec the container's program: the helper's binary is no longer running.
        ex.start(&id).map_err(|e| format!("{e:#}"))?;
        ex.wait_exec(pid).map_err(|e| format!("{e:#}"))?;
        Ok(std::fs::read_to_string(&out).unwrap_or_default())
    })();
    ex.delete(&id, true).unwrap();
    let out = result.unwrap();
    assert!(out.contains("helper="), "the attack could not open /proc/1/exe, so it tested nothing: {out}");
    assert!(!out.contains(&format!("helper={}", init.display())), "pid 1 ran the binary from the host path: {out}");
    assert!(out.contains("REFUSED") && !out.contains("WROTE"), "{out}");
    assert!(std::fs::read(&init).unwrap() == before, "the init helper binary on the host was changed: {out}");
}
