//! A rejected resource changes nothing: the services it would define or route keep their
//! state from the last good plan.

use super::*;

fn canary(subsets: (&str, &str)) -> String {
    reviews_vs(&format!(
        "  http:
  - route:
    - {{destination: {{host: reviews, subset: {}}}, weight: 80}}
    - {{destination: {{host: reviews, subset: {}}}, weight: 20}}
",
        subsets.0, subsets.1
    ))
}

/// The canary with a weight Istio rejects.
fn bad_canary() -> String {
    canary(("v1", "v2")).replace("weight: 20", "weight: -20")
}

#[test]
fn a_rejected_virtual_service_keeps_the_last_good_routes() {
    let a = compile_ok(&canary(("v1", "v2")));
    let good = backends(&a, "10.0.0.1", 9080);
    assert_eq!(version_share(&good, 2), 200_000);

    let (b, _) = compile_after(&bad_canary(), &a.plan);
    let message = single_error(
        &b,
        "VirtualService default/reviews",
        "spec.http[0].route[1].weight",
    );
    assert!(message.contains("must not be negative"), "{message}");
    assert_eq!(backends(&b, "10.0.0.1", 9080), good);
    assert_eq!(b.plan, a.plan);
    assert_eq!(b.kept, [key("10.0.0.1", 9080, Protocol::Tcp)]);
    assert!(
        has_note(
            &b,
            "kept last good state for 10.0.0.1:9080/TCP: VirtualService default/reviews was rejected"
        ),
        "{:?}",
        b.notes
    );

    // Fixed, it applies again.
    let c = compile_ok(&canary(("v1", "v3")));
    let (c2, _) = compile_after(&canary(("v1", "v3")), &b.plan);
    assert_eq!(c2.plan, c.plan);
    assert!(c2.kept.is_empty());
}

fn version_share(list: &[(String, u32)], n: u8) -> u32 {
    let prefix = format!("10.1.{n}.");
    list.iter()
        .filter(|(a, _)| a.starts_with(&prefix))
        .map(|(_, w)| w)
        .sum()
}

#[test]
fn a_rejected_virtual_service_on_first_load_is_as_if_absent() {
    let (compiled, _) = compile_text(&bad_canary());
    assert_eq!(compiled.errors.len(), 1);
    assert!(compiled.kept.is_empty());
    assert_eq!(route(&compiled, "10.0.0.1", 9080), None);
    assert_eq!(backends(&compiled, "10.0.0.1", 9080).len(), 7);
}

#[test]
fn a_malformed_service_entry_keeps_its_vips() {
    let two = format!(
        "{}{}",
        canary(("v1", "v2")),
        service_entry("web", GOOD_SPEC)
    );
    let a = compile_ok(&two);
    assert_eq!(a.plan.len(), 2);

    // An endpoint that is not an IP rejects the reviews entry.
    let bad = two.replace("address: 10.1.1.2,", "address: reviews-1.local,");
    let (b, _) = compile_after(&bad, &a.plan);
    // One for the entry, one for each of the VirtualService's destinations.
    assert_eq!(b.errors.len(), 3, "{:#?}", b.errors);
    assert_eq!(
        b.errors[0].field.as_deref(),
        Some("spec.endpoints[1].address")
    );
    assert_eq!(
        b.errors[0].resource().as_deref(),
        Some("ServiceEntry default/reviews")
    );
    // The VirtualService now routes to an unknown host, and says why.
    assert!(
        b.errors[1]
            .message()
            .contains("(ServiceEntry default/reviews has it but was rejected)"),
        "{:#?}",
        b.errors
    );
    assert_eq!(b.plan, a.plan);
    assert_eq!(b.kept, [key("10.0.0.1", 9080, Protocol::Tcp)]);

    // Without a last good state, the rejected entry's services are simply absent.
    let (d, _) = compile_text(&bad);
    assert!(d.plan.get(ip("10.0.0.1"), 9080, Protocol::Tcp).is_none());
    assert!(d.plan.get(ip("10.0.0.1"), 80, Protocol::Tcp).is_some());
}

#[test]
fn a_removed_service_entry_is_gone() {
    let a = compile_ok(&format!("{REVIEWS}{}", service_entry("web", GOOD_SPEC)));
    let (b, _) = compile_after(REVIEWS, &a.plan);
    assert!(b.errors.is_empty());
    assert_eq!(b.plan.len(), 1);
    assert!(b.kept.is_empty());
}

#[test]
fn a_rejected_destination_rule_keeps_the_services_it_shapes() {
    let a = compile_ok(&canary(("v1", "v2")));
    let bad = canary(("v1", "v2")).replace(
        "  host: reviews\n",
        "  host: reviews\n  trafficPolicy: {loadBalancer: {simple: FASTEST}}\n",
    );
    let (b, _) = compile_after(&bad, &a.plan);
    assert_eq!(
        b.errors[0].resource().as_deref(),
        Some("DestinationRule default/reviews")
    );
    assert!(
        b.errors.iter().any(|e| e
            .message()
            .contains("(DestinationRule default/reviews for this host was rejected)")),
        "{:#?}",
        b.errors
    );
    assert_eq!(b.plan, a.plan);
    assert_eq!(b.kept.len(), 1);
}

#[test]
fn a_new_service_entry_cannot_take_a_kept_vip() {
    let a = compile_ok(&service_entry("web", GOOD_SPEC));
    let text = format!(
        "{}{}",
        service_entry(
            "web",
            &GOOD_SPEC.replace("address: 10.1.0.2", "address: nope")
        ),
        service_entry(
            "other",
            &GOOD_SPEC.replace("web.example.com", "other.example.com")
        ),
    );
    let (b, _) = compile_after(&text, &a.plan);
    assert_eq!(b.errors.len(), 2, "{:#?}", b.errors);
    assert!(
        b.errors[1]
            .message()
            .contains("already claimed by ServiceEntry default/web"),
        "{:#?}",
        b.errors
    );
    assert_eq!(b.plan, a.plan);
}
