//! `cargo test -p berth-tests --test containerd`
//!
//! 1. The shared cases (`berth_tests::cases`) on every selected backend
//!    (`BERTH_TEST_BACKENDS`), each backend started once for all its cases.
//! 2. containerd-specific trials against one containerd of this module
//!    (started on first use, stopped at the end): client errors, image
//!    import/unpack, logs/list/kill, runtime BinaryName, the snapshots
//!    service on its own and behind containerd as a proxy plugin.
//!
//! A failing trial prints the logs of the daemons it used.

mod cli;
mod client;
mod errors;
mod module;
mod runtime;
mod snapshots;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use berth_tests::backend::{Backend, RunningBackend, selected_from_env};
use berth_tests::cases::cases;
use berth_tests::closers::Closers;
use berth_tests::image::{TestImage, build_busybox_image};
use libtest_mimic::{Arguments, Completion, Failed, Trial};

pub const IMAGE_NAME: &str = "docker.io/berth-test/busybox:latest";

fn main() -> ExitCode {
    // The relay trial runs this binary again as a plain berth client.
    if let Ok(request) = std::env::var(client::RELAY_CHILD_ENV) {
        return client::relay_child(&request);
    }
    let args = Arguments::from_args();
    let mut closers = Closers::new();
    let image = match prepare_image(&mut closers) {
        Ok(image) => image,
        Err(err) => {
            eprintln!("building the test image: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let selected = match selected_from_env() {
        Ok(selected) => selected,
        Err(err) => {
            eprintln!("{err:#}");
            return ExitCode::FAILURE;
        }
    };
    let containerd_selected = selected.iter().any(|(b, _)| b.name() == "containerd");
    let containerd_skip = selected.iter().find(|(b, _)| b.name() == "containerd").and_then(|(_, skip)| skip.clone());

    let mut trials = Vec::new();
    let mut started: Vec<Arc<LazyBackend>> = Vec::new();
    for (backend, skip) in selected {
        let lazy = Arc::new(LazyBackend { backend, image: image.clone(), running: OnceLock::new() });
        for case in cases() {
            let (lazy, skip) = (lazy.clone(), skip.clone());
            let name = format!("{}::{}", lazy.backend.name(), case.name);
            trials.push(Trial::ignorable_test(name, move || {
                if let Some(reason) = skip {
                    return Ok(Completion::ignored_with(reason));
                }
                lazy.run_case(case.run).map(|()| Completion::Completed)
            }));
        }
        started.push(lazy);
    }

    let module = Arc::new(module::LazyModule::new(image.clone()));
    if containerd_selected {
        for (name, trial) in module::trials() {
            // Trials that need no daemon run even where containerd is missing.
            let needs_daemon = !matches!(trial, module::ModuleTrial::Standalone(_));
            let (module, skip) = (module.clone(), containerd_skip.clone().filter(|_| needs_daemon));
            trials.push(Trial::ignorable_test(format!("containerd-api::{name}"), move || {
                if let Some(reason) = skip {
                    return Ok(Completion::ignored_with(reason));
                }
                module.run_trial(trial).map(|()| Completion::Completed)
            }));
        }
    }

    let conclusion = libtest_mimic::run(&args, trials);
    // Stop what was started: the module's daemon, each backend.
    drop(module);
    drop(started);
    if let Err(err) = closers.close() {
        eprintln!("{err:#}");
    }
    conclusion.exit_code()
}

fn prepare_image(closers: &mut Closers) -> anyhow::Result<TestImage> {
    let dir = tempfile::Builder::new().prefix("berth-test-image-").tempdir()?;
    let image = build_busybox_image(dir.path(), IMAGE_NAME)?;
    closers.push("removing the test image", move || Ok(dir.close()?));
    Ok(image)
}

/// A backend started by its first case and stopped when dropped.
struct LazyBackend {
    backend: Box<dyn Backend>,
    image: TestImage,
    running: OnceLock<Result<Box<dyn RunningBackend>, String>>,
}

impl LazyBackend {
    fn run_case(&self, case: fn(&dyn RunningBackend) -> anyhow::Result<()>) -> Result<(), Failed> {
        let running = self
            .running
            .get_or_init(|| self.backend.start(&self.image).map_err(|e| format!("starting {}: {e:#}", self.backend.name())));
        let running = running.as_ref().map_err(|e| Failed::from(e.as_str()))?;
        match catch_unwind(AssertUnwindSafe(|| case(running.as_ref()))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(failed_with_logs(format!("{err:#}"), running.name(), &running.logs())),
            Err(panic) => Err(failed_with_logs(panic_message(&panic), running.name(), &running.logs())),
        }
    }
}

pub fn failed_with_logs(message: String, label: &str, logs: &str) -> Failed {
    eprintln!("----- {label} logs -----\n{logs}\n----- end of {label} logs -----");
    Failed::from(message)
}

pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".into())
}
