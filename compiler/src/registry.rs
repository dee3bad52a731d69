//! The ServiceEntries: which one holds each (VIP, port, protocol), and which one a route's
//! destination host names.
//!
//! Where two entries claim the same service, the first by precedence wins and the other is
//! rejected whole. A rejected entry keeps the services it had in the last good plan where
//! no one else holds them: a bad edit should not take a working service down, only fail to
//! change it. Claims chain (A beats B, so B's other services are free for C), so a change
//! is settled over its conflict group: every entry connected to it by a shared service.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;
use vsteer_model::intern::Interner;
use vsteer_model::{Diagnostic, Precedence, Resource, ResourceId};
use vsteer_plan::{Plan, ServiceKey};

use crate::service_entry::{self, Entry};
use crate::sorted::SortedSet;

/// A service another entry holds already.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} is already claimed by {owner} ({file}{why}); this ServiceEntry is ignored")]
pub struct ConflictError {
    pub key: ServiceKey,
    pub owner: ResourceId,
    pub file: Arc<str>,
    pub why: &'static str,
}

/// Who holds a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// An accepted entry.
    Entry(ResourceId),
    /// A rejected entry, with its state from the last good plan.
    Kept(ResourceId),
}

impl Owner {
    pub fn id(&self) -> &ResourceId {
        match self {
            Owner::Entry(id) | Owner::Kept(id) => id,
        }
    }
}

/// One ServiceEntry as the registry holds it.
pub struct EntryState {
    pub precedence: Precedence,
    pub file: Arc<str>,
    /// As written (non-empty ones), also for a rejected entry: routes to them say why.
    /// Shared with the compiled entry's.
    pub hosts: Arc<[Arc<str>]>,
    /// Valid on its own, or its errors.
    pub compiled: Result<Arc<Entry>, Vec<Diagnostic>>,
    /// Whether it holds its services, and its conflict errors if not.
    pub accepted: bool,
    pub conflicts: Vec<Diagnostic>,
    /// Notes on how the group settled (last good services dropped).
    pub group_notes: Vec<String>,
}

impl EntryState {
    pub fn entry(&self) -> Option<&Arc<Entry>> {
        match (&self.compiled, self.accepted) {
            (Ok(entry), true) => Some(entry),
            _ => None,
        }
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        let own: &[Diagnostic] = match &self.compiled {
            Err(errors) => errors,
            Ok(_) => &[],
        };
        own.iter().chain(&self.conflicts)
    }
}

/// What a registry update touched.
#[derive(Default)]
pub struct Touched {
    /// Hosts whose entries (or their states) may have changed.
    pub hosts: BTreeSet<Arc<str>>,
    /// Services whose holder (or its content) may have changed.
    pub keys: BTreeSet<ServiceKey>,
    /// Entries whose state was settled again.
    pub entries: BTreeSet<ResourceId>,
}

#[derive(Default)]
pub struct Registry {
    /// Boxed: at tens of thousands of entries a table of inline states runs half empty
    /// after each doubling.
    pub entries: HashMap<ResourceId, Box<EntryState>>,
    /// Every entry listing a host, by precedence (and id: two resources may share a
    /// precedence for a moment, while a batch of changes moves documents within a file).
    hosts: HashMap<Arc<str>, SortedSet<(Precedence, ResourceId)>>,
    /// The entries (valid on their own) that claim each service, by precedence.
    claims: HashMap<ServiceKey, SortedSet<(Precedence, ResourceId)>>,
    /// Ordered, so the services at one VIP are a range (for VirtualServices that name an
    /// IP) without a second index.
    owners: BTreeMap<ServiceKey, Owner>,
    /// The services the plan in force lists under each entry: the last good state a
    /// rejected entry keeps. Kept up to date by the engine as the plan changes.
    held: HashMap<ResourceId, SortedSet<ServiceKey>>,
    /// Entries to settle in the next update whether or not they change: those of the
    /// starting plan, and those whose notes speak of the last good plan.
    pending: BTreeSet<ResourceId>,
}

impl Registry {
    /// A registry holding `last_good`'s services as kept ones: what a compile from scratch
    /// starts from, so rejected entries keep them.
    pub fn with_last_good(last_good: &Plan) -> Registry {
        let mut registry = Registry::default();
        for service in last_good.services() {
            let id = service.resource.clone();
            registry.owners.insert(service.key, Owner::Kept(id.clone()));
            registry
                .held
                .entry(id.clone())
                .or_default()
                .insert(service.key);
            registry.pending.insert(id);
        }
        registry
    }

    /// The plan now lists `key` under `now` instead of `before`: both entries are settled
    /// again in the next update, as a compile from this plan would.
    pub fn plan_holder_changed(
        &mut self,
        key: ServiceKey,
        before: Option<&ResourceId>,
        now: Option<&ResourceId>,
    ) {
        if before == now {
            return;
        }
        if let Some(id) = before {
            if let Some(keys) = self.held.get_mut(id) {
                keys.remove(&key);
                if keys.is_empty() {
                    self.held.remove(id);
                }
            }
            if !self.holds_own(id, &key) {
                self.pending.insert(id.clone());
            }
        }
        if let Some(id) = now {
            self.held.entry(id.clone()).or_default().insert(key);
            // An accepted entry's own service needs no second look: only what a rejected
            // entry keeps depends on the last good plan.
            if !self.holds_own(id, &key) {
                self.pending.insert(id.clone());
            }
        }
    }

    /// Whether `id` is accepted and holds `key` as its own.
    fn holds_own(&self, id: &ResourceId, key: &ServiceKey) -> bool {
        self.owners.get(key) == Some(&Owner::Entry(id.clone()))
            && self.entries.get(id).is_some_and(|s| s.accepted)
    }

    /// Whether entries of the starting plan wait to be settled.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn owner(&self, key: &ServiceKey) -> Option<&Owner> {
        self.owners.get(key)
    }

    /// Every service someone holds.
    pub fn keys(&self) -> impl Iterator<Item = &ServiceKey> + '_ {
        self.owners.keys()
    }

    /// The entry a destination host names: the first accepted one that lists it.
    pub fn entry_for_host(&self, host: &str) -> Option<&Arc<Entry>> {
        self.hosts
            .get(host)?
            .iter()
            .find_map(|(_, id)| self.entries.get(id)?.entry())
    }

    /// The first rejected entry listing `host`, to explain why a route to it fails.
    pub fn rejected_for_host(&self, host: &str) -> Option<&ResourceId> {
        self.hosts.get(host)?.iter().map(|(_, id)| id).find(|id| {
            self.entries
                .get(*id)
                .is_some_and(|state| state.entry().is_none())
        })
    }

    /// The accepted entries listing `host`, by precedence.
    pub fn entries_with_host(&self, host: &str) -> Vec<&Arc<Entry>> {
        self.hosts
            .get(host)
            .map(|ids| {
                ids.iter()
                    .filter_map(|(_, id)| self.entries.get(id)?.entry())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every host some entry lists.
    pub fn hosts(&self) -> impl Iterator<Item = &Arc<str>> + '_ {
        self.hosts.keys()
    }

    /// The services of accepted entries listing `host`.
    pub fn services_of_host(&self, host: &str) -> Vec<ServiceKey> {
        self.entries_with_host(host)
            .into_iter()
            .flat_map(|entry| entry.keys().map(|(_, key)| key))
            .collect()
    }

    /// The services of accepted entries at `vip`.
    pub fn services_at(&self, vip: IpAddr) -> impl Iterator<Item = &ServiceKey> + '_ {
        let first = ServiceKey::new(vip, 0, vsteer_plan::Protocol::Tcp);
        self.owners
            .range(first..)
            .take_while(move |(key, _)| key.vip == vip && key.prefix_len.is_none())
            .filter(|(_, owner)| matches!(owner, Owner::Entry(_)))
            .map(|(key, _)| key)
    }

    /// The notes of entry `id` that depend on other entries: a host it shares with an
    /// earlier accepted entry.
    pub fn host_notes(&self, id: &ResourceId) -> Vec<String> {
        let Some(state) = self.entries.get(id) else {
            return Vec::new();
        };
        let Some(entry) = state.entry() else {
            return Vec::new();
        };
        let mut notes = Vec::new();
        for host in entry.hosts.iter() {
            let first = self.hosts.get(host).and_then(|ids| {
                ids.before(&(state.precedence.clone(), id.clone()))
                    .iter()
                    .find_map(|(_, earlier)| self.entries.get(earlier)?.entry())
            });
            if let Some(first) = first {
                notes.push(format!(
                    "{id}: host {host} is also a host of {}; routes to it use the endpoints of {}",
                    first.id, first.id
                ));
            }
        }
        notes
    }

    /// Applies changed ServiceEntries (`None`: removed) and settles their conflict groups.
    /// `last_good` is the plan in force, whose services a rejected entry keeps.
    pub fn update(
        &mut self,
        changed: &[(ResourceId, Option<Arc<Resource>>)],
        last_good: &Plan,
        interner: &Interner,
    ) -> Touched {
        let mut touched = Touched::default();
        let mut seeds: BTreeSet<ResourceId> = std::mem::take(&mut self.pending);
        // What the old versions claimed: entries they blocked may be free now.
        let mut old_keys: BTreeSet<ServiceKey> = BTreeSet::new();
        for (id, resource) in changed {
            if let Some(old) = self.entries.remove(id) {
                self.unindex(id, &old);
                touched.hosts.extend(old.hosts.iter().cloned());
                if let Ok(entry) = &old.compiled {
                    old_keys.extend(entry.keys().map(|(_, key)| key));
                }
            }
            if let Some(resource) = resource {
                let state = Box::new(entry_state(resource, interner));
                touched.hosts.extend(state.hosts.iter().cloned());
                self.index(id, &state);
                self.entries.insert(id.clone(), state);
            }
            seeds.insert(id.clone());
        }
        let (members, keys) = self.group(seeds, old_keys, last_good);
        self.settle(&members, &keys, last_good, &mut touched);
        touched
    }

    fn index(&mut self, id: &ResourceId, state: &EntryState) {
        let slot = (state.precedence.clone(), id.clone());
        for host in state.hosts.iter() {
            self.hosts
                .entry(host.clone())
                .or_default()
                .insert(slot.clone());
        }
        if let Ok(entry) = &state.compiled {
            for (_, key) in entry.keys() {
                self.claims.entry(key).or_default().insert(slot.clone());
            }
        }
    }

    fn unindex(&mut self, id: &ResourceId, state: &EntryState) {
        let slot = (state.precedence.clone(), id.clone());
        for host in state.hosts.iter() {
            if let Some(ids) = self.hosts.get_mut(host) {
                ids.remove(&slot);
                if ids.is_empty() {
                    self.hosts.remove(host);
                }
            }
        }
        if let Ok(entry) = &state.compiled {
            for (_, key) in entry.keys() {
                if let Some(ids) = self.claims.get_mut(&key) {
                    ids.remove(&slot);
                    if ids.is_empty() {
                        self.claims.remove(&key);
                    }
                }
            }
        }
    }

    /// The entries connected to `seeds` by shared services (claimed or held), and those
    /// services.
    fn group(
        &self,
        seeds: BTreeSet<ResourceId>,
        old_keys: BTreeSet<ServiceKey>,
        last_good: &Plan,
    ) -> (BTreeSet<ResourceId>, BTreeSet<ServiceKey>) {
        let mut members: BTreeSet<ResourceId> = BTreeSet::new();
        let mut keys: BTreeSet<ServiceKey> = BTreeSet::new();
        let mut queue: Vec<ResourceId> = seeds.into_iter().collect();
        let mut extra: Vec<ServiceKey> = old_keys.into_iter().collect();
        loop {
            let Some(id) = queue.pop() else {
                // Services with no member yet (those the old versions claimed) bring theirs.
                let Some(key) = extra.pop() else { break };
                if keys.insert(key) {
                    let claimants = self.claims.get(&key).into_iter().flatten();
                    let holder = self.owners.get(&key).map(Owner::id);
                    let listed = last_good.service(&key).map(|s| &s.resource);
                    for other in claimants.map(|(_, id)| id).chain(holder).chain(listed) {
                        if !members.contains(other) {
                            queue.push(other.clone());
                        }
                    }
                }
                continue;
            };
            if !members.insert(id.clone()) {
                continue;
            }
            let own = self
                .entries
                .get(&id)
                .and_then(|s| s.compiled.as_ref().ok())
                .into_iter()
                .flat_map(|entry| entry.keys().map(|(_, key)| key));
            let held = self.held.get(&id).into_iter().flatten().copied();
            for key in own.chain(held).collect::<Vec<_>>() {
                if !keys.insert(key) {
                    continue;
                }
                let claimants = self
                    .claims
                    .get(&key)
                    .into_iter()
                    .flat_map(|c| c.iter().map(|(_, id)| id));
                let holder = self.owners.get(&key).map(Owner::id);
                let listed = last_good.service(&key).map(|s| &s.resource);
                for other in claimants.chain(holder).chain(listed) {
                    if !members.contains(other) {
                        queue.push(other.clone());
                    }
                }
            }
        }
        (members, keys)
    }

    /// Decides, in precedence order, which members hold which of `keys`.
    fn settle(
        &mut self,
        members: &BTreeSet<ResourceId>,
        keys: &BTreeSet<ServiceKey>,
        last_good: &Plan,
        touched: &mut Touched,
    ) {
        // What each member held before: the last good services a rejected one keeps.
        let before: HashMap<ResourceId, SortedSet<ServiceKey>> = members
            .iter()
            .map(|id| (id.clone(), self.held.get(id).cloned().unwrap_or_default()))
            .collect();
        let mut claimed: HashMap<ServiceKey, (ResourceId, Arc<str>, bool)> = HashMap::default();
        for key in keys {
            if self.owners.remove(key).is_some() {
                touched.keys.insert(*key);
            }
        }
        let mut order: Vec<(&Precedence, &ResourceId)> = members
            .iter()
            .filter_map(|id| Some((&self.entries.get(id)?.precedence, id)))
            .collect();
        order.sort();
        let order: Vec<ResourceId> = order.into_iter().map(|(_, id)| id.clone()).collect();
        // Who holds a service so far (holder, its file, kept): `claimed`, above.
        let mut results: Vec<(ResourceId, bool, Vec<Diagnostic>, Vec<String>)> = Vec::new();
        for id in &order {
            let Some(state) = self.entries.get(id) else {
                continue;
            };
            let mut conflicts = Vec::new();
            let mut notes = Vec::new();
            let accepted = match &state.compiled {
                Err(_) => false,
                Ok(entry) => {
                    for (index, key) in entry.keys() {
                        if let Some((owner, file, kept)) = claimed.get(&key) {
                            let why = if *kept {
                                ", which was rejected and keeps its last good state"
                            } else {
                                ""
                            };
                            conflicts.push(
                                Diagnostic::new(
                                    state.file.clone(),
                                    ConflictError {
                                        key,
                                        owner: owner.clone(),
                                        file: file.clone(),
                                        why,
                                    },
                                )
                                .resource_id(id)
                                .field(format!("spec.addresses[{index}]")),
                            );
                        }
                    }
                    conflicts.is_empty()
                }
            };
            if accepted {
                if let Ok(entry) = &state.compiled {
                    for (_, key) in entry.keys() {
                        claimed.insert(key, (id.clone(), state.file.clone(), false));
                    }
                }
            } else {
                let last: Vec<ServiceKey> = before
                    .get(id)
                    .into_iter()
                    .flatten()
                    .filter(|key| last_good.service(key).is_some_and(|s| &s.resource == id))
                    .copied()
                    .collect();
                for key in last {
                    match claimed.get(&key) {
                        Some((owner, _, _)) => notes.push(format!(
                            "{id}: its last good state for {key} is dropped: {owner} holds it now"
                        )),
                        None => {
                            claimed.insert(key, (id.clone(), state.file.clone(), true));
                        }
                    }
                }
            }
            results.push((id.clone(), accepted, conflicts, notes));
        }
        for (id, accepted, conflicts, notes) in results {
            // A note on what the last good plan had holds only until the next update, whose
            // last good plan no longer has it: settle the entry again then.
            if !notes.is_empty() {
                self.pending.insert(id.clone());
            }
            if let Some(state) = self.entries.get_mut(&id) {
                state.accepted = accepted;
                state.conflicts = conflicts;
                state.group_notes = notes;
                touched.hosts.extend(state.hosts.iter().cloned());
            }
            touched.entries.insert(id);
        }
        for (key, (id, _, kept)) in claimed {
            touched.keys.insert(key);
            let owner = if kept {
                Owner::Kept(id.clone())
            } else {
                Owner::Entry(id.clone())
            };
            self.owners.insert(key, owner);
        }
        // Members that no longer exist are gone with what they held.
        for id in members {
            if !self.entries.contains_key(id) {
                touched.entries.insert(id.clone());
            }
        }
    }
}

fn entry_state(resource: &Arc<Resource>, interner: &Interner) -> EntryState {
    let spec = match &resource.spec {
        vsteer_model::ResourceSpec::ServiceEntry(spec) => Some(spec),
        _ => None,
    };
    let compiled = match spec {
        Some(spec) => service_entry::compile(resource, spec, interner).map(Arc::new),
        None => Err(Vec::new()),
    };
    // An accepted entry's hosts are shared with it; a rejected one's are read for messages.
    let hosts = match (&compiled, spec) {
        (Ok(entry), _) => entry.hosts.clone(),
        (Err(_), Some(spec)) => spec
            .hosts
            .iter()
            .filter(|h| !h.is_empty())
            .map(|h| interner.get(h))
            .collect(),
        (Err(_), None) => Arc::from([]),
    };
    EntryState {
        precedence: resource.precedence.clone(),
        file: resource.origin.file.clone(),
        hosts,
        compiled,
        accepted: false,
        conflicts: Vec::new(),
        group_notes: Vec::new(),
    }
}
