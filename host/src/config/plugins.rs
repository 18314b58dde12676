//! `[[plugin]]` tables: path, kind, order, config, grants, optional, override.

use serde::Deserialize;

/// One `[[plugin]]` table. Owned by the plugin platform work.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PluginEntry {
    pub path: std::path::PathBuf,
}
