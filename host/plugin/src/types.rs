//! Native forms of the WIT records that are not spec adjustments: plugin
//! kinds and self-descriptions, snapshotter-selector facts and choices,
//! source-resolver requests and sources.
//!
//! These mirror `berth:plugin/types` field for field (kebab-case serde names)
//! so the CLI, the config and other crates can build inputs and read outputs
//! without touching wasmtime's generated types.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The three plugin kinds, one WIT world each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// World `spec-mutator`, exports `berth:plugin/mutator`.
    SpecMutator,
    /// World `snapshotter-selector`, exports `berth:plugin/selector`.
    SnapshotterSelector,
    /// World `source-resolver`, exports `berth:plugin/resolver`.
    SourceResolver,
}

impl PluginKind {
    pub const ALL: [PluginKind; 3] =
        [PluginKind::SpecMutator, PluginKind::SnapshotterSelector, PluginKind::SourceResolver];

    /// The world name in wit/berth-plugin.wit (also the config spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::SpecMutator => "spec-mutator",
            PluginKind::SnapshotterSelector => "snapshotter-selector",
            PluginKind::SourceResolver => "source-resolver",
        }
    }

    /// The interface a component of this kind exports (without version).
    pub fn export_interface(self) -> &'static str {
        match self {
            PluginKind::SpecMutator => "berth:plugin/mutator",
            PluginKind::SnapshotterSelector => "berth:plugin/selector",
            PluginKind::SourceResolver => "berth:plugin/resolver",
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for PluginKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PluginKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            format!("unknown plugin kind `{s}` (expected spec-mutator, snapshotter-selector or source-resolver)")
        })
    }
}

/// What a plugin says about itself (`info`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
}

/// A plugin's own refusal (`plugin-error`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginError {
    /// The operator's `config` table for the plugin is invalid.
    InvalidConfig(String),
    /// The request is not acceptable under the plugin's policy.
    Rejected(String),
    /// Anything else that went wrong inside the plugin.
    Internal(String),
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginError::InvalidConfig(m) => write!(f, "invalid config: {m}"),
            PluginError::Rejected(m) => write!(f, "rejected: {m}"),
            PluginError::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

// ---------------------------------------------------------------------------
// snapshotter-selector
// ---------------------------------------------------------------------------

/// Facts the host probed natively about where snapshots will live.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct HostFacts {
    pub root: String,
    pub filesystem_type: String,
    pub kernel_version: String,
    pub overlay_supported: bool,
    pub overlay_error: Option<String>,
    pub overlay_needs_userxattr: bool,
    pub fuse_overlayfs_binary: Option<String>,
    pub dev_fuse: bool,
    pub in_user_namespace: bool,
    pub idmapped_mounts: bool,
    /// Snapshotters compiled into this host.
    pub available: Vec<String>,
}

/// A selector's answer. The host checks `name` against `HostFacts::available`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct SnapshotterChoice {
    pub name: String,
    pub options: Vec<(String, String)>,
    pub reason: String,
}

// ---------------------------------------------------------------------------
// source-resolver
// ---------------------------------------------------------------------------

/// A parsed, normalised image reference (`docker.io/library/busybox`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct ImageReference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    #[default]
    Resolve,
    Pull,
    Push,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct ResolveRequest {
    pub reference: ImageReference,
    pub labels: Vec<(String, String)>,
    pub operation: Operation,
}

/// What a registry host may be used for (hosts.toml `capabilities`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct HostCapabilities {
    pub pull: bool,
    pub resolve: bool,
    pub push: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct RegistryHost {
    /// `host` or `host:port`.
    pub host: String,
    /// `https` or `http`.
    pub scheme: String,
    pub path_prefix: String,
    pub capabilities: HostCapabilities,
    pub skip_verify: bool,
    /// Extra request headers (never credentials: the host adds those).
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceLocation {
    Registry(RegistryHost),
    /// A local OCI image layout directory.
    OciLayout(String),
    /// Resolve this reference through the configured resolvers again.
    Reference(ImageReference),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Source {
    pub location: SourceLocation,
    /// The blob this source is for (a remote layer), when not the image.
    #[serde(default)]
    pub target_digest: Option<String>,
    /// All layer digests of the image the target belongs to.
    #[serde(default)]
    pub layers: Vec<String>,
}
