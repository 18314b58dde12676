//! Stable JSON for specs.
//!
//! oci-spec keeps capability sets in `HashSet`s and annotations/sysctls in
//! `HashMap`s, whose order changes from run to run. Output goes through here
//! so `berth spec` prints the same bytes for the same input: struct fields in
//! the OCI order, map keys sorted, capabilities in kernel-number order.

use std::fmt;

use oci_spec::runtime::{Capability, Spec};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// Capability names by kernel number (linux/capability.h).
pub const CAPABILITY_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The kernel number of a capability name (`CAP_SYS_ADMIN` -> 21).
pub fn capability_number(name: &str) -> Option<usize> {
    CAPABILITY_NAMES.iter().position(|n| *n == name)
}

/// The `CAP_*` name of an oci-spec capability.
pub fn capability_name(cap: Capability) -> String {
    match serde_json::to_value(cap) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{cap:?}"),
    }
}

/// Parses `CAP_SYS_ADMIN`, `cap_sys_admin` or `SYS_ADMIN`.
pub fn parse_capability(name: &str) -> Option<Capability> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
    serde_json::from_value(serde_json::Value::String(full)).ok()
}

/// A JSON value that keeps object keys in the order they were written.
#[derive(Debug, Clone, PartialEq)]
enum Ordered {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Ordered>),
    Object(Vec<(String, Ordered)>),
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Ordered, E> {
                Ok(Ordered::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Ordered, E> {
                Ok(Ordered::Number(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Ordered, E> {
                Ok(Ordered::Number(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Ordered, E> {
                serde_json::Number::from_f64(v).map(Ordered::Number).ok_or_else(|| E::custom("non-finite number"))
            }
            fn visit_str<E>(self, v: &str) -> Result<Ordered, E> {
                Ok(Ordered::String(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Ordered, E> {
                Ok(Ordered::String(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ordered, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Ordered::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Ordered>()? {
                    entries.push((k, v));
                }
                Ok(Ordered::Object(entries))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Ordered {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Ordered::Null => s.serialize_unit(),
            Ordered::Bool(b) => s.serialize_bool(*b),
            Ordered::Number(n) => n.serialize(s),
            Ordered::String(v) => s.serialize_str(v),
            Ordered::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Ordered::Object(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl Ordered {
    fn get_mut(&mut self, key: &str) -> Option<&mut Ordered> {
        match self {
            Ordered::Object(entries) => entries.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn sort_keys(&mut self) {
        if let Ordered::Object(entries) = self {
            entries.sort_by(|a, b| a.0.cmp(&b.0));
        }
    }

    fn sort_capabilities(&mut self) {
        if let Ordered::Array(items) = self {
            items.sort_by_key(|item| match item {
                Ordered::String(name) => (capability_number(name).unwrap_or(usize::MAX), name.clone()),
                _ => (usize::MAX, String::new()),
            });
        }
    }
}

fn path_mut<'a>(root: &'a mut Ordered, path: &[&str]) -> Option<&'a mut Ordered> {
    let mut node = root;
    for key in path {
        node = node.get_mut(key)?;
    }
    Some(node)
}

/// The spec as pretty JSON with a stable order (see the module docs).
pub fn to_string_pretty(spec: &Spec) -> serde_json::Result<String> {
    let text = serde_json::to_string(spec)?;
    let mut tree: Ordered = serde_json::from_str(&text)?;
    for set in ["bounding", "effective", "permitted", "inheritable", "ambient"] {
        if let Some(node) = path_mut(&mut tree, &["process", "capabilities", set]) {
            node.sort_capabilities();
        }
    }
    for map in [&["annotations"][..], &["linux", "sysctl"][..]] {
        if let Some(node) = path_mut(&mut tree, map) {
            node.sort_keys();
        }
    }
    serde_json::to_string_pretty(&tree)
}

/// The spec as a `serde_json::Value` (keys sorted) with capability sets in
/// kernel-number order: the form tests and `--explain` compare.
pub fn to_value(spec: &Spec) -> serde_json::Value {
    let mut value = serde_json::to_value(spec).expect("an oci-spec Spec always serializes");
    if let Some(caps) = value.pointer_mut("/process/capabilities").and_then(|c| c.as_object_mut()) {
        for set in caps.values_mut() {
            if let Some(items) = set.as_array_mut() {
                items.sort_by_key(|i| {
                    let name = i.as_str().unwrap_or_default().to_string();
                    (capability_number(&name).unwrap_or(usize::MAX), name)
                });
            }
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_match_oci_spec() {
        for name in CAPABILITY_NAMES {
            let cap = parse_capability(name).unwrap_or_else(|| panic!("oci-spec lacks {name}"));
            assert_eq!(capability_name(cap), name);
        }
        assert_eq!(parse_capability("sys_admin"), Some(Capability::SysAdmin));
        assert_eq!(parse_capability("CAP_NOPE"), None);
    }

    #[test]
    fn pretty_output_is_stable_and_ordered() {
        let spec = crate::defaults::default_spec("default", "");
        let a = to_string_pretty(&spec).unwrap();
        let b = to_string_pretty(&spec.clone()).unwrap();
        assert_eq!(a, b);
        assert!(a.find("ociVersion").unwrap() < a.find("\"process\"").unwrap());
        assert!(a.find("CAP_CHOWN").unwrap() < a.find("CAP_DAC_OVERRIDE").unwrap());
    }
}
