//! A [`Snapshotter`] that is containerd's snapshots v1 gRPC service on a
//! unix socket: a containerd proxy snapshotter (stargz, `berth snapshotter
//! serve`, ...), what buildkitd's worker uses when `proxy-snapshotter-socket`
//! is set.
//!
//! The trait is synchronous; each call runs on this snapshotter's own
//! current-thread tokio runtime. gRPC codes map back to berth's error kinds
//! as containerd's errdefs do (the inverse of
//! [`crate::snapshots_service::to_status`]); anything else names the socket
//! and the call.
//!
//! Every request carries the `containerd-namespace` header
//! ([`ProxyOptions::namespace`]): containerd's own snapshots service (on
//! containerd's main socket) refuses calls without one, and keeps each
//! namespace's snapshots apart; a plain proxy (stargz, `berth snapshotter
//! serve`) ignores it. Connecting and each call (each message of a list)
//! have a deadline, so a proxy that stops answering is an error naming the
//! socket and the call, not a hang.
//!
//! Snapshots made through it (prepare, view, commit) carry the label
//! `containerd.io/gc.root`: containerd's garbage collector would otherwise
//! collect them, since nothing in containerd references them; berth removes
//! them itself (`berth rm`, `berth gc`).

use std::collections::HashMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use berth_snapshot::{Error, Info, Kind, Labels, Mount, Result, Snapshotter, Usage};
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{self as pb};
use tonic::transport::Channel;

use crate::connect::error_chain;

/// The namespace sent when none is configured (containerd's and ctr's default).
pub const DEFAULT_NAMESPACE: &str = "default";
/// How long connecting to the socket may take, unless configured.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one call may take, unless configured.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// containerd's label that keeps an object from its garbage collector.
pub const GC_ROOT_LABEL: &str = "containerd.io/gc.root";
/// containerd reads the namespace of every call from this header.
const NAMESPACE_HEADER: &str = "containerd-namespace";
/// containerd's default gRPC message limits (16 MiB).
const MAX_MESSAGE: usize = 16 << 20;

/// Why a proxy snapshotter could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing at the path (buildkitd: "snapshotter doesn't exist on ...").
    #[error("no proxy snapshotter socket at {} (give the socket's path, without unix://)", .0.display())]
    NoSocket(PathBuf),
    #[error("proxy snapshotter socket {}: {reason}", path.display())]
    Unreachable { path: PathBuf, reason: String },
    #[error("proxy snapshotter socket {}: {reason}", path.display())]
    InvalidNamespace { path: PathBuf, reason: String },
}

/// How a [`ProxySnapshotter`] talks to its socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyOptions {
    /// The containerd namespace every call is made in (the
    /// `containerd-namespace` header).
    pub namespace: String,
    /// Connecting to the socket may take this long.
    pub connect_timeout: Duration,
    /// Each call (each message of a list) may take this long.
    pub call_timeout: Duration,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            namespace: DEFAULT_NAMESPACE.to_string(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            call_timeout: DEFAULT_CALL_TIMEOUT,
        }
    }
}

/// containerd's rule for namespace names (letters, digits, `.`, `_`, `-`,
/// starting with a letter or digit, at most 76 characters); the reason
/// when `namespace` breaks it.
pub fn check_namespace(namespace: &str) -> std::result::Result<(), String> {
    crate::connect::check_namespace_name(namespace).map_err(|err| err.to_string())
}

/// containerd's snapshots service on a unix socket, as a [`Snapshotter`].
///
/// For synchronous callers: its methods block on its own runtime, so they
/// (and its drop) must not run on a tokio worker thread.
pub struct ProxySnapshotter {
    name: String,
    socket: PathBuf,
    options: ProxyOptions,
    /// The namespace as a header value (checked at connect).
    namespace: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    runtime: tokio::runtime::Runtime,
    client: SnapshotsClient<Channel>,
}

impl std::fmt::Debug for ProxySnapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxySnapshotter")
            .field("name", &self.name)
            .field("socket", &self.socket)
            .field("options", &self.options)
            .finish()
    }
}

impl ProxySnapshotter {
    /// Connects to the snapshots service on `socket` with the default
    /// [`ProxyOptions`]; `name` is the snapshotter's name, sent in every
    /// request (containerd's proxy plugins send theirs) and returned by
    /// [`Snapshotter::name`].
    pub fn connect(socket: &Path, name: &str) -> std::result::Result<Self, ConnectError> {
        Self::connect_with(socket, name, ProxyOptions::default())
    }

    /// [`Self::connect`] with the namespace and deadlines of `options`.
    pub fn connect_with(socket: &Path, name: &str, options: ProxyOptions) -> std::result::Result<Self, ConnectError> {
        let unreachable = |reason: String| ConnectError::Unreachable { path: socket.to_path_buf(), reason };
        check_namespace(&options.namespace)
            .map_err(|reason| ConnectError::InvalidNamespace { path: socket.to_path_buf(), reason })?;
        let namespace = options.namespace.parse().map_err(|_| ConnectError::InvalidNamespace {
            path: socket.to_path_buf(),
            reason: format!("namespace {:?} is not a header value", options.namespace),
        })?;
        match std::fs::metadata(socket) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Err(ConnectError::NoSocket(socket.to_path_buf())),
            Err(err) => return Err(unreachable(err.to_string())),
            Ok(meta) if !meta.file_type().is_socket() => return Err(unreachable("not a unix socket".into())),
            Ok(_) => {}
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| unreachable(format!("starting its runtime: {err}")))?;
        let within = options.connect_timeout;
        let channel = runtime
            .block_on(async { tokio::time::timeout(within, crate::connect::unix_channel(socket, within)).await })
            .map_err(|_| unreachable(format!("no connection within {within:?}")))?
            .map_err(|err| unreachable(error_chain(&err)))?;
        let client = SnapshotsClient::new(channel).max_decoding_message_size(MAX_MESSAGE).max_encoding_message_size(MAX_MESSAGE);
        Ok(ProxySnapshotter { name: name.to_string(), socket: socket.to_path_buf(), options, namespace, runtime, client })
    }

    /// The namespace and deadlines this snapshotter uses.
    pub fn options(&self) -> &ProxyOptions {
        &self.options
    }

    /// `message` as a request in this snapshotter's namespace.
    fn req<M>(&self, message: M) -> tonic::Request<M> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert(NAMESPACE_HEADER, self.namespace.clone());
        request
    }

    /// Runs `future` on this snapshotter's runtime within the call deadline;
    /// past it, an error naming the socket, the call and the deadline.
    fn within<T>(&self, call: &str, key: &str, future: impl std::future::Future<Output = T>) -> Result<T> {
        let limit = self.options.call_timeout;
        // The timer is made inside the runtime (it needs its clock).
        self.runtime.block_on(async { tokio::time::timeout(limit, future).await }).map_err(|_| {
            Error::Other(anyhow::anyhow!(
                "proxy snapshotter at {}: {call} {key}: no answer within {limit:?} (namespace {})",
                self.socket.display(),
                self.options.namespace
            ))
        })
    }

    /// The socket this snapshotter talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// One unary call on this snapshotter's runtime; a refusal is mapped
    /// with [`from_status`] (`call` and `key` say what was asked).
    fn call<T, F, Fut>(&self, call: &str, key: &str, f: F) -> Result<T>
    where
        F: FnOnce(SnapshotsClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        self.within(call, key, f(self.client.clone()))?
            .map(tonic::Response::into_inner)
            .map_err(|status| from_status(&status, &self.socket, call, key))
    }
}

/// containerd's errdefs from a gRPC status: the kinds callers branch on
/// keep their kind; anything else is `Other`, naming the socket and the call.
pub fn from_status(status: &tonic::Status, socket: &Path, call: &str, key: &str) -> Error {
    let detail = || format!("{} (proxy snapshotter at {}, {call} {key})", status.message(), socket.display());
    match status.code() {
        tonic::Code::NotFound => Error::NotFound(key.to_string()),
        tonic::Code::AlreadyExists => Error::AlreadyExists(key.to_string()),
        tonic::Code::FailedPrecondition => Error::FailedPrecondition(detail()),
        tonic::Code::InvalidArgument => Error::InvalidArgument(detail()),
        code => Error::Other(anyhow::anyhow!(
            "proxy snapshotter at {}: {call} {key}: {code:?}: {}",
            socket.display(),
            status.message()
        )),
    }
}

fn mount_from_proto(m: containerd_client::types::Mount) -> Mount {
    Mount { kind: m.r#type, source: m.source, options: m.options }
}

fn mounts_from_proto(mounts: Vec<containerd_client::types::Mount>) -> Vec<Mount> {
    mounts.into_iter().map(mount_from_proto).collect()
}

/// `labels` with [`GC_ROOT_LABEL`] (the time, as containerd's clients
/// write it) unless the caller set it.
fn gc_root(mut labels: Labels) -> Labels {
    labels.entry(GC_ROOT_LABEL.to_string()).or_insert_with(|| crate::lease::rfc3339(SystemTime::now()));
    labels
}

fn labels_to_proto(labels: Labels) -> HashMap<String, String> {
    labels.into_iter().collect()
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
        labels: labels_to_proto(info.labels),
    }
}

/// A snapshot's info as the service sent it; an unknown kind is an error
/// naming the socket (the trait has no "unknown" kind).
fn info_from_proto(info: pb::Info, socket: &Path) -> Result<Info> {
    let kind = match pb::Kind::try_from(info.kind) {
        Ok(pb::Kind::View) => Kind::View,
        Ok(pb::Kind::Active) => Kind::Active,
        Ok(pb::Kind::Committed) => Kind::Committed,
        Ok(pb::Kind::Unknown) | Err(_) => {
            return Err(Error::Other(anyhow::anyhow!(
                "proxy snapshotter at {}: snapshot {} has an unknown kind ({})",
                socket.display(),
                info.name,
                info.kind
            )));
        }
    };
    let time = |t: Option<prost_types::Timestamp>| t.and_then(|t| SystemTime::try_from(t).ok()).unwrap_or(SystemTime::UNIX_EPOCH);
    Ok(Info {
        kind,
        name: info.name,
        parent: (!info.parent.is_empty()).then_some(info.parent),
        labels: info.labels.into_iter().collect(),
        created: time(info.created_at),
        updated: time(info.updated_at),
    })
}

impl Snapshotter for ProxySnapshotter {
    fn name(&self) -> &str {
        &self.name
    }

    fn stat(&self, key: &str) -> Result<Info> {
        let request = pb::StatSnapshotRequest { snapshotter: self.name.clone(), key: key.to_string() };
        let request = self.req(request);
        let response = self.call("stat", key, |mut c| async move { c.stat(request).await })?;
        let info = response.info.ok_or_else(|| {
            Error::Other(anyhow::anyhow!("proxy snapshotter at {}: stat {key} answered without an info", self.socket.display()))
        })?;
        info_from_proto(info, &self.socket)
    }

    fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let key = info.name.clone();
        let request = pb::UpdateSnapshotRequest {
            snapshotter: self.name.clone(),
            info: Some(info_to_proto(info)),
            // As containerd's proxy: a mask only when fields are named.
            update_mask: (!fieldpaths.is_empty()).then(|| prost_types::FieldMask { paths: fieldpaths.to_vec() }),
        };
        let request = self.req(request);
        let response = self.call("update", &key, |mut c| async move { c.update(request).await })?;
        let info = response.info.ok_or_else(|| {
            Error::Other(anyhow::anyhow!("proxy snapshotter at {}: update {key} answered without an info", self.socket.display()))
        })?;
        info_from_proto(info, &self.socket)
    }

    fn usage(&self, key: &str) -> Result<Usage> {
        let request = pb::UsageRequest { snapshotter: self.name.clone(), key: key.to_string() };
        let request = self.req(request);
        let response = self.call("usage", key, |mut c| async move { c.usage(request).await })?;
        Ok(Usage { size: response.size, inodes: response.inodes })
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let request = pb::MountsRequest { snapshotter: self.name.clone(), key: key.to_string() };
        let request = self.req(request);
        let response = self.call("mounts", key, |mut c| async move { c.mounts(request).await })?;
        Ok(mounts_from_proto(response.mounts))
    }

    fn prepare(&self, key: &str, parent: Option<&str>, labels: Labels) -> Result<Vec<Mount>> {
        let request = pb::PrepareSnapshotRequest {
            snapshotter: self.name.clone(),
            key: key.to_string(),
            parent: parent.unwrap_or_default().to_string(),
            labels: labels_to_proto(gc_root(labels)),
        };
        let request = self.req(request);
        let response = self.call("prepare", key, |mut c| async move { c.prepare(request).await })?;
        Ok(mounts_from_proto(response.mounts))
    }

    fn view(&self, key: &str, parent: Option<&str>, labels: Labels) -> Result<Vec<Mount>> {
        let request = pb::ViewSnapshotRequest {
            snapshotter: self.name.clone(),
            key: key.to_string(),
            parent: parent.unwrap_or_default().to_string(),
            labels: labels_to_proto(gc_root(labels)),
        };
        let request = self.req(request);
        let response = self.call("view", key, |mut c| async move { c.view(request).await })?;
        Ok(mounts_from_proto(response.mounts))
    }

    fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()> {
        let request = pb::CommitSnapshotRequest {
            snapshotter: self.name.clone(),
            name: name.to_string(),
            key: key.to_string(),
            labels: labels_to_proto(gc_root(labels)),
        };
        // AlreadyExists is about `name`, NotFound about `key`: the status
        // message says which; the error carries the one the kind is about.
        let request = self.req(request);
        match self.within("commit", key, self.client.clone().commit(request))? {
            Ok(_) => Ok(()),
            Err(status) if status.code() == tonic::Code::AlreadyExists => {
                Err(from_status(&status, &self.socket, "commit", name))
            }
            Err(status) => Err(from_status(&status, &self.socket, "commit", key)),
        }
    }

    fn remove(&self, key: &str) -> Result<()> {
        let request = pb::RemoveSnapshotRequest { snapshotter: self.name.clone(), key: key.to_string() };
        let request = self.req(request);
        self.call("remove", key, |mut c| async move { c.remove(request).await })
    }

    fn walk(&self, filters: &[String], f: &mut dyn FnMut(&Info) -> Result<()>) -> Result<()> {
        let request = pb::ListSnapshotsRequest { snapshotter: self.name.clone(), filters: filters.to_vec() };
        let what = if filters.is_empty() { String::new() } else { format!("{filters:?}") };
        let request = self.req(request);
        let mut stream = self.call("list", &what, |mut c| async move { c.list(request).await })?;
        loop {
            let message = self
                .within("list", &what, stream.message())?
                .map_err(|status| from_status(&status, &self.socket, "list", &what))?;
            let Some(message) = message else { return Ok(()) };
            for info in message.info {
                f(&info_from_proto(info, &self.socket)?)?;
            }
        }
    }

    /// Nothing to release on the service's side: the connection closes
    /// when the snapshotter is dropped.
    fn close(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(code: tonic::Code, message: &str) -> Error {
        from_status(&tonic::Status::new(code, message), Path::new("/run/x/snap.sock"), "prepare", "k1")
    }

    #[test]
    fn status_codes_map_to_errdefs_kinds() {
        assert!(matches!(map(tonic::Code::NotFound, "snapshot k1: not found"), Error::NotFound(k) if k == "k1"));
        assert!(matches!(map(tonic::Code::AlreadyExists, "exists"), Error::AlreadyExists(k) if k == "k1"));
        match map(tonic::Code::FailedPrecondition, "has children") {
            Error::FailedPrecondition(text) => {
                assert!(text.contains("has children") && text.contains("/run/x/snap.sock") && text.contains("prepare k1"), "{text}")
            }
            other => panic!("{other:?}"),
        }
        match map(tonic::Code::InvalidArgument, "bad parent") {
            Error::InvalidArgument(text) => assert!(text.contains("bad parent") && text.contains("/run/x/snap.sock"), "{text}"),
            other => panic!("{other:?}"),
        }
        for code in [tonic::Code::Unavailable, tonic::Code::Unknown, tonic::Code::Internal, tonic::Code::Unimplemented] {
            match map(code, "broken pipe") {
                Error::Other(err) => {
                    let text = format!("{err:#}");
                    assert!(text.contains("/run/x/snap.sock") && text.contains("prepare k1") && text.contains("broken pipe"), "{text}");
                }
                other => panic!("{code:?}: {other:?}"),
            }
        }
    }

    /// The inverse of the service's mapping: a kind survives the round trip.
    #[test]
    fn service_mapping_round_trips() {
        let socket = Path::new("/s");
        let cases = [
            Error::NotFound("k".into()),
            Error::AlreadyExists("k".into()),
            Error::FailedPrecondition("x".into()),
            Error::InvalidArgument("x".into()),
        ];
        for err in cases {
            let before = std::mem::discriminant(&err);
            let status = crate::snapshots_service::to_status(err);
            assert_eq!(std::mem::discriminant(&from_status(&status, socket, "stat", "k")), before);
        }
    }

    #[test]
    fn missing_socket_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nothing.sock");
        let err = ProxySnapshotter::connect(&path, "stargz").unwrap_err();
        assert!(matches!(err, ConnectError::NoSocket(_)));
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let err = ProxySnapshotter::connect(&file, "stargz").unwrap_err();
        assert!(err.to_string().contains("not a unix socket"), "{err}");
    }

    /// A real unix socket that accepts connections and never answers: each
    /// call fails at its deadline, naming the socket, the call and the key.
    #[test]
    fn a_proxy_that_never_answers_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("silent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        // Holds every connection open, reading nothing, until the process ends.
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                held.push(stream);
            }
        });
        let options = ProxyOptions {
            namespace: "berth-test".into(),
            connect_timeout: Duration::from_millis(500),
            call_timeout: Duration::from_millis(300),
        };
        // A watchdog, not a measurement: without deadlines this would hang.
        let (done, finished) = std::sync::mpsc::channel();
        let socket = path.clone();
        std::thread::spawn(move || {
            let outcome = match ProxySnapshotter::connect_with(&socket, "overlayfs", options) {
                // The connection may be refused at its own deadline ...
                Err(err) => vec![err.to_string()],
                // ... or, once the socket accepted it, each call at its.
                Ok(proxy) => vec![
                    format!("{:#}", proxy.stat("k1").unwrap_err()),
                    format!("{:#}", proxy.prepare("k2", Some("p"), Labels::new()).unwrap_err()),
                    format!("{:#}", proxy.commit("n", "k3", Labels::new()).unwrap_err()),
                    format!("{:#}", proxy.walk(&[], &mut |_| Ok(())).unwrap_err()),
                ],
            };
            done.send(outcome).ok();
        });
        let errors = finished.recv_timeout(Duration::from_secs(60)).expect("the proxy calls hung");
        let socket = path.display().to_string();
        for (text, call) in errors.iter().zip(["stat k1", "prepare k2", "commit k3", "list"]) {
            assert!(text.contains(&socket), "{text}");
            if errors.len() > 1 {
                assert!(text.contains(call) && text.contains("no answer within"), "{call}: {text}");
            }
        }
    }

    #[test]
    fn namespaces_are_checked_at_connect() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("any.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let options = ProxyOptions { namespace: "a/b".into(), ..Default::default() };
        let err = ProxySnapshotter::connect_with(&path, "native", options).unwrap_err();
        assert!(matches!(err, ConnectError::InvalidNamespace { .. }), "{err}");
        assert!(err.to_string().contains("a/b"), "{err}");
        assert!(check_namespace("k8s.io").is_ok() && check_namespace("").is_err());
    }

    #[test]
    fn made_snapshots_are_gc_roots() {
        let labels = gc_root(Labels::from([("a".to_string(), "1".to_string())]));
        assert!(labels[GC_ROOT_LABEL].ends_with('Z') && labels["a"] == "1", "{labels:?}");
        let given = Labels::from([(GC_ROOT_LABEL.to_string(), "x".to_string())]);
        assert_eq!(gc_root(given)[GC_ROOT_LABEL], "x");
    }

    #[test]
    fn unknown_kind_is_an_error() {
        let info = pb::Info { name: "a".into(), kind: 0, ..Default::default() };
        assert!(matches!(info_from_proto(info, Path::new("/s")), Err(Error::Other(_))));
        let info = pb::Info { name: "a".into(), parent: "p".into(), kind: pb::Kind::Committed as i32, ..Default::default() };
        let info = info_from_proto(info, Path::new("/s")).unwrap();
        assert_eq!((info.kind, info.parent.as_deref()), (Kind::Committed, Some("p")));
    }
}
