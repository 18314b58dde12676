//! OCI runtime spec assembly: containerd's defaults, the image config, and the
//! spec-mutator chain's adjustments with grant and conflict checks.

pub mod adjustment;
pub mod grants;
pub mod mutator;
pub mod view;

pub use adjustment::Adjustment;
pub use grants::{Field, Grants, UnknownField};
pub use mutator::{ChainEntry, FixedMutator, FnMutator, Mutator, MutatorError};
pub use view::ContainerView;
