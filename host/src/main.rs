fn main() -> std::process::ExitCode {
    // The native executor re-executes this binary as its init helper: that
    // must happen before anything else (no threads, no runtime) has started.
    berth_runtime::init::maybe_run_init();
    berth_host::cli::main()
}
