//! `berth image pull` shows progress bars on a terminal and one plain line
//! per event otherwise: the same pull from a docker-registry on 127.0.0.1
//! (through the hosts-resolver plugin) once under a pseudo-terminal
//! (`script`) and once into a pipe.

use std::path::Path;
use std::process::Command;

mod common;

use common::{BERTH, Registry, busybox_layout, plugin};

fn skip_reason() -> Option<String> {
    common::missing(&[
        &plugin("hosts-resolver"),
        Path::new("/usr/bin/docker-registry"),
        Path::new("/usr/bin/skopeo"),
        Path::new("/usr/bin/script"),
        Path::new(common::BUSYBOX),
    ])
}

#[test]
fn bars_on_a_terminal_lines_otherwise() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIP: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(&dir.path().join("registry"));
    let (layout, _) = busybox_layout(dir.path(), &["sh"]);
    registry.push(&layout, "test/progress:v1");
    let image = format!("{}/test/progress:v1", registry.host());
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "[[plugin]]\nname = \"hosts-resolver\"\npath = \"{}\"\nkind = \"source-resolver\"\n[plugin.config.\"{host}\"]\nserver = \"http://{host}\"\n",
            plugin("hosts-resolver").display(),
            host = registry.host()
        ),
    )
    .unwrap();
    let pull = |root: &str| {
        format!(
            "{BERTH} --root {} --config {} image pull {image}",
            dir.path().join(root).display(),
            config.display()
        )
    };
    // The layer as the registry serves it (skopeo may recompress on push).
    let layer_line = |text: &str, what: &str| text.lines().any(|l| l.contains("layer sha256:") && l.contains(what));

    // A pipe: plain lines, no terminal control sequences.
    let out = Command::new("sh").arg("-c").arg(pull("root-pipe")).output().unwrap();
    let lines = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "pull into a pipe failed: {lines}");
    assert!(layer_line(&lines, ": downloading "), "{lines}");
    assert!(layer_line(&lines, ": done ("), "{lines}");
    assert!(!lines.contains('\u{1b}'), "escape sequences in plain output: {lines:?}");

    // A terminal: indicatif bars (drawn with `[=...]` and cursor control),
    // no per-event lines.
    let out = Command::new("/usr/bin/script")
        .args(["-qefc", &pull("root-tty"), "/dev/null"])
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "pull on a terminal failed: {screen}");
    assert!(screen.contains('\u{1b}'), "no terminal drawing: {screen:?}");
    assert!(screen.contains("layer sha256:") && screen.contains(" done"), "{screen:?}");
    assert!(screen.contains("[=") || screen.contains("=]"), "no bar: {screen:?}");
    assert!(!screen.contains(": downloading"), "plain lines on a terminal: {screen:?}");
}
