//! Borrowed mirrors of the WIT input records, lowered straight from the
//! host's own data.
//!
//! The bindgen types own every string, so handing a [`ContainerView`] to a
//! plugin used to clone each of its ~60 strings and ~20 lists first and free
//! them after the call. These records have the same WIT shape (checked by
//! wasmtime against the component's types when a plugin is loaded) but
//! borrow: building one is a handful of small vectors of pointers.

use berth_spec::ContainerView;
use wasmtime::component::{ComponentType, Lower};

use crate::bindings::wit;
use crate::convert::ns_kind_to_wit;

#[derive(ComponentType, Lower)]
#[component(record)]
pub(crate) struct KeyValue<'a> {
    key: &'a str,
    value: &'a str,
}

fn kvs(pairs: &[(String, String)]) -> Vec<KeyValue<'_>> {
    pairs.iter().map(|(key, value)| KeyValue { key, value }).collect()
}

#[derive(ComponentType, Lower)]
#[component(record)]
pub(crate) struct ImageConfig<'a> {
    user: Option<&'a str>,
    env: &'a [String],
    entrypoint: &'a [String],
    cmd: &'a [String],
    #[component(name = "working-dir")]
    working_dir: Option<&'a str>,
    labels: Vec<KeyValue<'a>>,
    #[component(name = "stop-signal")]
    stop_signal: Option<&'a str>,
    #[component(name = "exposed-ports")]
    exposed_ports: &'a [String],
    volumes: &'a [String],
}

#[derive(ComponentType, Lower)]
#[component(record)]
pub(crate) struct Mount<'a> {
    destination: &'a str,
    #[component(name = "type")]
    kind: &'a str,
    source: &'a str,
    options: &'a [String],
}

#[derive(ComponentType, Lower)]
#[component(record)]
pub(crate) struct Namespace<'a> {
    kind: wit::NamespaceKind,
    path: Option<&'a str>,
}

#[derive(ComponentType, Lower)]
#[component(record)]
pub(crate) struct ProcessView<'a> {
    args: &'a [String],
    env: &'a [String],
    cwd: &'a str,
    uid: u32,
    gid: u32,
    #[component(name = "additional-gids")]
    additional_gids: &'a [u32],
    terminal: bool,
    capabilities: &'a [String],
    #[component(name = "no-new-privileges")]
    no_new_privileges: bool,
}

/// WIT `container-view`, borrowing from a [`ContainerView`].
#[derive(ComponentType, Lower)]
#[component(record)]
pub(crate) struct View<'a> {
    id: &'a str,
    image: Option<&'a str>,
    #[component(name = "image-config")]
    image_config: ImageConfig<'a>,
    options: Vec<KeyValue<'a>>,
    annotations: Vec<KeyValue<'a>>,
    process: ProcessView<'a>,
    hostname: Option<&'a str>,
    #[component(name = "readonly-rootfs")]
    readonly_rootfs: bool,
    mounts: Vec<Mount<'a>>,
    namespaces: Vec<Namespace<'a>>,
}

pub(crate) fn view(v: &ContainerView) -> View<'_> {
    let ic = &v.image_config;
    let p = &v.process;
    View {
        id: &v.id,
        image: v.image.as_deref(),
        image_config: ImageConfig {
            user: ic.user.as_deref(),
            env: &ic.env,
            entrypoint: &ic.entrypoint,
            cmd: &ic.cmd,
            working_dir: ic.working_dir.as_deref(),
            labels: kvs(&ic.labels),
            stop_signal: ic.stop_signal.as_deref(),
            exposed_ports: &ic.exposed_ports,
            volumes: &ic.volumes,
        },
        options: kvs(&v.options),
        annotations: kvs(&v.annotations),
        process: ProcessView {
            args: &p.args,
            env: &p.env,
            cwd: &p.cwd,
            uid: p.uid,
            gid: p.gid,
            additional_gids: &p.additional_gids,
            terminal: p.terminal,
            capabilities: &p.capabilities,
            no_new_privileges: p.no_new_privileges,
        },
        hostname: v.hostname.as_deref(),
        readonly_rootfs: v.readonly_rootfs,
        mounts: v
            .mounts
            .iter()
            .map(|m| Mount { destination: &m.destination, kind: &m.kind, source: &m.source, options: &m.options })
            .collect(),
        namespaces: v.namespaces.iter().map(|n| Namespace { kind: ns_kind_to_wit(n.kind), path: n.path.as_deref() }).collect(),
    }
}
