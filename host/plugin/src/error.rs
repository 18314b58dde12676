//! Errors of loading a plugin and of calling one. Every variant names the
//! plugin (calls) or the file (loads); callers branch on the variant (an
//! optional plugin's failure is skipped, a required one's fails the request).

use std::path::PathBuf;
use std::time::Duration;

use crate::types::{PluginError, PluginKind};

/// Why one call into a plugin failed. The host that made the call stays
/// usable: every call runs in a fresh store and instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The plugin trapped (panic, `unreachable`, out-of-bounds access...).
    #[error("plugin `{plugin}` trapped: {detail}")]
    Trap { plugin: String, detail: String },
    /// The call ran past its deadline (epoch interruption).
    #[error("plugin `{plugin}` timed out after {}ms", timeout.as_millis())]
    Timeout { plugin: String, timeout: Duration },
    /// A linear memory would have grown past the plugin's memory limit.
    #[error("plugin `{plugin}` ran out of memory: wanted {requested} bytes, limit is {limit} bytes")]
    OutOfMemory { plugin: String, requested: usize, limit: usize },
    /// The answer (measured as JSON) is larger than the output limit.
    #[error("plugin `{plugin}` returned {size} bytes of output, limit is {limit} bytes")]
    OutputTooLarge { plugin: String, size: usize, limit: usize },
    /// The answer does not lift into the WIT types or fails the host's checks.
    #[error("plugin `{plugin}` returned malformed output: {detail}")]
    MalformedOutput { plugin: String, detail: String },
    /// The plugin answered with its own `plugin-error`.
    #[error("plugin `{plugin}` refused: {error}")]
    Rejected { plugin: String, error: PluginError },
    /// The instance could not be created (e.g. the instance pool is full).
    #[error("plugin `{plugin}` could not be instantiated: {detail}")]
    Instantiate { plugin: String, detail: String },
    /// The caller asked a plugin of one kind to do another kind's job.
    #[error("plugin `{plugin}` is a {actual} plugin, not a {expected}")]
    WrongKind { plugin: String, expected: PluginKind, actual: PluginKind },
}

impl CallError {
    /// The plugin the error is about.
    pub fn plugin(&self) -> &str {
        match self {
            CallError::Trap { plugin, .. }
            | CallError::Timeout { plugin, .. }
            | CallError::OutOfMemory { plugin, .. }
            | CallError::OutputTooLarge { plugin, .. }
            | CallError::MalformedOutput { plugin, .. }
            | CallError::Rejected { plugin, .. }
            | CallError::Instantiate { plugin, .. }
            | CallError::WrongKind { plugin, .. } => plugin,
        }
    }

    /// A short stable name of the cause (`trap`, `timeout`, `out-of-memory`,
    /// `output-too-large`, `malformed-output`, `rejected`, `instantiate`,
    /// `wrong-kind`), for logs and `berth plugin check`.
    pub fn cause(&self) -> &'static str {
        match self {
            CallError::Trap { .. } => "trap",
            CallError::Timeout { .. } => "timeout",
            CallError::OutOfMemory { .. } => "out-of-memory",
            CallError::OutputTooLarge { .. } => "output-too-large",
            CallError::MalformedOutput { .. } => "malformed-output",
            CallError::Rejected { .. } => "rejected",
            CallError::Instantiate { .. } => "instantiate",
            CallError::WrongKind { .. } => "wrong-kind",
        }
    }
}

/// Why a plugin could not be loaded. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read plugin {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("plugin {} is {size} bytes, more than the {limit}-byte limit", path.display())]
    TooLarge { path: PathBuf, size: u64, limit: u64 },
    #[error("plugin {} is a precompiled artifact; give the .wasm component (berth compiles and caches it)", path.display())]
    Precompiled { path: PathBuf },
    #[error("plugin {} is not a valid WebAssembly component: {detail}", path.display())]
    Invalid { path: PathBuf, detail: String },
    #[error("plugin {} exports no berth plugin interface (exports: {exports}); build it for one of the worlds spec-mutator, snapshotter-selector, source-resolver", path.display())]
    NotAPlugin { path: PathBuf, exports: String },
    #[error("plugin {} exports more than one berth plugin interface ({exports}); a component is one kind", path.display())]
    Ambiguous { path: PathBuf, exports: String },
    #[error("plugin {} is a {actual} plugin, but the configuration says {expected}", path.display())]
    KindMismatch { path: PathBuf, expected: PluginKind, actual: PluginKind },
    #[error("plugin {} was built against berth:plugin@{version}, which this host ({host}) cannot load", path.display())]
    IncompatibleWit { path: PathBuf, version: String, host: String },
    #[error("plugin {} cannot be linked against the host: {detail}", path.display())]
    Link { path: PathBuf, detail: String },
    #[error("plugin {}: invalid limits: {detail}", path.display())]
    Limits { path: PathBuf, detail: String },
    #[error("plugin {}: its config is not serialisable as JSON: {detail}", path.display())]
    Config { path: PathBuf, detail: String },
    #[error("plugin {}: `info` failed: {source}", path.display())]
    Info { path: PathBuf, source: CallError },
}
