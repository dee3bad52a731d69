//! A rule's retry policy (`retries`), as Istio configures Envoy's: Istio's default when the
//! rule sets none (2 retries on `connect-failure,refused-stream,unavailable,cancelled,
//! retriable-status-codes` with 503 the retriable status), else `attempts` on `retryOn`
//! (Istio's default conditions when it is empty; numbers in it are retriable status codes).
//!
//! Each retry waits first, as Envoy's fully jittered exponential back-off: the n-th a random
//! time up to (2^n - 1) times the base interval (`backoff`, 25 ms unset), at most ten times
//! the base.
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
    /// The back-off's base interval.
    backoff: std::time::Duration,
}

/// Envoy's base interval of the retry back-off when none is set.
const DEFAULT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(25);

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
        let backoff = policy.and_then(|p| p.backoff).unwrap_or(DEFAULT_BACKOFF);
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
            backoff,
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

    /// How long to wait before retry `n` (1 for the first): random up to
    /// (2^n - 1) x base, capped at 10 x base.
    pub(crate) fn backoff(&self, n: u32) -> std::time::Duration {
        let base = self.backoff.as_micros().min(u128::from(u32::MAX)) as u64;
        let factor = (1u64 << n.clamp(1, 16)) - 1;
        let bound = base.saturating_mul(factor).min(base.saturating_mul(10));
        std::time::Duration::from_micros(fastrand::u64(0..=bound))
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
            backoff: None,
        }
    }

    #[test]
    fn the_back_off_grows_as_envoys_and_stops_at_ten_times_the_base() {
        let retry = CompiledRetry::compile(Some(&RetryPolicy {
            backoff: Some(std::time::Duration::from_millis(10)),
            ..policy(5, &["5xx"])
        }));
        let most = |n: u32| (0..2000).map(|_| retry.backoff(n)).max().unwrap();
        let ms = std::time::Duration::from_millis;
        // Up to 10, 30, 70, then 100 ms; 2,000 draws come within 5% of each bound.
        for (n, bound) in [
            (1, ms(10)),
            (2, ms(30)),
            (3, ms(70)),
            (4, ms(100)),
            (9, ms(100)),
        ] {
            let max = most(n);
            assert!(max <= bound && max * 20 >= bound * 19, "retry {n}: {max:?}");
        }
        assert_eq!(CompiledRetry::compile(None).backoff, DEFAULT_BACKOFF);
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
