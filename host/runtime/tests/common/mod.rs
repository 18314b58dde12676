//! Shared fixtures: a busybox rootfs, specs, backends, a run helper.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use berth_runtime::{Bundle, Executor, ExitStatus, NativeExecutor, OciRuntimeExecutor, Rootfs, Spec, Stdio};
use oci_spec::runtime::{LinuxCapabilities, ProcessBuilder};

/// Why the test cannot run here, if it cannot.
pub fn skip_reason() -> Option<String> {
    // SAFETY: plain getter.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root".into());
    }
    if which("busybox").is_none() {
        return Some("needs busybox (busybox-static)".into());
    }
    None
}

#[macro_export]
macro_rules! require_root {
    () => {
        if let Some(reason) = common::skip_reason() {
            eprintln!("skipped: {reason}");
            return;
        }
    };
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .chain([PathBuf::from("/usr/sbin").join(name), PathBuf::from("/bin").join(name)])
        .find(|p| p.is_file())
}

/// A rootfs with a static busybox and its applets as symlinks.
pub fn busybox_rootfs(dir: &Path) {
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let bb = which("busybox").unwrap();
    std::fs::copy(&bb, dir.join("bin/busybox")).unwrap();
    let list = std::process::Command::new(&bb).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet));
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n").unwrap();
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

pub fn caps(names: &[&str]) -> oci_spec::runtime::Capabilities {
    serde_json::from_value(serde_json::json!(names)).unwrap()
}

/// A spec running `sh -c script` with a writable root and a known capability set.
pub fn spec(script: &str) -> Spec {
    let mut spec = Spec::default();
    spec.root_mut().as_mut().unwrap().set_readonly(Some(false));
    spec.set_hostname(Some("berth-test".into()));
    let set = caps(&["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN", "CAP_SETUID", "CAP_SETGID", "CAP_FOWNER", "CAP_DAC_OVERRIDE"]);
    let c = LinuxCapabilities::default();
    let mut c = c;
    c.set_bounding(Some(set.clone()));
    c.set_effective(Some(set.clone()));
    c.set_permitted(Some(set.clone()));
    c.set_inheritable(Some(Default::default()));
    c.set_ambient(Some(Default::default()));
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(vec!["/bin/sh".to_string(), "-c".to_string(), script.to_string()])
        .env(vec!["PATH=/bin".to_string()])
        .cwd("/")
        .capabilities(c)
        .no_new_privileges(true)
        .build()
        .unwrap();
    spec.set_process(Some(process));
    spec
}

pub struct Env {
    pub tmp: tempfile::TempDir,
    pub rootfs: PathBuf,
}

pub fn env() -> Env {
    let tmp = tempfile::Builder::new().prefix("berth-rt").tempdir_in("/tmp").unwrap();
    let rootfs = tmp.path().join("rootfs");
    busybox_rootfs(&rootfs);
    Env { tmp, rootfs }
}

impl Env {
    pub fn native(&self) -> NativeExecutor {
        NativeExecutor::new(self.tmp.path().join("state")).with_init_binary(env!("CARGO_BIN_EXE_berth-runtime-init"))
    }

    /// native, then runc and crun when installed.
    pub fn backends(&self) -> Vec<Box<dyn Executor>> {
        let mut out: Vec<Box<dyn Executor>> = vec![Box::new(self.native())];
        for name in ["runc", "crun"] {
            match which(name) {
                Some(bin) => out.push(Box::new(OciRuntimeExecutor::new(
                    bin,
                    self.tmp.path().join(format!("{name}-root")),
                    self.tmp.path().join(format!("{name}-bundles")),
                ))),
                None => eprintln!("{name} not installed: its backend is skipped"),
            }
        }
        out
    }

    pub fn bundle(&self, spec: Spec) -> Bundle {
        Bundle { dir: self.tmp.path().to_path_buf(), spec, rootfs: Rootfs::Path(self.rootfs.clone()) }
    }
}

/// Output of one run.
#[derive(Debug)]
pub struct Run {
    pub id: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// create + start + wait + delete, output captured in files.
pub fn run(ex: &dyn Executor, env: &Env, spec: Spec) -> anyhow::Result<Run> {
    let id = unique(ex.name());
    let out = env.tmp.path().join(format!("{id}.out"));
    let err = env.tmp.path().join(format!("{id}.err"));
    ex.create(&id, &env.bundle(spec), Stdio::Files { stdout: out.clone(), stderr: err.clone() })?;
    let result = (|| {
        ex.start(&id)?;
        ex.wait(&id)
    })();
    ex.delete(&id, true)?;
    let status = result?;
    Ok(Run {
        id,
        status,
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
    })
}
