//! End-to-end tests of the compiler: YAML text in, plan, errors and notes out.

mod bookinfo;
mod delegates;
mod destination_rules;
mod dns;
mod examples;
mod fuzz_regressions;
mod hosts;
mod http_rules;
mod incremental;
mod last_good;
mod locality;
mod passthrough;
mod routes;
mod service_entries;
mod tls_routes;

pub(crate) use std::net::IpAddr;

use super::*;
use vsteer_model::parse::{Parsed, parse_str};
use vsteer_plan::{Decision, Protocol, ServicePlan, WEIGHT_SCALE};

/// Parses `text` as file `t.yaml` and compiles it from scratch; parse and compile errors
/// together.
fn compile_text(text: &str) -> (Compiled, Parsed) {
    compile_after(text, &Plan::default())
}

/// Like [`compile_text`], with `last_good` as the plan in force.
fn compile_after(text: &str, last_good: &Plan) -> (Compiled, Parsed) {
    let loaded = parse_str("t.yaml", text);
    let mut compiled = compile(&loaded.resources, last_good);
    let mut errors = loaded.errors.clone();
    errors.append(&mut compiled.errors);
    compiled.errors = errors;
    (compiled, loaded)
}

/// Compiles `text`, which must have no errors.
fn compile_ok(text: &str) -> Compiled {
    let (compiled, _) = compile_text(text);
    assert!(compiled.errors.is_empty(), "{:#?}", compiled.errors);
    compiled
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A ServiceEntry named `name` with the given spec lines (indented under `spec:`).
fn service_entry(name: &str, spec: &str) -> String {
    resource("ServiceEntry", name, spec)
}

/// A resource of `kind` named `name` (a `namespace/name` sets the namespace), with the given
/// spec lines (indented under `spec:`).
fn resource(kind: &str, name: &str, spec: &str) -> String {
    let metadata = match name.split_once('/') {
        Some((namespace, name)) => format!("  name: {name}\n  namespace: {namespace}"),
        None => format!("  name: {name}"),
    };
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: {kind}\nmetadata:\n{metadata}\nspec:\n{spec}"
    )
}

const GOOD_SPEC: &str = "  hosts: [web.example.com]
  addresses: [10.0.0.1]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  resolution: STATIC
  endpoints:
  - address: 10.1.0.1
  - address: 10.1.0.2
";

/// `reviews.default.svc.cluster.local` at 10.0.0.1:9080 (HTTP) with six endpoints: two per
/// version v1, v2, v3; and a DestinationRule naming the versions as subsets.
const REVIEWS: &str = "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews.default.svc.cluster.local]
  addresses: [10.0.0.1]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 10.1.1.1, labels: {version: v1}}
  - {address: 10.1.1.2, labels: {version: v1}}
  - {address: 10.1.2.1, labels: {version: v2}}
  - {address: 10.1.2.2, labels: {version: v2}}
  - {address: 10.1.3.1, labels: {version: v3}}
  - {address: 10.1.3.2, labels: {version: v3}}
  - {address: 10.1.3.3, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
";

/// A VirtualService `reviews` for host `reviews` with the given rules (indented under
/// `spec:`).
fn reviews_vs(rules: &str) -> String {
    format!(
        "{REVIEWS}{}",
        resource(
            "VirtualService",
            "reviews",
            &format!("  hosts: [reviews]\n{rules}")
        )
    )
}

/// The backends of a service as (`address:port`, weight), asserting the weights' sum.
fn backends(compiled: &Compiled, vip: &str, port: u16) -> Vec<(String, u32)> {
    let service = compiled
        .plan
        .get(ip(vip), port, Protocol::Tcp)
        .unwrap_or_else(|| panic!("no service {vip}:{port} in {:#?}", compiled.plan));
    let list: Vec<(String, u32)> = service
        .backends
        .iter()
        .map(|b| {
            (
                std::net::SocketAddr::new(b.address, b.port).to_string(),
                b.weight,
            )
        })
        .collect();
    let sum: u32 = list.iter().map(|(_, w)| w).sum();
    assert!(
        list.is_empty() || sum == WEIGHT_SCALE,
        "weights sum to {sum}: {list:?}"
    );
    list
}

/// The route of a service.
fn route(compiled: &Compiled, vip: &str, port: u16) -> Option<String> {
    compiled
        .plan
        .get(ip(vip), port, Protocol::Tcp)
        .and_then(|s| s.route.as_ref().map(ToString::to_string))
}

fn has_note(compiled: &Compiled, part: &str) -> bool {
    compiled.notes.iter().any(|n| n.contains(part))
}

/// Asserts exactly one error, naming file, resource and field; returns its message.
fn single_error(compiled: &Compiled, resource: &str, field: &str) -> String {
    assert_eq!(compiled.errors.len(), 1, "{:#?}", compiled.errors);
    let error = &compiled.errors[0];
    assert_eq!(&*error.file, "t.yaml");
    assert_eq!(error.resource().as_deref(), Some(resource));
    assert_eq!(error.field.as_deref(), Some(field));
    error.message()
}

/// (address:port, weight) pairs to compare with [`backends`].
fn expect(pairs: &[(&str, u32)]) -> Vec<(String, u32)> {
    pairs.iter().map(|&(a, w)| (a.to_string(), w)).collect()
}

/// The plan's services, in key order.
fn services(plan: &Plan) -> Vec<&ServicePlan> {
    plan.services().collect()
}

fn key(vip: &str, port: u16, protocol: Protocol) -> ServiceKey {
    ServiceKey::new(ip(vip), port, protocol)
}

/// Subset names as plain strings, to compare with literals.
fn names(subsets: &[std::sync::Arc<str>]) -> Vec<&str> {
    subsets.iter().map(|s| &**s).collect()
}
