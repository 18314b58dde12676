//! The inputs of the plugin-call benchmark (benches/calls.rs), shared with
//! examples/profile_calls.rs so that a profile measures the bench's calls.
#![allow(dead_code)]

use berth_plugin::{HostFacts, ImageReference, Operation, ResolveRequest};
use serde_json::{Value, json};

/// The reference plugins, in the bench's order, with the config each gets.
pub fn reference_plugins() -> [(&'static str, Value); 7] {
    [
        ("privileged", json!({})),
        ("resources", json!({})),
        ("seccomp-default", json!({})),
        ("nomad-task", json!({"env": {"A": "1"}})),
        ("auto-snapshotter", json!({})),
        ("hosts-resolver", json!({"docker.io": {"host": {"https://mirror.example.com": {"capabilities": ["pull"]}}}})),
        ("stargz-labels", json!({})),
    ]
}

/// The reference spec-mutators: the chain of 8 is these, twice.
pub const SPEC_MUTATORS: [&str; 4] = ["privileged", "resources", "seccomp-default", "nomad-task"];

/// The config the bench gives reference plugin `name` (`{}` for any other).
pub fn config(name: &str) -> Value {
    reference_plugins().into_iter().find(|(n, _)| *n == name).map_or_else(|| json!({}), |(_, c)| c)
}

/// The spec-mutators' view: containerd's default spec for busybox (`sh`)
/// with `memory=64m`, `cpu=512`.
pub fn view() -> berth_spec::ContainerView {
    let request = berth_spec::Request {
        id: "bench".into(),
        image: Some("docker.io/library/busybox:latest".into()),
        image_config: berth_spec::view::ImageConfigView {
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            cmd: vec!["sh".into()],
            ..Default::default()
        },
        options: vec![("memory".into(), "64m".into()), ("cpu".into(), "512".into())],
        ..Default::default()
    };
    let (spec, _) = berth_spec::base_spec(&request).expect("sample spec");
    berth_spec::container_view(&spec, &request)
}

/// The snapshotter-selectors' host facts.
pub fn facts() -> HostFacts {
    HostFacts {
        root: "/var/lib/berth/snapshots".into(),
        filesystem_type: "ext4".into(),
        kernel_version: "6.1.0".into(),
        overlay_supported: true,
        available: vec!["overlayfs".into(), "fuse-overlayfs".into(), "native".into()],
        ..Default::default()
    }
}

/// The source-resolvers' request.
pub fn resolve_request() -> ResolveRequest {
    ResolveRequest {
        reference: ImageReference {
            registry: "docker.io".into(),
            repository: "library/busybox".into(),
            tag: Some("latest".into()),
            digest: None,
        },
        labels: vec![],
        operation: Operation::Pull,
    }
}
