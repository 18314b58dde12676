//! The blob store: `<root>/content/blobs/sha256/<hex>`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use oci_spec::image::Descriptor;
use sha2::Digest as _;

use crate::{Error, MAX_METADATA_SIZE, Result, digest_hex};

/// Temp files in the blob dir start with this (never a valid hex name).
const TEMP_PREFIX: &str = ".ingest-";

/// The content-addressed blob store.
#[derive(Debug, Clone)]
pub struct ContentStore {
    /// `<root>/content`
    root: PathBuf,
    blobs: PathBuf,
}

/// What an ingest stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    pub digest: String,
    pub size: u64,
    /// False when the blob was already present.
    pub written: bool,
}

impl ContentStore {
    /// Opens (creating) the store under `<berth_root>/content`.
    pub fn open(berth_root: &Path) -> Result<ContentStore> {
        let root = berth_root.join("content");
        let blobs = root.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
        Ok(ContentStore { root, blobs })
    }

    /// `<root>/content`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.blobs.join(digest_hex(digest)?))
    }

    /// Size of a stored blob; `NotFound` if absent.
    pub fn size(&self, digest: &str) -> Result<u64> {
        let path = self.blob_path(digest)?;
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(meta.len()),
            Ok(_) => Err(Error::Other(anyhow::anyhow!("{}: not a regular file", path.display()))),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Err(Error::NotFound(format!("blob {digest}"))),
            Err(err) => Err(Error::Other(anyhow::Error::new(err).context(format!("stat {}", path.display())))),
        }
    }

    pub fn contains(&self, digest: &str) -> bool {
        self.size(digest).is_ok()
    }

    /// Opens a stored blob for reading.
    pub fn open_blob(&self, digest: &str) -> Result<File> {
        let path = self.blob_path(digest)?;
        File::open(&path).map_err(|err| {
            if err.kind() == io::ErrorKind::NotFound {
                Error::NotFound(format!("blob {digest}"))
            } else {
                Error::Other(anyhow::Error::new(err).context(format!("opening {}", path.display())))
            }
        })
    }

    /// Reads a whole blob of at most `limit` bytes.
    pub fn read_bounded(&self, digest: &str, limit: u64) -> Result<Vec<u8>> {
        let size = self.size(digest)?;
        if size > limit {
            return Err(Error::Other(anyhow::anyhow!("blob {digest} has {size} bytes, more than the {limit} allowed here")));
        }
        let mut data = Vec::with_capacity(size as usize);
        self.open_blob(digest)?
            .take(limit + 1)
            .read_to_end(&mut data)
            .with_context(|| format!("reading blob {digest}"))?;
        if data.len() as u64 > limit {
            return Err(Error::Other(anyhow::anyhow!("blob {digest} grew past {limit} bytes while read")));
        }
        Ok(data)
    }

    /// An index, manifest or config named by `desc`: size-bounded
    /// ([`MAX_METADATA_SIZE`]) and checked against the descriptor's size and
    /// digest (the file could have been changed on disk).
    pub fn read_metadata(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        let digest = desc.digest().to_string();
        if desc.size() > MAX_METADATA_SIZE {
            return Err(Error::Other(anyhow::anyhow!(
                "{} {digest} claims {} bytes, more than the {MAX_METADATA_SIZE} a manifest or config may have",
                desc.media_type(),
                desc.size()
            )));
        }
        let data = self.read_bounded(&digest, MAX_METADATA_SIZE)?;
        if data.len() as u64 != desc.size() {
            return Err(Error::SizeMismatch { digest, expected: desc.size(), actual: data.len() as u64 });
        }
        let actual = crate::sha256_digest(&data);
        if actual != digest {
            return Err(Error::DigestMismatch { digest, actual, size: data.len() as u64 });
        }
        Ok(data)
    }

    /// Stores the blob read from `reader`, which must hash to `digest` and
    /// have `size` bytes (`None`: unknown, then any size is accepted). Reads
    /// at most `size + 1` bytes. The blob appears atomically (temp file in
    /// the same dir, fsync, verify, rename, fsync the dir); on any error
    /// nothing is left behind. An already present blob is not read again.
    pub fn ingest(&self, reader: &mut dyn Read, digest: &str, size: Option<u64>) -> Result<Ingested> {
        digest_hex(digest)?;
        if let Ok(have) = self.size(digest)
            && size.is_none_or(|s| s == have)
        {
            return Ok(Ingested { digest: digest.to_string(), size: have, written: false });
        }
        let limit = size.map(|s| s + 1);
        let written = self.write_temp(reader, limit, |actual, n| {
            if let Some(expected) = size
                && n != expected
            {
                return Err(Error::SizeMismatch { digest: digest.to_string(), expected, actual: n });
            }
            if actual != digest {
                return Err(Error::DigestMismatch { digest: digest.to_string(), actual: actual.to_string(), size: n });
            }
            Ok(digest.to_string())
        })?;
        Ok(written)
    }

    /// Stores a blob whose digest is not known beforehand (docker-save
    /// layers, blobs berth writes itself); returns what it hashed to.
    pub fn ingest_unverified(&self, reader: &mut dyn Read) -> Result<Ingested> {
        self.write_temp(reader, None, |actual, _| Ok(actual.to_string()))
    }

    /// Stores `data` and returns its descriptor fields.
    pub fn write_blob(&self, data: &[u8]) -> Result<Ingested> {
        let digest = crate::sha256_digest(data);
        self.ingest(&mut &data[..], &digest, Some(data.len() as u64))
    }

    fn write_temp(
        &self,
        reader: &mut dyn Read,
        limit: Option<u64>,
        check: impl FnOnce(&str, u64) -> Result<String>,
    ) -> Result<Ingested> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let temp = self.blobs.join(format!(
            "{TEMP_PREFIX}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let guard = TempGuard(&temp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc_o_cloexec())
            .open(&temp)
            .with_context(|| format!("creating {}", temp.display()))?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 256 << 10];
        let mut n: u64 = 0;
        loop {
            let want = match limit {
                Some(l) => (l - n).min(buf.len() as u64) as usize,
                None => buf.len(),
            };
            if want == 0 {
                break;
            }
            let got = match reader.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(got) => got,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(Error::Other(anyhow::Error::new(err).context("reading blob content"))),
            };
            hasher.update(&buf[..got]);
            file.write_all(&buf[..got]).with_context(|| format!("writing {}", temp.display()))?;
            n += got as u64;
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        let digest = check(&actual, n)?;
        file.sync_all().with_context(|| format!("fsync {}", temp.display()))?;
        drop(file);
        let dest = self.blob_path(&digest)?;
        std::fs::rename(&temp, &dest).with_context(|| format!("renaming {} to {}", temp.display(), dest.display()))?;
        std::mem::forget(guard);
        File::open(&self.blobs)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("fsync {}", self.blobs.display()))?;
        Ok(Ingested { digest, size: n, written: true })
    }

    /// Every stored blob and its size (the garbage collector's view).
    /// Leftover temp files are not listed; see [`ContentStore::clean_temp`].
    pub fn list(&self) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.blobs).with_context(|| format!("listing {}", self.blobs.display()))? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
            let digest = format!("sha256:{name}");
            if digest_hex(&digest).is_err() {
                continue;
            }
            let meta = entry.metadata()?;
            if meta.is_file() {
                out.push((digest, meta.len()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes a blob; `NotFound` if absent.
    pub fn delete(&self, digest: &str) -> Result<()> {
        let path = self.blob_path(digest)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Err(Error::NotFound(format!("blob {digest}"))),
            Err(err) => Err(Error::Other(anyhow::Error::new(err).context(format!("removing {}", path.display())))),
        }
    }

    /// Removes temp files a killed ingest left behind (none of this
    /// process's ingests may be running).
    pub fn clean_temp(&self) -> Result<usize> {
        let mut n = 0;
        for entry in std::fs::read_dir(&self.blobs)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                std::fs::remove_file(entry.path())?;
                n += 1;
            }
        }
        Ok(n)
    }
}

fn libc_o_cloexec() -> i32 {
    // std opens with O_CLOEXEC already; stated for the reader.
    rustix::fs::OFlags::CLOEXEC.bits() as i32
}

/// Removes the temp file unless forgotten.
struct TempGuard<'a>(&'a Path);

impl Drop for TempGuard<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_verifies_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let data = b"hello blob";
        let digest = crate::sha256_digest(data);
        let got = store.ingest(&mut &data[..], &digest, Some(data.len() as u64)).unwrap();
        assert!(got.written);
        assert_eq!(std::fs::read(store.blob_path(&digest).unwrap()).unwrap(), data);
        let again = store.ingest(&mut &data[..], &digest, Some(data.len() as u64)).unwrap();
        assert!(!again.written);
        assert_eq!(store.list().unwrap(), vec![(digest.clone(), data.len() as u64)]);

        // Wrong digest, short and long input: refused, nothing left behind.
        let other = crate::sha256_digest(b"other");
        assert!(matches!(store.ingest(&mut &data[..], &other, None), Err(Error::DigestMismatch { .. })));
        assert!(matches!(store.ingest(&mut &data[..5], &other, Some(10)), Err(Error::SizeMismatch { .. })));
        assert!(matches!(store.ingest(&mut &b"0123456789abc"[..], &other, Some(10)), Err(Error::SizeMismatch { .. })));
        assert_eq!(store.list().unwrap().len(), 1);
        assert_eq!(std::fs::read_dir(dir.path().join("content/blobs/sha256")).unwrap().count(), 1);

        store.delete(&digest).unwrap();
        assert!(matches!(store.delete(&digest), Err(Error::NotFound(_))));
        assert!(store.blob_path("sha256:../x").is_err());
    }

    #[test]
    fn metadata_reads_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let big = vec![b' '; (MAX_METADATA_SIZE + 1) as usize];
        let blob = store.write_blob(&big).unwrap();
        let desc = oci_spec::image::DescriptorBuilder::default()
            .media_type(oci_spec::image::MediaType::ImageManifest)
            .digest(blob.digest.parse::<oci_spec::image::Digest>().unwrap())
            .size(blob.size)
            .build()
            .unwrap();
        let err = store.read_metadata(&desc).unwrap_err().to_string();
        assert!(err.contains("more than"), "{err}");
    }
}
