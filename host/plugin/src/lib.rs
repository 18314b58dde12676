//! The wasmtime plugin host: engine, loading, precompile cache, sandbox limits, per-kind callers.
