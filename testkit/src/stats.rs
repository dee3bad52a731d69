//! Statistical checks for weighted traffic (Pearson's chi-square goodness-of-fit test) and
//! latency percentiles.
use anyhow::{Result, bail};
use statrs::distribution::{ChiSquared, ContinuousCDF};

/// The false-failure rate every traffic-split test uses: a correct datapath fails a test
/// at most once in a million runs.
pub const FALSE_FAILURE_RATE: f64 = 1e-6;

/// Pearson's chi-square statistic and its p-value for `observed` counts against `expected`
/// shares (any positive scale; they are normalised).
pub fn chi_square(observed: &[u64], expected_shares: &[f64]) -> Result<(f64, f64)> {
    if observed.len() != expected_shares.len() || observed.len() < 2 {
        bail!("chi-square needs at least two categories, matching in number");
    }
    let total: u64 = observed.iter().sum();
    let scale: f64 = expected_shares.iter().sum();
    let mut statistic = 0.0;
    for (o, share) in observed.iter().zip(expected_shares) {
        let expected = total as f64 * share / scale;
        if expected < 5.0 {
            bail!("expected count {expected:.1} < 5: too few samples for a chi-square test");
        }
        statistic += (*o as f64 - expected).powi(2) / expected;
    }
    let dist = ChiSquared::new((observed.len() - 1) as f64)?;
    Ok((statistic, 1.0 - dist.cdf(statistic)))
}

/// Fails unless `observed` is consistent with `expected_shares` at [`FALSE_FAILURE_RATE`].
pub fn assert_split(observed: &[u64], expected_shares: &[f64]) -> Result<()> {
    let (statistic, p) = chi_square(observed, expected_shares)?;
    if p < FALSE_FAILURE_RATE {
        bail!(
            "split {observed:?} does not fit shares {expected_shares:?}: chi-square {statistic:.2}, \
             p = {p:.3e} < {FALSE_FAILURE_RATE:e}"
        );
    }
    Ok(())
}

/// The `p`-th percentile (0 < p <= 100) of `samples` by nearest rank: the smallest sample
/// at least `p`% of them do not exceed. `None` for no samples.
pub fn percentile(samples: &[std::time::Duration], p: f64) -> Option<std::time::Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let ms = |v: u64| std::time::Duration::from_millis(v);
        let samples: Vec<_> = (1..=100).rev().map(ms).collect();
        assert_eq!(percentile(&samples, 99.0), Some(ms(99)));
        assert_eq!(percentile(&samples, 100.0), Some(ms(100)));
        assert_eq!(percentile(&samples, 50.0), Some(ms(50)));
        assert_eq!(percentile(&[ms(7)], 99.0), Some(ms(7)));
        assert_eq!(percentile(&[], 99.0), None);
    }

    #[test]
    fn accepts_a_fair_split_and_rejects_a_skewed_one() {
        assert!(assert_split(&[3320, 3350, 3330], &[1.0, 1.0, 1.0]).is_ok());
        assert!(assert_split(&[8020, 1980], &[80.0, 20.0]).is_ok());
        // 52/48 over 10,000 is 4 sigma off a fair coin: p ~ 6e-5, still accepted at 1e-6...
        assert!(assert_split(&[5200, 4800], &[1.0, 1.0]).is_ok());
        // ...while 53/47 (6 sigma) is rejected.
        assert!(assert_split(&[5300, 4700], &[1.0, 1.0]).is_err());
        assert!(assert_split(&[10_000, 0], &[1.0, 1.0]).is_err());
    }

    #[test]
    fn p_value_matches_a_known_value() {
        // 60/40 against a fair coin: statistic 4.0 with one degree of freedom, p = 0.0455.
        let (statistic, p) = chi_square(&[60, 40], &[1.0, 1.0]).unwrap();
        assert!((statistic - 4.0).abs() < 1e-9);
        assert!((p - 0.0455).abs() < 1e-3, "p = {p}");
    }

    #[test]
    fn refuses_too_few_samples() {
        assert!(chi_square(&[3, 1], &[1.0, 1.0]).is_err());
    }
}
