//! The `berth` command: configuration, flags and the glue between the native core and the plugins.

pub mod cli;
pub mod config;
pub mod container;
