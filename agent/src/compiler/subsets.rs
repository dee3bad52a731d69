//! DestinationRules: their subsets name groups of a host's endpoints, which the plan records
//! on each backend so routes to a subset can be compiled later.

use std::collections::{BTreeMap, BTreeSet};

use super::Problems;
use super::names::{host_match, is_dns1123_label, resolve_host};
use super::plan::Plan;
use crate::config::{ConfigError, DestinationRuleSpec, Resource, Subset};

/// A valid DestinationRule with its host resolved.
pub(super) struct Rule<'a> {
    resource: &'a Resource,
    spec: &'a DestinationRuleSpec,
    /// `spec.host` resolved against the rule's namespace.
    host: String,
}

/// Validates DestinationRules; invalid ones are reported and left out.
pub(super) fn collect<'a>(
    rules: impl IntoIterator<Item = (&'a Resource, &'a DestinationRuleSpec)>,
    errors: &mut Vec<ConfigError>,
) -> Vec<Rule<'a>> {
    let mut valid = Vec::new();
    for (resource, spec) in rules {
        let mut problems = Problems::new(resource);
        if spec.host.is_empty() {
            problems.add("spec.host", "host is required");
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
        }
        match problems.into_result() {
            Ok(()) => valid.push(Rule {
                resource,
                spec,
                host: resolve_host(&spec.host, &resource.meta.namespace),
            }),
            Err(e) => errors.extend(e),
        }
    }
    valid
}

/// Fills `BackendPlan::subsets` from the rules, and notes rules and subsets that select
/// nothing (a route to such a subset would have nowhere to go).
pub(super) fn assign(plan: &mut Plan, rules: &[Rule], notes: &mut Vec<String>) {
    let hosts: BTreeSet<String> = plan.services.iter().map(|s| s.host.clone()).collect();
    let mut by_host: BTreeMap<String, Vec<(usize, &Subset)>> = BTreeMap::new();
    let mut used_rules: BTreeSet<usize> = BTreeSet::new();
    let mut shadowed: BTreeSet<(usize, String)> = BTreeSet::new();
    for host in hosts {
        let subsets = subsets_for(&host, rules, &mut used_rules, &mut shadowed);
        by_host.insert(host, subsets);
    }

    let mut matched: BTreeSet<(usize, &str)> = BTreeSet::new();
    for service in &mut plan.services {
        let Some(subsets) = by_host.get(&service.host) else {
            continue;
        };
        for backend in &mut service.backends {
            for &(rule, subset) in subsets {
                if subset
                    .labels
                    .iter()
                    .all(|(k, v)| backend.labels.get(k) == Some(v))
                {
                    backend.subsets.push(subset.name.clone());
                    matched.insert((rule, subset.name.as_str()));
                }
            }
        }
    }

    for (index, rule) in rules.iter().enumerate() {
        let id = rule.resource.id();
        if !used_rules.contains(&index) {
            notes.push(format!(
                "{id}: host {} matches no service in the plan; its subsets are unused",
                rule.host
            ));
            continue;
        }
        for subset in &rule.spec.subsets {
            if shadowed.contains(&(index, subset.name.clone())) {
                notes.push(format!(
                    "{id}: subset {} is already defined by an earlier DestinationRule for the same host; this one is ignored",
                    subset.name
                ));
            } else if !matched.contains(&(index, subset.name.as_str())) {
                notes.push(format!(
                    "{id}: subset {} matches no endpoint of {}",
                    subset.name, rule.host
                ));
            }
        }
        let has_policy = rule.spec.traffic_policy.is_some()
            || rule.spec.subsets.iter().any(|s| s.traffic_policy.is_some());
        if has_policy {
            notes.push(format!("{id}: trafficPolicy is not applied yet"));
        }
    }
}

/// The subsets that apply to `host`: those of the most specific matching rules (an exact
/// host beats a wildcard), merged in input order with the first definition of a name
/// winning, as Istio merges DestinationRules for one host.
fn subsets_for<'a>(
    host: &str,
    rules: &[Rule<'a>],
    used_rules: &mut BTreeSet<usize>,
    shadowed: &mut BTreeSet<(usize, String)>,
) -> Vec<(usize, &'a Subset)> {
    let matches: Vec<(usize, &Rule<'a>, usize)> = rules
        .iter()
        .enumerate()
        .filter_map(|(index, rule)| host_match(&rule.host, host).map(|score| (index, rule, score)))
        .collect();
    let Some(best) = matches.iter().map(|&(_, _, score)| score).max() else {
        return Vec::new();
    };
    let mut subsets: Vec<(usize, &'a Subset)> = Vec::new();
    for (index, rule, _) in matches.into_iter().filter(|&(_, _, score)| score == best) {
        used_rules.insert(index);
        for subset in &rule.spec.subsets {
            if subsets.iter().any(|(_, s)| s.name == subset.name) {
                shadowed.insert((index, subset.name.clone()));
            } else {
                subsets.push((index, subset));
            }
        }
    }
    subsets
}
