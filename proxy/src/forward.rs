//! One request, start to end: find the service's table (loaded once, kept for the whole
//! request), the first matching rule, and act: a direct response, a redirect, or a route to
//! a weighted destination and one of its endpoints, with the request rewritten (hop-by-hop
//! headers out, forwarding headers and header operations in, path and authority rewritten,
//! the URI and version the upstream protocol needs) and the response passed back streaming.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

use crate::body::ProxyBody;
use crate::compiled::{Action, CompiledRule, Target};
use crate::connection::{ConnContext, RequestGuard};
use crate::cors::CorsVerdict;
use crate::header_value::{Context, RequestFacts};
use crate::headers::{HeaderOps, UpgradeKind, add_forwarding, strip_hop_by_hop};
use crate::matching::RequestView;
use crate::outlier::Outcome;
use crate::pool::InFlight;
use crate::request_body::{BodyCopy, CopyHandle, RequestBody, StreamState};
use crate::respond::{self, CountAs};
use crate::stats::ProxyStats;
use crate::upgrade;
use crate::upstream::{Sent, UpstreamError};

pub(crate) async fn handle(conn: Arc<ConnContext>, req: Request<Incoming>) -> Response<ProxyBody> {
    let guard = conn.activity.begin();
    let mut response = serve(&conn, req, guard).await;
    match response.extensions_mut().remove::<CountAs>() {
        None => conn.shared.stats.response(response.status()),
        Some(CountAs(Some(status))) => conn.shared.stats.response(status),
        Some(CountAs(None)) => {}
    }
    response
}

/// `response` with the response header operations `levels`, whose values read `ctx` and
/// the request's headers `request`.
fn with_ops(
    mut response: Response<ProxyBody>,
    levels: &[HeaderOps],
    ctx: &Context<'_>,
    request: &HeaderMap,
) -> Response<ProxyBody> {
    for level in levels {
        level.apply_response(response.headers_mut(), ctx, request);
    }
    response
}

/// A local reply (direct response, redirect) with its rule's response operations.
fn local_reply(
    response: Response<ProxyBody>,
    rule: &CompiledRule,
    conn: &ConnContext,
    parts: &http::request::Parts,
    started: &OnceLock<SystemTime>,
) -> Response<ProxyBody> {
    let ops = &rule.response_ops;
    if ops.is_empty() {
        return response;
    }
    let facts = ops.is_dynamic().then(|| RequestFacts {
        method: parts.method.clone(),
        uri: parts.uri.clone(),
    });
    let ctx = conn.format_context(parts.version, None, rule, facts.as_ref(), started);
    with_ops(response, std::slice::from_ref(ops), &ctx, &parts.headers)
}

async fn serve(
    conn: &ConnContext,
    req: Request<Incoming>,
    guard: RequestGuard,
) -> Response<ProxyBody> {
    let shared = &conn.shared;
    let stats = &shared.stats;
    let table = match shared.tables.get(conn.vip) {
        Some(table) => {
            if !Arc::ptr_eq(&conn.table.load(), &table) {
                conn.table.store(table.clone());
            }
            table
        }
        // The service left the proxy since this connection came, which now drains: its
        // last requests are served as they would have been (a 503 would fail them).
        None => conn.table.load_full(),
    };
    let grpc = is_grpc(&req);
    if req.method() == Method::CONNECT {
        // Envoy routes CONNECT only with a connect matcher, which Istio does not configure.
        ProxyStats::add(&stats.no_route);
        return respond::no_route(grpc);
    }
    let upgrade = match upgrade_kind(req.version(), req.headers()) {
        Some(UpgradeKind::WebSocket) => true,
        // Served as a plain request: the hop-by-hop strip below drops the upgrade headers.
        Some(UpgradeKind::H2c) | None => false,
        Some(UpgradeKind::Other) => {
            tracing::debug!(
                "{}: upgrade {:?} refused (only WebSocket is enabled, as in Istio)",
                conn.vip,
                req.headers().get(header::UPGRADE)
            );
            return respond::error(StatusCode::FORBIDDEN, "", grpc);
        }
    };
    let (mut parts, body) = req.into_parts();
    let started = OnceLock::new();
    let view = RequestView::new(&parts);
    let Some((rule, matched)) = table.route(&view) else {
        ProxyStats::add(&stats.no_route);
        return respond::no_route(grpc);
    };
    // Envoy's fault filter: after the route is chosen, before anything else of it.
    if let Some(fault) = &rule.fault {
        if let Some(delay) = fault.delay() {
            ProxyStats::add(&stats.faults_delayed);
            tokio::time::sleep(delay).await;
        }
        if let Some(response) = fault.abort(grpc) {
            ProxyStats::add(&stats.faults_aborted);
            return local_reply(response, rule, conn, &parts, &started);
        }
    }
    // Envoy's CORS filter: a preflight from an allowed origin is answered here, and any other
    // request from one gets the allowances on its response.
    let cors = match rule
        .cors
        .as_ref()
        .map(|c| c.check(&parts.method, &parts.headers))
    {
        Some(CorsVerdict::Preflight(response)) => {
            return local_reply(response, rule, conn, &parts, &started);
        }
        Some(CorsVerdict::Allowed(headers)) => headers,
        Some(CorsVerdict::Pass) | None => HeaderMap::new(),
    };
    let route = match &rule.action {
        Action::Direct { status, body } => {
            let mut response = respond::local(*status, body.clone());
            response.headers_mut().extend(cors);
            return local_reply(response, rule, conn, &parts, &started);
        }
        Action::Redirect(redirect) => {
            let mut response =
                respond::redirect(redirect.status, &redirect.location(&view, matched));
            response.headers_mut().extend(cors);
            return local_reply(response, rule, conn, &parts, &started);
        }
        Action::Route(route) => route,
    };
    let Some(target) = route.pick() else {
        // No destination could be resolved (Envoy: cluster not found).
        ProxyStats::add(&stats.no_cluster);
        return respond::error(StatusCode::SERVICE_UNAVAILABLE, "", grpc);
    };
    let cluster = &table.clusters[target.cluster];
    let version = parts.version;
    let facts = target.dynamic.then(|| RequestFacts {
        method: parts.method.clone(),
        uri: parts.uri.clone(),
    });
    let hashed = cluster
        .hash_key()
        .map(|key| key.hash(&parts.headers, view.query, conn.peer))
        .unwrap_or_default();
    let Some(mut endpoint) = cluster.pick(hashed.hash) else {
        ProxyStats::add(&stats.no_healthy_upstream);
        let ctx = conn.format_context(version, None, rule, facts.as_ref(), &started);
        let response = respond::no_healthy_upstream(grpc);
        return with_ops(response, &target.response_ops, &ctx, &parts.headers);
    };
    let upstream = Some((endpoint.addr, &*cluster.name, cluster.http2));
    let ctx = conn.format_context(version, upstream, rule, facts.as_ref(), &started);
    let path = rule
        .rewrite
        .as_ref()
        .map(|r| r.apply(view.path_and_query, matched));
    let authority = authority(target, view.authority, conn);

    strip_hop_by_hop(&mut parts.headers, upgrade, true);
    add_forwarding(&mut parts.headers, &conn.forwarded_for);
    for level in &target.request_ops {
        level.apply_request(&mut parts.headers, &ctx);
    }
    // What response operations read of the request, once the request is gone upstream.
    let request_headers = if target.response_reads_request {
        parts.headers.clone()
    } else {
        HeaderMap::new()
    };
    let http2 = cluster.http2 && !upgrade;
    let Some(uri) = upstream_uri(&parts.uri, path, &authority, http2) else {
        return respond::error(StatusCode::BAD_REQUEST, "", grpc);
    };
    parts.uri = uri;
    if http2 {
        parts.version = Version::HTTP_2;
        parts.headers.remove(header::HOST);
    } else {
        parts.version = Version::HTTP_11;
        parts.headers.insert(header::HOST, authority);
    }
    // Requests in flight to the cluster (`http2MaxRequests`): held until the response ends.
    let request_slot = match &endpoint.pool.limits {
        Some(limits) => match limits.request() {
            Some(slot) => Some(slot),
            None => {
                ProxyStats::add(&stats.overflows);
                let response = respond::overflow(grpc);
                return with_ops(response, &target.response_ops, &ctx, &request_headers);
            }
        },
        None => None,
    };
    let state = Arc::new(StreamState::default());
    let mut body = RequestBody::new(body, state.clone());
    // A body that may be sent again (a retry) or copied (a mirror) is teed as it streams.
    let bodiless = http_body::Body::is_end_stream(&body);
    let copy = (!bodiless && !upgrade && (rule.retry.attempts > 0 || !rule.mirrors.is_empty()))
        .then(|| body.tee());
    if !rule.mirrors.is_empty() {
        let sent_with = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(Authority::as_str))
            .unwrap_or_default()
            .to_string();
        let mirrored = if bodiless {
            crate::mirror::Mirrored::Bodiless
        } else {
            match &copy {
                Some(copy) => crate::mirror::Mirrored::Teed(copy.clone()),
                None => crate::mirror::Mirrored::Streamed,
            }
        };
        crate::mirror::send_copies(
            &conn.shared,
            &table,
            &rule.mirrors,
            &parts,
            &sent_with,
            mirrored,
        );
    }
    let downstream_upgrade = if upgrade {
        parts.extensions.remove::<hyper::upgrade::OnUpgrade>()
    } else {
        None
    };
    // Nothing of the downstream connection's extensions belongs upstream.
    parts.extensions.clear();
    let mut request = Request::from_parts(parts, body);
    // The route's timeout runs from here to the response's end (a WebSocket tunnel, which
    // has no end, only to its response headers).
    let deadline = rule.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut in_flight = InFlight::new(&endpoint.pool);
    // Whether a try is at the endpoint now (its outcome not reported yet).
    let trying = std::sync::atomic::AtomicBool::new(false);
    let send = async {
        if upgrade {
            return shared.upstream.send_upgrade(&endpoint.pool, request).await;
        }
        // Retries go to another endpoint (Istio's previous-hosts predicate). A connect
        // failure gives the request back (it never left); after it left, a request is sent
        // again rebuilt from its head, with its body's copy when it had one (a body that
        // outgrew the copy, or had not ended, is not sent again).
        let retry = &rule.retry;
        let mut retries = retry.attempts;
        let head = (retries > 0).then(|| {
            (
                request.method().clone(),
                request.uri().clone(),
                request.version(),
                request.headers().clone(),
            )
        });
        let replay = || {
            if bodiless {
                Some(BodyCopy::default())
            } else {
                copy.as_ref().and_then(CopyHandle::ready)
            }
        };
        // Filled on a retry only: the common request allocates nothing for it.
        let mut tried = Vec::new();
        trying.store(true, Relaxed);
        loop {
            let attempt = shared.upstream.send(&endpoint.pool, request);
            let result = match retry.per_try_timeout {
                None => attempt.await,
                Some(limit) => tokio::time::timeout(limit, attempt)
                    .await
                    .unwrap_or(Err((UpstreamError::TryTimeout, None))),
            };
            let outcome = match &result {
                Ok(sent) => Some(Outcome::Status(sent.response.status().as_u16())),
                Err((UpstreamError::Connect(_), _)) => Some(Outcome::LocalFailure),
                Err((UpstreamError::Reset(_), _)) if !state.downstream_failed() => {
                    Some(Outcome::LocalFailure)
                }
                Err((UpstreamError::TryTimeout, _)) => Some(Outcome::Timeout),
                Err(_) => None,
            };
            // Reported once: the route's timeout (below) reports only a try in flight.
            trying.store(false, Relaxed);
            if let Some(outcome) = outcome {
                cluster.report(endpoint, outcome);
            }
            // A retry after the request left needs its body again: its copy, if it has
            // ended within the bound by now.
            let mut replayable = if head.is_some() && retries > 0 {
                replay()
            } else {
                None
            };
            let resend = replayable.is_some();
            let again = match &result {
                Ok(sent) => {
                    resend && retry.on_response(sent.response.status(), sent.response.headers())
                }
                Err((UpstreamError::Connect(_), Some(_))) => {
                    retries > 0 && retry.on_connect_failure()
                }
                Err((UpstreamError::Reset(_) | UpstreamError::TryTimeout, _)) => {
                    resend && retry.on_reset() && !state.downstream_failed()
                }
                Err(_) => false,
            };
            // Another endpoint to try, unless every one is ejected: then this answer stands
            // (where Envoy's retry would find no healthy upstream).
            if again {
                tried.push(endpoint.addr);
            }
            let Some(next) = again.then(|| cluster.pick_other(&tried)).flatten() else {
                return result.map_err(|(e, _)| e);
            };
            let back = match result {
                Err((_, back)) => back,
                Ok(_) => None,
            };
            retries -= 1;
            ProxyStats::add(&stats.retries);
            // Envoy's back-off before each retry (bounded by the route's timeout).
            tokio::time::sleep(retry.backoff(retry.attempts - retries)).await;
            tracing::debug!(
                "{} ({}): retried on another endpoint",
                cluster.name,
                endpoint.addr
            );
            endpoint = next;
            trying.store(true, Relaxed);
            in_flight = InFlight::new(&endpoint.pool);
            request = match (back, &head) {
                (Some(back), _) => back,
                (None, Some((method, uri, version, headers))) => {
                    let body = replayable
                        .take()
                        .map_or_else(RequestBody::empty, |c| c.body());
                    let mut again = Request::new(body);
                    *again.method_mut() = method.clone();
                    *again.uri_mut() = uri.clone();
                    *again.version_mut() = *version;
                    *again.headers_mut() = headers.clone();
                    again
                }
                // `resend` held: there is a head.
                (None, None) => unreachable!("a retry without the request"),
            };
        }
    };
    let sent = match deadline {
        None => send.await,
        Some(at) => match tokio::time::timeout_at(at, send).await {
            Ok(sent) => sent,
            Err(_) => {
                ProxyStats::add(&stats.upstream_timeouts);
                if trying.load(Relaxed) {
                    cluster.report(endpoint, Outcome::Timeout);
                }
                tracing::debug!(
                    "{} ({}): upstream request timeout",
                    cluster.name,
                    endpoint.addr
                );
                let response = respond::error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream request timeout",
                    grpc,
                );
                return with_ops(response, &target.response_ops, &ctx, &request_headers);
            }
        },
    };
    let Sent {
        mut response,
        pooled,
        place,
    } = match sent {
        Ok(sent) => sent,
        Err(UpstreamError::Connect(e)) => {
            ProxyStats::add(&stats.upstream_connect_errors);
            tracing::warn!("{} ({}): {e:#}", cluster.name, endpoint.addr);
            let response = respond::upstream_failure(true, grpc);
            return with_ops(response, &target.response_ops, &ctx, &request_headers);
        }
        Err(UpstreamError::Reset(e)) if state.downstream_failed() => {
            ProxyStats::add(&stats.downstream_resets);
            tracing::debug!("{}: the client went away: {e}", cluster.name);
            return respond::client_gone();
        }
        Err(UpstreamError::Reset(e)) => {
            ProxyStats::add(&stats.upstream_resets);
            tracing::debug!("{} ({}): {e}", cluster.name, endpoint.addr);
            let response = respond::upstream_failure(false, grpc);
            return with_ops(response, &target.response_ops, &ctx, &request_headers);
        }
        Err(UpstreamError::Overflow) => {
            ProxyStats::add(&stats.overflows);
            tracing::debug!("{}: connection pool overflow", cluster.name);
            let response = respond::overflow(grpc);
            return with_ops(response, &target.response_ops, &ctx, &request_headers);
        }
        Err(UpstreamError::TryTimeout) => {
            ProxyStats::add(&stats.upstream_timeouts);
            tracing::debug!("{} ({}): per-try timeout", cluster.name, endpoint.addr);
            let response = respond::error(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream request timeout",
                grpc,
            );
            return with_ops(response, &target.response_ops, &ctx, &request_headers);
        }
    };
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let tunnel = if switching {
        downstream_upgrade.map(|down| (down, hyper::upgrade::on(&mut response)))
    } else {
        None
    };
    let (mut head, body) = response.into_parts();
    strip_hop_by_hop(&mut head.headers, switching, false);
    for level in &target.response_ops {
        level.apply_response(&mut head.headers, &ctx, &request_headers);
    }
    if let Some(cookie) = hashed.set_cookie {
        head.headers.append(header::SET_COOKIE, cookie);
    }
    head.headers.extend(cors);
    head.version = Version::HTTP_11;
    head.extensions.clear();
    if let Some((downstream, upstream)) = tunnel {
        let hold = Box::new((in_flight, request_slot, guard, conn.open.clone(), place));
        upgrade::tunnel(downstream, upstream, hold, shared.shutdown.clone());
        return Response::from_parts(head, ProxyBody::empty());
    }
    Response::from_parts(
        head,
        ProxyBody::upstream(
            body,
            Box::new((in_flight, pooled, request_slot, guard, place)),
            deadline,
        ),
    )
}

/// The upgrade an HTTP/1.1 request asks for (HTTP/2 has none: hyper refuses its
/// extended CONNECT unless enabled).
fn upgrade_kind(version: Version, headers: &http::HeaderMap) -> Option<UpgradeKind> {
    if version > Version::HTTP_11 {
        return None;
    }
    crate::headers::upgrade_kind(headers)
}

/// Whether a request is gRPC (its local error replies then take gRPC's form).
fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The authority to send: the rewrite's, else the request's, else the VIP the client dialed.
fn authority(target: &Target, request: Option<&str>, conn: &ConnContext) -> HeaderValue {
    if let Some(a) = &target.authority {
        return a.clone();
    }
    request
        .and_then(|a| HeaderValue::from_str(a).ok())
        .unwrap_or_else(|| {
            HeaderValue::from_str(&conn.vip.to_string())
                .unwrap_or(HeaderValue::from_static("localhost"))
        })
}

/// The request target for the upstream: origin-form for HTTP/1.1, absolute (scheme and
/// authority, which HTTP/2 sends as `:scheme` and `:authority`) for HTTP/2.
pub(crate) fn upstream_uri(
    uri: &Uri,
    path: Option<String>,
    authority: &HeaderValue,
    http2: bool,
) -> Option<Uri> {
    let path_and_query = match path {
        Some(p) => PathAndQuery::try_from(p).ok()?,
        None => uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    };
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = Some(path_and_query);
    if http2 {
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(Authority::try_from(authority.as_bytes()).ok()?);
    }
    Uri::from_parts(parts).ok()
}
