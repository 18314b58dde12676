//! buildkitd's `sourceWithSession` as a source-resolver: turns the stargz
//! snapshotter's remote-layer labels into sources.
//!
//! A snapshot's labels carry one or more candidates, each under a unique id:
//! `containerd.io/snapshot/remote/stargz.reference.<id>` (the image
//! reference), `...stargz.digest.<id>` (the layer), `...stargz.layers.<id>`
//! (comma-separated digests of the image's layers) and
//! `...stargz.session.<n>.<id>` (build sessions for authentication). Each
//! candidate becomes a [`Source`] whose location is the image reference
//! (resolved again through the host's resolvers, i.e. "the same hosts as the
//! image"), with the target layer and the image's layers, target first, as
//! stargz's `FromDefaultLabels` orders them. Candidates whose reference,
//! digest or layers do not parse are skipped, as buildkit does. Session ids
//! are not passed on: authentication stays in the host.
//!
//! No config.

use berth_sdk::prelude::*;

pub const REFERENCE: &str = "containerd.io/snapshot/remote/stargz.reference";
pub const DIGEST: &str = "containerd.io/snapshot/remote/stargz.digest";
pub const LAYERS: &str = "containerd.io/snapshot/remote/stargz.layers";
pub const SESSION: &str = "containerd.io/snapshot/remote/stargz.session";

/// Validates an OCI digest (`sha256:<64 hex>`, `sha384:<96>`, `sha512:<128>`,
/// lowercase hex, as go-digest's `Parse` with its registered algorithms).
pub fn parse_digest(s: &str) -> Result<String, String> {
    let (alg, hex) = s.split_once(':').ok_or_else(|| format!("`{s}`: not algorithm:hex"))?;
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        other => return Err(format!("`{s}`: unsupported algorithm `{other}`")),
    };
    if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(format!("`{s}`: invalid {alg} hex"));
    }
    Ok(s.to_string())
}

/// Parses `host/path[:tag][@digest]` like containerd's `reference.Parse`:
/// the host is everything before the first `/`, the object starts at the
/// first `:` or `@` after it.
pub fn parse_reference(s: &str) -> Result<ImageReference, String> {
    if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{s}`: empty or contains spaces"));
    }
    let (host, path) = s.split_once('/').ok_or_else(|| format!("`{s}`: a hostname is required"))?;
    if host.is_empty() || host.contains('@') {
        return Err(format!("`{s}`: a hostname is required"));
    }
    let (repository, object) = match path.find([':', '@']) {
        Some(i) => (&path[..i], &path[i..]),
        None => (path, ""),
    };
    let repo_ok = !repository.is_empty()
        && repository.split('/').all(|c| {
            !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        });
    if !repo_ok {
        return Err(format!("`{s}`: invalid repository `{repository}`"));
    }
    let object = object.strip_prefix(':').unwrap_or(object);
    let (tag, digest) = match object.split_once('@') {
        Some((tag, digest)) => (tag, Some(parse_digest(digest)?)),
        None => (object, None),
    };
    let tag = if tag.is_empty() {
        None
    } else {
        let ok = tag.len() <= 128
            && tag.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !ok {
            return Err(format!("`{s}`: invalid tag `{tag}`"));
        }
        Some(tag.to_string())
    };
    Ok(ImageReference { registry: host.to_string(), repository: repository.to_string(), tag, digest })
}

/// One candidate's source, or why it was skipped.
fn candidate(labels: &[KeyValue], id: &str, reference: &str) -> Result<Source, String> {
    let reference = parse_reference(reference)?;
    let digest_text =
        berth_sdk::lookup(labels, &format!("{DIGEST}.{id}")).ok_or_else(|| format!("no {DIGEST}.{id} label"))?;
    let target = parse_digest(digest_text)?;
    let mut layers = vec![target.clone()];
    if let Some(list) = berth_sdk::lookup(labels, &format!("{LAYERS}.{id}")) {
        for l in list.split(',') {
            let d = parse_digest(l)?;
            if d != target {
                layers.push(d);
            }
        }
    }
    Ok(Source { location: SourceLocation::Reference(reference), target_digest: Some(target), layers })
}

pub struct StargzLabels;

impl SourceResolver for StargzLabels {
    fn info() -> PluginInfo {
        berth_sdk::plugin_info!("stargz remote-layer labels -> sources on the image's hosts")
    }

    fn resolve(request: ResolveRequest, _config: Config) -> Result<Vec<Source>, PluginError> {
        let prefix = format!("{REFERENCE}.");
        let mut sources = Vec::new();
        for kv in &request.labels {
            let Some(id) = kv.key.strip_prefix(&prefix) else { continue };
            match candidate(&request.labels, id, &kv.value) {
                Ok(source) => sources.push(source),
                Err(why) => berth_sdk::debug!("stargz-labels: skipping candidate {id}: {why}"),
            }
        }
        Ok(sources)
    }
}

berth_sdk::export!(StargzLabels as source_resolver);

#[cfg(test)]
mod tests {
    use super::*;
    use berth_sdk::testing;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn request(labels: &[(&str, &str)]) -> ResolveRequest {
        let mut r = testing::resolve_request("docker.io", "library/ubuntu", "latest");
        r.labels = labels.iter().map(|(k, v)| KeyValue::new(*k, *v)).collect();
        r
    }

    #[test]
    fn labels_become_sources() {
        let (a, b, c) = (d('a'), d('b'), d('c'));
        let layers = format!("{a},{b},{c}");
        let req = request(&[
            ("containerd.io/snapshot/remote/stargz.reference.1", "docker.io/library/ubuntu:22.04"),
            ("containerd.io/snapshot/remote/stargz.digest.1", &b),
            ("containerd.io/snapshot/remote/stargz.layers.1", &layers),
            ("containerd.io/snapshot/remote/stargz.session.0.1", "sess-x"),
            ("containerd.io/snapshot/remote/stargz.reference.2", &format!("ghcr.io/o/app@{c}")),
            ("containerd.io/snapshot/remote/stargz.digest.2", &c),
            ("unrelated", "x"),
        ]);
        let s = testing::resolve::<StargzLabels>(req, "").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0].location,
            SourceLocation::Reference(ImageReference {
                registry: "docker.io".into(),
                repository: "library/ubuntu".into(),
                tag: Some("22.04".into()),
                digest: None
            })
        );
        assert_eq!(s[0].target_digest.as_deref(), Some(b.as_str()));
        assert_eq!(s[0].layers, vec![b.clone(), a.clone(), c.clone()], "target first, then the others");
        match &s[1].location {
            SourceLocation::Reference(r) => {
                assert_eq!((r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()), ("ghcr.io", "o/app", None));
                assert_eq!(r.digest.as_deref(), Some(c.as_str()));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s[1].layers, vec![c]);
    }

    #[test]
    fn unparsable_candidates_are_skipped() {
        let a = d('a');
        let req = request(&[
            ("containerd.io/snapshot/remote/stargz.reference.bad", "not a reference"),
            ("containerd.io/snapshot/remote/stargz.digest.bad", &a),
            ("containerd.io/snapshot/remote/stargz.reference.nodigest", "docker.io/library/x:1"),
            ("containerd.io/snapshot/remote/stargz.reference.baddigest", "docker.io/library/x:1"),
            ("containerd.io/snapshot/remote/stargz.digest.baddigest", "sha256:xyz"),
            ("containerd.io/snapshot/remote/stargz.reference.badlayers", "docker.io/library/x:1"),
            ("containerd.io/snapshot/remote/stargz.digest.badlayers", &a),
            ("containerd.io/snapshot/remote/stargz.layers.badlayers", "sha256:1,"),
            ("containerd.io/snapshot/remote/stargz.reference.ok", "docker.io/library/x:1"),
            ("containerd.io/snapshot/remote/stargz.digest.ok", &a),
        ]);
        let s = testing::resolve::<StargzLabels>(req, "").unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].target_digest.as_deref(), Some(a.as_str()));
        assert_eq!(testing::take_logs().len(), 4);
        assert!(testing::resolve::<StargzLabels>(request(&[]), "").unwrap().is_empty());
    }

    #[test]
    fn reference_grammar() {
        assert!(parse_reference("busybox").is_err());
        assert!(parse_reference("docker.io/Library/x").is_err());
        assert!(parse_reference("docker.io/x:-bad").is_err());
        let r = parse_reference("localhost:5000/a/b:v1").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("localhost:5000", "a/b", Some("v1"))
        );
        assert!(parse_digest("sha256:ABC").is_err());
        assert!(parse_digest(&d('f')).is_ok());
    }
}
