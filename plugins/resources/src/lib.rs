//! Resource limits from request options, with operator defaults and maxima.
//!
//! Request options (`--opt key=value`; keys get `option_prefix` prepended):
//! `memory`, `memory_reservation`, `memory_swap` (sizes like `512m`; swap
//! `-1` = unlimited), `cpus` (`1.5` → CFS quota 150000 per 100000 µs, like
//! `docker --cpus`), `cpu_shares`, `cpu_quota`, `cpu_period`, `cpuset_cpus`,
//! `cpuset_mems`, `pids_limit` (`-1` = unlimited).
//!
//! Config: `defaults` (same keys, applied when the request does not say),
//! `max` (`memory`, `cpus`, `cpu_shares`, `pids_limit`: a request above is
//! rejected; an unlimited request (`-1`) is rejected when a max is set),
//! `option_prefix` (default empty, e.g. `"resources."`).

use std::collections::BTreeMap;

use berth_sdk::prelude::*;
use berth_sdk::size::Size;
use serde::Deserialize;
use serde_json::Value;

pub const KEYS: &[&str] = &[
    "memory",
    "memory_reservation",
    "memory_swap",
    "cpus",
    "cpu_shares",
    "cpu_quota",
    "cpu_period",
    "cpuset_cpus",
    "cpuset_mems",
    "pids_limit",
];

/// The CFS period `cpus` uses, as Docker does.
pub const CPU_PERIOD: u64 = 100_000;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Max {
    memory: Option<Size>,
    cpus: Option<f64>,
    cpu_shares: Option<u64>,
    pids_limit: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    defaults: BTreeMap<String, Value>,
    max: Max,
    option_prefix: String,
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn reject(key: &str, value: &str, why: impl std::fmt::Display) -> PluginError {
    PluginError::rejected(format!("resources: {key}=`{value}`: {why}"))
}

fn size(key: &str, v: &str, allow_unlimited: bool) -> Result<i64, PluginError> {
    if allow_unlimited && v.trim() == "-1" {
        return Ok(-1);
    }
    let n = berth_sdk::size::parse_size_i64(v).map_err(|e| reject(key, v, e))?;
    if n <= 0 {
        return Err(reject(key, v, "must be positive"));
    }
    Ok(n)
}

fn number<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, PluginError> {
    v.trim().parse().map_err(|_| reject(key, v, "not a valid number"))
}

pub struct ResourcesPlugin;

impl SpecMutator for ResourcesPlugin {
    fn info() -> PluginInfo {
        berth_sdk::plugin_info!("memory, cpu and pids limits from request options, with defaults and maxima")
    }

    fn mutate(container: ContainerView, config: Config) -> Result<Adjustment, PluginError> {
        let s: Settings = config.parse()?;
        let mut values: BTreeMap<&str, String> = BTreeMap::new();
        for (k, v) in &s.defaults {
            let key = KEYS
                .iter()
                .find(|known| **known == k)
                .ok_or_else(|| PluginError::invalid_config(format!("resources: unknown key `defaults.{k}`")))?;
            values.insert(key, value_text(v));
        }
        for key in KEYS {
            if let Some(v) = container.option(&format!("{}{key}", s.option_prefix)) {
                values.insert(key, v.to_string());
            }
        }

        let mut r = Resources::default();
        for (key, v) in &values {
            let key = *key;
            match key {
                "memory" => r.memory_limit = Some(size(key, v, false)?),
                "memory_reservation" => r.memory_reservation = Some(size(key, v, false)?),
                "memory_swap" => r.memory_swap = Some(size(key, v, true)?),
                "cpus" => {
                    let cpus: f64 = number(key, v)?;
                    if !(cpus > 0.0 && cpus.is_finite()) {
                        return Err(reject(key, v, "must be positive"));
                    }
                    if let Some(max) = s.max.cpus
                        && cpus > max
                    {
                        return Err(reject(key, v, format!("above the maximum of {max}")));
                    }
                    r.cpu_quota = Some((cpus * CPU_PERIOD as f64).round() as i64);
                    r.cpu_period = Some(CPU_PERIOD);
                }
                "cpu_shares" => {
                    let shares: u64 = number(key, v)?;
                    if !(2..=262_144).contains(&shares) {
                        return Err(reject(key, v, "must be between 2 and 262144"));
                    }
                    if let Some(max) = s.max.cpu_shares
                        && shares > max
                    {
                        return Err(reject(key, v, format!("above the maximum of {max}")));
                    }
                    r.cpu_shares = Some(shares);
                }
                "cpu_quota" => r.cpu_quota = Some(number(key, v)?),
                "cpu_period" => r.cpu_period = Some(number(key, v)?),
                "cpuset_cpus" => r.cpuset_cpus = Some(v.clone()),
                "cpuset_mems" => r.cpuset_mems = Some(v.clone()),
                "pids_limit" => {
                    let pids: i64 = number(key, v)?;
                    if pids == 0 || pids < -1 {
                        return Err(reject(key, v, "must be positive or -1 (unlimited)"));
                    }
                    if let Some(max) = s.max.pids_limit
                        && (pids == -1 || pids > max)
                    {
                        return Err(reject(key, v, format!("above the maximum of {max}")));
                    }
                    r.pids_limit = Some(pids);
                }
                _ => unreachable!("only KEYS are collected"),
            }
        }
        if let (Some(limit), Some(Size(max))) = (r.memory_limit, s.max.memory)
            && limit as u64 > max
        {
            return Err(reject("memory", &values["memory"], format!("above the maximum of {max} bytes")));
        }
        if let (Some(limit), Some(res)) = (r.memory_limit, r.memory_reservation)
            && res > limit
        {
            return Err(reject("memory_reservation", &values["memory_reservation"], "above the memory limit"));
        }
        if let Some(swap) = r.memory_swap {
            match r.memory_limit {
                None => return Err(reject("memory_swap", &values["memory_swap"], "needs a memory limit")),
                Some(limit) if swap != -1 && swap < limit => {
                    return Err(reject("memory_swap", &values["memory_swap"], "must be at least the memory limit"));
                }
                _ => {}
            }
        }
        if r == Resources::default() {
            return Ok(Adjustment::default());
        }
        Ok(Adjustment { resources: Some(r), ..Adjustment::default() })
    }
}

berth_sdk::export!(ResourcesPlugin as spec_mutator);

#[cfg(test)]
mod tests {
    use super::*;
    use berth_sdk::testing::{self, ContainerViewExt};
    use serde_json::json;

    fn run(view: ContainerView, cfg: Value) -> Result<Resources, PluginError> {
        testing::mutate::<ResourcesPlugin>(view, cfg).map(|a| a.resources.unwrap_or_default())
    }

    #[test]
    fn options_become_limits() {
        let view = testing::container()
            .with_option("memory", "64m")
            .with_option("memory_swap", "-1")
            .with_option("cpus", "1.5")
            .with_option("cpu_shares", "512")
            .with_option("pids_limit", "100")
            .with_option("cpuset_cpus", "0-1")
            .with_option("unrelated", "x");
        let r = run(view, json!({})).unwrap();
        assert_eq!(r.memory_limit, Some(64 << 20));
        assert_eq!(r.memory_swap, Some(-1));
        assert_eq!((r.cpu_quota, r.cpu_period), (Some(150_000), Some(100_000)));
        assert_eq!(r.cpu_shares, Some(512));
        assert_eq!(r.pids_limit, Some(100));
        assert_eq!(r.cpuset_cpus.as_deref(), Some("0-1"));
    }

    #[test]
    fn defaults_and_override() {
        let cfg = json!({"defaults": {"memory": "1g", "pids_limit": 512}});
        let r = run(testing::container(), cfg.clone()).unwrap();
        assert_eq!((r.memory_limit, r.pids_limit), (Some(1 << 30), Some(512)));
        let r = run(testing::container().with_option("memory", "256m"), cfg).unwrap();
        assert_eq!(r.memory_limit, Some(256 << 20));
        let adj = testing::mutate::<ResourcesPlugin>(testing::container(), json!({})).unwrap();
        assert!(adj.is_empty());
    }

    #[test]
    fn prefix() {
        let cfg = json!({"option_prefix": "resources."});
        let r =
            run(testing::container().with_option("resources.memory", "1m").with_option("memory", "9m"), cfg).unwrap();
        assert_eq!(r.memory_limit, Some(1 << 20));
    }

    #[test]
    fn maxima_and_errors() {
        let cfg = json!({"max": {"memory": "1g", "cpus": 2.0, "pids_limit": 1000}});
        let err = |k: &str, v: &str| run(testing::container().with_option(k, v), cfg.clone()).unwrap_err();
        assert!(matches!(err("memory", "2g"), PluginError::Rejected(m) if m.contains("memory=`2g`")));
        assert!(matches!(err("cpus", "4"), PluginError::Rejected(_)));
        assert!(matches!(err("pids_limit", "-1"), PluginError::Rejected(_)));
        assert!(matches!(err("memory", "lots"), PluginError::Rejected(_)));
        assert!(matches!(err("cpu_shares", "1"), PluginError::Rejected(_)));
        assert!(matches!(err("memory_swap", "1g"), PluginError::Rejected(m) if m.contains("needs a memory limit")));
        let e = run(testing::container().with_option("memory", "1g").with_option("memory_swap", "512m"), json!({}))
            .unwrap_err();
        assert!(e.message().contains("at least"));
        let e = run(testing::container(), json!({"defaults": {"memroy": "1g"}})).unwrap_err();
        assert!(matches!(e, PluginError::InvalidConfig(m) if m.contains("memroy")));
    }
}
