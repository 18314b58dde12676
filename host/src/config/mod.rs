//! `berth.toml`: the operator's configuration. Flags override it for one run.
//!
//! Sections, one module each:
//! - `[[plugin]]` tables ([`plugins`]): which plugins load, in what order, with
//!   what grants and config.
//! - `[worker]` ([`worker`]): buildkitd OCI-worker style settings (root,
//!   snapshotter, network mode, GC policy...).
//!
//! Unknown keys are errors that name the key.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

pub mod plugins;
pub mod worker;

/// Where `berth` looks when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/berth/berth.toml";

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    #[serde(default)]
    pub worker: worker::WorkerConfig,
    #[serde(default, rename = "plugin")]
    pub plugins: Vec<plugins::PluginEntry>,
}

impl Config {
    /// Parses `text`; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> anyhow::Result<Self> {
        toml::from_str(text).with_context(|| format!("invalid configuration in {}", origin.display()))
    }

    /// Loads `explicit`, or the default path when it exists, or the defaults.
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<(Self, Option<PathBuf>)> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None if Path::new(DEFAULT_PATH).exists() => PathBuf::from(DEFAULT_PATH),
            None => return Ok((Self::default(), None)),
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read configuration {}", path.display()))?;
        let config = Self::parse(&text, &path)?;
        Ok((config, Some(path)))
    }
}
