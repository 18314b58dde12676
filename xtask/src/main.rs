//! `cargo xtask`: build the plugins, run the demo, the tests and the benchmarks.
//!
//! Every step is a plain `cargo`/binary invocation printed before it runs, so a
//! failing step can be re-run by hand.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

mod bench;
mod demo;
mod plugins;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_else(|| "help".to_string());
    let rest: Vec<String> = args.collect();
    let root = workspace_root();
    match task.as_str() {
        "build-plugins" => plugins::build_all(&root).map(|_| ()),
        "build" => build(&root),
        "demo" => {
            build(&root)?;
            demo::run(&root)
        }
        "test" => test(&root, &rest),
        "bench-run" => {
            build(&root)?;
            let runs = rest.first().map(|r| r.parse()).transpose()?.unwrap_or(50);
            bench::run(&root, runs)
        }
        "help" | "--help" | "-h" => {
            println!("cargo xtask <build-plugins|build|demo|test [cargo test args]|bench-run [RUNS]>");
            Ok(())
        }
        other => bail!("unknown task `{other}` (try: build-plugins, build, demo, test, bench-run)"),
    }
}

/// The plugins (wasm32-wasip2) and the `berth` binary, release profile.
fn build(root: &Path) -> anyhow::Result<()> {
    plugins::build_all(root)?;
    run(cargo(root).args(["build", "--release", "-p", "berth-host"]))
}

/// Everything the README's test command covers: the plugins, then every
/// test of the workspace. The `berth` binary the integration tests run
/// (`BERTH_BIN`) is built by the same `cargo test`, with the test build's
/// features: a separate `cargo build -p berth-host` first would resolve
/// features differently and compile wasmtime a second time.
fn test(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    plugins::build_all(root)?;
    let mut command = cargo(root);
    command
        .args(["test", "--release", "--workspace", "--exclude", "xtask", "--no-fail-fast"])
        .args(extra);
    run(&mut command)
}

/// `cargo` in the workspace, with the paths the tests and the demo share.
fn cargo(root: &Path) -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .current_dir(root)
        .env("BERTH_BIN", berth_bin(root))
        .env("BERTH_PLUGIN_DIR", plugins::output_dir(root));
    command
}

/// The release `berth` binary.
pub fn berth_bin(root: &Path) -> PathBuf {
    root.join("target/release/berth")
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
