//! [`ContainerView`]: what a spec-mutator sees of the container being
//! created.
//!
//! Since berth:plugin@0.2.0 the host lends the view as a `container`
//! resource instead of copying all of it into the plugin on every call: each
//! accessor fetches its field from the host on first use and caches it, so a
//! plugin pays only for what it reads (`option`/`annotation` fetch the two
//! short key-value lists, nothing else). In `cargo test` ([`crate::testing`])
//! a view is built from a [`ContainerData`] and no host is involved.

use std::cell::OnceCell;
use std::mem::ManuallyDrop;

use crate::bindings::spec_mutator::berth::plugin::view::Container;
use crate::types::{ImageConfig, KeyValue, Mount, Namespace, ProcessView};

/// Every field of a container view, owned: what tests build views from
/// ([`crate::testing::container`]) and what [`ContainerView::into_data`]
/// returns.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerData {
    pub id: String,
    /// The image reference the container runs, when known.
    pub image: Option<String>,
    pub image_config: ImageConfig,
    /// Request options (`--opt key=value`), in the order given.
    pub options: Vec<KeyValue>,
    /// Request annotations.
    pub annotations: Vec<KeyValue>,
    /// The current spec's process.
    pub process: ProcessView,
    pub hostname: Option<String>,
    pub readonly_rootfs: bool,
    pub mounts: Vec<Mount>,
    pub namespaces: Vec<Namespace>,
}

/// A read-only view of the container being created: the host's lent
/// `container` (fields fetched on first use, then cached) or, in tests, a
/// [`ContainerData`].
pub struct ContainerView {
    /// The host's resource, borrowed for the `mutate` call: never dropped
    /// here (a borrow has no destructor), and only valid during the call.
    host: Option<ManuallyDrop<Container>>,
    id: OnceCell<String>,
    image: OnceCell<Option<String>>,
    image_config: OnceCell<ImageConfig>,
    options: OnceCell<Vec<KeyValue>>,
    annotations: OnceCell<Vec<KeyValue>>,
    process: OnceCell<ProcessView>,
    hostname: OnceCell<Option<String>>,
    readonly_rootfs: OnceCell<bool>,
    mounts: OnceCell<Vec<Mount>>,
    namespaces: OnceCell<Vec<Namespace>>,
}

impl std::fmt::Debug for ContainerView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerView").field("lent", &self.host.is_some()).field("options", &self.options.get()).finish_non_exhaustive()
    }
}

impl From<ContainerData> for ContainerView {
    fn from(d: ContainerData) -> Self {
        ContainerView {
            host: None,
            id: OnceCell::from(d.id),
            image: OnceCell::from(d.image),
            image_config: OnceCell::from(d.image_config),
            options: OnceCell::from(d.options),
            annotations: OnceCell::from(d.annotations),
            process: OnceCell::from(d.process),
            hostname: OnceCell::from(d.hostname),
            readonly_rootfs: OnceCell::from(d.readonly_rootfs),
            mounts: OnceCell::from(d.mounts),
            namespaces: OnceCell::from(d.namespaces),
        }
    }
}

impl ContainerView {
    /// The view the host lent to this `mutate` call (its handle).
    ///
    /// # Safety
    /// `handle` must be the `borrow<container>` of the running `mutate`
    /// call, and the view must not be used after that call returns.
    #[doc(hidden)]
    pub unsafe fn lent(handle: u32) -> ContainerView {
        ContainerView {
            // SAFETY: the caller's handle; ManuallyDrop: a borrowed handle
            // must not be dropped by the guest.
            host: Some(ManuallyDrop::new(unsafe { Container::from_handle(handle) })),
            id: OnceCell::new(),
            image: OnceCell::new(),
            image_config: OnceCell::new(),
            options: OnceCell::new(),
            annotations: OnceCell::new(),
            process: OnceCell::new(),
            hostname: OnceCell::new(),
            readonly_rootfs: OnceCell::new(),
            mounts: OnceCell::new(),
            namespaces: OnceCell::new(),
        }
    }

    fn fetch<T>(&self, get: impl FnOnce(&Container) -> T) -> T {
        fetch(&self.host, get)
    }

    /// The container's id.
    pub fn id(&self) -> &str {
        self.id.get_or_init(|| self.fetch(Container::id))
    }
    /// The image reference the container runs, when known.
    pub fn image(&self) -> Option<&str> {
        self.image.get_or_init(|| self.fetch(Container::image)).as_deref()
    }
    pub fn image_config(&self) -> &ImageConfig {
        self.image_config.get_or_init(|| self.fetch(Container::image_config))
    }
    /// Request options (`--opt key=value`), in the order given.
    pub fn options(&self) -> &[KeyValue] {
        self.options.get_or_init(|| self.fetch(Container::options))
    }
    /// Request annotations.
    pub fn annotations(&self) -> &[KeyValue] {
        self.annotations.get_or_init(|| self.fetch(Container::annotations))
    }
    /// The current spec's process.
    pub fn process(&self) -> &ProcessView {
        self.process.get_or_init(|| self.fetch(Container::process))
    }
    pub fn hostname(&self) -> Option<&str> {
        self.hostname.get_or_init(|| self.fetch(Container::hostname)).as_deref()
    }
    pub fn readonly_rootfs(&self) -> bool {
        *self.readonly_rootfs.get_or_init(|| self.fetch(Container::readonly_rootfs))
    }
    pub fn mounts(&self) -> &[Mount] {
        self.mounts.get_or_init(|| self.fetch(Container::mounts))
    }
    pub fn namespaces(&self) -> &[Namespace] {
        self.namespaces.get_or_init(|| self.fetch(Container::namespaces))
    }

    /// The request option `key` (`--opt key=value`), the last one given.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options().iter().rev().find(|kv| kv.key == key).map(|kv| kv.value.as_str())
    }
    /// The request annotation `key`, the last one given.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations().iter().rev().find(|kv| kv.key == key).map(|kv| kv.value.as_str())
    }

    /// Every field, owned (fetching what was not read yet).
    pub fn into_data(self) -> ContainerData {
        let host = self.host;
        fn take<T>(cell: OnceCell<T>, host: &Option<ManuallyDrop<Container>>, get: impl FnOnce(&Container) -> T) -> T {
            cell.into_inner().unwrap_or_else(|| fetch(host, get))
        }
        ContainerData {
            id: take(self.id, &host, Container::id),
            image: take(self.image, &host, Container::image),
            image_config: take(self.image_config, &host, Container::image_config),
            options: take(self.options, &host, Container::options),
            annotations: take(self.annotations, &host, Container::annotations),
            process: take(self.process, &host, Container::process),
            hostname: take(self.hostname, &host, Container::hostname),
            readonly_rootfs: take(self.readonly_rootfs, &host, Container::readonly_rootfs),
            mounts: take(self.mounts, &host, Container::mounts),
            namespaces: take(self.namespaces, &host, Container::namespaces),
        }
    }
}

/// A field from the host's lent view.
fn fetch<T>(host: &Option<ManuallyDrop<Container>>, get: impl FnOnce(&Container) -> T) -> T {
    match host {
        Some(c) => get(c),
        // A view from `ContainerData` has every cell set.
        None => unreachable!("a ContainerView without a host has every field"),
    }
}
