fn main() -> std::process::ExitCode {
    berth_host::cli::main()
}
