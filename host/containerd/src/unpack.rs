//! Unpacking an image into one of containerd's snapshotters, the way
//! containerd's own unpacker does: one committed snapshot per layer chain,
//! named by its chain ID, reused when already there.

use std::collections::HashMap;

use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::ApplyRequest;
use containerd_client::types::Mount;
use sha2::Digest as _;

use crate::connect::Conn;
use crate::content;
use crate::error::{Error, GrpcContext, Result};
use crate::images::ResolvedImage;
use crate::lease::unique_suffix;

/// The label containerd's GC follows from an image config to its unpacked snapshot.
pub(crate) fn gc_snapshot_label(snapshotter: &str) -> String {
    format!("containerd.io/gc.ref.snapshot.{snapshotter}")
}

/// Chain IDs of a layer stack: the first is its diff ID, each next one
/// `sha256(parent + " " + diff_id)`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => format!("sha256:{}", hex::encode(sha2::Sha256::digest(format!("{parent} {diff_id}")))),
        };
        chain.push(next);
    }
    chain
}

/// Makes sure every layer of `image` is a committed snapshot in `snapshotter`
/// and returns the top one's name (None for an image without layers).
pub(crate) async fn unpack(conn: &Conn, image: &ResolvedImage, snapshotter: &str) -> Result<Option<String>> {
    let chains = chain_ids(&image.diff_ids);
    let mut parent = String::new();
    for ((layer, diff_id), chain) in image.layers.iter().zip(&image.diff_ids).zip(&chains) {
        if !snapshot_exists(conn, snapshotter, chain).await? {
            apply_layer(conn, snapshotter, layer, diff_id, chain, &parent).await?;
        }
        if is_compressed(&layer.media_type) {
            let label = HashMap::from([("containerd.io/uncompressed".to_string(), diff_id.clone())]);
            content::set_labels(conn, &layer.digest, label).await?;
        }
        parent = chain.clone();
    }
    let top = chains.last().cloned();
    if let Some(top) = &top {
        let label = HashMap::from([(gc_snapshot_label(snapshotter), top.clone())]);
        content::set_labels(conn, &image.config_desc.digest, label).await?;
    }
    Ok(top)
}

fn is_compressed(media_type: &str) -> bool {
    media_type.ends_with("gzip") || media_type.ends_with("zstd")
}

async fn apply_layer(
    conn: &Conn,
    snapshotter: &str,
    layer: &containerd_client::types::Descriptor,
    diff_id: &str,
    chain: &str,
    parent: &str,
) -> Result<()> {
    let key = format!("extract-{} {chain}", unique_suffix());
    let mounts = prepare(conn, snapshotter, &key, parent, HashMap::new()).await?;
    let applied = DiffClient::new(conn.channel.clone())
        .apply(conn.req(ApplyRequest { diff: Some(layer.clone()), mounts, payloads: HashMap::new(), sync_fs: false }))
        .await
        .context(|| format!("applying layer {} in snapshotter {snapshotter}", layer.digest));
    let applied = match applied {
        Ok(response) => response.applied.map(|d| d.digest).unwrap_or_default(),
        Err(err) => {
            remove(conn, snapshotter, &key).await.ok();
            return Err(err);
        }
    };
    if applied != diff_id {
        remove(conn, snapshotter, &key).await.ok();
        return Err(anyhow::anyhow!("layer {} unpacked to {applied}, the image config says {diff_id}", layer.digest).into());
    }
    let commit = CommitSnapshotRequest {
        snapshotter: snapshotter.to_string(),
        name: chain.to_string(),
        key: key.clone(),
        labels: HashMap::new(),
    };
    match SnapshotsClient::new(conn.channel.clone()).commit(conn.req(commit)).await {
        Ok(_) => Ok(()),
        // Another unpack of the same layer won the race: use its snapshot.
        Err(status) if status.code() == tonic::Code::AlreadyExists => {
            remove(conn, snapshotter, &key).await.ok();
            Ok(())
        }
        Err(status) => {
            remove(conn, snapshotter, &key).await.ok();
            Err(Error::grpc(format!("committing snapshot {chain} in {snapshotter}"), status))
        }
    }
}

pub(crate) async fn snapshot_exists(conn: &Conn, snapshotter: &str, key: &str) -> Result<bool> {
    let request = StatSnapshotRequest { snapshotter: snapshotter.to_string(), key: key.to_string() };
    match SnapshotsClient::new(conn.channel.clone()).stat(conn.req(request)).await {
        Ok(_) => Ok(true),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(false),
        Err(status) => Err(snapshotter_error(snapshotter, format!("looking up snapshot {key}"), status)),
    }
}

pub(crate) async fn prepare(
    conn: &Conn,
    snapshotter: &str,
    key: &str,
    parent: &str,
    labels: HashMap<String, String>,
) -> Result<Vec<Mount>> {
    let request = PrepareSnapshotRequest {
        snapshotter: snapshotter.to_string(),
        key: key.to_string(),
        parent: parent.to_string(),
        labels,
    };
    SnapshotsClient::new(conn.channel.clone())
        .prepare(conn.req(request))
        .await
        .map(|r| r.into_inner().mounts)
        .map_err(|status| snapshotter_error(snapshotter, format!("preparing snapshot {key} on {parent:?}"), status))
}

pub(crate) async fn mounts(conn: &Conn, snapshotter: &str, key: &str) -> Result<Vec<Mount>> {
    let request = MountsRequest { snapshotter: snapshotter.to_string(), key: key.to_string() };
    SnapshotsClient::new(conn.channel.clone())
        .mounts(conn.req(request))
        .await
        .map(|r| r.into_inner().mounts)
        .map_err(|status| snapshotter_error(snapshotter, format!("mounts of snapshot {key}"), status))
}

pub(crate) async fn remove(conn: &Conn, snapshotter: &str, key: &str) -> Result<()> {
    let request = RemoveSnapshotRequest { snapshotter: snapshotter.to_string(), key: key.to_string() };
    SnapshotsClient::new(conn.channel.clone())
        .remove(conn.req(request))
        .await
        .map(|_| ())
        .map_err(|status| snapshotter_error(snapshotter, format!("removing snapshot {key}"), status))
}

/// containerd says "snapshotter not loaded: X: invalid argument" for an
/// unknown name; say which name and where it was looked for.
fn snapshotter_error(snapshotter: &str, what: String, status: tonic::Status) -> Error {
    if status.code() == tonic::Code::InvalidArgument && status.message().contains("snapshotter not loaded") {
        return Error::Other(anyhow::anyhow!("{what}: containerd has no snapshotter named {snapshotter:?} ({})", status.message()));
    }
    Error::grpc(format!("{what} in snapshotter {snapshotter}"), status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let chains = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chains[0], a);
        let expected = format!("sha256:{}", hex::encode(sha2::Sha256::digest(format!("{a} {b}"))));
        assert_eq!(chains[1], expected);
        assert!(chain_ids(&[]).is_empty());
    }
}
