//! `berth plugin ls|inspect|check|bench|new`.
//!
//! Plugins come from berth.toml's `[[plugin]]` tables and the `--plugin*`
//! flags; `inspect`, `check` and `bench` also take a .wasm path directly.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_plugin::{
    CallError, HostFacts, HostOptions, ImageReference, LoadedPlugin, Operation, PluginHost, PluginKind, ResolveRequest,
};
use clap::Subcommand;

use super::GlobalArgs;
use crate::config::Config;
use crate::config::plugins::{self as plugin_config, ResolvedPlugin};
pub use crate::config::plugins::PluginFlags;

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// List the configured plugins: name, kind, version, WIT version, digest.
    Ls(LsArgs),
    /// Show one plugin in detail (a configured name or a .wasm path).
    Inspect(InspectArgs),
    /// Load plugins and run each once against sample input for its kind;
    /// exits non-zero when any fails.
    Check(CheckArgs),
    /// Per-call latency (fresh instance per call), the chain of all
    /// spec-mutators, and load time from the compile cache.
    Bench(BenchArgs),
    /// Scaffold a plugin crate that builds and loads unchanged.
    New(super::plugin_new::NewArgs),
}

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub plugins: PluginFlags,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// A configured plugin name, or a path to a .wasm component.
    pub plugin: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub plugins: PluginFlags,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Configured plugin names or .wasm paths (default: every configured plugin).
    pub targets: Vec<String>,
    /// Input instead of the built-in sample, as JSON: a container view
    /// (spec-mutator), host facts (snapshotter-selector) or a resolve request
    /// (source-resolver), kebab-case keys.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// A request option in the sample container view (repeatable): `key=value`.
    #[arg(long = "opt", value_name = "KEY=VALUE")]
    pub opts: Vec<String>,
    /// Do not print the plugins' answers.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub plugins: PluginFlags,
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Configured plugin names or .wasm paths (default: every configured plugin).
    pub targets: Vec<String>,
    /// Calls per plugin.
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub calls: usize,
    /// A request option in the sample container view (repeatable): `key=value`.
    #[arg(long = "opt", value_name = "KEY=VALUE")]
    pub opts: Vec<String>,
    #[command(flatten)]
    pub plugins: PluginFlags,
}

pub fn run(global: &GlobalArgs, command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::Ls(args) => ls(global, args),
        PluginCommand::Inspect(args) => inspect(global, args),
        PluginCommand::Check(args) => check(global, args),
        PluginCommand::Bench(args) => bench(global, args),
        PluginCommand::New(args) => super::plugin_new::run(&args).map(|()| ExitCode::SUCCESS),
    }
}

/// The configuration file, the flags, and the plugin host with its cache.
struct Session {
    resolved: Vec<ResolvedPlugin>,
    host: PluginHost,
    root: PathBuf,
}

impl Session {
    /// `targets` that name .wasm files (rather than configured plugins) are
    /// added as `--plugin PATH`, so the other plugin flags can address them
    /// by their file stem.
    fn open(global: &GlobalArgs, flags: &PluginFlags, targets: &[String]) -> anyhow::Result<Session> {
        let (config, path) = Config::load(global.config.as_deref())?;
        let base = path.as_deref().and_then(Path::parent);
        let mut flags = flags.clone();
        for t in targets {
            if is_file_target(t) {
                flags.plugins.push(t.clone());
            }
        }
        let resolved = plugin_config::resolve(&config.plugins, &flags, base).with_context(|| match &path {
            Some(p) => format!("invalid plugin configuration ({} and flags)", p.display()),
            None => "invalid plugin flags".to_string(),
        })?;
        let root = global.root.clone().unwrap_or_else(|| PathBuf::from("/var/lib/berth"));
        let host = plugin_config::plugin_host(&root)?;
        Ok(Session { resolved, host, root })
    }

    /// The named targets (configured names or .wasm paths), or every configured plugin.
    fn targets(&self, targets: &[String]) -> anyhow::Result<Vec<ResolvedPlugin>> {
        if targets.is_empty() {
            if self.resolved.is_empty() {
                bail!("no plugins configured; name a .wasm file, use --plugin PATH, or add [[plugin]] tables to berth.toml");
            }
            return Ok(self.resolved.clone());
        }
        targets.iter().map(|t| self.target(t)).collect()
    }

    fn target(&self, target: &str) -> anyhow::Result<ResolvedPlugin> {
        let found = if is_file_target(target) {
            let path = Path::new(target);
            self.resolved.iter().find(|p| p.path == path)
        } else {
            self.resolved.iter().find(|p| p.name == target)
        };
        if let Some(p) = found {
            return Ok(p.clone());
        }
        let known: Vec<&str> = self.resolved.iter().map(|p| p.name.as_str()).collect();
        bail!(
            "`{target}` is neither a configured plugin ({}) nor a file",
            if known.is_empty() { "none configured".to_string() } else { known.join(", ") }
        )
    }

    fn load(&self, p: &ResolvedPlugin) -> anyhow::Result<LoadedPlugin> {
        self.host
            .load(p.load_request(self.host.options().limits))
            .with_context(|| format!("cannot load plugin `{}`", p.name))
    }
}

/// A target naming an existing file (a path), not a configured plugin name.
fn is_file_target(target: &str) -> bool {
    (target.contains('/') || target.ends_with(".wasm")) && Path::new(target).is_file()
}

fn short_digest(d: &str) -> &str {
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    &hex[..hex.len().min(12)]
}

fn ls(global: &GlobalArgs, args: LsArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global, &args.plugins, &[])?;
    let mut rows = Vec::new();
    let mut failed = false;
    for p in &session.resolved {
        match session.load(p) {
            Ok(loaded) => rows.push(Ok((p.clone(), loaded))),
            Err(e) => {
                failed = true;
                rows.push(Err((p.clone(), e)))
            }
        }
    }
    if args.json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|row| match row {
                Ok((p, l)) => describe_json(p, l),
                Err((p, e)) => serde_json::json!({"name": p.name, "path": p.path, "error": format!("{e:#}")}),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else if rows.is_empty() {
        println!("no plugins configured");
    } else {
        println!("{:<20} {:<21} {:<10} {:<6} {:<13} DESCRIPTION", "NAME", "KIND", "VERSION", "WIT", "DIGEST");
        for row in &rows {
            match row {
                Ok((_, l)) => println!(
                    "{:<20} {:<21} {:<10} {:<6} {:<13} {}",
                    l.name(),
                    l.kind(),
                    l.info().version,
                    l.wit_version(),
                    short_digest(l.digest()),
                    l.info().description
                ),
                Err((p, e)) => println!("{:<20} {:<21} error: {e:#}", p.name, p.kind.map(|k| k.to_string()).unwrap_or("?".into())),
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn describe_json(p: &ResolvedPlugin, l: &LoadedPlugin) -> serde_json::Value {
    let mut v = serde_json::to_value(l.describe()).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("order".into(), p.order.into());
        obj.insert("grants".into(), serde_json::json!(p.grant_names));
        obj.insert("override".into(), p.may_override.into());
    }
    v
}

fn inspect(global: &GlobalArgs, args: InspectArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global, &args.plugins, std::slice::from_ref(&args.plugin))?;
    let p = session.target(&args.plugin)?;
    let l = session.load(&p)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&describe_json(&p, &l))?);
        return Ok(ExitCode::SUCCESS);
    }
    let limits = l.limits();
    println!("name:         {}", l.name());
    println!("path:         {}", l.path().display());
    println!("kind:         {}", l.kind());
    println!("plugin:       {} {}", l.info().name, l.info().version);
    println!("description:  {}", l.info().description);
    println!("wit:          berth:plugin@{}", l.wit_version());
    println!("digest:       {}", l.digest());
    println!("order:        {}", p.order);
    if l.kind() == PluginKind::SpecMutator {
        println!("grants:       {}", if p.grant_names.is_empty() { "(none)".to_string() } else { p.grant_names.join(", ") });
        println!("override:     {}", p.may_override);
    }
    println!("optional:     {}", p.optional);
    println!(
        "limits:       timeout {}ms, memory {} MiB, output {} KiB",
        limits.timeout.as_millis(),
        limits.memory_bytes >> 20,
        limits.output_bytes >> 10
    );
    println!("config:       {}", l.config_json());
    println!("compiled:     {:?} in {}µs (cache {})", l.cache_outcome(), l.load_time().as_micros(), session
        .host
        .cache_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|| "off".into()));
    Ok(ExitCode::SUCCESS)
}

/// Sample inputs per kind, or the `--input` file.
struct Inputs {
    view: berth_spec::ContainerView,
    facts: HostFacts,
    request: ResolveRequest,
}

fn parse_opts(opts: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    opts.iter()
        .map(|o| o.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).with_context(|| format!("--opt `{o}`: expected key=value")))
        .collect()
}

fn sample_inputs(opts: &[String], input: Option<&Path>, kind: Option<PluginKind>) -> anyhow::Result<Inputs> {
    let request = berth_spec::Request {
        id: "berth-plugin-check".into(),
        image: Some("docker.io/library/busybox:latest".into()),
        image_config: berth_spec::view::ImageConfigView {
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            cmd: vec!["sh".into()],
            ..Default::default()
        },
        options: parse_opts(opts)?,
        ..Default::default()
    };
    let (spec, _) = berth_spec::base_spec(&request).context("building the sample spec")?;
    let mut inputs = Inputs {
        view: berth_spec::container_view(&spec, &request),
        facts: HostFacts {
            root: "/var/lib/berth/snapshots".into(),
            filesystem_type: "ext4".into(),
            kernel_version: "6.1.0".into(),
            overlay_supported: true,
            fuse_overlayfs_binary: Some("/usr/bin/fuse-overlayfs".into()),
            dev_fuse: true,
            available: vec!["overlayfs".into(), "fuse-overlayfs".into(), "native".into()],
            ..Default::default()
        },
        request: ResolveRequest {
            reference: ImageReference {
                registry: "docker.io".into(),
                repository: "library/busybox".into(),
                tag: Some("latest".into()),
                digest: None,
            },
            labels: vec![],
            operation: Operation::Pull,
        },
    };
    if let Some(path) = input {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let bad = |e: serde_json::Error| anyhow::anyhow!("{}: {e}", path.display());
        match kind {
            Some(PluginKind::SpecMutator) | None => inputs.view = serde_json::from_str(&text).map_err(bad)?,
            Some(PluginKind::SnapshotterSelector) => inputs.facts = serde_json::from_str(&text).map_err(bad)?,
            Some(PluginKind::SourceResolver) => inputs.request = serde_json::from_str(&text).map_err(bad)?,
        }
    }
    Ok(inputs)
}

/// One call of the plugin's kind; the answer as JSON.
fn call_once(l: &LoadedPlugin, inputs: &Inputs) -> Result<serde_json::Value, CallError> {
    let value = match l.kind() {
        PluginKind::SpecMutator => serde_json::to_value(l.mutate(&inputs.view)?),
        PluginKind::SnapshotterSelector => serde_json::to_value(l.select(&inputs.facts)?),
        PluginKind::SourceResolver => serde_json::to_value(l.resolve(&inputs.request)?),
    };
    Ok(value.unwrap_or(serde_json::Value::Null))
}

/// One plugin's `check` outcome: its answer, or what failed.
#[derive(Debug)]
pub struct CheckOutcome {
    pub name: String,
    pub kind: Option<PluginKind>,
    /// (cause, message) on failure: `load` or a [`CallError::cause`].
    pub result: Result<serde_json::Value, (String, String)>,
    pub elapsed: Duration,
}

fn run_checks(session: &Session, targets: &[ResolvedPlugin], args: &CheckArgs) -> anyhow::Result<Vec<CheckOutcome>> {
    let mut out = Vec::new();
    for p in targets {
        let loaded = match session.load(p) {
            Ok(l) => l,
            Err(e) => {
                out.push(CheckOutcome {
                    name: p.name.clone(),
                    kind: p.kind,
                    result: Err(("load".into(), format!("{e:#}"))),
                    elapsed: Duration::ZERO,
                });
                continue;
            }
        };
        let inputs = sample_inputs(&args.opts, args.input.as_deref(), Some(loaded.kind()))?;
        let started = Instant::now();
        let result = call_once(&loaded, &inputs).map_err(|e| (e.cause().to_string(), e.to_string()));
        out.push(CheckOutcome { name: p.name.clone(), kind: Some(loaded.kind()), result, elapsed: started.elapsed() });
    }
    Ok(out)
}

fn check(global: &GlobalArgs, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global, &args.plugins, &args.targets)?;
    let targets = session.targets(&args.targets)?;
    if args.input.is_some() && targets.len() > 1 {
        bail!("--input is for one plugin at a time");
    }
    let outcomes = run_checks(&session, &targets, &args)?;
    let mut failures = 0;
    for o in &outcomes {
        match &o.result {
            Ok(answer) => {
                let kind = o.kind.map(|k| k.to_string()).unwrap_or_default();
                println!("ok   {} ({kind}, {}µs)", o.name, o.elapsed.as_micros());
                if !args.quiet {
                    println!("{}", serde_json::to_string_pretty(answer)?);
                }
            }
            Err((cause, message)) => {
                failures += 1;
                println!("FAIL {} ({cause}): {message}", o.name);
            }
        }
    }
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Median, p99, mean of a sample.
struct Stats {
    median: Duration,
    p99: Duration,
    mean: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let n = samples.len().max(1);
    let at = |q: f64| samples.get(((n as f64 * q).ceil() as usize).saturating_sub(1).min(n - 1)).copied().unwrap_or_default();
    let total: Duration = samples.iter().sum();
    Stats { median: at(0.5), p99: at(0.99), mean: total / n as u32 }
}

fn fmt_us(d: Duration) -> String {
    format!("{:.1}µs", d.as_secs_f64() * 1e6)
}

fn bench(global: &GlobalArgs, args: BenchArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global, &args.plugins, &args.targets)?;
    let targets = session.targets(&args.targets)?;
    let calls = args.calls.max(1);
    let inputs = sample_inputs(&args.opts, None, None)?;
    println!("{} calls per plugin, a fresh instance per call", calls);
    println!("{:<20} {:<21} {:>10} {:>10} {:>10}", "PLUGIN", "KIND", "MEDIAN", "P99", "MEAN");
    let mut mutators = Vec::new();
    for p in &targets {
        let loaded = session.load(p)?;
        // Warm up (page in code, fill the instance pool's slots).
        for _ in 0..10.min(calls) {
            call_once(&loaded, &inputs).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let mut samples = Vec::with_capacity(calls);
        for _ in 0..calls {
            let t = Instant::now();
            call_once(&loaded, &inputs).map_err(|e| anyhow::anyhow!("{e}"))?;
            samples.push(t.elapsed());
        }
        let s = stats(samples);
        println!("{:<20} {:<21} {:>10} {:>10} {:>10}", loaded.name(), loaded.kind(), fmt_us(s.median), fmt_us(s.p99), fmt_us(s.mean));
        if loaded.kind() == PluginKind::SpecMutator {
            mutators.push(loaded);
        }
    }
    if mutators.len() > 1 {
        let mut samples = Vec::with_capacity(calls);
        for _ in 0..calls {
            let t = Instant::now();
            for m in &mutators {
                m.mutate(&inputs.view).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            samples.push(t.elapsed());
        }
        let s = stats(samples);
        println!(
            "{:<20} {:<21} {:>10} {:>10} {:>10}",
            format!("chain of {}", mutators.len()),
            "spec-mutator",
            fmt_us(s.median),
            fmt_us(s.p99),
            fmt_us(s.mean)
        );
    }
    // Load time from the on-disk cache: a new host (empty in-memory cache) each time.
    if let Some(cache) = session.host.cache_dir() {
        let first = &targets[0];
        let mut samples = Vec::new();
        for _ in 0..20 {
            let host = PluginHost::new(HostOptions { cache_dir: Some(cache.to_path_buf()), ..HostOptions::default() })?;
            let t = Instant::now();
            host.load(first.load_request(host.options().limits))?;
            samples.push(t.elapsed());
        }
        let s = stats(samples);
        println!("{:<20} {:<21} {:>10} {:>10} {:>10}", first.name, "load from cache", fmt_us(s.median), fmt_us(s.p99), fmt_us(s.mean));
    } else {
        println!("(no usable cache directory under {}: load time not measured)", session.root.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target_dir() -> PathBuf {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
    }

    fn global(root: &Path) -> GlobalArgs {
        GlobalArgs { config: None, root: Some(root.to_path_buf()), log_level: "warn".into() }
    }

    fn check_args(targets: Vec<String>, plugins: PluginFlags) -> CheckArgs {
        CheckArgs { targets, input: None, opts: vec!["memory=64m".into()], quiet: true, plugins }
    }

    /// Every reference plugin passes `check` with the built-in samples.
    #[test]
    fn reference_plugins_pass_check() {
        let dir = target_dir().join("wasm32-wasip2/plugin");
        let names = ["privileged", "resources", "seccomp-default", "nomad-task", "auto-snapshotter", "hosts-resolver", "stargz-labels"];
        let paths: Vec<String> = names.iter().map(|n| dir.join(format!("{n}.wasm")).display().to_string()).collect();
        if let Some(missing) = paths.iter().find(|p| !Path::new(p).is_file()) {
            eprintln!("SKIP: {missing} not built (cargo xtask build-plugins)");
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let args = check_args(paths.clone(), PluginFlags::default());
        let session = Session::open(&global(root.path()), &args.plugins, &args.targets).unwrap();
        let targets = session.targets(&args.targets).unwrap();
        let outcomes = run_checks(&session, &targets, &args).unwrap();
        assert_eq!(outcomes.len(), names.len());
        for o in &outcomes {
            assert!(o.result.is_ok(), "{}: {:?}", o.name, o.result);
        }
        let resources = outcomes.iter().find(|o| o.name == "resources").unwrap();
        let answer = resources.result.as_ref().unwrap();
        assert_eq!(answer["resources"]["memory-limit"], serde_json::json!(64 << 20), "{answer}");
    }

    /// A hostile plugin is reported with its cause; the next one still runs.
    #[test]
    fn hostile_fixtures_fail_check_with_their_cause() {
        let dir = target_dir().join("fixtures/wasm32-wasip2/release");
        let fixture = |n: &str| dir.join(format!("fixture_{n}.wasm")).display().to_string();
        if !Path::new(&fixture("spin")).is_file() {
            eprintln!("SKIP: fixtures not built (cargo test --release -p berth-plugin builds them)");
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let flags = PluginFlags { limits: vec!["fixture_spin.timeout-ms=20".into()], ..Default::default() };
        let args = check_args(vec![fixture("spin"), fixture("trap"), fixture("good")], flags);
        let session = Session::open(&global(root.path()), &args.plugins, &args.targets).unwrap();
        let targets = session.targets(&args.targets).unwrap();
        let outcomes = run_checks(&session, &targets, &args).unwrap();
        let causes: Vec<&str> =
            outcomes.iter().map(|o| o.result.as_ref().err().map(|(c, _)| c.as_str()).unwrap_or("ok")).collect();
        assert_eq!(causes, ["timeout", "trap", "ok"]);
    }
}
