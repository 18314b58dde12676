//! berth's containerd client beyond the shared cases: import and unpack as
//! containerd's own tools see them, log files, list, kill, the task's
//! cgroup seen from the host.

use anyhow::{Context, Result, ensure};
use berth_containerd::unpack::chain_ids;
use berth_containerd::{RunRequest, Stdio, TaskState};
use berth_tests::cases::unique_id;
use berth_tests::containerd_backend::NAMESPACE;
use berth_tests::spec::spec_running;
use containerd_client::services::v1::InfoRequest;
use containerd_client::services::v1::content_client::ContentClient;
use oci_spec::runtime::{LinuxMemoryBuilder, LinuxResourcesBuilder};

use crate::IMAGE_NAME;
use crate::module::{Module, ModuleTrial};

pub fn trials() -> Vec<(&'static str, ModuleTrial)> {
    vec![
        ("spec::fixture_is_ctr_oci_spec", ModuleTrial::OwnDaemon(fixture_is_ctr_oci_spec)),
        ("client::import_tar_and_unpack_like_containerd", ModuleTrial::WithDaemon(import_tar_and_unpack_like_containerd)),
        ("client::log_dir_list_logs_delete", ModuleTrial::WithDaemon(log_dir_list_logs_delete)),
        ("client::inherit_relays_to_our_stdout_and_stderr", ModuleTrial::WithDaemon(inherit_relays_to_our_stdout_and_stderr)),
        ("client::kill_reports_the_signal", ModuleTrial::WithDaemon(kill_reports_the_signal)),
        ("client::memory_limit_in_the_host_cgroup", ModuleTrial::WithDaemon(memory_limit_in_the_host_cgroup)),
    ]
}

fn namespaced<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("containerd-namespace", NAMESPACE.parse().unwrap());
    request
}

fn blob_labels(module: &Module, digest: &str) -> Result<std::collections::HashMap<String, String>> {
    let mut content = ContentClient::new(module.client.channel());
    let info = module.block_on(content.info(namespaced(InfoRequest { digest: digest.to_string() })))?;
    Ok(info.into_inner().info.context("no info")?.labels)
}

fn ctr(module: &Module, args: &[&str]) -> Result<String> {
    let output = module.daemon().ctr(NAMESPACE).args(args).output()?;
    ensure!(output.status.success(), "ctr {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
    Ok(String::from_utf8(output.stdout)?)
}

/// Import from the tar form of the layout; unpack twice (the second reuses
/// the snapshots); the labels containerd's GC follows are where containerd
/// puts them; `ctr` sees the image and the committed chain.
fn import_tar_and_unpack_like_containerd(module: &Module) -> Result<()> {
    let name = "docker.io/berth-test/busybox-from-tar:1";
    module.block_on(module.client.import_image(&module.image.layout_tar, name))?;
    // Again: the blobs are there, the record is updated, nothing fails.
    module.block_on(module.client.import_image(&module.image.layout_tar, name))?;
    let chains = chain_ids(&module.image.diff_ids);
    let top = chains.last().unwrap().clone();
    ensure!(module.block_on(module.client.unpack(name, "overlayfs"))?.as_deref() == Some(top.as_str()));
    ensure!(module.block_on(module.client.unpack(name, "overlayfs"))?.as_deref() == Some(top.as_str()));

    let images = ctr(module, &["images", "ls", "-q"])?;
    ensure!(images.lines().any(|l| l == name), "ctr images ls: {images}");
    let snapshots = ctr(module, &["snapshots", "--snapshotter", "overlayfs", "ls"])?;
    for chain in &chains {
        ensure!(snapshots.lines().any(|l| l.starts_with(chain.as_str()) && l.contains("Committed")), "{chain} in {snapshots}");
    }
    // The manifest references config and layers for GC; the config the snapshot.
    let manifest = blob_labels(module, &module.image.manifest_digest)?;
    let config_digest = manifest.get("containerd.io/gc.ref.content.config").context("manifest gc.ref.content.config")?;
    let layer0 = manifest.get("containerd.io/gc.ref.content.l.0").context("manifest gc.ref.content.l.0")?;
    let config = blob_labels(module, config_digest)?;
    ensure!(config.get("containerd.io/gc.ref.snapshot.overlayfs") == Some(&top), "config labels {config:?}");
    let layer = blob_labels(module, layer0)?;
    ensure!(layer.get("containerd.io/uncompressed") == Some(&module.image.diff_ids[0]), "layer labels {layer:?}");
    // containerd's own check of the image: every blob present and verified.
    let check = ctr(module, &["images", "check"])?;
    ensure!(check.lines().any(|l| l.starts_with(name) && l.contains("complete")), "ctr images check: {check}");
    Ok(())
}

fn log_dir_list_logs_delete(module: &Module) -> Result<()> {
    let id = unique_id("log_dir");
    let log_dir = module.scratch_dir("logs")?;
    let request = RunRequest {
        stdio: Stdio::LogDir(log_dir.clone()),
        rm: false,
        ..RunRequest::new(&id, IMAGE_NAME, spec_running(&["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"]))
    };
    let outcome = module.block_on(module.client.run(request))?;
    ensure!(outcome.status.code == 3, "{outcome:?}");
    let logs = String::from_utf8(module.block_on(module.client.logs(&id))?)?;
    ensure!(logs.contains("to-stdout\n") && logs.contains("to-stderr\n"), "logs {logs:?}");
    ensure!(log_dir.join(format!("{id}.log")).is_file());

    let listed = module.block_on(module.client.list())?;
    let row = listed.iter().find(|c| c.id == id).with_context(|| format!("{id} not in {listed:?}"))?;
    ensure!(row.state == TaskState::Stopped { exit_code: 3 }, "{row:?}");
    ensure!(row.image == IMAGE_NAME && row.runtime == "io.containerd.runc.v2" && row.snapshotter == "overlayfs", "{row:?}");

    let status = module.block_on(module.client.delete(&id, false))?;
    ensure!(status.map(|s| s.code) == Some(3), "{status:?}");
    ensure!(!module.block_on(module.client.list())?.iter().any(|c| c.id == id));
    let snapshots = ctr(module, &["snapshots", "--snapshotter", "overlayfs", "ls"])?;
    ensure!(!snapshots.lines().any(|l| l.starts_with(&id)), "snapshot {id} left: {snapshots}");
    // The log outlives the container.
    ensure!(log_dir.join(format!("{id}.log")).is_file());
    Ok(())
}

fn kill_reports_the_signal(module: &Module) -> Result<()> {
    let id = unique_id("kill");
    let request = RunRequest::new(&id, IMAGE_NAME, spec_running(&["sleep", "1000"]));
    let client = &module.client;
    let task = module.block_on(client.create(&request))?;
    let pid = module.block_on(client.start(&id))?;
    ensure!(pid == task.pid && pid > 0);
    let listed = module.block_on(client.list())?;
    ensure!(listed.iter().any(|c| c.id == id && c.state == TaskState::Running && c.pid == Some(pid)), "{listed:?}");
    // A live task is not deleted without force.
    ensure!(module.block_on(client.delete(&id, false)).is_err());
    module.block_on(client.kill(&id, 9, false))?;
    let status = module.block_on(client.wait(&id))?;
    ensure!(status.code == 128 + 9, "{status:?}");
    module.block_on(client.delete(&id, false))?;
    Ok(())
}

/// The limit is read from the host's cgroup of the task's pid, while it runs.
fn memory_limit_in_the_host_cgroup(module: &Module) -> Result<()> {
    const LIMIT: i64 = 80 * 1024 * 1024;
    let id = unique_id("host_cgroup");
    let mut spec = spec_running(&["sleep", "1000"]);
    let resources = LinuxResourcesBuilder::default().memory(LinuxMemoryBuilder::default().limit(LIMIT).build()?).build()?;
    spec.linux_mut().as_mut().unwrap().set_resources(Some(resources));
    let client = &module.client;
    module.block_on(client.create(&RunRequest::new(&id, IMAGE_NAME, spec)))?;
    let result = (|| -> Result<()> {
        let pid = module.block_on(client.start(&id))?;
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
        let limit = if let Some(line) = cgroups.lines().find(|l| l.split(':').nth(1).is_some_and(|c| c.split(',').any(|c| c == "memory"))) {
            let path = line.splitn(3, ':').nth(2).unwrap();
            ensure!(path.ends_with(&format!("/{NAMESPACE}/{id}")), "memory cgroup {path}");
            std::fs::read_to_string(format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"))?
        } else {
            let path = cgroups.lines().find_map(|l| l.strip_prefix("0::")).context("no cgroup")?;
            std::fs::read_to_string(format!("/sys/fs/cgroup{path}/memory.max"))?
        };
        ensure!(limit.trim() == LIMIT.to_string(), "limit {limit:?}");
        Ok(())
    })();
    module.block_on(client.delete(&id, true))?;
    result
}

/// The cases' base spec is what this containerd's `ctr oci spec` prints.
fn fixture_is_ctr_oci_spec() -> Result<()> {
    let output = std::process::Command::new("ctr").args(["oci", "spec"]).output()?;
    ensure!(output.status.success(), "ctr oci spec: {}", String::from_utf8_lossy(&output.stderr));
    let live: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let fixture: serde_json::Value = serde_json::from_str(berth_tests::spec::CONTAINERD_DEFAULT_SPEC)?;
    ensure!(live == fixture, "ctr oci spec differs from fixtures/containerd-1.6-default-spec.json:\n{live:#}");
    Ok(())
}

/// `address|namespace|image|id` for [`relay_child`].
pub const RELAY_CHILD_ENV: &str = "BERTH_TEST_RELAY_CHILD";

/// In the child: runs a container with `Stdio::Inherit` and exits with its code.
pub fn relay_child(request: &str) -> std::process::ExitCode {
    let [address, namespace, image, id] = request.split('|').collect::<Vec<_>>()[..] else {
        eprintln!("{RELAY_CHILD_ENV}: expected address|namespace|image|id, got {request:?}");
        return std::process::ExitCode::from(101);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let result = runtime.block_on(async {
        let client = berth_containerd::ContainerdBackend::connect(address, namespace).await?;
        let spec = spec_running(&["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 5"]);
        let request = RunRequest { stdio: Stdio::Inherit, rm: true, ..RunRequest::new(id, image, spec) };
        client.run(request).await
    });
    match result {
        Ok(outcome) => std::process::ExitCode::from(outcome.status.code as u8),
        Err(err) => {
            eprintln!("relay child: {err:#}");
            std::process::ExitCode::from(101)
        }
    }
}

/// A berth process running a container with `Stdio::Inherit` prints the
/// container's stdout on its stdout and stderr on its stderr.
fn inherit_relays_to_our_stdout_and_stderr(module: &Module) -> Result<()> {
    let id = unique_id("relay");
    let request = format!("{}|{NAMESPACE}|{IMAGE_NAME}|{id}", module.daemon().address().display());
    let output = std::process::Command::new(std::env::current_exe()?).env(RELAY_CHILD_ENV, request).output()?;
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    ensure!(output.status.code() == Some(5), "exit {:?}, stderr {stderr}", output.status);
    ensure!(stdout == "to-stdout\n", "stdout {stdout:?}");
    ensure!(stderr == "to-stderr\n", "stderr {stderr:?}");
    Ok(())
}
