//! The plugin's `config` table, as the host passes it (JSON).

use serde::de::DeserializeOwned;

use crate::PluginError;

/// The operator's `config` table for this plugin (from `berth.toml`), as the
/// JSON text the host hands over. An absent table is `{}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    raw: String,
}

impl Config {
    pub fn new(raw: impl Into<String>) -> Self {
        Config { raw: raw.into() }
    }

    /// An empty table.
    pub fn empty() -> Self {
        Config::new("{}")
    }

    /// From a `serde_json::Value` (handy in tests).
    pub fn from_value(value: serde_json::Value) -> Self {
        Config::new(value.to_string())
    }

    /// The JSON text as received.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The JSON text to parse: the text as received, trimmed, with an
    /// empty or `null` config as `{}`. For a plugin that deserializes the
    /// table its own way (e.g. with a `serde_json::Deserializer` that visits
    /// only the key it needs) instead of through [`Config::parse`].
    pub fn json(&self) -> &str {
        let t = self.raw.trim();
        if t.is_empty() || t == "null" { "{}" } else { t }
    }

    /// The message of a config that is not valid JSON (the error of
    /// [`Config::parse`]).
    pub fn invalid(e: &serde_json::Error) -> PluginError {
        PluginError::InvalidConfig(format!("invalid plugin config: {e}"))
    }

    /// Parses the table into `T` (use `#[serde(default, deny_unknown_fields)]`
    /// on `T` so a misspelt key is an error). Failures become
    /// [`PluginError::InvalidConfig`] naming the offending key and position.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        serde_json::from_str(self.json()).map_err(|e| Config::invalid(&e))
    }

    /// The table as a `serde_json::Value` (an object; `{}` when absent).
    pub fn value(&self) -> Result<serde_json::Value, PluginError> {
        self.parse()
    }
}

impl From<serde_json::Value> for Config {
    fn from(value: serde_json::Value) -> Self {
        Config::from_value(value)
    }
}

impl From<&str> for Config {
    fn from(raw: &str) -> Self {
        Config::new(raw)
    }
}
