//! A containerd in a temp dir on a private socket (killed by pid on drop),
//! and `ctr containers create --rootfs` to make it build specs with its own
//! SpecOpts. Shared by tests/containerd_live.rs and the plugin golden tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_spec::image::replace_or_append_env;
use berth_spec::json::to_value;
use serde_json::Value;

pub struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Containerd {
    pub fn start() -> Result<Containerd, String> {
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
        while Command::new("ctr")
            .args(["-a"])
            .arg(ctd.socket())
            .arg("version")
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(ctd.dir.path().join("containerd.log")).unwrap_or_default();
                return Err(format!("containerd did not answer within 20s; log:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(ctd)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn ctr(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("ctr").arg("-a").arg(self.socket()).args(["-n", "nomad"]).args(args).output().unwrap();
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default();
            panic!("ctr {args:?}: {}\ncontainerd log:\n{log}", String::from_utf8_lossy(&out.stderr));
        }
        out.stdout
    }

    /// The spec containerd builds for `ctr c create --rootfs <flags> <rootfs> <id> <args>`.
    pub fn spec(&self, id: &str, flags: &[&str], args: &[&str]) -> Value {
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

/// containerd's spec as berth's would be with an (empty) image config:
/// `ctr --rootfs` skips `WithImageConfigArgs`, which berth always applies
/// (it puts the default PATH first in env).
pub fn with_image_config_env(mut spec: Value) -> Value {
    let env: Vec<String> = serde_json::from_value(spec["process"]["env"].clone()).unwrap_or_default();
    let env = replace_or_append_env(&[berth_spec::defaults::DEFAULT_PATH_ENV.to_string()], &env);
    spec["process"]["env"] = serde_json::json!(env);
    // Capability sets in the same (kernel) order as berth's to_value.
    let spec: oci_spec::runtime::Spec = serde_json::from_value(spec).unwrap();
    to_value(&spec)
}

pub fn hostname() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}
