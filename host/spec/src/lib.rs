//! OCI runtime spec assembly: containerd's defaults, the image config, and the
//! spec-mutator chain's adjustments with grant and conflict checks.

pub mod adjustment;
pub mod view;

pub use adjustment::Adjustment;
pub use view::ContainerView;
