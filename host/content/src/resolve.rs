//! From an image's target (index or manifest) to the manifest and config
//! for one platform.

use anyhow::{Context, anyhow};
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};

use crate::{ContentStore, Platform, Result, media_types};

/// Nested indexes deeper than this are refused.
const MAX_INDEX_DEPTH: usize = 4;

/// One platform's image.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    pub manifest_desc: Descriptor,
    pub manifest: ImageManifest,
    pub config: ImageConfiguration,
}

impl ResolvedImage {
    /// Uncompressed layer digests, bottom first.
    pub fn diff_ids(&self) -> &[String] {
        self.config.rootfs().diff_ids()
    }
}

/// Resolves `target` (an index or a manifest) for `platform`. Every blob
/// read is bounded and verified. Manifests in an index whose entries carry
/// no platform are checked through their config.
pub fn resolve_image(store: &ContentStore, target: &Descriptor, platform: &Platform) -> Result<ResolvedImage> {
    resolve(store, target, platform, 0)
}

fn resolve(store: &ContentStore, target: &Descriptor, platform: &Platform, depth: usize) -> Result<ResolvedImage> {
    let media_type = target.media_type().to_string();
    let data = store.read_metadata(target)?;
    if media_types::is_index(&media_type) || (!media_types::is_manifest(&media_type) && looks_like_index(&data)) {
        if depth >= MAX_INDEX_DEPTH {
            return Err(anyhow!("index {}: nested more than {MAX_INDEX_DEPTH} deep", target.digest()).into());
        }
        let index: ImageIndex =
            serde_json::from_slice(&data).with_context(|| format!("index {}: not an OCI image index", target.digest()))?;
        let mut best: Option<(u8, &Descriptor)> = None;
        let mut untagged = Vec::new();
        for desc in index.manifests() {
            let mt = desc.media_type().to_string();
            if !media_types::is_manifest(&mt) && !media_types::is_index(&mt) {
                continue; // attestations, signatures, ...
            }
            match desc.platform() {
                Some(p) => {
                    let score = platform.score(&p.os().to_string(), &p.architecture().to_string(), p.variant().as_deref());
                    if let Some(score) = score
                        && best.is_none_or(|(b, _)| score > b)
                    {
                        best = Some((score, desc));
                    }
                }
                None => untagged.push(desc),
            }
        }
        if let Some((_, desc)) = best {
            return resolve(store, desc, platform, depth + 1);
        }
        for desc in untagged {
            if let Ok(image) = resolve(store, desc, platform, depth + 1) {
                return Ok(image);
            }
        }
        return Err(crate::Error::NotFound(format!("index {}: no manifest for platform {platform}", target.digest())));
    }
    let manifest: ImageManifest =
        serde_json::from_slice(&data).with_context(|| format!("manifest {}: not an OCI image manifest", target.digest()))?;
    let config_data = store.read_metadata(manifest.config()).with_context(|| format!("config of manifest {}", target.digest()))?;
    let config: ImageConfiguration = serde_json::from_slice(&config_data)
        .with_context(|| format!("config {}: not an OCI image configuration", manifest.config().digest()))?;
    let (os, arch, variant) = (config.os().to_string(), config.architecture().to_string(), config.variant().clone());
    if !platform.matches(&os, &arch, variant.as_deref()) {
        return Err(crate::Error::NotFound(format!(
            "manifest {}: image is for {os}/{arch}, not {platform}",
            target.digest()
        )));
    }
    if config.rootfs().diff_ids().len() != manifest.layers().len() {
        bail_other(format!(
            "manifest {}: {} layers but the config lists {} diff ids",
            target.digest(),
            manifest.layers().len(),
            config.rootfs().diff_ids().len()
        ))?;
    }
    Ok(ResolvedImage { manifest_desc: target.clone(), manifest, config })
}

fn bail_other(msg: String) -> Result<()> {
    Err(crate::Error::Other(anyhow::Error::msg(msg)))
}

/// Docker-save and some tools omit media types; an index has `manifests`.
fn looks_like_index(data: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    matches!(serde_json::from_slice::<Probe>(data), Ok(Probe { manifests: Some(_), layers: None }))
}
