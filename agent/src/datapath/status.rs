//! `vsteer status`: the kernel's side of the story, read from the pinned maps (no agent
//! needed): every service, its backends with the share the kernel gives them, and how many
//! connections each backend got.
use std::{collections::BTreeMap, fmt::Write as _, net::Ipv6Addr, path::Path};

use anyhow::{Context, Result};
use aya::maps::{Array, HashMap, Map, MapData, PerCpuHashMap};
use vsteer_common::{Address, ServiceKey, ServiceValue, Slot, map_names, mode};

use super::{slots::shares, tables};

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceStatus {
    pub service: String,
    pub mode: &'static str,
    /// The service's first slot in the backend slot array.
    pub first: u32,
    /// Backend, its share of new connections (0..=1), connections counted so far.
    pub backends: Vec<(String, f64, u64)>,
}

/// Reads the pinned maps under `pin_dir`.
pub fn read(pin_dir: &Path) -> Result<Vec<ServiceStatus>> {
    let services: HashMap<MapData, ServiceKey, ServiceValue> = open(pin_dir, map_names::SERVICES)?;
    let backends: Array<MapData, Slot> = open(pin_dir, map_names::BACKENDS)?;
    let counters: PerCpuHashMap<MapData, Address, u64> = open(pin_dir, map_names::COUNTERS)?;
    let mut counts: BTreeMap<Address, u64> = BTreeMap::new();
    for entry in counters.iter() {
        let (backend, per_cpu) = entry.context("reading the counters")?;
        counts.insert(backend, per_cpu.iter().sum());
    }
    let installed = tables::read_installed(&services, &backends)?;
    Ok(installed
        .iter()
        .map(|(key, installed)| ServiceStatus {
            service: tables::describe(key),
            mode: if installed.spec.mode == mode::SOURCE_HASH {
                "SOURCE_IP_HASH"
            } else {
                "WEIGHTED_RANDOM"
            },
            first: installed.first,
            backends: shares(&installed.spec)
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

fn show(a: &Address) -> String {
    let ip = Ipv6Addr::from(a.addr);
    match ip.to_ipv4_mapped() {
        Some(v4) => format!("{v4}:{}", a.port),
        None => format!("[{ip}]:{}", a.port),
    }
}

/// A readable table of `status`.
pub fn render(status: &[ServiceStatus]) -> String {
    let mut out = String::new();
    if status.is_empty() {
        out.push_str("no services in the kernel maps\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<28} {:<16} {:<28} {:>9} {:>12}",
        "SERVICE", "SELECTION", "BACKEND", "SHARE", "CONNECTIONS"
    );
    for s in status {
        if s.backends.is_empty() {
            let _ = writeln!(
                out,
                "{:<28} {:<16} {:<28}",
                s.service, s.mode, "(none: connects refused)"
            );
        }
        for (i, (backend, share, count)) in s.backends.iter().enumerate() {
            let (service, mode) = if i == 0 {
                (s.service.as_str(), s.mode)
            } else {
                ("", "")
            };
            let _ = writeln!(
                out,
                "{service:<28} {mode:<16} {backend:<28} {:>8.3}% {count:>12}",
                share * 100.0
            );
        }
    }
    out
}
