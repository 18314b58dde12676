//! berth's own backends: the image imported into berth's content store,
//! unpacked into one of berth's snapshotters, and run by berth's native
//! executor (`native+<snapshotter>`) or by runc/crun through the oci-runtime
//! executor on an overlayfs snapshot (`runc`, `crun`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use berth_content::{ContentStore, ImageStore, ImportOptions, Platform};
use berth_runtime::{Bundle, Executor, NativeExecutor, OciRuntimeExecutor, Rootfs, Stdio};
use berth_snapshot::Snapshotter;

use crate::backend::{Backend, ContainerRun, RunResult, RunningBackend, SkipReason, require_binary, require_root};
use crate::image::TestImage;

/// Which executor runs the containers.
#[derive(Debug, Clone)]
pub enum ExecutorChoice {
    /// berth's own, re-executing `berth` (its `main` runs the init helper).
    Native,
    /// runc or crun, by name on PATH.
    OciRuntime(String),
}

pub struct NativeTestBackend {
    pub name: String,
    pub snapshotter: String,
    pub executor: ExecutorChoice,
}

impl NativeTestBackend {
    pub fn native(snapshotter: &str) -> Self {
        NativeTestBackend { name: format!("native+{snapshotter}"), snapshotter: snapshotter.into(), executor: ExecutorChoice::Native }
    }

    pub fn oci_runtime(binary: &str) -> Self {
        NativeTestBackend { name: binary.into(), snapshotter: "overlayfs".into(), executor: ExecutorChoice::OciRuntime(binary.into()) }
    }
}

/// The `berth` binary the native executor re-executes as its init helper:
/// `BERTH_BIN` (set by `cargo xtask test`), else target/release/berth.
pub fn berth_bin() -> PathBuf {
    std::env::var_os("BERTH_BIN").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/berth")
    })
}

impl Backend for NativeTestBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn available(&self) -> Result<(), SkipReason> {
        require_root()?;
        match &self.executor {
            ExecutorChoice::Native => {
                let bin = berth_bin();
                if !bin.is_file() {
                    return Err(SkipReason(format!("{} is missing (cargo build --release -p berth-host)", bin.display())));
                }
            }
            ExecutorChoice::OciRuntime(binary) => require_binary(binary)?,
        }
        if self.snapshotter == "fuse-overlayfs" {
            require_binary("fuse-overlayfs")?;
            if !Path::new("/dev/fuse").exists() {
                return Err(SkipReason("/dev/fuse is missing".into()));
            }
        }
        Ok(())
    }

    fn start(&self, image: &TestImage) -> anyhow::Result<Box<dyn RunningBackend>> {
        let dir = tempfile::Builder::new().prefix(&format!("berth-{}-", self.name.replace('+', "-"))).tempdir()?;
        let content = ContentStore::open(dir.path())?;
        let images = ImageStore::open(&content);
        let imported = berth_content::import(&content, &images, &image.layout_tar, &ImportOptions::default())
            .with_context(|| format!("importing {}", image.layout_tar.display()))?;
        let record = imported
            .iter()
            .find(|record| record.name == image.name)
            .or(imported.first())
            .context("the test image imported nothing")?;
        let resolved = berth_content::resolve_image(&content, &record.target, &Platform::host())?;
        let snapshotter =
            berth_snapshot::open(&self.snapshotter, &dir.path().join("snapshots").join(&self.snapshotter))?;
        let chain = berth_unpack::unpack_image(&content, &resolved, snapshotter.as_ref(), &Default::default())
            .map(Some)
            .with_context(|| format!("unpacking the test image into {}", self.snapshotter))?;
        let run_root = dir.path().join("run");
        let executor: Box<dyn Executor> = match &self.executor {
            ExecutorChoice::Native => Box::new(NativeExecutor::new(&run_root).with_init_binary(berth_bin())),
            ExecutorChoice::OciRuntime(binary) => {
                Box::new(OciRuntimeExecutor::new(binary, run_root.join(binary), dir.path().join("bundles")))
            }
        };
        Ok(Box::new(RunningNative { name: self.name.clone(), dir, snapshotter, chain, executor }))
    }
}

struct RunningNative {
    name: String,
    dir: tempfile::TempDir,
    snapshotter: Arc<dyn Snapshotter>,
    chain: Option<String>,
    executor: Box<dyn Executor>,
}

impl RunningNative {
    fn run_prepared(&self, run: &ContainerRun, mounts: Vec<berth_snapshot::Mount>) -> anyhow::Result<RunResult> {
        let bundle_dir = self.dir.path().join("runs").join(&run.id);
        std::fs::create_dir_all(&bundle_dir)?;
        let (stdout, stderr) = (bundle_dir.join("stdout"), bundle_dir.join("stderr"));
        let mut spec = run.spec.clone();
        // Each run its own cgroup, under berth's parent.
        if let Some(linux) = spec.linux_mut() {
            linux.set_cgroups_path(Some(PathBuf::from(format!("/berth-test/{}", run.id))));
        }
        let (rootfs, _mounted) = Rootfs::for_snapshot(mounts, &bundle_dir.join("rootfs"))?;
        let bundle = Bundle { dir: bundle_dir.clone(), spec, rootfs };
        let stdio = Stdio::Files { stdout: stdout.clone(), stderr: stderr.clone() };
        self.executor.create(&run.id, &bundle, stdio)?;
        let status = (|| -> anyhow::Result<_> {
            self.executor.start(&run.id)?;
            Ok(self.executor.wait(&run.id)?)
        })();
        let deleted = self.executor.delete(&run.id, true);
        let status = status?;
        deleted?;
        Ok(RunResult {
            exit_code: status.code() as u32,
            stdout: std::fs::read_to_string(&stdout).unwrap_or_default(),
            stderr: std::fs::read_to_string(&stderr).unwrap_or_default(),
        })
    }
}

impl RunningBackend for RunningNative {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(&self, run: &ContainerRun) -> anyhow::Result<RunResult> {
        let mounts = self.snapshotter.prepare(&run.id, self.chain.as_deref(), Default::default())?;
        let result = self.run_prepared(run, mounts);
        let removed = self.snapshotter.remove(&run.id);
        let result = result?;
        removed.with_context(|| format!("removing the snapshot of {}", run.id))?;
        Ok(result)
    }

    fn logs(&self) -> String {
        format!("(no daemon: {} runs in-process under {})", self.name, self.dir.path().display())
    }
}
