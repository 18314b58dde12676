//! containerd integration, in three ways:
//!
//! - [`ContainerdBackend`]: containerd as a client backend (import an image,
//!   unpack it into a snapshotter, create a container and its task, wait,
//!   delete), over containerd's gRPC API on its unix socket.
//! - [`snapshots_service`]: containerd's snapshots v1 gRPC service served from
//!   any [`berth_snapshot::Snapshotter`], for `[proxy_plugins]`.
//! - [`RuntimeSelection`]: per-container runtime options for
//!   `io.containerd.runc.v2` (`BinaryName`), how containerd runs berth's own
//!   runc-compatible CLI.

mod backend;
mod connect;
mod content;
mod error;
mod images;
mod lease;
pub mod layout;
pub mod proto;
pub mod proxy_snapshotter;
mod runtime_options;
pub mod snapshots_service;
pub mod spec;
mod stdio;
pub mod unpack;

pub use backend::{ContainerSummary, ContainerdBackend, CreatedTask, ExitStatus, RunOutcome, RunRequest, TaskState};
pub use connect::unix_channel;
pub use error::Error;
pub use proxy_snapshotter::{ProxyOptions, ProxySnapshotter};
pub use runtime_options::{RUNC_V2, RuntimeSelection};
pub use stdio::{Output, Stdio};

/// The snapshotter containerd uses when none is named.
pub const DEFAULT_SNAPSHOTTER: &str = "overlayfs";
