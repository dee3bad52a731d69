//! A rule's `mirror`/`mirrors`: for `percentage` of the requests, a copy goes to the mirror
//! destination as Envoy's request mirroring sends it (the host or authority with `-shadow`
//! appended before any port), fire and forget: the copy runs on a task of its own and its
//! response and failures are dropped, so a slow or dead mirror never delays or fails the
//! request itself. A request's body is teed as it streams to the primary (see
//! `request_body`): the copy goes out once the body has ended, if it stayed within the
//! copy's bound; a larger body is not mirrored, and counted.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Version};

use crate::chance::Chance;
use crate::compiled::CompiledTable;
use crate::proxy::Shared;
use crate::request_body::{CopyHandle, RequestBody};
use crate::stats::ProxyStats;

/// The longest a copy may take to get its response headers (its body is dropped at once).
const MIRROR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// One mirror of a rule.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CompiledMirror {
    pub cluster: usize,
    pub chance: Chance,
}

/// `reviews-shadow` for `reviews`, `reviews-shadow:9080` for `reviews:9080`.
fn shadow_host(host: &str) -> String {
    let port_at = match host.rfind(':') {
        // An IPv6 literal's colons are inside its brackets.
        Some(at) if !host[at..].contains(']') => at,
        _ => host.len(),
    };
    format!("{}-shadow{}", &host[..port_at], &host[port_at..])
}

/// The body of a request to mirror.
pub(crate) enum Mirrored {
    Bodiless,
    /// Teed as it streams: the copies wait for it.
    Teed(CopyHandle),
    /// Not teed (never the case when the rule mirrors): not copied.
    Streamed,
}

/// Sends the copies `mirrors` draw of the request `parts` (as it goes upstream: headers
/// rewritten, `authority` the one it is sent with), with its body.
pub(crate) fn send_copies(
    shared: &Arc<Shared>,
    table: &CompiledTable,
    mirrors: &[CompiledMirror],
    parts: &http::request::Parts,
    authority: &str,
    body: Mirrored,
) {
    for mirror in mirrors.iter().filter(|m| m.chance.hit()) {
        let copied = match &body {
            Mirrored::Bodiless => None,
            Mirrored::Teed(handle) => Some(handle.clone()),
            Mirrored::Streamed => {
                ProxyStats::add(&shared.stats.mirrors_skipped);
                continue;
            }
        };
        let Some(cluster) = table.clusters.get(mirror.cluster) else {
            continue;
        };
        let Some(endpoint) = cluster.pick(None) else {
            ProxyStats::add(&shared.stats.mirrors_failed);
            continue;
        };
        let Ok(shadow) = HeaderValue::from_str(&shadow_host(authority)) else {
            continue;
        };
        // The request target the mirror's own protocol needs, as for the request itself.
        let Some(uri) = crate::forward::upstream_uri(&parts.uri, None, &shadow, cluster.http2)
        else {
            continue;
        };
        let version = if cluster.http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        let copy = Request::builder()
            .method(parts.method.clone())
            .version(version)
            .uri(uri);
        let Ok(mut copy) = copy.body(RequestBody::empty()) else {
            continue;
        };
        *copy.headers_mut() = parts.headers.clone();
        copy.headers_mut().remove(header::HOST);
        if copied.is_none() {
            copy.headers_mut().remove(header::CONTENT_LENGTH);
        }
        if !cluster.http2 {
            copy.headers_mut().insert(header::HOST, shadow);
        }
        let (shared, pool) = (shared.clone(), endpoint.pool.clone());
        tokio::spawn(async move {
            // Bounded: a mirror that never answers (or a body that never ends) must not
            // pile up tasks and sockets.
            let send = async {
                if let Some(handle) = copied {
                    let Some(whole) = handle.wait().await else {
                        ProxyStats::add(&shared.stats.mirrors_skipped);
                        return true;
                    };
                    *copy.body_mut() = whole.body();
                }
                ProxyStats::add(&shared.stats.mirrors_sent);
                shared.upstream.send(&pool, copy).await.is_ok()
            };
            if !matches!(tokio::time::timeout(MIRROR_TIMEOUT, send).await, Ok(true)) {
                ProxyStats::add(&shared.stats.mirrors_failed);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_hosts_keep_their_port() {
        assert_eq!(shadow_host("reviews"), "reviews-shadow");
        assert_eq!(shadow_host("reviews:9080"), "reviews-shadow:9080");
        assert_eq!(shadow_host("[fd00::1]:80"), "[fd00::1]-shadow:80");
        assert_eq!(shadow_host("[fd00::1]"), "[fd00::1]-shadow");
    }
}
