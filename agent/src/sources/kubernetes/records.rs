//! What the agent keeps of a Service and of an EndpointSlice between events: the fields the
//! registry reads, nothing else. A node's agent holds every Service and slice of the cluster
//! (tens of thousands); the API types carry every field of the object (a k8s-openapi Service
//! is over a kilobyte before its strings), these a few dozen bytes plus the strings read.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::registry::ObjectKey;

/// The annotation with which a Service limits where it is visible, as Istio reads it.
const EXPORT_TO: &str = "networking.istio.io/exportTo";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRecord {
    pub key: ObjectKey,
    /// `metadata.creationTimestamp`, seconds (Istio orders conflicts by it).
    pub created: i64,
    /// The `networking.istio.io/exportTo` annotation, as written.
    pub export_to: Option<Box<str>>,
    /// `spec.type`.
    pub service_type: Option<Box<str>>,
    /// `spec.clusterIPs` when set, else `spec.clusterIP`; and which of the two it is, for
    /// messages.
    pub cluster_ips: Box<[Box<str>]>,
    pub cluster_ips_field: &'static str,
    pub ports: Box<[PortRecord]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRecord {
    pub name: Option<Box<str>>,
    pub port: i32,
    pub protocol: Option<Box<str>>,
    pub app_protocol: Option<Box<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceRecord {
    /// Shared with the slice's key (see [`SliceRecord::named`]).
    pub name: Arc<str>,
    pub address_type: Box<str>,
    /// (port name, port) of the slice's ports.
    pub ports: Box<[(Box<str>, Option<i32>)]>,
    pub endpoints: Box<[EndpointRecord]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRecord {
    /// The first address (the API allows one, for now).
    pub address: Option<Box<str>>,
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
    /// The pod it names, when its target is a pod.
    pub pod: Option<ObjectKey>,
}

impl From<Service> for ServiceRecord {
    fn from(service: Service) -> ServiceRecord {
        let key = ObjectKey::of(&service.metadata);
        let created = service
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second());
        let export_to = service
            .metadata
            .annotations
            .and_then(|mut a| a.remove(EXPORT_TO))
            .map(String::into_boxed_str);
        let spec = service.spec.unwrap_or_default();
        let (cluster_ips, cluster_ips_field) = match spec.cluster_ips.filter(|ips| !ips.is_empty())
        {
            Some(ips) => (ips, "spec.clusterIPs"),
            None => (spec.cluster_ip.into_iter().collect(), "spec.clusterIP"),
        };
        ServiceRecord {
            key,
            created,
            export_to,
            service_type: spec.type_.map(String::into_boxed_str),
            cluster_ips: fresh(cluster_ips, String::into_boxed_str),
            cluster_ips_field,
            ports: fresh(spec.ports.unwrap_or_default(), PortRecord::from),
        }
    }
}

impl From<ServicePort> for PortRecord {
    fn from(port: ServicePort) -> PortRecord {
        PortRecord {
            name: port.name.map(String::into_boxed_str),
            port: port.port,
            protocol: port.protocol.map(String::into_boxed_str),
            app_protocol: port.app_protocol.map(String::into_boxed_str),
        }
    }
}

impl From<EndpointSlice> for SliceRecord {
    fn from(slice: EndpointSlice) -> SliceRecord {
        let endpoints = fresh(slice.endpoints, |e| {
            let conditions = e.conditions.unwrap_or_default();
            let pod = e
                .target_ref
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .map(|r| {
                    ObjectKey::new(
                        r.namespace.as_deref().unwrap_or_default(),
                        r.name.as_deref().unwrap_or_default(),
                    )
                });
            EndpointRecord {
                address: e.addresses.into_iter().next().map(String::into_boxed_str),
                ready: conditions.ready,
                serving: conditions.serving,
                terminating: conditions.terminating,
                pod,
            }
        });
        let ports = fresh(slice.ports.unwrap_or_default(), |p| {
            (p.name.unwrap_or_default().into_boxed_str(), p.port)
        });
        SliceRecord {
            name: slice.metadata.name.unwrap_or_default().into(),
            address_type: slice.address_type.into_boxed_str(),
            ports,
            endpoints,
        }
    }
}

impl SliceRecord {
    /// Its name as the copy in `key`, which the cluster state holds anyway.
    pub fn named(mut self, key: &ObjectKey) -> SliceRecord {
        if *self.name == *key.name {
            self.name = key.name.clone();
        }
        self
    }

    /// The pods its endpoints name.
    pub fn pods(&self) -> impl Iterator<Item = &ObjectKey> {
        self.endpoints.iter().filter_map(|e| e.pod.as_ref())
    }
}

/// `items` mapped into a new allocation of the records' own size: a `collect` in place
/// would keep the API types' allocation (several times larger) for the record's life.
fn fresh<T, U>(items: Vec<T>, map: impl FnMut(T) -> U) -> Box<[U]> {
    let mut records = Vec::with_capacity(items.len());
    records.extend(items.into_iter().map(map));
    records.into_boxed_slice()
}
