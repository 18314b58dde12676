//! `[worker]`: buildkitd OCI-worker style settings.
//!
//! ```toml
//! [worker]
//! root = "/var/lib/berth"
//! state = "/run/berth"                 # run-time state (executor, network namespaces); default below
//! snapshotter = "auto"                 # or overlayfs, native, fuse-overlayfs, a proxy's name
//! proxy-snapshotter-socket = "/run/stargz/snapshotter.sock"   # snapshots over containerd's gRPC API; needs a named snapshotter
//! proxy-snapshotter-namespace = "default"  # containerd namespace of its calls (containerd's own socket needs one)
//! proxy-snapshotter-timeout = "60s"        # connecting, and each call, fail past this (naming the socket and the call)
//! labels = { zone = "a" }              # shown by `berth worker` with berth's own
//! platforms = ["linux/amd64"]
//! rootless = false                     # true is refused unless berth already runs in a user namespace
//! max-parallelism = 4                  # concurrent layer downloads
//! apparmor-profile = "berth-default"   # containers' profile unless a plugin sets one; refused where AppArmor is off
//! selinux = false                      # true is refused (labelling is not implemented)
//!
//! [worker.network]
//! mode = "bridge"                      # host | none | bridge | auto (berth run: the spec's own namespace)
//! cni-config-dir = "/etc/cni/net.d"
//! cni-bin-dir = "/usr/lib/cni"
//! cni-pool-size = 4
//!
//! [worker.gc]
//! enabled = true
//! keep-storage = "10GB"                # bytes; KB/MB/GB/TB are 1000-based, KiB/MiB/GiB/TiB 1024-based
//! keep-duration = "48h"                # s, m, h, d; combinable ("1h30m")
//! ```
//!
//! Unknown keys and invalid values are errors that name the key (serde's
//! message carries the path, e.g. `worker.gc.keep-storage`). [`WorkerFlags`]
//! override the file for one run.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Where state lives when neither `--root` nor `worker.root` says.
pub const DEFAULT_ROOT: &str = "/var/lib/berth";
/// Run-time state of the default root (tmpfs: gone with a reboot, as the
/// containers are).
pub const DEFAULT_STATE: &str = "/run/berth";
/// Where Debian's containernetworking-plugins install.
pub const DEFAULT_CNI_BIN_DIR: &str = "/usr/lib/cni";
pub const DEFAULT_CNI_CONFIG_DIR: &str = "/etc/cni/net.d";

/// The `[worker]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct WorkerConfig {
    /// State and storage root (`--root` overrides it).
    pub root: Option<PathBuf>,
    /// Run-time state: the executor's containers, network namespaces and
    /// attachments. Default: [`WorkerConfig::state_dir`].
    pub state: Option<PathBuf>,
    /// `auto` (the snapshotter-selector plugin decides) or a snapshotter's name.
    pub snapshotter: SnapshotterChoice,
    /// A containerd proxy snapshotter's socket (gRPC snapshots service).
    pub proxy_snapshotter_socket: Option<PathBuf>,
    /// The containerd namespace the proxy's calls are made in (the
    /// `containerd-namespace` header; containerd's own snapshots service
    /// requires it, plain proxies ignore it).
    #[serde(deserialize_with = "containerd_namespace")]
    pub proxy_snapshotter_namespace: String,
    /// Connecting to the proxy, and each call, must finish within this.
    #[serde(deserialize_with = "nonzero_duration")]
    pub proxy_snapshotter_timeout: HumanDuration,
    /// Worker labels, reported to clients and passed to plugins.
    pub labels: BTreeMap<String, String>,
    /// Platforms this worker runs (`os/arch[/variant]`); empty means the host's.
    #[serde(deserialize_with = "platforms")]
    pub platforms: Vec<Platform>,
    pub rootless: bool,
    pub network: NetworkConfig,
    pub gc: GcConfig,
    /// Most concurrent operations (layer downloads, unpacks); None: unlimited.
    #[serde(deserialize_with = "positive")]
    pub max_parallelism: Option<usize>,
    /// AppArmor profile applied to containers.
    pub apparmor_profile: Option<String>,
    /// Label containers for SELinux.
    pub selinux: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            root: None,
            state: None,
            snapshotter: SnapshotterChoice::Auto,
            proxy_snapshotter_socket: None,
            proxy_snapshotter_namespace: berth_containerd::proxy_snapshotter::DEFAULT_NAMESPACE.to_string(),
            proxy_snapshotter_timeout: HumanDuration(berth_containerd::proxy_snapshotter::DEFAULT_CALL_TIMEOUT),
            labels: BTreeMap::new(),
            platforms: Vec::new(),
            rootless: false,
            network: NetworkConfig::default(),
            gc: GcConfig::default(),
            max_parallelism: None,
            apparmor_profile: None,
            selinux: false,
        }
    }
}

impl WorkerConfig {
    /// The root: `--root` (global flag), else `worker.root`, else [`DEFAULT_ROOT`].
    pub fn root_dir(&self, global_root: Option<&Path>) -> PathBuf {
        global_root
            .map(Path::to_path_buf)
            .or_else(|| self.root.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
    }

    /// How the proxy snapshotter is talked to: this namespace, and the
    /// timeout for connecting and for each call.
    pub fn proxy_options(&self) -> berth_containerd::ProxyOptions {
        berth_containerd::ProxyOptions {
            namespace: self.proxy_snapshotter_namespace.clone(),
            connect_timeout: self.proxy_snapshotter_timeout.0,
            call_timeout: self.proxy_snapshotter_timeout.0,
        }
    }

    /// Run-time state of `root`: `worker.state`, else [`DEFAULT_STATE`] for
    /// the default root, else a directory of its own,
    /// `DEFAULT_STATE/@roots/<root key>` (see [`root_key`]). Each root is a
    /// berth of its own: two roots' containers (or network attachments) of
    /// the same name must not meet in one state directory. (`@` is not
    /// allowed in container ids, so no container's state directory can be
    /// named like it.)
    pub fn state_dir(&self, root: &Path) -> PathBuf {
        match (&self.state, root_key(root)) {
            (Some(state), _) => state.clone(),
            (None, None) => PathBuf::from(DEFAULT_STATE),
            (None, Some(key)) => Path::new(DEFAULT_STATE).join("@roots").join(key),
        }
    }

    /// Applies the flags that were given; absent flags leave the file's value.
    pub fn apply_flags(&mut self, flags: &WorkerFlags) {
        if let Some(v) = &flags.worker_snapshotter {
            self.snapshotter = v.clone();
        }
        if let Some(v) = &flags.worker_proxy_snapshotter_socket {
            self.proxy_snapshotter_socket = Some(v.clone());
        }
        if let Some(v) = &flags.worker_proxy_snapshotter_namespace {
            self.proxy_snapshotter_namespace = v.clone();
        }
        if let Some(v) = flags.worker_proxy_snapshotter_timeout {
            self.proxy_snapshotter_timeout = v;
        }
        for (k, v) in &flags.worker_labels {
            self.labels.insert(k.clone(), v.clone());
        }
        if !flags.worker_platform.is_empty() {
            self.platforms = flags.worker_platform.clone();
        }
        if let Some(v) = flags.worker_rootless {
            self.rootless = v;
        }
        if let Some(v) = flags.worker_net {
            self.network.mode = v;
        }
        if let Some(v) = &flags.cni_config_dir {
            self.network.cni_config_dir = v.clone();
        }
        if let Some(v) = &flags.cni_bin_dir {
            self.network.cni_bin_dir = v.clone();
        }
        if let Some(v) = flags.cni_pool_size {
            self.network.cni_pool_size = v;
        }
        if let Some(v) = flags.worker_gc {
            self.gc.enabled = v;
        }
        if let Some(v) = flags.worker_gc_keep_storage {
            self.gc.keep_storage = Some(v);
        }
        if let Some(v) = flags.worker_gc_keep_duration {
            self.gc.keep_duration = Some(v);
        }
        if let Some(v) = flags.max_parallelism {
            self.max_parallelism = Some(v);
        }
        if let Some(v) = &flags.worker_apparmor_profile {
            self.apparmor_profile = Some(v.clone());
        }
        if let Some(v) = flags.worker_selinux {
            self.selinux = v;
        }
    }
}

/// Flags that override `[worker]` for one run. Commands `#[command(flatten)]` it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WorkerFlags {
    /// Snapshotter: `auto` or a name (overrides worker.snapshotter).
    #[arg(long, value_name = "NAME")]
    pub worker_snapshotter: Option<SnapshotterChoice>,
    /// A proxy snapshotter's socket (overrides worker.proxy-snapshotter-socket).
    #[arg(long, value_name = "PATH")]
    pub worker_proxy_snapshotter_socket: Option<PathBuf>,
    /// The proxy's containerd namespace (overrides worker.proxy-snapshotter-namespace).
    #[arg(long, value_name = "NAMESPACE", value_parser = parse_containerd_namespace)]
    pub worker_proxy_snapshotter_namespace: Option<String>,
    /// Connect and per-call timeout of the proxy, e.g. 30s (overrides worker.proxy-snapshotter-timeout).
    #[arg(long, value_name = "DURATION", value_parser = parse_nonzero_duration)]
    pub worker_proxy_snapshotter_timeout: Option<HumanDuration>,
    /// Worker label KEY=VALUE, repeatable (added to worker.labels).
    #[arg(long = "worker-label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub worker_labels: Vec<(String, String)>,
    /// Platform os/arch[/variant], repeatable (replaces worker.platforms).
    #[arg(long, value_name = "PLATFORM")]
    pub worker_platform: Vec<Platform>,
    /// Run rootless (overrides worker.rootless).
    #[arg(long, value_name = "BOOL")]
    pub worker_rootless: Option<bool>,
    /// Network mode: host, none, bridge, auto (overrides worker.network.mode).
    #[arg(long, value_name = "MODE")]
    pub worker_net: Option<NetworkMode>,
    /// CNI configuration directory (overrides worker.network.cni-config-dir).
    #[arg(long, value_name = "DIR")]
    pub cni_config_dir: Option<PathBuf>,
    /// CNI plugin binaries (overrides worker.network.cni-bin-dir).
    #[arg(long, value_name = "DIR")]
    pub cni_bin_dir: Option<PathBuf>,
    /// Pre-created network namespaces kept ready (overrides worker.network.cni-pool-size).
    #[arg(long, value_name = "N")]
    pub cni_pool_size: Option<usize>,
    /// Automatic garbage collection (overrides worker.gc.enabled).
    #[arg(long, value_name = "BOOL")]
    pub worker_gc: Option<bool>,
    /// Storage kept before automatic GC removes unused data, e.g. 10GB (overrides worker.gc.keep-storage).
    #[arg(long, value_name = "SIZE")]
    pub worker_gc_keep_storage: Option<ByteSize>,
    /// Unused data younger than this is kept, e.g. 48h (overrides worker.gc.keep-duration).
    #[arg(long, value_name = "DURATION")]
    pub worker_gc_keep_duration: Option<HumanDuration>,
    /// Most concurrent operations (overrides worker.max-parallelism).
    #[arg(long, value_name = "N", value_parser = parse_positive)]
    pub max_parallelism: Option<usize>,
    /// AppArmor profile (overrides worker.apparmor-profile).
    #[arg(long, value_name = "PROFILE")]
    pub worker_apparmor_profile: Option<String>,
    /// SELinux labels (overrides worker.selinux).
    #[arg(long, value_name = "BOOL")]
    pub worker_selinux: Option<bool>,
}

/// Names a root other than [`DEFAULT_ROOT`]: the first 16 hex digits of
/// the sha256 of its absolute path (canonical when it exists, so one root
/// however spelled). None for the default root.
pub fn root_key(root: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt as _;
    let absolute = std::fs::canonicalize(root)
        .or_else(|_| std::path::absolute(root))
        .unwrap_or_else(|_| root.to_path_buf())
        .components()
        .collect::<PathBuf>();
    if absolute == Path::new(DEFAULT_ROOT) {
        return None;
    }
    let digest = berth_content::sha256_digest(absolute.as_os_str().as_bytes());
    Some(digest.trim_start_matches("sha256:")[..16].to_string())
}

/// The containerd-style namespace of `berth run`'s containers on `root`
/// (their cgroups are `/<namespace>/<id>`): `berth` on the default root,
/// `berth-<root key>` on another, so two roots' containers of one name never
/// share a cgroup.
pub fn container_namespace(root: &Path) -> String {
    match root_key(root) {
        None => "berth".to_string(),
        Some(key) => format!("berth-{key}"),
    }
}

fn parse_positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("invalid value {s:?}: expected a whole number of at least 1")),
    }
}

fn parse_containerd_namespace(s: &str) -> Result<String, String> {
    berth_containerd::proxy_snapshotter::check_namespace(s).map(|()| s.to_string())
}

fn parse_nonzero_duration(s: &str) -> Result<HumanDuration, String> {
    let d: HumanDuration = s.parse()?;
    if d.0.is_zero() { Err(format!("invalid duration {s:?}: must be at least 1s")) } else { Ok(d) }
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("invalid label {s:?}: expected KEY=VALUE")),
    }
}

/// `auto` or a snapshotter's name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SnapshotterChoice {
    #[default]
    Auto,
    Named(String),
}

impl FromStr for SnapshotterChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(Self::Auto);
        }
        let valid = !s.is_empty()
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if valid { Ok(Self::Named(s.to_string())) } else { Err(format!("invalid snapshotter name {s:?}")) }
    }
}

impl fmt::Display for SnapshotterChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Named(n) => f.write_str(n),
        }
    }
}

/// `os/arch[/variant]`, as in OCI image indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl FromStr for Platform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => {
                Ok(Self { os: os.to_string(), architecture: arch.to_string(), variant: None })
            }
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => Ok(Self {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
            }),
            _ => Err(format!("invalid platform {s:?}: expected os/arch[/variant]")),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// `[worker.network]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct NetworkConfig {
    pub mode: NetworkMode,
    pub cni_config_dir: PathBuf,
    pub cni_bin_dir: PathBuf,
    /// Network namespaces created ahead of time for bridge mode.
    pub cni_pool_size: usize,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            mode: NetworkMode::Auto,
            cni_config_dir: PathBuf::from(DEFAULT_CNI_CONFIG_DIR),
            cni_bin_dir: PathBuf::from(DEFAULT_CNI_BIN_DIR),
            cni_pool_size: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkMode {
    /// `host` (buildkitd's default for `auto`).
    #[default]
    Auto,
    Host,
    None,
    Bridge,
}

impl NetworkMode {
    /// `auto` resolves to `host`, as buildkitd's OCI worker does.
    pub fn resolved(self) -> NetworkMode {
        match self {
            NetworkMode::Auto => NetworkMode::Host,
            m => m,
        }
    }
}

impl NetworkConfig {
    /// berth-network's settings for this table: the CNI network list is read
    /// from `cni-config-dir` only in bridge mode.
    pub fn manager_options(&self, run_dir: &Path) -> anyhow::Result<berth_network::NetworkOptions> {
        let network = match self.mode.resolved() {
            NetworkMode::Bridge => Some(
                berth_network::NetworkConfigList::load_dir(&self.cni_config_dir)
                    .map_err(|e| e.context("worker.network.cni-config-dir"))?,
            ),
            _ => None,
        };
        Ok(berth_network::NetworkOptions {
            run_dir: run_dir.to_path_buf(),
            cni_bin_dirs: vec![self.cni_bin_dir.clone()],
            network,
            pool_size: self.cni_pool_size,
        })
    }
}

impl From<NetworkMode> for berth_network::NetworkMode {
    fn from(m: NetworkMode) -> Self {
        match m.resolved() {
            NetworkMode::None => berth_network::NetworkMode::None,
            NetworkMode::Bridge => berth_network::NetworkMode::Bridge,
            _ => berth_network::NetworkMode::Host,
        }
    }
}

/// `[worker.gc]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct GcConfig {
    /// Automatic GC after operations that add data.
    pub enabled: bool,
    /// Automatic GC starts when stored data exceeds this.
    pub keep_storage: Option<ByteSize>,
    /// Unused data younger than this survives automatic GC.
    pub keep_duration: Option<HumanDuration>,
}

impl Default for GcConfig {
    fn default() -> Self {
        Self { enabled: true, keep_storage: None, keep_duration: None }
    }
}

/// A number of bytes: an integer, or a number with a unit (`10GB`, `1.5GiB`, `512 MiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let err = || format!("invalid size {s:?}: expected bytes or a number with B, KB, MB, GB, TB, KiB, MiB, GiB, TiB");
        let value: f64 = num.parse().map_err(|_| err())?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1000,
            "m" | "mb" => 1000_u64.pow(2),
            "g" | "gb" => 1000_u64.pow(3),
            "t" | "tb" => 1000_u64.pow(4),
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            _ => return Err(err()),
        };
        let bytes = value * mult as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(err());
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) if n >= 0 => Ok(ByteSize(n as u64)),
            Raw::Int(n) => Err(serde::de::Error::custom(format!("invalid size {n}: negative"))),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A duration written as `90s`, `30m`, `48h`, `7d`, `1h30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let err = || format!("invalid duration {s:?}: expected e.g. 90s, 30m, 48h, 7d, 1h30m");
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(err());
        }
        let mut total: u64 = 0;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
            if digits == 0 {
                return Err(err());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| err())?;
            rest = &rest[digits..];
            let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
            let secs = match &rest[..unit_len] {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86400,
                _ => return Err(err()),
            };
            total = n.checked_mul(secs).and_then(|v| total.checked_add(v)).ok_or_else(err)?;
            rest = &rest[unit_len..];
        }
        Ok(HumanDuration(Duration::from_secs(total)))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for SnapshotterChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

fn platforms<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Platform>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| s.parse().map_err(serde::de::Error::custom))
        .collect()
}

fn containerd_namespace<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    parse_containerd_namespace(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn nonzero_duration<'de, D: Deserializer<'de>>(d: D) -> Result<HumanDuration, D::Error> {
    parse_nonzero_duration(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let n = i64::deserialize(d)?;
    if n < 1 {
        return Err(serde::de::Error::custom(format!("invalid value {n}: must be at least 1")));
    }
    Ok(Some(n as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse(text: &str) -> anyhow::Result<WorkerConfig> {
        Ok(Config::parse(text, Path::new("test.toml"))?.worker)
    }

    fn err(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    #[test]
    fn full_table_parses() {
        let w = parse(
            r#"
            [worker]
            root = "/srv/berth"
            snapshotter = "overlayfs"
            proxy-snapshotter-socket = "/run/stargz.sock"
            proxy-snapshotter-namespace = "k8s.io"
            proxy-snapshotter-timeout = "2m"
            labels = { zone = "a", "org.example/tier" = "gold" }
            platforms = ["linux/amd64", "linux/arm/v7"]
            rootless = true
            max-parallelism = 3
            apparmor-profile = "berth-default"
            selinux = true
            [worker.network]
            mode = "bridge"
            cni-config-dir = "/tmp/cni"
            cni-bin-dir = "/opt/cni/bin"
            cni-pool-size = 4
            [worker.gc]
            enabled = false
            keep-storage = "10GB"
            keep-duration = "1h30m"
            "#,
        )
        .unwrap();
        assert_eq!(w.root.as_deref(), Some(Path::new("/srv/berth")));
        assert_eq!(w.snapshotter, SnapshotterChoice::Named("overlayfs".into()));
        let proxy = w.proxy_options();
        assert_eq!((proxy.namespace.as_str(), proxy.call_timeout), ("k8s.io", Duration::from_secs(120)));
        assert_eq!(proxy.connect_timeout, Duration::from_secs(120));
        assert_eq!(w.labels["org.example/tier"], "gold");
        assert_eq!(w.platforms[1].variant.as_deref(), Some("v7"));
        assert_eq!(w.platforms[0].to_string(), "linux/amd64");
        assert!(w.rootless && w.selinux);
        assert_eq!(w.max_parallelism, Some(3));
        assert_eq!(w.network.mode, NetworkMode::Bridge);
        assert_eq!(w.network.cni_pool_size, 4);
        assert!(!w.gc.enabled);
        assert_eq!(w.gc.keep_storage, Some(ByteSize(10_000_000_000)));
        assert_eq!(w.gc.keep_duration, Some(HumanDuration(Duration::from_secs(5400))));
    }

    #[test]
    fn each_root_has_its_own_state() {
        let w = parse("").unwrap();
        assert_eq!(w.state_dir(Path::new(DEFAULT_ROOT)), Path::new(DEFAULT_STATE));
        let a = w.state_dir(Path::new("/srv/a"));
        let b = w.state_dir(Path::new("/srv/b"));
        assert_ne!(a, b);
        assert!(a.starts_with("/run/berth/@roots"), "{}", a.display());
        assert_eq!(a, w.state_dir(Path::new("/srv/a/")));
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert_eq!(w.state_dir(dir.path()), w.state_dir(&dir.path().join("sub/..")), "one root, one state");
        assert_eq!(container_namespace(Path::new(DEFAULT_ROOT)), "berth");
        assert_ne!(container_namespace(Path::new("/srv/a")), container_namespace(Path::new("/srv/b")));
        let w = parse("[worker]\nstate = \"/run/mine\"").unwrap();
        assert_eq!(w.state_dir(Path::new("/srv/a")), Path::new("/run/mine"));
    }

    #[test]
    fn network_table_to_manager_options() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = NetworkConfig { mode: NetworkMode::Bridge, cni_config_dir: dir.path().into(), ..Default::default() };
        let e = format!("{:#}", n.manager_options(Path::new("/run/x")).unwrap_err());
        assert!(e.contains("cni-config-dir"), "{e}");
        std::fs::write(dir.path().join("10-b.conflist"), r#"{"name":"b","plugins":[{"type":"bridge"}]}"#).unwrap();
        let o = n.manager_options(Path::new("/run/x")).unwrap();
        assert_eq!(o.network.unwrap().name, "b");
        n.mode = NetworkMode::Auto;
        assert!(n.manager_options(Path::new("/run/x")).unwrap().network.is_none());
        assert_eq!(berth_network::NetworkMode::from(NetworkMode::Auto), berth_network::NetworkMode::Host);
    }

    #[test]
    fn defaults() {
        let w = parse("").unwrap();
        assert_eq!(w, WorkerConfig::default());
        assert_eq!(w.snapshotter, SnapshotterChoice::Auto);
        assert_eq!(w.network.mode.resolved(), NetworkMode::Host);
        assert_eq!(w.network.cni_bin_dir, Path::new(DEFAULT_CNI_BIN_DIR));
        assert_eq!(w.root_dir(None), Path::new(DEFAULT_ROOT));
        assert_eq!(w.root_dir(Some(Path::new("/x"))), Path::new("/x"));
        let (proxy, default) = (w.proxy_options(), berth_containerd::ProxyOptions::default());
        assert_eq!((proxy.namespace, proxy.call_timeout), (default.namespace, default.call_timeout));
    }

    #[test]
    fn unknown_keys_are_named() {
        assert!(err("[worker]\nsnapshoter = \"native\"").contains("snapshoter"));
        assert!(err("[worker.gc]\nkeep-bytes = 1").contains("keep-bytes"));
        assert!(err("[worker.network]\ncni-pool = 1").contains("cni-pool"));
    }

    #[test]
    fn invalid_values_name_the_key() {
        for (text, key) in [
            ("[worker.gc]\nkeep-storage = \"ten gigs\"", "keep-storage"),
            ("[worker.gc]\nkeep-storage = -5", "keep-storage"),
            ("[worker.gc]\nkeep-duration = \"2 weeks\"", "keep-duration"),
            ("[worker.network]\nmode = \"overlay\"", "mode"),
            ("[worker]\nplatforms = [\"linux\"]", "platforms"),
            ("[worker]\nmax-parallelism = 0", "max-parallelism"),
            ("[worker]\nsnapshotter = \"a b\"", "snapshotter"),
            ("[worker]\nrootless = \"yes\"", "rootless"),
            ("[worker]\nproxy-snapshotter-namespace = \"a/b\"", "proxy-snapshotter-namespace"),
            ("[worker]\nproxy-snapshotter-namespace = \"\"", "proxy-snapshotter-namespace"),
            ("[worker]\nproxy-snapshotter-timeout = \"0s\"", "proxy-snapshotter-timeout"),
            ("[worker]\nproxy-snapshotter-timeout = \"soon\"", "proxy-snapshotter-timeout"),
            ("[worker]\nproxy-snapshotter-timeout = 30", "proxy-snapshotter-timeout"),
        ] {
            let e = err(text);
            assert!(e.contains(key), "{text:?}: error {e:?} does not name {key}");
        }
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!("512".parse::<ByteSize>().unwrap(), ByteSize(512));
        assert_eq!("1.5GiB".parse::<ByteSize>().unwrap(), ByteSize(3 << 29));
        assert_eq!("20 MB".parse::<ByteSize>().unwrap(), ByteSize(20_000_000));
        assert!("GB".parse::<ByteSize>().is_err());
        assert!("5XB".parse::<ByteSize>().is_err());
        assert_eq!("2d".parse::<HumanDuration>().unwrap().0, Duration::from_secs(172800));
        assert!("h".parse::<HumanDuration>().is_err());
        assert!("10".parse::<HumanDuration>().is_err());
    }

    #[test]
    fn flags_override_the_file() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cmd {
            #[command(flatten)]
            worker: WorkerFlags,
        }
        let mut w = parse(
            "[worker]\nsnapshotter = \"native\"\nlabels = { a = \"1\" }\nplatforms = [\"linux/arm64\"]\n[worker.gc]\nkeep-storage = \"1GB\"",
        )
        .unwrap();
        let cmd = Cmd::try_parse_from([
            "x",
            "--worker-snapshotter",
            "overlayfs",
            "--worker-label",
            "b=2",
            "--worker-platform",
            "linux/amd64",
            "--worker-net",
            "none",
            "--worker-gc-keep-storage",
            "2GiB",
            "--max-parallelism",
            "8",
            "--worker-selinux",
            "true",
            "--worker-proxy-snapshotter-namespace",
            "berth",
            "--worker-proxy-snapshotter-timeout",
            "5s",
        ])
        .unwrap();
        w.apply_flags(&cmd.worker);
        assert_eq!(w.snapshotter, SnapshotterChoice::Named("overlayfs".into()));
        assert_eq!(w.labels.len(), 2);
        assert_eq!(w.platforms, vec!["linux/amd64".parse().unwrap()]);
        assert_eq!(w.network.mode, NetworkMode::None);
        assert_eq!(w.gc.keep_storage, Some(ByteSize(2 << 30)));
        assert_eq!(w.max_parallelism, Some(8));
        assert!(w.selinux);
        assert_eq!(w.proxy_options().namespace, "berth");
        assert_eq!(w.proxy_options().call_timeout, Duration::from_secs(5));
        // A flag that is absent leaves the file's value.
        assert!(!w.rootless);
        assert!(Cmd::try_parse_from(["x", "--max-parallelism", "0"]).is_err());
        assert!(Cmd::try_parse_from(["x", "--worker-label", "novalue"]).is_err());
        assert!(Cmd::try_parse_from(["x", "--worker-proxy-snapshotter-namespace", "-x"]).is_err());
        assert!(Cmd::try_parse_from(["x", "--worker-proxy-snapshotter-timeout", "0s"]).is_err());
    }
}
