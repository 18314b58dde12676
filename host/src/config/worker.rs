//! `[worker]`: buildkitd OCI-worker style settings.

use serde::Deserialize;

/// The `[worker]` table. Owned by the worker-config work.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WorkerConfig {}
