//! TLS passthrough: a TLS port's connections routed by the SNI of their ClientHello,
//! never terminated, as Istio's TLS filter chains with Envoy's TLS inspector. The
//! ClientHello is read (over as many records as it spans, up to 64 KiB, within the header
//! timeout) and kept; the most
//! specific SNI pattern wins (an exact name over a wildcard, a longer wildcard over a
//! shorter, then rule order, as Envoy's filter chain match); a connection without TLS or
//! SNI (unless a rule has `*`), or whose SNI no rule takes, goes to the service's
//! connect-time route. The chosen
//! endpoint gets the ClientHello and then both directions are spliced until either closes.
//! Also a sniffed port's (no protocol declared) connections that do not speak HTTP, passed
//! to its connect-time route, as Istio's protocol detection sends them to its TCP chain.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vsteer_plan::http::TlsRoutes;

use crate::compiled::CompiledTable;
use crate::connection::OpenConnection;
use crate::outlier::Outcome;
use crate::proxy::Shared;
use crate::stats::ProxyStats;

/// A TLS record's header and the largest record payload TLS allows.
const RECORD_HEADER: usize = 5;
const MAX_RECORD: usize = 16_384 + 2_048;

/// An SNI pattern: `a.example.com`, or `*.example.com` (any name under it), or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SniPattern {
    Exact(Box<str>),
    /// The suffix with its dot: `.example.com`.
    Wildcard(Box<str>),
    Any,
}

impl SniPattern {
    fn new(pattern: &str) -> SniPattern {
        match pattern.strip_prefix('*') {
            Some("") => SniPattern::Any,
            Some(suffix) => SniPattern::Wildcard(suffix.to_ascii_lowercase().into()),
            None => SniPattern::Exact(pattern.to_ascii_lowercase().into()),
        }
    }

    /// How specifically it matches `sni` (lower case): `None` not at all; exact names
    /// above every wildcard, longer wildcards above shorter ones.
    fn rank(&self, sni: &str) -> Option<usize> {
        match self {
            SniPattern::Exact(name) => (**name == *sni).then_some(usize::MAX),
            SniPattern::Wildcard(suffix) => {
                (sni.len() > suffix.len() && sni.ends_with(&**suffix)).then_some(suffix.len() + 1)
            }
            SniPattern::Any => Some(0),
        }
    }
}

/// One `tls` rule, compiled.
#[derive(Debug)]
struct Rule {
    sni: Vec<SniPattern>,
    /// (cluster, running sum of weights).
    targets: Vec<(usize, u64)>,
    total: u64,
}

/// A TLS port's routes, compiled for serving.
#[derive(Debug)]
pub(crate) struct CompiledTls {
    rules: Vec<Rule>,
    fallback: Option<usize>,
}

impl CompiledTls {
    pub(crate) fn compile(routes: &TlsRoutes) -> CompiledTls {
        let rules = routes
            .rules
            .iter()
            .map(|r| {
                let mut upto = 0;
                let targets = r
                    .destinations
                    .iter()
                    .map(|d| {
                        upto += u64::from(d.weight);
                        (d.cluster, upto)
                    })
                    .collect();
                Rule {
                    sni: r.sni_hosts.iter().map(|h| SniPattern::new(h)).collect(),
                    targets,
                    total: upto,
                }
            })
            .collect();
        CompiledTls {
            rules,
            fallback: routes.fallback,
        }
    }

    /// The cluster for a connection with `sni`: the most specific rule's (by weight), else
    /// the fallback; and whether a rule took it.
    fn cluster(&self, sni: Option<&str>) -> Option<(usize, bool)> {
        // `*` is Istio's match-all chain: it also takes connections without SNI or TLS.
        let any = || {
            self.rules
                .iter()
                .find(|rule| rule.sni.contains(&SniPattern::Any))
        };
        let chosen = sni.map_or_else(any, |sni| {
            let sni = sni.to_ascii_lowercase();
            self.rules
                .iter()
                .enumerate()
                .filter_map(|(i, rule)| {
                    let rank = rule.sni.iter().filter_map(|p| p.rank(&sni)).max()?;
                    // Higher rank first, then the earlier rule.
                    Some((rank, std::cmp::Reverse(i), rule))
                })
                .max_by_key(|(rank, order, _)| (*rank, *order))
                .map(|(_, _, rule)| rule)
        });
        match chosen {
            Some(rule) if rule.total > 0 => {
                let r = fastrand::u64(..rule.total);
                rule.targets
                    .iter()
                    .find(|(_, upto)| r < *upto)
                    .map(|(cluster, _)| (*cluster, true))
            }
            Some(_) => None,
            None => self.fallback.map(|c| (c, false)),
        }
    }
}

/// Serves one TLS connection to `vip` by `table`'s TLS routes.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    peer: SocketAddr,
    vip: SocketAddr,
    table: Arc<CompiledTable>,
    open: OpenConnection,
) {
    let Some(tls) = &table.tls else {
        return;
    };
    let _open = open;
    let stats = &shared.stats;
    let mut hello = Vec::with_capacity(1024);
    // A client that says nothing in time has no SNI: it takes the fallback route, as the
    // TLS inspector lets such connections continue.
    let sni = match tokio::time::timeout(
        shared.options.header_read_timeout,
        read_sni(&mut stream, &mut hello),
    )
    .await
    {
        Ok(Ok(sni)) => sni,
        Ok(Err(e)) => {
            tracing::debug!("TLS connection from {peer} to {vip}: {e}");
            return;
        }
        Err(_) => None,
    };
    let Some((index, by_sni)) = tls.cluster(sni.as_deref()) else {
        ProxyStats::add(&stats.tls_failed);
        tracing::debug!("TLS connection from {peer} to {vip} (SNI {sni:?}): no route; closed");
        return;
    };
    let counter = if by_sni {
        &stats.tls_by_sni
    } else {
        &stats.tls_fallback
    };
    if !pass_to(&shared, stream, peer, &table, index, &hello, counter).await {
        ProxyStats::add(&stats.tls_failed);
    }
}

/// Serves a connection to a sniffed port: as HTTP when it speaks HTTP (its first bytes
/// are an HTTP/1.x request line or the HTTP/2 preface, within the header timeout), else
/// passed through to the connect-time route, as Istio's protocol detection does.
pub(crate) async fn serve_sniffed(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    vip: SocketAddr,
    table: Arc<CompiledTable>,
    open: OpenConnection,
) {
    let http = match tokio::time::timeout(shared.options.header_read_timeout, speaks_http(&stream))
        .await
    {
        Ok(Ok(http)) => http,
        Ok(Err(e)) => {
            tracing::debug!("connection from {peer} to {vip}: {e}");
            return;
        }
        // Nothing said in time: not HTTP (a server-first protocol waits for the server).
        Err(_) => false,
    };
    if http {
        crate::connection::serve(shared, stream, peer, vip, table, open).await;
        return;
    }
    let _open = open;
    let Some(index) = table.sniffed.and_then(|s| s.fallback) else {
        tracing::debug!("connection from {peer} to {vip}: not HTTP and no tcp route; closed");
        return;
    };
    pass_to(
        &shared,
        stream,
        peer,
        &table,
        index,
        &[],
        &shared.stats.opaque_connections,
    )
    .await;
}

/// Whether the connection's first bytes (peeked, left for whoever serves it) speak HTTP.
async fn speaks_http(stream: &TcpStream) -> std::io::Result<bool> {
    let mut buf = vec![0u8; MAX_REQUEST_LINE];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed before a byte was sent",
            ));
        }
        if let Some(http) = looks_like_http(&buf[..n]) {
            return Ok(http);
        }
        // Part of a request line: a peek returns at once while anything is buffered, so
        // look again after a short pause (the header timeout bounds it).
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Longest request line looked at before calling a connection not HTTP.
const MAX_REQUEST_LINE: usize = 8192;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// `Some(true)`: an HTTP/1.x request line or the HTTP/2 preface; `Some(false)`: neither;
/// `None`: too little to tell yet.
fn looks_like_http(bytes: &[u8]) -> Option<bool> {
    let n = bytes.len().min(H2_PREFACE.len());
    if bytes[..n] == H2_PREFACE[..n] {
        return (bytes.len() >= H2_PREFACE.len()).then_some(true);
    }
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    let method = bytes.iter().take_while(|b| tchar(**b)).count();
    match bytes.get(method) {
        None if bytes.len() < MAX_REQUEST_LINE => return None,
        Some(b' ') if method > 0 => {}
        _ => return Some(false),
    }
    let Some(end) = bytes.windows(2).position(|w| w == b"\r\n") else {
        return if bytes.len() < MAX_REQUEST_LINE {
            None
        } else {
            Some(false)
        };
    };
    let line = &bytes[..end];
    let mut parts = line.split(|b| *b == b' ');
    let (_, target, version) = (parts.next(), parts.next(), parts.next());
    Some(
        parts.next().is_none()
            && target.is_some_and(|t| !t.is_empty())
            && matches!(version, Some(b"HTTP/1.1") | Some(b"HTTP/1.0")),
    )
}

/// Passes `stream` to an endpoint of cluster `index` of `table`: `prefix` (bytes already
/// read from it) first, then both directions until either closes; counted in `counter`
/// once connected. False when no endpoint could be had.
async fn pass_to(
    shared: &Shared,
    mut stream: TcpStream,
    peer: SocketAddr,
    table: &CompiledTable,
    index: usize,
    prefix: &[u8],
    counter: &std::sync::atomic::AtomicU64,
) -> bool {
    let stats = &shared.stats;
    let Some(cluster) = table.clusters.get(index) else {
        return false;
    };
    // A consistent hash has only the client's address to go on (`useSourceIp`); other keys
    // are request data, which a passed-through connection has none of.
    let hash = cluster
        .hash_key()
        .and_then(|key| key.hash(&http::HeaderMap::new(), None, peer).hash);
    let Some(endpoint) = cluster.pick(hash) else {
        tracing::debug!(
            "{}: no healthy endpoint for a connection; closed",
            cluster.name
        );
        return false;
    };
    // A connection of the endpoint's pool: its cluster's `maxConnections` count it.
    let Some(_place) = endpoint.pool.reserve() else {
        ProxyStats::add(&stats.overflows);
        return false;
    };
    let mut upstream = match shared.upstream.connect(&endpoint.pool).await {
        Ok(upstream) => upstream,
        Err(e) => {
            ProxyStats::add(&stats.upstream_connect_errors);
            cluster.report(endpoint, Outcome::LocalFailure);
            tracing::warn!("{} ({}): {e:#}", cluster.name, endpoint.addr);
            return false;
        }
    };
    cluster.report(endpoint, Outcome::Connected);
    ProxyStats::add(counter);
    if !prefix.is_empty() && upstream.write_all(prefix).await.is_err() {
        return false;
    }
    let _in_flight = crate::pool::InFlight::new(&endpoint.pool);
    let mut shutdown = shared.shutdown.clone();
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut stream, &mut upstream) => {}
        // On shutdown a tunnel gets the drain timeout to finish, then is closed.
        _ = async {
            crate::proxy::stopped(&mut shutdown).await;
            tokio::time::sleep(shared.options.drain_timeout).await;
        } => {}
    }
    true
}

/// Reads TLS handshake records into `hello` until they hold the whole ClientHello (which
/// may span several records, as Envoy's inspector reassembles it, up to
/// [`MAX_CLIENT_HELLO`]) and returns its SNI; `None` when the client does not speak TLS,
/// sends no SNI, or a ClientHello over the bound.
async fn read_sni(stream: &mut TcpStream, hello: &mut Vec<u8>) -> std::io::Result<Option<String>> {
    loop {
        match client_hello_in(hello) {
            Reassembly::Done(handshake) => return Ok(sni_of(&handshake)),
            Reassembly::NotTls => return Ok(None),
            Reassembly::NeedMore => {}
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed before a ClientHello",
            ));
        }
        hello.extend_from_slice(&chunk[..n]);
    }
}

/// The largest ClientHello read (Envoy's TLS inspector's bound).
const MAX_CLIENT_HELLO: usize = 64 * 1024;

enum Reassembly {
    /// The handshake message (type, length and body), whole.
    Done(Vec<u8>),
    NotTls,
    NeedMore,
}

/// The first handshake message of the records in `bytes`, if they hold all of it.
fn client_hello_in(bytes: &[u8]) -> Reassembly {
    let mut handshake = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + RECORD_HEADER) {
        if header[0] != 0x16 {
            return Reassembly::NotTls;
        }
        let length = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if length > MAX_RECORD {
            return Reassembly::NotTls;
        }
        let Some(payload) = bytes.get(at + RECORD_HEADER..at + RECORD_HEADER + length) else {
            return Reassembly::NeedMore;
        };
        handshake.extend_from_slice(payload);
        at += RECORD_HEADER + length;
        if let Some(len) = handshake.get(1..4) {
            let whole =
                4 + (usize::from(len[0]) << 16 | usize::from(len[1]) << 8 | usize::from(len[2]));
            if whole > MAX_CLIENT_HELLO {
                return Reassembly::NotTls;
            }
            if handshake.len() >= whole {
                handshake.truncate(whole);
                return Reassembly::Done(handshake);
            }
        }
    }
    match bytes.first() {
        Some(first) if *first != 0x16 => Reassembly::NotTls,
        _ => Reassembly::NeedMore,
    }
}

/// The host name of the SNI extension of the ClientHello `handshake` (the message, from
/// its type on), lower case.
fn sni_of(handshake: &[u8]) -> Option<String> {
    use tls_parser::{TlsExtension, TlsMessage, TlsMessageHandshake};
    let (_, message) = tls_parser::parse_tls_message_handshake(handshake).ok()?;
    let TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)) = message else {
        return None;
    };
    let (_, extensions) = tls_parser::parse_tls_client_hello_extensions(hello.ext?).ok()?;
    extensions.iter().find_map(|extension| match extension {
        TlsExtension::SNI(names) => names
            .iter()
            .find(|(kind, _)| kind.0 == 0)
            .and_then(|(_, name)| std::str::from_utf8(name).ok())
            .map(str::to_ascii_lowercase),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vsteer_plan::http::{TlsDestination, TlsRule};
    use vsteer_plan::{RouteRef, RuleRef};

    #[test]
    fn http_is_told_from_other_protocols_by_its_first_bytes() {
        assert_eq!(
            looks_like_http(b"GET /a HTTP/1.1\r\nhost: x\r\n"),
            Some(true)
        );
        assert_eq!(looks_like_http(b"OPTIONS * HTTP/1.0\r\n"), Some(true));
        assert_eq!(looks_like_http(H2_PREFACE), Some(true));
        assert_eq!(looks_like_http(b"PRI * HTT"), None);
        assert_eq!(looks_like_http(b"GET /a HT"), None);
        assert_eq!(looks_like_http(b"GE"), None);
        assert_eq!(looks_like_http(b"GET /a SMTP/1.1\r\n"), Some(false));
        assert_eq!(looks_like_http(&[0x16, 0x03, 0x01, 0x00]), Some(false));
        assert_eq!(looks_like_http(b"\x00\x00\x00\x08"), Some(false));
        assert_eq!(looks_like_http(b"hello there\r\n"), Some(false));
        assert_eq!(looks_like_http(b"EHLO example.com\r\n"), Some(false));
    }

    fn sni_in(bytes: &[u8]) -> Option<String> {
        match client_hello_in(bytes) {
            Reassembly::Done(handshake) => sni_of(&handshake),
            Reassembly::NotTls => None,
            Reassembly::NeedMore => panic!("more bytes wanted"),
        }
    }

    #[test]
    fn the_sni_of_a_client_hello_is_read_and_none_without_one() {
        let hello = vsteer_testkit::tls::client_hello(Some("API.Example.com"));
        assert_eq!(sni_in(&hello).as_deref(), Some("api.example.com"));
        assert_eq!(sni_in(&vsteer_testkit::tls::client_hello(None)), None);
        assert_eq!(sni_in(b"GET / HTTP/1.1\r\n\r\n"), None);
        // Any cut before its end wants more.
        for cut in [1, 4, 5, 20, hello.len() - 1] {
            assert!(
                matches!(client_hello_in(&hello[..cut]), Reassembly::NeedMore),
                "{cut}"
            );
        }
    }

    #[test]
    fn a_client_hello_over_several_records_is_reassembled() {
        let hello = vsteer_testkit::tls::client_hello(Some("split.example.com"));
        let payload = &hello[RECORD_HEADER..];
        // The same handshake in three records of a few bytes, then one over the bound.
        let mut split = Vec::new();
        for chunk in payload.chunks(payload.len() / 3 + 1) {
            split.extend_from_slice(&[0x16, 0x03, 0x01]);
            split.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            split.extend_from_slice(chunk);
        }
        assert_eq!(sni_in(&split).as_deref(), Some("split.example.com"));
        assert!(matches!(
            client_hello_in(&split[..split.len() - 1]),
            Reassembly::NeedMore
        ));
        let huge = vec![0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x02, 0x00, 0x00];
        assert!(
            matches!(client_hello_in(&huge), Reassembly::NotTls),
            "a 128 KiB ClientHello"
        );
    }

    fn rule(sni: &[&str], cluster: usize) -> TlsRule {
        TlsRule {
            route: RouteRef {
                resource: vsteer_model::ResourceId::new(
                    vsteer_model::Kind::VirtualService,
                    "default",
                    "t",
                ),
                rule: RuleRef::Default,
            },
            sni_hosts: sni.iter().map(|s| s.to_string()).collect(),
            destinations: vec![TlsDestination {
                cluster,
                weight: 1_000_000,
            }],
        }
    }

    #[test]
    fn the_most_specific_pattern_wins_then_the_first_rule_then_the_fallback() {
        let tls = CompiledTls::compile(&TlsRoutes {
            rules: vec![
                rule(&["*.example.com"], 0),
                rule(&["*.api.example.com"], 1),
                rule(&["a.api.example.com"], 2),
                rule(&["*.api.example.com"], 3),
                rule(&["*"], 4),
            ],
            fallback: Some(9),
        });
        let pick = |sni: Option<&str>| tls.cluster(sni);
        assert_eq!(pick(Some("a.api.example.com")), Some((2, true)));
        assert_eq!(pick(Some("b.api.example.com")), Some((1, true)));
        assert_eq!(pick(Some("www.example.com")), Some((0, true)));
        // A wildcard needs a label before its suffix.
        assert_eq!(pick(Some("example.com")), Some((4, true)));
        // `*` takes connections without SNI too (Istio's match-all chain).
        assert_eq!(pick(None), Some((4, true)));
        let without_any = CompiledTls::compile(&TlsRoutes {
            rules: vec![rule(&["a.example.com"], 0)],
            fallback: None,
        });
        assert_eq!(without_any.cluster(Some("b.example.com")), None);
        let with_fallback = CompiledTls::compile(&TlsRoutes {
            rules: vec![rule(&["a.example.com"], 0)],
            fallback: Some(9),
        });
        assert_eq!(with_fallback.cluster(None), Some((9, false)));
    }
}
