//! The configured plugins of one `berth` invocation, sorted by kind.
//!
//! Loading starts in a background thread as soon as the configuration is
//! read: the wasm engine (pool reservations, linker) and the components
//! (from the compile cache) are ready while the caller resolves the image and
//! prepares the snapshot, and the first accessor waits for them. With no
//! plugin to load, no engine is created at all. `berth run` loads only the
//! kinds it calls ([`Kinds::RUN`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use anyhow::{Context, anyhow};
use berth_plugin::{LoadedPlugin, PluginHost, PluginKind};
use berth_spec::ChainEntry;

use crate::cli::plugin::PluginFlags;
use crate::config::Config;
use crate::config::plugins::{self as plugin_config, ResolvedPlugin};

/// Which kinds of plugin an invocation calls. A plugin whose table declares
/// no `kind` is always loaded: its kind is only known from the component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kinds {
    pub spec_mutators: bool,
    pub selectors: bool,
    pub resolvers: bool,
}

impl Kinds {
    pub const ALL: Kinds = Kinds { spec_mutators: true, selectors: true, resolvers: true };
    /// `berth run` of a stored image: the spec chain and the snapshotter
    /// choice; source-resolvers only serve pulls.
    pub const RUN: Kinds = Kinds { spec_mutators: true, selectors: true, resolvers: false };

    fn wants(&self, declared: Option<PluginKind>) -> bool {
        match declared {
            None => true,
            Some(PluginKind::SpecMutator) => self.spec_mutators,
            Some(PluginKind::SnapshotterSelector) => self.selectors,
            Some(PluginKind::SourceResolver) => self.resolvers,
        }
    }
}

/// The loaded plugins and the engine they run in (none without plugins).
struct Loaded {
    _host: Option<PluginHost>,
    plugins: Vec<(ResolvedPlugin, LoadedPlugin)>,
}

/// The plugins of this run, in configured order.
pub struct LoadedPlugins {
    loading: Mutex<Option<JoinHandle<anyhow::Result<Loaded>>>>,
    /// The loader's outcome; an error is kept as its message (with causes),
    /// returned to every accessor.
    loaded: OnceLock<Result<Arc<Loaded>, String>>,
}

/// The engine is left to the process's exit: unmapping the pooling
/// allocator's reservations one by one (thousands of mappings) cost ~3 ms of
/// every `berth` invocation's exit, which the kernel's teardown of the whole
/// address space does anyway. A `LoadedPlugins` lives as long as one
/// invocation; its epoch thread ticks until the process ends.
impl Drop for LoadedPlugins {
    fn drop(&mut self) {
        if let Some(Ok(loaded)) = self.loaded.take() {
            std::mem::forget(loaded);
        }
    }
}

impl LoadedPlugins {
    /// Resolves `[[plugin]]` tables and flags (errors here are immediate)
    /// and starts loading every plugin in the background (from the compile
    /// cache under `root` when it is there). An optional plugin that cannot
    /// load is skipped with a warning; any other fails the first accessor.
    pub fn load(config: &Config, config_path: Option<&Path>, flags: &PluginFlags, root: &Path) -> anyhow::Result<Self> {
        Self::load_kinds(config, config_path, flags, root, Kinds::ALL)
    }

    /// [`LoadedPlugins::load`], leaving out plugins declared as a kind this
    /// invocation does not call.
    pub fn load_kinds(config: &Config, config_path: Option<&Path>, flags: &PluginFlags, root: &Path, kinds: Kinds) -> anyhow::Result<Self> {
        let base = config_path.and_then(Path::parent);
        let mut resolved = plugin_config::resolve(&config.plugins, flags, base).context("invalid plugin configuration")?;
        resolved.retain(|p| kinds.wants(p.kind));
        let root: PathBuf = root.to_path_buf();
        let this = LoadedPlugins { loading: Mutex::new(None), loaded: OnceLock::new() };
        if resolved.is_empty() {
            let _ = this.loaded.set(Ok(Arc::new(Loaded { _host: None, plugins: Vec::new() })));
            return Ok(this);
        }
        let load = move || -> anyhow::Result<Loaded> {
            let host = plugin_config::plugin_host(&root)?;
            let plugins = plugin_config::load_all(&host, &resolved)?;
            Ok(Loaded { _host: Some(host), plugins })
        };
        let handle = std::thread::Builder::new().name("berth-plugin-load".into()).spawn(load).context("starting the plugin loader thread")?;
        *this.loading.lock().unwrap() = Some(handle);
        Ok(this)
    }

    /// Waits for the loader (once) and returns what it loaded.
    fn ready(&self) -> anyhow::Result<Arc<Loaded>> {
        let loaded = self.loaded.get_or_init(|| {
            let handle = self.loading.lock().unwrap().take();
            match handle.map(JoinHandle::join) {
                Some(Ok(result)) => result.map(Arc::new).map_err(|e| format!("{e:#}")),
                Some(Err(_)) => Err("the plugin loader thread panicked".to_string()),
                None => Err("the plugins were never loaded".to_string()),
            }
        });
        match loaded {
            Ok(loaded) => Ok(loaded.clone()),
            Err(message) => Err(anyhow!("{message}")),
        }
    }

    fn of_kind(&self, kind: PluginKind) -> anyhow::Result<Vec<(ResolvedPlugin, LoadedPlugin)>> {
        Ok(self.ready()?.plugins.iter().filter(|(_, loaded)| loaded.kind() == kind).cloned().collect())
    }

    /// Every loaded plugin, in configured order.
    pub fn all(&self) -> anyhow::Result<Vec<(ResolvedPlugin, LoadedPlugin)>> {
        Ok(self.ready()?.plugins.clone())
    }

    /// The spec-mutators as berth-spec's chain, in order.
    pub fn spec_chain(&self) -> anyhow::Result<Vec<ChainEntry>> {
        Ok(self.of_kind(PluginKind::SpecMutator)?.into_iter().map(|(resolved, loaded)| resolved.chain_entry(loaded)).collect())
    }

    /// The snapshotter-selector (the first configured one).
    pub fn selector(&self) -> anyhow::Result<Option<(ResolvedPlugin, LoadedPlugin)>> {
        Ok(self.of_kind(PluginKind::SnapshotterSelector)?.into_iter().next())
    }

    /// The source-resolvers, in order.
    pub fn resolvers(&self) -> anyhow::Result<Vec<(ResolvedPlugin, LoadedPlugin)>> {
        self.of_kind(PluginKind::SourceResolver)
    }
}
