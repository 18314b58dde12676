use super::*;
use berth_sdk::testing;

fn hosts(req: ResolveRequest, cfg: &str) -> Result<Vec<RegistryHost>, PluginError> {
    testing::resolve::<HostsResolver>(req, cfg).map(|sources| {
        sources
            .into_iter()
            .map(|s| match s.location {
                SourceLocation::Registry(h) => h,
                other => panic!("{other:?}"),
            })
            .collect()
    })
}

fn pull(registry: &str) -> ResolveRequest {
    testing::resolve_request(registry, "library/busybox", "latest")
}

#[test]
fn no_config_is_the_registry_itself() {
    let h = hosts(pull("docker.io"), "").unwrap();
    assert_eq!(h, vec![RegistryHost::https("registry-1.docker.io")]);
    let h = hosts(pull("quay.io"), "{}").unwrap();
    assert_eq!(h, vec![RegistryHost::https("quay.io")]);
    let h = hosts(pull("localhost:5000"), "{}").unwrap();
    assert_eq!((h[0].scheme.as_str(), h[0].host.as_str(), h[0].skip_verify), ("http", "localhost:5000", true));
    let h = hosts(pull("127.0.0.1:80"), "{}").unwrap();
    assert_eq!((h[0].scheme.as_str(), h[0].skip_verify), ("http", false));
    let h = hosts(pull("localhost"), "{}").unwrap();
    assert_eq!((h[0].scheme.as_str(), h[0].skip_verify), ("https", true));
}

// Keys deliberately not in alphabetical order: the document order must win.
const CFG: &str = r#"{
  "docker.io": {
    "server": "https://registry-1.docker.io",
    "host": {
      "https://z-mirror.example.com": {"capabilities": ["pull", "resolve"]},
      "http://10.0.0.1:5000/base": {"capabilities": ["pull"], "skip_verify": true, "header": {"x-team": "infra", "x-multi": ["a", "b"]}},
      "a-mirror.example.com/custom/path": {"override_path": true}
    }
  },
  "_default": {"host": {"https://fallback.example.com": {"capabilities": ["resolve"]}}}
}"#;

#[test]
fn mirrors_in_order_then_server() {
    let h = hosts(pull("docker.io"), CFG).unwrap();
    let names: Vec<_> = h.iter().map(|h| (h.scheme.as_str(), h.host.as_str(), h.path_prefix.as_str())).collect();
    assert_eq!(
        names,
        vec![
            ("https", "z-mirror.example.com", "/v2"),
            ("http", "10.0.0.1:5000", "/base/v2"),
            ("https", "a-mirror.example.com", "/custom/path"),
            ("https", "registry-1.docker.io", "/v2"),
        ]
    );
    assert_eq!(h[0].capabilities, HostCapabilities::PULL | HostCapabilities::RESOLVE);
    assert_eq!(h[1].capabilities, HostCapabilities::PULL);
    assert!(h[1].skip_verify && !h[0].skip_verify);
    assert_eq!(
        h[1].headers,
        vec![KeyValue::new("x-team", "infra"), KeyValue::new("x-multi", "a"), KeyValue::new("x-multi", "b")]
    );
    assert_eq!(h[2].capabilities, HostCapabilities::all(), "no capabilities = all");
    assert_eq!(h[3].capabilities, HostCapabilities::all());
}

#[test]
fn operation_filters_hosts() {
    let mut req = pull("docker.io");
    req.operation = Operation::Resolve;
    let h = hosts(req.clone(), CFG).unwrap();
    assert_eq!(
        h.iter().map(|h| h.host.as_str()).collect::<Vec<_>>(),
        ["z-mirror.example.com", "a-mirror.example.com", "registry-1.docker.io"]
    );
    req.operation = Operation::Push;
    let h = hosts(req, CFG).unwrap();
    assert_eq!(h.iter().map(|h| h.host.as_str()).collect::<Vec<_>>(), ["a-mirror.example.com", "registry-1.docker.io"]);
}

#[test]
fn default_table_and_server_fields() {
    let h = hosts(pull("ghcr.io"), CFG).unwrap();
    assert_eq!(h.iter().map(|h| h.host.as_str()).collect::<Vec<_>>(), ["fallback.example.com", "ghcr.io"]);
    let cfg = r#"{"r.example.com": {"server": "http://r.example.com:8080/api", "capabilities": ["pull"], "skip_verify": true, "header": {"a": "b"}}}"#;
    let h = hosts(pull("r.example.com"), cfg).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(
        (h[0].scheme.as_str(), h[0].host.as_str(), h[0].path_prefix.as_str()),
        ("http", "r.example.com:8080", "/api/v2")
    );
    assert_eq!(h[0].capabilities, HostCapabilities::PULL);
    assert!(h[0].skip_verify);
    assert_eq!(h[0].headers, vec![KeyValue::new("a", "b")]);
}

#[test]
fn array_form_and_tls_keys() {
    let cfg = r#"{"docker.io": {"host": [
        {"url": "https://m2.example.com", "capabilities": ["pull"], "ca": "/etc/ca.pem"},
        {"url": "https://m1.example.com/v2"}
    ]}}"#;
    let h = hosts(pull("docker.io"), cfg).unwrap();
    let names: Vec<_> = h.iter().map(|h| (h.host.as_str(), h.path_prefix.as_str())).collect();
    assert_eq!(names, [("m2.example.com", "/v2"), ("m1.example.com", "/v2"), ("registry-1.docker.io", "/v2")]);
}

#[test]
fn config_errors_name_the_place() {
    let e =
        hosts(pull("docker.io"), r#"{"docker.io": {"host": {"https://m": {"capabilities": ["fetch"]}}}}"#).unwrap_err();
    assert!(matches!(&e, PluginError::InvalidConfig(m) if m.contains("fetch") && m.contains("https://m")), "{e:?}");
    let e = hosts(pull("docker.io"), r#"{"quay.io": {"servr": "x"}}"#).unwrap_err();
    assert!(matches!(&e, PluginError::InvalidConfig(m) if m.contains("[quay.io]") && m.contains("servr")), "{e:?}");
    let e = hosts(pull("docker.io"), r#"{"docker.io": {"server": "ftp://x"}}"#).unwrap_err();
    assert!(e.message().contains("scheme"));
    let e = hosts(pull("docker.io"), r#"{"docker.io": {"host": [{"capabilities": ["pull"]}]}}"#).unwrap_err();
    assert!(e.message().contains("url"));
}

#[test]
fn default_server_has_every_capability_and_port_dirs_match() {
    // Top-level capabilities only apply to an explicit `server`.
    let cfg =
        r#"{"quay.io": {"capabilities": ["pull"], "host": {"https://m.example.com": {"capabilities": ["PULL"]}}}}"#;
    let h = hosts(pull("quay.io"), cfg).unwrap();
    assert_eq!(h[0].capabilities, HostCapabilities::PULL, "capabilities are case-insensitive");
    assert_eq!(h[1].capabilities, HostCapabilities::all());
    // certs.d spelling of host:port, and an exact table wins over _default.
    let cfg = r#"{"_default": {"host": [{"url": "https://d.example.com"}]}, "r.local_5000_": {"host": [{"url": "https://m.local"}]}}"#;
    let h = hosts(pull("r.local:5000"), cfg).unwrap();
    assert_eq!(h[0].host, "m.local");
    assert_eq!(host_directory("r.local:5000"), "r.local_5000_");
    let h =
        hosts(pull("docker.io"), r#"{"docker.io": {"host": [{"url": "https://m", "override_path": true}]}}"#).unwrap();
    assert_eq!(h[0].path_prefix, "", "override_path keeps an empty root");
}

#[test]
fn helpers() {
    assert_eq!(clean_path("/a//b/./c/"), "/a/b/c");
    assert_eq!(path_prefix("/x/v2/", false), "/x/v2");
    assert!(is_localhost("localhost") && is_localhost("[::1]:5000") && is_localhost("127.0.0.2:80"));
    assert!(!is_localhost("localhost.example.com"));
}

#[test]
fn documented_toml_through_json() {
    // The module doc's berth.toml snippet, converted the way a host would
    // (TOML table -> serde_json::Value -> text).
    let doc = include_str!("lib.rs");
    let toml_text: String = doc
        .lines()
        .skip_while(|l| !l.starts_with("//! ```toml"))
        .skip(1)
        .take_while(|l| !l.starts_with("//! ```"))
        .map(|l| format!("{}\n", l.trim_start_matches("//!").trim_start()))
        .collect();
    let table: toml::Table = toml::from_str(&toml_text).unwrap();
    let config = serde_json::to_value(&table["plugin"][0]["config"]).unwrap().to_string();
    let h = hosts(pull("docker.io"), &config).unwrap();
    let names: Vec<_> = h.iter().map(|h| (h.host.as_str(), h.path_prefix.as_str(), h.skip_verify)).collect();
    assert_eq!(
        names,
        [
            ("mirror.example.com", "/v2", false),
            ("10.0.0.1:5000", "/base", true),
            ("registry-1.docker.io", "/v2", false)
        ]
    );
    assert_eq!(h[1].headers, vec![KeyValue::new("x-team", "infra")]);
}

#[test]
fn table_choice_and_top_level_errors() {
    // Of a registry's two spellings, the certs.d one (the greater key) wins,
    // in whichever order they are written; a repeated key's last table wins.
    for cfg in [
        r#"{"r.local:5000": {"host": [{"url": "https://a"}]}, "r.local_5000_": {"host": [{"url": "https://b"}]}}"#,
        r#"{"r.local_5000_": {"host": [{"url": "https://b"}]}, "r.local:5000": {"host": [{"url": "https://a"}]}}"#,
        r#"{"r.local_5000_": {"host": [{"url": "https://a"}]}, "r.local_5000_": {"host": [{"url": "https://b"}]}}"#,
    ] {
        assert_eq!(hosts(pull("r.local:5000"), cfg).unwrap()[0].host, "b", "{cfg}");
    }
    // _default only when the registry has no table, wherever it is written.
    let cfg = r#"{"docker.io": {"host": [{"url": "https://m"}]}, "_default": {"host": [{"url": "https://d"}]}}"#;
    assert_eq!(hosts(pull("docker.io"), cfg).unwrap()[0].host, "m");
    assert_eq!(hosts(pull("quay.io"), cfg).unwrap()[0].host, "d");
    assert!(!is_table_of("r.local_5001_", "r.local:5000") && !is_table_of("r.local_5000", "r.local:5000"));
    // Another registry's broken table is still an error.
    let e = hosts(pull("docker.io"), r#"{"docker.io": {}, "quay.io": {"host": 5}}"#).unwrap_err();
    assert!(matches!(&e, PluginError::InvalidConfig(m) if m.contains("[quay.io]")), "{e:?}");
    let e = hosts(pull("docker.io"), "[1]").unwrap_err();
    assert_eq!(e, PluginError::InvalidConfig("hosts-resolver: config must be a table of registries".into()));
    let e = hosts(pull("docker.io"), r#"{"docker.io": {}} x"#).unwrap_err();
    assert!(matches!(&e, PluginError::InvalidConfig(m) if m.starts_with("invalid plugin config")), "{e:?}");
    let e = hosts(pull("docker.io"), r#"{"docker.io": {"server": "https://"}}"#).unwrap_err();
    assert_eq!(e.message(), "hosts-resolver: [docker.io].server: `https://`: bad host");
}

#[test]
fn logs_the_count() {
    hosts(pull("docker.io"), CFG).unwrap();
    let logs = testing::take_logs();
    assert!(logs.iter().any(|l| l.message == "docker.io/library/busybox:latest: 4 source(s)"), "{logs:?}");
    let sources: Vec<_> = (0..12).map(|i| format!(r#"{{"url": "https://m{i}"}}"#)).collect();
    hosts(pull("docker.io"), &format!(r#"{{"docker.io": {{"host": [{}]}}}}"#, sources.join(","))).unwrap();
    assert!(testing::take_logs().iter().any(|l| l.message.ends_with(": 13 source(s)")));
}
