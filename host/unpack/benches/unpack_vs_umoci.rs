//! Unpack time of a multi-layer image: berth vs `umoci unpack`, same run.
//!
//! Builds a synthetic 3-layer gzip image (~27k entries, ~80 MiB
//! uncompressed: files, dirs, symlinks, hardlinks, whiteouts, an opaque dir)
//! as an OCI layout, imports it into a berth root, then runs hyperfine on
//!   berth --root R image unpack bench:1 --dest D
//!   umoci unpack --image LAYOUT:bench B
//! (each run on a fresh destination) and prints hyperfine's table. It also
//! times the in-process library call (`apply_layer` per layer).
//!
//!   cargo build --release -p berth-host
//!   cargo bench -p berth-unpack --bench unpack_vs_umoci
//!
//! BERTH_BIN overrides the berth binary (default target/release/berth);
//! BENCH_RUNS the number of hyperfine runs (default 5); BENCH_DIR where
//! the layout, berth root and destinations live (default: the temp dir;
//! `/dev/shm` takes the disk out of the measurement).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use sha2::Digest as _;

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Text-like data: compresses about as well as binaries and configs do.
fn data(rng: &mut Lcg, len: usize) -> Vec<u8> {
    const WORDS: [&[u8]; 12] =
        [b"lib", b"usr", b"share", b"\x7fELF", b"config", b"0x1f2e", b"main", b"\n", b"  ", b"return", b"{}", b"\x00\x00\x00"];
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(WORDS[(rng.next() % 12) as usize]);
        if rng.next() % 4 == 0 {
            out.push((rng.next() & 0xff) as u8);
        }
    }
    out.truncate(len);
    out
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(size);
    h
}

fn layers() -> Vec<Vec<u8>> {
    let mut rng = Lcg(42);
    let mut out = Vec::new();

    let mut b = tar::Builder::new(Vec::new());
    for d in 0..200 {
        b.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), format!("usr/d{d}/"), std::io::empty()).unwrap();
        for f in 0..100 {
            let len = (rng.next() % 8192) as usize;
            let body = data(&mut rng, len);
            b.append_data(&mut header(tar::EntryType::Regular, 0o644, len as u64), format!("usr/d{d}/f{f}"), body.as_slice()).unwrap();
        }
    }
    out.push(b.into_inner().unwrap());

    let mut b = tar::Builder::new(Vec::new());
    for d in 0..200 {
        b.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), format!("usr/d{d}/"), std::io::empty()).unwrap();
        if d < 10 {
            b.append_data(&mut header(tar::EntryType::Regular, 0o644, 0), format!("usr/d{d}/.wh..wh..opq"), std::io::empty()).unwrap();
        }
        for f in 0..10 {
            let len = (rng.next() % 16384) as usize;
            let body = data(&mut rng, len);
            b.append_data(&mut header(tar::EntryType::Regular, 0o600, len as u64), format!("usr/d{d}/f{f}"), body.as_slice()).unwrap();
        }
        for f in 10..15 {
            b.append_data(&mut header(tar::EntryType::Regular, 0o644, 0), format!("usr/d{d}/.wh.f{f}"), std::io::empty()).unwrap();
        }
    }
    out.push(b.into_inner().unwrap());

    let mut b = tar::Builder::new(Vec::new());
    b.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), "opt/", std::io::empty()).unwrap();
    for d in 0..50 {
        b.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), format!("opt/e{d}/"), std::io::empty()).unwrap();
        for f in 0..100 {
            let len = (rng.next() % 4096) as usize;
            let body = data(&mut rng, len);
            let name = format!("opt/e{d}/g{f}");
            b.append_data(&mut header(tar::EntryType::Regular, 0o755, len as u64), &name, body.as_slice()).unwrap();
            if f % 10 == 0 {
                b.append_link(&mut header(tar::EntryType::Link, 0o755, 0), format!("opt/e{d}/hard{f}"), &name).unwrap();
            }
            if f % 3 == 0 {
                b.append_link(&mut header(tar::EntryType::Symlink, 0o777, 0), format!("opt/e{d}/sym{f}"), format!("g{f}")).unwrap();
            }
        }
    }
    out.push(b.into_inner().unwrap());
    out
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

fn write_layout(dir: &Path, layers: &[Vec<u8>]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = sha256(data);
        std::fs::write(blobs.join(&d[7..]), data).unwrap();
        d
    };
    let mut descs = Vec::new();
    let mut ids = Vec::new();
    for l in layers {
        ids.push(sha256(l));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(l).unwrap();
        let gz = gz.finish().unwrap();
        descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(&gz), "size": gz.len()}));
    }
    let arch = if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" };
    let config = serde_json::to_vec(&serde_json::json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": ids}})).unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(&config), "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(&manifest), "size": manifest.len(),
        "annotations": {"io.containerd.image.name": "bench:1", "org.opencontainers.image.ref.name": "bench"}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo bench --list
    }
    let berth = std::env::var_os("BERTH_BIN").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/berth")
    });
    let runs = std::env::var("BENCH_RUNS").unwrap_or_else(|_| "5".into());
    let td = match std::env::var_os("BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    println!("working in {}", td.path().display());
    let layers = layers();
    let entries: usize = layers.iter().map(|l| tar::Archive::new(l.as_slice()).entries().unwrap().count()).sum();
    let bytes: usize = layers.iter().map(Vec::len).sum();
    let layout = td.path().join("layout");
    write_layout(&layout, &layers);
    println!("image: {} layers, {entries} entries, {:.1} MiB uncompressed", layers.len(), bytes as f64 / (1 << 20) as f64);

    let root = td.path().join("berth");
    let content = berth_content::ContentStore::open(&root).unwrap();
    let images = berth_content::ImageStore::open(&content);
    let rec = berth_content::import(&content, &images, &layout, &Default::default()).unwrap().remove(0);
    let image = berth_content::resolve_image(&content, &rec.target, &berth_content::Platform::host()).unwrap();

    // In-process: the library alone.
    let mut times = Vec::new();
    for i in 0..3 {
        let dest = td.path().join(format!("lib{i}"));
        std::fs::create_dir(&dest).unwrap();
        let start = Instant::now();
        for (layer, diff_id) in image.manifest.layers().iter().zip(image.diff_ids()) {
            let blob = content.open_blob(&layer.digest().to_string()).unwrap();
            berth_unpack::apply_layer(&dest, blob, Some(diff_id), &Default::default()).unwrap();
        }
        times.push(start.elapsed().as_secs_f64());
        std::fs::remove_dir_all(&dest).unwrap();
    }
    times.sort_by(f64::total_cmp);
    println!("berth-unpack library (in-process, median of 3): {:.3} s", times[1]);

    if !berth.is_file() {
        println!("skipped the CLI comparison: {} missing (cargo build --release -p berth-host)", berth.display());
        return;
    }
    if Command::new("umoci").arg("--version").output().is_err() || Command::new("hyperfine").arg("--version").output().is_err() {
        println!("skipped the CLI comparison: umoci or hyperfine missing");
        return;
    }
    let d = td.path().join("dest");
    let b = td.path().join("bundle");
    let berth_cmd = format!("{} --root {} image unpack bench:1 --dest {}", berth.display(), root.display(), d.display());
    let umoci_cmd = format!("umoci unpack --image {}:bench {}", layout.display(), b.display());
    let json = td.path().join("hyperfine.json");
    let status = Command::new("hyperfine")
        .args(["--warmup", "1", "--runs", &runs, "--style", "basic", "--export-json"])
        .arg(&json)
        .arg("--prepare")
        .arg(format!("rm -rf {} {}; sync", d.display(), b.display()))
        .args(["-n", "berth image unpack", &berth_cmd, "-n", "umoci unpack", &umoci_cmd])
        .status()
        .unwrap();
    assert!(status.success());
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let mean = |i: usize| results["results"][i]["mean"].as_f64().unwrap();
    println!("berth {:.3} s, umoci {:.3} s: berth is {:.2}x faster", mean(0), mean(1), mean(1) / mean(0));
}
