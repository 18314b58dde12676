//! Crash safety: a process killed (abort, no unwinding) at every step of
//! creating or removing a snapshot leaves no half snapshot; reopening the
//! root finds every record with its directory, no directory without a
//! record, an empty `tmp/`, and the interrupted operation can be redone.
//!
//! The parent test re-runs this binary as `crash_child` with
//! `BERTH_SNAPSHOT_FAILPOINT=<step>` set.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use berth_snapshot::{Durability, Error, Labels, Snapshotter};

const ROOT_ENV: &str = "BERTH_CRASH_ROOT";
const OP_ENV: &str = "BERTH_CRASH_OP";
const SNAPSHOTTER_ENV: &str = "BERTH_CRASH_SNAPSHOTTER";

/// Runs only as the child: the operation that hits the failpoint.
#[test]
fn crash_child() {
    let (Ok(root), Ok(op), Ok(name)) = (std::env::var(ROOT_ENV), std::env::var(OP_ENV), std::env::var(SNAPSHOTTER_ENV)) else {
        return;
    };
    let durability = if op.ends_with("-at-close") { Durability::AtClose } else { Durability::EveryChange };
    let sn = berth_snapshot::open_with(&name, Path::new(&root), durability).unwrap();
    match op.trim_end_matches("-at-close") {
        "prepare" => drop(sn.prepare("victim", Some("base"), Labels::new()).unwrap()),
        "prepare-drop-kill" => {
            sn.prepare("victim", Some("base"), Labels::new()).unwrap();
            // The handle's drop skips redb's close: what it leaves must be
            // complete for the next open even if the process dies right after.
            drop(sn);
            std::process::abort();
        }
        "remove" => sn.remove("doomed").unwrap(),
        other => panic!("unknown op {other}"),
    }
}

fn dirs(path: &Path) -> BTreeSet<String> {
    std::fs::read_dir(path).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

/// Every record has its directory and every directory its record.
fn check_consistent(root: &Path, sn: &dyn Snapshotter) {
    assert!(dirs(&root.join("tmp")).is_empty(), "tmp/ is emptied on open: {:?}", dirs(&root.join("tmp")));
    let mut names = Vec::new();
    sn.walk(&[], &mut |info| {
        names.push(info.name.clone());
        Ok(())
    })
    .unwrap();
    let on_disk = dirs(&root.join("s"));
    assert_eq!(on_disk.len(), names.len(), "directories {on_disk:?} vs snapshots {names:?}");
    for name in names {
        // Every snapshot's own layer is readable (usage walks it).
        sn.usage(&name).unwrap_or_else(|e| panic!("usage of {name}: {e}"));
    }
}

fn setup(root: &Path, name: &str) {
    let sn = berth_snapshot::open(name, root).unwrap();
    let mounts = sn.prepare("base-a", None, Labels::new()).unwrap();
    // No parent: the mount is a bind of the snapshot's own directory.
    let dir = Path::new(&mounts[0].source);
    std::fs::create_dir(dir.join("etc")).unwrap();
    std::fs::write(dir.join("etc/hostname"), "base\n").unwrap();
    sn.commit("base", "base-a", Labels::new()).unwrap();
    sn.prepare("doomed", Some("base"), Labels::new()).unwrap();
}

fn crash(root: &Path, name: &str, op: &str, step: &str) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(ROOT_ENV, root)
        .env(OP_ENV, op)
        .env(SNAPSHOTTER_ENV, name)
        .env(berth_snapshot::FAILPOINT_ENV, step)
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.status.signal(), Some(libc::SIGABRT), "{op} at {step}: {}", String::from_utf8_lossy(&status.stderr));
}

fn crash_everywhere(name: &str) {
    let steps = [("prepare", "create-after-build"), ("prepare", "create-after-rename"), ("prepare", "create-before-db-commit"), ("prepare", "create-after-commit"), ("remove", "remove-after-db-commit"), ("remove", "remove-after-rename")];
    for (op, step) in steps {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        setup(&root, name);
        crash(&root, name, op, step);
        let sn = berth_snapshot::open(name, &root).unwrap();
        check_consistent(&root, sn.as_ref());
        let committed = step == "create-after-commit";
        match (op, sn.stat("victim")) {
            ("prepare", Ok(_)) if committed => {}
            ("prepare", Err(Error::NotFound(_))) if !committed => {
                sn.prepare("victim", Some("base"), Labels::new()).unwrap_or_else(|e| panic!("{step}: redo: {e}"));
            }
            ("remove", Err(Error::NotFound(_))) => {
                assert!(matches!(sn.stat("doomed"), Err(Error::NotFound(_))), "{step}: the removal committed");
            }
            (_, other) => panic!("{name}: {op} at {step}: victim is {other:?}"),
        }
        // The snapshot redone (or kept) has the parent's content.
        if op == "prepare" && name == "native" {
            let mounts = sn.mounts("victim").unwrap();
            assert_eq!(std::fs::read_to_string(Path::new(&mounts[0].source).join("etc/hostname")).unwrap(), "base\n");
        }
        check_consistent(&root, sn.as_ref());
        if op == "prepare" {
            assert!(matches!(sn.remove("base"), Err(Error::FailedPrecondition(_))), "base still has children");
        }
    }
}

#[test]
fn native_survives_a_kill_at_every_step() {
    crash_everywhere("native");
}

#[test]
fn overlayfs_survives_a_kill_at_every_step() {
    crash_everywhere("overlayfs");
}

#[test]
fn roots_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let sn = berth_snapshot::open("native", &root).unwrap();
    sn.prepare("a", None, Labels::new()).unwrap();
    for path in [root.clone(), root.join("s"), root.join("tmp")] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", path.display());
    }
}

/// Durability::AtClose: a kill after a creation returned, before the handle
/// closed, loses it whole (the records as they were at open, the new
/// snapshot's directory removed as an orphan); a removal is durable at once;
/// a close makes the rest durable.
#[test]
fn at_close_durability_loses_unclosed_creations_whole_and_keeps_the_rest() {
    for name in ["native", "overlayfs"] {
        for (op, step) in [("prepare-at-close", "create-after-commit"), ("remove-at-close", "remove-after-db-commit"), ("remove-at-close", "remove-after-rename")] {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("root");
            setup(&root, name);
            crash(&root, name, op, step);
            let sn = berth_snapshot::open(name, &root).unwrap();
            check_consistent(&root, sn.as_ref());
            if op.starts_with("prepare") {
                assert!(matches!(sn.stat("victim"), Err(Error::NotFound(_))), "{name} {op}: not durable before close");
                sn.prepare("victim", Some("base"), Labels::new()).unwrap();
            } else {
                assert!(matches!(sn.stat("doomed"), Err(Error::NotFound(_))), "{name} {op} at {step}: the removal is durable");
            }
            check_consistent(&root, sn.as_ref());
        }
        // Closed: durable.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        setup(&root, name);
        {
            let sn = berth_snapshot::open_with(name, &root, Durability::AtClose).unwrap();
            sn.prepare("kept", Some("base"), Labels::new()).unwrap();
            sn.remove("doomed").unwrap();
        }
        let sn = berth_snapshot::open(name, &root).unwrap();
        sn.stat("kept").unwrap();
        assert!(matches!(sn.stat("doomed"), Err(Error::NotFound(_))));
        check_consistent(&root, sn.as_ref());
    }
}

/// A handle is let go of without redb's close (its commits recorded the
/// allocator state): a process killed right after dropping one, with either
/// durability, leaves every change it made to the next open, which goes on
/// from there.
#[test]
fn a_kill_after_the_handle_is_dropped_keeps_its_changes() {
    for name in ["native", "overlayfs"] {
        for op in ["prepare-drop-kill", "prepare-drop-kill-at-close"] {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("root");
            setup(&root, name);
            let status = Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
                .env(ROOT_ENV, &root)
                .env(OP_ENV, op)
                .env(SNAPSHOTTER_ENV, name)
                .output()
                .unwrap();
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.status.signal(), Some(libc::SIGABRT), "{op}: {}", String::from_utf8_lossy(&status.stderr));
            for _ in 0..2 {
                let sn = berth_snapshot::open(name, &root).unwrap();
                sn.stat("victim").unwrap_or_else(|e| panic!("{name} {op}: {e}"));
                sn.stat("doomed").unwrap();
                check_consistent(&root, sn.as_ref());
            }
            let sn = berth_snapshot::open(name, &root).unwrap();
            sn.remove("victim").unwrap();
            sn.prepare("again", Some("base"), Labels::new()).unwrap();
            drop(sn);
            let sn = berth_snapshot::open(name, &root).unwrap();
            assert!(matches!(sn.stat("victim"), Err(Error::NotFound(_))));
            sn.stat("again").unwrap();
            check_consistent(&root, sn.as_ref());
        }
    }
}
