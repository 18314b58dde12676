//! `cargo xtask bench-run`: `berth run --rm` of /bin/true through three
//! spec-mutator plugins vs `runc run` and `crun run` of the same busybox
//! rootfs, in one hyperfine run (issue 4's figure; see BENCHMARKS.md).
//!
//! berth's run does the whole path each time: config and plugin loading
//! (from the compile cache), image resolution, snapshot prepare on the
//! unpacked chain, the three plugin calls, the native executor, and removal
//! of the snapshot. runc and crun get a prepared bundle (what berth's path
//! produces before its executor starts), twice: with `runc spec`'s default
//! config.json (no seccomp, fewer cgroup limits), and with the config.json
//! berth's own path assembles (`berth spec` through the same plugins: the
//! seccomp profile, the capabilities, the resources), so the runtimes can
//! be compared on one spec.
//!
//! `BERTH_BENCH_BASELINE=/path/to/an/older/berth` adds that binary's run
//! (same config, root and image; a `berth-init` beside it is its own) to
//! hyperfine and to every interleaved round: an A/B of two builds in the
//! same minutes, against crun in the same rounds.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

pub fn run(root: &Path, runs: u32) -> anyhow::Result<()> {
    for tool in ["hyperfine", "runc", "crun", "unshare"] {
        if !Command::new("sh").args(["-c", &format!("command -v {tool}")]).output()?.status.success() {
            bail!("{tool} is missing (bash .ci/setup installs it)");
        }
    }
    let work = root.join("target/bench-run");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    let image = berth_tests::image::build_busybox_image(&work, "bench/busybox:latest")?;
    let plugins = crate::plugins::output_dir(root);
    let config = work.join("berth.toml");
    let p = |name: &str| plugins.join(format!("{name}.wasm")).display().to_string();
    std::fs::write(
        &config,
        format!(
            "[worker]\nsnapshotter = \"overlayfs\"\n\n\
             [[plugin]]\nname = \"resources\"\nkind = \"spec-mutator\"\npath = \"{}\"\ngrants = [\"resources\"]\n\n\
             [[plugin]]\nname = \"seccomp-default\"\nkind = \"spec-mutator\"\npath = \"{}\"\ngrants = [\"seccomp\", \"no-new-privileges\"]\n\n\
             [[plugin]]\nname = \"nomad-task\"\nkind = \"spec-mutator\"\npath = \"{}\"\ngrants = [\"env\", \"capabilities\"]\n\
             config = {{ env = {{ BENCH = \"1\" }} }}\n",
            p("resources"),
            p("seccomp-default"),
            p("nomad-task")
        ),
    )?;
    let berth = crate::berth_bin(root);
    let state = work.join("root");
    let berth_cmd = |args: &[&str]| {
        let mut command = Command::new(&berth);
        command.arg("--config").arg(&config).arg("--root").arg(&state).args(args);
        command
    };
    crate::run(&mut berth_cmd(&["image", "import", image.layout_tar.to_str().unwrap(), "--name", "bench/busybox:latest"]))?;
    // Warm the plugin compile cache and check the path works once.
    crate::run(&mut berth_cmd(&["run", "--rm", "bench/busybox:latest", "/bin/true"]))?;

    // The same rootfs as a bundle for runc and crun.
    let bundle = work.join("bundle");
    std::fs::create_dir_all(&bundle)?;
    crate::run(&mut berth_cmd(&["image", "unpack", "bench/busybox:latest", "--dest", bundle.join("rootfs").to_str().unwrap()]))?;
    crate::run(Command::new("runc").arg("spec").current_dir(&bundle))?;
    let spec_path = bundle.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&spec_path)?)?;
    spec["process"]["args"] = serde_json::json!(["/bin/true"]);
    spec["process"]["terminal"] = serde_json::json!(false);
    std::fs::write(&spec_path, serde_json::to_vec_pretty(&spec)?)?;
    // The same rootfs with the spec berth's run assembles.
    let same = work.join("bundle-berth-spec");
    std::fs::create_dir_all(&same)?;
    let same_spec = same.join("config.json");
    crate::run(&mut berth_cmd(&[
        "spec",
        "--image",
        "bench/busybox:latest",
        "--namespace",
        "berth",
        "--rootfs",
        bundle.join("rootfs").to_str().unwrap(),
        "-o",
        same_spec.to_str().unwrap(),
        "--",
        "/bin/true",
    ]))?;
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&same_spec)?)?;
    if spec["linux"]["seccomp"].is_null() {
        bail!("berth spec made no seccomp profile: the benchmark's plugins did not run");
    }
    spec["process"]["terminal"] = serde_json::json!(false);
    std::fs::write(&same_spec, serde_json::to_vec_pretty(&spec)?)?;

    let result = work.join("result.md");
    let q = |p: &Path| p.display().to_string();
    // crun 1.8 refuses a hybrid cgroup layout: all three run in a mount
    // namespace where the empty cgroup2 tree is detached.
    //
    // hyperfine runs each command's runs in turn, so a change of load in
    // between (another build starting) lands on one command only. After it,
    // the same commands run interleaved (berth, runc, crun, berth, ...) for
    // as many rounds, timed with bash's $EPOCHREALTIME (no fork), and the
    // medians are printed beside hyperfine's table.
    let samples = work.join("interleaved.txt");
    let berth_run_with = |binary: &Path| format!("{} --config {} --root {} run --rm bench/busybox:latest /bin/true", q(binary), q(&config), q(&state));
    let berth_run = berth_run_with(&berth);
    let runc_run = format!("runc --root {}/runc run --bundle {} bench-runc", q(&work), q(&bundle));
    let crun_run = format!("crun --root {}/crun run --bundle {} bench-crun", q(&work), q(&bundle));
    let runc_same = format!("runc --root {}/runc run --bundle {} bench-runc-same", q(&work), q(&same));
    let crun_same = format!("crun --root {}/crun run --bundle {} bench-crun-same", q(&work), q(&same));
    let baseline = std::env::var_os("BERTH_BENCH_BASELINE").map(std::path::PathBuf::from);
    let (base_hf, base_name, base_case) = match &baseline {
        Some(b) => {
            let cmd = berth_run_with(b);
            (format!(" -n 'berth baseline' '{cmd}'"), " berth-base", format!(" berth-base) cmd='{cmd}';;"))
        }
        None => (String::new(), "", String::new()),
    };
    let script = format!(
        "umount -l /sys/fs/cgroup/unified 2>/dev/null || true; cd {bundle} && \
         hyperfine -N --warmup 5 --runs {runs} --export-markdown {result} \
         -n 'berth run --rm (3 plugins)' '{berth_run}' -n 'runc run' '{runc_run}' -n 'crun run' '{crun_run}' \
         -n 'runc run (berth spec)' '{runc_same}' -n 'crun run (berth spec)' '{crun_same}'{base_hf} && \
         for i in $(seq {runs}); do \
           for c in berth runc crun runc-same crun-same{base_name}; do \
             case $c in berth) cmd='{berth_run}';; runc) cmd='{runc_run}';; crun) cmd='{crun_run}';; \
               runc-same) cmd='{runc_same}';; crun-same) cmd='{crun_same}';;{base_case} esac; \
             t0=$EPOCHREALTIME; $cmd >/dev/null || exit 1; t1=$EPOCHREALTIME; echo \"$c $t0 $t1\" >> {samples}; \
           done; \
         done",
        bundle = q(&bundle),
        result = q(&result),
        samples = q(&samples),
    );
    // The figures depend on what else runs (shared CI machines): the load
    // average before and after is part of the result.
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    let load_before = load();
    crate::run(Command::new("unshare").args(["-m", "--propagation", "private", "bash", "-c", &script]))?;
    let load_after = load();
    let table = std::fs::read_to_string(&result).with_context(|| format!("reading {}", result.display()))?;
    println!("{table}");
    let medians = interleaved_medians(&std::fs::read_to_string(&samples).with_context(|| format!("reading {}", samples.display()))?);
    let median = |name: &str| medians.iter().find(|(n, _)| n == name).map_or(f64::NAN, |(_, m)| *m);
    println!(
        "interleaved ({runs} rounds), median ms: berth {:.1}, runc {:.1}, crun {:.1}; berth / crun = {:.2}",
        median("berth"),
        median("runc"),
        median("crun"),
        median("berth") / median("crun")
    );
    println!(
        "on berth's spec: runc {:.1}, crun {:.1}; berth / crun = {:.2}",
        median("runc-same"),
        median("crun-same"),
        median("berth") / median("crun-same")
    );
    if let Some(b) = &baseline {
        println!(
            "baseline {}: median {:.1} ms; berth / baseline = {:.3}; baseline / crun on berth's spec = {:.2}",
            b.display(),
            median("berth-base"),
            median("berth") / median("berth-base"),
            median("berth-base") / median("crun-same")
        );
    }
    println!("load average (1, 5, 15 min) before: {load_before}; after: {load_after}; {} CPUs", std::thread::available_parallelism().map_or(0, |n| n.get()));
    Ok(())
}

/// `name start end` lines (seconds, as $EPOCHREALTIME) -> each name's median
/// duration in milliseconds.
fn interleaved_medians(samples: &str) -> Vec<(String, f64)> {
    let mut by_name: Vec<(String, Vec<f64>)> = Vec::new();
    for line in samples.lines() {
        let mut fields = line.split_whitespace();
        let (Some(name), Some(start), Some(end)) = (fields.next(), fields.next(), fields.next()) else { continue };
        let (Ok(start), Ok(end)) = (start.parse::<f64>(), end.parse::<f64>()) else { continue };
        let ms = (end - start) * 1000.0;
        match by_name.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => v.push(ms),
            None => by_name.push((name.to_string(), vec![ms])),
        }
    }
    by_name
        .into_iter()
        .map(|(name, mut v)| {
            v.sort_by(f64::total_cmp);
            let n = v.len();
            let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
            (name, median)
        })
        .collect()
}
