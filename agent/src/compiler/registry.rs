//! The accepted ServiceEntries: which one owns each (VIP, port, protocol), and which one a
//! route's destination host names.
//!
//! A rejected ServiceEntry keeps the services it had in the last good plan: a bad edit
//! should not take a working service down, only fail to change it.

use std::collections::BTreeMap;
use std::net::SocketAddr;

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
}

impl<'a> Registry<'a> {
    /// The entry a destination host names: the first that lists it.
    pub fn entry_for_host(&self, host: &str) -> Option<&Entry<'a>> {
        self.entries
            .iter()
            .find(|e| e.hosts.iter().any(|h| h == host))
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
                for host in &spec.hosts {
                    registry
                        .rejected_hosts
                        .entry(host.clone())
                        .or_insert(id.clone());
                }
                keep(
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
            for host in entry.hosts {
                registry
                    .rejected_hosts
                    .entry(host.clone())
                    .or_insert(id.clone());
            }
            keep(
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
        let index = registry.entries.len();
        for (_, key) in services {
            claimed.insert(
                key,
                Owner {
                    id: id.clone(),
                    file: resource.origin.file.clone(),
                    kept: false,
                },
            );
            registry.services.push(Service { key, entry: index });
        }
        registry.entries.push(entry);
        out.notes.extend(compiled.notes);
    }
    registry
}

/// Keeps the last good services of the rejected ServiceEntry `id`, those no other entry
/// holds now.
fn keep(
    id: &str,
    file: &str,
    last_good: &Plan,
    claimed: &mut BTreeMap<ServiceKey, Owner>,
    registry: &mut Registry,
    out: &mut Compiled,
) {
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
