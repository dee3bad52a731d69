//! A proxied service's HTTP route table as text: one line per rule, what it matches, what it
//! does with the request, and the settings it carries.

use std::fmt::Write;

use super::share;
use crate::http::{
    ConnectionLimits, HttpAction, HttpRouteTable, HttpRule, OutlierDetection, Redirect,
    RedirectPort, RequestMatch, StrMatch,
};

/// `http[0]  headers[end-user] = "jason"  -> reviews...|v2|9080 100.0%`, a line per rule.
/// On a TLS port: `tls[0]  sni a.example.com  -> ...|v1|443 100.0%`, then where other
/// connections go.
pub fn rules(table: &HttpRouteTable) -> Vec<String> {
    let mut lines: Vec<String> = table
        .rules
        .iter()
        .map(|rule| {
            let mut line = format!("{}  {}  ", rule.route.rule, matches(&rule.matches));
            line.push_str(&action(table, &rule.action));
            let settings = settings(rule);
            if !settings.is_empty() {
                let _ = write!(line, "  [{}]", settings.join(", "));
            }
            line
        })
        .collect();
    if let Some(tls) = &table.tls {
        let name = |c: usize| table.clusters.get(c).map_or("?", |c| c.name.as_str());
        for rule in &tls.rules {
            let to: Vec<String> = rule
                .destinations
                .iter()
                .map(|d| format!("{} {}", name(d.cluster), share(d.weight)))
                .collect();
            lines.push(format!(
                "{}  sni {}  -> {}",
                rule.route.rule,
                rule.sni_hosts.join(" or "),
                to.join(", ")
            ));
        }
        lines.push(match tls.fallback {
            Some(c) => format!("no TLS, no SNI or another SNI  -> {}", name(c)),
            None => "no TLS, no SNI or another SNI  -> no endpoint: closed".to_string(),
        });
    }
    lines
}

/// Any of the blocks (or), each all of its conditions (and); `any request` when empty.
fn matches(matches: &[RequestMatch]) -> String {
    if matches.is_empty() {
        return "any request".to_string();
    }
    let blocks: Vec<String> = matches.iter().map(block).collect();
    blocks.join(" or ")
}

fn block(m: &RequestMatch) -> String {
    let mut conditions = Vec::new();
    let uri = if m.ignore_uri_case {
        "uri (any case)"
    } else {
        "uri"
    };
    for (name, value) in [
        (uri, &m.uri),
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(value) = value {
            conditions.push(condition(name, value));
        }
    }
    for (name, value) in &m.headers {
        conditions.push(condition(&format!("headers[{name}]"), value));
    }
    for (name, value) in &m.query_params {
        conditions.push(condition(&format!("queryParams[{name}]"), value));
    }
    for (name, value) in &m.without_headers {
        conditions.push(format!(
            "not {}",
            condition(&format!("headers[{name}]"), value)
        ));
    }
    if conditions.is_empty() {
        return "any request".to_string();
    }
    conditions.join(" and ")
}

fn condition(name: &str, value: &StrMatch) -> String {
    match value {
        StrMatch::Exact(v) => format!("{name} = {v:?}"),
        StrMatch::Prefix(v) => format!("{name} starts with {v:?}"),
        StrMatch::Regex(v) => format!("{name} ~ {v:?}"),
        StrMatch::Present => format!("{name} present"),
    }
}

fn action(table: &HttpRouteTable, action: &HttpAction) -> String {
    match action {
        HttpAction::Route { destinations, .. } if destinations.is_empty() => {
            "-> no endpoint: 503".to_string()
        }
        HttpAction::Route { destinations, .. } => {
            let parts: Vec<String> = destinations
                .iter()
                .map(|d| {
                    let cluster = table.clusters.get(d.cluster);
                    let name = cluster.map_or("?", |c| c.name.as_str());
                    let limits = cluster.map(|c| limits(&c.limits)).unwrap_or_default();
                    let outlier = cluster
                        .and_then(|c| c.outlier.as_ref())
                        .map(outlier)
                        .unwrap_or_default();
                    format!("{name} {}{limits}{outlier}", share(d.weight))
                })
                .collect();
            format!("-> {}", parts.join(", "))
        }
        HttpAction::Redirect(redirect) => format!("redirect {}", self::redirect(redirect)),
        HttpAction::DirectResponse { status, body } => match body {
            Some(body) => format!("respond {status} ({} byte body)", body.len()),
            None => format!("respond {status}"),
        },
    }
}

/// ` (limits: maxConnections 1, ...)` for a cluster with `connectionPool` limits.
fn limits(l: &ConnectionLimits) -> String {
    let counts = [
        ("maxConnections", l.max_connections),
        ("http1MaxPendingRequests", l.max_pending_requests),
        ("http2MaxRequests", l.max_requests),
        ("maxRequestsPerConnection", l.max_requests_per_connection),
    ];
    let mut parts: Vec<String> = counts
        .iter()
        .filter_map(|(name, n)| n.map(|n| format!("{name} {n}")))
        .collect();
    if let Some(t) = l.connect_timeout {
        parts.push(format!("connectTimeout {t:?}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" (limits: {})", parts.join(", "))
    }
}

/// ` (outlierDetection: consecutive5xxErrors 5, ...)` for a cluster with one.
fn outlier(o: &OutlierDetection) -> String {
    let mut parts: Vec<String> = [
        ("consecutive5xxErrors", o.consecutive_5xx),
        ("consecutiveGatewayErrors", o.consecutive_gateway),
        ("consecutiveLocalOriginFailures", o.consecutive_local_origin),
    ]
    .iter()
    .filter_map(|(name, n)| n.map(|n| format!("{name} {n}")))
    .collect();
    parts.push(format!("interval {:?}", o.interval));
    parts.push(format!("baseEjectionTime {:?}", o.base_ejection_time));
    parts.push(format!("maxEjectionPercent {}", o.max_ejection_percent));
    if o.min_health_percent > 0 {
        parts.push(format!("minHealthPercent {}", o.min_health_percent));
    }
    format!(" (outlierDetection: {})", parts.join(", "))
}

fn redirect(r: &Redirect) -> String {
    let mut parts = vec![r.code.to_string()];
    for (name, value) in [
        ("scheme", &r.scheme),
        ("authority", &r.authority),
        ("uri", &r.uri),
    ] {
        if let Some(value) = value {
            parts.push(format!("{name}={value}"));
        }
    }
    match r.port {
        Some(RedirectPort::Fixed(port)) => parts.push(format!("port={port}")),
        Some(RedirectPort::FromProtocolDefault) => parts.push("port=protocol default".into()),
        Some(RedirectPort::FromRequestPort) => parts.push("port=request port".into()),
        None => {}
    }
    parts.join(" ")
}

/// What else the rule does to a request, by Istio field name.
fn settings(rule: &HttpRule) -> Vec<&'static str> {
    let destination_headers = match &rule.action {
        HttpAction::Route { destinations, .. } => destinations
            .iter()
            .any(|d| !d.request_headers.is_empty() || !d.response_headers.is_empty()),
        _ => false,
    };
    [
        ("rewrite", rule.rewrite.is_some()),
        (
            "headers",
            !rule.request_headers.is_empty()
                || !rule.response_headers.is_empty()
                || destination_headers,
        ),
        ("timeout", rule.timeout.is_some()),
        ("retries", rule.retries.is_some()),
        ("fault", rule.fault.is_some()),
        ("mirror", !rule.mirrors.is_empty()),
        ("corsPolicy", rule.cors.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect()
}
