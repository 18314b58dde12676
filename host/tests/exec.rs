//! `berth exec` into a running native container: the container's env and
//! namespaces, flags on top, the exit code passed through; refused once the
//! container has stopped.


mod common;

use common::{Berth, ContainerGuard, busybox_layout};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn exec_joins_a_running_container() {
    if let Some(why) = common::cannot_run_containers(&[]) {
        eprintln!("SKIP: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (layout, _) = busybox_layout(dir.path(), &["sh", "sleep", "cat", "grep", "tr"]);
    let config = dir.path().join("berth.toml");
    std::fs::write(&config, "").unwrap();
    let berth = Berth { root: dir.path().join("root"), config };
    berth.ok(&["image", "import", "--name", "execbox", layout.to_str().unwrap()]);
    let id = format!("exec-{}", std::process::id());
    // The container marks its own filesystem; exec must see the same one.
    berth.ok(&["run", "-d", "--name", &id, "execbox", "sh", "-c", "echo mark > /tmp/mark; exec sleep 300"]);
    let _guard = ContainerGuard { berth: &berth, id: id.clone() };
    berth.wait_ps("running", |ps| ps.lines().any(|l| l.starts_with(&id) && l.contains("running")));

    let script = "cat /tmp/mark; echo \"$PATH $EXTRA\"; grep -E '^(Uid|Gid):' /proc/self/status; \
                  tr '\\0' ' ' < /proc/1/cmdline; echo; exit 7";
    let mut out = berth.run(&["exec", "-e", "EXTRA=x1", "-u", "5:6", &id, "sh", "-c", script]);
    for _ in 0..50 {
        // The mark may not be written yet right after start.
        if !text(&out.stdout).starts_with("mark") {
            std::thread::sleep(std::time::Duration::from_millis(100));
            out = berth.run(&["exec", "-e", "EXTRA=x1", "-u", "5:6", &id, "sh", "-c", script]);
        }
    }
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{}\n{stdout}{}", out.status, text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "mark", "not the container's filesystem: {stdout}");
    assert_eq!(lines[1], "/bin x1", "env is not the container's plus -e: {stdout}");
    assert!(lines[2].starts_with("Uid:\t5\t") && lines[3].starts_with("Gid:\t6\t"), "{stdout}");
    assert_eq!(lines[4].trim_end(), "sleep 300", "pid 1 is not the container's init: {stdout}");

    berth.ok(&["kill", "--signal", "KILL", &id]);
    berth.wait_ps("stopped", |ps| !ps.lines().any(|l| l.starts_with(&id) && l.contains("running")));
    let out = berth.run(&["exec", &id, "true"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("not running"), "{}", text(&out.stderr));
    berth.ok(&["rm", &id]);
    let out = berth.run(&["exec", &id, "true"]);
    assert!(text(&out.stderr).contains("no such container"), "{}", text(&out.stderr));
}
