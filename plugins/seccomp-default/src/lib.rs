//! `seccomp.WithDefaultProfile()` as a spec-mutator: the allowlist containerd
//! and Docker ship (from `berth-seccomp`), returned as an explicit OCI
//! `linux.seccomp` profile built for the container's bounding capabilities.
//!
//! Config: `arch` (default `amd64`; Go or uname spelling) — the plugin cannot
//! see the host, so set it on other architectures. `extra_capabilities`: caps
//! to treat as present (for plugins later in the chain that add some).
//! Run it after plugins that add capabilities, or list them there.

use berth_sdk::prelude::*;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    arch: String,
    extra_capabilities: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { arch: "amd64".into(), extra_capabilities: Vec::new() }
    }
}

pub struct SeccompDefault;

impl SpecMutator for SeccompDefault {
    fn info() -> PluginInfo {
        berth_sdk::plugin_info!("containerd's default seccomp profile, capability-aware")
    }

    fn mutate(container: ContainerView, config: Config) -> Result<Adjustment, PluginError> {
        let s: Settings = config.parse()?;
        if berth_seccomp::normalize_arch(&s.arch).is_none() {
            return Err(PluginError::invalid_config(format!("seccomp-default: unknown arch `{}`", s.arch)));
        }
        let mut caps = container.process.capabilities.clone();
        caps.extend(s.extra_capabilities);
        let profile = berth_seccomp::default_profile_json(&s.arch, &caps);
        Ok(Adjustment::default().seccomp(Seccomp::Profile(profile)))
    }
}

berth_sdk::export!(SeccompDefault as spec_mutator);

#[cfg(test)]
mod tests {
    use super::*;
    use berth_sdk::testing;
    use serde_json::{Value, json};

    fn profile(adj: &Adjustment) -> Value {
        match &adj.seccomp {
            Some(Seccomp::Profile(p)) => serde_json::from_str(p).unwrap(),
            other => panic!("expected a profile, got {other:?}"),
        }
    }

    #[test]
    fn default_caps_profile() {
        let adj = testing::mutate::<SeccompDefault>(testing::container(), "").unwrap();
        let p = profile(&adj);
        assert_eq!(p, berth_seccomp::default_profile("amd64", &testing::container().process.capabilities));
        let allowed = berth_seccomp::allowed_names(&p);
        assert!(allowed.contains(&"chroot".to_string()), "CAP_SYS_CHROOT is in the default set");
        assert!(!allowed.contains(&"mount".to_string()));
        // Only seccomp is touched.
        assert!(Adjustment { seccomp: None, ..adj }.is_empty());
    }

    #[test]
    fn arch_and_extra_caps() {
        let adj = testing::mutate::<SeccompDefault>(
            testing::container(),
            json!({"arch": "aarch64", "extra_capabilities": ["CAP_SYS_ADMIN"]}),
        )
        .unwrap();
        let p = profile(&adj);
        assert_eq!(p["architectures"], json!(["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"]));
        assert!(berth_seccomp::allowed_names(&p).contains(&"mount".to_string()));
        let e = testing::mutate::<SeccompDefault>(testing::container(), json!({"arch": "vax"})).unwrap_err();
        assert!(matches!(e, PluginError::InvalidConfig(m) if m.contains("vax")));
    }
}
