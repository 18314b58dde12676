//! `[[plugin]]` tables: which plugins load, in what order, with what
//! config, grants, limits; plus the `--plugin*` / `--grant` flags that add
//! or override entries for one run.
//!
//! ```toml
//! [[plugin]]
//! name = "nomad"                 # default: the file stem
//! path = "plugins/nomad_task.wasm"   # relative to berth.toml's directory
//! kind = "spec-mutator"          # spec-mutator | snapshotter-selector | source-resolver
//! order = 10                     # default: position in the file
//! grants = ["env", "mounts", "capabilities"]   # adjustment fields (spec-mutator only); "all"
//! optional = false               # true: skip with a warning when it fails
//! override = false               # true: may overwrite a scalar an earlier plugin set
//! limits = { timeout-ms = 200, memory-mb = 64, output-kb = 256 }
//! [plugin.config]                # free-form; handed to the plugin as JSON
//! secrets_dir = "/run/secrets"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use berth_plugin::{HostOptions, Limits, LoadRequest, LoadedPlugin, PluginHost, PluginKind};
use berth_spec::{ChainEntry, Grants};
use serde::{Deserialize, Serialize};

/// One `[[plugin]]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PluginEntry {
    /// The name errors, logs and flags use; default: the file stem.
    #[serde(default)]
    pub name: Option<String>,
    /// The .wasm component; relative paths are relative to berth.toml.
    pub path: PathBuf,
    /// Checked against the component's exports; default: whatever it is.
    #[serde(default)]
    pub kind: Option<PluginKind>,
    /// Lower runs first; default: the table's position.
    #[serde(default)]
    pub order: Option<i64>,
    /// Free-form table handed to every call as JSON.
    #[serde(default)]
    pub config: toml::Table,
    /// Adjustment fields a spec-mutator may touch (`env`, `mounts`, ... or `all`).
    #[serde(default)]
    pub grants: Vec<String>,
    #[serde(default)]
    pub optional: bool,
    #[serde(default, rename = "override")]
    pub may_override: bool,
    #[serde(default)]
    pub limits: LimitsEntry,
}

/// `limits = { ... }` of a `[[plugin]]` table; unset keys take the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsEntry {
    pub timeout_ms: Option<u64>,
    pub memory_mb: Option<u64>,
    pub output_kb: Option<u64>,
}

impl LimitsEntry {
    pub fn apply(&self, mut limits: Limits) -> Limits {
        if let Some(ms) = self.timeout_ms {
            limits.timeout = Duration::from_millis(ms);
        }
        if let Some(mb) = self.memory_mb {
            limits.memory_bytes = (mb as usize).saturating_mul(1 << 20);
        }
        if let Some(kb) = self.output_kb {
            limits.output_bytes = (kb as usize).saturating_mul(1 << 10);
        }
        limits
    }

    fn set(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        let n: u64 = value.parse().with_context(|| format!("limit `{key}` needs a whole number, got `{value}`"))?;
        if n == 0 {
            bail!("limit `{key}` must be positive");
        }
        match key {
            "timeout-ms" => self.timeout_ms = Some(n),
            "memory-mb" => self.memory_mb = Some(n),
            "output-kb" => self.output_kb = Some(n),
            other => bail!("unknown limit `{other}` (expected timeout-ms, memory-mb or output-kb)"),
        }
        Ok(())
    }
}

/// Flags that add plugins or override `[[plugin]]` keys for one run.
/// Commands that load plugins flatten this.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PluginFlags {
    /// Load a plugin for this run (repeatable): `[NAME=]PATH[:KIND]`. NAME
    /// defaults to the file stem; a name berth.toml already has replaces that
    /// entry's path (and kind, when given).
    #[arg(long = "plugin", value_name = "[NAME=]PATH[:KIND]")]
    pub plugins: Vec<String>,
    /// Set a key of a plugin's config (repeatable): `NAME.KEY=VALUE`; KEY may
    /// be dotted (`a.b`); VALUE is read as TOML when it parses (`true`, `64`,
    /// `["a"]`), else as a string.
    #[arg(long = "plugin-config", id = "plugin_config", value_name = "NAME.KEY=VALUE")]
    pub config: Vec<String>,
    /// Replace a plugin's grants (repeatable): `NAME=FIELD,FIELD...` (`NAME=` grants nothing).
    #[arg(long = "grant", value_name = "NAME=FIELD,...")]
    pub grants: Vec<String>,
    /// Set a plugin's order (repeatable): `NAME=N`.
    #[arg(long = "plugin-order", value_name = "NAME=N")]
    pub order: Vec<String>,
    /// Mark a plugin optional (repeatable): `NAME` or `NAME=false`.
    #[arg(long = "plugin-optional", value_name = "NAME[=BOOL]")]
    pub optional: Vec<String>,
    /// Let a plugin override earlier plugins' scalars (repeatable): `NAME` or `NAME=false`.
    #[arg(long = "plugin-override", value_name = "NAME[=BOOL]")]
    pub may_override: Vec<String>,
    /// Set a plugin's limit (repeatable): `NAME.timeout-ms=N`, `NAME.memory-mb=N`, `NAME.output-kb=N`.
    #[arg(long = "plugin-limit", value_name = "NAME.KEY=N")]
    pub limits: Vec<String>,
    /// Ignore berth.toml's `[[plugin]]` tables: only `--plugin` ones load.
    #[arg(long = "no-config-plugins")]
    pub no_config_plugins: bool,
}

impl PluginFlags {
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
            && self.config.is_empty()
            && self.grants.is_empty()
            && self.order.is_empty()
            && self.optional.is_empty()
            && self.may_override.is_empty()
            && self.limits.is_empty()
            && !self.no_config_plugins
    }
}

/// One plugin as this run will load it: file entries merged with flags,
/// names and paths settled, grants parsed.
#[derive(Debug, Clone)]
pub struct ResolvedPlugin {
    pub name: String,
    pub path: PathBuf,
    pub kind: Option<PluginKind>,
    pub order: i64,
    pub config: serde_json::Value,
    pub grants: Grants,
    pub grant_names: Vec<String>,
    pub optional: bool,
    pub may_override: bool,
    pub limits: LimitsEntry,
}

impl ResolvedPlugin {
    /// What `PluginHost::load` needs; `defaults` are the host's limits.
    pub fn load_request(&self, defaults: Limits) -> LoadRequest {
        let mut req = LoadRequest::new(&self.name, &self.path)
            .config(self.config.clone())
            .limits(self.limits.apply(defaults))
            .optional(self.optional);
        req.kind = self.kind;
        req
    }

    /// The chain step berth-spec runs for a loaded spec-mutator.
    pub fn chain_entry(&self, plugin: LoadedPlugin) -> ChainEntry {
        ChainEntry::new(Box::new(plugin), self.grants.clone())
            .optional(self.optional)
            .may_override(self.may_override)
    }
}

fn stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

fn split_pair<'a>(flag: &str, value: &'a str) -> anyhow::Result<(&'a str, &'a str)> {
    value.split_once('=').with_context(|| format!("{flag} `{value}`: expected NAME=VALUE"))
}

fn parse_bool_flag<'a>(flag: &str, value: &'a str) -> anyhow::Result<(&'a str, bool)> {
    match value.split_once('=') {
        None => Ok((value, true)),
        Some((name, b)) => {
            let b = b.parse().with_context(|| format!("{flag} `{value}`: `{b}` is not true or false"))?;
            Ok((name, b))
        }
    }
}

/// Parses `[NAME=]PATH[:KIND]`.
pub fn parse_plugin_flag(value: &str) -> anyhow::Result<(Option<String>, PathBuf, Option<PluginKind>)> {
    let (name, rest) = match value.split_once('=') {
        Some((name, rest)) if !name.is_empty() && !name.contains('/') => (Some(name.to_string()), rest),
        _ => (None, value),
    };
    let (path, kind) = match rest.rsplit_once(':') {
        Some((path, kind)) => match kind.parse::<PluginKind>() {
            Ok(kind) => (path, Some(kind)),
            Err(e) if !kind.contains('/') => bail!("--plugin `{value}`: {e}"),
            Err(_) => (rest, None),
        },
        None => (rest, None),
    };
    if path.is_empty() {
        bail!("--plugin `{value}`: no path");
    }
    Ok((name, PathBuf::from(path), kind))
}

/// A `--plugin-config` VALUE: TOML when it parses as a value, else a string.
fn parse_config_value(value: &str) -> toml::Value {
    let doc = format!("v = {value}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(value.to_string())),
        Err(_) => toml::Value::String(value.to_string()),
    }
}

fn set_dotted(table: &mut toml::Table, key: &str, value: toml::Value) -> anyhow::Result<()> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().filter(|k| !k.is_empty()).with_context(|| format!("empty config key in `{key}`"))?;
    let mut cur = table;
    for part in parts {
        let entry = cur.entry(part.to_string()).or_insert_with(|| toml::Value::Table(Default::default()));
        cur = entry.as_table_mut().with_context(|| format!("config key `{part}` (in `{key}`) is not a table"))?;
    }
    cur.insert(last.to_string(), value);
    Ok(())
}

/// Merges `[[plugin]]` tables with the flags, resolves relative paths
/// against `base_dir` (berth.toml's directory; flag paths stay relative to
/// the working directory), sorts by order (then position) and checks names
/// and grants. Errors name the plugin and the key.
pub fn resolve(entries: &[PluginEntry], flags: &PluginFlags, base_dir: Option<&Path>) -> anyhow::Result<Vec<ResolvedPlugin>> {
    let mut list: Vec<(PluginEntry, bool)> = Vec::new(); // (entry, from flags)
    if !flags.no_config_plugins {
        for entry in entries {
            let mut entry = entry.clone();
            if entry.path.is_relative()
                && let Some(base) = base_dir
            {
                entry.path = base.join(&entry.path);
            }
            list.push((entry, false));
        }
    }
    let name_of = |e: &PluginEntry| e.name.clone().unwrap_or_else(|| stem(&e.path));
    for value in &flags.plugins {
        let (name, path, kind) = parse_plugin_flag(value)?;
        let name = name.unwrap_or_else(|| stem(&path));
        if let Some((existing, _)) = list.iter_mut().find(|(e, _)| name_of(e) == name) {
            existing.path = path;
            if kind.is_some() {
                existing.kind = kind;
            }
        } else {
            list.push((PluginEntry { name: Some(name), path, kind, ..Default::default() }, true));
        }
    }

    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    for (i, (entry, _)) in list.iter().enumerate() {
        let name = name_of(entry);
        if name.is_empty() || name.contains(['.', '=', ' ']) {
            bail!("plugin name `{name}` ({}) must be non-empty without `.`, `=` or spaces", entry.path.display());
        }
        if by_name.insert(name.clone(), i).is_some() {
            bail!("two plugins are named `{name}`; give one a different `name`");
        }
    }
    let find = |flag: &str, name: &str| -> anyhow::Result<usize> {
        by_name.get(name).copied().with_context(|| {
            let known: Vec<&str> = by_name.keys().map(String::as_str).collect();
            format!("{flag}: no plugin named `{name}` (configured: {})", if known.is_empty() { "none".to_string() } else { known.join(", ") })
        })
    };

    for value in &flags.config {
        let (lhs, v) = split_pair("--plugin-config", value)?;
        let (name, key) = lhs.split_once('.').with_context(|| format!("--plugin-config `{value}`: expected NAME.KEY=VALUE"))?;
        let i = find("--plugin-config", name)?;
        set_dotted(&mut list[i].0.config, key, parse_config_value(v)).with_context(|| format!("--plugin-config `{value}`"))?;
    }
    for value in &flags.grants {
        let (name, fields) = split_pair("--grant", value)?;
        let i = find("--grant", name)?;
        list[i].0.grants = fields.split(',').map(str::trim).filter(|f| !f.is_empty()).map(String::from).collect();
    }
    for value in &flags.order {
        let (name, n) = split_pair("--plugin-order", value)?;
        let i = find("--plugin-order", name)?;
        list[i].0.order = Some(n.parse().with_context(|| format!("--plugin-order `{value}`: `{n}` is not an integer"))?);
    }
    for value in &flags.optional {
        let (name, b) = parse_bool_flag("--plugin-optional", value)?;
        let i = find("--plugin-optional", name)?;
        list[i].0.optional = b;
    }
    for value in &flags.may_override {
        let (name, b) = parse_bool_flag("--plugin-override", value)?;
        let i = find("--plugin-override", name)?;
        list[i].0.may_override = b;
    }
    for value in &flags.limits {
        let (lhs, n) = split_pair("--plugin-limit", value)?;
        let (name, key) = lhs.split_once('.').with_context(|| format!("--plugin-limit `{value}`: expected NAME.KEY=N"))?;
        let i = find("--plugin-limit", name)?;
        list[i].0.limits.set(key, n).with_context(|| format!("--plugin-limit `{value}`"))?;
    }

    let mut out = Vec::with_capacity(list.len());
    for (position, (entry, _)) in list.into_iter().enumerate() {
        let name = name_of(&entry);
        let grants = Grants::parse(&entry.grants).with_context(|| format!("plugin `{name}`: key `grants`"))?;
        if !grants.is_empty() && entry.kind.is_some_and(|k| k != PluginKind::SpecMutator) {
            bail!("plugin `{name}`: key `grants` applies to spec-mutator plugins only (this one is a {})", entry.kind.unwrap());
        }
        let config = serde_json::to_value(&entry.config)
            .with_context(|| format!("plugin `{name}`: key `config` cannot be expressed as JSON"))?;
        out.push(ResolvedPlugin {
            name,
            path: entry.path,
            kind: entry.kind,
            order: entry.order.unwrap_or(position as i64),
            config,
            grants,
            grant_names: entry.grants,
            optional: entry.optional,
            may_override: entry.may_override,
            limits: entry.limits,
        });
    }
    // Stable: equal orders keep their position.
    out.sort_by_key(|p| p.order);
    Ok(out)
}

/// Where compiled plugins are cached: `<root>/plugin-cache` when it can be
/// created, else `$XDG_CACHE_HOME/berth/plugins` or `~/.cache/berth/plugins`.
pub fn cache_dir(root: &Path) -> Option<PathBuf> {
    let primary = root.join("plugin-cache");
    if std::fs::create_dir_all(&primary).is_ok() {
        return Some(primary);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("berth/plugins"))
}

/// A plugin host with the on-disk cache under `root`, sized for one `berth`
/// command: its calls are sequential, so a few pool slots suffice (each
/// slot's guard pages cost setup time on every start; the default of 64
/// is for long-running hosts serving concurrent calls).
pub fn plugin_host(root: &Path) -> anyhow::Result<PluginHost> {
    PluginHost::new(HostOptions { cache_dir: cache_dir(root), max_instances: 4, ..HostOptions::default() })
}

/// Loads every resolved plugin in order. A plugin that fails to load is an
/// error, unless it is optional: then it is left out with a warning.
///
/// One after the other on purpose: loaded side by side in threads, each
/// load took 2-5 ms instead of 0.6-1.2 on the 2-core VM (their mmaps and
/// mprotects share the process's memory-map lock), and `berth run` got
/// slower (interleaved medians 24.2 against 23.8 ms).
pub fn load_all(host: &PluginHost, plugins: &[ResolvedPlugin]) -> anyhow::Result<Vec<(ResolvedPlugin, LoadedPlugin)>> {
    let defaults = host.options().limits;
    let mut out = Vec::with_capacity(plugins.len());
    for p in plugins {
        match host.load(p.load_request(defaults)) {
            Ok(loaded) => out.push((p.clone(), loaded)),
            Err(err) if p.optional => {
                tracing::warn!(plugin = %p.name, error = %err, "optional plugin failed to load; skipped");
            }
            Err(err) => return Err(anyhow::Error::new(err).context(format!("cannot load plugin `{}`", p.name))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Vec<PluginEntry>> {
        Ok(crate::config::Config::parse(text, Path::new("berth.toml"))?.plugins)
    }

    #[test]
    fn every_key_parses() {
        let entries = parse(
            r#"
            [[plugin]]
            name = "nomad"
            path = "plugins/nomad_task.wasm"
            kind = "spec-mutator"
            order = 5
            grants = ["env", "mounts"]
            optional = true
            override = true
            limits = { timeout-ms = 50, memory-mb = 16, output-kb = 8 }
            [plugin.config]
            secrets = "/run/secrets"
            nested = { a = 1 }

            [[plugin]]
            path = "/opt/auto.wasm"
            kind = "snapshotter-selector"
            "#,
        )
        .unwrap();
        let resolved = resolve(&entries, &PluginFlags::default(), Some(Path::new("/etc/berth"))).unwrap();
        assert_eq!(resolved.len(), 2);
        // order 5 vs position 1: the selector sorts first.
        assert_eq!(resolved[0].name, "auto");
        assert_eq!(resolved[0].path, Path::new("/opt/auto.wasm"));
        let nomad = &resolved[1];
        assert_eq!(nomad.path, Path::new("/etc/berth/plugins/nomad_task.wasm"));
        assert_eq!(nomad.kind, Some(PluginKind::SpecMutator));
        assert_eq!(nomad.config, serde_json::json!({"secrets": "/run/secrets", "nested": {"a": 1}}));
        assert!(nomad.grants.contains(berth_spec::Field::Env) && nomad.grants.contains(berth_spec::Field::Mounts));
        assert!(nomad.optional && nomad.may_override);
        let limits = nomad.limits.apply(Limits::default());
        assert_eq!(limits.timeout, Duration::from_millis(50));
        assert_eq!(limits.memory_bytes, 16 << 20);
        assert_eq!(limits.output_bytes, 8 << 10);
    }

    #[test]
    fn unknown_keys_and_values_are_named() {
        let err = format!("{:#}", parse("[[plugin]]\npath = \"a.wasm\"\ngrant = [\"env\"]\n").unwrap_err());
        assert!(err.contains("grant"), "{err}");
        let err = format!("{:#}", parse("[[plugin]]\npath = \"a.wasm\"\nlimits = { timeout = 5 }\n").unwrap_err());
        assert!(err.contains("timeout"), "{err}");
        let err = format!("{:#}", parse("[[plugin]]\npath = \"a.wasm\"\nkind = \"mutator\"\n").unwrap_err());
        assert!(err.contains("mutator"), "{err}");
        let entries = parse("[[plugin]]\npath = \"a.wasm\"\ngrants = [\"env\", \"kernel\"]\n").unwrap();
        let err = format!("{:#}", resolve(&entries, &PluginFlags::default(), None).unwrap_err());
        assert!(err.contains("`a`") && err.contains("grants") && err.contains("kernel"), "{err}");
        let entries = parse("[[plugin]]\npath = \"a.wasm\"\n[[plugin]]\npath = \"x/a.wasm\"\n").unwrap();
        let err = resolve(&entries, &PluginFlags::default(), None).unwrap_err().to_string();
        assert!(err.contains("two plugins are named `a`"), "{err}");
        let entries = parse("[[plugin]]\npath = \"a.wasm\"\nkind = \"source-resolver\"\ngrants = [\"env\"]\n").unwrap();
        let err = resolve(&entries, &PluginFlags::default(), None).unwrap_err().to_string();
        assert!(err.contains("spec-mutator plugins only"), "{err}");
    }

    #[test]
    fn flags_add_and_override() {
        let entries = parse("[[plugin]]\nname = \"res\"\npath = \"res.wasm\"\ngrants = [\"resources\"]\n[plugin.config]\nx = 1\n").unwrap();
        let flags = PluginFlags {
            plugins: vec!["/tmp/priv.wasm:spec-mutator".into(), "other=/tmp/o.wasm".into(), "res=/new/res.wasm".into()],
            config: vec!["priv.enabled=true".into(), "res.x=2".into(), "res.deep.key=hello world".into()],
            grants: vec!["priv=privileged,capabilities".into(), "res=".into()],
            order: vec!["other=-1".into()],
            optional: vec!["other".into()],
            may_override: vec!["priv=true".into()],
            limits: vec!["priv.timeout-ms=20".into()],
            no_config_plugins: false,
        };
        let resolved = resolve(&entries, &flags, Some(Path::new("/etc/berth"))).unwrap();
        let names: Vec<&str> = resolved.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["other", "res", "priv"]);
        let (other, res, privileged) = (&resolved[0], &resolved[1], &resolved[2]);
        assert!(other.optional && other.kind.is_none());
        assert_eq!(res.path, Path::new("/new/res.wasm"));
        assert_eq!(res.config, serde_json::json!({"x": 2, "deep": {"key": "hello world"}}));
        assert!(res.grants.is_empty());
        assert_eq!(privileged.kind, Some(PluginKind::SpecMutator));
        assert_eq!(privileged.config, serde_json::json!({"enabled": true}));
        assert!(privileged.grants.contains(berth_spec::Field::Privileged));
        assert!(privileged.may_override);
        assert_eq!(privileged.limits.timeout_ms, Some(20));

        let bad = PluginFlags { grants: vec!["nope=env".into()], ..Default::default() };
        let err = resolve(&entries, &bad, None).unwrap_err().to_string();
        assert!(err.contains("no plugin named `nope`") && err.contains("res"), "{err}");
        let bad = PluginFlags { plugins: vec!["a.wasm:mutator".into()], ..Default::default() };
        assert!(resolve(&entries, &bad, None).unwrap_err().to_string().contains("unknown plugin kind"));
        let only = PluginFlags { plugins: vec!["/x/y.wasm".into()], no_config_plugins: true, ..Default::default() };
        let resolved = resolve(&entries, &only, None).unwrap();
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].name, "y");
    }

    /// Loaded side by side, the plugins come back in configured order; an
    /// optional one that cannot load is left out, a required one fails the
    /// whole load naming it (real reference plugins: `cargo xtask build-plugins`).
    #[test]
    fn load_all_keeps_the_order_and_the_optional_rule() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/plugin");
        let names = ["seccomp-default", "resources", "privileged", "nomad-task"];
        if let Some(missing) = names.iter().map(|n| dir.join(format!("{n}.wasm"))).find(|p| !p.is_file()) {
            eprintln!("SKIP: {} not built (cargo xtask build-plugins)", missing.display());
            return;
        }
        let mut text = String::new();
        for name in names {
            text.push_str(&format!("[[plugin]]\nname = \"{name}\"\npath = \"{name}.wasm\"\n"));
            if name == "resources" {
                text.push_str("[[plugin]]\nname = \"absent\"\npath = \"absent.wasm\"\noptional = true\n");
            }
        }
        let resolved = resolve(&parse(&text).unwrap(), &PluginFlags::default(), Some(&dir)).unwrap();
        let cache = tempfile::tempdir().unwrap();
        let host = plugin_host(cache.path()).unwrap();
        let loaded = load_all(&host, &resolved).unwrap();
        let order: Vec<(&str, &str)> = loaded.iter().map(|(p, l)| (p.name.as_str(), l.name())).collect();
        assert_eq!(order, names.map(|n| (n, n)));

        let text = text.replace("optional = true\n", "");
        let resolved = resolve(&parse(&text).unwrap(), &PluginFlags::default(), Some(&dir)).unwrap();
        let err = format!("{:#}", load_all(&host, &resolved).unwrap_err());
        assert!(err.contains("cannot load plugin `absent`") && err.contains("absent.wasm"), "{err}");
    }
}
