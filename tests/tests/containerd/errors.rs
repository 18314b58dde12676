//! Clear errors: where containerd is not, what it lacks.

use std::time::Duration;

use anyhow::{Result, ensure};
use berth_containerd::{ContainerdBackend, Error, RunRequest};
use berth_tests::cases::unique_id;
use berth_tests::spec::spec_running;

use crate::IMAGE_NAME;
use crate::module::{Module, ModuleTrial};

pub fn trials() -> Vec<(&'static str, ModuleTrial)> {
    vec![
        ("errors::missing_socket", ModuleTrial::Standalone(missing_socket)),
        ("errors::dead_socket", ModuleTrial::Standalone(dead_socket)),
        ("errors::silent_socket", ModuleTrial::Standalone(silent_socket)),
        ("errors::wrong_namespace", ModuleTrial::WithDaemon(wrong_namespace)),
        ("errors::missing_image", ModuleTrial::WithDaemon(missing_image)),
        ("errors::missing_container", ModuleTrial::WithDaemon(missing_container)),
        ("errors::unknown_snapshotter", ModuleTrial::WithDaemon(unknown_snapshotter)),
    ]
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(future)
}

fn missing_socket() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("containerd.sock");
    let err = block_on(ContainerdBackend::connect(&path, "default")).unwrap_err();
    ensure!(matches!(&err, Error::NoSocket(p) if *p == path), "{err:?}");
    ensure!(err.to_string() == format!("no containerd socket at {}", path.display()), "{err}");
    Ok(())
}

fn dead_socket() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // A socket file nobody listens on any more.
    let path = dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&path)?);
    let err = block_on(ContainerdBackend::connect(&path, "default")).unwrap_err();
    ensure!(matches!(&err, Error::DeadSocket { path: p, .. } if *p == path), "{err:?}");
    ensure!(err.to_string().contains(&path.display().to_string()), "{err}");
    // Not a socket at all.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"")?;
    let err = block_on(ContainerdBackend::connect(&file, "default")).unwrap_err();
    ensure!(matches!(&err, Error::DeadSocket { reason, .. } if reason.contains("not a unix socket")), "{err:?}");
    Ok(())
}

/// A listener that never answers: the connect times out with DeadSocket.
fn silent_socket() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("silent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&path)?;
    let err = block_on(ContainerdBackend::connect_timeout(&path, "default", Duration::from_millis(500))).unwrap_err();
    ensure!(matches!(&err, Error::DeadSocket { .. }), "{err:?}");
    Ok(())
}

fn wrong_namespace(module: &Module) -> Result<()> {
    let namespace = format!("berth-missing-{}", std::process::id());
    let client = module.client_in(&namespace)?;
    let err = module.block_on(client.ensure_image(IMAGE_NAME)).unwrap_err();
    ensure!(matches!(&err, Error::NamespaceNotFound { namespace: n, .. } if *n == namespace), "{err:?}");
    ensure!(err.to_string().contains(&namespace), "{err}");
    let err = module.block_on(client.logs("some-container")).unwrap_err();
    ensure!(matches!(err, Error::NamespaceNotFound { .. }), "{err:?}");
    Ok(())
}

fn missing_image(module: &Module) -> Result<()> {
    let image = "docker.io/library/berth-absent:1";
    let err = module.block_on(module.client.ensure_image(image)).unwrap_err();
    ensure!(err.to_string() == format!("image {image} not found in namespace berth-test"), "{err}");
    // Running it fails the same way and leaves no container behind.
    let id = unique_id("missing_image");
    let err = module.block_on(module.client.run(RunRequest::new(&id, image, spec_running(&["true"])))).unwrap_err();
    ensure!(matches!(err, Error::ImageNotFound { .. }), "{err:?}");
    let listed = module.block_on(module.client.list())?;
    ensure!(!listed.iter().any(|c| c.id == id), "container {id} left behind");
    Ok(())
}

fn missing_container(module: &Module) -> Result<()> {
    let err = module.block_on(module.client.wait("berth-no-such-container")).unwrap_err();
    ensure!(matches!(&err, Error::ContainerNotFound { id, .. } if id == "berth-no-such-container"), "{err:?}");
    let err = module.block_on(module.client.delete("berth-no-such-container", true)).unwrap_err();
    ensure!(err.to_string() == "container berth-no-such-container not found in namespace berth-test", "{err}");
    Ok(())
}

fn unknown_snapshotter(module: &Module) -> Result<()> {
    let id = unique_id("unknown_snapshotter");
    let request = RunRequest { snapshotter: Some("berth-nonesuch".into()), ..RunRequest::new(&id, IMAGE_NAME, spec_running(&["true"])) };
    let err = module.block_on(module.client.run(request)).unwrap_err();
    ensure!(err.to_string().contains("berth-nonesuch"), "{err}");
    Ok(())
}
