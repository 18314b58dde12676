//! Typed builders for [`Adjustment`] and the records it carries.
//!
//! ```
//! use berth_sdk::prelude::*;
//! let a = Adjustment::default()
//!     .env("A", "b")
//!     .add_cap("CAP_NET_ADMIN")
//!     .memory_limit(64 << 20)
//!     .bind_mount("/etc/hosts", "/etc/hosts", &["rbind", "ro"]);
//! assert_eq!(a.env_set[0].value, "b");
//! ```

use crate::types::*;

impl Default for Adjustment {
    /// An adjustment that changes nothing.
    fn default() -> Self {
        Adjustment {
            args: None,
            env_set: Vec::new(),
            env_unset: Vec::new(),
            cwd: None,
            user: None,
            capabilities_add: Vec::new(),
            capabilities_drop: Vec::new(),
            no_new_privileges: None,
            mounts_add: Vec::new(),
            mounts_remove: Vec::new(),
            devices: Vec::new(),
            device_rules: Vec::new(),
            namespaces: Vec::new(),
            resources: None,
            rlimits: Vec::new(),
            seccomp: None,
            readonly_rootfs: None,
            sysctls: Vec::new(),
            hooks: Vec::new(),
            annotations: Vec::new(),
            masked_paths_add: Vec::new(),
            masked_paths_remove: Vec::new(),
            readonly_paths_add: Vec::new(),
            readonly_paths_remove: Vec::new(),
            hostname: None,
            privileged: Privileged::empty(),
        }
    }
}

impl Default for Resources {
    /// Every limit untouched.
    fn default() -> Self {
        Resources {
            memory_limit: None,
            memory_reservation: None,
            memory_swap: None,
            cpu_shares: None,
            cpu_quota: None,
            cpu_period: None,
            cpuset_cpus: None,
            cpuset_mems: None,
            pids_limit: None,
        }
    }
}

impl Default for Privileged {
    fn default() -> Self {
        Privileged::empty()
    }
}

impl Default for HostCapabilities {
    fn default() -> Self {
        HostCapabilities::empty()
    }
}

impl Adjustment {
    /// True when applying this adjustment changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == Adjustment::default()
    }

    /// Replace the process arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args = Some(args.into_iter().map(Into::into).collect());
        self
    }
    /// Set an environment variable (replaces the same key).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env_set.push(KeyValue::new(key, value));
        self
    }
    /// Remove an environment variable.
    pub fn unset_env(mut self, key: impl Into<String>) -> Self {
        self.env_unset.push(key.into());
        self
    }
    pub fn cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }
    /// Run as numeric ids.
    pub fn user_ids(mut self, uid: u32, gid: u32, additional_gids: &[u32]) -> Self {
        self.user = Some(User::Ids(UserIds { uid, gid, additional_gids: additional_gids.to_vec() }));
        self
    }
    /// Run as `user`, `user:group` or `uid:gid`, resolved by the host in the image.
    pub fn user_name(mut self, name: impl Into<String>) -> Self {
        self.user = Some(User::Name(name.into()));
        self
    }
    /// Add a capability (`CAP_NET_ADMIN`) to every set.
    pub fn add_cap(mut self, cap: impl Into<String>) -> Self {
        self.capabilities_add.push(cap.into());
        self
    }
    /// Drop a capability from every set.
    pub fn drop_cap(mut self, cap: impl Into<String>) -> Self {
        self.capabilities_drop.push(cap.into());
        self
    }
    pub fn no_new_privileges(mut self, on: bool) -> Self {
        self.no_new_privileges = Some(on);
        self
    }
    /// Add a mount.
    pub fn mount(mut self, mount: Mount) -> Self {
        self.mounts_add.push(mount);
        self
    }
    /// Add a bind mount of `source` at `destination` with `options`
    /// (e.g. `["rbind", "ro"]`).
    pub fn bind_mount(self, source: impl Into<String>, destination: impl Into<String>, options: &[&str]) -> Self {
        self.mount(Mount::bind(source, destination, options))
    }
    /// Remove the mount at `destination`.
    pub fn remove_mount(mut self, destination: impl Into<String>) -> Self {
        self.mounts_remove.push(destination.into());
        self
    }
    /// Create a device node in the container (no cgroup rule; see
    /// [`Adjustment::device_with_access`]).
    pub fn device(mut self, device: Device) -> Self {
        self.devices.push(device);
        self
    }
    /// Create a device node and allow it in the device cgroup with `access`
    /// (`rwm`), like containerd's `WithLinuxDevice`.
    pub fn device_with_access(mut self, device: Device, access: &str) -> Self {
        self.device_rules.push(DeviceRule {
            allow: true,
            type_: Some(device.type_.letter().to_string()),
            major: Some(device.major),
            minor: Some(device.minor),
            access: access.to_string(),
        });
        self.devices.push(device);
        self
    }
    pub fn device_rule(mut self, rule: DeviceRule) -> Self {
        self.device_rules.push(rule);
        self
    }
    /// Set how the container gets a namespace.
    pub fn namespace(mut self, kind: NamespaceKind, mode: NamespaceMode) -> Self {
        self.namespaces.push(NamespaceSetting { kind, mode });
        self
    }
    /// Share the host's namespace of `kind`.
    pub fn host_namespace(self, kind: NamespaceKind) -> Self {
        self.namespace(kind, NamespaceMode::Host)
    }
    /// Join the namespace at `path`.
    pub fn join_namespace(self, kind: NamespaceKind, path: impl Into<String>) -> Self {
        self.namespace(kind, NamespaceMode::Join(path.into()))
    }
    /// Edit the resources in place.
    pub fn resources_with(mut self, edit: impl FnOnce(&mut Resources)) -> Self {
        edit(self.resources.get_or_insert_with(Resources::default));
        self
    }
    pub fn memory_limit(self, bytes: i64) -> Self {
        self.resources_with(|r| r.memory_limit = Some(bytes))
    }
    pub fn memory_reservation(self, bytes: i64) -> Self {
        self.resources_with(|r| r.memory_reservation = Some(bytes))
    }
    pub fn memory_swap(self, bytes: i64) -> Self {
        self.resources_with(|r| r.memory_swap = Some(bytes))
    }
    pub fn cpu_shares(self, shares: u64) -> Self {
        self.resources_with(|r| r.cpu_shares = Some(shares))
    }
    /// CFS quota and period (µs).
    pub fn cpu_quota(self, quota: i64, period: u64) -> Self {
        self.resources_with(|r| {
            r.cpu_quota = Some(quota);
            r.cpu_period = Some(period);
        })
    }
    pub fn cpuset_cpus(self, cpus: impl Into<String>) -> Self {
        let cpus = cpus.into();
        self.resources_with(|r| r.cpuset_cpus = Some(cpus))
    }
    pub fn cpuset_mems(self, mems: impl Into<String>) -> Self {
        let mems = mems.into();
        self.resources_with(|r| r.cpuset_mems = Some(mems))
    }
    pub fn pids_limit(self, limit: i64) -> Self {
        self.resources_with(|r| r.pids_limit = Some(limit))
    }
    /// Set an rlimit (`RLIMIT_NOFILE`).
    pub fn rlimit(mut self, kind: impl Into<String>, soft: u64, hard: u64) -> Self {
        self.rlimits.push(Rlimit { type_: kind.into(), soft, hard });
        self
    }
    pub fn seccomp(mut self, seccomp: Seccomp) -> Self {
        self.seccomp = Some(seccomp);
        self
    }
    /// The host's default seccomp profile.
    pub fn seccomp_default(self) -> Self {
        self.seccomp(Seccomp::Default)
    }
    /// No seccomp filter.
    pub fn seccomp_unconfined(self) -> Self {
        self.seccomp(Seccomp::Unconfined)
    }
    /// An OCI `linux.seccomp` object.
    pub fn seccomp_profile(self, profile: &serde_json::Value) -> Self {
        self.seccomp(Seccomp::Profile(profile.to_string()))
    }
    pub fn readonly_rootfs(mut self, on: bool) -> Self {
        self.readonly_rootfs = Some(on);
        self
    }
    pub fn sysctl(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.sysctls.push(KeyValue::new(key, value));
        self
    }
    pub fn hook(mut self, hook: Hook) -> Self {
        self.hooks.push(hook);
        self
    }
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.push(KeyValue::new(key, value));
        self
    }
    pub fn mask_path(mut self, path: impl Into<String>) -> Self {
        self.masked_paths_add.push(path.into());
        self
    }
    pub fn unmask_path(mut self, path: impl Into<String>) -> Self {
        self.masked_paths_remove.push(path.into());
        self
    }
    pub fn readonly_path(mut self, path: impl Into<String>) -> Self {
        self.readonly_paths_add.push(path.into());
        self
    }
    pub fn writable_path(mut self, path: impl Into<String>) -> Self {
        self.readonly_paths_remove.push(path.into());
        self
    }
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }
    /// Add privileged bits (they accumulate).
    pub fn privileged(mut self, bits: Privileged) -> Self {
        self.privileged |= bits;
        self
    }
}

impl Mount {
    pub fn new(
        kind: impl Into<String>,
        source: impl Into<String>,
        destination: impl Into<String>,
        options: &[&str],
    ) -> Self {
        Mount {
            destination: destination.into(),
            type_: kind.into(),
            source: source.into(),
            options: options.iter().map(|o| o.to_string()).collect(),
        }
    }
    /// A `bind` mount.
    pub fn bind(source: impl Into<String>, destination: impl Into<String>, options: &[&str]) -> Self {
        Mount::new("bind", source, destination, options)
    }
}

impl DeviceType {
    /// `c`, `b` or `p`, as device-cgroup rules and `mknod` spell it.
    pub fn letter(&self) -> &'static str {
        match self {
            DeviceType::Char => "c",
            DeviceType::Block => "b",
            DeviceType::Fifo => "p",
        }
    }
}

impl Device {
    /// A character device node owned by root.
    pub fn char(path: impl Into<String>, major: i64, minor: i64) -> Self {
        Device { path: path.into(), type_: DeviceType::Char, major, minor, file_mode: None, uid: None, gid: None }
    }
    /// A block device node owned by root.
    pub fn block(path: impl Into<String>, major: i64, minor: i64) -> Self {
        Device { path: path.into(), type_: DeviceType::Block, major, minor, file_mode: None, uid: None, gid: None }
    }
    pub fn mode(mut self, mode: u32) -> Self {
        self.file_mode = Some(mode);
        self
    }
}

impl DeviceRule {
    /// `a *:* rwm`: every device allowed.
    pub fn allow_all() -> Self {
        DeviceRule { allow: true, type_: Some("a".into()), major: None, minor: None, access: "rwm".into() }
    }
}

impl Hook {
    pub fn new(stage: HookStage, path: impl Into<String>) -> Self {
        Hook { stage, path: path.into(), args: Vec::new(), env: Vec::new(), timeout: None }
    }
}

impl RegistryHost {
    /// An https host with `/v2`, every capability, no extra headers.
    pub fn https(host: impl Into<String>) -> Self {
        RegistryHost {
            host: host.into(),
            scheme: "https".into(),
            path_prefix: "/v2".into(),
            capabilities: HostCapabilities::all(),
            skip_verify: false,
            headers: Vec::new(),
        }
    }
}

impl Source {
    /// A source that fetches from a registry host.
    pub fn registry(host: RegistryHost) -> Self {
        Source { location: SourceLocation::Registry(host), target_digest: None, layers: Vec::new() }
    }
}

impl SnapshotterChoice {
    pub fn new(name: impl Into<String>, reason: impl Into<String>) -> Self {
        SnapshotterChoice { name: name.into(), options: Vec::new(), reason: reason.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_chain() {
        let a = Adjustment::default()
            .env("A", "b")
            .add_cap("CAP_NET_ADMIN")
            .memory_limit(1 << 20)
            .pids_limit(10)
            .host_namespace(NamespaceKind::Network)
            .device_with_access(Device::char("/dev/fuse", 10, 229), "rwm")
            .privileged(Privileged::SYSFS_RW)
            .privileged(Privileged::CGROUPFS_RW);
        assert!(!a.is_empty());
        assert_eq!(a.env_set, vec![KeyValue::new("A", "b")]);
        assert_eq!(a.capabilities_add, vec!["CAP_NET_ADMIN".to_string()]);
        let r = a.resources.as_ref().unwrap();
        assert_eq!((r.memory_limit, r.pids_limit, r.cpu_shares), (Some(1 << 20), Some(10), None));
        assert_eq!(a.device_rules[0].type_.as_deref(), Some("c"));
        assert_eq!(a.device_rules[0].major, Some(10));
        assert_eq!(a.privileged, Privileged::SYSFS_RW | Privileged::CGROUPFS_RW);
        assert!(Adjustment::default().is_empty());
    }
}
