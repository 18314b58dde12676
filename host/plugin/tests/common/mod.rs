//! Builds the fixture plugins (tests/fixtures, its own workspace) once per
//! test binary, for wasm32-wasip2, into <target>/fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The shared target directory: the test executable is <target>/release/deps/<exe>.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors().nth(3).expect("target dir above the test executable").to_path_buf()
}

/// Directory holding fixture_<name>.wasm, or None (with the reason printed)
/// when the wasm32-wasip2 target is missing.
pub fn fixtures() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/Cargo.toml");
        let target = target_dir().join("fixtures");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["build", "--quiet", "--target", "wasm32-wasip2", "--profile", "release", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target)
            // Our own profile/flags, not the host test build's.
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .output()
            .expect("run cargo to build the fixture plugins");
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("wasm32-wasip2") && stderr.contains("target may not be installed") {
                eprintln!("SKIP: the wasm32-wasip2 target is not installed (rustup target add wasm32-wasip2)");
                return None;
            }
            panic!("building the fixture plugins failed:\n{stderr}");
        }
        Some(target.join("wasm32-wasip2/release"))
    })
    .as_deref()
}

pub fn fixture(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("fixture_{name}.wasm"))
}

/// H2's reference plugins (`cargo xtask build-plugins`), when built.
pub fn reference_plugin(name: &str) -> Option<PathBuf> {
    let path = target_dir().join("wasm32-wasip2/plugin").join(format!("{name}.wasm"));
    if path.exists() {
        Some(path)
    } else {
        eprintln!("SKIP: {} not built (cargo xtask build-plugins)", path.display());
        None
    }
}
