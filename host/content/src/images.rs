//! The image store: name -> target descriptor (an index or a manifest).
//!
//! A small JSON file replaced atomically (temp + fsync + rename); writers
//! serialise on an flock of `images.lock`, so concurrent `berth image`
//! commands do not lose each other's updates.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use oci_spec::image::Descriptor;
use serde::{Deserialize, Serialize};

use crate::{ContentStore, Error, Result};

/// The image file is bounded like any metadata we read.
const MAX_IMAGES_FILE: u64 = 64 << 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageRecord {
    pub name: String,
    pub target: Descriptor,
    /// Seconds since the epoch.
    pub created: u64,
    pub updated: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ImagesFile {
    images: BTreeMap<String, ImageRecord>,
}

#[derive(Debug, Clone)]
pub struct ImageStore {
    file: PathBuf,
    lock: PathBuf,
}

impl ImageStore {
    /// The image store of a content store (`<root>/content/images.json`).
    pub fn open(content: &ContentStore) -> ImageStore {
        ImageStore { file: content.root().join("images.json"), lock: content.root().join("images.lock") }
    }

    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        Ok(self.load()?.images.into_values().collect())
    }

    pub fn get(&self, name: &str) -> Result<ImageRecord> {
        self.load()?.images.remove(name).ok_or_else(|| Error::NotFound(format!("image {name}")))
    }

    /// The record `name`, or else the one under its normalised reference
    /// (`busybox` -> `docker.io/library/busybox:latest`).
    pub fn find(&self, name: &str) -> Result<ImageRecord> {
        match self.get(name) {
            Err(Error::NotFound(_)) => self.get(&crate::normalize_reference(name)),
            other => other,
        }
    }

    /// Creates or replaces `name` -> `target`; keeps `created` of a replaced one.
    pub fn put(&self, name: &str, target: Descriptor, labels: BTreeMap<String, String>) -> Result<ImageRecord> {
        if name.is_empty() || name.len() > 4096 || name.chars().any(char::is_control) {
            return Err(Error::Other(anyhow::anyhow!("image name {name:?} is not valid")));
        }
        self.modify(|file| {
            let now = now();
            let created = file.images.get(name).map(|r| r.created).unwrap_or(now);
            let record = ImageRecord { name: name.to_string(), target, created, updated: now, labels };
            file.images.insert(name.to_string(), record.clone());
            Ok(record)
        })
    }

    /// Removes `name`; `NotFound` if absent. Blobs stay (GC removes them).
    pub fn remove(&self, name: &str) -> Result<ImageRecord> {
        self.modify(|file| file.images.remove(name).ok_or_else(|| Error::NotFound(format!("image {name}"))))
    }

    fn load(&self) -> Result<ImagesFile> {
        read_file(&self.file)
    }

    fn modify<T>(&self, f: impl FnOnce(&mut ImagesFile) -> Result<T>) -> Result<T> {
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .with_context(|| format!("opening {}", self.lock.display()))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .with_context(|| format!("locking {}", self.lock.display()))?;
        let mut file = read_file(&self.file)?;
        let out = f(&mut file)?;
        let data = serde_json::to_vec_pretty(&file).context("encoding images")?;
        let temp = self.file.with_extension(format!("json.tmp-{}", std::process::id()));
        let mut tf = File::create(&temp).with_context(|| format!("creating {}", temp.display()))?;
        tf.write_all(&data)?;
        tf.sync_all()?;
        drop(tf);
        std::fs::rename(&temp, &self.file).with_context(|| format!("replacing {}", self.file.display()))?;
        if let Some(dir) = self.file.parent() {
            File::open(dir).and_then(|d| d.sync_all()).ok();
        }
        Ok(out)
    }
}

fn read_file(path: &Path) -> Result<ImagesFile> {
    let data = match std::fs::read(path) {
        Ok(data) => data,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(ImagesFile::default()),
        Err(err) => return Err(Error::Other(anyhow::Error::new(err).context(format!("reading {}", path.display())))),
    };
    if data.len() as u64 > MAX_IMAGES_FILE {
        return Err(Error::Other(anyhow::anyhow!("{}: larger than {MAX_IMAGES_FILE} bytes", path.display())));
    }
    Ok(serde_json::from_slice(&data).with_context(|| format!("{}: not an image store file", path.display()))?)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let content = ContentStore::open(dir.path()).unwrap();
        let images = ImageStore::open(&content);
        let blob = content.write_blob(b"{}").unwrap();
        let desc = oci_spec::image::DescriptorBuilder::default()
            .media_type(oci_spec::image::MediaType::ImageManifest)
            .digest(blob.digest.parse::<oci_spec::image::Digest>().unwrap())
            .size(blob.size)
            .build()
            .unwrap();
        images.put("example.com/a:1", desc.clone(), BTreeMap::new()).unwrap();
        images.put("example.com/b:1", desc.clone(), BTreeMap::new()).unwrap();
        assert_eq!(images.get("example.com/a:1").unwrap().target, desc);
        assert_eq!(images.list().unwrap().iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["example.com/a:1", "example.com/b:1"]);
        images.remove("example.com/a:1").unwrap();
        assert!(matches!(images.get("example.com/a:1"), Err(Error::NotFound(_))));
        assert!(matches!(images.remove("example.com/a:1"), Err(Error::NotFound(_))));
    }
}
