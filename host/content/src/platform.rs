//! Platforms (`os/arch[/variant]`) and matching them against index entries.

use std::fmt;
use std::str::FromStr;

use anyhow::bail;

/// A platform as `--platform` takes it, normalised like containerd's
/// `platforms.Normalize` (`x86_64` -> `amd64`, `aarch64` -> `arm64`,
/// `arm64/v8` -> `arm64`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let os = os.to_ascii_lowercase();
        let (architecture, variant) = normalize_arch(&architecture.to_ascii_lowercase(), variant.map(str::to_ascii_lowercase));
        Platform { os, architecture, variant }
    }

    /// The platform berth runs on (linux/amd64 on x86_64).
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "riscv64" => "riscv64",
            "s390x" => "s390x",
            other => other,
        };
        Platform::new("linux", arch, None)
    }

    /// Whether an image for `other` runs here. A platform without a variant
    /// accepts any variant of its architecture; with one, it must match.
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        let other = Platform::new(os, architecture, variant.filter(|v| !v.is_empty()));
        if other.os != self.os || other.architecture != self.architecture {
            return false;
        }
        match (&self.variant, &other.variant) {
            (None, _) => true,
            (Some(want), Some(have)) => want == have,
            (Some(_), None) => false,
        }
    }

    /// Match quality for choosing among several candidates: higher is better.
    pub fn score(&self, os: &str, architecture: &str, variant: Option<&str>) -> Option<u8> {
        if !self.matches(os, architecture, variant) {
            return None;
        }
        let other = Platform::new(os, architecture, variant.filter(|v| !v.is_empty()));
        Some(if other.variant == self.variant { 2 } else { 1 })
    }
}

fn normalize_arch(arch: &str, variant: Option<String>) -> (String, Option<String>) {
    match arch {
        "x86_64" | "x86-64" | "amd64" => ("amd64".into(), variant.filter(|v| v != "v1")),
        "aarch64" | "arm64" => ("arm64".into(), variant.filter(|v| v != "v8")),
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "arm" => ("arm".into(), Some(variant.unwrap_or_else(|| "v7".into()))),
        "i386" | "i686" => ("386".into(), variant),
        other => (other.to_string(), variant),
    }
}

impl Default for Platform {
    fn default() -> Self {
        Platform::host()
    }
}

impl FromStr for Platform {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) || parts.len() > 3 {
            bail!("platform {s:?}: want os/arch[/variant] (e.g. linux/amd64, linux/arm64/v8)");
        }
        Ok(match parts.as_slice() {
            // A lone arch (`arm64`) means linux/arch, as containerd parses it.
            [one] if *one != "linux" => Platform::new("linux", one, None),
            [os] => Platform::new(os, Platform::host().architecture.as_str(), None),
            [os, arch] => Platform::new(os, arch, None),
            [os, arch, variant] => Platform::new(os, arch, Some(variant)),
            _ => unreachable!(),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let p: Platform = "linux/amd64".parse().unwrap();
        assert_eq!(p.to_string(), "linux/amd64");
        assert!(p.matches("linux", "amd64", None));
        assert!(p.matches("linux", "x86_64", None));
        assert!(!p.matches("linux", "arm64", None));
        assert!(!p.matches("windows", "amd64", None));
        let arm: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(arm.to_string(), "linux/arm64");
        assert!(arm.matches("linux", "arm64", Some("v8")));
        assert!(arm.matches("linux", "aarch64", None));
        let v7: Platform = "linux/arm/v7".parse().unwrap();
        assert!(v7.matches("linux", "arm", None));
        assert!(!v7.matches("linux", "arm", Some("v6")));
        assert_eq!("arm64".parse::<Platform>().unwrap().to_string(), "linux/arm64");
        for bad in ["", "linux/", "a/b/c/d", "/amd64"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }
}
