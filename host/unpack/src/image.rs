//! An image's layers -> a chain of committed snapshots named by chain ID.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_content::{ContentStore, ResolvedImage};
use berth_snapshot::{Labels, Mount, Snapshotter};
use sha2::Digest as _;

use crate::apply::{ApplyOptions, WhiteoutMode};
use crate::layer::{LayerStats, apply_layer};
use crate::{Error, Result};

/// Label on each committed layer snapshot: the layer blob it came from.
pub const LABEL_LAYER_DIGEST: &str = "berth.io/layer.digest";
/// containerd's label naming a snapshot's uncompressed layer.
pub const LABEL_UNCOMPRESSED: &str = "containerd.io/uncompressed";

#[derive(Debug, Clone, Default)]
pub struct UnpackOptions {
    /// Resolve paths without openat2 (tests of the fallback).
    pub no_openat2: bool,
}

/// What `unpack_image` did per layer.
#[derive(Debug, Clone)]
pub struct UnpackedLayer {
    pub chain_id: String,
    /// `None` when the snapshot already existed.
    pub applied: Option<LayerStats>,
}

/// The chain IDs of `diff_ids` (OCI image spec): the first is its DiffID,
/// each next one `sha256(parent_chain_id + " " + diff_id)`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let id = match out.last() {
            None => diff_id.clone(),
            Some(parent) => format!("sha256:{}", hex::encode(sha2::Sha256::digest(format!("{parent} {diff_id}").as_bytes()))),
        };
        out.push(id);
    }
    out
}

/// Unpacks `image` into `snapshotter`: for each layer, the committed
/// snapshot named by its chain ID is reused if present; otherwise a
/// temporary active snapshot on the parent is prepared, the layer applied
/// into it (overlay upper dir with overlay whiteouts, or the bind source
/// with whiteouts applied) and committed under the chain ID. Returns the
/// top chain ID (the image's rootfs parent).
pub fn unpack_image(
    store: &ContentStore,
    image: &ResolvedImage,
    snapshotter: &dyn Snapshotter,
    opts: &UnpackOptions,
) -> Result<String> {
    Ok(unpack_image_layers(store, image, snapshotter, opts)?.last().map(|l| l.chain_id.clone()).unwrap_or_default())
}

pub fn unpack_image_layers(
    store: &ContentStore,
    image: &ResolvedImage,
    snapshotter: &dyn Snapshotter,
    opts: &UnpackOptions,
) -> Result<Vec<UnpackedLayer>> {
    let layers = image.manifest.layers();
    let diff_ids = image.diff_ids();
    if layers.len() != diff_ids.len() {
        return Err(Error::Other(anyhow::anyhow!("{} layers but {} diff ids", layers.len(), diff_ids.len())));
    }
    if layers.is_empty() {
        return Err(Error::Other(anyhow::anyhow!("the image has no layers")));
    }
    let chain = chain_ids(diff_ids);
    let mut out = Vec::new();
    let mut parent: Option<String> = None;
    for (i, layer) in layers.iter().enumerate() {
        let chain_id = &chain[i];
        match snapshotter.stat(chain_id) {
            Ok(info) if info.kind == berth_snapshot::Kind::Committed => {
                out.push(UnpackedLayer { chain_id: chain_id.clone(), applied: None });
                parent = Some(chain_id.clone());
                continue;
            }
            Ok(info) => {
                return Err(Error::Other(anyhow::anyhow!("snapshot {chain_id} exists but is {}", info.kind.as_str())));
            }
            Err(berth_snapshot::Error::NotFound(_)) => {}
            Err(e) => return Err(Error::Other(anyhow::Error::new(e).context(format!("stat {chain_id}")))),
        }
        let key = temp_key(chain_id);
        let mut labels = Labels::new();
        labels.insert(LABEL_LAYER_DIGEST.into(), layer.digest().to_string());
        let mounts = snapshotter
            .prepare(&key, parent.as_deref(), Labels::new())
            .map_err(|e| Error::Other(anyhow::Error::new(e).context(format!("prepare {key}"))))?;
        let applied = (|| -> Result<LayerStats> {
            let (dir, apply_opts) = target(&mounts, opts)?;
            let blob = store.open_blob(layer.digest().as_ref()).map_err(|e| Error::Other(e.into()))?;
            let size = blob.metadata().map(|m| m.len()).unwrap_or(0);
            if size != layer.size() {
                return Err(Error::Other(anyhow::anyhow!(
                    "layer {}: stored blob has {size} bytes, the manifest says {}",
                    layer.digest(),
                    layer.size()
                )));
            }
            apply_layer(&dir, blob, Some(&diff_ids[i]), &apply_opts)
        })();
        let stats = match applied {
            Ok(stats) => stats,
            Err(e) => {
                if let Err(re) = snapshotter.remove(&key) {
                    tracing::warn!("removing {key} after a failed apply: {re}");
                }
                return Err(e.context(format!("layer {} ({})", i, layer.digest())));
            }
        };
        labels.insert(LABEL_UNCOMPRESSED.into(), diff_ids[i].clone());
        match snapshotter.commit(chain_id, &key, labels) {
            Ok(()) => {}
            // Unpacked concurrently by someone else: theirs is as good.
            Err(berth_snapshot::Error::AlreadyExists(_)) => {
                let _ = snapshotter.remove(&key);
            }
            Err(e) => {
                let _ = snapshotter.remove(&key);
                return Err(Error::Other(anyhow::Error::new(e).context(format!("commit {chain_id}"))));
            }
        }
        out.push(UnpackedLayer { chain_id: chain_id.clone(), applied: Some(stats) });
        parent = Some(chain_id.clone());
    }
    Ok(out)
}

fn temp_key(chain_id: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("extract-{}-{}-{} {chain_id}", std::process::id(), nanos, N.fetch_add(1, Ordering::Relaxed))
}

/// Where to apply a layer for the mounts of an active snapshot.
pub fn target(mounts: &[Mount], opts: &UnpackOptions) -> Result<(PathBuf, ApplyOptions)> {
    let [m] = mounts else {
        return Err(Error::Other(anyhow::anyhow!("cannot apply a layer to {} mounts", mounts.len())));
    };
    let mut apply = ApplyOptions { no_openat2: opts.no_openat2, ..ApplyOptions::default() };
    let opt = |prefix: &str| m.options.iter().find_map(|o| o.strip_prefix(prefix).map(str::to_string));
    if m.kind == "bind" || m.options.iter().any(|o| o == "bind" || o == "rbind") {
        if m.options.iter().any(|o| o == "ro") {
            return Err(Error::Other(anyhow::anyhow!("cannot apply a layer to a read-only mount of {}", m.source)));
        }
        apply.whiteouts = WhiteoutMode::Plain;
        return Ok((PathBuf::from(&m.source), apply));
    }
    if m.kind == "overlay" || m.kind.ends_with("fuse-overlayfs") {
        let upper = opt("upperdir=").ok_or_else(|| Error::Other(anyhow::anyhow!("overlay mount without upperdir: read-only")))?;
        apply.whiteouts = WhiteoutMode::Overlay { userxattr: m.options.iter().any(|o| o == "userxattr") };
        apply.lowers = opt("lowerdir=").map(|l| l.split(':').map(PathBuf::from).collect()).unwrap_or_default();
        return Ok((PathBuf::from(upper), apply));
    }
    Err(Error::Other(anyhow::anyhow!("cannot apply a layer to a {} mount", m.kind)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        let expect = format!("sha256:{}", hex::encode(sha2::Sha256::digest(format!("{a} {b}").as_bytes())));
        assert_eq!(ids[1], expect);
    }

    #[test]
    fn targets_from_mounts() {
        let bind = Mount { kind: "bind".into(), source: "/s/1/fs".into(), options: vec!["rbind".into(), "rw".into()] };
        let (dir, o) = target(&[bind], &UnpackOptions::default()).unwrap();
        assert_eq!((dir.to_str().unwrap(), o.whiteouts), ("/s/1/fs", WhiteoutMode::Plain));
        let ovl = Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options: vec!["index=off".into(), "userxattr".into(), "workdir=/s/2/work".into(), "upperdir=/s/2/fs".into(), "lowerdir=/s/1/fs:/s/0/fs".into()],
        };
        let (dir, o) = target(&[ovl], &UnpackOptions::default()).unwrap();
        assert_eq!(dir.to_str().unwrap(), "/s/2/fs");
        assert_eq!(o.whiteouts, WhiteoutMode::Overlay { userxattr: true });
        assert_eq!(o.lowers, vec![PathBuf::from("/s/1/fs"), PathBuf::from("/s/0/fs")]);
    }
}
