//! The cluster's own service registry, read as Istio's Kubernetes registry reads it: a
//! Service, its EndpointSlices and the labels of the pods behind them become one service
//! entry (`Kind::Service`): host `name.namespace.svc.<domain>`, the ClusterIPs as VIPs, the
//! ports with Istio's protocol selection, and the endpoints kube-proxy would use. Pure: the
//! watchers hand it objects, it hands back what the store takes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use vsteer_model::istio::{ServiceEntrySpec, ServicePort, WorkloadEntry};
use vsteer_model::parse::{Failed, Parsed};
use vsteer_model::{Diagnostic, Kind, Labels, Origin, Precedence, Resource, ResourceId, SmallMap};

use super::records::{EndpointRecord, PortRecord, ServiceRecord, SliceRecord};

/// A Service that cannot be read as a registry entry; the last good version stays in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("`{value}` is not an IP address")]
    ClusterIp { value: String },
    #[error("{value} is not a port number (1-65535)")]
    Port { value: i32 },
}

/// Things of a Service that vsteer leaves out, on purpose.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryWarning {
    #[error(
        "an ExternalName service is resolved by DNS, which vsteer does not do: its host has \
         no endpoints"
    )]
    ExternalName,
    #[error("protocol {protocol} is not steered (TCP and UDP are): port left out")]
    Protocol { protocol: String },
    #[error("EndpointSlice {slice}: address type {address_type} is not steered: left out")]
    AddressType { slice: String, address_type: String },
    #[error("EndpointSlice {slice}: `{value}` is not an IP address: endpoint left out")]
    EndpointAddress { slice: String, value: String },
}

/// Who a Kubernetes object is, for the maps of the cluster state. Shared strings: the
/// state names a Service from its slices, its pods and its changes, and each of those
/// copies is a reference count, not two more allocations.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl ObjectKey {
    pub fn new(namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            // A cluster has few namespaces and every object names one: one copy each.
            namespace: vsteer_model::intern::shared(namespace),
            name: name.into(),
        }
    }

    pub fn of(meta: &ObjectMeta) -> ObjectKey {
        ObjectKey::new(
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default(),
        )
    }

    /// The resource it stands for, as `kind`, sharing its strings.
    pub fn resource_id(&self, kind: Kind) -> ResourceId {
        ResourceId {
            kind,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// The name under which a Kubernetes object's resources are held in the store and named in
/// messages, as a file's path is in file mode: `kubernetes:Service/shop/reviews`.
pub fn object_file(kind: &str, key: &ObjectKey) -> String {
    format!("kubernetes:{kind}/{}/{}", key.namespace, key.name)
}

/// Istio's order of conflicting resources: creation time, then name, then namespace.
pub fn created(meta: &ObjectMeta, key: &ObjectKey) -> Precedence {
    let seconds = meta
        .creation_timestamp
        .as_ref()
        .map_or(0, |t| t.0.as_second());
    created_at(seconds, key)
}

fn created_at(seconds: i64, key: &ObjectKey) -> Precedence {
    Precedence::Created(Arc::new(vsteer_model::identity::Created {
        seconds,
        namespace: key.namespace.clone(),
        name: key.name.clone(),
    }))
}

/// The registry entry of `service`, from its `slices`; `pod_labels` gives the labels of a pod
/// an endpoint names (`None` while the pod is not known yet: no labels).
pub fn service_entry<'a>(
    service: &ServiceRecord,
    slices: impl IntoIterator<Item = &'a SliceRecord>,
    pod_labels: impl Fn(&ObjectKey) -> Option<Labels>,
    domain: &str,
) -> Parsed {
    let key = &service.key;
    // One copy for the resource's origin and its diagnostics.
    let file: Arc<str> = object_file("Service", key).into();
    let id = key.resource_id(Kind::Service);
    let mut parsed = Parsed::default();
    let about = |problem: Diagnostic, field: &str| problem.resource_id(&id).field(field);
    let external = service.service_type.as_deref() == Some("ExternalName");
    if external {
        parsed.warnings.push(about(
            Diagnostic::new(file.clone(), RegistryWarning::ExternalName),
            "spec.externalName",
        ));
    }
    // `clusterIPs` holds both families of a dual-stack service; `None` (headless) has no VIP:
    // its host is a destination only, as with a ServiceEntry without addresses.
    // Exact sizes: the entry lives as long as the Service, and a first push reserves four.
    let mut addresses = Vec::with_capacity(service.cluster_ips.len());
    if !external {
        let (ips, field) = (&service.cluster_ips, service.cluster_ips_field);
        for (i, ip) in ips.iter().enumerate() {
            if ip.is_empty() || &**ip == "None" {
                continue;
            }
            if ip.parse::<IpAddr>().is_err() {
                let error = RegistryError::ClusterIp {
                    value: ip.to_string(),
                };
                return rejected(
                    parsed,
                    about(Diagnostic::new(file.clone(), error), &indexed(field, i)),
                    id,
                );
            }
            addresses.push(ip.to_string());
        }
    }

    let mut ports = Vec::with_capacity(service.ports.len());
    for (i, port) in service.ports.iter().enumerate() {
        let field = format!("spec.ports[{i}]");
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        if !matches!(protocol, "TCP" | "UDP") {
            let warning = RegistryWarning::Protocol {
                protocol: protocol.to_string(),
            };
            parsed
                .warnings
                .push(about(Diagnostic::new(file.clone(), warning), &field));
            continue;
        }
        let Some(number) = u16::try_from(port.port).ok().filter(|&n| n != 0) else {
            let error = RegistryError::Port { value: port.port };
            return rejected(
                parsed,
                about(
                    Diagnostic::new(file.clone(), error),
                    &format!("{field}.port"),
                ),
                id,
            );
        };
        let number = u32::from(number);
        ports.push(ServicePort {
            number,
            protocol: istio_protocol(port),
            name: port.name.as_deref().unwrap_or_default().to_string(),
            target_port: None,
        });
    }

    let endpoints = if external {
        Vec::new()
    } else {
        endpoints(slices, &ports, &pod_labels, &mut |warning| {
            parsed
                .warnings
                .push(about(Diagnostic::new(file.clone(), warning), ""))
        })
    };

    let export_to = service
        .export_to
        .as_deref()
        .map(|value| {
            value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();

    let entry = ServiceEntrySpec {
        hosts: vec![format!("{}.{}.svc.{domain}", key.name, key.namespace)],
        addresses,
        ports,
        location: Some(vsteer_model::intern::shared("MESH_INTERNAL")),
        resolution: Some(vsteer_model::intern::shared("STATIC")),
        endpoints,
        workload_selector: None,
        export_to,
        subject_alt_names: Vec::new(),
        resolved: None,
    };
    parsed.resources.push(Resource {
        id,
        precedence: created_at(service.created, key),
        origin: Origin { file, document: 0 },
        api_version: vsteer_model::intern::shared("v1"),
        spec: vsteer_model::ResourceSpec::ServiceEntry(Box::new(entry)),
    });
    parsed
}

/// `field[i]` for a list field (`spec.clusterIPs`), the field alone for a single one.
fn indexed(field: &str, i: usize) -> String {
    if field.ends_with('s') {
        format!("{field}[{i}]")
    } else {
        field.to_string()
    }
}

/// `parsed` with `error` and `id` marked failed: its last good version stays.
pub fn rejected(mut parsed: Parsed, error: Diagnostic, id: ResourceId) -> Parsed {
    parsed.errors.push(error);
    parsed.failed.push(Failed {
        document: 0,
        item: 0,
        id: Some(id),
    });
    parsed
}

/// Istio's protocol of a Service port, as its `kube.ConvertProtocol` chooses it: UDP for a
/// UDP port; else `appProtocol` when set (Kubernetes' `kubernetes.io/h2c`, `ws`, `wss`
/// mapped), the port name when not; of that, a `grpc-web` prefix, or the part before the
/// first `-` (`http-web`, `grpc`). Empty: a protocol Istio does not know, which it sniffs
/// (but on the well-known ports of server-first protocols, TCP).
pub fn istio_protocol(port: &PortRecord) -> String {
    if port.protocol.as_deref() == Some("UDP") {
        return "UDP".into();
    }
    let name = match port.app_protocol.as_deref() {
        Some("kubernetes.io/h2c") => return "HTTP2".into(),
        Some("kubernetes.io/ws") => return "HTTP".into(),
        Some("kubernetes.io/wss") => return "HTTPS".into(),
        Some(app) => app,
        None => port.name.as_deref().unwrap_or_default(),
    };
    let name = name.to_ascii_lowercase();
    if name.starts_with("grpc-web") {
        return "GRPC-Web".into();
    }
    let prefix = name.split('-').next().unwrap_or_default();
    match known_protocol(prefix) {
        Some(protocol) => protocol.to_string(),
        // Ports whose server speaks first (SMTP, DNS, MySQL, MongoDB) are TCP, not sniffed:
        // a sniffer would wait for a client that waits for the server.
        None if WELL_KNOWN_TCP.contains(&port.port) => "TCP".into(),
        None => String::new(),
    }
}

/// Istio's `wellKnownPorts`: never sniffed.
const WELL_KNOWN_TCP: [i32; 4] = [25, 53, 3306, 27017];

/// Istio's protocol names (`protocol.Parse`), from lower case.
fn known_protocol(name: &str) -> Option<&'static str> {
    Some(match name {
        "tcp" => "TCP",
        "udp" => "UDP",
        "grpc" => "GRPC",
        "grpc-web" => "GRPC-Web",
        "http" => "HTTP",
        "http_proxy" => "HTTP_PROXY",
        "http2" => "HTTP2",
        "https" => "HTTPS",
        "tls" => "TLS",
        "mongo" => "Mongo",
        "redis" => "Redis",
        "mysql" => "MySQL",
        _ => return None,
    })
}

/// The endpoints kube-proxy would use: the ready ones; when none is ready, the serving ones
/// that are terminating (a rollout's last pods keep serving). Each at the port its slice
/// gives for each service port's name; an address in two slices counts once.
fn endpoints<'a>(
    slices: impl IntoIterator<Item = &'a SliceRecord>,
    ports: &[ServicePort],
    pod_labels: &impl Fn(&ObjectKey) -> Option<Labels>,
    warn: &mut impl FnMut(RegistryWarning),
) -> Vec<WorkloadEntry> {
    let mut ready = BTreeMap::new();
    let mut terminating = BTreeMap::new();
    for slice in slices {
        let slice_name = &slice.name;
        if !matches!(&*slice.address_type, "IPv4" | "IPv6") {
            warn(RegistryWarning::AddressType {
                slice: slice_name.to_string(),
                address_type: slice.address_type.to_string(),
            });
            continue;
        }
        // One copy for the slice: its endpoints share it.
        let slice_ports: SmallMap<u32> = slice
            .ports
            .iter()
            .filter_map(|(name, port)| {
                let port = u16::try_from((*port)?).ok().filter(|&n| n != 0)?;
                Some((&**name, u32::from(port)))
            })
            .filter(|(name, _)| ports.iter().any(|p| p.name == *name))
            .collect();
        for endpoint in &slice.endpoints {
            let Some(address) = &endpoint.address else {
                continue;
            };
            let Ok(ip) = address.parse::<IpAddr>() else {
                warn(RegistryWarning::EndpointAddress {
                    slice: slice_name.to_string(),
                    value: address.to_string(),
                });
                continue;
            };
            let into = match usable(endpoint) {
                Usable::Ready => &mut ready,
                Usable::Terminating => &mut terminating,
                Usable::No => continue,
            };
            into.entry(ip).or_insert_with(|| WorkloadEntry {
                address: ip.to_string().into(),
                ports: slice_ports.clone(),
                labels: labels_of(endpoint, pod_labels),
                ..WorkloadEntry::default()
            });
        }
    }
    let chosen = if ready.is_empty() { terminating } else { ready };
    chosen.into_values().collect()
}

enum Usable {
    Ready,
    Terminating,
    No,
}

/// Conditions as kube-proxy reads them: unset `ready` and `serving` are true, an unset
/// `terminating` false; a ready endpoint is used even while terminating (a Service with
/// `publishNotReadyAddresses` keeps its terminating pods ready), a serving and terminating
/// one only when none is ready.
fn usable(endpoint: &EndpointRecord) -> Usable {
    let ready = endpoint.ready.unwrap_or(true);
    let serving = endpoint.serving.unwrap_or(true);
    let terminating = endpoint.terminating.unwrap_or(false);
    if ready {
        Usable::Ready
    } else if serving && terminating {
        Usable::Terminating
    } else {
        Usable::No
    }
}

fn labels_of(
    endpoint: &EndpointRecord,
    pod_labels: &impl Fn(&ObjectKey) -> Option<Labels>,
) -> Labels {
    endpoint
        .pod
        .as_ref()
        .and_then(pod_labels)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
