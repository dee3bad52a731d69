//! Delegate VirtualServices (VirtualService chaining): a root's `delegate` rules replaced by
//! the delegate's, merged as Istio's `MergeHTTPRoutes` does.

use super::*;
use vsteer_plan::http::{HttpAction, HttpRule, StrMatch};

/// The rules the proxy serves for reviews (10.0.0.1:9080).
fn rules(compiled: &Compiled) -> Vec<HttpRule> {
    let service = compiled
        .plan
        .get(ip("10.0.0.1"), 9080, Protocol::Tcp)
        .expect("reviews");
    service.http.as_ref().expect("a route table").rules.clone()
}

/// A rule as (name, uri matches, cluster names).
type Summary = (Option<String>, Vec<Option<StrMatch>>, Vec<String>);

/// Each rule of reviews' table, summed up.
fn summary(compiled: &Compiled) -> Vec<Summary> {
    let service = compiled
        .plan
        .get(ip("10.0.0.1"), 9080, Protocol::Tcp)
        .expect("reviews");
    let table = service.http.as_ref().expect("a route table");
    table
        .rules
        .iter()
        .map(|rule| {
            let clusters = match &rule.action {
                HttpAction::Route { destinations, .. } => destinations
                    .iter()
                    .map(|d| table.clusters[d.cluster].name.clone())
                    .collect(),
                other => panic!("{other:?}"),
            };
            let uris = rule.matches.iter().map(|m| m.uri.clone()).collect();
            (rule.name.clone(), uris, clusters)
        })
        .collect()
}

fn prefix(p: &str) -> Option<StrMatch> {
    Some(StrMatch::Prefix(p.to_string()))
}

fn exact(p: &str) -> Option<StrMatch> {
    Some(StrMatch::Exact(p.to_string()))
}

const V1: &str = "outbound|9080|v1|reviews.default.svc.cluster.local";
const V2: &str = "outbound|9080|v2|reviews.default.svc.cluster.local";
const V3: &str = "outbound|9080|v3|reviews.default.svc.cluster.local";

/// Istio's own example shape: the root names the paths, the delegate routes within them.
#[test]
fn a_delegates_rules_stand_in_the_root_merged_with_its_match_and_fields() {
    let text = format!(
        "{}{}",
        reviews_vs(
            "  http:
  - name: root
    match: [{uri: {prefix: /reviews}}]
    timeout: 5s
    delegate: {name: reviews-routes}
  - route: [{destination: {host: reviews, subset: v3}}]
"
        ),
        resource(
            "VirtualService",
            "reviews-routes",
            "  http:
  - name: jason
    match: [{uri: {prefix: /reviews/1}, headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - timeout: 1s
    route: [{destination: {host: reviews, subset: v1}}]
"
        )
    );
    let compiled = compile_ok(&text);
    assert_eq!(
        summary(&compiled),
        vec![
            (
                Some("root-jason".into()),
                vec![prefix("/reviews/1")],
                vec![V2.into()]
            ),
            // No match of its own: the root's.
            (
                Some("root".into()),
                vec![prefix("/reviews")],
                vec![V1.into()]
            ),
            (None, vec![], vec![V3.into()]),
        ]
    );
    let rules = rules(&compiled);
    // The merged match keeps the delegate's header condition.
    assert_eq!(
        rules[0].matches[0].headers,
        vec![("end-user".to_string(), StrMatch::Exact("jason".into()))]
    );
    // Unset in the delegate: the root's timeout; set: its own.
    assert_eq!(rules[0].timeout, Some(std::time::Duration::from_secs(5)));
    assert_eq!(rules[1].timeout, Some(std::time::Duration::from_secs(1)));
    assert!(has_note(
        &compiled,
        "the rules of VirtualService default/reviews-routes stand here"
    ));
    // The delegate alone applies nowhere, and is no error for lack of hosts.
    assert!(has_note(
        &compiled,
        "default/reviews-routes: no hosts: a delegate"
    ));
}

#[test]
fn a_delegate_rule_outside_the_root_match_is_dropped_and_the_rest_applies() {
    let text = format!(
        "{}{}",
        reviews_vs(
            "  http:
  - match: [{uri: {prefix: /reviews}}, {uri: {exact: /other}}]
    delegate: {name: d}
  - route: [{destination: {host: reviews, subset: v3}}]
"
        ),
        resource(
            "VirtualService",
            "d",
            "  http:
  - match: [{uri: {prefix: /ratings}}]
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {exact: /reviews/7}}, {uri: {exact: /other}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {regex: '/reviews/.*'}}]
    route: [{destination: {host: reviews, subset: v1}}]
"
        )
    );
    let compiled = compile_ok(&text);
    assert_eq!(
        summary(&compiled),
        vec![
            // Each delegate match merged with every root match it fits: /reviews/7 under
            // the prefix, /other equal to the exact one.
            (
                None,
                vec![exact("/reviews/7"), exact("/other")],
                vec![V2.into()]
            ),
            (None, vec![], vec![V3.into()]),
        ]
    );
    assert!(has_note(&compiled, "d spec.http[0]: no match of it fits"));
    // A regex never narrows another condition, in Istio's rule.
    assert!(has_note(&compiled, "d spec.http[2]: no match of it fits"));
}

#[test]
fn a_missing_delegate_a_root_target_or_one_not_exported_drops_only_that_rule() {
    for (target, setup, why) in [
        ("nowhere", String::new(), "does not exist"),
        (
            "other",
            resource(
                "VirtualService",
                "other",
                "  hosts: [other.example.com]\n  http:\n  - route: [{destination: {host: reviews}}]\n",
            ),
            "has hosts, so it is no delegate",
        ),
        (
            "shop/private",
            resource(
                "VirtualService",
                "shop/private",
                "  exportTo: ['.']\n  http:\n  - route: [{destination: {host: reviews.default.svc.cluster.local, subset: v1}}]\n",
            ),
            "is not exported to namespace default",
        ),
    ] {
        let (name, namespace) = match target.split_once('/') {
            Some((ns, name)) => (name, format!(", namespace: {ns}")),
            None => (target, String::new()),
        };
        let text = format!(
            "{}{setup}",
            reviews_vs(&format!(
                "  http:
  - match: [{{headers: {{end-user: {{exact: jason}}}}}}]
    route: [{{destination: {{host: reviews, subset: v2}}}}]
  - delegate: {{name: {name}{namespace}}}
  - route: [{{destination: {{host: reviews, subset: v3}}}}]
"
            ))
        );
        let compiled = compile_ok(&text);
        let clusters: Vec<Vec<String>> = summary(&compiled).into_iter().map(|r| r.2).collect();
        assert_eq!(
            clusters,
            vec![vec![V2.to_string()], vec![V3.to_string()]],
            "{target}"
        );
        assert!(has_note(&compiled, why), "{target}: {:#?}", compiled.notes);
    }
}

#[test]
fn a_delegate_in_another_namespace_resolves_short_names_in_its_own() {
    let text = format!(
        "{}{}{}",
        reviews_vs(
            "  http:
  - delegate: {name: routes, namespace: shop}
"
        ),
        service_entry(
            "shop/cart",
            "  hosts: [cart.shop.svc.cluster.local]
  addresses: [10.0.0.9]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.9.0.1}]
"
        ),
        resource(
            "VirtualService",
            "shop/routes",
            "  exportTo: [default]
  http:
  - route: [{destination: {host: cart}}]
"
        )
    );
    let compiled = compile_ok(&text);
    let clusters: Vec<Vec<String>> = summary(&compiled).into_iter().map(|r| r.2).collect();
    assert_eq!(
        clusters,
        vec![vec![
            "outbound|9080||cart.shop.svc.cluster.local".to_string()
        ]]
    );
}

#[test]
fn delegation_is_one_level_deep() {
    let text = format!(
        "{}{}{}",
        reviews_vs("  http:\n  - delegate: {name: first}\n"),
        resource(
            "VirtualService",
            "first",
            "  http:
  - match: [{uri: {prefix: /deeper}}]
    delegate: {name: second}
  - route: [{destination: {host: reviews, subset: v1}}]
"
        ),
        resource(
            "VirtualService",
            "second",
            "  http:\n  - route: [{destination: {host: reviews, subset: v2}}]\n"
        )
    );
    let compiled = compile_ok(&text);
    let clusters: Vec<Vec<String>> = summary(&compiled).into_iter().map(|r| r.2).collect();
    assert_eq!(clusters, vec![vec![V1.to_string()]]);
    assert!(has_note(&compiled, "first spec.http[0] delegates again"));
}

/// The merge itself, field by field, against Istio's `mergeHTTPMatchRequest` and
/// `hasConflict`.
#[test]
fn match_merging_follows_istio_field_by_field() {
    let text = format!(
        "{}{}",
        reviews_vs(
            "  http:
  - match:
    - {uri: {prefix: /api}, method: {exact: GET}, headers: {x-a: {exact: root}, x-b: {exact: root}}, ignoreUriCase: true}
    delegate: {name: d}
"
        ),
        resource(
            "VirtualService",
            "d",
            "  http:
  - match: [{uri: {prefix: /api/v2}, headers: {x-b: {exact: root}, x-c: {prefix: c}}, ignoreUriCase: true}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {prefix: /api/v1}}]
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{method: {exact: POST}, ignoreUriCase: true}]
    route: [{destination: {host: reviews, subset: v1}}]
"
        )
    );
    let compiled = compile_ok(&text);
    let rules = rules(&compiled);
    assert_eq!(rules.len(), 1, "{rules:#?}");
    let merged = &rules[0].matches[0];
    assert_eq!(merged.uri, prefix("/api/v2"));
    // Unset in the delegate: the root's method; headers joined.
    assert_eq!(merged.method, exact("GET"));
    assert!(merged.ignore_uri_case);
    let headers: Vec<&str> = merged.headers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(headers, ["x-a", "x-b", "x-c"]);
    // ignoreUriCase differs (rule 1) and GET is not POST (rule 2): both dropped.
    assert!(has_note(&compiled, "d spec.http[1]: no match of it fits"));
    assert!(has_note(&compiled, "d spec.http[2]: no match of it fits"));
}

/// A change to the delegate alone recompiles the root's service.
#[test]
fn a_change_to_a_delegate_reaches_its_roots_services() {
    let root = reviews_vs("  http:\n  - delegate: {name: d}\n");
    let delegate = |subset: &str| {
        resource(
            "VirtualService",
            "d",
            &format!(
                "  http:\n  - route: [{{destination: {{host: reviews, subset: {subset}}}}}]\n"
            ),
        )
    };
    let parse = |text: &str| {
        let parsed = parse_str("t.yaml", text);
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        parsed.resources
    };
    let mut compiler = Compiler::default();
    let changes: Vec<Change> = parse(&format!("{root}{}", delegate("v1")))
        .into_iter()
        .map(|r| (r.id.clone(), Some(Arc::new(r))))
        .collect();
    compiler.update(&changes);
    let cluster = |compiler: &Compiler| {
        let service = compiler
            .plan()
            .get(ip("10.0.0.1"), 9080, Protocol::Tcp)
            .unwrap();
        let table = service.http.as_ref().expect("a route table");
        match &table.rules[0].action {
            HttpAction::Route { destinations, .. } => {
                table.clusters[destinations[0].cluster].name.clone()
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(cluster(&compiler), V1);
    let changed: Vec<Change> = parse(&delegate("v2"))
        .into_iter()
        .map(|r| (r.id.clone(), Some(Arc::new(r))))
        .collect();
    let update = compiler.update(&changed);
    assert_eq!(update.changed, vec![key("10.0.0.1", 9080, Protocol::Tcp)]);
    assert_eq!(cluster(&compiler), V2);
    // Gone: the root's rule is dropped, as Istio drops it. A VirtualService left without
    // routes builds no virtual host in Istio, so the service's default route serves it:
    // every endpoint, in the kernel.
    let id = changed[0].0.clone();
    compiler.update(&[(id, None)]);
    let service = compiler
        .plan()
        .get(ip("10.0.0.1"), 9080, Protocol::Tcp)
        .unwrap();
    assert_eq!(service.route, None);
    assert_eq!(service.decision, Decision::Kernel);
    assert_eq!(service.backends.len(), 7);
}
