//! clap commands; `berth.toml` and flags.
//!
//! One file per command group. Each group's `run` returns `anyhow::Result`;
//! errors are printed once here, with their whole context chain.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod containerd;
pub mod image;
pub mod gc;
pub mod plugin;
pub mod plugin_new;
pub mod pull;
pub mod run;
pub mod runtime;
pub mod snapshot;
pub mod spec;
pub mod worker;

/// Flags every command accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Configuration file (default: /etc/berth/berth.toml when it exists).
    #[arg(long, global = true, env = "BERTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// State and storage root (default: /var/lib/berth).
    #[arg(long, global = true, env = "BERTH_ROOT")]
    pub root: Option<PathBuf>,
    /// Log filter, as RUST_LOG (`info`, `berth_plugin=debug`...).
    #[arg(long, global = true, env = "BERTH_LOG", default_value = "warn")]
    pub log_level: String,
}

#[derive(Debug, Parser)]
#[command(name = "berth", version, about = "A container runtime host whose policy ships as WebAssembly plugins")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Snapshotters served to containerd.
    #[command(subcommand)]
    Snapshotter(containerd::SnapshotterCommand),
    /// Images: import (OCI layout, docker save), ls, inspect, rm, unpack.
    #[command(subcommand, alias = "images")]
    Image(image::ImageCommand),
    /// WebAssembly plugins: list, inspect, check, benchmark, scaffold.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Snapshots of berth's snapshotters, `ctr snapshot` style (debugging).
    #[command(alias = "snapshots")]
    Snapshot(snapshot::SnapshotArgs),
    /// Print the config.json a container would get: containerd's default spec,
    /// the image config, then the spec-mutator plugins.
    Spec(spec::SpecArgs),
    /// Run a container: image, snapshot, spec-mutator plugins, executor.
    Run(Box<run::RunArgs>),
    /// List containers.
    Ps(run::PsArgs),
    /// Signal a container's init process.
    Kill(run::KillArgs),
    /// Remove containers (their snapshot, cgroup and state).
    Rm(run::RmArgs),
    /// Run a command in a running container (its env, user, capabilities).
    Exec(run::ExecArgs),
    /// Print what a detached container wrote.
    Logs(run::LogsArgs),
    /// Remove content and snapshots nothing references (images, leases, gc.root).
    Gc(gc::GcArgs),
    /// runc-compatible OCI runtime over berth's executor (for containerd's
    /// shim `BinaryName`, podman `--runtime`); also reachable as a link named `berth-runc`.
    Runtime(runtime::RuntimeArgs),
    /// This worker: id, labels, platforms, snapshotter, network, GC policy
    /// (`buildctl debug workers -v`).
    Worker(worker::WorkerArgs),
}

pub fn main() -> ExitCode {
    // Called through a link named `...runc`: runc's exact command line.
    if std::env::args_os().next().is_some_and(|a| std::path::Path::new(&a).file_name().is_some_and(|n| n.to_string_lossy().ends_with("runc"))) {
        return runtime::main_runc();
    }
    let mut cli = Cli::parse();
    // First thing after parsing (the detached id before any thread): every
    // bit of delay before it lengthens `berth run` (see
    // run::prepay_attach_grace_period).
    let grace = match &mut cli.command {
        Command::Run(args) => {
            run::adopt_detached_id(args);
            run::prepay_attach_grace_period(args)
        }
        _ => None,
    };
    init_logging(&cli.global.log_level);
    match run(cli, grace) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("berth: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, grace: Option<berth_runtime::cgroups::grace_period::AttachGracePeriod>) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Snapshotter(command) => containerd::run(&cli.global, command),
        Command::Image(command) => image::run(&cli.global, command),
        Command::Plugin(command) => plugin::run(&cli.global, command),
        Command::Snapshot(args) => snapshot::run(&cli.global, args),
        Command::Spec(args) => spec::run(&cli.global, args).map(|()| ExitCode::SUCCESS),
        Command::Run(args) => run::run(&cli.global, *args, grace),
        Command::Gc(args) => gc::run(&cli.global, &args),
        Command::Worker(args) => worker::run(&cli.global, args),
        Command::Exec(args) => run::exec(&cli.global, args),
        Command::Runtime(args) => runtime::main(&cli.global, args),
        Command::Ps(args) => run::ps(&cli.global, args),
        Command::Kill(args) => run::kill(&cli.global, args),
        Command::Rm(args) => run::rm(&cli.global, args),
        Command::Logs(args) => run::logs(&cli.global, args),
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
