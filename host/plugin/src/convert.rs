//! Conversions between wasmtime's generated WIT types and the native types
//! (berth-spec's [`Adjustment`], [`crate::types`]); the container view goes in
//! through [`crate::lower`] instead.
//!
//! Host -> plugin conversions are total. Plugin -> host conversions also
//! check what the WIT types cannot express (absolute paths, capability
//! names, JSON seccomp profiles...): a plugin's answer is untrusted input.

use berth_spec::adjustment as adj;
use berth_spec::Adjustment;

use crate::bindings::wit;
use crate::types::{self, HostFacts, PluginError, PluginInfo, ResolveRequest, SnapshotterChoice, Source};

fn kv_to_wit(pairs: &[(String, String)]) -> Vec<wit::KeyValue> {
    pairs.iter().map(|(k, v)| wit::KeyValue { key: k.clone(), value: v.clone() }).collect()
}

fn kv_from_wit(pairs: Vec<wit::KeyValue>) -> Vec<(String, String)> {
    pairs.into_iter().map(|kv| (kv.key, kv.value)).collect()
}

pub(crate) fn info_from_wit(info: wit::PluginInfo) -> PluginInfo {
    PluginInfo { name: info.name, version: info.version, description: info.description }
}

pub(crate) fn plugin_error_from_wit(err: wit::PluginError) -> PluginError {
    match err {
        wit::PluginError::InvalidConfig(m) => PluginError::InvalidConfig(m),
        wit::PluginError::Rejected(m) => PluginError::Rejected(m),
        wit::PluginError::Internal(m) => PluginError::Internal(m),
    }
}

// ---------------------------------------------------------------------------
// spec-mutator: view in
// ---------------------------------------------------------------------------

pub(crate) fn ns_kind_to_wit(kind: adj::NamespaceKind) -> wit::NamespaceKind {
    match kind {
        adj::NamespaceKind::Pid => wit::NamespaceKind::Pid,
        adj::NamespaceKind::Network => wit::NamespaceKind::Network,
        adj::NamespaceKind::Mount => wit::NamespaceKind::Mount,
        adj::NamespaceKind::Ipc => wit::NamespaceKind::Ipc,
        adj::NamespaceKind::Uts => wit::NamespaceKind::Uts,
        adj::NamespaceKind::User => wit::NamespaceKind::User,
        adj::NamespaceKind::Cgroup => wit::NamespaceKind::Cgroup,
        adj::NamespaceKind::Time => wit::NamespaceKind::Time,
    }
}

fn ns_kind_from_wit(kind: wit::NamespaceKind) -> adj::NamespaceKind {
    match kind {
        wit::NamespaceKind::Pid => adj::NamespaceKind::Pid,
        wit::NamespaceKind::Network => adj::NamespaceKind::Network,
        wit::NamespaceKind::Mount => adj::NamespaceKind::Mount,
        wit::NamespaceKind::Ipc => adj::NamespaceKind::Ipc,
        wit::NamespaceKind::Uts => adj::NamespaceKind::Uts,
        wit::NamespaceKind::User => adj::NamespaceKind::User,
        wit::NamespaceKind::Cgroup => adj::NamespaceKind::Cgroup,
        wit::NamespaceKind::Time => adj::NamespaceKind::Time,
    }
}

// ---------------------------------------------------------------------------
// spec-mutator: adjustment out
// ---------------------------------------------------------------------------

/// Checks on an adjustment the WIT types cannot express. Returns what is wrong.
struct Checker(Vec<String>);

impl Checker {
    fn absolute(&mut self, field: &str, path: &str) {
        if !path.starts_with('/') {
            self.0.push(format!("{field}: `{path}` is not an absolute path"));
        }
        if path.contains('\0') {
            self.0.push(format!("{field}: path contains a NUL byte"));
        }
    }

    fn capability(&mut self, field: &str, cap: &str) {
        let ok = cap.len() > 4
            && cap.starts_with("CAP_")
            && cap[4..].bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            self.0.push(format!("{field}: `{cap}` is not a capability name (CAP_...)"));
        }
    }

    fn key(&mut self, field: &str, key: &str) {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            self.0.push(format!("{field}: invalid key `{key}`"));
        }
    }
}

/// The last seccomp profile of a loaded plugin that passed the JSON check,
/// byte for byte: a plugin such as seccomp-default returns the same tens of
/// KiB on every call, and checking them again was ~15% of its call. A
/// profile equal to the remembered one is known valid (a memcmp); any other
/// is checked in full and, when valid, remembered instead.
#[derive(Default)]
pub(crate) struct ProfileMemo(std::sync::Mutex<Option<Box<str>>>);

impl ProfileMemo {
    fn check(&self, json: &str) -> Result<(), String> {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_deref() == Some(json) {
            return Ok(());
        }
        // Syntax only (no tree is built: profiles are tens of KiB); the spec
        // assembler parses it into the OCI type.
        if !json.trim_start().starts_with('{') {
            return Err("seccomp: the profile is not a JSON object".to_string());
        }
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(json) {
            return Err(format!("seccomp: the profile is not valid JSON: {e}"));
        }
        *last = Some(json.into());
        Ok(())
    }
}

pub(crate) fn adjustment_from_wit(a: wit::Adjustment, memo: &ProfileMemo) -> Result<Adjustment, String> {
    let mut c = Checker(Vec::new());
    if let Some(cwd) = &a.cwd {
        c.absolute("cwd", cwd);
    }
    for (k, _) in a.env_set.iter().map(|kv| (&kv.key, &kv.value)) {
        c.key("env-set", k);
    }
    for k in &a.env_unset {
        c.key("env-unset", k);
    }
    for cap in &a.capabilities_add {
        c.capability("capabilities-add", cap);
    }
    for cap in &a.capabilities_drop {
        c.capability("capabilities-drop", cap);
    }
    for m in &a.mounts_add {
        c.absolute("mounts-add", &m.destination);
    }
    for d in &a.mounts_remove {
        c.absolute("mounts-remove", d);
    }
    for d in &a.devices {
        c.absolute("devices", &d.path);
    }
    for r in &a.device_rules {
        if let Some(t) = &r.type_
            && !matches!(t.as_str(), "a" | "c" | "b")
        {
            c.0.push(format!("device-rules: type `{t}` is not a, c or b"));
        }
        if r.access.is_empty() || !r.access.chars().all(|ch| matches!(ch, 'r' | 'w' | 'm')) {
            c.0.push(format!("device-rules: access `{}` is not a combination of r, w, m", r.access));
        }
    }
    for h in &a.hooks {
        c.absolute("hooks", &h.path);
    }
    for (field, paths) in [
        ("masked-paths-add", &a.masked_paths_add),
        ("masked-paths-remove", &a.masked_paths_remove),
        ("readonly-paths-add", &a.readonly_paths_add),
        ("readonly-paths-remove", &a.readonly_paths_remove),
    ] {
        for p in paths {
            c.absolute(field, p);
        }
    }
    for kv in &a.sysctls {
        c.key("sysctls", &kv.key);
    }
    for kv in &a.annotations {
        if kv.key.is_empty() {
            c.0.push("annotations: empty key".to_string());
        }
    }
    if let Some(wit::Seccomp::Profile(json)) = &a.seccomp
        && let Err(e) = memo.check(json)
    {
        c.0.push(e);
    }
    if let Some(h) = &a.hostname
        && (h.is_empty() || h.len() > 253 || h.contains(['/', '\0', ' ']))
    {
        c.0.push(format!("hostname: `{h}` is not a valid host name"));
    }
    if !c.0.is_empty() {
        return Err(c.0.join("; "));
    }

    let p = a.privileged;
    Ok(Adjustment {
        args: a.args,
        env_set: kv_from_wit(a.env_set),
        env_unset: a.env_unset,
        cwd: a.cwd,
        user: a.user.map(|u| match u {
            wit::User::Ids(ids) => {
                adj::User::Ids { uid: ids.uid, gid: ids.gid, additional_gids: ids.additional_gids }
            }
            wit::User::Name(n) => adj::User::Name(n),
        }),
        capabilities_add: a.capabilities_add,
        capabilities_drop: a.capabilities_drop,
        no_new_privileges: a.no_new_privileges,
        mounts_add: a
            .mounts_add
            .into_iter()
            .map(|m| adj::Mount { destination: m.destination, kind: m.type_, source: m.source, options: m.options })
            .collect(),
        mounts_remove: a.mounts_remove,
        devices: a
            .devices
            .into_iter()
            .map(|d| adj::Device {
                path: d.path,
                kind: match d.type_ {
                    wit::DeviceType::Char => adj::DeviceType::Char,
                    wit::DeviceType::Block => adj::DeviceType::Block,
                    wit::DeviceType::Fifo => adj::DeviceType::Fifo,
                },
                major: d.major,
                minor: d.minor,
                file_mode: d.file_mode,
                uid: d.uid,
                gid: d.gid,
            })
            .collect(),
        device_rules: a
            .device_rules
            .into_iter()
            .map(|r| adj::DeviceRule { allow: r.allow, kind: r.type_, major: r.major, minor: r.minor, access: r.access })
            .collect(),
        namespaces: a
            .namespaces
            .into_iter()
            .map(|n| adj::NamespaceSetting {
                kind: ns_kind_from_wit(n.kind),
                mode: match n.mode {
                    wit::NamespaceMode::New => adj::NamespaceMode::New,
                    wit::NamespaceMode::Host => adj::NamespaceMode::Host,
                    wit::NamespaceMode::Join(path) => adj::NamespaceMode::Join(path),
                },
            })
            .collect(),
        resources: a.resources.map(|r| adj::Resources {
            memory_limit: r.memory_limit,
            memory_reservation: r.memory_reservation,
            memory_swap: r.memory_swap,
            cpu_shares: r.cpu_shares,
            cpu_quota: r.cpu_quota,
            cpu_period: r.cpu_period,
            cpuset_cpus: r.cpuset_cpus,
            cpuset_mems: r.cpuset_mems,
            pids_limit: r.pids_limit,
        }),
        rlimits: a
            .rlimits
            .into_iter()
            .map(|r| adj::Rlimit { kind: r.type_, soft: r.soft, hard: r.hard })
            .collect(),
        seccomp: a.seccomp.map(|s| match s {
            wit::Seccomp::Default => adj::Seccomp::Default,
            wit::Seccomp::Unconfined => adj::Seccomp::Unconfined,
            wit::Seccomp::Profile(json) => adj::Seccomp::Profile(json),
        }),
        readonly_rootfs: a.readonly_rootfs,
        sysctls: kv_from_wit(a.sysctls),
        hooks: a
            .hooks
            .into_iter()
            .map(|h| adj::Hook {
                stage: match h.stage {
                    wit::HookStage::Prestart => adj::HookStage::Prestart,
                    wit::HookStage::CreateRuntime => adj::HookStage::CreateRuntime,
                    wit::HookStage::CreateContainer => adj::HookStage::CreateContainer,
                    wit::HookStage::StartContainer => adj::HookStage::StartContainer,
                    wit::HookStage::Poststart => adj::HookStage::Poststart,
                    wit::HookStage::Poststop => adj::HookStage::Poststop,
                },
                path: h.path,
                args: h.args,
                env: h.env,
                timeout: h.timeout,
            })
            .collect(),
        annotations: kv_from_wit(a.annotations),
        masked_paths_add: a.masked_paths_add,
        masked_paths_remove: a.masked_paths_remove,
        readonly_paths_add: a.readonly_paths_add,
        readonly_paths_remove: a.readonly_paths_remove,
        hostname: a.hostname,
        privileged: adj::Privileged {
            sysfs_rw: p.contains(wit::Privileged::SYSFS_RW),
            cgroupfs_rw: p.contains(wit::Privileged::CGROUPFS_RW),
            all_devices: p.contains(wit::Privileged::ALL_DEVICES),
            host_devices: p.contains(wit::Privileged::HOST_DEVICES),
            all_capabilities: p.contains(wit::Privileged::ALL_CAPABILITIES),
            unconfined_apparmor: p.contains(wit::Privileged::UNCONFINED_APPARMOR),
            clear_masked_paths: p.contains(wit::Privileged::CLEAR_MASKED_PATHS),
            clear_readonly_paths: p.contains(wit::Privileged::CLEAR_READONLY_PATHS),
        },
    })
}

// ---------------------------------------------------------------------------
// snapshotter-selector
// ---------------------------------------------------------------------------

pub(crate) fn facts_to_wit(f: &HostFacts) -> wit::HostFacts {
    wit::HostFacts {
        root: f.root.clone(),
        filesystem_type: f.filesystem_type.clone(),
        kernel_version: f.kernel_version.clone(),
        overlay_supported: f.overlay_supported,
        overlay_error: f.overlay_error.clone(),
        overlay_needs_userxattr: f.overlay_needs_userxattr,
        fuse_overlayfs_binary: f.fuse_overlayfs_binary.clone(),
        dev_fuse: f.dev_fuse,
        in_user_namespace: f.in_user_namespace,
        idmapped_mounts: f.idmapped_mounts,
        available: f.available.clone(),
    }
}

pub(crate) fn choice_from_wit(c: wit::SnapshotterChoice, facts: &HostFacts) -> Result<SnapshotterChoice, String> {
    if !facts.available.contains(&c.name) {
        return Err(format!(
            "snapshotter `{}` is not one this host has (available: {})",
            c.name,
            facts.available.join(", ")
        ));
    }
    Ok(SnapshotterChoice { name: c.name, options: kv_from_wit(c.options), reason: c.reason })
}

// ---------------------------------------------------------------------------
// source-resolver
// ---------------------------------------------------------------------------

fn reference_to_wit(r: &types::ImageReference) -> wit::ImageReference {
    wit::ImageReference {
        registry: r.registry.clone(),
        repository: r.repository.clone(),
        tag: r.tag.clone(),
        digest: r.digest.clone(),
    }
}

fn reference_from_wit(r: wit::ImageReference) -> types::ImageReference {
    types::ImageReference { registry: r.registry, repository: r.repository, tag: r.tag, digest: r.digest }
}

pub(crate) fn request_to_wit(r: &ResolveRequest) -> wit::ResolveRequest {
    wit::ResolveRequest {
        reference: reference_to_wit(&r.reference),
        labels: kv_to_wit(&r.labels),
        operation: match r.operation {
            types::Operation::Resolve => wit::Operation::Resolve,
            types::Operation::Pull => wit::Operation::Pull,
            types::Operation::Push => wit::Operation::Push,
        },
    }
}

pub(crate) fn sources_from_wit(sources: Vec<wit::Source>) -> Result<Vec<Source>, String> {
    let mut problems = Vec::new();
    let out = sources
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let location = match s.location {
                wit::SourceLocation::Registry(h) => {
                    if h.host.is_empty() || h.host.contains(['/', ' ', '\0']) {
                        problems.push(format!("source {i}: `{}` is not a host or host:port", h.host));
                    }
                    if !matches!(h.scheme.as_str(), "http" | "https") {
                        problems.push(format!("source {i}: scheme `{}` is not http or https", h.scheme));
                    }
                    if !h.path_prefix.is_empty() && !h.path_prefix.starts_with('/') {
                        problems.push(format!("source {i}: path prefix `{}` does not start with /", h.path_prefix));
                    }
                    types::SourceLocation::Registry(types::RegistryHost {
                        host: h.host,
                        scheme: h.scheme,
                        path_prefix: h.path_prefix,
                        capabilities: types::HostCapabilities {
                            pull: h.capabilities.contains(wit::HostCapabilities::PULL),
                            resolve: h.capabilities.contains(wit::HostCapabilities::RESOLVE),
                            push: h.capabilities.contains(wit::HostCapabilities::PUSH),
                        },
                        skip_verify: h.skip_verify,
                        headers: kv_from_wit(h.headers),
                    })
                }
                wit::SourceLocation::OciLayout(path) => {
                    if !path.starts_with('/') {
                        problems.push(format!("source {i}: OCI layout `{path}` is not an absolute path"));
                    }
                    types::SourceLocation::OciLayout(path)
                }
                wit::SourceLocation::Reference(r) => types::SourceLocation::Reference(reference_from_wit(r)),
            };
            Source { location, target_digest: s.target_digest, layers: s.layers }
        })
        .collect();
    if problems.is_empty() { Ok(out) } else { Err(problems.join("; ")) }
}

#[cfg(test)]
mod tests {
    use super::ProfileMemo;

    #[test]
    fn profile_memo_remembers_only_valid_profiles() {
        let memo = ProfileMemo::default();
        let good = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[]}"#;
        assert!(memo.check(good).is_ok());
        assert!(memo.check(good).is_ok(), "the remembered profile again");
        // A profile differing from the remembered one is checked in full.
        let bad = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":["#;
        assert!(memo.check(bad).unwrap_err().contains("not valid JSON"));
        assert!(memo.check(bad).is_err(), "an invalid profile is never remembered");
        assert!(memo.check("[]").unwrap_err().contains("not a JSON object"));
        assert!(memo.check(good).is_ok());
    }
}
