//! The glue between the native core and the plugins: from a request
//! (`berth run IMAGE CMD`) to a spec, a rootfs and an executor.
//!
//! ```text
//! Settings (berth.toml + flags) -> plugins loaded once
//! image config + request -> berth_spec::assemble(chain of spec-mutators)
//! native backend: image store -> selector plugin -> snapshotter -> unpack -> prepare -> executor
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use berth_spec::{Assembled, HostFacts, Request};
use oci_spec::image::ImageConfiguration;

use crate::cli::GlobalArgs;
use crate::config::Config;

pub mod native;
pub mod network;
pub mod plugins;
pub mod security;

/// What the user asked to run.
#[derive(Debug, Clone)]
pub struct ContainerRequest {
    pub id: String,
    pub image: String,
    /// Replaces the image's cmd when not empty.
    pub command: Vec<String>,
    pub options: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// The configuration of one `berth` invocation: the file, the flags, the
/// loaded plugins.
pub struct Settings {
    pub config: Config,
    pub config_path: Option<PathBuf>,
    pub root: PathBuf,
    pub plugins: plugins::LoadedPlugins,
}

impl Settings {
    /// Reads `berth.toml` (or the defaults), applies the plugin flags and
    /// starts loading every configured plugin.
    pub fn load(global: &GlobalArgs, flags: &crate::cli::plugin::PluginFlags) -> anyhow::Result<Self> {
        Self::load_kinds(global, flags, plugins::Kinds::ALL)
    }

    /// [`Settings::load`] for an invocation that calls only `kinds` of plugin.
    pub fn load_kinds(global: &GlobalArgs, flags: &crate::cli::plugin::PluginFlags, kinds: plugins::Kinds) -> anyhow::Result<Self> {
        let (config, config_path) = Config::load(global.config.as_deref())?;
        let root = root_dir(global, &config);
        let plugins = plugins::LoadedPlugins::load_kinds(&config, config_path.as_deref(), flags, &root, kinds)?;
        Ok(Settings { config, config_path, root, plugins })
    }

    /// [`Settings::load`] with `berth run`'s worker flags and `--net` applied.
    pub fn load_for_run(global: &GlobalArgs, args: &crate::cli::run::RunArgs) -> anyhow::Result<Self> {
        let mut settings = Self::load_kinds(global, &args.plugins, plugins::Kinds::RUN)?;
        settings.config.worker.apply_flags(&args.worker);
        if let Some(mode) = args.net {
            settings.config.worker.network.mode = mode;
        }
        // Worker keys this host cannot honour: refused before any work (and
        // by this process, not a detached child's log); assemble_spec checks too.
        security::check_worker(&settings.config.worker, &security::HostSecurity::probe())?;
        Ok(settings)
    }

    /// Container logs of detached runs.
    pub fn log_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Run-time state of this root (`[worker] state`; see
    /// [`crate::config::worker::WorkerConfig::state_dir`]).
    pub fn state_dir(&self) -> PathBuf {
        self.config.worker.state_dir(&self.root)
    }
}

/// `--root`, else the `[worker] root`, else /var/lib/berth.
pub fn root_dir(global: &GlobalArgs, config: &Config) -> PathBuf {
    config.worker.root_dir(global.root.as_deref())
}

/// A fresh container id: 16 hex digits from the kernel's random source.
pub fn random_id() -> String {
    use std::io::Read as _;
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .expect("reading /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The host's facts the spec assembly depends on (`berth spec` uses the same).
pub fn spec_host_facts() -> HostFacts {
    crate::cli::spec::host_facts()
}

/// This machine's architecture, as OCI names it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// Default spec, image config, the worker's security keys, then the spec-mutator chain.
pub fn assemble_spec(
    settings: &Settings,
    request: &ContainerRequest,
    image_config: &ImageConfiguration,
    rootfs: Option<&Path>,
) -> anyhow::Result<Assembled> {
    let spec_request = Request {
        id: request.id.clone(),
        namespace: crate::config::worker::container_namespace(&settings.root),
        image: Some(request.image.clone()),
        image_config: berth_spec::image::view_of_config(image_config.config().as_ref().unwrap_or(&Default::default())),
        args: (!request.command.is_empty()).then(|| request.command.clone()),
        options: request.options.clone().into_iter().collect(),
        annotations: request.annotations.clone().into_iter().collect(),
        rootfs: rootfs.map(Path::to_path_buf),
        default_unix_devices: true,
    };
    let chain = settings.plugins.spec_chain()?;
    // [worker] apparmor-profile / selinux / rootless: checked, then the profile
    // set before the chain (a plugin's choice wins).
    security::assemble(&settings.config.worker, &security::HostSecurity::probe(), &spec_request, &chain, &spec_host_facts())
}

/// An OCI layout (temporary directory) holding the host-platform image
/// `name` from berth's store, for containerd to import. Blobs are hard
/// links into the store (copies across filesystems).
pub fn export_layout(settings: &Settings, name: &str) -> anyhow::Result<tempfile::TempDir> {
    let content = berth_content::ContentStore::open(&settings.root)?;
    let images = berth_content::ImageStore::open(&content);
    let record = images
        .find(name)
        .with_context(|| format!("image {name} is not in berth's store"))?;
    let image = berth_content::resolve_image(&content, &record.target, &berth_content::Platform::host())?;
    let dir = tempfile::Builder::new().prefix("berth-export-").tempdir_in(&settings.root)?;
    let blobs = dir.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let mut digests = vec![image.manifest_desc.digest().to_string(), image.manifest.config().digest().to_string()];
    digests.extend(image.manifest.layers().iter().map(|layer| layer.digest().to_string()));
    for digest in digests {
        let source = content.blob_path(&digest)?;
        let target = blobs.join(berth_content::digest_hex(&digest)?);
        if target.exists() {
            continue;
        }
        if std::fs::hard_link(&source, &target).is_err() {
            std::fs::copy(&source, &target).with_context(|| format!("copying blob {digest}"))?;
        }
    }
    let mut manifest = serde_json::to_value(&image.manifest_desc)?;
    manifest["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": name, "io.containerd.image.name": name });
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": [manifest] });
    std::fs::write(dir.path().join("index.json"), serde_json::to_vec(&index)?)?;
    std::fs::write(dir.path().join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(dir)
}
