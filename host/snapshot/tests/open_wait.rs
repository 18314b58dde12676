//! Two openers of one snapshotter root: the metadata database takes one at
//! a time, so `open` waits for the holder instead of failing (two `berth
//! run`s on one root must both work).

use std::sync::mpsc;
use std::time::{Duration, Instant};

#[test]
fn open_waits_for_the_holder_to_close() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("native");
    let first = berth_snapshot::open("native", &root).unwrap();
    first.prepare("held", None, Default::default()).unwrap();
    let (opened_tx, opened_rx) = mpsc::channel();
    let waiter = {
        let root = root.clone();
        std::thread::spawn(move || {
            let second = berth_snapshot::open("native", &root).unwrap();
            opened_tx.send(Instant::now()).unwrap();
            // It sees what the first opener committed.
            second.stat("held").unwrap().name
        })
    };
    // Still held: the second opener is waiting, not failed.
    assert!(opened_rx.recv_timeout(Duration::from_millis(300)).is_err(), "opened while the database was held");
    let released = Instant::now();
    drop(first);
    let opened = opened_rx.recv_timeout(Duration::from_secs(10)).expect("the waiter never opened");
    assert!(opened >= released);
    assert_eq!(waiter.join().unwrap(), "held");
}
