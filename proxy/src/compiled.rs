//! A route table compiled for serving: matchers with their regexes built once, actions with
//! their header operations in Envoy's order, and per cluster its endpoints (with their
//! connection pools) and load balancer state. Built once per table change.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use vsteer_plan::http::{HttpAction, HttpRouteTable, HttpRule};

use crate::balance::{Balancer, EndpointState};
use crate::chance::Chance;
use crate::cors::CompiledCors;
use crate::fault::CompiledFault;
use crate::headers::HeaderOps;
use crate::matching::{PathMatch, RequestMatcher, RequestView};
use crate::mirror::CompiledMirror;
use crate::outlier::{ClusterOutlier, Outcome};
use crate::passthrough::CompiledTls;
use crate::pool::Pools;
use crate::redirect::RedirectAction;
use crate::retry::CompiledRetry;
use crate::rewrite::PathRewrite;

#[derive(Debug)]
pub(crate) struct CompiledTable {
    /// What this was compiled from: an unchanged table is not compiled again.
    pub source: Arc<HttpRouteTable>,
    pub rules: Vec<CompiledRule>,
    pub clusters: Vec<ClusterState>,
    /// A TLS port's routes by SNI (then `rules` is empty).
    pub tls: Option<CompiledTls>,
    /// A sniffed port: what does not speak HTTP goes to this route instead.
    pub sniffed: Option<vsteer_plan::http::Sniffed>,
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    /// The rule's `name` (`%ROUTE_NAME%`).
    pub name: Option<Box<str>>,
    /// Any one must match (OR).
    pub matches: Vec<RequestMatcher>,
    pub action: Action,
    pub rewrite: Option<PathRewrite>,
    /// The rule's response header operations (for redirects and direct responses; routes
    /// carry them per destination, in order).
    pub response_ops: HeaderOps,
    /// Delays and aborts injected before the action.
    pub fault: Option<CompiledFault>,
    /// From sending upstream to the end of the response (`None`, or Istio's `0s`: none).
    pub timeout: Option<std::time::Duration>,
    /// What is tried again, how often.
    pub retry: CompiledRetry,
    pub cors: Option<CompiledCors>,
    pub mirrors: Vec<CompiledMirror>,
}

#[derive(Debug)]
pub(crate) enum Action {
    Route(RouteAction),
    Redirect(RedirectAction),
    Direct {
        status: StatusCode,
        body: Option<Bytes>,
    },
}

#[derive(Debug)]
pub(crate) struct RouteAction {
    pub targets: Vec<Target>,
    /// Sum of the targets' weights (parts per million).
    pub total: u64,
}

/// One weighted destination of a route, with what applies when it is chosen.
#[derive(Debug)]
pub(crate) struct Target {
    pub cluster: usize,
    /// Running sum of weights up to and including this target.
    pub upto: u64,
    /// Request header operations, level by level in the order Envoy applies them: a single
    /// destination's operations join the rule's level (after the rule's own); a weighted
    /// destination's are a level of their own, applied before the rule's.
    pub request_ops: Vec<HeaderOps>,
    pub response_ops: Vec<HeaderOps>,
    /// The `Host`/`:authority` to send: `rewrite.authority` or a `host` header operation;
    /// the rule's wins for a single destination, the destination's for weighted ones (as
    /// Istio configures Envoy).
    pub authority: Option<HeaderValue>,
    /// Some operation's value changes per request (command operators).
    pub dynamic: bool,
    /// Response operations read request headers: the proxy keeps a copy.
    pub response_reads_request: bool,
}

#[derive(Debug)]
pub(crate) struct ClusterState {
    pub name: Box<str>,
    pub http2: bool,
    /// The priority levels, 0 first: one for a cluster without locality failover.
    pub levels: Vec<Level>,
    /// Endpoints of every level (outlier detection's ejection limit counts them all).
    total: usize,
    /// Outlier detection, when the DestinationRule asks for it.
    pub outlier: Option<Arc<ClusterOutlier>>,
}

/// The endpoints of one priority level and their balancer.
#[derive(Debug)]
pub(crate) struct Level {
    pub endpoints: Vec<EndpointState>,
    pub balancer: Balancer,
}

impl ClusterState {
    /// Whether `endpoint` may take a request now: not ejected, or ejections ignored (too
    /// few endpoints left in the pool).
    fn usable(&self, endpoint: &EndpointState) -> bool {
        match (&self.outlier, &endpoint.health) {
            (Some(outlier), Some(health)) => !health.is_ejected() || outlier.panics(self.total),
            _ => true,
        }
    }

    /// The consistent-hash key requests are balanced by, if any.
    pub(crate) fn hash_key(&self) -> Option<&crate::hash_policy::HashKey> {
        self.levels.first().and_then(|l| l.balancer.hash_key())
    }

    /// The levels to try for a request: the one Envoy's priority load picks, then the
    /// others in order.
    fn levels_for_request(&self) -> impl Iterator<Item = &Level> + '_ {
        let first = if self.levels.len() > 1 {
            let health: Vec<(usize, usize)> = self
                .levels
                .iter()
                .map(|l| {
                    let usable = l.endpoints.iter().filter(|e| self.usable(e)).count();
                    (usable, l.endpoints.len())
                })
                .collect();
            crate::priority::choose(&health, fastrand::f64())
        } else {
            0
        };
        self.levels.get(first).into_iter().chain(
            self.levels
                .iter()
                .enumerate()
                .filter(move |(i, _)| *i != first)
                .map(|(_, l)| l),
        )
    }

    /// The endpoint for a request (`hash`: its consistent-hash key), skipping ejected
    /// ones; `None` when there is none or every one is ejected (Envoy: no healthy
    /// upstream).
    pub(crate) fn pick(&self, hash: Option<u64>) -> Option<&EndpointState> {
        self.levels_for_request().find_map(|level| {
            let endpoints = &level.endpoints;
            if endpoints.is_empty() {
                return None;
            }
            let first = level.balancer.pick(endpoints, hash);
            if self.usable(&endpoints[first]) {
                return Some(&endpoints[first]);
            }
            level
                .balancer
                .pick_instead(first, endpoints, hash, |e| self.usable(e))
                .map(|i| &endpoints[i])
        })
    }

    /// An endpoint for a retry: not one of `tried` when another usable one exists, else a
    /// usable tried one; `None` when every endpoint is ejected.
    pub(crate) fn pick_other(&self, tried: &[std::net::SocketAddr]) -> Option<&EndpointState> {
        let fresh = |e: &EndpointState| !tried.contains(&e.addr) && self.usable(e);
        let other = self.levels_for_request().find_map(|level| {
            let endpoints = &level.endpoints;
            if endpoints.is_empty() {
                return None;
            }
            let first = level.balancer.pick(endpoints, None);
            if fresh(&endpoints[first]) {
                return Some(&endpoints[first]);
            }
            level
                .balancer
                .pick_instead(first, endpoints, None, fresh)
                .map(|i| &endpoints[i])
        });
        other.or_else(|| self.pick(None))
    }

    /// Counts one try's outcome at `endpoint` for outlier detection.
    pub(crate) fn report(&self, endpoint: &EndpointState, outcome: Outcome) {
        if let (Some(outlier), Some(health)) = (&self.outlier, &endpoint.health) {
            outlier.report(health, outcome);
        }
    }
}

impl CompiledTable {
    /// Compiles `table` of the service on `service_port`; endpoints take their pools from
    /// `pools`.
    pub(crate) fn compile(
        table: &Arc<HttpRouteTable>,
        service_port: u16,
        pools: &Pools,
    ) -> CompiledTable {
        let clusters = table
            .clusters
            .iter()
            .map(|c| {
                let limits = pools.cluster_limits(&c.name, &c.limits);
                let outlier = pools.outliers.get(&c.name, c.outlier.as_ref());
                let addrs: Vec<std::net::SocketAddr> = c
                    .endpoints
                    .iter()
                    .map(|e| std::net::SocketAddr::new(e.address, e.port))
                    .collect();
                let mut health = outlier
                    .as_ref()
                    .map(|o| o.hosts(&addrs).into_iter())
                    .into_iter()
                    .flatten();
                let mut by_level: Vec<Vec<EndpointState>> = Vec::new();
                for (e, addr) in c.endpoints.iter().zip(&addrs) {
                    let level = e.priority as usize;
                    if by_level.len() <= level {
                        by_level.resize_with(level + 1, Vec::new);
                    }
                    by_level[level].push(EndpointState {
                        addr: *addr,
                        weight: e.weight.max(1),
                        pool: pools.get(*addr, c.http2, limits.as_ref()),
                        health: health.next(),
                    });
                }
                // Levels the compiler numbers 0, 1, ...; an empty one is left out.
                let levels: Vec<Level> = by_level
                    .into_iter()
                    .filter(|endpoints| !endpoints.is_empty())
                    .map(|endpoints| Level {
                        balancer: Balancer::new(&c.load_balancer, &endpoints),
                        endpoints,
                    })
                    .collect();
                ClusterState {
                    name: c.name.as_str().into(),
                    http2: c.http2,
                    total: c.endpoints.len(),
                    levels,
                    outlier,
                }
            })
            .collect();
        let rules = table
            .rules
            .iter()
            .map(|r| compile_rule(r, service_port))
            .collect();
        CompiledTable {
            source: table.clone(),
            rules,
            clusters,
            tls: table.tls.as_ref().map(CompiledTls::compile),
            sniffed: table.sniffed,
        }
    }

    /// The first rule with a match block that holds for `req` (and how much of the path its
    /// path condition matched).
    pub(crate) fn route(&self, req: &RequestView<'_>) -> Option<(&CompiledRule, PathMatch)> {
        self.rules.iter().find_map(|rule| {
            rule.matches
                .iter()
                .find_map(|m| m.matches(req))
                .map(|matched| (rule, matched))
        })
    }
}

fn compile_rule(rule: &HttpRule, service_port: u16) -> CompiledRule {
    let what = rule.route.to_string();
    let matches = if rule.matches.is_empty() {
        vec![RequestMatcher::any()]
    } else {
        rule.matches.iter().map(RequestMatcher::compile).collect()
    };
    let (rule_request, header_authority) = HeaderOps::compile(&rule.request_headers, &what);
    let (rule_response, _) = HeaderOps::compile(&rule.response_headers, &what);
    let rule_authority = rule
        .rewrite
        .as_ref()
        .and_then(|r| r.authority.as_deref())
        .filter(|a| !a.is_empty())
        .and_then(|a| HeaderValue::from_str(a).ok())
        .or(header_authority);
    let action = match &rule.action {
        HttpAction::Redirect(r) => Action::Redirect(RedirectAction::compile(r, service_port)),
        HttpAction::DirectResponse { status, body } => Action::Direct {
            status: StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: body.as_ref().map(|b| Bytes::copy_from_slice(b)),
        },
        HttpAction::Route {
            destinations,
            weighted,
        } => {
            let single = !weighted;
            let mut upto = 0u64;
            let targets = destinations
                .iter()
                .map(|w| {
                    upto += u64::from(w.weight);
                    let (dest_request, dest_authority) =
                        HeaderOps::compile(&w.request_headers, &what);
                    let (dest_response, _) = HeaderOps::compile(&w.response_headers, &what);
                    let levels = |rule_ops: &HeaderOps, dest_ops: HeaderOps| -> Vec<HeaderOps> {
                        let levels = if single {
                            vec![HeaderOps::merged(rule_ops, &dest_ops)]
                        } else {
                            vec![dest_ops, rule_ops.clone()]
                        };
                        levels.into_iter().filter(|l| !l.is_empty()).collect()
                    };
                    let request_ops = levels(&rule_request, dest_request);
                    let response_ops = levels(&rule_response, dest_response);
                    Target {
                        cluster: w.cluster,
                        upto,
                        dynamic: request_ops
                            .iter()
                            .chain(&response_ops)
                            .any(HeaderOps::is_dynamic),
                        response_reads_request: response_ops
                            .iter()
                            .any(HeaderOps::reads_request_headers),
                        request_ops,
                        response_ops,
                        authority: if single {
                            rule_authority.clone().or(dest_authority)
                        } else {
                            dest_authority.or(rule_authority.clone())
                        },
                    }
                })
                .collect();
            Action::Route(RouteAction {
                targets,
                total: upto,
            })
        }
    };
    CompiledRule {
        name: rule.name.as_deref().map(Into::into),
        matches,
        action,
        rewrite: rule.rewrite.as_ref().and_then(PathRewrite::compile),
        response_ops: rule_response,
        fault: rule.fault.as_ref().and_then(CompiledFault::compile),
        timeout: rule.timeout.filter(|t| !t.is_zero()),
        retry: CompiledRetry::compile(rule.retries.as_ref()),
        cors: rule.cors.as_ref().map(CompiledCors::compile),
        mirrors: rule
            .mirrors
            .iter()
            .map(|m| CompiledMirror {
                cluster: m.cluster,
                chance: Chance::of_percent(m.percent),
            })
            .collect(),
    }
}

impl RouteAction {
    /// One destination, by weight.
    pub(crate) fn pick(&self) -> Option<&Target> {
        if self.total == 0 {
            return None;
        }
        let r = fastrand::u64(..self.total);
        self.targets.iter().find(|t| r < t.upto)
    }
}
