//! The two maps a service can live in, as one: the hash map of exact VIPs and the trie of
//! CIDR ranges (a key with host bits), which the programs consult only when an address is no
//! exact VIP.
//!
//! An exact service's value lives in the entry array, named by a checked handle in the hash
//! map (see `ServiceHandle` for why). Sound because an entry is written only while no handle
//! names it and none has for a grace period: a change writes a free entry, then flips the
//! handle; the entry it replaced is retired, and freed by `release_retired` once the caller
//! has waited for one (as the slots of replaced tables, in `tables`). A restarted agent
//! waits before its first write, so entries its predecessor retired are safe too.
//!
//! A trie lookup matches the longest prefix, so it cannot tell whether one range is there:
//! what the trie holds is mirrored here (ranges are few), read back once at adoption.

use anyhow::{Context, Result};
use aya::maps::{Array, HashMap, MapData, lpm_trie::Key, lpm_trie::LpmTrie};
use rustc_hash::{FxHashMap, FxHashSet};
use vsteer_common::{MAX_ENTRIES, RangeKey, ServiceEntry, ServiceHandle, ServiceValue, VipKey};

use crate::keys::describe;

pub struct ServiceMaps {
    exact: HashMap<MapData, VipKey, ServiceHandle>,
    entries: Array<MapData, ServiceEntry>,
    /// What `exact` holds: each service's entry and the value in it.
    exact_values: FxHashMap<VipKey, (u32, ServiceValue)>,
    /// Entries no handle names and none has since the last grace period (a stack: the
    /// lowest index on top).
    free: Vec<u32>,
    /// Entries a handle named until this agent replaced it: free after a grace period.
    retired: Vec<u32>,
    ranges: LpmTrie<MapData, RangeKey, ServiceValue>,
    /// What `ranges` holds.
    range_values: FxHashMap<VipKey, ServiceValue>,
}

/// What a write replaced: what [`ServiceMaps::restore`] puts back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replaced {
    value: ServiceValue,
    /// The entry of an exact service (`None` for a range).
    entry: Option<u32>,
}

fn trie_key(key: &VipKey) -> Key<RangeKey> {
    let range = key.range_key();
    Key::new(range.prefix_len, range.data)
}

fn from_trie_key(key: &Key<RangeKey>) -> VipKey {
    VipKey::from_range_key(&vsteer_common::RangeTrieKey {
        prefix_len: key.prefix_len(),
        data: key.data(),
    })
}

impl ServiceMaps {
    pub fn new(
        exact: HashMap<MapData, VipKey, ServiceHandle>,
        entries: Array<MapData, ServiceEntry>,
        ranges: LpmTrie<MapData, RangeKey, ServiceValue>,
    ) -> Result<Self> {
        let mut range_values = FxHashMap::default();
        for entry in ranges.iter() {
            let (key, value) = entry.context("reading the range map")?;
            range_values.insert(from_trie_key(&key), value);
        }
        let mut maps = Self {
            exact,
            entries,
            exact_values: FxHashMap::default(),
            free: Vec::new(),
            retired: Vec::new(),
            ranges,
            range_values,
        };
        maps.reread_exact()?;
        Ok(maps)
    }

    /// Reads the exact services back from the kernel: at adoption, and after an undo that
    /// failed. A handle that names no entry of its key (a corrupt map) is dropped, so the
    /// next change writes that service anew.
    fn reread_exact(&mut self) -> Result<()> {
        let handles = self
            .exact
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .context("reading the service map")?;
        self.exact_values.clear();
        for (key, handle) in handles {
            let entry = handle
                .is_whole()
                .then(|| self.entries.get(&handle.entry, 0).ok())
                .flatten()
                .filter(|entry| entry.key == key);
            match entry {
                Some(entry) => {
                    self.exact_values.insert(key, (handle.entry, entry.service));
                }
                None => {
                    tracing::warn!(service = %describe(&key), ?handle, "service map entry names no entry of its own; dropped, to be written anew");
                    self.exact
                        .remove(&key)
                        .with_context(|| format!("removing service {}", describe(&key)))?;
                }
            }
        }
        let in_use: FxHashSet<u32> = self.exact_values.values().map(|(e, _)| *e).collect();
        self.retired.retain(|e| !in_use.contains(e));
        let retired: FxHashSet<u32> = self.retired.iter().copied().collect();
        self.free = (0..MAX_ENTRIES)
            .rev()
            .filter(|e| !in_use.contains(e) && !retired.contains(e))
            .collect();
        Ok(())
    }

    /// Entries a change may write now.
    pub fn free_entries(&self) -> usize {
        self.free.len()
    }

    pub fn has_retired(&self) -> bool {
        !self.retired.is_empty()
    }

    /// Frees the retired entries: the caller has waited for a grace period since they were
    /// retired.
    pub fn release_retired(&mut self) {
        // Lowest on top, so a map in use stays dense at its start.
        self.free.append(&mut self.retired);
        self.free.sort_unstable_by(|a, b| b.cmp(a));
    }

    /// Writes `value` for `key`; returns what it replaced. An exact service takes a free
    /// entry (the caller makes sure there is one), written before the handle is flipped.
    pub fn insert(&mut self, key: &VipKey, value: ServiceValue) -> Result<Option<Replaced>> {
        if key.host_bits != 0 {
            self.ranges
                .insert(&trie_key(key), value, 0)
                .with_context(|| format!("writing range {}", describe(key)))?;
            let before = self.range_values.insert(*key, value);
            return Ok(before.map(|value| Replaced { value, entry: None }));
        }
        let entry = self.free.pop().with_context(|| {
            format!(
                "writing service {}: no free service entry ({MAX_ENTRIES}, MAX_ENTRIES in \
                 common/src/lib.rs, all used or replaced within a grace period)",
                describe(key)
            )
        })?;
        let written = self
            .entries
            .set(
                entry,
                ServiceEntry {
                    key: *key,
                    service: value,
                },
                0,
            )
            .with_context(|| format!("writing the entry of service {}", describe(key)))
            .and_then(|()| {
                self.exact
                    .insert(key, ServiceHandle::new(entry), 0)
                    .with_context(|| format!("writing service {}", describe(key)))
            });
        if let Err(err) = written {
            // No handle named it: free at once.
            self.free.push(entry);
            return Err(err);
        }
        Ok(self.replace_exact(key, Some((entry, value))))
    }

    /// Removes `key`; returns what it held.
    pub fn remove(&mut self, key: &VipKey) -> Result<Option<Replaced>> {
        if key.host_bits != 0 {
            if !self.range_values.contains_key(key) {
                return Ok(None);
            }
            self.ranges
                .remove(&trie_key(key))
                .with_context(|| format!("removing range {}", describe(key)))?;
            let before = self.range_values.remove(key);
            return Ok(before.map(|value| Replaced { value, entry: None }));
        }
        if !self.exact_values.contains_key(key) {
            return Ok(None);
        }
        self.exact
            .remove(key)
            .with_context(|| format!("removing service {}", describe(key)))?;
        Ok(self.replace_exact(key, None))
    }

    /// Puts back what a write replaced (an undo): the entry it named, which is retired but
    /// not yet free (no grace period is waited for within a change), or nothing.
    pub fn restore(&mut self, key: &VipKey, before: Option<Replaced>) -> Result<()> {
        match before {
            None => self.remove(key).map(|_| ()),
            Some(Replaced { value, entry: None }) => self.insert(key, value).map(|_| ()),
            Some(Replaced {
                value,
                entry: Some(entry),
            }) => {
                self.exact
                    .insert(key, ServiceHandle::new(entry), 0)
                    .with_context(|| format!("restoring service {}", describe(key)))?;
                self.retired.retain(|e| *e != entry);
                self.replace_exact(key, Some((entry, value)));
                Ok(())
            }
        }
    }

    /// Records what the kernel now holds for exact `key`; the entry it replaced is retired.
    fn replace_exact(
        &mut self,
        key: &VipKey,
        now: Option<(u32, ServiceValue)>,
    ) -> Option<Replaced> {
        let before = match now {
            Some(now) => self.exact_values.insert(*key, now),
            None => self.exact_values.remove(key),
        }?;
        self.retired.push(before.0);
        Some(Replaced {
            value: before.1,
            entry: Some(before.0),
        })
    }

    /// Every service of both maps, the exact ones read back from the kernel (the ranges
    /// from the mirror, read once at adoption).
    pub fn entries(&mut self) -> Result<Vec<(VipKey, ServiceValue)>> {
        self.reread_exact()?;
        let mut all: Vec<_> = self
            .exact_values
            .iter()
            .map(|(k, (_, v))| (*k, *v))
            .collect();
        all.extend(self.range_values.iter().map(|(k, v)| (*k, *v)));
        Ok(all)
    }
}

/// Every service of the pinned maps, ranges with their host bits (`vsteer status`); `None`:
/// pins of an agent that had no range map. An exact service whose handle names no entry of
/// its own is left out.
pub fn read_both(
    exact: &HashMap<MapData, VipKey, ServiceHandle>,
    entries: &Array<MapData, ServiceEntry>,
    ranges: Option<&LpmTrie<MapData, RangeKey, ServiceValue>>,
) -> Result<Vec<(VipKey, ServiceValue)>> {
    let mut all = Vec::new();
    for item in exact.iter() {
        let (key, handle) = item.context("reading the service map")?;
        if !handle.is_whole() {
            continue;
        }
        let entry = entries
            .get(&handle.entry, 0)
            .with_context(|| format!("reading the entry of service {}", describe(&key)))?;
        if entry.key == key {
            all.push((key, entry.service));
        }
    }
    for entry in ranges.into_iter().flat_map(|r| r.iter()) {
        let (key, value) = entry.context("reading the range map")?;
        all.push((from_trie_key(&key), value));
    }
    Ok(all)
}
