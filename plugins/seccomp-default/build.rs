//! A 128 KiB wasm stack instead of Rust's 1 MiB default: the host gives every
//! call a fresh instance, and a smaller initial memory about halves the cost
//! of a call (measured: privileged 46 -> 22 µs). See sdk/README.md.
//! 512 KiB of initial memory: room for the heap of a call above the stack
//! and data, so a call does not grow the memory (a grow is an mprotect now
//! and another one when the instance is reset).
//!
//! Also renders, at build time, the profile for the common case (amd64 and
//! containerd's default capabilities) into `$OUT_DIR/preset.rs`: building
//! those ~20 KiB in the guest was about a quarter of a call (see src/lib.rs,
//! `preset`).
use std::path::PathBuf;

// containerd's default capabilities (the host's default spec).
use berth_sdk::testing::DEFAULT_CAPABILITIES;

const PRESET_ARCH: &str = "amd64";

fn main() {
    if std::env::var("CARGO_CFG_TARGET_FAMILY").as_deref() == Ok("wasm") {
        println!("cargo:rustc-link-arg-cdylib=-zstack-size=131072");
        println!("cargo:rustc-link-arg-cdylib=--initial-memory=524288");
    }
    println!("cargo:rerun-if-changed=build.rs");
    let caps: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    let profile = berth_seccomp::default_profile_json(PRESET_ARCH, &caps);
    assert!(!profile.contains("\"###"), "the profile fits a raw string literal");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let src = format!(
        "/// The architecture the preset was rendered for.\n\
         pub const ARCH: &str = {PRESET_ARCH:?};\n\
         /// The capabilities the preset was rendered for.\n\
         pub const CAPABILITIES: &[&str] = &{DEFAULT_CAPABILITIES:?};\n\
         /// `berth_seccomp::default_profile_json(ARCH, CAPABILITIES)`.\n\
         pub const PROFILE: &str = r###\"{profile}\"###;\n"
    );
    std::fs::write(out.join("preset.rs"), src).expect("writing preset.rs");
}
