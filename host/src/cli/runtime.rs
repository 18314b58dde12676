//! `berth runtime ...`: a runc-compatible command line over berth's native
//! executor, so containerd's `io.containerd.runc.v2` shim (`BinaryName`),
//! podman (`--runtime`) or anything that drives runc can drive berth.
//!
//! Called as `berth runtime [runc global flags] COMMAND ...`, or with runc's
//! exact argv through a link named `berth-runc` (or any name ending in
//! `runc`) to the berth binary: `berth-runc --root R --log L --log-format json
//! create --bundle B --pid-file P ID`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use berth_runtime::{Bundle, Executor, NativeExecutor, Rootfs, Spec, Stdio};
use clap::{Parser, Subcommand};

use super::GlobalArgs;

/// runc's global flags (the state root is berth's global `--root`).
#[derive(Debug, clap::Args)]
pub struct RuntimeArgs {
    /// Where errors are logged (the shim reads them back on failure).
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// `text` or `json`.
    #[arg(long, default_value = "text")]
    pub log_format: String,
    /// Accepted for compatibility; cgroups are always managed through cgroupfs.
    #[arg(long)]
    pub systemd_cgroup: bool,
    #[arg(long)]
    pub debug: bool,
    /// Accepted for compatibility (checkpointing is not supported).
    #[arg(long)]
    pub criu: Option<String>,
    /// Accepted for compatibility.
    #[arg(long)]
    pub rootless: Option<String>,
    #[command(subcommand)]
    pub command: RuntimeCommand,
}

/// The `berth-runc` entry: runc's argv, `--root` included.
#[derive(Debug, Parser)]
#[command(name = "berth-runc", version, about = "berth's native executor with runc's command line")]
pub struct RuncCli {
    /// State root (default /run/berth).
    #[arg(long)]
    pub root: Option<PathBuf>,
    #[command(flatten)]
    pub args: RuntimeArgs,
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The bundle directory (config.json + rootfs).
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// Where the container's pid is written.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// A unix socket receiving the pty master (process.terminal).
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// MS_MOVE + chroot instead of pivot_root.
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for compatibility.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Descriptors 3..3+N handed to the container.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    pub id: String,
}

#[derive(Debug, Subcommand)]
pub enum RuntimeCommand {
    /// Create a container (its process waits for `start`).
    Create(CreateArgs),
    /// Let a created container's process run.
    Start { id: String },
    /// Print the OCI state JSON.
    State { id: String },
    /// Send a signal (default SIGTERM).
    Kill {
        #[arg(long, short = 'a')]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Remove a stopped container (`--force`: kill it first).
    Delete {
        #[arg(long, short = 'f')]
        force: bool,
        id: String,
    },
    /// Create, start, wait, delete (`--detach`: return after start).
    Run {
        #[command(flatten)]
        create: CreateArgs,
        #[arg(long, short = 'd')]
        detach: bool,
        /// Keep the container after it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Run a process in a running container.
    Exec {
        /// process.json (an OCI process object).
        #[arg(long, short = 'p')]
        process: Option<PathBuf>,
        #[arg(long, short = 'd')]
        detach: bool,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        #[arg(long)]
        console_socket: Option<PathBuf>,
        #[arg(long)]
        cwd: Option<PathBuf>,
        #[arg(long = "env", short = 'e')]
        env: Vec<String>,
        #[arg(long, short = 't')]
        tty: bool,
        /// uid[:gid]
        #[arg(long, short = 'u')]
        user: Option<String>,
        #[arg(long, default_value_t = 0)]
        preserve_fds: u32,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Processes in a container (`--format json`: a JSON array of pids).
    Ps {
        #[arg(long, short = 'f', default_value = "table")]
        format: String,
        id: String,
    },
    /// Container ids under the root.
    List {
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// What this runtime supports (OCI features document).
    Features,
}

/// The hook for spec-mutator plugins: the configured chain (`berth.toml`'s
/// `[[plugin]]` spec-mutators, from `--config`/`BERTH_CONFIG` or
/// /etc/berth/berth.toml) changes a bundle's spec before `create`/`run`, as it
/// does for `berth run`. The bundle's annotations are the request's
/// annotations; `berth.io/opt.KEY=VALUE` annotations are its options (what
/// `--opt KEY=VALUE` is to `berth run`). Without plugins the spec is left alone.
pub fn apply_spec_plugins(global: &GlobalArgs, id: &str, spec: &mut Spec) -> anyhow::Result<()> {
    let (config, config_path) = crate::config::Config::load(global.config.as_deref())?;
    if config.plugins.is_empty() {
        return Ok(());
    }
    let storage_root = config.worker.root_dir(None);
    let plugins = crate::container::plugins::LoadedPlugins::load(
        &config,
        config_path.as_deref(),
        &crate::config::plugins::PluginFlags::default(),
        &storage_root,
    )?;
    let chain = plugins.spec_chain()?;
    if chain.is_empty() {
        return Ok(());
    }
    let annotations: Vec<(String, String)> =
        spec.annotations().clone().unwrap_or_default().into_iter().collect();
    let options = annotations
        .iter()
        .filter_map(|(key, value)| key.strip_prefix("berth.io/opt.").map(|k| (k.to_string(), value.clone())))
        .collect();
    let request = berth_spec::Request { id: id.to_string(), options, annotations, ..Default::default() };
    let mut explanation = berth_spec::Explanation::default();
    let changed = berth_spec::apply_chain(spec.clone(), &request, &chain, &crate::container::spec_host_facts(), &mut explanation)
        .with_context(|| format!("applying the spec-mutator plugins to container {id}"))?;
    tracing::info!(id, "spec-mutator plugins applied:\n{explanation}");
    *spec = changed;
    Ok(())
}

/// `berth-runc ...` (argv[0] ends in `runc`).
pub fn main_runc() -> ExitCode {
    let cli = RuncCli::parse();
    let global = GlobalArgs { config: std::env::var_os("BERTH_CONFIG").map(PathBuf::from), root: cli.root, log_level: "warn".into() };
    finish(&cli.args, run(&global, &cli.args))
}

/// `berth runtime ...`.
pub fn main(global: &GlobalArgs, args: RuntimeArgs) -> anyhow::Result<ExitCode> {
    Ok(finish(&args, run(global, &args)))
}

/// Errors to stderr and, as runc does, to `--log` (JSON lines with `--log-format json`).
fn finish(args: &RuntimeArgs, result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}");
            eprintln!("berth runtime: {msg}");
            if let Some(log) = &args.log
                && let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log)
            {
                let line = if args.log_format == "json" {
                    serde_json::json!({"level": "error", "msg": msg, "time": rfc3339_now()}).to_string()
                } else {
                    format!("level=error msg={msg:?}")
                };
                let _ = writeln!(f, "{line}");
            }
            ExitCode::FAILURE
        }
    }
}

fn rfc3339_now() -> String {
    rfc3339_of(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
}

fn executor(global: &GlobalArgs) -> NativeExecutor {
    NativeExecutor::new(global.root.clone().unwrap_or_else(|| PathBuf::from(berth_runtime::native::DEFAULT_ROOT)))
}

pub fn parse_signal(s: Option<&str>) -> anyhow::Result<i32> {
    let Some(s) = s else { return Ok(libc::SIGTERM) };
    if let Ok(n) = s.parse::<i32>() {
        return Ok(n);
    }
    let name = s.trim_start_matches("SIG");
    Ok(match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "WINCH" => libc::SIGWINCH,
        "PWR" => libc::SIGPWR,
        "ABRT" => libc::SIGABRT,
        "ALRM" => libc::SIGALRM,
        _ => bail!("unknown signal {s:?}"),
    })
}

fn write_pid_file(path: &Path, pid: i32) -> anyhow::Result<()> {
    let tmp = path.with_extension("berth-tmp");
    std::fs::write(&tmp, pid.to_string()).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("write {}", path.display()))
}

/// `process.terminal` needs `--console-socket` (and the other way round), as in runc.
fn console_stdio(terminal: bool, socket: Option<&Path>) -> anyhow::Result<Stdio> {
    match (terminal, socket) {
        (false, None) => Ok(Stdio::Inherit),
        (true, Some(path)) => {
            let s = std::os::unix::net::UnixStream::connect(path).with_context(|| format!("connect to the console socket {}", path.display()))?;
            Ok(Stdio::Terminal { console_socket: s.into() })
        }
        (true, None) => bail!("process.terminal is set: --console-socket is required"),
        (false, Some(_)) => bail!("--console-socket given but process.terminal is not set"),
    }
}

fn create(global: &GlobalArgs, a: &CreateArgs) -> anyhow::Result<(NativeExecutor, i32)> {
    let bundle_dir = std::fs::canonicalize(&a.bundle).with_context(|| format!("bundle {}", a.bundle.display()))?;
    let mut spec = Spec::load(bundle_dir.join("config.json")).with_context(|| format!("read {}/config.json", bundle_dir.display()))?;
    apply_spec_plugins(global, &a.id, &mut spec)?;
    let terminal = spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false);
    let stdio = console_stdio(terminal, a.console_socket.as_deref())?;
    let root = spec.root().as_ref().context("config.json has no root")?.path().clone();
    let mut ex = executor(global);
    ex.no_pivot = a.no_pivot;
    ex.preserve_fds = a.preserve_fds;
    let bundle = Bundle { dir: bundle_dir.clone(), spec, rootfs: Rootfs::Path(bundle_dir.join(root)) };
    let pid = ex.create(&a.id, &bundle, stdio)?;
    if let Some(p) = &a.pid_file {
        write_pid_file(p, pid)?;
    }
    Ok((ex, pid))
}

fn run(global: &GlobalArgs, args: &RuntimeArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        RuntimeCommand::Create(a) => {
            create(global, a)?;
        }
        RuntimeCommand::Start { id } => executor(global).start(id)?,
        RuntimeCommand::State { id } => {
            let ex = executor(global);
            let state = ex.state(id)?;
            let rec = berth_runtime::state::load(&ex.root, id)?;
            let mut v = serde_json::to_value(&state)?;
            v["rootfs"] = serde_json::json!(rec.rootfs);
            v["created"] = serde_json::json!(rfc3339_of(rec.created));
            v["owner"] = serde_json::json!("");
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        RuntimeCommand::Kill { all, id, signal } => executor(global).kill(id, parse_signal(signal.as_deref())?, *all)?,
        RuntimeCommand::Delete { force, id } => executor(global).delete(id, *force)?,
        RuntimeCommand::Run { create: a, detach, keep } => {
            let (ex, _) = create(global, a)?;
            if let Err(e) = ex.start(&a.id) {
                let _ = ex.delete(&a.id, true);
                return Err(e.into());
            }
            if *detach {
                return Ok(ExitCode::SUCCESS);
            }
            let status = ex.wait(&a.id);
            if !keep {
                ex.delete(&a.id, true)?;
            }
            return Ok(ExitCode::from(status?.code() as u8));
        }
        RuntimeCommand::Exec { process, detach, pid_file, console_socket, cwd, env, tty, user, preserve_fds, id, command } => {
            let mut ex = executor(global);
            ex.preserve_fds = *preserve_fds;
            let rec = berth_runtime::state::load(&ex.root, id)?;
            let mut p = match process {
                Some(path) => serde_json::from_slice::<oci_spec::runtime::Process>(
                    &std::fs::read(path).with_context(|| format!("read {}", path.display()))?,
                )
                .with_context(|| format!("parse {}", path.display()))?,
                None => {
                    let mut p = rec.spec.process().clone().context("the container has no process")?;
                    if command.is_empty() {
                        bail!("exec needs --process or a command");
                    }
                    p.set_args(Some(command.clone()));
                    p.set_terminal(Some(false));
                    p
                }
            };
            if let Some(c) = cwd {
                p.set_cwd(c.clone());
            }
            if !env.is_empty() {
                let mut e = p.env().clone().unwrap_or_default();
                e.extend(env.iter().cloned());
                p.set_env(Some(e));
            }
            if let Some(u) = user {
                let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
                let mut user = p.user().clone();
                user.set_uid(uid.parse().context("--user uid")?);
                user.set_gid(gid.parse().context("--user gid")?);
                p.set_user(user);
            }
            if *tty {
                p.set_terminal(Some(true));
            }
            let terminal = p.terminal().unwrap_or(false);
            let pid = ex.exec(id, &p, console_stdio(terminal, console_socket.as_deref())?)?;
            if let Some(f) = pid_file {
                write_pid_file(f, pid)?;
            }
            if !*detach {
                let status = ex.wait_exec(pid)?;
                return Ok(ExitCode::from(status.code() as u8));
            }
        }
        RuntimeCommand::Ps { format, id } => {
            let ex = executor(global);
            let rec = berth_runtime::state::load(&ex.root, id)?;
            let pids = berth_runtime::cgroups::manager_for(&rec.cgroup)?.pids()?;
            if format == "json" {
                println!("{}", serde_json::to_string(&pids)?);
            } else {
                println!("PID");
                for p in pids {
                    println!("{p}");
                }
            }
        }
        RuntimeCommand::List { quiet } => {
            let ex = executor(global);
            if !quiet {
                println!("ID\tPID\tSTATUS\tBUNDLE");
            }
            for id in berth_runtime::native::list(&ex.root) {
                if *quiet {
                    println!("{id}");
                } else if let Ok(s) = ex.state(&id) {
                    println!("{id}\t{}\t{}\t{}", s.pid().unwrap_or(0), s.status(), s.bundle().display());
                }
            }
        }
        RuntimeCommand::Features => println!("{}", serde_json::to_string_pretty(&features())?),
    }
    Ok(ExitCode::SUCCESS)
}

/// Seconds since the epoch as RFC 3339 UTC.
fn rfc3339_of(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

/// The OCI runtime features document.
pub fn features() -> serde_json::Value {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.1.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "mand", "noatime",
            "nodev", "nodiratime", "noexec", "nomand", "norelatime", "nostrictatime", "nosuid", "private", "rbind",
            "relatime", "remount", "ro", "rprivate", "rshared", "rslave", "runbindable", "rw", "shared", "slave",
            "strictatime", "suid", "sync", "tmpcopyup", "unbindable"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": caps_names(),
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
            },
            "apparmor": {"enabled": true},
            "selinux": {"enabled": true}
        },
        "annotations": {"io.github.berth.executor": "native"}
    })
}

fn caps_names() -> Vec<&'static str> {
    let mut v = CAPS.to_vec();
    v.sort();
    v
}

const CAPS: [&str; 41] = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
    "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_argv_as_the_shim_sends_it_parses() {
        let cli = RuncCli::try_parse_from([
            "berth-runc", "--root", "/run/containerd/runc/ns", "--log", "/b/log.json", "--log-format", "json",
            "create", "--bundle", "/b", "--pid-file", "/b/init.pid", "c1",
        ])
        .unwrap();
        assert_eq!(cli.root.as_deref(), Some(Path::new("/run/containerd/runc/ns")));
        let RuntimeCommand::Create(a) = cli.args.command else { panic!("not create") };
        assert_eq!((a.id.as_str(), a.pid_file.as_deref()), ("c1", Some(Path::new("/b/init.pid"))));
        let cli = RuncCli::try_parse_from(["berth-runc", "--root", "/r", "kill", "--all", "c1", "9"]).unwrap();
        assert!(matches!(cli.args.command, RuntimeCommand::Kill { all: true, .. }));
        let cli = RuncCli::try_parse_from([
            "berth-runc", "--root", "/r", "exec", "--process", "/tmp/p.json", "--detach", "--pid-file", "/tmp/p.pid", "c1",
        ])
        .unwrap();
        assert!(matches!(cli.args.command, RuntimeCommand::Exec { detach: true, .. }));
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal(None).unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal(Some("SIGKILL")).unwrap(), 9);
        assert_eq!(parse_signal(Some("KILL")).unwrap(), 9);
        assert_eq!(parse_signal(Some("15")).unwrap(), 15);
        assert!(parse_signal(Some("SIGNOPE")).is_err());
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339_of(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_of(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
