//! Priority levels of a cluster (locality failover): which level takes a request, by
//! Envoy's priority load. Each level's health is the share of its endpoints not ejected,
//! times the overprovisioning factor 1.4, at most 100%; level 0 takes its health's worth of
//! the traffic, the next levels what is left, in order. When the levels' health adds up to
//! less than 100%, the loads are scaled up to 100% (Envoy's normalised total health).

/// Envoy's default overprovisioning factor: a level with 72% of its endpoints healthy
/// still takes all its traffic.
const OVERPROVISIONING: f64 = 1.4;

/// The level for a request: `levels` holds (usable endpoints, endpoints) per level, in
/// priority order; `draw` is uniform in [0, 1). Level 0 when no level has a usable
/// endpoint (the caller's panic handling decides then).
pub(crate) fn choose(levels: &[(usize, usize)], draw: f64) -> usize {
    let health: Vec<f64> = levels
        .iter()
        .map(|&(usable, total)| {
            if total == 0 {
                0.0
            } else {
                (OVERPROVISIONING * 100.0 * usable as f64 / total as f64).min(100.0)
            }
        })
        .collect();
    let total: f64 = health.iter().sum::<f64>().min(100.0);
    if total <= 0.0 {
        return 0;
    }
    let mut left = 100.0;
    let mut at = draw * 100.0;
    for (level, h) in health.iter().enumerate() {
        let load = (h * 100.0 / total).min(left);
        if at < load {
            return level;
        }
        at -= load;
        left -= load;
    }
    // Rounding: the last level with any health.
    health.iter().rposition(|h| *h > 0.0).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The share of draws each level takes.
    fn loads(levels: &[(usize, usize)]) -> Vec<f64> {
        let steps = 10_000;
        let mut counts = vec![0usize; levels.len()];
        for i in 0..steps {
            counts[choose(levels, i as f64 / steps as f64)] += 1;
        }
        counts.iter().map(|c| *c as f64 / steps as f64).collect()
    }

    fn close(got: &[f64], want: &[f64]) -> bool {
        got.iter().zip(want).all(|(g, w)| (g - w).abs() < 0.001)
    }

    #[test]
    fn loads_follow_envoys_priority_load() {
        // All healthy: level 0 takes everything.
        assert!(close(&loads(&[(4, 4), (2, 2)]), &[1.0, 0.0]));
        // 3 of 4 healthy: 1.4 x 75% = 105% -> still everything.
        assert!(close(&loads(&[(3, 4), (2, 2)]), &[1.0, 0.0]));
        // Half healthy: 70% to level 0, 30% to level 1.
        assert!(close(&loads(&[(2, 4), (2, 2)]), &[0.7, 0.3]));
        // None healthy at 0: level 1 takes all.
        assert!(close(&loads(&[(0, 4), (2, 2)]), &[0.0, 1.0]));
        // Both degraded (1/4 and 1/4: 35% each): normalised to 50/50.
        assert!(close(&loads(&[(1, 4), (1, 4)]), &[0.5, 0.5]));
        // Nothing healthy anywhere: level 0.
        assert_eq!(choose(&[(0, 2), (0, 2)], 0.9), 0);
        assert_eq!(choose(&[(1, 1)], 0.99), 0);
    }
}
