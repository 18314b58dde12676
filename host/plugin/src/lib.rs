//! The wasmtime plugin host: engine, loading, precompile cache, sandbox
//! limits, per-kind callers.
//!
//! ```no_run
//! use berth_plugin::{HostOptions, LoadRequest, PluginHost, PluginKind};
//! let host = PluginHost::new(HostOptions::default())?;
//! let plugin = host.load(LoadRequest::new("privileged", "privileged.wasm").kind(PluginKind::SpecMutator))?;
//! let adjustment = plugin.mutate(&berth_spec::ContainerView::default())?;
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! One [`wasmtime::Engine`] per [`PluginHost`]: component model, pooling
//! allocator, epoch interruption driven by a ticker thread. Components are
//! compiled once and cached on disk (keyed by the wasm digest and the
//! engine's compatibility hash); each [`LoadedPlugin`] holds an
//! `InstancePre`, and every call gets a fresh store and instance with an
//! empty WASI context, a deadline, a memory cap and an output-size cap.

pub mod bindings;
mod convert;
pub mod error;
mod host;
mod lower;
mod sandbox;
pub mod types;

pub use error::{CallError, LoadError};
pub use host::{
    CacheOutcome, Description, EPOCH_TICK, HostOptions, PAGEMAP_KEEP_RESIDENT, LoadRequest, LoadedPlugin, Limits, MAX_WASM_BYTES, PluginHost,
    SUPPORTED_WIT_VERSIONS, output_size,
};
pub use types::{
    HostFacts, ImageReference, Operation, PluginError, PluginInfo, PluginKind, ResolveRequest, SnapshotterChoice,
    Source, SourceLocation,
};
