//! Run a plugin natively in `cargo test`: sample inputs like the host's, and
//! calls that go through the same entry points the wasm export uses (config
//! passed as JSON text), with no wasm involved.
//!
//! ```ignore
//! use berth_sdk::testing::{self, ContainerViewExt};
//! let view = testing::container().with_option("memory", "64m");
//! let adj = testing::mutate::<MyPlugin>(view, serde_json::json!({"max": "1g"})).unwrap();
//! assert_eq!(adj.resources.unwrap().memory_limit, Some(64 << 20));
//! ```

use std::cell::RefCell;

use crate::bindings::snapshotter_selector::exports::berth::plugin::selector::Guest as SelectorGuest;
use crate::bindings::source_resolver::exports::berth::plugin::resolver::Guest as ResolverGuest;
use crate::types::*;
use crate::{Config, ContainerData, ContainerView, Level, SnapshotterSelector, SourceResolver, SpecMutator};

/// One line a plugin logged.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub level: Level,
    pub message: String,
    pub fields: Vec<KeyValue>,
}

thread_local! {
    static LOGS: RefCell<Vec<LogLine>> = const { RefCell::new(Vec::new()) };
}

#[cfg_attr(target_family = "wasm", allow(dead_code))]
pub(crate) fn record_log(level: Level, message: &str, fields: Vec<KeyValue>) {
    LOGS.with(|l| l.borrow_mut().push(LogLine { level, message: message.to_string(), fields }));
}

/// The lines logged on this thread since the last call (native only).
pub fn take_logs() -> Vec<LogLine> {
    LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

/// Calls a spec-mutator as the host would.
/// (The wasm export's only extra step is wrapping the host's lent
/// `container` in a [`ContainerView`]; here the view holds its data.)
pub fn mutate<T: SpecMutator>(container: ContainerView, config: impl Into<Config>) -> Result<Adjustment, PluginError> {
    <T as SpecMutator>::mutate(container, Config::new(config.into().raw().to_string()))
}

/// Calls a snapshotter-selector as the host would.
pub fn select<T: SnapshotterSelector>(
    facts: HostFacts,
    config: impl Into<Config>,
) -> Result<SnapshotterChoice, PluginError> {
    <T as SelectorGuest>::select(facts, config.into().raw().to_string())
}

/// Calls a source-resolver as the host would.
pub fn resolve<T: SourceResolver>(
    request: ResolveRequest,
    config: impl Into<Config>,
) -> Result<Vec<Source>, PluginError> {
    <T as ResolverGuest>::resolve(request, config.into().raw().to_string())
}

/// containerd's default capability set (what the host's default spec has).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// A container like the host's default spec for a busybox-like image
/// (`sh`, containerd's default capabilities and namespaces).
pub fn container() -> ContainerView {
    container_data().into()
}

/// The fields of [`container`], to edit before `.into()` a view.
pub fn container_data() -> ContainerData {
    let env = vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()];
    ContainerData {
        id: "test".into(),
        image: Some("docker.io/library/busybox:latest".into()),
        image_config: ImageConfig {
            user: None,
            env: env.clone(),
            entrypoint: Vec::new(),
            cmd: vec!["sh".into()],
            working_dir: None,
            labels: Vec::new(),
            stop_signal: None,
            exposed_ports: Vec::new(),
            volumes: Vec::new(),
        },
        options: Vec::new(),
        annotations: Vec::new(),
        process: ProcessView {
            args: vec!["sh".into()],
            env,
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            terminal: false,
            capabilities: DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect(),
            no_new_privileges: false,
        },
        hostname: None,
        readonly_rootfs: false,
        mounts: Vec::new(),
        namespaces: [
            NamespaceKind::Pid,
            NamespaceKind::Ipc,
            NamespaceKind::Uts,
            NamespaceKind::Mount,
            NamespaceKind::Network,
        ]
        .into_iter()
        .map(|kind| Namespace { kind, path: None })
        .collect(),
    }
}

/// Chainable edits of a [`ContainerView`] for tests.
pub trait ContainerViewExt: Sized {
    fn with_option(self, key: &str, value: &str) -> Self;
    fn with_annotation(self, key: &str, value: &str) -> Self;
    fn with_entrypoint(self, entrypoint: &[&str], cmd: &[&str]) -> Self;
}

impl ContainerViewExt for ContainerData {
    fn with_option(mut self, key: &str, value: &str) -> Self {
        self.options.push(KeyValue::new(key, value));
        self
    }
    fn with_annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.push(KeyValue::new(key, value));
        self
    }
    fn with_entrypoint(mut self, entrypoint: &[&str], cmd: &[&str]) -> Self {
        self.image_config.entrypoint = entrypoint.iter().map(|s| s.to_string()).collect();
        self.image_config.cmd = cmd.iter().map(|s| s.to_string()).collect();
        self.process.args = entrypoint.iter().chain(cmd).map(|s| s.to_string()).collect();
        self
    }
}

impl ContainerViewExt for ContainerView {
    fn with_option(self, key: &str, value: &str) -> Self {
        self.into_data().with_option(key, value).into()
    }
    fn with_annotation(self, key: &str, value: &str) -> Self {
        self.into_data().with_annotation(key, value).into()
    }
    fn with_entrypoint(self, entrypoint: &[&str], cmd: &[&str]) -> Self {
        self.into_data().with_entrypoint(entrypoint, cmd).into()
    }
}

/// Facts of a root where overlayfs works (ext4, kernel 6.1, every
/// snapshotter compiled in, no fuse-overlayfs).
pub fn host_facts() -> HostFacts {
    HostFacts {
        root: "/var/lib/berth/snapshots".into(),
        filesystem_type: "ext4".into(),
        kernel_version: "6.1.0".into(),
        overlay_supported: true,
        overlay_error: None,
        overlay_needs_userxattr: false,
        fuse_overlayfs_binary: None,
        dev_fuse: false,
        in_user_namespace: false,
        idmapped_mounts: true,
        available: ["overlayfs", "native", "fuse-overlayfs"].iter().map(|s| s.to_string()).collect(),
    }
}

/// A pull request for `registry/repository:tag`.
pub fn resolve_request(registry: &str, repository: &str, tag: &str) -> ResolveRequest {
    ResolveRequest {
        reference: ImageReference {
            registry: registry.into(),
            repository: repository.into(),
            tag: Some(tag.into()),
            digest: None,
        },
        labels: Vec::new(),
        operation: Operation::Pull,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    impl SpecMutator for Echo {
        fn info() -> PluginInfo {
            crate::plugin_info!("echoes option a into env A")
        }
        fn mutate(container: ContainerView, config: Config) -> Result<Adjustment, PluginError> {
            #[derive(serde::Deserialize, Default)]
            #[serde(default, deny_unknown_fields)]
            struct C {
                prefix: String,
            }
            let c: C = config.parse()?;
            crate::info!("mutating {}", container.id());
            let a = container.option("a").ok_or_else(|| PluginError::rejected("option a is required"))?;
            Ok(Adjustment::default().env("A", format!("{}{a}", c.prefix)))
        }
    }

    #[test]
    fn mutate_through_the_guest_entry_point() {
        let adj = mutate::<Echo>(container().with_option("a", "1"), serde_json::json!({"prefix": "p-"})).unwrap();
        assert_eq!(adj.env_set, vec![KeyValue::new("A", "p-1")]);
        let logs = take_logs();
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].message, "mutating test");
        assert!(take_logs().is_empty());
    }

    #[test]
    fn empty_config_and_errors() {
        assert!(mutate::<Echo>(container().with_option("a", "1"), "").is_ok());
        let e = mutate::<Echo>(container(), "{}").unwrap_err();
        assert_eq!(e, PluginError::Rejected("option a is required".into()));
        let e = mutate::<Echo>(container().with_option("a", "1"), serde_json::json!({"prefx": 1})).unwrap_err();
        assert!(matches!(&e, PluginError::InvalidConfig(m) if m.contains("prefx")), "{e:?}");
        let info = <Echo as SpecMutator>::info();
        assert_eq!(info.name, "berth-sdk");
    }
}
