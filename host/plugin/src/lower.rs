//! Borrowed mirrors of the WIT input records, lowered straight from the
//! host's own data.
//!
//! The bindgen types own every string, so handing a [`ContainerView`] to a
//! plugin used to clone each of its ~60 strings and ~20 lists first and free
//! them after the call. These records have the same WIT shape (checked by
//! wasmtime against the component's types when a plugin is loaded) but
//! borrow: building one is a handful of small vectors of pointers.
//!
//! The same records serve both contracts: 0.1.0 passes the whole [`View`]
//! as `mutate`'s parameter, 0.2.0 lends the view as a `container` resource
//! whose getters ([`link_view`]) lower one field each.

use std::mem::MaybeUninit;

use berth_spec::ContainerView;
use wasmtime::component::__internal::wasmtime_environ::component::StringEncoding;
use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LowerContext};
use wasmtime::component::{ComponentType, Linker, Lower, Resource, ResourceType};
use wasmtime::StoreContextMut;
use wasmtime::ValRaw;

use crate::bindings::wit;
use crate::convert::ns_kind_to_wit;
use crate::sandbox::State;

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
    env: StrList<'a>,
    entrypoint: StrList<'a>,
    cmd: StrList<'a>,
    #[component(name = "working-dir")]
    working_dir: Option<&'a str>,
    labels: Vec<KeyValue<'a>>,
    #[component(name = "stop-signal")]
    stop_signal: Option<&'a str>,
    #[component(name = "exposed-ports")]
    exposed_ports: StrList<'a>,
    volumes: StrList<'a>,
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

impl<'a> Mount<'a> {
    fn of(m: &'a berth_spec::adjustment::Mount) -> Mount<'a> {
        Mount { destination: &m.destination, kind: &m.kind, source: &m.source, options: &m.options }
    }
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
    args: StrList<'a>,
    env: StrList<'a>,
    cwd: &'a str,
    uid: u32,
    gid: u32,
    #[component(name = "additional-gids")]
    additional_gids: &'a [u32],
    terminal: bool,
    capabilities: StrList<'a>,
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
    mounts: Mounts<'a>,
    namespaces: Vec<Namespace<'a>>,
}

pub(crate) fn view(v: &ContainerView) -> View<'_> {
    View {
        id: &v.id,
        image: v.image.as_deref(),
        image_config: image_config(v),
        options: kvs(&v.options),
        annotations: kvs(&v.annotations),
        process: process(v),
        hostname: v.hostname.as_deref(),
        readonly_rootfs: v.readonly_rootfs,
        mounts: Mounts(&v.mounts),
        namespaces: namespaces(v),
    }
}

fn image_config(v: &ContainerView) -> ImageConfig<'_> {
    let ic = &v.image_config;
    ImageConfig {
        user: ic.user.as_deref(),
        env: StrList(&ic.env),
        entrypoint: StrList(&ic.entrypoint),
        cmd: StrList(&ic.cmd),
        working_dir: ic.working_dir.as_deref(),
        labels: kvs(&ic.labels),
        stop_signal: ic.stop_signal.as_deref(),
        exposed_ports: StrList(&ic.exposed_ports),
        volumes: StrList(&ic.volumes),
    }
}

fn process(v: &ContainerView) -> ProcessView<'_> {
    let p = &v.process;
    ProcessView {
        args: StrList(&p.args),
        env: StrList(&p.env),
        cwd: &p.cwd,
        uid: p.uid,
        gid: p.gid,
        additional_gids: &p.additional_gids,
        terminal: p.terminal,
        capabilities: StrList(&p.capabilities),
        no_new_privileges: p.no_new_privileges,
    }
}

fn namespaces(v: &ContainerView) -> Vec<Namespace<'_>> {
    v.namespaces.iter().map(|n| Namespace { kind: ns_kind_to_wit(n.kind), path: n.path.as_deref() }).collect()
}

// berth:plugin@0.2.0: the `view.container` resource.
//
// The host lends the call's view to the guest as a borrowed `container`
// (rep 0); the view itself sits in the store's [`State`] for the length of
// one `mutate` call, and each getter lowers one top-level field straight
// from it, with the borrowing records above.

/// The host-side type of WIT `view.container` (its rep is unused: a store
/// serves one call, and the call's view is [`State::view`]).
pub struct ViewRef;

/// The view lent to the current call.
#[derive(Clone, Copy)]
pub(crate) struct LentView(*const ContainerView);

// SAFETY: a shared reference in disguise (see `lend`); `ContainerView` is
// `Sync`.
unsafe impl Send for LentView {}
unsafe impl Sync for LentView {}

impl LentView {
    /// # Safety
    /// `view` must outlive every use of the store the result is put in:
    /// `LoadedPlugin::mutate` puts it in a store it creates and drops before
    /// it returns, while it borrows `view`.
    pub(crate) unsafe fn lend(view: &ContainerView) -> LentView {
        LentView(view)
    }
}

fn lent(store: &StoreContextMut<'_, State>) -> wasmtime::Result<&'static ContainerView> {
    match store.data().view {
        // SAFETY: see `LentView::lend`: the view outlives the store, and the
        // reference only lives while a getter's result is lowered.
        Some(LentView(ptr)) => Ok(unsafe { &*ptr }),
        None => wasmtime::bail!("no container view is lent to this call"),
    }
}

type This = (Resource<ViewRef>,);

/// Defines `berth:plugin/view@0.2.0` (the `container` resource and its
/// getters) in `linker`.
pub(crate) fn link_view(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    let mut i = linker.instance("berth:plugin/view@0.2.0")?;
    i.resource("container", ResourceType::host::<ViewRef>(), |_, _| Ok(()))?;
    i.func_wrap("[method]container.id", |s, _: This| Ok((lent(&s)?.id.as_str(),)))?;
    i.func_wrap("[method]container.image", |s, _: This| Ok((lent(&s)?.image.as_deref(),)))?;
    i.func_wrap("[method]container.image-config", |s, _: This| Ok((image_config(lent(&s)?),)))?;
    i.func_wrap("[method]container.options", |s, _: This| Ok((kvs(&lent(&s)?.options),)))?;
    i.func_wrap("[method]container.annotations", |s, _: This| Ok((kvs(&lent(&s)?.annotations),)))?;
    i.func_wrap("[method]container.process", |s, _: This| Ok((process(lent(&s)?),)))?;
    i.func_wrap("[method]container.hostname", |s, _: This| Ok((lent(&s)?.hostname.as_deref(),)))?;
    i.func_wrap("[method]container.readonly-rootfs", |s, _: This| Ok((lent(&s)?.readonly_rootfs,)))?;
    i.func_wrap("[method]container.mounts", |s, _: This| Ok((Mounts(&lent(&s)?.mounts),)))?;
    i.func_wrap("[method]container.namespaces", |s, _: This| Ok((namespaces(lent(&s)?),)))?;
    Ok(())
}

// Batched lowering of the view's many strings.
//
// wasmtime's own lowering looks the guest memory up (`LowerContext::get` /
// `as_slice_mut`: instance, canonical options, memory definition) once per
// string copy and twice per (pointer, length) pair stored: ~3 lookups per
// string, about 8% of a spec-mutator call with ~70 strings in the view. The
// newtypes below make the same `realloc` calls (one per string and per
// list, as the canonical ABI asks) and then write every byte with one
// lookup. The WIT types are unchanged: `typecheck` delegates to the plain
// list types, and any string encoding other than UTF-8 takes wasmtime's
// path.

const MAX_STRING_BYTES: usize = (1 << 31) - 1;

/// Writes planned after the `realloc` calls: string bytes and (pointer,
/// length) pairs, all applied with one memory lookup.
#[derive(Default)]
struct Plan<'a> {
    copies: Vec<(usize, &'a [u8])>,
    pairs: Vec<(usize, usize, usize)>,
}

impl<'a> Plan<'a> {
    /// A string whose (pointer, length) goes at `at`.
    fn string<T>(&mut self, cx: &mut LowerContext<'_, T>, s: &'a str, at: usize) -> wasmtime::Result<()> {
        if s.len() > MAX_STRING_BYTES {
            wasmtime::bail!("string length of {} too large to copy into wasm", s.len());
        }
        let ptr = cx.realloc(0, 0, 1, s.len())?;
        self.copies.push((ptr, s.as_bytes()));
        self.pairs.push((at, ptr, s.len()));
        Ok(())
    }

    /// A `list<string>`; returns its (pointer, length).
    fn strings<T>(&mut self, cx: &mut LowerContext<'_, T>, list: &'a [String]) -> wasmtime::Result<(usize, usize)> {
        let size = list.len().checked_mul(8).ok_or_else(|| wasmtime::Error::msg("size overflow copying a list"))?;
        let array = cx.realloc(0, 0, 4, size)?;
        for (i, s) in list.iter().enumerate() {
            self.string(cx, s, array + 8 * i)?;
        }
        Ok((array, list.len()))
    }

    /// A `list<mount>`; returns its (pointer, length).
    fn mounts<T>(&mut self, cx: &mut LowerContext<'_, T>, list: &'a [berth_spec::adjustment::Mount]) -> wasmtime::Result<(usize, usize)> {
        const SIZE: usize = <Mount<'static> as ComponentType>::SIZE32;
        let size = list.len().checked_mul(SIZE).ok_or_else(|| wasmtime::Error::msg("size overflow copying a list"))?;
        let array = cx.realloc(0, 0, <Mount<'static> as ComponentType>::ALIGN32, size)?;
        let [destination, kind, source, options] = mount_fields();
        for (i, m) in list.iter().enumerate() {
            let at = array + SIZE * i;
            self.string(cx, &m.destination, at + destination)?;
            self.string(cx, &m.kind, at + kind)?;
            self.string(cx, &m.source, at + source)?;
            let (ptr, len) = self.strings(cx, &m.options)?;
            self.pairs.push((at + options, ptr, len));
        }
        Ok((array, list.len()))
    }

    fn apply<T>(self, cx: &mut LowerContext<'_, T>) -> wasmtime::Result<()> {
        let memory = cx.as_slice_mut();
        let out_of_bounds = || wasmtime::Error::msg("lowering the container view: write beyond the end of memory");
        for (at, bytes) in self.copies {
            memory.get_mut(at..).and_then(|m| m.get_mut(..bytes.len())).ok_or_else(out_of_bounds)?.copy_from_slice(bytes);
        }
        for (at, ptr, len) in self.pairs {
            let pair = memory.get_mut(at..).and_then(|m| m.get_mut(..8)).ok_or_else(out_of_bounds)?;
            pair[..4].copy_from_slice(&(ptr as u32).to_le_bytes());
            pair[4..].copy_from_slice(&(len as u32).to_le_bytes());
        }
        Ok(())
    }
}

/// Byte offsets of `mount`'s fields (destination, type, source, options).
fn mount_fields() -> [usize; 4] {
    let mut offset = 0;
    let string = <&str as ComponentType>::ABI;
    let list = <&[String] as ComponentType>::ABI;
    [
        string.next_field32_size(&mut offset),
        string.next_field32_size(&mut offset),
        string.next_field32_size(&mut offset),
        list.next_field32_size(&mut offset),
    ]
}

fn utf8<T>(cx: &LowerContext<'_, T>) -> bool {
    matches!(cx.options().string_encoding, StringEncoding::Utf8)
}

fn flat_pair(dst: &mut MaybeUninit<[ValRaw; 2]>, (ptr, len): (usize, usize)) {
    dst.write([ValRaw::i64(ptr as i64), ValRaw::i64(len as i64)]);
}

/// WIT `list<string>`, lowered in one batch.
#[derive(Clone, Copy)]
pub(crate) struct StrList<'a>(pub &'a [String]);

// SAFETY: the same canonical ABI type, size and alignment as `[String]`
// (a list); `typecheck` delegates to it.
unsafe impl ComponentType for StrList<'_> {
    type Lower = [ValRaw; 2];
    const ABI: CanonicalAbiInfo = CanonicalAbiInfo::POINTER_PAIR;
    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <[String] as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: writes a list of strings exactly as `[String]`'s impl does (same
// realloc sizes and alignments, same layout), only batched.
unsafe impl Lower for StrList<'_> {
    fn linear_lower_to_flat<T>(&self, cx: &mut LowerContext<'_, T>, ty: InterfaceType, dst: &mut MaybeUninit<[ValRaw; 2]>) -> wasmtime::Result<()> {
        if !utf8(cx) {
            return <[String] as Lower>::linear_lower_to_flat(self.0, cx, ty, dst);
        }
        let mut plan = Plan::default();
        let pair = plan.strings(cx, self.0)?;
        plan.apply(cx)?;
        flat_pair(dst, pair);
        Ok(())
    }

    fn linear_lower_to_memory<T>(&self, cx: &mut LowerContext<'_, T>, ty: InterfaceType, offset: usize) -> wasmtime::Result<()> {
        if !utf8(cx) {
            return <[String] as Lower>::linear_lower_to_memory(self.0, cx, ty, offset);
        }
        let mut plan = Plan::default();
        let (ptr, len) = plan.strings(cx, self.0)?;
        plan.pairs.push((offset, ptr, len));
        plan.apply(cx)
    }
}

/// WIT `list<mount>`, lowered in one batch.
#[derive(Clone, Copy)]
pub(crate) struct Mounts<'a>(pub &'a [berth_spec::adjustment::Mount]);

impl Mounts<'_> {
    fn records(&self) -> Vec<Mount<'_>> {
        self.0.iter().map(Mount::of).collect()
    }
}

// SAFETY: the same canonical ABI type as `[Mount]`; `typecheck` delegates.
unsafe impl ComponentType for Mounts<'_> {
    type Lower = [ValRaw; 2];
    const ABI: CanonicalAbiInfo = CanonicalAbiInfo::POINTER_PAIR;
    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <[Mount<'static>] as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: writes the list as `[Mount]`'s derived impl does, only batched;
// field offsets from the canonical ABI (`MOUNT_FIELDS`).
unsafe impl Lower for Mounts<'_> {
    fn linear_lower_to_flat<T>(&self, cx: &mut LowerContext<'_, T>, ty: InterfaceType, dst: &mut MaybeUninit<[ValRaw; 2]>) -> wasmtime::Result<()> {
        if !utf8(cx) {
            return <[Mount<'_>] as Lower>::linear_lower_to_flat(&self.records(), cx, ty, dst);
        }
        let mut plan = Plan::default();
        let pair = plan.mounts(cx, self.0)?;
        plan.apply(cx)?;
        flat_pair(dst, pair);
        Ok(())
    }

    fn linear_lower_to_memory<T>(&self, cx: &mut LowerContext<'_, T>, ty: InterfaceType, offset: usize) -> wasmtime::Result<()> {
        if !utf8(cx) {
            return <[Mount<'_>] as Lower>::linear_lower_to_memory(&self.records(), cx, ty, offset);
        }
        let mut plan = Plan::default();
        let (ptr, len) = plan.mounts(cx, self.0)?;
        plan.pairs.push((offset, ptr, len));
        plan.apply(cx)
    }
}
