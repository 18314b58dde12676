//! Golden checks against a real containerd: for each case, `ctr containers
//! create --rootfs <flags>` makes containerd build a spec with its own
//! SpecOpts (`WithPrivileged`, `WithHostNamespace`, `WithAddedCapabilities`,
//! `WithMemoryLimit`, `WithDevices`, `seccomp.WithDefaultProfile`...); berth
//! assembles the same container from the adjustment a plugin would answer
//! for those options, and the two specs are compared field by field.
//!
//! Needs root and the containerd + ctr binaries; skips with the reason
//! otherwise. containerd runs in a temp dir on a private socket and is
//! killed by pid.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_spec::adjustment::*;
use berth_spec::image::replace_or_append_env;
use berth_spec::json::to_value;
use berth_spec::{Adjustment, ChainEntry, FixedMutator, Grants, HostFacts, Request, assemble};
use serde_json::Value;

struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Containerd {
    fn start() -> Result<Containerd, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("not root".into());
        }
        for bin in ["containerd", "ctr"] {
            if Command::new(bin).arg("--version").output().is_err() {
                return Err(format!("{bin} not installed"));
            }
        }
        let dir = tempfile::Builder::new().prefix("berth-spec-ctd").tempdir().map_err(|e| e.to_string())?;
        let d = dir.path();
        let config = format!(
            "version = 2\nroot = {:?}\nstate = {:?}\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\naddress = {:?}\n[debug]\naddress = {:?}\n",
            d.join("root"),
            d.join("state"),
            d.join("c.sock"),
            d.join("debug.sock"),
        );
        std::fs::write(d.join("config.toml"), config).map_err(|e| e.to_string())?;
        std::fs::create_dir(d.join("rootfs")).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(d.join("containerd.log")).map_err(|e| e.to_string())?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start containerd: {e}"))?;
        let ctd = Containerd { child, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Command::new("ctr").args(["-a"]).arg(ctd.socket()).arg("version").output().map(|o| !o.status.success()).unwrap_or(true) {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(ctd.dir.path().join("containerd.log")).unwrap_or_default();
                return Err(format!("containerd did not answer within 20s; log:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(ctd)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    fn ctr(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("ctr").arg("-a").arg(self.socket()).args(["-n", "nomad"]).args(args).output().unwrap();
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default();
            panic!("ctr {args:?}: {}\ncontainerd log:\n{log}", String::from_utf8_lossy(&out.stderr));
        }
        out.stdout
    }

    /// The spec containerd builds for `ctr c create --rootfs <flags> <rootfs> <id> <args>`.
    fn spec(&self, id: &str, flags: &[&str], args: &[&str]) -> Value {
        let rootfs = self.rootfs();
        let mut create = vec!["c", "create", "--rootfs"];
        create.extend_from_slice(flags);
        create.push(rootfs.to_str().unwrap());
        create.push(id);
        create.extend_from_slice(args);
        self.ctr(&create);
        let info: Value = serde_json::from_slice(&self.ctr(&["c", "info", id])).unwrap();
        self.ctr(&["c", "rm", id]);
        info["Spec"].clone()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every leaf that differs, as `pointer: berth X != containerd Y`.
fn differences(ours: &Value, theirs: &Value, path: &str, out: &mut Vec<String>) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                differences(a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null), &format!("{path}/{k}"), out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(x, y, &format!("{path}/{i}"), out);
            }
        }
        (a, b) if a != b => out.push(format!("{path}: berth {a} != containerd {b}")),
        _ => {}
    }
}

/// containerd's spec as berth's would be with an (empty) image config:
/// `ctr --rootfs` skips `WithImageConfigArgs`, which berth always applies
/// (it puts the default PATH first in env).
fn with_image_config_env(mut spec: Value) -> Value {
    let env: Vec<String> = serde_json::from_value(spec["process"]["env"].clone()).unwrap_or_default();
    let env = replace_or_append_env(&[berth_spec::defaults::DEFAULT_PATH_ENV.to_string()], &env);
    spec["process"]["env"] = serde_json::json!(env);
    // Capability sets in the same (kernel) order as berth's to_value.
    let spec: oci_spec::runtime::Spec = serde_json::from_value(spec).unwrap();
    to_value(&spec)
}

fn berth_spec_for(ctd: &Containerd, id: &str, args: &[&str], adjustment: Adjustment, seccomp: Option<Value>) -> Value {
    let mut host = HostFacts::detect();
    if let Some(profile) = seccomp {
        // The default profile itself is berth-seccomp's to match; here the
        // host's placement of it is what is checked.
        host.default_seccomp = Some(Arc::new(move |_arch: &str, _caps: &[String]| profile.clone()));
    }
    let request = Request {
        id: id.into(),
        namespace: "nomad".into(),
        args: Some(args.iter().map(|a| a.to_string()).collect()),
        rootfs: Some(ctd.rootfs()),
        default_unix_devices: true,
        ..Default::default()
    };
    let chain = [ChainEntry::new(Box::new(FixedMutator::new("golden", adjustment)), Grants::all())];
    to_value(&assemble(&request, &chain, &host).unwrap().spec)
}

fn assert_same(case: &str, berth: &Value, containerd: &Value) {
    let mut diffs = Vec::new();
    differences(berth, containerd, "", &mut diffs);
    assert!(diffs.is_empty(), "{case}: berth's spec differs from containerd's:\n{}", diffs.join("\n"));
}

fn hostname() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

fn mount(dest: &str, src: &str) -> Mount {
    Mount { destination: dest.into(), kind: "bind".into(), source: src.into(), options: vec!["rbind".into(), "ro".into()] }
}

#[test]
fn containerd_golden_specs() {
    let ctd = match Containerd::start() {
        Ok(c) => c,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return;
        }
    };

    // A nomad task's options, through ctr's equivalents: host network (with
    // /etc/hosts and resolv.conf; ctr also sets HOSTNAME), a netns path,
    // readonly rootfs, cap add/drop, env, memory, CFS quota, a device, a
    // bind mount, the default seccomp profile, new privileges allowed, cwd.
    let flags = [
        "--net-host", "--read-only", "--cap-add", "CAP_SYS_ADMIN", "--cap-drop", "CAP_NET_RAW", "--env", "NOMAD_TASK_NAME=web",
        "--memory-limit", "268435456", "--device", "/dev/null", "--mount", "type=bind,src=/srv/app,dst=/etc/app,options=rbind:ro",
        "--seccomp", "--with-ns", "network:/var/run/netns/n1", "--cpu-quota", "50000", "--cpu-period", "100000",
        "--allow-new-privs", "--cwd", "/w",
    ];
    let args = ["/bin/sleep", "300"];
    let theirs = ctd.spec("task", &flags, &args);
    let profile = theirs["linux"]["seccomp"].clone();
    assert!(profile.is_object(), "ctr --seccomp set no profile");
    let adjustment = Adjustment {
        env_set: vec![("NOMAD_TASK_NAME".into(), "web".into()), ("HOSTNAME".into(), hostname())],
        cwd: Some("/w".into()),
        capabilities_add: vec!["CAP_SYS_ADMIN".into()],
        capabilities_drop: vec!["CAP_NET_RAW".into()],
        no_new_privileges: Some(false),
        mounts_add: vec![mount("/etc/app", "/srv/app"), mount("/etc/hosts", "/etc/hosts"), mount("/etc/resolv.conf", "/etc/resolv.conf")],
        devices: vec![Device { path: "/dev/null".into(), kind: DeviceType::Char, major: -1, minor: -1, file_mode: None, uid: None, gid: None }],
        namespaces: vec![NamespaceSetting { kind: NamespaceKind::Network, mode: NamespaceMode::Join("/var/run/netns/n1".into()) }],
        resources: Some(Resources { memory_limit: Some(268435456), cpu_quota: Some(50000), cpu_period: Some(100000), ..Default::default() }),
        seccomp: Some(Seccomp::Default),
        readonly_rootfs: Some(true),
        ..Default::default()
    };
    let ours = berth_spec_for(&ctd, "task", &args, adjustment, Some(profile));
    assert_same("nomad-like task", &ours, &with_image_config_env(theirs));

    // `ctr run --privileged`: WithPrivileged + WithAllDevicesAllowed +
    // WithHostDevices, i.e. every privileged bit.
    let theirs = ctd.spec("priv", &["--privileged"], &["sh"]);
    let adjustment = Adjustment {
        privileged: Privileged {
            sysfs_rw: true,
            cgroupfs_rw: true,
            all_devices: true,
            host_devices: true,
            all_capabilities: true,
            unconfined_apparmor: true,
            clear_masked_paths: true,
            clear_readonly_paths: true,
        },
        ..Default::default()
    };
    let ours = berth_spec_for(&ctd, "priv", &["sh"], adjustment, None);
    assert_same("privileged", &ours, &with_image_config_env(theirs));

    // Host network alone removes the network namespace.
    let theirs = ctd.spec("hostnet", &["--net-host"], &["sh"]);
    let adjustment = Adjustment {
        env_set: vec![("HOSTNAME".into(), hostname())],
        mounts_add: vec![mount("/etc/hosts", "/etc/hosts"), mount("/etc/resolv.conf", "/etc/resolv.conf")],
        namespaces: vec![NamespaceSetting { kind: NamespaceKind::Network, mode: NamespaceMode::Host }],
        ..Default::default()
    };
    let ours = berth_spec_for(&ctd, "hostnet", &["sh"], adjustment, None);
    assert_same("host network", &ours, &with_image_config_env(theirs));
}

#[allow(dead_code)]
fn _unused(_: &Path) {}
