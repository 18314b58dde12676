//! containerd's content store: upload a blob (streamed, resumable by ref),
//! read a small blob, label a blob.

use std::collections::HashMap;
use std::io::Read;

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::{
    Info, InfoRequest, ReadContentRequest, UpdateRequest, WriteAction, WriteContentRequest,
};
use containerd_client::types::Descriptor;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::connect::Conn;
use crate::error::{Error, GrpcContext, Result};
use crate::layout::MAX_METADATA_BLOB;

const CHUNK: usize = 1 << 20;

/// Whether containerd has the blob `digest`.
pub(crate) async fn exists(conn: &Conn, digest: &str) -> Result<bool> {
    match ContentClient::new(conn.channel.clone()).info(conn.req(InfoRequest { digest: digest.to_string() })).await {
        Ok(_) => Ok(true),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(false),
        Err(status) => Err(Error::grpc(format!("content info {digest}"), status)),
    }
}

/// Streams `desc.size` bytes from `data` into the content store and commits
/// them as `desc.digest` with `labels`; containerd verifies size and digest.
/// A blob already there only gets the labels.
pub(crate) async fn upload(
    conn: &Conn,
    desc: &Descriptor,
    data: Box<dyn Read + Send>,
    labels: HashMap<String, String>,
) -> Result<()> {
    if exists(conn, &desc.digest).await? {
        return set_labels(conn, &desc.digest, labels).await;
    }
    let reference = format!("berth-upload-{}", desc.digest);
    let (tx, rx) = tokio::sync::mpsc::channel::<WriteContentRequest>(4);
    let (total, expected) = (desc.size, desc.digest.clone());
    // The reader is blocking (files); feed the request stream from a thread.
    let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut data = data;
        let mut offset = 0i64;
        loop {
            let mut chunk = vec![0u8; CHUNK];
            let n = read_full(&mut data, &mut chunk)?;
            chunk.truncate(n);
            let last = n < CHUNK;
            let action = if last { WriteAction::Commit } else { WriteAction::Write };
            let request = WriteContentRequest {
                action: action as i32,
                r#ref: reference.clone(),
                total,
                expected: expected.clone(),
                offset,
                data: chunk,
                labels: if last { labels.clone() } else { HashMap::new() },
            };
            offset += n as i64;
            if tx.blocking_send(request).is_err() || last {
                return Ok(());
            }
        }
    });
    let what = || format!("writing blob {} ({} bytes) to containerd's content store", desc.digest, desc.size);
    let mut responses = ContentClient::new(conn.channel.clone())
        .write(conn.req(ReceiverStream::new(rx)))
        .await
        .context(what)?;
    let mut committed = None;
    while let Some(response) = responses.next().await {
        let response = response.map_err(|status| Error::grpc(what(), status))?;
        if response.action == WriteAction::Commit as i32 {
            committed = Some(response.digest);
        }
    }
    reader
        .await
        .map_err(|e| anyhow::anyhow!("blob reader thread: {e}"))?
        .map_err(|e| Error::Other(e.context(what())))?;
    match committed {
        Some(digest) if digest == desc.digest => Ok(()),
        Some(digest) => Err(anyhow::anyhow!("{}: containerd committed {digest}", what()).into()),
        None => Err(anyhow::anyhow!("{}: containerd never confirmed the commit", what()).into()),
    }
}

fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// A small blob (manifest, index, config) from the content store, whole.
pub(crate) async fn read(conn: &Conn, desc: &Descriptor) -> Result<Vec<u8>> {
    if desc.size < 0 || desc.size as u64 > MAX_METADATA_BLOB {
        return Err(anyhow::anyhow!("blob {} claims {} bytes, more than a manifest or config may have", desc.digest, desc.size).into());
    }
    let what = || format!("reading blob {} from containerd's content store", desc.digest);
    let request = ReadContentRequest { digest: desc.digest.clone(), offset: 0, size: 0 };
    let mut stream = ContentClient::new(conn.channel.clone()).read(conn.req(request)).await.context(what)?;
    let mut data = Vec::with_capacity(desc.size as usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|status| Error::grpc(what(), status))?;
        if (data.len() + chunk.data.len()) as u64 > MAX_METADATA_BLOB {
            return Err(anyhow::anyhow!("{}: more than {MAX_METADATA_BLOB} bytes", what()).into());
        }
        data.extend_from_slice(&chunk.data);
    }
    if data.len() as i64 != desc.size {
        return Err(anyhow::anyhow!("{}: got {} bytes, its descriptor says {}", what(), data.len(), desc.size).into());
    }
    Ok(data)
}

/// Sets (only) `labels` on the blob `digest`, leaving its other labels alone.
pub(crate) async fn set_labels(conn: &Conn, digest: &str, labels: HashMap<String, String>) -> Result<()> {
    if labels.is_empty() {
        return Ok(());
    }
    let paths = labels.keys().map(|key| format!("labels.{key}")).collect();
    let request = UpdateRequest {
        info: Some(Info { digest: digest.to_string(), labels, ..Default::default() }),
        update_mask: Some(prost_types::FieldMask { paths }),
    };
    ContentClient::new(conn.channel.clone())
        .update(conn.req(request))
        .await
        .context(|| format!("labelling blob {digest}"))?;
    Ok(())
}
