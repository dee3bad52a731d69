//! Which services a VirtualService covers, by the forms of host Istio allows.

use super::*;

/// `api` and `web` under example.com (10.0.0.1 and 10.0.0.2), and
/// `reviews.shop.svc.cluster.local` at 10.0.0.3 and 10.0.0.4; TCP port 80, one endpoint
/// each.
const HOSTS: &str = "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  addresses: [10.0.0.1]
  ports: [{number: 80, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 10.9.0.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web}
spec:
  hosts: [web.example.com]
  addresses: [10.0.0.2]
  ports: [{number: 80, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 10.9.0.2}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  addresses: [10.0.0.3, 10.0.0.4]
  ports: [{number: 80, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 10.9.0.3}]
";

/// A VirtualService `name` (may be `namespace/name`) for `hosts`, sending everything to
/// `to` (a host as written in the rule).
fn vs(name: &str, hosts: &str, to: &str) -> String {
    resource(
        "VirtualService",
        name,
        &format!("  hosts: {hosts}\n  tcp:\n  - route: [{{destination: {{host: {to}}}}}]\n"),
    )
}

/// Where each VIP's connections go (the first backend address), in VIP order.
fn targets(compiled: &Compiled) -> Vec<String> {
    compiled
        .plan
        .services()
        .map(|s| format!("{} -> {}", s.key.vip, s.backends[0].address))
        .collect()
}

#[test]
fn short_names_resolve_in_the_namespace_of_the_rule() {
    // In `shop`, `reviews` is reviews.shop.svc.cluster.local; the destination `web` would
    // be web.shop.svc.cluster.local, so it is written in full.
    let compiled = compile_ok(&format!(
        "{HOSTS}{}",
        vs("shop/r", "[reviews]", "web.example.com")
    ));
    assert_eq!(
        targets(&compiled),
        [
            "10.0.0.1 -> 10.9.0.1",
            "10.0.0.2 -> 10.9.0.2",
            "10.0.0.3 -> 10.9.0.2",
            "10.0.0.4 -> 10.9.0.2"
        ]
    );
    assert_eq!(
        route(&compiled, "10.0.0.3", 80).as_deref(),
        Some("VirtualService shop/r tcp[0]")
    );

    // In `default`, `reviews` names another host, which no ServiceEntry has.
    let compiled = compile_ok(&format!(
        "{HOSTS}{}",
        vs("r", "[reviews]", "web.example.com")
    ));
    assert_eq!(route(&compiled, "10.0.0.3", 80), None);
    assert!(
        has_note(&compiled, "match no ServiceEntry service"),
        "{:?}",
        compiled.notes
    );

    // A short destination host resolves in the rule's namespace too.
    let (compiled, _) = compile_text(&format!("{HOSTS}{}", vs("r", "[api.example.com]", "web")));
    let message = single_error(
        &compiled,
        "VirtualService default/r",
        "spec.tcp[0].route[0].destination.host",
    );
    assert!(
        message.contains("unknown host web.default.svc.cluster.local"),
        "{message}"
    );
}

#[test]
fn fqdn_host_covers_only_that_host() {
    let compiled = compile_ok(&format!(
        "{HOSTS}{}",
        vs("r", "[api.example.com]", "web.example.com")
    ));
    assert_eq!(
        targets(&compiled),
        [
            "10.0.0.1 -> 10.9.0.2",
            "10.0.0.2 -> 10.9.0.2",
            "10.0.0.3 -> 10.9.0.3",
            "10.0.0.4 -> 10.9.0.3"
        ]
    );
}

#[test]
fn wildcard_host_covers_the_suffix_and_an_exact_host_beats_it() {
    let all = vs("all", "['*.example.com']", "reviews.shop.svc.cluster.local");
    let compiled = compile_ok(&format!("{HOSTS}{all}"));
    assert_eq!(
        targets(&compiled),
        [
            "10.0.0.1 -> 10.9.0.3",
            "10.0.0.2 -> 10.9.0.3",
            "10.0.0.3 -> 10.9.0.3",
            "10.0.0.4 -> 10.9.0.3"
        ]
    );

    // The exact host wins for web even though the wildcard comes first.
    let exact = vs("web", "[web.example.com]", "api.example.com");
    let compiled = compile_ok(&format!("{HOSTS}{all}{exact}"));
    assert_eq!(
        targets(&compiled)[..2],
        ["10.0.0.1 -> 10.9.0.3", "10.0.0.2 -> 10.9.0.1"]
    );
    assert!(
        has_note(
            &compiled,
            "VirtualService default/all: also covers 10.0.0.2:80/TCP, but VirtualService default/web applies"
        ),
        "{:?}",
        compiled.notes
    );
}

#[test]
fn ip_host_covers_that_vip_only() {
    let compiled = compile_ok(&format!(
        "{HOSTS}{}",
        vs("r", "[10.0.0.4]", "api.example.com")
    ));
    assert_eq!(
        targets(&compiled),
        [
            "10.0.0.1 -> 10.9.0.1",
            "10.0.0.2 -> 10.9.0.2",
            "10.0.0.3 -> 10.9.0.3",
            "10.0.0.4 -> 10.9.0.1"
        ]
    );
}

#[test]
fn the_catch_all_host_is_rejected_for_the_mesh() {
    let (compiled, _) = compile_text(&format!("{HOSTS}{}", vs("r", "['*']", "api.example.com")));
    let message = single_error(&compiled, "VirtualService default/r", "spec.hosts[0]");
    assert!(message.contains("not allowed"), "{message}");
}

/// Istio shows a resource only to the namespaces its `exportTo` lists. vsteer does not know
/// client namespaces yet: the resource applies to every client, and a note names each one
/// whose `exportTo` restricts it (never silently).
#[test]
fn a_restricting_export_to_applies_to_every_client_with_a_note() {
    let entry = REVIEWS.replace(
        "metadata: {name: reviews}\nspec:\n  hosts",
        "metadata: {name: reviews}\nspec:\n  exportTo: [\"*\"]\n  hosts",
    );
    let vs = resource(
        "VirtualService",
        "other/reviews",
        "  hosts: [reviews.default.svc.cluster.local]
  exportTo: [\".\"]
  http:
  - route: [{destination: {host: reviews.default.svc.cluster.local, subset: v2}}]
",
    );
    let rule = resource(
        "DestinationRule",
        "other/reviews",
        "  host: reviews.default.svc.cluster.local\n  exportTo: [\"~\"]\n",
    );
    let compiled = compile_ok(&format!("{entry}{vs}{rule}"));
    assert_eq!(
        backends(&compiled, "10.0.0.1", 9080),
        expect(&[("10.1.2.1:9080", 500_000), ("10.1.2.2:9080", 500_000)])
    );
    let export_notes: Vec<&String> = compiled
        .notes
        .iter()
        .filter(|n| n.contains("exportTo"))
        .collect();
    assert_eq!(export_notes.len(), 2, "{:#?}", compiled.notes);
    assert!(
        has_note(
            &compiled,
            "VirtualService other/reviews: exportTo [.] shows it to clients in namespace(s) \
             other in Istio; vsteer does not know client namespaces yet and applies it to \
             every client"
        ),
        "{:#?}",
        compiled.notes
    );
    assert!(has_note(
        &compiled,
        "DestinationRule other/reviews: exportTo [~] shows it to no client"
    ));
}
