//! Errors a caller branches on: where containerd is, what it lacks.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no containerd socket at {}", .0.display())]
    NoSocket(PathBuf),
    #[error("containerd socket {} does not answer: {reason}", path.display())]
    DeadSocket { path: PathBuf, reason: String },
    #[error("namespace {namespace:?} does not exist in containerd at {}", address.display())]
    NamespaceNotFound { namespace: String, address: PathBuf },
    #[error("image {image} not found in namespace {namespace}")]
    ImageNotFound { image: String, namespace: String },
    #[error("container {id} not found in namespace {namespace}")]
    ContainerNotFound { id: String, namespace: String },
    #[error("container {id} already exists in namespace {namespace}")]
    ContainerExists { id: String, namespace: String },
    /// containerd refused a call; `context` says which and on what.
    #[error("{context}: containerd answered {code:?}: {message}")]
    Grpc { context: String, code: tonic::Code, message: String },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl Error {
    pub(crate) fn grpc(context: impl Into<String>, status: tonic::Status) -> Self {
        Error::Grpc { context: context.into(), code: status.code(), message: status.message().to_string() }
    }

    /// The gRPC code when containerd refused the call.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::Grpc { code, .. } => Some(*code),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches what was being done to a refused call.
pub(crate) trait GrpcContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> GrpcContext<T> for std::result::Result<tonic::Response<T>, tonic::Status> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map(tonic::Response::into_inner).map_err(|status| Error::grpc(what(), status))
    }
}
