//! `berth image pull REF`: sources from the source-resolver plugins (the
//! registry itself over https when none is configured), credentials from the
//! host (auth file or flags; plugins never see them), blobs into the content
//! store, the image record last, then automatic GC by `[worker.gc]`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use berth_content::pull::{
    Capabilities, Credential, Credentials, ProgressMode, PullOptions, PullSource, Puller, Scheme, TargetPlatform,
};
use berth_content::{ContentStore, ImageStore};
use berth_plugin::{ImageReference, LoadedPlugin, Operation, ResolveRequest, SourceLocation};

use super::GlobalArgs;
use crate::config::worker::{Platform, WorkerFlags};

#[derive(Debug, Clone, clap::Args)]
pub struct PullArgs {
    /// Image reference (`busybox`, `registry:5000/app:v1`, `app@sha256:...`).
    pub reference: String,
    /// docker config.json with registry credentials (default ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
    /// User for the image's registry (not sent to mirrors).
    #[arg(long, requires = "password")]
    pub username: Option<String>,
    /// Password for --username.
    #[arg(long, env = "BERTH_REGISTRY_PASSWORD", hide_env_values = true, requires = "username")]
    pub password: Option<String>,
    /// Platform to pull from an index (default: the first of worker.platforms, else the host's).
    #[arg(long, value_name = "os/arch[/variant]")]
    pub platform: Option<Platform>,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub plugins: super::plugin::PluginFlags,
    #[command(flatten)]
    pub worker: WorkerFlags,
}

pub fn run(global: &GlobalArgs, args: &PullArgs) -> anyhow::Result<ExitCode> {
    let mut settings = crate::container::Settings::load(global, &args.plugins)?;
    settings.config.worker.apply_flags(&args.worker);
    let root = settings.root.clone();
    let reference: berth_content::pull::Reference =
        args.reference.parse().with_context(|| format!("invalid image reference {:?}", args.reference))?;

    let resolvers = settings.plugins.resolvers()?;
    let resolvers: Vec<&LoadedPlugin> = resolvers.iter().map(|(_, l)| l).collect();
    let sources = sources_from_plugins(&resolvers, &reference, &[])?;

    let mut credentials = match &args.auth_file {
        Some(path) => Credentials::from_auth_file(path)?,
        None => match Credentials::default_auth_file() {
            Some(path) => Credentials::from_auth_file(&path)?,
            None => Credentials::default(),
        },
    };
    if let (Some(u), Some(p)) = (&args.username, &args.password) {
        credentials.insert(reference.registry(), Credential { username: u.clone(), password: p.clone() });
    }
    let platform = args.platform.clone().or_else(|| settings.config.worker.platforms.first().cloned());
    let options = PullOptions {
        platform: platform
            .map(|p| TargetPlatform { os: p.os, architecture: p.architecture, variant: p.variant })
            .unwrap_or_else(TargetPlatform::host),
        max_concurrent_downloads: settings.config.worker.max_parallelism.unwrap_or(3),
        progress: if args.quiet { ProgressMode::Quiet } else { ProgressMode::Auto },
    };

    let pulled = {
        // Blobs stored but not yet named by an image record are kept from GC by this.
        let _writing = berth_gc::GcLock::shared(&root)?;
        let store = Arc::new(ContentStore::open(&root)?);
        let puller = Puller::new(store.clone(), credentials)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let pulled = runtime.block_on(puller.pull(&args.reference, &sources, &options))?;
        let name = berth_content::normalize_reference(&args.reference);
        ImageStore::open(&store)
            .put(&name, pulled.target.clone(), Default::default())
            .with_context(|| format!("cannot record image {name}"))?;
        pulled
    };
    println!("{} {}", pulled.name, pulled.target.digest());
    if let Some(report) = super::gc::auto(&root, &settings.config)?
        && !report.removed.is_empty()
    {
        eprintln!("gc: removed {} items, {} bytes", report.removed.len(), report.freed());
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks the resolvers in order; the first that returns sources decides. A
/// `reference` source is resolved again through the chain (what the
/// stargz-labels plugin returns: "the same hosts as the image"); a local OCI
/// layout is not a registry and is refused for pulls. No resolver: the
/// registry itself over https.
pub fn sources_from_plugins(
    resolvers: &[&LoadedPlugin],
    reference: &berth_content::pull::Reference,
    labels: &[(String, String)],
) -> anyhow::Result<Vec<PullSource>> {
    let request = ResolveRequest {
        reference: ImageReference {
            registry: reference.registry().to_string(),
            repository: reference.repository().to_string(),
            tag: reference.tag().map(str::to_string),
            digest: reference.digest().map(str::to_string),
        },
        labels: labels.to_vec(),
        operation: Operation::Pull,
    };
    resolve_request(resolvers, &request, 0)
}

fn resolve_request(resolvers: &[&LoadedPlugin], request: &ResolveRequest, depth: usize) -> anyhow::Result<Vec<PullSource>> {
    if depth > 4 {
        bail!("{}: source resolvers refer to each other more than 4 deep", request.reference);
    }
    if resolvers.is_empty() {
        let r: berth_content::pull::Reference = request.reference.to_string().parse()?;
        return Ok(vec![PullSource::registry(&r)]);
    }
    for plugin in resolvers {
        let sources = plugin.resolve(request).with_context(|| format!("resolving {}", request.reference))?;
        if sources.is_empty() {
            continue;
        }
        let mut out = Vec::new();
        for source in sources {
            match source.location {
                SourceLocation::Registry(h) => {
                    let scheme: Scheme = h.scheme.parse().map_err(anyhow::Error::msg).with_context(|| {
                        format!("plugin {} returned a bad source for {}", plugin.name(), request.reference)
                    })?;
                    let s = PullSource {
                        host: h.host,
                        scheme,
                        path_prefix: if h.path_prefix.is_empty() { "/v2".into() } else { h.path_prefix },
                        capabilities: Capabilities {
                            pull: h.capabilities.pull,
                            resolve: h.capabilities.resolve,
                            push: h.capabilities.push,
                        },
                        skip_verify: h.skip_verify,
                        headers: h.headers,
                    };
                    s.validate()
                        .map_err(anyhow::Error::msg)
                        .with_context(|| format!("plugin {} returned a bad source", plugin.name()))?;
                    out.push(s);
                }
                SourceLocation::Reference(r) => {
                    let again = ResolveRequest { reference: r, labels: vec![], operation: request.operation };
                    out.extend(resolve_request(resolvers, &again, depth + 1)?);
                }
                SourceLocation::OciLayout(path) => {
                    bail!("plugin {} points {} at the OCI layout {path}: use berth image import", plugin.name(), request.reference)
                }
            }
        }
        return Ok(out);
    }
    let r: berth_content::pull::Reference = request.reference.to_string().parse()?;
    Ok(vec![PullSource::registry(&r)])
}
