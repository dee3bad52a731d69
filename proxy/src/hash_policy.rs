//! What a consistent hash reads from a request (Istio's `consistentHash` keys as Envoy's hash
//! policies): a header's value, a cookie (generated, with its `ttl`, when absent: Envoy's
//! `Set-Cookie: name="<hash of the client address>"; Max-Age=..; Path=..; HttpOnly`), a query
//! parameter, or the client's IP. No value: no hash, and the endpoint is picked at random.

use std::net::SocketAddr;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::hashing::hash64;
use crate::matching::query_param;

#[derive(Debug)]
pub(crate) enum HashKey {
    Header(HeaderName),
    Cookie {
        name: Box<str>,
        path: Option<Box<str>>,
        /// None: never generated.
        ttl: Option<Duration>,
    },
    Query(Box<str>),
    SourceIp,
}

/// A request's hash, and the cookie to set on its response when the proxy generated one.
#[derive(Debug, Default)]
pub(crate) struct Hashed {
    pub hash: Option<u64>,
    pub set_cookie: Option<HeaderValue>,
}

impl HashKey {
    pub(crate) fn hash(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        peer: SocketAddr,
    ) -> Hashed {
        let hash = match self {
            HashKey::Header(name) => {
                let mut values: Vec<&[u8]> =
                    headers.get_all(name).iter().map(|v| v.as_bytes()).collect();
                if values.is_empty() {
                    None
                } else {
                    // Several values hash in a canonical (sorted) order, as Envoy does.
                    values.sort_unstable();
                    Some(hash64(&values.join(&b","[..])))
                }
            }
            HashKey::Query(name) => query_param(query, name).map(|v| hash64(v.as_bytes())),
            HashKey::SourceIp => Some(match peer.ip().to_canonical() {
                std::net::IpAddr::V4(ip) => hash64(&ip.octets()),
                std::net::IpAddr::V6(ip) => hash64(&ip.octets()),
            }),
            HashKey::Cookie { name, path, ttl } => {
                if let Some(value) = cookie(headers, name) {
                    Some(hash64(value.as_bytes()))
                } else if let Some(ttl) = ttl {
                    let value = format!("{:016x}", hash64(peer.to_string().as_bytes()));
                    let set_cookie = set_cookie(name, &value, path.as_deref(), *ttl);
                    return Hashed {
                        hash: Some(hash64(value.as_bytes())),
                        set_cookie,
                    };
                } else {
                    None
                }
            }
        };
        Hashed {
            hash,
            set_cookie: None,
        }
    }
}

/// The value of cookie `name` (quotes removed) from the `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            let Some((k, v)) = pair.trim_start().split_once('=') else {
                continue;
            };
            if k == name {
                let v = v.trim_end();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                return Some(v);
            }
        }
    }
    None
}

fn set_cookie(name: &str, value: &str, path: Option<&str>, ttl: Duration) -> Option<HeaderValue> {
    let mut s = format!("{name}=\"{value}\"");
    // A zero ttl makes a session cookie (no Max-Age), as Envoy does.
    if ttl.as_secs() > 0 {
        s.push_str(&format!("; Max-Age={}", ttl.as_secs()));
    }
    if let Some(path) = path.filter(|p| !p.is_empty()) {
        s.push_str(&format!("; Path={path}"));
    }
    s.push_str("; HttpOnly");
    HeaderValue::from_str(&s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_and_generated() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; user=\"bob\""),
        );
        let key = HashKey::Cookie {
            name: "user".into(),
            path: Some("/".into()),
            ttl: Some(Duration::from_secs(60)),
        };
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let found = key.hash(&h, None, peer);
        assert_eq!(found.hash, Some(hash64(b"bob")));
        assert!(found.set_cookie.is_none());
        let made = key.hash(&HeaderMap::new(), None, peer);
        let cookie = made.set_cookie.unwrap();
        let cookie = cookie.to_str().unwrap();
        assert!(cookie.starts_with("user=\""), "{cookie}");
        assert!(
            cookie.ends_with("\"; Max-Age=60; Path=/; HttpOnly"),
            "{cookie}"
        );
        let value = &cookie[6..22];
        assert_eq!(made.hash, Some(hash64(value.as_bytes())));
    }

    #[test]
    fn absent_keys_give_no_hash() {
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let none = HeaderMap::new();
        assert!(
            HashKey::Header(HeaderName::from_static("x"))
                .hash(&none, None, peer)
                .hash
                .is_none()
        );
        assert!(
            HashKey::Query("q".into())
                .hash(&none, Some("p=1"), peer)
                .hash
                .is_none()
        );
        let no_ttl = HashKey::Cookie {
            name: "c".into(),
            path: None,
            ttl: None,
        };
        assert!(no_ttl.hash(&none, None, peer).hash.is_none());
        let a = HashKey::SourceIp.hash(&none, None, peer).hash;
        let b = HashKey::SourceIp
            .hash(&none, None, "10.0.0.1:6000".parse().unwrap())
            .hash;
        assert_eq!(a, b);
    }
}
