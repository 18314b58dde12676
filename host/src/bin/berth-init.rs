//! `berth-init`: the native executor's init helper alone, installed beside
//! `berth` (`cargo build --release -p berth-host` builds both). `berth run`
//! and `berth runtime` execute it instead of re-executing the whole `berth`
//! binary: a tenth of the size, it starts in about half the time, and that
//! start is on every container's critical path. It only serves a `berth`
//! of the same build (berth_runtime::init::BUILD); without it, `berth`
//! runs itself as the helper.

fn main() {
    berth_runtime::init::maybe_run_init();
    eprintln!("berth-init: internal helper of berth's native executor (build {}); not for direct use", berth_runtime::init::BUILD);
    std::process::exit(2);
}
