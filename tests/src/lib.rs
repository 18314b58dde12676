//! Test harness: backend registry, daemons in temp dirs, closers.
