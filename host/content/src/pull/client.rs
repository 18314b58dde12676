//! The registry API (OCI distribution spec) over one [`PullSource`]: GET of
//! manifests and blobs, the 401 challenge (Basic, or a Bearer token fetched
//! with the host's credentials), ranges for resumed blobs.
//!
//! Why not `oci-client`: its URLs are fixed as `{scheme}://{registry}/v2/...`
//! (no API root per mirror, as hosts.toml's `/v2/prefix` needs), it has no way
//! to add a source's extra headers, and TLS/protocol settings are per client,
//! not per host. berth uses the same building blocks it does (`reqwest`, the
//! `oci-spec` reference and manifest types) and keeps the rest small.

use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, RANGE, WWW_AUTHENTICATE};
use tokio::sync::Mutex;

use super::auth::{Challenge, Credential, parse_challenge};
use super::source::PullSource;

/// Why a request to one source failed; decides whether the next source is tried.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status { url: String, status: u16, body: String },
    #[error("{url}: unauthorized ({why})")]
    Unauthorized { url: String, why: String },
    #[error("{url}: content does not match {expected} (got {actual})")]
    Digest { url: String, expected: String, actual: String },
    #[error("{url}: {msg}")]
    Invalid { url: String, msg: String },
    #[error(transparent)]
    Local(#[from] anyhow::Error),
}

impl FetchError {
    /// Connection errors, 5xx, 404 and corrupt content move on to the next
    /// source; anything else (auth refused, bad request, local I/O) stops.
    pub fn falls_back(&self) -> bool {
        match self {
            FetchError::Connect { .. } | FetchError::Digest { .. } => true,
            FetchError::Status { status, .. } => *status == 404 || (500..600).contains(status),
            FetchError::Invalid { .. } => true,
            FetchError::Unauthorized { .. } | FetchError::Local(_) => false,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, FetchError::Status { status: 404, .. })
    }
}

pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// One source with its HTTP client and the authorization it earned.
pub struct SourceClient {
    pub source: PullSource,
    http: reqwest::Client,
    credential: Option<Credential>,
    /// `Authorization` value that worked (Basic or a Bearer token), per repository scope.
    authorization: Mutex<Option<HeaderValue>>,
}

impl SourceClient {
    pub fn new(source: PullSource, credential: Option<Credential>) -> anyhow::Result<SourceClient> {
        source.validate().map_err(anyhow::Error::msg)?;
        install_crypto_provider();
        let mut headers = HeaderMap::new();
        for (k, v) in &source.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| anyhow::anyhow!("source {source}: header name {k:?}: {e}"))?;
            let value =
                HeaderValue::from_str(v).map_err(|e| anyhow::anyhow!("source {source}: header {k} value: {e}"))?;
            headers.append(name, value);
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(120))
            // Plain http only to a source that says http; https everywhere else.
            .https_only(source.scheme == super::Scheme::Https);
        if source.skip_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| anyhow::anyhow!("source {source}: HTTP client: {e}"))?;
        Ok(SourceClient { source, http, credential, authorization: Mutex::new(None) })
    }

    pub fn url(&self, repository: &str, tail: &str) -> String {
        format!("{}/{}/{}", self.source.base_url(), repository, tail)
    }

    /// GET `url` with `headers`, answering one 401 challenge.
    pub async fn get(&self, repository: &str, url: &str, headers: HeaderMap) -> Result<reqwest::Response, FetchError> {
        let mut answered = false;
        loop {
            let mut req = self.http.get(url).headers(headers.clone());
            if let Some(auth) = self.authorization.lock().await.clone() {
                req = req.header(AUTHORIZATION, auth);
            }
            let resp = req.send().await.map_err(|source| FetchError::Connect { url: url.to_string(), source })?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            if answered {
                return Err(FetchError::Unauthorized {
                    url: url.to_string(),
                    why: "credentials refused".into(),
                });
            }
            let challenge = resp
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(parse_challenge)
                .ok_or_else(|| FetchError::Unauthorized {
                    url: url.to_string(),
                    why: "no Basic or Bearer challenge".into(),
                })?;
            let value = self.answer(repository, url, challenge).await?;
            *self.authorization.lock().await = Some(value);
            answered = true;
        }
    }

    async fn answer(&self, repository: &str, url: &str, challenge: Challenge) -> Result<HeaderValue, FetchError> {
        match challenge {
            Challenge::Basic => {
                let cred = self.credential.as_ref().ok_or_else(|| FetchError::Unauthorized {
                    url: url.to_string(),
                    why: format!("{} asks for basic auth and no credentials are configured for it", self.source.host),
                })?;
                Ok(basic(cred))
            }
            Challenge::Bearer { realm, service, scope } => {
                let scope = scope.unwrap_or_else(|| format!("repository:{repository}:pull"));
                let mut token_url = reqwest::Url::parse(&realm).map_err(|e| FetchError::Invalid {
                    url: url.to_string(),
                    msg: format!("token realm {realm:?}: {e}"),
                })?;
                {
                    let mut q = token_url.query_pairs_mut();
                    if let Some(service) = &service {
                        q.append_pair("service", service);
                    }
                    q.append_pair("scope", &scope);
                }
                // The token server gets the credentials only over https, or
                // over http when the source itself is plain http.
                if token_url.scheme() != "https" && self.source.scheme == super::Scheme::Https {
                    return Err(FetchError::Invalid {
                        url: url.to_string(),
                        msg: format!("token realm {realm} is not https"),
                    });
                }
                let mut req = self.http.get(token_url.clone());
                if let Some(cred) = &self.credential {
                    req = req.header(AUTHORIZATION, basic(cred));
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|source| FetchError::Connect { url: token_url.to_string(), source })?;
                if !resp.status().is_success() {
                    return Err(FetchError::Unauthorized {
                        url: url.to_string(),
                        why: format!("token server {} answered {}", token_url, resp.status()),
                    });
                }
                #[derive(serde::Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let body = resp.bytes().await.map_err(|source| FetchError::Connect { url: realm.clone(), source })?;
                let t: Token = serde_json::from_slice(&body).map_err(|e| FetchError::Invalid {
                    url: realm.clone(),
                    msg: format!("token response: {e}"),
                })?;
                let token = t.token.or(t.access_token).filter(|t| !t.is_empty()).ok_or_else(|| {
                    FetchError::Invalid { url: realm.clone(), msg: "token response has no token".into() }
                })?;
                HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|e| FetchError::Invalid { url: realm, msg: format!("token: {e}") })
            }
        }
    }

    /// A manifest (or index) by tag or digest, at most `limit` bytes.
    pub async fn manifest(
        &self,
        repository: &str,
        reference: &str,
        limit: u64,
    ) -> Result<(Vec<u8>, Option<String>), FetchError> {
        let url = self.url(repository, &format!("manifests/{reference}"));
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let mut resp = self.get(repository, &url, headers).await?;
        check_status(&url, &mut resp, &[StatusCode::OK]).await?;
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_string());
        let mut body = Vec::new();
        while let Some(chunk) =
            resp.chunk().await.map_err(|source| FetchError::Connect { url: url.clone(), source })?
        {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(FetchError::Invalid { url, msg: format!("manifest larger than {limit} bytes") });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, content_type))
    }

    /// Starts a blob GET, from `offset` when resuming.
    pub async fn blob(&self, repository: &str, digest: &str, offset: u64) -> Result<reqwest::Response, FetchError> {
        let url = self.url(repository, &format!("blobs/{digest}"));
        let mut headers = HeaderMap::new();
        if offset > 0 {
            headers.insert(RANGE, HeaderValue::from_str(&format!("bytes={offset}-")).expect("ascii"));
        }
        let mut resp = self.get(repository, &url, headers).await?;
        check_status(
            &url,
            &mut resp,
            &[StatusCode::OK, StatusCode::PARTIAL_CONTENT, StatusCode::RANGE_NOT_SATISFIABLE],
        )
        .await?;
        Ok(resp)
    }
}

async fn check_status(url: &str, resp: &mut reqwest::Response, ok: &[StatusCode]) -> Result<(), FetchError> {
    let status = resp.status();
    if ok.contains(&status) {
        return Ok(());
    }
    if status == StatusCode::FORBIDDEN {
        return Err(FetchError::Unauthorized { url: url.to_string(), why: "403 Forbidden".into() });
    }
    // A short excerpt of the registry's error body helps; never the whole thing.
    let mut body = String::new();
    if let Ok(Some(chunk)) = resp.chunk().await {
        body = String::from_utf8_lossy(&chunk[..chunk.len().min(200)]).trim().to_string();
    }
    Err(FetchError::Status { url: url.to_string(), status: status.as_u16(), body })
}

fn basic(cred: &Credential) -> HeaderValue {
    let raw = format!("{}:{}", cred.username, cred.password);
    let mut v = HeaderValue::from_str(&format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw)))
        .expect("base64 is a valid header value");
    v.set_sensitive(true);
    v
}

/// rustls needs one process-wide crypto provider; ring is built without C toolchains beyond cc.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
