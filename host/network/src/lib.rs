//! Container network modes: host, none, bridge (CNI) with a pool of pre-created network namespaces.
//!
//! Layout under the run dir:
//!
//! ```text
//! <run>/netns/pool-<n>       pinned namespaces waiting to be claimed
//! <run>/netns/<container>    a container's namespace
//! <run>/attachments/<container>.json   what detach needs (mode, CNI result)
//! ```
//!
//! A pool namespace is claimed by creating `pool-<n>.claimed` with O_EXCL (a
//! mount point cannot be renamed), so two processes never get the same one; a
//! detached namespace is destroyed, never reused (nothing a
//! container left in it survives).

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};

pub mod cni;
pub mod netns;

pub use cni::{CniResult, NetworkConfigList};

/// How a container is networked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// The host's network namespace.
    Host,
    /// A namespace of its own with only loopback up.
    None,
    /// A namespace on the CNI network (loopback, then the configured list).
    Bridge,
}

impl std::str::FromStr for NetworkMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "host" => Ok(NetworkMode::Host),
            "none" => Ok(NetworkMode::None),
            "bridge" => Ok(NetworkMode::Bridge),
            _ => Err(format!("invalid network mode {s:?}: expected host, none or bridge")),
        }
    }
}

/// A container's network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub container_id: String,
    pub mode: NetworkMode,
    /// The namespace to join (`None` in host mode: stay in the host's).
    pub netns_path: Option<PathBuf>,
    /// `address/prefix` of each IP the network gave.
    pub ips: Vec<String>,
    /// The CNI ADD result, for DEL.
    #[serde(default)]
    pub cni_result: Option<serde_json::Value>,
    /// The network list ADD ran (the CNI spec wants DEL to get the same
    /// configuration, even if the configured network changed since).
    #[serde(default)]
    pub network: Option<NetworkConfigList>,
    /// The `CNI_CONTAINERID` ADD ran with, when not `container_id` (IPAM
    /// leases are keyed by it: it must be unique on the host, DEL must
    /// repeat it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni_container_id: Option<String>,
}

impl Attachment {
    /// The `CNI_CONTAINERID` of this attachment's ADD and DEL.
    pub fn cni_id(&self) -> &str {
        self.cni_container_id.as_deref().unwrap_or(&self.container_id)
    }
}

/// Where things are and which network bridge mode uses.
#[derive(Debug, Clone)]
pub struct NetworkOptions {
    pub run_dir: PathBuf,
    /// CNI plugin directories (Debian: /usr/lib/cni).
    pub cni_bin_dirs: Vec<PathBuf>,
    /// The bridge network; `None` refuses bridge mode.
    pub network: Option<NetworkConfigList>,
    /// Namespaces kept ready.
    pub pool_size: usize,
}

pub struct NetworkManager {
    opts: NetworkOptions,
}

const IFNAME: &str = "eth0";
const POOL_PREFIX: &str = "pool-";

impl NetworkManager {
    /// Creates the run dir and fills the pool.
    pub fn new(opts: NetworkOptions) -> anyhow::Result<NetworkManager> {
        for d in ["netns", "attachments"] {
            let p = opts.run_dir.join(d);
            std::fs::create_dir_all(&p).with_context(|| format!("cannot create {}", p.display()))?;
        }
        let m = NetworkManager { opts };
        m.fill_pool()?;
        Ok(m)
    }

    fn netns_dir(&self) -> PathBuf {
        self.opts.run_dir.join("netns")
    }

    fn attachment_file(&self, container_id: &str) -> PathBuf {
        self.opts.run_dir.join("attachments").join(format!("{container_id}.json"))
    }

    /// Pool namespaces currently waiting.
    pub fn pooled(&self) -> anyhow::Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.netns_dir())
            .with_context(|| format!("cannot read {}", self.netns_dir().display()))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(POOL_PREFIX))
            .map(|e| e.path())
            .filter(|p| p.extension().is_none() && !claim_marker(p).exists())
            .collect();
        v.sort();
        Ok(v)
    }

    /// Tops the pool up to `pool_size`.
    pub fn fill_pool(&self) -> anyhow::Result<()> {
        let mut have = self.pooled()?.len();
        while have < self.opts.pool_size {
            let name = format!("{POOL_PREFIX}{}-{}", std::process::id(), unique());
            netns::create(&self.netns_dir().join(name)).context("cannot pre-create a pool namespace")?;
            have += 1;
        }
        Ok(())
    }

    /// A namespace for `container_id`: a pool one if any, else a new one.
    fn claim_netns(&self, container_id: &str) -> anyhow::Result<PathBuf> {
        let target = self.netns_dir().join(container_id);
        if target.exists() {
            bail!("container {container_id} already has a network namespace at {}", target.display());
        }
        for candidate in self.pooled()? {
            // A mount point cannot be renamed: the claim is an O_EXCL marker
            // file; its winner binds the namespace to the target.
            let marker = claim_marker(&candidate);
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&marker) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot claim {}", candidate.display())),
            }
            let moved = netns::rebind(&candidate, &target);
            let _ = netns::destroy(&candidate);
            let _ = std::fs::remove_file(&marker);
            match moved {
                Ok(()) => {
                    tracing::debug!("netns for {container_id} from the pool ({})", candidate.display());
                    return Ok(target);
                }
                Err(e) => tracing::warn!("netns pool: {e:#}"),
            }
        }
        netns::create(&target)?;
        Ok(target)
    }

    /// Networks `container_id` in `mode`.
    pub fn attach(&self, container_id: &str, mode: NetworkMode) -> anyhow::Result<Attachment> {
        self.attach_as(container_id, container_id, mode)
    }

    /// [`NetworkManager::attach`] with `cni_id` as the CNI plugins'
    /// container id: unique on the host where `container_id` may not be
    /// (two berth roots may each have a container of one name).
    pub fn attach_as(&self, container_id: &str, cni_id: &str, mode: NetworkMode) -> anyhow::Result<Attachment> {
        validate_id(container_id)?;
        validate_id(cni_id)?;
        if mode == NetworkMode::Bridge && self.opts.network.is_none() {
            bail!("bridge mode needs a CNI network configuration (worker.network.cni-config-dir)");
        }
        let mut attachment = Attachment {
            container_id: container_id.into(),
            mode,
            netns_path: None,
            ips: Vec::new(),
            cni_result: None,
            network: None,
            cni_container_id: (cni_id != container_id).then(|| cni_id.to_string()),
        };
        if mode != NetworkMode::Host {
            let ns = self.claim_netns(container_id)?;
            attachment.netns_path = Some(ns.clone());
            let result = self.setup(cni_id, mode, &ns);
            match result {
                Ok(r) => {
                    if let Some(r) = r {
                        attachment.ips = r.ips.clone();
                        attachment.cni_result = Some(r.raw);
                        attachment.network = self.opts.network.clone();
                    }
                }
                Err(e) => {
                    let _ = self.teardown(&attachment);
                    return Err(e.context(format!("cannot attach {container_id} in {mode:?} mode")));
                }
            }
        }
        let file = self.attachment_file(container_id);
        std::fs::write(&file, serde_json::to_vec_pretty(&attachment)?)
            .with_context(|| format!("cannot write {}", file.display()))?;
        // Refill for the next container; a failure here does not undo this one.
        if let Err(e) = self.fill_pool() {
            tracing::warn!("netns pool: {e:#}");
        }
        Ok(attachment)
    }

    fn loopback() -> NetworkConfigList {
        NetworkConfigList {
            cni_version: "1.0.0".into(),
            name: "berth-loopback".into(),
            plugins: vec![serde_json::json!({"type": "loopback"})],
        }
    }

    fn invocation<'a>(&'a self, container_id: &'a str, ns: &'a Path, ifname: &'a str) -> cni::Invocation<'a> {
        cni::Invocation { bin_dirs: &self.opts.cni_bin_dirs, container_id, netns: ns, ifname }
    }

    fn setup(&self, container_id: &str, mode: NetworkMode, ns: &Path) -> anyhow::Result<Option<CniResult>> {
        self.invocation(container_id, ns, "lo").add(&Self::loopback())?;
        match (mode, &self.opts.network) {
            (NetworkMode::Bridge, Some(net)) => Ok(Some(self.invocation(container_id, ns, IFNAME).add(net)?)),
            _ => Ok(None),
        }
    }

    fn teardown(&self, a: &Attachment) -> anyhow::Result<()> {
        let Some(ns) = &a.netns_path else { return Ok(()) };
        let mut first_err = None;
        if a.mode == NetworkMode::Bridge
            && let Some(net) = a.network.as_ref().or(self.opts.network.as_ref())
            && let Err(e) = self.invocation(a.cni_id(), ns, IFNAME).del(net, a.cni_result.as_ref())
        {
            first_err = Some(e);
        }
        if let Err(e) = self.invocation(a.cni_id(), ns, "lo").del(&Self::loopback(), None) {
            first_err.get_or_insert(e);
        }
        if let Err(e) = netns::destroy(ns) {
            first_err.get_or_insert(e);
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The attachment recorded for `container_id`, if any.
    pub fn attachment(&self, container_id: &str) -> anyhow::Result<Option<Attachment>> {
        validate_id(container_id)?;
        let file = self.attachment_file(container_id);
        match std::fs::read(&file) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| format!("invalid {}", file.display()))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", file.display())),
        }
    }

    /// Releases the network of `container_id` (CNI DEL, namespace removed).
    /// Detaching a container that has none is not an error.
    pub fn detach(&self, container_id: &str) -> anyhow::Result<()> {
        let Some(a) = self.attachment(container_id)? else { return Ok(()) };
        self.teardown(&a).with_context(|| format!("cannot detach {container_id}"))?;
        let file = self.attachment_file(container_id);
        std::fs::remove_file(&file).with_context(|| format!("cannot remove {}", file.display()))?;
        Ok(())
    }

    /// Destroys every pool namespace (shutdown).
    pub fn drain_pool(&self) -> anyhow::Result<()> {
        for ns in self.pooled()? {
            netns::destroy(&ns)?;
        }
        Ok(())
    }
}

fn claim_marker(pool_ns: &Path) -> PathBuf {
    pool_ns.with_extension("claimed")
}

fn validate_id(id: &str) -> anyhow::Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with(POOL_PREFIX)
        && !id.starts_with('.')
        && !id.ends_with(".claimed")
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok { Ok(()) } else { Err(anyhow!("invalid container id {id:?}")) }
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{t:x}-{}", N.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        for bad in ["", "../x", "a/b", "pool-1", ".hidden", "a b"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
        assert!(validate_id("ctr-1_a.b").is_ok());
    }

    #[test]
    fn modes_parse() {
        assert_eq!("bridge".parse::<NetworkMode>().unwrap(), NetworkMode::Bridge);
        assert!("overlay".parse::<NetworkMode>().is_err());
    }

    #[test]
    fn host_mode_has_no_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let m = NetworkManager::new(NetworkOptions {
            run_dir: dir.path().into(),
            cni_bin_dirs: vec![],
            network: None,
            pool_size: 0,
        })
        .unwrap();
        let a = m.attach("c1", NetworkMode::Host).unwrap();
        assert_eq!(a.netns_path, None);
        assert!(m.attach("c2", NetworkMode::Bridge).unwrap_err().to_string().contains("CNI network"));
        m.detach("c1").unwrap();
        assert!(m.attachment("c1").unwrap().is_none());
    }

    #[test]
    fn a_network_list_round_trips_in_conflist_shape() {
        let list = NetworkConfigList::isolated_bridge("n", "br0", "10.1.2.0/24", Path::new("/tmp/ipam"));
        let json = serde_json::to_value(&list).unwrap();
        assert_eq!(json["cniVersion"], "1.0.0");
        assert_eq!(json["plugins"][0]["type"], "bridge");
        let back = NetworkConfigList::from_json(&json.to_string(), "test").unwrap();
        assert_eq!(back, list);
        let again: NetworkConfigList = serde_json::from_value(json).unwrap();
        assert_eq!(again, list);
    }
}
