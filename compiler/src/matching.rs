//! Whether a routing rule applies to a service, and whether the kernel can serve it, decided
//! once at compile time.
//!
//! A `connect()` tells the kernel only the destination address and port, so the datapath
//! can honour conditions on those and nothing else; a rule that looks into HTTP requests or
//! acts on them needs the L7 proxy.

use vsteer_model::istio::{HttpMatchRequest, HttpRoute, L4MatchAttributes, TcpRoute};
use vsteer_plan::ServiceKey;

use crate::subnet;

/// The gateway name that stands for the sidecars (here: the node's own connects).
pub(crate) const MESH: &str = "mesh";

/// Whether an HTTP rule can take any request to a service on `port`: it has no matches, or
/// one of them can hold on that port (and for the mesh).
pub(crate) fn http_applies(rule: &HttpRoute, port: u16) -> bool {
    rule.matches.is_empty() || rule.matches.iter().any(|m| http_l4_holds(m, port))
}

/// Whether an HTTP rule takes every request to a service on `port`, so that no later rule is
/// ever reached: it has no matches, or one that holds on the port has no request condition.
/// The first such rule is also where the kernel sends a proxied service's connections when
/// the proxy cannot take them (its actions do not apply there).
pub(crate) fn takes_every_request(rule: &HttpRoute, port: u16) -> bool {
    rule.matches.is_empty()
        || rule
            .matches
            .iter()
            .any(|m| http_l4_holds(m, port) && l7_conditions(m).is_empty())
}

/// The first field of HTTP rule `index` that only a proxy can serve for a service on
/// `port`, e.g. `http[0].match[0].headers[end-user]` or `http[1].fault`; `None` when the
/// rule is decided at connect time (it takes every connection, or none).
pub(crate) fn proxy_field(rule: &HttpRoute, index: usize, port: u16) -> Option<String> {
    let applicable: Vec<(usize, &HttpMatchRequest)> = rule
        .matches
        .iter()
        .enumerate()
        .filter(|(_, m)| http_l4_holds(m, port))
        .collect();
    if !rule.matches.is_empty() && applicable.is_empty() {
        return None;
    }
    let takes_all =
        rule.matches.is_empty() || applicable.iter().any(|(_, m)| l7_conditions(m).is_empty());
    if !takes_all && let Some((k, m)) = applicable.first() {
        let condition = first_condition(m).unwrap_or_default();
        return Some(format!("http[{index}].match[{k}].{condition}"));
    }
    let action = l7_actions(rule).into_iter().chain(unapplied(rule)).next()?;
    Some(format!("http[{index}].{action}"))
}

/// Whether a TCP rule takes the connections to `key`: any of its matches (OR), each with all
/// its set conditions (AND); no matches take everything.
pub(crate) fn tcp_rule(rule: &TcpRoute, key: &ServiceKey) -> bool {
    rule.matches.is_empty() || rule.matches.iter().any(|m| l4_holds(m, key))
}

fn l4_holds(m: &L4MatchAttributes, key: &ServiceKey) -> bool {
    l4_holds_but_subnets(m, key.port) && subnets_take(&m.destination_subnets, key)
}

/// The conditions of a TCP match block other than its destination subnets.
pub(crate) fn l4_holds_but_subnets(m: &L4MatchAttributes, port: u16) -> bool {
    // A condition on the client (its labels, namespace or address) matches no client until
    // vsteer knows the connecting workload: the match block never holds, as in Istio for a
    // client that does not fit it.
    m.source_labels.is_empty()
        && m.source_namespace.is_none()
        && m.source_subnet.is_none()
        && m.port.is_none_or(|p| p == u32::from(port))
        && for_mesh(&m.gateways)
}

/// Whether a match block's destination subnets (none: any destination) take `key`.
pub(crate) fn subnets_take(subnets: &[String], key: &ServiceKey) -> bool {
    subnets.is_empty() || subnets.iter().any(|s| subnet::takes(s, key))
}

pub(crate) fn http_l4_holds(m: &HttpMatchRequest, port: u16) -> bool {
    // As in `l4_holds`: a block with a client condition matches no client yet.
    m.source_labels.is_empty()
        && m.source_namespace.is_none()
        && m.port.is_none_or(|p| p == u32::from(port))
        && for_mesh(&m.gateways)
}

/// A match's own `gateways` replace the VirtualService's; none means the VirtualService's,
/// which include the mesh, or it would not be compiled at all.
fn for_mesh(gateways: &[String]) -> bool {
    gateways.is_empty() || gateways.iter().any(|g| g == MESH)
}

/// The conditions of a match that need the request itself.
fn l7_conditions(m: &HttpMatchRequest) -> Vec<&'static str> {
    [
        ("uri", m.uri.is_some()),
        ("scheme", m.scheme.is_some()),
        ("method", m.method.is_some()),
        ("authority", m.authority.is_some()),
        ("headers", !m.headers.is_empty()),
        ("queryParams", !m.query_params.is_empty()),
        ("withoutHeaders", !m.without_headers.is_empty()),
        ("ignoreUriCase", m.ignore_uri_case),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect()
}

/// The first request condition of a match, with the header or parameter it names.
fn first_condition(m: &HttpMatchRequest) -> Option<String> {
    let named = |field: &str, map: &std::collections::BTreeMap<String, _>| {
        map.keys().next().map(|name| format!("{field}[{name}]"))
    };
    [
        m.uri.as_ref().map(|_| "uri".to_string()),
        m.scheme.as_ref().map(|_| "scheme".to_string()),
        m.method.as_ref().map(|_| "method".to_string()),
        m.authority.as_ref().map(|_| "authority".to_string()),
        named("headers", &m.headers),
        named("queryParams", &m.query_params),
        named("withoutHeaders", &m.without_headers),
        m.ignore_uri_case.then(|| "ignoreUriCase".to_string()),
    ]
    .into_iter()
    .flatten()
    .next()
}

/// What a rule does to requests rather than connections.
fn l7_actions(rule: &HttpRoute) -> Vec<&'static str> {
    [
        ("redirect", rule.redirect.is_some()),
        ("directResponse", rule.direct_response.is_some()),
        ("delegate", rule.delegate.is_some()),
        ("rewrite", rule.rewrite.is_some()),
        ("fault", rule.fault.is_some()),
        ("mirror", rule.mirror.is_some() || !rule.mirrors.is_empty()),
        (
            "mirrorPercentage",
            rule.mirror_percent.is_some() || rule.mirror_percentage.is_some(),
        ),
        ("corsPolicy", rule.cors_policy.is_some()),
        (
            "headers",
            rule.headers.is_some() || rule.route.iter().any(|d| d.headers.is_some()),
        ),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect()
}

/// Settings of a rule that need the proxy but that it serves without their effect so far
/// (they change how a request fares, not where it goes).
pub(crate) fn unapplied(rule: &HttpRoute) -> Vec<&'static str> {
    [
        ("timeout", rule.timeout.is_some()),
        ("retries", rule.retries.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect()
}

/// What the proxy serves without its effect until L7 resilience is built: the request is
/// routed as if the setting were absent.
pub(crate) fn without_effect(rule: &HttpRoute) -> Vec<&'static str> {
    [
        (
            "retries of requests with a body over 64 KiB (but for connect failures)",
            rule.retries.is_some(),
        ),
        (
            "mirror of requests with a body over 64 KiB",
            rule.mirror.is_some() || !rule.mirrors.is_empty(),
        ),
        (
            "corsPolicy.unmatchedPreflights: IGNORE (unmatched preflights are forwarded)",
            rule.cors_policy
                .as_ref()
                .and_then(|c| c.unmatched_preflights.as_deref())
                == Some("IGNORE"),
        ),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(yaml: &str) -> HttpRoute {
        vsteer_model::yaml::from_str(yaml).unwrap()
    }

    fn tcp(yaml: &str) -> TcpRoute {
        vsteer_model::yaml::from_str(yaml).unwrap()
    }

    fn vip() -> std::net::IpAddr {
        "10.0.0.1".parse().unwrap()
    }

    fn at(vip: std::net::IpAddr, port: u16) -> ServiceKey {
        ServiceKey::new(vip, port, vsteer_plan::Protocol::Tcp)
    }

    #[test]
    fn http_rules_by_port_are_decided_at_compile_time() {
        let any = http("route: [{destination: {host: a}}]");
        assert!(http_applies(&any, 80) && takes_every_request(&any, 80));
        let port = http("match: [{port: 80}]\nroute: [{destination: {host: a}}]");
        assert!(http_applies(&port, 80) && takes_every_request(&port, 80));
        assert!(!http_applies(&port, 81) && !takes_every_request(&port, 81));
    }

    #[test]
    fn http_rules_on_requests_take_only_some_requests() {
        let header = http(
            "match: [{headers: {end-user: {exact: jason}}}]\nroute: [{destination: {host: a}}]",
        );
        assert!(http_applies(&header, 80));
        assert!(!takes_every_request(&header, 80));
        // A uri match for another port cannot hold here, so the rule simply does not apply.
        let elsewhere =
            http("match: [{port: 81, uri: {prefix: /a}}]\nroute: [{destination: {host: a}}]");
        assert!(!http_applies(&elsewhere, 80));
        // One match that takes the whole port is enough: the rule takes every request.
        let either =
            http("match: [{uri: {prefix: /a}}, {port: 80}]\nroute: [{destination: {host: a}}]");
        assert!(takes_every_request(&either, 80));
        assert!(!takes_every_request(&either, 81));
        // Actions do not narrow what a rule takes.
        let redirect = http("redirect: {uri: /b}");
        assert!(takes_every_request(&redirect, 80));
        let timeout =
            http("timeout: 5s\nretries: {attempts: 3}\nroute: [{destination: {host: a}}]");
        assert!(takes_every_request(&timeout, 80));
        assert_eq!(unapplied(&timeout), ["timeout", "retries"]);
        assert_eq!(
            without_effect(&timeout),
            ["retries of requests with a body over 64 KiB (but for connect failures)"]
        );
        let mirror = http(
            "mirror: {host: b}\nfault: {abort: {httpStatus: 500}}\nroute: [{destination: {host: a}}]",
        );
        // The proxy injects faults.
        assert_eq!(
            without_effect(&mirror),
            ["mirror of requests with a body over 64 KiB"]
        );
    }

    #[test]
    fn the_proxy_field_names_the_first_request_condition_or_action() {
        let header = http(
            "match: [{port: 81}, {headers: {end-user: {exact: jason}}}]\nroute: [{destination: {host: a}}]",
        );
        assert_eq!(
            proxy_field(&header, 0, 80).as_deref(),
            Some("http[0].match[1].headers[end-user]")
        );
        // On port 81 the first match takes every connection.
        assert_eq!(proxy_field(&header, 0, 81), None);
        let fault = http("fault: {abort: {httpStatus: 500}}\nroute: [{destination: {host: a}}]");
        assert_eq!(proxy_field(&fault, 2, 80).as_deref(), Some("http[2].fault"));
        let timeout = http("timeout: 1s\nroute: [{destination: {host: a}}]");
        assert_eq!(
            proxy_field(&timeout, 0, 80).as_deref(),
            Some("http[0].timeout")
        );
        let plain = http("route: [{destination: {host: a}}]");
        assert_eq!(proxy_field(&plain, 0, 80), None);
    }

    #[test]
    fn gateways_of_a_match_decide_statically() {
        let gw = http("match: [{gateways: [ingress]}]\nroute: [{destination: {host: a}}]");
        assert!(!http_applies(&gw, 80));
        let mesh = tcp("match: [{gateways: [mesh, ingress]}]");
        assert!(tcp_rule(&mesh, &at(vip(), 80)));
    }

    #[test]
    fn tcp_matches_are_or_of_and() {
        let rule = tcp("match:\n- {port: 80, destinationSubnets: [10.0.0.0/24]}\n- {port: 443}");
        let other = "10.0.1.1".parse().unwrap();
        assert!(tcp_rule(&rule, &at(vip(), 80)));
        assert!(!tcp_rule(&rule, &at(other, 80)));
        assert!(tcp_rule(&rule, &at(other, 443)));
        assert!(!tcp_rule(&rule, &at(vip(), 8080)));
        assert!(tcp_rule(&tcp("{}"), &at(vip(), 1)));
    }

    /// A range is one service at connect time, taken by a subnet only when the subnet is
    /// the range (Envoy's most specific chain), never because it holds the range's network
    /// address, nor because it is wider (the range's own chain is more specific).
    #[test]
    fn destination_subnets_take_a_range_only_when_they_are_the_range() {
        let range =
            |text: &str| ServiceKey::range(text.parse().unwrap(), 5432, vsteer_plan::Protocol::Tcp);
        let inside = tcp("match: [{destinationSubnets: [10.1.0.0/24]}]");
        assert!(!tcp_rule(&inside, &range("10.1.0.0/16")));
        assert!(tcp_rule(&inside, &range("10.1.0.0/24")));
        assert!(
            !tcp_rule(&inside, &range("10.1.0.128/25")),
            "wider than the range"
        );
        let network_address = tcp("match: [{destinationSubnets: [10.1.0.0]}]");
        assert!(!tcp_rule(&network_address, &range("10.1.0.0/16")));
        let outer = tcp("match: [{destinationSubnets: [10.0.0.0/8]}]");
        assert!(!tcp_rule(&outer, &range("10.1.0.0/16")));
        assert!(!tcp_rule(&outer, &range("0.0.0.0/0")));
        assert!(tcp_rule(&outer, &at("10.1.2.3".parse().unwrap(), 80)));
        let same = tcp("match: [{destinationSubnets: [10.1.0.0/16]}]");
        assert!(tcp_rule(&same, &range("10.1.0.0/16")));
        let v6 = tcp("match: [{destinationSubnets: [\"::/0\"]}]");
        assert!(!tcp_rule(&v6, &range("10.1.0.0/16")));
        assert!(tcp_rule(&v6, &range("::/0")));
        assert!(!tcp_rule(&v6, &range("fd00::/64")));
    }
}
