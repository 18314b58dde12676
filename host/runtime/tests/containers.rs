//! Real containers from a busybox rootfs, checked from inside. Root needed;
//! each case runs on the native executor and, where cheap, on runc and crun.

mod common;

use berth_runtime::{ContainerState, Executor, ExitStatus, Stdio};
use common::{env, run, spec, unique};
use oci_spec::runtime::{LinuxResources, Mount};

fn host_ns(name: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{name}")).unwrap().to_string_lossy().into_owned()
}

#[test]
fn new_namespaces_hostname_and_exit_code() {
    require_root!();
    let e = env();
    for ex in e.backends() {
        let r = run(&*ex, &e, spec("hostname; echo pid=$$; for n in pid net mnt; do readlink /proc/self/ns/$n; done; exit 7"))
            .unwrap();
        assert_eq!(r.status, ExitStatus::Exited(7), "{}: {r:?}", ex.name());
        let lines: Vec<&str> = r.stdout.lines().collect();
        assert_eq!(lines[0], "berth-test", "{}", ex.name());
        assert_eq!(lines[1], "pid=1", "{}", ex.name());
        assert_ne!(lines[2], host_ns("pid"));
        assert_ne!(lines[3], host_ns("net"));
        assert_ne!(lines[4], host_ns("mnt"));
    }
}

#[test]
fn host_namespaces_when_asked() {
    require_root!();
    let e = env();
    let mut s = spec("readlink /proc/self/ns/net; readlink /proc/self/ns/uts");
    let mut linux = s.linux().clone().unwrap();
    linux.set_namespaces(Some(
        linux.namespaces().clone().unwrap().into_iter().filter(|n| {
            !matches!(n.typ(), oci_spec::runtime::LinuxNamespaceType::Network | oci_spec::runtime::LinuxNamespaceType::Uts)
        }).collect(),
    ));
    s.set_linux(Some(linux));
    s.set_hostname(None);
    let r = run(&e.native(), &e, s).unwrap();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines, [host_ns("net"), host_ns("uts")], "{r:?}");
}

#[test]
fn mounts_masks_and_readonly_rootfs() {
    require_root!();
    let e = env();
    for ex in e.backends() {
        let mut s = spec(
            "touch /newfile 2>/dev/null && echo WRITABLE; grep -c ' /proc ' /proc/self/mounts; \
             cat /proc/timer_list | wc -c; ls /sys/firmware | wc -l; echo x > /proc/sys/kernel/hostname 2>/dev/null && echo SYSWRITE; \
             ls /dev; mount | grep ' /dev/pts '",
        );
        s.root_mut().as_mut().unwrap().set_readonly(Some(true));
        let r = run(&*ex, &e, s).unwrap();
        let name = ex.name();
        assert!(!r.stdout.contains("WRITABLE"), "{name}: root must be read-only: {r:?}");
        assert!(!r.stdout.contains("SYSWRITE"), "{name}: /proc/sys must be read-only: {r:?}");
        let lines: Vec<&str> = r.stdout.lines().collect();
        assert_eq!(lines[0], "1", "{name}: one /proc mount: {r:?}");
        assert_eq!(lines[1], "0", "{name}: /proc/timer_list masked: {r:?}");
        assert_eq!(lines[2], "0", "{name}: /sys/firmware masked: {r:?}");
        for dev in ["null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx", "fd"] {
            assert!(r.stdout.lines().any(|l| l == dev), "{name}: /dev/{dev} missing: {r:?}");
        }
        assert!(r.stdout.contains("devpts"), "{name}: {r:?}");
    }
    assert!(!e.rootfs.join("newfile").exists());
}

#[test]
fn bind_mounts_with_ro_and_tmpfs() {
    require_root!();
    let e = env();
    let src = e.tmp.path().join("shared");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("hello"), "from the host\n").unwrap();
    let mut s = spec("cat /data/hello; touch /data/x 2>/dev/null && echo RW; touch /scratch/y && echo TMPFS-RW");
    let mut mounts = s.mounts().clone().unwrap();
    mounts.push(serde_json::from_value::<Mount>(serde_json::json!({
        "destination": "/data", "type": "bind", "source": src, "options": ["rbind", "ro"]})).unwrap());
    mounts.push(serde_json::from_value::<Mount>(serde_json::json!({
        "destination": "/deep/scratch/../scratch", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1m"]})).unwrap());
    s.set_mounts(Some(mounts));
    // the tmpfs destination with `..` still lands inside the rootfs
    let r = run(&e.native(), &e, s.clone()).unwrap();
    assert!(r.stdout.starts_with("from the host"), "{r:?}");
    assert!(!r.stdout.contains("RW\n") || r.stdout.contains("TMPFS-RW"), "{r:?}");
    assert!(!src.join("x").exists(), "ro bind must not be writable");
}

#[test]
fn capabilities_are_exactly_the_spec_sets() {
    require_root!();
    let e = env();
    for ex in e.backends() {
        let mut s = spec("grep -E '^Cap(Eff|Prm|Bnd|Inh|Amb)' /proc/self/status");
        let p = s.process_mut().as_mut().unwrap();
        let mut c = p.capabilities().clone().unwrap();
        let set = common::caps(&["CAP_KILL", "CAP_NET_BIND_SERVICE"]);
        c.set_bounding(Some(set.clone()));
        c.set_effective(Some(set.clone()));
        c.set_permitted(Some(set));
        p.set_capabilities(Some(c));
        let r = run(&*ex, &e, s).unwrap();
        // CAP_KILL = 5, CAP_NET_BIND_SERVICE = 10
        for want in ["CapEff:\t0000000000000420", "CapPrm:\t0000000000000420", "CapBnd:\t0000000000000420", "CapInh:\t0000000000000000", "CapAmb:\t0000000000000000"] {
            assert!(r.stdout.contains(want), "{}: {want} in {r:?}", ex.name());
        }
    }
}

#[test]
fn non_root_user_and_groups() {
    require_root!();
    let e = env();
    let mut s = spec("id -u; id -g; id -G; grep CapEff /proc/self/status");
    let p = s.process_mut().as_mut().unwrap();
    p.set_user(serde_json::from_value(serde_json::json!({"uid": 1000, "gid": 1001, "additionalGids": [1002, 1003]})).unwrap());
    let r = run(&e.native(), &e, s).unwrap();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(&lines[..3], ["1000", "1001", "1001 1002 1003"], "{r:?}");
    assert!(lines[3].ends_with("0000000000000000"), "a non-root user keeps no effective caps: {r:?}");
}

#[test]
fn seccomp_blocks_a_denied_syscall() {
    require_root!();
    let e = env();
    for ex in e.backends() {
        let mut s = spec("mkdir /tmp/blocked 2>&1; echo rc=$?; touch /tmp/allowed && echo touched");
        let mut linux = s.linux().clone().unwrap();
        linux.set_seccomp(Some(serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        })).unwrap()));
        s.set_linux(Some(linux));
        let r = run(&*ex, &e, s).unwrap();
        assert!(r.stdout.contains("Operation not permitted"), "{}: {r:?}", ex.name());
        assert!(r.stdout.contains("rc=1") && r.stdout.contains("touched"), "{}: {r:?}", ex.name());
    }
}

fn with_resources(mut s: oci_spec::runtime::Spec, json: serde_json::Value) -> oci_spec::runtime::Spec {
    let mut linux = s.linux().clone().unwrap();
    let r: LinuxResources = serde_json::from_value(json).unwrap();
    linux.set_resources(Some(r));
    s.set_linux(Some(linux));
    s
}

#[test]
fn memory_limit_is_in_the_cgroup() {
    require_root!();
    let e = env();
    for ex in e.backends() {
        let mut s = with_resources(
            spec("cat /sys/fs/cgroup/memory/memory.limit_in_bytes"),
            serde_json::json!({"memory": {"limit": 67108864}}),
        );
        let mut mounts = s.mounts().clone().unwrap();
        mounts.push(serde_json::from_value(serde_json::json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid","noexec","nodev","relatime","ro"]})).unwrap());
        s.set_mounts(Some(mounts));
        let r = run(&*ex, &e, s).unwrap();
        assert_eq!(r.stdout.trim(), "67108864", "{}: {r:?}", ex.name());
    }
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    require_root!();
    let e = env();
    for ex in e.backends() {
        let s = with_resources(
            spec("i=0; while [ $i -lt 40 ]; do sleep 2 & i=$((i+1)); done; echo spawned; kill $(jobs -p) 2>/dev/null; true"),
            serde_json::json!({"pids": {"limit": 8}}),
        );
        let r = run(&*ex, &e, s).unwrap();
        assert!(r.stderr.contains("fork"), "{}: the pids limit must refuse forks: {r:?}", ex.name());
    }
}

#[test]
fn rlimits_apply() {
    require_root!();
    let e = env();
    for ex in e.backends() {
        let mut s = spec("ulimit -n; ulimit -Hn");
        s.process_mut().as_mut().unwrap().set_rlimits(Some(vec![serde_json::from_value(
            serde_json::json!({"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}),
        )
        .unwrap()]));
        let r = run(&*ex, &e, s).unwrap();
        assert_eq!(r.stdout, "123\n456\n", "{}: {r:?}", ex.name());
    }
}

#[test]
fn user_namespace_maps() {
    require_root!();
    let e = env();
    // The rootfs must be usable by the mapped root.
    std::process::Command::new("chown").args(["-R", "100000:100000"]).arg(&e.rootfs).status().unwrap();
    let mut s = spec("cat /proc/self/uid_map /proc/self/gid_map; id -u; ls /dev/null && echo devnull");
    let mut linux = s.linux().clone().unwrap();
    let mut ns = linux.namespaces().clone().unwrap();
    ns.push(serde_json::from_value(serde_json::json!({"type": "user"})).unwrap());
    linux.set_namespaces(Some(ns));
    linux.set_uid_mappings(Some(vec![serde_json::from_value(serde_json::json!({"containerID": 0, "hostID": 100000, "size": 65536})).unwrap()]));
    linux.set_gid_mappings(Some(vec![serde_json::from_value(serde_json::json!({"containerID": 0, "hostID": 100000, "size": 65536})).unwrap()]));
    s.set_linux(Some(linux));
    let r = run(&e.native(), &e, s).unwrap();
    let words: Vec<&str> = r.stdout.split_whitespace().collect();
    assert_eq!(&words[..6], ["0", "100000", "65536", "0", "100000", "65536"], "{r:?}");
    assert_eq!(words[6], "0", "{r:?}");
    assert!(r.stdout.contains("devnull"), "{r:?}");
}

#[test]
fn lifecycle_states_kill_and_signals() {
    require_root!();
    let e = env();
    for ex in e.backends() {
        let id = unique("life");
        ex.create(&id, &e.bundle(spec("sleep 100")), Stdio::Null).unwrap();
        assert_eq!(*ex.state(&id).unwrap().status(), ContainerState::Created, "{}", ex.name());
        assert!(ex.state(&id).unwrap().pid().unwrap() > 0);
        ex.start(&id).unwrap();
        assert_eq!(*ex.state(&id).unwrap().status(), ContainerState::Running, "{}", ex.name());
        ex.kill(&id, libc::SIGKILL, false).unwrap();
        assert_eq!(ex.wait(&id).unwrap(), ExitStatus::Signaled(libc::SIGKILL), "{}", ex.name());
        assert_eq!(*ex.state(&id).unwrap().status(), ContainerState::Stopped, "{}", ex.name());
        ex.delete(&id, false).unwrap();
        assert!(ex.state(&id).is_err());
    }
}

#[test]
fn delete_refuses_a_running_container_without_force() {
    require_root!();
    let e = env();
    let ex = e.native();
    let id = unique("busy");
    ex.create(&id, &e.bundle(spec("sleep 100")), Stdio::Null).unwrap();
    ex.start(&id).unwrap();
    assert!(matches!(ex.delete(&id, false), Err(berth_runtime::Error::WrongState { .. })));
    ex.delete(&id, true).unwrap();
}

#[test]
fn no_descriptor_leaks_into_the_container() {
    require_root!();
    let e = env();
    // A descriptor of the caller without close-on-exec, as a careless embedder would leave.
    let f = std::fs::File::open("/etc/hostname").unwrap();
    // SAFETY: dup without O_CLOEXEC on purpose.
    let leaked = unsafe { libc::dup(std::os::fd::AsRawFd::as_raw_fd(&f)) };
    assert!(leaked > 2);
    for ex in e.backends() {
        let r = run(&*ex, &e, spec("ls /proc/self/fd")).unwrap();
        let fds: Vec<&str> = r.stdout.lines().collect();
        // 0-2, plus the directory `ls` itself has open.
        assert_eq!(fds, ["0", "1", "2", "3"], "{}: {r:?}", ex.name());
    }
    // SAFETY: ours.
    unsafe { libc::close(leaked) };
}

#[test]
fn exec_joins_a_running_container() {
    require_root!();
    let e = env();
    for ex in e.backends() {
        let id = unique("exec");
        ex.create(&id, &e.bundle(spec("sleep 100")), Stdio::Null).unwrap();
        ex.start(&id).unwrap();
        let init_pid = ex.state(&id).unwrap().pid().unwrap();
        let out = e.tmp.path().join(format!("{id}.exec.out"));
        let mut p = spec("").process().clone().unwrap();
        p.set_args(Some(vec!["/bin/sh".into(), "-c".into(), "hostname; readlink /proc/self/ns/pid; exit 3".into()]));
        let pid = ex.exec(&id, &p, Stdio::Files { stdout: out.clone(), stderr: e.tmp.path().join(format!("{id}.exec.err")) }).unwrap();
        assert_eq!(ex.wait_exec(pid).unwrap(), ExitStatus::Exited(3), "{}", ex.name());
        let text = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "berth-test", "{}", ex.name());
        assert_eq!(lines[1], std::fs::read_link(format!("/proc/{init_pid}/ns/pid")).unwrap().to_string_lossy(), "{}", ex.name());
        ex.delete(&id, true).unwrap();
    }
}

#[test]
fn hooks_get_the_state() {
    require_root!();
    let e = env();
    let ex = e.native();
    let dir = e.tmp.path();
    let mut s = spec("true");
    let hook = |stage: &str| serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}/{stage}.json", dir.display())]});
    s.set_hooks(Some(serde_json::from_value(serde_json::json!({
        "prestart": [hook("prestart")], "createRuntime": [hook("createRuntime")],
        "poststart": [hook("poststart")], "poststop": [hook("poststop")]
    })).unwrap()));
    let r = run(&ex, &e, s).unwrap();
    assert_eq!(r.status, ExitStatus::Exited(0));
    for (stage, status) in [("prestart", "creating"), ("createRuntime", "creating"), ("poststart", "running"), ("poststop", "stopped")] {
        let state: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join(format!("{stage}.json"))).unwrap()).unwrap();
        assert_eq!(state["status"], status, "{stage}: {state}");
        assert!(state["id"].as_str().unwrap().starts_with("native-"));
    }
}

#[test]
fn two_hundred_runs_leave_no_mount_cgroup_or_state() {
    require_root!();
    let e = env();
    let ex = e.native();
    let before = std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().count();
    let mut ids = Vec::new();
    for i in 0..200 {
        let r = run(&ex, &e, spec("true")).unwrap_or_else(|err| panic!("run {i}: {err:#}"));
        assert_eq!(r.status, ExitStatus::Exited(0));
        ids.push(r.id);
    }
    let after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(after.lines().count(), before, "mounts leaked");
    assert!(!after.contains(e.tmp.path().to_str().unwrap()));
    let state = std::fs::read_dir(&ex.root).unwrap().count();
    assert_eq!(state, 0, "state directories left");
    for ctrl in ["memory", "pids", "cpu", "devices"] {
        let dir = std::path::Path::new("/sys/fs/cgroup").join(ctrl).join("berth");
        let left: Vec<_> = ids.iter().filter(|id| dir.join(id).exists()).collect();
        assert!(left.is_empty(), "cgroups left in {}: {left:?}", dir.display());
    }
}

#[test]
fn snapshot_overlay_mounts_as_the_root_and_writes_land_in_upper() {
    require_root!();
    let e = env();
    let upper = e.tmp.path().join("upper");
    let work = e.tmp.path().join("work");
    std::fs::create_dir(&upper).unwrap();
    std::fs::create_dir(&work).unwrap();
    let ex = e.native();
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = unique("overlay");
        let bundle = berth_runtime::Bundle {
            dir: e.tmp.path().into(),
            spec: spec(&format!("echo run{i} >> /written; cat /written; grep -c ' / overlay ' /proc/self/mounts")),
            rootfs: berth_runtime::Rootfs::Mounts(vec![berth_snapshot::Mount {
                kind: "overlay".into(),
                source: "overlay".into(),
                options: vec![format!("lowerdir={}", e.rootfs.display()), format!("upperdir={}", upper.display()), format!("workdir={}", work.display())],
            }]),
        };
        let out = e.tmp.path().join(format!("{id}.out"));
        ex.create(&id, &bundle, Stdio::Files { stdout: out.clone(), stderr: e.tmp.path().join(format!("{id}.err")) }).unwrap();
        ex.start(&id).unwrap();
        assert_eq!(ex.wait(&id).unwrap(), ExitStatus::Exited(0));
        ex.delete(&id, false).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.ends_with(&format!("run{i}\n1\n")), "{text}");
        ids.push(id);
    }
    assert_eq!(std::fs::read_to_string(upper.join("written")).unwrap(), "run0\nrun1\nrun2\n");
    assert!(!e.rootfs.join("written").exists(), "the lower layer is untouched");
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mi.contains(upper.to_str().unwrap()), "the overlay lived only in the container's mount namespace");
}

/// Receives one descriptor sent with SCM_RIGHTS.
fn recv_fd(sock: &std::os::unix::net::UnixStream) -> std::os::fd::OwnedFd {
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut data = [0u8; 64];
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
    let space = unsafe { libc::CMSG_SPACE(4) } as usize;
    let mut cbuf = vec![0u8; space];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: valid buffers.
    unsafe {
        assert!(libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) > 0);
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        assert!(!cmsg.is_null() && (*cmsg).cmsg_type == libc::SCM_RIGHTS);
        std::os::fd::OwnedFd::from_raw_fd(std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>()))
    }
}

#[test]
fn terminal_master_goes_to_the_console_socket() {
    require_root!();
    let e = env();
    let ex = e.native();
    let id = unique("tty");
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut s = spec("tty; [ -t 0 ] && [ -t 1 ] && echo both-ttys; stty size");
    let p = s.process_mut().as_mut().unwrap();
    p.set_terminal(Some(true));
    p.set_console_size(Some(serde_json::from_value(serde_json::json!({"height": 33, "width": 101})).unwrap()));
    ex.create(&id, &e.bundle(s), Stdio::Terminal { console_socket: theirs.into() }).unwrap();
    let master = std::fs::File::from(recv_fd(&ours));
    ex.start(&id).unwrap();
    assert_eq!(ex.wait(&id).unwrap(), ExitStatus::Exited(0));
    let mut out = Vec::new();
    // Reading the master after the slave side closed ends with EIO.
    let _ = std::io::Read::read_to_end(&mut &master, &mut out);
    let text = String::from_utf8_lossy(&out).replace('\r', "");
    assert!(text.contains("/dev/pts/0") && text.contains("both-ttys") && text.contains("33 101"), "{text:?}");
    ex.delete(&id, false).unwrap();
}

#[test]
fn sysctls_no_pivot_and_cgroup_namespace() {
    require_root!();
    let e = env();
    let mut ex = e.native();
    ex.no_pivot = true;
    let mut s = spec("cat /proc/sys/net/ipv4/ip_forward; cat /proc/self/cgroup | grep -c ':/$'; cat /proc/self/cgroup | wc -l");
    let mut linux = s.linux().clone().unwrap();
    linux.set_sysctl(Some([("net.ipv4.ip_forward".to_string(), "1".to_string())].into()));
    s.set_linux(Some(linux));
    let r = run(&ex, &e, s).unwrap();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "1", "sysctl applied in the container's network namespace: {r:?}");
    assert_eq!(lines[1], lines[2], "every hierarchy shows the container's cgroup as its root: {r:?}");
}

#[test]
fn a_missing_executable_fails_create_with_its_name_and_cleans_up() {
    require_root!();
    let e = env();
    let ex = e.native();
    let mut s = spec("true");
    s.process_mut().as_mut().unwrap().set_args(Some(vec!["no-such-program".into()]));
    let id = unique("missing");
    let err = format!("{:#}", ex.create(&id, &e.bundle(s), Stdio::Null).unwrap_err());
    assert!(err.contains("no-such-program") && err.contains(&id), "{err}");
    assert!(!ex.root.join(&id).exists());
    assert!(!std::path::Path::new("/sys/fs/cgroup/memory/berth").join(&id).exists());
}

#[test]
fn kill_all_signals_every_process_in_the_cgroup() {
    require_root!();
    let e = env();
    let ex = e.native();
    let id = unique("killall");
    ex.create(&id, &e.bundle(spec("sleep 100 & sleep 100 & wait")), Stdio::Null).unwrap();
    ex.start(&id).unwrap();
    let cg = berth_runtime::cgroups::manager_for(&std::path::Path::new("berth").join(&id)).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while cg.pids().unwrap().len() < 3 {
        assert!(std::time::Instant::now() < deadline, "children did not start");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    ex.kill(&id, libc::SIGKILL, true).unwrap();
    assert_eq!(ex.wait(&id).unwrap(), ExitStatus::Signaled(libc::SIGKILL));
    ex.delete(&id, false).unwrap();
    assert!(cg.pids().unwrap().is_empty());
}

#[test]
fn the_default_seccomp_profile_compiles_and_lets_a_shell_run() {
    require_root!();
    let e = env();
    let caps: Vec<String> = ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN", "CAP_SETUID", "CAP_SETGID", "CAP_FOWNER", "CAP_DAC_OVERRIDE"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let profile = berth_seccomp::default_profile("amd64", &caps);
    for ex in e.backends() {
        // unshare(CLONE_NEWUSER) and mount are refused by the default profile without CAP_SYS_ADMIN.
        let mut s = spec("echo ok; unshare -U true 2>/dev/null && echo UNSHARED; mount -t tmpfs t /tmp 2>/dev/null && echo MOUNTED; true");
        let mut linux = s.linux().clone().unwrap();
        linux.set_seccomp(Some(serde_json::from_value(profile.clone()).unwrap()));
        s.set_linux(Some(linux));
        let r = run(&*ex, &e, s).unwrap();
        assert_eq!(r.stdout, "ok\n", "{}: {r:?}", ex.name());
        assert_eq!(r.status, ExitStatus::Exited(0));
    }
}

/// Where a cgroup2 hierarchy is mounted, if any (/sys/fs/cgroup on a v2
/// host, /sys/fs/cgroup/unified on a hybrid one).
fn cgroup2_mount() -> Option<std::path::PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        if right.split_whitespace().next() != Some("cgroup2") {
            return None;
        }
        left.split_whitespace().nth(4).map(std::path::PathBuf::from)
    })
}

/// cgroup v2 device rules on a real container: the v2 manager's eBPF
/// program, attached to a cgroup in the unified tree the container's init
/// is moved into before start, refuses a device the v1 rules allow. (On a
/// hybrid host the executor itself uses v1; the kernel checks both.)
#[test]
fn v2_device_program_confines_a_container() {
    require_root!();
    let Some(mount) = cgroup2_mount() else {
        eprintln!("skipped: no cgroup2 hierarchy mounted");
        return;
    };
    let e = env();
    let ex = e.native();
    // /dev/kmsg (c 1:11), opened write-only (no CAP_SYSLOG needed, nothing written).
    // (A failed `exec` redirection ends a shell: each runs in a subshell.)
    let script = "(exec 4>/dev/null) && echo NULL_OK; (exec 3>/dev/kmsg) 2>&1 && echo KMSG_OK || echo KMSG_DENIED";
    let with_kmsg = || {
        let mut s = spec(script);
        let mut linux = s.linux().clone().unwrap();
        linux.set_devices(Some(vec![serde_json::from_value(serde_json::json!(
            {"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o600, "uid": 0, "gid": 0})).unwrap()]));
        let mut r = linux.resources().clone().unwrap_or_default();
        r.set_devices(Some(serde_json::from_value(serde_json::json!([
            {"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "rwm"}])).unwrap()));
        linux.set_resources(Some(r));
        s.set_linux(Some(linux));
        s
    };
    // Control: v1 alone lets the container open it.
    let r = run(&ex, &e, with_kmsg()).unwrap();
    assert_eq!(r.stdout, "NULL_OK\nKMSG_OK\n", "{r:?}");

    let parent = mount.join(unique("berth-test-v2dev"));
    std::fs::create_dir(&parent).unwrap();
    // The test's own parent as the v2 root: it delegates no controller, so
    // nothing above it is written.
    let v2 = berth_runtime::cgroups::V2 { root: parent.clone(), rel: "c".into() };
    let result = (|| -> anyhow::Result<String> {
        use berth_runtime::cgroups::CgroupManager;
        let rules: LinuxResources = serde_json::from_str(r#"{"devices":[{"allow":false,"access":"rwm"}]}"#)?;
        v2.apply(Some(&rules))?;
        let id = unique("v2dev");
        let out = e.tmp.path().join(format!("{id}.out"));
        ex.create(&id, &e.bundle(with_kmsg()), Stdio::Files { stdout: out.clone(), stderr: e.tmp.path().join(format!("{id}.err")) })?;
        let res = (|| -> anyhow::Result<()> {
            v2.add(ex.state(&id)?.pid().unwrap())?;
            ex.start(&id)?;
            ex.wait(&id)?;
            Ok(())
        })();
        ex.delete(&id, true)?;
        res?;
        Ok(std::fs::read_to_string(&out)?)
    })();
    use berth_runtime::cgroups::CgroupManager;
    let _ = v2.destroy();
    let _ = std::fs::remove_dir(&parent);
    assert!(!parent.exists(), "test cgroup {} left behind", parent.display());
    let out = result.unwrap();
    // The default /dev's null is allowed, kmsg refused by the v2 program.
    assert!(out.starts_with("NULL_OK\n") && out.ends_with("Operation not permitted\nKMSG_DENIED\n"), "{out:?}");
}

fn with_apparmor(script: &str, profile: &str) -> oci_spec::runtime::Spec {
    let mut s = spec(script);
    s.process_mut().as_mut().unwrap().set_apparmor_profile(Some(profile.into()));
    s
}

/// process.apparmorProfile: without AppArmor on the host, a named profile fails
/// create with an error naming it, before a cgroup, state dir or mount exists;
/// "unconfined" runs. With AppArmor, the container's process runs in the profile.
#[test]
fn apparmor_profile_is_applied_or_refused_naming_it() {
    use berth_runtime::lsm::HostLsm as _;
    require_root!();
    let e = env();
    let ex = e.native();
    let r = run(&ex, &e, with_apparmor("cat /proc/self/attr/current 2>/dev/null; echo ran", "unconfined")).unwrap();
    assert_eq!(r.status, ExitStatus::Exited(0), "{r:?}");
    assert!(r.stdout.ends_with("ran\n"), "{r:?}");
    if !berth_runtime::lsm::Host.apparmor_enabled() {
        let id = unique("apparmor");
        let err = ex.create(&id, &e.bundle(with_apparmor("true", "berth-test")), Stdio::Null).unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("\"berth-test\"") && err.contains("AppArmor is not enabled") && err.contains(&id), "{err}");
        assert!(!ex.root.join(&id).exists(), "state directory left");
        for ctrl in ["memory", "pids", "cpu", "devices"] {
            let dir = std::path::Path::new("/sys/fs/cgroup").join(ctrl).join("berth").join(&id);
            assert!(!dir.exists(), "cgroup left: {}", dir.display());
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&id), "a mount of {id} was left");
        return;
    }
    // AppArmor is enabled here: load a small profile and look from inside.
    let Some(parser) = common::which("apparmor_parser") else {
        eprintln!("skipped the confined case: AppArmor is enabled but apparmor_parser is not installed to load a test profile");
        return;
    };
    let profile = e.tmp.path().join("berth-test.apparmor");
    std::fs::write(&profile, "profile berth-test flags=(attach_disconnected,mediate_deleted) {\n  file,\n  capability,\n  network,\n  signal,\n  ptrace,\n}\n")
        .unwrap();
    let load = std::process::Command::new(&parser).arg("-r").arg(&profile).output().unwrap();
    if !load.status.success() {
        eprintln!("skipped the confined case: apparmor_parser -r failed: {}", String::from_utf8_lossy(&load.stderr));
        return;
    }
    let r = run(&ex, &e, with_apparmor("cat /proc/self/attr/current", "berth-test"));
    let _ = std::process::Command::new(&parser).arg("-R").arg(&profile).status();
    let r = r.unwrap();
    assert_eq!(r.status, ExitStatus::Exited(0), "{r:?}");
    assert!(r.stdout.starts_with("berth-test"), "{r:?}");
}

/// An exec'd process's own apparmorProfile is checked like the init's: on a
/// host without AppArmor a named profile is refused naming it, and the
/// container goes on running; "unconfined" execs.
#[test]
fn exec_with_an_apparmor_profile_is_checked_too() {
    use berth_runtime::lsm::HostLsm as _;
    require_root!();
    if berth_runtime::lsm::Host.apparmor_enabled() {
        eprintln!("skipped: AppArmor is enabled here (the refusal needs a host without it; the confined case is tested above)");
        return;
    }
    let e = env();
    let ex = e.native();
    let id = unique("aa-exec");
    ex.create(&id, &e.bundle(spec("sleep 100")), Stdio::Null).unwrap();
    ex.start(&id).unwrap();
    let mut p = spec("").process().clone().unwrap();
    p.set_args(Some(vec!["/bin/true".into()]));
    p.set_apparmor_profile(Some("berth-test".into()));
    let err = format!("{:#}", ex.exec(&id, &p, Stdio::Null).unwrap_err());
    assert!(err.contains("\"berth-test\"") && err.contains("AppArmor is not enabled"), "{err}");
    assert_eq!(ex.state(&id).unwrap().status(), &ContainerState::Running);
    p.set_apparmor_profile(Some("unconfined".into()));
    let pid = ex.exec(&id, &p, Stdio::Null).unwrap();
    assert_eq!(ex.wait_exec(pid).unwrap(), ExitStatus::Exited(0));
    ex.delete(&id, true).unwrap();
}

/// process.selinuxLabel and linux.mountLabel on a host without SELinux fail
/// create naming the field and the label, leaving no state dir behind.
#[test]
fn selinux_labels_without_selinux_fail_create_naming_them() {
    use berth_runtime::lsm::HostLsm as _;
    require_root!();
    if berth_runtime::lsm::Host.selinux_enabled() {
        eprintln!("skipped: SELinux is enabled here (labels would need the policy's container contexts)");
        return;
    }
    let e = env();
    let ex = e.native();
    let mut s = spec("true");
    s.process_mut().as_mut().unwrap().set_selinux_label(Some("system_u:system_r:container_t:s0:c1,c2".into()));
    let id = unique("selinux");
    let err = format!("{:#}", ex.create(&id, &e.bundle(s), Stdio::Null).unwrap_err());
    assert!(err.contains("process.selinuxLabel") && err.contains("container_t") && err.contains("SELinux is not enabled"), "{err}");
    assert!(!ex.root.join(&id).exists());
    let mut s = spec("true");
    let mut linux = s.linux().clone().unwrap();
    linux.set_mount_label(Some("system_u:object_r:container_file_t:s0:c1,c2".into()));
    s.set_linux(Some(linux));
    let err = format!("{:#}", ex.create(&unique("selinux"), &e.bundle(s), Stdio::Null).unwrap_err());
    assert!(err.contains("linux.mountLabel") && err.contains("container_file_t"), "{err}");
}
