//! `berth plugin new NAME --kind KIND [--dir D] [--sdk PATH]`: scaffolds a
//! plugin crate that builds for wasm32-wasip2 and loads unchanged.
//!
//! The crate depends on `berth-sdk` by path: `--sdk`, else the SDK of the
//! source tree this binary was built from (when it still exists), else the
//! registry version. Inside a berth checkout's `plugins/` directory the crate
//! joins the workspace like the reference plugins; anywhere else it is its
//! own workspace, with a copy of the berth checkout's Cargo.lock (when there
//! is one) so it builds with the same, already-fetched dependency versions.
//!
//! This file uses only std, anyhow and clap so the SDK's tests can compile it
//! on its own (sdk/tests/scaffold.rs).

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The plugin kinds, as `berth.toml` spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    SpecMutator,
    SnapshotterSelector,
    SourceResolver,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SpecMutator => "spec-mutator",
            Kind::SnapshotterSelector => "snapshotter-selector",
            Kind::SourceResolver => "source-resolver",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `berth plugin new` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct NewArgs {
    /// Crate and plugin name: lowercase letters, digits and dashes.
    pub name: String,
    /// What the plugin decides.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// Parent directory; the crate is created in DIR/NAME (default: the current directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Path of the berth-sdk crate to depend on.
    #[arg(long)]
    pub sdk: Option<PathBuf>,
}

/// Runs `berth plugin new`: scaffolds and prints what to do next.
pub fn run(args: &NewArgs) -> anyhow::Result<()> {
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let sdk = args.sdk.clone().or_else(default_sdk);
    let crate_dir = scaffold(&args.name, args.kind, &dir, sdk.as_deref())?;
    let wasm = args.name.replace('-', "_");
    println!("created {} ({})", crate_dir.display(), args.kind);
    println!("next:");
    println!("  cd {} && cargo test", crate_dir.display());
    println!("  cargo build --release --target wasm32-wasip2");
    println!("  # then load target/wasm32-wasip2/release/{wasm}.wasm from berth.toml (see the crate's README.md)");
    Ok(())
}

/// The SDK next to the sources this binary was built from, if still there.
pub fn default_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    sdk.join("Cargo.toml").is_file().then(|| sdk.canonicalize().unwrap_or(sdk))
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// The berth workspace root above `dir` (a Cargo.toml with `[workspace]` and
/// an `sdk/` and `plugins/` directory), if any.
fn berth_workspace(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| {
            d.join("sdk/Cargo.toml").is_file()
                && d.join("plugins").is_dir()
                && std::fs::read_to_string(d.join("Cargo.toml")).is_ok_and(|t| t.contains("[workspace]"))
        })
        .map(Path::to_path_buf)
}

/// Creates the crate `dir/name` for a plugin of `kind`; returns its path.
/// Fails if the directory already exists.
pub fn scaffold(name: &str, kind: Kind, dir: &Path, sdk: Option<&Path>) -> anyhow::Result<PathBuf> {
    if !valid_name(name) {
        bail!("invalid plugin name `{name}`: use lowercase letters, digits and single dashes, starting with a letter");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))?;
    let crate_dir = dir.join(name);
    if crate_dir.exists() {
        bail!("{} already exists", crate_dir.display());
    }
    // In a berth checkout's plugins/ dir: a workspace member like the reference plugins.
    let member_of = berth_workspace(&dir).filter(|root| dir == root.join("plugins"));

    let manifest = match &member_of {
        Some(_) => format!(
            r#"[package]
name = "{name}"
version = "0.1.0"
edition.workspace = true
license.workspace = true
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
berth-sdk.workspace = true
serde.workspace = true
serde_json.workspace = true
"#
        ),
        None => {
            let sdk_dep = match sdk {
                Some(p) => {
                    let p = p.canonicalize().with_context(|| format!("berth-sdk at {}", p.display()))?;
                    format!("berth-sdk = {{ path = {:?} }}", p.display().to_string())
                }
                None => "berth-sdk = \"0.1\"".to_string(),
            };
            format!(
                r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# cdylib: the wasm32-wasip2 component; rlib: native unit tests.
crate-type = ["cdylib", "rlib"]

[dependencies]
{sdk_dep}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

# Plugins ship small.
[profile.release]
opt-level = "s"
strip = true

# Its own workspace, wherever it is created.
[workspace]
"#
            )
        }
    };

    let src = crate_dir.join("src");
    std::fs::create_dir_all(&src).with_context(|| format!("creating {}", src.display()))?;
    let write = |path: PathBuf, text: &str| -> anyhow::Result<()> {
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write(crate_dir.join("Cargo.toml"), &manifest)?;
    write(src.join("lib.rs"), &lib_rs(kind))?;
    write(crate_dir.join("build.rs"), BUILD_RS)?;
    write(crate_dir.join("README.md"), &readme(name, kind, &crate_dir, member_of.as_deref()))?;
    if member_of.is_none() {
        write(crate_dir.join(".gitignore"), "/target\n")?;
        // The same dependency versions as the SDK's own checkout, when known.
        if let Some(lock) = sdk.and_then(berth_workspace).map(|root| root.join("Cargo.lock"))
            && lock.is_file()
        {
            std::fs::copy(&lock, crate_dir.join("Cargo.lock"))
                .with_context(|| format!("copying {}", lock.display()))?;
        }
    }
    Ok(crate_dir)
}

/// Every plugin's build script: a 128 KiB wasm stack (Rust's default is
/// 1 MiB); a smaller initial memory about halves the cost of a call.
const BUILD_RS: &str = r#"//! A 128 KiB wasm stack instead of Rust's 1 MiB default: the host gives every
//! call a fresh instance, and a smaller initial memory makes each call cheaper.
//! 512 KiB of initial memory: room for a call's heap above the stack and
//! data, so a call does not have to grow the memory.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_FAMILY").as_deref() == Ok("wasm") {
        println!("cargo:rustc-link-arg-cdylib=-zstack-size=131072");
        println!("cargo:rustc-link-arg-cdylib=--initial-memory=524288");
    }
}
"#;

fn readme(name: &str, kind: Kind, crate_dir: &Path, workspace: Option<&Path>) -> String {
    let wasm = name.replace('-', "_");
    // Absolute paths: berth.toml may live anywhere.
    let (build, path) = match workspace {
        Some(root) => (
            "cargo xtask build-plugins".to_string(),
            root.join(format!("target/wasm32-wasip2/plugin/{name}.wasm")).display().to_string(),
        ),
        None => (
            "cargo build --release --target wasm32-wasip2".to_string(),
            crate_dir.join(format!("target/wasm32-wasip2/release/{wasm}.wasm")).display().to_string(),
        ),
    };
    let grants = match kind {
        Kind::SpecMutator => "\ngrants = [\"env\"]",
        _ => "",
    };
    format!(
        r#"# {name}
A berth {kind} plugin.

    cargo test                    # native unit tests (berth_sdk::testing)
    {build}

Load it from `berth.toml`:

```toml
[[plugin]]
name = "{name}"
kind = "{kind}"
path = "{path}"{grants}
config = {{ }}
```
"#
    )
}

fn lib_rs(kind: Kind) -> String {
    match kind {
        Kind::SpecMutator => r#"//! A spec-mutator: sets the environment variables listed in its config.

use std::collections::BTreeMap;

use berth_sdk::prelude::*;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// `config = { env = { NAME = "value" } }`
    env: BTreeMap<String, String>,
}

pub struct Plugin;

impl SpecMutator for Plugin {
    fn info() -> PluginInfo {
        berth_sdk::plugin_info!("sets environment variables from its config")
    }

    fn mutate(container: ContainerView, config: Config) -> Result<Adjustment, PluginError> {
        let settings: Settings = config.parse()?;
        berth_sdk::debug!("container {}", container.id());
        let mut adjustment = Adjustment::default();
        for (key, value) in settings.env {
            adjustment = adjustment.env(key, value);
        }
        Ok(adjustment)
    }
}

berth_sdk::export!(Plugin as spec_mutator);

#[cfg(test)]
mod tests {
    use super::*;
    use berth_sdk::testing;

    #[test]
    fn sets_env_from_config() {
        let config = serde_json::json!({"env": {"GREETING": "hello"}});
        let adjustment = testing::mutate::<Plugin>(testing::container(), config).unwrap();
        assert_eq!(adjustment.env_set, vec![KeyValue::new("GREETING", "hello")]);
        assert!(testing::mutate::<Plugin>(testing::container(), "").unwrap().is_empty());
    }
}
"#
        .to_string(),
        Kind::SnapshotterSelector => r#"//! A snapshotter-selector: the snapshotter named in its config, else
//! overlayfs when it works, else native.

use berth_sdk::prelude::*;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// `config = { snapshotter = "native" }`
    snapshotter: Option<String>,
}

pub struct Plugin;

impl SnapshotterSelector for Plugin {
    fn info() -> PluginInfo {
        berth_sdk::plugin_info!("the configured snapshotter, else overlayfs, else native")
    }

    fn select(facts: HostFacts, config: Config) -> Result<SnapshotterChoice, PluginError> {
        let settings: Settings = config.parse()?;
        if let Some(name) = settings.snapshotter {
            if !facts.available.contains(&name) {
                return Err(PluginError::invalid_config(format!("unknown snapshotter `{name}`")));
            }
            return Ok(SnapshotterChoice::new(name, "configured"));
        }
        if facts.overlay_supported && facts.available.iter().any(|a| a == "overlayfs") {
            return Ok(SnapshotterChoice::new("overlayfs", "overlay mounts work"));
        }
        Ok(SnapshotterChoice::new("native", "overlay mounts do not work here"))
    }
}

berth_sdk::export!(Plugin as snapshotter_selector);

#[cfg(test)]
mod tests {
    use super::*;
    use berth_sdk::testing;

    #[test]
    fn picks_overlay_then_native() {
        assert_eq!(testing::select::<Plugin>(testing::host_facts(), "").unwrap().name, "overlayfs");
        let facts = HostFacts { overlay_supported: false, ..testing::host_facts() };
        assert_eq!(testing::select::<Plugin>(facts, "").unwrap().name, "native");
    }
}
"#
        .to_string(),
        Kind::SourceResolver => r#"//! A source-resolver: the mirror in its config first, then the registry.

use berth_sdk::prelude::*;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// `config = { mirror = "mirror.example.com" }`
    mirror: Option<String>,
}

pub struct Plugin;

impl SourceResolver for Plugin {
    fn info() -> PluginInfo {
        berth_sdk::plugin_info!("one pull mirror, then the registry")
    }

    fn resolve(request: ResolveRequest, config: Config) -> Result<Vec<Source>, PluginError> {
        let settings: Settings = config.parse()?;
        let mut sources = Vec::new();
        if let Some(mirror) = settings.mirror {
            let mut host = RegistryHost::https(mirror);
            host.capabilities = HostCapabilities::PULL | HostCapabilities::RESOLVE;
            sources.push(Source::registry(host));
        }
        sources.push(Source::registry(RegistryHost::https(request.reference.registry.clone())));
        Ok(sources)
    }
}

berth_sdk::export!(Plugin as source_resolver);

#[cfg(test)]
mod tests {
    use super::*;
    use berth_sdk::testing;

    #[test]
    fn mirror_first() {
        let request = testing::resolve_request("quay.io", "org/app", "v1");
        let sources = testing::resolve::<Plugin>(request, serde_json::json!({"mirror": "m.example.com"})).unwrap();
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[1], Source::registry(RegistryHost::https("quay.io")));
    }
}
"#
        .to_string(),
    }
}
