//! Tests only: see tests/plugins.rs.
