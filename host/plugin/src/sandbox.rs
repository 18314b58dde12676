//! The per-call store: an empty WASI context, the memory limiter, the
//! `host.log` import, and stderr capture.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::{wit, wit_host};

/// Bytes of stderr kept per call; the rest is counted and dropped.
pub(crate) const STDERR_CAPACITY: usize = 64 * 1024;
/// `host.log` records forwarded per call; the rest are counted and dropped.
pub(crate) const MAX_LOG_RECORDS: u32 = 256;
/// Characters of one log message or field forwarded.
const MAX_LOG_CHARS: usize = 4096;
/// Table elements a plugin may grow to.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Store data of one call.
pub(crate) struct State {
    pub plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: Limiter,
    pub stderr: StderrCapture,
    pub logs: u32,
    /// The container view a 0.2.0 spec-mutator call reads through its
    /// `container` resource.
    pub view: Option<crate::lower::LentView>,
}

impl State {
    pub fn new(plugin: Arc<str>, memory_limit: usize) -> State {
        let stderr = StderrCapture::new(STDERR_CAPACITY);
        // Nothing in it: no args, env, preopens; stdin closed; stdout
        // discarded; network uses denied (the builder's defaults, made
        // explicit where a default could change).
        let wasi = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        State {
            plugin,
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter { memory_limit, exceeded: None },
            stderr,
            logs: 0,
            view: None,
        }
    }

    /// Forwards what the plugin wrote to stderr into the host log.
    pub fn flush_stderr(&self) {
        let (bytes, dropped) = self.stderr.contents();
        if bytes.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&bytes);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            tracing::info!(target: "berth_plugin::stderr", plugin = %self.plugin, "{line}");
        }
        if dropped > 0 {
            tracing::warn!(plugin = %self.plugin, "dropped {dropped} more bytes of plugin stderr (limit {STDERR_CAPACITY} per call)");
        }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Enforces the memory cap and remembers that it did, so a trap caused by a
/// refused growth is reported as out-of-memory.
pub(crate) struct Limiter {
    pub memory_limit: usize,
    /// The size a refused growth asked for.
    pub exceeded: Option<usize>,
}

#[derive(Debug)]
pub(crate) struct MemoryLimitExceeded;

impl std::fmt::Display for MemoryLimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("memory limit exceeded")
    }
}
impl std::error::Error for MemoryLimitExceeded {}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.exceeded = Some(desired);
            // An error traps right here, instead of handing the guest a
            // failed `memory.grow` it might loop on.
            return Err(wasmtime::Error::new(MemoryLimitExceeded));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

fn clip(s: &str) -> &str {
    if s.len() <= MAX_LOG_CHARS {
        return s;
    }
    let mut end = MAX_LOG_CHARS;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl wit_host::Host for State {
    fn log(&mut self, level: wit_host::Level, message: String, fields: Vec<wit::KeyValue>) {
        self.logs += 1;
        if self.logs > MAX_LOG_RECORDS {
            if self.logs == MAX_LOG_RECORDS + 1 {
                tracing::warn!(plugin = %self.plugin, "plugin log limit ({MAX_LOG_RECORDS} records per call) reached; dropping the rest");
            }
            return;
        }
        let mut rendered = String::new();
        for kv in &fields {
            use std::fmt::Write;
            let _ = write!(rendered, " {}={:?}", clip(&kv.key), clip(&kv.value));
        }
        let plugin = &*self.plugin;
        let message = clip(&message);
        match level {
            wit_host::Level::Trace => tracing::trace!(target: "berth_plugin::log", plugin, "{message}{rendered}"),
            wit_host::Level::Debug => tracing::debug!(target: "berth_plugin::log", plugin, "{message}{rendered}"),
            wit_host::Level::Info => tracing::info!(target: "berth_plugin::log", plugin, "{message}{rendered}"),
            wit_host::Level::Warn => tracing::warn!(target: "berth_plugin::log", plugin, "{message}{rendered}"),
            wit_host::Level::Error => tracing::error!(target: "berth_plugin::log", plugin, "{message}{rendered}"),
        }
    }
}

impl wit::Host for State {}

/// `host.log` of plugins built against berth:plugin@0.1.0.
impl crate::bindings::compat_0_1::berth::plugin::host::Host for State {
    fn log(
        &mut self,
        level: crate::bindings::compat_0_1::berth::plugin::host::Level,
        message: String,
        fields: Vec<crate::bindings::compat_0_1::berth::plugin::types::KeyValue>,
    ) {
        use crate::bindings::compat_0_1::berth::plugin::host::Level as Old;
        let level = match level {
            Old::Trace => wit_host::Level::Trace,
            Old::Debug => wit_host::Level::Debug,
            Old::Info => wit_host::Level::Info,
            Old::Warn => wit_host::Level::Warn,
            Old::Error => wit_host::Level::Error,
        };
        let fields = fields.into_iter().map(|kv| wit::KeyValue { key: kv.key, value: kv.value }).collect();
        wit_host::Host::log(self, level, message, fields)
    }
}

impl crate::bindings::compat_0_1::berth::plugin::types::Host for State {}

/// The plugin's stderr: kept up to a capacity, the rest counted and dropped
/// (never an error: Rust's `eprintln!` panics when stderr fails).
#[derive(Clone)]
pub(crate) struct StderrCapture {
    inner: Arc<std::sync::Mutex<(Vec<u8>, usize)>>,
    capacity: usize,
}

impl StderrCapture {
    fn new(capacity: usize) -> Self {
        StderrCapture { inner: Arc::new(std::sync::Mutex::new((Vec::new(), 0))), capacity }
    }

    fn push(&self, bytes: &[u8]) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (buf, dropped) = &mut *guard;
        let room = self.capacity.saturating_sub(buf.len());
        let keep = bytes.len().min(room);
        buf.extend_from_slice(&bytes[..keep]);
        *dropped += bytes.len() - keep;
    }

    /// What was kept, and how many bytes were dropped.
    pub fn contents(&self) -> (Vec<u8>, usize) {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (guard.0.clone(), guard.1)
    }
}

impl wasmtime_wasi::cli::IsTerminal for StderrCapture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for StderrCapture {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl wasmtime_wasi::p2::OutputStream for StderrCapture {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for StderrCapture {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for StderrCapture {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: std::pin::Pin<&mut Self>, _cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
