//! DestinationRules: for a host, its subsets (named groups of its endpoints, by labels) and
//! its traffic policy.
//!
//! Istio picks, for a host, the rules whose `host` covers it most specifically (an exact
//! name beats any wildcard), and merges those in input order: the first definition of a
//! subset name wins, and the first traffic policy. Istio would also prefer rules in the
//! client's namespace; vsteer steers the whole node, so it has no client namespace.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::Problems;
use super::names::{host_match, is_dns1123_label, resolve_host};
use super::plan::LoadBalancer;
use super::registry::Registry;
use super::traffic_policy;
use crate::config::{
    ConfigError, DestinationRuleSpec, Resource, ResourceSpec, Subset, TrafficPolicy,
};

/// A valid DestinationRule with its host resolved.
struct Rule<'a> {
    resource: &'a Resource,
    spec: &'a DestinationRuleSpec,
    /// `spec.host` resolved against the rule's namespace.
    host: String,
}

/// Every DestinationRule, valid or not.
pub(super) struct Rules<'a> {
    valid: Vec<Rule<'a>>,
    /// Rejected rules: (resource, resolved host).
    rejected: Vec<(String, String)>,
    /// Valid rules by exact host, and those with a wildcard host: finding a host's rules stays
    /// constant time with tens of thousands of rules.
    exact: HashMap<String, Vec<usize>>,
    wildcard: Vec<usize>,
}

/// What the DestinationRules say about one host.
pub(super) struct ForHost<'a> {
    subsets: Vec<&'a Subset>,
    policy: Option<&'a TrafficPolicy>,
    /// A rejected rule that would apply to the host, were it valid.
    pub rejected: Option<String>,
}

impl<'a> ForHost<'a> {
    pub fn subset(&self, name: &str) -> Option<&'a Subset> {
        self.subsets.iter().copied().find(|s| s.name == name)
    }

    /// The names of the subsets an endpoint with `labels` belongs to.
    pub fn subsets_of(&self, labels: &BTreeMap<String, String>) -> Vec<String> {
        self.subsets
            .iter()
            .filter(|s| selects(s, labels))
            .map(|s| s.name.clone())
            .collect()
    }

    /// The load balancer for traffic to `port` of the host (its ServiceEntry port number),
    /// and to `subset` of it if one is named.
    pub fn load_balancer(&self, subset: Option<&str>, port: u16) -> LoadBalancer {
        let subset = subset
            .and_then(|name| self.subset(name))
            .and_then(|s| s.traffic_policy.as_deref());
        traffic_policy::load_balancer(self.policy, subset, port)
    }
}

/// Whether a subset's labels select an endpoint with `labels`; no labels select all.
pub(super) fn selects(subset: &Subset, labels: &BTreeMap<String, String>) -> bool {
    subset.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl<'a> Rules<'a> {
    pub fn for_host(&self, host: &str) -> ForHost<'a> {
        let best = self.best(host);
        let mut subsets: Vec<&'a Subset> = Vec::new();
        let mut policy = None;
        for &index in &best.rules {
            let rule = &self.valid[index];
            for subset in &rule.spec.subsets {
                if !subsets.iter().any(|s| s.name == subset.name) {
                    subsets.push(subset);
                }
            }
            policy = policy.or(rule.spec.traffic_policy.as_deref());
        }
        let rejected = self
            .rejected
            .iter()
            .find(|(_, pattern)| {
                host_match(pattern, host).is_some_and(|score| best.score.is_none_or(|b| score >= b))
            })
            .map(|(id, _)| id.clone());
        ForHost {
            subsets,
            policy,
            rejected,
        }
    }

    /// The valid rules that cover `host` most specifically, in input order. An exact host
    /// beats every wildcard, so only without one are the wildcard rules scored.
    fn best(&self, host: &str) -> Best {
        if let Some(exact) = self.exact.get(host) {
            return Best {
                rules: exact.clone(),
                score: Some(usize::MAX),
            };
        }
        let scored: Vec<(usize, usize)> = self
            .wildcard
            .iter()
            .filter_map(|&index| {
                host_match(&self.valid[index].host, host).map(|score| (index, score))
            })
            .collect();
        let score = scored.iter().map(|&(_, score)| score).max();
        Best {
            rules: scored
                .into_iter()
                .filter(|&(_, s)| Some(s) == score)
                .map(|(index, _)| index)
                .collect(),
            score,
        }
    }

    /// The valid rules whose own host is `host` (exact or the same wildcard), in input order.
    fn with_host<'s>(&'s self, host: &'s str) -> impl Iterator<Item = usize> + 's {
        let exact = self.exact.get(host).into_iter().flatten().copied();
        let wild = self
            .wildcard
            .iter()
            .copied()
            .filter(move |&i| self.valid[i].host == host);
        exact.chain(wild)
    }

    /// Notes rules that apply to no host, subsets that are shadowed or select no endpoint: a
    /// route to such a subset would have nowhere to go.
    pub fn note_unused(&self, registry: &Registry, notes: &mut Vec<String>) {
        let mut used: BTreeSet<usize> = BTreeSet::new();
        let mut matched: BTreeSet<(usize, &str)> = BTreeSet::new();
        for entry in &registry.entries {
            for host in entry.hosts {
                let best = self.best(host);
                used.extend(&best.rules);
                for &index in &best.rules {
                    for subset in &self.valid[index].spec.subsets {
                        if entry
                            .endpoint_labels()
                            .any(|labels| selects(subset, labels))
                        {
                            matched.insert((index, subset.name.as_str()));
                        }
                    }
                }
            }
        }
        for (index, rule) in self.valid.iter().enumerate() {
            let id = rule.resource.id();
            if !used.contains(&index) {
                notes.push(format!(
                    "{id}: host {} matches no ServiceEntry host; its subsets are unused",
                    rule.host
                ));
                continue;
            }
            for subset in &rule.spec.subsets {
                let first = self
                    .with_host(&rule.host)
                    .filter(|&earlier| earlier < index)
                    .map(|earlier| &self.valid[earlier])
                    .find(|earlier| earlier.spec.subsets.iter().any(|s| s.name == subset.name));
                if let Some(first) = first {
                    notes.push(format!(
                        "{id}: subset {} is already defined by {} for the same host; this one is ignored",
                        subset.name,
                        first.resource.id()
                    ));
                } else if !matched.contains(&(index, subset.name.as_str())) {
                    notes.push(format!(
                        "{id}: subset {} matches no endpoint of {}",
                        subset.name, rule.host
                    ));
                }
            }
        }
    }
}

struct Best {
    /// Indexes into `Rules::valid`.
    rules: Vec<usize>,
    score: Option<usize>,
}

/// Validates the DestinationRules of `resources`; invalid ones are reported and left out.
pub(super) fn collect<'a>(
    resources: &[&'a Resource],
    errors: &mut Vec<ConfigError>,
    notes: &mut Vec<String>,
) -> Rules<'a> {
    let mut rules = Rules {
        valid: Vec::new(),
        rejected: Vec::new(),
        exact: HashMap::new(),
        wildcard: Vec::new(),
    };
    for &resource in resources {
        let ResourceSpec::DestinationRule(spec) = &resource.spec else {
            continue;
        };
        let host = resolve_host(&spec.host, &resource.meta.namespace);
        let mut rule_notes = Vec::new();
        match check(resource, spec, &mut rule_notes) {
            Ok(()) => {
                notes.extend(rule_notes);
                let index = rules.valid.len();
                if host.starts_with('*') {
                    rules.wildcard.push(index);
                } else {
                    rules.exact.entry(host.clone()).or_default().push(index);
                }
                rules.valid.push(Rule {
                    resource,
                    spec,
                    host,
                });
            }
            Err(e) => {
                errors.extend(e);
                rules.rejected.push((resource.id(), host));
            }
        }
    }
    rules
}

fn check(
    resource: &Resource,
    spec: &DestinationRuleSpec,
    notes: &mut Vec<String>,
) -> Result<(), Vec<ConfigError>> {
    let mut problems = Problems::new(resource);
    let mut ignored = Vec::new();
    if spec.host.is_empty() {
        problems.add("spec.host", "host is required");
    }
    if spec.workload_selector.is_some() {
        problems.add(
            "spec.workloadSelector",
            "workloadSelector is not supported by vsteer: it steers the whole node, not chosen client workloads",
        );
    }
    if let Some(policy) = &spec.traffic_policy {
        traffic_policy::check(
            policy,
            "spec.trafficPolicy",
            &mut problems,
            &mut ignored,
            notes,
        );
    }
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, subset) in spec.subsets.iter().enumerate() {
        let field = format!("spec.subsets[{i}].name");
        if subset.name.is_empty() {
            problems.add(field, "subset name is required");
        } else if !is_dns1123_label(&subset.name) {
            problems.add(
                field,
                format!(
                    "subset name {:?} must be a DNS-1123 label (lowercase letters, digits and '-')",
                    subset.name
                ),
            );
        } else if let Some(first) = names.get(subset.name.as_str()) {
            problems.add(
                field,
                format!(
                    "subset {:?} is already defined at spec.subsets[{first}]",
                    subset.name
                ),
            );
        } else {
            names.insert(&subset.name, i);
        }
        if let Some(policy) = &subset.traffic_policy {
            let field = format!("spec.subsets[{i}].trafficPolicy");
            traffic_policy::check(policy, &field, &mut problems, &mut ignored, notes);
        }
    }
    if !ignored.is_empty() {
        notes.push(format!(
            "{}: not applied by vsteer: {}",
            resource.id(),
            ignored.join(", ")
        ));
    }
    problems.into_result()
}
