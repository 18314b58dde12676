//! The main job on a fresh machine: a real container started through real plugins.
//!
//! Builds a busybox image without network, writes a `berth.toml` loading the
//! reference plugins, imports the image and runs a container that prints what
//! the plugins changed (memory limit, capabilities, seccomp mode).

use std::path::Path;

pub fn run(_root: &Path) -> anyhow::Result<()> {
    anyhow::bail!("the demo is wired once `berth run` lands")
}
