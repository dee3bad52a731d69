//! What the kernel's service and backend maps hold, and how a new plan is applied to them.
//!
//! Each service points at its backend table: a contiguous range of the slot array. A changed
//! service gets a fresh range, written in full before the service entry is flipped to it, so a
//! connect sees either the old set or the new one, never a mix. Old ranges are reused only
//! after an RCU grace period the kernel guarantees (see `grace`), because a connect that read
//! the old service entry may still be about to read its slots.
use std::{
    collections::BTreeMap,
    hash::{DefaultHasher, Hash, Hasher},
};

use anyhow::{Context, Result};
use aya::maps::{Array, MapData};
use rustc_hash::{FxHashMap, FxHashSet};
use vsteer_common::{MAX_BACKEND_SLOTS, MAX_RANGES, MAX_SERVICES, ServiceValue, Slot, VipKey};
use vsteer_plan::{Plan, ServiceKey, ServicePlan};

use crate::grace::Grace;
use crate::keys::{describe, vip_key};
use crate::ranges::SlotRanges;
use crate::service_maps::{Replaced, ServiceMaps};
use crate::slots::{TableSpec, table_spec};

/// Which map holds `key`, as an index of per-map counts: 0 the service map (exact VIPs),
/// 1 the range map (keys with host bits).
fn map_of(key: &VipKey) -> usize {
    usize::from(key.host_bits != 0)
}

/// What one `apply` changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyStats {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    pub unchanged: usize,
    /// Services that did not fit in the maps: each keeps what it had (its old table, or
    /// nothing if new) while the rest applied; written when a later apply finds room.
    pub refused: Vec<Refused>,
}

/// A service an apply could not write, and the limit it hit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("service {service} not written: {limit}")]
pub struct Refused {
    pub service: String,
    pub key: VipKey,
    pub limit: String,
}

/// The per-service differences between what is installed and what a plan wants.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    /// New or different tables.
    pub upserts: Vec<(VipKey, TableSpec)>,
    pub removals: Vec<VipKey>,
    pub unchanged: usize,
}

/// A service's table in the kernel: where it is, and a digest of what it holds (the slots
/// themselves are in the kernel; keeping copies of every table cost more than the plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Installed {
    /// The table's first slot in the array.
    pub first: u32,
    pub count: u32,
    pub digest: Digest,
}

/// 128 bits of two independent SipHash digests of a table: equal digests, equal tables, to
/// a chance of about 2^-128.
pub type Digest = u128;

pub fn digest(spec: &TableSpec) -> Digest {
    let half = |salt: u8| {
        let mut hasher = DefaultHasher::new();
        salt.hash(&mut hasher);
        spec.mode.hash(&mut hasher);
        spec.flags.hash(&mut hasher);
        for slot in &spec.slots {
            slot.threshold.hash(&mut hasher);
            slot.primary.hash(&mut hasher);
            slot.alias.hash(&mut hasher);
        }
        hasher.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

/// Compares the installed tables with what `plan` wants: only tables that differ are
/// written.
pub fn diff(installed: &FxHashMap<VipKey, Installed>, plan: &Plan) -> Changes {
    let mut changes = Changes::default();
    let mut wanted = FxHashSet::with_capacity_and_hasher(plan.len(), Default::default());
    for service in plan.services() {
        let key = vip_key(&service.key);
        wanted.insert(key);
        compare(installed, key, service, &mut changes);
    }
    changes.removals = installed
        .keys()
        .filter(|key| !wanted.contains(key))
        .copied()
        .collect();
    changes
}

/// Like [`diff`], for the services `keys` only (those the compiler says changed): what a
/// one-service change costs, whatever the number of services.
pub fn diff_keys(
    installed: &FxHashMap<VipKey, Installed>,
    plan: &Plan,
    keys: &[ServiceKey],
) -> Changes {
    let mut changes = Changes::default();
    for key in keys {
        let map_key = vip_key(key);
        match plan.service(key) {
            Some(service) => compare(installed, map_key, service, &mut changes),
            None if installed.contains_key(&map_key) => changes.removals.push(map_key),
            None => {}
        }
    }
    changes
}

fn compare(
    installed: &FxHashMap<VipKey, Installed>,
    key: VipKey,
    service: &ServicePlan,
    changes: &mut Changes,
) {
    let spec = table_spec(service);
    // Adopted from an earlier agent, or a change that leaves the table as it is.
    if installed
        .get(&key)
        .is_some_and(|c| c.digest == digest(&spec))
    {
        changes.unchanged += 1;
    } else {
        changes.upserts.push((key, spec));
    }
}

pub struct Tables {
    services: ServiceMaps,
    slots: Array<MapData, Slot>,
    installed: FxHashMap<VipKey, Installed>,
    /// Replaced tables, (first slot, slot count): free once a grace period has passed
    /// since they were replaced.
    retired: Vec<(u32, u32)>,
    /// Whether free slots may still be read by a connect: at adoption, the slots of tables
    /// an earlier agent replaced a moment ago look free.
    grace_due: bool,
    grace: Grace,
    ranges: SlotRanges,
    /// The generation of the last table written.
    generation: u32,
}

impl Tables {
    /// Takes over the maps as they are (empty, or left by an earlier agent): reads what they
    /// hold so the next `apply` writes only differences. Slots no service uses (left by an
    /// agent that died between writing a table and switching to it) are simply free.
    pub fn adopt(services: ServiceMaps, slots: Array<MapData, Slot>, grace: Grace) -> Result<Self> {
        let mut tables = Self {
            services,
            slots,
            installed: FxHashMap::default(),
            retired: Vec::new(),
            grace_due: true,
            grace,
            ranges: SlotRanges::with_used(MAX_BACKEND_SLOTS, []),
            generation: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos()),
        };
        tables.resync()?;
        Ok(tables)
    }

    pub fn installed(&self) -> &FxHashMap<VipKey, Installed> {
        &self.installed
    }

    /// Writes only what differs between the kernel's maps and `plan`.
    pub fn apply(&mut self, plan: &Plan) -> Result<ApplyStats> {
        self.sweep_if_due()?;
        let changes = diff(&self.installed, plan);
        self.write(changes)
    }

    /// Writes what differs for the services `keys` only.
    pub fn apply_keys(&mut self, plan: &Plan, keys: &[ServiceKey]) -> Result<ApplyStats> {
        self.sweep_if_due()?;
        let changes = diff_keys(&self.installed, plan, keys);
        self.write(changes)
    }

    /// Writes `changes` all or nothing. Room is found first: each upsert gets its service
    /// entry and slot range before anything is written, and one that does not fit is refused
    /// (reported, left as it is) while the rest go on. Should a write still fail, what this
    /// apply wrote is undone, so the maps are as they were.
    fn write(&mut self, changes: Changes) -> Result<ApplyStats> {
        let mut stats = ApplyStats {
            unchanged: changes.unchanged,
            ..ApplyStats::default()
        };
        // Entries per map: exact VIPs, and ranges (with host bits).
        let mut entries = [0usize; 2];
        for key in self.installed.keys() {
            entries[map_of(key)] += 1;
        }
        for key in &changes.removals {
            if self.installed.contains_key(key) {
                entries[map_of(key)] -= 1;
            }
        }
        // Each exact service written takes a fresh entry: wait for replaced ones if short.
        let need = changes
            .upserts
            .iter()
            .filter(|(key, _)| map_of(key) == 0)
            .count();
        if self.services.free_entries() < need {
            self.sweep();
            if self.services.free_entries() < need {
                anyhow::bail!(
                    "{need} services to write and {} free service entries (replaced ones come \
                     back after a grace period, whose wait failed): nothing written; the change \
                     is tried again",
                    self.services.free_entries()
                );
            }
        }
        let mut reserved: Vec<(VipKey, TableSpec, u32)> = Vec::with_capacity(changes.upserts.len());
        for (key, spec) in changes.upserts {
            let count = u32::try_from(spec.slots.len()).unwrap_or(u32::MAX);
            let new = !self.installed.contains_key(&key);
            let map = map_of(&key);
            let limit = if new && map == 0 && entries[0] >= MAX_SERVICES as usize {
                Some(format!(
                    "the service map is full ({MAX_SERVICES} services, MAX_SERVICES in \
                     common/src/lib.rs); remove services or raise it"
                ))
            } else if new && map == 1 && entries[1] >= MAX_RANGES as usize {
                Some(format!(
                    "the range map is full ({MAX_RANGES} CIDR services, MAX_RANGES in \
                     common/src/lib.rs); remove ranges or raise it"
                ))
            } else if let Some(first) = self.allocate(count) {
                entries[map] += usize::from(new);
                reserved.push((key, spec, first));
                None
            } else {
                Some(format!(
                    "its table needs {count} contiguous backend slots and the longest free run \
                     is {} ({} of {MAX_BACKEND_SLOTS} free in all; MAX_BACKEND_SLOTS in \
                     common/src/lib.rs; slots of tables this change replaces come back at the \
                     next change): fewer endpoints or consistent-hash services, or raise it",
                    self.ranges.longest_free(),
                    self.ranges.free_slots()
                ))
            };
            if let Some(limit) = limit {
                stats.refused.push(Refused {
                    service: describe(&key),
                    key,
                    limit,
                });
            }
        }
        let mut undo: Vec<(VipKey, Option<Replaced>)> = Vec::new();
        if let Err(err) = self.write_reserved(&changes.removals, &reserved, &mut undo) {
            let mut undone = true;
            for (key, before) in undo.into_iter().rev() {
                // The first error is the one reported; a failed undo is resynced below.
                undone &= self.services.restore(&key, before).is_ok();
            }
            // A connect may have read a value flipped to these slots before the undo: they
            // come back after a grace period, as any replaced table's.
            for (_, spec, first) in &reserved {
                self.retired.push((*first, spec.slots.len() as u32));
            }
            if undone {
                return Err(
                    err.context("nothing of this change was applied; the maps are as they were")
                );
            }
            let resynced = self.resync();
            return Err(err.context(match resynced {
                Ok(()) => "part of this change could not be undone; what the maps hold now was \
                           read back and the next change writes what differs"
                    .to_string(),
                Err(e) => format!(
                    "part of this change could not be undone, and reading the maps back failed \
                     too ({e:#}); the next change rewrites every service"
                ),
            }));
        }
        // Written: the bookkeeping follows.
        for key in changes.removals {
            if let Some(old) = self.installed.remove(&key) {
                self.retire(&old);
                stats.removed += 1;
            }
        }
        for (key, spec, first) in reserved {
            let installed = Installed {
                first,
                count: spec.slots.len() as u32,
                digest: digest(&spec),
            };
            match self.installed.insert(key, installed) {
                Some(old) => {
                    stats.changed += 1;
                    self.retire(&old);
                }
                None => stats.added += 1,
            }
        }
        Ok(stats)
    }

    /// The kernel writes of [`Tables::write`], each flip recorded in `undo` with the value
    /// it replaced. Removals first: they free service entries for the upserts.
    fn write_reserved(
        &mut self,
        removals: &[VipKey],
        reserved: &[(VipKey, TableSpec, u32)],
        undo: &mut Vec<(VipKey, Option<Replaced>)>,
    ) -> Result<()> {
        for key in removals {
            if let Some(before) = self.services.remove(key)? {
                undo.push((*key, Some(before)));
            }
        }
        for (key, spec, first) in reserved {
            for (index, slot) in (*first..).zip(&spec.slots) {
                self.slots
                    .set(index, slot, 0)
                    .with_context(|| format!("writing backend slot {index}"))?;
            }
            let value = ServiceValue {
                first: *first,
                slot_count: spec.slots.len() as u32,
                mode: spec.mode,
                flags: spec.flags,
                _pad: [0; 2],
                generation: self.next_generation(),
            };
            let before = self.services.insert(key, value)?;
            undo.push((*key, before));
        }
        Ok(())
    }

    /// The slots of a new table: from the free ones, else (waiting for a grace period) from
    /// those of tables replaced before this change.
    fn allocate(&mut self, count: u32) -> Option<u32> {
        if let Some(first) = self.ranges.allocate(count) {
            return Some(first);
        }
        if self.retired.is_empty() {
            return None;
        }
        self.sweep();
        self.ranges.allocate(count)
    }

    /// At the first change after adoption: free slots may be ones an earlier agent retired
    /// a moment ago, so none is used before the wait. Later changes wait only when they need
    /// retired slots (or at the periodic sweep), so a change does not pay for a grace
    /// period it does not need.
    fn sweep_if_due(&mut self) -> Result<()> {
        if self.grace_due {
            self.sweep();
        }
        if self.grace_due {
            anyhow::bail!(
                "waiting for the kernel's grace period failed, so free backend slots may still \
                 be read by connects: nothing written; the change is tried again"
            );
        }
        Ok(())
    }

    /// Takes what the maps hold as installed (the slots they point at, and the retired ones,
    /// in use), so later changes write what differs: at adoption, and after an undo that
    /// failed.
    fn resync(&mut self) -> Result<()> {
        let tables = read_installed(self.services.entries()?, &self.slots)?;
        // A retired range a service still points at (its flip could not be undone) is that
        // service's again, never to be freed under it.
        let in_use: FxHashSet<u32> = tables.values().map(|(first, _)| *first).collect();
        self.retired.retain(|(first, _)| !in_use.contains(first));
        self.ranges = SlotRanges::with_used(
            MAX_BACKEND_SLOTS,
            tables
                .values()
                .map(|(first, spec)| (*first, spec.slots.len() as u32))
                .chain(self.retired.iter().copied()),
        );
        self.installed = tables
            .into_iter()
            .map(|(key, (first, spec))| {
                let installed = Installed {
                    first,
                    count: spec.slots.len() as u32,
                    digest: digest(&spec),
                };
                (key, installed)
            })
            .collect();
        Ok(())
    }

    /// Frees the slots of replaced tables once no connect can be reading them: after a
    /// grace period the kernel guarantees (see `grace`), waited for here, so every table
    /// replaced before this call is free after it. Should the wait fail, they stay retired.
    pub fn sweep(&mut self) {
        if self.retired.is_empty() && !self.services.has_retired() && !self.grace_due {
            return;
        }
        match self.grace.wait() {
            Ok(waited) => {
                tracing::trace!(?waited, tables = self.retired.len(), "grace period over");
                self.grace_due = false;
                for (first, count) in std::mem::take(&mut self.retired) {
                    self.ranges.release(first, count);
                }
                self.services.release_retired();
            }
            Err(err) => tracing::warn!("replaced backend tables kept for now: {err:#}"),
        }
    }

    /// A new table's generation: UDP sockets keep their backend only under the table they
    /// picked from, and a range of slots can come back to the same service with the same
    /// size, so the value differs at every write (starting anew from the clock, so that a
    /// restarted agent does not repeat its predecessor's).
    fn next_generation(&mut self) -> u32 {
        self.generation = self.generation.wrapping_add(1);
        self.generation
    }

    fn retire(&mut self, old: &Installed) {
        self.retired.push((old.first, old.count));
    }
}

/// Reads the table (first slot, contents) of every service of `services` (both maps).
pub fn read_installed(
    services: Vec<(VipKey, ServiceValue)>,
    slots: &Array<MapData, Slot>,
) -> Result<BTreeMap<VipKey, (u32, TableSpec)>> {
    let mut installed = BTreeMap::new();
    for (key, value) in services {
        let table: Vec<Slot> = (0..value.slot_count)
            .map_while(|i| slots.get(&value.first.checked_add(i)?, 0).ok())
            .collect();
        if table.len() != value.slot_count as usize {
            tracing::warn!(service = %describe(&key), "backend table out of bounds; it will be rewritten");
        }
        installed.insert(
            key,
            (
                value.first,
                TableSpec {
                    mode: value.mode,
                    flags: value.flags,
                    slots: table,
                },
            ),
        );
    }
    Ok(installed)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use vsteer_common::{PROTO_TCP, mode};
    use vsteer_model::{Kind, Labels, ResourceId};
    use vsteer_plan::{BackendPlan, Decision, LoadBalancer, Protocol};

    use super::*;
    use crate::keys::address;
    use crate::slots::alias_table;

    fn key(last: u8) -> VipKey {
        VipKey::v4([127, 100, 0, last], 80, PROTO_TCP)
    }

    fn spec(backends: &[u8]) -> TableSpec {
        let backends: Vec<_> = backends
            .iter()
            .map(|b| (address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, *b)), 8080), 1))
            .collect();
        TableSpec {
            mode: mode::WEIGHTED,
            flags: 0,
            slots: alias_table(&backends),
        }
    }

    fn installed(first: u32, backends: &[u8]) -> Installed {
        let spec = spec(backends);
        Installed {
            first,
            count: spec.slots.len() as u32,
            digest: digest(&spec),
        }
    }

    fn service(last: u8, backends: &[u8]) -> ServicePlan {
        ServicePlan {
            key: ServiceKey::new(
                IpAddr::V4(Ipv4Addr::new(127, 100, 0, last)),
                80,
                Protocol::Tcp,
            ),
            host: "h".into(),
            resource: ResourceId::new(Kind::ServiceEntry, "default", "h"),
            route: None,
            load_balancer: LoadBalancer::Random,
            backends: backends
                .iter()
                .map(|b| BackendPlan {
                    address: IpAddr::V4(Ipv4Addr::new(127, 0, 0, *b)),
                    port: 8080,
                    weight: 1,
                    labels: Labels::default(),
                    subsets: Vec::new(),
                })
                .collect(),
            decision: Decision::Kernel,
            http: None,
        }
    }

    #[test]
    fn diff_writes_only_what_changed() {
        let installed: FxHashMap<_, _> = [(1, 0, &[1][..]), (2, 1, &[2]), (3, 2, &[3])]
            .into_iter()
            .map(|(k, first, b)| (key(k), installed(first, b)))
            .collect();
        let plan: Plan = [service(1, &[1]), service(2, &[2, 4]), service(5, &[5])]
            .into_iter()
            .collect();
        let changes = diff(&installed, &plan);
        assert_eq!(changes.unchanged, 1);
        assert_eq!(
            changes.upserts,
            vec![(key(2), spec(&[2, 4])), (key(5), spec(&[5]))]
        );
        assert_eq!(changes.removals, vec![key(3)]);
    }

    #[test]
    fn equal_tables_have_equal_digests_and_others_not() {
        assert_eq!(digest(&spec(&[1, 2])), digest(&spec(&[1, 2])));
        assert_ne!(digest(&spec(&[1, 2])), digest(&spec(&[1, 3])));
        assert_ne!(digest(&spec(&[1, 2])), digest(&spec(&[1])));
        let mut hashed = spec(&[1, 2]);
        hashed.mode = mode::SOURCE_HASH;
        assert_ne!(digest(&hashed), digest(&spec(&[1, 2])));
        let mut proxied = spec(&[1, 2]);
        proxied.flags = vsteer_common::service_flags::PROXY;
        assert_ne!(digest(&proxied), digest(&spec(&[1, 2])));
    }

    #[test]
    fn a_decision_change_rewrites_the_service() {
        let installed: FxHashMap<_, _> = [(key(1), installed(0, &[1]))].into_iter().collect();
        let mut proxied = service(1, &[1]);
        proxied.decision = Decision::Proxy {
            reason: "http[0].match[0].headers[end-user]".into(),
        };
        let plan: Plan = [proxied].into_iter().collect();
        let changes = diff(&installed, &plan);
        assert_eq!(changes.unchanged, 0);
        assert_eq!(changes.upserts.len(), 1);
        assert_eq!(
            changes.upserts[0].1.flags,
            vsteer_common::service_flags::PROXY
        );
        // Proxied with no backend at all: still flagged, so it is still redirected.
        let mut empty = service(2, &[]);
        empty.decision = Decision::Proxy { reason: "r".into() };
        let spec = table_spec(&empty);
        assert!(spec.slots.is_empty());
        assert_eq!(spec.flags, vsteer_common::service_flags::PROXY);
    }

    #[test]
    fn a_keyed_diff_looks_at_the_named_services_only() {
        let installed: FxHashMap<_, _> = [(1, 0, &[1][..]), (3, 2, &[3])]
            .into_iter()
            .map(|(k, first, b)| (key(k), installed(first, b)))
            .collect();
        let plan: Plan = [service(1, &[9]), service(2, &[2])].into_iter().collect();
        let named = |last: u8| {
            ServiceKey::new(
                IpAddr::V4(Ipv4Addr::new(127, 100, 0, last)),
                80,
                Protocol::Tcp,
            )
        };
        // 1 changed but is not named; 2 is new; 3 is gone from the plan.
        let changes = diff_keys(&installed, &plan, &[named(2), named(3)]);
        let upserts: Vec<_> = changes.upserts.iter().map(|(k, _)| *k).collect();
        assert_eq!(upserts, [key(2)]);
        assert_eq!(changes.removals, [key(3)]);
    }
}
