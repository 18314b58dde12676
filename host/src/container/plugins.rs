//! Every configured plugin, loaded once per `berth` invocation and sorted by kind.

use std::path::Path;

use anyhow::Context;
use berth_plugin::{LoadedPlugin, PluginHost, PluginKind};
use berth_spec::ChainEntry;

use crate::cli::plugin::PluginFlags;
use crate::config::Config;
use crate::config::plugins::{self as plugin_config, ResolvedPlugin};

/// The plugins of this run, in configured order.
pub struct LoadedPlugins {
    pub host: PluginHost,
    pub plugins: Vec<(ResolvedPlugin, LoadedPlugin)>,
}

impl LoadedPlugins {
    /// Resolves `[[plugin]]` tables and flags and loads each plugin (from
    /// the compile cache under `root` when it is there). An optional plugin
    /// that cannot load is skipped with a warning; any other fails the run.
    pub fn load(config: &Config, config_path: Option<&Path>, flags: &PluginFlags, root: &Path) -> anyhow::Result<Self> {
        let base = config_path.and_then(Path::parent);
        let resolved = plugin_config::resolve(&config.plugins, flags, base).context("invalid plugin configuration")?;
        let host = plugin_config::plugin_host(root)?;
        let plugins = plugin_config::load_all(&host, &resolved)?;
        Ok(LoadedPlugins { host, plugins })
    }

    fn of_kind(&self, kind: PluginKind) -> impl Iterator<Item = &(ResolvedPlugin, LoadedPlugin)> {
        self.plugins.iter().filter(move |(_, loaded)| loaded.kind() == kind)
    }

    /// The spec-mutators as berth-spec's chain, in order.
    pub fn spec_chain(&self) -> anyhow::Result<Vec<ChainEntry>> {
        Ok(self.of_kind(PluginKind::SpecMutator).map(|(resolved, loaded)| resolved.chain_entry(loaded.clone())).collect())
    }

    /// The snapshotter-selector (the first configured one).
    pub fn selector(&self) -> Option<&(ResolvedPlugin, LoadedPlugin)> {
        self.of_kind(PluginKind::SnapshotterSelector).next()
    }

    /// The source-resolvers, in order.
    pub fn resolvers(&self) -> Vec<&(ResolvedPlugin, LoadedPlugin)> {
        self.of_kind(PluginKind::SourceResolver).collect()
    }
}
