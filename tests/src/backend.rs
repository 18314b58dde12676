//! The registry of backends the shared cases run against.
//!
//! A [`Backend`] says whether it can run here ([`SkipReason`] otherwise:
//! a binary missing, not root) and starts what it needs, once for all
//! cases; a [`RunningBackend`] runs one container to completion and shows
//! its logs when a case fails. `BERTH_TEST_BACKENDS=a,b` picks a subset.

use std::fmt;

use oci_spec::runtime::Spec;

use crate::image::TestImage;

/// Why a backend cannot run on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipReason(pub String);

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One way of running containers (an executor with a snapshotter, a
/// daemon with a runtime...).
pub trait Backend: Send + Sync {
    fn name(&self) -> &str;
    /// Whether everything it needs is here.
    fn available(&self) -> Result<(), SkipReason>;
    /// Starts it (daemons in temp dirs, image imported) for every case.
    fn start(&self, image: &TestImage) -> anyhow::Result<Box<dyn RunningBackend>>;
}

/// One container run: `spec` is the case's (containerd's default spec
/// plus the case's changes); the backend sets root and cgroup path.
#[derive(Debug, Clone)]
pub struct ContainerRun {
    /// Unique among runs of this backend.
    pub id: String,
    pub spec: Spec,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResult {
    /// The exit code, 128+N for a signal N.
    pub exit_code: u32,
    pub stdout: String,
    pub stderr: String,
}

/// A started backend; dropping it stops and cleans up everything it started.
pub trait RunningBackend: Send + Sync {
    fn name(&self) -> &str;
    /// Runs the test image with `run.spec` to completion and removes the container.
    fn run(&self, run: &ContainerRun) -> anyhow::Result<RunResult>;
    /// Its daemons' logs, printed when a case fails.
    fn logs(&self) -> String;
}

/// Every backend berth knows.
///
/// `containerd+berth-snapshotter` is containerd with berth-snapshot's
/// overlayfs as its proxy snapshotter through `berth snapshotter serve`.
/// TODO(lead): `containerd+berth-runtime` (with
/// `RuntimeSelection::runc_binary(<berth runtime CLI>)`) join once those
/// pieces are in the tree; the native and runc/crun backends with the executor.
pub fn registry() -> Vec<Box<dyn Backend>> {
    use crate::containerd_backend::{ContainerdTestBackend, berth_cli, berth_runc_link};
    use crate::native_backend::NativeTestBackend;
    vec![
        Box::new(NativeTestBackend::native("overlayfs")),
        Box::new(NativeTestBackend::native("native")),
        Box::new(NativeTestBackend::native("fuse-overlayfs")),
        Box::new(NativeTestBackend::oci_runtime("runc")),
        Box::new(NativeTestBackend::oci_runtime("crun")),
        Box::new(ContainerdTestBackend::plain()),
        Box::new(ContainerdTestBackend::with_berth_snapshotter(berth_cli(), "overlayfs")),
        Box::new(ContainerdTestBackend::with_berth_runtime(berth_runc_link())),
    ]
}

/// The backends `BERTH_TEST_BACKENDS` (comma-separated names) selects from
/// `registry`, all when unset or empty. An unknown name is an error naming
/// the known ones.
pub fn select(registry: Vec<Box<dyn Backend>>, wanted: Option<&str>) -> anyhow::Result<Vec<Box<dyn Backend>>> {
    let Some(wanted) = wanted.map(str::trim).filter(|w| !w.is_empty()) else { return Ok(registry) };
    let names: Vec<&str> = wanted.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
    let known: Vec<String> = registry.iter().map(|b| b.name().to_string()).collect();
    if let Some(unknown) = names.iter().find(|n| !known.iter().any(|k| k == *n)) {
        anyhow::bail!("BERTH_TEST_BACKENDS names {unknown:?}; known backends: {}", known.join(", "));
    }
    Ok(registry.into_iter().filter(|b| names.contains(&b.name())).collect())
}

/// A selected backend, with why it is skipped when it is.
pub type Selected = (Box<dyn Backend>, Option<SkipReason>);

/// The selected backends, printing a line for each that is skipped and why.
pub fn selected_from_env() -> anyhow::Result<Vec<Selected>> {
    let wanted = std::env::var("BERTH_TEST_BACKENDS").ok();
    let backends = select(registry(), wanted.as_deref())?;
    Ok(backends
        .into_iter()
        .map(|backend| {
            let skip = backend.available().err();
            if let Some(reason) = &skip {
                eprintln!("skipping backend {}: {reason}", backend.name());
            }
            (backend, skip)
        })
        .collect())
}

/// `Err(SkipReason)` unless `binary` is on PATH (or is an existing path).
pub fn require_binary(binary: &str) -> Result<(), SkipReason> {
    if binary.contains('/') {
        return if std::path::Path::new(binary).is_file() {
            Ok(())
        } else {
            Err(SkipReason(format!("{binary} is missing")))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| dir.join(binary).is_file()) {
        Ok(())
    } else {
        Err(SkipReason(format!("{binary} is not on PATH")))
    }
}

pub fn require_root() -> Result<(), SkipReason> {
    if rustix::process::geteuid().is_root() { Ok(()) } else { Err(SkipReason("needs root".into())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(&'static str);
    impl Backend for Fake {
        fn name(&self) -> &str {
            self.0
        }
        fn available(&self) -> Result<(), SkipReason> {
            Ok(())
        }
        fn start(&self, _: &TestImage) -> anyhow::Result<Box<dyn RunningBackend>> {
            anyhow::bail!("not started in this test")
        }
    }

    fn fakes() -> Vec<Box<dyn Backend>> {
        vec![Box::new(Fake("a")), Box::new(Fake("b")), Box::new(Fake("c"))]
    }

    #[test]
    fn selection_by_names() {
        let names = |v: Vec<Box<dyn Backend>>| v.iter().map(|b| b.name().to_string()).collect::<Vec<_>>();
        assert_eq!(names(select(fakes(), None).unwrap()), ["a", "b", "c"]);
        assert_eq!(names(select(fakes(), Some("")).unwrap()), ["a", "b", "c"]);
        assert_eq!(names(select(fakes(), Some("c, a")).unwrap()), ["a", "c"]);
        let err = select(fakes(), Some("a,zz")).err().unwrap().to_string();
        assert!(err.contains("\"zz\"") && err.contains("a, b, c"), "{err}");
    }

    #[test]
    fn missing_binaries_are_skip_reasons() {
        assert!(require_binary("sh").is_ok());
        let reason = require_binary("berth-no-such-binary").unwrap_err();
        assert!(reason.0.contains("berth-no-such-binary"));
        assert!(require_binary("/no/such/path").is_err());
    }
}
