//! The accepted ServiceEntries: which one owns each (VIP, port, protocol), and which one a
//! route's destination host names.
//!
//! A rejected ServiceEntry keeps the services it had in the last good plan: a bad edit
//! should not take a working service down, only fail to change it.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use super::Compiled;
use super::plan::{Plan, ServiceKey, ServicePlan};
use super::service_entry::{self, Entry};
use crate::config::{ConfigError, Resource, ResourceSpec};

/// A service of an accepted ServiceEntry.
pub(super) struct Service {
    pub key: ServiceKey,
    /// Index into [`Registry::entries`].
    pub entry: usize,
}

pub(super) struct Registry<'a> {
    pub entries: Vec<Entry<'a>>,
    /// In input order of their entries.
    pub services: Vec<Service>,
    /// Services of rejected ServiceEntries, as the last good plan had them.
    pub kept: Vec<ServicePlan>,
    /// Hosts of rejected ServiceEntries and the entry, to explain why a route to one fails.
    pub rejected_hosts: BTreeMap<String, String>,
    /// Indexes, so that lookups stay constant time with tens of thousands of services: the
    /// first entry listing a host, and the services by host and by VIP.
    entry_by_host: HashMap<String, usize>,
    services_by_host: HashMap<String, Vec<usize>>,
    services_by_vip: HashMap<IpAddr, Vec<usize>>,
}

impl<'a> Registry<'a> {
    /// The entry a destination host names: the first that lists it.
    pub fn entry_for_host(&self, host: &str) -> Option<&Entry<'a>> {
        self.entry_by_host.get(host).map(|&i| &self.entries[i])
    }

    /// Indices into `services` of every service that VirtualService host `patterns` may
    /// cover, in order: by host for names, by VIP for IPs, all for wildcards (rare).
    pub fn candidates(&self, patterns: &[String]) -> Vec<usize> {
        if patterns.iter().any(|p| p.starts_with('*')) {
            return (0..self.services.len()).collect();
        }
        let mut found: Vec<usize> = patterns
            .iter()
            .flat_map(|p| match p.parse::<IpAddr>() {
                Ok(ip) => self.services_by_vip.get(&ip),
                Err(_) => self.services_by_host.get(p),
            })
            .flatten()
            .copied()
            .collect();
        found.sort_unstable();
        found.dedup();
        found
    }

    fn add(&mut self, entry: Entry<'a>, services: impl IntoIterator<Item = ServiceKey>) {
        let index = self.entries.len();
        for key in services {
            let service = self.services.len();
            for host in entry.hosts {
                self.services_by_host
                    .entry(host.clone())
                    .or_default()
                    .push(service);
            }
            self.services_by_vip.entry(key.0).or_default().push(service);
            self.services.push(Service { key, entry: index });
        }
        for host in entry.hosts {
            self.entry_by_host.entry(host.clone()).or_insert(index);
        }
        self.entries.push(entry);
    }
}

/// Who holds a (VIP, port, protocol).
struct Owner {
    id: String,
    file: String,
    /// Held for a rejected ServiceEntry from the last good plan.
    kept: bool,
}

/// Compiles the ServiceEntries of `resources` in input order; where two claim the same
/// service the first wins and the second is rejected whole.
pub(super) fn build<'a>(
    resources: &[&'a Resource],
    last_good: &Plan,
    out: &mut Compiled,
) -> Registry<'a> {
    let mut registry = Registry {
        entries: Vec::new(),
        services: Vec::new(),
        kept: Vec::new(),
        rejected_hosts: BTreeMap::new(),
        entry_by_host: HashMap::new(),
        services_by_host: HashMap::new(),
        services_by_vip: HashMap::new(),
    };
    let mut claimed: BTreeMap<ServiceKey, Owner> = BTreeMap::new();
    for &resource in resources {
        let ResourceSpec::ServiceEntry(spec) = &resource.spec else {
            continue;
        };
        let id = resource.id();
        let compiled = match service_entry::compile(resource, spec) {
            Ok(compiled) => compiled,
            Err(errors) => {
                out.errors.extend(errors);
                reject(
                    &spec.hosts,
                    &id,
                    &resource.origin.file,
                    last_good,
                    &mut claimed,
                    &mut registry,
                    out,
                );
                continue;
            }
        };
        let entry = compiled.entry;
        let services: Vec<(usize, ServiceKey)> = entry
            .vips
            .iter()
            .flat_map(|&(index, vip)| {
                entry
                    .ports
                    .iter()
                    .map(move |p| (index, (vip, p.number, p.protocol)))
            })
            .collect();
        let conflicts: Vec<ConfigError> = services
            .iter()
            .filter_map(|(index, key)| {
                let owner = claimed.get(key)?;
                let why = if owner.kept {
                    ", which was rejected and keeps its last good state"
                } else {
                    ""
                };
                Some(
                    ConfigError::new(
                        &resource.origin.file,
                        format!(
                            "{} is already claimed by {} ({}{why}); this ServiceEntry is ignored",
                            show(key),
                            owner.id,
                            owner.file
                        ),
                    )
                    .resource(&id)
                    .field(format!("spec.addresses[{index}]")),
                )
            })
            .collect();
        if !conflicts.is_empty() {
            out.errors.extend(conflicts);
            reject(
                entry.hosts,
                &id,
                &resource.origin.file,
                last_good,
                &mut claimed,
                &mut registry,
                out,
            );
            continue;
        }
        for host in entry.hosts {
            if let Some(first) = registry.entry_for_host(host) {
                out.notes.push(format!(
                    "{id}: host {host} is also a host of {}; routes to it use the endpoints of {}",
                    first.id, first.id
                ));
            }
        }
        for (_, key) in &services {
            claimed.insert(
                *key,
                Owner {
                    id: id.clone(),
                    file: resource.origin.file.clone(),
                    kept: false,
                },
            );
        }
        registry.add(entry, services.into_iter().map(|(_, key)| key));
        out.notes.extend(compiled.notes);
    }
    registry
}

/// Keeps the last good services of the rejected ServiceEntry `id`, those no other entry
/// holds now.
/// A rejected ServiceEntry: its hosts are marked (so routes to them say why they fail) and
/// its services keep their last good state where no one else holds them now.
fn reject<'h>(
    hosts: impl IntoIterator<Item = &'h String>,
    id: &str,
    file: &str,
    last_good: &Plan,
    claimed: &mut BTreeMap<ServiceKey, Owner>,
    registry: &mut Registry,
    out: &mut Compiled,
) {
    for host in hosts {
        registry
            .rejected_hosts
            .entry(host.clone())
            .or_insert(id.to_string());
    }
    for service in last_good.services.iter().filter(|s| s.resource == id) {
        let key = service.key();
        if let Some(owner) = claimed.get(&key) {
            out.notes.push(format!(
                "{id}: its last good state for {} is dropped: {} holds it now",
                show(&key),
                owner.id
            ));
            continue;
        }
        claimed.insert(
            key,
            Owner {
                id: id.to_string(),
                file: file.to_string(),
                kept: true,
            },
        );
        registry.kept.push(service.clone());
    }
}

/// `10.0.0.1:80/TCP`, as messages name a service.
pub(super) fn show(key: &ServiceKey) -> String {
    let (vip, port, protocol) = *key;
    format!("{}/{protocol}", SocketAddr::new(vip, port))
}
