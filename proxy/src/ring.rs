//! A consistent-hash ring (Envoy's ring hash): each endpoint owns points on a 64-bit circle,
//! in proportion to its weight, and a key belongs to the first point at or after its hash.
//! Points depend only on the endpoint itself, not on the others, so adding or removing one
//! endpoint moves only the keys it gains or loses (up to the ring's size cap, beyond which
//! every endpoint gets fewer points).

use std::net::SocketAddr;

use crate::hashing::hash64;

/// Points per unit of (gcd-normalised) weight.
const POINTS_PER_WEIGHT: u64 = 160;
/// The most points in one ring (12 bytes each).
const MAX_POINTS: u64 = 1 << 17;

#[derive(Debug)]
pub(crate) struct Ring {
    /// (point, endpoint index), sorted by point.
    points: Vec<(u64, u32)>,
}

impl Ring {
    pub(crate) fn new(endpoints: &[(SocketAddr, u32)]) -> Ring {
        let g = endpoints
            .iter()
            .map(|(_, w)| u64::from(*w))
            .filter(|w| *w > 0)
            .fold(0, gcd)
            .max(1);
        let total: u64 = endpoints.iter().map(|(_, w)| u64::from(*w) / g).sum();
        let per_weight = MAX_POINTS
            .checked_div(total)
            .map_or(0, |per| POINTS_PER_WEIGHT.min(per.max(1)));
        let mut points = Vec::new();
        for (index, (addr, weight)) in endpoints.iter().enumerate() {
            let count = (u64::from(*weight) / g * per_weight).max(u64::from(*weight > 0));
            let name = addr.to_string();
            for i in 0..count {
                let point = hash64(format!("{name}_{i}").as_bytes());
                points.push((point, u32::try_from(index).unwrap_or(u32::MAX)));
            }
        }
        points.sort_unstable();
        Ring { points }
    }

    /// The endpoint index for key hash `h`; `None` for an empty ring.
    /// The first endpoint `usable` takes on the ring from `h` on, as a ring rebuilt from
    /// the usable endpoints alone would pick (each skipped endpoint's keys spread over the
    /// others by where they fall).
    pub(crate) fn pick_where(&self, h: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let at = self.points.partition_point(|(p, _)| *p < h);
        let n = self.points.len();
        (0..n)
            .map(|k| self.points[(at + k) % n].1 as usize)
            .find(|&i| usable(i))
    }

    pub(crate) fn pick(&self, h: u64) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let at = self.points.partition_point(|(p, _)| *p < h);
        let (_, index) = self.points[if at == self.points.len() { 0 } else { at }];
        Some(index as usize)
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(n: u8) -> Vec<(SocketAddr, u32)> {
        (1..=n)
            .map(|i| (SocketAddr::from(([10, 0, 0, i], 80)), 1))
            .collect()
    }

    #[test]
    fn removing_an_endpoint_moves_only_its_keys() {
        let four = eps(4);
        let three: Vec<_> = four[..3].to_vec();
        let (a, b) = (Ring::new(&four), Ring::new(&three));
        let mut moved = 0;
        for k in 0..10_000u32 {
            let h = hash64(&k.to_le_bytes());
            let before = a.pick(h).unwrap();
            let after = b.pick(h).unwrap();
            if before != 3 {
                assert_eq!(before, after, "key {k} moved off a remaining endpoint");
            } else {
                moved += 1;
            }
        }
        // The removed endpoint held about a quarter of the keys.
        assert!((2000..3000).contains(&moved), "{moved}");
    }

    #[test]
    fn weights_give_shares() {
        let ring = Ring::new(&[
            (SocketAddr::from(([10, 0, 0, 1], 80)), 3),
            (SocketAddr::from(([10, 0, 0, 2], 80)), 1),
        ]);
        let first = (0..20_000u32)
            .filter(|k| ring.pick(hash64(&k.to_le_bytes())) == Some(0))
            .count();
        assert!((13_500..16_500).contains(&first), "{first}");
        assert_eq!(Ring::new(&[]).pick(1), None);
    }
}
