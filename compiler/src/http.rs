//! HTTP rules as the proxy will serve them: their settings checked on their own (durations,
//! regexes, status codes, percentages), and, for the VirtualService that wins a service,
//! its HTTP route table and whether the kernel or the proxy serves the service (the first
//! rule that needs to see requests, named by its field).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use vsteer_model::istio::{
    HeaderOperations, Headers, HttpFaultInjection, HttpMatchRequest, HttpRoute, StringMatch,
};
use vsteer_plan::http::{
    AbortStatus, Cluster, Cors, Fault, FaultAbort, FaultDelay, HeaderOps, HttpAction,
    HttpLoadBalancer, HttpRouteTable, HttpRule, Mirror, Redirect, RedirectPort, RequestMatch,
    RetryPolicy, Rewrite, StrMatch, WeightedCluster,
};
use vsteer_plan::{Decision, RouteRef, RuleRef, Section, ServiceKey};

use crate::destination_rule::ForHost;
use crate::duration::parse_duration;
use crate::matching;
use crate::problems::Problems;
use crate::routes::infer_port;
use crate::service_entry::Entry;
use crate::virtual_service::{Target, VirtualService};
use crate::weights::largest_remainder;

/// What is wrong with an HTTP rule's settings.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HttpRuleError {
    #[error("{0}")]
    Duration(String),
    #[error("invalid regular expression {pattern:?}: {error}")]
    Regex { pattern: String, error: String },
    #[error("a rule with {0} cannot also have a route")]
    ActionAndRoute(&'static str),
    #[error("set only one of redirect, directResponse and delegate")]
    SeveralActions,
    #[error("redirectCode must be 301, 302, 303, 307 or 308, got {0}")]
    RedirectCode(u32),
    #[error("derivePort must be FROM_PROTOCOL_DEFAULT or FROM_REQUEST_PORT, got {0:?}")]
    DerivePort(String),
    #[error("status must be between 200 and 599, got {0}")]
    Status(i64),
    #[error("percentage must be between 0 and 100, got {0}")]
    Percent(f64),
    #[error("a fault needs a delay or an abort")]
    EmptyFault,
    #[error("a delay needs fixedDelay (exponentialDelay is not supported, as in Istio)")]
    DelayNeedsFixed,
    #[error("an abort needs httpStatus or grpcStatus")]
    AbortNeedsStatus,
    #[error("attempts must not be negative, got {0}")]
    Attempts(i32),
    #[error("set only one of uri and uriRegexRewrite")]
    RewriteBoth,
    #[error("set only one of uri and prefixRewrite")]
    RedirectPathBoth,
    #[error("set only one of mirror and mirrors")]
    MirrorBoth,
    #[error("a body takes only one of string and bytes")]
    BodyBoth,
    #[error("bytes is a proto bytes field and must be base64: {0}")]
    BodyBytes(String),
    #[error("header value {value:?}: {error}")]
    HeaderValue {
        value: String,
        error: vsteer_plan::header_format::FormatError,
    },
}

/// Checks the settings of HTTP rule `rule` at `field` (`spec.http[2]`) that need no other
/// resource.
pub fn check_rule(rule: &HttpRoute, field: &str, problems: &mut Problems) {
    let actions: Vec<&'static str> = [
        ("redirect", rule.redirect.is_some()),
        ("directResponse", rule.direct_response.is_some()),
        ("delegate", rule.delegate.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    if actions.len() > 1 {
        problems.add(field.to_string(), HttpRuleError::SeveralActions);
    }
    if let Some(action) = actions.first()
        && !rule.route.is_empty()
    {
        problems.add(
            format!("{field}.route"),
            HttpRuleError::ActionAndRoute(action),
        );
    }
    for (k, m) in rule.matches.iter().enumerate() {
        check_match(m, &format!("{field}.match[{k}]"), problems);
    }
    duration(
        rule.timeout.as_deref(),
        &format!("{field}.timeout"),
        problems,
    );
    if let Some(redirect) = &rule.redirect {
        let at = format!("{field}.redirect");
        if let Some(code) = redirect.redirect_code
            && !matches!(code, 301 | 302 | 303 | 307 | 308)
        {
            problems.add(
                format!("{at}.redirectCode"),
                HttpRuleError::RedirectCode(code),
            );
        }
        if let Some(port) = redirect.port {
            problems.port(format!("{at}.port"), "port", port);
        }
        if redirect.uri.is_some() && redirect.prefix_rewrite.is_some() {
            problems.add(at.clone(), HttpRuleError::RedirectPathBoth);
        }
        if let Some(derive) = &redirect.derive_port
            && !matches!(
                derive.as_str(),
                "FROM_PROTOCOL_DEFAULT" | "FROM_REQUEST_PORT"
            )
        {
            problems.add(
                format!("{at}.derivePort"),
                HttpRuleError::DerivePort(derive.clone()),
            );
        }
    }
    if let Some(direct) = &rule.direct_response {
        let at = format!("{field}.directResponse");
        if !(200..=599).contains(&direct.status) {
            problems.add(
                format!("{at}.status"),
                HttpRuleError::Status(i64::from(direct.status)),
            );
        }
        if let Some(body) = &direct.body
            && body.string.is_some()
            && body.bytes.is_some()
        {
            problems.add(format!("{at}.body"), HttpRuleError::BodyBoth);
        }
        if let Some(Err(e)) = direct
            .body
            .as_ref()
            .and_then(|b| b.bytes.as_deref())
            .map(base64)
        {
            problems.add(format!("{at}.body.bytes"), HttpRuleError::BodyBytes(e));
        }
    }
    check_headers(rule.headers.as_ref(), &format!("{field}.headers"), problems);
    for (j, destination) in rule.route.iter().enumerate() {
        check_headers(
            destination.headers.as_ref(),
            &format!("{field}.route[{j}].headers"),
            problems,
        );
    }
    if let Some(rewrite) = &rule.rewrite {
        let at = format!("{field}.rewrite");
        if rewrite.uri.is_some() && rewrite.uri_regex_rewrite.is_some() {
            problems.add(at.clone(), HttpRuleError::RewriteBoth);
        }
        if let Some(regex) = &rewrite.uri_regex_rewrite {
            check_regex(
                &regex.pattern,
                &format!("{at}.uriRegexRewrite.match"),
                problems,
            );
        }
    }
    if let Some(retries) = &rule.retries {
        let at = format!("{field}.retries");
        if retries.attempts < 0 {
            problems.add(
                format!("{at}.attempts"),
                HttpRuleError::Attempts(retries.attempts),
            );
        }
        duration(
            retries.per_try_timeout.as_deref(),
            &format!("{at}.perTryTimeout"),
            problems,
        );
        duration(
            retries.backoff.as_deref(),
            &format!("{at}.backoff"),
            problems,
        );
    }
    if let Some(fault) = &rule.fault {
        check_fault(fault, &format!("{field}.fault"), problems);
    }
    if rule.mirror.is_some() && !rule.mirrors.is_empty() {
        problems.add(format!("{field}.mirrors"), HttpRuleError::MirrorBoth);
    }
    if let Some(p) = rule.mirror_percentage {
        percent(
            p.value,
            &format!("{field}.mirrorPercentage.value"),
            problems,
        );
    }
    for (m, mirror) in rule.mirrors.iter().enumerate() {
        if let Some(p) = mirror.percentage {
            percent(
                p.value,
                &format!("{field}.mirrors[{m}].percentage.value"),
                problems,
            );
        }
    }
    if let Some(cors) = &rule.cors_policy {
        duration(
            cors.max_age.as_deref(),
            &format!("{field}.corsPolicy.maxAge"),
            problems,
        );
        for (o, origin) in cors.allow_origins.iter().enumerate() {
            if let StringMatch::Regex(pattern) = origin {
                check_regex(
                    pattern,
                    &format!("{field}.corsPolicy.allowOrigins[{o}].regex"),
                    problems,
                );
            }
        }
    }
}

/// Header values are Envoy formats (`%%` a literal `%`, command operators): what Envoy would
/// reject is an error here. A `host` value is an authority rewrite, taken literally.
fn check_headers(headers: Option<&Headers>, field: &str, problems: &mut Problems) {
    let Some(headers) = headers else { return };
    for (side, ops) in [
        ("request", &headers.request),
        ("response", &headers.response),
    ] {
        let Some(ops) = ops else { continue };
        for (list, entries) in [("set", &ops.set), ("add", &ops.add)] {
            for (name, value) in entries {
                if side == "request"
                    && (name.eq_ignore_ascii_case("host")
                        || name.eq_ignore_ascii_case(":authority"))
                {
                    continue;
                }
                if let Err(error) = vsteer_plan::header_format::parse(value) {
                    problems.add(
                        format!("{field}.{side}.{list}[{name}]"),
                        HttpRuleError::HeaderValue {
                            value: value.clone(),
                            error,
                        },
                    );
                }
            }
        }
    }
}

fn check_match(m: &HttpMatchRequest, field: &str, problems: &mut Problems) {
    let singles = [
        ("uri", &m.uri),
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ];
    for (name, string_match) in singles {
        if let Some(StringMatch::Regex(pattern)) = string_match {
            check_regex(pattern, &format!("{field}.{name}.regex"), problems);
        }
    }
    let maps = [
        ("headers", &m.headers),
        ("queryParams", &m.query_params),
        ("withoutHeaders", &m.without_headers),
    ];
    for (name, map) in maps {
        for (key, string_match) in map {
            if let StringMatch::Regex(pattern) = string_match {
                check_regex(pattern, &format!("{field}.{name}.{key}.regex"), problems);
            }
        }
    }
}

fn check_fault(fault: &HttpFaultInjection, field: &str, problems: &mut Problems) {
    if fault.delay.is_none() && fault.abort.is_none() {
        problems.add(field.to_string(), HttpRuleError::EmptyFault);
    }
    if let Some(delay) = &fault.delay {
        let at = format!("{field}.delay");
        match &delay.fixed_delay {
            None => problems.add(at.clone(), HttpRuleError::DelayNeedsFixed),
            Some(d) => duration(Some(d), &format!("{at}.fixedDelay"), problems),
        }
        if let Some(p) = delay.percentage {
            percent(p.value, &format!("{at}.percentage.value"), problems);
        }
        if let Some(p) = delay.percent {
            percent(f64::from(p), &format!("{at}.percent"), problems);
        }
    }
    if let Some(abort) = &fault.abort {
        let at = format!("{field}.abort");
        match (abort.http_status, &abort.grpc_status) {
            (None, None) => problems.add(at.clone(), HttpRuleError::AbortNeedsStatus),
            (Some(status), _) if !(200..=599).contains(&status) => problems.add(
                format!("{at}.httpStatus"),
                HttpRuleError::Status(i64::from(status)),
            ),
            _ => {}
        }
        if let Some(p) = abort.percentage {
            percent(p.value, &format!("{at}.percentage.value"), problems);
        }
    }
}

fn duration(text: Option<&str>, field: &str, problems: &mut Problems) {
    if let Some(text) = text
        && let Err(e) = parse_duration(text)
    {
        problems.add(field.to_string(), HttpRuleError::Duration(e));
    }
}

fn percent(value: f64, field: &str, problems: &mut Problems) {
    if !(0.0..=100.0).contains(&value) {
        problems.add(field.to_string(), HttpRuleError::Percent(value));
    }
}

/// A proto `bytes` field as Istio reads it from YAML (protojson): standard or URL-safe
/// base64, padding optional, line breaks ignored (as Go's decoder does).
fn base64(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD_PAD_INDIFFERENT, URL_SAFE_PAD_INDIFFERENT};
    let text: String = text.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    let engine = if text.contains(['-', '_']) {
        URL_SAFE_PAD_INDIFFERENT
    } else {
        STANDARD_PAD_INDIFFERENT
    };
    engine.decode(text.as_bytes()).map_err(|e| e.to_string())
}

/// RE2 syntax, as Envoy's safe_regex: the regex crate implements it.
fn check_regex(pattern: &str, field: &str, problems: &mut Problems) {
    if let Err(e) = regex::Regex::new(pattern) {
        problems.add(
            field.to_string(),
            HttpRuleError::Regex {
                pattern: pattern.to_string(),
                error: e.to_string(),
            },
        );
    }
}

/// The HTTP route table of `vs` (which won service `key` of `entry`), and who serves the
/// service: the kernel, or the proxy with the first field that needs it.
pub fn table(
    vs: &VirtualService,
    targets: &[Option<Target>],
    mirror_targets: &[Option<Target>],
    key: ServiceKey,
) -> (HttpRouteTable, Decision, Vec<String>) {
    let mut notes = Vec::new();
    let mut table = HttpRouteTable {
        rules: Vec::new(),
        clusters: Vec::new(),
        tls: None,
        sniffed: None,
    };
    let mut decision: Option<Decision> = None;
    let spec = vs.spec();
    for (index, rule) in spec.http.iter().enumerate() {
        if !matching::http_applies(rule, key.port) {
            continue;
        }
        if decision.is_none() {
            if let Some(field) = matching::proxy_field(rule, index, key.port) {
                decision = Some(Decision::Proxy {
                    reason: format!("{} {field}", vs.id),
                });
            } else {
                // This rule takes every request: later rules are never reached.
                decision = Some(Decision::Kernel);
            }
        }
        if rule.delegate.is_some() {
            continue;
        }
        let range = vs.rule_destinations(Section::Http, index);
        let action = action(rule, range, vs, targets, key, &mut table.clusters);
        let mirrors = mirrors(index, vs, mirror_targets, key, &mut table.clusters);
        let (request_headers, response_headers) = header_ops(rule.headers.as_ref());
        table.rules.push(HttpRule {
            route: RouteRef::rule(&vs.id, Section::Http, index),
            name: rule.name.clone(),
            matches: rule
                .matches
                .iter()
                .filter(|m| matching::http_l4_holds(m, key.port))
                .map(request_match)
                .collect(),
            action,
            rewrite: rule.rewrite.as_ref().map(|r| Rewrite {
                uri: r.uri.clone(),
                authority: r.authority.clone(),
                uri_regex: r
                    .uri_regex_rewrite
                    .as_ref()
                    .map(|x| (x.pattern.clone(), x.rewrite.clone())),
            }),
            request_headers,
            response_headers,
            timeout: rule.timeout.as_deref().and_then(|t| parse_duration(t).ok()),
            retries: rule.retries.as_ref().map(|r| RetryPolicy {
                attempts: u32::try_from(r.attempts).unwrap_or(0),
                per_try_timeout: r
                    .per_try_timeout
                    .as_deref()
                    .and_then(|t| parse_duration(t).ok()),
                retry_on: r
                    .retry_on
                    .as_deref()
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
                retry_remote_localities: r.retry_remote_localities.unwrap_or(false),
                backoff: r
                    .backoff
                    .as_deref()
                    .and_then(|t| parse_duration(t).ok())
                    .filter(|t| !t.is_zero()),
            }),
            fault: rule.fault.as_ref().map(fault),
            mirrors,
            cors: rule.cors_policy.as_ref().map(|c| Cors {
                allow_origins: c
                    .allow_origins
                    .iter()
                    .map(str_match)
                    .chain(c.allow_origin.iter().map(|o| StrMatch::Exact(o.clone())))
                    .collect(),
                allow_methods: c.allow_methods.clone(),
                allow_headers: c.allow_headers.clone(),
                expose_headers: c.expose_headers.clone(),
                max_age: c.max_age.as_deref().and_then(|t| parse_duration(t).ok()),
                allow_credentials: c.allow_credentials,
            }),
        });
        let pending = matching::without_effect(rule);
        if !pending.is_empty() {
            notes.push(format!(
                "{}: spec.http[{index}]: {} not applied yet: the proxy serves these requests as if {} absent",
                vs.id,
                pending.join(", "),
                if pending.len() == 1 { "it were" } else { "they were" }
            ));
        }
        if matching::takes_every_request(rule, key.port) {
            // Istio never reaches the rules after one that takes every request.
            break;
        }
    }
    // A consistent hash on a header, cookie or query parameter needs the requests too, and
    // so do limits on connections and requests.
    let decision = match decision.unwrap_or(Decision::Kernel) {
        Decision::Kernel => proxied_by_policy(&table.clusters).unwrap_or(Decision::Kernel),
        proxy => proxy,
    };
    (table, decision, notes)
}

/// The proxy when a cluster's DestinationRule asks for what only a proxy does: a consistent
/// hash on request data, or connection pool limits (Istio's circuit breaking).
pub(crate) fn proxied_by_policy(clusters: &[Cluster]) -> Option<Decision> {
    clusters.iter().find_map(|c| {
        if !matches!(c.load_balancer, HttpLoadBalancer::Simple(_)) {
            return Some(Decision::Proxy {
                reason: format!(
                    "a consistent hash on request data for {} (DestinationRule trafficPolicy.loadBalancer.consistentHash)",
                    c.name
                ),
            });
        }
        if c.limits.needs_proxy() {
            return Some(Decision::Proxy {
                reason: format!(
                    "connection pool limits for {} (DestinationRule trafficPolicy.connectionPool)",
                    c.name
                ),
            });
        }
        c.outlier.is_some().then(|| Decision::Proxy {
            reason: format!(
                "outlier detection for {} (DestinationRule trafficPolicy.outlierDetection)",
                c.name
            ),
        })
    })
}

/// The HTTP route table of a service no VirtualService routes, for when the proxy serves it
/// anyway (a DestinationRule hashes on a header, cookie or query parameter): Istio's default
/// route, every request to all endpoints of the host, balanced by `rules`.
pub fn default_table(entry: &Arc<Entry>, key: ServiceKey, rules: ForHost) -> HttpRouteTable {
    let target = Target {
        host: entry.host().clone(),
        entry: entry.clone(),
        rules,
        subset: None,
        missing_subset: None,
        port: None,
    };
    let mut clusters = Vec::new();
    let route = match cluster_of(&target, key, &mut clusters) {
        Some(cluster) => vec![WeightedCluster {
            cluster,
            weight: vsteer_plan::WEIGHT_SCALE,
            request_headers: HeaderOps::default(),
            response_headers: HeaderOps::default(),
        }],
        None => Vec::new(),
    };
    HttpRouteTable {
        rules: vec![HttpRule {
            route: RouteRef {
                resource: entry.id.clone(),
                rule: RuleRef::Default,
            },
            name: None,
            matches: Vec::new(),
            action: HttpAction::Route {
                destinations: route,
                weighted: false,
            },
            rewrite: None,
            request_headers: HeaderOps::default(),
            response_headers: HeaderOps::default(),
            timeout: None,
            retries: None,
            fault: None,
            mirrors: Vec::new(),
            cors: None,
        }],
        clusters,
        tls: None,
        sniffed: None,
    }
}

fn action(
    rule: &HttpRoute,
    range: std::ops::Range<usize>,
    vs: &VirtualService,
    targets: &[Option<Target>],
    key: ServiceKey,
    clusters: &mut Vec<Cluster>,
) -> HttpAction {
    if let Some(redirect) = &rule.redirect {
        let port = match (redirect.port, redirect.derive_port.as_deref()) {
            (Some(p), _) => u16::try_from(p).ok().map(RedirectPort::Fixed),
            (None, Some("FROM_REQUEST_PORT")) => Some(RedirectPort::FromRequestPort),
            (None, Some("FROM_PROTOCOL_DEFAULT")) => Some(RedirectPort::FromProtocolDefault),
            _ => None,
        };
        return HttpAction::Redirect(Redirect {
            uri: redirect.uri.clone(),
            prefix_rewrite: redirect.prefix_rewrite.clone(),
            authority: redirect.authority.clone(),
            scheme: redirect.scheme.clone(),
            port,
            code: redirect
                .redirect_code
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(301),
        });
    }
    if let Some(direct) = &rule.direct_response {
        // `bytes` was checked to be base64 (check_rule).
        let body = direct.body.as_ref().and_then(|b| {
            b.string
                .as_ref()
                .map(|s| Arc::from(s.as_bytes()))
                .or_else(|| {
                    b.bytes
                        .as_deref()
                        .and_then(|s| base64(s).ok())
                        .map(Arc::from)
                })
        });
        return HttpAction::DirectResponse {
            status: u16::try_from(direct.status).unwrap_or(500),
            body,
        };
    }
    let count = range.len();
    let weighted = weighted_clusters(vs, targets, range, key, clusters)
        .into_iter()
        .map(|(j, cluster, weight)| {
            let (request_headers, response_headers) =
                header_ops(rule.route.get(j).and_then(|d| d.headers.as_ref()));
            WeightedCluster {
                cluster,
                weight,
                request_headers,
                response_headers,
            }
        })
        .collect();
    HttpAction::Route {
        destinations: weighted,
        weighted: count > 1,
    }
}

/// The destinations of a rule (`range` of `vs.destinations`) that take a share, each as
/// (its place in the rule's route, its cluster, its share in parts per million); a single
/// destination takes everything whatever its weight, as in Istio.
pub(crate) fn weighted_clusters(
    vs: &VirtualService,
    targets: &[Option<Target>],
    range: std::ops::Range<usize>,
    key: ServiceKey,
    clusters: &mut Vec<Cluster>,
) -> Vec<(usize, usize, u32)> {
    let count = range.len();
    let mut chosen = Vec::new();
    let mut weights = Vec::new();
    for (j, i) in range.enumerate() {
        let Some(Some(target)) = targets.get(i) else {
            continue;
        };
        let weight = if count == 1 {
            1
        } else {
            u64::try_from(vs.destinations[i].weight.unwrap_or(0)).unwrap_or(0)
        };
        if weight == 0 {
            continue;
        }
        let Some(cluster) = cluster_of(target, key, clusters) else {
            continue;
        };
        chosen.push((j, cluster));
        weights.push(weight);
    }
    let parts = largest_remainder(u64::from(vsteer_plan::WEIGHT_SCALE), &weights);
    chosen
        .into_iter()
        .zip(parts)
        .map(|((j, cluster), part)| (j, cluster, u32::try_from(part).unwrap_or(u32::MAX)))
        .collect()
}

fn mirrors(
    index: usize,
    vs: &VirtualService,
    mirror_targets: &[Option<Target>],
    key: ServiceKey,
    clusters: &mut Vec<Cluster>,
) -> Vec<Mirror> {
    vs.mirrors
        .iter()
        .zip(mirror_targets)
        .filter(|(m, _)| m.rule == index)
        .filter_map(|(m, target)| {
            let cluster = cluster_of(target.as_ref()?, key, clusters)?;
            Some(Mirror {
                cluster,
                percent: m.percent,
            })
        })
        .collect()
}

/// The index of `target`'s cluster for `key`, added when new; `None` when its port
/// cannot carry the service (reported when the VirtualService was resolved).
pub(crate) fn cluster_of(
    target: &Target,
    key: ServiceKey,
    clusters: &mut Vec<Cluster>,
) -> Option<usize> {
    let port = target
        .named_port()
        .or_else(|| infer_port(&target.entry, key.port))?;
    let subset: Option<Arc<str>> = target.subset_name().map(Arc::from);
    let name = format!(
        "outbound|{}|{}|{}",
        port.number,
        subset.as_deref().unwrap_or_default(),
        target.host
    );
    if let Some(index) = clusters.iter().position(|c| c.name == name) {
        return Some(index);
    }
    let located: Vec<_> = target
        .entry
        .located_backends(key.vip, port, &target.host)
        .into_iter()
        .filter(|(b, _)| target.selects(b))
        .collect();
    let endpoints = target
        .rules
        .cluster_endpoints(subset.as_deref(), port.number, located);
    clusters.push(Cluster {
        name,
        host: target.host.clone(),
        subset: subset.clone(),
        port: port.number,
        http2: port.http2,
        load_balancer: target
            .rules
            .http_load_balancer(subset.as_deref(), port.number),
        limits: target
            .rules
            .connection_limits(subset.as_deref(), port.number),
        outlier: target
            .rules
            .outlier_detection(subset.as_deref(), port.number),
        endpoints,
    });
    Some(clusters.len() - 1)
}

fn request_match(m: &HttpMatchRequest) -> RequestMatch {
    let list = |map: &BTreeMap<String, StringMatch>| {
        map.iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), str_match(v)))
            .collect()
    };
    RequestMatch {
        uri: m.uri.as_ref().map(str_match),
        scheme: m.scheme.as_ref().map(str_match),
        method: m.method.as_ref().map(str_match),
        authority: m.authority.as_ref().map(str_match),
        headers: list(&m.headers),
        without_headers: list(&m.without_headers),
        query_params: m
            .query_params
            .iter()
            .map(|(k, v)| (k.clone(), str_match(v)))
            .collect(),
        ignore_uri_case: m.ignore_uri_case,
    }
}

fn str_match(m: &StringMatch) -> StrMatch {
    match m {
        StringMatch::Exact(s) => StrMatch::Exact(s.clone()),
        StringMatch::Prefix(s) => StrMatch::Prefix(s.clone()),
        StringMatch::Regex(s) => StrMatch::Regex(s.clone()),
        StringMatch::Any => StrMatch::Present,
    }
}

fn header_ops(headers: Option<&Headers>) -> (HeaderOps, HeaderOps) {
    let ops = |o: Option<&HeaderOperations>| match o {
        None => HeaderOps::default(),
        Some(o) => HeaderOps {
            set: o
                .set
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            add: o
                .add
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            remove: o.remove.iter().map(|k| k.to_ascii_lowercase()).collect(),
        },
    };
    match headers {
        None => (HeaderOps::default(), HeaderOps::default()),
        Some(h) => (ops(h.request.as_ref()), ops(h.response.as_ref())),
    }
}

fn fault(fault: &HttpFaultInjection) -> Fault {
    Fault {
        delay: fault.delay.as_ref().and_then(|d| {
            let fixed: Duration = parse_duration(d.fixed_delay.as_deref()?).ok()?;
            let percent = d
                .percentage
                .map(|p| p.value)
                .or(d.percent.map(f64::from))
                .unwrap_or(100.0);
            Some(FaultDelay { fixed, percent })
        }),
        abort: fault.abort.as_ref().and_then(|a| {
            let status = match (&a.http_status, &a.grpc_status) {
                (Some(code), _) => AbortStatus::Http(u16::try_from(*code).ok()?),
                (None, Some(name)) => AbortStatus::Grpc(name.clone()),
                (None, None) => return None,
            };
            let percent = a.percentage.map(|p| p.value).unwrap_or(100.0);
            Some(FaultAbort { status, percent })
        }),
    }
}
