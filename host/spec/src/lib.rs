//! OCI runtime spec assembly: containerd's defaults, the image config, and the
//! spec-mutator chain's adjustments with grant and conflict checks.
//!
//! ```text
//! defaults::default_spec  ->  image::apply_image_config  ->  apply_chain (per plugin:
//!   mutate(view) -> grants check -> apply on a copy with conflict claims -> explanation)
//! ```

pub mod adjustment;
pub mod apply;
pub mod assemble;
pub mod defaults;
pub mod explain;
pub mod grants;
pub mod image;
pub mod json;
pub mod mutator;
pub mod view;

pub use adjustment::Adjustment;
pub use apply::{DefaultSeccomp, HostFacts};
pub use assemble::{Assembled, Request, SpecError, apply_chain, assemble, base_spec, container_view};
pub use explain::Explanation;
pub use grants::{Field, Grants, UnknownField};
pub use image::ImageError;
pub use mutator::{ChainEntry, FixedMutator, FnMutator, Mutator, MutatorError};
pub use view::ContainerView;
