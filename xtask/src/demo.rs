//! The main job on a fresh machine: a real container started through real plugins.
//!
//! Builds a busybox image without network, writes a `berth.toml` loading the
//! reference plugins (the snapshotter-selector picks the snapshotter, three
//! spec-mutators shape the spec), imports the image and runs a container that
//! prints what the plugins changed: its capabilities, its seccomp mode and the
//! environment a plugin added (`--explain` shows every field each changed).

use std::path::Path;
use std::process::Command;

use anyhow::Context;

const SCRIPT: &str = r#"echo "hello from a berth container (pid $$, hostname $(hostname))"
echo "env DEMO_PLUGIN=$DEMO_PLUGIN"
grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status"#;

pub fn run(root: &Path) -> anyhow::Result<()> {
    let work = root.join("target/demo");
    if work.exists() {
        // A previous demo's state; its containers were all `--rm`.
        std::fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    std::fs::create_dir_all(&work)?;
    let image = berth_tests::image::build_busybox_image(&work, "demo/busybox:latest")?;
    let plugins = crate::plugins::output_dir(root);
    let config = work.join("berth.toml");
    std::fs::write(&config, demo_config(&plugins))?;
    eprintln!("xtask: demo configuration {}:\n{}", config.display(), std::fs::read_to_string(&config)?);

    let berth = |args: &[&str]| {
        let mut command = Command::new(crate::berth_bin(root));
        command.arg("--config").arg(&config).arg("--root").arg(work.join("root")).args(args);
        command
    };
    crate::run(&mut berth(&["plugin", "ls"]))?;
    crate::run(&mut berth(&["image", "import", image.layout_tar.to_str().unwrap(), "--name", "demo/busybox:latest"]))?;
    crate::run(&mut berth(&["image", "ls"]))?;
    crate::run(&mut berth(&["run", "--rm", "--explain", "--opt", "memory=64m", "demo/busybox:latest", "sh", "-c", SCRIPT]))?;
    eprintln!("xtask: demo done: the container ran through the plugins above and was removed");
    Ok(())
}

fn demo_config(plugins: &Path) -> String {
    let p = |name: &str| plugins.join(format!("{name}.wasm")).display().to_string();
    format!(
        r#"# berth.toml written by `cargo xtask demo`.
[worker]
snapshotter = "auto"

[[plugin]]
name = "auto-snapshotter"
kind = "snapshotter-selector"
path = "{auto}"

[[plugin]]
name = "resources"
kind = "spec-mutator"
path = "{resources}"
grants = ["resources"]

[[plugin]]
name = "seccomp-default"
kind = "spec-mutator"
path = "{seccomp}"
grants = ["seccomp", "no-new-privileges"]

[[plugin]]
name = "nomad-task"
kind = "spec-mutator"
path = "{nomad}"
grants = ["env", "capabilities"]
config = {{ env = {{ DEMO_PLUGIN = "nomad-task" }}, cap_drop = ["CAP_NET_RAW"] }}
"#,
        auto = p("auto-snapshotter"),
        resources = p("resources"),
        seccomp = p("seccomp-default"),
        nomad = p("nomad-task"),
    )
}
