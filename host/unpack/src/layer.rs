//! A layer blob -> decompressed, hashed, applied, in one pass.
//!
//! A reader thread decompresses (gzip, zstd or none, told apart by their
//! magic bytes) and hashes the uncompressed stream; the calling thread
//! applies the tar from the chunks it hands over. The DiffID (sha256 of the
//! uncompressed stream, to its very end) is compared once both are done: a
//! mismatch fails the apply (the caller discards the directory).

use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use sha2::Digest as _;

use crate::apply::{ApplyOptions, ApplyStats, apply_tar};
use crate::root::Root;
use crate::{Error, Result};

const CHUNK: usize = 1 << 20;

/// Compression of a layer blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn detect(magic: &[u8]) -> Result<Compression> {
        Ok(if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if magic.starts_with(b"BZh") {
            return Err(Error::InvalidArchive("bzip2 layers are not supported".into()));
        } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            return Err(Error::InvalidArchive("xz layers are not supported".into()));
        } else {
            Compression::None
        })
    }
}

/// What applying a layer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerStats {
    pub compression: Compression,
    /// `sha256:` of the uncompressed stream.
    pub diff_id: String,
    /// Uncompressed bytes.
    pub size: u64,
    pub apply: ApplyStats,
}

/// Applies the layer blob `blob` to the directory `dir`, checking that its
/// uncompressed stream hashes to `diff_id` (when given).
pub fn apply_layer(dir: &Path, blob: impl Read + Send, diff_id: Option<&str>, opts: &ApplyOptions) -> Result<LayerStats> {
    let root = Root::open(dir).map_err(|e| Error::Other(anyhow::anyhow!("opening {}: {e}", dir.display())))?;
    apply_layer_to(&root, blob, diff_id, opts)
}

pub fn apply_layer_to(root: &Root, blob: impl Read + Send, diff_id: Option<&str>, opts: &ApplyOptions) -> Result<LayerStats> {
    let mut input = BufReader::with_capacity(256 << 10, blob);
    let compression = Compression::detect(input.fill_buf().map_err(|e| Error::Other(anyhow::anyhow!("reading the layer: {e}")))?)?;
    let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(8);
    std::thread::scope(|scope| {
        let producer = std::thread::Builder::new()
            .name("berth-unpack-decompress".into())
            .spawn_scoped(scope, move || produce(input, compression, tx))
            .map_err(|e| Error::Other(anyhow::anyhow!("spawning the decompressor: {e}")))?;
        let mut reader = ChunkReader { rx, chunk: Vec::new(), pos: 0 };
        let applied = apply_tar(root, &mut reader, opts);
        // Hash what follows the tar's end too (padding is part of the DiffID).
        let drained = if applied.is_ok() { io::copy(&mut reader, &mut io::sink()).map(|_| ()) } else { Ok(()) };
        drop(reader); // a producer still sending sees the channel closed
        let produced = producer.join().map_err(|_| Error::Other(anyhow::anyhow!("the decompressor panicked")))?;
        let stats = applied?;
        let (digest, size) = produced?;
        drained.map_err(|e| Error::InvalidArchive(format!("layer stream: {e}")))?;
        if let Some(expected) = diff_id
            && expected != digest {
                return Err(Error::DiffIdMismatch { expected: expected.to_string(), actual: digest });
            }
        Ok(LayerStats { compression, diff_id: digest, size, apply: stats })
    })
}

/// Decompresses and hashes `input`, sending chunks; returns the digest and size.
fn produce(input: impl BufRead, compression: Compression, tx: SyncSender<io::Result<Vec<u8>>>) -> Result<(String, u64)> {
    let mut decoder: Box<dyn Read> = match compression {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(input).map_err(|e| Error::InvalidArchive(format!("zstd: {e}")))?,
        ),
    };
    let mut hasher = sha2::Sha256::new();
    let mut size = 0u64;
    loop {
        let mut chunk = vec![0u8; CHUNK];
        let mut n = 0;
        while n < CHUNK {
            match decoder.read(&mut chunk[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let msg = format!("{compression:?} stream after {} bytes: {e}", size + n as u64);
                    let _ = tx.send(Err(io::Error::new(e.kind(), msg.clone())));
                    return Err(Error::InvalidArchive(msg));
                }
            }
        }
        chunk.truncate(n);
        hasher.update(&chunk);
        size += n as u64;
        if n == 0 {
            break;
        }
        if tx.send(Ok(chunk)).is_err() {
            // The applier stopped (it failed); its error is the one reported.
            return Err(Error::Other(anyhow::anyhow!("apply stopped")));
        }
    }
    Ok((format!("sha256:{}", hex::encode(hasher.finalize())), size))
}

struct ChunkReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0), // producer done
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
