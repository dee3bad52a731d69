//! `vsteer status`: the kernel's side of the story, read from the pinned maps (no agent
//! needed): every service, whether the kernel or the proxy serves it, its backends with the
//! share the kernel gives them, and how many connections each backend got.
use std::{collections::BTreeMap, path::Path};

use anyhow::{Context, Result};
use aya::maps::{Array, HashMap, LpmTrie, Map, MapData, PerCpuHashMap};
use vsteer_common::{
    Address, RangeKey, ServiceEntry, ServiceHandle, ServiceValue, Slot, VipKey, map_names, mode,
    service_flags,
};
use vsteer_plan::render::columns::{Align, Columns};

use crate::keys::{describe, show};
use crate::{slots::shares, tables};

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceStatus {
    pub service: String,
    /// Served by the proxy (connects redirected to it); the backends are the L4 fallback.
    pub proxied: bool,
    pub mode: &'static str,
    /// The service's first slot in the backend slot array.
    pub first: u32,
    /// Backend, its share of new connections (0..=1), connections counted so far.
    pub backends: Vec<(String, f64, u64)>,
}

/// Reads the pinned maps under `pin_dir`.
pub fn read(pin_dir: &Path) -> Result<Vec<ServiceStatus>> {
    let services: HashMap<MapData, VipKey, ServiceHandle> = open(pin_dir, map_names::SERVICES)?;
    let service_entries: Array<MapData, ServiceEntry> = open(pin_dir, map_names::ENTRIES)?;
    // Absent when pinned by an agent from before ranges: none then.
    let ranges: Option<LpmTrie<MapData, RangeKey, ServiceValue>> =
        if pin_dir.join(map_names::RANGES).exists() {
            Some(open(pin_dir, map_names::RANGES)?)
        } else {
            None
        };
    let backends: Array<MapData, Slot> = open(pin_dir, map_names::BACKENDS)?;
    let counters: PerCpuHashMap<MapData, Address, u64> = open(pin_dir, map_names::COUNTERS)?;
    let mut counts: BTreeMap<Address, u64> = BTreeMap::new();
    for entry in counters.iter() {
        let (backend, per_cpu) = entry.context("reading the counters")?;
        counts.insert(backend, per_cpu.iter().sum());
    }
    let entries = crate::service_maps::read_both(&services, &service_entries, ranges.as_ref())?;
    let installed = tables::read_installed(entries, &backends)?;
    Ok(installed
        .iter()
        .map(|(key, (first, spec))| ServiceStatus {
            service: describe(key),
            proxied: spec.flags & service_flags::PROXY != 0,
            mode: if spec.mode == mode::SOURCE_HASH {
                "SOURCE_IP_HASH"
            } else {
                "WEIGHTED_RANDOM"
            },
            first: *first,
            backends: shares(spec)
                .into_iter()
                .map(|(a, share)| (show(&a), share, counts.get(&a).copied().unwrap_or(0)))
                .collect(),
        })
        .collect())
}

fn open<T: TryFrom<Map, Error = aya::maps::MapError>>(pin_dir: &Path, name: &str) -> Result<T> {
    let path = pin_dir.join(name);
    let data = MapData::from_pin(&path).with_context(|| {
        format!(
            "opening {} (is vsteer installed with this --pin-dir?)",
            path.display()
        )
    })?;
    let map = Map::from_map_data(data).with_context(|| format!("reading {}", path.display()))?;
    T::try_from(map).with_context(|| format!("{} has an unexpected type or layout", path.display()))
}

/// A readable table of `status`: one row per backend, the service named on its first.
pub fn render(status: &[ServiceStatus]) -> String {
    if status.is_empty() {
        return "no services in the kernel maps\n".to_string();
    }
    let header = [
        "SERVICE",
        "PATH",
        "SELECTION",
        "BACKEND",
        "SHARE",
        "CONNECTIONS",
    ]
    .map(String::from);
    let mut columns = Columns::new([
        Align::Left,
        Align::Left,
        Align::Left,
        Align::Left,
        Align::Right,
        Align::Right,
    ]);
    columns.measure(&header);
    for row in status.iter().flat_map(rows) {
        columns.measure(&row);
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(status.iter().flat_map(rows)) {
        columns.write(&mut out, &row);
        out.push('\n');
    }
    out
}

/// One service's rows: one per backend, the service named on the first.
fn rows(s: &ServiceStatus) -> Vec<[String; 6]> {
    // A proxied service's backends are what sockets the proxy does not get (its own
    // upstream connects, namespaces that cannot reach it) are steered to.
    let path = if s.proxied { "proxy" } else { "kernel" };
    if s.backends.is_empty() {
        let none = if s.proxied {
            "(none: L4 fallback refused)"
        } else {
            "(none: connects refused)"
        };
        return vec![[s.service.as_str(), path, s.mode, none, "", ""].map(String::from)];
    }
    s.backends
        .iter()
        .enumerate()
        .map(|(i, (backend, share, count))| {
            let (service, path, mode) = if i == 0 {
                (s.service.as_str(), path, s.mode)
            } else {
                ("", "", "")
            };
            [
                service.to_string(),
                path.to_string(),
                mode.to_string(),
                backend.clone(),
                format!("{:.3}%", share * 100.0),
                count.to_string(),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_align_and_refused_services_say_so() {
        let status = [
            ServiceStatus {
                service: "127.100.0.1:9080/TCP".into(),
                proxied: false,
                mode: "WEIGHTED_RANDOM",
                first: 0,
                backends: vec![
                    ("127.0.1.1:9080".into(), 0.8, 812),
                    ("127.0.1.2:9080".into(), 0.2, 188),
                ],
            },
            ServiceStatus {
                service: "127.100.0.9:80/TCP".into(),
                proxied: false,
                mode: "WEIGHTED_RANDOM",
                first: 2,
                backends: Vec::new(),
            },
            ServiceStatus {
                service: "127.100.0.7:80/TCP".into(),
                proxied: true,
                mode: "WEIGHTED_RANDOM",
                first: 2,
                backends: vec![("127.0.1.7:80".into(), 1.0, 0)],
            },
        ];
        let text = render(&status);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("SERVICE"), "{text}");
        assert!(lines[1].contains("127.100.0.1:9080/TCP") && lines[1].contains("80.000%"));
        assert!(lines[2].contains("20.000%") && lines[2].trim_end().ends_with("188"));
        assert!(lines[3].contains("(none: connects refused)"));
        // Columns line up: every backend starts at the same offset.
        let at = |line: &str, what: &str| line.find(what).unwrap();
        assert_eq!(at(lines[1], "127.0.1.1"), at(lines[2], "127.0.1.2"));
        assert_eq!(at(lines[1], "127.0.1.1"), at(lines[4], "127.0.1.7"));
        // The path column: the kernel's services and the proxy's.
        assert_eq!(at(lines[0], "PATH"), at(lines[1], "kernel"), "{text}");
        assert_eq!(at(lines[0], "PATH"), at(lines[4], "proxy"), "{text}");
        assert!(!lines[2].contains("kernel"), "{text}");
        assert_eq!(render(&[]), "no services in the kernel maps\n");
    }
}
