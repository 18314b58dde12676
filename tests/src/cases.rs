//! The cases every backend runs: the same containers, the same assertions.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, ensure};
use oci_spec::runtime::{Capability, LinuxMemoryBuilder, LinuxResourcesBuilder, RootBuilder};

use crate::backend::{ContainerRun, RunResult, RunningBackend};
use crate::spec;

pub struct Case {
    pub name: &'static str,
    pub run: fn(&dyn RunningBackend) -> Result<()>,
}

pub fn cases() -> Vec<Case> {
    vec![
        Case { name: "echo_hello", run: echo_hello },
        Case { name: "exit_code", run: exit_code },
        Case { name: "env_passed", run: env_passed },
        Case { name: "readonly_rootfs", run: readonly_rootfs },
        Case { name: "memory_limit", run: memory_limit },
        Case { name: "dropped_capability", run: dropped_capability },
    ]
}

/// A container id unique in this test process: `<case>-<pid>-<n>`.
pub fn unique_id(case: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{}-{}-{}", case.replace('_', "-"), std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

fn run(backend: &dyn RunningBackend, case: &str, spec: oci_spec::runtime::Spec) -> Result<RunResult> {
    let id = unique_id(case);
    backend.run(&ContainerRun { id: id.clone(), spec }).with_context(|| format!("running container {id} on {}", backend.name()))
}

fn echo_hello(backend: &dyn RunningBackend) -> Result<()> {
    let result = run(backend, "echo_hello", spec::spec_running(&["echo", "hello"]))?;
    ensure!(result.exit_code == 0, "exit code {}: {result:?}", result.exit_code);
    ensure!(result.stdout == "hello\n", "stdout {:?}", result.stdout);
    Ok(())
}

fn exit_code(backend: &dyn RunningBackend) -> Result<()> {
    let result = run(backend, "exit_code", spec::spec_running(&["sh", "-c", "echo bye >&2; exit 42"]))?;
    ensure!(result.exit_code == 42, "exit code {}: {result:?}", result.exit_code);
    ensure!(result.stderr == "bye\n", "stderr {:?}", result.stderr);
    Ok(())
}

fn env_passed(backend: &dyn RunningBackend) -> Result<()> {
    let mut spec = spec::spec_running(&["sh", "-c", "echo \"$BERTH_CASE\""]);
    spec::add_env(&mut spec, "BERTH_CASE=passed through");
    let result = run(backend, "env_passed", spec)?;
    ensure!(result.exit_code == 0, "exit code {}: {result:?}", result.exit_code);
    ensure!(result.stdout == "passed through\n", "stdout {:?}", result.stdout);
    Ok(())
}

fn readonly_rootfs(backend: &dyn RunningBackend) -> Result<()> {
    let write = ["sh", "-c", "touch /probe && echo wrote"];
    // Control: the same write succeeds on a writable rootfs.
    let writable = run(backend, "rootfs_rw", spec::spec_running(&write))?;
    ensure!(writable.exit_code == 0 && writable.stdout == "wrote\n", "writable rootfs: {writable:?}");

    let mut spec = spec::spec_running(&write);
    spec.set_root(Some(RootBuilder::default().path("rootfs").readonly(true).build()?));
    let result = run(backend, "rootfs_ro", spec)?;
    ensure!(result.exit_code != 0, "write to a readonly rootfs succeeded: {result:?}");
    ensure!(result.stderr.contains("Read-only file system"), "stderr {:?}", result.stderr);
    Ok(())
}

fn memory_limit(backend: &dyn RunningBackend) -> Result<()> {
    const LIMIT: i64 = 96 * 1024 * 1024;
    let mut spec = spec::spec_running(&[
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]);
    spec::mount_cgroups(&mut spec);
    let resources = LinuxResourcesBuilder::default()
        .devices(spec.linux().as_ref().and_then(|l| l.resources().as_ref()).and_then(|r| r.devices().clone()).unwrap_or_default())
        .memory(LinuxMemoryBuilder::default().limit(LIMIT).build()?)
        .build()?;
    spec.linux_mut().as_mut().expect("base spec has linux").set_resources(Some(resources));
    let result = run(backend, "memory_limit", spec)?;
    ensure!(result.exit_code == 0, "exit code {}: {result:?}", result.exit_code);
    ensure!(result.stdout.trim() == LIMIT.to_string(), "the cgroup's limit is {:?}, expected {LIMIT}", result.stdout);
    Ok(())
}

/// CAP_NET_RAW (bit 13) is dropped; CAP_CHOWN (bit 0) stays as the control.
fn dropped_capability(backend: &dyn RunningBackend) -> Result<()> {
    let mut spec = spec::spec_running(&["grep", "CapEff", "/proc/self/status"]);
    spec::drop_capability(&mut spec, Capability::NetRaw);
    let result = run(backend, "dropped_capability", spec)?;
    ensure!(result.exit_code == 0, "exit code {}: {result:?}", result.exit_code);
    let hex = result.stdout.split_whitespace().nth(1).with_context(|| format!("no CapEff in {:?}", result.stdout))?;
    let caps = u64::from_str_radix(hex, 16)?;
    ensure!(caps & (1 << 13) == 0, "CAP_NET_RAW still effective: CapEff {hex}");
    ensure!(caps & 1 != 0, "CAP_CHOWN missing too: CapEff {hex}");
    Ok(())
}
