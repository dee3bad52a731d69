//! A rule's retry policy (`retries`), as Istio configures Envoy's: Istio's default when the
//! rule sets none (2 retries on `connect-failure,refused-stream,unavailable,cancelled,
//! retriable-status-codes` with 503 the retriable status), else `attempts` on `retryOn`
//! (Istio's default conditions when it is empty; numbers in it are retriable status codes).
//!
//! A connect failure is retried for any request (it never left). Anything after the request
//! left (a reset, a retriable status) is retried only for a request without a body, which
//! can be sent again as it was; a request with a body is not buffered for it yet.

use http::{HeaderMap, StatusCode};
use vsteer_plan::http::RetryPolicy;

#[derive(Debug, Clone, Default)]
pub(crate) struct CompiledRetry {
    /// Retries after the first try.
    pub attempts: u32,
    pub per_try_timeout: Option<std::time::Duration>,
    connect_failure: bool,
    reset: bool,
    five_xx: bool,
    gateway_error: bool,
    retriable_4xx: bool,
    status_codes: Vec<u16>,
    /// gRPC status codes whose `grpc-status` in the response headers is retried.
    grpc: Vec<u8>,
}

/// Istio's default retry conditions.
const ISTIO_DEFAULT_ON: [&str; 5] = [
    "connect-failure",
    "refused-stream",
    "unavailable",
    "cancelled",
    "retriable-status-codes",
];

impl CompiledRetry {
    pub(crate) fn compile(policy: Option<&RetryPolicy>) -> CompiledRetry {
        let (attempts, per_try_timeout, on): (u32, _, Vec<&str>) = match policy {
            None => (2, None, ISTIO_DEFAULT_ON.to_vec()),
            Some(p) if p.retry_on.is_empty() => {
                (p.attempts, p.per_try_timeout, ISTIO_DEFAULT_ON.to_vec())
            }
            Some(p) => (
                p.attempts,
                p.per_try_timeout,
                p.retry_on.iter().map(String::as_str).collect(),
            ),
        };
        // Istio's default conditions come with 503 as the retriable status; an explicit
        // `retryOn` brings its own numbers (none: no status is retried).
        let default_codes = on == ISTIO_DEFAULT_ON;
        let mut retry = CompiledRetry {
            attempts,
            per_try_timeout: per_try_timeout.filter(|t| !t.is_zero()),
            ..CompiledRetry::default()
        };
        let mut status_codes_on = false;
        for condition in on {
            match condition {
                "connect-failure" => retry.connect_failure = true,
                "reset" => retry.reset = true,
                // Envoy retries only an HTTP/2 REFUSED_STREAM here, which guarantees the
                // request was not processed; vsteer cannot tell it from other resets yet,
                // so it retries none (a connect failure, which never left, still is).
                "refused-stream" => {}
                "5xx" => retry.five_xx = true,
                "gateway-error" => retry.gateway_error = true,
                "retriable-4xx" => retry.retriable_4xx = true,
                "retriable-status-codes" => status_codes_on = true,
                "cancelled" => retry.grpc.push(1),
                "deadline-exceeded" => retry.grpc.push(4),
                "resource-exhausted" => retry.grpc.push(8),
                "unavailable" => retry.grpc.push(14),
                other => {
                    // Istio passes numbers as retriable status codes.
                    if let Ok(code) = other.parse::<u16>() {
                        retry.status_codes.push(code);
                        status_codes_on = true;
                    }
                }
            }
        }
        if status_codes_on && default_codes {
            retry.status_codes.push(503);
        }
        if !status_codes_on {
            retry.status_codes.clear();
        }
        // Envoy counts a connect failure under 5xx, gateway-error and reset too.
        retry.connect_failure |= retry.five_xx || retry.gateway_error || retry.reset;
        retry
    }

    pub(crate) fn on_connect_failure(&self) -> bool {
        self.connect_failure
    }

    pub(crate) fn on_reset(&self) -> bool {
        self.reset || self.five_xx || self.gateway_error
    }

    /// Whether a response with `status` and `headers` is retried.
    pub(crate) fn on_response(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        let code = status.as_u16();
        (self.five_xx && status.is_server_error())
            || (self.gateway_error && matches!(code, 502..=504))
            || (self.retriable_4xx && code == 409)
            || self.status_codes.contains(&code)
            || headers
                .get("grpc-status")
                .and_then(|v| v.to_str().ok()?.parse::<u8>().ok())
                .is_some_and(|g| self.grpc.contains(&g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(attempts: u32, on: &[&str]) -> RetryPolicy {
        RetryPolicy {
            attempts,
            per_try_timeout: None,
            retry_on: on.iter().map(|s| s.to_string()).collect(),
            retry_remote_localities: false,
        }
    }

    fn status(code: u16) -> StatusCode {
        StatusCode::from_u16(code).unwrap()
    }

    #[test]
    fn istios_default_and_the_conditions() {
        let none = HeaderMap::new();
        let default = CompiledRetry::compile(None);
        assert_eq!(default.attempts, 2);
        assert!(default.on_connect_failure());
        assert!(
            !default.on_reset(),
            "a reset may have been processed: not retried"
        );
        assert!(default.on_response(status(503), &none));
        assert!(!default.on_response(status(500), &none));
        let mut unavailable = HeaderMap::new();
        unavailable.insert("grpc-status", "14".parse().unwrap());
        assert!(default.on_response(status(200), &unavailable));

        let five = CompiledRetry::compile(Some(&policy(3, &["5xx"])));
        assert_eq!(five.attempts, 3);
        assert!(five.on_response(status(500), &none) && five.on_connect_failure());
        let gateway = CompiledRetry::compile(Some(&policy(1, &["gateway-error"])));
        assert!(gateway.on_response(status(504), &none));
        assert!(!gateway.on_response(status(500), &none));
        let codes = CompiledRetry::compile(Some(&policy(1, &["retriable-status-codes", "418"])));
        assert!(codes.on_response(status(418), &none));
        assert!(!codes.on_response(status(503), &none));
        assert!(!codes.on_connect_failure());
        let bare = CompiledRetry::compile(Some(&policy(1, &["retriable-status-codes"])));
        assert!(
            !bare.on_response(status(503), &none),
            "no codes given: none retried"
        );
        let off = CompiledRetry::compile(Some(&policy(0, &[])));
        assert_eq!(off.attempts, 0);
    }
}
