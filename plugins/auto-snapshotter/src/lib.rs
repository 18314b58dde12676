//! buildkitd's `auto` snapshotter as a snapshotter-selector: overlayfs if an
//! overlay mount works on the root, else fuse-overlayfs if its binary and
//! /dev/fuse are there, else native.
//!
//! Config: `force = "NAME"` picks that snapshotter (it must be compiled into
//! the host); `forbid = ["overlayfs", ...]` removes candidates from the
//! chain; `order` replaces the chain (default
//! `["overlayfs", "fuse-overlayfs", "native"]`).

use berth_sdk::prelude::*;
use serde::Deserialize;

pub const DEFAULT_ORDER: &[&str] = &["overlayfs", "fuse-overlayfs", "native"];

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    force: Option<String>,
    forbid: Vec<String>,
    order: Option<Vec<String>>,
}

/// Why `name` cannot be used on this host, or `None` if it can.
fn unusable(name: &str, facts: &HostFacts) -> Option<String> {
    if !facts.available.iter().any(|a| a == name) {
        return Some(format!("{name} is not compiled into this host"));
    }
    match name {
        "overlayfs" if !facts.overlay_supported => Some(format!(
            "overlayfs is not available for {}: {}",
            facts.root,
            facts.overlay_error.as_deref().unwrap_or("overlay mount failed")
        )),
        "fuse-overlayfs" if facts.fuse_overlayfs_binary.is_none() => {
            Some("fuse-overlayfs is not available: binary not found".to_string())
        }
        "fuse-overlayfs" if !facts.dev_fuse => Some("fuse-overlayfs is not available: /dev/fuse missing".to_string()),
        _ => None,
    }
}

pub struct AutoSnapshotter;

impl SnapshotterSelector for AutoSnapshotter {
    fn info() -> PluginInfo {
        berth_sdk::plugin_info!("auto: overlayfs, else fuse-overlayfs, else native")
    }

    fn select(facts: HostFacts, config: Config) -> Result<SnapshotterChoice, PluginError> {
        let s: Settings = config.parse()?;
        if let Some(name) = s.force {
            if s.forbid.contains(&name) {
                return Err(PluginError::invalid_config(format!(
                    "auto-snapshotter: `{name}` is both forced and forbidden"
                )));
            }
            if !facts.available.contains(&name) {
                return Err(PluginError::invalid_config(format!(
                    "auto-snapshotter: forced snapshotter `{name}` is not one of {:?}",
                    facts.available
                )));
            }
            return Ok(SnapshotterChoice::new(name.clone(), format!("{name} forced by config")));
        }
        let order: Vec<String> = s.order.unwrap_or_else(|| DEFAULT_ORDER.iter().map(|s| s.to_string()).collect());
        let mut skipped = Vec::new();
        for name in order.iter().filter(|n| !s.forbid.contains(n)) {
            match unusable(name, &facts) {
                None => {
                    let reason = if skipped.is_empty() {
                        format!("auto snapshotter: using {name}")
                    } else {
                        format!("auto snapshotter: using {name} ({})", skipped.join("; "))
                    };
                    berth_sdk::info!("{reason}");
                    return Ok(SnapshotterChoice::new(name.clone(), reason));
                }
                Some(why) => {
                    berth_sdk::debug!("auto snapshotter: {why}");
                    skipped.push(why);
                }
            }
        }
        for f in &s.forbid {
            skipped.push(format!("{f} forbidden by config"));
        }
        Err(PluginError::rejected(format!("auto snapshotter: no usable snapshotter ({})", skipped.join("; "))))
    }
}

berth_sdk::export!(AutoSnapshotter as snapshotter_selector);

#[cfg(test)]
mod tests {
    use super::*;
    use berth_sdk::testing;
    use serde_json::json;

    fn no_overlay() -> HostFacts {
        HostFacts {
            overlay_supported: false,
            overlay_error: Some("upper fs does not support tmpfile".into()),
            filesystem_type: "overlay".into(),
            ..testing::host_facts()
        }
    }

    #[test]
    fn overlay_first() {
        let c = testing::select::<AutoSnapshotter>(testing::host_facts(), "").unwrap();
        assert_eq!(c.name, "overlayfs");
        assert!(c.options.is_empty());
        let logs = testing::take_logs();
        assert_eq!(logs.last().unwrap().message, "auto snapshotter: using overlayfs");
    }

    #[test]
    fn then_fuse_then_native() {
        let facts =
            HostFacts { fuse_overlayfs_binary: Some("/usr/bin/fuse-overlayfs".into()), dev_fuse: true, ..no_overlay() };
        let c = testing::select::<AutoSnapshotter>(facts, "").unwrap();
        assert_eq!(c.name, "fuse-overlayfs");
        assert!(c.reason.contains("upper fs does not support tmpfile"), "{}", c.reason);
        let facts = HostFacts {
            fuse_overlayfs_binary: Some("/usr/bin/fuse-overlayfs".into()),
            dev_fuse: false,
            ..no_overlay()
        };
        let c = testing::select::<AutoSnapshotter>(facts, "").unwrap();
        assert_eq!(c.name, "native");
        assert!(c.reason.contains("/dev/fuse"));
    }

    #[test]
    fn force_and_forbid() {
        let c = testing::select::<AutoSnapshotter>(testing::host_facts(), json!({"force": "native"})).unwrap();
        assert_eq!(c.name, "native");
        let e = testing::select::<AutoSnapshotter>(testing::host_facts(), json!({"force": "zfs"})).unwrap_err();
        assert!(matches!(e, PluginError::InvalidConfig(m) if m.contains("zfs")));
        let c = testing::select::<AutoSnapshotter>(testing::host_facts(), json!({"forbid": ["overlayfs"]})).unwrap();
        assert_eq!(c.name, "native");
        let e = testing::select::<AutoSnapshotter>(no_overlay(), json!({"forbid": ["native"]})).unwrap_err();
        assert!(matches!(e, PluginError::Rejected(m) if m.contains("native forbidden")));
        let c = testing::select::<AutoSnapshotter>(testing::host_facts(), json!({"order": ["native", "overlayfs"]}))
            .unwrap();
        assert_eq!(c.name, "native");
    }

    #[test]
    fn only_compiled_in() {
        let facts = HostFacts { available: vec!["native".into()], ..testing::host_facts() };
        assert_eq!(testing::select::<AutoSnapshotter>(facts, "").unwrap().name, "native");
    }
}
