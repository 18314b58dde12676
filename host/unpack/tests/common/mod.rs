//! Test helpers: tars with raw (unchecked) names, tree snapshots.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::Digest as _;

/// A tar builder that writes names as given (absolute, `..`, empty), like
/// containerd's tartest, with long names as PAX records.
pub struct RawTar {
    builder: tar::Builder<Vec<u8>>,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

pub enum Kind<'a> {
    Dir,
    File(&'a [u8]),
    Symlink(&'a str),
    Link(&'a str),
    Char(u32, u32),
    Fifo,
}

impl Default for RawTar {
    fn default() -> Self {
        Self::new()
    }
}

impl RawTar {
    pub fn new() -> RawTar {
        RawTar { builder: tar::Builder::new(Vec::new()), uid: 0, gid: 0, mtime: 1_700_000_000 }
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.entry(name, Kind::Dir, mode, &[])
    }
    pub fn file(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Self {
        self.entry(name, Kind::File(data), mode, &[])
    }
    pub fn symlink(&mut self, target: &str, name: &str) -> &mut Self {
        self.entry(name, Kind::Symlink(target), 0o777, &[])
    }
    pub fn link(&mut self, target: &str, name: &str) -> &mut Self {
        self.entry(name, Kind::Link(target), 0o644, &[])
    }

    pub fn entry(&mut self, name: &str, kind: Kind, mode: u32, xattrs: &[(&str, &[u8])]) -> &mut Self {
        let mut pax: Vec<(String, Vec<u8>)> = xattrs.iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.to_vec())).collect();
        let mut header = tar::Header::new_ustar();
        let (ty, data): (tar::EntryType, &[u8]) = match kind {
            Kind::Dir => (tar::EntryType::Directory, &[]),
            Kind::File(d) => (tar::EntryType::Regular, d),
            Kind::Symlink(_) => (tar::EntryType::Symlink, &[]),
            Kind::Link(_) => (tar::EntryType::Link, &[]),
            Kind::Char(..) => (tar::EntryType::Char, &[]),
            Kind::Fifo => (tar::EntryType::Fifo, &[]),
        };
        header.set_entry_type(ty);
        header.set_mode(mode);
        header.set_uid(self.uid);
        header.set_gid(self.gid);
        header.set_mtime(self.mtime);
        header.set_size(data.len() as u64);
        if let Kind::Char(major, minor) = kind {
            header.set_device_major(major).unwrap();
            header.set_device_minor(minor).unwrap();
        }
        let raw = header.as_old_mut();
        if name.len() <= 100 {
            raw.name[..name.len()].copy_from_slice(name.as_bytes());
        } else {
            pax.push(("path".into(), name.as_bytes().to_vec()));
            raw.name[..10].copy_from_slice(b"long-name!");
        }
        if let Kind::Symlink(t) | Kind::Link(t) = kind {
            if t.len() <= 100 {
                raw.linkname[..t.len()].copy_from_slice(t.as_bytes());
            } else {
                pax.push(("linkpath".into(), t.as_bytes().to_vec()));
            }
        }
        if !pax.is_empty() {
            self.builder.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).unwrap();
        }
        header.set_cksum();
        self.builder.append(&header, data).unwrap();
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// Everything about a tree that an apply could change: per path, type,
/// mode, owner, size, content digest, link target, mtime, xattrs.
pub fn snapshot(dir: &Path, skip: Option<&Path>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(dir, dir, skip, &mut out);
    out
}

fn walk(base: &Path, dir: &Path, skip: Option<&Path>, out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if Some(path.as_path()) == skip {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let rel = path.strip_prefix(base).unwrap().display().to_string();
        let ft = meta.file_type();
        let content = if ft.is_file() {
            sha256(&std::fs::read(&path).unwrap())
        } else if ft.is_symlink() {
            std::fs::read_link(&path).unwrap().display().to_string()
        } else {
            String::new()
        };
        let mtime = if ft.is_dir() { 0 } else { meta.mtime() };
        out.insert(rel, format!("{:o} {}:{} {} {} {}", meta.mode(), meta.uid(), meta.gid(), meta.len(), content, mtime));
        if ft.is_dir() {
            walk(base, &path, skip, out);
        }
    }
}
