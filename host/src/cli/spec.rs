//! `berth spec`: assemble and print a container's config.json — containerd's
//! default spec, the image config, then the configured spec-mutator plugins
//! in order — without creating anything.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use berth_spec::{ChainEntry, HostFacts, Request};

use super::GlobalArgs;

#[derive(Debug, Clone, clap::Args)]
pub struct SpecArgs {
    /// Image config JSON: a whole OCI/Docker image config blob, or its `config` object.
    #[arg(long, value_name = "FILE", required_unless_present = "image", conflicts_with = "image")]
    pub image_config: Option<PathBuf>,
    /// An image in berth's image store (`berth image import`, `berth pull`).
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    /// A request option plugins read (repeatable): `--opt memory=64m`.
    #[arg(long = "opt", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub opts: Vec<(String, String)>,
    /// A request annotation plugins read (repeatable).
    #[arg(long = "annotation", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub annotations: Vec<(String, String)>,
    /// The container id (used for the cgroups path and shown to plugins).
    #[arg(long, default_value = "berth-spec")]
    pub id: String,
    /// containerd namespace for the cgroups path (`/<namespace>/<id>`).
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// The unpacked image root: USER names resolve against its /etc/passwd and
    /// /etc/group, and it becomes `root.path`.
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// Leave out the device-cgroup allow rules `ctr run` adds (/dev/null, /dev/zero, ...).
    #[arg(long)]
    pub no_default_devices: bool,
    /// Also print, on stderr, which step (image config, each plugin) changed
    /// which field, which plugin overrode which, which optional ones were
    /// skipped: `--explain` (text) or `--explain=json`.
    #[arg(long, value_name = "FORMAT", num_args = 0..=1, require_equals = true, default_missing_value = "text")]
    pub explain: Option<ExplainFormat>,
    /// Write config.json here instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Arguments replacing the image's CMD (after `--`).
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
    #[command(flatten)]
    pub plugins: crate::config::plugins::PluginFlags,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExplainFormat {
    Text,
    Json,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// The image config for the request: from a file, or from berth's image
/// store (`--image`, resolved for this host's platform).
fn image_config(args: &SpecArgs, global: &GlobalArgs) -> anyhow::Result<berth_spec::view::ImageConfigView> {
    if let Some(path) = &args.image_config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read image config {}", path.display()))?;
        return berth_spec::image::parse_image_config(&text).with_context(|| format!("in {}", path.display()));
    }
    let Some(reference) = args.image.as_deref() else { bail!("give --image-config FILE or --image REF") };
    let root = state_root(global)?;
    let content = berth_content::ContentStore::open(&root)
        .with_context(|| format!("cannot open the content store under {}", root.display()))?;
    let images = berth_content::ImageStore::open(&content);
    let record = images.find(reference).with_context(|| {
        format!("image {reference} is not in {} (import it with `berth image import`)", root.display())
    })?;
    let resolved = berth_content::resolve_image(&content, &record.target, &berth_content::Platform::host())
        .with_context(|| format!("image {reference}: cannot resolve its config for this platform"))?;
    Ok(resolved.config.config().as_ref().map(berth_spec::image::view_of_config).unwrap_or_default())
}

/// The spec-mutator chain: berth.toml's `[[plugin]]` tables merged with the
/// plugin flags, in order. Plugins of other kinds are left out (a kind
/// unknown until loading is checked after).
fn load_chain(global: &GlobalArgs, flags: &crate::config::plugins::PluginFlags) -> anyhow::Result<Vec<ChainEntry>> {
    use crate::config::plugins as plugin_config;
    use berth_plugin::PluginKind;

    let (config, path) = crate::config::Config::load(global.config.as_deref())?;
    let base = path.as_deref().and_then(std::path::Path::parent);
    let resolved = plugin_config::resolve(&config.plugins, flags, base).with_context(|| match &path {
        Some(p) => format!("invalid plugin configuration ({} and flags)", p.display()),
        None => "invalid plugin flags".to_string(),
    })?;
    let mutators: Vec<_> =
        resolved.into_iter().filter(|p| p.kind.is_none_or(|k| k == PluginKind::SpecMutator)).collect();
    if mutators.is_empty() {
        return Ok(Vec::new());
    }
    let host = plugin_config::plugin_host(&crate::container::root_dir(global, &config))?;
    let loaded = plugin_config::load_all(&host, &mutators)?;
    Ok(loaded
        .into_iter()
        .filter(|(_, plugin)| plugin.kind() == PluginKind::SpecMutator)
        .map(|(resolved, plugin)| resolved.chain_entry(plugin))
        .collect())
}

/// `--root`, else `[worker] root`, else the default: where `berth run` looks.
fn state_root(global: &GlobalArgs) -> anyhow::Result<PathBuf> {
    let (config, _) = crate::config::Config::load(global.config.as_deref())?;
    Ok(crate::container::root_dir(global, &config))
}

/// The host facts `berth spec` assembles with: this machine's /dev and
/// capabilities.
pub fn host_facts() -> HostFacts {
    HostFacts::detect()
}

pub fn run(global: &GlobalArgs, args: SpecArgs) -> anyhow::Result<()> {
    let request = Request {
        id: args.id.clone(),
        namespace: args.namespace.clone(),
        image: args.image.clone(),
        image_config: image_config(&args, global)?,
        args: (!args.args.is_empty()).then(|| args.args.clone()),
        options: args.opts.clone(),
        annotations: args.annotations.clone(),
        rootfs: args
            .rootfs
            .as_ref()
            .map(|r| std::path::absolute(r).with_context(|| format!("--rootfs {}", r.display())))
            .transpose()?,
        default_unix_devices: !args.no_default_devices,
    };
    let chain = load_chain(global, &args.plugins)?;
    // The worker's keys (apparmor-profile...) as `berth run` applies them.
    let (config, _) = crate::config::Config::load(global.config.as_deref())?;
    let security = crate::container::security::HostSecurity::probe();
    let assembled = crate::container::security::assemble(&config.worker, &security, &request, &chain, &host_facts())?;
    let mut json = berth_spec::json::to_string_pretty(&assembled.spec).context("cannot serialize the spec")?;
    json.push('\n');
    match &args.output {
        Some(path) => std::fs::write(path, &json).with_context(|| format!("cannot write {}", path.display()))?,
        None => std::io::stdout().lock().write_all(json.as_bytes()).context("cannot write to stdout")?,
    }
    match args.explain {
        Some(ExplainFormat::Text) => eprint!("{}", assembled.explanation),
        Some(ExplainFormat::Json) => {
            let text =
                serde_json::to_string_pretty(&assembled.explanation).context("cannot serialize the explanation")?;
            eprintln!("{text}");
        }
        None => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn run(args: &[&str]) -> anyhow::Result<()> {
        let cli = Cli::try_parse_from(std::iter::once("berth").chain(args.iter().copied()))?;
        match cli.command {
            Command::Spec(spec) => super::run(&cli.global, spec),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn prints_the_assembled_spec() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("image.json");
        std::fs::write(&config, r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Env":["A=1"],"Cmd":["sh"],"WorkingDir":"/srv"}}"#).unwrap();
        let empty_config = dir.path().join("berth.toml");
        std::fs::write(&empty_config, "").unwrap();
        let out = dir.path().join("config.json");
        let (c, o) = (config.to_str().unwrap(), out.to_str().unwrap());
        run(&[
            "--config",
            empty_config.to_str().unwrap(),
            "spec",
            "--image-config",
            c,
            "--id",
            "x1",
            "-o",
            o,
            "--",
            "echo",
            "hi",
        ])
        .unwrap();
        let spec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(spec["process"]["args"], serde_json::json!(["echo", "hi"]));
        assert_eq!(spec["process"]["env"], serde_json::json!(["A=1"]));
        assert_eq!(spec["process"]["cwd"], "/srv");
        assert_eq!(spec["linux"]["cgroupsPath"], "/default/x1");
        // ctr run's default device rules, unless --no-default-devices.
        assert_eq!(spec["linux"]["resources"]["devices"].as_array().unwrap().len(), 10);
        run(&[
            "--config",
            empty_config.to_str().unwrap(),
            "spec",
            "--image-config",
            c,
            "--no-default-devices",
            "-o",
            o,
        ])
        .unwrap();
        let spec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(spec["linux"]["resources"]["devices"].as_array().unwrap().len(), 1);
        assert_eq!(spec["process"]["args"], serde_json::json!(["sh"]));
    }

    #[test]
    fn reads_the_image_config_from_the_store() {
        let root = tempfile::tempdir().unwrap();
        let content = berth_content::ContentStore::open(root.path()).unwrap();
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Entrypoint":["/ep"],"Cmd":["c"],"User":"7:8"}}"#;
        let config = content.write_blob(config).unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.digest, "size": config.size},
            "layers": []
        });
        let manifest = content.write_blob(manifest.to_string().as_bytes()).unwrap();
        let target = serde_json::from_value(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest.digest, "size": manifest.size
        }))
        .unwrap();
        let images = berth_content::ImageStore::open(&content);
        let name = berth_content::normalize_reference("example.com/app:1");
        images.put(&name, target, Default::default()).unwrap();
        let out = root.path().join("config.json");
        let empty_config = root.path().join("berth.toml");
        std::fs::write(&empty_config, "").unwrap();
        run(&[
            "--config",
            empty_config.to_str().unwrap(),
            "--root",
            root.path().to_str().unwrap(),
            "spec",
            "--image",
            "example.com/app:1",
            "-o",
            out.to_str().unwrap(),
        ])
        .unwrap();
        let spec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(spec["process"]["args"], serde_json::json!(["/ep", "c"]));
        assert_eq!(
            (spec["process"]["user"]["uid"].as_u64(), spec["process"]["user"]["gid"].as_u64()),
            (Some(7), Some(8))
        );
        let err = run(&[
            "--root",
            root.path().to_str().unwrap(),
            "--config",
            empty_config.to_str().unwrap(),
            "spec",
            "--image",
            "nope:1",
        ])
        .unwrap_err();
        assert!(format!("{err:#}").contains("nope:1"), "{err:#}");

        // No --root: `[worker] root` is where the store is, as for berth run.
        let worker_config = root.path().join("worker.toml");
        std::fs::write(&worker_config, format!("[worker]\nroot = \"{}\"\n", root.path().display())).unwrap();
        std::fs::remove_file(&out).unwrap();
        run(&["--config", worker_config.to_str().unwrap(), "spec", "--image", "example.com/app:1", "-o", out.to_str().unwrap()])
            .unwrap();
        let spec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(spec["process"]["args"], serde_json::json!(["/ep", "c"]));
    }

    #[test]
    fn runs_the_plugins_the_flags_name() {
        let plugin =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/plugin/resources.wasm");
        if !plugin.exists() {
            eprintln!("skipped: {} not built (cargo xtask build-plugins)", plugin.display());
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("image.json");
        std::fs::write(&config, r#"{"Cmd":["sh"]}"#).unwrap();
        let empty_config = dir.path().join("berth.toml");
        std::fs::write(&empty_config, "").unwrap();
        let out = dir.path().join("config.json");
        let base = [
            "--config",
            empty_config.to_str().unwrap(),
            "--root",
            dir.path().to_str().unwrap(),
            "spec",
            "--image-config",
            config.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--plugin",
            plugin.to_str().unwrap(),
            "--opt",
            "memory=64m",
        ];
        // Not granted: refused, naming the plugin and the field.
        let err = run(&[&base[..], &["--grant", "resources=env"]].concat()).unwrap_err();
        assert!(format!("{err:#}").contains("\"resources\" is not granted \"resources\""), "{err:#}");
        run(&[&base[..], &["--grant", "resources=resources", "--explain"]].concat()).unwrap();
        let spec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 64 << 20);
    }

    #[test]
    fn runs_the_plugins_berth_toml_configures() {
        let plugin =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/plugin/resources.wasm");
        if !plugin.exists() {
            eprintln!("skipped: {} not built (cargo xtask build-plugins)", plugin.display());
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("image.json");
        std::fs::write(&image, r#"{"Cmd":["sh"]}"#).unwrap();
        let config = dir.path().join("berth.toml");
        std::fs::write(
            &config,
            format!("[[plugin]]\nname = \"limits\"\npath = {:?}\ngrants = [\"resources\"]\n", plugin.to_str().unwrap()),
        )
        .unwrap();
        let out = dir.path().join("config.json");
        let (c, r, i, o) =
            (config.to_str().unwrap(), dir.path().to_str().unwrap(), image.to_str().unwrap(), out.to_str().unwrap());
        run(&[
            "--config",
            c,
            "--root",
            r,
            "spec",
            "--image-config",
            i,
            "-o",
            o,
            "--opt",
            "pids_limit=50",
            "--explain=json",
        ])
        .unwrap();
        let spec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(spec["linux"]["resources"]["pids"]["limit"], 50);
        // A flag narrows the file's grants for one run.
        let err = run(&[
            "--config",
            c,
            "--root",
            r,
            "spec",
            "--image-config",
            i,
            "-o",
            o,
            "--opt",
            "pids_limit=50",
            "--grant",
            "limits=",
        ])
        .unwrap_err();
        assert!(format!("{err:#}").contains("\"limits\" is not granted \"resources\""), "{err:#}");
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "[1, 2]").unwrap();
        let err = run(&["spec", "--image-config", bad.to_str().unwrap()]).unwrap_err();
        assert!(format!("{err:#}").contains("bad.json"), "{err:#}");
        assert!(run(&["spec"]).is_err(), "--image-config or --image is required");
        assert!(run(&["spec", "--image-config", "x", "--opt", "novalue"]).is_err());
    }

    #[test]
    fn worker_security_keys_apply_as_for_berth_run() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("image.json");
        std::fs::write(&image, r#"{"Cmd":["sh"]}"#).unwrap();
        let config = dir.path().join("berth.toml");
        std::fs::write(&config, "[worker]\napparmor-profile = \"berth-test-profile\"\n").unwrap();
        let out = dir.path().join("config.json");
        let result = run(&[
            "--config", config.to_str().unwrap(), "spec", "--image-config", image.to_str().unwrap(), "-o", out.to_str().unwrap(),
        ]);
        if crate::container::security::HostSecurity::probe().apparmor {
            result.unwrap();
            let spec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
            assert_eq!(spec["process"]["apparmorProfile"], "berth-test-profile");
        } else {
            let err = format!("{:#}", result.unwrap_err());
            assert!(err.contains("apparmor-profile") && err.contains("berth-test-profile"), "{err}");
        }
    }
}
