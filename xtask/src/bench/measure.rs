//! Turning client reports into rates and latencies, and the round-by-round schedule the
//! variants are measured in.
use anyhow::{Result, bail};
use vsteer_testkit::ConnectReport;

/// The order of the `variants` variants in round `round`: every round starts one further
/// along, so that no variant always runs first (just after the previous round's last, or
/// after a pause) or always last.
pub fn round_order(round: usize, variants: usize) -> impl Iterator<Item = usize> {
    (0..variants).map(move |i| (round + i) % variants)
}

/// Runs every one of `variants` variants once per round (`run(k)` measures variant k), for
/// one uncounted warm-up round and then `repeats` measured rounds; returns each variant's
/// measured rounds in round order. Drift of the machine between rounds then hits every variant
/// of a round alike, and divides out of the per-round ratios.
pub fn rounds<T>(
    variants: usize,
    repeats: usize,
    mut run: impl FnMut(usize) -> Result<T>,
) -> Result<Vec<Vec<T>>> {
    // Caches, CPU frequency and the backends' first accepts settle before the first measured
    // round, for every variant alike.
    for k in 0..variants {
        run(k)?;
    }
    let mut samples: Vec<Vec<T>> = (0..variants).map(|_| Vec::new()).collect();
    for round in 0..repeats {
        for k in round_order(round, variants) {
            let sample = run(k)?;
            samples[k].push(sample);
        }
    }
    Ok(samples)
}

/// One run of short connections: connections per second, p50 and p99 latency (µs).
pub struct RunNumbers {
    pub conns_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// A run must be clean to count: a failed connect means the variant is broken, not slow.
pub fn short_connections(report: &ConnectReport) -> Result<RunNumbers> {
    if !report.failures().is_empty() {
        bail!("failed connects: {:?}", report.failures());
    }
    let times = &report.times_ns;
    if times.len() < 3 {
        bail!("too few connects to measure: {}", times.len());
    }
    // The client is sequential: each connect (socket, connect, read the reply, close) takes
    // the time since the previous one finished.
    let mut latencies: Vec<u64> = times
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .collect();
    latencies.sort_unstable();
    let span = times[times.len() - 1].saturating_sub(times[0]).max(1);
    let percentile = |p: f64| {
        let i = ((latencies.len() - 1) as f64 * p).round() as usize;
        latencies[i.min(latencies.len() - 1)] as f64 / 1_000.0
    };
    Ok(RunNumbers {
        conns_per_sec: (times.len() - 1) as f64 * 1e9 / span as f64,
        p50_us: percentile(0.50),
        p99_us: percentile(0.99),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vsteer_testkit::ConnectOutcome;

    fn report(times: Vec<u64>) -> ConnectReport {
        ConnectReport {
            outcomes: times
                .iter()
                .map(|_| ConnectOutcome::Reached {
                    reply: "b".into(),
                    peer: "127.0.0.1:1".parse().unwrap(),
                })
                .collect(),
            times_ns: times,
        }
    }

    #[test]
    fn rate_and_percentiles_from_timestamps() {
        // 101 connects 100 µs apart, except one slow one of 1 ms.
        let mut times: Vec<u64> = (0..101).map(|i| i * 100_000).collect();
        for t in times.iter_mut().skip(51) {
            *t += 900_000;
        }
        let n = short_connections(&report(times)).unwrap();
        assert!((n.p50_us - 100.0).abs() < 1e-9);
        assert!(
            (n.p99_us - 100.0).abs() < 1e-9,
            "one slow connect in 100 is above p99"
        );
        assert!((n.conns_per_sec - 100.0 * 1e9 / 10_900_000.0).abs() < 1e-6);
    }

    #[test]
    fn rounds_run_every_variant_once_per_round_after_a_warm_up() {
        let mut calls = Vec::new();
        let samples = rounds(3, 4, |k| {
            calls.push(k);
            Ok(calls.len())
        })
        .unwrap();
        // Warm-up 0 1 2 (not counted), then rotating rounds.
        assert_eq!(calls, [0, 1, 2, 0, 1, 2, 1, 2, 0, 2, 0, 1, 0, 1, 2]);
        assert_eq!(samples.len(), 3);
        assert!(samples.iter().all(|s| s.len() == 4));
        // Variant 0's samples are its calls in rounds 0..4, in order.
        assert_eq!(samples[0], [4, 9, 11, 13]);
        // Every variant takes every position equally often over a multiple of the variants.
        for k in 0..3 {
            let mut positions: Vec<usize> = (0..3)
                .map(|r| round_order(r, 3).position(|v| v == k).unwrap())
                .collect();
            positions.sort_unstable();
            assert_eq!(positions, [0, 1, 2]);
        }
    }

    #[test]
    fn a_failing_run_stops_the_rounds() {
        let mut calls = 0;
        let result = rounds(2, 5, |k| {
            calls += 1;
            if calls == 4 {
                bail!("variant {k} broke")
            } else {
                Ok(())
            }
        });
        assert!(result.is_err());
        assert_eq!(calls, 4);
    }

    #[test]
    fn a_failed_connect_invalidates_the_run() {
        let mut r = report(vec![0, 1, 2, 3]);
        r.outcomes[1] = ConnectOutcome::Failed { errno: 111 };
        assert!(short_connections(&r).is_err());
    }
}
