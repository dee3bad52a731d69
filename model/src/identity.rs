//! Who a resource is (kind, namespace, name), and where it stands when two resources claim
//! the same thing (its precedence, which does not change while the resource exists).

use std::fmt;
use std::sync::Arc;

/// API group of the Istio networking resources.
pub const ISTIO_NETWORKING_GROUP: &str = "networking.istio.io";
/// Versions of [`ISTIO_NETWORKING_GROUP`] that vsteer reads; Istio serves all three with the
/// same schema for these kinds.
pub const SUPPORTED_VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha3"];
/// The namespace of a resource whose metadata names none, as with `kubectl apply`.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The kinds vsteer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    ServiceEntry,
    VirtualService,
    DestinationRule,
    /// A Kubernetes Service with its EndpointSlices, as Istio's Kubernetes registry reads it:
    /// a service entry (hosts, VIPs, ports, labelled endpoints) that the cluster made. Read
    /// from the Kubernetes API only; its spec is a [`ServiceEntrySpec`](crate::istio::ServiceEntrySpec).
    Service,
}

impl Kind {
    /// The Istio kinds, which config files hold.
    pub const ISTIO: [Kind; 3] = [
        Kind::ServiceEntry,
        Kind::VirtualService,
        Kind::DestinationRule,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ServiceEntry => "ServiceEntry",
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::Service => "Service",
        }
    }

    /// The Istio kind named exactly `name` (Kubernetes kinds are case-sensitive).
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ISTIO.into_iter().find(|kind| kind.as_str() == name)
    }

    /// A service's registry entry: a ServiceEntry, or a Kubernetes Service in that form.
    pub fn is_service_entry(self) -> bool {
        matches!(self, Kind::ServiceEntry | Kind::Service)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resource's identity, as a Kubernetes API server holds at most one of each.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceId {
    pub kind: Kind,
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl ResourceId {
    pub fn new(kind: Kind, namespace: &str, name: &str) -> ResourceId {
        ResourceId {
            kind,
            namespace: crate::intern::shared(namespace),
            name: name.into(),
        }
    }
}

/// Kind, then namespace, then name. Namespaces are shared strings (interned), so equal ones
/// are usually the same allocation: compared by address first.
impl Ord for ResourceId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.kind
            .cmp(&other.kind)
            .then_with(|| shared_cmp(&self.namespace, &other.namespace))
            .then_with(|| self.name.cmp(&other.name))
    }
}

impl PartialOrd for ResourceId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Shared strings compare equal by address, without reading them.
fn shared_cmp(a: &Arc<str>, b: &Arc<str>) -> std::cmp::Ordering {
    if Arc::ptr_eq(a, b) {
        std::cmp::Ordering::Equal
    } else {
        a.cmp(b)
    }
}

/// `ServiceEntry default/reviews`, the way every message names a resource.
impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// As its Display: plans and JSON name resources the way messages do.
impl serde::Serialize for ResourceId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The order in which resources win ties (VIP ownership, the VirtualService that applies,
/// the subset definition that counts): earlier wins. It depends only on the resource itself,
/// so an error elsewhere never changes who wins.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Precedence {
    /// File mode: the file's path, then the document's index in it, then the item's index
    /// in a `kind: List` document.
    Position {
        file: Arc<str>,
        document: u32,
        item: u32,
    },
    /// Kubernetes: creation time, then name and namespace, as Istio orders conflicts (behind
    /// an `Arc`: precedences are kept in every index, file mode's is half the size, and a
    /// copy shares the one allocation).
    Created(Arc<Created>),
}

/// Field order is the order of comparison: creation time, then name, then namespace, as
/// Istio's `sortConfigByCreationTime` has it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Created {
    pub seconds: i64,
    pub name: Arc<str>,
    pub namespace: Arc<str>,
}

/// File path, then document, then item; the resources of one file share the path's
/// allocation, so most comparisons never read it.
impl Ord for Precedence {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        match (self, other) {
            (
                Precedence::Position {
                    file: a,
                    document: da,
                    item: ia,
                },
                Precedence::Position {
                    file: b,
                    document: db,
                    item: ib,
                },
            ) => shared_cmp(a, b).then(da.cmp(db)).then(ia.cmp(ib)),
            (Precedence::Created(a), Precedence::Created(b)) => a.cmp(b),
            (Precedence::Position { .. }, Precedence::Created(_)) => Ordering::Less,
            (Precedence::Created(_), Precedence::Position { .. }) => Ordering::Greater,
        }
    }
}

impl PartialOrd for Precedence {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Precedence {
    pub fn position(file: &Arc<str>, document: usize, item: usize) -> Precedence {
        Precedence::Position {
            file: file.clone(),
            document: u32::try_from(document).unwrap_or(u32::MAX),
            item: u32::try_from(item).unwrap_or(u32::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for kind in Kind::ISTIO {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(Kind::parse("serviceentry"), None);
    }

    #[test]
    fn ids_display_as_messages_name_them() {
        let id = ResourceId::new(Kind::VirtualService, "shop", "reviews");
        assert_eq!(id.to_string(), "VirtualService shop/reviews");
    }

    #[test]
    fn precedence_stays_small() {
        assert!(std::mem::size_of::<Precedence>() <= 24);
    }

    #[test]
    fn kubernetes_objects_are_ordered_by_creation_then_name_then_namespace() {
        let at = |seconds, namespace: &str, name: &str| {
            Precedence::Created(Arc::new(Created {
                seconds,
                name: name.into(),
                namespace: namespace.into(),
            }))
        };
        assert!(at(1, "z", "z") < at(2, "a", "a"));
        assert!(
            at(1, "z", "a") < at(1, "a", "b"),
            "the name before the namespace"
        );
        assert!(at(1, "a", "x") < at(1, "b", "x"));
    }

    #[test]
    fn earlier_files_and_documents_come_first() {
        let a: Arc<str> = "a.yaml".into();
        let b: Arc<str> = "b.yaml".into();
        assert!(Precedence::position(&a, 5, 0) < Precedence::position(&b, 0, 0));
        assert!(Precedence::position(&a, 1, 9) < Precedence::position(&a, 2, 0));
        assert!(Precedence::position(&a, 1, 0) < Precedence::position(&a, 1, 1));
    }
}
