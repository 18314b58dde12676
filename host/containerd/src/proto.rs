//! Code generated from containerd's protos (see `proto/README.md`).

/// `containerd.services.snapshots.v1`: the snapshots service, server side.
#[allow(clippy::all)]
pub mod snapshots {
    tonic::include_proto!("containerd.services.snapshots.v1");
}

/// `containerd.runc.v1`: options of the `io.containerd.runc.v2` runtime.
#[allow(clippy::all)]
pub mod runc_options {
    tonic::include_proto!("containerd.runc.v1");
}
