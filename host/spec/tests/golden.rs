//! Golden specs for nomad-task behaviour: the adjustment the `nomad-task`
//! plugin answers for a task config, applied by berth, equals what
//! containerd + nomad-driver-containerd produce for it (fixtures/README.md).
//! The same through the real wasm plugins: ../golden/tests/plugins.rs.

mod support;

use berth_spec::adjustment::*;
use berth_spec::{Adjustment, ChainEntry, FixedMutator, Grants, assemble};
use support::*;

#[test]
fn nomad_task_matches_containerd() {
    let chain = [ChainEntry::new(Box::new(FixedMutator::new("nomad-task", nomad_task_adjustment())), Grants::all())];
    let assembled = assemble(&nomad_request("web-a1"), &chain, &root_host()).unwrap();
    expect(NOMAD_TASK, &assembled.spec);
}

#[test]
fn nomad_task_privileged_matches_containerd() {
    let chain =
        [ChainEntry::new(Box::new(FixedMutator::new("nomad-task", nomad_task_privileged_adjustment())), Grants::all())];
    let assembled = assemble(&nomad_request("priv-a1"), &chain, &root_host()).unwrap();
    expect(NOMAD_TASK_PRIVILEGED, &assembled.spec);
}

#[test]
fn the_same_split_over_two_plugins_matches_too() {
    // privileged bits from one plugin, the rest of the task from another,
    // each with only the grants it needs.
    let mut task = nomad_task_privileged_adjustment();
    let privileged = Adjustment { privileged: task.privileged, seccomp: task.seccomp.take(), ..Default::default() };
    task.privileged = Privileged::default();
    let chain = [
        ChainEntry::new(
            Box::new(FixedMutator::new("privileged", privileged)),
            Grants::parse(["privileged", "seccomp"]).unwrap(),
        ),
        ChainEntry::new(
            Box::new(FixedMutator::new("nomad-task", task)),
            Grants::parse(["namespaces", "resources"]).unwrap(),
        ),
    ];
    let assembled = assemble(&nomad_request("priv-a1"), &chain, &root_host()).unwrap();
    expect(NOMAD_TASK_PRIVILEGED, &assembled.spec);
    assert_eq!(assembled.explanation.changed_by("/linux/maskedPaths"), vec!["privileged"]);
    assert_eq!(assembled.explanation.changed_by("/linux/resources/memory/limit"), vec!["nomad-task"]);
}
