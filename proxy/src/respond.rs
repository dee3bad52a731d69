//! Replies the proxy makes itself, with Envoy's status codes and bodies: 404 with no body when
//! no rule matches, 503 `no healthy upstream` for a destination without endpoints, 503
//! `upstream connect error or disconnect/reset before headers. reset reason: ...` when the
//! upstream fails (for gRPC requests all of these in gRPC's form), redirects with an empty
//! body, and direct responses (`text/plain` when they have a body).

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, LOCATION};
use http::{Response, StatusCode};

use crate::body::ProxyBody;

/// In a response's extensions: the status its request is counted under, when that is not
/// the response's own (`None`: not counted, the client is gone).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CountAs(pub Option<StatusCode>);

pub(crate) fn local(status: StatusCode, body: Option<Bytes>) -> Response<ProxyBody> {
    let mut response = match body {
        Some(body) if !body.is_empty() => {
            let mut r = Response::new(ProxyBody::full(body));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            r
        }
        _ => Response::new(ProxyBody::empty()),
    };
    *response.status_mut() = status;
    response
}

/// A reply for a request that failed in the proxy; for a gRPC request in gRPC's form, as
/// Envoy sends it: HTTP 200 with `grpc-status` (the gRPC spec's mapping of the HTTP status)
/// and `grpc-message`, no body (a trailers-only response).
pub(crate) fn error(status: StatusCode, message: &'static str, grpc: bool) -> Response<ProxyBody> {
    if !grpc {
        let body = (!message.is_empty()).then(|| Bytes::from_static(message.as_bytes()));
        return local(status, body);
    }
    let code = match status.as_u16() {
        400 => "13",
        401 => "16",
        403 => "7",
        404 => "12",
        429 | 502..=504 => "14",
        _ => "2",
    };
    let mut response = Response::new(ProxyBody::empty());
    response.extensions_mut().insert(CountAs(Some(status)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from_static(code));
    if !message.is_empty() {
        headers.insert("grpc-message", HeaderValue::from_static(message));
    }
    response
}

/// For a request whose client went away: nobody reads it, nothing counts it.
pub(crate) fn client_gone() -> Response<ProxyBody> {
    let mut response = local(StatusCode::BAD_REQUEST, None);
    response.extensions_mut().insert(CountAs(None));
    response
}

pub(crate) fn no_route(grpc: bool) -> Response<ProxyBody> {
    error(StatusCode::NOT_FOUND, "", grpc)
}

pub(crate) fn no_healthy_upstream(grpc: bool) -> Response<ProxyBody> {
    error(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream", grpc)
}

/// The upstream failed before its response headers: Envoy's reply, with its reset reason.
pub(crate) fn upstream_failure(connect: bool, grpc: bool) -> Response<ProxyBody> {
    let message = if connect {
        "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
    } else {
        "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
    };
    error(StatusCode::SERVICE_UNAVAILABLE, message, grpc)
}

/// Envoy's answer when a circuit breaker (`connectionPool` limit) overflows.
pub(crate) fn overflow(grpc: bool) -> Response<ProxyBody> {
    let mut response = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "upstream connect error or disconnect/reset before headers. reset reason: overflow",
        grpc,
    );
    response
        .headers_mut()
        .insert("x-envoy-overloaded", HeaderValue::from_static("true"));
    response
}

pub(crate) fn redirect(status: StatusCode, location: &str) -> Response<ProxyBody> {
    let mut response = local(status, None);
    match HeaderValue::from_str(location) {
        Ok(v) => {
            response.headers_mut().insert(LOCATION, v);
        }
        Err(_) => *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR,
    }
    response
}
