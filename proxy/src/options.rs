//! The proxy's settings: where it listens, the mark of its own sockets, and the limits that
//! keep one bad client from holding resources (with defaults chosen after Envoy and nginx).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyOptions {
    pub listen: Vec<SocketAddr>,
    /// SO_MARK on every upstream socket (None in unprivileged tests).
    pub mark: Option<u32>,
    /// A client must send a request's headers within this time, else the connection is
    /// closed. Also bounds how long an idle HTTP/1.1 keep-alive connection stays open (hyper
    /// starts the timer when it waits for the next request) and the wait for the first
    /// request of any connection (including an HTTP/2 preface). Default 60 s (nginx's
    /// client_header_timeout).
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers) of HTTP/1.1, and header list of
    /// HTTP/2; beyond it: 431. Default 64 KiB (Envoy's limit is 60 KiB; hyper's floor is
    /// 8 KiB).
    pub max_header_bytes: usize,
    /// Most headers in one HTTP/1.1 request; beyond: 431. Default 100 (Envoy's and hyper's).
    pub max_headers: usize,
    /// A connection with no request in flight for this long is closed (HTTP/2 gets a GOAWAY
    /// first). Default 300 s.
    pub idle_timeout: Duration,
    /// Upstream connect timeout. Default 10 s (Istio's `connectTimeout` default).
    pub connect_timeout: Duration,
    /// Idle HTTP/1.1 upstream connections kept per endpoint. Default 128.
    pub max_idle_per_endpoint: usize,
    /// An idle pooled upstream connection older than this is not reused. Default 60 s (less
    /// than common servers' keep-alive timeouts, so the proxy rarely reuses a connection the
    /// server is closing).
    pub upstream_idle_timeout: Duration,
    /// Concurrent streams per downstream HTTP/2 connection. Default 1,024.
    pub http2_max_concurrent_streams: u32,
    /// On shutdown, in-flight requests get this long to finish. Default 5 s.
    pub drain_timeout: Duration,
    /// Workers, each serving a duplicate of every listener on a runtime of its own (the first
    /// to wake accepts a connection, and serves it to its end). Default 1.
    pub workers: usize,
}

/// The agent's default listen address: reachable by host processes only (a DaemonSet passes
/// the node IP so pods in their own network namespaces can reach it).
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 15001));

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            listen: vec![DEFAULT_LISTEN],
            mark: None,
            header_read_timeout: Duration::from_secs(60),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            max_idle_per_endpoint: 128,
            upstream_idle_timeout: Duration::from_secs(60),
            http2_max_concurrent_streams: 1024,
            drain_timeout: Duration::from_secs(5),
            workers: 1,
        }
    }
}
