//! Grants: which parts of the spec a plugin may touch.
//!
//! The operator lists adjustment field names per plugin (`grants = ["env",
//! "mounts"]`, or `["all"]`). An adjustment that sets a field outside its
//! plugin's grants is refused before anything is applied.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::adjustment::Adjustment;

/// One grantable part of an adjustment. The names are the WIT field names
/// (without the `-add`/`-remove`/`-set` suffixes, which share one grant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Env,
    Args,
    Cwd,
    User,
    Capabilities,
    NoNewPrivileges,
    Mounts,
    /// Device nodes and device-cgroup rules.
    Devices,
    Namespaces,
    Resources,
    Rlimits,
    Seccomp,
    ReadonlyRootfs,
    Sysctls,
    Hooks,
    Annotations,
    MaskedPaths,
    ReadonlyPaths,
    Hostname,
    /// The privileged bits of containerd's `WithPrivileged`.
    Privileged,
}

impl Field {
    pub const ALL: [Field; 20] = [
        Field::Env,
        Field::Args,
        Field::Cwd,
        Field::User,
        Field::Capabilities,
        Field::NoNewPrivileges,
        Field::Mounts,
        Field::Devices,
        Field::Namespaces,
        Field::Resources,
        Field::Rlimits,
        Field::Seccomp,
        Field::ReadonlyRootfs,
        Field::Sysctls,
        Field::Hooks,
        Field::Annotations,
        Field::MaskedPaths,
        Field::ReadonlyPaths,
        Field::Hostname,
        Field::Privileged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Field::Env => "env",
            Field::Args => "args",
            Field::Cwd => "cwd",
            Field::User => "user",
            Field::Capabilities => "capabilities",
            Field::NoNewPrivileges => "no-new-privileges",
            Field::Mounts => "mounts",
            Field::Devices => "devices",
            Field::Namespaces => "namespaces",
            Field::Resources => "resources",
            Field::Rlimits => "rlimits",
            Field::Seccomp => "seccomp",
            Field::ReadonlyRootfs => "readonly-rootfs",
            Field::Sysctls => "sysctls",
            Field::Hooks => "hooks",
            Field::Annotations => "annotations",
            Field::MaskedPaths => "masked-paths",
            Field::ReadonlyPaths => "readonly-paths",
            Field::Hostname => "hostname",
            Field::Privileged => "privileged",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A grant name that is not an adjustment field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown grant {name:?} (known: all, {known})")]
pub struct UnknownField {
    pub name: String,
    known: String,
}

impl UnknownField {
    fn new(name: &str) -> Self {
        let known = Field::ALL.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", ");
        UnknownField { name: name.to_string(), known }
    }
}

impl FromStr for Field {
    type Err = UnknownField;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim();
        // `_` accepted for TOML authors who prefer snake_case.
        let normalized = name.replace('_', "-").to_ascii_lowercase();
        Field::ALL.into_iter().find(|f| f.as_str() == normalized).ok_or_else(|| UnknownField::new(name))
    }
}

/// The set of fields a plugin may touch. Empty by default: privilege is
/// given, never assumed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants(BTreeSet<Field>);

impl Grants {
    pub fn none() -> Self {
        Grants(BTreeSet::new())
    }

    pub fn all() -> Self {
        Grants(Field::ALL.into_iter().collect())
    }

    pub fn contains(&self, field: Field) -> bool {
        self.0.contains(&field)
    }

    pub fn insert(&mut self, field: Field) {
        self.0.insert(field);
    }

    pub fn iter(&self) -> impl Iterator<Item = Field> + '_ {
        self.0.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses grant names; `all` grants everything. An unknown name is an
    /// error naming it.
    pub fn parse<I, S>(names: I) -> Result<Self, UnknownField>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut grants = Grants::none();
        for name in names {
            let name = name.as_ref().trim();
            if name.is_empty() {
                continue;
            }
            if name.eq_ignore_ascii_case("all") {
                grants.0.extend(Field::ALL);
            } else {
                grants.insert(name.parse()?);
            }
        }
        Ok(grants)
    }

    /// The fields `adjustment` touches that these grants do not cover.
    pub fn missing(&self, adjustment: &Adjustment) -> Vec<Field> {
        touched_fields(adjustment).into_iter().filter(|f| !self.contains(*f)).collect()
    }
}

impl FromIterator<Field> for Grants {
    fn from_iter<T: IntoIterator<Item = Field>>(iter: T) -> Self {
        Grants(iter.into_iter().collect())
    }
}

/// `env,mounts,capabilities` (a comma-separated list, as a flag takes it).
impl FromStr for Grants {
    type Err = UnknownField;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Grants::parse(s.split(','))
    }
}

impl fmt::Display for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|f| f.as_str()).collect();
        f.write_str(&names.join(","))
    }
}

impl Serialize for Grants {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|f| f.as_str()))
    }
}

impl<'de> Deserialize<'de> for Grants {
    /// A list of names (`["env", "mounts"]`) or one comma-separated string.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            List(Vec<String>),
            One(String),
        }
        match Repr::deserialize(deserializer)? {
            Repr::List(names) => Grants::parse(names),
            Repr::One(text) => text.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// Every field an adjustment sets (non-empty / `Some`), in [`Field`] order.
pub fn touched_fields(a: &Adjustment) -> Vec<Field> {
    let mut fields = Vec::new();
    let mut touch = |cond: bool, field: Field| {
        if cond {
            fields.push(field);
        }
    };
    touch(!a.env_set.is_empty() || !a.env_unset.is_empty(), Field::Env);
    touch(a.args.is_some(), Field::Args);
    touch(a.cwd.is_some(), Field::Cwd);
    touch(a.user.is_some(), Field::User);
    touch(!a.capabilities_add.is_empty() || !a.capabilities_drop.is_empty(), Field::Capabilities);
    touch(a.no_new_privileges.is_some(), Field::NoNewPrivileges);
    touch(!a.mounts_add.is_empty() || !a.mounts_remove.is_empty(), Field::Mounts);
    touch(!a.devices.is_empty() || !a.device_rules.is_empty(), Field::Devices);
    touch(!a.namespaces.is_empty(), Field::Namespaces);
    touch(a.resources.as_ref().is_some_and(|r| *r != Default::default()), Field::Resources);
    touch(!a.rlimits.is_empty(), Field::Rlimits);
    touch(a.seccomp.is_some(), Field::Seccomp);
    touch(a.readonly_rootfs.is_some(), Field::ReadonlyRootfs);
    touch(!a.sysctls.is_empty(), Field::Sysctls);
    touch(!a.hooks.is_empty(), Field::Hooks);
    touch(!a.annotations.is_empty(), Field::Annotations);
    touch(!a.masked_paths_add.is_empty() || !a.masked_paths_remove.is_empty(), Field::MaskedPaths);
    touch(!a.readonly_paths_add.is_empty() || !a.readonly_paths_remove.is_empty(), Field::ReadonlyPaths);
    touch(a.hostname.is_some(), Field::Hostname);
    touch(a.privileged.any(), Field::Privileged);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_all() {
        let g = Grants::parse(["env", "no-new-privileges", "readonly_rootfs"]).unwrap();
        assert!(g.contains(Field::Env));
        assert!(g.contains(Field::NoNewPrivileges));
        assert!(g.contains(Field::ReadonlyRootfs));
        assert!(!g.contains(Field::Mounts));
        assert_eq!(Grants::parse(["all"]).unwrap(), Grants::all());
        assert_eq!("env, mounts".parse::<Grants>().unwrap().to_string(), "env,mounts");
        for f in Field::ALL {
            assert_eq!(f.as_str().parse::<Field>().unwrap(), f);
        }
    }

    #[test]
    fn unknown_name_is_named() {
        let err = Grants::parse(["env", "kernel"]).unwrap_err();
        assert_eq!(err.name, "kernel");
        assert!(err.to_string().contains("\"kernel\""), "{err}");
    }

    #[test]
    fn deserializes_list_or_string() {
        #[derive(Deserialize)]
        struct T {
            grants: Grants,
        }
        let t: T = toml::from_str(r#"grants = ["env", "mounts"]"#).unwrap();
        assert_eq!(t.grants.to_string(), "env,mounts");
        let t: T = toml::from_str(r#"grants = "all""#).unwrap();
        assert_eq!(t.grants, Grants::all());
        let err = toml::from_str::<T>(r#"grants = ["envv"]"#).err().unwrap();
        assert!(err.to_string().contains("envv"), "{err}");
    }

    #[test]
    fn missing_lists_fields_outside_grants() {
        let mut a = Adjustment::default();
        a.env_unset.push("X".into());
        a.hostname = Some("h".into());
        a.privileged.sysfs_rw = true;
        let g = Grants::parse(["env"]).unwrap();
        assert_eq!(g.missing(&a), vec![Field::Hostname, Field::Privileged]);
        assert!(Grants::all().missing(&a).is_empty());
        assert!(Grants::none().missing(&Adjustment::default()).is_empty());
    }
}
