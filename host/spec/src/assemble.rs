//! The whole assembly: containerd's default spec, the image config, then the
//! spec-mutator chain in order, with grants, conflicts, overrides and
//! optional plugins.

use std::path::PathBuf;

use oci_spec::runtime::Spec;

use crate::adjustment::Mount;
use crate::apply::{self, ApplyError, Ctx, HostFacts, Ledger};
use crate::defaults;
use crate::explain::{self, Explanation, Outcome, Step};
use crate::grants::Field;
use crate::image::{self, ImageError};
use crate::json::{capability_name, to_value};
use crate::mutator::{ChainEntry, MutatorError};
use crate::view::{ContainerView, ImageConfigView, NamespaceView, ProcessView};

/// What a container is created from.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub id: String,
    /// containerd namespace, for the cgroups path (`default` when empty).
    pub namespace: String,
    pub image: Option<String>,
    pub image_config: ImageConfigView,
    /// Replaces the image's cmd (`WithImageConfigArgs(image, args)`).
    pub args: Option<Vec<String>>,
    /// `--opt key=value`, in order; plugins read them.
    pub options: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
    /// The unpacked image: names in USER are resolved against its
    /// /etc/passwd and /etc/group, and it becomes `root.path`.
    pub rootfs: Option<PathBuf>,
    /// Add the allow rules of `WithDefaultUnixDevices` (as `ctr run` does).
    pub default_unix_devices: bool,
}

/// Why no spec was produced.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("image config: {0}")]
    Image(#[from] ImageError),
    /// The plugin's adjustment sets a field its grants do not cover.
    #[error("plugin {plugin:?} is not granted \"{field}\" but its adjustment sets it (grants: [{grants}])")]
    NotGranted { plugin: String, field: Field, grants: String },
    /// A field's value is invalid (bad path, unknown capability, malformed
    /// seccomp profile...).
    #[error("plugin {plugin:?}: invalid {field}: {reason}")]
    Invalid { plugin: String, field: Field, reason: String },
    /// Two plugins set the same scalar to different values.
    #[error(
        "plugins {first:?} and {second:?} both set {key}: {first:?} to {first_value}, {second:?} to {second_value} \
         (set override = true on {second:?} to let it win)"
    )]
    Conflict { key: String, field: Field, first: String, first_value: String, second: String, second_value: String },
    /// A non-optional plugin failed (fail closed).
    #[error("plugin {plugin:?} failed: {source}")]
    Plugin {
        plugin: String,
        #[source]
        source: MutatorError,
    },
}

impl SpecError {
    /// The plugin the error is about, when there is one (for a conflict, the later one).
    pub fn plugin(&self) -> Option<&str> {
        match self {
            SpecError::Image(_) => None,
            SpecError::NotGranted { plugin, .. }
            | SpecError::Invalid { plugin, .. }
            | SpecError::Plugin { plugin, .. } => Some(plugin),
            SpecError::Conflict { second, .. } => Some(second),
        }
    }
}

impl From<ApplyError> for SpecError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Invalid { plugin, field, reason } => SpecError::Invalid { plugin, field, reason },
            ApplyError::Conflict { key, field, first, first_value, second, second_value } => {
                SpecError::Conflict { key, field, first, first_value, second, second_value }
            }
        }
    }
}

/// The final spec and how it came to be.
#[derive(Debug, Clone)]
pub struct Assembled {
    pub spec: Spec,
    pub explanation: Explanation,
}

/// The default spec with the image config applied (no plugins).
pub fn base_spec(request: &Request) -> Result<(Spec, Explanation), SpecError> {
    let namespace = if request.namespace.is_empty() { "default" } else { &request.namespace };
    let mut spec = defaults::default_spec(namespace, &request.id);
    if request.default_unix_devices {
        defaults::with_default_unix_devices(&mut spec);
    }
    if let Some(rootfs) = &request.rootfs {
        spec.root_mut().get_or_insert_with(Default::default).set_path(rootfs.clone());
    }
    let before = to_value(&spec);
    image::apply_image_config(&mut spec, &request.image_config, request.args.as_deref(), request.rootfs.as_deref())?;
    let explanation = Explanation {
        steps: vec![Step {
            source: "image-config".into(),
            outcome: Outcome::Applied,
            changes: explain::diff(&before, &to_value(&spec)),
            overrides: vec![],
        }],
    };
    Ok((spec, explanation))
}

/// What a mutator sees: the request and the spec as it is so far.
pub fn container_view(spec: &Spec, request: &Request) -> ContainerView {
    let process = spec.process().as_ref();
    let process_view = process
        .map(|p| ProcessView {
            args: p.args().clone().unwrap_or_default(),
            env: p.env().clone().unwrap_or_default(),
            cwd: p.cwd().to_string_lossy().into_owned(),
            uid: p.user().uid(),
            gid: p.user().gid(),
            additional_gids: p.user().additional_gids().clone().unwrap_or_default(),
            terminal: p.terminal().unwrap_or(false),
            capabilities: {
                let mut caps: Vec<String> = p
                    .capabilities()
                    .as_ref()
                    .and_then(|c| c.bounding().as_ref())
                    .map(|b| b.iter().map(|c| capability_name(*c)).collect())
                    .unwrap_or_default();
                caps.sort_by_key(|c| crate::json::capability_number(c));
                caps
            },
            no_new_privileges: p.no_new_privileges().unwrap_or(false),
        })
        .unwrap_or_default();
    let mounts = spec
        .mounts()
        .iter()
        .flatten()
        .map(|m| Mount {
            destination: m.destination().to_string_lossy().into_owned(),
            kind: m.typ().clone().unwrap_or_default(),
            source: m.source().as_ref().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
            options: m.options().clone().unwrap_or_default(),
        })
        .collect();
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .filter_map(|n| {
            let kind = serde_json::from_value(serde_json::to_value(n.typ()).ok()?).ok()?;
            Some(NamespaceView { kind, path: n.path().as_ref().map(|p| p.to_string_lossy().into_owned()) })
        })
        .collect();
    ContainerView {
        id: request.id.clone(),
        image: request.image.clone(),
        image_config: request.image_config.clone(),
        options: request.options.clone(),
        annotations: request.annotations.clone(),
        process: process_view,
        hostname: spec.hostname().clone(),
        readonly_rootfs: spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false),
        mounts,
        namespaces,
    }
}

/// Applies the chain to `spec` in order. Each plugin sees the spec as the
/// plugins before it left it; its adjustment is checked against its grants,
/// then applied on a copy that replaces the spec only when every field
/// applied (an optional plugin that fails leaves no trace but a warning and
/// a `skipped` step).
pub fn apply_chain(
    mut spec: Spec,
    request: &Request,
    chain: &[ChainEntry],
    host: &HostFacts,
    explanation: &mut Explanation,
) -> Result<Spec, SpecError> {
    let mut ledger = Ledger::default();
    for entry in chain {
        let plugin = entry.name().to_string();
        let view = container_view(&spec, request);
        let result = entry
            .mutator
            .mutate(&view)
            .map_err(|source| SpecError::Plugin { plugin: plugin.clone(), source })
            .and_then(|adjustment| {
                if let Some(field) = entry.grants.missing(&adjustment).into_iter().next() {
                    return Err(SpecError::NotGranted {
                        plugin: plugin.clone(),
                        field,
                        grants: entry.grants.to_string(),
                    });
                }
                let mut candidate = spec.clone();
                let mut candidate_ledger = ledger.clone();
                let mut ctx = Ctx {
                    plugin: &plugin,
                    may_override: entry.may_override,
                    ledger: &mut candidate_ledger,
                    overrides: Vec::new(),
                    host,
                    rootfs: request.rootfs.as_deref(),
                };
                apply::apply(&mut candidate, &adjustment, &mut ctx)?;
                let overrides = std::mem::take(&mut ctx.overrides);
                Ok((candidate, candidate_ledger, overrides))
            });
        match result {
            Ok((candidate, candidate_ledger, overrides)) => {
                let changes = explain::diff(&to_value(&spec), &to_value(&candidate));
                spec = candidate;
                ledger = candidate_ledger;
                explanation.steps.push(Step { source: plugin, outcome: Outcome::Applied, changes, overrides });
            }
            Err(err) if entry.optional => {
                tracing::warn!(plugin = %plugin, error = %err, "optional spec-mutator failed; skipped");
                explanation.steps.push(Step {
                    source: plugin,
                    outcome: Outcome::Skipped { error: err.to_string() },
                    changes: vec![],
                    overrides: vec![],
                });
            }
            Err(err) => return Err(err),
        }
    }
    Ok(spec)
}

/// Default spec, image config, then the chain.
pub fn assemble(request: &Request, chain: &[ChainEntry], host: &HostFacts) -> Result<Assembled, SpecError> {
    let (spec, mut explanation) = base_spec(request)?;
    let spec = apply_chain(spec, request, chain, host, &mut explanation)?;
    Ok(Assembled { spec, explanation })
}
