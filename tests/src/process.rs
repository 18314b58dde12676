//! Processes the tests start: stopping them by pid (SIGTERM, then SIGKILL
//! after a timeout), and finding the containerd shims a daemon left behind.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use sha2::Digest as _;

/// SIGTERM, wait up to `grace`, then SIGKILL; reaps the child.
pub fn stop_child(child: &mut Child, grace: Duration) -> anyhow::Result<()> {
    if child.try_wait()?.is_some() {
        return Ok(());
    }
    signal(child.id(), Signal::TERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill()?;
    child.wait()?;
    Ok(())
}

fn signal(pid: u32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(pid as i32) {
        // ESRCH: already gone, which is what we want.
        kill_process(pid, signal).ok();
    }
}

/// Waits until `socket` accepts connections; fails early when `child`
/// exits first, and after `timeout`. `logs` says what to show with the error.
pub fn wait_for_socket(socket: &Path, child: &mut Child, timeout: Duration, logs: impl Fn() -> String) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("exited ({status}) before serving {}:\n{}", socket.display(), logs());
        }
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("did not serve {} within {timeout:?}:\n{}", socket.display(), logs());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A process's argv, or None when it is gone or unreadable.
fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(raw.split(|b| *b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect())
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|dir| dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(String::as_str)
}

/// A shim of the containerd at `address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shim {
    pub pid: u32,
    pub namespace: Option<String>,
    pub id: Option<String>,
}

/// The `containerd-shim*` processes started by the containerd at `address`
/// (their command line carries `-address <address>`).
pub fn shims_of(address: &Path) -> Vec<Shim> {
    let address = address.to_string_lossy();
    all_pids()
        .into_iter()
        .filter_map(|pid| {
            let args = cmdline(pid)?;
            let program = Path::new(args.first()?).file_name()?.to_string_lossy().into_owned();
            if !program.starts_with("containerd-shim") || flag_value(&args, "-address") != Some(&*address) {
                return None;
            }
            let namespace = flag_value(&args, "-namespace").map(str::to_string);
            let id = flag_value(&args, "-id").map(str::to_string);
            Some(Shim { pid, namespace, id })
        })
        .collect()
}

/// SIGKILLs the shims of `address` and the container processes they parent,
/// and removes the sockets containerd 1.6 derives for them under
/// /run/containerd/s (a killed shim leaves its socket behind).
pub fn kill_shims(address: &Path) -> Vec<Shim> {
    let shims = shims_of(address);
    for shim in &shims {
        for child in all_pids().into_iter().filter(|pid| parent_of(*pid) == Some(shim.pid)) {
            signal(child, Signal::KILL);
        }
        signal(shim.pid, Signal::KILL);
        if let (Some(namespace), Some(id)) = (&shim.namespace, &shim.id) {
            let key = Path::new(address).join(namespace).join(id);
            let hash = hex::encode(sha2::Sha256::digest(key.to_string_lossy().as_bytes()));
            let socket = Path::new("/run/containerd/s").join(hash);
            std::fs::remove_file(socket).ok();
        }
    }
    shims
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_for_socket_fails_early_when_the_process_exits() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("never.sock");
        let mut child = std::process::Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
        let err = wait_for_socket(&socket, &mut child, Duration::from_secs(60), || "the log".into()).unwrap_err().to_string();
        assert!(err.contains("exited") && err.contains("the log"), "{err}");

        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let err = wait_for_socket(&socket, &mut child, Duration::from_millis(100), String::new).unwrap_err().to_string();
        assert!(err.contains("did not serve"), "{err}");
        stop_child(&mut child, Duration::from_secs(5)).unwrap();

        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        wait_for_socket(&socket, &mut child, Duration::from_secs(60), String::new).unwrap();
        stop_child(&mut child, Duration::from_secs(5)).unwrap();
        drop(listener);
    }

    #[test]
    fn parent_of_reads_proc_stat() {
        let child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let mut child = child;
        assert_eq!(parent_of(child.id()), Some(std::process::id()));
        stop_child(&mut child, Duration::from_secs(2)).unwrap();
        assert!(cmdline(child.id()).is_none());
    }
}
