//! Watch events in, store updates out: what a relist, a label change and a malformed object
//! do to what is in force.

use serde_json::json;
use vsteer_model::ResourceSpec;
use vsteer_model::store::Store;

use super::*;

fn object(value: serde_json::Value) -> Object {
    let meta = serde_json::from_value(value["metadata"].clone()).expect("metadata");
    Object { meta, body: value }
}

fn service(name: &str, ip: &str) -> Object {
    object(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80}]}
    }))
}

fn slice(name: &str, service: &str, pods: &[(&str, &str)]) -> Object {
    let endpoints: Vec<_> = pods
        .iter()
        .map(|(ip, pod)| {
            json!({"addresses": [ip],
            "targetRef": {"kind": "Pod", "name": pod, "namespace": "shop"}})
        })
        .collect();
    object(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": endpoints
    }))
}

fn pod(name: &str, version: &str) -> Object {
    object(json!({"metadata": {"name": name, "namespace": "shop",
                               "labels": {"app": "web", "version": version}}}))
}

/// Lists `objects` as a watch's first list does.
fn list(cluster: &mut Cluster, watched: Watched, objects: Vec<Object>) {
    cluster.event(watched, Event::Init);
    for o in objects {
        cluster.event(watched, Event::InitApply(o));
    }
    cluster.event(watched, Event::InitDone);
}

/// The endpoints of `Service shop/name` in force, with their version labels.
fn endpoints(store: &Store, name: &str) -> Vec<(String, String)> {
    let id = ResourceId::new(Kind::Service, "shop", name);
    let Some(resource) = store.in_force(&id) else {
        return Vec::new();
    };
    let ResourceSpec::ServiceEntry(spec) = &resource.spec else {
        panic!("not an entry");
    };
    spec.endpoints
        .iter()
        .map(|e| {
            let version = e.labels.get("version").unwrap_or("-").to_string();
            (e.address.to_string(), version)
        })
        .collect()
}

fn synced_cluster() -> (Cluster, Store) {
    let mut cluster = Cluster::new("cluster.local");
    list(
        &mut cluster,
        Watched::Services,
        vec![service("web", "10.96.0.1")],
    );
    list(
        &mut cluster,
        Watched::EndpointSlices,
        vec![slice(
            "web-1",
            "web",
            &[("10.244.0.1", "web-a"), ("10.244.0.2", "web-b")],
        )],
    );
    list(
        &mut cluster,
        Watched::Pods,
        vec![pod("web-a", "v1"), pod("web-b", "v2")],
    );
    let mut store = Store::default();
    store.apply(cluster.updates(true));
    (cluster, store)
}

#[test]
fn a_service_its_slices_and_its_pods_make_one_entry() {
    let (cluster, store) = synced_cluster();
    assert!(cluster.synced(&[Watched::Services, Watched::EndpointSlices, Watched::Pods]));
    assert!(!cluster.synced(&[Watched::Istio(Kind::VirtualService)]));
    assert_eq!(
        endpoints(&store, "web"),
        [
            ("10.244.0.1".into(), "v1".into()),
            ("10.244.0.2".into(), "v2".into())
        ]
    );
}

#[test]
fn a_pod_label_change_rewrites_the_entries_of_its_services_only() {
    let (mut cluster, mut store) = synced_cluster();
    cluster.event(Watched::Pods, Event::Apply(pod("web-b", "v3")));
    let updates = cluster.updates(false);
    assert_eq!(updates.len(), 1, "only Service shop/web");
    store.apply(updates);
    assert_eq!(
        endpoints(&store, "web")[1],
        ("10.244.0.2".into(), "v3".into())
    );
    // The same labels again change nothing.
    cluster.event(Watched::Pods, Event::Apply(pod("web-b", "v3")));
    assert!(cluster.updates(false).is_empty());
}

#[test]
fn a_relist_removes_what_was_deleted_while_the_watch_was_down() {
    let (mut cluster, mut store) = synced_cluster();
    cluster.event(Watched::Services, Event::Apply(service("db", "10.96.0.2")));
    store.apply(cluster.updates(false));
    let db = ResourceId::new(Kind::Service, "shop", "db");
    assert!(store.in_force(&db).is_some());
    // 410 Gone: the watch lists again, and `web` is no longer there.
    list(
        &mut cluster,
        Watched::Services,
        vec![service("db", "10.96.0.2")],
    );
    let changes = store.apply(cluster.updates(false));
    let removed: Vec<String> = changes.removed.iter().map(|id| id.to_string()).collect();
    assert_eq!(removed, ["Service shop/web"]);
    // Objects listed again unchanged are not changes.
    assert!(changes.upserted.is_empty(), "{:?}", changes.upserted);
    // A relisted slice set without web-1 takes its endpoints away.
    list(
        &mut cluster,
        Watched::Services,
        vec![service("web", "10.96.0.1")],
    );
    list(&mut cluster, Watched::EndpointSlices, vec![]);
    store.apply(cluster.updates(false));
    assert!(endpoints(&store, "web").is_empty());
}

#[test]
fn events_during_a_relist_wait_for_its_end() {
    let (mut cluster, _store) = synced_cluster();
    cluster.event(Watched::Services, Event::Init);
    cluster.event(
        Watched::Services,
        Event::InitApply(service("web", "10.96.0.9")),
    );
    // Nothing changes until the list is complete: `web` is neither deleted nor changed
    // meanwhile.
    assert!(cluster.updates(false).is_empty());
    cluster.event(Watched::Services, Event::InitDone);
    assert_eq!(cluster.updates(false).len(), 1);
}

#[test]
fn a_malformed_object_is_reported_by_kind_and_name_and_its_last_good_stays() {
    let (mut cluster, mut store) = synced_cluster();
    let mut bad = service("web", "10.96.0.1");
    bad.body["spec"]["ports"][0]["port"] = json!("eighty");
    cluster.event(Watched::Services, Event::Apply(bad));
    let changes = store.apply(cluster.updates(false));
    let message = changes.errors[0].to_string();
    assert!(
        message.contains("Service shop/web") && message.contains("spec.ports[0].port"),
        "{message}"
    );
    assert_eq!(
        endpoints(&store, "web").len(),
        2,
        "the last good entry stays"
    );

    // A malformed Istio object, decoded as a file's document is: named, the others apply.
    let vs = |name: &str, weight: serde_json::Value| {
        object(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"hosts": ["web"], "http": [{"route": [
                {"destination": {"host": "web"}, "weight": weight}]}]}
        }))
    };
    let watched = Watched::Istio(Kind::VirtualService);
    cluster.event(watched, Event::Apply(vs("good", json!(100))));
    cluster.event(watched, Event::Apply(vs("bad", json!("all"))));
    let changes = store.apply(cluster.updates(false));
    let upserted: Vec<String> = changes.upserted.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(upserted, ["VirtualService shop/good"]);
    let message = changes.errors[0].to_string();
    assert!(
        message.contains("kubernetes:VirtualService/shop/bad")
            && message.contains("VirtualService shop/bad")
            && message.contains("weight"),
        "{message}"
    );
}

#[test]
fn deleting_a_slice_takes_its_endpoints_and_its_pods_index() {
    let (mut cluster, mut store) = synced_cluster();
    cluster.event(
        Watched::EndpointSlices,
        Event::Delete(slice("web-1", "web", &[])),
    );
    store.apply(cluster.updates(false));
    assert!(endpoints(&store, "web").is_empty());
    // The pods no longer belong to the service: their label changes write nothing.
    cluster.event(Watched::Pods, Event::Apply(pod("web-a", "v9")));
    assert!(cluster.updates(false).is_empty());
}

#[test]
fn events_that_change_nothing_read_start_no_pass() {
    let (mut cluster, _store) = synced_cluster();
    assert!(cluster.first_unread().is_none());
    // A pod's status changes (its labels do not); a Service and a slice come again as they
    // were, with new resource versions; a whole relist of the same objects.
    let mut running = pod("web-a", "v1");
    running.body["status"] = json!({"phase": "Running"});
    running.meta.resource_version = Some("999".into());
    cluster.event(Watched::Pods, Event::Apply(running));
    let mut again = service("web", "10.96.0.1");
    again.meta.resource_version = Some("1000".into());
    cluster.event(Watched::Services, Event::Apply(again));
    cluster.event(
        Watched::EndpointSlices,
        Event::Apply(slice(
            "web-1",
            "web",
            &[("10.244.0.1", "web-a"), ("10.244.0.2", "web-b")],
        )),
    );
    list(
        &mut cluster,
        Watched::Services,
        vec![service("web", "10.96.0.1")],
    );
    assert!(cluster.first_unread().is_none(), "no pass is due");
    assert!(cluster.updates(false).is_empty());
}

#[test]
fn a_pod_known_to_a_slice_and_to_the_pod_watch_is_counted_once_and_leaves_with_both() {
    let (mut cluster, mut store) = synced_cluster();
    let pods = |cluster: &Cluster| cluster.counts()[2].1;
    assert_eq!(pods(&cluster), 2);
    // The pod goes while its slice still names it: its endpoint stays, without labels.
    cluster.event(Watched::Pods, Event::Delete(pod("web-b", "v2")));
    assert_eq!(pods(&cluster), 1);
    store.apply(cluster.updates(false));
    assert_eq!(
        endpoints(&store, "web")[1],
        ("10.244.0.2".into(), "-".into())
    );
    // It comes back (a relist): its labels apply again, counted once.
    list(
        &mut cluster,
        Watched::Pods,
        vec![pod("web-a", "v1"), pod("web-b", "v4")],
    );
    assert_eq!(pods(&cluster), 2);
    store.apply(cluster.updates(false));
    assert_eq!(
        endpoints(&store, "web")[1],
        ("10.244.0.2".into(), "v4".into())
    );
    // With the slice and the pods gone, nothing of them is left.
    cluster.event(
        Watched::EndpointSlices,
        Event::Delete(slice("web-1", "web", &[])),
    );
    list(&mut cluster, Watched::Pods, Vec::new());
    assert_eq!(pods(&cluster), 0);
    assert!(
        cluster.pods.is_empty(),
        "no entry outlives its pod and its slices"
    );
}

#[test]
fn pods_with_the_same_labels_share_one_copy_and_gone_ones_are_forgotten() {
    let mut cluster = Cluster::new("cluster.local");
    // A ReplicaSet's pods: the same labels; 100 of them, then all gone.
    let pods: Vec<Object> = (0..100).map(|i| pod(&format!("web-{i}"), "v1")).collect();
    list(&mut cluster, Watched::Pods, pods);
    let labels = |cluster: &Cluster, name: &str| {
        let key = ObjectKey::new("shop", name);
        cluster.pods[&key].labels.clone().expect("listed")
    };
    let first = labels(&cluster, "web-0");
    // The table, 100 pods and `first`.
    assert_eq!(first.holders(), 102);
    assert_eq!(cluster.label_sets.len(), 1);
    drop(first);
    // Pods with labels of their own each come and go: the table does not keep their sets.
    for i in 0..200 {
        let name = format!("once-{i}");
        cluster.event(Watched::Pods, Event::Apply(pod(&name, &format!("v{i}"))));
        cluster.event(Watched::Pods, Event::Delete(pod(&name, &format!("v{i}"))));
    }
    assert!(
        cluster.label_sets.len() < 60,
        "{} sets kept for 200 pods that are gone",
        cluster.label_sets.len()
    );
    assert_eq!(labels(&cluster, "web-99").holders(), 102);
}
