//! `berth-init`: the native executor's init helper alone. Two packages build
//! this file: berth-host as `berth-init`, installed beside `berth` (`cargo
//! build --release -p berth-host` builds both), which `berth run` and `berth
//! runtime` execute instead of re-executing the whole `berth` binary (a tenth
//! of the size, it starts in about half the time, on every container's
//! critical path); and berth-runtime as `berth-runtime-init`, for embedders
//! whose own binary does not dispatch `__berth_init` (this crate's
//! integration tests point `NativeExecutor::init_binary` there). It only
//! serves a parent of the same build (`berth_runtime::init::BUILD`).

fn main() {
    berth_runtime::init::maybe_run_init();
    eprintln!("berth-init: internal helper of berth's native executor (build {}); not for direct use", berth_runtime::init::BUILD);
    std::process::exit(2);
}
