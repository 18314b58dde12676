//! containerd's `oci.WithPrivileged` as a spec-mutator, plus the device
//! access CRI's privileged mode adds.
//!
//! `WithPrivileged` = all capabilities, empty masked and readonly paths,
//! writable /sys and cgroupfs, no SELinux label, no AppArmor profile, no
//! seccomp filter. This plugin also allows every device in the device cgroup
//! (`all_devices`, on by default) and, when asked, creates every host device
//! node (`host_devices`, CRI's `WithHostDevices`).
//!
//! Config (all optional):
//! - `only_when_requested` (false): apply only when the request has option
//!   `privileged=true` or annotation `io.berth.privileged=true`; otherwise
//!   every container this plugin sees is privileged.
//! - `all_devices` (true), `host_devices` (false), `seccomp_unconfined` (true).

use berth_sdk::prelude::*;
use serde::Deserialize;

/// The annotation that requests privileged mode (with `only_when_requested`).
pub const ANNOTATION: &str = "io.berth.privileged";

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    only_when_requested: bool,
    all_devices: bool,
    host_devices: bool,
    seccomp_unconfined: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { only_when_requested: false, all_devices: true, host_devices: false, seccomp_unconfined: true }
    }
}

fn truthy(value: Option<&str>) -> Result<bool, PluginError> {
    match value.map(str::trim) {
        None => Ok(false),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off" | "") => Ok(false),
        Some(other) => Err(PluginError::rejected(format!("privileged: `{other}` is not a boolean"))),
    }
}

/// The privileged bits of containerd's `WithPrivileged`.
pub fn with_privileged_bits() -> Privileged {
    Privileged::ALL_CAPABILITIES
        | Privileged::CLEAR_MASKED_PATHS
        | Privileged::CLEAR_READONLY_PATHS
        | Privileged::SYSFS_RW
        | Privileged::CGROUPFS_RW
        | Privileged::UNCONFINED_APPARMOR
}

pub struct PrivilegedPlugin;

impl SpecMutator for PrivilegedPlugin {
    fn info() -> PluginInfo {
        berth_sdk::plugin_info!(
            "containerd WithPrivileged: all caps and devices, no seccomp/apparmor, rw sysfs/cgroupfs"
        )
    }

    fn mutate(container: ContainerView, config: Config) -> Result<Adjustment, PluginError> {
        let s: Settings = config.parse()?;
        if s.only_when_requested {
            let asked = truthy(container.option("privileged"))? || truthy(container.annotation(ANNOTATION))?;
            if !asked {
                return Ok(Adjustment::default());
            }
        }
        let mut bits = with_privileged_bits();
        if s.all_devices {
            bits |= Privileged::ALL_DEVICES;
        }
        if s.host_devices {
            bits |= Privileged::HOST_DEVICES;
        }
        let mut adj = Adjustment::default().privileged(bits);
        if s.seccomp_unconfined {
            adj = adj.seccomp_unconfined();
        }
        berth_sdk::debug!("container {} runs privileged", container.id());
        Ok(adj)
    }
}

berth_sdk::export!(PrivilegedPlugin as spec_mutator);

#[cfg(test)]
mod tests {
    use super::*;
    use berth_sdk::testing::{self, ContainerViewExt};
    use serde_json::json;

    #[test]
    fn default_is_with_privileged_plus_all_devices() {
        let adj = testing::mutate::<PrivilegedPlugin>(testing::container(), "").unwrap();
        assert_eq!(adj.privileged, with_privileged_bits() | Privileged::ALL_DEVICES);
        assert!(!adj.privileged.contains(Privileged::HOST_DEVICES));
        assert_eq!(adj.seccomp, Some(Seccomp::Unconfined));
        // Nothing else is touched.
        let rest = Adjustment { privileged: Privileged::empty(), seccomp: None, ..adj };
        assert!(rest.is_empty());
    }

    #[test]
    fn config_switches() {
        let adj = testing::mutate::<PrivilegedPlugin>(
            testing::container(),
            json!({"all_devices": false, "host_devices": true, "seccomp_unconfined": false}),
        )
        .unwrap();
        assert_eq!(adj.privileged, with_privileged_bits() | Privileged::HOST_DEVICES);
        assert_eq!(adj.seccomp, None);
        let e = testing::mutate::<PrivilegedPlugin>(testing::container(), json!({"all_device": true})).unwrap_err();
        assert!(matches!(e, PluginError::InvalidConfig(_)));
    }

    #[test]
    fn only_when_requested() {
        let cfg = json!({"only_when_requested": true});
        let adj = testing::mutate::<PrivilegedPlugin>(testing::container(), cfg.clone()).unwrap();
        assert!(adj.is_empty());
        let adj =
            testing::mutate::<PrivilegedPlugin>(testing::container().with_option("privileged", "true"), cfg.clone())
                .unwrap();
        assert!(adj.privileged.contains(Privileged::ALL_CAPABILITIES));
        let adj =
            testing::mutate::<PrivilegedPlugin>(testing::container().with_annotation(ANNOTATION, "1"), cfg.clone())
                .unwrap();
        assert!(adj.privileged.contains(Privileged::SYSFS_RW));
        let e = testing::mutate::<PrivilegedPlugin>(testing::container().with_option("privileged", "maybe"), cfg)
            .unwrap_err();
        assert!(matches!(e, PluginError::Rejected(_)));
    }
}
