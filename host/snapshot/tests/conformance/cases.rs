//! The 21 cases of containerd's snapshots/testsuite (testsuite.go and
//! issues.go), each against a fresh snapshotter root and a work directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use anyhow::{Context, Result, bail, ensure};
use berth_snapshot::mount::Mounted;
use berth_snapshot::{Error, Info, Kind, Labels, Snapshotter};

use crate::Case;
use crate::fstest::{Applier, Op, apply, check_directory_equal};

pub fn all() -> Vec<(&'static str, Case)> {
    vec![
        ("Basic", basic),
        ("StatActive", stat_active),
        ("StatCommitted", stat_committed),
        ("Transitivity", transitivity),
        ("PrepareViewFailing", prepare_view_failing),
        ("Update", update),
        ("Remove", remove),
        ("Walk", walk),
        ("LayerFileupdate", layer_file_update),
        ("RemoveDirectoryInLowerLayer", remove_directory_in_lower_layer),
        ("Chown", chown),
        ("DirectoryPermissionOnCommit", directory_permission_on_commit),
        ("RemoveIntermediateSnapshot", remove_intermediate_snapshot),
        ("DeletedFilesInChildSnapshot", deleted_files_in_child_snapshot),
        ("MoveFileFromLowerLayer", move_file_from_lower_layer),
        ("ViewReadonly", view_readonly),
        ("StatInWalk", stat_in_walk),
        ("CloseTwice", close_twice),
        ("RootPermission", root_permission),
        ("Rename", rename),
        ("128LayersMount", layers_128_mount),
    ]
}

/// containerd's `opt`: every snapshot carries a gc.root label.
fn opt() -> Labels {
    Labels::from([("containerd.io/gc.root".to_string(), "2026-01-01T00:00:00Z".to_string())])
}

fn key(work: &Path, name: &str) -> String {
    work.join(name).to_string_lossy().into_owned()
}

fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// containerd's `snapshotterPrepareMount`: the key is a path in `work`,
/// also the mount point.
fn prepare_mount(sn: &dyn Snapshotter, work: &Path, name: &str, parent: Option<&str>) -> Result<(String, Mounted)> {
    let path = work.join(name);
    std::fs::create_dir_all(&path)?;
    let key = path.to_string_lossy().into_owned();
    let mounts = sn.prepare(&key, parent, opt())?;
    ensure!(!mounts.is_empty(), "expected mounts to have entries");
    let mounted = Mounted::new(&mounts, &path)?;
    Ok((key, mounted))
}

fn temp_in(work: &Path, prefix: &str) -> Result<PathBuf> {
    let dir = work.join(unique(prefix));
    std::fs::create_dir(&dir)?;
    Ok(dir)
}

/// helpers.go `createSnapshot`: a committed snapshot of `applier` on `parent`.
fn create_snapshot(sn: &dyn Snapshotter, parent: Option<&str>, work: &Path, applier: &Applier) -> Result<String> {
    let name = unique("layer");
    let prepare = format!("{name}-prepare");
    let mounts = sn.prepare(&prepare, parent, opt()).context("prepare")?;
    let dir = temp_in(work, "prepare")?;
    {
        let mounted = Mounted::new(&mounts, &dir)?;
        apply(mounted.path(), applier)?;
        mounted.unmount()?;
    }
    std::fs::remove_dir(&dir)?;
    sn.commit(&name, &prepare, opt()).context("commit")?;
    Ok(name)
}

/// helpers.go `checkSnapshot`: a view of `name` equals `check`.
fn check_snapshot(sn: &dyn Snapshotter, work: &Path, name: &str, check: &Path) -> Result<()> {
    let view = format!("{name}-view");
    let mounts = sn.view(&view, Some(name), opt()).context("view")?;
    let dir = temp_in(work, "check")?;
    let result = (|| {
        let mounted = Mounted::new(&mounts, &dir)?;
        let compared = check_directory_equal(check, mounted.path());
        mounted.unmount()?;
        compared
    })();
    std::fs::remove_dir(&dir).ok();
    sn.remove(&view).context("removing the view")?;
    result
}

/// helpers.go `checkSnapshots`: a chain of layers, each checked against a
/// flat directory with the same changes applied.
fn check_snapshots(sn: &dyn Snapshotter, work: &Path, appliers: &[Applier]) -> Result<()> {
    let flat = temp_in(work, "flat")?;
    let mut parent: Option<String> = None;
    for (i, applier) in appliers.iter().enumerate() {
        let name = create_snapshot(sn, parent.as_deref(), work, applier).with_context(|| format!("creating snapshot {}", i + 1))?;
        apply(&flat, applier)?;
        check_snapshot(sn, work, &name, &flat).with_context(|| format!("snapshot check failed on snapshot {}", i + 1))?;
        parent = Some(name);
    }
    Ok(())
}

fn file(path: &'static str, content: &str, mode: u32) -> Op {
    Op::CreateFile(path, content.as_bytes().to_vec(), mode)
}

fn basic(sn: &dyn Snapshotter, work: &Path) -> Result<()> {
    let initial = vec![file("/foo", "foo\n", 0o777), Op::CreateDir("/a", 0o755), Op::CreateDir("/a/b", 0o755), Op::CreateDir("/a/b/c", 0o755)];
    let diff = vec![file("/bar", "bar\n", 0o777), file("/foo", "bar\n", 0o777), Op::RemoveAll("/a/b")];

    let (preparing, mounted) = prepare_mount(sn, work, "preparing", None)?;
    apply(mounted.path(), &initial)?;
    mounted.unmount()?;
    let committed = key(work, "committed");
    sn.commit(&committed, &preparing, opt())?;
    let si = sn.stat(&committed)?;
    ensure!(si.parent.is_none() && si.kind == Kind::Committed, "{si:?}");
    ensure!(sn.stat(&preparing).is_err(), "{preparing} should no longer be available after Commit");

    let (next, mounted) = prepare_mount(sn, work, "nextlayer", Some(&committed))?;
    let expected = temp_in(work, "expected")?;
    apply(&expected, &initial)?;
    check_directory_equal(&expected, mounted.path())?;
    apply(mounted.path(), &diff)?;
    mounted.unmount()?;
    let ni = sn.stat(&next)?;
    ensure!(ni.parent.as_deref() == Some(committed.as_str()) && ni.kind == Kind::Active, "{ni:?}");

    let next_committed = key(work, "committed-next");
    sn.commit(&next_committed, &next, opt())?;
    let si2 = sn.stat(&next_committed)?;
    ensure!(si2.parent.as_deref() == Some(committed.as_str()) && si2.kind == Kind::Committed, "{si2:?}");
    ensure!(sn.stat(&next).is_err(), "{next} should no longer be available after Commit");

    let mut walked = BTreeMap::new();
    sn.walk(&[], &mut |info| {
        walked.insert(info.name.clone(), info.clone());
        Ok(())
    })?;
    for expected in [&si, &si2] {
        ensure!(walked.get(&expected.name) == Some(expected), "walk: {:?} vs {expected:?}", walked.get(&expected.name));
    }

    let nextnext = key(work, "nextnextlayer");
    std::fs::create_dir_all(&nextnext)?;
    let mounts = sn.view(&nextnext, Some(&next_committed), opt())?;
    let mounted = Mounted::new(&mounts, Path::new(&nextnext))?;
    apply(&expected, &diff)?;
    check_directory_equal(&expected, mounted.path())?;
    mounted.unmount()?;
    sn.remove(&nextnext)?;
    let err = sn.remove(&committed).err().context("removing a parent must fail")?;
    ensure!(err.to_string().contains("remove"), "{err}");
    sn.remove(&next_committed)?;
    sn.remove(&committed)?;
    Ok(())
}

fn stat_active(sn: &dyn Snapshotter, work: &Path) -> Result<()> {
    let (preparing, mounted) = prepare_mount(sn, work, "preparing", None)?;
    std::fs::write(mounted.path().join("foo"), "foo\n")?;
    let si = sn.stat(&preparing)?;
    ensure!(si.name == preparing && si.kind == Kind::Active && si.parent.is_none(), "{si:?}");
    Ok(())
}

fn stat_committed(sn: &dyn Snapshotter, work: &Path) -> Result<()> {
    let (preparing, mounted) = prepare_mount(sn, work, "preparing", None)?;
    std::fs::write(mounted.path().join("foo"), "foo\n")?;
    let committed = key(work, "committed");
    sn.commit(&committed, &preparing, opt())?;
    let si = sn.stat(&committed)?;
    ensure!(si.name == committed && si.kind == Kind::Committed && si.parent.is_none(), "{si:?}");
    Ok(())
}

fn transitivity(sn: &dyn Snapshotter, work: &Path) -> Result<()> {
    let (preparing, _m1) = prepare_mount(sn, work, "preparing", None)?;
    std::fs::write(Path::new(&preparing).join("foo"), "foo\n")?;
    let snap_a = key(work, "snapA");
    sn.commit(&snap_a, &preparing, opt())?;
    let (next, _m2) = prepare_mount(sn, work, "next", Some(&snap_a))?;
    std::fs::write(Path::new(&next).join("foo"), "foo bar\n")?;
    let snap_b = key(work, "snapB");
    sn.commit(&snap_b, &next, opt())?;
    let si_a = sn.stat(&snap_a)?;
    let si_b = sn.stat(&snap_b)?;
    let si_parent_b = sn.stat(si_b.parent.as_deref().context("B has a parent")?)?;
    ensure!(si_a.parent.is_none() && si_b.parent.as_deref() == Some(snap_a.as_str()) && si_parent_b.parent.is_none());
    Ok(())
}

fn prepare_view_failing(sn: &dyn Snapshotter, work: &Path) -> Result<()> {
    let (preparing, _m) = prepare_mount(sn, work, "preparing", None)?;
    let snap_a = key(work, "snapA");
    sn.commit(&snap_a, &preparing, opt())?;
    let new_layer = key(work, "newlayer");
    sn.prepare(&new_layer, Some(&snap_a), opt())?;
    ensure!(sn.view(&new_layer, Some(&snap_a), opt()).is_err(), "prepare then view with the same key");
    let prep_layer = key(work, "prepLayer");
    sn.prepare(&prep_layer, Some(&snap_a), opt())?;
    ensure!(sn.prepare(&prep_layer, Some(&snap_a), opt()).is_err(), "two prepares with the same key");
    let view_layer = key(work, "viewLayer");
    sn.view(&view_layer, Some(&snap_a), opt())?;
    ensure!(sn.view(&view_layer, Some(&snap_a), opt()).is_err(), "two views with the same key");
    Ok(())
}

/// testsuite.go `baseTestSnapshots`.
fn base_test_snapshots(sn: &dyn Snapshotter) -> Result<()> {
    sn.prepare("c1-a", None, opt())?;
    sn.commit("c1", "c1-a", opt())?;
    sn.prepare("c2-a", Some("c1"), opt())?;
    sn.commit("c2", "c2-a", opt())?;
    sn.prepare("a1", Some("c2"), opt())?;
    sn.prepare("a2", None, opt())?;
    sn.view("v1", Some("c2"), opt())?;
    sn.view("v2", None, opt())?;
    Ok(())
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn update(sn: &dyn Snapshotter, _work: &Path) -> Result<()> {
    let t1 = SystemTime::now();
    base_test_snapshots(sn)?;
    let t2 = SystemTime::now();
    let cases = [
        ("c1", Kind::Committed, None),
        ("c2", Kind::Committed, Some("c1")),
        ("a1", Kind::Active, Some("c2")),
        ("a2", Kind::Active, None),
        ("v1", Kind::View, Some("c2")),
        ("v2", Kind::View, None),
    ];
    for (name, kind, parent) in cases {
        let mut st = sn.stat(name)?;
        ensure!(st.created >= t1 && st.created <= t2, "({name}) wrong created time");
        ensure!(st.created == st.updated, "({name}) updated differs from created");
        ensure!(st.kind == kind && st.parent.as_deref() == parent && st.name == name, "({name}) {st:?}");
        let created = st.created;
        let root_time = "2026-01-02T00:00:00Z";
        let expected = labels(&[("l1", "v1"), ("l2", "v2"), ("l3", "v3"), ("containerd.io/gc.root", root_time)]);
        st.parent = Some("doesnotexist".into());
        st.labels = expected.clone();
        let u1 = SystemTime::now();
        let st2 = sn.update(st, &[])?;
        let u2 = SystemTime::now();
        ensure!(st2.created == created, "({name}) created changed");
        ensure!(st2.updated >= u1 && st2.updated <= u2, "({name}) wrong updated time");
        ensure!(st2.kind == kind && st2.parent.as_deref() == parent && st2.name == name, "({name}) {st2:?}");
        ensure!(st2.labels == expected, "({name}) {:?}", st2.labels);

        let expected = labels(&[("l1", "updated"), ("l3", "v3"), ("containerd.io/gc.root", root_time)]);
        let mut st = st2;
        st.labels = labels(&[("l1", "updated"), ("l4", "v4")]);
        let st = sn.update(st, &["labels.l1".into(), "labels.l2".into()])?;
        ensure!(st.labels == expected, "({name}) {:?}", st.labels);

        let expected = labels(&[("l4", "v4"), ("containerd.io/gc.root", root_time)]);
        let mut st = st;
        st.labels = expected.clone();
        let mut st = sn.update(st, &["labels".into()])?;
        ensure!(st.labels == expected, "({name}) {:?}", st.labels);

        st.parent = Some("doesnotexist".into());
        match sn.update(st, &["parent".into()]) {
            Err(Error::InvalidArgument(_)) => {}
            other => bail!("({name}) updating an immutable field: {other:?}"),
        }
    }
    Ok(())
}

fn remove(sn: &dyn Snapshotter, _work: &Path) -> Result<()> {
    sn.prepare("committed-a", None, opt())?;
    sn.commit("committed-1", "committed-a", opt())?;
    sn.prepare("reuse-1", Some("committed-1"), opt())?;
    sn.remove("reuse-1")?;
    sn.view("reuse-1", Some("committed-1"), opt())?;
    sn.remove("reuse-1")?;
    sn.prepare("reuse-1", None, opt())?;
    sn.remove("committed-1")?;
    sn.commit("committed-1", "reuse-1", opt())?;
    Ok(())
}

fn walk(sn: &dyn Snapshotter, _work: &Path) -> Result<()> {
    let gc = || labels(&[("containerd.io/gc.root", "check-walk")]);
    let with_l = |l: &str| labels(&[("l", l), ("containerd.io/gc.root", "check-walk")]);
    sn.prepare("a-np", None, gc())?;
    sn.prepare("p-tmp", None, gc())?;
    sn.commit("p", "p-tmp", gc())?;
    sn.prepare("a", Some("p"), gc())?;
    sn.view("v", Some("p"), gc())?;
    sn.prepare("p-wl-tmp", None, gc())?;
    sn.commit("p-wl", "p-wl-tmp", with_l("1"))?;
    sn.prepare("a-wl", Some("p-wl"), with_l("2"))?;
    sn.view("v-wl", Some("p-wl"), with_l("3"))?;
    sn.prepare("a-np-wl", None, with_l("2"))?;
    let cases: &[(&[&str], &[&str])] = &[
        (&["a-np", "p", "a", "v", "p-wl", "a-wl", "v-wl", "a-np-wl"], &["labels.\"containerd.io/gc.root\"==check-walk"]),
        (&["a-np", "a", "a-wl", "a-np-wl"], &["kind==active,labels.\"containerd.io/gc.root\"==check-walk"]),
        (&["v", "v-wl"], &["kind==view,labels.\"containerd.io/gc.root\"==check-walk"]),
        (&["p", "p-wl"], &["kind==committed,labels.\"containerd.io/gc.root\"==check-walk"]),
        (&["p", "a-np-wl"], &["name==p", "name==a-np-wl"]),
        (&["a-wl"], &["name==a-wl,labels.l"]),
        (&["a", "v"], &["parent==p"]),
        (&["a", "v", "a-wl", "v-wl"], &["parent!=\"\",labels.\"containerd.io/gc.root\"==check-walk"]),
        (&["p-wl", "a-wl", "v-wl", "a-np-wl"], &["labels.l"]),
        (&["a-wl", "a-np-wl"], &["labels.l==2"]),
    ];
    for (i, (matches, filters)) in cases.iter().enumerate() {
        let mut actual = Vec::new();
        let filters: Vec<String> = filters.iter().map(|s| s.to_string()).collect();
        sn.walk(&filters, &mut |info| {
            actual.push(info.name.clone());
            Ok(())
        })?;
        actual.sort();
        let mut expected: Vec<String> = matches.iter().map(|s| s.to_string()).collect();
        expected.sort();
        ensure!(actual == expected, "[{i}] {filters:?}: {actual:?}, expected {expected:?}");
    }
    Ok(())
}

fn layer_file_update(sn: &dyn Snapshotter, work: &Path) -> Result<()> {
    let l1 = vec![Op::CreateDir("/etc", 0o700), file("/etc/hosts", "mydomain 10.0.0.1", 0o644), file("/etc/profile", "PATH=/usr/bin", 0o644)];
    let l2 = vec![
        file("/etc/hosts", "mydomain 10.0.0.2", 0o644),
        file("/etc/profile", "PATH=/usr/bin", 0o666),
        Op::CreateDir("/root", 0o700),
        file("/root/.bashrc", "PATH=/usr/sbin:/usr/bin", 0o644),
    ];
    // containerd runs it 5 times across second boundaries (mtime-based
    // change detection in older models); 3 runs keep the point.
    for i in 0..3 {
        if i > 0 {
            let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?;
            std::thread::sleep(std::time::Duration::from_nanos(1_000_000_000 - u64::from(now.subsec_nanos())));
        }
        check_snapshots(sn, work, &[l1.clone(), l2.clone()])?;
    }
    Ok(())
}

fn remove_directory_in_lower_layer(sn: &dyn Snapshotter, work: &Path) -> Result<()> {
    let l1 = vec![Op::CreateDir("/lib", 0o700), file("/lib/hidden", "", 0o644)];
    let l2 = vec![Op::RemoveAll("/lib"), Op::CreateDir("/lib", 0o700), file("/lib/not-hidden", "", 0o644)];
    let l3 = vec![file("/lib/newfile", "", 0o644)];
    check_snapshots(sn, work, &[l1, l2, l3])
}

fn chown(sn: &dyn Snapshotter, work: &Path) -> Result<()> {
    let l1 = vec![
        Op::CreateDir("/opt", 0o700),
        Op::CreateDir("/opt/a", 0o700),
        Op::CreateDir("/opt/a/b", 0o700),
        file("/opt/a/b/file.txt", "hello", 0o644),
    ];
    let l2 = vec![Op::Chown("/opt", 1, 1), Op::Chown("/opt/a", 1, 1), Op::Chown("/opt/a/b", 1, 1), Op::Chown("/opt/a/b/file.txt", 1, 1)];
    check_snapshots(sn, work, &[l1, l2])
}

fn directory_permission_on_commit(sn: &dyn Snapshotter, work: &Path) -> Result<()> {
    let l1 = vec![
        Op::CreateDir("/dir1", 0o700),
        Op::CreateDir("/dir2", 0o700),
        Op::CreateDir("/dir3", 0o700),
        Op::CreateDir("/dir4", 0o700),
        file("/dir4/f1", "...", 0o644),
        Op::CreateDir("/dir5", 0o700),
        file("/dir5/f1", "...", 0o644),
        Op::Chown("/dir1", 1, 1),
        Op::Chown("/dir2", 1, 1),
        Op::Chown("/dir3", 1, 1),
        Op::Chown("/dir5", 1, 1),
        Op::Chown("/dir5/f1", 1, 1),
    ];
    let l2 = vec![Op::Chown("/dir2", 0, 0), Op::RemoveAll("/dir3"), Op::Chown("/dir4", 1, 1), Op::Chown("/dir4/f1", 1, 1)];
    let l3 = vec![
        Op::CreateDir("/dir3", 0o700),
        Op::Chown("/dir3", 1, 1),
        Op::RemoveAll("/dir5"),
        Op::CreateDir("/dir5", 0o700),
        Op::Chown("/dir5", 1, 1),
    ];
    check_snapshots(sn, work, &[l1, l2, l3])
}

fn remove_intermediate_snapshot(sn: &dyn Snapshotter, work: &Path) -> Result<()> {
    let (base, mounted) = prepare_mount(sn, work, "base", None)?;
    let committed_base = key(work, "committed-base");
    sn.commit(&committed_base, &base, opt())?;
    let intermediate = key(work, "intermediate");
    sn.prepare(&intermediate, Some(&committed_base), opt())?;
    let committed_inter = key(work, "committed-inter");
    sn.commit(&committed_inter, &intermediate, opt())?;
    let top = key(work, "toplayer");
    sn.prepare(&top, Some(&committed_inter), opt())?;
    match sn.remove(&committed_inter) {
        Err(Error::FailedPrecondition(_)) => {}
        other => bail!("removing the intermediate layer: {other:?}"),
    }
    sn.remove(&top)?;
    sn.remove(&committed_inter)?;
    mounted.unmount()?;
    sn.remove(&committed_base)?;
    Ok(())
}

fn deleted_files_in_child_snapshot(sn: &dyn Snapshotter, work: &Path) -> Result<()> {
    let l1 = vec![file("/foo", "foo\n", 0o777), file("/foobar", "foobar\n", 0o777)];
    let l2 = vec![Op::RemoveAll("/foobar")];
    check_snapshots(sn, work, &[l1, l2, vec![]])
}

fn move_file_from_lower_layer(sn: &dyn Snapshotter, work: &Path) -> Result<()> {
    let l1 = vec![
        Op::CreateDir("/dir1", 0o700),
        file("/dir1/f1", "Hello", 0o644),
        Op::CreateDir("dir2", 0o700),
        file("dir2/f2", "...", 0o644),
    ];
    let l2 = vec![
        Op::CreateDir("/dir3", 0o700),
        file("/dir3/f1", "Hello", 0o644),
        Op::RemoveAll("/dir1"),
        Op::Link("dir2/f2", "dir3/f2"),
        Op::RemoveAll("dir2/f2"),
    ];
    check_snapshots(sn, work, &[l1, l2])
}

fn view_readonly(sn: &dyn Snapshotter, work: &Path) -> Result<()> {
    let preparing = key(work, "preparing");
    sn.prepare(&preparing, None, opt())?;
    let committed = key(work, "committed");
    sn.commit(&committed, &preparing, opt())?;
    let view = key(work, "view");
    let mounts = sn.view(&view, Some(&committed), opt())?;
    let mount_point = work.join("view-mount");
    std::fs::create_dir_all(&mount_point)?;
    let mounted = Mounted::new(&mounts, &mount_point)?;
    let write = std::fs::write(mount_point.join("testfile"), "testcontent");
    mounted.unmount()?;
    ensure!(write.is_err(), "a write into a view must fail (EROFS)");
    sn.remove(&view)?;
    sn.remove(&committed)?;
    Ok(())
}

/// issues.go `checkInfo`.
fn check_info(a: &Info, b: &Info) -> Result<()> {
    ensure!(a == b, "walk gave {a:?}, stat gave {b:?}");
    Ok(())
}

fn stat_in_walk(sn: &dyn Snapshotter, work: &Path) -> Result<()> {
    let prefix = "stats-in-walk-";
    let (c1, c2) = (format!("{prefix}c1"), format!("{prefix}c2"));
    let mounts = sn.prepare(&format!("{c1}-a"), None, opt())?;
    let dir = temp_in(work, "prepare")?;
    Mounted::new(&mounts, &dir)?.unmount()?;
    sn.commit(&c1, &format!("{c1}-a"), opt())?;
    sn.prepare(&format!("{c2}-a"), Some(&c1), opt())?;
    sn.commit(&c2, &format!("{c2}-a"), opt())?;
    sn.prepare(&format!("{prefix}a1"), Some(&c2), opt())?;
    sn.view(&format!("{prefix}v1"), Some(&c2), opt())?;
    let mut checked = 0;
    sn.walk(&[], &mut |info| {
        if !info.name.starts_with(prefix) {
            return Ok(());
        }
        let again = sn.stat(&info.name)?;
        check_info(info, &again).map_err(Error::Other)?;
        checked += 1;
        Ok(())
    })?;
    ensure!(checked == 4, "walked {checked} of the 4 snapshots");
    Ok(())
}

fn close_twice(sn: &dyn Snapshotter, _work: &Path) -> Result<()> {
    let n = unique("closeTwice");
    let prepare = format!("{n}-prepare");
    sn.prepare(&prepare, None, opt())?;
    sn.commit(&n, &prepare, opt())?;
    sn.remove(&n)?;
    sn.close().context("the first close")?;
    sn.close().context("the second close")?;
    Ok(())
}

fn root_permission(sn: &dyn Snapshotter, work: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let (_preparing, mounted) = prepare_mount(sn, work, "preparing", None)?;
    let mode = std::fs::metadata(mounted.path())?.permissions().mode() & 0o777;
    ensure!(mode == 0o755, "expected 0755, got {mode:o}");
    Ok(())
}

/// containerd skips it on Linux ("still fails on some kernels with
/// overlay"); berth runs it, renaming lower-layer directories as `mv`
/// does when overlayfs answers EXDEV (see `fstest::rename`).
fn rename(sn: &dyn Snapshotter, work: &Path) -> Result<()> {
    let l1 = vec![
        Op::CreateDir("/dir1", 0o700),
        Op::CreateDir("/somefiles", 0o700),
        file("/somefiles/f1", "was here first!", 0o644),
        file("/somefiles/f2", "nothing interesting", 0o644),
    ];
    let l2 = vec![
        Op::Rename("/dir1", "/dir2"),
        file("/somefiles/f1-overwrite", "new content 1", 0o644),
        Op::Rename("/somefiles/f1-overwrite", "/somefiles/f1"),
        Op::Rename("/somefiles/f2", "/somefiles/f3"),
    ];
    check_snapshots(sn, work, &[l1, l2])
}

fn layers_128_mount(sn: &dyn Snapshotter, work: &Path) -> Result<()> {
    let mut appliers = vec![vec![
        file("/bottom", "way at the bottom\n", 0o777),
        file("/overwriteme", "FIRST!\n", 0o777),
        Op::CreateDir("/ADDHERE", 0o755),
        Op::CreateDir("/ONLYME", 0o755),
        file("/ONLYME/bottom", "bye!\n", 0o777),
    ]];
    for i in 1..=127 {
        appliers.push(vec![
            Op::CreateFileAt("/overwriteme".into(), format!("{i} WAS HERE!\n").into_bytes(), 0o777),
            Op::CreateFileAt(format!("/ADDHERE/file-{i}"), b"same\n".to_vec(), 0o755),
            Op::RemoveAll("/ONLYME"),
            Op::CreateDir("/ONLYME", 0o755),
            Op::CreateFileAt(format!("/ONLYME/file-{i}"), b"only me!\n".to_vec(), 0o777),
        ]);
    }
    let flat = work.join("flat");
    std::fs::create_dir_all(&flat)?;
    let mut parent: Option<String> = None;
    for (i, applier) in appliers.iter().enumerate() {
        let preparing = key(work, &format!("prepare-layer-{i}"));
        std::fs::create_dir_all(&preparing)?;
        let mounts = sn.prepare(&preparing, parent.as_deref(), opt()).with_context(|| format!("[layer {i}] prepare"))?;
        let mounted = Mounted::new(&mounts, Path::new(&preparing)).with_context(|| format!("[layer {i}] mount"))?;
        check_directory_equal(&flat, mounted.path()).with_context(|| format!("[layer {i}] preparing differs from flat before apply"))?;
        apply(&flat, applier)?;
        apply(mounted.path(), applier)?;
        check_directory_equal(&flat, mounted.path()).with_context(|| format!("[layer {i}] preparing differs from flat after apply"))?;
        mounted.unmount()?;
        let committed = key(work, &format!("committed-{i}"));
        sn.commit(&committed, &preparing, opt())?;
        parent = Some(committed);
    }
    let view = key(work, "fullview");
    std::fs::create_dir_all(&view)?;
    let mounts = sn.view(&view, parent.as_deref(), opt())?;
    let mounted = Mounted::new(&mounts, Path::new(&view))?;
    check_directory_equal(&flat, mounted.path()).context("fullview should equal flat")?;
    Ok(())
}
