//! `io.containerd.runc.v2` with `BinaryName`: containerd runs the binary
//! the container's runtime options name (how it will run berth's runtime).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Result, ensure};
use berth_containerd::{ContainerdBackend, RunRequest, RuntimeSelection, Stdio};
use berth_tests::containerd_backend::NAMESPACE;
use berth_tests::daemon::{ContainerdDaemon, DaemonConfig};
use berth_tests::image::build_busybox_image;
use berth_tests::backend::require_binary;
use berth_tests::cases::unique_id;
use berth_tests::spec::spec_running;

use crate::IMAGE_NAME;
use crate::module::{Module, ModuleTrial};

pub fn trials() -> Vec<(&'static str, ModuleTrial)> {
    vec![
        ("runtime::binary_name_runc_wrapper", ModuleTrial::WithDaemon(binary_name_runc_wrapper)),
        ("runtime::legacy_linux_runtime_from_daemon_config", ModuleTrial::OwnDaemon(legacy_linux_runtime_from_daemon_config)),
    ]
}

/// A script recording each invocation's arguments, then running `target`.
fn wrapper(dir: &Path, target: &str) -> Result<(PathBuf, PathBuf)> {
    let record = dir.join(format!("{target}-calls.log"));
    let script = dir.join(format!("{target}-wrapper"));
    std::fs::write(&script, format!("#!/bin/sh\necho \"$*\" >> '{}'\nexec {target} \"$@\"\n", record.display()))?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    Ok((script, record))
}

fn run_through(module: &Module, target: &str) -> Result<()> {
    if let Err(reason) = require_binary(target) {
        anyhow::bail!("{reason}");
    }
    let (script, record) = wrapper(&module.scratch_dir("runtime")?, target)?;
    let id = unique_id(&format!("binary-{target}"));
    let request = RunRequest {
        runtime: RuntimeSelection::runc_binary(&script),
        stdio: Stdio::Capture,
        rm: true,
        ..RunRequest::new(&id, IMAGE_NAME, spec_running(&["echo", "through", target]))
    };
    let outcome = module.block_on(module.client.run(request))?;
    ensure!(outcome.status.code == 0, "{outcome:?}");
    ensure!(String::from_utf8_lossy(&outcome.output.stdout) == format!("through {target}\n"), "{outcome:?}");
    let calls = std::fs::read_to_string(&record)?;
    for verb in ["create", "start", "delete"] {
        ensure!(
            calls.lines().any(|l| l.split_whitespace().any(|w| w == verb) && l.contains(&id)),
            "no `{verb} ... {id}` among the recorded calls:\n{calls}"
        );
    }
    Ok(())
}

fn binary_name_runc_wrapper(module: &Module) -> Result<()> {
    run_through(module, "runc")
}

/// The daemon-wide runtime binary of containerd's legacy
/// `io.containerd.runtime.v1.linux` (DaemonConfig::legacy_linux_runtime),
/// on a daemon of its own.
fn legacy_linux_runtime_from_daemon_config() -> Result<()> {
    require_binary("containerd-shim").map_err(|r| anyhow::anyhow!("{r}"))?;
    let dir = tempfile::tempdir()?;
    let (script, record) = wrapper(dir.path(), "runc")?;
    let image = build_busybox_image(dir.path(), IMAGE_NAME)?;
    let daemon = ContainerdDaemon::start_with(DaemonConfig { legacy_linux_runtime: Some(script), ..Default::default() })?;
    let _print_log = daemon.print_log_on_panic();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let client = runtime.block_on(ContainerdBackend::connect(daemon.address(), NAMESPACE))?;
    runtime.block_on(client.import_image(&image.layout_dir, IMAGE_NAME))?;
    let id = unique_id("legacy-runtime");
    let request = RunRequest {
        runtime: RuntimeSelection::Named("io.containerd.runtime.v1.linux".into()),
        stdio: Stdio::Capture,
        rm: true,
        ..RunRequest::new(&id, IMAGE_NAME, spec_running(&["echo", "legacy"]))
    };
    let outcome = runtime.block_on(client.run(request));
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(err) => panic!("{err:#}"),
    };
    ensure!(outcome.status.code == 0 && outcome.output.stdout == b"legacy\n", "{outcome:?}");
    let calls = std::fs::read_to_string(&record)?;
    ensure!(calls.lines().any(|l| l.contains("create") && l.contains(&id)), "recorded calls:\n{calls}");
    drop(runtime);
    daemon.stop()
}
