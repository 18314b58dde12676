//! The native form of a spec-mutator's answer.
//!
//! These types mirror `berth:plugin/types.adjustment` field for field. The
//! plugin host converts a plugin's (untrusted) WIT value into an
//! [`Adjustment`]; everything after that — grant checks, conflict checks,
//! application to the spec — works on these types only, so it can be tested
//! without wasm.

use serde::{Deserialize, Serialize};

/// A typed edit of an OCI runtime spec. Empty / `None` fields leave the spec
/// untouched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct Adjustment {
    pub args: Option<Vec<String>>,
    pub env_set: Vec<(String, String)>,
    pub env_unset: Vec<String>,
    pub cwd: Option<String>,
    pub user: Option<User>,
    pub capabilities_add: Vec<String>,
    pub capabilities_drop: Vec<String>,
    pub no_new_privileges: Option<bool>,
    pub mounts_add: Vec<Mount>,
    pub mounts_remove: Vec<String>,
    pub devices: Vec<Device>,
    pub device_rules: Vec<DeviceRule>,
    pub namespaces: Vec<NamespaceSetting>,
    pub resources: Option<Resources>,
    pub rlimits: Vec<Rlimit>,
    pub seccomp: Option<Seccomp>,
    pub readonly_rootfs: Option<bool>,
    pub sysctls: Vec<(String, String)>,
    pub hooks: Vec<Hook>,
    pub annotations: Vec<(String, String)>,
    pub masked_paths_add: Vec<String>,
    pub masked_paths_remove: Vec<String>,
    pub readonly_paths_add: Vec<String>,
    pub readonly_paths_remove: Vec<String>,
    pub hostname: Option<String>,
    pub privileged: Privileged,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum User {
    Ids {
        uid: u32,
        gid: u32,
        additional_gids: Vec<u32>,
    },
    /// `user`, `user:group`, `uid:gid`, resolved against the image's
    /// /etc/passwd and /etc/group.
    Name(String),
}

/// An OCI mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NamespaceKind {
    Pid,
    Network,
    Mount,
    Ipc,
    Uts,
    User,
    Cgroup,
    Time,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NamespaceMode {
    New,
    Host,
    Join(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct NamespaceSetting {
    pub kind: NamespaceKind,
    pub mode: NamespaceMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceType {
    Char,
    Block,
    Fifo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Device {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: DeviceType,
    pub major: i64,
    pub minor: i64,
    pub file_mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DeviceRule {
    pub allow: bool,
    /// `a`, `c` or `b`; `None` means all.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    pub access: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct Resources {
    pub memory_limit: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub memory_swap: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_limit: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Rlimit {
    /// e.g. `RLIMIT_NOFILE`.
    #[serde(rename = "type")]
    pub kind: String,
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Seccomp {
    /// The host's default profile.
    Default,
    Unconfined,
    /// An OCI `linux.seccomp` object, as JSON text.
    Profile(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookStage {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Hook {
    pub stage: HookStage,
    pub path: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub timeout: Option<i32>,
}

/// The privileged bits of containerd's `WithPrivileged`, each on its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct Privileged {
    pub sysfs_rw: bool,
    pub cgroupfs_rw: bool,
    pub all_devices: bool,
    pub host_devices: bool,
    pub all_capabilities: bool,
    pub unconfined_apparmor: bool,
    pub clear_masked_paths: bool,
    pub clear_readonly_paths: bool,
}

impl Privileged {
    pub fn any(&self) -> bool {
        *self != Privileged::default()
    }
}
