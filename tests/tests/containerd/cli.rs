//! `berth run|ps|logs|rm --backend containerd`: the `berth` binary against
//! the module's containerd, with a spec-mutator plugin in the chain.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, ensure};
use berth_tests::cases::unique_id;
use berth_tests::containerd_backend::berth_cli;

use crate::IMAGE_NAME;
use crate::module::{Module, ModuleTrial};

pub fn trials() -> Vec<(&'static str, ModuleTrial)> {
    vec![
        ("cli::run_through_a_plugin", ModuleTrial::WithDaemon(run_through_a_plugin)),
        ("cli::image_from_berths_store", ModuleTrial::WithDaemon(image_from_berths_store)),
        ("cli::detached_logs_ps_rm", ModuleTrial::WithDaemon(detached_logs_ps_rm)),
        ("cli::exec_into_a_running_task", ModuleTrial::WithDaemon(exec_into_a_running_task)),
        ("cli::dead_socket_is_named", ModuleTrial::Standalone(dead_socket_is_named)),
    ]
}

/// The built nomad-task plugin (`cargo xtask build-plugins`).
fn nomad_task_plugin() -> Result<PathBuf> {
    let dir = std::env::var_os("BERTH_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/plugin"));
    let path = dir.join("nomad-task.wasm");
    ensure!(path.is_file(), "{} is missing: run `cargo xtask build-plugins` first", path.display());
    Ok(path)
}

/// A berth.toml loading nomad-task, which sets an env var and drops CAP_NET_RAW.
fn config(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("berth.toml");
    std::fs::write(
        &path,
        format!(
            "[[plugin]]\nname = \"nomad-task\"\nkind = \"spec-mutator\"\npath = \"{}\"\ngrants = [\"env\", \"capabilities\"]\n\
             config = {{ env = {{ FROM_PLUGIN = \"nomad-task\" }}, cap_drop = [\"CAP_NET_RAW\"] }}\n",
            nomad_task_plugin()?.display()
        ),
    )?;
    Ok(path)
}

fn berth(module: &Module, dir: &Path, args: &[&str]) -> Result<Output> {
    let mut command = Command::new(berth_cli());
    command
        .arg("--config")
        .arg(config(dir)?)
        .arg("--root")
        .arg(dir.join("root"))
        .arg(args[0])
        // Before the image: everything after it is the container's command.
        .args(["--backend", "containerd", "--address"])
        .arg(module.daemon().address())
        .args(["--namespace", berth_tests::containerd_backend::NAMESPACE])
        .args(&args[1..]);
    command.output().with_context(|| format!("running {command:?}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run_through_a_plugin(module: &Module) -> Result<()> {
    let dir = module.scratch_dir("cli-run")?;
    let id = unique_id("cli-run");
    let script = "echo \"$FROM_PLUGIN\"; grep CapEff /proc/self/status; exit 7";
    let out = berth(module, &dir, &["run", "--rm", "--name", &id, IMAGE_NAME, "sh", "-c", script])?;
    let stdout = text(&out.stdout);
    ensure!(out.status.code() == Some(7), "exit status {:?}; stderr {}", out.status, text(&out.stderr));
    ensure!(stdout.starts_with("nomad-task\n"), "the plugin's env var is missing: {stdout:?}");
    let hex = stdout.split_whitespace().nth(2).with_context(|| format!("no CapEff in {stdout:?}"))?;
    let caps = u64::from_str_radix(hex, 16)?;
    ensure!(caps & (1 << 13) == 0, "CAP_NET_RAW was not dropped by the plugin: CapEff {hex}");
    ensure!(caps & 1 != 0, "CAP_CHOWN missing: CapEff {hex}");
    // --rm: containerd no longer knows the container.
    let listed = module.block_on(module.client.list())?;
    ensure!(!listed.iter().any(|c| c.id == id), "{id} still exists after --rm");
    Ok(())
}

/// An image containerd lacks but berth's store has is exported into containerd.
fn image_from_berths_store(module: &Module) -> Result<()> {
    let dir = module.scratch_dir("cli-store")?;
    let name = format!("docker.io/berth-test/from-store:{}", unique_id("tag"));
    let mut import = Command::new(berth_cli());
    import.arg("--root").arg(dir.join("root")).args(["image", "import", "--no-unpack", "--name", &name]).arg(&module.image.layout_tar);
    let out = import.output()?;
    ensure!(out.status.success(), "berth image import: {}", text(&out.stderr));
    let out = berth(module, &dir, &["run", "--rm", &name, "echo", "exported"])?;
    ensure!(out.status.success(), "run: {:?} {}", out.status, text(&out.stderr));
    ensure!(text(&out.stdout) == "exported\n", "stdout {:?}", text(&out.stdout));
    module.block_on(module.client.ensure_image(&name)).context("containerd should now have the image")?;
    Ok(())
}

fn detached_logs_ps_rm(module: &Module) -> Result<()> {
    let dir = module.scratch_dir("cli-detached")?;
    let id = unique_id("cli-detached");
    let out = berth(module, &dir, &["run", "-d", "--name", &id, IMAGE_NAME, "sh", "-c", "echo out; echo err >&2"])?;
    ensure!(out.status.success(), "run -d: {}", text(&out.stderr));
    ensure!(text(&out.stdout).trim() == id, "run -d printed {:?}", text(&out.stdout));
    // The container exits by itself; ps shows it until rm.
    let mut exited = false;
    for _ in 0..100 {
        let ps = berth(module, &dir, &["ps"])?;
        let line = text(&ps.stdout).lines().find(|l| l.starts_with(&id)).map(str::to_string);
        ensure!(line.is_some(), "ps does not list {id}: {}", text(&ps.stdout));
        if line.is_some_and(|l| l.contains("exited(0)")) {
            exited = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    ensure!(exited, "{id} did not exit");
    let logs = berth(module, &dir, &["logs", &id])?;
    let logged = text(&logs.stdout);
    ensure!(logged.contains("out\n") && logged.contains("err\n"), "logs {logged:?} / {}", text(&logs.stderr));
    let rm = berth(module, &dir, &["rm", &id])?;
    ensure!(rm.status.success(), "rm: {}", text(&rm.stderr));
    let ps = berth(module, &dir, &["ps", "-q"])?;
    ensure!(!text(&ps.stdout).lines().any(|l| l == id), "{id} listed after rm");
    Ok(())
}

/// `berth exec --backend containerd`: the task's filesystem and the env its
/// plugins gave it, flags on top, the exit code passed through.
fn exec_into_a_running_task(module: &Module) -> Result<()> {
    let dir = module.scratch_dir("cli-exec")?;
    let id = unique_id("cli-exec");
    let script = "echo mark > /tmp/mark; exec sleep 300";
    let out = berth(module, &dir, &["run", "-d", "--name", &id, IMAGE_NAME, "sh", "-c", script])?;
    ensure!(out.status.success(), "run -d: {}", text(&out.stderr));
    let result = (|| -> Result<()> {
        let probe = "cat /tmp/mark && echo \"$FROM_PLUGIN $EXTRA\" && exit 5";
        let mut last = None;
        for _ in 0..100 {
            let out = berth(module, &dir, &["exec", "-e", "EXTRA=x1", &id, "sh", "-c", probe])?;
            if out.status.code() == Some(5) {
                last = Some(out);
                break;
            }
            // Not running yet, or the mark not written yet.
            last = Some(out);
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let out = last.context("no exec ran")?;
        let stdout = text(&out.stdout);
        ensure!(out.status.code() == Some(5), "exec: {} {stdout} {}", out.status, text(&out.stderr));
        ensure!(stdout == "mark\nnomad-task x1\n", "exec did not see the task's filesystem and env: {stdout:?}");
        Ok(())
    })();
    let rm = berth(module, &dir, &["rm", "-f", &id])?;
    result?;
    ensure!(rm.status.success(), "rm -f: {}", text(&rm.stderr));
    Ok(())
}

fn dead_socket_is_named() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("nobody.sock");
    let out = Command::new(berth_cli())
        .arg("--root")
        .arg(dir.path().join("root"))
        .args(["run", "--backend", "containerd", "--address"])
        .arg(&socket)
        .args(["busybox", "true"])
        .output()?;
    ensure!(!out.status.success(), "run against a missing socket succeeded");
    let stderr = text(&out.stderr);
    ensure!(stderr.contains(&socket.display().to_string()), "the error does not name the socket: {stderr}");
    Ok(())
}
