//! A rule's `corsPolicy`, as Envoy's CORS filter applies it. A request without an `Origin`
//! header, or from an origin the policy does not allow, passes untouched. From an allowed
//! origin, a preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered by the
//! proxy itself with the policy's allowances, and any other request goes upstream and gets
//! `Access-Control-Allow-Origin` (and `-Credentials`, `-Expose-Headers`) on its response.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_METHOD, HeaderMap, HeaderValue, ORIGIN,
};
use http::{Method, Response, StatusCode};
use vsteer_plan::http::Cors;

use crate::body::ProxyBody;
use crate::matching::Matcher;

#[derive(Debug)]
pub(crate) struct CompiledCors {
    origins: Vec<Matcher>,
    /// Some origin matcher matches `*`: every origin is allowed (Envoy's rule).
    any_origin: bool,
    allow_methods: Option<HeaderValue>,
    allow_headers: Option<HeaderValue>,
    /// `allowMethods` / `allowHeaders` of exactly `*`: the preflight's own request
    /// headers are echoed, as Envoy does (a literal `*` is refused with credentials).
    echo_methods: bool,
    echo_headers: bool,
    expose_headers: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
    credentials: bool,
}

/// What the policy says of one request.
pub(crate) enum CorsVerdict {
    /// No `Origin`, or one not allowed: nothing to do.
    Pass,
    /// A preflight from an allowed origin: answered here.
    Preflight(Response<ProxyBody>),
    /// A request from an allowed origin: these headers go on its response.
    Allowed(HeaderMap),
}

/// `a, b, c`, or nothing for an empty list.
fn joined(list: &[String]) -> Option<HeaderValue> {
    (!list.is_empty())
        .then(|| HeaderValue::from_str(&list.join(",")).ok())
        .flatten()
}

impl CompiledCors {
    pub(crate) fn compile(cors: &Cors) -> CompiledCors {
        let origins: Vec<Matcher> = cors.allow_origins.iter().map(Matcher::compile).collect();
        let star = |list: &[String]| list.len() == 1 && list[0] == "*";
        CompiledCors {
            any_origin: origins.iter().any(|m| m.matches("*")),
            origins,
            allow_methods: joined(&cors.allow_methods),
            allow_headers: joined(&cors.allow_headers),
            echo_methods: star(&cors.allow_methods),
            echo_headers: star(&cors.allow_headers),
            expose_headers: joined(&cors.expose_headers),
            max_age: cors.max_age.map(|age| HeaderValue::from(age.as_secs())),
            credentials: cors.allow_credentials == Some(true),
        }
    }

    pub(crate) fn check(&self, method: &Method, headers: &HeaderMap) -> CorsVerdict {
        let Some(origin) = headers.get(ORIGIN) else {
            return CorsVerdict::Pass;
        };
        let allowed = self.any_origin
            || origin
                .to_str()
                .is_ok_and(|o| self.origins.iter().any(|m| m.matches(o)));
        if !allowed {
            return CorsVerdict::Pass;
        }
        let mut out = HeaderMap::new();
        out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.credentials {
            out.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        let preflight = method == Method::OPTIONS
            && headers
                .get(ACCESS_CONTROL_REQUEST_METHOD)
                .is_some_and(|m| !m.is_empty());
        if !preflight {
            if let Some(expose) = &self.expose_headers {
                out.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
            }
            return CorsVerdict::Allowed(out);
        }
        let echoed = |name| headers.get(name).cloned();
        let methods = if self.echo_methods {
            echoed(ACCESS_CONTROL_REQUEST_METHOD)
        } else {
            self.allow_methods.clone()
        };
        let allow_headers = if self.echo_headers {
            echoed(http::header::ACCESS_CONTROL_REQUEST_HEADERS)
        } else {
            self.allow_headers.clone()
        };
        for (name, value) in [
            (ACCESS_CONTROL_ALLOW_METHODS, methods),
            (ACCESS_CONTROL_ALLOW_HEADERS, allow_headers),
            (ACCESS_CONTROL_MAX_AGE, self.max_age.clone()),
        ] {
            if let Some(value) = value {
                out.insert(name, value);
            }
        }
        let mut response = Response::new(ProxyBody::empty());
        *response.status_mut() = StatusCode::OK;
        response.headers_mut().extend(out);
        CorsVerdict::Preflight(response)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use vsteer_plan::http::StrMatch;

    use super::*;

    fn policy() -> CompiledCors {
        CompiledCors::compile(&Cors {
            allow_origins: vec![
                StrMatch::Exact("https://shop.example".into()),
                StrMatch::Regex(r"https://.*\.test".into()),
            ],
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_headers: vec!["x-token".into()],
            expose_headers: vec!["x-trace".into()],
            max_age: Some(Duration::from_secs(86_400)),
            allow_credentials: Some(true),
        })
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::header::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn preflights_from_allowed_origins_are_answered_and_others_pass() {
        let cors = policy();
        let preflight = headers(&[
            ("origin", "https://a.test"),
            ("access-control-request-method", "POST"),
        ]);
        let CorsVerdict::Preflight(reply) = cors.check(&Method::OPTIONS, &preflight) else {
            panic!("a preflight from an allowed origin was not answered");
        };
        let h = reply.headers();
        assert_eq!(reply.status(), 200);
        assert_eq!(h["access-control-allow-origin"], "https://a.test");
        assert_eq!(h["access-control-allow-methods"], "GET,POST");
        assert_eq!(h["access-control-allow-headers"], "x-token");
        assert_eq!(h["access-control-max-age"], "86400");
        assert_eq!(h["access-control-allow-credentials"], "true");

        let simple = headers(&[("origin", "https://shop.example")]);
        let CorsVerdict::Allowed(add) = cors.check(&Method::GET, &simple) else {
            panic!("an allowed origin got nothing");
        };
        assert_eq!(add["access-control-allow-origin"], "https://shop.example");
        assert_eq!(add["access-control-expose-headers"], "x-trace");
        assert!(add.get("access-control-allow-methods").is_none());

        let stranger = headers(&[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "POST"),
        ]);
        assert!(matches!(
            cors.check(&Method::OPTIONS, &stranger),
            CorsVerdict::Pass
        ));
        assert!(matches!(
            cors.check(&Method::GET, &HeaderMap::new()),
            CorsVerdict::Pass
        ));
    }

    /// `*` among the origins allows every origin, and `*` methods or headers echo what the
    /// preflight asks for, as Envoy does.
    #[test]
    fn a_star_allows_every_origin_and_echoes_the_preflights_asks() {
        let cors = CompiledCors::compile(&Cors {
            allow_origins: vec![StrMatch::Exact("*".into())],
            allow_methods: vec!["*".into()],
            allow_headers: vec!["*".into()],
            expose_headers: vec![],
            max_age: None,
            allow_credentials: Some(true),
        });
        let preflight = headers(&[
            ("origin", "https://anywhere.example"),
            ("access-control-request-method", "PATCH"),
            ("access-control-request-headers", "x-a,x-b"),
        ]);
        let CorsVerdict::Preflight(reply) = cors.check(&Method::OPTIONS, &preflight) else {
            panic!("a star did not allow the origin");
        };
        let h = reply.headers();
        assert_eq!(h["access-control-allow-origin"], "https://anywhere.example");
        assert_eq!(h["access-control-allow-methods"], "PATCH");
        assert_eq!(h["access-control-allow-headers"], "x-a,x-b");
    }
}
