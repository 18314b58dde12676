//! Images in containerd: importing an OCI layout (blobs into the content
//! store, then the image record) and resolving an image record to the
//! manifest, config and layers for this host's platform.

use std::collections::HashMap;

use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::namespaces_client::NamespacesClient;
use containerd_client::services::v1::{CreateImageRequest, GetImageRequest, Image, ListNamespacesRequest, UpdateImageRequest};
use containerd_client::types::Descriptor;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest, Platform};

use crate::connect::Conn;
use crate::content;
use crate::error::{Error, GrpcContext, Result};
use crate::layout::OciLayout;

const INDEX_TYPES: [&str; 2] =
    ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];
const MANIFEST_TYPES: [&str; 2] =
    ["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"];
/// Annotations naming an image in an index (containerd's, then OCI's).
const NAME_ANNOTATIONS: [&str; 2] = ["io.containerd.image.name", "org.opencontainers.image.ref.name"];

/// An image resolved for this host: what unpacking and running need.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedImage {
    pub config_desc: Descriptor,
    pub config: ImageConfiguration,
    pub layers: Vec<Descriptor>,
    /// Uncompressed digests of the layers, from the config.
    pub diff_ids: Vec<String>,
}

pub(crate) fn to_containerd(desc: &oci_spec::image::Descriptor) -> Descriptor {
    Descriptor {
        media_type: desc.media_type().to_string(),
        digest: desc.digest().to_string(),
        size: desc.size() as i64,
        annotations: desc.annotations().clone().unwrap_or_default().into_iter().collect(),
    }
}

/// Uploads the image `name` of `layout` (or its only image) and points the
/// image record `name` at it. Returns the record's target.
pub(crate) async fn import(conn: &Conn, layout: &OciLayout, name: &str) -> Result<Descriptor> {
    let root = select_root(layout, name)?;
    upload_tree(conn, layout, &root).await?;
    let target = to_containerd(&root);
    let image = Image { name: name.to_string(), target: Some(target.clone()), ..Default::default() };
    let mut images = ImagesClient::new(conn.channel.clone());
    match images.create(conn.req(CreateImageRequest { image: Some(image.clone()), source_date_epoch: None })).await {
        Ok(_) => {}
        Err(status) if status.code() == tonic::Code::AlreadyExists => {
            let request = UpdateImageRequest {
                image: Some(image),
                update_mask: Some(prost_types::FieldMask { paths: vec!["target".into()] }),
                source_date_epoch: None,
            };
            images.update(conn.req(request)).await.context(|| format!("updating image {name}"))?;
        }
        Err(status) => return Err(Error::grpc(format!("creating image {name}"), status)),
    }
    Ok(target)
}

/// The index entry of `layout` that is the image `name`.
fn select_root(layout: &OciLayout, name: &str) -> Result<oci_spec::image::Descriptor> {
    let manifests = layout.index().manifests();
    let tag = name.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')).map(|(_, tag)| tag);
    let named = |desc: &&oci_spec::image::Descriptor| {
        let annotations = desc.annotations().clone().unwrap_or_default();
        NAME_ANNOTATIONS.iter().filter_map(|key| annotations.get(*key)).any(|value| value == name || Some(value.as_str()) == tag)
    };
    if let Some(found) = manifests.iter().find(named) {
        return Ok(found.clone());
    }
    match manifests.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(anyhow::anyhow!("{}: the layout's index lists no image", layout.path().display()).into()),
        many => {
            let names: Vec<String> = many
                .iter()
                .filter_map(|d| d.annotations().as_ref().and_then(|a| NAME_ANNOTATIONS.iter().find_map(|k| a.get(*k).cloned())))
                .collect();
            Err(anyhow::anyhow!("{}: no image named {name} among {names:?}", layout.path().display()).into())
        }
    }
}

/// Uploads `desc` and everything it references, children first, with the
/// gc.ref labels containerd's garbage collector follows.
async fn upload_tree(conn: &Conn, layout: &OciLayout, desc: &oci_spec::image::Descriptor) -> Result<()> {
    let media_type = desc.media_type().to_string();
    let mut labels = HashMap::new();
    if INDEX_TYPES.contains(&media_type.as_str()) {
        let index: ImageIndex = parse(&layout.read_blob(desc)?, &to_containerd(desc))?;
        for (i, child) in index.manifests().iter().enumerate() {
            if !layout.has_blob(child.digest()) {
                if platform_matches(child.platform().as_ref()) {
                    return Err(anyhow::anyhow!("{}: the manifest {} for this platform is missing", layout.path().display(), child.digest()).into());
                }
                continue; // another platform's manifest, not shipped in this layout
            }
            Box::pin(upload_tree(conn, layout, child)).await?;
            labels.insert(format!("containerd.io/gc.ref.content.m.{i}"), child.digest().to_string());
        }
    } else if MANIFEST_TYPES.contains(&media_type.as_str()) {
        let manifest: ImageManifest = parse(&layout.read_blob(desc)?, &to_containerd(desc))?;
        for blob in std::iter::once(manifest.config()).chain(manifest.layers()) {
            content::upload(conn, &to_containerd(blob), layout.open_blob(blob)?, HashMap::new()).await?;
        }
        labels.insert("containerd.io/gc.ref.content.config".into(), manifest.config().digest().to_string());
        for (i, layer) in manifest.layers().iter().enumerate() {
            labels.insert(format!("containerd.io/gc.ref.content.l.{i}"), layer.digest().to_string());
        }
    } else {
        return Err(anyhow::anyhow!("{}: {} has media type {media_type}, neither an image index nor a manifest", layout.path().display(), desc.digest()).into());
    }
    content::upload(conn, &to_containerd(desc), layout.open_blob(desc)?, labels).await
}

/// A JSON blob (index, manifest, config) described by `desc`.
fn parse<T: serde::de::DeserializeOwned>(data: &[u8], desc: &Descriptor) -> Result<T> {
    serde_json::from_slice(data)
        .map_err(|e| anyhow::anyhow!("blob {} ({}) does not parse: {e}", desc.digest, desc.media_type).into())
}

/// The image record `name`, with containerd's NotFound told apart: a missing
/// namespace or a missing image.
pub(crate) async fn get(conn: &Conn, name: &str) -> Result<Image> {
    let response = ImagesClient::new(conn.channel.clone()).get(conn.req(GetImageRequest { name: name.to_string() })).await;
    match response {
        Ok(response) => response
            .into_inner()
            .image
            .ok_or_else(|| anyhow::anyhow!("containerd returned no record for image {name}").into()),
        Err(status) if status.code() == tonic::Code::NotFound => {
            check_namespace(conn).await?;
            Err(Error::ImageNotFound { image: name.to_string(), namespace: conn.namespace.clone() })
        }
        Err(status) => Err(Error::grpc(format!("looking up image {name}"), status)),
    }
}

/// NamespaceNotFound unless the connection's namespace exists. (containerd
/// 1.6 answers Namespaces.Get for any name, so the list is asked.)
pub(crate) async fn check_namespace(conn: &Conn) -> Result<()> {
    let listed = NamespacesClient::new(conn.channel.clone())
        .list(tonic::Request::new(ListNamespacesRequest { filter: String::new() }))
        .await
        .context(|| "listing namespaces".to_string())?;
    if listed.namespaces.iter().any(|ns| ns.name == conn.namespace) {
        Ok(())
    } else {
        Err(Error::NamespaceNotFound { namespace: conn.namespace.clone(), address: conn.address.clone() })
    }
}

/// Resolves the image record `name` to this platform's manifest and config.
pub(crate) async fn resolve(conn: &Conn, name: &str) -> Result<ResolvedImage> {
    let image = get(conn, name).await?;
    let mut desc = image.target.ok_or_else(|| anyhow::anyhow!("image {name} has no target"))?;
    // Indexes nest; a few levels is all real images use.
    for _ in 0..4 {
        if !INDEX_TYPES.contains(&desc.media_type.as_str()) {
            break;
        }
        let index: ImageIndex = parse(&content::read(conn, &desc).await?, &desc)?;
        let chosen = index
            .manifests()
            .iter()
            .find(|m| platform_matches(m.platform().as_ref()))
            .ok_or_else(|| anyhow::anyhow!("image {name} has no manifest for {}", host_platform_name()))?;
        desc = to_containerd(chosen);
    }
    if !MANIFEST_TYPES.contains(&desc.media_type.as_str()) {
        return Err(anyhow::anyhow!("image {name}: {} has media type {}, not an image manifest", desc.digest, desc.media_type).into());
    }
    let manifest: ImageManifest = parse(&content::read(conn, &desc).await?, &desc)?;
    let config_desc = to_containerd(manifest.config());
    let config: ImageConfiguration = parse(&content::read(conn, &config_desc).await?, &config_desc)?;
    let diff_ids = config.rootfs().diff_ids().clone();
    let layers: Vec<Descriptor> = manifest.layers().iter().map(to_containerd).collect();
    if layers.len() != diff_ids.len() {
        return Err(anyhow::anyhow!(
            "image {name}: the manifest lists {} layers, the config {} diff ids",
            layers.len(),
            diff_ids.len()
        )
        .into());
    }
    Ok(ResolvedImage { config_desc, config, layers, diff_ids })
}

/// GOARCH of this host, as image platforms name it.
pub(crate) fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn host_platform_name() -> String {
    format!("linux/{}", host_arch())
}

/// containerd's rule: an entry without a platform matches any.
fn platform_matches(platform: Option<&Platform>) -> bool {
    platform.is_none_or(|p| p.os().to_string() == "linux" && p.architecture().to_string() == host_arch())
}
