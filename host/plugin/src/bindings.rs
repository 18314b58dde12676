//! Typed wasmtime bindings, one module per WIT world. The shared `types` and
//! `host` interfaces are generated once (in [`mutator`]) and reused by the
//! other worlds through `with`, so a `KeyValue` is the same Rust type
//! everywhere.
//!
//! [`compat_0_1`] is the spec-mutator world of `berth:plugin@0.1.0`
//! (wit/compat/0.1.0): the host still links its `host` interface, and lifts
//! 0.1.0 answers with the current types (records are checked structurally;
//! `types` did not change between the two versions).

/// World `spec-mutator`; also home of the shared `types` and `host` bindings.
/// The `view.container` resource is not linked from these bindings: it is
/// implemented by hand in `crate::lower` (getters that lower straight from
/// the host's own data; its host type is `lower::ViewRef`).
pub mod mutator {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "berth:plugin/spec-mutator",
    });
}

/// World `snapshotter-selector`.
pub mod selector {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "berth:plugin/snapshotter-selector",
        with: {
            "berth:plugin/types": crate::bindings::mutator::berth::plugin::types,
            "berth:plugin/host": crate::bindings::mutator::berth::plugin::host,
        },
    });
}

/// World `source-resolver`.
pub mod resolver {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "berth:plugin/source-resolver",
        with: {
            "berth:plugin/types": crate::bindings::mutator::berth::plugin::types,
            "berth:plugin/host": crate::bindings::mutator::berth::plugin::host,
        },
    });
}

/// World `spec-mutator` of `berth:plugin@0.1.0`: the view is one record
/// parameter (lowered by [`crate::lower::View`]).
pub mod compat_0_1 {
    wasmtime::component::bindgen!({
        path: "../../wit/compat/0.1.0",
        world: "berth:plugin/spec-mutator",
    });
}

pub use mutator::berth::plugin::host as wit_host;
pub use mutator::berth::plugin::types as wit;

/// The WIT package version these bindings were generated from.
pub const WIT_VERSION: &str = "0.2.0";
/// Older versions of the package this host still loads.
pub const COMPAT_WIT_VERSIONS: &[&str] = &["0.1.0"];
