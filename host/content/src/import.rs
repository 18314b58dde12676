//! `berth image import`: OCI image layouts (a directory or a tar of one) and
//! `docker save` archives (`manifest.json` + layer tars, converted to OCI
//! manifests and configs in the store).
//!
//! The archive is untrusted: paths it names are checked to stay inside it,
//! every index/manifest/config read is bounded, every blob is verified
//! against its digest before it is stored.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use serde::Deserialize;

use crate::{ContentStore, Error, ImageRecord, ImageStore, MAX_METADATA_SIZE, Platform, Result, media_types};

/// Annotation containerd names an image with in a layout's index.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// OCI's reference annotation (a tag, or a full reference).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Symlinks inside a tar are followed at most this many times.
const MAX_LINK_HOPS: usize = 16;

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The name to store the image under (required when the archive names none).
    pub name: Option<String>,
    /// Layers are copied for this platform only (all metadata is copied).
    pub platform: Platform,
    /// Copy layers of every platform.
    pub all_platforms: bool,
}

/// Imports `path` (a layout dir, a layout tar, a docker-save tar or dir),
/// storing its blobs and naming its images. Returns the records written.
pub fn import(content: &ContentStore, images: &ImageStore, path: &Path, opts: &ImportOptions) -> Result<Vec<ImageRecord>> {
    let source = Source::new(path)?;
    let named = if source.exists("index.json") {
        import_oci(content, &source, opts)?
    } else if source.exists("manifest.json") {
        import_docker(content, &source, opts)?
    } else {
        return Err(anyhow!("{}: neither an OCI image layout (index.json) nor a docker save archive (manifest.json)", path.display()).into());
    };
    let mut records = Vec::new();
    for (name, desc) in named {
        let mut labels = BTreeMap::new();
        labels.insert("berth.io/imported-from".to_string(), path.display().to_string());
        records.push(images.put(&name, desc, labels)?);
    }
    Ok(records)
}

// ---------------------------------------------------------------- OCI layout

fn import_oci(content: &ContentStore, source: &Source, opts: &ImportOptions) -> Result<Vec<(String, Descriptor)>> {
    let index_data = source.read_bounded("index.json", MAX_METADATA_SIZE)?;
    let index: ImageIndex = serde_json::from_slice(&index_data)
        .with_context(|| format!("{}: index.json is not an OCI image index", source.path.display()))?;
    let index_blob = content.write_blob(&index_data)?;

    let mut copier = Copier { content, source, opts, done: HashMap::new() };
    let mut images = Vec::new();
    for desc in index.manifests() {
        copier.copy(desc, 0)?;
        images.push(desc.clone());
    }

    if let Some(name) = &opts.name {
        let target = if images.len() == 1 {
            images.remove(0)
        } else {
            descriptor(MediaType::ImageIndex, &index_blob.digest, index_blob.size)?
        };
        return Ok(vec![(name.clone(), target)]);
    }
    let mut named = Vec::new();
    for desc in images {
        let annotations = desc.annotations().clone().unwrap_or_default();
        let name = annotations.get(ANNOTATION_IMAGE_NAME).cloned().or_else(|| {
            // A bare tag (`latest`) names nothing without a repository.
            annotations.get(ANNOTATION_REF_NAME).filter(|r| r.contains('/') || r.contains('.')).map(|r| crate::normalize_reference(r))
        });
        match name {
            Some(name) => named.push((name, desc)),
            None => tracing::warn!(digest = %desc.digest(), "layout entry has no image name; skipped (use --name)"),
        }
    }
    if named.is_empty() {
        return Err(anyhow!("{}: the layout's index names no image; pass --name", source.path.display()).into());
    }
    Ok(named)
}

struct Copier<'a> {
    content: &'a ContentStore,
    source: &'a Source,
    opts: &'a ImportOptions,
    done: HashMap<String, ()>,
}

impl Copier<'_> {
    /// Copies `desc` and what it references. Metadata of every platform is
    /// copied; configs and layers only for a matching platform.
    fn copy(&mut self, desc: &Descriptor, depth: usize) -> Result<()> {
        if depth > 4 {
            return Err(anyhow!("index nesting deeper than 4 at {}", desc.digest()).into());
        }
        let digest = desc.digest().to_string();
        if self.done.insert(digest.clone(), ()).is_some() {
            return Ok(());
        }
        let mt = desc.media_type().to_string();
        if media_types::is_index(&mt) || media_types::is_manifest(&mt) {
            let data = self.metadata(desc)?;
            if media_types::is_index(&mt) {
                let index: ImageIndex = serde_json::from_slice(&data).with_context(|| format!("index {digest}"))?;
                for child in index.manifests() {
                    let wanted = self.wanted(child);
                    match self.copy(child, depth + 1) {
                        Ok(()) => {}
                        // Layouts often carry only some platforms' blobs.
                        Err(Error::NotFound(what)) if !wanted => tracing::debug!("{what}: absent, not for {}", self.opts.platform),
                        Err(err) => return Err(err),
                    }
                }
            } else {
                let manifest: ImageManifest = serde_json::from_slice(&data).with_context(|| format!("manifest {digest}"))?;
                let config = self.metadata(manifest.config())?;
                if !self.opts.all_platforms && desc.platform().is_none() && !config_matches(&config, &self.opts.platform) {
                    return Ok(());
                }
                if !self.wanted(desc) {
                    return Ok(());
                }
                for layer in manifest.layers() {
                    self.blob(layer)?;
                }
            }
            Ok(())
        } else {
            self.blob(desc)
        }
    }

    fn wanted(&self, desc: &Descriptor) -> bool {
        if self.opts.all_platforms {
            return true;
        }
        match desc.platform() {
            Some(p) => self.opts.platform.matches(&p.os().to_string(), &p.architecture().to_string(), p.variant().as_deref()),
            None => true,
        }
    }

    fn metadata(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        let digest = desc.digest().to_string();
        if desc.size() > MAX_METADATA_SIZE {
            return Err(anyhow!("{} {digest} claims {} bytes, more than {MAX_METADATA_SIZE}", desc.media_type(), desc.size()).into());
        }
        let data = self.source.read_bounded(&blob_path(&digest)?, desc.size())?;
        if data.len() as u64 != desc.size() {
            return Err(Error::SizeMismatch { digest, expected: desc.size(), actual: data.len() as u64 });
        }
        let got = self.content.write_blob(&data)?;
        if got.digest != digest {
            // Stored under its true digest; drop it again unless referenced otherwise.
            let _ = self.content.delete(&got.digest);
            return Err(Error::DigestMismatch { digest, actual: got.digest, size: got.size });
        }
        Ok(data)
    }

    fn blob(&self, desc: &Descriptor) -> Result<()> {
        let digest = desc.digest().to_string();
        if self.content.size(&digest).is_ok_and(|s| s == desc.size()) {
            return Ok(());
        }
        let (mut reader, size) = self.source.open(&blob_path(&digest)?)?;
        if size != desc.size() {
            return Err(Error::SizeMismatch { digest, expected: desc.size(), actual: size });
        }
        self.content.ingest(&mut reader, &digest, Some(desc.size()))?;
        Ok(())
    }
}

fn config_matches(config: &[u8], platform: &Platform) -> bool {
    match serde_json::from_slice::<ImageConfiguration>(config) {
        Ok(c) => platform.matches(&c.os().to_string(), &c.architecture().to_string(), c.variant().as_deref()),
        Err(_) => true, // not an image config (artifact): copy it
    }
}

fn blob_path(digest: &str) -> Result<String> {
    Ok(format!("blobs/sha256/{}", crate::digest_hex(digest)?))
}

fn descriptor(media_type: MediaType, digest: &str, size: u64) -> Result<Descriptor> {
    Ok(oci_spec::image::DescriptorBuilder::default()
        .media_type(media_type)
        .digest(digest.parse::<oci_spec::image::Digest>().map_err(|e| anyhow!("digest {digest}: {e}"))?)
        .size(size)
        .build()
        .map_err(|e| anyhow!("descriptor: {e}"))?)
}

// ---------------------------------------------------------------- docker save

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn import_docker(content: &ContentStore, source: &Source, opts: &ImportOptions) -> Result<Vec<(String, Descriptor)>> {
    let data = source.read_bounded("manifest.json", MAX_METADATA_SIZE)?;
    let entries: Vec<DockerManifestEntry> = serde_json::from_slice(&data)
        .with_context(|| format!("{}: manifest.json is not a docker save manifest", source.path.display()))?;
    if opts.name.is_some() && entries.len() != 1 {
        return Err(anyhow!("{}: --name needs an archive of one image, this one has {}", source.path.display(), entries.len()).into());
    }
    let mut named = Vec::new();
    for entry in &entries {
        let config_data = source.read_bounded(&entry.config, MAX_METADATA_SIZE)?;
        let config: ImageConfiguration = serde_json::from_slice(&config_data)
            .with_context(|| format!("{}: {} is not an image config", source.path.display(), entry.config))?;
        if config.rootfs().diff_ids().len() != entry.layers.len() {
            return Err(anyhow!(
                "{}: {} lists {} layers, its config {} diff ids",
                source.path.display(),
                entry.config,
                entry.layers.len(),
                config.rootfs().diff_ids().len()
            )
            .into());
        }
        let config_blob = content.write_blob(&config_data)?;
        let mut layers = Vec::new();
        for layer in &entry.layers {
            let media_type = {
                let (mut r, _) = source.open(layer)?;
                let mut magic = [0u8; 4];
                let n = read_up_to(&mut r, &mut magic)?;
                layer_media_type(&magic[..n])
            };
            let (mut reader, size) = source.open(layer)?;
            let got = content.ingest_unverified(&mut reader)?;
            if got.size != size {
                return Err(anyhow!("{}: {layer}: read {} of {size} bytes", source.path.display(), got.size).into());
            }
            layers.push(serde_json::json!({ "mediaType": media_type, "digest": got.digest, "size": got.size }));
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_MANIFEST,
            "config": { "mediaType": media_types::OCI_CONFIG, "digest": config_blob.digest, "size": config_blob.size },
            "layers": layers,
        }))
        .context("encoding manifest")?;
        // Checked: what we wrote parses as what we read back later.
        let _: ImageManifest = serde_json::from_slice(&manifest).context("converted manifest")?;
        let manifest_blob = content.write_blob(&manifest)?;
        let mut desc = descriptor(MediaType::ImageManifest, &manifest_blob.digest, manifest_blob.size)?;
        let platform = oci_spec::image::PlatformBuilder::default()
            .os(config.os().clone())
            .architecture(config.architecture().clone())
            .build()
            .map_err(|e| anyhow!("platform: {e}"))?;
        desc.set_platform(Some(platform));

        let names: Vec<String> = match &opts.name {
            Some(name) => vec![name.clone()],
            None => entry.repo_tags.iter().flatten().map(|t| crate::normalize_reference(t)).collect(),
        };
        if names.is_empty() {
            tracing::warn!(config = %entry.config, "docker save entry has no RepoTags; skipped (use --name)");
        }
        for name in names {
            named.push((name, desc.clone()));
        }
    }
    if named.is_empty() {
        return Err(anyhow!("{}: no image in the archive has a name; pass --name", source.path.display()).into());
    }
    Ok(named)
}

fn layer_media_type(magic: &[u8]) -> &'static str {
    if magic.starts_with(&[0x1f, 0x8b]) {
        media_types::OCI_LAYER_GZIP
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        media_types::OCI_LAYER_ZSTD
    } else {
        media_types::OCI_LAYER
    }
}

fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]).context("reading layer")? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

// ---------------------------------------------------------------- sources

/// A directory or a tar, read in place.
struct Source {
    path: PathBuf,
    kind: SourceKind,
}

enum SourceKind {
    Dir(OwnedFd),
    /// Archive path -> (offset of its data, size) or a link to another path.
    Tar(HashMap<String, TarEntry>),
}

enum TarEntry {
    File(u64, u64),
    Link(String),
}

impl Source {
    fn new(path: &Path) -> Result<Source> {
        let meta = std::fs::metadata(path).with_context(|| format!("import {}", path.display()))?;
        let kind = if meta.is_dir() {
            let fd = rustix::fs::open(path, rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())
                .with_context(|| format!("opening {}", path.display()))?;
            SourceKind::Dir(fd)
        } else {
            SourceKind::Tar(tar_index(path)?)
        };
        Ok(Source { path: path.to_path_buf(), kind })
    }

    fn exists(&self, inner: &str) -> bool {
        self.open(inner).is_ok()
    }

    /// The file at `inner` (relative, no `..`) and its size.
    fn open(&self, inner: &str) -> Result<(Box<dyn Read>, u64)> {
        let clean = clean_inner(inner).with_context(|| format!("{}: {inner:?}", self.path.display()))?;
        match &self.kind {
            SourceKind::Dir(fd) => {
                use rustix::fs::{OFlags, ResolveFlags};
                let flags = OFlags::RDONLY | OFlags::CLOEXEC;
                let file = match rustix::fs::openat2(fd, clean.as_str(), flags, rustix::fs::Mode::empty(), ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS) {
                    Ok(f) => f,
                    // No openat2 (old kernel, seccomp): the path is already
                    // lexically confined; refuse a final symlink at least.
                    Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => rustix::fs::openat(fd, clean.as_str(), flags | OFlags::NOFOLLOW, rustix::fs::Mode::empty())
                        .map_err(|e| self.not_found(inner, e))?,
                    Err(e) => return Err(self.not_found(inner, e)),
                };
                let file = File::from(file);
                let meta = file.metadata().with_context(|| format!("{}: stat {inner}", self.path.display()))?;
                if !meta.is_file() {
                    return Err(anyhow!("{}: {inner} is not a regular file", self.path.display()).into());
                }
                Ok((Box::new(file), meta.len()))
            }
            SourceKind::Tar(entries) => {
                let mut name = clean;
                for _ in 0..MAX_LINK_HOPS {
                    match entries.get(&name) {
                        None => return Err(Error::NotFound(format!("{}: {inner}", self.path.display()))),
                        Some(TarEntry::Link(target)) => name = target.clone(),
                        Some(TarEntry::File(offset, size)) => {
                            let mut file = File::open(&self.path).with_context(|| format!("opening {}", self.path.display()))?;
                            file.seek(SeekFrom::Start(*offset))?;
                            return Ok((Box::new(file.take(*size)), *size));
                        }
                    }
                }
                Err(anyhow!("{}: {inner}: too many links", self.path.display()).into())
            }
        }
    }

    fn not_found(&self, inner: &str, err: rustix::io::Errno) -> Error {
        if err == rustix::io::Errno::NOENT {
            Error::NotFound(format!("{}: {inner}", self.path.display()))
        } else {
            Error::Other(anyhow!("{}: opening {inner}: {err}", self.path.display()))
        }
    }

    fn read_bounded(&self, inner: &str, limit: u64) -> Result<Vec<u8>> {
        let (reader, size) = self.open(inner)?;
        if size > limit {
            return Err(anyhow!("{}: {inner} has {size} bytes, more than the {limit} allowed", self.path.display()).into());
        }
        let mut data = Vec::with_capacity(size as usize);
        reader.take(limit).read_to_end(&mut data).with_context(|| format!("{}: reading {inner}", self.path.display()))?;
        Ok(data)
    }
}

/// `./a//b/` -> `a/b`; refuses absolute paths and `..`.
fn clean_inner(inner: &str) -> anyhow::Result<String> {
    let mut parts = Vec::new();
    for part in inner.split('/') {
        match part {
            "" | "." => {}
            ".." => bail!("path leaves the archive"),
            p => parts.push(p),
        }
    }
    if inner.starts_with('/') {
        bail!("absolute path in an archive");
    }
    if parts.is_empty() {
        bail!("empty path");
    }
    Ok(parts.join("/"))
}

/// Joins a symlink's target to the link's directory, lexically; `None` if it leaves the archive.
fn resolve_link(link: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = if target.starts_with('/') { Vec::new() } else { link.split('/').collect() };
    if !target.starts_with('/') {
        parts.pop();
    }
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

fn tar_index(path: &Path) -> Result<HashMap<String, TarEntry>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut entries = HashMap::new();
    for entry in archive.entries().with_context(|| format!("{}: not a tar archive", path.display()))? {
        let entry = entry.with_context(|| format!("{}: reading the tar", path.display()))?;
        let raw = entry.path().with_context(|| format!("{}: entry path", path.display()))?.to_string_lossy().into_owned();
        let Ok(name) = clean_inner(&raw) else { continue };
        let kind = entry.header().entry_type();
        let item = if kind.is_file() {
            TarEntry::File(entry.raw_file_position(), entry.size())
        } else if kind.is_symlink() || kind.is_hard_link() {
            let Some(target) = entry.link_name().ok().flatten() else { continue };
            let target = target.to_string_lossy().into_owned();
            let resolved = if kind.is_hard_link() { clean_inner(&target).ok() } else { resolve_link(&name, &target) };
            match resolved {
                Some(t) => TarEntry::Link(t),
                None => continue,
            }
        } else {
            continue;
        };
        entries.insert(name, item);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_paths_stay_inside() {
        assert_eq!(clean_inner("./blobs//sha256/ab/").unwrap(), "blobs/sha256/ab");
        assert!(clean_inner("../x").is_err());
        assert!(clean_inner("a/../../x").is_err());
        assert!(clean_inner("/etc/passwd").is_err());
        assert_eq!(resolve_link("a/b/layer.tar", "../c/layer.tar").as_deref(), Some("a/c/layer.tar"));
        assert_eq!(resolve_link("a/layer.tar", "../../x"), None);
    }
}
