//! What the agent has written into the kernel, and how a new plan is applied to it.
//!
//! Each service points at a backend table (consecutive slots under one table id). A changed
//! service gets a fresh table, written in full before the service entry is flipped to it, so a
//! connect sees either the old set or the new one, never a mix. Old tables are deleted only
//! after a grace period, because a connect that read the old service entry may still be about
//! to read its slots.
use std::{
    collections::{BTreeMap, HashMap as StdHashMap},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::maps::{HashMap, MapData};
use vsteer_common::{Backend, BackendKey, ServiceKey, ServiceValue};

use super::entries::Desired;

/// How long a replaced backend table stays readable.
const GRACE: Duration = Duration::from_secs(1);

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
    /// Services whose backend set is new or different, with the new set.
    pub upserts: Vec<(ServiceKey, Vec<Backend>)>,
    pub removals: Vec<ServiceKey>,
    pub unchanged: usize,
}

#[derive(Debug, Clone)]
struct Installed {
    table: u32,
    backends: Vec<Backend>,
}

/// Compares the installed backend sets with the desired ones.
fn diff(installed: &StdHashMap<ServiceKey, Installed>, desired: &Desired) -> Changes {
    let mut changes = Changes::default();
    for (key, backends) in desired {
        match installed.get(key) {
            Some(current) if &current.backends == backends => changes.unchanged += 1,
            _ => changes.upserts.push((*key, backends.clone())),
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
    backends: HashMap<MapData, BackendKey, Backend>,
    installed: StdHashMap<ServiceKey, Installed>,
    /// Replaced tables: (table, slot count, when replaced).
    retired: Vec<(u32, u32, Instant)>,
    next_table: u32,
}

impl Tables {
    pub fn new(
        services: HashMap<MapData, ServiceKey, ServiceValue>,
        backends: HashMap<MapData, BackendKey, Backend>,
    ) -> Self {
        Self {
            services,
            backends,
            installed: StdHashMap::new(),
            retired: Vec::new(),
            next_table: 1,
        }
    }

    /// Writes only what differs between the kernel's maps and `desired`.
    pub fn apply(&mut self, desired: &Desired) -> Result<ApplyStats> {
        self.sweep()?;
        let changes = diff(&self.installed, desired);
        let mut stats = ApplyStats {
            unchanged: changes.unchanged,
            ..ApplyStats::default()
        };
        for (key, backends) in changes.upserts {
            let table = self.write_table(&backends)?;
            let value = ServiceValue {
                table,
                slot_count: u32::try_from(backends.len()).context("too many backends")?,
            };
            self.services
                .insert(key, value, 0)
                .with_context(|| format!("writing service {key:?}"))?;
            match self.installed.insert(key, Installed { table, backends }) {
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
                .with_context(|| format!("removing service {key:?}"))?;
            if let Some(old) = self.installed.remove(&key) {
                self.retire(&old);
            }
            stats.removed += 1;
        }
        Ok(stats)
    }

    /// Deletes the backend tables whose grace period is over.
    pub fn sweep(&mut self) -> Result<()> {
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
        Ok(())
    }

    fn retire(&mut self, old: &Installed) {
        let count = u32::try_from(old.backends.len()).unwrap_or(u32::MAX);
        self.retired.push((old.table, count, Instant::now()));
    }

    fn write_table(&mut self, backends: &[Backend]) -> Result<u32> {
        let table = self.allocate_table();
        for (slot, backend) in (0u32..).zip(backends) {
            self.backends
                .insert(BackendKey { table, slot }, *backend, 0)
                .with_context(|| format!("writing backend slot {table}/{slot}"))?;
        }
        Ok(table)
    }

    /// A table id used by no installed or retired table.
    fn allocate_table(&mut self) -> u32 {
        let in_use: BTreeMap<u32, ()> = self
            .installed
            .values()
            .map(|i| (i.table, ()))
            .chain(self.retired.iter().map(|(t, _, _)| (*t, ())))
            .collect();
        loop {
            let id = self.next_table;
            self.next_table = self.next_table.checked_add(1).unwrap_or(1);
            if !in_use.contains_key(&id) {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::entries::backend;
    use std::net::{IpAddr, Ipv4Addr};
    use vsteer_common::PROTO_TCP;

    fn key(last: u8) -> ServiceKey {
        ServiceKey::v4([127, 100, 0, last], 80, PROTO_TCP)
    }

    fn be(last: u8) -> Backend {
        backend(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), 8080)
    }

    #[test]
    fn diff_writes_only_what_changed() {
        let installed: StdHashMap<_, _> = [
            (
                key(1),
                Installed {
                    table: 1,
                    backends: vec![be(1)],
                },
            ),
            (
                key(2),
                Installed {
                    table: 2,
                    backends: vec![be(2)],
                },
            ),
            (
                key(3),
                Installed {
                    table: 3,
                    backends: vec![be(3)],
                },
            ),
        ]
        .into_iter()
        .collect();
        let desired: Desired = [
            (key(1), vec![be(1)]),
            (key(2), vec![be(2), be(4)]),
            (key(5), vec![be(5)]),
        ]
        .into_iter()
        .collect();
        let changes = diff(&installed, &desired);
        assert_eq!(changes.unchanged, 1);
        assert_eq!(
            changes.upserts,
            vec![(key(2), vec![be(2), be(4)]), (key(5), vec![be(5)])]
        );
        assert_eq!(changes.removals, vec![key(3)]);
    }
}
