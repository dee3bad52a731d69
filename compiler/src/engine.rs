//! The compiler's state between changes, so that a change to one resource recompiles only
//! the services it can affect. Every stage keeps its results (entries, rules,
//! VirtualServices resolved, services) and the indexes that say who depends on what: by
//! host and by VIP (as ztunnel's state keeps `by_vip`), and for each service the hosts and
//! VirtualServices that shaped it. A change marks hosts, VirtualServices and services dirty;
//! only those are computed again. `compile` from scratch is the same engine fed everything
//! at once, so both give the same answer.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;
use vsteer_model::intern::Interner;
use vsteer_model::{Diagnostic, Kind, Precedence, Resource, ResourceId, ResourceSpec};
use vsteer_plan::{Plan, ServiceKey};

use crate::delegate;
use crate::destination_rule::{self, HostLabels, Rules};
use crate::names::host_match;
use crate::registry::Registry;
use crate::services::{self, Candidate, ServiceState};
use crate::sorted::SortedSet;
use crate::virtual_service::{self, Resolved, VirtualService};

/// One change: a resource's new version, or `None` when it is gone.
pub type Change = (ResourceId, Option<Arc<Resource>>);

/// What one update did.
#[derive(Debug, Default, Clone)]
pub struct Update {
    /// Services added, changed or removed in the plan (look them up in `Compiler::plan`).
    pub changed: Vec<ServiceKey>,
    /// The current errors of every resource this update looked at again.
    pub errors: Vec<Diagnostic>,
    /// New notes (those not given before).
    pub notes: Vec<String>,
    /// How much was recomputed.
    pub recompiled_services: usize,
    pub resolved_virtual_services: usize,
}

struct VsState {
    /// As compiled: a root's delegating rules expanded.
    vs: Arc<VirtualService>,
    /// As written (what a root that delegates to this one merges).
    written: Arc<Resource>,
    /// The VirtualServices its rules delegate to.
    delegates: Box<[ResourceId]>,
    resolved: Resolved,
}

/// A VirtualService as written, and as the compiler reads it.
type Written = (Arc<Resource>, delegate::Expanded);

/// The incremental compiler.
pub struct Compiler {
    registry: Registry,
    rules: Rules,
    /// Boxed, like the registry's entries.
    virtual_services: HashMap<ResourceId, Box<VsState>>,
    vs_by_host: HashMap<Arc<str>, SortedSet<ResourceId>>,
    vs_by_vip: HashMap<IpAddr, SortedSet<ResourceId>>,
    vs_wildcard: BTreeSet<ResourceId>,
    /// The roots that delegate to each VirtualService (which may not exist yet).
    roots_of: HashMap<ResourceId, SortedSet<ResourceId>>,
    /// VirtualServices by the hosts their destinations and mirrors name.
    vs_by_destination: HashMap<Arc<str>, SortedSet<ResourceId>>,
    plan: Plan,
    /// Boxed, like the registry's entries.
    services: HashMap<ServiceKey, Box<ServiceState>>,
    host_deps: HashMap<Arc<str>, SortedSet<ServiceKey>>,
    vs_deps: HashMap<ResourceId, SortedSet<ServiceKey>>,
    /// Notes of entries and rules that depend on other resources.
    entry_notes: HashMap<ResourceId, Vec<String>>,
    rule_notes: HashMap<ResourceId, Vec<String>>,
    /// Every note given so far, so an update reports only new ones.
    given: HashSet<String>,
    /// Services of the starting plan, all looked at in the first update.
    first: bool,
    /// Services to look at again in the next update: their last good state arrives with
    /// this one (see `ServiceState::spoiled_without_last`).
    revisit: BTreeSet<ServiceKey>,
    /// One copy of each host name, shared by entries, rules and VirtualServices.
    hosts: Interner,
    hosts_pruned_at: usize,
}

impl Default for Compiler {
    fn default() -> Self {
        Compiler::with_last_good(&Plan::default())
    }
}

impl Compiler {
    /// A compiler whose plan in force is `last_good`: services a rejected resource would
    /// change keep their state from it.
    pub fn with_last_good(last_good: &Plan) -> Compiler {
        Compiler {
            registry: Registry::with_last_good(last_good),
            rules: Rules::default(),
            virtual_services: HashMap::default(),
            vs_by_host: HashMap::default(),
            vs_by_vip: HashMap::default(),
            vs_wildcard: BTreeSet::new(),
            roots_of: HashMap::default(),
            vs_by_destination: HashMap::default(),
            plan: last_good.clone(),
            services: HashMap::default(),
            host_deps: HashMap::default(),
            vs_deps: HashMap::default(),
            entry_notes: HashMap::default(),
            rule_notes: HashMap::default(),
            given: HashSet::new(),
            first: true,
            revisit: BTreeSet::new(),
            hosts: Interner::default(),
            hosts_pruned_at: 0,
        }
    }

    /// Sees `localityLbSetting` from `node` (the node's locality; `None`: not configured,
    /// so none applies). Set before the first update.
    pub fn set_locality(&mut self, node: Option<crate::locality::Locality>) {
        self.rules.node = node.map(std::sync::Arc::new);
    }

    /// The plan: what the datapath must steer now.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Applies changes; recompiles what they can affect.
    pub fn update(&mut self, changes: &[Change]) -> Update {
        let mut entries: Vec<Change> = Vec::new();
        let mut rules: Vec<Change> = Vec::new();
        let mut virtual_services: Vec<Change> = Vec::new();
        for (id, resource) in changes {
            let change = (id.clone(), resource.clone());
            match id.kind {
                Kind::ServiceEntry | Kind::Service => entries.push(change),
                Kind::DestinationRule => rules.push(change),
                Kind::VirtualService => virtual_services.push(change),
            }
        }
        let mut dirty_hosts: BTreeSet<Arc<str>> = BTreeSet::new();
        let mut dirty_keys: BTreeSet<ServiceKey> = BTreeSet::new();
        let mut dirty_vs: BTreeSet<ResourceId> = BTreeSet::new();
        let mut touched: BTreeSet<ResourceId> = changes.iter().map(|(id, _)| id.clone()).collect();
        if std::mem::take(&mut self.first) {
            dirty_keys.extend(self.plan.keys().copied());
        }
        dirty_keys.append(&mut self.revisit);

        // Stage B: who holds each service.
        if !entries.is_empty() || self.registry.has_pending() {
            let settled = self.registry.update(&entries, &self.plan, &self.hosts);
            dirty_hosts.extend(settled.hosts);
            dirty_keys.extend(settled.keys);
            touched.extend(settled.entries);
        }

        // DestinationRules: the hosts they cover are dirty, before and after.
        let mut wildcard_rule_changed = false;
        for (id, resource) in &rules {
            if let Some(old) = self.rules.remove(id) {
                wildcard_rule_changed |= old.host.starts_with('*');
                dirty_hosts.insert(old.host);
            }
            if let Some(resource) = resource
                && let ResourceSpec::DestinationRule(spec) = &resource.spec
            {
                let state = destination_rule::compile(resource, spec, &self.hosts);
                wildcard_rule_changed |= state.host.starts_with('*');
                dirty_hosts.insert(state.host.clone());
                self.rules.insert(id.clone(), state);
            }
            self.rule_notes.remove(id);
        }
        self.hosts.prune(&mut self.hosts_pruned_at);
        if wildcard_rule_changed {
            let patterns: Vec<Arc<str>> = dirty_hosts
                .iter()
                .filter(|h| h.starts_with('*'))
                .cloned()
                .collect();
            let matching: Vec<Arc<str>> = self
                .registry
                .hosts()
                .filter(|h| patterns.iter().any(|p| host_match(p, h).is_some()))
                .cloned()
                .collect();
            dirty_hosts.extend(matching);
        }

        // Stage A of VirtualServices, and their indexes. The roots that delegate to a
        // changed VirtualService are compiled again with it.
        let mut written: BTreeMap<ResourceId, Option<Arc<Resource>>> =
            virtual_services.iter().cloned().collect();
        for (id, _) in &virtual_services {
            for root in self.roots_of.get(id).into_iter().flatten() {
                if !written.contains_key(root) {
                    let state = self.virtual_services.get(root);
                    written.insert(root.clone(), state.map(|s| s.written.clone()));
                    touched.insert(root.clone());
                }
            }
        }
        let expanded: Vec<(ResourceId, Option<Written>)> = written
            .iter()
            .map(|(id, resource)| {
                let lookup = |target: &ResourceId| match written.get(target) {
                    Some(now) => now.as_ref(),
                    None => self.virtual_services.get(target).map(|s| &s.written),
                };
                let expanded = resource
                    .as_ref()
                    .map(|r| (r.clone(), delegate::expand(r, lookup)));
                (id.clone(), expanded)
            })
            .collect();
        for (id, resource) in expanded {
            if let Some(old) = self.virtual_services.remove(&id) {
                self.unindex_vs(&old.vs);
                for target in &old.delegates {
                    remove_from(&mut self.roots_of, target, &id);
                }
                dirty_keys.extend(old.resolved.covered.iter().map(|(k, _)| *k));
            }
            if let Some(deps) = self.vs_deps.get(&id) {
                dirty_keys.extend(deps.iter().copied());
            }
            if let Some((written, expanded)) = resource {
                let mut vs = virtual_service::compile(&expanded.resource, &self.hosts);
                vs.notes.extend(expanded.notes);
                let vs = Arc::new(vs);
                self.index_vs(&vs);
                for target in &expanded.delegates {
                    self.roots_of
                        .entry(target.clone())
                        .or_default()
                        .insert(id.clone());
                }
                self.virtual_services.insert(
                    id.clone(),
                    Box::new(VsState {
                        vs,
                        written,
                        delegates: expanded.delegates.into_boxed_slice(),
                        resolved: empty_resolution(),
                    }),
                );
                dirty_vs.insert(id);
            }
        }

        // Stage C: VirtualServices whose destinations or covered services may differ.
        for host in &dirty_hosts {
            dirty_vs.extend(
                self.vs_by_destination
                    .get(host)
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
            dirty_vs.extend(self.vs_by_host.get(host).into_iter().flatten().cloned());
        }
        for key in &dirty_keys {
            dirty_vs.extend(self.vs_by_vip.get(&key.vip).into_iter().flatten().cloned());
        }
        if !dirty_hosts.is_empty() || !dirty_keys.is_empty() {
            dirty_vs.extend(self.vs_wildcard.iter().cloned());
        }
        let resolved_count = dirty_vs.len();
        for id in &dirty_vs {
            let Some(state) = self.virtual_services.get(id) else {
                continue;
            };
            let resolved = virtual_service::resolve(&state.vs, &self.registry, &self.rules);
            dirty_keys.extend(state.resolved.covered.iter().map(|(k, _)| *k));
            dirty_keys.extend(resolved.covered.iter().map(|(k, _)| *k));
            if let Some(deps) = self.vs_deps.get(id) {
                dirty_keys.extend(deps.iter().copied());
            }
            if let Some(state) = self.virtual_services.get_mut(id) {
                state.resolved = resolved;
            }
            touched.insert(id.clone());
        }

        // Stage D: services.
        for host in &dirty_hosts {
            dirty_keys.extend(self.host_deps.get(host).into_iter().flatten().copied());
            dirty_keys.extend(self.registry.services_of_host(host));
        }
        let mut update = Update {
            resolved_virtual_services: resolved_count,
            recompiled_services: dirty_keys.len(),
            ..Update::default()
        };
        for key in dirty_keys {
            let covering = self.covering(&key);
            let last = self.plan.service(&key);
            let rejected_vs = |id: &ResourceId| {
                self.virtual_services
                    .get(id)
                    .is_some_and(|s| s.vs.mesh && !s.resolved.valid)
            };
            let state = services::assemble(
                key,
                &self.registry,
                &self.rules,
                covering,
                last,
                rejected_vs,
            );
            self.forget_deps(&key);
            let changed = match state {
                Some((plan, state)) => {
                    if state.spoiled_without_last {
                        self.revisit.insert(key);
                    }
                    for host in &state.hosts {
                        self.host_deps.entry(host.clone()).or_default().insert(key);
                    }
                    for id in &state.virtual_services {
                        self.vs_deps.entry(id.clone()).or_default().insert(key);
                    }
                    let before = self.plan.service(&key).map(|s| s.resource.clone());
                    let now = plan.resource.clone();
                    let changed = self.plan.service(&key) != Some(&plan);
                    if changed {
                        self.plan.insert(plan);
                    }
                    self.registry
                        .plan_holder_changed(key, before.as_ref(), Some(&now));
                    self.services.insert(key, Box::new(state));
                    changed
                }
                None => match self.plan.remove(&key) {
                    Some(old) => {
                        self.registry
                            .plan_holder_changed(key, Some(&old.resource), None);
                        true
                    }
                    None => false,
                },
            };
            if changed {
                update.changed.push(key);
            }
        }

        // Notes that depend on other resources.
        let mut entry_ids: BTreeSet<ResourceId> = touched
            .iter()
            .filter(|id| id.kind.is_service_entry())
            .cloned()
            .collect();
        for host in &dirty_hosts {
            for entry in self.registry.entries_with_host(host) {
                entry_ids.insert(entry.id.clone());
            }
        }
        for id in &entry_ids {
            // Only entries with notes are kept: a map entry per entry would cost more than
            // the notes.
            let notes = self.registry.host_notes(id);
            if notes.is_empty() {
                self.entry_notes.remove(id);
            } else {
                self.entry_notes.insert(id.clone(), notes);
            }
        }
        let mut rule_ids: BTreeSet<ResourceId> = rules.iter().map(|(id, _)| id.clone()).collect();
        for host in &dirty_hosts {
            rule_ids.extend(self.rules.with_host(host).iter().map(|r| r.id.clone()));
        }
        if !dirty_hosts.is_empty() {
            rule_ids.extend(self.rules.wildcards().map(|r| r.id.clone()));
        }
        for id in &rule_ids {
            let notes = self.notes_of_rule(id);
            if notes.is_empty() {
                self.rule_notes.remove(id);
            } else {
                self.rule_notes.insert(id.clone(), notes);
            }
        }
        touched.extend(entry_ids);
        touched.extend(rule_ids);

        for id in &touched {
            update.errors.extend(self.errors_of(id));
            for note in self.notes_of(id) {
                if self.given.insert(note.clone()) {
                    update.notes.push(note);
                }
            }
        }
        for key in &update.changed {
            if let Some(state) = self.services.get(key) {
                for note in &state.notes {
                    if self.given.insert(note.clone()) {
                        update.notes.push(note.clone());
                    }
                }
            }
        }
        update
    }

    /// Every error, by resource precedence.
    pub fn errors(&self) -> Vec<Diagnostic> {
        self.ids_by_precedence()
            .iter()
            .flat_map(|id| self.errors_of(id))
            .collect()
    }

    /// Every note: the resources' by precedence, then the services' by key; each once.
    pub fn notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = self
            .ids_by_precedence()
            .iter()
            .flat_map(|id| self.notes_of(id))
            .collect();
        let mut keys: Vec<&ServiceKey> = self.services.keys().collect();
        keys.sort();
        for key in keys {
            notes.extend(self.services[key].notes.iter().cloned());
        }
        let mut seen = HashSet::new();
        notes.retain(|n| seen.insert(n.clone()));
        notes
    }

    /// The services kept from the last good plan because a rejected resource would have
    /// changed them, sorted.
    pub fn kept(&self) -> Vec<ServiceKey> {
        let mut kept: Vec<ServiceKey> = self
            .services
            .iter()
            .filter(|(key, s)| s.kept && self.plan.service(key).is_some())
            .map(|(key, _)| *key)
            .collect();
        kept.sort();
        kept
    }

    fn ids_by_precedence(&self) -> Vec<ResourceId> {
        let mut all: Vec<(&Precedence, &ResourceId)> = Vec::new();
        all.extend(
            self.registry
                .entries
                .iter()
                .map(|(id, s)| (&s.precedence, id)),
        );
        all.extend(self.rules.all.iter().map(|(id, s)| (&s.precedence, id)));
        all.extend(
            self.virtual_services
                .iter()
                .map(|(id, s)| (&s.vs.precedence, id)),
        );
        all.sort();
        all.into_iter().map(|(_, id)| id.clone()).collect()
    }

    fn errors_of(&self, id: &ResourceId) -> Vec<Diagnostic> {
        match id.kind {
            Kind::ServiceEntry | Kind::Service => self
                .registry
                .entries
                .get(id)
                .map(|s| s.errors().cloned().collect())
                .unwrap_or_default(),
            Kind::DestinationRule => match self.rules.all.get(id).map(|s| &s.result) {
                Some(Err(errors)) => errors.clone(),
                _ => Vec::new(),
            },
            Kind::VirtualService => self
                .virtual_services
                .get(id)
                .map(|s| {
                    s.vs.errors
                        .iter()
                        .chain(&s.resolved.errors)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn notes_of(&self, id: &ResourceId) -> Vec<String> {
        match id.kind {
            Kind::ServiceEntry | Kind::Service => {
                let Some(state) = self.registry.entries.get(id) else {
                    return Vec::new();
                };
                let own = state.entry().map(|e| e.notes.clone()).unwrap_or_default();
                let hosts = self.entry_notes.get(id).cloned().unwrap_or_default();
                hosts
                    .into_iter()
                    .chain(own)
                    .chain(state.group_notes.iter().cloned())
                    .collect()
            }
            Kind::DestinationRule => {
                let own = match self.rules.all.get(id).map(|s| &s.result) {
                    Some(Ok(rule)) => rule.notes.clone(),
                    _ => Vec::new(),
                };
                own.into_iter()
                    .chain(self.rule_notes.get(id).cloned().unwrap_or_default())
                    .collect()
            }
            Kind::VirtualService => self
                .virtual_services
                .get(id)
                .map(|s| {
                    s.vs.notes
                        .iter()
                        .chain(&s.resolved.notes)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn notes_of_rule(&self, id: &ResourceId) -> Vec<String> {
        let Some(Ok(rule)) = self.rules.all.get(id).map(|s| &s.result) else {
            return Vec::new();
        };
        let hosts: Vec<Arc<str>> = if rule.host.starts_with('*') {
            self.registry
                .hosts()
                .filter(|h| host_match(&rule.host, h).is_some())
                .cloned()
                .collect()
        } else {
            vec![rule.host.clone()]
        };
        let hosts: Vec<HostLabels<'_>> = hosts
            .into_iter()
            .filter_map(|host| {
                let entries = self.registry.entries_with_host(&host);
                if entries.is_empty() {
                    return None;
                }
                let labels = entries.iter().flat_map(|e| e.endpoint_labels()).collect();
                Some((host, labels, entries.iter().any(|e| e.passthrough)))
            })
            .collect();
        destination_rule::notes_on(rule, &self.rules, &hosts)
    }

    /// The VirtualServices that cover `key`, with how specifically.
    fn covering(&self, key: &ServiceKey) -> Vec<Candidate<'_>> {
        let Some(entry) = self
            .registry
            .owner(key)
            .and_then(|o| self.registry.entries.get(o.id()))
            .and_then(|s| s.entry())
        else {
            return Vec::new();
        };
        let mut ids: BTreeSet<&ResourceId> = BTreeSet::new();
        for host in entry.hosts.iter() {
            ids.extend(self.vs_by_host.get(host).into_iter().flatten());
        }
        ids.extend(self.vs_by_vip.get(&key.vip).into_iter().flatten());
        ids.extend(self.vs_wildcard.iter());
        ids.into_iter()
            .filter_map(|id| {
                let state = self.virtual_services.get(id)?;
                if !state.vs.mesh {
                    return None;
                }
                let score = state.vs.covers(entry, key)?;
                Some(Candidate {
                    vs: &state.vs,
                    resolved: &state.resolved,
                    score,
                })
            })
            .collect()
    }

    fn forget_deps(&mut self, key: &ServiceKey) {
        let Some(old) = self.services.remove(key) else {
            return;
        };
        for host in old.hosts.iter() {
            if let Some(keys) = self.host_deps.get_mut(host) {
                keys.remove(key);
                if keys.is_empty() {
                    self.host_deps.remove(host);
                }
            }
        }
        for id in &old.virtual_services {
            if let Some(keys) = self.vs_deps.get_mut(id) {
                keys.remove(key);
                if keys.is_empty() {
                    self.vs_deps.remove(id);
                }
            }
        }
    }

    fn index_vs(&mut self, vs: &VirtualService) {
        if !vs.mesh {
            return;
        }
        let id = &vs.id;
        for host in &vs.hosts {
            if host.starts_with('*') {
                self.vs_wildcard.insert(id.clone());
            } else if let Ok(ip) = host.parse::<IpAddr>() {
                self.vs_by_vip.entry(ip).or_default().insert(id.clone());
            } else {
                self.vs_by_host
                    .entry(host.clone())
                    .or_default()
                    .insert(id.clone());
            }
        }
        let destinations = vs
            .destinations
            .iter()
            .chain(vs.mirrors.iter().map(|m| &m.destination));
        for destination in destinations {
            self.vs_by_destination
                .entry(destination.host.clone())
                .or_default()
                .insert(id.clone());
        }
    }

    fn unindex_vs(&mut self, vs: &VirtualService) {
        let id = &vs.id;
        self.vs_wildcard.remove(id);
        for host in &vs.hosts {
            if let Ok(ip) = host.parse::<IpAddr>() {
                remove_from(&mut self.vs_by_vip, &ip, id);
            } else {
                remove_from(&mut self.vs_by_host, host, id);
            }
        }
        let destinations = vs
            .destinations
            .iter()
            .chain(vs.mirrors.iter().map(|m| &m.destination));
        for destination in destinations {
            remove_from(&mut self.vs_by_destination, &destination.host, id);
        }
    }
}

fn remove_from<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, SortedSet<ResourceId>>,
    key: &K,
    id: &ResourceId,
) {
    if let Some(ids) = map.get_mut(key) {
        ids.remove(id);
        if ids.is_empty() {
            map.remove(key);
        }
    }
}

fn empty_resolution() -> Resolved {
    Resolved {
        targets: Vec::new(),
        mirror_targets: Vec::new(),
        covered: Vec::new(),
        errors: Vec::new(),
        notes: Vec::new(),
        valid: false,
    }
}
