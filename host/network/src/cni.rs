//! CNI plugins invoked per the CNI spec (1.0): the command and container
//! details in `CNI_*` environment variables, the network configuration on
//! stdin, the result (or an error object) on stdout.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

/// A network configuration list (`.conflist`), or a single `.conf` as a
/// one-plugin list. Serialises in the `.conflist` shape, so an attachment
/// can keep the list its ADD used for the matching DEL.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetworkConfigList {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub name: String,
    /// Each plugin's configuration object (has at least `type`).
    pub plugins: Vec<Value>,
}

impl NetworkConfigList {
    pub fn from_json(text: &str, origin: &str) -> anyhow::Result<Self> {
        let v: Value = serde_json::from_str(text).with_context(|| format!("{origin}: not JSON"))?;
        let obj = v.as_object().ok_or_else(|| anyhow!("{origin}: not a JSON object"))?;
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| anyhow!("{origin}: `name` is missing"))?
            .to_string();
        let cni_version = obj.get("cniVersion").and_then(Value::as_str).unwrap_or("1.0.0").to_string();
        let plugins = match obj.get("plugins") {
            Some(Value::Array(list)) => list.clone(),
            Some(_) => bail!("{origin}: `plugins` is not a list"),
            None => vec![v.clone()],
        };
        if plugins.is_empty() {
            bail!("{origin}: `plugins` is empty");
        }
        for (i, p) in plugins.iter().enumerate() {
            let t = p.get("type").and_then(Value::as_str).unwrap_or("");
            if t.is_empty() || t.contains('/') || t.starts_with('.') {
                bail!("{origin}: plugins[{i}].type {t:?} is not a plugin name");
            }
        }
        Ok(NetworkConfigList { cni_version, name, plugins })
    }

    /// The first `*.conflist`, `*.conf` or `*.json` of `dir` in name order
    /// (libcni's rule).
    pub fn load_dir(dir: &Path) -> anyhow::Result<Self> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read CNI config dir {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("conflist" | "conf" | "json")))
            .collect();
        files.sort();
        let first = files.first().ok_or_else(|| anyhow!("no CNI network configuration in {}", dir.display()))?;
        let text = std::fs::read_to_string(first).with_context(|| format!("cannot read {}", first.display()))?;
        Self::from_json(&text, &first.display().to_string())
    }

    /// A bridge network: a Linux bridge named `bridge`, addresses from
    /// `subnet` by host-local IPAM whose state lives in `ipam_dir`. No
    /// gateway address on the host and no masquerading: containers reach
    /// each other and nothing else.
    pub fn isolated_bridge(name: &str, bridge: &str, subnet: &str, ipam_dir: &Path) -> Self {
        NetworkConfigList {
            cni_version: "1.0.0".into(),
            name: name.into(),
            plugins: vec![json!({
                "type": "bridge",
                "bridge": bridge,
                "isGateway": false,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": subnet }]],
                    "dataDir": ipam_dir,
                },
            })],
        }
    }
}

/// The parts of a CNI result berth uses (and the whole for DEL's prevResult).
#[derive(Debug, Clone, PartialEq)]
pub struct CniResult {
    pub raw: Value,
    /// `address/prefix` of each IP.
    pub ips: Vec<String>,
}

impl CniResult {
    fn parse(raw: Value) -> CniResult {
        let ips = raw
            .get("ips")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|ip| ip.get("address").and_then(Value::as_str).map(str::to_string)).collect())
            .unwrap_or_default();
        CniResult { raw, ips }
    }
}

/// What a plugin call is about.
pub struct Invocation<'a> {
    pub bin_dirs: &'a [PathBuf],
    pub container_id: &'a str,
    pub netns: &'a Path,
    pub ifname: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CniCommand {
    Add,
    Del,
}

impl Invocation<'_> {
    fn find(&self, plugin_type: &str) -> anyhow::Result<PathBuf> {
        self.bin_dirs
            .iter()
            .map(|d| d.join(plugin_type))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                anyhow!(
                    "CNI plugin {plugin_type:?} not found in {}",
                    self.bin_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":")
                )
            })
    }

    /// ADD through the list in order, each plugin getting the previous result.
    pub fn add(&self, list: &NetworkConfigList) -> anyhow::Result<CniResult> {
        let mut prev: Option<Value> = None;
        for plugin in &list.plugins {
            let out = self.exec(CniCommand::Add, list, plugin, prev.as_ref())?;
            prev = Some(out.unwrap_or(Value::Null));
        }
        Ok(CniResult::parse(prev.unwrap_or(Value::Null)))
    }

    /// DEL through the list in reverse, with the ADD result as prevResult;
    /// every plugin is called even if one fails, the first error is returned.
    pub fn del(&self, list: &NetworkConfigList, prev: Option<&Value>) -> anyhow::Result<()> {
        let mut first_err = None;
        for plugin in list.plugins.iter().rev() {
            if let Err(e) = self.exec(CniCommand::Del, list, plugin, prev) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn exec(
        &self,
        command: CniCommand,
        list: &NetworkConfigList,
        plugin: &Value,
        prev: Option<&Value>,
    ) -> anyhow::Result<Option<Value>> {
        let plugin_type = plugin.get("type").and_then(Value::as_str).unwrap_or_default();
        let bin = self.find(plugin_type)?;
        let mut conf = plugin.clone();
        if let Some(obj) = conf.as_object_mut() {
            obj.insert("cniVersion".into(), json!(list.cni_version));
            obj.insert("name".into(), json!(list.name));
            if let Some(prev) = prev.filter(|p| !p.is_null()) {
                obj.insert("prevResult".into(), prev.clone());
            }
        }
        let verb = match command {
            CniCommand::Add => "ADD",
            CniCommand::Del => "DEL",
        };
        let path = std::env::join_paths(self.bin_dirs).context("CNI_PATH")?;
        let mut child = Command::new(&bin)
            .env_clear()
            .env("CNI_COMMAND", verb)
            .env("CNI_CONTAINERID", self.container_id)
            .env("CNI_NETNS", self.netns)
            .env("CNI_IFNAME", self.ifname)
            .env("CNI_PATH", path)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run CNI plugin {}", bin.display()))?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(&serde_json::to_vec(&conf)?)
            .with_context(|| format!("cannot write config to {}", bin.display()))?;
        let out = child.wait_with_output().with_context(|| format!("CNI plugin {}", bin.display()))?;
        let stdout: Option<Value> = serde_json::from_slice(&out.stdout).ok();
        if !out.status.success() {
            let msg = stdout
                .as_ref()
                .map(|v| {
                    let m = v.get("msg").and_then(Value::as_str).unwrap_or("");
                    let d = v.get("details").and_then(Value::as_str).unwrap_or("");
                    format!("{m} {d}").trim().to_string()
                })
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
            bail!("CNI {verb} {plugin_type} for {} ({}): {msg}", self.container_id, out.status);
        }
        Ok(stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_and_conflist() {
        let l = NetworkConfigList::from_json(r#"{"cniVersion":"0.4.0","name":"n","type":"bridge"}"#, "x").unwrap();
        assert_eq!(l.plugins.len(), 1);
        assert_eq!(l.cni_version, "0.4.0");
        let l = NetworkConfigList::from_json(
            r#"{"name":"n","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
            "x",
        )
        .unwrap();
        assert_eq!(l.plugins.len(), 2);
        assert!(NetworkConfigList::from_json(r#"{"plugins":[]}"#, "x").unwrap_err().to_string().contains("name"));
        let e = NetworkConfigList::from_json(r#"{"name":"n","type":"../../bin/sh"}"#, "f.conf").unwrap_err();
        assert!(e.to_string().contains("plugins[0].type"), "{e}");
    }

    #[test]
    fn load_dir_takes_the_first_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("20-b.conflist"), r#"{"name":"b","plugins":[{"type":"bridge"}]}"#).unwrap();
        std::fs::write(dir.path().join("10-a.conf"), r#"{"name":"a","type":"bridge"}"#).unwrap();
        std::fs::write(dir.path().join("00-readme.txt"), "x").unwrap();
        assert_eq!(NetworkConfigList::load_dir(dir.path()).unwrap().name, "a");
    }

    #[test]
    fn result_ips() {
        let r = CniResult::parse(json!({"ips":[{"address":"10.1.2.3/24"},{"address":"fd00::3/64"}]}));
        assert_eq!(r.ips, vec!["10.1.2.3/24", "fd00::3/64"]);
    }
}
