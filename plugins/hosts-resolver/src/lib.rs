//! containerd's `hosts.toml` (certs.d) semantics as a source-resolver.
//!
//! The plugin config holds one hosts.toml table per registry, keyed by the
//! registry name as containerd's `certs.d/<registry>/` directories are
//! (`docker.io`, `localhost:5000`), with `_default` for every other registry:
//!
//! ```toml
//! [[plugin]]
//! name = "hosts-resolver"
//! path = "target/wasm32-wasip2/plugin/hosts-resolver.wasm"
//! kind = "source-resolver"
//! [plugin.config."docker.io"]
//! server = "https://registry-1.docker.io"
//! [[plugin.config."docker.io".host]]
//! url = "https://mirror.example.com"
//! capabilities = ["pull", "resolve"]
//! [[plugin.config."docker.io".host]]
//! url = "http://10.0.0.1:5000/base"
//! capabilities = ["pull"]
//! skip_verify = true
//! override_path = true
//! header = { x-team = "infra" }
//! ```
//!
//! `host` may also be written as in containerd's hosts.toml, a table keyed by
//! URL (`[plugin.config."docker.io".host."https://mirror.example.com"]`); its
//! entries are taken in the order of the JSON text the host passes, which
//! keeps TOML's order only if the host's TOML → JSON conversion does. The
//! array form above (`url` key) is ordered whatever the loader does.
//!
//! Result: the `host` entries in the order written, then the server (the
//! `server` key, or the registry itself: `registry-1.docker.io` for
//! `docker.io`, `http` for localhost). As in containerd, a host without
//! `capabilities` may do everything; the path prefix is the URL's path plus
//! `/v2` unless `override_path`; the top-level `skip_verify` and `header`
//! apply to the server, the top-level `capabilities` only to an explicit
//! `server` (the default one may do everything). Localhost registries get
//! containerd's defaults (http on a non-443 port, TLS verification skipped).
//! A table may be keyed `host:port` or certs.d's `host_port_`. Hosts that cannot serve
//! the requested operation (resolve, pull = pull or resolve, push) are left
//! out. TLS files (`ca`, `client`) are
//! the host's business: accepted and ignored here.

use berth_sdk::prelude::*;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The key of the table used for registries without their own.
pub const DEFAULT_KEY: &str = "_default";

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct HostEntry {
    url: Option<String>,
    capabilities: Option<Vec<String>>,
    skip_verify: bool,
    override_path: bool,
    header: Headers,
    ca: Option<Value>,
    client: Option<Value>,
    dial_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct HostsFile {
    server: Option<String>,
    capabilities: Option<Vec<String>>,
    skip_verify: bool,
    override_path: bool,
    header: Headers,
    ca: Option<Value>,
    client: Option<Value>,
    dial_timeout: Option<String>,
    host: OrderedHosts,
}

/// `header = { name = "v" | ["v1", "v2"] }`, in document order.
#[derive(Debug, Default)]
struct Headers(Vec<KeyValue>);

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Headers;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table of header names to a string or a list of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum One {
                    S(String),
                    L(Vec<String>),
                }
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, One>()? {
                    match v {
                        One::S(s) => out.push(KeyValue::new(k, s)),
                        One::L(l) => out.extend(l.into_iter().map(|s| KeyValue::new(k.clone(), s))),
                    }
                }
                Ok(Headers(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// `host` as a table (kept in document order) or an array of tables with `url`.
#[derive(Debug, Default)]
struct OrderedHosts(Vec<(String, HostEntry)>);

impl<'de> Deserialize<'de> for OrderedHosts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedHosts;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table of host URLs, or an array of tables with `url`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedHosts, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, HostEntry>()? {
                    out.push((k, v));
                }
                Ok(OrderedHosts(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OrderedHosts, A::Error> {
                let mut out = Vec::new();
                while let Some(mut v) = seq.next_element::<HostEntry>()? {
                    let url = v.url.take().ok_or_else(|| de::Error::custom("a `host` array entry needs `url`"))?;
                    out.push((url, v));
                }
                Ok(OrderedHosts(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Where in the config a value sits, for error messages: `[docker.io]`,
/// `[docker.io].server`, `[docker.io].host."https://m"`. Rendered only when
/// an error is.
#[derive(Clone, Copy)]
struct At<'a> {
    table: &'a str,
    place: Place<'a>,
}

#[derive(Clone, Copy)]
enum Place<'a> {
    Table,
    Server,
    Host(&'a str),
}

impl<'a> At<'a> {
    fn table(table: &'a str) -> Self {
        At { table, place: Place::Table }
    }
    fn server(self) -> Self {
        At { place: Place::Server, ..self }
    }
    fn host(self, url: &'a str) -> Self {
        At { place: Place::Host(url), ..self }
    }
}

impl std::fmt::Display for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}]", self.table)?;
        match self.place {
            Place::Table => Ok(()),
            Place::Server => f.write_str(".server"),
            Place::Host(url) => write!(f, ".host.\"{url}\""),
        }
    }
}

fn capabilities(list: &Option<Vec<String>>, at: At) -> Result<HostCapabilities, PluginError> {
    let Some(list) = list else {
        return Ok(HostCapabilities::all());
    };
    let mut caps = HostCapabilities::empty();
    for c in list {
        caps |= if c.eq_ignore_ascii_case("pull") {
            HostCapabilities::PULL
        } else if c.eq_ignore_ascii_case("resolve") {
            HostCapabilities::RESOLVE
        } else if c.eq_ignore_ascii_case("push") {
            HostCapabilities::PUSH
        } else {
            let other = c.to_ascii_lowercase();
            return Err(PluginError::invalid_config(format!("hosts-resolver: {at}: unknown capability `{other}`")));
        };
    }
    Ok(caps)
}

/// `/a//b/./c/` → `/a/b/c`, as Go's `path.Clean` for absolute paths.
fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Splits `[scheme://]host[/path]` into (scheme, host, path).
fn parse_url<'u>(raw: &'u str, at: At) -> Result<(&'u str, &'u str, &'u str), PluginError> {
    let bad = |why: &str| PluginError::invalid_config(format!("hosts-resolver: {at}: `{raw}`: {why}"));
    // `split_once("://")` without a substring searcher's set-up.
    let (scheme, rest) = match raw.as_bytes().windows(3).position(|w| w == b"://") {
        Some(i) => (&raw[..i], &raw[i + 3..]),
        None => ("https", raw),
    };
    if scheme != "http" && scheme != "https" {
        return Err(bad("scheme must be http or https"));
    }
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if host.is_empty()
        || host.ends_with(':')
        || host.contains(|c: char| c.is_whitespace() || c == '@' || c == '?' || c == '#')
    {
        return Err(bad("bad host"));
    }
    Ok((scheme, host, path))
}

fn path_prefix(path: &str, override_path: bool) -> String {
    if path.is_empty() {
        // containerd: `/v2`, unless override_path keeps the empty root.
        return if override_path { String::new() } else { "/v2".to_string() };
    }
    let p = clean_path(path);
    if !p.ends_with("/v2") && !override_path { format!("{p}/v2") } else { p }
}

/// The port of `host:port` / `[v6]:port`, if any.
fn port_of(host: &str) -> Option<&str> {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once("]:").map(|(_, p)| p);
    }
    if host.matches(':').count() == 1 { host.rsplit_once(':').map(|(_, p)| p) } else { None }
}

/// containerd's certs.d directory name for a registry: `host:port` → `host_port_`.
pub fn host_directory(registry: &str) -> String {
    match registry.rfind(':') {
        Some(i) if i > 0 => format!("{}_{}_", &registry[..i], &registry[i + 1..]),
        _ => registry.to_string(),
    }
}

/// Whether the table `key` is `registry`'s: the registry's name or its
/// certs.d directory name ([`host_directory`]).
fn is_table_of(key: &str, registry: &str) -> bool {
    if key == registry {
        return true;
    }
    match registry.rfind(':') {
        Some(i) if i > 0 => {
            let (name, port) = (&registry[..i], &registry[i + 1..]);
            key.len() == registry.len() + 1
                && key.starts_with(name)
                && key[name.len()..].strip_prefix('_').and_then(|k| k.strip_suffix('_')) == Some(port)
        }
        _ => false,
    }
}

/// `localhost`, `127.0.0.0/8` and `::1`, with or without a port (containerd's `IsLocalhost`).
pub fn is_localhost(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else if host.matches(':').count() == 1 {
        host.split(':').next().unwrap_or("")
    } else {
        host
    };
    name == "localhost" || name == "::1" || name.starts_with("127.")
}

fn entry_host(url: &str, e: &HostEntry, at: At) -> Result<RegistryHost, PluginError> {
    let (scheme, host, path) = parse_url(url, at)?;
    let _ = (&e.ca, &e.client, &e.dial_timeout);
    Ok(RegistryHost {
        host: host.to_string(),
        scheme: scheme.to_string(),
        path_prefix: path_prefix(path, e.override_path),
        capabilities: capabilities(&e.capabilities, at)?,
        skip_verify: e.skip_verify,
        headers: e.header.0.clone(),
    })
}

/// The ordered hosts for `registry` under `file` (containerd's `ConfigureHosts`).
fn hosts_for(registry: &str, file: &HostsFile, at: At) -> Result<Vec<RegistryHost>, PluginError> {
    let mut hosts = Vec::with_capacity(file.host.0.len() + 1);
    for (url, entry) in &file.host.0 {
        hosts.push(entry_host(url, entry, at.host(url))?);
    }
    let _ = (&file.ca, &file.client, &file.dial_timeout);
    let server = match &file.server {
        Some(server) => {
            let (scheme, host, path) = parse_url(server, at.server())?;
            RegistryHost {
                host: host.to_string(),
                scheme: scheme.to_string(),
                path_prefix: path_prefix(path, file.override_path),
                capabilities: capabilities(&file.capabilities, at)?,
                skip_verify: file.skip_verify,
                headers: file.header.0.clone(),
            }
        }
        None => {
            // containerd's default host: the registry itself with every
            // capability (the table's own `capabilities` do not apply);
            // `skip_verify` and `header` still do.
            let mut skip_verify = file.skip_verify;
            let (host, scheme) = if registry == "docker.io" {
                ("registry-1.docker.io".to_string(), "https")
            } else if is_localhost(registry) {
                // https on the default port or 443, else http; TLS
                // verification skipped for localhost unless on port 80.
                let port = port_of(registry);
                if port != Some("80") {
                    skip_verify = true;
                }
                (registry.to_string(), if matches!(port, None | Some("443")) { "https" } else { "http" })
            } else {
                (registry.to_string(), "https")
            };
            RegistryHost {
                host,
                scheme: scheme.to_string(),
                path_prefix: "/v2".into(),
                capabilities: HostCapabilities::all(),
                skip_verify,
                headers: file.header.0.clone(),
            }
        }
    };
    hosts.push(server);
    Ok(hosts)
}

fn needed(op: Operation) -> HostCapabilities {
    match op {
        Operation::Resolve => HostCapabilities::RESOLVE,
        Operation::Pull => HostCapabilities::PULL | HostCapabilities::RESOLVE,
        Operation::Push => HostCapabilities::PUSH,
    }
}

pub struct HostsResolver;

impl SourceResolver for HostsResolver {
    fn info() -> PluginInfo {
        berth_sdk::plugin_info!("containerd hosts.toml: mirrors in order, then the registry")
    }

    fn resolve(request: ResolveRequest, config: Config) -> Result<Vec<Source>, PluginError> {
        let registry = &request.reference.registry;
        let hosts = match choose_table(config.json(), registry)? {
            Some((key, file)) => hosts_for(registry, &file, At::table(&key))?,
            None => hosts_for(registry, &HostsFile::default(), At::table("default"))?,
        };
        let need = needed(request.operation);
        let sources: Vec<Source> =
            hosts.into_iter().filter(|h| h.capabilities.intersects(need)).map(Source::registry).collect();
        // `{reference}: {n} source(s)`, without format! (a third of the
        // cost of this log line in wasm).
        let mut line = request.reference.to_string_full();
        line.push_str(": ");
        push_count(&mut line, sources.len());
        line.push_str(" source(s)");
        berth_sdk::log::debug(&line);
        Ok(sources)
    }
}

/// Appends `n` in decimal.
fn push_count(out: &mut String, n: usize) {
    if n >= 10 {
        push_count(out, n / 10);
    }
    out.push(char::from(b'0' + (n % 10) as u8));
}

/// Reads the config text (a table of registries) in one pass, in document
/// order, and returns the table for `registry`: its own (keyed by its name
/// or certs.d directory name; of two, the greater key, and of a repeated key
/// the last), else `_default`, else none. Every table is checked, so a typo
/// in another registry's table is reported at once rather than on its first
/// pull; `host` entries keep the order written.
fn choose_table(text: &str, registry: &str) -> Result<Option<(String, HostsFile)>, PluginError> {
    struct Tables<'a> {
        registry: &'a str,
        /// The key whose table is being read (for the error message).
        reading: &'a mut Option<String>,
    }
    impl<'de> Visitor<'de> for Tables<'_> {
        type Value = Option<(String, HostsFile)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a table of registries")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut exact: Option<(String, HostsFile)> = None;
            let mut default: Option<(String, HostsFile)> = None;
            while let Some(key) = map.next_key::<String>()? {
                *self.reading = Some(key);
                let file = map.next_value::<HostsFile>()?;
                let key = self.reading.take().unwrap_or_default();
                if is_table_of(&key, self.registry) {
                    if exact.as_ref().is_none_or(|(k, _)| key >= *k) {
                        exact = Some((key, file));
                    }
                } else if key == DEFAULT_KEY {
                    default = Some((key, file));
                }
            }
            Ok(exact.or(default))
        }
    }
    let mut reading = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let chosen = de.deserialize_map(Tables { registry, reading: &mut reading }).and_then(|c| de.end().map(|()| c));
    chosen.map_err(|e| match reading {
        Some(key) => PluginError::invalid_config(format!("hosts-resolver: [{key}]: {e}")),
        None if e.is_data() => PluginError::invalid_config("hosts-resolver: config must be a table of registries"),
        None => Config::invalid(&e),
    })
}

berth_sdk::export!(HostsResolver as source_resolver);

#[cfg(test)]
mod tests;
