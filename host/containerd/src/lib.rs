//! containerd integration: client backend and the snapshots gRPC service.
