//! Two berth roots are two workers: containers of the same name run in both
//! at once, each root sees only its own, and removing one leaves the other.
//! (Both once shared /run/berth: the second `berth run --name X` failed with
//! "already exists" when tests ran in parallel.)


mod common;

use common::{Berth, ContainerGuard, busybox_layout};

#[test]
fn same_container_name_in_two_roots() {
    if let Some(why) = common::cannot_run_containers(&[]) {
        eprintln!("SKIP: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (layout, _) = busybox_layout(dir.path(), &["sh", "sleep"]);
    let config = dir.path().join("berth.toml");
    std::fs::write(&config, "").unwrap();
    let first = Berth { root: dir.path().join("root-a"), config: config.clone() };
    let second = Berth { root: dir.path().join("root-b"), config };
    let (state_a, state_b) = (first.state_dir(), second.state_dir());
    let namespace_of = |berth: &Berth| {
        let worker: serde_json::Value = serde_json::from_str(&berth.ok(&["worker", "--json"])).unwrap();
        worker["namespace"].as_str().unwrap().to_string()
    };
    let (namespace_a, namespace_b) = (namespace_of(&first), namespace_of(&second));
    assert_ne!(namespace_a, namespace_b, "two roots' containers share a cgroup parent");
    assert_ne!(state_a, state_b, "two roots share one state directory");

    let id = format!("twin-{}", std::process::id());
    for berth in [&first, &second] {
        berth.ok(&["image", "import", "--name", "twinbox", layout.to_str().unwrap()]);
        berth.ok(&["run", "-d", "--name", &id, "twinbox", "sleep", "300"]);
    }
    let _guards = [ContainerGuard { berth: &first, id: id.clone() }, ContainerGuard { berth: &second, id: id.clone() }];
    for berth in [&first, &second] {
        berth.wait_ps("running", |ps| ps.lines().any(|l| l.starts_with(&id) && l.contains("running")));
    }
    // Each container's executor state is under its own root's state, its
    // cgroup under its own root's parent.
    assert!(state_a.join(&id).is_dir() && state_b.join(&id).is_dir());
    assert!(!cgroup_dirs(&namespace_a).is_empty() && !cgroup_dirs(&namespace_b).is_empty(), "no per-root cgroup parent");
    let pid_of = |berth: &Berth| {
        let ps = berth.ok(&["ps"]);
        let line = ps.lines().find(|l| l.starts_with(&id)).map(str::to_string);
        line.and_then(|l| l.split_whitespace().nth(3).map(str::to_string)).unwrap_or_default()
    };
    let (pid_a, pid_b) = (pid_of(&first), pid_of(&second));
    assert!(!pid_a.is_empty() && pid_a != pid_b, "one process behind two containers: {pid_a} {pid_b}");

    // Removing the first leaves the second running.
    first.ok(&["kill", "--signal", "KILL", &id]);
    first.wait_ps("stopped", |ps| !ps.lines().any(|l| l.starts_with(&id) && l.contains("running")));
    first.ok(&["rm", &id]);
    assert!(first.ok(&["ps", "-q"]).trim().is_empty());
    assert!(!state_a.join(&id).exists(), "berth rm left the executor state");
    assert!(second.ok(&["ps"]).lines().any(|l| l.starts_with(&id) && l.contains("running")), "the other root's container stopped");
    second.ok(&["kill", "--signal", "KILL", &id]);
    second.wait_ps("stopped", |ps| !ps.lines().any(|l| l.starts_with(&id) && l.contains("running")));
    second.ok(&["rm", &id]);
    assert!(!state_b.join(&id).exists());
    // The per-root cgroup parents went with their last containers.
    for namespace in [&namespace_a, &namespace_b] {
        assert_eq!(cgroup_dirs(namespace), Vec::<std::path::PathBuf>::new(), "a per-root cgroup parent is left");
    }
}

/// `namespace`'s cgroup parent in each hierarchy where it exists (v1: one
/// per controller; v2: one).
fn cgroup_dirs(namespace: &str) -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new("/sys/fs/cgroup");
    let mut found: Vec<_> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|hierarchy| hierarchy.path().join(namespace))
        .filter(|dir| dir.is_dir())
        .collect();
    if root.join(namespace).is_dir() {
        found.push(root.join(namespace));
    }
    found
}
