//! Replies the proxy makes itself, with Envoy's status codes and bodies: 404 with no body when
//! no rule matches, 503 `no healthy upstream` for a destination without endpoints, 503
//! `upstream connect error or disconnect/reset before headers. reset reason: ...` when the
//! upstream fails, redirects with an empty body, and direct responses (`text/plain` when they
//! have a body).

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, LOCATION};
use http::{Response, StatusCode};

use crate::body::ProxyBody;

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

pub(crate) fn no_route() -> Response<ProxyBody> {
    local(StatusCode::NOT_FOUND, None)
}

pub(crate) fn no_healthy_upstream() -> Response<ProxyBody> {
    local(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(Bytes::from_static(b"no healthy upstream")),
    )
}

/// `reason`: Envoy's reset reason, `connection failure` (connect) or `connection termination`.
pub(crate) fn upstream_failure(reason: &str) -> Response<ProxyBody> {
    local(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(Bytes::from(format!(
            "upstream connect error or disconnect/reset before headers. reset reason: {reason}"
        ))),
    )
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
