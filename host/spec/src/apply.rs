//! Applying one plugin's [`Adjustment`] to a spec: validation, the scalar
//! claims conflict detection works on, and the containerd `SpecOpts` each
//! field corresponds to.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_spec::runtime::{
    Capabilities, Hook as OciHook, Hooks, Linux, LinuxCapabilities, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType,
    LinuxNamespace, LinuxNamespaceType, LinuxResources, LinuxSeccomp, Mount as OciMount, PosixRlimitBuilder,
    PosixRlimitType, Process, Spec,
};

use crate::adjustment::{
    Adjustment, Device, DeviceRule, DeviceType, Hook, HookStage, Mount, NamespaceKind, NamespaceMode, Resources,
    Rlimit, Seccomp, User,
};
use crate::grants::Field;
use crate::image::{ResolvedUser, resolve_user, set_user};
use crate::json::{CAPABILITY_NAMES, capability_name, parse_capability};

/// Builds containerd's default seccomp profile (an OCI `linux.seccomp`
/// object) for an architecture (`amd64`...) and the bounding capabilities.
pub type DefaultSeccomp = Arc<dyn Fn(&str, &[String]) -> serde_json::Value + Send + Sync>;

/// What applying depends on outside the spec: the host's /dev, its
/// capabilities, the default seccomp profile. Injectable for tests.
#[derive(Clone)]
pub struct HostFacts {
    /// Scanned for `privileged.host-devices` (containerd's `WithHostDevices`).
    pub dev_dir: PathBuf,
    /// What `privileged.all-capabilities` grants: like containerd's
    /// `WithAllCurrentCapabilities`, the host process's effective set
    /// (`CAP_*` names).
    pub capabilities: Vec<String>,
    /// Architecture name for the default seccomp profile (`amd64`, `arm64`...).
    pub arch: String,
    pub default_seccomp: Option<DefaultSeccomp>,
}

impl std::fmt::Debug for HostFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostFacts")
            .field("dev_dir", &self.dev_dir)
            .field("capabilities", &self.capabilities.len())
            .field("arch", &self.arch)
            .field("default_seccomp", &self.default_seccomp.is_some())
            .finish()
    }
}

impl HostFacts {
    /// The running host's facts, with berth-seccomp's default profile
    /// (containerd's allowlist).
    pub fn detect() -> Self {
        HostFacts {
            dev_dir: PathBuf::from("/dev"),
            capabilities: current_capabilities(),
            arch: go_arch().to_string(),
            default_seccomp: Some(Arc::new(berth_seccomp::default_profile)),
        }
    }

    pub fn with_default_seccomp(mut self, f: DefaultSeccomp) -> Self {
        self.default_seccomp = Some(f);
        self
    }
}

/// This process's effective capabilities (containerd's `cap.Current`): the
/// `CapEff` mask of /proc/self/status, limited to the capabilities the
/// kernel knows. Empty when /proc is unreadable.
pub fn current_capabilities() -> Vec<String> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|t| t.trim().parse::<usize>().ok())
        .unwrap_or(CAPABILITY_NAMES.len() - 1);
    let mask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
            u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
        })
        .unwrap_or(0);
    CAPABILITY_NAMES
        .iter()
        .enumerate()
        .filter(|(n, _)| *n <= last && *n < 64 && mask & (1u64 << n) != 0)
        .map(|(_, name)| name.to_string())
        .collect()
}

/// Go's name for the build architecture, as containerd's profiles use.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// Why an adjustment could not be applied. `plugin` is the mutator's name.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("plugin {plugin:?}: invalid {field}: {reason}")]
    Invalid { plugin: String, field: Field, reason: String },
    #[error(
        "plugins {first:?} and {second:?} both set {key}: {first:?} to {first_value}, {second:?} to {second_value} \
         (allow the later one to override to accept this)"
    )]
    Conflict { key: String, field: Field, first: String, first_value: String, second: String, second_value: String },
}

/// A scalar an earlier plugin set, and to what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub plugin: String,
    pub value: String,
}

/// One plugin overriding another's value (allowed by `override = true`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Override {
    pub key: String,
    pub previous_plugin: String,
    pub previous_value: String,
    pub value: String,
}

/// The scalars plugins have set so far: `hostname`, `env FOO`,
/// `resources.memory-limit`, `capability CAP_X`, `mount /data`...
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    claims: HashMap<String, Claim>,
}

impl Ledger {
    pub fn get(&self, key: &str) -> Option<&Claim> {
        self.claims.get(key)
    }
}

/// The state one adjustment is applied with.
pub(crate) struct Ctx<'a> {
    pub plugin: &'a str,
    pub may_override: bool,
    pub ledger: &'a mut Ledger,
    pub overrides: Vec<Override>,
    pub host: &'a HostFacts,
    pub rootfs: Option<&'a Path>,
}

impl Ctx<'_> {
    fn invalid(&self, field: Field, reason: impl Into<String>) -> ApplyError {
        ApplyError::Invalid { plugin: self.plugin.to_string(), field, reason: reason.into() }
    }

    /// Records that this plugin sets `key` to `value`; a different value set
    /// by another plugin is a conflict unless this one may override.
    fn claim(&mut self, field: Field, key: String, value: String) -> Result<(), ApplyError> {
        if let Some(prev) = self.ledger.claims.get(&key)
            && prev.plugin != self.plugin
            && prev.value != value
        {
            if !self.may_override {
                return Err(ApplyError::Conflict {
                    key,
                    field,
                    first: prev.plugin.clone(),
                    first_value: prev.value.clone(),
                    second: self.plugin.to_string(),
                    second_value: value,
                });
            }
            self.overrides.push(Override {
                key: key.clone(),
                previous_plugin: prev.plugin.clone(),
                previous_value: prev.value.clone(),
                value: value.clone(),
            });
        }
        self.ledger.claims.insert(key, Claim { plugin: self.plugin.to_string(), value });
        Ok(())
    }
}

fn process(spec: &mut Spec) -> &mut Process {
    spec.process_mut().get_or_insert_with(Default::default)
}

fn linux(spec: &mut Spec) -> &mut Linux {
    spec.linux_mut().get_or_insert_with(Default::default)
}

fn resources(spec: &mut Spec) -> &mut LinuxResources {
    linux(spec).resources_mut().get_or_insert_with(Default::default)
}

fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn require_absolute(ctx: &Ctx, field: Field, what: &str, path: &str) -> Result<(), ApplyError> {
    if !path.starts_with('/') {
        return Err(ctx.invalid(field, format!("{what} {path:?} is not an absolute path")));
    }
    if path.contains('\0') {
        return Err(ctx.invalid(field, format!("{what} {path:?} contains a NUL byte")));
    }
    Ok(())
}

fn quoted(s: &str) -> String {
    format!("{s:?}")
}

/// Applies `adj` to `spec`. The caller applies to a copy and keeps it only
/// on success, so a failing adjustment leaves nothing behind.
pub(crate) fn apply(spec: &mut Spec, adj: &Adjustment, ctx: &mut Ctx) -> Result<(), ApplyError> {
    // containerd order for a privileged task: WithPrivileged first, then
    // capability, env, resource, device and mount options on top of it.
    apply_privileged(spec, adj, ctx)?;
    if let Some(args) = &adj.args {
        if args.is_empty() {
            return Err(ctx.invalid(Field::Args, "args must not be empty"));
        }
        ctx.claim(Field::Args, "args".into(), serde_json::to_string(args).unwrap_or_default())?;
        process(spec).set_args(Some(args.clone()));
    }
    apply_env(spec, adj, ctx)?;
    if let Some(cwd) = &adj.cwd {
        require_absolute(ctx, Field::Cwd, "cwd", cwd)?;
        ctx.claim(Field::Cwd, "cwd".into(), quoted(cwd))?;
        process(spec).set_cwd(PathBuf::from(cwd));
    }
    if let Some(user) = &adj.user {
        let resolved = match user {
            User::Ids { uid, gid, additional_gids } => {
                ResolvedUser { uid: *uid, gid: *gid, additional_gids: additional_gids.clone() }
            }
            User::Name(name) => {
                resolve_user(Some(name), ctx.rootfs).map_err(|e| ctx.invalid(Field::User, e.to_string()))?
            }
        };
        let value = format!("{}:{} {:?}", resolved.uid, resolved.gid, resolved.additional_gids);
        ctx.claim(Field::User, "user".into(), value)?;
        set_user(spec, &resolved);
    }
    apply_capabilities(spec, adj, ctx)?;
    if let Some(nnp) = adj.no_new_privileges {
        ctx.claim(Field::NoNewPrivileges, "no-new-privileges".into(), nnp.to_string())?;
        // containerd omits `false` (omitempty).
        process(spec).set_no_new_privileges(nnp.then_some(true));
    }
    apply_mounts(spec, adj, ctx)?;
    for device in &adj.devices {
        apply_device(spec, device, ctx)?;
    }
    for rule in &adj.device_rules {
        let rule = device_rule(rule, ctx)?;
        resources(spec).devices_mut().get_or_insert_with(Vec::new).push(rule);
    }
    apply_namespaces(spec, adj, ctx)?;
    if let Some(r) = &adj.resources {
        apply_resources(spec, r, ctx)?;
    }
    for rlimit in &adj.rlimits {
        apply_rlimit(spec, rlimit, ctx)?;
    }
    if let Some(seccomp) = &adj.seccomp {
        apply_seccomp(spec, seccomp, ctx)?;
    }
    if let Some(ro) = adj.readonly_rootfs {
        ctx.claim(Field::ReadonlyRootfs, "readonly-rootfs".into(), ro.to_string())?;
        spec.root_mut().get_or_insert_with(Default::default).set_readonly(ro.then_some(true));
    }
    for (key, value) in &adj.sysctls {
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(ctx.invalid(Field::Sysctls, format!("sysctl name {key:?} is empty or has whitespace")));
        }
        ctx.claim(Field::Sysctls, format!("sysctl {key}"), quoted(value))?;
        linux(spec).sysctl_mut().get_or_insert_with(HashMap::new).insert(key.clone(), value.clone());
    }
    for hook in &adj.hooks {
        apply_hook(spec, hook, ctx)?;
    }
    for (key, value) in &adj.annotations {
        if key.is_empty() {
            return Err(ctx.invalid(Field::Annotations, "annotation key is empty"));
        }
        ctx.claim(Field::Annotations, format!("annotation {key}"), quoted(value))?;
        spec.annotations_mut().get_or_insert_with(HashMap::new).insert(key.clone(), value.clone());
    }
    apply_paths(spec, adj, ctx)?;
    if let Some(hostname) = &adj.hostname {
        if hostname.len() > 64 || hostname.contains(['/', '\0']) {
            return Err(ctx.invalid(Field::Hostname, format!("{hostname:?} is not a valid hostname")));
        }
        ctx.claim(Field::Hostname, "hostname".into(), quoted(hostname))?;
        spec.set_hostname((!hostname.is_empty()).then(|| hostname.clone()));
    }
    Ok(())
}

fn apply_privileged(spec: &mut Spec, adj: &Adjustment, ctx: &mut Ctx) -> Result<(), ApplyError> {
    let p = adj.privileged;
    if p.all_capabilities {
        // WithAllCurrentCapabilities: the host's current capabilities, in
        // bounding, effective and permitted.
        let all: Capabilities = ctx.host.capabilities.iter().filter_map(|name| parse_capability(name)).collect();
        let process = process(spec);
        let mut caps = process.capabilities().clone().unwrap_or_else(empty_capabilities);
        caps.set_bounding(Some(all.clone()));
        caps.set_effective(Some(all.clone()));
        caps.set_permitted(Some(all));
        process.set_capabilities(Some(caps));
    }
    if p.clear_masked_paths {
        linux(spec).set_masked_paths(None);
    }
    if p.clear_readonly_paths {
        linux(spec).set_readonly_paths(None);
    }
    // WithWriteableSysfs / WithWriteableCgroupfs: `ro` -> `rw` on those mounts.
    for (enabled, fs_type) in [(p.sysfs_rw, "sysfs"), (p.cgroupfs_rw, "cgroup")] {
        if !enabled {
            continue;
        }
        for mount in spec.mounts_mut().iter_mut().flatten() {
            if mount.typ().as_deref() == Some(fs_type)
                && let Some(options) = mount.options_mut()
            {
                for o in options.iter_mut().filter(|o| *o == "ro") {
                    *o = "rw".to_string();
                }
            }
        }
    }
    if p.unconfined_apparmor {
        process(spec).set_apparmor_profile(None);
        process(spec).set_selinux_label(None);
    }
    if p.all_devices {
        // WithAllDevicesAllowed
        let mut allow = LinuxDeviceCgroup::default();
        allow.set_allow(true);
        allow.set_typ(None);
        allow.set_access(Some("rwm".into()));
        resources(spec).set_devices(Some(vec![allow]));
    }
    if p.host_devices {
        // WithHostDevices
        let devices = host_devices(&ctx.host.dev_dir).map_err(|e| {
            ctx.invalid(Field::Privileged, format!("cannot list host devices in {}: {e}", ctx.host.dev_dir.display()))
        })?;
        linux(spec).devices_mut().get_or_insert_with(Vec::new).extend(devices);
    }
    Ok(())
}

fn empty_capabilities() -> LinuxCapabilities {
    let mut caps = LinuxCapabilities::default();
    for set in [
        LinuxCapabilities::set_bounding,
        LinuxCapabilities::set_effective,
        LinuxCapabilities::set_permitted,
        LinuxCapabilities::set_inheritable,
        LinuxCapabilities::set_ambient,
    ] {
        set(&mut caps, None);
    }
    caps
}

fn apply_env(spec: &mut Spec, adj: &Adjustment, ctx: &mut Ctx) -> Result<(), ApplyError> {
    if adj.env_set.is_empty() && adj.env_unset.is_empty() {
        return Ok(());
    }
    let mut env = process(spec).env().clone().unwrap_or_default();
    for key in &adj.env_unset {
        if key.is_empty() || key.contains('=') {
            return Err(ctx.invalid(Field::Env, format!("cannot unset {key:?}: not a variable name")));
        }
        ctx.claim(Field::Env, format!("env {key}"), "(unset)".into())?;
        env.retain(|e| e.split_once('=').map(|(k, _)| k).unwrap_or(e) != key);
    }
    for (key, value) in &adj.env_set {
        if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
            return Err(ctx.invalid(Field::Env, format!("{key:?} is not a valid variable name")));
        }
        ctx.claim(Field::Env, format!("env {key}"), quoted(value))?;
        env = crate::image::replace_or_append_env(&env, &[format!("{key}={value}")]);
    }
    process(spec).set_env(Some(env));
    Ok(())
}

fn apply_capabilities(spec: &mut Spec, adj: &Adjustment, ctx: &mut Ctx) -> Result<(), ApplyError> {
    if adj.capabilities_add.is_empty() && adj.capabilities_drop.is_empty() {
        return Ok(());
    }
    let parse = |ctx: &Ctx, name: &str| {
        parse_capability(name).ok_or_else(|| ctx.invalid(Field::Capabilities, format!("unknown capability {name:?}")))
    };
    let process = process(spec);
    let mut caps = process.capabilities().clone().unwrap_or_else(empty_capabilities);
    // WithAddedCapabilities / WithDroppedCapabilities: bounding, effective,
    // permitted. A drop also leaves no trace in inheritable/ambient.
    for name in &adj.capabilities_add {
        let cap = parse(ctx, name)?;
        ctx.claim(Field::Capabilities, format!("capability {}", capability_name(cap)), "added".into())?;
        for (get, set) in bep() {
            let mut s = get(&caps).clone().unwrap_or_default();
            s.insert(cap);
            set(&mut caps, Some(s));
        }
    }
    for name in &adj.capabilities_drop {
        let cap = parse(ctx, name)?;
        ctx.claim(Field::Capabilities, format!("capability {}", capability_name(cap)), "dropped".into())?;
        for (get, set) in bep().into_iter().chain(ia()) {
            if let Some(mut s) = get(&caps).clone() {
                s.remove(&cap);
                set(&mut caps, Some(s));
            }
        }
    }
    process.set_capabilities(Some(caps));
    Ok(())
}

type CapGet = fn(&LinuxCapabilities) -> &Option<Capabilities>;
type CapSet = fn(&mut LinuxCapabilities, Option<Capabilities>) -> &mut LinuxCapabilities;

fn bep() -> [(CapGet, CapSet); 3] {
    [
        (LinuxCapabilities::bounding, LinuxCapabilities::set_bounding),
        (LinuxCapabilities::effective, LinuxCapabilities::set_effective),
        (LinuxCapabilities::permitted, LinuxCapabilities::set_permitted),
    ]
}

fn ia() -> [(CapGet, CapSet); 2] {
    [
        (LinuxCapabilities::inheritable, LinuxCapabilities::set_inheritable),
        (LinuxCapabilities::ambient, LinuxCapabilities::set_ambient),
    ]
}

pub(crate) fn oci_mount(m: &Mount) -> OciMount {
    let mut out = OciMount::default();
    out.set_destination(PathBuf::from(&m.destination));
    out.set_typ((!m.kind.is_empty()).then(|| m.kind.clone()));
    out.set_source((!m.source.is_empty()).then(|| PathBuf::from(&m.source)));
    out.set_options((!m.options.is_empty()).then(|| m.options.clone()));
    out
}

fn apply_mounts(spec: &mut Spec, adj: &Adjustment, ctx: &mut Ctx) -> Result<(), ApplyError> {
    for dest in &adj.mounts_remove {
        require_absolute(ctx, Field::Mounts, "mount destination", dest)?;
        let dest = clean(dest);
        ctx.claim(Field::Mounts, format!("mount {dest}"), "(removed)".into())?;
        // WithoutMounts
        if let Some(mounts) = spec.mounts_mut() {
            mounts.retain(|m| clean(&m.destination().to_string_lossy()) != dest);
        }
    }
    for m in &adj.mounts_add {
        require_absolute(ctx, Field::Mounts, "mount destination", &m.destination)?;
        if m.kind.is_empty() {
            return Err(ctx.invalid(Field::Mounts, format!("mount at {} has no type", m.destination)));
        }
        if m.kind == "bind" && !m.source.starts_with('/') {
            return Err(ctx.invalid(
                Field::Mounts,
                format!("bind mount at {} needs an absolute source, got {:?}", m.destination, m.source),
            ));
        }
        let value = format!("{} {} {:?}", m.kind, m.source, m.options);
        ctx.claim(Field::Mounts, format!("mount {}", clean(&m.destination)), value)?;
        // WithMounts appends.
        spec.mounts_mut().get_or_insert_with(Vec::new).push(oci_mount(m));
    }
    Ok(())
}

fn device_type(t: DeviceType) -> LinuxDeviceType {
    match t {
        DeviceType::Char => LinuxDeviceType::C,
        DeviceType::Block => LinuxDeviceType::B,
        DeviceType::Fifo => LinuxDeviceType::P,
    }
}

/// containerd's `DeviceFromPath`: the node's type, numbers, mode and owner.
/// `Ok(None)` when it is not a device.
pub fn device_from_path(path: &Path) -> std::io::Result<Option<LinuxDevice>> {
    let st = rustix::fs::lstat(path)?;
    let file_type = rustix::fs::FileType::from_raw_mode(st.st_mode);
    let typ = match file_type {
        rustix::fs::FileType::CharacterDevice => LinuxDeviceType::C,
        rustix::fs::FileType::BlockDevice => LinuxDeviceType::B,
        _ => return Ok(None),
    };
    let rdev = st.st_rdev;
    let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    if major == 0 {
        return Ok(None);
    }
    let mut dev = LinuxDevice::default();
    dev.set_path(path.to_path_buf());
    dev.set_typ(typ);
    dev.set_major(major as i64);
    dev.set_minor(minor as i64);
    dev.set_file_mode(Some(st.st_mode & 0o7777));
    dev.set_uid(Some(st.st_uid));
    dev.set_gid(Some(st.st_gid));
    Ok(Some(dev))
}

/// containerd's `getDevices`: every device node under `dir`, skipping the
/// same directories and /dev/console.
pub fn host_devices(dir: &Path) -> std::io::Result<Vec<LinuxDevice>> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    let mut out = Vec::new();
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            if matches!(name.as_ref(), "pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev") {
                continue;
            }
            out.extend(host_devices(&path)?);
            continue;
        }
        if name == "console" {
            continue;
        }
        match device_from_path(&path) {
            Ok(Some(dev)) => out.push(dev),
            Ok(None) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn apply_device(spec: &mut Spec, d: &Device, ctx: &mut Ctx) -> Result<(), ApplyError> {
    require_absolute(ctx, Field::Devices, "device path", &d.path)?;
    let (dev, rule) = if d.major < 0 || d.minor < 0 {
        // Numbers unknown to the (sandboxed) plugin: `WithLinuxDevice(path,
        // "rwm")` — the host's node at that path, allowed rwm.
        let dev = device_from_path(Path::new(&d.path))
            .map_err(|e| ctx.invalid(Field::Devices, format!("cannot stat host device {}: {e}", d.path)))?
            .ok_or_else(|| ctx.invalid(Field::Devices, format!("{} is not a device node", d.path)))?;
        let mut rule = LinuxDeviceCgroup::from(&dev);
        rule.set_access(Some("rwm".into()));
        (dev, Some(rule))
    } else {
        let mut dev = LinuxDevice::default();
        dev.set_path(PathBuf::from(&d.path));
        dev.set_typ(device_type(d.kind));
        dev.set_major(d.major);
        dev.set_minor(d.minor);
        dev.set_file_mode(d.file_mode);
        dev.set_uid(d.uid);
        dev.set_gid(d.gid);
        if d.file_mode.is_none()
            && d.uid.is_none()
            && d.gid.is_none()
            && let Ok(Some(host)) = device_from_path(Path::new(&d.path))
            && (host.typ(), host.major(), host.minor()) == (dev.typ(), dev.major(), dev.minor())
        {
            // The same node on the host: its mode and owner, as containerd's
            // DeviceFromPath records them.
            dev.set_file_mode(host.file_mode());
            dev.set_uid(host.uid());
            dev.set_gid(host.gid());
        }
        (dev, None)
    };
    let value = format!("{} {}:{}", dev.typ().as_str(), dev.major(), dev.minor());
    ctx.claim(Field::Devices, format!("device {}", clean(&d.path)), value)?;
    linux(spec).devices_mut().get_or_insert_with(Vec::new).push(dev);
    if let Some(rule) = rule {
        resources(spec).devices_mut().get_or_insert_with(Vec::new).push(rule);
    }
    Ok(())
}

fn device_rule(r: &DeviceRule, ctx: &Ctx) -> Result<LinuxDeviceCgroup, ApplyError> {
    let typ = match r.kind.as_deref() {
        None | Some("a") => None,
        Some("c") => Some(LinuxDeviceType::C),
        Some("b") => Some(LinuxDeviceType::B),
        Some(other) => {
            return Err(ctx.invalid(Field::Devices, format!("device rule type {other:?} is not a, b or c")));
        }
    };
    if r.access.is_empty() || !r.access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(ctx.invalid(Field::Devices, format!("device rule access {:?} is not made of r, w, m", r.access)));
    }
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(r.allow);
    rule.set_typ(typ);
    rule.set_major(r.major);
    rule.set_minor(r.minor);
    rule.set_access(Some(r.access.clone()));
    Ok(rule)
}

pub(crate) fn namespace_type(kind: NamespaceKind) -> LinuxNamespaceType {
    match kind {
        NamespaceKind::Pid => LinuxNamespaceType::Pid,
        NamespaceKind::Network => LinuxNamespaceType::Network,
        NamespaceKind::Mount => LinuxNamespaceType::Mount,
        NamespaceKind::Ipc => LinuxNamespaceType::Ipc,
        NamespaceKind::Uts => LinuxNamespaceType::Uts,
        NamespaceKind::User => LinuxNamespaceType::User,
        NamespaceKind::Cgroup => LinuxNamespaceType::Cgroup,
        NamespaceKind::Time => LinuxNamespaceType::Time,
    }
}

fn apply_namespaces(spec: &mut Spec, adj: &Adjustment, ctx: &mut Ctx) -> Result<(), ApplyError> {
    for setting in &adj.namespaces {
        let typ = namespace_type(setting.kind);
        let name =
            serde_json::to_value(setting.kind).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        let (value, path) = match &setting.mode {
            NamespaceMode::New => ("new".to_string(), None),
            NamespaceMode::Host => ("host".to_string(), None),
            NamespaceMode::Join(path) => {
                require_absolute(ctx, Field::Namespaces, "namespace path", path)?;
                (format!("join {path}"), Some(PathBuf::from(path)))
            }
        };
        ctx.claim(Field::Namespaces, format!("namespace {name}"), value)?;
        let namespaces = linux(spec).namespaces_mut().get_or_insert_with(Vec::new);
        if matches!(setting.mode, NamespaceMode::Host) {
            // WithHostNamespace
            namespaces.retain(|n| n.typ() != typ);
            continue;
        }
        // WithLinuxNamespace: replace the same kind, or append.
        let mut ns = LinuxNamespace::default();
        ns.set_typ(typ);
        ns.set_path(path);
        match namespaces.iter_mut().find(|n| n.typ() == typ) {
            Some(existing) => *existing = ns,
            None => namespaces.push(ns),
        }
    }
    Ok(())
}

fn apply_resources(spec: &mut Spec, r: &Resources, ctx: &mut Ctx) -> Result<(), ApplyError> {
    let claim = |ctx: &mut Ctx, name: &str, value: Option<String>| -> Result<bool, ApplyError> {
        match value {
            Some(v) => ctx.claim(Field::Resources, format!("resources.{name}"), v).map(|_| true),
            None => Ok(false),
        }
    };
    for (name, v) in
        [("memory-limit", r.memory_limit), ("memory-reservation", r.memory_reservation), ("memory-swap", r.memory_swap)]
    {
        if let Some(v) = v
            && v < -1
        {
            return Err(ctx.invalid(Field::Resources, format!("{name} {v} is negative")));
        }
    }
    if let Some(v) = r.pids_limit
        && v < -1
    {
        return Err(ctx.invalid(Field::Resources, format!("pids-limit {v} is negative")));
    }
    let res = resources(spec);
    if claim(ctx, "memory-limit", r.memory_limit.map(|v| v.to_string()))? {
        res.memory_mut().get_or_insert_with(Default::default).set_limit(r.memory_limit);
    }
    if claim(ctx, "memory-reservation", r.memory_reservation.map(|v| v.to_string()))? {
        res.memory_mut().get_or_insert_with(Default::default).set_reservation(r.memory_reservation);
    }
    if claim(ctx, "memory-swap", r.memory_swap.map(|v| v.to_string()))? {
        res.memory_mut().get_or_insert_with(Default::default).set_swap(r.memory_swap);
    }
    if claim(ctx, "cpu-shares", r.cpu_shares.map(|v| v.to_string()))? {
        res.cpu_mut().get_or_insert_with(Default::default).set_shares(r.cpu_shares);
    }
    if claim(ctx, "cpu-quota", r.cpu_quota.map(|v| v.to_string()))? {
        res.cpu_mut().get_or_insert_with(Default::default).set_quota(r.cpu_quota);
    }
    if claim(ctx, "cpu-period", r.cpu_period.map(|v| v.to_string()))? {
        res.cpu_mut().get_or_insert_with(Default::default).set_period(r.cpu_period);
    }
    if claim(ctx, "cpuset-cpus", r.cpuset_cpus.as_deref().map(quoted))? {
        res.cpu_mut().get_or_insert_with(Default::default).set_cpus(r.cpuset_cpus.clone());
    }
    if claim(ctx, "cpuset-mems", r.cpuset_mems.as_deref().map(quoted))? {
        res.cpu_mut().get_or_insert_with(Default::default).set_mems(r.cpuset_mems.clone());
    }
    if let Some(limit) = r.pids_limit {
        claim(ctx, "pids-limit", Some(limit.to_string()))?;
        res.pids_mut().get_or_insert_with(Default::default).set_limit(limit);
    }
    Ok(())
}

fn apply_rlimit(spec: &mut Spec, r: &Rlimit, ctx: &mut Ctx) -> Result<(), ApplyError> {
    let name = r.kind.trim().to_ascii_uppercase();
    let typ: PosixRlimitType = serde_json::from_value(serde_json::Value::String(name.clone()))
        .map_err(|_| ctx.invalid(Field::Rlimits, format!("unknown rlimit {:?}", r.kind)))?;
    if r.soft > r.hard {
        return Err(ctx.invalid(Field::Rlimits, format!("{name}: soft limit {} exceeds hard limit {}", r.soft, r.hard)));
    }
    ctx.claim(Field::Rlimits, format!("rlimit {name}"), format!("{}/{}", r.soft, r.hard))?;
    let limit = PosixRlimitBuilder::default()
        .typ(typ)
        .soft(r.soft)
        .hard(r.hard)
        .build()
        .map_err(|e| ctx.invalid(Field::Rlimits, e.to_string()))?;
    let process = process(spec);
    let mut rlimits = process.rlimits().clone().unwrap_or_default();
    match rlimits.iter_mut().find(|l| l.typ() == typ) {
        Some(existing) => *existing = limit,
        None => rlimits.push(limit),
    }
    process.set_rlimits(Some(rlimits));
    Ok(())
}

/// Parses a seccomp profile (an OCI `linux.seccomp` object).
pub fn parse_seccomp(text: &str) -> Result<LinuxSeccomp, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("profile is not JSON: {e}"))?;
    if !value.is_object() {
        return Err("profile is not a JSON object".into());
    }
    if value.get("defaultAction").is_none() {
        return Err("profile has no defaultAction".into());
    }
    serde_json::from_value(value).map_err(|e| format!("profile is not an OCI linux.seccomp object: {e}"))
}

fn apply_seccomp(spec: &mut Spec, s: &Seccomp, ctx: &mut Ctx) -> Result<(), ApplyError> {
    let (value, seccomp) = match s {
        Seccomp::Unconfined => ("unconfined".to_string(), None),
        Seccomp::Default => {
            let f = ctx
                .host
                .default_seccomp
                .clone()
                .ok_or_else(|| ctx.invalid(Field::Seccomp, "this host has no default seccomp profile"))?;
            let bounding: Vec<String> = spec
                .process()
                .as_ref()
                .and_then(|p| p.capabilities().as_ref())
                .and_then(|c| c.bounding().as_ref())
                .map(|b| b.iter().map(|c| capability_name(*c)).collect())
                .unwrap_or_default();
            let profile = f(&ctx.host.arch, &bounding);
            let parsed: LinuxSeccomp = serde_json::from_value(profile)
                .map_err(|e| ctx.invalid(Field::Seccomp, format!("the default profile is not valid: {e}")))?;
            ("default".to_string(), Some(parsed))
        }
        Seccomp::Profile(text) => {
            let parsed = parse_seccomp(text).map_err(|e| ctx.invalid(Field::Seccomp, e))?;
            let digest = {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                text.hash(&mut h);
                h.finish()
            };
            (format!("profile #{digest:016x}"), Some(parsed))
        }
    };
    ctx.claim(Field::Seccomp, "seccomp".into(), value)?;
    linux(spec).set_seccomp(seccomp);
    Ok(())
}

fn apply_hook(spec: &mut Spec, h: &Hook, ctx: &mut Ctx) -> Result<(), ApplyError> {
    require_absolute(ctx, Field::Hooks, "hook path", &h.path)?;
    if let Some(t) = h.timeout
        && t <= 0
    {
        return Err(ctx.invalid(Field::Hooks, format!("hook {} timeout {t} is not positive", h.path)));
    }
    let mut hook = OciHook::default();
    hook.set_path(PathBuf::from(&h.path));
    hook.set_args((!h.args.is_empty()).then(|| h.args.clone()));
    hook.set_env((!h.env.is_empty()).then(|| h.env.clone()));
    hook.set_timeout(h.timeout.map(i64::from));
    let hooks = spec.hooks_mut().get_or_insert_with(Hooks::default);
    let list = match h.stage {
        HookStage::Prestart =>
        {
            #[allow(deprecated)]
            hooks.prestart_mut()
        }
        HookStage::CreateRuntime => hooks.create_runtime_mut(),
        HookStage::CreateContainer => hooks.create_container_mut(),
        HookStage::StartContainer => hooks.start_container_mut(),
        HookStage::Poststart => hooks.poststart_mut(),
        HookStage::Poststop => hooks.poststop_mut(),
    };
    list.get_or_insert_with(Vec::new).push(hook);
    Ok(())
}

fn apply_paths(spec: &mut Spec, adj: &Adjustment, ctx: &mut Ctx) -> Result<(), ApplyError> {
    type PathsMut = fn(&mut Linux) -> &mut Option<Vec<String>>;
    type PathList<'a> = (Field, &'a str, &'a Vec<String>, &'a Vec<String>, PathsMut);
    let lists: [PathList; 2] = [
        (Field::MaskedPaths, "masked-path", &adj.masked_paths_add, &adj.masked_paths_remove, Linux::masked_paths_mut),
        (
            Field::ReadonlyPaths,
            "readonly-path",
            &adj.readonly_paths_add,
            &adj.readonly_paths_remove,
            Linux::readonly_paths_mut,
        ),
    ];
    for (field, key, add, remove, get) in lists {
        for path in remove {
            require_absolute(ctx, field, key, path)?;
            ctx.claim(field, format!("{key} {path}"), "removed".into())?;
            if let Some(paths) = get(linux(spec)) {
                paths.retain(|p| p != path);
            }
        }
        for path in add {
            require_absolute(ctx, field, key, path)?;
            ctx.claim(field, format!("{key} {path}"), "added".into())?;
            let paths = get(linux(spec)).get_or_insert_with(Vec::new);
            if !paths.contains(path) {
                paths.push(path.clone());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths() {
        assert_eq!(clean("/a/./b//c/../d/"), "/a/b/d");
        assert_eq!(clean("/"), "/");
    }

    #[test]
    fn dev_null_is_a_char_device() {
        let dev = device_from_path(Path::new("/dev/null")).unwrap().unwrap();
        assert_eq!((dev.typ(), dev.major(), dev.minor()), (LinuxDeviceType::C, 1, 3));
        assert!(device_from_path(Path::new("/etc/hostname")).unwrap_or(None).is_none());
    }
}
