//! Generates the snapshots *server* and the runc options message from
//! containerd's protos (vendored in proto/); containerd-client generates
//! clients only and does not compile the runc options.

fn main() -> std::io::Result<()> {
    let protos = [
        "proto/github.com/containerd/containerd/api/services/snapshots/v1/snapshots.proto",
        "proto/github.com/containerd/containerd/api/types/runc/options/oci.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        // One Mount type on both sides: the client's.
        .extern_path(".containerd.types", "::containerd_client::types")
        .compile_with_config(config, &protos, &["proto"])
}
