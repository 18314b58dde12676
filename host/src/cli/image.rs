//! `berth image import|ls|inspect|rm|unpack`: berth's image store.
//!
//! Import stores the archive's blobs under `<root>/content` and, unless
//! `--no-unpack`, unpacks the image for `--platform` into committed
//! snapshots of `--snapshotter` (under `<root>/snapshots/<name>`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use berth_content::{ContentStore, ImageRecord, ImageStore, ImportOptions, Platform};

use super::GlobalArgs;

#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Import an OCI image layout (directory or tar) or a `docker save` archive.
    Import(ImportArgs),
    /// List images.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Print an image's record, manifest and config (JSON).
    Inspect(InspectArgs),
    /// Remove images from the store (their blobs go at the next `berth gc`).
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Unpack an image into a directory (`--dest`) or a snapshotter's snapshots.
    Unpack(UnpackArgs),
    /// Pull an image from a registry (sources from the source-resolver plugins).
    Pull(Box<super::pull::PullArgs>),
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// OCI layout directory or tar, or docker-save tar.
    pub path: PathBuf,
    /// Name to store the image under (needed when the archive names none).
    #[arg(long)]
    pub name: Option<String>,
    /// Platform whose layers are imported and unpacked (default: this host's).
    #[arg(long, value_name = "os/arch[/variant]")]
    pub platform: Option<Platform>,
    /// Import the layers of every platform.
    #[arg(long)]
    pub all_platforms: bool,
    /// Snapshotter to unpack into.
    #[arg(long, default_value = "overlayfs")]
    pub snapshotter: String,
    /// Store only; do not unpack into snapshots.
    #[arg(long)]
    pub no_unpack: bool,
}

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Names only.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    pub name: String,
    #[arg(long, value_name = "os/arch[/variant]")]
    pub platform: Option<Platform>,
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct UnpackArgs {
    pub name: String,
    /// Apply every layer into this directory (created; must be empty), whiteouts applied.
    #[arg(long, conflicts_with = "snapshotter")]
    pub dest: Option<PathBuf>,
    /// Unpack into this snapshotter's committed snapshots (default overlayfs).
    #[arg(long)]
    pub snapshotter: Option<String>,
    #[arg(long, value_name = "os/arch[/variant]")]
    pub platform: Option<Platform>,
}

pub fn run(global: &GlobalArgs, command: ImageCommand) -> anyhow::Result<ExitCode> {
    // Pull reads berth.toml (plugins, [worker]) itself.
    if let ImageCommand::Pull(args) = command {
        return super::pull::run(global, &args);
    }
    let root = global.root.clone().unwrap_or_else(|| PathBuf::from("/var/lib/berth"));
    let content = ContentStore::open(&root).with_context(|| format!("content store under {}", root.display()))?;
    let images = ImageStore::open(&content);
    match command {
        ImageCommand::Import(args) => import(global, &root, &content, &images, args),
        ImageCommand::Pull(_) => unreachable!("handled above"),
        ImageCommand::Ls(args) => ls(&content, &images, args),
        ImageCommand::Inspect(args) => inspect(&content, &images, args),
        ImageCommand::Rm(args) => {
            let mut failed = false;
            for name in &args.names {
                match find(&images, name).and_then(|r| Ok(images.remove(&r.name)?)) {
                    Ok(record) => println!("{}", record.name),
                    Err(err) => {
                        eprintln!("berth: {err:#}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        ImageCommand::Unpack(args) => unpack(global, &root, &content, &images, args),
    }
}

/// The record named `name`, also under its normalised reference
/// (`busybox` -> `docker.io/library/busybox:latest`).
fn find(images: &ImageStore, name: &str) -> anyhow::Result<ImageRecord> {
    match images.find(name) {
        Err(berth_content::Error::NotFound(_)) => Err(anyhow::anyhow!("image {name}: not found (berth image ls lists them)")),
        other => Ok(other?),
    }
}

fn import(global: &GlobalArgs, root: &Path, content: &ContentStore, images: &ImageStore, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let platform = args.platform.unwrap_or_default();
    let opts = ImportOptions { name: args.name.clone(), platform: platform.clone(), all_platforms: args.all_platforms };
    let records = berth_content::import(content, images, &args.path, &opts)
        .with_context(|| format!("importing {}", args.path.display()))?;
    let snapshotter = if args.no_unpack { None } else { Some(open_snapshotter(global, root, &args.snapshotter)?) };
    for record in &records {
        let mut line = format!("{}\t{}", record.name, record.target.digest());
        if let Some(sn) = &snapshotter {
            let image = berth_content::resolve_image(content, &record.target, &platform)
                .with_context(|| format!("image {} for {platform}", record.name))?;
            let chain = berth_unpack::unpack_image(content, &image, sn.as_ref(), &berth_unpack::UnpackOptions::default())
                .with_context(|| format!("unpacking {} into {}", record.name, sn.name()))?;
            line.push_str(&format!("\tunpacked ({}): {chain}", sn.name()));
        }
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The snapshotter `name` under `<root>/snapshots/<name>`; or, when
/// berth.toml sets `[worker] proxy-snapshotter-socket`, that proxy (under the
/// name `[worker] snapshotter` gives, else `name`), as `berth run` uses it.
fn open_snapshotter(global: &GlobalArgs, root: &Path, name: &str) -> anyhow::Result<std::sync::Arc<dyn berth_snapshot::Snapshotter>> {
    let (config, _) = crate::config::Config::load(global.config.as_deref())?;
    if let Some(socket) = &config.worker.proxy_snapshotter_socket {
        let name = match &config.worker.snapshotter {
            crate::config::worker::SnapshotterChoice::Named(configured) => configured.as_str(),
            crate::config::worker::SnapshotterChoice::Auto => name,
        };
        return crate::container::native::open_proxy_snapshotter(&config.worker, socket, name);
    }
    let dir = root.join("snapshots").join(name);
    berth_snapshot::open(name, &dir).with_context(|| format!("snapshotter {name} at {}", dir.display()))
}

fn ls(content: &ContentStore, images: &ImageStore, args: LsArgs) -> anyhow::Result<ExitCode> {
    let records = images.list()?;
    if args.quiet {
        records.iter().for_each(|r| println!("{}", r.name));
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<50} {:<9} {:<20} {:>10}  CREATED", "NAME", "TYPE", "DIGEST", "SIZE");
    for r in records {
        let kind = if berth_content::media_types::is_index(r.target.media_type().as_ref()) { "index" } else { "manifest" };
        // Size for this host's platform: config + layers, as stored.
        let size = berth_content::resolve_image(content, &r.target, &Platform::host())
            .map(|i| human(i.manifest.layers().iter().map(|l| l.size()).sum::<u64>() + i.manifest.config().size()))
            .unwrap_or_else(|_| "-".into());
        let digest = r.target.digest().to_string();
        println!("{:<50} {:<9} {:<20} {:>10}  {}", r.name, kind, &digest[..digest.len().min(19)], size, date(r.created));
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(content: &ContentStore, images: &ImageStore, args: InspectArgs) -> anyhow::Result<ExitCode> {
    let record = find(images, &args.name)?;
    let platform = args.platform.unwrap_or_default();
    let mut out = serde_json::json!({ "image": record });
    match berth_content::resolve_image(content, &record.target, &platform) {
        Ok(image) => {
            out["platform"] = serde_json::json!(platform.to_string());
            out["manifestDescriptor"] = serde_json::to_value(&image.manifest_desc)?;
            out["manifest"] = serde_json::to_value(&image.manifest)?;
            out["config"] = serde_json::to_value(&image.config)?;
            out["chainIDs"] = serde_json::json!(berth_unpack::chain_ids(image.diff_ids()));
        }
        Err(err) => out["error"] = serde_json::json!(format!("{err:#}")),
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

fn unpack(global: &GlobalArgs, root: &Path, content: &ContentStore, images: &ImageStore, args: UnpackArgs) -> anyhow::Result<ExitCode> {
    let record = find(images, &args.name)?;
    let platform = args.platform.unwrap_or_default();
    let image = berth_content::resolve_image(content, &record.target, &platform)
        .with_context(|| format!("image {} for {platform}", record.name))?;
    if let Some(dest) = &args.dest {
        match std::fs::read_dir(dest) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    bail!("{}: not empty", dest.display());
                }
            }
            Err(_) => std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?,
        }
        for (i, (layer, diff_id)) in image.manifest.layers().iter().zip(image.diff_ids()).enumerate() {
            let blob = content.open_blob(layer.digest().as_ref())?;
            berth_unpack::apply_layer(dest, blob, Some(diff_id), &berth_unpack::ApplyOptions::default())
                .with_context(|| format!("layer {i} ({}) into {}", layer.digest(), dest.display()))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let name = args.snapshotter.as_deref().unwrap_or("overlayfs");
    let sn = open_snapshotter(global, root, name)?;
    let chain = berth_unpack::unpack_image(content, &image, sn.as_ref(), &berth_unpack::UnpackOptions::default())
        .with_context(|| format!("unpacking {} into {name}", record.name))?;
    println!("{chain}");
    Ok(ExitCode::SUCCESS)
}

fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// `YYYY-MM-DD HH:MM:SS` UTC of a unix time.
fn date(secs: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(time).to_string().replace('T', " ").trim_end_matches('Z').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_sizes() {
        assert_eq!(date(0), "1970-01-01 00:00:00");
        assert_eq!(date(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
    }
}
