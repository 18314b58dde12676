//! ProxySnapshotter against the real snapshots service (berth's own server,
//! a native snapshotter in a temp dir, on a private socket): every call
//! crosses gRPC and comes back with containerd's semantics and error kinds.

use std::sync::Arc;

use berth_containerd::ProxySnapshotter;
use berth_snapshot::{Error, Kind, Labels, Snapshotter};

/// The server on its own thread and runtime; stopped (and joined) on drop.
struct Server {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    fn start(socket: &std::path::Path, snapshotter: Arc<dyn Snapshotter>) -> Server {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let socket = socket.to_path_buf();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
            let result = runtime.block_on(async move {
                let listener = berth_containerd::snapshots_service::bind(&socket)?;
                ready_tx.send(()).ok();
                // Stopping drops the server outright, open connections with
                // it (a graceful shutdown would wait for the clients).
                tokio::select! {
                    served = berth_containerd::snapshots_service::serve_on(listener, &socket, snapshotter, std::future::pending()) => served,
                    _ = stopped => Ok(()),
                }
            });
            runtime.shutdown_background();
            result
        });
        ready.recv().expect("the server bound its socket");
        Server { stop: Some(stop), thread: Some(thread) }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.take().map(|s| s.send(()));
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Err(err)) if !std::thread::panicking() => panic!("server: {err:#}"),
                _ => {}
            }
        }
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn proxy_snapshotter_has_containerd_semantics_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("native");
    let local = berth_snapshot::open("native", &root).unwrap();
    let socket = dir.path().join("snap.sock");
    let _server = Server::start(&socket, local);

    // Every call carries a containerd-namespace header; berth's server
    // serves one snapshotter whatever the namespace.
    let options = berth_containerd::ProxyOptions { namespace: "berth-roundtrip".into(), ..Default::default() };
    let proxy = ProxySnapshotter::connect_with(&socket, "native", options).unwrap();
    assert_eq!(proxy.name(), "native");

    // Prepare: a bind mount of a directory under the server's root.
    let mounts = proxy.prepare("layer-1", None, labels(&[("a", "1")])).unwrap();
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].kind, "bind");
    let dir1 = std::path::PathBuf::from(&mounts[0].source);
    assert!(dir1.starts_with(&root), "{} under {}", dir1.display(), root.display());
    std::fs::write(dir1.join("hello"), b"hi").unwrap();
    assert_eq!(proxy.mounts("layer-1").unwrap(), mounts);

    // Errors keep their kinds across the wire.
    assert!(matches!(proxy.prepare("layer-1", None, Labels::new()), Err(Error::AlreadyExists(k)) if k == "layer-1"));
    assert!(matches!(proxy.stat("nope"), Err(Error::NotFound(k)) if k == "nope"));
    assert!(matches!(proxy.mounts("nope"), Err(Error::NotFound(_))));
    assert!(proxy.prepare("child", Some("nope"), Labels::new()).is_err());

    proxy.commit("sha256:one", "layer-1", labels(&[("b", "2")])).unwrap();
    let info = proxy.stat("sha256:one").unwrap();
    assert_eq!(info.kind, Kind::Committed);
    assert_eq!(info.parent, None);
    assert_eq!(info.labels.get("b").map(String::as_str), Some("2"));
    assert!(matches!(proxy.stat("layer-1"), Err(Error::NotFound(_))));

    // A child on the committed parent sees its file (native copies it).
    let child = proxy.prepare("ctr", Some("sha256:one"), Labels::new()).unwrap();
    assert_eq!(std::fs::read(std::path::Path::new(&child[0].source).join("hello")).unwrap(), b"hi");
    let view = proxy.view("v", Some("sha256:one"), Labels::new()).unwrap();
    assert!(view[0].options.iter().any(|o| o == "ro"), "{view:?}");
    assert!(proxy.commit("x", "v", Labels::new()).is_err(), "a view cannot be committed");

    // The parent has children: FailedPrecondition, as containerd.
    assert!(matches!(proxy.remove("sha256:one"), Err(Error::FailedPrecondition(_))));

    // Labels: one set, one removed through the mask.
    let mut info = proxy.stat("sha256:one").unwrap();
    info.labels = labels(&[("c", "3")]);
    let updated = proxy.update(info, &["labels.c".into(), "labels.b".into()]).unwrap();
    // The commit's gc.root label (what keeps it from containerd's GC) stays.
    let mut kept = updated.labels.clone();
    assert!(kept.remove(berth_containerd::proxy_snapshotter::GC_ROOT_LABEL).is_some(), "{:?}", updated.labels);
    assert_eq!(kept, labels(&[("c", "3")]));

    assert!(proxy.usage("sha256:one").unwrap().size >= 2);

    // Walk with filters (OR-ed), through the streamed List.
    let mut names = Vec::new();
    proxy
        .walk(&["kind==committed".into(), "name==v".into()], &mut |info| {
            names.push(info.name.clone());
            Ok(())
        })
        .unwrap();
    names.sort();
    assert_eq!(names, ["sha256:one", "v"]);
    let mut all = 0;
    proxy
        .walk(&[], &mut |_| {
            all += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(all, 3);
    // A callback's error stops the walk and comes back as is.
    let err = proxy.walk(&[], &mut |_| Err(Error::InvalidArgument("stop".into()))).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(m) if m == "stop"));

    proxy.remove("ctr").unwrap();
    proxy.remove("v").unwrap();
    proxy.remove("sha256:one").unwrap();
    assert!(matches!(proxy.remove("sha256:one"), Err(Error::NotFound(_))));
    proxy.close().unwrap();
    proxy.close().unwrap();
}

/// Many threads share one ProxySnapshotter (the trait is Send + Sync).
#[test]
fn proxy_snapshotter_is_shared_between_threads() {
    let dir = tempfile::tempdir().unwrap();
    let local = berth_snapshot::open("native", &dir.path().join("native")).unwrap();
    let socket = dir.path().join("snap.sock");
    let _server = Server::start(&socket, local);
    let proxy = Arc::new(ProxySnapshotter::connect(&socket, "native").unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let proxy = proxy.clone();
            std::thread::spawn(move || {
                for i in 0..10 {
                    let key = format!("k-{t}-{i}");
                    proxy.prepare(&key, None, Labels::new()).unwrap();
                    proxy.remove(&key).unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let mut left = 0;
    proxy
        .walk(&[], &mut |_| {
            left += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(left, 0);
}

/// The server gone: an `Other` error that names the socket and the call.
#[test]
fn a_dead_server_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let local = berth_snapshot::open("native", &dir.path().join("native")).unwrap();
    let socket = dir.path().join("snap.sock");
    let server = Server::start(&socket, local);
    let proxy = ProxySnapshotter::connect(&socket, "native").unwrap();
    proxy.prepare("a", None, Labels::new()).unwrap();
    drop(server);
    match proxy.stat("a") {
        Err(Error::Other(err)) => {
            let text = format!("{err:#}");
            assert!(text.contains(&socket.display().to_string()) && text.contains("stat a"), "{text}");
        }
        other => panic!("{other:?}"),
    }
}
