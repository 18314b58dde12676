//! Registry credentials, from the host only: a docker `config.json` style
//! auth file or `--username/--password`. Plugins never see them.
//!
//! Lookup is per host contacted: a mirror gets the credentials stored for the
//! mirror's host, never the registry's; flag credentials go to the image's
//! registry only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine as _;
use serde::Deserialize;

#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential").field("username", &self.username).finish_non_exhaustive()
    }
}

/// Credentials by registry host.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    by_host: BTreeMap<String, Credential>,
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl Credentials {
    /// `~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`).
    pub fn default_auth_file() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
    }

    /// Reads a docker `config.json`; a missing file gives no credentials.
    pub fn from_auth_file(path: &Path) -> anyhow::Result<Credentials> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Credentials::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read auth file {}", path.display())),
        };
        Self::parse_auth_file(&text).with_context(|| format!("invalid auth file {}", path.display()))
    }

    pub fn parse_auth_file(text: &str) -> anyhow::Result<Credentials> {
        let file: AuthFile = serde_json::from_str(text)?;
        let mut creds = Credentials::default();
        for (key, entry) in file.auths {
            let cred = match (&entry.auth, &entry.username, &entry.password) {
                (Some(auth), _, _) if !auth.is_empty() => {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .with_context(|| format!("auths.{key}.auth: not base64"))?;
                    let raw = String::from_utf8(raw).with_context(|| format!("auths.{key}.auth: not UTF-8"))?;
                    let (u, p) = raw
                        .split_once(':')
                        .with_context(|| format!("auths.{key}.auth: expected base64(user:password)"))?;
                    Credential { username: u.into(), password: p.into() }
                }
                (_, Some(u), Some(p)) => Credential { username: u.clone(), password: p.clone() },
                _ => continue,
            };
            creds.by_host.insert(normalize_host(&key), cred);
        }
        Ok(creds)
    }

    /// Adds credentials for `host` (flags), replacing the file's.
    pub fn insert(&mut self, host: &str, cred: Credential) {
        self.by_host.insert(normalize_host(host), cred);
    }

    /// Credentials for a host contacted.
    pub fn get(&self, host: &str) -> Option<&Credential> {
        self.by_host.get(&normalize_host(host))
    }
}

/// `https://index.docker.io/v1/` -> `docker.io`; `https://h:5000/x` -> `h:5000`.
pub fn normalize_host(key: &str) -> String {
    let k = key.trim();
    let k = k.strip_prefix("https://").or_else(|| k.strip_prefix("http://")).unwrap_or(k);
    let k = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match k.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io".into(),
        _ => k,
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

/// Parses the first Basic or Bearer challenge of a `WWW-Authenticate` value.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let get = |k: &str| params.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone());
    Some(Challenge::Bearer { realm: get("realm")?, service: get("service"), scope: get("scope") })
}

/// `k="v", k2=v2` with quoted strings (which may hold commas) and escapes.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() || c == ',' {
                break;
            }
            name.push(c);
            chars.next();
        }
        if name.is_empty() {
            return out;
        }
        while matches!(chars.peek(), Some(c) if c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            return out;
        }
        chars.next();
        while matches!(chars.peek(), Some(c) if c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n)
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((name, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_file_forms() {
        let text = r#"{"auths": {
            "https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNz"},
            "127.0.0.1:5000": {"username": "a", "password": "b:c"},
            "empty.example": {}
        }, "credsStore": "desktop"}"#;
        let c = Credentials::parse_auth_file(text).unwrap();
        assert_eq!(c.get("registry-1.docker.io").unwrap().username, "user");
        assert_eq!(c.get("docker.io").unwrap().password, "pass");
        assert_eq!(c.get("http://127.0.0.1:5000").unwrap().password, "b:c");
        assert!(c.get("empty.example").is_none());
        assert!(c.get("127.0.0.1:5001").is_none());
        assert!(!format!("{:?}", c).contains("pass"), "Debug must not print secrets");
    }

    #[test]
    fn bad_auth_is_an_error() {
        let e = Credentials::parse_auth_file(r#"{"auths":{"h":{"auth":"!!"}}}"#).unwrap_err();
        assert!(format!("{e:#}").contains("auths.h.auth"));
    }

    #[test]
    fn challenges() {
        assert_eq!(parse_challenge(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }
}
