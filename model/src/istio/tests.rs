//! The model reads Istio's own examples, in YAML and in the Kubernetes JSON form.

use super::*;
use crate::resource::ResourceSpec;
use crate::yaml::from_str;

/// The Kubernetes JSON form of a spec must read into the same types as the YAML form.
#[test]
fn string_match_reads_from_a_mapping() {
    let m: StringMatch = from_str("exact: jason").unwrap();
    assert_eq!(m, StringMatch::Exact("jason".into()));
    let any: StringMatch = from_str("{}").unwrap();
    assert_eq!(any, StringMatch::Any);
    let both: Result<StringMatch, _> = from_str("{exact: a, prefix: b}");
    assert!(both.unwrap_err().to_string().contains("only one of"));
}

/// The VirtualService and DestinationRule of Istio's traffic-management overview.
const SEED: &str = "apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination:
        host: reviews
        subset: v3
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      consistentHash: {useSourceIp: true}
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
    trafficPolicy:
      loadBalancer:
        simple: ROUND_ROBIN
  - name: v3
    labels:
      version: v3
";

#[test]
fn seed_example_reads_into_the_typed_model() {
    let loaded = crate::parse::parse_str("seed.yaml", SEED);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let [vs, dr] = loaded.resources.as_slice() else {
        panic!("expected two resources, got {:?}", loaded.resources);
    };

    assert_eq!(vs.id.to_string(), "VirtualService default/reviews");
    assert_eq!(&*vs.api_version, "networking.istio.io/v1alpha3");
    let ResourceSpec::VirtualService(vs) = &vs.spec else {
        panic!("not a VirtualService");
    };
    assert_eq!(vs.hosts, ["reviews"]);
    assert_eq!(vs.http.len(), 2);
    let first = &vs.http[0];
    assert_eq!(first.matches.len(), 1);
    assert_eq!(
        first.matches[0].headers.get("end-user"),
        Some(&StringMatch::Exact("jason".into()))
    );
    assert_eq!(first.route.len(), 1);
    assert_eq!(first.route[0].destination.host, "reviews");
    assert_eq!(first.route[0].destination.subset.as_deref(), Some("v2"));
    let second = &vs.http[1];
    assert!(second.matches.is_empty(), "the default rule matches all");
    assert_eq!(second.route[0].destination.subset.as_deref(), Some("v3"));

    assert_eq!(dr.id.to_string(), "DestinationRule default/reviews");
    let ResourceSpec::DestinationRule(dr) = &dr.spec else {
        panic!("not a DestinationRule");
    };
    assert_eq!(dr.host, "reviews");
    let subsets: Vec<_> = dr
        .subsets
        .iter()
        .map(|s| (&*s.name, s.labels.get("version")))
        .collect();
    assert_eq!(
        subsets,
        [("v1", Some("v1")), ("v2", Some("v2")), ("v3", Some("v3"))]
    );
    assert!(dr.subsets.iter().all(|s| s.labels.len() == 1));
    let lb = dr
        .traffic_policy
        .as_ref()
        .and_then(|p| p.load_balancer.as_ref());
    assert_eq!(
        lb.and_then(|lb| lb.consistent_hash.as_ref())
            .and_then(|h| h.use_source_ip),
        Some(true)
    );
    assert_eq!(
        dr.subsets[1]
            .traffic_policy
            .as_ref()
            .and_then(|p| p.load_balancer.as_ref())
            .and_then(|lb| lb.simple.as_deref()),
        Some("ROUND_ROBIN")
    );
}

/// A Kubernetes source will hand over JSON; the same types must read it (YAML reads
/// JSON text as YAML, so this needs no JSON crate).
#[test]
fn specs_read_from_kubernetes_json_too() {
    let json = r#"{"hosts":["reviews"],"tcp":[{"match":[{"port":9080,"destinationSubnets":["10.0.0.0/8"]}],"route":[{"destination":{"host":"reviews","subset":"v1","port":{"number":9080}},"weight":100}]}],"http":[{"match":[{"uri":{"prefix":"/api"}}],"route":[{"destination":{"host":"reviews"}}],"timeout":"5s","retries":{"attempts":3}}]}"#;
    let vs: VirtualServiceSpec = from_str(json).unwrap();
    assert_eq!(vs.tcp[0].matches[0].port, Some(9080));
    assert_eq!(vs.tcp[0].route[0].weight, Some(100));
    assert_eq!(
        vs.tcp[0].route[0].destination.port,
        Some(PortSelector { number: 9080 })
    );
    assert_eq!(
        vs.http[0].matches[0].uri,
        Some(StringMatch::Prefix("/api".into()))
    );
    assert_eq!(vs.http[0].timeout.as_deref(), Some("5s"));
    assert!(vs.http[0].retries.is_some());
}

/// kubectl reads YAML 1.1, where unquoted `yes`, `on`, `no`, `off` are booleans: every
/// boolean field of the model reads them so (here one of each struct that has one).
#[test]
fn boolean_fields_read_kubectls_yaml_1_1_words() {
    let rule: DestinationRuleSpec = from_str(
        "host: reviews
trafficPolicy:
  loadBalancer: {consistentHash: {useSourceIp: yes}}
  connectionPool: {http: {useClientProtocol: on}}
  outlierDetection: {splitExternalLocalOriginErrors: no}
",
    )
    .unwrap();
    let policy = rule.traffic_policy.unwrap();
    let hash = policy.load_balancer.unwrap().consistent_hash.unwrap();
    assert_eq!(hash.use_source_ip, Some(true));
    let pool = policy.connection_pool.unwrap().http.unwrap();
    assert_eq!(pool.use_client_protocol, Some(true));
    let outlier = policy.outlier_detection.unwrap();
    assert_eq!(outlier.split_external_local_origin_errors, Some(false));

    let vs: VirtualServiceSpec = from_str(
        "hosts: [reviews]
http:
- match: [{uri: {prefix: /A}, ignoreUriCase: Yes}]
  retries: {attempts: 2, retryRemoteLocalities: off, retryIgnorePreviousHosts: y}
  corsPolicy: {allowCredentials: NO}
  route: [{destination: {host: reviews}}]
",
    )
    .unwrap();
    let http = &vs.http[0];
    assert!(http.matches[0].ignore_uri_case);
    let retries = http.retries.as_ref().unwrap();
    assert_eq!(retries.retry_remote_localities, Some(false));
    assert_eq!(retries.retry_ignore_previous_hosts, Some(true));
    assert_eq!(
        http.cors_policy.as_ref().unwrap().allow_credentials,
        Some(false)
    );
}

/// Every field of the current istio/api protos for the three kinds (`testdata/all-fields.yaml`,
/// one use of each field of every message reachable from their specs, each oneof branch
/// somewhere) is known: served, noted, or read; never "unknown field". A field Istio removed
/// still is.
#[test]
fn every_field_of_the_current_protos_is_known() {
    let parsed =
        crate::parse::parse_str("all-fields.yaml", include_str!("testdata/all-fields.yaml"));
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    assert_eq!(parsed.resources.len(), 3);
    let unknown: Vec<String> = parsed.warnings.iter().map(ToString::to_string).collect();
    assert!(unknown.is_empty(), "{unknown:#?}");

    let removed = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: old}
spec:
  hosts: [a]
  http:
  - websocketUpgrade: true
    route: [{destination: {host: a}}]
";
    let parsed = crate::parse::parse_str("old.yaml", removed);
    let warnings: Vec<String> = parsed.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("spec.http[0].websocketUpgrade: unknown field"),
        "{warnings:?}"
    );
}
