//! The default seccomp profile, shared by the host (`seccomp: default`) and the
//! `seccomp-default` plugin. Pure data and logic: no I/O, builds for wasm.
//!
//! Contract (implemented by the SDK/plugins work):
//! `pub fn default_profile(arch: &str, capabilities: &[String]) -> serde_json::Value`
//! returns an OCI `linux.seccomp` object equivalent to containerd's
//! `seccomp.DefaultProfile` for that architecture (`amd64`, `arm64`, ...)
//! and bounding capability set.
