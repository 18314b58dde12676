//! The WIT bindings, one `generate!` per world.
//!
//! The first world (`spec-mutator`) owns the shared `types` and `host`
//! interfaces; the two other worlds reuse them through `with`, so a record is
//! the same Rust type whichever kind of plugin uses it. Each world's export
//! macro is public (`pub_export_macro`); only the world whose macro a plugin
//! invokes ends up in its component.

/// `world spec-mutator`: the shared types and host interface live here.
pub mod spec_mutator {
    wit_bindgen::generate!({
        path: "../wit",
        world: "berth:plugin/spec-mutator",
        pub_export_macro: true,
        export_macro_name: "export_spec_mutator",
        default_bindings_module: "berth_sdk::bindings::spec_mutator",
        additional_derives: [PartialEq],
    });
}

/// `world snapshotter-selector`.
pub mod snapshotter_selector {
    wit_bindgen::generate!({
        path: "../wit",
        world: "berth:plugin/snapshotter-selector",
        pub_export_macro: true,
        export_macro_name: "export_snapshotter_selector",
        default_bindings_module: "berth_sdk::bindings::snapshotter_selector",
        with: {
            "berth:plugin/types@0.2.0": crate::bindings::spec_mutator::berth::plugin::types,
            "berth:plugin/host@0.2.0": crate::bindings::spec_mutator::berth::plugin::host,
        },
    });
}

/// `world source-resolver`.
pub mod source_resolver {
    wit_bindgen::generate!({
        path: "../wit",
        world: "berth:plugin/source-resolver",
        pub_export_macro: true,
        export_macro_name: "export_source_resolver",
        default_bindings_module: "berth_sdk::bindings::source_resolver",
        with: {
            "berth:plugin/types@0.2.0": crate::bindings::spec_mutator::berth::plugin::types,
            "berth:plugin/host@0.2.0": crate::bindings::spec_mutator::berth::plugin::host,
        },
    });
}
