//! `berth plugin new` (host/src/cli/plugin_new.rs, compiled here on its own):
//! every kind scaffolds a crate that builds to a wasm32-wasip2 component
//! against this SDK, and the spec-mutator's own tests pass.

#[path = "../../host/src/cli/plugin_new.rs"]
#[allow(dead_code)]
mod plugin_new;

use std::path::{Path, PathBuf};
use std::process::Command;

use plugin_new::{Kind, scaffold};

fn sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn cargo(dir: &Path, args: &[&str]) {
    // A target dir of its own inside the workspace's: the outer `cargo test`
    // holds the workspace target dir's lock, and the dependencies are shared
    // between runs.
    let target = sdk().join("../target/scaffold-test");
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(dir)
        .args(args)
        .arg("--offline")
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo {args:?} in {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wasm_target_installed() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == "wasm32-wasip2"))
        .unwrap_or(false)
}

#[test]
fn scaffolded_plugins_build_to_components() {
    if !wasm_target_installed() {
        eprintln!("skipping: rustup target wasm32-wasip2 is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let host = berth_plugin::PluginHost::new(berth_plugin::HostOptions::default()).unwrap();
    for (name, kind) in [
        ("my-mutator", Kind::SpecMutator),
        ("my-selector", Kind::SnapshotterSelector),
        ("my-resolver", Kind::SourceResolver),
    ] {
        let dir = scaffold(name, kind, tmp.path(), Some(&sdk())).unwrap();
        assert!(dir.join("README.md").is_file());
        assert!(dir.join("build.rs").is_file());
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
        assert!(readme.contains(&format!("kind = \"{kind}\"")));
        let wasm_in_readme = dir.join(format!("target/wasm32-wasip2/release/{}.wasm", name.replace('-', "_")));
        assert!(readme.contains(&format!("path = \"{}\"", wasm_in_readme.display())), "{readme}");
        cargo(&dir, &["build", "--release", "--target", "wasm32-wasip2"]);
        let wasm = sdk().join(format!("../target/scaffold-test/wasm32-wasip2/release/{}.wasm", name.replace('-', "_")));
        let bytes = std::fs::read(&wasm).unwrap();
        assert_eq!(&bytes[..8], b"\0asm\x0d\0\x01\0", "{} is a component", wasm.display());
        // It loads unchanged in the real host and answers as the kind it says.
        let host_kind = match kind {
            Kind::SpecMutator => berth_plugin::PluginKind::SpecMutator,
            Kind::SnapshotterSelector => berth_plugin::PluginKind::SnapshotterSelector,
            Kind::SourceResolver => berth_plugin::PluginKind::SourceResolver,
        };
        let plugin = host.load(berth_plugin::LoadRequest::new(name, &wasm).kind(host_kind)).unwrap();
        assert_eq!(plugin.call_info().unwrap().name, name);
    }
    let mutator = host
        .load(
            berth_plugin::LoadRequest::new(
                "my-mutator",
                sdk().join("../target/scaffold-test/wasm32-wasip2/release/my_mutator.wasm"),
            )
            .config(serde_json::json!({"env": {"GREETING": "hello"}})),
        )
        .unwrap();
    let adj = mutator.mutate(&berth_spec::ContainerView::default()).unwrap();
    assert_eq!(adj.env_set, vec![("GREETING".to_string(), "hello".to_string())]);
    cargo(&tmp.path().join("my-mutator"), &["test", "--release"]);
}

#[test]
fn names_and_existing_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    for bad in ["", "Caps", "1st", "a_b", "trailing-", "a--b", "a/b"] {
        assert!(scaffold(bad, Kind::SpecMutator, tmp.path(), None).is_err(), "{bad:?}");
    }
    let dir = scaffold("ok-name", Kind::SourceResolver, tmp.path(), None).unwrap();
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("berth-sdk = \"0.1\""), "{manifest}");
    assert!(manifest.contains("[workspace]"));
    let e = scaffold("ok-name", Kind::SourceResolver, tmp.path(), None).unwrap_err();
    assert!(e.to_string().contains("already exists"));
}

#[test]
fn inside_a_berth_checkout_it_joins_the_workspace() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("sdk")).unwrap();
    std::fs::create_dir_all(root.join("plugins")).unwrap();
    std::fs::write(root.join("sdk/Cargo.toml"), "[package]\nname = \"berth-sdk\"\n").unwrap();
    std::fs::write(root.join("Cargo.toml"), "[workspace]\nmembers = [\"sdk\", \"plugins/*\"]\n").unwrap();
    let dir = scaffold("member", Kind::SpecMutator, &root.join("plugins"), Some(&root.join("sdk"))).unwrap();
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("berth-sdk.workspace = true"));
    assert!(!manifest.contains("[workspace]"));
    assert!(std::fs::read_to_string(dir.join("README.md")).unwrap().contains("cargo xtask build-plugins"));
}
