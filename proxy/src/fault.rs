//! Fault injection (a VirtualService rule's `fault`), as Envoy's fault filter applies it:
//! after the rule is matched and before anything is routed, a delay for `delay.percentage`
//! of the requests, then an abort for `abort.percentage` of them, answered by the proxy
//! itself (`fault filter abort`, or for a gRPC status a trailers-only gRPC reply).

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use vsteer_plan::http::{AbortStatus, Fault};

use crate::body::ProxyBody;
use crate::chance::Chance;
use crate::respond::{self, CountAs};

/// A rule's fault, ready to apply.
#[derive(Debug, Clone)]
pub(crate) struct CompiledFault {
    delay: Option<(Duration, Chance)>,
    abort: Option<(Abort, Chance)>,
}

#[derive(Debug, Clone)]
enum Abort {
    Http(StatusCode),
    /// gRPC's numeric status code.
    Grpc(u8),
}

/// Envoy's body for an injected abort.
const ABORT_BODY: &str = "fault filter abort";

impl CompiledFault {
    pub(crate) fn compile(fault: &Fault) -> Option<CompiledFault> {
        let delay = fault
            .delay
            .as_ref()
            .map(|d| (d.fixed, Chance::of_percent(d.percent)));
        let abort = fault.abort.as_ref().and_then(|a| {
            let abort = match &a.status {
                AbortStatus::Http(code) => Abort::Http(StatusCode::from_u16(*code).ok()?),
                AbortStatus::Grpc(name) => Abort::Grpc(grpc_code(name)?),
            };
            Some((abort, Chance::of_percent(a.percent)))
        });
        (delay.is_some() || abort.is_some()).then_some(CompiledFault { delay, abort })
    }

    /// The delay to wait for this request, if it draws one.
    pub(crate) fn delay(&self) -> Option<Duration> {
        self.delay
            .filter(|(_, chance)| chance.hit())
            .map(|(delay, _)| delay)
    }

    /// The reply that aborts this request, if it draws one; for a gRPC request an HTTP
    /// status goes in gRPC's form, as Envoy's local replies do.
    pub(crate) fn abort(&self, grpc: bool) -> Option<Response<ProxyBody>> {
        let (abort, chance) = self.abort.as_ref()?;
        if !chance.hit() {
            return None;
        }
        Some(match abort {
            Abort::Http(status) if grpc => respond::error(*status, ABORT_BODY, true),
            Abort::Http(status) => {
                respond::local(*status, Some(Bytes::from_static(ABORT_BODY.as_bytes())))
            }
            Abort::Grpc(code) => {
                let mut response = Response::new(ProxyBody::empty());
                // Counted by what it is on the wire: a 200 whose grpc-status says the error.
                response
                    .extensions_mut()
                    .insert(CountAs(Some(StatusCode::OK)));
                let headers = response.headers_mut();
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
                headers.insert("grpc-status", HeaderValue::from(u16::from(*code)));
                headers.insert("grpc-message", HeaderValue::from_static(ABORT_BODY));
                response
            }
        })
    }
}

/// gRPC's status code for a name Istio's `grpcStatus` takes (`UNAVAILABLE`), or a number.
fn grpc_code(name: &str) -> Option<u8> {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    let upper = name.to_ascii_uppercase();
    match NAMES.iter().position(|n| *n == upper) {
        Some(code) => u8::try_from(code).ok(),
        None => name.parse().ok().filter(|code| *code < 17),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_status_names_and_numbers() {
        assert_eq!(grpc_code("UNAVAILABLE"), Some(14));
        assert_eq!(grpc_code("unavailable"), Some(14));
        assert_eq!(grpc_code("OK"), Some(0));
        assert_eq!(grpc_code("16"), Some(16));
        assert_eq!(grpc_code("17"), None);
        assert_eq!(grpc_code("NOPE"), None);
    }
}
