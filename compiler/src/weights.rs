//! From route weights to backend weights: parts per million that sum to exactly
//! [`WEIGHT_SCALE`].

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::net::IpAddr;

use vsteer_plan::{BackendPlan, WEIGHT_SCALE};

/// One destination of a route: its relative weight and its endpoints, whose `weight` is the
/// endpoint's own (ServiceEntry `endpoints[].weight`, 1 unless set): a destination's share is
/// split among its endpoints in proportion to it, as Envoy weights a cluster's hosts.
pub(crate) struct Share {
    pub weight: u64,
    pub backends: Vec<BackendPlan>,
}

/// The backends of a service: destinations with weight 0 or no endpoint get nothing, the
/// others divide [`WEIGHT_SCALE`] in proportion to their weights, each destination's part
/// divided among its endpoints by their own weights, both times by largest remainder so every part is an
/// integer and nothing is lost. Endpoints reached through several destinations are merged
/// by (address, port), their weights added. Sorted by (address, port); weight 0 left out.
pub(crate) fn spread(shares: Vec<Share>) -> Vec<BackendPlan> {
    let shares: Vec<Share> = shares
        .into_iter()
        .filter(|s| s.weight > 0 && !s.backends.is_empty())
        .collect();
    let weights: Vec<u64> = shares.iter().map(|s| s.weight).collect();
    let parts = largest_remainder(u64::from(WEIGHT_SCALE), &weights);

    let mut merged: BTreeMap<(IpAddr, u16), BackendPlan> = BTreeMap::new();
    for (mut share, part) in shares.into_iter().zip(parts) {
        // Which endpoint gets a remainder must not depend on the order they were written in.
        share.backends.sort_by_key(|b| (b.address, b.port));
        // Within a destination, endpoints share by their own weights (1 unless set).
        let endpoint_weights: Vec<u64> = share
            .backends
            .iter()
            .map(|b| u64::from(b.weight.max(1)))
            .collect();
        let each = largest_remainder(part, &endpoint_weights);
        for (backend, weight) in share.backends.into_iter().zip(each) {
            // Never more than WEIGHT_SCALE in total, so it fits.
            let weight = u32::try_from(weight).unwrap_or(u32::MAX);
            match merged.entry((backend.address, backend.port)) {
                Entry::Vacant(slot) => {
                    slot.insert(BackendPlan { weight, ..backend });
                }
                Entry::Occupied(mut slot) => {
                    let existing = slot.get_mut();
                    existing.weight = existing.weight.saturating_add(weight);
                    for subset in backend.subsets {
                        if !existing.subsets.contains(&subset) {
                            existing.subsets.push(subset);
                        }
                    }
                }
            }
        }
    }
    let mut backends: Vec<BackendPlan> = merged.into_values().filter(|b| b.weight > 0).collect();
    // The plan keeps it for the service's life: no room for more (a filter's collect
    // reserves four).
    backends.shrink_to_fit();
    backends
}

/// Divides `total` in proportion to `weights` into integers that sum to `total` (unless all
/// weights are 0): each gets the floor of its exact part, and what is left goes one by one
/// to the largest remainders, earlier entries first on ties.
pub fn largest_remainder(total: u64, weights: &[u64]) -> Vec<u64> {
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if sum == 0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<(u128, u128)> = weights
        .iter()
        .map(|&w| {
            let scaled = u128::from(total) * u128::from(w);
            (scaled / sum, scaled % sum)
        })
        .collect();
    let mut parts: Vec<u64> = exact
        .iter()
        .map(|&(floor, _)| u64::try_from(floor).unwrap_or(u64::MAX))
        .collect();
    let given: u64 = parts.iter().sum();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| exact[b].1.cmp(&exact[a].1).then(a.cmp(&b)));
    // The floors fall short by less than one per entry, so `left` < weights.len().
    let left = usize::try_from(total.saturating_sub(given)).unwrap_or(usize::MAX);
    for &i in order.iter().take(left) {
        parts[i] += 1;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(address: &str) -> BackendPlan {
        BackendPlan {
            address: address.parse().unwrap(),
            port: 80,
            weight: 0,
            labels: vsteer_model::Labels::default(),
            subsets: Vec::new(),
        }
    }

    fn weights(backends: &[BackendPlan]) -> Vec<(String, u32)> {
        backends
            .iter()
            .map(|b| (b.address.to_string(), b.weight))
            .collect()
    }

    #[test]
    fn largest_remainder_is_exact_and_fair() {
        assert_eq!(largest_remainder(100, &[1, 1, 1]), [34, 33, 33]);
        assert_eq!(largest_remainder(10, &[1, 2]), [3, 7]);
        assert_eq!(largest_remainder(1_000_000, &[80, 20]), [800_000, 200_000]);
        assert_eq!(largest_remainder(5, &[0, 0]), [0, 0]);
        assert_eq!(largest_remainder(7, &[]), Vec::<u64>::new());
        let parts = largest_remainder(1_000_000, &[3, 7, 11, 13]);
        assert_eq!(parts.iter().sum::<u64>(), 1_000_000);
    }

    #[test]
    fn one_percent_over_three_endpoints_survives() {
        let backends = spread(vec![
            Share {
                weight: 99,
                backends: vec![backend("10.0.0.1")],
            },
            Share {
                weight: 1,
                backends: vec![
                    backend("10.0.1.3"),
                    backend("10.0.1.1"),
                    backend("10.0.1.2"),
                ],
            },
        ]);
        assert_eq!(
            weights(&backends),
            [
                ("10.0.0.1".into(), 990_000),
                ("10.0.1.1".into(), 3_334),
                ("10.0.1.2".into(), 3_333),
                ("10.0.1.3".into(), 3_333),
            ]
        );
    }

    #[test]
    fn shared_endpoints_merge_and_empty_destinations_are_left_out() {
        let backends = spread(vec![
            Share {
                weight: 50,
                backends: vec![backend("10.0.0.1"), backend("10.0.0.2")],
            },
            Share {
                weight: 50,
                backends: vec![backend("10.0.0.2")],
            },
            Share {
                weight: 0,
                backends: vec![backend("10.0.0.9")],
            },
            Share {
                weight: 30,
                backends: Vec::new(),
            },
        ]);
        assert_eq!(
            weights(&backends),
            [("10.0.0.1".into(), 250_000), ("10.0.0.2".into(), 750_000)]
        );
        assert!(spread(Vec::new()).is_empty());
    }
}
