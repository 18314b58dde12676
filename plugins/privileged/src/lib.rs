//! containerd `WithPrivileged` as a spec-mutator.
