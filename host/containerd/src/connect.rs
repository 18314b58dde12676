//! A gRPC channel to containerd's unix socket, and requests that carry the
//! namespace (and, inside a lease, the lease) containerd reads from metadata.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::version_client::VersionClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};

/// containerd reads the namespace of every call from this header.
const NAMESPACE_HEADER: &str = "containerd-namespace";
/// Objects created under this header belong to the lease (kept from GC).
const LEASE_HEADER: &str = "containerd-lease";

/// A connection to one containerd, in one namespace.
#[derive(Clone, Debug)]
pub(crate) struct Conn {
    pub channel: Channel,
    pub address: PathBuf,
    pub namespace: String,
    lease: Option<String>,
}

impl Conn {
    /// Connects and checks containerd answers (its version call) within `timeout`.
    pub async fn open(address: &Path, namespace: &str, timeout: Duration) -> Result<Conn> {
        check_namespace_name(namespace)?;
        let dead = |reason: String| Error::DeadSocket { path: address.to_path_buf(), reason };
        match std::fs::metadata(address) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NoSocket(address.to_path_buf()));
            }
            Err(err) => return Err(dead(err.to_string())),
            Ok(meta) if !meta.file_type().is_socket() => return Err(dead("not a unix socket".into())),
            Ok(_) => {}
        }
        let channel = match tokio::time::timeout(timeout, unix_channel(address, timeout)).await {
            Err(_) => return Err(dead(format!("no connection within {timeout:?}"))),
            Ok(Err(err)) => return Err(dead(error_chain(&err))),
            Ok(Ok(channel)) => channel,
        };
        let mut version = VersionClient::new(channel.clone());
        match tokio::time::timeout(timeout, version.version(())).await {
            Err(_) => return Err(dead(format!("no answer to the version call within {timeout:?}"))),
            Ok(Err(status)) => return Err(dead(format!("the version call failed: {}", status.message()))),
            Ok(Ok(_)) => {}
        }
        Ok(Conn { channel, address: address.to_path_buf(), namespace: namespace.to_string(), lease: None })
    }

    /// The same connection, with every request inside `lease`.
    pub fn leased(&self, lease: &str) -> Conn {
        Conn { lease: Some(lease.to_string()), ..self.clone() }
    }

    /// The lease requests are made in, if any.
    pub fn lease(&self) -> Option<&str> {
        self.lease.as_deref()
    }

    /// A request carrying the namespace (and lease) headers.
    pub fn req<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        // Both values were checked to be printable ASCII when they were set.
        metadata.insert(NAMESPACE_HEADER, self.namespace.parse().expect("namespace checked at connect"));
        if let Some(lease) = &self.lease {
            metadata.insert(LEASE_HEADER, lease.parse().expect("lease ids are generated ASCII"));
        }
        request
    }
}

/// A gRPC channel over the unix socket `path` (containerd's, or any
/// gRPC service such as berth's snapshots service).
pub async fn unix_channel(path: &Path, connect_timeout: Duration) -> Result<Channel, tonic::transport::Error> {
    let path = path.to_path_buf();
    // The URI is required by tonic and unused: the connector dials the socket.
    Endpoint::from_static("http://localhost")
        .connect_timeout(connect_timeout)
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        }))
        .await
}

/// containerd's rule for namespace names: letters, digits, `.`, `_`, `-`,
/// starting with a letter or digit, at most 76 characters.
pub(crate) fn check_namespace_name(namespace: &str) -> Result<()> {
    let valid = !namespace.is_empty()
        && namespace.len() <= 76
        && namespace.starts_with(|c: char| c.is_ascii_alphanumeric())
        && namespace.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(Error::Other(anyhow::anyhow!(
            "invalid containerd namespace {namespace:?}: use letters, digits, '.', '_', '-' (at most 76, starting with a letter or digit)"
        )))
    }
}

pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_follow_containerd() {
        assert!(check_namespace_name("default").is_ok());
        assert!(check_namespace_name("k8s.io").is_ok());
        assert!(check_namespace_name("").is_err());
        assert!(check_namespace_name("-x").is_err());
        assert!(check_namespace_name("a/b").is_err());
        assert!(check_namespace_name(&"a".repeat(77)).is_err());
    }
}
