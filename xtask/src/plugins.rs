//! `cargo xtask build-plugins`: builds every crate under plugins/ for
//! wasm32-wasip2 with the `plugin` profile, in one cargo invocation, and gives
//! each component a stable name: `target/wasm32-wasip2/plugin/<package>.wasm`
//! (cargo writes `<lib_name>.wasm`, with underscores).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

pub const TARGET: &str = "wasm32-wasip2";
pub const PROFILE: &str = "plugin";

/// Where the built plugins are: `<target dir>/wasm32-wasip2/plugin`.
pub fn output_dir(root: &Path) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let target = if target.is_absolute() { target } else { root.join(target) };
    target.join(TARGET).join(PROFILE)
}

/// The package names of the crates under plugins/ (each dir with a Cargo.toml).
pub fn plugin_packages(root: &Path) -> anyhow::Result<Vec<String>> {
    let dir = root.join("plugins");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let manifest = entry?.path().join("Cargo.toml");
        if !manifest.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
        names.push(package_name(&text).with_context(|| format!("no package name in {}", manifest.display()))?);
    }
    names.sort();
    Ok(names)
}

/// `name = "..."` of the `[package]` table.
fn package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(rest) = line.strip_prefix("name") {
            let value = rest.trim_start().strip_prefix('=')?.trim();
            return Some(value.trim_matches('"').to_string());
        }
    }
    None
}

/// A component (not a core module): the wasm header's version/layer field.
fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [0x0d, 0x00, 0x01, 0x00]
}

/// Builds all reference plugins; returns the .wasm paths (dash names).
pub fn build_all(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let packages = plugin_packages(root)?;
    if packages.is_empty() {
        bail!("no plugin crates under {}", root.join("plugins").display());
    }
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(root).args(["build", "--target", TARGET, "--profile", PROFILE]);
    for p in &packages {
        command.args(["-p", p]);
    }
    crate::run(&mut command)
        .context("building the plugins (is the target installed? `rustup target add wasm32-wasip2`)")?;

    let out = output_dir(root);
    let mut paths = Vec::new();
    for p in &packages {
        let built = out.join(format!("{}.wasm", p.replace('-', "_")));
        let bytes = std::fs::read(&built).with_context(|| format!("plugin {p}: {} was not built", built.display()))?;
        if !is_component(&bytes) {
            bail!("plugin {p}: {} is a core module, not a component", built.display());
        }
        let stable = out.join(format!("{p}.wasm"));
        if stable != built {
            // Write then rename, so a loader never sees a half-copied file.
            let tmp = out.join(format!(".{p}.wasm.tmp"));
            std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &stable).with_context(|| format!("renaming to {}", stable.display()))?;
        }
        println!("{:>8} bytes  {}", bytes.len(), stable.display());
        paths.push(stable);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_name() {
        let m = "[package]\nname = \"nomad-task\"\nversion.workspace = true\n[lib]\nname = \"x\"\n";
        assert_eq!(package_name(m).as_deref(), Some("nomad-task"));
        assert_eq!(package_name("[lib]\nname = \"x\"\n"), None);
    }

    #[test]
    fn component_header() {
        assert!(is_component(b"\0asm\x0d\0\x01\0rest"));
        assert!(!is_component(b"\0asm\x01\0\0\0rest"));
    }
}
