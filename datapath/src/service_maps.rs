//! The two maps a service can live in, as one: the hash map of exact VIPs and the trie of
//! CIDR ranges (a key with host bits), which the programs consult only when an address is no
//! exact VIP.
//!
//! A trie lookup matches the longest prefix, so it cannot tell whether one range is there:
//! what the trie holds is mirrored here (ranges are few), read back once at adoption.

use anyhow::{Context, Result};
use aya::maps::{HashMap, MapData, lpm_trie::Key, lpm_trie::LpmTrie};
use rustc_hash::FxHashMap;
use vsteer_common::{RangeKey, ServiceValue, VipKey};

use crate::keys::describe;

pub struct ServiceMaps {
    exact: HashMap<MapData, VipKey, ServiceValue>,
    ranges: LpmTrie<MapData, RangeKey, ServiceValue>,
    /// What `ranges` holds.
    range_values: FxHashMap<VipKey, ServiceValue>,
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
        exact: HashMap<MapData, VipKey, ServiceValue>,
        ranges: LpmTrie<MapData, RangeKey, ServiceValue>,
    ) -> Result<Self> {
        let mut range_values = FxHashMap::default();
        for entry in ranges.iter() {
            let (key, value) = entry.context("reading the range map")?;
            range_values.insert(from_trie_key(&key), value);
        }
        Ok(Self {
            exact,
            ranges,
            range_values,
        })
    }

    /// The value of exactly `key` (one VIP, or one range).
    pub fn get(&self, key: &VipKey) -> Option<ServiceValue> {
        if key.host_bits == 0 {
            self.exact.get(key, 0).ok()
        } else {
            self.range_values.get(key).copied()
        }
    }

    pub fn insert(&mut self, key: &VipKey, value: ServiceValue) -> Result<()> {
        if key.host_bits == 0 {
            self.exact
                .insert(key, value, 0)
                .with_context(|| format!("writing service {}", describe(key)))
        } else {
            self.ranges
                .insert(&trie_key(key), value, 0)
                .with_context(|| format!("writing range {}", describe(key)))?;
            self.range_values.insert(*key, value);
            Ok(())
        }
    }

    pub fn remove(&mut self, key: &VipKey) -> Result<()> {
        if key.host_bits == 0 {
            self.exact
                .remove(key)
                .with_context(|| format!("removing service {}", describe(key)))
        } else {
            self.ranges
                .remove(&trie_key(key))
                .with_context(|| format!("removing range {}", describe(key)))?;
            self.range_values.remove(key);
            Ok(())
        }
    }

    /// Every service of both maps (the ranges from the mirror, read once at adoption).
    pub fn entries(&self) -> Result<Vec<(VipKey, ServiceValue)>> {
        let mut all = read_exact(&self.exact)?;
        all.extend(self.range_values.iter().map(|(k, v)| (*k, *v)));
        Ok(all)
    }
}

fn read_exact(
    exact: &HashMap<MapData, VipKey, ServiceValue>,
) -> Result<Vec<(VipKey, ServiceValue)>> {
    exact
        .iter()
        .collect::<Result<Vec<_>, _>>()
        .context("reading the service map")
}

/// Every service of both maps, ranges with their host bits; `None`: pins of an agent that
/// had no range map.
pub fn read_both(
    exact: &HashMap<MapData, VipKey, ServiceValue>,
    ranges: Option<&LpmTrie<MapData, RangeKey, ServiceValue>>,
) -> Result<Vec<(VipKey, ServiceValue)>> {
    let mut all = read_exact(exact)?;
    for entry in ranges.into_iter().flat_map(|r| r.iter()) {
        let (key, value) = entry.context("reading the range map")?;
        all.push((from_trie_key(&key), value));
    }
    Ok(all)
}
