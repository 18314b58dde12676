//! cgroup v1 and v2 managers behind one trait.
//!
//! Containers go under a berth-owned parent (`berth/<id>` unless the spec's
//! `cgroupsPath` says otherwise); the runtime never moves its own process.
//! v2 device rules become an eBPF program attached to the container's
//! cgroup ([`device_filter`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};

use crate::config::CgroupView;

pub mod device_filter;
pub mod grace_period;

pub trait CgroupManager: Send + Sync {
    /// Creates the cgroup(s) and writes the limits.
    fn apply(&self, resources: Option<&LinuxResources>) -> Result<()>;
    /// Moves `pid` in.
    fn add(&self, pid: i32) -> Result<()>;
    /// Processes inside.
    fn pids(&self) -> Result<Vec<i32>>;
    /// Kills what is left and removes the directories.
    fn destroy(&self) -> Result<()>;
    /// What a `cgroup` mount inside the container shows.
    fn views(&self) -> Vec<CgroupView>;
}

/// The cgroup path relative to the hierarchy root for a container.
pub fn relative_path(cgroups_path: Option<&Path>, id: &str) -> PathBuf {
    match cgroups_path.map(|p| p.to_string_lossy().into_owned()) {
        // systemd form "slice:prefix:name", mapped onto the cgroupfs layout.
        Some(p) if p.matches(':').count() == 2 && !p.starts_with('/') => {
            let mut it = p.splitn(3, ':');
            let (slice, prefix, name) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
            let slice = if slice.is_empty() { "system.slice" } else { slice };
            PathBuf::from(slice).join(format!("{prefix}-{name}.scope"))
        }
        Some(p) if !p.is_empty() => PathBuf::from(p.trim_start_matches('/')),
        _ => PathBuf::from("berth").join(id),
    }
}

const CGROUP2_SUPER_MAGIC: i64 = 0x63677270;
const CGROUP_SUPER_MAGIC: i64 = 0x27e0eb;

/// The manager for this host: v2 when /sys/fs/cgroup is cgroup2, else v1
/// over every mounted v1 hierarchy (a hybrid host's empty unified tree is ignored).
pub fn manager_for(rel: &Path) -> Result<Box<dyn CgroupManager>> {
    if is_v2_host() {
        return Ok(Box::new(V2 { root: "/sys/fs/cgroup".into(), rel: rel.to_path_buf() }));
    }
    Ok(Box::new(V1 { hierarchies: v1_hierarchies()?, rel: rel.to_path_buf() }))
}

/// Whether /sys/fs/cgroup is the cgroup2 (unified) tree.
pub fn is_v2_host() -> bool {
    filesystem_type(c"/sys/fs/cgroup") == Some(CGROUP2_SUPER_MAGIC)
}

/// statfs's filesystem magic number of `path`.
fn filesystem_type(path: &std::ffi::CStr) -> Option<i64> {
    // SAFETY: an all-zero statfs is a valid value to be overwritten.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and pointer.
    (unsafe { libc::statfs(path.as_ptr(), &mut st) } == 0).then_some(st.f_type as i64)
}

/// (name, mountpoint) of every v1 hierarchy, from /proc/self/mountinfo.
pub fn v1_hierarchies() -> Result<Vec<(String, PathBuf)>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").context("read /proc/self/mountinfo")?;
    let mut out = Vec::new();
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let mut r = right.split_whitespace();
        if r.next() != Some("cgroup") {
            continue;
        }
        let Some(mp) = left.split_whitespace().nth(4) else { continue };
        let mp = PathBuf::from(mp);
        let name = mp.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !out.iter().any(|(_, p): &(String, PathBuf)| p == &mp) {
            out.push((name, mp));
        }
    }
    Ok(out)
}

fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    std::fs::write(dir.join(file), value).with_context(|| format!("write {value:?} to {}", dir.join(file).display()))
}

fn read_pids(file: &Path) -> Result<Vec<i32>> {
    match std::fs::read_to_string(file) {
        Ok(s) => Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(e).with_context(|| format!("read {}", file.display())),
    }
}

/// Creates a container's cgroup directory. Retried: the last container of
/// a per-root parent removes that parent as it goes
/// ([`remove_per_root_parent`]), which can race with this mkdir.
fn create_cgroup_dir(dir: &Path) -> Result<()> {
    let mut attempt = 0;
    loop {
        match std::fs::create_dir_all(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < 5 => attempt += 1,
            other => return other.with_context(|| format!("create cgroup {}", dir.display())),
        }
    }
}

/// The parent of `rel` when it is a per-root parent the host made
/// (`berth-<root key>`, directly under the hierarchy's root).
fn per_root_parent(rel: &Path) -> Option<&Path> {
    let parent = rel.parent()?;
    let mut components = parent.components();
    let name = components.next()?.as_os_str().to_str()?;
    let key = name.strip_prefix("berth-")?;
    (components.next().is_none() && !key.is_empty()).then_some(parent)
}

/// Removes the per-root parent of `rel` under `hierarchy` once its last
/// container is gone, so roots that come and go (tests, one-off workers)
/// leave no cgroups behind. rmdir fails while another container is inside;
/// that container's own removal tries again. The default root's `berth`
/// parent stays (as containerd's namespace parents do), and parents made by
/// anyone else are never touched.
fn remove_per_root_parent(hierarchy: &Path, rel: &Path) {
    if let Some(parent) = per_root_parent(rel) {
        let _ = std::fs::remove_dir(hierarchy.join(parent));
    }
}

/// SIGKILL everything in `procs`, then rmdir `dir` (retried while the
/// killed tasks leave).
fn kill_and_remove(dir: &Path, procs: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for attempt in 0..500 {
        for pid in read_pids(procs)? {
            // SAFETY: plain syscall.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if attempt < 499 && e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) => return Err(e).with_context(|| format!("remove cgroup {}", dir.display())),
        }
    }
    Ok(())
}

fn device_rule(d: &LinuxDeviceCgroup) -> String {
    let typ = d.typ().map(|t| serde_json::to_value(t).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default());
    let num = |n: Option<i64>| n.filter(|n| *n >= 0).map_or("*".to_string(), |n| n.to_string());
    format!(
        "{} {}:{} {}",
        typ.as_deref().unwrap_or("a"),
        num(d.major()),
        num(d.minor()),
        d.access().as_deref().unwrap_or("rwm")
    )
}

/// The devices the default /dev needs, allowed after the spec's rules (as runc).
pub fn default_device_rules() -> Vec<&'static str> {
    vec![
        "c 1:3 rwm",   // null
        "c 1:5 rwm",   // zero
        "c 1:7 rwm",   // full
        "c 1:8 rwm",   // random
        "c 1:9 rwm",   // urandom
        "c 5:0 rwm",   // tty
        "c 5:1 rwm",   // console
        "c 5:2 rwm",   // ptmx
        "c 136:* rwm", // pts
        "c 10:200 rwm", // tun
    ]
}

/// cgroup v1: one directory per hierarchy.
pub struct V1 {
    pub hierarchies: Vec<(String, PathBuf)>,
    pub rel: PathBuf,
}

impl V1 {
    fn dir(&self, name: &str) -> Option<PathBuf> {
        self.hierarchies.iter().find(|(n, _)| n == name || n.split(',').any(|c| c == name)).map(|(_, mp)| mp.join(&self.rel))
    }

    /// cpuset.cpus/mems start empty in a new v1 cgroup (no task may join):
    /// copy them down from the nearest populated ancestor.
    fn init_cpuset(&self, mp: &Path) -> Result<()> {
        let mut cur = mp.to_path_buf();
        for comp in self.rel.components() {
            let parent = cur.clone();
            cur.push(comp);
            for f in ["cpuset.cpus", "cpuset.mems"] {
                let mine = std::fs::read_to_string(cur.join(f)).unwrap_or_default();
                if mine.trim().is_empty() {
                    let theirs = std::fs::read_to_string(parent.join(f)).with_context(|| format!("read {}", parent.join(f).display()))?;
                    write(&cur, f, theirs.trim())?;
                }
            }
        }
        Ok(())
    }
}

impl CgroupManager for V1 {
    fn apply(&self, resources: Option<&LinuxResources>) -> Result<()> {
        for (name, mp) in &self.hierarchies {
            let dir = mp.join(&self.rel);
            create_cgroup_dir(&dir)?;
            if name.split(',').any(|c| c == "cpuset") {
                self.init_cpuset(mp)?;
            }
        }
        let Some(r) = resources else { return Ok(()) };
        if let (Some(m), Some(dir)) = (r.memory(), self.dir("memory")) {
            if let Some(l) = m.limit() {
                write(&dir, "memory.limit_in_bytes", &l.to_string())?;
            }
            if let Some(s) = m.swap() {
                if dir.join("memory.memsw.limit_in_bytes").exists() {
                    write(&dir, "memory.memsw.limit_in_bytes", &s.to_string())?;
                } else {
                    tracing::warn!("memory.swap ignored: swap accounting is off on this host");
                }
            }
            if let Some(v) = m.reservation() {
                write(&dir, "memory.soft_limit_in_bytes", &v.to_string())?;
            }
            if let Some(v) = m.swappiness() {
                write(&dir, "memory.swappiness", &v.to_string())?;
            }
            if m.disable_oom_killer() == Some(true) {
                write(&dir, "memory.oom_control", "1")?;
            }
        }
        if let Some(c) = r.cpu() {
            if let Some(dir) = self.dir("cpu") {
                if let Some(v) = c.shares() {
                    write(&dir, "cpu.shares", &v.to_string())?;
                }
                if let Some(v) = c.period() {
                    write(&dir, "cpu.cfs_period_us", &v.to_string())?;
                }
                if let Some(v) = c.quota() {
                    write(&dir, "cpu.cfs_quota_us", &v.to_string())?;
                }
                if let Some(v) = c.realtime_period() {
                    write(&dir, "cpu.rt_period_us", &v.to_string())?;
                }
                if let Some(v) = c.realtime_runtime() {
                    write(&dir, "cpu.rt_runtime_us", &v.to_string())?;
                }
            }
            if let Some(dir) = self.dir("cpuset") {
                if let Some(v) = c.cpus() {
                    write(&dir, "cpuset.cpus", v)?;
                }
                if let Some(v) = c.mems() {
                    write(&dir, "cpuset.mems", v)?;
                }
            }
        }
        if let (Some(p), Some(dir)) = (r.pids(), self.dir("pids")) {
            let v = if p.limit() > 0 { p.limit().to_string() } else { "max".into() };
            write(&dir, "pids.max", &v)?;
        }
        if let (Some(dir), Some(rules)) = (self.dir("devices"), r.devices()) {
            for d in rules {
                let file = if d.allow() { "devices.allow" } else { "devices.deny" };
                write(&dir, file, &device_rule(d))?;
            }
            for rule in default_device_rules() {
                write(&dir, "devices.allow", rule)?;
            }
        }
        Ok(())
    }

    fn add(&self, pid: i32) -> Result<()> {
        for (_, mp) in &self.hierarchies {
            write(&mp.join(&self.rel), "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    fn pids(&self) -> Result<Vec<i32>> {
        let mut all = Vec::new();
        for (_, mp) in &self.hierarchies {
            for p in read_pids(&mp.join(&self.rel).join("cgroup.procs"))? {
                if !all.contains(&p) {
                    all.push(p);
                }
            }
        }
        Ok(all)
    }

    fn destroy(&self) -> Result<()> {
        let mut first_err = None;
        for (_, mp) in &self.hierarchies {
            let dir = mp.join(&self.rel);
            match kill_and_remove(&dir, &dir.join("cgroup.procs")) {
                Ok(()) => remove_per_root_parent(mp, &self.rel),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn views(&self) -> Vec<CgroupView> {
        self.hierarchies
            .iter()
            .map(|(name, mp)| CgroupView { name: name.clone(), host_path: mp.join(&self.rel) })
            .collect()
    }
}

/// cgroup v2: one directory in the unified tree.
pub struct V2 {
    pub root: PathBuf,
    pub rel: PathBuf,
}

impl V2 {
    fn dir(&self) -> PathBuf {
        self.root.join(&self.rel)
    }
}

/// cpu.shares (2..262144) -> cpu.weight (1..10000), as runc converts.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 { 0 } else { 1 + ((shares.clamp(2, 262144) - 2) * 9999) / 262142 }
}

impl CgroupManager for V2 {
    fn apply(&self, resources: Option<&LinuxResources>) -> Result<()> {
        let dir = self.dir();
        create_cgroup_dir(&dir)?;
        // Controllers must be enabled in every ancestor's subtree_control.
        let available = std::fs::read_to_string(self.root.join("cgroup.controllers")).unwrap_or_default();
        let enable: Vec<String> = available
            .split_whitespace()
            .filter(|c| ["cpu", "cpuset", "memory", "pids", "io", "hugetlb"].contains(c))
            .map(|c| format!("+{c}"))
            .collect();
        let mut cur = self.root.clone();
        for comp in self.rel.components() {
            if !enable.is_empty() {
                // Best effort: a controller already enabled or unavailable is not fatal.
                let _ = std::fs::write(cur.join("cgroup.subtree_control"), enable.join(" "));
            }
            cur.push(comp);
        }
        let Some(r) = resources else { return Ok(()) };
        if let Some(m) = r.memory() {
            if let Some(l) = m.limit() {
                write(&dir, "memory.max", &if l > 0 { l.to_string() } else { "max".into() })?;
                if let Some(s) = m.swap() {
                    let swap = if s > 0 { (s - l.max(0)).max(0).to_string() } else { "max".into() };
                    write(&dir, "memory.swap.max", &swap)?;
                }
            }
            if let Some(v) = m.reservation() {
                write(&dir, "memory.low", &v.to_string())?;
            }
        }
        if let Some(c) = r.cpu() {
            if let Some(s) = c.shares() {
                write(&dir, "cpu.weight", &shares_to_weight(s).to_string())?;
            }
            if c.quota().is_some() || c.period().is_some() {
                let quota = c.quota().filter(|q| *q > 0).map_or("max".to_string(), |q| q.to_string());
                write(&dir, "cpu.max", &format!("{quota} {}", c.period().unwrap_or(100000)))?;
            }
            if let Some(v) = c.cpus() {
                write(&dir, "cpuset.cpus", v)?;
            }
            if let Some(v) = c.mems() {
                write(&dir, "cpuset.mems", v)?;
            }
        }
        if let Some(p) = r.pids() {
            write(&dir, "pids.max", &if p.limit() > 0 { p.limit().to_string() } else { "max".into() })?;
        }
        if let Some(rules) = r.devices() {
            // The spec's rules, then the default /dev's devices (as v1 and runc).
            let mut all = Vec::new();
            for d in rules {
                all.extend(device_filter::Rule::from_oci(d).with_context(|| format!("device rule {}", device_rule(d)))?);
            }
            for rule in default_device_rules() {
                all.push(device_filter::Rule::parse(true, rule)?);
            }
            device_filter::apply(&dir, &all).context("cgroup v2 device rules")?;
        }
        for (k, v) in r.unified().iter().flatten() {
            if k.contains('/') || k.contains("..") {
                anyhow::bail!("unified cgroup key {k:?} is not a file name");
            }
            write(&dir, k, v)?;
        }
        Ok(())
    }

    fn add(&self, pid: i32) -> Result<()> {
        write(&self.dir(), "cgroup.procs", &pid.to_string())
    }

    fn pids(&self) -> Result<Vec<i32>> {
        read_pids(&self.dir().join("cgroup.procs"))
    }

    fn destroy(&self) -> Result<()> {
        let dir = self.dir();
        if dir.join("cgroup.kill").exists() {
            let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        }
        kill_and_remove(&dir, &dir.join("cgroup.procs"))?;
        remove_per_root_parent(&self.root, &self.rel);
        Ok(())
    }

    fn views(&self) -> Vec<CgroupView> {
        vec![CgroupView { name: String::new(), host_path: self.dir() }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn only_per_root_parents_are_removable() {
        assert_eq!(per_root_parent(Path::new("berth-0123abcd/c1")), Some(Path::new("berth-0123abcd")));
        assert_eq!(per_root_parent(Path::new("berth/c1")), None, "the default root's parent stays");
        assert_eq!(per_root_parent(Path::new("berth-/c1")), None);
        assert_eq!(per_root_parent(Path::new("kubepods/berth-x/c1")), None, "not directly under the root");
        assert_eq!(per_root_parent(Path::new("system.slice/berth-c1.scope")), None);
        assert_eq!(per_root_parent(Path::new("c1")), None);
    }

    #[test]
    fn paths_default_under_berth_and_accept_systemd_form() {
        assert_eq!(relative_path(None, "c1"), PathBuf::from("berth/c1"));
        assert_eq!(relative_path(Some(Path::new("/default/c1")), "c1"), PathBuf::from("default/c1"));
        assert_eq!(
            relative_path(Some(Path::new("system.slice:cri:c1")), "c1"),
            PathBuf::from("system.slice/cri-c1.scope")
        );
    }

    #[test]
    fn v1_writes_limits_into_each_controller_and_copies_cpuset() {
        let root = tempfile::tempdir().unwrap();
        let hier: Vec<(String, PathBuf)> = ["memory", "cpu", "pids", "cpuset", "devices"]
            .iter()
            .map(|n| (n.to_string(), root.path().join(n)))
            .collect();
        for (_, p) in &hier {
            std::fs::create_dir_all(p).unwrap();
        }
        std::fs::write(root.path().join("cpuset/cpuset.cpus"), "0-1\n").unwrap();
        std::fs::write(root.path().join("cpuset/cpuset.mems"), "0\n").unwrap();
        let m = V1 { hierarchies: hier, rel: "berth/c1".into() };
        m.apply(Some(&resources(
            r#"{"memory":{"limit":67108864},"cpu":{"shares":512,"quota":50000,"period":100000},"pids":{"limit":16},
                "devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rw"}]}"#,
        )))
        .unwrap();
        let read = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
        assert_eq!(read("memory/berth/c1/memory.limit_in_bytes"), "67108864");
        assert_eq!(read("cpu/berth/c1/cpu.shares"), "512");
        assert_eq!(read("cpu/berth/c1/cpu.cfs_quota_us"), "50000");
        assert_eq!(read("pids/berth/c1/pids.max"), "16");
        assert_eq!(read("cpuset/berth/cpuset.cpus"), "0-1");
        assert_eq!(read("cpuset/berth/c1/cpuset.mems"), "0");
        // a plain file keeps only the last write; the rule order is covered by device_rule
        assert_eq!(read("devices/berth/c1/devices.deny"), "a *:* rwm");
        assert_eq!(m.views().len(), 5);
    }

    #[test]
    fn v2_writes_unified_files() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cgroup.controllers"), "cpu memory pids").unwrap();
        let m = V2 { root: root.path().into(), rel: "berth/c1".into() };
        m.apply(Some(&resources(
            r#"{"memory":{"limit":1048576,"swap":2097152},"cpu":{"shares":1024,"quota":20000},"pids":{"limit":0}}"#,
        )))
        .unwrap();
        let read = |p: &str| std::fs::read_to_string(root.path().join("berth/c1").join(p)).unwrap();
        assert_eq!(read("memory.max"), "1048576");
        assert_eq!(read("memory.swap.max"), "1048576");
        assert_eq!(read("cpu.weight"), shares_to_weight(1024).to_string());
        assert_eq!(read("cpu.max"), "20000 100000");
        assert_eq!(read("pids.max"), "max");
        assert_eq!(std::fs::read_to_string(root.path().join("cgroup.subtree_control")).unwrap(), "+cpu +memory +pids");
    }

    #[test]
    fn shares_convert_to_weights_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262144), 10000);
        assert_eq!(shares_to_weight(1024), 39);
    }

    /// Where a cgroup2 hierarchy is mounted (/sys/fs/cgroup on a v2 host,
    /// /sys/fs/cgroup/unified on a hybrid one).
    fn cgroup2_mount() -> Option<PathBuf> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        info.lines().find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            if right.split_whitespace().next() != Some("cgroup2") {
                return None;
            }
            left.split_whitespace().nth(4).map(PathBuf::from)
        })
    }

    /// A fresh parent cgroup for one test under the cgroup2 mount, removed
    /// (with everything under it) on drop. Never the test's own cgroup.
    struct TestCgroup(PathBuf);

    impl TestCgroup {
        fn new(name: &str) -> Option<TestCgroup> {
            // SAFETY: plain getter.
            if unsafe { libc::geteuid() } != 0 {
                eprintln!("skipped: needs root");
                return None;
            }
            let Some(mount) = cgroup2_mount() else {
                eprintln!("skipped: no cgroup2 hierarchy mounted");
                return None;
            };
            let dir = mount.join(format!("berth-test-{name}-{}", std::process::id()));
            std::fs::create_dir(&dir).unwrap();
            Some(TestCgroup(dir))
        }
    }

    impl Drop for TestCgroup {
        fn drop(&mut self) {
            let mut dirs: Vec<PathBuf> = vec![self.0.clone()];
            let mut i = 0;
            while i < dirs.len() {
                for e in std::fs::read_dir(&dirs[i]).into_iter().flatten().flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        dirs.push(e.path());
                    }
                }
                i += 1;
            }
            for d in dirs.iter().rev() {
                let _ = kill_and_remove(d, &d.join("cgroup.procs"));
            }
        }
    }

    /// Forks a child, moves it into `cgroup`, has it open each path, and
    /// returns the errno of each open (0: opened).
    fn opens_in(cgroup: &Path, paths: &[&std::ffi::CStr]) -> Vec<i32> {
        let mut go = [0; 2];
        let mut res = [0; 2];
        // SAFETY: pipes with valid arrays.
        unsafe {
            assert_eq!(libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC), 0);
            assert_eq!(libc::pipe2(res.as_mut_ptr(), libc::O_CLOEXEC), 0);
        }
        let ptrs: Vec<*const libc::c_char> = paths.iter().map(|p| p.as_ptr()).collect();
        // SAFETY: the child only calls async-signal-safe functions (read,
        // open, close, write, _exit) and touches no allocator.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            unsafe {
                let mut b = 0u8;
                libc::read(go[0], (&mut b as *mut u8).cast(), 1);
                for p in &ptrs {
                    let fd = libc::open(*p, libc::O_RDONLY | libc::O_CLOEXEC);
                    let err: i32 = if fd < 0 { *libc::__errno_location() } else { 0 };
                    if fd >= 0 {
                        libc::close(fd);
                    }
                    libc::write(res[1], (&err as *const i32).cast(), 4);
                }
                libc::_exit(0);
            }
        }
        std::fs::write(cgroup.join("cgroup.procs"), pid.to_string()).unwrap();
        let mut out = Vec::new();
        // SAFETY: valid buffers; the child is ours.
        unsafe {
            libc::close(res[1]);
            libc::write(go[1], [1u8].as_ptr().cast(), 1);
            for _ in paths {
                let mut err = 0i32;
                assert_eq!(libc::read(res[0], (&mut err as *mut i32).cast(), 4), 4);
                out.push(err);
            }
            libc::waitpid(pid, std::ptr::null_mut(), 0);
            libc::close(res[0]);
            libc::close(go[0]);
            libc::close(go[1]);
        }
        out
    }

    #[test]
    fn v2_device_program_allows_null_and_refuses_zero_in_a_real_cgroup() {
        let Some(t) = TestCgroup::new("devices") else { return };
        let cg = t.0.join("c");
        std::fs::create_dir(&cg).unwrap();
        let rules = [device_filter::Rule::parse(false, "a *:* rwm").unwrap(), device_filter::Rule::parse(true, "c 1:3 rwm").unwrap()];
        device_filter::apply(&cg, &rules).unwrap();
        assert_eq!(device_filter::attached_count(&cg).unwrap(), 1);
        assert_eq!(opens_in(&cg, &[c"/dev/null", c"/dev/zero"]), [0, libc::EPERM]);
        // An update replaces berth's program: now zero is allowed and null is not.
        let rules = [device_filter::Rule::parse(false, "a *:* rwm").unwrap(), device_filter::Rule::parse(true, "c 1:5 r").unwrap()];
        device_filter::apply(&cg, &rules).unwrap();
        assert_eq!(device_filter::attached_count(&cg).unwrap(), 1, "the previous program was detached");
        assert_eq!(opens_in(&cg, &[c"/dev/null", c"/dev/zero"]), [libc::EPERM, 0]);
    }

    #[test]
    fn v2_manager_applies_spec_device_rules_plus_the_default_dev() {
        let Some(t) = TestCgroup::new("v2devices") else { return };
        // The test's own parent as the v2 root: it delegates no controller,
        // so apply writes no subtree_control above it.
        let m = V2 { root: t.0.clone(), rel: "berth/c1".into() };
        m.apply(Some(&resources(
            r#"{"devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":7,"access":"rw"},
                           {"allow":false,"type":"c","major":1,"minor":3,"access":"w"}]}"#,
        )))
        .unwrap();
        let dir = t.0.join("berth/c1");
        assert_eq!(device_filter::attached_count(&dir).unwrap(), 1);
        // null and zero: default /dev devices (allowed after the spec's rules);
        // full: the spec's rule; kmsg (c 1:11): denied by the deny-all.
        assert_eq!(opens_in(&dir, &[c"/dev/null", c"/dev/zero", c"/dev/full", c"/dev/kmsg"]), [0, 0, 0, libc::EPERM]);
        m.apply(Some(&resources(r#"{"devices":[{"allow":false,"access":"rwm"}]}"#))).unwrap();
        assert_eq!(device_filter::attached_count(&dir).unwrap(), 1);
        m.destroy().unwrap();
        assert!(!dir.exists());
    }
}
