//! The containerd of this test module: one daemon for the containerd-api
//! trials, started on first use, with berth's snapshots service (over
//! berth-snapshot's overlayfs snapshotter, in this process) configured as
//! the proxy snapshotter `berth`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use berth_containerd::ContainerdBackend;
use berth_tests::closers::Closers;
use berth_tests::containerd_backend::{NAMESPACE, serve_in_process};
use berth_snapshot::Snapshotter;
use berth_tests::daemon::{ContainerdDaemon, DaemonConfig};
use berth_tests::image::TestImage;
use libtest_mimic::Failed;

use crate::{IMAGE_NAME, failed_with_logs, panic_message};

/// The proxy snapshotter's name in the daemon's config.
pub const PROXY: &str = "berth";

pub enum ModuleTrial {
    /// Needs no containerd.
    Standalone(fn() -> anyhow::Result<()>),
    /// Starts a containerd of its own (a config of its own).
    OwnDaemon(fn() -> anyhow::Result<()>),
    /// Uses the module's containerd.
    WithDaemon(fn(&Module) -> anyhow::Result<()>),
}

pub fn trials() -> Vec<(&'static str, ModuleTrial)> {
    let mut all = Vec::new();
    all.extend(crate::errors::trials());
    all.extend(crate::client::trials());
    all.extend(crate::cli::trials());
    all.extend(crate::runtime::trials());
    all.extend(crate::snapshots::trials());
    all
}

pub struct Module {
    daemon: Option<ContainerdDaemon>,
    pub runtime: tokio::runtime::Runtime,
    pub client: ContainerdBackend,
    /// berth's overlayfs snapshotter behind the proxy.
    pub snapshotter: Arc<dyn Snapshotter>,
    /// Stops the snapshots service, after the daemon.
    server: Closers,
    pub image: TestImage,
    /// Holds the proxy's socket and the snapshotter's root; removed last.
    pub dir: tempfile::TempDir,
}

impl Module {
    fn start(image: TestImage) -> anyhow::Result<Module> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let dir = tempfile::Builder::new().prefix("berth-module-").tempdir()?;
        let socket = dir.path().join("snapshots.sock");
        let snapshotter = berth_snapshot::open("overlayfs", &dir.path().join("overlayfs"))?;
        let mut server = Closers::new();
        serve_in_process(snapshotter.clone())(&socket, &mut server)?;
        let config = DaemonConfig { proxy_snapshotters: vec![(PROXY.into(), socket)], ..Default::default() };
        let daemon = ContainerdDaemon::start_with(config)?;
        let client = runtime.block_on(ContainerdBackend::connect(daemon.address(), NAMESPACE))?;
        runtime
            .block_on(client.import_image(&image.layout_dir, IMAGE_NAME))
            .with_context(|| format!("importing the test image\n{}", daemon.logs()))?;
        Ok(Module { daemon: Some(daemon), runtime, client, snapshotter, server, image, dir })
    }

    pub fn daemon(&self) -> &ContainerdDaemon {
        self.daemon.as_ref().expect("running until dropped")
    }

    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// A client of this daemon in another namespace.
    pub fn client_in(&self, namespace: &str) -> anyhow::Result<ContainerdBackend> {
        Ok(self.block_on(ContainerdBackend::connect(self.daemon().address(), namespace))?)
    }

    pub fn scratch_dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.dir.path().join("scratch").join(name);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        // The daemon (and its shims) first, then the snapshotter it used.
        if let Some(daemon) = self.daemon.take()
            && let Err(err) = daemon.stop()
        {
            eprintln!("stopping the module's containerd: {err:#}");
        }
        if let Err(err) = self.server.close() {
            eprintln!("{err:#}");
        }
    }
}

pub struct LazyModule {
    image: TestImage,
    module: OnceLock<Result<Module, String>>,
}

impl LazyModule {
    pub fn new(image: TestImage) -> Self {
        LazyModule { image, module: OnceLock::new() }
    }

    pub fn run_trial(&self, trial: ModuleTrial) -> Result<(), Failed> {
        match trial {
            ModuleTrial::Standalone(f) | ModuleTrial::OwnDaemon(f) => match catch_unwind(f) {
                Ok(result) => result.map_err(|e| Failed::from(format!("{e:#}"))),
                Err(panic) => Err(Failed::from(panic_message(&panic))),
            },
            ModuleTrial::WithDaemon(f) => {
                let module = self.module.get_or_init(|| Module::start(self.image.clone()).map_err(|e| format!("{e:#}")));
                let module = module.as_ref().map_err(|e| Failed::from(format!("starting the module's containerd: {e}")))?;
                match catch_unwind(AssertUnwindSafe(|| f(module))) {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(err)) => Err(failed_with_logs(format!("{err:#}"), "containerd", &module.daemon().logs())),
                    Err(panic) => Err(failed_with_logs(panic_message(&panic), "containerd", &module.daemon().logs())),
                }
            }
        }
    }
}
