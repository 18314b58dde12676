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

/// The profile for the common case, rendered by build.rs with the same
/// function: a call copies ~20 KiB instead of building them (that was about
/// a quarter of a call in the fresh instance).
mod preset {
    include!(concat!(env!("OUT_DIR"), "/preset.rs"));

    /// The profile depends on the architecture and, in order, on the
    /// capabilities that have rules of their own; other capabilities change
    /// nothing. True when both equal the preset's.
    pub fn matches(arch: &str, caps: &[String]) -> bool {
        fn relevant<'a>(caps: impl Iterator<Item = &'a str>) -> impl Iterator<Item = &'a str> {
            caps.filter(|c| berth_seccomp::CAPABILITY_SYSCALLS.iter().any(|(name, _)| name == c))
        }
        arch == ARCH && relevant(caps.iter().map(String::as_str)).eq(relevant(CAPABILITIES.iter().copied()))
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
        let mut caps = container.process().capabilities.clone();
        caps.extend(s.extra_capabilities);
        let profile = match preset::matches(&s.arch, &caps) {
            true => preset::PROFILE.to_string(),
            false => berth_seccomp::default_profile_json(&s.arch, &caps),
        };
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
        assert_eq!(p, berth_seccomp::default_profile("amd64", &testing::container().process().capabilities));
        let allowed = berth_seccomp::allowed_names(&p);
        assert!(allowed.contains(&"chroot".to_string()), "CAP_SYS_CHROOT is in the default set");
        assert!(!allowed.contains(&"mount".to_string()));
        // Only seccomp is touched.
        assert!(Adjustment { seccomp: None, ..adj }.is_empty());
    }

    #[test]
    fn preset_is_the_generated_profile() {
        let caps: Vec<String> = preset::CAPABILITIES.iter().map(|c| c.to_string()).collect();
        assert_eq!(preset::PROFILE, berth_seccomp::default_profile_json(preset::ARCH, &caps));
        assert!(preset::matches("amd64", &caps));
        // Capabilities without rules of their own change nothing.
        let mut more = caps.clone();
        more.push("CAP_NET_ADMIN".into());
        assert!(preset::matches("amd64", &more));
        assert_eq!(preset::PROFILE, berth_seccomp::default_profile_json("amd64", &more));
        let mut admin = caps.clone();
        admin.push("CAP_SYS_ADMIN".into());
        assert!(!preset::matches("amd64", &admin));
        assert!(!preset::matches("x86_64", &caps));
        assert!(!preset::matches("amd64", &caps[..3]), "no CAP_SYS_CHROOT");
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
