//! Locality-weighted load balancing: a DestinationRule's `localityLbSetting.distribute`,
//! seen from the node's locality (`--locality region/zone/subzone`; every client of a node
//! shares it). The first `distribute` entry whose `from` matches the node sends each `to`
//! pattern its percentage, split among the endpoints of the localities it matches by their
//! own weights; endpoints no `to` pattern matches get nothing (Istio's
//! `applyLocalityWeights`).

use std::sync::Arc;

use vsteer_model::istio::{LocalityDistribute, LocalityLbSetting};
use vsteer_plan::BackendPlan;

/// A locality: region, zone, subzone (the last two may be empty).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub subzone: String,
}

impl Locality {
    /// `region[/zone[/subzone]]`.
    pub fn parse(text: &str) -> Result<Locality, String> {
        let parts: Vec<&str> = text.split('/').collect();
        if parts.len() > 3 || parts.iter().any(|p| p.is_empty() || p.contains('*')) {
            return Err(format!(
                "{text:?} is not a locality: region, region/zone or region/zone/subzone"
            ));
        }
        let part = |i: usize| parts.get(i).map_or(String::new(), |p| p.to_string());
        Ok(Locality {
            region: part(0),
            zone: part(1),
            subzone: part(2),
        })
    }

    /// An endpoint's `locality` as written (`None` or unparsable: no locality, which only a
    /// `*` pattern matches).
    fn of_endpoint(written: Option<&str>) -> Locality {
        let parts: Vec<&str> = written.unwrap_or_default().split('/').collect();
        let part = |i: usize| parts.get(i).map_or(String::new(), |p| p.to_string());
        Locality {
            region: part(0),
            zone: part(1),
            subzone: part(2),
        }
    }

    /// Istio's `LocalityMatch`: each segment of `pattern` is `*` or equal; missing zone or
    /// subzone segments match anything.
    pub fn matches(&self, pattern: &str) -> bool {
        let mut parts = pattern.split('/');
        let region = parts.next().unwrap_or_default();
        let zone = parts.next().unwrap_or_default();
        let subzone = parts.next().unwrap_or_default();
        (region == "*" || region == self.region)
            && (zone == "*" || zone.is_empty() || zone == self.zone)
            && (subzone == "*" || subzone.is_empty() || subzone == self.subzone)
    }
}

impl std::fmt::Display for Locality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.region)?;
        for part in [&self.zone, &self.subzone] {
            if !part.is_empty() {
                write!(f, "/{part}")?;
            }
        }
        Ok(())
    }
}

/// The `distribute` entry that applies to clients at `node`, if any.
pub fn distribution<'s>(
    setting: Option<&'s LocalityLbSetting>,
    node: Option<&Locality>,
) -> Option<&'s LocalityDistribute> {
    let setting = setting?;
    if setting.enabled == Some(false) {
        return None;
    }
    let node = node?;
    setting.distribute.iter().find(|d| node.matches(&d.from))
}

/// Backends (with their endpoints' localities as written) weighted by `distribution`;
/// unchanged without one. Weights are relative (the caller spreads them).
pub fn weigh(
    located: Vec<(BackendPlan, Option<Arc<str>>)>,
    distribution: Option<&LocalityDistribute>,
) -> Vec<BackendPlan> {
    // A passthrough backend (a `NONE` host: Istio's ORIGINAL_DST cluster, with no endpoints
    // to assign localities to) is not weighed: it keeps its share.
    let Some(distribution) =
        distribution.filter(|_| !located.iter().any(|(b, _)| b.is_passthrough()))
    else {
        return located.into_iter().map(|(b, _)| b).collect();
    };
    // Each backend to the first `to` pattern (in key order) that matches its locality.
    let patterns: Vec<(&String, u32)> = distribution.to.iter().map(|(p, &w)| (p, w)).collect();
    let groups: Vec<Option<usize>> = located
        .iter()
        .map(|(_, locality)| {
            let locality = Locality::of_endpoint(locality.as_deref());
            patterns.iter().position(|(p, _)| locality.matches(p))
        })
        .collect();
    let mut totals = vec![0u64; patterns.len()];
    for ((backend, _), group) in located.iter().zip(&groups) {
        if let Some(g) = group {
            totals[*g] += u64::from(backend.weight.max(1));
        }
    }
    // A pattern's percentage times the endpoint's part of its group, in millionths: exact
    // enough for relative weights, and no sum overflows u32 (100 x 10^6 x endpoints would).
    const SCALE: u64 = 1_000_000;
    located
        .into_iter()
        .zip(groups)
        .filter_map(|((backend, _), group)| {
            let g = group?;
            let own = u64::from(backend.weight.max(1));
            let weight = u64::from(patterns[g].1) * own * SCALE / (totals[g] * 100);
            let weight = u32::try_from(weight).unwrap_or(u32::MAX);
            (weight > 0).then_some(BackendPlan { weight, ..backend })
        })
        .collect()
}

/// Whether locality failover applies: the cluster has outlier detection (Istio enables
/// failover only then), the node's locality is known, and the setting (Istio's mesh
/// default when the rule has none: enabled) neither turns it off nor distributes, nor asks
/// for label priorities (`failoverPriority` compares the client's labels, which vsteer does
/// not know).
pub fn fails_over(
    setting: Option<&LocalityLbSetting>,
    node: Option<&Locality>,
    outlier_detection: bool,
) -> bool {
    let plain = setting.is_none_or(|s| {
        s.enabled != Some(false) && s.distribute.is_empty() && s.failover_priority.is_empty()
    });
    plain && node.is_some() && outlier_detection
}

/// Istio's `applyLocalityFailover`: each endpoint's priority by how much of the node's
/// locality it shares (0: region, zone and subzone; 1: region and zone; 2: region; 3:
/// another region; 4: a region the node's `failover` entry does not name), the levels used
/// then numbered 0, 1, ... in order.
pub fn priorities(
    localities: &[Option<Arc<str>>],
    setting: Option<&LocalityLbSetting>,
    node: &Locality,
) -> Vec<u32> {
    let failover = setting
        .into_iter()
        .flat_map(|s| &s.failover)
        .find(|f| f.from == node.region);
    let raw: Vec<u32> = localities
        .iter()
        .map(|written| {
            let endpoint = Locality::of_endpoint(written.as_deref());
            match (
                endpoint.region == node.region,
                endpoint.zone == node.zone,
                endpoint.subzone == node.subzone,
            ) {
                (true, true, true) => 0,
                (true, true, false) => 1,
                (true, false, _) => 2,
                _ => match failover {
                    Some(f) if endpoint.region != f.to => 4,
                    _ => 3,
                },
            }
        })
        .collect();
    let mut used: Vec<u32> = raw.clone();
    used.sort_unstable();
    used.dedup();
    raw.iter()
        .map(|p| used.iter().position(|u| u == p).unwrap_or(0) as u32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_istio_does() {
        let node = Locality::parse("us-west/zone1/sub1").unwrap();
        for yes in [
            "us-west",
            "us-west/zone1",
            "us-west/*",
            "*",
            "us-west/zone1/sub1",
            "*/*/*",
        ] {
            assert!(node.matches(yes), "{yes}");
        }
        for no in ["us-east", "us-west/zone2", "us-west/zone1/sub2", "eu/*"] {
            assert!(!node.matches(no), "{no}");
        }
        assert_eq!(node.to_string(), "us-west/zone1/sub1");
        assert!(Locality::parse("us-west//x").is_err());
        assert!(Locality::parse("a/b/c/d").is_err());
        assert!(Locality::parse("us-west/*").is_err());
        assert_eq!(Locality::parse("eu").unwrap().to_string(), "eu");
    }

    #[test]
    fn failover_priorities_follow_istio() {
        let node = Locality::parse("us-west/zone1/sub1").unwrap();
        let at = |l: &str| Some(Arc::<str>::from(l));
        let localities = [
            at("us-west/zone1/sub1"),
            at("us-west/zone1/sub2"),
            at("us-west/zone2/sub1"),
            at("us-east/zone1/sub1"),
            at("eu-west/zone1/sub1"),
            None,
        ];
        // No failover entry: other regions share level 3, numbered 3 here.
        assert_eq!(priorities(&localities, None, &node), [0, 1, 2, 3, 3, 3]);
        let setting = LocalityLbSetting {
            failover: vec![vsteer_model::istio::LocalityFailover {
                from: "us-west".into(),
                to: "us-east".into(),
            }],
            ..LocalityLbSetting::default()
        };
        assert_eq!(
            priorities(&localities, Some(&setting), &node),
            [0, 1, 2, 3, 4, 4]
        );
        // Levels not used close up.
        assert_eq!(
            priorities(&localities[3..], Some(&setting), &node),
            [0, 1, 1]
        );
        assert!(fails_over(None, Some(&node), true));
        assert!(!fails_over(None, Some(&node), false));
        assert!(!fails_over(None, None, true));
        let off = LocalityLbSetting {
            enabled: Some(false),
            ..LocalityLbSetting::default()
        };
        assert!(!fails_over(Some(&off), Some(&node), true));
    }
}
