//! # berth-sdk
//!
//! Write berth plugins in Rust. A plugin is a type implementing one of the
//! three kind traits ([`SpecMutator`], [`SnapshotterSelector`],
//! [`SourceResolver`]) plus one [`export!`] line; `cargo build --target
//! wasm32-wasip2` turns the crate (a `cdylib`) into a component the berth
//! host loads.
//!
//! ```ignore
//! use berth_sdk::prelude::*;
//!
//! struct Hello;
//!
//! impl SpecMutator for Hello {
//!     fn info() -> PluginInfo {
//!         berth_sdk::plugin_info!("sets HELLO=world")
//!     }
//!     fn mutate(_container: ContainerView, _config: Config) -> Result<Adjustment, PluginError> {
//!         Ok(Adjustment::default().env("HELLO", "world"))
//!     }
//! }
//!
//! berth_sdk::export!(Hello as spec_mutator);
//! ```
//!
//! Every record the host and the plugin exchange is the type generated from
//! `wit/berth-plugin.wit` (re-exported under [`types`] and at the crate root),
//! so what a plugin returns in `cargo test` is exactly what the host receives.
//! The container a spec-mutator reads is a [`ContainerView`]: accessors
//! (`id()`, `options()`, `process()`...) that fetch a field from the host on
//! first use (berth:plugin@0.2.0 lends the view as a resource).
//! The [`testing`] module calls a plugin natively, with no wasm involved.

mod adjust;
pub mod alloc;
#[doc(hidden)]
pub mod bindings;
mod config;
pub mod log;
pub mod size;
pub mod testing;
mod view;

/// The guest's global allocator (see [`alloc`]): a fresh instance per call
/// makes freeing wasted work.
#[cfg(all(target_family = "wasm", feature = "bump-alloc"))]
#[global_allocator]
static ALLOCATOR: alloc::Bump = alloc::Bump::new();

pub use config::Config;
pub use view::{ContainerData, ContainerView};
pub use size::parse_size;

/// Every WIT record, variant, enum and flags type of `berth:plugin/types`.
pub mod types {
    pub use crate::bindings::spec_mutator::berth::plugin::types::*;
}
pub use types::*;

/// The log level of [`log::log`].
pub use crate::bindings::spec_mutator::berth::plugin::host::Level;

/// `use berth_sdk::prelude::*;` brings the traits and the common types.
pub mod prelude {
    pub use crate::types::*;
    pub use crate::{Config, ContainerData, ContainerView, Level, SnapshotterSelector, SourceResolver, SpecMutator, parse_size};
}

/// A spec-mutator: changes a container's OCI runtime spec before create by
/// returning a typed [`Adjustment`].
pub trait SpecMutator {
    /// Name, version and one-line description (see [`plugin_info!`]).
    fn info() -> PluginInfo;
    /// `container` is a read-only view of the container being created;
    /// `config` is the operator's `config` table for this plugin.
    fn mutate(container: ContainerView, config: Config) -> Result<Adjustment, PluginError>;
}

/// A snapshotter-selector: picks the snapshotter (and options) from facts the
/// host probed.
pub trait SnapshotterSelector {
    fn info() -> PluginInfo;
    fn select(facts: HostFacts, config: Config) -> Result<SnapshotterChoice, PluginError>;
}

/// A source-resolver: says where an image or a remote layer is fetched from,
/// in order.
pub trait SourceResolver {
    fn info() -> PluginInfo;
    fn resolve(request: ResolveRequest, config: Config) -> Result<Vec<Source>, PluginError>;
}

impl<T: SpecMutator> bindings::spec_mutator::exports::berth::plugin::mutator::Guest for T {
    fn info() -> PluginInfo {
        <T as SpecMutator>::info()
    }
    fn mutate(container: &bindings::spec_mutator::berth::plugin::view::Container, config: String) -> Result<Adjustment, PluginError> {
        // SAFETY: the handle this call borrows; the view is moved into the
        // plugin's `mutate`, which returns before this call does.
        let view = unsafe { ContainerView::lent(container.handle()) };
        <T as SpecMutator>::mutate(view, Config::new(config))
    }
}

impl<T: SnapshotterSelector> bindings::snapshotter_selector::exports::berth::plugin::selector::Guest for T {
    fn info() -> PluginInfo {
        <T as SnapshotterSelector>::info()
    }
    fn select(facts: HostFacts, config: String) -> Result<SnapshotterChoice, PluginError> {
        <T as SnapshotterSelector>::select(facts, Config::new(config))
    }
}

impl<T: SourceResolver> bindings::source_resolver::exports::berth::plugin::resolver::Guest for T {
    fn info() -> PluginInfo {
        <T as SourceResolver>::info()
    }
    fn resolve(request: ResolveRequest, config: String) -> Result<Vec<Source>, PluginError> {
        <T as SourceResolver>::resolve(request, Config::new(config))
    }
}

/// Exports a type as the plugin of a crate:
/// `berth_sdk::export!(MyType as spec_mutator)` (or `snapshotter_selector`,
/// `source_resolver`). Use it once per crate, at the top level. On native
/// targets it expands to nothing (tests call the trait through [`testing`]).
#[macro_export]
macro_rules! export {
    ($ty:ident as spec_mutator) => {
        #[cfg(target_family = "wasm")]
        $crate::__export_spec_mutator_impl!($ty with_types_in $crate::bindings::spec_mutator);
    };
    ($ty:ident as snapshotter_selector) => {
        #[cfg(target_family = "wasm")]
        $crate::__export_snapshotter_selector_impl!($ty with_types_in $crate::bindings::snapshotter_selector);
    };
    ($ty:ident as source_resolver) => {
        #[cfg(target_family = "wasm")]
        $crate::__export_source_resolver_impl!($ty with_types_in $crate::bindings::source_resolver);
    };
}

/// A [`PluginInfo`] from the calling crate's name and version and a one-line
/// description: `berth_sdk::plugin_info!("does X")`.
#[macro_export]
macro_rules! plugin_info {
    ($description:expr) => {
        $crate::PluginInfo {
            name: ::core::env!("CARGO_PKG_NAME").to_string(),
            version: ::core::env!("CARGO_PKG_VERSION").to_string(),
            description: ::std::string::ToString::to_string(&$description),
        }
    };
}

impl PluginError {
    /// The operator's config for this plugin is invalid.
    pub fn invalid_config(message: impl Into<String>) -> Self {
        PluginError::InvalidConfig(message.into())
    }
    /// The request is not acceptable under this plugin's policy.
    pub fn rejected(message: impl Into<String>) -> Self {
        PluginError::Rejected(message.into())
    }
    /// Anything else.
    pub fn internal(message: impl Into<String>) -> Self {
        PluginError::Internal(message.into())
    }
    /// The message, whatever the case.
    pub fn message(&self) -> &str {
        match self {
            PluginError::InvalidConfig(m) | PluginError::Rejected(m) | PluginError::Internal(m) => m,
        }
    }
}

impl KeyValue {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        KeyValue { key: key.into(), value: value.into() }
    }
}

/// Looks `key` up in a key-value list (the first match).
pub fn lookup<'a>(list: &'a [KeyValue], key: &str) -> Option<&'a str> {
    list.iter().find(|kv| kv.key == key).map(|kv| kv.value.as_str())
}

impl ResolveRequest {
    /// The request label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        lookup(&self.labels, key)
    }
}

impl ImageReference {
    /// `registry/repository[:tag][@digest]`.
    pub fn to_string_full(&self) -> String {
        // push_str, not format!: cheaper in a plugin's hot path (a
        // resolver's log line).
        let len = self.registry.len()
            + 1
            + self.repository.len()
            + self.tag.as_ref().map_or(0, |t| t.len() + 1)
            + self.digest.as_ref().map_or(0, |d| d.len() + 1);
        let mut s = String::with_capacity(len);
        s.push_str(&self.registry);
        s.push('/');
        s.push_str(&self.repository);
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(digest);
        }
        s
    }
}

/// The README's examples compile (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
