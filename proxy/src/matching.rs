//! Request matching, as Istio's `HTTPMatchRequest` compiles to Envoy's route match: string
//! conditions (exact, prefix, RE2 regex matching the whole value, present), headers (several
//! values joined with ","), `withoutHeaders` (inverted; a missing header counts as empty,
//! except for a presence condition), query parameters (first value, compared raw), and the
//! path (exact and regex on the path without the query, prefix on the full `:path`, as Envoy;
//! `ignoreUriCase` for exact and prefix only).

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, request::Parts};
use regex::Regex;
use vsteer_plan::http::{RequestMatch, StrMatch};

/// A string condition, compiled.
#[derive(Debug)]
pub(crate) enum Matcher {
    Exact(Box<str>),
    Prefix(Box<str>),
    Regex(Regex),
    Present,
    /// A regex that did not compile (the compiler checks them, so this is a safety net):
    /// matches nothing.
    Never,
}

impl Matcher {
    pub(crate) fn compile(m: &StrMatch) -> Matcher {
        match m {
            StrMatch::Exact(s) => Matcher::Exact(s.as_str().into()),
            StrMatch::Prefix(s) => Matcher::Prefix(s.as_str().into()),
            StrMatch::Regex(pattern) => match whole(pattern) {
                Some(re) => Matcher::Regex(re),
                None => Matcher::Never,
            },
            StrMatch::Present => Matcher::Present,
        }
    }

    pub(crate) fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(s) => value == &**s,
            Matcher::Prefix(s) => value.starts_with(&**s),
            Matcher::Regex(re) => re.is_match(value),
            Matcher::Present => true,
            Matcher::Never => false,
        }
    }
}

/// `pattern` anchored so it must match the whole value (Envoy's safe_regex semantics).
pub(crate) fn whole(pattern: &str) -> Option<Regex> {
    match Regex::new(&format!("^(?:{pattern})$")) {
        Ok(re) => Some(re),
        Err(e) => {
            tracing::warn!("regex {pattern:?} does not compile ({e}); its condition never matches");
            None
        }
    }
}

/// The path condition of a match block.
#[derive(Debug)]
enum PathMatcher {
    Exact { value: Box<str>, ignore_case: bool },
    Prefix { value: Box<str>, ignore_case: bool },
    Regex(Regex),
    Never,
}

/// How much of the request's `:path` the path condition matched: what a `rewrite.uri`
/// replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathMatch {
    /// The whole path, without the query (exact and regex conditions).
    Whole,
    /// The first `n` bytes of the `:path` (prefix conditions; no condition is prefix `/`).
    Prefix(usize),
}

/// Where a header-like condition reads its value: a header, or a pseudo-header Envoy exposes
/// as one.
#[derive(Debug)]
enum Source {
    Header(HeaderName),
    Authority,
    Method,
    Path,
    Scheme,
    /// A name no request can carry.
    Missing,
}

impl Source {
    fn new(name: &str) -> Source {
        match name {
            ":authority" | "host" => Source::Authority,
            ":method" => Source::Method,
            ":path" => Source::Path,
            ":scheme" => Source::Scheme,
            _ => HeaderName::from_bytes(name.as_bytes())
                .map(Source::Header)
                .unwrap_or(Source::Missing),
        }
    }

    fn value<'a>(&self, req: &'a RequestView<'a>) -> Option<Cow<'a, str>> {
        match self {
            Source::Header(name) => header_value(req.headers, name),
            Source::Authority => req.authority.map(Cow::Borrowed),
            Source::Method => Some(Cow::Borrowed(req.method)),
            Source::Path => Some(Cow::Borrowed(req.path_and_query)),
            Source::Scheme => Some(Cow::Borrowed(req.scheme)),
            Source::Missing => None,
        }
    }
}

/// All values of header `name`, joined with "," when there are several (Envoy's rule).
pub(crate) fn header_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<Cow<'a, str>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let first = String::from_utf8_lossy(first.as_bytes());
    match values.next() {
        None => Some(first),
        Some(second) => {
            let mut joined = first.into_owned();
            for v in std::iter::once(second).chain(values) {
                joined.push(',');
                joined.push_str(&String::from_utf8_lossy(v.as_bytes()));
            }
            Some(Cow::Owned(joined))
        }
    }
}

/// One match block: every condition must hold.
#[derive(Debug)]
pub(crate) struct RequestMatcher {
    path: Option<PathMatcher>,
    conditions: Vec<(Source, Matcher)>,
    without: Vec<(Source, Matcher)>,
    query: Vec<(Box<str>, Matcher)>,
}

impl RequestMatcher {
    /// A block that takes every request whose path starts with `/` (Istio's rule without a
    /// match: Envoy's prefix `/`).
    pub(crate) fn any() -> RequestMatcher {
        RequestMatcher {
            path: None,
            conditions: Vec::new(),
            without: Vec::new(),
            query: Vec::new(),
        }
    }

    pub(crate) fn compile(m: &RequestMatch) -> RequestMatcher {
        let path = m.uri.as_ref().and_then(|uri| match uri {
            StrMatch::Exact(s) => Some(PathMatcher::Exact {
                value: s.as_str().into(),
                ignore_case: m.ignore_uri_case,
            }),
            StrMatch::Prefix(s) => Some(PathMatcher::Prefix {
                value: s.as_str().into(),
                ignore_case: m.ignore_uri_case,
            }),
            StrMatch::Regex(pattern) => Some(match whole(pattern) {
                Some(re) => PathMatcher::Regex(re),
                None => PathMatcher::Never,
            }),
            // `uri: {}` sets no path condition in Istio: prefix `/`.
            StrMatch::Present => None,
        });
        let mut conditions = Vec::new();
        for (name, value) in [
            (":method", &m.method),
            (":authority", &m.authority),
            (":scheme", &m.scheme),
        ] {
            if let Some(value) = value {
                conditions.push((Source::new(name), Matcher::compile(value)));
            }
        }
        conditions.extend(
            m.headers
                .iter()
                .map(|(name, value)| (Source::new(name), Matcher::compile(value))),
        );
        RequestMatcher {
            path,
            conditions,
            without: m
                .without_headers
                .iter()
                .map(|(name, value)| (Source::new(name), Matcher::compile(value)))
                .collect(),
            query: m
                .query_params
                .iter()
                .map(|(name, value)| (name.as_str().into(), Matcher::compile(value)))
                .collect(),
        }
    }

    /// Whether every condition holds for `req`, and how much of the path matched.
    pub(crate) fn matches(&self, req: &RequestView<'_>) -> Option<PathMatch> {
        let path_match = match &self.path {
            None => req
                .path_and_query
                .starts_with('/')
                .then_some(PathMatch::Prefix(1))?,
            Some(PathMatcher::Exact { value, ignore_case }) => {
                let hit = if *ignore_case {
                    req.path.eq_ignore_ascii_case(value)
                } else {
                    req.path == &**value
                };
                hit.then_some(PathMatch::Whole)?
            }
            Some(PathMatcher::Prefix { value, ignore_case }) => {
                let pq = req.path_and_query.as_bytes();
                let hit = pq.len() >= value.len()
                    && if *ignore_case {
                        pq[..value.len()].eq_ignore_ascii_case(value.as_bytes())
                    } else {
                        &pq[..value.len()] == value.as_bytes()
                    };
                hit.then_some(PathMatch::Prefix(value.len()))?
            }
            Some(PathMatcher::Regex(re)) => re.is_match(req.path).then_some(PathMatch::Whole)?,
            Some(PathMatcher::Never) => return None,
        };
        for (source, matcher) in &self.conditions {
            match source.value(req) {
                Some(value) if matcher.matches(&value) => {}
                _ => return None,
            }
        }
        for (source, matcher) in &self.without {
            let value = source.value(req);
            let excluded = match matcher {
                // Presence inverted: the header must be absent.
                Matcher::Present => value.is_some(),
                // Istio sets treat_missing_header_as_empty for the other kinds.
                m => m.matches(value.as_deref().unwrap_or("")),
            };
            if excluded {
                return None;
            }
        }
        for (name, matcher) in &self.query {
            match query_param(req.query, name) {
                Some(value) if matcher.matches(value) => {}
                _ => return None,
            }
        }
        Some(path_match)
    }
}

/// What matching reads of a request.
#[derive(Debug)]
pub(crate) struct RequestView<'a> {
    pub method: &'a str,
    pub scheme: &'a str,
    /// `:authority` (HTTP/2, or an absolute-form HTTP/1.1 target), else `Host`.
    pub authority: Option<&'a str>,
    pub path_and_query: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

impl<'a> RequestView<'a> {
    pub(crate) fn new(parts: &'a Parts) -> RequestView<'a> {
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        let authority = parts.uri.authority().map(|a| a.as_str()).or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        });
        RequestView {
            method: parts.method.as_str(),
            // The downstream is plaintext: Envoy's `:scheme` is http unless the client said
            // otherwise in an HTTP/2 `:scheme`.
            scheme: parts.uri.scheme_str().unwrap_or("http"),
            authority,
            path_and_query,
            path,
            query,
            headers: &parts.headers,
        }
    }
}

/// The first value of query parameter `name` (`None`: absent; a key without `=` has the
/// empty value). Keys and values are compared as the client sent them, never percent-decoded:
/// Envoy's route matcher and hash policy parse the query without decoding it.
pub(crate) fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn regexes_match_the_whole_value() {
        let m = Matcher::compile(&StrMatch::Regex("v[12]".into()));
        assert!(m.matches("v1"));
        assert!(!m.matches("xv1"));
        assert!(!m.matches("v12"));
        let alt = Matcher::compile(&StrMatch::Regex("a|b".into()));
        assert!(alt.matches("b"));
        assert!(!alt.matches("ab"));
    }

    #[test]
    fn query_parameters_are_raw_and_first_wins() {
        assert_eq!(query_param(Some("a=1&a=2"), "a"), Some("1"));
        assert_eq!(query_param(Some("x&y=%41b"), "y"), Some("%41b"));
        assert_eq!(query_param(Some("%79=1"), "y"), None);
        assert_eq!(query_param(Some("x&y=1"), "x"), Some(""));
        assert_eq!(query_param(Some("x=1"), "z"), None);
        assert_eq!(query_param(None, "z"), None);
    }

    #[test]
    fn prefix_reads_the_query_and_exact_does_not() {
        let p = parts("/a/b?c=1", &[]);
        let view = RequestView::new(&p);
        let exact = RequestMatcher::compile(&RequestMatch {
            uri: Some(StrMatch::Exact("/a/b".into())),
            ..Default::default()
        });
        assert_eq!(exact.matches(&view), Some(PathMatch::Whole));
        let prefix = RequestMatcher::compile(&RequestMatch {
            uri: Some(StrMatch::Prefix("/a/b?c".into())),
            ..Default::default()
        });
        assert_eq!(prefix.matches(&view), Some(PathMatch::Prefix(6)));
    }

    #[test]
    fn without_headers_treat_missing_as_empty() {
        let m = RequestMatcher::compile(&RequestMatch {
            without_headers: vec![
                ("x".into(), StrMatch::Exact("bad".into())),
                ("y".into(), StrMatch::Present),
            ],
            ..Default::default()
        });
        assert!(m.matches(&RequestView::new(&parts("/", &[]))).is_some());
        assert!(
            m.matches(&RequestView::new(&parts("/", &[("x", "ok")])))
                .is_some()
        );
        assert!(
            m.matches(&RequestView::new(&parts("/", &[("x", "bad")])))
                .is_none()
        );
        assert!(
            m.matches(&RequestView::new(&parts("/", &[("y", "")])))
                .is_none()
        );
    }

    #[test]
    fn several_header_values_are_joined() {
        let p = parts("/", &[("x", "a"), ("x", "b")]);
        let m = Matcher::compile(&StrMatch::Exact("a,b".into()));
        let name = HeaderName::from_static("x");
        assert!(m.matches(&header_value(&p.headers, &name).unwrap()));
    }
}
