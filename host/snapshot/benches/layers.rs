//! Prepare+Mounts on a 128-layer chain, per snapshotter: a timed loop
//! printing the median and 90th percentile. With root, also the time to
//! mount (and unmount) the 128-layer overlay those Mounts describe.
//!
//! `cargo bench -p berth-snapshot --bench layers` (release profile).

use std::path::Path;
use std::time::{Duration, Instant};

use berth_snapshot::mount::Mounted;
use berth_snapshot::{Labels, Snapshotter};

const LAYERS: usize = 128;
const ITERATIONS: usize = 200;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

/// A committed chain of `LAYERS` snapshots, each adding one file (written
/// straight into the layer's directory: no mount needed to build it).
fn build_chain(sn: &dyn Snapshotter) -> String {
    let mut parent: Option<String> = None;
    for i in 0..LAYERS {
        let key = format!("layer-{i}-a");
        let mounts = sn.prepare(&key, parent.as_deref(), Labels::new()).unwrap();
        let dir = mounts[0]
            .options
            .iter()
            .find_map(|o| o.strip_prefix("upperdir="))
            .map(str::to_string)
            .unwrap_or_else(|| mounts[0].source.clone());
        std::fs::write(Path::new(&dir).join(format!("file-{i}")), format!("{i}\n")).unwrap();
        let name = format!("layer-{i}");
        sn.commit(&name, &key, Labels::new()).unwrap();
        parent = Some(name);
    }
    parent.unwrap()
}

fn bench(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let sn = berth_snapshot::open(name, &dir.path().join("root")).unwrap();
    let top = build_chain(sn.as_ref());
    let mut prepare_mounts = Vec::with_capacity(ITERATIONS);
    let mut remove = Vec::with_capacity(ITERATIONS);
    let mut options_len = 0;
    for i in 0..ITERATIONS {
        let key = format!("bench-{i}");
        let start = Instant::now();
        sn.prepare(&key, Some(&top), Labels::new()).unwrap();
        let mounts = sn.mounts(&key).unwrap();
        prepare_mounts.push(start.elapsed());
        options_len = mounts[0].options.join(",").len();
        let start = Instant::now();
        sn.remove(&key).unwrap();
        remove.push(start.elapsed());
    }
    println!(
        "{name:15} prepare+mounts on {LAYERS} layers: median {:?}, p90 {:?} ({ITERATIONS} runs; options {options_len} bytes); remove: median {:?}",
        percentile(&mut prepare_mounts, 0.5),
        percentile(&mut prepare_mounts, 0.9),
        percentile(&mut remove, 0.5),
    );
    if rustix::process::geteuid().is_root() {
        let target = dir.path().join("mnt");
        std::fs::create_dir(&target).unwrap();
        let mounts = sn.prepare("mounted", Some(&top), Labels::new()).unwrap();
        let mut mount = Vec::new();
        for _ in 0..20 {
            let start = Instant::now();
            let mounted = Mounted::new(&mounts, &target).unwrap();
            mount.push(start.elapsed());
            assert!(mounted.path().join(format!("file-{}", LAYERS - 1)).is_file() && mounted.path().join("file-0").is_file());
            mounted.unmount().unwrap();
        }
        println!("{name:15} mount of the {LAYERS}-layer active snapshot: median {:?} (20 runs)", percentile(&mut mount, 0.5));
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing special: run once either way.
    let facts = berth_snapshot::probe::probe(&std::env::temp_dir());
    for name in berth_snapshot::SNAPSHOTTERS {
        if !facts.usable(name) || (*name != "native" && !rustix::process::geteuid().is_root()) {
            println!("{name:15} skipped: not usable here");
            continue;
        }
        bench(name);
    }
}
