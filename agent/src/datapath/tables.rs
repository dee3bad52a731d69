//! What the kernel's service and backend maps hold, and how a new plan is applied to them.
//!
//! Each service points at a backend table (consecutive slots under one table id). A changed
//! service gets a fresh table, written in full before the service entry is flipped to it, so a
//! connect sees either the old set or the new one, never a mix. Old tables are deleted only
//! after a grace period, because a connect that read the old service entry may still be about
//! to read its slots.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap as StdHashMap},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::maps::{HashMap, MapData};
use vsteer_common::{BackendKey, ServiceKey, ServiceValue, Slot};

use super::slots::TableSpec;

/// How long a replaced backend table stays readable.
const GRACE: Duration = Duration::from_secs(1);

/// Every service and its backend table, as wanted or as installed.
pub type Desired = BTreeMap<ServiceKey, TableSpec>;

/// What one `apply` changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ApplyStats {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    pub unchanged: usize,
}

/// The per-service differences between what is installed and what is desired.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    pub upserts: Vec<(ServiceKey, TableSpec)>,
    pub removals: Vec<ServiceKey>,
    pub unchanged: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Installed {
    pub table: u32,
    pub spec: TableSpec,
}

/// Compares the installed tables with the desired ones.
pub fn diff(installed: &BTreeMap<ServiceKey, Installed>, desired: &Desired) -> Changes {
    let mut changes = Changes::default();
    for (key, spec) in desired {
        match installed.get(key) {
            Some(current) if &current.spec == spec => changes.unchanged += 1,
            _ => changes.upserts.push((*key, spec.clone())),
        }
    }
    changes.removals = installed
        .keys()
        .filter(|key| !desired.contains_key(key))
        .copied()
        .collect();
    changes
}

pub struct Tables {
    services: HashMap<MapData, ServiceKey, ServiceValue>,
    backends: HashMap<MapData, BackendKey, Slot>,
    installed: BTreeMap<ServiceKey, Installed>,
    /// Replaced tables: (table, slot count, when replaced).
    retired: Vec<(u32, u32, Instant)>,
    next_table: u32,
}

impl Tables {
    /// Takes over the maps as they are (empty, or left by an earlier agent): reads what they
    /// hold so the next `apply` writes only differences, and drops slots no service uses
    /// (left by an agent that died between writing a table and switching to it).
    pub fn adopt(
        services: HashMap<MapData, ServiceKey, ServiceValue>,
        mut backends: HashMap<MapData, BackendKey, Slot>,
    ) -> Result<Self> {
        let installed = read_installed(&services, &backends)?;
        let in_use: BTreeSet<u32> = installed.values().map(|i| i.table).collect();
        let orphans: Vec<BackendKey> = backends
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !in_use.contains(&k.table))
            .collect();
        for key in &orphans {
            let _ = backends.remove(key);
        }
        if !orphans.is_empty() {
            tracing::info!(
                slots = orphans.len(),
                "removed backend slots no service used"
            );
        }
        let next_table = in_use.last().map_or(1, |t| t.wrapping_add(1).max(1));
        Ok(Self {
            services,
            backends,
            installed,
            retired: Vec::new(),
            next_table,
        })
    }

    pub fn installed(&self) -> &BTreeMap<ServiceKey, Installed> {
        &self.installed
    }

    /// Writes only what differs between the kernel's maps and `desired`.
    pub fn apply(&mut self, desired: &Desired) -> Result<ApplyStats> {
        self.sweep();
        let changes = diff(&self.installed, desired);
        let mut stats = ApplyStats {
            unchanged: changes.unchanged,
            ..ApplyStats::default()
        };
        for (key, spec) in changes.upserts {
            let table = self.write_table(&spec.slots)?;
            let value = ServiceValue {
                table,
                slot_count: u32::try_from(spec.slots.len()).context("too many slots")?,
                mode: spec.mode,
                _pad: [0; 3],
            };
            self.services
                .insert(key, value, 0)
                .with_context(|| format!("writing service {}", describe(&key)))?;
            match self.installed.insert(key, Installed { table, spec }) {
                Some(old) => {
                    stats.changed += 1;
                    self.retire(&old);
                }
                None => stats.added += 1,
            }
        }
        for key in changes.removals {
            self.services
                .remove(&key)
                .with_context(|| format!("removing service {}", describe(&key)))?;
            if let Some(old) = self.installed.remove(&key) {
                self.retire(&old);
            }
            stats.removed += 1;
        }
        Ok(stats)
    }

    /// Deletes the backend tables whose grace period is over.
    pub fn sweep(&mut self) {
        let now = Instant::now();
        let (due, keep): (Vec<_>, Vec<_>) = self
            .retired
            .drain(..)
            .partition(|(_, _, at)| now.duration_since(*at) >= GRACE);
        self.retired = keep;
        for (table, count, _) in due {
            for slot in 0..count {
                // A missing slot is already gone, which is what we want.
                let _ = self.backends.remove(&BackendKey { table, slot });
            }
        }
    }

    fn retire(&mut self, old: &Installed) {
        let count = u32::try_from(old.spec.slots.len()).unwrap_or(u32::MAX);
        self.retired.push((old.table, count, Instant::now()));
    }

    fn write_table(&mut self, slots: &[Slot]) -> Result<u32> {
        let table = self.allocate_table();
        for (slot, value) in (0u32..).zip(slots) {
            self.backends
                .insert(BackendKey { table, slot }, *value, 0)
                .with_context(|| format!("writing backend slot {table}/{slot}"))?;
        }
        Ok(table)
    }

    /// A table id used by no installed or retired table.
    fn allocate_table(&mut self) -> u32 {
        let in_use: BTreeSet<u32> = self
            .installed
            .values()
            .map(|i| i.table)
            .chain(self.retired.iter().map(|(t, _, _)| *t))
            .collect();
        loop {
            let id = self.next_table;
            self.next_table = self.next_table.checked_add(1).unwrap_or(1);
            if !in_use.contains(&id) {
                return id;
            }
        }
    }
}

/// Reads every service and its table from the maps.
pub fn read_installed(
    services: &HashMap<MapData, ServiceKey, ServiceValue>,
    backends: &HashMap<MapData, BackendKey, Slot>,
) -> Result<BTreeMap<ServiceKey, Installed>> {
    let mut slots_of: StdHashMap<u32, BTreeMap<u32, Slot>> = StdHashMap::new();
    for entry in backends.iter() {
        let (key, slot) = entry.context("reading the backend map")?;
        slots_of
            .entry(key.table)
            .or_default()
            .insert(key.slot, slot);
    }
    let mut installed = BTreeMap::new();
    for entry in services.iter() {
        let (key, value) = entry.context("reading the service map")?;
        let table = slots_of.remove(&value.table).unwrap_or_default();
        let slots: Vec<Slot> = (0..value.slot_count)
            .filter_map(|i| table.get(&i).copied())
            .collect();
        if slots.len() != value.slot_count as usize {
            tracing::warn!(service = %describe(&key), "backend table is incomplete; it will be rewritten");
        }
        installed.insert(
            key,
            Installed {
                table: value.table,
                spec: TableSpec {
                    mode: value.mode,
                    slots,
                },
            },
        );
    }
    Ok(installed)
}

/// `127.100.0.1:9080/TCP` for logs and errors.
pub fn describe(key: &ServiceKey) -> String {
    let ip = std::net::Ipv6Addr::from(key.addr);
    let ip = ip
        .to_ipv4_mapped()
        .map_or_else(|| format!("[{ip}]"), |v4| v4.to_string());
    let proto = match key.proto {
        vsteer_common::PROTO_TCP => "TCP".to_string(),
        vsteer_common::PROTO_UDP => "UDP".to_string(),
        other => other.to_string(),
    };
    format!("{ip}:{}/{proto}", key.port)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use vsteer_common::{PROTO_TCP, mode};

    use super::*;
    use crate::datapath::slots::{address, alias_table};

    fn key(last: u8) -> ServiceKey {
        ServiceKey::v4([127, 100, 0, last], 80, PROTO_TCP)
    }

    fn spec(backends: &[u8]) -> TableSpec {
        let backends: Vec<_> = backends
            .iter()
            .map(|b| (address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, *b)), 8080), 1))
            .collect();
        TableSpec {
            mode: mode::WEIGHTED,
            slots: alias_table(&backends),
        }
    }

    #[test]
    fn diff_writes_only_what_changed() {
        let installed: BTreeMap<_, _> = [
            (
                key(1),
                Installed {
                    table: 1,
                    spec: spec(&[1]),
                },
            ),
            (
                key(2),
                Installed {
                    table: 2,
                    spec: spec(&[2]),
                },
            ),
            (
                key(3),
                Installed {
                    table: 3,
                    spec: spec(&[3]),
                },
            ),
        ]
        .into_iter()
        .collect();
        let desired: Desired = [
            (key(1), spec(&[1])),
            (key(2), spec(&[2, 4])),
            (key(5), spec(&[5])),
        ]
        .into_iter()
        .collect();
        let changes = diff(&installed, &desired);
        assert_eq!(changes.unchanged, 1);
        assert_eq!(
            changes.upserts,
            vec![(key(2), spec(&[2, 4])), (key(5), spec(&[5]))]
        );
        assert_eq!(changes.removals, vec![key(3)]);
    }

    #[test]
    fn describes_keys_readably() {
        assert_eq!(describe(&key(1)), "127.100.0.1:80/TCP");
    }
}
