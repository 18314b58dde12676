//! `cargo xtask`: build the plugins, run the demo, the tests and the benchmarks.
//!
//! Every step is a plain `cargo`/binary invocation printed before it runs, so a
//! failing step can be re-run by hand.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

mod plugins;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_else(|| "help".to_string());
    let rest: Vec<String> = args.collect();
    match task.as_str() {
        "build-plugins" => plugins::build_all(&workspace_root()).map(|_| ()),
        "help" | "--help" | "-h" => {
            println!("cargo xtask <build-plugins|demo|test|bench>");
            Ok(())
        }
        other => bail!("unknown task `{other}` (try: build-plugins, demo, test, bench); args: {rest:?}"),
    }
}

/// The workspace root: xtask's manifest dir's parent.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// Runs `command`, printing it first; fails with its exit status.
pub fn run(command: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: {command:?}");
    let status = command.status().with_context(|| format!("cannot start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}
