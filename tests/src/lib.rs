//! Test harness: backend registry, daemons in temp dirs, closers, the
//! busybox test image and the cases every backend runs.
//!
//! - [`closers::Closers`]: cleanup that always runs, LIFO, errors collected.
//! - [`daemon::ContainerdDaemon`]: a containerd of its own in a temp dir.
//! - [`backend`]: the `Backend` registry and `BERTH_TEST_BACKENDS`.
//! - [`image::build_busybox_image`]: an OCI layout (and tar) without network.
//! - [`cases`]: the shared cases; [`spec`]: their base spec.

pub mod backend;
pub mod cases;
pub mod closers;
pub mod containerd_backend;
pub mod copy_snapshotter;
pub mod daemon;
pub mod image;
pub mod logs;
pub mod mounts;
pub mod native_backend;
pub mod process;
pub mod spec;
