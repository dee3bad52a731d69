//! Load balancing per request over one cluster's endpoints, as Envoy does for Istio's
//! DestinationRule: RANDOM (weighted), ROUND_ROBIN (a smooth weighted round robin shared by
//! every worker thread), LEAST_REQUEST (power of two choices: two distinct random endpoints,
//! the one with fewer requests in flight per unit of weight wins), and consistent hashing on a
//! ring (a request without a key gets a random endpoint, as in Envoy).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use vsteer_plan::LoadBalancer;
use vsteer_plan::http::HttpLoadBalancer;

use crate::hash_policy::HashKey;
use crate::outlier::HostHealth;
use crate::pool::EndpointPool;
use crate::ring::Ring;

#[derive(Debug)]
pub(crate) struct EndpointState {
    pub addr: SocketAddr,
    pub weight: u32,
    pub pool: Arc<EndpointPool>,
    /// The endpoint's record in its cluster's outlier detection.
    pub health: Option<Arc<HostHealth>>,
}

/// Weighted random choice over the endpoints.
#[derive(Debug)]
pub(crate) struct Weights {
    /// Running sums of the weights; empty when all weights are equal (a uniform pick).
    cumulative: Vec<u64>,
    n: usize,
}

impl Weights {
    fn new(endpoints: &[EndpointState]) -> Weights {
        let uniform = endpoints.windows(2).all(|w| w[0].weight == w[1].weight);
        let cumulative = if uniform {
            Vec::new()
        } else {
            endpoints
                .iter()
                .scan(0u64, |sum, e| {
                    *sum += u64::from(e.weight);
                    Some(*sum)
                })
                .collect()
        };
        Weights {
            cumulative,
            n: endpoints.len(),
        }
    }

    fn pick(&self) -> usize {
        match self.cumulative.last() {
            None => fastrand::usize(..self.n.max(1)),
            Some(&total) if total > 0 => {
                let r = fastrand::u64(..total);
                self.cumulative.partition_point(|c| *c <= r)
            }
            Some(_) => fastrand::usize(..self.n.max(1)),
        }
    }

    /// Two different endpoints (when there are two), each drawn by weight.
    fn pick_two(&self) -> (usize, usize) {
        let n = self.n;
        if n < 2 {
            return (0, 0);
        }
        if self.cumulative.is_empty() {
            let a = fastrand::usize(..n);
            let mut b = fastrand::usize(..n - 1);
            if b >= a {
                b += 1;
            }
            return (a, b);
        }
        let a = self.pick();
        for _ in 0..8 {
            let b = self.pick();
            if b != a {
                return (a, b);
            }
        }
        (a, (a + 1) % n)
    }
}

#[derive(Debug)]
pub(crate) enum Balancer {
    Random(Weights),
    RoundRobin {
        /// Endpoint indexes in round-robin order; each appears in proportion to its weight.
        schedule: Vec<u32>,
        next: AtomicUsize,
    },
    LeastRequest(Weights),
    Hash {
        ring: Ring,
        key: HashKey,
        fallback: Weights,
    },
}

impl Balancer {
    pub(crate) fn new(lb: &HttpLoadBalancer, endpoints: &[EndpointState]) -> Balancer {
        let ring = || {
            Ring::new(
                &endpoints
                    .iter()
                    .map(|e| (e.addr, e.weight))
                    .collect::<Vec<_>>(),
            )
        };
        let key = match lb {
            HttpLoadBalancer::Simple(LoadBalancer::Random) => {
                return Balancer::Random(Weights::new(endpoints));
            }
            HttpLoadBalancer::Simple(LoadBalancer::RoundRobin) => {
                return Balancer::RoundRobin {
                    schedule: schedule(endpoints),
                    next: AtomicUsize::new(0),
                };
            }
            HttpLoadBalancer::Simple(LoadBalancer::LeastRequest) => {
                return Balancer::LeastRequest(Weights::new(endpoints));
            }
            HttpLoadBalancer::Simple(LoadBalancer::SourceIpHash) => HashKey::SourceIp,
            HttpLoadBalancer::Header(name) => match http::HeaderName::from_bytes(name.as_bytes()) {
                Ok(name) => HashKey::Header(name),
                Err(_) => {
                    tracing::warn!("consistent hash on {name:?}: not a header name; random");
                    return Balancer::Random(Weights::new(endpoints));
                }
            },
            HttpLoadBalancer::Cookie { name, path, ttl } => HashKey::Cookie {
                name: name.as_str().into(),
                path: path.as_deref().map(Into::into),
                ttl: *ttl,
            },
            HttpLoadBalancer::QueryParameter(name) => HashKey::Query(name.as_str().into()),
        };
        Balancer::Hash {
            ring: ring(),
            key,
            fallback: Weights::new(endpoints),
        }
    }

    pub(crate) fn hash_key(&self) -> Option<&HashKey> {
        match self {
            Balancer::Hash { key, .. } => Some(key),
            _ => None,
        }
    }

    /// The index of the endpoint for one request (`endpoints` is not empty); `hash` is the
    /// request's key for a consistent hash.
    pub(crate) fn pick(&self, endpoints: &[EndpointState], hash: Option<u64>) -> usize {
        let index = match self {
            Balancer::Random(weights) => weights.pick(),
            Balancer::RoundRobin { schedule, next } => {
                let i = next.fetch_add(1, Relaxed) % schedule.len().max(1);
                schedule.get(i).map(|e| *e as usize).unwrap_or(0)
            }
            Balancer::LeastRequest(weights) => {
                let (a, b) = weights.pick_two();
                let (ea, eb) = (&endpoints[a], &endpoints[b]);
                // Fewer in flight per unit of weight: active_a / w_a <= active_b / w_b.
                let load_a = u64::from(ea.pool.active()) * u64::from(eb.weight.max(1));
                let load_b = u64::from(eb.pool.active()) * u64::from(ea.weight.max(1));
                if load_a <= load_b { a } else { b }
            }
            Balancer::Hash { ring, fallback, .. } => match hash.and_then(|h| ring.pick(h)) {
                Some(index) => index,
                None => fallback.pick(),
            },
        };
        index.min(endpoints.len().saturating_sub(1))
    }

    /// Another pick than `first` (the balancer's, which `usable` refused), among the
    /// endpoints `usable` takes; `None` if it takes none. Round robin moves on along its
    /// schedule, a consistent hash along its ring; the others redraw up to 5 times (as
    /// Istio's host selection retries), then take the first usable one.
    pub(crate) fn pick_instead(
        &self,
        first: usize,
        endpoints: &[EndpointState],
        hash: Option<u64>,
        usable: impl Fn(&EndpointState) -> bool,
    ) -> Option<usize> {
        let n = endpoints.len();
        let usable_at = |i: usize| i < n && usable(&endpoints[i]);
        let found = match self {
            Balancer::RoundRobin { schedule, next } => (0..schedule.len())
                .map(|_| {
                    let at = next.fetch_add(1, Relaxed) % schedule.len().max(1);
                    schedule.get(at).map_or(0, |e| *e as usize)
                })
                .find(|&i| usable_at(i)),
            Balancer::Hash { ring, .. } if hash.is_some() => {
                hash.and_then(|h| ring.pick_where(h, usable_at))
            }
            _ => (0..5)
                .map(|_| self.pick(endpoints, None))
                .find(|&i| usable_at(i)),
        };
        found.or_else(|| (1..n).map(|k| (first + k) % n).find(|&i| usable_at(i)))
    }
}

/// A smooth weighted round-robin order (as nginx's): no endpoint gets a burst, each appears
/// in proportion to its weight (weights reduced by their gcd; scaled down past 4,096 slots).
fn schedule(endpoints: &[EndpointState]) -> Vec<u32> {
    let n = endpoints.len();
    if endpoints.windows(2).all(|w| w[0].weight == w[1].weight) {
        return (0..n).map(|i| i as u32).collect();
    }
    let g = endpoints
        .iter()
        .map(|e| u64::from(e.weight))
        .fold(0, gcd)
        .max(1);
    let mut weights: Vec<u64> = endpoints.iter().map(|e| u64::from(e.weight) / g).collect();
    let total: u64 = weights.iter().sum();
    const MAX_SLOTS: u64 = 4096;
    if total > MAX_SLOTS {
        for w in &mut weights {
            *w = (*w * MAX_SLOTS / total).max(u64::from(*w > 0));
        }
    }
    let total: i64 = weights.iter().map(|w| *w as i64).sum();
    let mut current = vec![0i64; n];
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += *w as i64;
        }
        let best = (0..n)
            .max_by_key(|i| (current[*i], std::cmp::Reverse(*i)))
            .unwrap_or(0);
        current[best] -= total;
        order.push(best as u32);
    }
    order
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Pools;

    fn endpoints(weights: &[u32]) -> Vec<EndpointState> {
        let pools = Pools::default();
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let addr = SocketAddr::from(([10, 0, 0, i as u8 + 1], 80));
                EndpointState {
                    addr,
                    weight: *w,
                    pool: pools.get(addr, false, None),
                    health: None,
                }
            })
            .collect()
    }

    #[test]
    fn weighted_round_robin_is_smooth() {
        let e = endpoints(&[5, 1, 1]);
        assert_eq!(schedule(&e), [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(schedule(&endpoints(&[2, 2])), [0, 1]);
    }

    /// The choice of [`ClusterState::pick`](crate::compiled::ClusterState::pick): the
    /// balancer's, else another.
    fn choose(
        lb: &Balancer,
        e: &[EndpointState],
        hash: Option<u64>,
        usable: impl Fn(&EndpointState) -> bool + Copy,
    ) -> usize {
        let first = lb.pick(e, hash);
        if usable(&e[first]) {
            first
        } else {
            lb.pick_instead(first, e, hash, usable)
                .expect("a usable endpoint")
        }
    }

    #[test]
    fn round_robin_skips_an_unusable_endpoint_and_shares_the_rest_evenly() {
        for n in [3u8, 4, 5] {
            let e = endpoints(&vec![1; usize::from(n)]);
            let lb = Balancer::new(&HttpLoadBalancer::Simple(LoadBalancer::RoundRobin), &e);
            let out = e[0].addr;
            let mut counts = vec![0usize; e.len()];
            for _ in 0..60 * usize::from(n) {
                counts[choose(&lb, &e, None, |x| x.addr != out)] += 1;
            }
            assert_eq!(counts[0], 0);
            // An even share each, to within one round of the schedule.
            let even = 60 * usize::from(n) / (e.len() - 1);
            assert!(
                counts[1..]
                    .iter()
                    .all(|c: &usize| c.abs_diff(even) <= e.len()),
                "{n}: {counts:?}"
            );
        }
    }

    #[test]
    fn a_hash_moves_only_an_unusable_endpoints_keys_and_spreads_them() {
        let e = endpoints(&[1, 1, 1]);
        let lb = Balancer::new(&HttpLoadBalancer::Header("x".into()), &e);
        let out = e[0].addr;
        let mut moved = [0; 3];
        for key in 0..3000u64 {
            let h = crate::hashing::hash64(&key.to_le_bytes());
            let before = choose(&lb, &e, Some(h), |_| true);
            let after = choose(&lb, &e, Some(h), |x| x.addr != out);
            if before == 0 {
                moved[after] += 1;
            } else {
                assert_eq!(before, after, "a key of a usable endpoint moved");
            }
        }
        assert_eq!(moved[0], 0);
        // Not all to one neighbour: each takes a real part of them.
        let total = moved[1] + moved[2];
        assert!(moved[1] * 5 > total && moved[2] * 5 > total, "{moved:?}");
    }

    #[test]
    fn least_request_prefers_the_idle_endpoint() {
        let e = endpoints(&[1, 1]);
        let busy = crate::pool::InFlight::new(&e[0].pool);
        let lb = Balancer::new(&HttpLoadBalancer::Simple(LoadBalancer::LeastRequest), &e);
        for _ in 0..100 {
            assert_eq!(lb.pick(&e, None), 1);
        }
        drop(busy);
    }
}
