//! The init helper alone: for embedders whose own binary does not dispatch
//! `__berth_init` (the integration tests point `NativeExecutor::init_binary` here).

fn main() {
    berth_runtime::init::maybe_run_init();
    eprintln!("berth-init: internal helper of berth's native executor; not for direct use");
    std::process::exit(2);
}
