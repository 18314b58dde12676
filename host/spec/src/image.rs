//! Image config -> process, like containerd's `WithImageConfigArgs`, and the
//! user resolution of `WithUser` / `WithAdditionalGIDs` against an image's
//! /etc/passwd and /etc/group.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::defaults::DEFAULT_PATH_ENV;
use crate::view::ImageConfigView;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image config: {0}")]
    InvalidConfig(String),
    #[error("invalid USER value {0:?}")]
    InvalidUser(String),
    #[error("user {user:?} is a name: resolving it needs the image's rootfs (pass --rootfs)")]
    NeedsRootfs { user: String },
    #[error("no user {name:?} in {rootfs}/etc/passwd")]
    NoSuchUser { name: String, rootfs: PathBuf },
    #[error("no group {name:?} in {rootfs}/etc/group")]
    NoSuchGroup { name: String, rootfs: PathBuf },
    #[error("cannot read {file} in rootfs {rootfs}: {source}")]
    Read {
        file: &'static str,
        rootfs: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Parses an image config file: either a whole OCI/Docker image config
/// (`{"architecture":…, "config": {…}, "rootfs": …}`) or its `config` object
/// alone.
pub fn parse_image_config(text: &str) -> Result<ImageConfigView, ImageError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| ImageError::InvalidConfig(e.to_string()))?;
    let object = value.as_object().ok_or_else(|| ImageError::InvalidConfig("not a JSON object".into()))?;
    let whole = ["config", "rootfs", "architecture", "os"].iter().any(|k| object.contains_key(*k));
    let config = if whole { object.get("config").cloned().unwrap_or(serde_json::Value::Null) } else { value };
    if config.is_null() {
        return Ok(ImageConfigView::default());
    }
    let config: oci_spec::image::Config =
        serde_json::from_value(config).map_err(|e| ImageError::InvalidConfig(e.to_string()))?;
    Ok(view_of_config(&config))
}

/// The plugin-facing view of an oci-spec image `Config`.
pub fn view_of_config(config: &oci_spec::image::Config) -> ImageConfigView {
    let mut labels: Vec<(String, String)> = config.labels().clone().unwrap_or_default().into_iter().collect();
    labels.sort();
    let mut exposed_ports = config.exposed_ports().clone().unwrap_or_default();
    exposed_ports.sort();
    let mut volumes = config.volumes().clone().unwrap_or_default();
    volumes.sort();
    ImageConfigView {
        user: config.user().clone().filter(|u| !u.is_empty()),
        env: config.env().clone().unwrap_or_default(),
        entrypoint: config.entrypoint().clone().unwrap_or_default(),
        cmd: config.cmd().clone().unwrap_or_default(),
        working_dir: config.working_dir().clone().filter(|w| !w.is_empty()),
        labels,
        stop_signal: config.stop_signal().clone(),
        exposed_ports,
        volumes,
    }
}

/// containerd's `replaceOrAppendEnvValues`: `overrides` replace entries of
/// `defaults` with the same key or are appended; an override without `=`
/// removes the key.
pub fn replace_or_append_env(defaults: &[String], overrides: &[String]) -> Vec<String> {
    let key = |e: &str| e.split_once('=').map(|(k, _)| k.to_string()).unwrap_or_else(|| e.to_string());
    let mut results: Vec<Option<String>> = defaults.iter().cloned().map(Some).collect();
    for value in overrides {
        if !value.contains('=') {
            for slot in results.iter_mut() {
                if slot.as_deref().map(key).as_deref() == Some(value.as_str()) {
                    *slot = None;
                }
            }
            continue;
        }
        let k = key(value);
        match results.iter_mut().find(|slot| slot.as_deref().map(key).as_deref() == Some(k.as_str())) {
            Some(slot) => *slot = Some(value.clone()),
            None => results.push(Some(value.clone())),
        }
    }
    results.into_iter().flatten().collect()
}

/// The resolved identity of the process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// An /etc/passwd entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

/// An /etc/group entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            Some(PasswdEntry {
                name: fields.first()?.to_string(),
                uid: fields.get(2)?.parse().ok()?,
                gid: fields.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            Some(GroupEntry {
                name: fields.first()?.to_string(),
                gid: fields.get(2)?.parse().ok()?,
                members: fields
                    .get(3)
                    .map(|m| m.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Reads `file` (e.g. `etc/passwd`) inside `rootfs`, resolving every path
/// component (symlinks included) as if `rootfs` were `/`: an image's
/// symlink cannot make berth read a host file. `None` when it does not exist.
fn read_in_root(rootfs: &Path, file: &'static str) -> Result<Option<String>, ImageError> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let err = |source: std::io::Error| ImageError::Read { file, rootfs: rootfs.to_path_buf(), source };
    let root: OwnedFd = rustix::fs::open(rootfs, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| err(e.into()))?;
    let fd = match rustix::fs::openat2(
        &root,
        file,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) => return Ok(None),
        Err(e) => return Err(err(e.into())),
    };
    let mut text = String::new();
    std::fs::File::from(fd).take(16 << 20).read_to_string(&mut text).map_err(err)?;
    Ok(Some(text))
}

struct Accounts {
    rootfs: PathBuf,
    passwd: Option<Vec<PasswdEntry>>,
    group: Option<Vec<GroupEntry>>,
}

impl Accounts {
    fn load(rootfs: &Path) -> Result<Self, ImageError> {
        Ok(Accounts {
            rootfs: rootfs.to_path_buf(),
            passwd: read_in_root(rootfs, "etc/passwd")?.map(|t| parse_passwd(&t)),
            group: read_in_root(rootfs, "etc/group")?.map(|t| parse_group(&t)),
        })
    }

    fn user_by_name(&self, name: &str) -> Result<&PasswdEntry, ImageError> {
        self.passwd
            .iter()
            .flatten()
            .find(|u| u.name == name)
            .ok_or_else(|| ImageError::NoSuchUser { name: name.into(), rootfs: self.rootfs.clone() })
    }

    fn user_by_uid(&self, uid: u32) -> Option<&PasswdEntry> {
        self.passwd.iter().flatten().find(|u| u.uid == uid)
    }

    fn gid_by_name(&self, name: &str) -> Result<u32, ImageError> {
        self.group
            .iter()
            .flatten()
            .find(|g| g.name == name)
            .map(|g| g.gid)
            .ok_or_else(|| ImageError::NoSuchGroup { name: name.into(), rootfs: self.rootfs.clone() })
    }

    /// `WithAdditionalGIDs`: the groups listing `username` as a member,
    /// except the one named like the user.
    fn supplementary_gids(&self, username: &str) -> Vec<u32> {
        self.group
            .iter()
            .flatten()
            .filter(|g| g.name != username && g.members.iter().any(|m| m == username))
            .map(|g| g.gid)
            .collect()
    }
}

/// Resolves an OCI image `User` (`user`, `uid`, `user:group`, `uid:gid`,
/// `uid:group`, `user:gid`) as containerd's `WithUser` then
/// `WithAdditionalGIDs` do. `None` for `user` means the image sets none
/// (root, with root's supplementary groups). Without a rootfs only numeric
/// forms resolve (a lone uid gets gid 0, as containerd does when the uid is
/// not in /etc/passwd).
pub fn resolve_user(user: Option<&str>, rootfs: Option<&Path>) -> Result<ResolvedUser, ImageError> {
    let accounts = rootfs.map(Accounts::load).transpose()?;
    let user = user.map(str::trim).filter(|u| !u.is_empty());
    let Some(user) = user else {
        let additional_gids = accounts.as_ref().map(|a| a.supplementary_gids("root")).unwrap_or_default();
        return Ok(ResolvedUser { uid: 0, gid: 0, additional_gids });
    };
    let parts: Vec<&str> = user.split(':').collect();
    let needs_rootfs = || ImageError::NeedsRootfs { user: user.to_string() };
    let (uid, gid) = match parts.as_slice() {
        [one] => match one.parse::<u32>() {
            Ok(uid) => {
                let gid = accounts.as_ref().and_then(|a| a.user_by_uid(uid)).map(|u| u.gid).unwrap_or(0);
                (uid, gid)
            }
            Err(_) => {
                let entry = accounts.as_ref().ok_or_else(needs_rootfs)?.user_by_name(one)?;
                (entry.uid, entry.gid)
            }
        },
        [u, g] => {
            if u.is_empty() || g.is_empty() {
                return Err(ImageError::InvalidUser(user.to_string()));
            }
            let uid = match u.parse::<u32>() {
                Ok(uid) => uid,
                Err(_) => accounts.as_ref().ok_or_else(needs_rootfs)?.user_by_name(u)?.uid,
            };
            let gid = match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => accounts.as_ref().ok_or_else(needs_rootfs)?.gid_by_name(g)?,
            };
            (uid, gid)
        }
        _ => return Err(ImageError::InvalidUser(user.to_string())),
    };
    // WithAdditionalGIDs(uid): the user's name from /etc/passwd, then its
    // supplementary groups; nothing when the uid has no entry.
    let additional_gids =
        accounts.as_ref().and_then(|a| a.user_by_uid(uid).map(|u| a.supplementary_gids(&u.name))).unwrap_or_default();
    Ok(ResolvedUser { uid, gid, additional_gids })
}

/// `WithImageConfigArgs`: env (image env, or the default PATH, with the
/// spec's own env on top), args (entrypoint + `args` when given, else
/// entrypoint + cmd), cwd (workdir or `/`), user.
pub fn apply_image_config(
    spec: &mut Spec,
    config: &ImageConfigView,
    args: Option<&[String]>,
    rootfs: Option<&Path>,
) -> Result<(), ImageError> {
    let process = spec.process_mut().get_or_insert_with(Default::default);
    let defaults = if config.env.is_empty() { vec![DEFAULT_PATH_ENV.to_string()] } else { config.env.clone() };
    let current = process.env().clone().unwrap_or_default();
    process.set_env(Some(replace_or_append_env(&defaults, &current)));

    let cmd = match args {
        Some(args) if !args.is_empty() => args.to_vec(),
        _ => config.cmd.clone(),
    };
    let mut full = config.entrypoint.clone();
    full.extend(cmd);
    process.set_args(Some(full));

    let cwd = config.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".to_string());
    process.set_cwd(PathBuf::from(cwd));

    let resolved = resolve_user(config.user.as_deref(), rootfs)?;
    set_user(spec, &resolved);
    Ok(())
}

/// Writes a resolved user into the spec (no `additionalGids` when empty, as
/// containerd omits it).
pub fn set_user(spec: &mut Spec, user: &ResolvedUser) {
    let process = spec.process_mut().get_or_insert_with(Default::default);
    let u = process.user_mut();
    u.set_uid(user.uid);
    u.set_gid(user.gid);
    u.set_additional_gids(if user.additional_gids.is_empty() { None } else { Some(user.additional_gids.clone()) });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n# comment\nbroken line\nwww:x:33:34::/var/www:/bin/false\nnobody:x:65534:65534::/:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nwheel:x:10:root,www\ndata:x:34:\nwww:x:77:www\naudio:x:29:www\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn env_merge_replaces_appends_and_unsets() {
        let d = vec!["PATH=/bin".to_string(), "A=1".to_string(), "B=2".to_string()];
        let o = vec!["A=9".to_string(), "C=3".to_string(), "B".to_string()];
        assert_eq!(replace_or_append_env(&d, &o), vec!["PATH=/bin", "A=9", "C=3"]);
    }

    #[test]
    fn numeric_users_without_rootfs() {
        assert_eq!(resolve_user(None, None).unwrap(), ResolvedUser::default());
        assert_eq!(
            resolve_user(Some("1000"), None).unwrap(),
            ResolvedUser { uid: 1000, gid: 0, additional_gids: vec![] }
        );
        assert_eq!(
            resolve_user(Some("1000:50"), None).unwrap(),
            ResolvedUser { uid: 1000, gid: 50, additional_gids: vec![] }
        );
        assert!(matches!(resolve_user(Some("www"), None), Err(ImageError::NeedsRootfs { .. })));
        assert!(matches!(resolve_user(Some("1:2:3"), None), Err(ImageError::InvalidUser(_))));
    }

    #[test]
    fn names_resolve_from_rootfs() {
        let root = rootfs();
        let r = Some(root.path());
        // A name: uid and gid from passwd, supplementary groups listing it
        // (not the group named like the user).
        assert_eq!(
            resolve_user(Some("www"), r).unwrap(),
            ResolvedUser { uid: 33, gid: 34, additional_gids: vec![10, 29] }
        );
        // A uid in passwd gets its gid; one not in passwd gets 0.
        assert_eq!(resolve_user(Some("33"), r).unwrap().gid, 34);
        assert_eq!(resolve_user(Some("4242"), r).unwrap(), ResolvedUser { uid: 4242, gid: 0, additional_gids: vec![] });
        // user:group in every combination.
        assert_eq!(resolve_user(Some("www:data"), r).unwrap().gid, 34);
        assert_eq!(
            (resolve_user(Some("33:wheel"), r).unwrap().uid, resolve_user(Some("33:wheel"), r).unwrap().gid),
            (33, 10)
        );
        assert_eq!(resolve_user(Some("nobody:5"), r).unwrap().uid, 65534);
        // No user: root with root's supplementary groups.
        assert_eq!(resolve_user(None, r).unwrap().additional_gids, vec![10]);
        assert!(matches!(resolve_user(Some("ghost"), r), Err(ImageError::NoSuchUser { .. })));
        assert!(matches!(resolve_user(Some("www:ghosts"), r), Err(ImageError::NoSuchGroup { .. })));
    }

    #[test]
    fn passwd_symlink_cannot_escape_rootfs() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), "evil:x:7:7::/:/bin/sh\n").unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        // An absolute symlink is resolved inside the rootfs, where it points
        // at nothing.
        std::os::unix::fs::symlink(outside.path().join("passwd"), root.path().join("etc/passwd")).unwrap();
        assert!(matches!(resolve_user(Some("evil"), Some(root.path())), Err(ImageError::NoSuchUser { .. })));
    }

    #[test]
    fn image_config_like_containerd() {
        let config = parse_image_config(
            r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
                "config":{"Env":["PATH=/x","A=1"],"Entrypoint":["/ep"],"Cmd":["c1"],"WorkingDir":"/w","User":"5:6"}}"#,
        )
        .unwrap();
        let mut spec = crate::defaults::default_spec("default", "t");
        apply_image_config(&mut spec, &config, None, None).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_deref().unwrap(), ["/ep", "c1"]);
        assert_eq!(p.env().as_deref().unwrap(), ["PATH=/x", "A=1"]);
        assert_eq!(p.cwd(), Path::new("/w"));
        assert_eq!((p.user().uid(), p.user().gid()), (5, 6));

        let args = vec!["a1".to_string(), "a2".to_string()];
        apply_image_config(&mut spec, &config, Some(&args), None).unwrap();
        assert_eq!(spec.process().as_ref().unwrap().args().as_deref().unwrap(), ["/ep", "a1", "a2"]);

        // The bare `config` object works too; no env means the default PATH.
        let bare = parse_image_config(r#"{"Cmd":["sh"]}"#).unwrap();
        let mut spec = crate::defaults::default_spec("default", "t");
        apply_image_config(&mut spec, &bare, None, None).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.env().as_deref().unwrap(), [DEFAULT_PATH_ENV]);
        assert_eq!(p.cwd(), Path::new("/"));
        assert!(parse_image_config("[1]").is_err());
    }
}
