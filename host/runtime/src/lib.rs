//! Executors: native (namespaces, mounts, cgroups, capabilities, seccomp), oci-runtime (runc/crun).
