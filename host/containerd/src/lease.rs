//! Leases: objects created while a lease is held are safe from containerd's
//! garbage collector until something references them (the image record, the
//! container record). The lease expires by itself should berth die midway.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::{CreateRequest, DeleteRequest};

use crate::connect::Conn;
use crate::error::{GrpcContext, Result};

const EXPIRY: Duration = Duration::from_secs(3600);

/// A name unique to this process and call: `<pid>-<nanos>-<counter>`.
pub(crate) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{}-{nanos}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Creates a lease and returns `conn` working inside it.
pub(crate) async fn acquire(conn: &Conn) -> Result<Conn> {
    let id = format!("berth-{}", unique_suffix());
    let expires = SystemTime::now() + EXPIRY;
    let labels = HashMap::from([("containerd.io/gc.expire".to_string(), rfc3339(expires))]);
    LeasesClient::new(conn.channel.clone())
        .create(conn.req(CreateRequest { id: id.clone(), labels }))
        .await
        .context(|| format!("creating lease {id}"))?;
    Ok(conn.leased(&id))
}

/// Deletes the lease `leased` works in; what it protected is now protected
/// by references or collected.
pub(crate) async fn release(leased: &Conn) {
    let Some(id) = leased.lease().map(str::to_string) else { return };
    let result = LeasesClient::new(leased.channel.clone()).delete(leased.req(DeleteRequest { id: id.clone(), sync: false })).await;
    if let Err(status) = result {
        // It expires by itself; nothing is lost.
        tracing::warn!(lease = %id, "deleting lease: {}", status.message());
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` in UTC (containerd parses RFC 3339).
pub(crate) fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_700_000_000)), "2023-11-14T22:13:20Z");
    }
}
