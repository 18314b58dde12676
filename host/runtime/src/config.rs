//! What the runtime hands its init helper (serialized over the sync socket).

use std::path::PathBuf;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

/// A filesystem to mount as the container's root (a snapshot's mount).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootMount {
    /// `bind`, `rbind`, `overlay`, ...
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

impl From<&berth_snapshot::Mount> for RootMount {
    fn from(m: &berth_snapshot::Mount) -> Self {
        RootMount { kind: m.kind.clone(), source: m.source.clone(), options: m.options.clone() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// A new container: namespaces, rootfs, then wait for `start`.
    Create,
    /// A process joining a running container's namespaces.
    Exec,
}

/// A cgroup hierarchy to expose under a `cgroup` mount (v1: one per controller).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupView {
    /// Directory name under the mount (`memory`, `cpu`, `systemd`...); empty for v2.
    pub name: String,
    /// The container's cgroup directory on the host.
    pub host_path: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitConfig {
    pub mode: Mode,
    pub id: String,
    /// The spec; for `Exec`, `process` is the process to run.
    pub spec: Spec,
    pub bundle: PathBuf,
    /// Absolute host path of the directory that becomes `/`.
    pub rootfs: PathBuf,
    /// Mounted onto `rootfs` inside the new mount namespace; empty: `rootfs`
    /// is already a populated directory (bind-mounted onto itself).
    pub root_mounts: Vec<RootMount>,
    /// The exec fifo `start` opens (Create only).
    pub fifo: Option<PathBuf>,
    pub no_pivot: bool,
    /// Namespaces to create (CLONE_NEW* bits, cgroup included: the init
    /// unshares that one itself once it sits in its cgroup).
    pub clone_flags: i32,
    /// Namespaces to join: (CLONE_NEW* bit, path). User first.
    pub join: Vec<(i32, PathBuf)>,
    /// The compiled seccomp filter (`struct sock_filter` array) and its flags.
    pub seccomp_bpf: Option<Vec<u8>>,
    pub seccomp_flags: u32,
    /// Descriptors 3..3+N handed to the process (runc `--preserve-fds`).
    pub preserve_fds: u32,
    /// What `cgroup` mounts show.
    pub cgroup_views: Vec<CgroupView>,
    /// OCI state JSON given on stdin to createContainer/startContainer hooks.
    pub state_json: String,
    /// Descriptor of a connected console socket (process.terminal).
    pub console_fd: Option<i32>,
    /// AppArmor profile / SELinux labels, checked against the host by the parent.
    #[serde(default)]
    pub lsm: crate::lsm::Plan,
}
