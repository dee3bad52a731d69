//! Services and EndpointSlices as `kubectl get -o json` prints them, read as Istio's registry
//! reads them.

use serde_json::json;
use vsteer_model::ResourceSpec;

use super::*;
use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;

fn service(value: serde_json::Value) -> ServiceRecord {
    ServiceRecord::from(serde_json::from_value::<Service>(value).expect("a Service"))
}

fn slice(value: serde_json::Value) -> SliceRecord {
    SliceRecord::from(serde_json::from_value::<EndpointSlice>(value).expect("an EndpointSlice"))
}

fn reviews() -> ServiceRecord {
    service(reviews_object())
}

fn reviews_object() -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "reviews", "namespace": "bookinfo",
                     "creationTimestamp": "2026-11-30T10:00:00Z"},
        "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                 "ports": [{"name": "http", "port": 9080, "protocol": "TCP", "targetPort": 9080}],
                 "selector": {"app": "reviews"}, "type": "ClusterIP"}
    })
}

fn endpoint(ip: &str, pod: &str, conditions: serde_json::Value) -> serde_json::Value {
    json!({"addresses": [ip], "conditions": conditions,
           "targetRef": {"kind": "Pod", "name": pod, "namespace": "bookinfo"}})
}

fn reviews_slice(endpoints: Vec<serde_json::Value>) -> SliceRecord {
    slice(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "reviews-abcde", "namespace": "bookinfo",
                     "labels": {"kubernetes.io/service-name": "reviews"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 9080, "protocol": "TCP"}],
        "endpoints": endpoints
    }))
}

fn versions(key: &ObjectKey) -> Option<Labels> {
    let version = key.name.strip_prefix("reviews-")?;
    Some(Labels::from_iter([
        ("app", "reviews"),
        ("version", version),
    ]))
}

fn entry(parsed: &Parsed) -> &ServiceEntrySpec {
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    match &parsed.resources[..] {
        [resource] => match &resource.spec {
            ResourceSpec::ServiceEntry(spec) => spec,
            other => panic!("not an entry: {other:?}"),
        },
        other => panic!("one resource expected: {other:?}"),
    }
}

fn ready() -> serde_json::Value {
    json!({"ready": true, "serving": true, "terminating": false})
}

#[test]
fn a_service_with_its_slice_and_pods_is_an_entry_with_labelled_endpoints() {
    let slice = reviews_slice(vec![
        endpoint("10.244.1.5", "reviews-v1", ready()),
        endpoint("10.244.1.6", "reviews-v2", ready()),
        endpoint("10.244.1.7", "reviews-v3", json!({})),
    ]);
    let parsed = service_entry(&reviews(), [&slice], versions, "cluster.local");
    let resource = &parsed.resources[0];
    assert_eq!(resource.id.to_string(), "Service bookinfo/reviews");
    assert_eq!(
        &*resource.origin.file,
        "kubernetes:Service/bookinfo/reviews"
    );
    let spec = entry(&parsed);
    assert_eq!(spec.hosts, ["reviews.bookinfo.svc.cluster.local"]);
    assert_eq!(spec.addresses, ["10.96.0.20"]);
    assert_eq!(spec.ports.len(), 1);
    assert_eq!(
        (spec.ports[0].number, &*spec.ports[0].protocol),
        (9080, "HTTP")
    );
    let found: Vec<(&str, Option<&str>)> = spec
        .endpoints
        .iter()
        .map(|e| (&*e.address, e.labels.get("version")))
        .collect();
    // Unset conditions are ready, as the API defines them.
    assert_eq!(
        found,
        [
            ("10.244.1.5", Some("v1")),
            ("10.244.1.6", Some("v2")),
            ("10.244.1.7", Some("v3"))
        ]
    );
    assert_eq!(
        spec.endpoints[0].ports,
        SmallMap::from_iter([("http", 9080)])
    );
}

#[test]
fn terminating_endpoints_serve_only_when_none_is_ready() {
    let terminating = json!({"ready": false, "serving": true, "terminating": true});
    let not_ready = json!({"ready": false, "serving": false, "terminating": false});
    let mixed = reviews_slice(vec![
        endpoint("10.244.1.5", "reviews-v1", ready()),
        endpoint("10.244.1.6", "reviews-v2", terminating.clone()),
        endpoint("10.244.1.7", "reviews-v3", not_ready.clone()),
    ]);
    let addresses = |slice: &SliceRecord| -> Vec<String> {
        let parsed = service_entry(&reviews(), [slice], versions, "cluster.local");
        entry(&parsed)
            .endpoints
            .iter()
            .map(|e| e.address.to_string())
            .collect()
    };
    assert_eq!(addresses(&mixed), ["10.244.1.5"]);
    let draining = reviews_slice(vec![
        endpoint("10.244.1.6", "reviews-v2", terminating),
        endpoint("10.244.1.7", "reviews-v3", not_ready),
    ]);
    assert_eq!(addresses(&draining), ["10.244.1.6"]);
    // Ready while terminating (publishNotReadyAddresses): ready, as kube-proxy has it.
    let ready_terminating = json!({"ready": true, "serving": true, "terminating": true});
    let kept = reviews_slice(vec![
        endpoint("10.244.1.5", "reviews-v1", ready()),
        endpoint("10.244.1.6", "reviews-v2", ready_terminating),
    ]);
    assert_eq!(addresses(&kept), ["10.244.1.5", "10.244.1.6"]);
}

#[test]
fn endpoints_take_the_port_their_slice_gives_for_the_port_name() {
    // targetPort "web" resolves to a different number in each slice's pods.
    let named = |name: &str, port: u16, ip: &str| {
        slice(json!({
            "metadata": {"name": name, "namespace": "bookinfo",
                         "labels": {"kubernetes.io/service-name": "reviews"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"},
                      {"name": "metrics", "port": 15020, "protocol": "TCP"}],
            "endpoints": [endpoint(ip, "reviews-v1", ready())]
        }))
    };
    let (a, b) = (
        named("a", 8080, "10.244.1.5"),
        named("b", 9090, "10.244.1.6"),
    );
    let parsed = service_entry(&reviews(), [&a, &b], versions, "cluster.local");
    let ports: Vec<_> = entry(&parsed)
        .endpoints
        .iter()
        .map(|e| e.ports.clone())
        .collect();
    // The slice's port the service does not name is not the service's.
    assert_eq!(
        ports,
        [
            SmallMap::from_iter([("http", 8080)]),
            SmallMap::from_iter([("http", 9090)])
        ]
    );
}

#[test]
fn headless_and_external_name_services_have_no_vip() {
    let mut headless = reviews();
    headless.cluster_ips = Box::from(["None".into()]);
    let slice = reviews_slice(vec![endpoint("10.244.1.5", "reviews-v1", ready())]);
    let parsed = service_entry(&headless, [&slice], versions, "cluster.local");
    let spec = entry(&parsed);
    assert!(spec.addresses.is_empty());
    assert_eq!(
        spec.endpoints.len(),
        1,
        "a headless host is still a destination"
    );

    let external = service(json!({
        "metadata": {"name": "db", "namespace": "data"},
        "spec": {"type": "ExternalName", "externalName": "db.example.com",
                 "ports": [{"port": 5432}]}
    }));
    let parsed = service_entry(&external, [&slice], versions, "cluster.local");
    let spec = entry(&parsed);
    assert!(spec.addresses.is_empty() && spec.endpoints.is_empty());
    assert_eq!(parsed.warnings.len(), 1);
    let warning = parsed.warnings[0].to_string();
    assert!(
        warning.contains("Service data/db") && warning.contains("spec.externalName"),
        "{warning}"
    );
}

#[test]
fn dual_stack_services_have_a_vip_of_each_family() {
    let mut dual = reviews();
    dual.cluster_ips = Box::from(["10.96.0.20".into(), "fd00:10:96::20".into()]);
    let parsed = service_entry(&dual, [], versions, "cluster.local");
    assert_eq!(entry(&parsed).addresses, ["10.96.0.20", "fd00:10:96::20"]);
}

#[test]
fn a_malformed_service_is_an_error_naming_it_and_its_field_and_keeps_its_last_good() {
    let mut bad = reviews();
    bad.cluster_ips = Box::from(["10.96.0.300".into()]);
    let parsed = service_entry(&bad, [], versions, "cluster.local");
    assert!(parsed.resources.is_empty());
    assert_eq!(parsed.failed.len(), 1);
    let message = parsed.errors[0].to_string();
    assert!(
        message.contains("kubernetes:Service/bookinfo/reviews")
            && message.contains("Service bookinfo/reviews")
            && message.contains("spec.clusterIPs[0]")
            && message.contains("10.96.0.300"),
        "{message}"
    );
}

#[test]
fn protocols_are_selected_as_istio_selects_them() {
    let port = |value: serde_json::Value| -> String {
        let port: ServicePort = serde_json::from_value(value).expect("a port");
        istio_protocol(&PortRecord::from(port))
    };
    assert_eq!(port(json!({"port": 80, "name": "http-web"})), "HTTP");
    assert_eq!(port(json!({"port": 80, "name": "grpc"})), "GRPC");
    assert_eq!(port(json!({"port": 80, "name": "web"})), "");
    assert_eq!(port(json!({"port": 80})), "");
    assert_eq!(
        port(json!({"port": 80, "name": "tcp-x", "appProtocol": "http2"})),
        "HTTP2"
    );
    assert_eq!(
        port(json!({"port": 80, "appProtocol": "kubernetes.io/h2c"})),
        "HTTP2"
    );
    // appProtocol replaces the name, even one Istio does not know (then it sniffs).
    assert_eq!(
        port(json!({"port": 80, "name": "https-x", "appProtocol": "example.com/x"})),
        ""
    );
    // grpc-web is one prefix, though it holds a hyphen.
    assert_eq!(port(json!({"port": 80, "name": "grpc-web-ui"})), "GRPC-Web");
    assert_eq!(port(json!({"port": 80, "name": "GRPC-api"})), "GRPC");
    assert_eq!(
        port(json!({"port": 53, "name": "dns", "protocol": "UDP"})),
        "UDP"
    );
    // Istio's well-known ports of server-first protocols are TCP, never sniffed.
    for number in [25, 53, 3306, 27017] {
        assert_eq!(port(json!({"port": number, "name": "db"})), "TCP");
    }
    assert_eq!(port(json!({"port": 3306, "name": "http-admin"})), "HTTP");
}

#[test]
fn the_export_to_annotation_limits_where_the_service_is_visible() {
    let mut value = serde_json::to_value(reviews_object()).expect("json");
    value["metadata"]["annotations"] = json!({"networking.istio.io/exportTo": ".,shop"});
    let local = service(value);
    let parsed = service_entry(&local, [], versions, "cluster.local");
    assert_eq!(entry(&parsed).export_to, [".", "shop"]);
}
