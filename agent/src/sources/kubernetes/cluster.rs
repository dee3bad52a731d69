//! What the watches have seen of the cluster, and which of it changed since the last read.
//! Each watched kind is replaced whole when its watch relists (a 410 Gone, a restart), so
//! objects deleted while a watch was down leave as well; every other event changes one
//! object. Reads turn the changed objects into the store's updates: an Istio object is decoded
//! as a file's document is, a Service becomes its registry entry with its EndpointSlices and
//! pod labels. Pure: the watch tasks hand it events.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Instant;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::Event;
use smallvec::SmallVec;
use vsteer_model::parse::{Parsed, parse_object};
use vsteer_model::store::FileUpdate;
use vsteer_model::{Diagnostic, Kind, Labels, ResourceId};

use super::records::{ServiceRecord, SliceRecord};
use super::registry::{self, ObjectKey, object_file};

/// The label with which an EndpointSlice names its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What one watch follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Watched {
    Services,
    EndpointSlices,
    /// Metadata only: the labels subsets select by.
    Pods,
    Istio(Kind),
}

impl Watched {
    pub fn name(self) -> &'static str {
        match self {
            Watched::Services => "Service",
            Watched::EndpointSlices => "EndpointSlice",
            Watched::Pods => "Pod",
            Watched::Istio(kind) => kind.as_str(),
        }
    }
}

/// An object as a watch delivered it: its metadata, and the whole object as JSON (`Null` for
/// the metadata-only pod watch).
#[derive(Debug, Clone)]
pub struct Object {
    pub meta: ObjectMeta,
    pub body: serde_json::Value,
}

/// An object that does not read as its kind (the API server validates less than vsteer
/// reads); the last good version stays in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {kind}: {message}")]
pub struct ObjectError {
    pub kind: &'static str,
    pub message: String,
}

/// What the store is told about a changed object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Changed {
    Service(ObjectKey),
    Istio(Kind, ObjectKey),
}

/// An object as kept: only what is read of it (the JSON of a watch event is dropped at once;
/// a node holds every Service and slice of the cluster). Boxed: a B-tree node holds eleven
/// values inline and is often half empty, so each value costs a pointer there, not itself.
enum Kept {
    Service(Box<Result<ServiceRecord, Diagnostic>>),
    Slice(Box<Slice>),
    Pod(Labels),
    Istio(Kind, Parsed),
}

#[derive(Default)]
pub struct Cluster {
    domain: String,
    services: BTreeMap<ObjectKey, Box<Result<ServiceRecord, Diagnostic>>>,
    slices: BTreeMap<ObjectKey, Box<Slice>>,
    /// Each Service's slices, by the service-name label (a few per service: a list).
    slices_of: HashMap<ObjectKey, Keys>,
    /// Every pod the pod watch listed or a slice names: one map for both, the cluster's
    /// largest (boxed: a hash table is up to half empty, and an empty slot costs what its
    /// value does).
    pods: HashMap<ObjectKey, Box<Pod>>,
    /// How many of `pods` the pod watch listed.
    listed_pods: usize,
    /// One copy of each pod label set: the pods of one ReplicaSet carry the same labels.
    label_sets: HashSet<Labels>,
    label_sets_pruned_at: usize,
    /// Istio objects, decoded as they arrived (a file's parse: resources or errors).
    istio: BTreeMap<(Kind, ObjectKey), Parsed>,
    changed: BTreeSet<Changed>,
    /// Objects of a relisting watch, until its list is complete.
    relisting: HashMap<Watched, Vec<(ObjectKey, Kept)>>,
    synced: BTreeSet<Watched>,
    /// The first event not read yet (the sync latency is measured from it).
    first_unread: Option<Instant>,
}

/// A few object keys: one inline (nearly every list: a service's slices, a pod's services).
type Keys = SmallVec<[ObjectKey; 1]>;

#[derive(Default)]
struct Pod {
    /// `None` until the pod watch lists it.
    labels: Option<Labels>,
    /// The services whose slices name the pod: a label change rewrites their entries.
    services: Keys,
}

#[derive(PartialEq)]
struct Slice {
    service: Option<ObjectKey>,
    /// The error boxed: it is rare, and larger than the record.
    parsed: Result<SliceRecord, Box<Diagnostic>>,
}

impl Slice {
    fn pods(&self) -> impl Iterator<Item = &ObjectKey> {
        self.parsed.iter().flat_map(SliceRecord::pods)
    }
}

impl Cluster {
    /// Services are named `name.namespace.svc.<domain>`.
    pub fn new(domain: &str) -> Cluster {
        Cluster {
            domain: domain.to_string(),
            ..Cluster::default()
        }
    }

    /// Takes one watch event.
    pub fn event(&mut self, watched: Watched, event: Event<Object>) {
        self.apply_event(watched, event);
        // An event that changed nothing read (a pod's status, an object's annotations, a
        // relist of the same objects) starts no pass.
        if !self.changed.is_empty() {
            self.first_unread.get_or_insert_with(Instant::now);
        }
    }

    fn apply_event(&mut self, watched: Watched, event: Event<Object>) {
        match event {
            Event::Init => {
                self.relisting.insert(watched, Vec::new());
            }
            Event::InitApply(object) => {
                let key = ObjectKey::of(&object.meta);
                let kept = keep(watched, &key, object);
                match self.relisting.get_mut(&watched) {
                    Some(buffer) => buffer.push((key, kept)),
                    None => self.upsert(key, kept),
                }
            }
            Event::InitDone => {
                let listed = self.relisting.remove(&watched).unwrap_or_default();
                let keep: BTreeSet<&ObjectKey> = listed.iter().map(|(key, _)| key).collect();
                let gone: Vec<ObjectKey> = self
                    .keys(watched)
                    .into_iter()
                    .filter(|key| !keep.contains(key))
                    .collect();
                for key in &gone {
                    self.delete(watched, key);
                }
                for (key, kept) in listed {
                    self.upsert(key, kept);
                }
                self.synced.insert(watched);
            }
            Event::Apply(object) => {
                let key = ObjectKey::of(&object.meta);
                let kept = keep(watched, &key, object);
                self.upsert(key, kept);
            }
            Event::Delete(object) => self.delete(watched, &ObjectKey::of(&object.meta)),
        }
    }

    /// Whether every one of `watches` has listed its kind once.
    pub fn synced(&self, watches: &[Watched]) -> bool {
        watches.iter().all(|w| self.synced.contains(w))
    }

    /// When the oldest event not read yet came.
    pub fn first_unread(&self) -> Option<Instant> {
        self.first_unread
    }

    /// Objects of each kind, for `vsteer status` and the metrics.
    pub fn counts(&self) -> [(&'static str, usize); 4] {
        [
            ("Service", self.services.len()),
            ("EndpointSlice", self.slices.len()),
            ("Pod", self.listed_pods),
            ("Istio", self.istio.len()),
        ]
    }

    /// What changed since the last read (`all`: everything), as the store's updates.
    pub fn updates(&mut self, all: bool) -> Vec<FileUpdate> {
        self.first_unread = None;
        let mut changed = std::mem::take(&mut self.changed);
        if all {
            changed.extend(self.services.keys().cloned().map(Changed::Service));
            changed.extend(
                self.istio
                    .keys()
                    .map(|(kind, key)| Changed::Istio(*kind, key.clone())),
            );
        }
        changed
            .into_iter()
            .map(|changed| match changed {
                Changed::Service(key) => self.service_update(&key),
                Changed::Istio(kind, key) => self.istio_update(kind, &key),
            })
            .collect()
    }

    fn keys(&self, watched: Watched) -> BTreeSet<ObjectKey> {
        match watched {
            Watched::Services => self.services.keys().cloned().collect(),
            Watched::EndpointSlices => self.slices.keys().cloned().collect(),
            Watched::Pods => self
                .pods
                .iter()
                .filter(|(_, pod)| pod.labels.is_some())
                .map(|(key, _)| key.clone())
                .collect(),
            Watched::Istio(kind) => self
                .istio
                .keys()
                .filter(|(k, _)| *k == kind)
                .map(|(_, key)| key.clone())
                .collect(),
        }
    }

    fn upsert(&mut self, key: ObjectKey, kept: Kept) {
        match kept {
            Kept::Service(parsed) => {
                if self.services.get(&key) != Some(&parsed) {
                    self.services.insert(key.clone(), parsed);
                    self.changed.insert(Changed::Service(key));
                }
            }
            Kept::Slice(mut slice) => {
                if self.slices.get(&key) == Some(&slice) {
                    return;
                }
                self.delete(Watched::EndpointSlices, &key);
                self.share_keys(&mut slice);
                if let Some(service) = &slice.service {
                    push_once(self.slices_of.entry(service.clone()).or_default(), &key);
                    for pod in slice.pods() {
                        let services = &mut self.pods.entry(pod.clone()).or_default().services;
                        push_once(services, service);
                    }
                    self.changed.insert(Changed::Service(service.clone()));
                }
                self.slices.insert(key, slice);
            }
            Kept::Pod(labels) => {
                let labels = self.shared_labels(labels);
                let pod = self.pods.entry(key.clone()).or_default();
                if pod.labels.as_ref() != Some(&labels) {
                    if pod.labels.is_none() {
                        self.listed_pods += 1;
                    }
                    pod.labels = Some(labels);
                    self.pod_changed(&key);
                }
            }
            Kept::Istio(kind, parsed) => {
                let key = (kind, key);
                if self.istio.get(&key) != Some(&parsed) {
                    self.changed.insert(Changed::Istio(kind, key.1.clone()));
                    self.istio.insert(key, parsed);
                }
            }
        }
    }

    fn delete(&mut self, watched: Watched, key: &ObjectKey) {
        match watched {
            Watched::Services => {
                if self.services.remove(key).is_some() {
                    self.changed.insert(Changed::Service(key.clone()));
                }
            }
            Watched::EndpointSlices => {
                let Some(slice) = self.slices.remove(key) else {
                    return;
                };
                let Some(service) = slice.service.clone() else {
                    return;
                };
                if let Some(slices) = self.slices_of.get_mut(&service) {
                    slices.retain(|s| s != key);
                    if slices.is_empty() {
                        self.slices_of.remove(&service);
                    }
                }
                for pod in slice.pods() {
                    // Another slice of the same service may name the pod too: kept then.
                    let still = self.slices_of.get(&service).is_some_and(|slices| {
                        slices.iter().any(|s| {
                            self.slices
                                .get(s)
                                .is_some_and(|s| s.pods().any(|p| p == pod))
                        })
                    });
                    if !still && let Some(known) = self.pods.get_mut(pod) {
                        known.services.retain(|s| s != &service);
                        if known.services.is_empty() && known.labels.is_none() {
                            self.pods.remove(pod);
                        }
                    }
                }
                self.changed.insert(Changed::Service(service));
            }
            Watched::Pods => {
                let Some(pod) = self.pods.get_mut(key) else {
                    return;
                };
                if pod.labels.take().is_some() {
                    self.listed_pods -= 1;
                    if pod.services.is_empty() {
                        self.pods.remove(key);
                    }
                    self.pod_changed(key);
                }
            }
            Watched::Istio(kind) => {
                if self.istio.remove(&(kind, key.clone())).is_some() {
                    self.changed.insert(Changed::Istio(kind, key.clone()));
                }
            }
        }
    }

    /// Points `slice`'s names of its Service and pods at the copies the maps already hold:
    /// every pod is named by its own watch and by a slice, 60,000 names at 30,000 Services.
    fn share_keys(&self, slice: &mut Slice) {
        if let Some(service) = &mut slice.service
            && let Some((held, _)) = self.services.get_key_value(service)
        {
            *service = held.clone();
        }
        if let Ok(record) = &mut slice.parsed {
            for pod in record.endpoints.iter_mut().filter_map(|e| e.pod.as_mut()) {
                if let Some((held, _)) = self.pods.get_key_value(pod) {
                    *pod = held.clone();
                }
            }
        }
    }

    /// `labels`, or the equal set already held. Sets only this table holds are forgotten
    /// once it has grown by a quarter, so pods that come and go do not pile them up.
    fn shared_labels(&mut self, labels: Labels) -> Labels {
        if let Some(known) = self.label_sets.get(&labels) {
            return known.clone();
        }
        self.label_sets.insert(labels.clone());
        let size = self.label_sets.len();
        if size > self.label_sets_pruned_at + self.label_sets_pruned_at / 4 + 16 {
            self.label_sets.retain(|set| set.holders() > 1);
            self.label_sets_pruned_at = self.label_sets.len();
        }
        labels
    }

    fn pod_changed(&mut self, pod: &ObjectKey) {
        let services = self
            .pods
            .get(pod)
            .map(|p| &p.services[..])
            .unwrap_or_default();
        for service in services {
            self.changed.insert(Changed::Service(service.clone()));
        }
    }

    fn service_update(&self, key: &ObjectKey) -> FileUpdate {
        let file = object_file("Service", key);
        let service = match self.services.get(key).map(|s| &**s) {
            None => return FileUpdate::Removed { file: file.into() },
            Some(Err(error)) => {
                let id = key.resource_id(Kind::Service);
                return failed(file, error.clone(), id);
            }
            Some(Ok(service)) => service,
        };
        let mut slices = Vec::new();
        for slice in self.slices_of.get(key).into_iter().flatten() {
            match self.slices.get(slice).map(|s| &s.parsed) {
                Some(Ok(parsed)) => slices.push(parsed),
                // A slice that does not read: the service keeps its last good endpoints.
                Some(Err(error)) => {
                    let id = key.resource_id(Kind::Service);
                    return failed(file, (**error).clone(), id);
                }
                None => {}
            }
        }
        let parsed = registry::service_entry(
            service,
            slices,
            |pod| self.pods.get(pod).and_then(|p| p.labels.clone()),
            &self.domain,
        );
        // The store keys the file by the name the resource gives as its origin: one copy.
        let file = match parsed.resources.first() {
            Some(resource) => resource.origin.file.clone(),
            None => file.into(),
        };
        FileUpdate::Read { file, parsed }
    }

    fn istio_update(&self, kind: Kind, key: &ObjectKey) -> FileUpdate {
        let file = object_file(kind.as_str(), key);
        match self.istio.get(&(kind, key.clone())) {
            Some(parsed) => FileUpdate::Read {
                file: file.into(),
                parsed: parsed.clone(),
            },
            None => FileUpdate::Removed { file: file.into() },
        }
    }
}

/// An Istio object decoded as a file's document is.
fn decode_istio(kind: Kind, key: &ObjectKey, object: &Object) -> Parsed {
    let file = object_file(kind.as_str(), key);
    let precedence = registry::created(&object.meta, key);
    match vsteer_model::yaml::to_value(&object.body) {
        Ok(value) => parse_object(&file, precedence, value),
        Err(e) => {
            let error = ObjectError {
                kind: kind.as_str(),
                message: e.to_string(),
            };
            let id = ResourceId::new(kind, &key.namespace, &key.name);
            failed_parse(Diagnostic::new(file, error).resource_id(&id), id)
        }
    }
}

/// `body` as `T`, or an error naming the object and the field that does not read.
fn typed<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    key: &ObjectKey,
    body: serde_json::Value,
) -> Result<T, Diagnostic> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let field = e.path().to_string();
        let error = ObjectError {
            kind,
            message: e.into_inner().to_string(),
        };
        // A Service is a resource of vsteer's; a slice is named as the API names it.
        let subject = match kind {
            "Service" => vsteer_model::Subject::Resource(ResourceId::new(
                Kind::Service,
                &key.namespace,
                &key.name,
            )),
            _ => vsteer_model::Subject::Other(format!("{kind} {}/{}", key.namespace, key.name)),
        };
        Diagnostic::new(object_file(kind, key), error)
            .about(subject)
            .field(if field == "." { String::new() } else { field })
    })
}

/// What is kept of `object`, read at once (its JSON is not kept).
fn keep(watched: Watched, key: &ObjectKey, object: Object) -> Kept {
    match watched {
        Watched::Services => Kept::Service(Box::new(
            typed::<Service>("Service", key, object.body).map(ServiceRecord::from),
        )),
        Watched::EndpointSlices => {
            let service = object
                .meta
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .map(|name| ObjectKey::new(&key.namespace, name));
            let parsed = typed::<EndpointSlice>("EndpointSlice", key, object.body)
                .map(|slice| SliceRecord::from(slice).named(key))
                .map_err(Box::new);
            Kept::Slice(Box::new(Slice { service, parsed }))
        }
        Watched::Pods => Kept::Pod(object.meta.labels.unwrap_or_default().into_iter().collect()),
        Watched::Istio(kind) => Kept::Istio(kind, decode_istio(kind, key, &object)),
    }
}

/// Adds `key` to `keys` unless it is there.
fn push_once(keys: &mut Keys, key: &ObjectKey) {
    if !keys.contains(key) {
        keys.push(key.clone());
    }
}

/// An update that keeps `id`'s last good version, with `error`.
fn failed(file: String, error: Diagnostic, id: ResourceId) -> FileUpdate {
    FileUpdate::Read {
        file: file.into(),
        parsed: failed_parse(error, id),
    }
}

fn failed_parse(error: Diagnostic, id: ResourceId) -> Parsed {
    registry::rejected(Parsed::default(), error, id)
}

#[cfg(test)]
mod tests;
