//! containerd's snapshots v1 gRPC service, served from any berth
//! [`Snapshotter`] over a unix socket: what containerd's
//! `[proxy_plugins.NAME] type = "snapshot"` talks to.
//!
//! Errors map to gRPC codes as containerd's errdefs do, so containerd turns
//! them back into the same error kinds. The `snapshotter` field of each
//! request names the proxy plugin on containerd's side and is ignored: one
//! socket serves one snapshotter.

use std::collections::HashMap;
use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use berth_snapshot::{Error as SnapshotError, Info, Kind, Labels, Mount, Snapshotter};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::proto::snapshots::snapshots_server::{Snapshots, SnapshotsServer};
use crate::proto::snapshots::{self as pb};

/// How many infos one List message carries (containerd sends batches too).
const LIST_BATCH: usize = 100;

/// The service; wrap it in [`SnapshotsServer`] to add it to a tonic server.
#[derive(Clone)]
pub struct SnapshotsService {
    snapshotter: Arc<dyn Snapshotter>,
}

impl SnapshotsService {
    pub fn new(snapshotter: Arc<dyn Snapshotter>) -> Self {
        SnapshotsService { snapshotter }
    }

    pub fn into_server(self) -> SnapshotsServer<Self> {
        SnapshotsServer::new(self)
    }

    /// Runs a (blocking, filesystem-bound) snapshotter call off the async workers.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Snapshotter) -> berth_snapshot::Result<T> + Send + 'static,
    ) -> Result<T, Status> {
        let snapshotter = self.snapshotter.clone();
        tokio::task::spawn_blocking(move || f(snapshotter.as_ref()))
            .await
            .map_err(|e| Status::internal(format!("snapshotter call panicked: {e}")))?
            .map_err(to_status)
    }
}

/// containerd's errdefs -> gRPC mapping.
pub fn to_status(err: SnapshotError) -> Status {
    match err {
        SnapshotError::NotFound(_) => Status::not_found(err.to_string()),
        SnapshotError::AlreadyExists(_) => Status::already_exists(err.to_string()),
        SnapshotError::FailedPrecondition(_) => Status::failed_precondition(err.to_string()),
        SnapshotError::InvalidArgument(_) => Status::invalid_argument(err.to_string()),
        SnapshotError::Other(err) => Status::unknown(format!("{err:#}")),
    }
}

fn parent(parent: String) -> Option<String> {
    (!parent.is_empty()).then_some(parent)
}

fn labels(labels: HashMap<String, String>) -> Labels {
    labels.into_iter().collect()
}

fn mounts_to_proto(mounts: Vec<Mount>) -> Vec<containerd_client::types::Mount> {
    mounts
        .into_iter()
        .map(|m| containerd_client::types::Mount { r#type: m.kind, source: m.source, target: String::new(), options: m.options })
        .collect()
}

fn kind_to_proto(kind: Kind) -> pb::Kind {
    match kind {
        Kind::View => pb::Kind::View,
        Kind::Active => pb::Kind::Active,
        Kind::Committed => pb::Kind::Committed,
    }
}

fn info_to_proto(info: Info) -> pb::Info {
    pb::Info {
        name: info.name,
        parent: info.parent.unwrap_or_default(),
        kind: kind_to_proto(info.kind) as i32,
        created_at: Some(info.created.into()),
        updated_at: Some(info.updated.into()),
        labels: info.labels.into_iter().collect(),
    }
}

fn info_from_proto(info: pb::Info) -> Result<Info, Status> {
    let kind = match pb::Kind::try_from(info.kind) {
        Ok(pb::Kind::View) => Kind::View,
        Ok(pb::Kind::Committed) => Kind::Committed,
        // Update reads only name and labels; the kind is not an updatable field.
        Ok(pb::Kind::Active | pb::Kind::Unknown) => Kind::Active,
        Err(_) => return Err(Status::invalid_argument(format!("snapshot {}: unknown kind {}", info.name, info.kind))),
    };
    let time = |t: Option<prost_types::Timestamp>| t.and_then(|t| SystemTime::try_from(t).ok()).unwrap_or(SystemTime::UNIX_EPOCH);
    Ok(Info {
        kind,
        name: info.name,
        parent: parent(info.parent),
        labels: labels(info.labels),
        created: time(info.created_at),
        updated: time(info.updated_at),
    })
}

type ListStream = Pin<Box<dyn Stream<Item = Result<pb::ListSnapshotsResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Snapshots for SnapshotsService {
    async fn prepare(&self, request: Request<pb::PrepareSnapshotRequest>) -> Result<Response<pb::PrepareSnapshotResponse>, Status> {
        let r = request.into_inner();
        let mounts = self.call(move |s| s.prepare(&r.key, parent(r.parent).as_deref(), labels(r.labels))).await?;
        Ok(Response::new(pb::PrepareSnapshotResponse { mounts: mounts_to_proto(mounts) }))
    }

    async fn view(&self, request: Request<pb::ViewSnapshotRequest>) -> Result<Response<pb::ViewSnapshotResponse>, Status> {
        let r = request.into_inner();
        let mounts = self.call(move |s| s.view(&r.key, parent(r.parent).as_deref(), labels(r.labels))).await?;
        Ok(Response::new(pb::ViewSnapshotResponse { mounts: mounts_to_proto(mounts) }))
    }

    async fn mounts(&self, request: Request<pb::MountsRequest>) -> Result<Response<pb::MountsResponse>, Status> {
        let r = request.into_inner();
        let mounts = self.call(move |s| s.mounts(&r.key)).await?;
        Ok(Response::new(pb::MountsResponse { mounts: mounts_to_proto(mounts) }))
    }

    async fn commit(&self, request: Request<pb::CommitSnapshotRequest>) -> Result<Response<()>, Status> {
        let r = request.into_inner();
        self.call(move |s| s.commit(&r.name, &r.key, labels(r.labels))).await?;
        Ok(Response::new(()))
    }

    async fn remove(&self, request: Request<pb::RemoveSnapshotRequest>) -> Result<Response<()>, Status> {
        let r = request.into_inner();
        self.call(move |s| s.remove(&r.key)).await?;
        Ok(Response::new(()))
    }

    async fn stat(&self, request: Request<pb::StatSnapshotRequest>) -> Result<Response<pb::StatSnapshotResponse>, Status> {
        let r = request.into_inner();
        let info = self.call(move |s| s.stat(&r.key)).await?;
        Ok(Response::new(pb::StatSnapshotResponse { info: Some(info_to_proto(info)) }))
    }

    async fn update(&self, request: Request<pb::UpdateSnapshotRequest>) -> Result<Response<pb::UpdateSnapshotResponse>, Status> {
        let r = request.into_inner();
        let info = info_from_proto(r.info.ok_or_else(|| Status::invalid_argument("update without a snapshot info"))?)?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let info = self.call(move |s| s.update(info, &paths)).await?;
        Ok(Response::new(pb::UpdateSnapshotResponse { info: Some(info_to_proto(info)) }))
    }

    type ListStream = ListStream;

    async fn list(&self, request: Request<pb::ListSnapshotsRequest>) -> Result<Response<ListStream>, Status> {
        let r = request.into_inner();
        let infos = self
            .call(move |s| {
                let mut infos = Vec::new();
                s.walk(&r.filters, &mut |info| {
                    infos.push(info_to_proto(info.clone()));
                    Ok(())
                })?;
                Ok(infos)
            })
            .await?;
        let batches: Vec<Result<pb::ListSnapshotsResponse, Status>> =
            infos.chunks(LIST_BATCH).map(|chunk| Ok(pb::ListSnapshotsResponse { info: chunk.to_vec() })).collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(batches))))
    }

    async fn usage(&self, request: Request<pb::UsageRequest>) -> Result<Response<pb::UsageResponse>, Status> {
        let r = request.into_inner();
        let usage = self.call(move |s| s.usage(&r.key)).await?;
        Ok(Response::new(pb::UsageResponse { size: usage.size, inodes: usage.inodes }))
    }

    /// berth's Snapshotter has no cleanup step; containerd's own service
    /// answers the same for snapshotters without one, and its GC accepts it.
    async fn cleanup(&self, _request: Request<pb::CleanupRequest>) -> Result<Response<()>, Status> {
        Err(Status::unimplemented("snapshotter does not implement Cleanup method"))
    }
}

/// Serves `snapshotter` on the unix socket `path` until `shutdown`
/// completes, then removes the socket and closes the snapshotter.
pub async fn serve(
    path: &Path,
    snapshotter: Arc<dyn Snapshotter>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    serve_on(bind(path)?, path, snapshotter, shutdown).await
}

/// [`serve`] on a listener already bound to `path` (see [`bind`]), so a
/// caller knows the socket exists before it starts a client.
pub async fn serve_on(
    listener: tokio::net::UnixListener,
    path: &Path,
    snapshotter: Arc<dyn Snapshotter>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let service = SnapshotsService::new(snapshotter.clone()).into_server();
    let result = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(tokio_stream::wrappers::UnixListenerStream::new(listener), shutdown)
        .await
        .with_context(|| format!("serving snapshots on {}", path.display()));
    std::fs::remove_file(path).ok();
    snapshotter.close().context("closing the snapshotter")?;
    result
}

/// Binds `path`, replacing a stale socket nobody listens on; refuses to
/// replace anything else.
pub fn bind(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    match std::fs::symlink_metadata(path) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("socket path {}", path.display())),
        Ok(meta) if !meta.file_type().is_socket() => {
            anyhow::bail!("{} exists and is not a socket; not replacing it", path.display())
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => anyhow::bail!("something already serves on {}", path.display()),
            Err(_) => std::fs::remove_file(path).with_context(|| format!("removing stale socket {}", path.display()))?,
        },
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    // Whoever can reach the socket can mount snapshots: root only.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok(listener)
}
