//! The default seccomp profile, shared by the host (`seccomp: default`) and the
//! `seccomp-default` plugin. Pure data and logic: no I/O, builds for wasm.
//!
//! [`default_profile`] returns an OCI `linux.seccomp` object with the same
//! rules as containerd's `contrib/seccomp` `DefaultProfile` (itself Docker's
//! default): deny by default with `EPERM`, allow a fixed list of syscalls,
//! allow architecture-specific ones for the target architecture, and allow
//! the syscalls a capability unlocks only when the bounding set has it
//! (`clone` restricted to no new namespaces and `clone3` answering `ENOSYS`
//! without `CAP_SYS_ADMIN`).

use serde_json::{Value, json};

/// `EPERM`: what a denied syscall returns.
pub const EPERM: u32 = 1;
/// `ENOSYS`: what `clone3` returns without `CAP_SYS_ADMIN`, so libc falls
/// back to `clone`, whose flags the filter can inspect.
pub const ENOSYS: u32 = 38;
/// The namespace flags `clone` may not carry without `CAP_SYS_ADMIN`:
/// `CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
/// CLONE_NEWNET | CLONE_NEWCGROUP`.
pub const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// Syscalls allowed whatever the architecture and capabilities.
#[rustfmt::skip]
pub const ALLOWED: &[&str] = &[
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat", "capget", "capset", "chdir",
    "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64",
    "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "close", "close_range",
    "connect", "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl",
    "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve",
    "execveat", "exit", "exit_group", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate",
    "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl",
    "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat",
    "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futex", "futex_requeue",
    "futex_time64", "futex_wait", "futex_waitv", "futex_wake", "futimesat", "get_robust_list", "get_thread_area",
    "getcpu", "getcwd", "getdents", "getdents64", "getegid", "getegid32", "geteuid", "geteuid32", "getgid",
    "getgid32", "getgroups", "getgroups32", "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid",
    "getpriority", "getrandom", "getresgid", "getresgid32", "getresuid", "getresuid32", "getrlimit", "getrusage",
    "getsid", "getsockname", "getsockopt", "gettid", "gettimeofday", "getuid", "getuid32", "getxattr",
    "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel", "io_destroy",
    "io_getevents", "io_pgetevents", "io_pgetevents_time64", "io_setup", "io_submit", "io_uring_enter",
    "io_uring_register", "io_uring_setup", "ioctl", "ioprio_get", "ioprio_set", "ipc", "kill", "landlock_add_rule",
    "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link", "linkat",
    "listen", "listxattr", "llistxattr", "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64",
    "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat",
    "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mq_getsetattr", "mq_notify",
    "mq_open", "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink",
    "mremap", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap",
    "name_to_handle_at", "nanosleep", "newfstatat", "_newselect", "open", "openat", "openat2", "pause",
    "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll", "ppoll",
    "ppoll_time64", "prctl", "pread64", "preadv", "preadv2", "prlimit64", "process_mrelease", "pselect6",
    "pselect6_time64", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv",
    "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "rename",
    "renameat", "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
    "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo", "sched_get_priority_max", "sched_get_priority_min", "sched_getaffinity", "sched_getattr",
    "sched_getparam", "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
    "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp",
    "select", "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send", "sendfile", "sendfile64",
    "sendmmsg", "sendmsg", "sendto", "set_robust_list", "set_thread_area", "set_tid_address", "setfsgid",
    "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "setitimer",
    "setpgid", "setpriority", "setregid", "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32",
    "setreuid", "setreuid32", "setrlimit", "setsid", "setsockopt", "setuid", "setuid32", "setxattr", "shmat",
    "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4", "sigprocmask", "sigreturn",
    "socketcall", "socketpair", "splice", "stat", "stat64", "statfs", "statfs64", "statx", "symlink", "symlinkat",
    "sync", "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create", "timer_delete",
    "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create",
    "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate",
    "truncate64", "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64",
    "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write", "writev",
];

/// `personality` personas allowed for everyone: `PER_LINUX`,
/// `PER_LINUX | UNAME26`, `PER_LINUX32`, `PER_LINUX32 | UNAME26`, and the
/// query value `0xffffffff`.
pub const PERSONALITIES: &[u64] = &[0x0, 0x0008, 0x20000, 0x20008, 0xffff_ffff];

/// Syscalls a capability in the bounding set unlocks.
pub const CAPABILITY_SYSCALLS: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    ("CAP_SYS_MODULE", &["delete_module", "init_module", "finit_module"]),
    ("CAP_SYS_PACCT", &["acct"]),
    ("CAP_SYS_PTRACE", &["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"]),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    ("CAP_SYS_TIME", &["settimeofday", "stime", "clock_settime", "clock_settime64"]),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    ("CAP_SYS_NICE", &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"]),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// The architecture family of `arch`, accepting Go (`amd64`, `arm64`, `386`,
/// `ppc64le`, `s390x`, `riscv64`, `mips64le`...) and Rust/uname spellings
/// (`x86_64`, `aarch64`, `i686`, `powerpc64le`...). `None` if unknown.
pub fn normalize_arch(arch: &str) -> Option<&'static str> {
    Some(match arch {
        "amd64" | "x86_64" => "amd64",
        "386" | "x86" | "i386" | "i686" => "386",
        "arm64" | "aarch64" => "arm64",
        "arm" | "armv7" | "armv7l" | "armv6l" => "arm",
        "ppc64le" | "powerpc64le" => "ppc64le",
        "ppc64" | "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "s390" => "s390",
        "riscv64" | "riscv64gc" => "riscv64",
        "mips" => "mips",
        "mipsle" => "mipsle",
        "mips64" => "mips64",
        "mips64le" => "mips64le",
        "loong64" | "loongarch64" => "loong64",
        _ => return None,
    })
}

/// The seccomp architectures (`SCMP_ARCH_*`) a filter for `arch` covers, as
/// containerd's `arches()` lists them: the native one and its compat ABIs for
/// amd64, arm64, mips64(le), s390x and riscv64; empty (the native
/// architecture only) for the others.
pub fn architectures(arch: &str) -> Vec<&'static str> {
    match normalize_arch(arch) {
        Some("amd64") => vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        Some("arm64") => vec!["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"],
        Some("mips64") => vec!["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32"],
        Some("mips64le") => vec!["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32"],
        Some("s390x") => vec!["SCMP_ARCH_S390", "SCMP_ARCH_S390X"],
        Some("riscv64") => vec!["SCMP_ARCH_RISCV64"],
        _ => Vec::new(),
    }
}

/// Syscalls only some architectures have, allowed for everyone there.
pub fn arch_syscalls(arch: &str) -> &'static [&'static str] {
    match normalize_arch(arch) {
        Some("ppc64le") => &["sync_file_range2", "swapcontext"],
        Some("arm" | "arm64") => {
            &["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"]
        }
        Some("amd64") => &["arch_prctl", "modify_ldt"],
        Some("386") => &["modify_ldt"],
        Some("s390" | "s390x") => &["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"],
        Some("riscv64") => &["riscv_flush_icache"],
        _ => &[],
    }
}

fn allow(names: &[&str]) -> Value {
    json!({ "names": names, "action": "SCMP_ACT_ALLOW" })
}

/// `AF_VSOCK`: the one socket family the default profile refuses.
pub const AF_VSOCK: u64 = 40;

/// Allowed on kernels from 4.8 (where seccomp runs before ptrace can change
/// the syscall); containerd checks the running kernel, berth requires a newer
/// one anyway.
pub const KERNEL_4_8_SYSCALLS: &[&str] = &["process_vm_readv", "process_vm_writev", "ptrace"];

/// The default profile for `arch` and the container's bounding capability
/// set (names like `CAP_SYS_ADMIN`), as an OCI `linux.seccomp` object. The
/// rules come in containerd's order: the allowlist, `socket` without
/// `AF_VSOCK`, the personalities, the kernel-version rule, the architecture
/// rule, one rule per capability in the order of `capabilities`, then the
/// `clone`/`clone3` restrictions without `CAP_SYS_ADMIN`. Denied syscalls get
/// the runtime's default errno for `SCMP_ACT_ERRNO` (`EPERM`).
pub fn default_profile(arch: &str, capabilities: &[String]) -> Value {
    let mut syscalls = vec![allow(ALLOWED)];
    syscalls.push(json!({
        "names": ["socket"],
        "action": "SCMP_ACT_ALLOW",
        "args": [{ "index": 0, "value": AF_VSOCK, "valueTwo": 0, "op": "SCMP_CMP_NE" }],
    }));
    for persona in PERSONALITIES {
        syscalls.push(json!({
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{ "index": 0, "value": persona, "valueTwo": 0, "op": "SCMP_CMP_EQ" }],
        }));
    }
    syscalls.push(allow(KERNEL_4_8_SYSCALLS));
    let arch_only = arch_syscalls(arch);
    if !arch_only.is_empty() {
        syscalls.push(allow(arch_only));
    }
    let mut admin = false;
    for cap in capabilities {
        if cap == "CAP_SYS_ADMIN" {
            admin = true;
        }
        if let Some((_, names)) = CAPABILITY_SYSCALLS.iter().find(|(c, _)| c == cap) {
            syscalls.push(allow(names));
        }
    }
    if !admin {
        // s390 passes the clone flags in the second argument.
        let flags_index = if matches!(normalize_arch(arch), Some("s390" | "s390x")) { 1 } else { 0 };
        syscalls.push(json!({
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{
                "index": flags_index,
                "value": CLONE_NAMESPACE_FLAGS,
                "valueTwo": 0,
                "op": "SCMP_CMP_MASKED_EQ",
            }],
        }));
        syscalls.push(json!({ "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS }));
    }
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": architectures(arch),
        "syscalls": syscalls,
    })
}

/// [`default_profile`] as compact JSON text, written directly (no
/// intermediate `Value`): what the seccomp-default plugin returns, where a
/// call's cost matters.
pub fn default_profile_json(arch: &str, capabilities: &[String]) -> String {
    use std::fmt::Write;
    fn names(out: &mut String, list: &[&str]) {
        out.push('[');
        for (i, n) in list.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            // Syscall names are plain identifiers: no escaping needed.
            out.push('"');
            out.push_str(n);
            out.push('"');
        }
        out.push(']');
    }
    fn allow_rule(out: &mut String, list: &[&str]) {
        out.push_str("{\"names\":");
        names(out, list);
        out.push_str(",\"action\":\"SCMP_ACT_ALLOW\"},");
    }
    fn arg_rule(out: &mut String, name: &str, index: u32, value: u64, op: &str) {
        let _ = write!(
            out,
            "{{\"names\":[\"{name}\"],\"action\":\"SCMP_ACT_ALLOW\",\"args\":[{{\"index\":{index},\"value\":{value},\"valueTwo\":0,\"op\":\"{op}\"}}]}},"
        );
    }
    let mut out = String::with_capacity(8192);
    out.push_str("{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"architectures\":");
    names(&mut out, &architectures(arch));
    out.push_str(",\"syscalls\":[");
    allow_rule(&mut out, ALLOWED);
    arg_rule(&mut out, "socket", 0, AF_VSOCK, "SCMP_CMP_NE");
    for persona in PERSONALITIES {
        arg_rule(&mut out, "personality", 0, *persona, "SCMP_CMP_EQ");
    }
    allow_rule(&mut out, KERNEL_4_8_SYSCALLS);
    let arch_only = arch_syscalls(arch);
    if !arch_only.is_empty() {
        allow_rule(&mut out, arch_only);
    }
    let mut admin = false;
    for cap in capabilities {
        if cap == "CAP_SYS_ADMIN" {
            admin = true;
        }
        if let Some((_, list)) = CAPABILITY_SYSCALLS.iter().find(|(c, _)| c == cap) {
            allow_rule(&mut out, list);
        }
    }
    if !admin {
        let flags_index = if matches!(normalize_arch(arch), Some("s390" | "s390x")) { 1 } else { 0 };
        arg_rule(&mut out, "clone", flags_index, CLONE_NAMESPACE_FLAGS, "SCMP_CMP_MASKED_EQ");
        let _ = write!(out, "{{\"names\":[\"clone3\"],\"action\":\"SCMP_ACT_ERRNO\",\"errnoRet\":{ENOSYS}}},");
    }
    out.pop(); // the last rule's comma
    out.push_str("]}");
    out
}

/// Every syscall name `profile` allows unconditionally (no argument filter),
/// for tests and `--explain`.
pub fn allowed_names(profile: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for rule in profile["syscalls"].as_array().into_iter().flatten() {
        if rule["action"] == "SCMP_ACT_ALLOW" && rule.get("args").is_none() {
            for n in rule["names"].as_array().into_iter().flatten() {
                if let Some(n) = n.as_str() {
                    out.push(n.to_string());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn shape_and_default_action() {
        let p = default_profile("amd64", &caps(&["CAP_CHOWN"]));
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        assert!(p.get("defaultErrnoRet").is_none(), "EPERM is the runtime's default, as in containerd");
        assert_eq!(p["architectures"], json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]));
        let allowed = allowed_names(&p);
        for name in [
            "read",
            "write",
            "openat",
            "execve",
            "exit_group",
            "arch_prctl",
            "futex",
            "statx",
            "ptrace",
            "io_uring_setup",
            "name_to_handle_at",
        ] {
            assert!(allowed.iter().any(|a| a == name), "{name} should be allowed");
        }
        for name in ["mount", "socket", "reboot", "bpf", "kexec_load", "init_module", "unshare", "keyctl", "kcmp"] {
            assert!(!allowed.iter().any(|a| a == name), "{name} should be denied");
        }
    }

    #[test]
    fn no_duplicates_in_allowlist() {
        let mut v = ALLOWED.to_vec();
        v.sort();
        let n = v.len();
        v.dedup();
        assert_eq!(n, v.len());
        assert!(n > 300);
    }

    #[test]
    fn capabilities_unlock_syscalls() {
        let p = default_profile("x86_64", &caps(&["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]));
        let allowed = allowed_names(&p);
        for name in ["mount", "unshare", "setns", "clone", "clone3", "kcmp", "pidfd_getfd"] {
            assert!(allowed.iter().any(|a| a == name), "{name}");
        }
        assert!(!allowed.iter().any(|a| a == "reboot"));
        // With CAP_SYS_ADMIN there is no restricted clone rule and no clone3 ENOSYS.
        let rules = p["syscalls"].as_array().unwrap();
        assert!(!rules.iter().any(|r| r["action"] == "SCMP_ACT_ERRNO"));
        // Capability rules follow the order of the bounding set.
        let order: Vec<_> = rules.iter().skip(8).map(|r| r["names"][0].as_str().unwrap().to_string()).collect();
        assert_eq!(order, ["arch_prctl", "bpf", "kcmp"]);
    }

    #[test]
    fn text_form_is_the_same_profile() {
        let all: Vec<String> = CAPABILITY_SYSCALLS.iter().map(|(c, _)| c.to_string()).collect();
        for arch in ["amd64", "arm64", "s390x", "riscv64", "ppc64le", "unknown"] {
            for caps in [Vec::new(), caps(&["CAP_CHOWN", "CAP_SYS_CHROOT"]), all.clone()] {
                let text = default_profile_json(arch, &caps);
                let parsed: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(parsed, default_profile(arch, &caps), "{arch} {caps:?}");
            }
        }
    }

    #[test]
    fn socket_refuses_vsock_only() {
        let p = default_profile("amd64", &[]);
        let rules = p["syscalls"].as_array().unwrap();
        assert_eq!(rules[1]["names"], json!(["socket"]));
        assert_eq!(rules[1]["args"][0]["value"], 40);
        assert_eq!(rules[1]["args"][0]["op"], "SCMP_CMP_NE");
    }

    #[test]
    fn clone_is_restricted_without_sys_admin() {
        let p = default_profile("amd64", &[]);
        let rules = p["syscalls"].as_array().unwrap();
        let clone = rules.iter().find(|r| r["names"] == json!(["clone"])).unwrap();
        assert_eq!(clone["args"][0]["index"], 0);
        assert_eq!(clone["args"][0]["value"], 0x7E02_0000u64);
        assert_eq!(clone["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        let clone3 = rules.iter().find(|r| r["names"] == json!(["clone3"])).unwrap();
        assert_eq!(clone3["errnoRet"], 38);
        let p = default_profile("s390x", &[]);
        let clone = p["syscalls"].as_array().unwrap().iter().find(|r| r["names"] == json!(["clone"])).unwrap().clone();
        assert_eq!(clone["args"][0]["index"], 1);
    }

    #[test]
    fn arch_specific() {
        let arm = allowed_names(&default_profile("aarch64", &[]));
        assert!(arm.iter().any(|a| a == "set_tls"));
        assert!(!arm.iter().any(|a| a == "arch_prctl"));
        assert_eq!(architectures("arm64"), vec!["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"]);
        assert!(architectures("sparc").is_empty());
        assert!(architectures("ppc64le").is_empty(), "containerd lists none for ppc64le");
        assert_eq!(architectures("riscv64"), vec!["SCMP_ARCH_RISCV64"]);
        let p = default_profile("amd64", &[]);
        let personas: Vec<_> =
            p["syscalls"].as_array().unwrap().iter().filter(|r| r["names"] == json!(["personality"])).collect();
        assert_eq!(personas.len(), 5);
    }
}
