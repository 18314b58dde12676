//! Crash injection for the crash-safety tests: with
//! `BERTH_SNAPSHOT_FAILPOINT=<name>` in the environment the process aborts
//! (no unwinding, no destructors: as a kill would) when it reaches the step
//! `<name>`. Read once; costs one comparison per step otherwise.

use std::sync::OnceLock;

pub const FAILPOINT_ENV: &str = "BERTH_SNAPSHOT_FAILPOINT";

pub(crate) fn hit(name: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var(FAILPOINT_ENV).ok().filter(|v| !v.is_empty()));
    if armed.as_deref() == Some(name) {
        eprintln!("berth-snapshot: failpoint {name}: aborting");
        std::process::abort();
    }
}
