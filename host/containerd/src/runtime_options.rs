//! Which runtime containerd runs a container with, and its options as the
//! protobuf `Any` containerd stores on the container record.
//!
//! For `io.containerd.runc.v2` the options are `containerd.runc.v1.Options`;
//! containerd hands them to the shim at task creation, and the shim runs
//! `BinaryName` instead of `runc`. That is how containerd runs berth's
//! runc-compatible CLI without any daemon configuration.

use std::path::PathBuf;

use containerd_client::services::v1::container::Runtime;
use prost::Name;

use crate::proto::runc_options::Options as RuncOptions;

/// containerd's runc shim v2.
pub const RUNC_V2: &str = "io.containerd.runc.v2";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeSelection {
    /// `io.containerd.runc.v2`, running `binary_name` (default `runc` on the
    /// shim's PATH), its state under `root` (default the shim's).
    Runc { binary_name: Option<PathBuf>, root: Option<PathBuf>, systemd_cgroup: bool },
    /// Any other runtime containerd knows, by name, without options.
    Named(String),
}

impl Default for RuntimeSelection {
    fn default() -> Self {
        RuntimeSelection::Runc { binary_name: None, root: None, systemd_cgroup: false }
    }
}

impl RuntimeSelection {
    /// runc v2 running `binary` (berth's runtime, crun...).
    pub fn runc_binary(binary: impl Into<PathBuf>) -> Self {
        RuntimeSelection::Runc { binary_name: Some(binary.into()), root: None, systemd_cgroup: false }
    }

    pub fn name(&self) -> &str {
        match self {
            RuntimeSelection::Runc { .. } => RUNC_V2,
            RuntimeSelection::Named(name) => name,
        }
    }

    /// The container record's runtime field.
    pub(crate) fn to_proto(&self) -> Runtime {
        let options = match self {
            RuntimeSelection::Runc { binary_name, root, systemd_cgroup } => {
                let options = RuncOptions {
                    binary_name: binary_name.as_ref().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default(),
                    root: root.as_ref().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default(),
                    systemd_cgroup: *systemd_cgroup,
                    ..Default::default()
                };
                (options != RuncOptions::default()).then(|| runc_options_any(&options))
            }
            RuntimeSelection::Named(_) => None,
        };
        Runtime { name: self.name().to_string(), options }
    }
}

/// `containerd.runc.v1.Options` as containerd's typeurl registry names it
/// (the bare message name, no `type.googleapis.com/` prefix).
fn runc_options_any(options: &RuncOptions) -> prost_types::Any {
    prost_types::Any { type_url: RuncOptions::full_name(), value: prost::Message::encode_to_vec(options) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_name_is_encoded_as_runc_options() {
        let runtime = RuntimeSelection::runc_binary("/usr/bin/crun").to_proto();
        assert_eq!(runtime.name, "io.containerd.runc.v2");
        let any = runtime.options.expect("options set");
        assert_eq!(any.type_url, "containerd.runc.v1.Options");
        let decoded: RuncOptions = prost::Message::decode(any.value.as_slice()).unwrap();
        assert_eq!(decoded.binary_name, "/usr/bin/crun");
        // Field 6 (binary_name), wire type 2: the tag byte containerd's Go code reads.
        assert_eq!(any.value[0], (6 << 3) | 2);
    }

    #[test]
    fn default_runc_carries_no_options() {
        let runtime = RuntimeSelection::default().to_proto();
        assert_eq!(runtime.name, RUNC_V2);
        assert!(runtime.options.is_none());
        assert!(RuntimeSelection::Named("io.containerd.runc.v1".into()).to_proto().options.is_none());
    }
}
