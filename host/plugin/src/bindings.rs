//! Typed wasmtime bindings, one module per WIT world. The shared `types` and
//! `host` interfaces are generated once (in [`mutator`]) and reused by the
//! other worlds through `with`, so a `KeyValue` is the same Rust type
//! everywhere.

/// World `spec-mutator`; also home of the shared `types` and `host` bindings.
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

pub use mutator::berth::plugin::host as wit_host;
pub use mutator::berth::plugin::types as wit;

/// The WIT package version these bindings were generated from.
pub const WIT_VERSION: &str = "0.1.0";
