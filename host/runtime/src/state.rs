//! Per-container state under the runtime root: `<root>/<id>/state.json`
//! (written atomically), the exec fifo, and the recorded exit status.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use oci_spec::runtime::{ContainerState, Spec, State, StateBuilder};
use serde::{Deserialize, Serialize};

use crate::{Error, ExitStatus, Result, sys};

pub const STATE_FILE: &str = "state.json";
pub const FIFO: &str = "exec.fifo";
pub const EXIT_FILE: &str = "exit.json";

/// What the runtime remembers about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub pid: i32,
    /// /proc/PID/stat start time: a recycled pid is not our container.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub cgroup: PathBuf,
    pub created: u64,
    pub spec: Spec,
    /// Host-side mounts to undo on delete (rootfs mounted outside the container's namespace).
    #[serde(default)]
    pub host_mounts: Vec<PathBuf>,
}

pub fn dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

pub fn save(root: &Path, rec: &Record) -> Result<()> {
    let d = dir(root, &rec.id);
    let tmp = d.join(".state.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(rec).context("encode state")?)
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, d.join(STATE_FILE)).with_context(|| format!("rename into {}", d.display()))?;
    Ok(())
}

pub fn load(root: &Path, id: &str) -> Result<Record> {
    crate::validate_id(id)?;
    let path = dir(root, id).join(STATE_FILE);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NotFound(id.to_string())),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("read {}", path.display())).into()),
    };
    Ok(serde_json::from_slice(&data).with_context(|| format!("decode {}", path.display()))?)
}

pub fn save_exit(root: &Path, id: &str, status: ExitStatus) {
    let _ = std::fs::write(dir(root, id).join(EXIT_FILE), serde_json::to_vec(&status).unwrap_or_default());
}

pub fn load_exit(root: &Path, id: &str) -> Option<ExitStatus> {
    serde_json::from_slice(&std::fs::read(dir(root, id).join(EXIT_FILE)).ok()?).ok()
}

/// Is the recorded init still the same live process?
pub fn alive(rec: &Record) -> bool {
    rec.pid > 0 && sys::pid_alive(rec.pid) && sys::pid_start_time(rec.pid) == Some(rec.start_time)
}

pub fn status(root: &Path, rec: &Record) -> ContainerState {
    if !alive(rec) {
        ContainerState::Stopped
    } else if dir(root, &rec.id).join(FIFO).exists() {
        ContainerState::Created
    } else {
        ContainerState::Running
    }
}

/// The OCI state document.
pub fn oci_state(rec: &Record, status: ContainerState) -> State {
    let annotations: HashMap<String, String> = rec.spec.annotations().clone().unwrap_or_default();
    let mut b = StateBuilder::default()
        .version("1.0.2")
        .id(rec.id.clone())
        .status(status)
        .bundle(rec.bundle.clone())
        .annotations(annotations);
    if status != ContainerState::Stopped && rec.pid > 0 {
        b = b.pid(rec.pid);
    }
    b.build().expect("state fields are all set")
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
