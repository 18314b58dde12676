//! The default spec equals containerd 1.6's, field by field: against the
//! fixture captured from `ctr oci spec`, and against a live `ctr oci spec`
//! when the binary is installed.

use berth_spec::defaults::{default_spec, with_default_unix_devices};
use berth_spec::json::to_value;
use oci_spec::runtime::Spec;
use serde_json::Value;

const FIXTURE: &str = include_str!("../../../tests/fixtures/containerd-1.6-default-spec.json");

/// Every leaf that differs, as `pointer: ours != theirs`.
fn differences(ours: &Value, theirs: &Value, path: &str, out: &mut Vec<String>) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                differences(
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    &format!("{path}/{k}"),
                    out,
                );
            }
        }
        (a, b) if a != b => out.push(format!("{path}: ours {a} != containerd {b}")),
        _ => {}
    }
}

fn assert_same(ours: &Spec, theirs: &Spec) {
    let mut diffs = Vec::new();
    differences(&to_value(ours), &to_value(theirs), "", &mut diffs);
    assert!(diffs.is_empty(), "default spec differs from containerd's:\n{}", diffs.join("\n"));
}

#[test]
fn default_spec_matches_the_ctr_fixture() {
    let theirs: Spec = serde_json::from_str(FIXTURE).unwrap();
    assert_same(&default_spec("default", ""), &theirs);
}

#[test]
fn default_spec_matches_live_ctr() {
    let out = match std::process::Command::new("ctr").args(["oci", "spec"]).output() {
        Ok(out) if out.status.success() => out,
        Ok(out) => {
            eprintln!("skipped: `ctr oci spec` failed: {}", String::from_utf8_lossy(&out.stderr));
            return;
        }
        Err(e) => {
            eprintln!("skipped: ctr not runnable: {e}");
            return;
        }
    };
    let theirs: Spec = serde_json::from_slice(&out.stdout).unwrap();
    assert_same(&default_spec("default", ""), &theirs);
}

#[test]
fn cgroups_path_is_namespaced() {
    let spec = default_spec("nomad", "task-1");
    let path = spec.linux().as_ref().unwrap().cgroups_path().clone().unwrap();
    assert_eq!(path.to_str(), Some("/nomad/task-1"));
}

#[test]
fn default_unix_devices_follow_the_deny_all() {
    let mut spec = default_spec("default", "x");
    with_default_unix_devices(&mut spec);
    let v = to_value(&spec);
    let rules = v.pointer("/linux/resources/devices").unwrap().as_array().unwrap();
    assert_eq!(rules.len(), 10);
    assert_eq!(rules[0], serde_json::json!({"allow": false, "access": "rwm"}));
    assert!(rules.contains(&serde_json::json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"})));
    assert!(rules.contains(&serde_json::json!({"allow": true, "type": "c", "major": 136, "access": "rwm"})));
}
