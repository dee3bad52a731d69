//! DestinationRules: for a host, its subsets (named groups of its endpoints, by labels) and
//! its traffic policy.
//!
//! Istio picks, for a host, the rules whose `host` covers it most specifically (an exact
//! name beats any wildcard), and merges those in precedence order: the first definition of
//! a subset name wins, and the first traffic policy. Istio would also prefer rules in the
//! client's namespace; vsteer steers the whole node, so it has no client namespace.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;
use vsteer_model::intern::Interner;
use vsteer_model::istio::{DestinationRuleSpec, LabelSelector, Subset, TrafficPolicy};
use vsteer_model::{Diagnostic, Labels, Precedence, Resource, ResourceId, ResourceSpec};
use vsteer_plan::http::{ConnectionLimits, HttpLoadBalancer, OutlierDetection};
use vsteer_plan::{BackendPlan, LoadBalancer};

use crate::locality::{self, Locality};
use crate::names::{host_match, is_dns1123_label, resolve_host};
use crate::problems::{FieldError, Problems};
use crate::traffic_policy;

/// What is wrong with a DestinationRule on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationRuleError {
    #[error("subset name {0:?} must be a DNS-1123 label (lowercase letters, digits and '-')")]
    SubsetName(String),
    #[error("subset {name:?} is already defined at spec.subsets[{first}]")]
    DuplicateSubset { name: String, first: usize },
}

/// A valid DestinationRule with its host resolved.
#[derive(Debug)]
pub struct Rule {
    pub id: ResourceId,
    pub precedence: Precedence,
    /// `spec.host` resolved against the rule's namespace.
    pub host: Arc<str>,
    resource: Arc<Resource>,
    /// Settings read but not applied, and the like.
    pub notes: Vec<String>,
    /// `spec.workloadSelector` selects some client workloads. vsteer does not know which
    /// workload connects, so the rule applies to no client (Istio applies it only to the
    /// selected ones): it is valid but never decides for a host.
    pub selects_clients: bool,
}

static NO_SPEC: DestinationRuleSpec = DestinationRuleSpec {
    host: String::new(),
    traffic_policy: None,
    subsets: Vec::new(),
    export_to: Vec::new(),
    workload_selector: None,
};

impl Rule {
    pub fn spec(&self) -> &DestinationRuleSpec {
        match &self.resource.spec {
            ResourceSpec::DestinationRule(spec) => spec,
            _ => &NO_SPEC,
        }
    }
}

/// One DestinationRule: valid, or rejected with its errors.
pub struct RuleState {
    pub host: Arc<str>,
    pub precedence: Precedence,
    pub result: Result<Arc<Rule>, Vec<Diagnostic>>,
}

/// Validates a DestinationRule on its own.
pub fn compile(
    resource: &Arc<Resource>,
    spec: &DestinationRuleSpec,
    hosts: &Interner,
) -> RuleState {
    let host = hosts.get(&resolve_host(&spec.host, resource.namespace()));
    let mut notes = Vec::new();
    let result = check(resource, spec, &mut notes).map(|()| {
        Arc::new(Rule {
            id: resource.id.clone(),
            precedence: resource.precedence.clone(),
            host: host.clone(),
            resource: resource.clone(),
            notes,
            selects_clients: spec
                .workload_selector
                .as_ref()
                .is_some_and(|selector| !selector.match_labels.is_empty()),
        })
    });
    RuleState {
        host,
        precedence: resource.precedence.clone(),
        result,
    }
}

/// Every DestinationRule, indexed so that finding a host's rules stays constant time with
/// tens of thousands of rules.
#[derive(Default)]
pub struct Rules {
    /// Boxed: at tens of thousands of rules a table of inline states runs half empty after
    /// each doubling.
    pub all: HashMap<ResourceId, Box<RuleState>>,
    /// Valid rules by exact host, and those with a wildcard host, by precedence.
    /// Keyed by (precedence, id): two resources may share a precedence for a moment, while a
    /// batch of changes moves documents within a file.
    exact: HashMap<Arc<str>, Vec<(Slot, Arc<Rule>)>>,
    wildcard: BTreeMap<Slot, Arc<Rule>>,
    /// Rejected rules: (id, resolved host), by precedence.
    rejected: BTreeMap<Slot, Arc<str>>,
    /// The node's locality, which `localityLbSetting` is seen from (`None`: not configured).
    pub node: Option<Arc<Locality>>,
}

/// Where a rule sorts: its precedence, then its id.
type Slot = (Precedence, ResourceId);

/// A ServiceEntry host, the labels of the endpoints of the entries listing it, and whether
/// one of them passes connects through (resolution NONE: every subset of it does too).
pub type HostLabels<'a> = (Arc<str>, Vec<&'a Labels>, bool);

/// What the DestinationRules say about one host.
#[derive(Clone, Default)]
pub struct ForHost {
    /// The rules that apply, in precedence order.
    rules: Box<[Arc<Rule>]>,
    /// A rejected rule that would apply to the host, were it valid.
    pub rejected: Option<ResourceId>,
    node: Option<Arc<Locality>>,
}

impl ForHost {
    pub fn subset(&self, name: &str) -> Option<&Subset> {
        self.rules
            .iter()
            .flat_map(|r| &r.spec().subsets)
            .find(|s| &*s.name == name)
    }

    /// The names of the subsets an endpoint with `labels` belongs to (first definition of
    /// each name).
    pub fn subsets_of(&self, labels: &Labels) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = self
            .first_subsets()
            .into_iter()
            .filter(|s| selects(s, labels))
            .map(|s| s.name.clone())
            .collect();
        // Kept in every backend of the plan: no spare capacity.
        names.shrink_to_fit();
        names
    }

    /// The subsets in force: the first definition of each name, in precedence order.
    fn first_subsets(&self) -> Vec<&Subset> {
        let mut first: Vec<&Subset> = Vec::new();
        for subset in self.rules.iter().flat_map(|r| &r.spec().subsets) {
            if !first.iter().any(|s| s.name == subset.name) {
                first.push(subset);
            }
        }
        first
    }

    fn policy(&self) -> Option<&TrafficPolicy> {
        self.rules
            .iter()
            .find_map(|r| r.spec().traffic_policy.as_deref())
    }

    fn subset_policy(&self, subset: Option<&str>) -> Option<&TrafficPolicy> {
        subset
            .and_then(|name| self.subset(name))
            .and_then(|s| s.traffic_policy.as_deref())
    }

    /// The connect-time load balancer for traffic to `port` of the host (its ServiceEntry
    /// port number), and to `subset` of it if one is named.
    pub fn load_balancer(&self, subset: Option<&str>, port: u16) -> LoadBalancer {
        traffic_policy::load_balancer(self.policy(), self.subset_policy(subset), port)
    }

    /// Whether the same traffic goes on to the address dialled (`simple: PASSTHROUGH`): to
    /// a subset only when a DestinationRule defines it (else Envoy has no cluster: 503).
    pub fn passes_through(&self, subset: Option<&str>, port: u16) -> bool {
        subset.is_none_or(|name| self.subset(name).is_some())
            && traffic_policy::passes_through(self.policy(), self.subset_policy(subset), port)
    }

    /// The per-request load balancer for the same traffic.
    pub fn http_load_balancer(&self, subset: Option<&str>, port: u16) -> HttpLoadBalancer {
        traffic_policy::http_load_balancer(self.policy(), self.subset_policy(subset), port)
    }

    /// The connection pool limits the proxy applies to the same traffic.
    pub fn connection_limits(&self, subset: Option<&str>, port: u16) -> ConnectionLimits {
        traffic_policy::connection_limits(self.policy(), self.subset_policy(subset), port)
    }

    /// The outlier detection the proxy applies to the same traffic.
    pub fn outlier_detection(&self, subset: Option<&str>, port: u16) -> Option<OutlierDetection> {
        traffic_policy::outlier_detection(self.policy(), self.subset_policy(subset), port)
    }

    /// The endpoints (with their localities) of traffic to `port` of the host, and to
    /// `subset` of it, weighted by the `localityLbSetting.distribute` that applies to the
    /// node's locality (unchanged without one).
    pub fn locality_weighted(
        &self,
        subset: Option<&str>,
        port: u16,
        located: Vec<(BackendPlan, Option<Arc<str>>)>,
    ) -> Vec<BackendPlan> {
        if self.passes_through(subset, port) {
            return vec![BackendPlan::passthrough(1)];
        }
        let setting =
            traffic_policy::locality_setting(self.policy(), self.subset_policy(subset), port);
        locality::weigh(
            located,
            locality::distribution(setting, self.node.as_deref()),
        )
    }

    /// The cluster endpoints of the same traffic, for the proxy: weighted by the
    /// distribution, and given their locality failover priorities when failover applies.
    pub fn cluster_endpoints(
        &self,
        subset: Option<&str>,
        port: u16,
        located: Vec<(BackendPlan, Option<Arc<str>>)>,
    ) -> Vec<vsteer_plan::http::Endpoint> {
        let setting =
            traffic_policy::locality_setting(self.policy(), self.subset_policy(subset), port);
        let outlier = self.outlier_detection(subset, port).is_some();
        let node = self.node.as_deref();
        let located = if self.passes_through(subset, port) {
            vec![(BackendPlan::passthrough(1), None)]
        } else {
            located
        };
        let endpoint = |backend: BackendPlan, priority: u32| vsteer_plan::http::Endpoint {
            address: backend.address,
            port: backend.port,
            // The endpoint's own weight (1 unless set), or its share of a distribution.
            weight: backend.weight.max(1),
            priority,
        };
        // Distribute and failover are exclusive (Istio validates it).
        if let Some(distribution) = locality::distribution(setting, node) {
            return locality::weigh(located, Some(distribution))
                .into_iter()
                .map(|b| endpoint(b, 0))
                .collect();
        }
        let priorities = match node {
            Some(node) if locality::fails_over(setting, Some(node), outlier) => {
                let localities: Vec<Option<Arc<str>>> =
                    located.iter().map(|(_, l)| l.clone()).collect();
                locality::priorities(&localities, setting, node)
            }
            _ => vec![0; located.len()],
        };
        located
            .into_iter()
            .zip(priorities)
            .map(|((backend, _), priority)| endpoint(backend, priority))
            .collect()
    }

    /// Whether traffic to `port` of the host (no subset) needs the proxy for its policy: a
    /// consistent hash on request data, connection pool limits, or outlier detection.
    pub fn needs_proxy(&self, port: u16) -> bool {
        !matches!(
            self.http_load_balancer(None, port),
            HttpLoadBalancer::Simple(_)
        ) || self.connection_limits(None, port).needs_proxy()
            || self.outlier_detection(None, port).is_some()
    }
}

/// Whether a subset's labels select an endpoint with `labels`; no labels select all.
pub fn selects(subset: &Subset, labels: &Labels) -> bool {
    labels.contains_all(&subset.labels)
}

impl Rules {
    /// Adds or replaces a rule's state.
    pub fn insert(&mut self, id: ResourceId, state: RuleState) {
        self.remove(&id);
        let slot = (state.precedence.clone(), id.clone());
        match &state.result {
            // Valid, and applies to no client: indexed nowhere, so no host finds it.
            Ok(rule) if rule.selects_clients => {}
            Ok(rule) if rule.host.starts_with('*') => {
                self.wildcard.insert(slot, rule.clone());
            }
            Ok(rule) => {
                // A sorted vector: one or two rules per host, where a map costs a node.
                let rules = self.exact.entry(rule.host.clone()).or_default();
                let at = rules.partition_point(|(s, _)| *s < slot);
                rules.reserve_exact(1);
                rules.insert(at, (slot, rule.clone()));
            }
            Err(_) => {
                self.rejected.insert(slot, state.host.clone());
            }
        }
        self.all.insert(id, Box::new(state));
    }

    pub fn remove(&mut self, id: &ResourceId) -> Option<Box<RuleState>> {
        let state = self.all.remove(id)?;
        let slot = (state.precedence.clone(), id.clone());
        self.rejected.remove(&slot);
        self.wildcard.remove(&slot);
        if let Some(rules) = self.exact.get_mut(&state.host) {
            rules.retain(|(s, _)| *s != slot);
            if rules.is_empty() {
                self.exact.remove(&state.host);
            }
        }
        Some(state)
    }

    pub fn for_host(&self, host: &str) -> ForHost {
        let (rules, score) = self.best(host);
        let rules: Box<[Arc<Rule>]> = rules.into();
        let rejected = self
            .rejected
            .iter()
            .find(|(_, pattern)| {
                host_match(pattern, host).is_some_and(|s| score.is_none_or(|best| s >= best))
            })
            .map(|((_, id), _)| id.clone());
        ForHost {
            rules,
            rejected,
            node: self.node.clone(),
        }
    }

    /// The valid rules that cover `host` most specifically, in precedence order, and how
    /// specifically. An exact host beats every wildcard, so only without one are the
    /// wildcard rules scored.
    fn best(&self, host: &str) -> (Vec<Arc<Rule>>, Option<usize>) {
        if let Some(exact) = self.exact.get(host) {
            let rules = exact.iter().map(|(_, r)| r.clone()).collect();
            return (rules, Some(usize::MAX));
        }
        let scored: Vec<(&Arc<Rule>, usize)> = self
            .wildcard
            .values()
            .filter_map(|rule| host_match(&rule.host, host).map(|score| (rule, score)))
            .collect();
        let score = scored.iter().map(|&(_, score)| score).max();
        let rules = scored
            .into_iter()
            .filter(|&(_, s)| Some(s) == score)
            .map(|(rule, _)| rule.clone())
            .collect();
        (rules, score)
    }

    /// Whether `rule` is among the rules that decide for `host`.
    pub fn decides_for(&self, rule: &Rule, host: &str) -> bool {
        self.best(host).0.iter().any(|r| r.id == rule.id)
    }

    /// The valid rules whose own host is `host` (exact or the same wildcard), by
    /// precedence.
    pub fn with_host(&self, host: &str) -> Vec<Arc<Rule>> {
        if host.starts_with('*') {
            return self
                .wildcard
                .values()
                .filter(|r| &*r.host == host)
                .cloned()
                .collect();
        }
        self.exact
            .get(host)
            .map(|rules| rules.iter().map(|(_, r)| r.clone()).collect())
            .unwrap_or_default()
    }

    /// The valid rules with a wildcard host.
    pub fn wildcards(&self) -> impl Iterator<Item = &Arc<Rule>> + '_ {
        self.wildcard.values()
    }
}

/// The notes on one valid rule that depend on the rest of the config: it applies to no
/// host, a subset is shadowed by an earlier rule for the same host, or selects no endpoint
/// (a route to such a subset would have nowhere to go). `hosts` are the ServiceEntry hosts
/// the rule covers, each with the endpoint labels of the entries listing it.
pub fn notes_on(rule: &Rule, rules: &Rules, hosts: &[HostLabels<'_>]) -> Vec<String> {
    let id = &rule.id;
    if rule.selects_clients {
        // Its own note (from `check`) says why it applies to no client.
        return Vec::new();
    }
    let deciding: Vec<&HostLabels<'_>> = hosts
        .iter()
        .filter(|(host, _, _)| rules.decides_for(rule, host))
        .collect();
    if deciding.is_empty() {
        return vec![format!(
            "{id}: host {} matches no ServiceEntry host; its subsets are unused",
            rule.host
        )];
    }
    let mut notes = Vec::new();
    let same_host = rules.with_host(&rule.host);
    for subset in &rule.spec().subsets {
        let first = same_host
            .iter()
            .take_while(|earlier| earlier.precedence < rule.precedence)
            .find(|earlier| earlier.spec().subsets.iter().any(|s| s.name == subset.name));
        if let Some(first) = first {
            notes.push(format!(
                "{id}: subset {} is already defined by {} for the same host; this one is ignored",
                subset.name, first.id
            ));
        } else if !deciding.iter().any(|(_, labels, passthrough)| {
            *passthrough || labels.iter().any(|l| selects(subset, l))
        }) && !traffic_policy::may_pass_through(rule.spec().traffic_policy.as_deref())
            && !traffic_policy::may_pass_through(subset.traffic_policy.as_deref())
        {
            // (A PASSTHROUGH cluster needs no endpoint: Envoy's ORIGINAL_DST.)
            notes.push(format!(
                "{id}: subset {} matches no endpoint of {}",
                subset.name, rule.host
            ));
        }
    }
    notes
}

/// What vsteer does with a DestinationRule's `workloadSelector`.
fn workload_selector_note(id: &str, host: &str, selector: &LabelSelector) -> String {
    if selector.match_labels.is_empty() {
        return format!(
            "{id}: spec.workloadSelector selects no labels, so every workload: applied to \
             every client"
        );
    }
    let labels: Vec<String> = selector
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "{id}: spec.workloadSelector applies it only to client workloads with {} in Istio; \
         vsteer does not know the connecting workload yet, so it applies to no client and \
         {host} follows its other DestinationRules",
        labels.join(",")
    )
}

fn check(
    resource: &Resource,
    spec: &DestinationRuleSpec,
    notes: &mut Vec<String>,
) -> Result<(), Vec<Diagnostic>> {
    let mut problems = Problems::new(resource);
    let id = resource.id.to_string();
    let mut ignored = Vec::new();
    if spec.host.is_empty() {
        problems.add("spec.host", FieldError::Required { what: "host" });
    }
    notes.extend(crate::export_to::note(
        &resource.id,
        resource.namespace(),
        &spec.export_to,
    ));
    if let Some(selector) = &spec.workload_selector {
        notes.push(workload_selector_note(&id, &spec.host, selector));
    }
    if let Some(policy) = &spec.traffic_policy {
        traffic_policy::check(
            policy,
            "spec.trafficPolicy",
            &mut problems,
            &mut ignored,
            notes,
            &id,
        );
    }
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, subset) in spec.subsets.iter().enumerate() {
        let field = format!("spec.subsets[{i}].name");
        if subset.name.is_empty() {
            problems.add(
                field,
                FieldError::Required {
                    what: "subset name",
                },
            );
        } else if !is_dns1123_label(&subset.name) {
            problems.add(
                field,
                DestinationRuleError::SubsetName(subset.name.to_string()),
            );
        } else if let Some(&first) = names.get(&*subset.name) {
            problems.add(
                field,
                DestinationRuleError::DuplicateSubset {
                    name: subset.name.to_string(),
                    first,
                },
            );
        } else {
            names.insert(&subset.name, i);
        }
        if let Some(policy) = &subset.traffic_policy {
            let field = format!("spec.subsets[{i}].trafficPolicy");
            traffic_policy::check(policy, &field, &mut problems, &mut ignored, notes, &id);
        }
    }
    if !ignored.is_empty() {
        notes.push(format!(
            "{id}: not applied by vsteer: {}",
            ignored.join(", ")
        ));
    }
    problems.into_result()
}
