//! OCI hooks: run with the container's state JSON on stdin, a timeout each.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::Hook;

/// Runs `hooks` in order; the first failure stops and names the hook and stage.
pub fn run(hooks: &[Hook], state_json: &str, stage: &str) -> Result<()> {
    for h in hooks {
        run_one(h, state_json).with_context(|| format!("{stage} hook {}", h.path().display()))?;
    }
    Ok(())
}

fn run_one(h: &Hook, state_json: &str) -> Result<()> {
    let mut cmd = Command::new(h.path());
    if let Some((arg0, rest)) = h.args().as_deref().and_then(|a| a.split_first()) {
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear();
    for kv in h.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().context("spawn")?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine.
        let _ = stdin.write_all(state_json.as_bytes());
    }
    let deadline = h.timeout().filter(|t| *t > 0).map(|t| Instant::now() + Duration::from_secs(t as u64));
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            bail!("{status}: {}", err.trim());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out after {}s", h.timeout().unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: &str) -> Hook {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn state_arrives_on_stdin_and_failures_name_the_hook() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("state");
        let ok = hook(&format!(r#"{{"path":"/bin/sh","args":["sh","-c","cat > {}"]}}"#, out.display()));
        run(&[ok], r#"{"id":"c1"}"#, "prestart").unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), r#"{"id":"c1"}"#);
        let bad = hook(r#"{"path":"/bin/sh","args":["sh","-c","echo nope >&2; exit 3"]}"#);
        let err = format!("{:#}", run(&[bad], "{}", "poststop").unwrap_err());
        assert!(err.contains("poststop hook /bin/sh") && err.contains("nope"), "{err}");
    }

    #[test]
    fn a_hook_past_its_timeout_is_killed() {
        let slow = hook(r#"{"path":"/bin/sleep","args":["sleep","30"],"timeout":1}"#);
        assert!(format!("{:#}", run(&[slow], "{}", "prestart").unwrap_err()).contains("timed out"));
    }
}
