//! nomad-driver-containerd's task config → OCI spec, as a spec-mutator.
//!
//! The driver's `createContainer` turns a Nomad task's config into
//! containerd `SpecOpts`; this plugin returns the same edits as one typed
//! adjustment. The task config is read from, later winning:
//! 1. the plugin config (operator defaults: every key that is not one of the
//!    plugin's own settings below is a task config key),
//! 2. the request annotation named by `annotation` (default
//!    `io.berth.nomad.task`), holding the task config as a JSON object,
//! 3. request options with the task config's key names (`--opt command=sh`,
//!    `--opt args='["-c","echo hi"]'`, `--opt privileged=true`).
//!
//! Task config keys (the driver's, plus what Nomad hands the driver):
//! `command`, `args`, `privileged`, `seccomp`, `seccomp_profile`,
//! `readonly_rootfs`, `host_network`, `cap_add`, `cap_drop`, `devices`,
//! `mounts` (`type`, `target`, `source`, `options`), `sysctl`, `env`,
//! `memory_limit` (bytes or `256m`), `cpu_shares`, `secrets_dir`,
//! `task_dir`, `alloc_dir`, `netns_path`.
//!
//! The plugin's own settings: `annotation`, `allow_privileged`
//! (default true, as the driver's plugin option), `seccomp_profiles` (a map
//! from a `seccomp_profile` path to the profile's JSON: plugins cannot read
//! host files, so the operator registers the profiles a task may name; an
//! inline JSON object in `seccomp_profile` works too).
//!
//! Two differences from the Go driver, both forced by the sandbox:
//! devices are given by path only for well-known device numbers (see
//! [`known_device`]), otherwise as `PATH:c|b:MAJOR:MINOR`; and custom seccomp
//! profiles come from `seccomp_profiles` or inline JSON.

use std::borrow::Cow;
use std::collections::BTreeMap;

use berth_sdk::prelude::*;
use berth_sdk::size::Size;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The default request annotation carrying the task config as JSON.
pub const ANNOTATION: &str = "io.berth.nomad.task";

/// The plugin's own keys; every other key of its config is a task config
/// default.
#[derive(Debug)]
struct Settings {
    annotation: Cow<'static, str>,
    allow_privileged: bool,
    seccomp_profiles: BTreeMap<String, Value>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { annotation: Cow::Borrowed(ANNOTATION), allow_privileged: true, seccomp_profiles: BTreeMap::new() }
    }
}

/// Which part of a JSON object was being read when its deserialization
/// failed (the error message says whose mistake it is).
#[derive(Clone, Copy, PartialEq)]
enum Reading {
    /// Between keys: the text itself or the object's shape.
    Object,
    /// A plugin setting (`annotation`, `allow_privileged`, `seccomp_profiles`).
    Setting,
    /// A task config key.
    Task,
}

/// An object key, borrowed from the JSON text unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Reads the plugin config in one pass: the plugin's settings, and every
/// other key as a task config default (typed here, so a bad default is the
/// operator's error even when a task overrides it).
fn split_config(config: &Config) -> Result<(Settings, Layer), PluginError> {
    struct V<'a>(&'a mut Reading);
    impl<'de> Visitor<'de> for V<'_> {
        type Value = (Settings, Layer);
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a table")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let (mut settings, mut task) = (Settings::default(), Layer::default());
            while let Some(Key(key)) = map.next_key()? {
                *self.0 = Reading::Setting;
                match &*key {
                    "annotation" => settings.annotation = Cow::Owned(map.next_value()?),
                    "allow_privileged" => settings.allow_privileged = map.next_value()?,
                    "seccomp_profiles" => settings.seccomp_profiles = map.next_value()?,
                    key => {
                        *self.0 = Reading::Task;
                        if !task.read(key, &mut map)? {
                            return Err(de::Error::unknown_field(key, TASK_KEYS));
                        }
                    }
                }
                *self.0 = Reading::Object;
            }
            Ok((settings, task))
        }
    }
    let mut reading = Reading::Object;
    let mut de = serde_json::Deserializer::from_str(config.json());
    let read = de.deserialize_map(V(&mut reading)).and_then(|r| de.end().map(|()| r));
    read.map_err(|e| match reading {
        Reading::Setting => PluginError::invalid_config(format!("nomad-task: {e}")),
        Reading::Task => PluginError::invalid_config(format!("nomad-task: invalid task config default: {e}")),
        Reading::Object if e.is_data() => PluginError::invalid_config("nomad-task: config must be a table"),
        Reading::Object => Config::invalid(&e),
    })
}

/// A mount as the task config writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskMount {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub options: Vec<String>,
}

/// A device as the task config writes it: `PATH[:TYPE:MAJOR:MINOR]` or a
/// table.
#[derive(Debug, Clone)]
enum DeviceSpec {
    Path(String),
    Full(FullDevice),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FullDevice {
    path: String,
    #[serde(rename = "type", default = "char_type")]
    kind: String,
    major: i64,
    minor: i64,
    #[serde(default)]
    file_mode: Option<u32>,
}

fn char_type() -> String {
    "c".into()
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DeviceSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a device path (`PATH` or `PATH:TYPE:MAJOR:MINOR`) or a table with path, type, major, minor")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DeviceSpec, E> {
                Ok(DeviceSpec::Path(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<DeviceSpec, E> {
                Ok(DeviceSpec::Path(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<DeviceSpec, A::Error> {
                FullDevice::deserialize(de::value::MapAccessDeserializer::new(map)).map(DeviceSpec::Full)
            }
        }
        d.deserialize_any(V)
    }
}

/// `env` as a table of names to values or a list of `NAME=VALUE`.
#[derive(Debug, Clone)]
enum Env {
    Map(BTreeMap<String, String>),
    List(Vec<String>),
}

impl Default for Env {
    fn default() -> Self {
        Env::List(Vec::new())
    }
}

impl<'de> Deserialize<'de> for Env {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Env;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table of names to values or a list of NAME=VALUE")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Env, A::Error> {
                BTreeMap::deserialize(de::value::MapAccessDeserializer::new(map)).map(Env::Map)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Env, A::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Env::List)
            }
        }
        d.deserialize_any(V)
    }
}

/// Declares the task config, [`TaskConfig`], and [`Layer`]: the keys one
/// source of it (plugin config, annotation, options) sets.
macro_rules! task_config {
    ($($key:ident: $ty:ty,)*) => {
        /// The task config (nomad-driver-containerd's `TaskConfig` plus the
        /// task's environment, resources, directories and network namespace).
        #[derive(Debug, Default)]
        struct TaskConfig {
            $($key: $ty,)*
        }

        /// The keys one source of the task config sets (a key set to `null`
        /// is set: to `None`, or an error where the key takes no `null`).
        #[derive(Debug, Default)]
        struct Layer {
            $($key: Option<$ty>,)*
        }

        /// Every task config key, in declaration order.
        const TASK_KEYS: &[&str] = &[$(stringify!($key),)*];

        impl Layer {
            /// Reads `key`'s value from `map`; false (nothing read) when
            /// `key` is not a task config key.
            fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
                match key {
                    $(stringify!($key) => self.$key = Some(map.next_value()?),)*
                    _ => return Ok(false),
                }
                Ok(true)
            }

            /// Sets `key` from a JSON value; false when `key` is not a task
            /// config key.
            fn set(&mut self, key: &str, value: Value) -> Result<bool, serde_json::Error> {
                match key {
                    $(stringify!($key) => self.$key = Some(serde_json::from_value(value)?),)*
                    _ => return Ok(false),
                }
                Ok(true)
            }

            /// Whether this layer sets `key`.
            fn sets(&self, key: &str) -> bool {
                match key {
                    $(stringify!($key) => self.$key.is_some(),)*
                    _ => false,
                }
            }

            /// `config` with this layer's keys replacing its values.
            fn apply(self, config: &mut TaskConfig) {
                $(if let Some(v) = self.$key { config.$key = v; })*
            }
        }
    };
}

task_config! {
    image: Option<String>,
    command: Option<String>,
    args: Vec<String>,
    privileged: bool,
    seccomp: bool,
    seccomp_profile: Option<String>,
    readonly_rootfs: bool,
    host_network: bool,
    cap_add: Vec<String>,
    cap_drop: Vec<String>,
    devices: Vec<DeviceSpec>,
    mounts: Vec<TaskMount>,
    sysctl: BTreeMap<String, String>,
    env: Env,
    memory_limit: Option<Size>,
    cpu_shares: Option<u64>,
    secrets_dir: Option<String>,
    task_dir: Option<String>,
    alloc_dir: Option<String>,
    netns_path: Option<String>,
}

enum Shape {
    Text,
    Bool,
    Number,
    List,
    Json,
}

const KEYS: &[(&str, Shape)] = &[
    ("image", Shape::Text),
    ("command", Shape::Text),
    ("args", Shape::List),
    ("privileged", Shape::Bool),
    ("seccomp", Shape::Bool),
    ("seccomp_profile", Shape::Text),
    ("readonly_rootfs", Shape::Bool),
    ("host_network", Shape::Bool),
    ("cap_add", Shape::List),
    ("cap_drop", Shape::List),
    ("devices", Shape::List),
    ("mounts", Shape::Json),
    ("sysctl", Shape::Json),
    ("env", Shape::Json),
    ("memory_limit", Shape::Text),
    ("cpu_shares", Shape::Number),
    ("secrets_dir", Shape::Text),
    ("task_dir", Shape::Text),
    ("alloc_dir", Shape::Text),
    ("netns_path", Shape::Text),
];

/// An option's text as the JSON value of a task config key.
fn option_value(key: &str, shape: &Shape, text: &str) -> Result<Value, PluginError> {
    let bad = |why: &str| PluginError::rejected(format!("nomad-task: option {key}=`{text}`: {why}"));
    let t = text.trim();
    Ok(match shape {
        Shape::Text => Value::String(text.to_string()),
        Shape::Bool => match t {
            "true" | "1" | "yes" => Value::Bool(true),
            "false" | "0" | "no" | "" => Value::Bool(false),
            _ => return Err(bad("not a boolean")),
        },
        Shape::Number => Value::Number(t.parse::<u64>().map_err(|_| bad("not a number"))?.into()),
        Shape::List if t.starts_with('[') => serde_json::from_str(t).map_err(|e| bad(&e.to_string()))?,
        // `args` without JSON is one argument; the other lists are comma-separated.
        Shape::List if key == "args" => Value::Array(vec![Value::String(text.to_string())]),
        Shape::List => Value::Array(
            t.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.to_string())).collect(),
        ),
        Shape::Json => serde_json::from_str(t).map_err(|e| bad(&e.to_string()))?,
    })
}

/// Device numbers that are fixed by the kernel (Documentation/admin-guide/devices.txt),
/// so a task can name them by path without the plugin stat-ing the host.
pub fn known_device(path: &str) -> Option<(DeviceType, i64, i64)> {
    use DeviceType::{Block, Char};
    let fixed = match path {
        "/dev/null" => Some((Char, 1, 3)),
        "/dev/zero" => Some((Char, 1, 5)),
        "/dev/full" => Some((Char, 1, 7)),
        "/dev/random" => Some((Char, 1, 8)),
        "/dev/urandom" => Some((Char, 1, 9)),
        "/dev/kmsg" => Some((Char, 1, 11)),
        "/dev/tty" => Some((Char, 5, 0)),
        "/dev/console" => Some((Char, 5, 1)),
        "/dev/ptmx" => Some((Char, 5, 2)),
        "/dev/hwrng" => Some((Char, 10, 183)),
        "/dev/net/tun" => Some((Char, 10, 200)),
        "/dev/fuse" => Some((Char, 10, 229)),
        "/dev/kvm" => Some((Char, 10, 232)),
        "/dev/mapper/control" => Some((Char, 10, 236)),
        "/dev/loop-control" => Some((Char, 10, 237)),
        "/dev/vhost-net" => Some((Char, 10, 238)),
        "/dev/vhost-vsock" => Some((Char, 10, 241)),
        "/dev/nvidiactl" => Some((Char, 195, 255)),
        _ => None,
    };
    if fixed.is_some() {
        return fixed;
    }
    let numbered = |prefix: &str| -> Option<i64> {
        let n = path.strip_prefix(prefix)?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.len() > 4 {
            return None;
        }
        n.parse().ok()
    };
    if let Some(n) = numbered("/dev/loop") {
        return Some((Block, 7, n));
    }
    if let Some(n) = numbered("/dev/ttyS") {
        return (n < 192).then_some((Char, 4, 64 + n));
    }
    if let Some(n) = numbered("/dev/tty") {
        return (n < 64).then_some((Char, 4, n));
    }
    if let Some(n) = numbered("/dev/nvidia") {
        return (n < 255).then_some((Char, 195, n));
    }
    if let Some(n) = numbered("/dev/dri/card") {
        return (n < 64).then_some((Char, 226, n));
    }
    if let Some(n) = numbered("/dev/dri/renderD") {
        return (128..192).contains(&n).then_some((Char, 226, n));
    }
    // SCSI disks: /dev/sda.. /dev/sdp (major 8), partitions 1..15.
    if let Some(rest) = path.strip_prefix("/dev/sd") {
        let mut chars = rest.chars();
        let letter = chars.next()?;
        if !('a'..='p').contains(&letter) {
            return None;
        }
        let disk = (letter as i64 - 'a' as i64) * 16;
        let part = chars.as_str();
        if part.is_empty() {
            return Some((Block, 8, disk));
        }
        let p: i64 = part.parse().ok()?;
        return (1..16).contains(&p).then_some((Block, 8, disk + p));
    }
    None
}

fn device(spec: &DeviceSpec) -> Result<Device, PluginError> {
    let (path, kind, major, minor, file_mode) = match spec {
        DeviceSpec::Path(text) => {
            let parts: Vec<&str> = text.split(':').collect();
            match parts.as_slice() {
                [path] => {
                    let (kind, major, minor) = known_device(path).ok_or_else(|| {
                        PluginError::rejected(format!(
                            "nomad-task: device `{path}`: its numbers are not fixed and a plugin cannot stat host \
                             devices; write it as `{path}:c:MAJOR:MINOR`"
                        ))
                    })?;
                    return Ok(Device {
                        path: path.to_string(),
                        type_: kind,
                        major,
                        minor,
                        file_mode: None,
                        uid: None,
                        gid: None,
                    });
                }
                [path, kind, major, minor] => {
                    let num = |s: &str| {
                        s.parse::<i64>().map_err(|_| {
                            PluginError::rejected(format!("nomad-task: device `{text}`: bad number `{s}`"))
                        })
                    };
                    (path.to_string(), kind.to_string(), num(major)?, num(minor)?, None)
                }
                _ => {
                    return Err(PluginError::rejected(format!(
                        "nomad-task: device `{text}`: expected PATH or PATH:TYPE:MAJOR:MINOR"
                    )));
                }
            }
        }
        DeviceSpec::Full(FullDevice { path, kind, major, minor, file_mode }) => {
            (path.clone(), kind.clone(), *major, *minor, *file_mode)
        }
    };
    let type_ = match kind.as_str() {
        "c" | "u" | "char" => DeviceType::Char,
        "b" | "block" => DeviceType::Block,
        other => {
            return Err(PluginError::rejected(format!("nomad-task: device `{path}`: unknown type `{other}` (c or b)")));
        }
    };
    if !path.starts_with("/dev/") {
        return Err(PluginError::rejected(format!("nomad-task: device `{path}` is not under /dev")));
    }
    Ok(Device { path, type_, major, minor, file_mode, uid: None, gid: None })
}

fn normalize_cap(cap: &str) -> String {
    let up = cap.trim().to_ascii_uppercase();
    if up == "ALL" || up.starts_with("CAP_") { up } else { format!("CAP_{up}") }
}

/// The privileged bits of containerd's `oci.WithPrivileged`.
pub fn with_privileged_bits() -> Privileged {
    Privileged::ALL_CAPABILITIES
        | Privileged::CLEAR_MASKED_PATHS
        | Privileged::CLEAR_READONLY_PATHS
        | Privileged::SYSFS_RW
        | Privileged::CGROUPFS_RW
        | Privileged::UNCONFINED_APPARMOR
}

/// The task config: the plugin config's defaults, then the annotation's
/// keys, then the options' (a later source replaces a key whole).
fn task_config(container: &ContainerView, s: &Settings, defaults: Layer) -> Result<TaskConfig, PluginError> {
    // Each task key's last option (options are few; KEYS are many).
    let mut options = Layer::default();
    for kv in container.options().iter().rev() {
        let key = kv.key.as_str();
        if options.sets(key) {
            continue;
        }
        let Some((_, shape)) = KEYS.iter().find(|(k, _)| *k == key) else { continue };
        let value = option_value(key, shape, &kv.value)?;
        options
            .set(key, value)
            .map_err(|e| PluginError::rejected(format!("nomad-task: invalid task config: option {key}: {e}")))?;
    }
    let annotation = match container.annotation(&s.annotation) {
        Some(text) => annotation_layer(text, &s.annotation, &options)?,
        None => Layer::default(),
    };
    let mut task = TaskConfig::default();
    defaults.apply(&mut task);
    annotation.apply(&mut task);
    options.apply(&mut task);
    Ok(task)
}

/// The task config keys of the annotation `name` (a JSON object). Keys the
/// options set are skipped: only their syntax is checked, as the options
/// replace them.
fn annotation_layer(text: &str, name: &str, options: &Layer) -> Result<Layer, PluginError> {
    struct V<'a> {
        options: &'a Layer,
        reading: &'a mut Reading,
    }
    impl<'de> Visitor<'de> for V<'_> {
        type Value = Layer;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Layer, A::Error> {
            let mut layer = Layer::default();
            while let Some(Key(key)) = map.next_key()? {
                *self.reading = Reading::Task;
                if self.options.sets(&key) {
                    map.next_value::<de::IgnoredAny>()?;
                } else if !layer.read(&key, &mut map)? {
                    return Err(de::Error::unknown_field(&key, TASK_KEYS));
                }
                *self.reading = Reading::Object;
            }
            Ok(layer)
        }
    }
    let mut reading = Reading::Object;
    let mut de = serde_json::Deserializer::from_str(text);
    let read = de.deserialize_map(V { options, reading: &mut reading }).and_then(|l| de.end().map(|()| l));
    read.map_err(|e| match reading {
        Reading::Task if e.is_data() => {
            PluginError::rejected(format!("nomad-task: invalid task config in annotation {name}: {e}"))
        }
        Reading::Object if e.is_data() => {
            PluginError::rejected(format!("nomad-task: annotation {name} is not a JSON object"))
        }
        _ => PluginError::rejected(format!("nomad-task: annotation {name}: {e}")),
    })
}

pub struct NomadTask;

impl SpecMutator for NomadTask {
    fn info() -> PluginInfo {
        berth_sdk::plugin_info!("nomad-driver-containerd task config -> spec")
    }

    fn mutate(container: ContainerView, config: Config) -> Result<Adjustment, PluginError> {
        let (s, defaults) = split_config(&config)?;
        let task = task_config(&container, &s, defaults)?;
        let mut adj = Adjustment::default();

        // Command and args (oci.WithImageConfigArgs): the image entrypoint
        // stays, the user's command and args replace the image's cmd.
        let command = task.command.as_deref().filter(|c| !c.is_empty());
        if command.is_none() && !task.args.is_empty() {
            return Err(PluginError::rejected("Command is empty. Cannot set --args without --command."));
        }
        if let Some(command) = command {
            let mut args = container.image_config().entrypoint.clone();
            args.push(command.to_string());
            args.extend(task.args.iter().cloned());
            adj = adj.args(args);
        }

        if task.privileged {
            if !s.allow_privileged {
                return Err(PluginError::rejected(
                    "Running privileged jobs are not allowed. Set allow_privileged to true in plugin config to allow running privileged jobs.",
                ));
            }
            adj = adj.privileged(with_privileged_bits()).seccomp_unconfined();
        }

        let profile = task.seccomp_profile.as_deref().filter(|p| !p.is_empty());
        if !task.seccomp && profile.is_some() {
            return Err(PluginError::rejected("seccomp must be set to true, if using a custom seccomp_profile."));
        }
        if task.seccomp {
            adj = match profile {
                None => adj.seccomp_default(),
                Some(p) => adj.seccomp_profile(&seccomp_profile(p, &s)?),
            };
        }

        if task.readonly_rootfs {
            adj = adj.readonly_rootfs(true);
        }

        // oci.WithHostNamespace(network), WithHostHostsFile, WithHostResolvconf.
        if task.host_network {
            adj = adj.bind_mount("/etc/hosts", "/etc/hosts", &["rbind", "ro"]).bind_mount(
                "/etc/resolv.conf",
                "/etc/resolv.conf",
                &["rbind", "ro"],
            );
        }

        for cap in &task.cap_add {
            adj = adj.add_cap(normalize_cap(cap));
        }
        for cap in &task.cap_drop {
            adj = adj.drop_cap(normalize_cap(cap));
        }

        match &task.env {
            Env::Map(map) => {
                for (k, v) in map {
                    adj = adj.env(k, v);
                }
            }
            Env::List(list) => {
                for entry in list {
                    let (k, v) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
                    if k.is_empty() {
                        return Err(PluginError::rejected(format!("nomad-task: env entry `{entry}` has no name")));
                    }
                    adj = adj.env(k, v);
                }
            }
        }

        if let Some(Size(bytes)) = task.memory_limit
            && bytes > 0
        {
            let bytes =
                i64::try_from(bytes).map_err(|_| PluginError::rejected("nomad-task: memory_limit is too large"))?;
            adj = adj.memory_limit(bytes);
        }
        if let Some(shares) = task.cpu_shares
            && shares > 0
        {
            adj = adj.cpu_shares(shares);
        }

        // oci.WithLinuxDevice(path, "rwm").
        for spec in &task.devices {
            adj = adj.device_with_access(device(spec)?, "rwm");
        }

        for m in &task.mounts {
            if (m.kind == "bind" || m.kind == "volume") && m.options.is_empty() {
                return Err(PluginError::rejected(format!(
                    "Options cannot be empty for mount type: {}. You need to atleast pass rbind and ro.",
                    m.kind
                )));
            }
            if m.target.is_empty() {
                return Err(PluginError::rejected(format!("nomad-task: mount of `{}` has no target", m.source)));
            }
            let options: Vec<&str> = m.options.iter().map(String::as_str).collect();
            adj = adj.mount(Mount::new(m.kind.clone(), m.source.clone(), m.target.clone(), &options));
        }
        for (dir, target) in [(&task.secrets_dir, "/secrets"), (&task.task_dir, "/local"), (&task.alloc_dir, "/alloc")]
        {
            if let Some(dir) = dir.as_deref().filter(|d| !d.is_empty()) {
                adj = adj.bind_mount(dir, target, &["rbind", "ro"]);
            }
        }

        for (k, v) in &task.sysctl {
            adj = adj.sysctl(k, v);
        }

        // The task's network namespace (CNI-created) wins over host_network,
        // as WithLinuxNamespace comes after WithHostNamespace in the driver.
        if let Some(path) = task.netns_path.as_deref().filter(|p| !p.is_empty()) {
            adj = adj.join_namespace(NamespaceKind::Network, path);
        } else if task.host_network {
            adj = adj.host_namespace(NamespaceKind::Network);
        }

        let _ = task.image; // the image is the host's business
        Ok(adj)
    }
}

fn seccomp_profile(p: &str, s: &Settings) -> Result<Value, PluginError> {
    let value = if p.trim_start().starts_with('{') {
        serde_json::from_str::<Value>(p)
            .map_err(|e| PluginError::rejected(format!("nomad-task: seccomp_profile: {e}")))?
    } else {
        s.seccomp_profiles.get(p).cloned().ok_or_else(|| {
            PluginError::rejected(format!(
                "nomad-task: seccomp_profile `{p}` is not registered in the plugin's `seccomp_profiles` (plugins cannot read host files)"
            ))
        })?
    };
    if !value.is_object() || value.get("defaultAction").and_then(Value::as_str).is_none() {
        return Err(PluginError::rejected(format!(
            "nomad-task: seccomp_profile `{p}` is not an OCI linux.seccomp object (no defaultAction)"
        )));
    }
    Ok(value)
}

berth_sdk::export!(NomadTask as spec_mutator);

#[cfg(test)]
mod tests;
