//! Header handling on the way through: Istio's header operations (remove first, then set and
//! add in Istio's order, values formatted as Envoy does: `header_value`; `host`/`:authority`
//! become an authority rewrite, as Istio turns them into Envoy's host_rewrite_literal), the
//! hop-by-hop headers a proxy must not forward
//! (RFC 9110 section 7.6.1), and the forwarding headers the proxy adds.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use vsteer_plan::http as plan;

use crate::header_value::{Context, Value};

/// One Envoy header-mutation level: removals, then additions in order (`append`: add one
/// more value; else replace every value). Values are Envoy formats, built once
/// ([`Value`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct HeaderOps {
    remove: Vec<HeaderName>,
    add: Vec<(HeaderName, Value, bool)>,
}

/// Whether Istio hands this header to Envoy as a header operation; `host` and pseudo-headers
/// are internal (only an authority rewrite may change them).
fn is_internal(name: &str) -> bool {
    name.starts_with(':') || name.eq_ignore_ascii_case("host")
}

fn is_authority(name: &str) -> bool {
    name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
}

impl HeaderOps {
    /// Compiles `ops` (`what` names them in warnings); also returns the authority they set
    /// (`set` wins over `add`, as in Istio; a literal, as Envoy's host_rewrite_literal).
    pub(crate) fn compile(ops: &plan::HeaderOps, what: &str) -> (HeaderOps, Option<HeaderValue>) {
        let mut out = HeaderOps::default();
        let (mut set_authority, mut add_authority) = (None, None);
        // Istio sorts each list by name, `set` entries before `add` entries.
        for (list, append) in [(&ops.set, false), (&ops.add, true)] {
            for (name, value) in list {
                if is_authority(name) {
                    let slot = if append {
                        &mut add_authority
                    } else {
                        &mut set_authority
                    };
                    *slot = HeaderValue::from_str(value).ok();
                    continue;
                }
                if is_internal(name) {
                    continue;
                }
                let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
                    tracing::warn!("{what}: {name:?} is not a valid header name; skipped");
                    continue;
                };
                if let Some(v) = Value::compile(value, &format!("{what}: header {name}")) {
                    out.add.push((n, v, append));
                }
            }
        }
        let authority = set_authority.or(add_authority);
        for name in &ops.remove {
            if is_internal(name) {
                continue;
            }
            match HeaderName::from_bytes(name.as_bytes()) {
                Ok(n) => out.remove.push(n),
                Err(_) => tracing::warn!("{what}: {name:?} is not a valid header name; skipped"),
            }
        }
        (out, authority)
    }

    /// One level holding `first`'s and then `second`'s operations (Istio puts a single
    /// destination's operations into its rule's level).
    pub(crate) fn merged(first: &HeaderOps, second: &HeaderOps) -> HeaderOps {
        HeaderOps {
            remove: first.remove.iter().chain(&second.remove).cloned().collect(),
            add: first.add.iter().chain(&second.add).cloned().collect(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }

    /// Whether some value changes per request (it needs a [`Context`]).
    pub(crate) fn is_dynamic(&self) -> bool {
        self.add.iter().any(|(_, v, _)| v.is_dynamic())
    }

    /// Whether some value reads request headers.
    pub(crate) fn reads_request_headers(&self) -> bool {
        self.add.iter().any(|(_, v, _)| v.reads_request_headers())
    }

    /// Applies the level to a request's `headers` (values read them as they stand).
    pub(crate) fn apply_request(&self, headers: &mut HeaderMap, ctx: &Context<'_>) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value, append) in &self.add {
            if let Some(v) = value.evaluate(ctx, headers) {
                put(headers, name, v, *append);
            }
        }
    }

    /// Applies the level to a response's `headers`; values read the request's headers
    /// `request`.
    pub(crate) fn apply_response(
        &self,
        headers: &mut HeaderMap,
        ctx: &Context<'_>,
        request: &HeaderMap,
    ) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value, append) in &self.add {
            if let Some(v) = value.evaluate(ctx, request) {
                put(headers, name, v, *append);
            }
        }
    }
}

fn put(headers: &mut HeaderMap, name: &HeaderName, value: HeaderValue, append: bool) {
    if append {
        headers.append(name.clone(), value);
    } else {
        headers.insert(name.clone(), value);
    }
}

/// Whether a request asks to switch protocols (`Connection: upgrade` and an `Upgrade`
/// header, HTTP/1.1 only), e.g. a WebSocket handshake.
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| has_token(v, "upgrade"))
}

/// What an upgrade request asks for, as Istio configures Envoy: WebSocket is the only
/// upgrade enabled; `h2c` Envoy's HTTP/1.1 codec strips (the request is served as a plain
/// one); any other is refused with 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpgradeKind {
    WebSocket,
    H2c,
    Other,
}

/// The upgrade an HTTP/1.1 request asks for (None: not an upgrade request).
pub(crate) fn upgrade_kind(headers: &HeaderMap) -> Option<UpgradeKind> {
    if !is_upgrade(headers) {
        return None;
    }
    let asks = |token: &str| {
        headers
            .get_all(header::UPGRADE)
            .iter()
            .any(|v| has_token(v, token))
    };
    Some(if asks("websocket") {
        UpgradeKind::WebSocket
    } else if asks("h2c") {
        UpgradeKind::H2c
    } else {
        UpgradeKind::Other
    })
}

fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .to_str()
        .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        .unwrap_or(false)
}

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Removes the hop-by-hop headers of one side of the proxy: those `Connection` names, and the
/// standard ones. `upgrade`: the message is (a response to) an upgrade request, whose
/// `Connection: upgrade` and `Upgrade` headers must pass. `request`: also drops `Expect`
/// (hyper answers `100-continue` itself, as Envoy does by default) and any `TE` but
/// `trailers` (which gRPC needs upstream).
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool, request: bool) {
    // One pass over the few names present, then only their removals: cheaper than a hashed
    // removal per hop-by-hop name, and most messages carry one of them at most.
    let (mut connection, mut te, mut upgrade_header, mut expect, mut fixed) =
        (false, false, false, false, false);
    for name in headers.keys() {
        if name == header::CONNECTION {
            connection = true;
        } else if name == header::TE {
            te = true;
        } else if name == header::UPGRADE {
            upgrade_header = true;
        } else if name == header::EXPECT {
            expect = true;
        } else if name == header::TRANSFER_ENCODING
            || name == KEEP_ALIVE
            || name == PROXY_CONNECTION
            || name == HTTP2_SETTINGS
        {
            fixed = true;
        }
    }
    // `Connection: keep-alive` or `close` (what nearly every message carries) names no
    // header to drop beyond those below: no parsing of names then.
    let names_others = connection
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .any(|t| {
                !(t.is_empty()
                    || t.eq_ignore_ascii_case("keep-alive")
                    || t.eq_ignore_ascii_case("close")
                    || t.eq_ignore_ascii_case("upgrade"))
            });
    if names_others {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|t| !(upgrade && t.eq_ignore_ascii_case("upgrade")))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named {
            if name != header::TE {
                headers.remove(name);
            }
        }
    }
    if connection {
        headers.remove(header::CONNECTION);
    }
    if fixed {
        for name in [
            &KEEP_ALIVE,
            &PROXY_CONNECTION,
            &header::TRANSFER_ENCODING,
            &HTTP2_SETTINGS,
        ] {
            headers.remove(name);
        }
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else if upgrade_header {
        headers.remove(header::UPGRADE);
    }
    if !te {
        if request && expect {
            headers.remove(header::EXPECT);
        }
        return;
    }
    if request {
        if expect {
            headers.remove(header::EXPECT);
        }
        let trailers_only = headers
            .get_all(header::TE)
            .iter()
            .all(|v| has_token(v, "trailers"));
        if !trailers_only {
            headers.remove(header::TE);
        } else if headers.contains_key(header::TE) {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
    } else {
        headers.remove(header::TE);
    }
}

static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The headers Envoy's connection manager adds before routing: `x-forwarded-proto` (the
/// downstream is plaintext) and `x-request-id` when absent; and `x-forwarded-for` with the
/// client's address (`peer`, formatted once per connection) appended, because the backend
/// sees the node's address where a sidecar would have shown the pod's.
pub(crate) fn add_forwarding(headers: &mut HeaderMap, peer: &HeaderValue) {
    // One pass over the names present instead of a hashed lookup of each of the three.
    let (mut proto, mut id, mut xff) = (false, false, false);
    for name in headers.keys() {
        proto |= name == X_FORWARDED_PROTO;
        id |= name == X_REQUEST_ID;
        xff |= name == X_FORWARDED_FOR;
    }
    if !proto {
        headers.append(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    }
    if !id {
        headers.append(X_REQUEST_ID.clone(), request_id());
    }
    if !xff {
        headers.append(X_FORWARDED_FOR.clone(), peer.clone());
        return;
    }
    let xff = match headers.get(&X_FORWARDED_FOR) {
        Some(existing) if !existing.is_empty() => {
            let mut joined = Vec::with_capacity(existing.len() + 1 + peer.len());
            joined.extend_from_slice(existing.as_bytes());
            joined.push(b',');
            joined.extend_from_slice(peer.as_bytes());
            HeaderValue::from_bytes(&joined).unwrap_or_else(|_| peer.clone())
        }
        _ => peer.clone(),
    };
    headers.insert(X_FORWARDED_FOR.clone(), xff);
}

/// The client address as an `x-forwarded-for` entry.
pub(crate) fn forwarded_for(peer: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&peer.to_canonical().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// A random UUID (version 4), as Envoy generates for `x-request-id`.
pub(crate) fn request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = fastrand::u128(..).to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    let mut out = [b'-'; 36];
    let mut at = 0;
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        out[at] = HEX[usize::from(byte >> 4)];
        out[at + 1] = HEX[usize::from(byte & 0xf)];
        at += 2;
    }
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_headers_are_removed_and_te_trailers_kept() {
        let mut h = map(&[
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut h, false, true);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["te", "x-kept"]);
    }

    #[test]
    fn an_upgrade_keeps_its_headers() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
    }

    #[test]
    fn set_replaces_add_appends_remove_first_and_host_is_an_authority() {
        let ops = plan::HeaderOps {
            set: [
                ("x-a".to_string(), "1".to_string()),
                ("host".to_string(), "h".to_string()),
            ]
            .into(),
            add: [("x-b".to_string(), "2".to_string())].into(),
            remove: vec!["x-a".into(), "x-c".into()],
        };
        let (ops, authority) = HeaderOps::compile(&ops, "test");
        assert_eq!(authority.unwrap(), "h");
        let mut h = map(&[("x-a", "0"), ("x-b", "0"), ("x-c", "0")]);
        let started = std::sync::OnceLock::new();
        let ctx = Context {
            peer: "10.0.0.1:4000".parse().unwrap(),
            vip: "10.9.0.1:80".parse().unwrap(),
            local: None,
            version: http::Version::HTTP_11,
            upstream: None,
            route_name: None,
            request: None,
            started: &started,
        };
        ops.apply_request(&mut h, &ctx);
        assert_eq!(h.get_all("x-a").iter().collect::<Vec<_>>(), ["1"]);
        assert_eq!(h.get_all("x-b").iter().collect::<Vec<_>>(), ["0", "2"]);
        assert!(!h.contains_key("x-c"));
        assert!(!h.contains_key("host"));
    }

    #[test]
    fn request_ids_are_uuid_v4() {
        let id = request_id();
        let s = id.to_str().unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "{s}");
        let dashes: Vec<usize> = s.match_indices('-').map(|(i, _)| i).collect();
        assert_eq!(dashes, [8, 13, 18, 23]);
        assert!(s.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()));
        assert_ne!(request_id(), id, "two ids alike");
    }

    #[test]
    fn a_response_loses_te_and_keep_alive_alone_too() {
        let mut h = map(&[("te", "trailers"), ("x-kept", "1")]);
        strip_hop_by_hop(&mut h, false, false);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-kept"]);
        let mut h = map(&[("connection", "keep-alive"), ("content-length", "3")]);
        strip_hop_by_hop(&mut h, false, false);
        assert_eq!(
            h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["content-length"]
        );
        let mut h = map(&[("transfer-encoding", "chunked")]);
        strip_hop_by_hop(&mut h, false, false);
        assert!(h.is_empty());
        let mut h = map(&[("expect", "100-continue"), ("x-kept", "1")]);
        strip_hop_by_hop(&mut h, false, true);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-kept"]);
    }
}
