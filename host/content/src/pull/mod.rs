//! Registry pull: an ordered list of [`PullSource`]s (mirrors first, the
//! registry last), tried in order for every request; index -> platform
//! manifest -> config -> layers, each verified against its digest before it
//! enters the [`ContentStore`]; layers downloaded concurrently; partial blobs
//! kept under `<root>/content/ingest/` and resumed with a `Range` request.
//!
//! A source is left for the next one on connection errors, 5xx, 404 and
//! content that does not match its digest; an auth refusal stops the pull.
//! Tags are resolved only through sources with the `resolve` capability,
//! digests fetched only from sources with `pull`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use sha2::Digest as _;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::{ContentStore, MAX_METADATA_SIZE, digest_hex, media_types};

pub mod auth;
pub mod client;
pub mod progress;
pub mod source;

pub use auth::{Credential, Credentials};
pub use client::FetchError;
pub use progress::ProgressMode;
pub use oci_spec::distribution::Reference;
pub use source::{Capabilities, PullSource, Scheme};

use client::SourceClient;
use progress::Progress;

/// The platform to pick from an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPlatform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl TargetPlatform {
    /// The machine berth runs on.
    pub fn host() -> TargetPlatform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "arm" => "arm",
            other => other,
        };
        TargetPlatform { os: "linux".into(), architecture: architecture.into(), variant: None }
    }
}

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    pub platform: TargetPlatform,
    /// Layers downloaded at once (at least 1).
    pub max_concurrent_downloads: usize,
    pub progress: ProgressMode,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions { platform: TargetPlatform::host(), max_concurrent_downloads: 3, progress: ProgressMode::Auto }
    }
}

/// What a pull stored.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The normalised reference (`registry/repository:tag` or `@digest`).
    pub name: String,
    /// What the reference points at (an index or a manifest): the image store's target.
    pub target: Descriptor,
    /// The platform's manifest (the same as `target` when no index).
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// Which source served each blob (digest -> source URL): for logs and tests.
    pub served_by: BTreeMap<String, String>,
    /// Bytes received over the network (resumed bytes not counted).
    pub downloaded: u64,
}

/// Errors a caller branches on.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{reference}: no source to try (none has the {capability} capability)")]
    NoSource { reference: String, capability: &'static str },
    #[error("{what}: every source failed:\n{}", .failures.iter().map(|f| format!("  {f}")).collect::<Vec<_>>().join("\n"))]
    AllSourcesFailed { what: String, failures: Vec<String>, not_found: bool, digest_mismatch: bool },
    #[error("{what}: {error}")]
    Stopped { what: String, error: FetchError },
}

/// Pulls images into a [`ContentStore`].
pub struct Puller {
    store: Arc<ContentStore>,
    ingest_dir: PathBuf,
    credentials: Credentials,
}

struct Session {
    reference: Reference,
    repository: String,
    clients: Vec<Arc<SourceClient>>,
    ingest_dir: PathBuf,
    store: Arc<ContentStore>,
}

impl Puller {
    pub fn new(store: Arc<ContentStore>, credentials: Credentials) -> anyhow::Result<Puller> {
        let ingest_dir = store.root().join("ingest");
        std::fs::create_dir_all(&ingest_dir)
            .with_context(|| format!("cannot create ingest dir {}", ingest_dir.display()))?;
        Ok(Puller { store, ingest_dir, credentials })
    }

    /// Where a partial download of `digest` is kept.
    pub fn partial_path(&self, digest: &str) -> anyhow::Result<PathBuf> {
        partial_path(&self.ingest_dir, digest)
    }

    /// Pulls `reference` from `sources` (tried in order). An empty list
    /// means the registry itself over https.
    pub async fn pull(
        &self,
        reference: &str,
        sources: &[PullSource],
        options: &PullOptions,
    ) -> anyhow::Result<PulledImage> {
        let parsed: Reference =
            reference.parse().with_context(|| format!("invalid image reference {reference:?}"))?;
        let sources =
            if sources.is_empty() { vec![PullSource::registry(&parsed)] } else { sources.to_vec() };
        let mut clients = Vec::new();
        for source in sources {
            // Flag credentials are stored for the image's registry, file
            // credentials by host: a mirror gets only its own.
            let cred = self.credentials.get(&source.host).cloned().or_else(|| {
                if source.host == source::api_host(parsed.registry()) {
                    self.credentials.get(parsed.registry()).cloned()
                } else {
                    None
                }
            });
            clients.push(Arc::new(SourceClient::new(source, cred)?));
        }
        let session = Arc::new(Session {
            repository: parsed.repository().to_string(),
            reference: parsed,
            clients,
            ingest_dir: self.ingest_dir.clone(),
            store: self.store.clone(),
        });
        let progress = Arc::new(Progress::new(options.progress));
        session.run(options, progress).await
    }
}

impl Session {
    fn name(&self) -> String {
        self.reference.whole()
    }

    fn clients_for(&self, resolve: bool) -> Result<Vec<Arc<SourceClient>>, PullError> {
        let v: Vec<_> = self
            .clients
            .iter()
            .filter(|c| if resolve { c.source.capabilities.resolve } else { c.source.capabilities.pull })
            .cloned()
            .collect();
        if v.is_empty() {
            return Err(PullError::NoSource {
                reference: self.name(),
                capability: if resolve { "resolve" } else { "pull" },
            });
        }
        Ok(v)
    }

    async fn run(self: Arc<Self>, options: &PullOptions, progress: Arc<Progress>) -> anyhow::Result<PulledImage> {
        let mut served_by = BTreeMap::new();
        let mut downloaded = 0u64;

        // 1. What the reference points at.
        let (body, media_type, digest, from) = match self.reference.digest() {
            Some(d) => {
                let d = d.to_string();
                digest_hex(&d)?;
                let (body, mt, from) = self.fetch_manifest(&d, Some(&d)).await?;
                (body, mt, d, from)
            }
            None => {
                let tag = self.reference.tag().unwrap_or("latest").to_string();
                let (body, mt, from) = self.fetch_manifest(&tag, None).await?;
                let d = crate::sha256_digest(&body);
                (body, mt, d, from)
            }
        };
        progress.note(&format!("{}: resolved to {digest} ({media_type}) from {from}", self.name()));
        served_by.insert(digest.clone(), from);
        downloaded += body.len() as u64;
        let target = descriptor(&media_type, body.len() as u64, &digest)?;
        self.store_bytes(&body, &digest)?;

        // 2. The platform's manifest.
        let (manifest_desc, manifest_body) = if media_types::is_index(&media_type) {
            let index: ImageIndex = serde_json::from_slice(&body).with_context(|| format!("index {digest}"))?;
            let chosen = select_platform(&index, &options.platform)
                .with_context(|| format!("{}: index {digest}", self.name()))?;
            let d = chosen.digest().to_string();
            if chosen.size() > MAX_METADATA_SIZE {
                bail!("manifest {d}: {} bytes is more than the {MAX_METADATA_SIZE} allowed", chosen.size());
            }
            let (mbody, mt, from) = self.fetch_manifest(&d, Some(&d)).await?;
            if mbody.len() as u64 != chosen.size() {
                bail!("manifest {d}: {} bytes, the index says {}", mbody.len(), chosen.size());
            }
            progress.note(&format!("{}: platform manifest {d} from {from}", self.name()));
            served_by.insert(d.clone(), from);
            downloaded += mbody.len() as u64;
            self.store_bytes(&mbody, &d)?;
            (descriptor(&mt, mbody.len() as u64, &d)?, mbody)
        } else if media_types::is_manifest(&media_type) {
            (target.clone(), body)
        } else {
            bail!("{}: {digest} has media type {media_type:?}, neither an index nor a manifest", self.name());
        };
        let manifest: ImageManifest = serde_json::from_slice(&manifest_body)
            .with_context(|| format!("manifest {}", manifest_desc.digest()))?;

        // 3. Config, then layers, concurrently.
        let config = manifest.config().clone();
        if config.size() > MAX_METADATA_SIZE {
            bail!("config {}: {} bytes is more than the {MAX_METADATA_SIZE} allowed", config.digest(), config.size());
        }
        let mut blobs = vec![("config", config.clone())];
        blobs.extend(manifest.layers().iter().map(|l| ("layer", l.clone())));
        let semaphore = Arc::new(tokio::sync::Semaphore::new(options.max_concurrent_downloads.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, (kind, desc)) in blobs.into_iter().enumerate() {
            let session = self.clone();
            let semaphore = semaphore.clone();
            let progress = progress.clone();
            tasks.spawn(async move {
                let _permit = semaphore.acquire_owned().await.expect("semaphore is never closed");
                let r = session.fetch_blob(kind, &desc, &progress).await;
                (i, desc, r)
            });
        }
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            let (_, desc, result) = match joined {
                Ok(r) => r,
                Err(e) if e.is_cancelled() => continue,
                Err(e) => return Err(anyhow!("download task panicked: {e}")),
            };
            match result {
                Ok(Some((from, n))) => {
                    served_by.insert(desc.digest().to_string(), from);
                    downloaded += n;
                }
                Ok(None) => {}
                Err(e) => {
                    if first_error.is_none() {
                        first_error = Some(e);
                        // The others stop at their next await; partial files stay for a resume.
                        tasks.abort_all();
                    }
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        Ok(PulledImage {
            name: self.name(),
            target,
            manifest: manifest_desc,
            config,
            layers: manifest.layers().clone(),
            served_by,
            downloaded,
        })
    }

    /// A manifest by tag (resolve-capable sources) or digest (pull-capable,
    /// verified). Returns the body, its media type and the source's URL.
    async fn fetch_manifest(&self, reference: &str, digest: Option<&str>) -> anyhow::Result<(Vec<u8>, String, String)> {
        let what = format!("{}: manifest {reference}", self.reference.whole());
        let mut failures = Vec::new();
        let mut not_found = true;
        let mut digest_mismatch = false;
        for client in self.clients_for(digest.is_none())? {
            let result = async {
                let (body, content_type) = client.manifest(&self.repository, reference, MAX_METADATA_SIZE).await?;
                let actual = crate::sha256_digest(&body);
                if let Some(expected) = digest
                    && actual != expected
                {
                    return Err(FetchError::Digest {
                        url: client.url(&self.repository, &format!("manifests/{reference}")),
                        expected: expected.to_string(),
                        actual,
                    });
                }
                let mt = media_type_of(&body, content_type.as_deref()).map_err(|msg| FetchError::Invalid {
                    url: client.url(&self.repository, &format!("manifests/{reference}")),
                    msg,
                })?;
                Ok((body, mt))
            }
            .await;
            match result {
                Ok((body, mt)) => return Ok((body, mt, client.source.to_string())),
                Err(e) if e.falls_back() => {
                    tracing::info!("{what}: {e}; trying the next source");
                    not_found &= e.is_not_found();
                    digest_mismatch |= matches!(e, FetchError::Digest { .. });
                    failures.push(error_chain(&e));
                }
                Err(error) => return Err(PullError::Stopped { what, error }.into()),
            }
        }
        Err(PullError::AllSourcesFailed { what, failures, not_found, digest_mismatch }.into())
    }

    fn store_bytes(&self, body: &[u8], digest: &str) -> anyhow::Result<()> {
        self.store
            .ingest(&mut &body[..], digest, Some(body.len() as u64))
            .with_context(|| format!("cannot store {digest}"))?;
        Ok(())
    }

    /// Downloads one blob through the sources in order into its partial
    /// file, verifies it, and stores it. `None` when already stored.
    async fn fetch_blob(
        &self,
        kind: &str,
        desc: &Descriptor,
        progress: &Progress,
    ) -> anyhow::Result<Option<(String, u64)>> {
        let digest = desc.digest().to_string();
        digest_hex(&digest)?;
        if self.store.contains(&digest) {
            return Ok(None);
        }
        let what = format!("{}: {kind} {digest}", self.reference.whole());
        let partial = partial_path(&self.ingest_dir, &digest)?;
        let _lock = lock_partial(&partial).await?;
        if self.store.contains(&digest) {
            // Another pull finished it while this one waited for the lock.
            return Ok(None);
        }
        let mut failures = Vec::new();
        let mut not_found = true;
        let mut digest_mismatch = false;
        for client in self.clients_for(false)? {
            let resumed = std::fs::metadata(&partial).map(|m| m.len() > 0).unwrap_or(false);
            let mut result = self.download(&client, kind, desc, &partial, progress).await;
            if resumed && matches!(result, Err(FetchError::Digest { .. })) {
                // The bytes kept from an earlier attempt were bad (and are
                // now deleted): once more from the start on this source.
                tracing::info!("{what}: resumed content did not verify; downloading it whole");
                result = self.download(&client, kind, desc, &partial, progress).await;
            }
            match result {
                Ok(n) => {
                    let store = self.store.clone();
                    let (p, d, size) = (partial.clone(), digest.clone(), desc.size());
                    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                        let mut f = std::fs::File::open(&p).with_context(|| format!("cannot open {}", p.display()))?;
                        store.ingest(&mut f, &d, Some(size)).with_context(|| format!("cannot store {d}"))?;
                        std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
                        Ok(())
                    })
                    .await
                    .context("store task panicked")??;
                    return Ok(Some((client.source.to_string(), n)));
                }
                Err(e) if e.falls_back() => {
                    tracing::info!("{what}: {e}; trying the next source");
                    not_found &= e.is_not_found();
                    digest_mismatch |= matches!(e, FetchError::Digest { .. });
                    failures.push(error_chain(&e));
                }
                Err(error) => return Err(PullError::Stopped { what, error }.into()),
            }
        }
        Err(PullError::AllSourcesFailed { what, failures, not_found, digest_mismatch }.into())
    }

    /// One source's attempt: resume from the partial file's length, append,
    /// hash, check size and digest. A mismatch deletes the partial file; a
    /// cut connection keeps it for the next attempt.
    async fn download(
        &self,
        client: &SourceClient,
        kind: &str,
        desc: &Descriptor,
        partial: &Path,
        progress: &Progress,
    ) -> Result<u64, FetchError> {
        let digest = desc.digest().to_string();
        let size = desc.size();
        let url = client.url(&self.repository, &format!("blobs/{digest}"));
        let local = |e: std::io::Error, what: &str| FetchError::Local(anyhow!("{}: {what}: {e}", partial.display()));
        let mut file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(partial)
            .await
            .map_err(|e| local(e, "open"))?;
        let mut have = file.metadata().await.map_err(|e| local(e, "stat"))?.len();
        if have > size {
            file.set_len(0).await.map_err(|e| local(e, "truncate"))?;
            have = 0;
        }
        // Hash what an earlier attempt left.
        let mut hasher = sha2::Sha256::new();
        if have > 0 {
            let mut buf = vec![0u8; 1 << 16];
            let mut left = have;
            while left > 0 {
                let n = file.read(&mut buf[..(left.min(1 << 16) as usize)]).await.map_err(|e| local(e, "read"))?;
                if n == 0 {
                    return Err(local(std::io::ErrorKind::UnexpectedEof.into(), "read"));
                }
                hasher.update(&buf[..n]);
                left -= n as u64;
            }
        }
        let mut received = 0u64;
        let first = if have < size || size == 0 { Some(client.blob(&self.repository, &digest, have).await?) } else { None };
        // Shown once the source answered: a source that is down prints nothing.
        let bar = progress.blob(kind, &digest, size, have);
        if let Some(mut resp) = first {
            match resp.status().as_u16() {
                206 if have > 0 && content_range_start(&resp) == Some(have) => {}
                416 | 206 | 200 => {
                    // Whole blob from the start: the range was refused or ignored.
                    if have > 0 {
                        tracing::debug!("{url}: range from {have} not honoured; restarting");
                        file.set_len(0).await.map_err(|e| local(e, "truncate"))?;
                        hasher = sha2::Sha256::new();
                        have = 0;
                        bar.restart();
                    }
                    if resp.status().as_u16() != 200 {
                        resp = client.blob(&self.repository, &digest, 0).await?;
                        if resp.status().as_u16() != 200 {
                            return Err(FetchError::Status {
                                url,
                                status: resp.status().as_u16(),
                                body: String::new(),
                            });
                        }
                    }
                }
                s => return Err(FetchError::Status { url, status: s, body: String::new() }),
            }
            file.seek(std::io::SeekFrom::Start(have)).await.map_err(|e| local(e, "seek"))?;
            loop {
                let chunk = match resp.chunk().await {
                    Ok(Some(c)) => c,
                    Ok(None) => break,
                    Err(source) => {
                        let _ = file.flush().await;
                        bar.failed("connection lost");
                        return Err(FetchError::Connect { url, source });
                    }
                };
                if have + received + chunk.len() as u64 > size {
                    drop(file);
                    let _ = tokio::fs::remove_file(partial).await;
                    bar.failed("larger than its descriptor");
                    return Err(FetchError::Digest {
                        url,
                        expected: digest,
                        actual: format!("more than {size} bytes"),
                    });
                }
                file.write_all(&chunk).await.map_err(|e| local(e, "write"))?;
                hasher.update(&chunk);
                received += chunk.len() as u64;
                bar.inc(chunk.len() as u64);
            }
            file.flush().await.map_err(|e| local(e, "flush"))?;
            file.sync_data().await.map_err(|e| local(e, "fsync"))?;
        }
        let total = have + received;
        if total < size {
            bar.failed("connection closed early");
            return Err(FetchError::Status {
                url,
                status: 502,
                body: format!("body ended after {total} of {size} bytes"),
            });
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest {
            drop(file);
            let _ = tokio::fs::remove_file(partial).await;
            bar.failed("digest mismatch");
            return Err(FetchError::Digest { url, expected: digest, actual });
        }
        bar.done(&client.source.to_string());
        Ok(received)
    }
}

/// An error and its causes on one line (reqwest's own message omits the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = c.source();
    }
    out
}

fn partial_path(ingest_dir: &Path, digest: &str) -> anyhow::Result<PathBuf> {
    Ok(ingest_dir.join(format!("{}.partial", digest_hex(digest)?)))
}

/// An exclusive flock on `<partial>.lock`: two pulls never write one partial file.
async fn lock_partial(partial: &Path) -> anyhow::Result<std::fs::File> {
    let lock_path = partial.with_extension("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(file),
            Err(rustix::io::Errno::WOULDBLOCK) | Err(rustix::io::Errno::INTR) => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            Err(e) => return Err(anyhow!("cannot lock {}: {e}", lock_path.display())),
        }
    }
}

fn content_range_start(resp: &reqwest::Response) -> Option<u64> {
    let v = resp.headers().get(reqwest::header::CONTENT_RANGE)?.to_str().ok()?;
    let range = v.strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

/// The media type: the body's `mediaType`, else the Content-Type, else the shape.
fn media_type_of(body: &[u8], content_type: Option<&str>) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    let p: Probe = serde_json::from_slice(body).map_err(|e| format!("manifest is not JSON: {e}"))?;
    if let Some(mt) = p.media_type.filter(|m| !m.is_empty()) {
        return Ok(mt);
    }
    if let Some(ct) = content_type.filter(|c| media_types::is_index(c) || media_types::is_manifest(c)) {
        return Ok(ct.to_string());
    }
    match (p.manifests.is_some(), p.layers.is_some()) {
        (true, false) => Ok(media_types::OCI_INDEX.into()),
        (false, true) => Ok(media_types::OCI_MANIFEST.into()),
        _ => Err("cannot tell an index from a manifest".into()),
    }
}

fn descriptor(media_type: &str, size: u64, digest: &str) -> anyhow::Result<Descriptor> {
    let d: oci_spec::image::Digest = digest.parse().with_context(|| format!("invalid digest {digest}"))?;
    Ok(Descriptor::new(MediaType::from(media_type), size, d))
}

/// The index entry for `want`: os and architecture must match; a wanted
/// variant must match; without one, an entry with no variant is preferred.
fn select_platform<'a>(index: &'a ImageIndex, want: &TargetPlatform) -> anyhow::Result<&'a Descriptor> {
    let mut best: Option<(&Descriptor, u8)> = None;
    for m in index.manifests() {
        let Some(p) = m.platform() else { continue };
        if p.os().to_string() != want.os || p.architecture().to_string() != want.architecture {
            continue;
        }
        let score = match (&want.variant, p.variant()) {
            (Some(w), Some(v)) if w == v => 2,
            (Some(_), _) => continue,
            (None, None) => 2,
            (None, Some(_)) => 1,
        };
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((m, score));
        }
    }
    match best {
        Some((m, _)) => Ok(m),
        None => {
            let have: Vec<String> = index
                .manifests()
                .iter()
                .filter_map(|m| m.platform().as_ref())
                .map(|p| format!("{}/{}", p.os(), p.architecture()))
                .collect();
            bail!(
                "no manifest for {}/{}{} (the index has: {})",
                want.os,
                want.architecture,
                want.variant.as_deref().map(|v| format!("/{v}")).unwrap_or_default(),
                have.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::progress::short;
    use super::*;

    #[test]
    fn platform_selection() {
        let index: ImageIndex = serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_INDEX,
            "manifests": [
                {"mediaType": media_types::OCI_MANIFEST, "size": 1, "digest": format!("sha256:{}", "1".repeat(64)),
                 "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
                {"mediaType": media_types::OCI_MANIFEST, "size": 1, "digest": format!("sha256:{}", "2".repeat(64)),
                 "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": media_types::OCI_MANIFEST, "size": 1, "digest": format!("sha256:{}", "3".repeat(64)),
                 "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            ]
        }))
        .unwrap();
        let t = |a: &str, v: Option<&str>| TargetPlatform {
            os: "linux".into(),
            architecture: a.into(),
            variant: v.map(Into::into),
        };
        assert!(select_platform(&index, &t("amd64", None)).unwrap().digest().to_string().contains("2222"));
        assert!(select_platform(&index, &t("arm64", None)).unwrap().digest().to_string().contains("3333"));
        assert!(select_platform(&index, &t("arm", Some("v7"))).unwrap().digest().to_string().contains("1111"));
        let e = select_platform(&index, &t("s390x", None)).unwrap_err().to_string();
        assert!(e.contains("linux/amd64"), "{e}");
    }

    #[test]
    fn media_types_are_told_apart() {
        assert_eq!(media_type_of(br#"{"manifests":[]}"#, None).unwrap(), media_types::OCI_INDEX);
        assert_eq!(
            media_type_of(br#"{"layers":[]}"#, Some(media_types::DOCKER_MANIFEST)).unwrap(),
            media_types::DOCKER_MANIFEST
        );
        assert_eq!(
            media_type_of(br#"{"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json"}"#, None)
                .unwrap(),
            media_types::DOCKER_MANIFEST_LIST
        );
        assert!(media_type_of(b"nope", None).is_err());
    }

    #[test]
    fn short_digest() {
        assert_eq!(short(&format!("sha256:{}", "ab".repeat(32))), "sha256:abababababab");
    }
}
