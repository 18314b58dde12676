//! [`PluginHost`]: one wasmtime engine (component model, pooling allocator,
//! epoch interruption), the on-disk precompile cache, and loading.
//! [`LoadedPlugin`]: one plugin ready to call, a fresh instance per call.

use std::collections::HashMap;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, ComponentExportIndex, HasSelf, Instance, InstancePre, Linker, Resource, TypedFunc};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use crate::bindings::{wit, wit_host, COMPAT_WIT_VERSIONS, WIT_VERSION};
use crate::convert;
use crate::lower;
use crate::error::{CallError, LoadError};
use crate::sandbox::State;
use crate::types::{HostFacts, PluginInfo, PluginKind, ResolveRequest, SnapshotterChoice, Source};
use berth_spec::{Adjustment, ContainerView};

/// WIT package versions this host has bindings for: the current one, then
/// the older ones it still loads (wit/compat/).
pub const SUPPORTED_WIT_VERSIONS: &[&str] = &[WIT_VERSION, COMPAT_WIT_VERSIONS[0]];
/// How often the epoch advances; deadlines are rounded up to it.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Resident budget per linear memory when PAGEMAP_SCAN finds the dirty pages:
/// a plugin call dirties its stack top and some heap (tens of pages), all of
/// them then reset with memset instead of madvise + page faults next call.
pub const PAGEMAP_KEEP_RESIDENT: usize = 4 << 20;
/// The largest .wasm file `load` reads.
pub const MAX_WASM_BYTES: u64 = 64 << 20;

/// Per-call limits of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Limits {
    /// Wall-clock deadline of one call (instantiation included).
    pub timeout: Duration,
    /// Largest size of any one linear memory, in bytes.
    pub memory_bytes: usize,
    /// Largest answer, measured as its JSON encoding, in bytes.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { timeout: Duration::from_millis(200), memory_bytes: 64 << 20, output_bytes: 256 << 10 }
    }
}

/// How a [`PluginHost`] is set up.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Where compiled components are cached; `None` compiles in memory on
    /// every load. Created 0700; a directory others can write is not used.
    pub cache_dir: Option<PathBuf>,
    /// Default limits of plugins whose [`LoadRequest`] gives none.
    pub limits: Limits,
    /// Ceiling of any plugin's `memory_bytes` (the pooling allocator's slot size).
    pub max_memory_bytes: usize,
    /// Instances alive at once (concurrent calls) across all plugins.
    pub max_instances: u32,
    /// Bytes of each linear memory that are reset with memset (and stay
    /// resident) when an instance is freed, instead of madvise. Where the
    /// kernel has PAGEMAP_SCAN (Linux 6.7+) only the pages the call dirtied
    /// are reset, anywhere in the memory, up to the larger of this and
    /// [`PAGEMAP_KEEP_RESIDENT`]; elsewhere it is the first bytes of the memory.
    pub keep_resident_bytes: usize,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions { cache_dir: None, limits: Limits::default(), max_memory_bytes: 1 << 30, max_instances: 64, keep_resident_bytes: 256 << 10 }
    }
}

/// What to load.
#[derive(Debug, Clone)]
pub struct LoadRequest {
    /// The name errors and logs use (berth.toml `name`).
    pub name: String,
    pub path: PathBuf,
    /// The kind the operator expects; `None` accepts whatever the component is.
    pub kind: Option<PluginKind>,
    /// The plugin's config table, handed to every call as JSON.
    pub config: serde_json::Value,
    /// `None`: the host's default limits.
    pub limits: Option<Limits>,
    /// Recorded for the caller, which applies the skip-with-warning policy.
    pub optional: bool,
}

impl LoadRequest {
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        LoadRequest {
            name: name.into(),
            path: path.into(),
            kind: None,
            config: serde_json::Value::Object(Default::default()),
            limits: None,
            optional: false,
        }
    }
    pub fn kind(mut self, kind: PluginKind) -> Self {
        self.kind = Some(kind);
        self
    }
    pub fn config(mut self, config: serde_json::Value) -> Self {
        self.config = config;
        self
    }
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }
    pub fn optional(mut self, optional: bool) -> Self {
        self.optional = optional;
        self
    }
}

/// Where a load found its compiled code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheOutcome {
    /// Compiled now (and written to the cache when there is one).
    Compiled,
    /// Deserialised from the on-disk cache.
    Disk,
    /// Already loaded by this host.
    Memory,
}

/// The engine, linker and cache. Cheap to share behind an `Arc`; loading
/// and calling take `&self`.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<State>,
    options: HostOptions,
    cache_dir: Option<PathBuf>,
    compiled: Mutex<HashMap<[u8; 32], Component>>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost").field("options", &self.options).finish_non_exhaustive()
    }
}

/// Feeds `Hash` output into SHA-256, so the engine's compatibility hash
/// becomes part of a stable cache key.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl PluginHost {
    pub fn new(options: HostOptions) -> anyhow::Result<PluginHost> {
        anyhow::ensure!(
            options.limits.memory_bytes <= options.max_memory_bytes,
            "default plugin memory limit {} exceeds the host ceiling {}",
            options.limits.memory_bytes,
            options.max_memory_bytes
        );
        // Where the kernel can report dirty pages, reset only those; else
        // (the engine refuses `pagemap_scan` when unsupported) the plain
        // keep-resident prefix.
        let engine = match Self::new_engine(&options, true) {
            Ok(engine) => engine,
            Err(e) => {
                tracing::debug!("no PAGEMAP_SCAN for plugin memories ({e}); resetting them with madvise");
                Self::new_engine(&options, false)?
            }
        };

        let linker = Self::link(&engine)?;
        spawn_epoch_ticker(&engine);

        let cache_dir = match &options.cache_dir {
            Some(dir) => match prepare_cache_dir(dir) {
                Ok(()) => Some(dir.clone()),
                Err(why) => {
                    tracing::warn!(dir = %dir.display(), "not using the plugin cache: {why}");
                    None
                }
            },
            None => None,
        };
        Ok(PluginHost { engine, linker, options, cache_dir, compiled: Mutex::new(HashMap::new()) })
    }

    fn new_engine(options: &HostOptions, pagemap: bool) -> anyhow::Result<Engine> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.parallel_compilation(true);
        let n = options.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(16))
            .total_memories(n.saturating_mul(4))
            .total_tables(n.saturating_mul(8))
            .max_memory_size(options.max_memory_bytes)
            // Plugins touch little memory; keeping a few pages resident
            // saves a madvise + page faults on every call.
            .linear_memory_keep_resident(options.keep_resident_bytes)
            .table_keep_resident(16 << 10);
        // Calls are synchronous, on the caller's stack: no async fiber
        // stacks. wasmtime-wasi compiles wasmtime's async support in, and the
        // pool's default then reserves 1000 guarded stacks at engine start
        // (~1000 mprotects and ~2000 mappings that every fork and exit of
        // the process then copies and tears down: ~13 ms of `berth run`).
        pool.total_stacks(0);
        if pagemap {
            pool.pagemap_scan(wasmtime::Enabled::Yes)
                .linear_memory_keep_resident(options.keep_resident_bytes.max(PAGEMAP_KEEP_RESIDENT));
        }
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        Engine::new(&config).map_err(|e| anyhow::anyhow!("cannot create the wasm engine: {e}"))
    }

    fn link(engine: &Engine) -> anyhow::Result<Linker<State>> {
        let mut linker = Linker::<State>::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| anyhow::anyhow!("cannot link WASI: {e}"))?;
        wit_host::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("cannot link berth:plugin/host: {e}"))?;
        lower::link_view(&mut linker).map_err(|e| anyhow::anyhow!("cannot link berth:plugin/view: {e}"))?;
        crate::bindings::compat_0_1::berth::plugin::host::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("cannot link berth:plugin/host@0.1.0: {e}"))?;
        Ok(linker)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn options(&self) -> &HostOptions {
        &self.options
    }

    /// The cache directory actually in use.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache_dir.as_deref()
    }

    /// Reads, compiles (or finds in the cache), checks the kind, links and
    /// asks the plugin for its `info`.
    pub fn load(&self, req: LoadRequest) -> Result<LoadedPlugin, LoadError> {
        let started = Instant::now();
        let path = req.path.clone();
        let limits = req.limits.unwrap_or(self.options.limits);
        if limits.memory_bytes > self.options.max_memory_bytes {
            return Err(LoadError::Limits {
                path,
                detail: format!(
                    "memory limit {} bytes exceeds the host ceiling of {} bytes",
                    limits.memory_bytes, self.options.max_memory_bytes
                ),
            });
        }
        if limits.timeout.is_zero() || limits.output_bytes == 0 {
            return Err(LoadError::Limits { path, detail: "timeout and output limit must be positive".into() });
        }
        let config = serde_json::to_string(&req.config)
            .map_err(|e| LoadError::Config { path: path.clone(), detail: e.to_string() })?;

        let bytes = read_wasm(&path)?;
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let (component, cache) = self.compile(&bytes, &digest, &path)?;

        let (kind, wit_version, export) = detect_kind(&self.engine, &component, &path)?;
        if let Some(expected) = req.kind
            && expected != kind
        {
            return Err(LoadError::KindMismatch { path, expected, actual: kind });
        }

        let link = |detail: String| LoadError::Link { path: path.clone(), detail };
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| link(format!("{e}")))?;
        let pre = Pre::new(instance_pre, kind, &export, &wit_version).map_err(link)?;

        let mut inner = Inner {
            name: Arc::from(req.name.as_str()),
            path: path.clone(),
            kind,
            digest: format!("sha256:{}", hex::encode(digest)),
            wit_version,
            info: PluginInfo::default(),
            config,
            limits,
            optional: req.optional,
            pre,
            engine: self.engine.clone(),
            cache,
            load_time: Duration::ZERO,
            profile_memo: convert::ProfileMemo::default(),
        };
        // The first instance also checks the exports' types against the
        // ones every later call assumes (`Pre::typed`).
        inner.info = match inner.info_checked(true) {
            Ok(Ok(info)) => info,
            Ok(Err(detail)) => return Err(link(detail)),
            Err(source) => return Err(LoadError::Info { path: path.clone(), source }),
        };
        inner.load_time = started.elapsed();
        tracing::debug!(
            plugin = %inner.name, kind = %kind, digest = %inner.digest, cache = ?cache,
            elapsed_us = inner.load_time.as_micros() as u64, "plugin loaded"
        );
        Ok(LoadedPlugin(Arc::new(inner)))
    }

    fn compile(&self, bytes: &[u8], digest: &[u8; 32], path: &Path) -> Result<(Component, CacheOutcome), LoadError> {
        if let Some(c) = self.compiled.lock().unwrap_or_else(|e| e.into_inner()).get(digest) {
            return Ok((c.clone(), CacheOutcome::Memory));
        }
        if Engine::detect_precompiled(bytes).is_some() {
            return Err(LoadError::Precompiled { path: path.to_path_buf() });
        }
        let invalid = |e: wasmtime::Error| LoadError::Invalid { path: path.to_path_buf(), detail: format!("{e}") };
        let (component, outcome) = match &self.cache_dir {
            None => (Component::new(&self.engine, bytes).map_err(invalid)?, CacheOutcome::Compiled),
            Some(dir) => {
                let file = dir.join(format!("{}.cwasm", self.cache_key(digest)));
                let cached = if file.exists() {
                    // SAFETY: the file is in a directory only this user can
                    // write (checked in `prepare_cache_dir`), under a name
                    // derived from the wasm digest and this engine's
                    // configuration, and was written by `precompile_component`
                    // of a compatible engine; wasmtime also checks its header.
                    // Entries are only ever replaced by rename, never
                    // rewritten in place, so the mapping stays valid.
                    match unsafe { Component::deserialize_file(&self.engine, &file) } {
                        Ok(c) => Some(c),
                        Err(e) => {
                            tracing::warn!(file = %file.display(), "discarding unusable cached plugin: {e}");
                            let _ = fs::remove_file(&file);
                            None
                        }
                    }
                } else {
                    None
                };
                match cached {
                    Some(c) => (c, CacheOutcome::Disk),
                    None => {
                        let artifact = self.engine.precompile_component(bytes).map_err(invalid)?;
                        if let Err(e) = write_atomically(&file, &artifact) {
                            tracing::warn!(file = %file.display(), "cannot write the plugin cache: {e}");
                        }
                        // SAFETY: `artifact` was just produced by this engine.
                        let c = unsafe { Component::deserialize(&self.engine, &artifact) }.map_err(invalid)?;
                        (c, CacheOutcome::Compiled)
                    }
                }
            }
        };
        self.compiled.lock().unwrap_or_else(|e| e.into_inner()).insert(*digest, component.clone());
        Ok((component, outcome))
    }

    /// sha256(tag, wasm digest, engine compatibility hash) — the compatibility
    /// hash covers the wasmtime version, target and every codegen setting.
    fn cache_key(&self, digest: &[u8; 32]) -> String {
        let mut h = ShaHasher(Sha256::new());
        h.write(b"berth-plugin-cache-v1\0");
        h.write(digest);
        self.engine.precompile_compatibility_hash().hash(&mut h);
        hex::encode(h.0.finalize())
    }
}

fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new().name("berth-plugin-epoch".into()).spawn(move || {
        loop {
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => break,
            }
        }
    });
    if let Err(e) = spawned {
        // Without a ticker no call would ever time out: better to fail
        // every call fast than to let one hang forever.
        tracing::error!("cannot start the plugin epoch thread ({e}); plugin deadlines are not enforced");
    }
}

fn prepare_cache_dir(dir: &Path) -> Result<(), String> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create it: {e}"))?;
    let meta = fs::metadata(dir).map_err(|e| format!("cannot stat it: {e}"))?;
    let me = fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX);
    if meta.uid() != me {
        return Err(format!("it is owned by uid {}, not by this process (uid {me})", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!("it is writable by group or others (mode {:o}); cached code is trusted", meta.mode() & 0o7777));
    }
    Ok(())
}

fn write_atomically(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".tmp-{}-{:?}", std::process::id(), std::thread::current().id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, file)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn read_wasm(path: &Path) -> Result<Vec<u8>, LoadError> {
    let read = |source| LoadError::Read { path: path.to_path_buf(), source };
    let meta = fs::metadata(path).map_err(read)?;
    if meta.len() > MAX_WASM_BYTES {
        return Err(LoadError::TooLarge { path: path.to_path_buf(), size: meta.len(), limit: MAX_WASM_BYTES });
    }
    fs::read(path).map_err(read)
}

/// The plugin's kind, WIT version and the name of the interface it exports.
fn detect_kind(engine: &Engine, component: &Component, path: &Path) -> Result<(PluginKind, String, String), LoadError> {
    let ty = component.component_type();
    let mut names = Vec::new();
    let mut found = Vec::new();
    for (name, _) in ty.exports(engine) {
        names.push(name.to_string());
        for kind in PluginKind::ALL {
            let Some(rest) = name.strip_prefix(kind.export_interface()) else { continue };
            if rest.is_empty() {
                found.push((kind, String::new(), name.to_string()));
            } else if let Some(version) = rest.strip_prefix('@') {
                found.push((kind, version.to_string(), name.to_string()));
            }
        }
    }
    let exports = if names.is_empty() { "none".to_string() } else { names.join(", ") };
    match found.len() {
        0 => Err(LoadError::NotAPlugin { path: path.to_path_buf(), exports }),
        1 => {
            let (kind, version, export) = found.pop().expect("one element");
            if !SUPPORTED_WIT_VERSIONS.contains(&version.as_str()) {
                let version = if version.is_empty() { "(unversioned)".to_string() } else { version };
                return Err(LoadError::IncompatibleWit {
                    path: path.to_path_buf(),
                    version,
                    host: format!("berth:plugin@{} (and {})", WIT_VERSION, COMPAT_WIT_VERSIONS.join(", ")),
                });
            }
            Ok((kind, version, export))
        }
        _ => Err(LoadError::Ambiguous { path: path.to_path_buf(), exports }),
    }
}

/// The plugin linked against the host, and where its two functions are.
struct Pre {
    instance_pre: InstancePre<State>,
    /// `info` of the exported interface.
    info: ComponentExportIndex,
    /// `mutate`, `select` or `resolve`.
    call: ComponentExportIndex,
    /// A spec-mutator of berth:plugin@0.1.0: the view is passed whole.
    view_record: bool,
}

type InfoFn = TypedFunc<(), (wit::PluginInfo,)>;
/// berth:plugin@0.1.0's `mutate` (the answer's types did not change).
type MutateRecordFn<'a> = TypedFunc<(&'a lower::View<'a>, &'a str), (Result<wit::Adjustment, wit::PluginError>,)>;
type MutateFn<'a> = TypedFunc<(Resource<lower::ViewRef>, &'a str), (Result<wit::Adjustment, wit::PluginError>,)>;
type SelectFn<'a> = TypedFunc<(&'a wit::HostFacts, &'a str), (Result<wit::SnapshotterChoice, wit::PluginError>,)>;
type ResolveFn<'a> = TypedFunc<(&'a wit::ResolveRequest, &'a str), (Result<Vec<wit::Source>, wit::PluginError>,)>;

impl Pre {
    fn new(instance_pre: InstancePre<State>, kind: PluginKind, export: &str, wit_version: &str) -> Result<Pre, String> {
        let component = instance_pre.component();
        let iface = component
            .get_export_index(None, export)
            .ok_or_else(|| format!("no exported instance `{export}`"))?;
        let func = |name: &str| {
            component
                .get_export_index(Some(&iface), name)
                .ok_or_else(|| format!("`{export}` has no function `{name}`"))
        };
        let call = func(match kind {
            PluginKind::SpecMutator => "mutate",
            PluginKind::SnapshotterSelector => "select",
            PluginKind::SourceResolver => "resolve",
        })?;
        let view_record = kind == PluginKind::SpecMutator && wit_version != WIT_VERSION;
        Ok(Pre { info: func("info")?, call, instance_pre, view_record })
    }

    /// Checks that the exported functions have exactly the types `typed`
    /// assumes, once per loaded plugin (the bindgen wrappers checked them on
    /// every instantiation, walking the whole container-view record).
    fn check_types(&self, store: &mut Store<State>, instance: &Instance, kind: PluginKind) -> Result<(), String> {
        let bad = |e: wasmtime::Error| format!("the exported functions do not have the WIT types of this host: {e:#}");
        instance.get_typed_func::<(), (wit::PluginInfo,)>(&mut *store, self.info).map_err(bad)?;
        match kind {
            PluginKind::SpecMutator if self.view_record => instance.get_typed_func::<(&lower::View<'_>, &str), (Result<wit::Adjustment, wit::PluginError>,)>(&mut *store, self.call).map(drop),
            PluginKind::SpecMutator => instance.get_typed_func::<(Resource<lower::ViewRef>, &str), (Result<wit::Adjustment, wit::PluginError>,)>(&mut *store, self.call).map(drop),
            PluginKind::SnapshotterSelector => instance.get_typed_func::<(&wit::HostFacts, &str), (Result<wit::SnapshotterChoice, wit::PluginError>,)>(&mut *store, self.call).map(drop),
            PluginKind::SourceResolver => instance.get_typed_func::<(&wit::ResolveRequest, &str), (Result<Vec<wit::Source>, wit::PluginError>,)>(&mut *store, self.call).map(drop),
        }
        .map_err(bad)
    }

    /// The function at `index` of a fresh instance of this plugin as `F`.
    ///
    /// # Safety
    /// `F` must be one of the types `check_types` verified for `index`.
    unsafe fn typed<P, R>(&self, store: &mut Store<State>, instance: &Instance, index: ComponentExportIndex) -> wasmtime::Result<TypedFunc<P, R>>
    where
        P: wasmtime::component::ComponentNamedList + wasmtime::component::Lower,
        R: wasmtime::component::ComponentNamedList + wasmtime::component::Lift,
    {
        let func = instance
            .get_func(&mut *store, index)
            .ok_or_else(|| wasmtime::Error::msg("the plugin's export disappeared"))?;
        // SAFETY: every instance comes from the same component, whose
        // function types `check_types` compared with `P` and `R` at load.
        Ok(unsafe { TypedFunc::new_unchecked(func) })
    }
}

struct Inner {
    name: Arc<str>,
    path: PathBuf,
    kind: PluginKind,
    digest: String,
    wit_version: String,
    info: PluginInfo,
    config: String,
    limits: Limits,
    optional: bool,
    pre: Pre,
    engine: Engine,
    cache: CacheOutcome,
    load_time: Duration,
    /// The last seccomp profile this plugin returned that passed the check.
    profile_memo: convert::ProfileMemo,
}

/// A loaded plugin. Clone it freely; every call gets a fresh store and
/// instance, so calls may run concurrently from several threads.
#[derive(Clone)]
pub struct LoadedPlugin(Arc<Inner>);

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name())
            .field("kind", &self.kind())
            .field("digest", &self.digest())
            .finish_non_exhaustive()
    }
}

/// A loaded plugin's description, for `berth plugin ls/inspect`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Description {
    pub name: String,
    pub path: PathBuf,
    pub kind: PluginKind,
    pub info: PluginInfo,
    pub wit_version: String,
    pub digest: String,
    pub optional: bool,
    pub limits: Limits,
    pub config: serde_json::Value,
    pub cache: CacheOutcome,
    pub load_time_us: u64,
}

impl LoadedPlugin {
    /// The configured name (errors and logs use it).
    pub fn name(&self) -> &str {
        &self.0.name
    }
    pub fn path(&self) -> &Path {
        &self.0.path
    }
    /// What the plugin said about itself at load.
    pub fn info(&self) -> &PluginInfo {
        &self.0.info
    }
    pub fn kind(&self) -> PluginKind {
        self.0.kind
    }
    /// `sha256:<hex>` of the .wasm file.
    pub fn digest(&self) -> &str {
        &self.0.digest
    }
    /// The berth:plugin version the component was built against.
    pub fn wit_version(&self) -> &str {
        &self.0.wit_version
    }
    pub fn limits(&self) -> Limits {
        self.0.limits
    }
    pub fn optional(&self) -> bool {
        self.0.optional
    }
    /// The config JSON handed to every call.
    pub fn config_json(&self) -> &str {
        &self.0.config
    }
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.0.cache
    }
    /// Read + compile-or-deserialise + link + `info`.
    pub fn load_time(&self) -> Duration {
        self.0.load_time
    }

    pub fn describe(&self) -> Description {
        Description {
            name: self.name().to_string(),
            path: self.path().to_path_buf(),
            kind: self.kind(),
            info: self.info().clone(),
            wit_version: self.wit_version().to_string(),
            digest: self.digest().to_string(),
            optional: self.optional(),
            limits: self.limits(),
            config: serde_json::from_str(self.config_json()).unwrap_or(serde_json::Value::Null),
            cache: self.cache_outcome(),
            load_time_us: self.load_time().as_micros() as u64,
        }
    }

    /// Calls `info` again (a fresh instance), e.g. for `berth plugin check`.
    pub fn call_info(&self) -> Result<PluginInfo, CallError> {
        self.0.call_info()
    }

    /// spec-mutator: the plugin's adjustment for `view`.
    pub fn mutate(&self, view: &ContainerView) -> Result<Adjustment, CallError> {
        let inner = &*self.0;
        if inner.kind != PluginKind::SpecMutator {
            return Err(inner.wrong_kind(PluginKind::SpecMutator));
        }
        let answer = if inner.pre.view_record {
            let input = lower::view(view);
            inner.call(|store| {
                let pre = &inner.pre;
                let instance = pre.instance_pre.instantiate(&mut *store)?;
                // SAFETY: a 0.1.0 spec-mutator's `call` was checked as `MutateRecordFn`.
                let f: MutateRecordFn<'_> = unsafe { pre.typed(store, &instance, pre.call)? };
                Ok(f.call(&mut *store, (&input, &inner.config)).map(|(r,)| r))
            })?
        } else {
            inner.call(|store| {
                // SAFETY: the store is this closure's, dropped by `call`
                // before `mutate` returns, while `view` is borrowed.
                store.data_mut().view = Some(unsafe { lower::LentView::lend(view) });
                let pre = &inner.pre;
                let instance = pre.instance_pre.instantiate(&mut *store)?;
                // SAFETY: a spec-mutator's `call` was checked as `MutateFn`.
                let f: MutateFn<'_> = unsafe { pre.typed(store, &instance, pre.call)? };
                // The view is lent as a borrowed `container`; its rep is
                // unused (the getters read `State::view`).
                Ok(f.call(&mut *store, (Resource::new_borrow(0), &inner.config)).map(|(r,)| r))
            })?
        };
        let out = inner.answer(answer)?;
        let mut out = convert::adjustment_from_wit(out, &inner.profile_memo).map_err(|detail| inner.malformed(detail))?;
        inner.check_adjustment_size(&mut out)?;
        Ok(out)
    }

    /// snapshotter-selector: the snapshotter for these facts.
    pub fn select(&self, facts: &HostFacts) -> Result<SnapshotterChoice, CallError> {
        let inner = &*self.0;
        if inner.kind != PluginKind::SnapshotterSelector {
            return Err(inner.wrong_kind(PluginKind::SnapshotterSelector));
        }
        let input = convert::facts_to_wit(facts);
        let answer = inner.call(|store| {
            let pre = &inner.pre;
            let instance = pre.instance_pre.instantiate(&mut *store)?;
            // SAFETY: a snapshotter-selector's `call` was checked as `SelectFn`.
            let f: SelectFn<'_> = unsafe { pre.typed(store, &instance, pre.call)? };
            Ok(f.call(&mut *store, (&input, &inner.config)).map(|(r,)| r))
        })?;
        let out = inner.answer(answer)?;
        let out = convert::choice_from_wit(out, facts).map_err(|detail| inner.malformed(detail))?;
        inner.check_size(&out)?;
        Ok(out)
    }

    /// source-resolver: where to fetch from, in order.
    pub fn resolve(&self, request: &ResolveRequest) -> Result<Vec<Source>, CallError> {
        let inner = &*self.0;
        if inner.kind != PluginKind::SourceResolver {
            return Err(inner.wrong_kind(PluginKind::SourceResolver));
        }
        let input = convert::request_to_wit(request);
        let answer = inner.call(|store| {
            let pre = &inner.pre;
            let instance = pre.instance_pre.instantiate(&mut *store)?;
            // SAFETY: a source-resolver's `call` was checked as `ResolveFn`.
            let f: ResolveFn<'_> = unsafe { pre.typed(store, &instance, pre.call)? };
            Ok(f.call(&mut *store, (&input, &inner.config)).map(|(r,)| r))
        })?;
        let out = inner.answer(answer)?;
        let out = convert::sources_from_wit(out).map_err(|detail| inner.malformed(detail))?;
        inner.check_size(&out)?;
        Ok(out)
    }
}

impl berth_spec::Mutator for LoadedPlugin {
    fn name(&self) -> &str {
        LoadedPlugin::name(self)
    }

    fn mutate(&self, view: &ContainerView) -> Result<Adjustment, berth_spec::MutatorError> {
        use crate::types::PluginError;
        use berth_spec::MutatorError;
        LoadedPlugin::mutate(self, view).map_err(|e| match e {
            CallError::Rejected { error: PluginError::InvalidConfig(m), .. } => MutatorError::InvalidConfig(m),
            CallError::Rejected { error: PluginError::Rejected(m), .. } => MutatorError::Rejected(m),
            CallError::Rejected { error: PluginError::Internal(m), .. } => MutatorError::Internal(m),
            other => MutatorError::host(other),
        })
    }
}

/// Counts the bytes of a JSON encoding without keeping them.
struct Counter(usize);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The size of `value` encoded as JSON: the output-size measure.
pub fn output_size<T: Serialize>(value: &T) -> usize {
    let mut c = Counter(0);
    let _ = serde_json::to_writer(&mut c, value);
    c.0
}

impl Inner {
    fn wrong_kind(&self, expected: PluginKind) -> CallError {
        CallError::WrongKind { plugin: self.name.to_string(), expected, actual: self.kind }
    }

    fn malformed(&self, detail: String) -> CallError {
        CallError::MalformedOutput { plugin: self.name.to_string(), detail }
    }

    fn check_size<T: Serialize>(&self, value: &T) -> Result<(), CallError> {
        let size = output_size(value);
        if size > self.limits.output_bytes {
            return Err(CallError::OutputTooLarge { plugin: self.name.to_string(), size, limit: self.limits.output_bytes });
        }
        Ok(())
    }

    /// `check_size` for an adjustment, without escaping a seccomp profile
    /// (tens of KiB; serde_json's escaper was 11% of a seccomp-default call)
    /// when it fits even at the largest possible escaping: the rest is
    /// measured exactly with an empty profile, and a JSON string's contents
    /// take at most 6 bytes per byte (`\u001f`). Otherwise, or when that
    /// bound is over the limit, the exact measure as for any answer.
    fn check_adjustment_size(&self, out: &mut Adjustment) -> Result<(), CallError> {
        use berth_spec::adjustment::Seccomp;
        let Some(Seccomp::Profile(json)) = &mut out.seccomp else { return self.check_size(&*out) };
        let profile = std::mem::take(json);
        let bound = output_size(&*out).saturating_add(profile.len().saturating_mul(6));
        out.seccomp = Some(Seccomp::Profile(profile));
        if bound <= self.limits.output_bytes { Ok(()) } else { self.check_size(&*out) }
    }

    fn answer<T>(&self, answer: Result<T, crate::bindings::wit::PluginError>) -> Result<T, CallError> {
        answer.map_err(|e| CallError::Rejected {
            plugin: self.name.to_string(),
            error: convert::plugin_error_from_wit(e),
        })
    }

    fn call_info(&self) -> Result<PluginInfo, CallError> {
        match self.info_checked(false)? {
            Ok(info) => Ok(info),
            Err(detail) => Err(CallError::Instantiate { plugin: self.name.to_string(), detail }),
        }
    }

    /// `info` in a fresh instance; with `check`, first the export types
    /// (`Err(detail)` when they are not this host's).
    fn info_checked(&self, check: bool) -> Result<Result<PluginInfo, String>, CallError> {
        let info = self.call(|store| {
            let pre = &self.pre;
            let instance = pre.instance_pre.instantiate(&mut *store)?;
            if check && let Err(detail) = pre.check_types(&mut *store, &instance, self.kind) {
                return Ok(Ok(Err(detail)));
            }
            // SAFETY: `info` was checked as `InfoFn` (above, at load).
            let f: InfoFn = unsafe { pre.typed(store, &instance, pre.info)? };
            Ok(f.call(&mut *store, ()).map(|(r,)| Ok(r)))
        })?;
        let info = match info {
            Ok(info) => convert::info_from_wit(info),
            Err(detail) => return Ok(Err(detail)),
        };
        self.check_size(&info)?;
        Ok(Ok(info))
    }

    /// Runs `f` in a fresh store with this plugin's limits and turns every
    /// failure into a [`CallError`] naming the plugin.
    fn call<R>(&self, f: impl FnOnce(&mut Store<State>) -> wasmtime::Result<wasmtime::Result<R>>) -> Result<R, CallError> {
        let mut store = Store::new(&self.engine, State::new(self.name.clone(), self.limits.memory_bytes));
        store.limiter(|s| &mut s.limiter);
        let tick = EPOCH_TICK.as_nanos().max(1);
        let ticks = self.limits.timeout.as_nanos().div_ceil(tick) as u64 + 1;
        store.set_epoch_deadline(ticks);
        // The outer result is instantiation, the inner the call itself.
        let result = match f(&mut store) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(self.classify(e, &store, false)),
            Err(e) => Err(self.classify(e, &store, true)),
        };
        store.data().flush_stderr();
        result
    }

    fn classify(&self, err: wasmtime::Error, store: &Store<State>, instantiating: bool) -> CallError {
        let plugin = self.name.to_string();
        tracing::debug!(plugin = %plugin, "plugin call failed: {err:?}");
        if let Some(requested) = store.data().limiter.exceeded {
            return CallError::OutOfMemory { plugin, requested, limit: self.limits.memory_bytes };
        }
        if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
            if *trap == wasmtime::Trap::Interrupt {
                return CallError::Timeout { plugin, timeout: self.limits.timeout };
            }
            let mut detail = trap.to_string();
            if let Some(tail) = stderr_tail(store) {
                detail.push_str(&format!(" (stderr: {tail})"));
            }
            return CallError::Trap { plugin, detail };
        }
        if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return CallError::Trap { plugin, detail: format!("the plugin called exit({})", exit.0) };
        }
        if instantiating {
            return CallError::Instantiate { plugin, detail: format!("{err}") };
        }
        CallError::MalformedOutput { plugin, detail: format!("{err}") }
    }
}

/// The last lines a plugin wrote to stderr (a Rust panic message lands there).
fn stderr_tail(store: &Store<State>) -> Option<String> {
    let (bytes, _) = store.data().stderr.contents();
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut start = text.len().saturating_sub(400);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    Some(text[start..].replace('\n', " | "))
}
