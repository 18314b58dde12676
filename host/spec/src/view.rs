//! What a spec-mutator sees of the container being created (read-only).

use serde::{Deserialize, Serialize};

use crate::adjustment::{Mount, NamespaceKind};

/// The process-deciding parts of an OCI image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct ImageConfigView {
    pub user: Option<String>,
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: Option<String>,
    pub labels: Vec<(String, String)>,
    pub stop_signal: Option<String>,
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct ProcessView {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub terminal: bool,
    /// Bounding set, `CAP_*` names.
    pub capabilities: Vec<String>,
    pub no_new_privileges: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct NamespaceView {
    pub kind: NamespaceKind,
    /// Set when the namespace is joined by path.
    pub path: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct ContainerView {
    pub id: String,
    pub image: Option<String>,
    pub image_config: ImageConfigView,
    /// Request options (`--opt key=value`), in order.
    pub options: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
    pub process: ProcessView,
    pub hostname: Option<String>,
    pub readonly_rootfs: bool,
    pub mounts: Vec<Mount>,
    pub namespaces: Vec<NamespaceView>,
}
