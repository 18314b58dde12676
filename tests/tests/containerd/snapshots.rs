//! berth's snapshots gRPC service: on its own (every call, its error
//! codes), and as containerd's proxy snapshotter (`ctr` imports and runs
//! on it; usage and labels pass through).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use berth_containerd::unpack::chain_ids;
use berth_containerd::{RunRequest, Stdio};
use berth_snapshot::Snapshotter;
use berth_tests::cases::unique_id;
use berth_tests::backend::Backend;
use berth_tests::containerd_backend::{ContainerdTestBackend, SnapshotterSetup, serve_in_process};
use berth_tests::copy_snapshotter::CopySnapshotter;
use berth_tests::spec::spec_running;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    CleanupRequest, CommitSnapshotRequest, Kind, ListSnapshotsRequest, MountsRequest, PrepareSnapshotRequest,
    RemoveSnapshotRequest, StatSnapshotRequest, UpdateSnapshotRequest, UsageRequest, ViewSnapshotRequest,
};
use containerd_client::services::v1::snapshots::Info;
use tonic::Code;
use tonic::transport::Channel;

use crate::IMAGE_NAME;
use crate::module::{Module, ModuleTrial, PROXY};

pub fn trials() -> Vec<(&'static str, ModuleTrial)> {
    vec![
        ("snapshots::service_api", ModuleTrial::Standalone(service_api)),
        ("snapshots::bind_replaces_only_stale_sockets", ModuleTrial::Standalone(bind_replaces_only_stale_sockets)),
        ("snapshots::ctr_import_and_run_on_the_proxy", ModuleTrial::WithDaemon(ctr_import_and_run_on_the_proxy)),
        ("snapshots::backend_runs_on_the_proxy", ModuleTrial::WithDaemon(backend_runs_on_the_proxy)),
        ("snapshots::shared_cases_on_the_proxy", ModuleTrial::OwnDaemon(shared_cases_on_the_proxy)),
    ]
}

async fn channel(path: &Path) -> Result<Channel> {
    Ok(berth_containerd::unix_channel(path, std::time::Duration::from_secs(5)).await?)
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

async fn list(client: &mut SnapshotsClient<Channel>, filters: &[&str]) -> Result<Vec<String>> {
    let request = ListSnapshotsRequest { snapshotter: PROXY.into(), filters: filters.iter().map(|f| f.to_string()).collect() };
    let mut stream = client.list(request).await?.into_inner();
    let mut names = Vec::new();
    while let Some(batch) = stream.message().await? {
        names.extend(batch.info.into_iter().map(|i| i.name));
    }
    names.sort();
    Ok(names)
}

fn code<T: std::fmt::Debug>(result: std::result::Result<T, tonic::Status>) -> Code {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(status) => status.code(),
    }
}

fn service_api() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("snapshots.sock");
    let copy = Arc::new(CopySnapshotter::new(&dir.path().join("root"))?);
    let listener = {
        let _guard = runtime.enter();
        berth_containerd::snapshots_service::bind(&socket)?
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn({
        let (socket, copy) = (socket.clone(), copy.clone());
        async move { berth_containerd::snapshots_service::serve_on(listener, &socket, copy, async { stopped.await.ok(); }).await }
    });
    let result = runtime.block_on(exercise_service(&socket));
    stop.send(()).ok();
    runtime.block_on(server)??;
    ensure!(!socket.exists(), "the socket is removed at shutdown");
    result
}

async fn exercise_service(socket: &Path) -> Result<()> {
    let mut client = SnapshotsClient::new(channel(socket).await?);
    let sn = || PROXY.to_string();

    // Prepare, write, usage, commit.
    let prepared = client.prepare(PrepareSnapshotRequest { snapshotter: sn(), key: "a".into(), parent: "".into(), labels: labels(&[]) }).await?;
    let mounts = prepared.into_inner().mounts;
    ensure!(mounts.len() == 1 && mounts[0].r#type == "bind" && mounts[0].options.contains(&"rw".to_string()), "{mounts:?}");
    std::fs::write(Path::new(&mounts[0].source).join("a.txt"), vec![b'x'; 10_000])?;
    let usage = client.usage(UsageRequest { snapshotter: sn(), key: "a".into() }).await?.into_inner();
    ensure!(usage.size >= 10_000 && usage.inodes >= 1, "{usage:?}");
    client.commit(CommitSnapshotRequest { snapshotter: sn(), name: "base".into(), key: "a".into(), labels: labels(&[("l.x", "1")]) }).await?;
    let info = client.stat(StatSnapshotRequest { snapshotter: sn(), key: "base".into() }).await?.into_inner().info.context("info")?;
    ensure!(info.kind == Kind::Committed as i32 && info.labels == labels(&[("l.x", "1")]) && info.created_at.is_some(), "{info:?}");
    ensure!(code(client.stat(StatSnapshotRequest { snapshotter: sn(), key: "a".into() }).await) == Code::NotFound);

    // Children: an active one sees the parent's files; a view mounts read-only.
    let child = client
        .prepare(PrepareSnapshotRequest { snapshotter: sn(), key: "b".into(), parent: "base".into(), labels: labels(&[("team", "x")]) })
        .await?
        .into_inner()
        .mounts;
    ensure!(Path::new(&child[0].source).join("a.txt").is_file(), "the parent's file in the child");
    let view = client.view(ViewSnapshotRequest { snapshotter: sn(), key: "v".into(), parent: "base".into(), labels: labels(&[]) }).await?;
    ensure!(view.into_inner().mounts[0].options.contains(&"ro".to_string()));
    let again = client.mounts(MountsRequest { snapshotter: sn(), key: "b".into() }).await?.into_inner().mounts;
    ensure!(again == child, "mounts are stable: {again:?} vs {child:?}");

    // Update: one label, removal of one, replacement of all.
    let update = |labels: HashMap<String, String>, paths: &[&str]| UpdateSnapshotRequest {
        snapshotter: sn(),
        info: Some(Info { name: "b".into(), kind: Kind::Active as i32, labels, ..Default::default() }),
        update_mask: Some(prost_types::FieldMask { paths: paths.iter().map(|p| p.to_string()).collect() }),
    };
    let updated = client.update(update(labels(&[("team", "y"), ("new", "1")]), &["labels.team"])).await?.into_inner();
    ensure!(updated.info.context("info")?.labels == labels(&[("team", "y")]));
    let updated = client.update(update(labels(&[]), &["labels.team"])).await?.into_inner();
    ensure!(updated.info.context("info")?.labels.is_empty());
    let updated = client.update(update(labels(&[("all", "1")]), &[])).await?.into_inner();
    ensure!(updated.info.context("info")?.labels == labels(&[("all", "1")]));
    let stat = client.stat(StatSnapshotRequest { snapshotter: sn(), key: "b".into() }).await?.into_inner();
    ensure!(stat.info.context("info")?.labels == labels(&[("all", "1")]), "update persisted");

    // List with filters.
    ensure!(list(&mut client, &[]).await? == ["b", "base", "v"]);
    ensure!(list(&mut client, &["kind==committed"]).await? == ["base"]);
    ensure!(list(&mut client, &["labels.\"l.x\"==1"]).await? == ["base"]);
    ensure!(list(&mut client, &["kind==active,labels.all==1"]).await? == ["b"]);
    ensure!(list(&mut client, &["parent==base"]).await? == ["b", "v"]);
    ensure!(list(&mut client, &["kind==view", "kind==committed"]).await? == ["base", "v"]);

    // Error kinds as containerd's errdefs map them.
    let prepare = |key: &str, parent: &str| PrepareSnapshotRequest { snapshotter: sn(), key: key.into(), parent: parent.into(), labels: labels(&[]) };
    ensure!(code(client.prepare(prepare("b", "base")).await) == Code::AlreadyExists);
    ensure!(code(client.prepare(prepare("c", "missing")).await) == Code::NotFound);
    ensure!(code(client.prepare(prepare("c", "b")).await) == Code::InvalidArgument);
    ensure!(code(client.remove(RemoveSnapshotRequest { snapshotter: sn(), key: "base".into() }).await) == Code::FailedPrecondition);
    let commit_view = CommitSnapshotRequest { snapshotter: sn(), name: "x".into(), key: "v".into(), labels: labels(&[]) };
    ensure!(code(client.commit(commit_view).await) == Code::FailedPrecondition);
    ensure!(code(client.list(ListSnapshotsRequest { snapshotter: sn(), filters: vec!["bogus==1".into()] }).await) == Code::InvalidArgument);
    ensure!(code(client.cleanup(CleanupRequest { snapshotter: sn() }).await) == Code::Unimplemented);

    for key in ["b", "v", "base"] {
        client.remove(RemoveSnapshotRequest { snapshotter: sn(), key: key.into() }).await?;
    }
    ensure!(list(&mut client, &[]).await?.is_empty());
    Ok(())
}

fn bind_replaces_only_stale_sockets() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let _guard = runtime.enter();
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("file");
    std::fs::write(&file, b"keep me")?;
    let err = berth_containerd::snapshots_service::bind(&file).unwrap_err().to_string();
    ensure!(err.contains("not a socket"), "{err}");
    ensure!(std::fs::read(&file)? == b"keep me");

    let live = dir.path().join("live.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&live)?;
    let err = berth_containerd::snapshots_service::bind(&live).unwrap_err().to_string();
    ensure!(err.contains("already serves"), "{err}");

    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale)?);
    berth_containerd::snapshots_service::bind(&stale)?;
    Ok(())
}

/// containerd's own tools on berth's service: import (unpack into the
/// proxy), run, usage, labels.
fn ctr_import_and_run_on_the_proxy(module: &Module) -> Result<()> {
    let namespace = "berth-proxy";
    let ctr = |args: &[&str]| -> Result<String> {
        let output = module.daemon().ctr(namespace).args(args).output()?;
        ensure!(output.status.success(), "ctr {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
        Ok(String::from_utf8(output.stdout)?)
    };
    let tar = module.image.layout_tar.to_string_lossy().into_owned();
    ctr(&["images", "import", "--snapshotter", PROXY, &tar])?;

    // Every layer chain is a committed snapshot in berth's snapshotter.
    let chains = chain_ids(&module.image.diff_ids);
    let committed = backend_names(module.snapshotter.as_ref(), "kind==committed")?;
    for chain in &chains {
        ensure!(committed.iter().any(|name| name.ends_with(chain.as_str())), "{chain} not among {committed:?}");
    }

    let id = unique_id("ctr_proxy");
    ctr(&["run", "--rm", "--snapshotter", PROXY, IMAGE_NAME, &id, "/bin/true"])?;
    let id = unique_id("ctr_proxy");
    let out = ctr(&["run", "--rm", "--snapshotter", PROXY, IMAGE_NAME, &id, "echo", "hello"])?;
    ensure!(out == "hello\n", "ctr run printed {out:?}");

    // Usage passes through: the top layer holds busybox.
    let top = chains.last().unwrap();
    let usage = ctr(&["snapshots", "--snapshotter", PROXY, "usage", "-b", chains[0].as_str()])?;
    let size: i64 = usage
        .lines()
        .find(|l| l.starts_with(chains[0].as_str()))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no usage line for {}: {usage}", chains[0]))?;
    ensure!(size >= std::fs::metadata(berth_tests::image::BUSYBOX)?.len() as i64, "usage {size}");

    // Labels containerd hands to the snapshotter (containerd.io/snapshot/...) reach berth's.
    let label = "containerd.io/snapshot/berth.test";
    ctr(&["snapshots", "--snapshotter", PROXY, "label", top, &format!("{label}=yes")])?;
    let labelled = backend_names(module.snapshotter.as_ref(), &format!("labels.\"{label}\"==yes"))?;
    ensure!(labelled.len() == 1 && labelled[0].ends_with(top.as_str()), "labelled in berth's snapshotter: {labelled:?}");
    let info = ctr(&["snapshots", "--snapshotter", PROXY, "info", top])?;
    ensure!(info.contains(label), "ctr snapshots info: {info}");
    Ok(())
}

fn backend_names(snapshotter: &dyn Snapshotter, filter: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    snapshotter.walk(&[filter.to_string()], &mut |info| {
        names.push(info.name.clone());
        Ok(())
    })?;
    Ok(names)
}

/// berth's client unpacks into and runs on berth's snapshotter behind containerd.
fn backend_runs_on_the_proxy(module: &Module) -> Result<()> {
    let id = unique_id("backend_proxy");
    let request = RunRequest {
        snapshotter: Some(PROXY.into()),
        stdio: Stdio::Capture,
        rm: true,
        ..RunRequest::new(&id, IMAGE_NAME, spec_running(&["sh", "-c", "echo hello > /tmp/f && cat /tmp/f"]))
    };
    let outcome = module.block_on(module.client.run(request))?;
    ensure!(outcome.status.code == 0 && outcome.output.stdout == b"hello\n", "{outcome:?}");
    // containerd forgot the container's snapshot (--rm); its own GC removes
    // it from berth's snapshotter later. The image's layers stay.
    let output = module.daemon().ctr(berth_tests::containerd_backend::NAMESPACE).args(["snapshots", "--snapshotter", PROXY, "ls"]).output()?;
    let listed = String::from_utf8(output.stdout)?;
    ensure!(output.status.success() && !listed.contains(&id), "{listed}");
    let top = chain_ids(&module.image.diff_ids).pop().unwrap();
    ensure!(listed.lines().any(|l| l.starts_with(top.as_str())), "{listed}");
    Ok(())
}

/// The matrix's cases on a containerd whose snapshotter is berth's service
/// over berth's overlayfs snapshotter in this process (the registered
/// `containerd+berth-snapshotter` backend runs the same through
/// `berth snapshotter serve`).
fn shared_cases_on_the_proxy() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let image = berth_tests::image::build_busybox_image(dir.path(), IMAGE_NAME)?;
    let overlay = berth_snapshot::open("overlayfs", &dir.path().join("overlayfs"))?;
    let backend = ContainerdTestBackend {
        name: "containerd+berth-overlayfs-in-process".into(),
        snapshotter: SnapshotterSetup::Proxy { name: PROXY.into(), serve: serve_in_process(overlay.clone()) },
        ..ContainerdTestBackend::plain()
    };
    let running = backend.start(&image)?;
    let mut failures = Vec::new();
    for case in berth_tests::cases::cases() {
        if let Err(err) = (case.run)(running.as_ref()) {
            failures.push(format!("{}: {err:#}", case.name));
        }
    }
    ensure!(failures.is_empty(), "{}\n{}", failures.join("\n"), running.logs());
    // The containers ran on berth's snapshotter.
    ensure!(!backend_names(overlay.as_ref(), "kind==committed")?.is_empty());
    Ok(())
}
