//! The spec-mutator seam: anything that looks at a container and answers an
//! [`Adjustment`]. The plugin host (berth-plugin) implements [`Mutator`] for
//! loaded wasm components; tests implement it natively.

use crate::adjustment::Adjustment;
use crate::grants::Grants;
use crate::view::ContainerView;

/// Why a mutator gave no adjustment. The first three mirror the WIT
/// `plugin-error` variants; [`MutatorError::Host`] carries whatever went wrong
/// around the call (trap, timeout, out of memory, malformed output...) as the
/// plugin host's own typed error, so callers can downcast it.
#[derive(Debug, thiserror::Error)]
pub enum MutatorError {
    #[error("invalid plugin config: {0}")]
    InvalidConfig(String),
    #[error("rejected: {0}")]
    Rejected(String),
    #[error("internal plugin error: {0}")]
    Internal(String),
    #[error(transparent)]
    Host(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl MutatorError {
    pub fn host(err: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        MutatorError::Host(err.into())
    }
}

/// A spec mutator: one plugin (or native stand-in) in the chain.
pub trait Mutator: Send + Sync {
    /// The name errors and `--explain` use (the plugin's configured name).
    fn name(&self) -> &str;
    /// Computes this mutator's edit for the container as it is so far.
    fn mutate(&self, view: &ContainerView) -> Result<Adjustment, MutatorError>;
}

/// One configured step of the chain: the mutator and what the operator
/// allows it.
pub struct ChainEntry {
    pub mutator: Box<dyn Mutator>,
    /// Fields the mutator may touch.
    pub grants: Grants,
    /// On failure: skip with a warning instead of failing closed.
    pub optional: bool,
    /// May set a scalar an earlier mutator already set to another value.
    pub may_override: bool,
}

impl ChainEntry {
    /// An entry with `grants`, not optional, not overriding.
    pub fn new(mutator: Box<dyn Mutator>, grants: Grants) -> Self {
        ChainEntry { mutator, grants, optional: false, may_override: false }
    }

    pub fn optional(mut self, optional: bool) -> Self {
        self.optional = optional;
        self
    }

    pub fn may_override(mut self, may_override: bool) -> Self {
        self.may_override = may_override;
        self
    }

    pub fn name(&self) -> &str {
        self.mutator.name()
    }
}

impl std::fmt::Debug for ChainEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainEntry")
            .field("mutator", &self.mutator.name())
            .field("grants", &self.grants)
            .field("optional", &self.optional)
            .field("may_override", &self.may_override)
            .finish()
    }
}

/// A mutator from a closure; handy in tests and for native built-ins.
pub struct FnMutator<F> {
    name: String,
    f: F,
}

impl<F> FnMutator<F>
where
    F: Fn(&ContainerView) -> Result<Adjustment, MutatorError> + Send + Sync,
{
    pub fn new(name: impl Into<String>, f: F) -> Self {
        FnMutator { name: name.into(), f }
    }
}

impl<F> Mutator for FnMutator<F>
where
    F: Fn(&ContainerView) -> Result<Adjustment, MutatorError> + Send + Sync,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn mutate(&self, view: &ContainerView) -> Result<Adjustment, MutatorError> {
        (self.f)(view)
    }
}

/// A mutator that always answers the same adjustment.
#[derive(Debug, Clone)]
pub struct FixedMutator {
    pub name: String,
    pub adjustment: Adjustment,
}

impl FixedMutator {
    pub fn new(name: impl Into<String>, adjustment: Adjustment) -> Self {
        FixedMutator { name: name.into(), adjustment }
    }
}

impl Mutator for FixedMutator {
    fn name(&self) -> &str {
        &self.name
    }

    fn mutate(&self, _view: &ContainerView) -> Result<Adjustment, MutatorError> {
        Ok(self.adjustment.clone())
    }
}
