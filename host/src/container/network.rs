//! A container's network for `berth run`: `[worker.network] mode` (or
//! `--net`) applied to the assembled spec through berth-network.
//!
//! - `auto` leaves the spec as the chain made it: containerd's default spec
//!   gives the container a network namespace of its own with nothing in it,
//!   as `ctr run` does; a plugin may have chosen the host's or a path.
//! - `host` drops the network namespace (the host's network).
//! - `none` joins a namespace of berth's with loopback up.
//! - `bridge` joins a namespace on the CNI network of `cni-config-dir`.
//!
//! An explicit mode and a plugin that set the network namespace itself
//! conflict: berth refuses rather than pick one silently.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use berth_network::{Attachment, NetworkManager};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::config::worker::{NetworkConfig, NetworkMode};

/// Where a worker's namespaces and attachment records live: under its
/// run-time state (`[worker] state`, tmpfs: the namespaces' bind mounts are
/// gone at reboot too). `@` keeps it apart from the executor's container
/// directories, which share the state directory.
pub fn run_dir(state: &Path) -> PathBuf {
    state.join("@network")
}

/// What the spec's network namespace is after the plugin chain.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SpecNetwork {
    /// A new, empty namespace (the default spec's).
    New,
    /// No network namespace entry: the host's.
    Host,
    /// Joins an existing namespace.
    Join(PathBuf),
}

fn spec_network(spec: &Spec) -> SpecNetwork {
    let entry = spec
        .linux()
        .as_ref()
        .and_then(|linux| linux.namespaces().as_ref())
        .and_then(|namespaces| namespaces.iter().find(|ns| ns.typ() == LinuxNamespaceType::Network));
    match entry {
        None => SpecNetwork::Host,
        Some(ns) => match ns.path() {
            Some(path) => SpecNetwork::Join(path.clone()),
            None => SpecNetwork::New,
        },
    }
}

/// Points the spec's network namespace at `path`, or removes it (`None`:
/// the host's).
fn set_spec_network(spec: &mut Spec, path: Option<&Path>) {
    let Some(namespaces) = spec.linux_mut().as_mut().and_then(|linux| linux.namespaces_mut().as_mut()) else {
        return;
    };
    match path {
        None => namespaces.retain(|ns| ns.typ() != LinuxNamespaceType::Network),
        Some(path) => {
            if let Some(ns) = namespaces.iter_mut().find(|ns| ns.typ() == LinuxNamespaceType::Network) {
                ns.set_path(Some(path.to_path_buf()));
            }
        }
    }
}

/// The mode the spec ends up in, or why `mode` and the chain disagree.
fn check_mode(mode: NetworkMode, current: &SpecNetwork) -> anyhow::Result<()> {
    if mode == NetworkMode::Auto || *current == SpecNetwork::New || (mode, current) == (NetworkMode::Host, &SpecNetwork::Host) {
        return Ok(());
    }
    let what = match current {
        SpecNetwork::Host => "the host's network namespace".to_string(),
        SpecNetwork::Join(path) => format!("the network namespace {}", path.display()),
        SpecNetwork::New => unreachable!(),
    };
    bail!(
        "network mode {} (--net or worker.network.mode) conflicts with the spec-mutator chain, which chose {what} \
         (see --explain); drop one of them",
        mode_name(mode)
    )
}

fn mode_name(mode: NetworkMode) -> &'static str {
    match mode {
        NetworkMode::Auto => "auto",
        NetworkMode::Host => "host",
        NetworkMode::None => "none",
        NetworkMode::Bridge => "bridge",
    }
}

fn manager(config: &NetworkConfig, run_dir: &Path) -> anyhow::Result<NetworkManager> {
    NetworkManager::new(config.manager_options(run_dir)?).context("setting up berth's network namespaces")
}

/// Networks container `id` as `config` says and points `spec` at it.
/// `Some` when berth attached something [`leave`] must release.
/// `namespace` is the container's ([`crate::config::worker::container_namespace`]):
/// with the id it names the container to the CNI plugins uniquely on the host.
pub fn join(config: &NetworkConfig, state: &Path, namespace: &str, id: &str, spec: &mut Spec) -> anyhow::Result<Option<Attachment>> {
    join_in(config, &run_dir(state), &format!("{namespace}-{id}"), id, spec)
}

fn join_in(config: &NetworkConfig, run_dir: &Path, cni_id: &str, id: &str, spec: &mut Spec) -> anyhow::Result<Option<Attachment>> {
    check_mode(config.mode, &spec_network(spec))?;
    match config.mode {
        NetworkMode::Auto => Ok(None),
        NetworkMode::Host => {
            set_spec_network(spec, None);
            Ok(None)
        }
        NetworkMode::None | NetworkMode::Bridge => {
            let attachment = manager(config, run_dir)?
                .attach_as(id, cni_id, config.mode.into())
                .with_context(|| format!("networking container {id} ({} mode)", mode_name(config.mode)))?;
            let path = attachment.netns_path.clone().context("berth-network attached no namespace")?;
            set_spec_network(spec, Some(&path));
            tracing::info!(id, mode = mode_name(config.mode), ips = ?attachment.ips, "network attached");
            Ok(Some(attachment))
        }
    }
}

/// Releases whatever [`join`] attached for `id` (nothing attached is fine).
pub fn leave(config: &NetworkConfig, state: &Path, id: &str) -> anyhow::Result<()> {
    leave_in(config, &run_dir(state), id)
}

fn leave_in(config: &NetworkConfig, run_dir: &Path, id: &str) -> anyhow::Result<()> {
    if !run_dir.join("attachments").join(format!("{id}.json")).exists() {
        return Ok(());
    }
    // The attachment carries the CNI list its ADD used: DEL works whatever
    // the configuration says now, so the pool and network are not needed.
    let mut options = config.manager_options(run_dir).unwrap_or_else(|_| berth_network::NetworkOptions {
        run_dir: run_dir.to_path_buf(),
        cni_bin_dirs: vec![config.cni_bin_dir.clone()],
        network: None,
        pool_size: 0,
    });
    options.pool_size = 0;
    NetworkManager::new(options)?.detach(id).with_context(|| format!("releasing the network of container {id}"))
}

/// The addresses a container got (for `berth ps`).
pub fn addresses(state: &Path, id: &str) -> Vec<String> {
    let file = run_dir(state).join("attachments").join(format!("{id}.json"));
    std::fs::read(file)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Attachment>(&bytes).ok())
        .map(|attachment| attachment.ips)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBuilder, LinuxNamespaceBuilder, SpecBuilder};

    fn spec_with(network: Option<Option<&str>>) -> Spec {
        let mut namespaces =
            vec![LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Pid).build().unwrap()];
        if let Some(path) = network {
            let mut ns = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Network).build().unwrap();
            ns.set_path(path.map(PathBuf::from));
            namespaces.push(ns);
        }
        SpecBuilder::default()
            .linux(LinuxBuilder::default().namespaces(namespaces).build().unwrap())
            .build()
            .unwrap()
    }

    fn config(mode: NetworkMode) -> NetworkConfig {
        NetworkConfig { mode, ..NetworkConfig::default() }
    }

    #[test]
    fn auto_leaves_the_chains_choice() {
        let dir = tempfile::tempdir().unwrap();
        for network in [None, Some(None), Some(Some("/run/netns/x"))] {
            let mut spec = spec_with(network);
            let before = spec_network(&spec);
            assert!(join_in(&config(NetworkMode::Auto), dir.path(), "ns-c1", "c1", &mut spec).unwrap().is_none());
            assert_eq!(spec_network(&spec), before);
        }
        assert!(!dir.path().join("netns").exists(), "auto created namespaces");
    }

    #[test]
    fn host_drops_the_network_namespace_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec_with(Some(None));
        assert!(join_in(&config(NetworkMode::Host), dir.path(), "ns-c1", "c1", &mut spec).unwrap().is_none());
        assert_eq!(spec_network(&spec), SpecNetwork::Host);
        let kinds: Vec<_> = spec.linux().as_ref().unwrap().namespaces().as_ref().unwrap().iter().map(|n| n.typ()).collect();
        assert_eq!(kinds, vec![LinuxNamespaceType::Pid]);
    }

    #[test]
    fn an_explicit_mode_and_a_plugins_namespace_conflict() {
        let dir = tempfile::tempdir().unwrap();
        for (mode, network, names) in [
            (NetworkMode::Bridge, None, "host's"),
            (NetworkMode::None, Some(Some("/run/netns/x")), "/run/netns/x"),
            (NetworkMode::Host, Some(Some("/run/netns/x")), "/run/netns/x"),
        ] {
            let mut spec = spec_with(network);
            let err = join_in(&config(mode), dir.path(), "ns-c1", "c1", &mut spec).unwrap_err().to_string();
            assert!(err.contains(mode_name(mode)) && err.contains(names), "{err}");
        }
        // Host asked and the chain chose host: they agree.
        let mut spec = spec_with(None);
        assert!(join_in(&config(NetworkMode::Host), dir.path(), "ns-c1", "c1", &mut spec).unwrap().is_none());
        assert_eq!(spec_network(&spec), SpecNetwork::Host);
    }

    #[test]
    fn bridge_without_a_cni_config_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut network = config(NetworkMode::Bridge);
        network.cni_config_dir = dir.path().join("missing");
        let mut spec = spec_with(Some(None));
        let err = format!("{:#}", join_in(&network, &dir.path().join("run"), "ns-c1", "c1", &mut spec).unwrap_err());
        assert!(err.contains("cni-config-dir") && err.contains("missing"), "{err}");
        assert_eq!(spec_network(&spec), SpecNetwork::New, "the spec changed on failure");
    }

    #[test]
    fn leaving_without_an_attachment_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        leave_in(&config(NetworkMode::Bridge), dir.path(), "never-attached").unwrap();
    }
}
