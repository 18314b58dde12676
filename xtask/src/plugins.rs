//! Builds every crate under plugins/ for wasm32-wasip2 (owned by the SDK/plugins work).

use std::path::{Path, PathBuf};

/// Builds all reference plugins; returns the .wasm paths.
pub fn build_all(_root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    anyhow::bail!("build-plugins is not written yet")
}

/// Where the built `.wasm` components land (`<name>.wasm`, dash names).
pub fn output_dir(root: &Path) -> PathBuf {
    root.join("target/wasm32-wasip2/plugin")
}
