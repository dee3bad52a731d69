//! HTTP rule settings as the proxy receives them: direct response bodies, header operation
//! values, and how a rule's destinations are counted.

use super::*;
use vsteer_plan::http::{HttpAction, HttpRule};

/// The rules the proxy serves for reviews (10.0.0.1:9080).
fn rules(compiled: &Compiled) -> Vec<HttpRule> {
    let service = compiled
        .plan
        .get(ip("10.0.0.1"), 9080, Protocol::Tcp)
        .unwrap();
    service
        .http
        .as_ref()
        .expect("an HTTP route table")
        .rules
        .clone()
}

#[test]
fn direct_response_bytes_are_base64_decoded() {
    // "hello\n\u{0}" in base64, as Istio's YAML carries a proto bytes field.
    let compiled = compile_ok(&reviews_vs(
        "  http:
  - match: [{uri: {prefix: /b}}]
    directResponse: {status: 200, body: {bytes: aGVsbG8KAA==}}
  - directResponse: {status: 200, body: {string: aGVsbG8KAA==}}
",
    ));
    let rules = rules(&compiled);
    let body = |rule: &HttpRule| match &rule.action {
        HttpAction::DirectResponse { body, .. } => body.as_deref().map(<[u8]>::to_vec),
        other => panic!("{other:?}"),
    };
    assert_eq!(body(&rules[0]).as_deref(), Some(&b"hello\n\0"[..]));
    // A string body is sent as written.
    assert_eq!(body(&rules[1]).as_deref(), Some(&b"aGVsbG8KAA=="[..]));
}

#[test]
fn direct_response_bytes_that_are_not_base64_are_rejected() {
    let (compiled, _) = compile_text(&reviews_vs(
        "  http:
  - directResponse: {status: 200, body: {bytes: 'not base64!'}}
",
    ));
    let message = single_error(
        &compiled,
        "VirtualService default/reviews",
        "spec.http[0].directResponse.body.bytes",
    );
    assert!(message.contains("base64"), "{message}");
}

#[test]
fn a_rule_with_several_destinations_is_weighted_even_when_zero_weights_are_left_out() {
    let compiled = compile_ok(&reviews_vs(
        "  http:
  - match: [{uri: {prefix: /zero}}]
    route:
    - {destination: {host: reviews, subset: v1}, weight: 100}
    - {destination: {host: reviews, subset: v2}, weight: 0}
  - match: [{uri: {prefix: /single}}]
    route: [{destination: {host: reviews, subset: v1}}]
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 50}
    - {destination: {host: reviews, subset: v2}, weight: 50}
",
    ));
    let shape: Vec<(usize, bool)> = rules(&compiled)
        .iter()
        .map(|r| match &r.action {
            HttpAction::Route {
                destinations,
                weighted,
            } => (destinations.len(), *weighted),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(shape, [(1, true), (1, false), (2, true)]);
}

#[test]
fn header_values_are_envoy_formats() {
    // Known operators, %% and a literal host are fine.
    compile_ok(&reviews_vs(
        "  http:
  - headers:
      request:
        set: {x-client: '%DOWNSTREAM_REMOTE_ADDRESS%', x-pct: '100%%', host: '50%'}
      response:
        add: {x-user: '%REQ(end-user):8%', x-tls: '%DOWNSTREAM_TLS_VERSION%'}
    route: [{destination: {host: reviews, subset: v1}}]
",
    ));
    for (headers, field, what) in [
        (
            "request: {set: {x-a: '%NOT_AN_OPERATOR%'}}",
            "spec.http[0].headers.request.set[x-a]",
            "unknown command operator",
        ),
        (
            "response: {add: {x-b: '50%'}}",
            "spec.http[0].headers.response.add[x-b]",
            "a literal % is written %%",
        ),
        (
            "request: {add: {x-c: '%PROTOCOL(x)%'}}",
            "spec.http[0].headers.request.add[x-c]",
            "takes no parameters",
        ),
    ] {
        let (compiled, _) = compile_text(&reviews_vs(&format!(
            "  http:
  - headers: {{{headers}}}
    route: [{{destination: {{host: reviews, subset: v1}}}}]
"
        )));
        let message = single_error(&compiled, "VirtualService default/reviews", field);
        assert!(message.contains(what), "{message}");
    }
    // A destination's header values too.
    let (compiled, _) = compile_text(&reviews_vs(
        "  http:
  - route:
    - destination: {host: reviews, subset: v1}
      headers: {request: {set: {x-d: '%REQ%'}}}
",
    ));
    let message = single_error(
        &compiled,
        "VirtualService default/reviews",
        "spec.http[0].route[0].headers.request.set[x-d]",
    );
    assert!(message.contains("needs a parameter"), "{message}");
}
