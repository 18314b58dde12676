//! End to end: the golden task configs through the real wasm plugins
//! (`cargo xtask build-plugins` puts them in target/wasm32-wasip2/plugin),
//! loaded by berth-plugin and assembled by berth-spec, equal containerd's
//! specs field by field. Skips with the reason when the plugins are not built.

#[path = "../../tests/support/mod.rs"]
mod support;

use berth_spec::{ChainEntry, Grants, Request, assemble};
use serde_json::Value;
use support::*;

fn plugin_path(name: &str) -> Option<std::path::PathBuf> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../target/wasm32-wasip2/plugin")
        .join(format!("{name}.wasm"));
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipped: {} not built (run `cargo xtask build-plugins`)", path.display());
        None
    }
}

fn load(name: &str, config: Value) -> Option<Box<dyn berth_spec::Mutator>> {
    let path = plugin_path(name)?;
    let host = berth_plugin::PluginHost::new(berth_plugin::HostOptions::default()).unwrap();
    let plugin = host
        .load(berth_plugin::LoadRequest::new(name, path).kind(berth_plugin::PluginKind::SpecMutator).config(config))
        .unwrap_or_else(|e| panic!("loading {name}: {e:#}"));
    Some(Box::new(plugin))
}

fn nomad_request_with_task(id: &str, task: Value) -> Request {
    Request { annotations: vec![("io.berth.nomad.task".into(), task.to_string())], ..nomad_request(id) }
}

#[test]
fn nomad_task_plugin_matches_containerd() {
    let Some(plugin) = load("nomad-task", serde_json::json!({})) else {
        return;
    };
    let task = serde_json::json!({
        "command": "/bin/sleep", "args": ["300"], "readonly_rootfs": true, "host_network": true,
        "cap_add": ["CAP_SYS_ADMIN"], "cap_drop": ["CAP_NET_RAW"], "env": ["NOMAD_TASK_NAME=web", "NOMAD_ALLOC_ID=a1"],
        "memory_limit": 268435456, "cpu_shares": 512, "devices": ["/dev/null"],
        "mounts": [{"type": "bind", "target": "/etc/app", "source": "/srv/app", "options": ["rbind", "ro"]}],
        "secrets_dir": "/var/nomad/alloc/a1/web/secrets", "task_dir": "/var/nomad/alloc/a1/web/local", "alloc_dir": "/var/nomad/alloc/a1/alloc",
    });
    let chain = [ChainEntry::new(plugin, Grants::all())];
    let assembled = assemble(&nomad_request_with_task("web-a1", task), &chain, &root_host()).unwrap();
    expect(NOMAD_TASK, &assembled.spec);
}

#[test]
fn nomad_task_plugin_privileged_matches_containerd() {
    let Some(plugin) = load("nomad-task", serde_json::json!({})) else {
        return;
    };
    let task = serde_json::json!({"privileged": true, "memory_limit": 134217728, "cpu_shares": 100, "netns_path": "/var/run/netns/a1"});
    let chain = [ChainEntry::new(plugin, Grants::all())];
    let assembled = assemble(&nomad_request_with_task("priv-a1", task), &chain, &root_host()).unwrap();
    expect(NOMAD_TASK_PRIVILEGED, &assembled.spec);
}

#[test]
fn nomad_task_plugin_errors_fail_closed_with_its_name() {
    let Some(plugin) = load("nomad-task", serde_json::json!({})) else {
        return;
    };
    let chain = [ChainEntry::new(plugin, Grants::all())];
    let err =
        assemble(&nomad_request_with_task("x", serde_json::json!({"args": ["1"]})), &chain, &root_host()).unwrap_err();
    assert!(
        matches!(&err, berth_spec::SpecError::Plugin { plugin, source: berth_spec::MutatorError::Rejected(_) } if plugin == "nomad-task"),
        "{err}"
    );
    assert!(err.to_string().contains("Cannot set --args without --command"), "{err}");
}

#[test]
fn privileged_plugin_then_nomad_task_under_narrow_grants() {
    // The privileged bits from the `privileged` plugin (granted privileged
    // and seccomp only), the task's resources and netns from nomad-task
    // (granted namespaces and resources only): the same spec as the driver's.
    let Some(privileged) = load("privileged", serde_json::json!({"all_devices": false})) else {
        return;
    };
    let Some(nomad) = load("nomad-task", serde_json::json!({})) else {
        return;
    };
    let task = serde_json::json!({"memory_limit": 134217728, "cpu_shares": 100, "netns_path": "/var/run/netns/a1"});
    let chain = [
        ChainEntry::new(privileged, Grants::parse(["privileged", "seccomp"]).unwrap()),
        ChainEntry::new(nomad, Grants::parse(["namespaces", "resources"]).unwrap()),
    ];
    let assembled = assemble(&nomad_request_with_task("priv-a1", task), &chain, &root_host()).unwrap();
    expect(NOMAD_TASK_PRIVILEGED, &assembled.spec);
    assert_eq!(assembled.explanation.changed_by("/process/capabilities"), vec!["privileged"]);
}

#[test]
fn privileged_plugin_matches_a_live_containerd() {
    // `ctr run --privileged` = WithPrivileged + WithAllDevicesAllowed +
    // WithHostDevices: the privileged plugin with host_devices on.
    let Some(plugin) = load("privileged", serde_json::json!({"host_devices": true})) else {
        return;
    };
    let ctd = match support::containerd::Containerd::start() {
        Ok(c) => c,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return;
        }
    };
    let theirs = support::containerd::with_image_config_env(ctd.spec("priv", &["--privileged"], &["sh"]));
    let request = Request {
        id: "priv".into(),
        namespace: "nomad".into(),
        args: Some(vec!["sh".into()]),
        rootfs: Some(ctd.rootfs()),
        default_unix_devices: true,
        ..Default::default()
    };
    // The capabilities containerd grants are its own process's, which are
    // this test's: HostFacts::detect reads the same set.
    let chain = [ChainEntry::new(plugin, Grants::parse(["privileged", "seccomp"]).unwrap())];
    let ours = berth_spec::json::to_value(&assemble(&request, &chain, &berth_spec::HostFacts::detect()).unwrap().spec);
    let mut diffs = Vec::new();
    differences(&ours, &theirs, "", &mut diffs);
    assert!(diffs.is_empty(), "berth + privileged.wasm differs from containerd:\n{}", diffs.join("\n"));
}
