//! The value of one header operation, built once per table from Envoy's format
//! (`vsteer_plan::header_format`): a constant (plain text, `%%` unescaped, the host name and
//! environment variables resolved at once), or parts filled per request from what the proxy
//! knows of it (`Context`). As in Envoy, an operator without a value expands to nothing and
//! a value that comes out empty adds no header.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::SystemTime;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri, Version};
use vsteer_plan::header_format::{self, AddressPart, Operator, Piece};

use crate::matching::query_param;

/// What a formatted value may read of its request.
pub(crate) struct Context<'a> {
    pub peer: SocketAddr,
    /// The original destination (VIP:port).
    pub vip: SocketAddr,
    /// The proxy's address the connection came in on.
    pub local: Option<SocketAddr>,
    pub version: Version,
    /// The endpoint, its cluster's name and whether it speaks HTTP/2 (none for local
    /// replies).
    pub upstream: Option<(SocketAddr, &'a str, bool)>,
    pub route_name: Option<&'a str>,
    /// The request as it came (kept only when a value reads it).
    pub request: Option<&'a RequestFacts>,
    /// When the request started, taken the first time a value asks.
    pub started: &'a OnceLock<SystemTime>,
}

/// What values read of the request besides its headers: its method and target as the client
/// sent them (before rewrites, as Envoy evaluates header operations).
#[derive(Debug)]
pub(crate) struct RequestFacts {
    pub method: Method,
    pub uri: Uri,
}

#[derive(Debug, Clone)]
pub(crate) enum Part {
    Text(Box<str>),
    Op(Operator, Option<usize>),
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// The same every time; `None`: empty, so never added.
    Static(Option<HeaderValue>),
    Format(Box<[Part]>),
}

impl Value {
    /// `text` parsed as Envoy does; `None` (with a warning naming `what`) when it is not a
    /// valid format or header value (the compiler rejects those first).
    pub(crate) fn compile(text: &str, what: &str) -> Option<Value> {
        let pieces = match header_format::parse(text) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("{what}: header value {text:?}: {e}; skipped");
                return None;
            }
        };
        let mut parts: Vec<Part> = Vec::new();
        for piece in pieces {
            let part = match piece {
                Piece::Text(t) => Part::Text(t.into()),
                // Known once and for all: resolved now.
                Piece::Op {
                    op: Operator::Hostname,
                    max_len,
                } => Part::Text(truncate(&hostname(), max_len).into()),
                Piece::Op {
                    op: Operator::Environment(name),
                    max_len,
                } => Part::Text(truncate(&std::env::var(name).unwrap_or_default(), max_len).into()),
                Piece::Op { op, max_len } => Part::Op(op, max_len),
            };
            match (parts.last_mut(), part) {
                (Some(Part::Text(prev)), Part::Text(t)) => *prev = format!("{prev}{t}").into(),
                (_, part) => parts.push(part),
            }
        }
        match parts.as_slice() {
            [] => Some(Value::Static(None)),
            [Part::Text(t)] => match HeaderValue::from_str(t) {
                Ok(v) => Some(Value::Static(Some(v))),
                Err(_) => {
                    tracing::warn!("{what}: {text:?} is not a valid header value; skipped");
                    None
                }
            },
            _ => Some(Value::Format(parts.into())),
        }
    }

    /// Whether the value changes from request to request.
    pub(crate) fn is_dynamic(&self) -> bool {
        matches!(self, Value::Format(_))
    }

    /// Whether the value reads request headers (which response operations must keep).
    pub(crate) fn reads_request_headers(&self) -> bool {
        match self {
            Value::Static(_) => false,
            Value::Format(parts) => parts
                .iter()
                .any(|p| matches!(p, Part::Op(Operator::Req { .. }, _))),
        }
    }

    /// The value for one request, whose headers are `request` (as they are when the value is
    /// written); `None`: empty (or not a valid header value), not added.
    pub(crate) fn evaluate(&self, ctx: &Context<'_>, request: &HeaderMap) -> Option<HeaderValue> {
        let parts = match self {
            Value::Static(v) => return v.clone(),
            Value::Format(parts) => parts,
        };
        let mut out = String::new();
        for part in parts.iter() {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Op(op, max_len) => {
                    let value = expand(op, ctx, request);
                    out.push_str(&truncate(&value, *max_len));
                }
            }
        }
        if out.is_empty() {
            return None;
        }
        HeaderValue::from_str(&out).ok()
    }
}

fn truncate(s: &str, max_len: Option<usize>) -> String {
    match max_len {
        Some(n) if n < s.len() => {
            let mut end = n;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s[..end].to_string()
        }
        _ => s.to_string(),
    }
}

fn address(addr: SocketAddr, part: AddressPart) -> String {
    let ip = addr.ip().to_canonical();
    match part {
        AddressPart::WithPort => SocketAddr::new(ip, addr.port()).to_string(),
        AddressPart::WithoutPort => ip.to_string(),
        AddressPart::Port => addr.port().to_string(),
    }
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

fn expand(op: &Operator, ctx: &Context<'_>, headers: &HeaderMap) -> String {
    match op {
        Operator::DownstreamRemote(part) => address(ctx.peer, *part),
        Operator::DownstreamLocal(part) => address(ctx.vip, *part),
        Operator::DownstreamDirectLocal(part) => {
            ctx.local.map(|a| address(a, *part)).unwrap_or_default()
        }
        Operator::UpstreamRemote(part) => ctx
            .upstream
            .map(|(a, _, _)| address(a, *part))
            .unwrap_or_default(),
        Operator::UpstreamCluster => ctx
            .upstream
            .map(|(_, c, _)| c.to_string())
            .unwrap_or_default(),
        Operator::Protocol => protocol(ctx.version).to_string(),
        Operator::UpstreamProtocol => ctx
            .upstream
            .map(|(_, _, h2)| if h2 { "HTTP/2" } else { "HTTP/1.1" }.to_string())
            .unwrap_or_default(),
        Operator::StartTime(format) => {
            crate::time_format::format(*ctx.started.get_or_init(SystemTime::now), format.as_deref())
        }
        Operator::EmitTime(format) => {
            crate::time_format::format(SystemTime::now(), format.as_deref())
        }
        Operator::Req {
            header,
            alternative,
        } => request_header(ctx, headers, header)
            .or_else(|| {
                alternative
                    .as_deref()
                    .and_then(|alt| request_header(ctx, headers, alt))
            })
            .unwrap_or_default(),
        Operator::RouteName => ctx.route_name.unwrap_or_default().to_string(),
        Operator::UniqueId => crate::headers::request_id()
            .to_str()
            .unwrap_or_default()
            .to_string(),
        Operator::QueryParam(name) => ctx
            .request
            .and_then(|r| query_param(r.uri.query(), name))
            .unwrap_or_default()
            .to_string(),
        // Resolved when compiled; nothing else has a value here.
        Operator::Hostname | Operator::Environment(_) | Operator::Unavailable(_) => String::new(),
    }
}

/// A request header by name, its first value; the pseudo-headers as Envoy exposes them.
fn request_header(ctx: &Context<'_>, headers: &HeaderMap, name: &str) -> Option<String> {
    let facts = ctx.request;
    match name {
        ":authority" => {
            return facts
                .and_then(|r| r.uri.authority())
                .map(|a| a.to_string())
                .or_else(|| {
                    headers
                        .get(http::header::HOST)
                        .and_then(|v| v.to_str().ok())
                        .map(String::from)
                });
        }
        ":path" => {
            return facts
                .and_then(|r| r.uri.path_and_query())
                .map(|p| p.to_string());
        }
        ":method" => return facts.map(|r| r.method.to_string()),
        ":scheme" => {
            return Some(
                facts
                    .and_then(|r| r.uri.scheme_str())
                    .unwrap_or("http")
                    .to_string(),
            );
        }
        _ => {}
    }
    let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
    let value = headers.get(name)?;
    Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
}

/// The node's host name (Envoy's `%HOSTNAME%`), empty when it cannot be read.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}
