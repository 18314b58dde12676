//! Where a pull fetches from: an ordered list of [`PullSource`]s, produced by
//! the source-resolver plugin chain (converted by the caller) or, when no
//! plugin is configured, [`PullSource::registry`] for the image's own registry.

use std::fmt;

use oci_spec::distribution::Reference;

/// `http` only where a source says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl std::str::FromStr for Scheme {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "http" => Ok(Scheme::Http),
            "https" => Ok(Scheme::Https),
            _ => Err(format!("invalid scheme {s:?}: expected http or https")),
        }
    }
}

/// What a host may be used for (containerd hosts.toml `capabilities`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Capabilities {
    /// Fetch manifests and blobs by digest.
    pub pull: bool,
    /// Resolve a tag to a digest.
    pub resolve: bool,
    pub push: bool,
}

impl Capabilities {
    pub const ALL: Capabilities = Capabilities { pull: true, resolve: true, push: true };
    pub const PULL_RESOLVE: Capabilities = Capabilities { pull: true, resolve: true, push: false };
}

/// One registry endpoint to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSource {
    /// `host` or `host:port`.
    pub host: String,
    pub scheme: Scheme,
    /// API root on that host: `/v2` unless a mirror says otherwise
    /// (`/v2/prefix` puts repositories under `prefix/`).
    pub path_prefix: String,
    pub capabilities: Capabilities,
    /// Accept any TLS certificate from this host.
    pub skip_verify: bool,
    /// Extra request headers (never credentials: those come from the host).
    pub headers: Vec<(String, String)>,
}

impl PullSource {
    /// The image's own registry over https, as used when no source-resolver
    /// plugin is configured.
    pub fn registry(reference: &Reference) -> PullSource {
        PullSource {
            host: api_host(reference.registry()).to_string(),
            scheme: Scheme::Https,
            path_prefix: "/v2".into(),
            capabilities: Capabilities::ALL,
            skip_verify: false,
            headers: Vec::new(),
        }
    }

    /// A mirror or registry at `host` with the given scheme and the default API root.
    pub fn new(host: impl Into<String>, scheme: Scheme) -> PullSource {
        PullSource {
            host: host.into(),
            scheme,
            path_prefix: "/v2".into(),
            capabilities: Capabilities::PULL_RESOLVE,
            skip_verify: false,
            headers: Vec::new(),
        }
    }

    /// Checks what a plugin returned before it is used.
    pub fn validate(&self) -> Result<(), String> {
        let host_ok = !self.host.is_empty()
            && self.host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
        if !host_ok {
            return Err(format!("invalid source host {:?}", self.host));
        }
        if !self.path_prefix.starts_with('/')
            || self.path_prefix.contains("..")
            || self.path_prefix.contains(['?', '#', ' '])
        {
            return Err(format!("invalid path prefix {:?} for {}", self.path_prefix, self.host));
        }
        for (name, _) in &self.headers {
            if name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("cookie") {
                return Err(format!("source {} sets header {name}: credentials come from the host only", self.host));
            }
        }
        Ok(())
    }

    /// `scheme://host/prefix` with no trailing slash.
    pub fn base_url(&self) -> String {
        format!("{}://{}{}", self.scheme.as_str(), self.host, self.path_prefix.trim_end_matches('/'))
    }
}

impl fmt::Display for PullSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base_url())
    }
}

/// The host that serves a registry's API: Docker Hub's name differs.
pub fn api_host(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_source_is_the_registry_over_https() {
        let r: Reference = "busybox:1.36".parse().unwrap();
        let s = PullSource::registry(&r);
        assert_eq!(s.base_url(), "https://registry-1.docker.io/v2");
        let r: Reference = "127.0.0.1:5000/a/b@sha256:0000000000000000000000000000000000000000000000000000000000000000"
            .parse()
            .unwrap();
        assert_eq!(PullSource::registry(&r).base_url(), "https://127.0.0.1:5000/v2");
    }

    #[test]
    fn validation() {
        let mut s = PullSource::new("mirror.local:5000", Scheme::Http);
        assert!(s.validate().is_ok());
        s.headers.push(("Authorization".into(), "Basic x".into()));
        assert!(s.validate().unwrap_err().contains("credentials"));
        let mut s = PullSource::new("a/b", Scheme::Https);
        assert!(s.validate().is_err());
        s.host = "ok".into();
        s.path_prefix = "v2".into();
        assert!(s.validate().is_err());
    }
}
