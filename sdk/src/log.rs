//! Logging through the host (`berth:plugin/host.log`). The host prefixes each
//! line with the plugin's name.
//!
//! Natively (in `cargo test`) there is no host: lines are recorded per thread
//! and [`crate::testing::take_logs`] returns them.

use crate::{KeyValue, Level};

/// Logs `message` with structured `fields`.
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<KeyValue> = fields.iter().map(|(k, v)| KeyValue::new(*k, *v)).collect();
    emit(level, message, fields);
}

#[cfg(target_family = "wasm")]
fn emit(level: Level, message: &str, fields: Vec<KeyValue>) {
    crate::bindings::spec_mutator::berth::plugin::host::log(level, message, &fields);
}

#[cfg(not(target_family = "wasm"))]
fn emit(level: Level, message: &str, fields: Vec<KeyValue>) {
    crate::testing::record_log(level, message, fields);
}

pub fn trace(message: &str) {
    log(Level::Trace, message, &[]);
}
pub fn debug(message: &str) {
    log(Level::Debug, message, &[]);
}
pub fn info(message: &str) {
    log(Level::Info, message, &[]);
}
pub fn warn(message: &str) {
    log(Level::Warn, message, &[]);
}
pub fn error(message: &str) {
    log(Level::Error, message, &[]);
}

/// `berth_sdk::info!("chose {name}")`: format and log at info level.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::log($crate::Level::Info, &::std::format!($($arg)*), &[]) };
}
/// Format and log at debug level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::log($crate::Level::Debug, &::std::format!($($arg)*), &[]) };
}
/// Format and log at warn level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::log($crate::Level::Warn, &::std::format!($($arg)*), &[]) };
}
