//! Redirect responses: the `Location` Envoy builds for Istio's `redirect` (scheme, host,
//! port, path swapped where set; the request's query kept unless the new path has its own;
//! the request's port dropped when a new port is given, or when the scheme changes and the
//! port was the old scheme's default).

use http::StatusCode;
use vsteer_plan::http::{Redirect, RedirectPort};

use crate::matching::{PathMatch, RequestView};
use crate::rewrite::PathRewrite;

#[derive(Debug)]
pub(crate) struct RedirectAction {
    pub status: StatusCode,
    scheme: Option<Box<str>>,
    host: Option<Box<str>>,
    /// `:N`, or empty for none.
    port: Box<str>,
    path: NewPath,
}

/// What the redirect does to the request's path.
#[derive(Debug)]
enum NewPath {
    Keep,
    /// `uri`: the whole path.
    Replace(Box<str>),
    /// `prefixRewrite`: the part the rule's path condition matched.
    Prefix(Box<str>),
}

impl RedirectAction {
    /// `service_port` is the port the client dialed: Istio turns `FROM_REQUEST_PORT` into it.
    pub(crate) fn compile(r: &Redirect, service_port: u16) -> RedirectAction {
        let port = match r.port {
            Some(RedirectPort::Fixed(p)) => Some(p),
            Some(RedirectPort::FromRequestPort) => Some(service_port),
            // Envoy's default: no port of its own.
            Some(RedirectPort::FromProtocolDefault) | None => None,
        };
        // Istio leaves out an explicit :80 for http and :443 for https.
        let scheme = r.scheme.as_deref().unwrap_or("http");
        let port =
            port.filter(|p| !((*p == 80 && scheme == "http") || (*p == 443 && scheme == "https")));
        RedirectAction {
            status: StatusCode::from_u16(r.code).unwrap_or(StatusCode::MOVED_PERMANENTLY),
            scheme: r
                .scheme
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(Into::into),
            host: r
                .authority
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(Into::into),
            port: port.map(|p| format!(":{p}")).unwrap_or_default().into(),
            path: match (&r.uri, &r.prefix_rewrite) {
                (Some(uri), _) if !uri.is_empty() => NewPath::Replace(uri.as_str().into()),
                (_, Some(prefix)) => NewPath::Prefix(prefix.as_str().into()),
                _ => NewPath::Keep,
            },
        }
    }

    /// The `Location` for `req`, whose path condition matched `matched`.
    pub(crate) fn location(&self, req: &RequestView<'_>, matched: PathMatch) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(req.scheme);
        let host = match &self.host {
            Some(host) => host,
            None => request_host(
                req.authority.unwrap_or(""),
                req.scheme,
                scheme,
                !self.port.is_empty(),
            ),
        };
        let mut path = match &self.path {
            // A query in the new path replaces the request's.
            NewPath::Replace(p) if p.contains('?') => p.to_string(),
            NewPath::Replace(p) => match req.query {
                Some(q) => format!("{p}?{q}"),
                None => p.to_string(),
            },
            // As a route's prefix rewrite: the rest of the path and the query stay.
            NewPath::Prefix(p) => {
                PathRewrite::Replace(p.clone()).apply(req.path_and_query, matched)
            }
            NewPath::Keep => req.path_and_query.to_string(),
        };
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        format!("{scheme}://{host}{}{path}", self.port)
    }
}

/// The request's host for the Location, without its port when a new port is set, or when
/// the scheme changes and the port is the old scheme's default.
fn request_host<'a>(host: &'a str, old_scheme: &str, new_scheme: &str, new_port: bool) -> &'a str {
    let port_at = if host.starts_with('[') {
        host.rfind("]:").map(|i| i + 1)
    } else {
        host.rfind(':')
    };
    let Some(at) = port_at else {
        return host;
    };
    let port = &host[at..];
    let mut remove = new_port;
    if new_scheme != old_scheme {
        remove |=
            (old_scheme == "https" && port == ":443") || (old_scheme == "http" && port == ":80");
    }
    if remove { &host[..at] } else { host }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view_of(parts: &http::request::Parts) -> RequestView<'_> {
        RequestView::new(parts)
    }

    fn parts(uri: &str, host: &str) -> http::request::Parts {
        http::Request::builder()
            .uri(uri)
            .header("host", host)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    fn redirect(
        uri: Option<&str>,
        authority: Option<&str>,
        scheme: Option<&str>,
        port: Option<RedirectPort>,
    ) -> RedirectAction {
        RedirectAction::compile(
            &Redirect {
                uri: uri.map(Into::into),
                prefix_rewrite: None,
                authority: authority.map(Into::into),
                scheme: scheme.map(Into::into),
                port,
                code: 302,
            },
            9080,
        )
    }

    /// `prefixRewrite` replaces what the rule's path condition matched, keeping the rest of
    /// the path and the query (the whole path after an exact or regex match).
    #[test]
    fn prefix_rewrite_replaces_the_matched_prefix() {
        let mut action = redirect(None, None, None, None);
        action.path = NewPath::Prefix("/v2/".into());
        let p = parts("/v1/items/7?q=1", "shop");
        assert_eq!(
            action.location(&view_of(&p), PathMatch::Prefix(4)),
            "http://shop/v2/items/7?q=1"
        );
        assert_eq!(
            action.location(&view_of(&p), PathMatch::Whole),
            "http://shop/v2/?q=1"
        );
    }

    #[test]
    fn each_field() {
        let p = parts("/old?q=1", "reviews:9080");
        let v = view_of(&p);
        assert_eq!(
            redirect(Some("/new"), None, None, None).location(&v, PathMatch::Whole),
            "http://reviews:9080/new?q=1"
        );
        assert_eq!(
            redirect(Some("/new?x=2"), None, None, None).location(&v, PathMatch::Whole),
            "http://reviews:9080/new?x=2"
        );
        assert_eq!(
            redirect(None, Some("other"), None, None).location(&v, PathMatch::Whole),
            "http://other/old?q=1"
        );
        assert_eq!(
            redirect(None, None, Some("https"), None).location(&v, PathMatch::Whole),
            "https://reviews:9080/old?q=1"
        );
        assert_eq!(
            redirect(None, None, None, Some(RedirectPort::Fixed(8080)))
                .location(&v, PathMatch::Whole),
            "http://reviews:8080/old?q=1"
        );
        assert_eq!(
            redirect(None, None, None, Some(RedirectPort::FromRequestPort))
                .location(&v, PathMatch::Whole),
            "http://reviews:9080/old?q=1"
        );
        assert_eq!(
            redirect(None, None, Some("https"), Some(RedirectPort::Fixed(443)))
                .location(&v, PathMatch::Whole),
            "https://reviews:9080/old?q=1"
        );
        let p80 = parts("/", "reviews:80");
        assert_eq!(
            redirect(None, None, Some("https"), None).location(&view_of(&p80), PathMatch::Whole),
            "https://reviews/"
        );
        let v6 = parts("/", "[fd00::1]:9080");
        assert_eq!(
            redirect(None, None, None, Some(RedirectPort::Fixed(81)))
                .location(&view_of(&v6), PathMatch::Whole),
            "http://[fd00::1]:81/"
        );
    }
}
