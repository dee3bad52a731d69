//! DestinationRule traffic policies: which load balancer applies to traffic for a host,
//! subset and port (at connect time and per request), and which settings vsteer reads but
//! does not apply.

use std::time::Duration;

use vsteer_model::istio::{
    ConnectionPoolSettings, LoadBalancerSettings, LocalityLbSetting,
    OutlierDetection as OutlierSettings, PortTrafficPolicy, TrafficPolicy,
};
use vsteer_plan::LoadBalancer;
use vsteer_plan::http::{ConnectionLimits, HttpLoadBalancer, OutlierDetection};

use crate::duration::parse_duration;
use crate::problems::{FieldError, Problems};

/// What is wrong with a traffic policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("port {port} already has settings at {field}.portLevelSettings[{first}]")]
    DuplicatePortLevel {
        port: u32,
        field: String,
        first: usize,
    },
    #[error("set only one of simple and consistentHash (Istio's loadBalancer is one or the other)")]
    SimpleAndHash,
    #[error(
        "unknown load balancer {0:?}; expected RANDOM, ROUND_ROBIN, LEAST_REQUEST or LEAST_CONN"
    )]
    UnknownSimple(String),
    #[error(
        "set only one hash key (httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName)"
    )]
    SeveralHashKeys,
    #[error("httpCookie needs a name")]
    CookieName,
    #[error("{0}")]
    Duration(String),
    #[error("must not be negative (0 or unset: no limit)")]
    NegativeLimit,
    #[error("must be a percentage, 0 to 100")]
    Percent,
    #[error("must be at least 1ms")]
    TooShort,
    #[error("must be an HTTP status code, 100 to 599")]
    StatusCode,
    #[error("set only one of distribute and failover (as Istio validates)")]
    DistributeAndFailover,
    #[error("locality weight {0} must be 1 to 100")]
    LocalityWeight(u32),
    #[error("the locality weights add up to {0}; they must add up to 100")]
    LocalityTotal(u32),
    #[error(
        "{0:?} is not a locality pattern: region[/zone[/subzone]], with `*` for a whole segment only"
    )]
    LocalityPattern(String),
    #[error("failover from {0:?} to itself: give two different regions")]
    FailoverSameRegion(String),
    #[error("{0:?}: failover names regions only, without `/` or `*`")]
    FailoverNotRegion(String),
}

/// One setting (`whole` of a policy, `level` of a port level) for traffic to `port` of a
/// host, and to `subset` of it if one is named, merged as Istio's `MergeTrafficPolicy`
/// merges them: the rule's policy, replaced by its `portLevelSettings` for the port; then
/// the subset's policy where it sets it, and the subset's `portLevelSettings` for the port.
/// A port-level entry replaces the setting even when it sets none (Istio: port-level
/// policies do not inherit).
fn merged<'p, T>(
    rule: Option<&'p TrafficPolicy>,
    subset: Option<&'p TrafficPolicy>,
    port: u16,
    whole: impl Fn(&'p TrafficPolicy) -> Option<&'p T>,
    level: impl Fn(&'p PortTrafficPolicy) -> Option<&'p T>,
) -> Option<&'p T> {
    let mut setting = rule.and_then(|p| match port_level(&p.port_level_settings, port) {
        Some(l) => level(l),
        None => whole(p),
    });
    if let Some(subset) = subset {
        if let Some(own) = whole(subset) {
            setting = Some(own);
        }
        if let Some(l) = port_level(&subset.port_level_settings, port) {
            setting = level(l);
        }
    }
    setting
}

/// The load balancer settings (see [`merged`] for how policies merge).
fn settings<'p>(
    rule: Option<&'p TrafficPolicy>,
    subset: Option<&'p TrafficPolicy>,
    port: u16,
) -> Option<&'p LoadBalancerSettings> {
    merged(
        rule,
        subset,
        port,
        |p| p.load_balancer.as_ref(),
        |l| l.load_balancer.as_ref(),
    )
}

/// The `localityLbSetting` (see [`settings`] for how policies merge).
pub(crate) fn locality_setting<'p>(
    rule: Option<&'p TrafficPolicy>,
    subset: Option<&'p TrafficPolicy>,
    port: u16,
) -> Option<&'p LocalityLbSetting> {
    settings(rule, subset, port).and_then(|s| s.locality_lb_setting.as_ref())
}

/// The connect-time load balancer (see [`settings`] for how policies merge).
pub(crate) fn load_balancer(
    rule: Option<&TrafficPolicy>,
    subset: Option<&TrafficPolicy>,
    port: u16,
) -> LoadBalancer {
    settings(rule, subset, port)
        .map(|s| read(s).policy)
        .unwrap_or_default()
}

/// Whether traffic to `port` (and `subset`) goes on to the address dialled, with no load
/// balancing: `simple: PASSTHROUGH`, for which Istio builds an ORIGINAL_DST cluster that
/// takes no endpoints.
pub(crate) fn passes_through(
    rule: Option<&TrafficPolicy>,
    subset: Option<&TrafficPolicy>,
    port: u16,
) -> bool {
    settings(rule, subset, port).is_some_and(|s| is_passthrough(s) && s.consistent_hash.is_none())
}

/// Whether `simple: PASSTHROUGH` is set anywhere in `policy` (at its level or a port's):
/// traffic of some port may go to the address dialled, whatever the endpoints.
pub(crate) fn may_pass_through(policy: Option<&TrafficPolicy>) -> bool {
    policy.is_some_and(|p| {
        p.load_balancer
            .iter()
            .chain(p.port_level_settings.iter().flat_map(|l| &l.load_balancer))
            .any(is_passthrough)
    })
}

fn is_passthrough(settings: &LoadBalancerSettings) -> bool {
    settings.simple.as_deref() == Some("PASSTHROUGH")
}

/// The per-request load balancer: the connect-time one, or a consistent hash on a header,
/// cookie or query parameter (which only a proxy can honour).
pub(crate) fn http_load_balancer(
    rule: Option<&TrafficPolicy>,
    subset: Option<&TrafficPolicy>,
    port: u16,
) -> HttpLoadBalancer {
    let Some(settings) = settings(rule, subset, port) else {
        return HttpLoadBalancer::Simple(LoadBalancer::default());
    };
    match read(settings).request_key {
        Some(key) => key,
        None => HttpLoadBalancer::Simple(read(settings).policy),
    }
}

/// The connection pool settings (see [`merged`]): a subset's `connectionPool` replaces the
/// rule's whole.
fn pool_settings<'p>(
    rule: Option<&'p TrafficPolicy>,
    subset: Option<&'p TrafficPolicy>,
    port: u16,
) -> Option<&'p ConnectionPoolSettings> {
    merged(
        rule,
        subset,
        port,
        |p| p.connection_pool.as_ref(),
        |l| l.connection_pool.as_ref(),
    )
}

/// The limits of a cluster (host, subset, port) from its `connectionPool`. Istio reads a
/// 0 as unset, and unset as no limit (it raises Envoy's defaults of 1,024 to the maximum).
pub(crate) fn connection_limits(
    rule: Option<&TrafficPolicy>,
    subset: Option<&TrafficPolicy>,
    port: u16,
) -> ConnectionLimits {
    let Some(pool) = pool_settings(rule, subset, port) else {
        return ConnectionLimits::default();
    };
    let limit = |n: Option<i32>| n.and_then(|n| u32::try_from(n).ok()).filter(|&n| n > 0);
    let (tcp, http) = (pool.tcp.as_ref(), pool.http.as_ref());
    ConnectionLimits {
        max_connections: limit(tcp.and_then(|t| t.max_connections)),
        max_pending_requests: limit(http.and_then(|h| h.http1_max_pending_requests)),
        max_requests: limit(http.and_then(|h| h.http2_max_requests)),
        max_requests_per_connection: limit(http.and_then(|h| h.max_requests_per_connection)),
        connect_timeout: tcp
            .and_then(|t| t.connect_timeout.as_deref())
            .and_then(|t| parse_duration(t).ok())
            .filter(|t| !t.is_zero()),
    }
}

/// The outlier detection of a cluster (see [`merged`]: a subset's replaces the rule's
/// whole), with Envoy's defaults where Istio leaves a field unset.
pub(crate) fn outlier_detection(
    rule: Option<&TrafficPolicy>,
    subset: Option<&TrafficPolicy>,
    port: u16,
) -> Option<OutlierDetection> {
    let settings = merged(
        rule,
        subset,
        port,
        |p| p.outlier_detection.as_ref(),
        |l| l.outlier_detection.as_ref(),
    )?;
    let defaults = OutlierDetection::default();
    let time = |t: Option<&str>, default: Duration| {
        t.and_then(|t| parse_duration(t).ok())
            .filter(|t| !t.is_zero())
            .unwrap_or(default)
    };
    let percent = |p: Option<i32>| p.and_then(|p| u32::try_from(p).ok()).map(|p| p.min(100));
    let split = settings.split_external_local_origin_errors == Some(true);
    let base_ejection_time = time(
        settings.base_ejection_time.as_deref(),
        defaults.base_ejection_time,
    );
    Some(OutlierDetection {
        // Istio sets Envoy's count when given (0 turns it off) and leaves Envoy's 5 else.
        consecutive_5xx: match settings.consecutive_5xx_errors {
            Some(0) => None,
            Some(n) => Some(n),
            None => defaults.consecutive_5xx,
        },
        consecutive_gateway: settings.consecutive_gateway_errors.filter(|&n| n > 0),
        // With the split, Istio sets a count only above 0; Envoy's default is 5 then.
        consecutive_local_origin: split.then_some(
            match settings.consecutive_local_origin_failures {
                Some(n) if n > 0 => n,
                _ => 5,
            },
        ),
        split_local_origin: split,
        interval: time(settings.interval.as_deref(), defaults.interval),
        base_ejection_time,
        max_ejection_time: defaults.max_ejection_time.max(base_ejection_time),
        // Istio passes only a value above 0 on; Envoy's default is 10%.
        max_ejection_percent: percent(settings.max_ejection_percent)
            .filter(|&p| p > 0)
            .unwrap_or(defaults.max_ejection_percent),
        min_health_percent: percent(settings.min_health_percent).unwrap_or(0),
        error_codes: settings
            .outlier_detection_http_error_codes
            .iter()
            .filter_map(|&c| u16::try_from(c).ok())
            .collect(),
    })
}

/// Checks an `outlierDetection` at `field`: durations of at least 1ms, percentages.
fn check_outlier(
    outlier: &OutlierSettings,
    field: &str,
    problems: &mut Problems,
    ignored: &mut Vec<String>,
) {
    for (name, value) in [
        ("interval", outlier.interval.as_deref()),
        ("baseEjectionTime", outlier.base_ejection_time.as_deref()),
    ] {
        let Some(value) = value else { continue };
        match parse_duration(value) {
            Err(e) => problems.add(format!("{field}.{name}"), PolicyError::Duration(e)),
            Ok(d) if d < Duration::from_millis(1) => {
                problems.add(format!("{field}.{name}"), PolicyError::TooShort)
            }
            Ok(_) => {}
        }
    }
    for (name, value) in [
        ("maxEjectionPercent", outlier.max_ejection_percent),
        ("minHealthPercent", outlier.min_health_percent),
    ] {
        if value.is_some_and(|p| !(0..=100).contains(&p)) {
            problems.add(format!("{field}.{name}"), PolicyError::Percent);
        }
    }
    if let Some(code) = outlier
        .outlier_detection_http_error_codes
        .iter()
        .position(|c| !(100..=599).contains(c))
    {
        problems.add(
            format!("{field}.outlierDetectionHttpErrorCodes[{code}]"),
            PolicyError::StatusCode,
        );
    }
    // Deprecated in Istio, which no longer reads it.
    if outlier.consecutive_errors.is_some() {
        ignored.push(format!("{field}.consecutiveErrors"));
    }
    if outlier.consecutive_local_origin_failures.is_some()
        && outlier.split_external_local_origin_errors != Some(true)
    {
        // Istio reads it only with the split.
        ignored.push(format!("{field}.consecutiveLocalOriginFailures"));
    }
}

/// Checks a `connectionPool` at `field`: limits not negative, the connect timeout a
/// duration; the settings vsteer reads but does not apply go to `ignored`.
fn check_pool(
    pool: &ConnectionPoolSettings,
    field: &str,
    problems: &mut Problems,
    ignored: &mut Vec<String>,
) {
    let limit = |problems: &mut Problems, value: Option<i32>, name: &str| {
        if value.is_some_and(|n| n < 0) {
            problems.add(format!("{field}.{name}"), PolicyError::NegativeLimit);
        }
    };
    if let Some(tcp) = &pool.tcp {
        limit(problems, tcp.max_connections, "tcp.maxConnections");
        if let Some(timeout) = tcp.connect_timeout.as_deref()
            && let Err(e) = parse_duration(timeout)
        {
            problems.add(
                format!("{field}.tcp.connectTimeout"),
                PolicyError::Duration(e),
            );
        }
        for (name, set) in [
            ("tcpKeepalive", tcp.tcp_keepalive.is_some()),
            (
                "maxConnectionDuration",
                tcp.max_connection_duration.is_some(),
            ),
            ("idleTimeout", tcp.idle_timeout.is_some()),
        ] {
            if set {
                ignored.push(format!("{field}.tcp.{name}"));
            }
        }
    }
    if let Some(http) = &pool.http {
        limit(
            problems,
            http.http1_max_pending_requests,
            "http.http1MaxPendingRequests",
        );
        limit(problems, http.http2_max_requests, "http.http2MaxRequests");
        limit(
            problems,
            http.max_requests_per_connection,
            "http.maxRequestsPerConnection",
        );
        limit(problems, http.max_retries, "http.maxRetries");
        for (name, set) in [
            ("maxRetries", http.max_retries.is_some()),
            ("idleTimeout", http.idle_timeout.is_some()),
            ("h2UpgradePolicy", http.h2_upgrade_policy.is_some()),
            ("useClientProtocol", http.use_client_protocol.is_some()),
            (
                "maxConcurrentStreams",
                http.max_concurrent_streams.is_some(),
            ),
            ("http2KeepAlive", http.http2_keep_alive.is_some()),
        ] {
            if set {
                ignored.push(format!("{field}.http.{name}"));
            }
        }
    }
}

fn port_level(levels: &[PortTrafficPolicy], port: u16) -> Option<&PortTrafficPolicy> {
    levels
        .iter()
        .find(|l| l.port.is_some_and(|p| p.number == u32::from(port)))
}

/// Validates a traffic policy at `field` (e.g. `spec.subsets[1].trafficPolicy`): errors go
/// to `problems`, settings that are read but not applied to `ignored` (as field paths).
pub(crate) fn check(
    policy: &TrafficPolicy,
    field: &str,
    problems: &mut Problems,
    ignored: &mut Vec<String>,
    notes: &mut Vec<String>,
    id: &str,
) {
    if let Some(lb) = &policy.load_balancer {
        check_load_balancer(lb, &format!("{field}.loadBalancer"), problems, notes, id);
    }
    if let Some(pool) = &policy.connection_pool {
        check_pool(pool, &format!("{field}.connectionPool"), problems, ignored);
    }
    if let Some(outlier) = &policy.outlier_detection {
        check_outlier(
            outlier,
            &format!("{field}.outlierDetection"),
            problems,
            ignored,
        );
    }
    let unapplied = [
        ("tls", policy.tls.is_some()),
        ("tunnel", policy.tunnel.is_some()),
        ("proxyProtocol", policy.proxy_protocol.is_some()),
        ("retryBudget", policy.retry_budget.is_some()),
    ];
    ignored.extend(
        unapplied
            .iter()
            .filter(|(_, set)| *set)
            .map(|(name, _)| format!("{field}.{name}")),
    );
    for (i, level) in policy.port_level_settings.iter().enumerate() {
        let level_field = format!("{field}.portLevelSettings[{i}]");
        match level.port.map(|p| p.number) {
            None => problems.add(
                format!("{level_field}.port"),
                FieldError::Required { what: "port" },
            ),
            Some(n) => {
                if problems
                    .port(format!("{level_field}.port.number"), "port", n)
                    .is_some()
                    && let Some(first) = policy.port_level_settings[..i]
                        .iter()
                        .position(|l| l.port.is_some_and(|p| p.number == n))
                {
                    problems.add(
                        format!("{level_field}.port.number"),
                        PolicyError::DuplicatePortLevel {
                            port: n,
                            field: field.to_string(),
                            first,
                        },
                    );
                }
            }
        }
        if let Some(lb) = &level.load_balancer {
            check_load_balancer(
                lb,
                &format!("{level_field}.loadBalancer"),
                problems,
                notes,
                id,
            );
        }
        if let Some(pool) = &level.connection_pool {
            check_pool(
                pool,
                &format!("{level_field}.connectionPool"),
                problems,
                ignored,
            );
        }
        if let Some(outlier) = &level.outlier_detection {
            check_outlier(
                outlier,
                &format!("{level_field}.outlierDetection"),
                problems,
                ignored,
            );
        }
        if level.tls.is_some() {
            ignored.push(format!("{level_field}.tls"));
        }
    }
}

fn check_load_balancer(
    settings: &LoadBalancerSettings,
    field: &str,
    problems: &mut Problems,
    notes: &mut Vec<String>,
    id: &str,
) {
    let read = read(settings);
    for (suffix, error) in read.errors {
        problems.add(format!("{field}{suffix}"), error);
    }
    for (suffix, message) in read.notes {
        notes.push(format!("{id}: {field}{suffix}: {message}"));
    }
}

/// Istio's checks of a `localityLbSetting`, and what vsteer applies of it.
fn check_locality(setting: &LocalityLbSetting, read: &mut Read) {
    const FIELD: &str = ".localityLbSetting";
    if !setting.distribute.is_empty() && !setting.failover.is_empty() {
        read.errors
            .push((FIELD, PolicyError::DistributeAndFailover));
    }
    let pattern_ok = |pattern: &str| {
        let parts: Vec<&str> = pattern.split('/').collect();
        parts.len() <= 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && (*p == "*" || !p.contains('*')))
    };
    for d in &setting.distribute {
        if !pattern_ok(&d.from) {
            read.errors.push((
                ".localityLbSetting.distribute.from",
                PolicyError::LocalityPattern(d.from.clone()),
            ));
        }
        for (pattern, &weight) in &d.to {
            if !pattern_ok(pattern) {
                read.errors.push((
                    ".localityLbSetting.distribute.to",
                    PolicyError::LocalityPattern(pattern.clone()),
                ));
            }
            if !(1..=100).contains(&weight) {
                read.errors.push((
                    ".localityLbSetting.distribute.to",
                    PolicyError::LocalityWeight(weight),
                ));
            }
        }
        let total: u32 = d.to.values().fold(0, |sum, &w| sum.saturating_add(w));
        if total != 100 {
            read.errors.push((
                ".localityLbSetting.distribute.to",
                PolicyError::LocalityTotal(total),
            ));
        }
    }
    for f in &setting.failover {
        if f.from == f.to {
            read.errors.push((
                ".localityLbSetting.failover",
                PolicyError::FailoverSameRegion(f.from.clone()),
            ));
        }
        for region in [&f.from, &f.to] {
            if region.contains('/') || region.contains('*') {
                read.errors.push((
                    ".localityLbSetting.failover",
                    PolicyError::FailoverNotRegion(region.clone()),
                ));
            }
        }
    }
    if setting.enabled == Some(false) {
        return;
    }
    if !setting.distribute.is_empty() {
        read.notes.push((
            FIELD,
            "distribute is applied for the node's locality (vsteer run/plan --locality); a node without one spreads traffic over every endpoint".into(),
        ));
    }
    if !setting.failover_priority.is_empty() {
        read.notes.push((
            FIELD,
            "failoverPriority is not applied: it compares the client's labels, which vsteer does not know; traffic spreads over every locality".into(),
        ));
    } else if !setting.failover.is_empty() {
        read.notes.push((
            FIELD,
            "failover is applied by the proxy, for the node's locality (--locality), where outlierDetection is set (as Istio); the kernel path spreads over every locality".into(),
        ));
    }
}

/// What a load balancer setting means for vsteer.
struct Read {
    /// At connect time.
    policy: LoadBalancer,
    /// Per request, where it hashes on something only a request has.
    request_key: Option<HttpLoadBalancer>,
    /// (field suffix, error): the setting cannot be honoured.
    errors: Vec<(&'static str, PolicyError)>,
    /// (field suffix, message): read, not applied, and the policy falls back.
    notes: Vec<(&'static str, String)>,
}

fn read(settings: &LoadBalancerSettings) -> Read {
    let mut read = Read {
        policy: LoadBalancer::Random,
        request_key: None,
        errors: Vec::new(),
        notes: Vec::new(),
    };
    if let Some(locality) = &settings.locality_lb_setting {
        check_locality(locality, &mut read);
    }
    for (suffix, set) in [
        (
            ".warmupDurationSecs",
            settings.warmup_duration_secs.is_some(),
        ),
        (".warmup", settings.warmup.is_some()),
        (
            ".zoneAwareLbSetting",
            settings.zone_aware_lb_setting.is_some(),
        ),
    ] {
        if set {
            read.notes.push((suffix, "not applied by vsteer".into()));
        }
    }
    match (settings.simple.as_deref(), &settings.consistent_hash) {
        (Some(_), Some(_)) => read.errors.push(("", PolicyError::SimpleAndHash)),
        (Some(simple), None) => match simple {
            "UNSPECIFIED" | "RANDOM" => {}
            "ROUND_ROBIN" => read.policy = LoadBalancer::RoundRobin,
            // LEAST_CONN is Istio's deprecated name for LEAST_REQUEST.
            "LEAST_REQUEST" | "LEAST_CONN" => read.policy = LoadBalancer::LeastRequest,
            // Envoy's ORIGINAL_DST cluster: see `passes_through`.
            "PASSTHROUGH" => {}
            other => read
                .errors
                .push((".simple", PolicyError::UnknownSimple(other.to_string()))),
        },
        (None, Some(hash)) => {
            let l7_keys: Vec<&str> = [
                ("httpHeaderName", hash.http_header_name.is_some()),
                ("httpCookie", hash.http_cookie.is_some()),
                (
                    "httpQueryParameterName",
                    hash.http_query_parameter_name.is_some(),
                ),
            ]
            .into_iter()
            .filter_map(|(name, set)| set.then_some(name))
            .collect();
            let source_ip = hash.use_source_ip == Some(true);
            if l7_keys.len() + usize::from(source_ip) > 1 {
                read.errors
                    .push((".consistentHash", PolicyError::SeveralHashKeys));
            } else if let Some(key) = l7_keys.first() {
                read.notes.push((
                    ".consistentHash",
                    format!("hashing on {key} needs the requests: the proxy serves it on HTTP ports; on TCP ports connections are spread at random"),
                ));
                read.request_key = request_key(hash, &mut read.errors);
            } else if source_ip {
                read.policy = LoadBalancer::SourceIpHash;
            } else {
                read.notes.push((
                    ".consistentHash",
                    "no hash key set; connections are spread at random".into(),
                ));
            }
            let tuning = hash.ring_hash.is_some()
                || hash.maglev.is_some()
                || hash.minimum_ring_size.is_some();
            if tuning {
                read.notes.push((
                    ".consistentHash",
                    "ringHash, maglev and minimumRingSize are not applied: vsteer has its own hash"
                        .into(),
                ));
            }
        }
        (None, None) => {}
    }
    read
}

/// The request property a consistent hash reads: a header, a cookie or a query parameter.
fn request_key(
    hash: &vsteer_model::istio::ConsistentHashLb,
    errors: &mut Vec<(&'static str, PolicyError)>,
) -> Option<HttpLoadBalancer> {
    if let Some(header) = &hash.http_header_name {
        return Some(HttpLoadBalancer::Header(header.to_ascii_lowercase()));
    }
    if let Some(name) = &hash.http_query_parameter_name {
        return Some(HttpLoadBalancer::QueryParameter(name.clone()));
    }
    let cookie = hash.http_cookie.as_ref()?;
    if cookie.name.is_empty() {
        errors.push((".consistentHash.httpCookie.name", PolicyError::CookieName));
        return None;
    }
    let ttl: Option<Duration> = match cookie.ttl.as_deref().map(parse_duration) {
        None => None,
        Some(Ok(ttl)) => Some(ttl),
        Some(Err(e)) => {
            errors.push((".consistentHash.httpCookie.ttl", PolicyError::Duration(e)));
            None
        }
    };
    Some(HttpLoadBalancer::Cookie {
        name: cookie.name.clone(),
        path: cookie.path.clone(),
        ttl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> TrafficPolicy {
        vsteer_model::yaml::from_str(yaml).unwrap()
    }

    fn settings(yaml: &str) -> LoadBalancerSettings {
        vsteer_model::yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn simple_names_and_aliases() {
        let cases = [
            ("simple: RANDOM", LoadBalancer::Random),
            ("simple: UNSPECIFIED", LoadBalancer::Random),
            ("simple: ROUND_ROBIN", LoadBalancer::RoundRobin),
            ("simple: LEAST_REQUEST", LoadBalancer::LeastRequest),
            ("simple: LEAST_CONN", LoadBalancer::LeastRequest),
            (
                "consistentHash: {useSourceIp: true}",
                LoadBalancer::SourceIpHash,
            ),
            ("{}", LoadBalancer::Random),
        ];
        for (yaml, expected) in cases {
            let read = read(&settings(yaml));
            assert_eq!(read.policy, expected, "{yaml}");
            assert!(read.errors.is_empty() && read.notes.is_empty(), "{yaml}");
        }
    }

    #[test]
    fn unknown_and_both_are_errors_and_passthrough_is_not() {
        let errors = |yaml| read(&settings(yaml)).errors;
        assert!(errors("simple: PASSTHROUGH").is_empty());
        assert_eq!(errors("simple: FASTEST")[0].0, ".simple");
        assert!(
            errors("{simple: RANDOM, consistentHash: {useSourceIp: true}}")[0]
                .1
                .to_string()
                .contains("only one of")
        );
    }

    #[test]
    fn l7_hash_keys_fall_back_to_random_with_a_note() {
        let read = read(&settings("consistentHash: {httpHeaderName: x-user}"));
        assert_eq!(read.policy, LoadBalancer::Random);
        assert!(
            read.notes[0]
                .1
                .contains("the proxy serves it on HTTP ports"),
            "{:?}",
            read.notes
        );
        assert!(read.errors.is_empty());
    }

    #[test]
    fn port_level_replaces_and_subset_overrides() {
        let rule = policy(
            "loadBalancer: {simple: ROUND_ROBIN}
portLevelSettings:
- {port: {number: 81}, loadBalancer: {simple: LEAST_REQUEST}}
- {port: {number: 82}, connectionPool: {}}",
        );
        assert_eq!(
            load_balancer(Some(&rule), None, 80),
            LoadBalancer::RoundRobin
        );
        assert_eq!(
            load_balancer(Some(&rule), None, 81),
            LoadBalancer::LeastRequest
        );
        // A port-level entry without a load balancer means the default, not the rule's.
        assert_eq!(load_balancer(Some(&rule), None, 82), LoadBalancer::Random);

        let subset = policy("loadBalancer: {consistentHash: {useSourceIp: true}}");
        assert_eq!(
            load_balancer(Some(&rule), Some(&subset), 81),
            LoadBalancer::SourceIpHash
        );
        let subset_port =
            policy("portLevelSettings: [{port: {number: 80}, loadBalancer: {simple: LEAST_CONN}}]");
        assert_eq!(
            load_balancer(Some(&rule), Some(&subset_port), 80),
            LoadBalancer::LeastRequest
        );
        // A subset policy without a load balancer keeps the rule's.
        assert_eq!(
            load_balancer(Some(&rule), Some(&subset_port), 81),
            LoadBalancer::LeastRequest
        );
        assert_eq!(load_balancer(None, None, 80), LoadBalancer::Random);
    }
}
