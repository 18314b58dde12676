//! OCI mount entries -> mount(2) arguments. Pure: unit-tested without root.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One mount as mount(2) wants it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPlan {
    pub destination: PathBuf,
    pub fstype: String,
    pub source: Option<String>,
    /// Flags for the first mount call (and, for binds, the remount).
    pub flags: libc::c_ulong,
    /// `MS_SHARED`/`MS_SLAVE`/`MS_PRIVATE`/`MS_UNBINDABLE` (| `MS_REC`), applied after.
    pub propagation: libc::c_ulong,
    /// Filesystem-specific options (`mode=755,size=65536k`).
    pub data: String,
    pub bind: bool,
    pub recursive: bool,
}

/// The rootfs propagation flags for a `rootfsPropagation` value (default: rprivate).
pub fn propagation_flags(name: Option<&str>) -> anyhow::Result<libc::c_ulong> {
    Ok(match name.unwrap_or("rprivate") {
        "" | "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "private" => libc::MS_PRIVATE,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "shared" => libc::MS_SHARED,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        other => anyhow::bail!("unknown rootfs propagation {other:?}"),
    })
}

/// Parses a mount's options into flags, propagation and data.
pub fn plan(m: &oci_spec::runtime::Mount) -> anyhow::Result<MountPlan> {
    let mut flags: libc::c_ulong = 0;
    let mut propagation: libc::c_ulong = 0;
    let mut data = Vec::new();
    let mut bind = false;
    let mut recursive = false;
    let fstype = m.typ().clone().unwrap_or_default();
    for opt in m.options().iter().flatten() {
        let (set, clear): (libc::c_ulong, libc::c_ulong) = match opt.as_str() {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "remount" => (libc::MS_REMOUNT, 0),
            "mand" => (libc::MS_MANDLOCK, 0),
            "nomand" => (0, libc::MS_MANDLOCK),
            "atime" => (0, libc::MS_NOATIME),
            "noatime" => (libc::MS_NOATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME),
            "bind" => {
                bind = true;
                (0, 0)
            }
            "rbind" => {
                bind = true;
                recursive = true;
                (0, 0)
            }
            p @ ("private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared" | "unbindable"
            | "runbindable") => {
                propagation = propagation_flags(Some(p))?;
                (0, 0)
            }
            // Accepted and without effect here (as in runc): copy-up and
            // recursive-attribute hints.
            "tmpcopyup" | "rro" | "rrw" | "rnosuid" | "rnodev" | "rnoexec" => (0, 0),
            "idmap" | "ridmap" => anyhow::bail!(
                "mount {}: idmapped mounts are not supported",
                m.destination().display()
            ),
            other => {
                data.push(other.to_string());
                (0, 0)
            }
        };
        flags = (flags | set) & !clear;
    }
    if fstype == "bind" {
        bind = true;
    }
    Ok(MountPlan {
        destination: m.destination().clone(),
        fstype,
        source: m.source().as_ref().map(|s| s.to_string_lossy().into_owned()),
        flags,
        propagation,
        data: data.join(","),
        bind,
        recursive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::MountBuilder;

    fn m(dest: &str, typ: &str, src: &str, opts: &[&str]) -> oci_spec::runtime::Mount {
        MountBuilder::default()
            .destination(dest)
            .typ(typ)
            .source(src)
            .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .build()
            .unwrap()
    }

    #[test]
    fn tmpfs_flags_and_data() {
        let p = plan(&m("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]))
            .unwrap();
        assert_eq!(p.flags, libc::MS_NOSUID | libc::MS_STRICTATIME);
        assert_eq!(p.data, "mode=755,size=65536k");
        assert!(!p.bind);
    }

    #[test]
    fn rbind_ro_with_propagation() {
        let p = plan(&m("/data", "none", "/srv", &["rbind", "ro", "rslave"])).unwrap();
        assert!(p.bind && p.recursive);
        assert_eq!(p.flags, libc::MS_RDONLY);
        assert_eq!(p.propagation, libc::MS_SLAVE | libc::MS_REC);
    }

    #[test]
    fn later_options_override_earlier_ones() {
        let p = plan(&m("/x", "bind", "/y", &["ro", "rw", "nosuid"])).unwrap();
        assert!(p.bind);
        assert_eq!(p.flags, libc::MS_NOSUID);
    }

    #[test]
    fn idmap_is_refused_with_the_destination() {
        let err = plan(&m("/x", "bind", "/y", &["idmap"])).unwrap_err();
        assert!(err.to_string().contains("/x"));
    }

    #[test]
    fn rootfs_propagation_defaults_to_rprivate() {
        assert_eq!(propagation_flags(None).unwrap(), libc::MS_PRIVATE | libc::MS_REC);
        assert!(propagation_flags(Some("sideways")).is_err());
    }
}
