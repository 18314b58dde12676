//! The container spec as containerd stores it, and the rootfs-related bits
//! containerd's shims expect of it.

use oci_spec::runtime::{RootBuilder, Spec};

/// The type URL containerd registers the runtime spec under; the value is the spec's JSON.
pub const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// Where the shim mounts the task's rootfs, relative to the bundle.
pub const ROOTFS_PATH: &str = "rootfs";

/// Sets what containerd expects and berth's spec chain does not decide:
/// `root.path` is the bundle's `rootfs` (keeping `root.readonly`), and the
/// cgroup path defaults to containerd's `/<namespace>/<id>`.
pub fn prepare_for_containerd(spec: &mut Spec, namespace: &str, id: &str) {
    let readonly = spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false);
    let root = RootBuilder::default().path(ROOTFS_PATH).readonly(readonly).build().expect("path is set");
    spec.set_root(Some(root));
    if let Some(linux) = spec.linux_mut()
        && linux.cgroups_path().is_none()
    {
        linux.set_cgroups_path(Some(format!("/{namespace}/{id}").into()));
    }
}

pub fn to_any(spec: &Spec) -> anyhow::Result<prost_types::Any> {
    Ok(prost_types::Any { type_url: SPEC_TYPE_URL.to_string(), value: serde_json::to_vec(spec)? })
}

/// An exec'd process's type, as containerd's clients send it.
pub const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

pub fn process_to_any(process: &oci_spec::runtime::Process) -> anyhow::Result<prost_types::Any> {
    Ok(prost_types::Any { type_url: PROCESS_TYPE_URL.to_string(), value: serde_json::to_vec(process)? })
}

pub fn from_any(any: &prost_types::Any) -> anyhow::Result<Spec> {
    if any.type_url != SPEC_TYPE_URL {
        anyhow::bail!("container spec has type {}, expected {SPEC_TYPE_URL}", any.type_url);
    }
    Ok(serde_json::from_slice(&any.value)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootfs_and_cgroup_path_are_set_readonly_kept() {
        let mut spec = Spec::default();
        spec.set_root(Some(RootBuilder::default().path("/somewhere").readonly(true).build().unwrap()));
        prepare_for_containerd(&mut spec, "ns", "c1");
        let root = spec.root().as_ref().unwrap();
        assert_eq!(root.path().to_str(), Some("rootfs"));
        assert_eq!(root.readonly(), Some(true));
        assert_eq!(spec.linux().as_ref().unwrap().cgroups_path().as_ref().unwrap().to_str(), Some("/ns/c1"));
        let back = from_any(&to_any(&spec).unwrap()).unwrap();
        assert_eq!(back, spec);
    }
}
