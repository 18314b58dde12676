//! Loaded wasm plugins in berth-spec's chain: grants, conflicts, overrides,
//! optional plugins. The host's errors surface through `SpecError`.

mod common;

use std::path::Path;
use std::time::Duration;

use berth_plugin::{CallError, HostOptions, LoadRequest, Limits, LoadedPlugin, PluginHost};
use berth_spec::{ChainEntry, Field, Grants, Request, SpecError, assemble};

fn request() -> Request {
    Request {
        id: "chain-test".into(),
        image_config: berth_spec::view::ImageConfigView { cmd: vec!["/bin/sh".into()], ..Default::default() },
        ..Default::default()
    }
}

fn facts() -> berth_spec::HostFacts {
    berth_spec::HostFacts::detect()
}

fn load(host: &PluginHost, dir: &Path, fixture: &str, name: &str, config: serde_json::Value) -> LoadedPlugin {
    host.load(LoadRequest::new(name, common::fixture(dir, fixture)).config(config)).unwrap()
}

fn entry(plugin: LoadedPlugin, grants: &[&str]) -> ChainEntry {
    ChainEntry::new(Box::new(plugin), Grants::parse(grants).unwrap())
}

#[test]
fn a_field_outside_the_grants_is_refused_naming_plugin_and_field() {
    let Some(dir) = common::fixtures() else { return };
    let host = PluginHost::new(HostOptions::default()).unwrap();
    let forbidden = load(&host, dir, "forbidden", "forbidden", serde_json::json!({}));
    match assemble(&request(), &[entry(forbidden.clone(), &["env"])], &facts()) {
        Err(e @ SpecError::NotGranted { .. }) => {
            let SpecError::NotGranted { plugin, field, .. } = &e else { unreachable!() };
            assert_eq!(plugin, "forbidden");
            assert_eq!(*field, Field::Capabilities);
            assert!(e.to_string().contains("forbidden"), "{e}");
        }
        other => panic!("expected NotGranted, got {other:?}"),
    }
    // Granted, it applies.
    let spec = assemble(&request(), &[entry(forbidden, &["env", "capabilities"])], &facts()).unwrap().spec;
    let caps = spec.process().as_ref().unwrap().capabilities().as_ref().unwrap();
    assert!(caps.bounding().as_ref().unwrap().iter().any(|c| format!("{c:?}").contains("SysAdmin") || c.to_string().contains("SYS_ADMIN")));
}

#[test]
fn two_plugins_setting_the_hostname_differently_conflict_unless_the_second_overrides() {
    let Some(dir) = common::fixtures() else { return };
    let host = PluginHost::new(HostOptions::default()).unwrap();
    let a = load(&host, dir, "good", "names-a", serde_json::json!({"hostname": "alpha"}));
    let b = load(&host, dir, "good", "names-b", serde_json::json!({"hostname": "beta"}));
    let grants = ["env", "annotations", "hostname"];
    match assemble(&request(), &[entry(a.clone(), &grants), entry(b.clone(), &grants)], &facts()) {
        Err(e @ SpecError::Conflict { .. }) => {
            let text = e.to_string();
            assert!(text.contains("names-a") && text.contains("names-b"), "{text}");
            assert!(text.contains("alpha") && text.contains("beta"), "{text}");
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    let chain = [entry(a, &grants), entry(b, &grants).may_override(true)];
    let spec = assemble(&request(), &chain, &facts()).unwrap().spec;
    assert_eq!(spec.hostname().as_deref(), Some("beta"));
}

#[test]
fn a_failing_plugin_fails_closed_unless_optional() {
    let Some(dir) = common::fixtures() else { return };
    let host = PluginHost::new(HostOptions::default()).unwrap();
    let spin = host
        .load(
            LoadRequest::new("spin", common::fixture(dir, "spin"))
                .limits(Limits { timeout: Duration::from_millis(30), ..Limits::default() }),
        )
        .unwrap();
    let good = load(&host, dir, "good", "good", serde_json::json!({}));
    let grants = ["env", "annotations", "hostname"];

    match assemble(&request(), &[entry(spin.clone(), &grants), entry(good.clone(), &grants)], &facts()) {
        Err(SpecError::Plugin { plugin, source }) => {
            assert_eq!(plugin, "spin");
            let berth_spec::MutatorError::Host(inner) = source else { panic!("expected a host error") };
            let call = inner.downcast_ref::<CallError>().expect("a CallError inside");
            assert!(matches!(call, CallError::Timeout { .. }), "{call:?}");
        }
        other => panic!("expected a plugin failure, got {other:?}"),
    }

    let chain = [entry(spin, &grants).optional(true), entry(good, &grants)];
    let assembled = assemble(&request(), &chain, &facts()).unwrap();
    let env = assembled.spec.process().as_ref().unwrap().env().clone().unwrap_or_default();
    assert!(env.iter().any(|e| e == "BERTH_FIXTURE=good"), "{env:?}");
}
