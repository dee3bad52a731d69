//! VirtualService chaining: a root VirtualService's `http[i].delegate` stands for the HTTP
//! rules of another VirtualService, one without hosts (a delegate). Before a root is
//! compiled, each delegating rule is replaced in place by the delegate's rules merged with
//! it, as Istio's `MergeHTTPRoutes` does (pilot/pkg/model/virtualservice.go): the rest of
//! the compiler sees an ordinary VirtualService.
//!
//! Istio's rules, followed here: one level only; a missing delegate, a target with hosts,
//! or one not exported to the root's namespace drops that root rule (the rest applies); each
//! delegate rule whose matches conflict with all of the root rule's is dropped; a field the
//! delegate rule leaves unset is the root rule's; match maps are merged, the delegate's
//! value winning; short host names in the delegate resolve in the delegate's namespace.

use std::collections::BTreeMap;
use std::sync::Arc;

use vsteer_model::istio::{
    Delegate, Destination, HttpMatchRequest, HttpRoute, StringMatch, VirtualServiceSpec,
};
use vsteer_model::{Kind, Resource, ResourceId, ResourceSpec};

use crate::names::resolve_host;

/// A root with its delegating rules expanded.
pub struct Expanded {
    /// The root as the compiler reads it: the same resource when no rule delegates.
    pub resource: Arc<Resource>,
    /// Every VirtualService its rules delegate to, found or not: a change to one of them
    /// changes the root.
    pub delegates: Vec<ResourceId>,
    pub notes: Vec<String>,
}

/// Whether `spec` is a delegate: a VirtualService without hosts, which applies only
/// where a root delegates to it.
pub fn is_delegate(spec: &VirtualServiceSpec) -> bool {
    spec.hosts.is_empty()
}

/// The VirtualService `delegate` names from a rule of `root` (its namespace by default).
pub fn target(root: &Resource, delegate: &Delegate) -> ResourceId {
    let namespace = delegate
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(root.namespace());
    ResourceId::new(Kind::VirtualService, namespace, &delegate.name)
}

/// `root` with each delegating HTTP rule replaced by the merged rules of its delegate,
/// `lookup` giving the VirtualServices in force.
pub fn expand<'a>(
    root: &Arc<Resource>,
    lookup: impl Fn(&ResourceId) -> Option<&'a Arc<Resource>>,
) -> Expanded {
    let mut expanded = Expanded {
        resource: root.clone(),
        delegates: Vec::new(),
        notes: Vec::new(),
    };
    let ResourceSpec::VirtualService(spec) = &root.spec else {
        return expanded;
    };
    if is_delegate(spec) || spec.http.iter().all(|r| r.delegate.is_none()) {
        return expanded;
    }
    let id = &root.id;
    let mut http = Vec::with_capacity(spec.http.len());
    for (i, rule) in spec.http.iter().enumerate() {
        let Some(delegate) = &rule.delegate else {
            http.push(rule.clone());
            continue;
        };
        let field = format!("spec.http[{i}].delegate");
        let target_id = target(root, delegate);
        expanded.delegates.push(target_id.clone());
        let found = lookup(&target_id).and_then(|r| match &r.spec {
            ResourceSpec::VirtualService(s) => Some((r, s)),
            _ => None,
        });
        let Some((target, target_spec)) = found else {
            expanded.notes.push(format!(
                "{id}: {field}: {target_id} does not exist: the rule is \
                 dropped, as Istio drops it"
            ));
            continue;
        };
        if !is_delegate(target_spec) {
            expanded.notes.push(format!(
                "{id}: {field}: {target_id} has hosts, so it is no delegate: \
                 the rule is dropped, as Istio drops it"
            ));
            continue;
        }
        if !exported_to(target, target_spec, root.namespace()) {
            expanded.notes.push(format!(
                "{id}: {field}: {target_id} is not exported to namespace \
                 {}: the rule is dropped, as Istio drops it",
                root.namespace()
            ));
            continue;
        }
        let first = http.len();
        for (j, leaf) in target_spec.http.iter().enumerate() {
            if leaf.delegate.is_some() {
                expanded.notes.push(format!(
                    "{id}: {field}: {target_id} spec.http[{j}] delegates again: one level \
                     only, as in Istio: dropped"
                ));
                continue;
            }
            let leaf = resolved_in(leaf, target.namespace());
            match merge_rule(rule, leaf) {
                Some(merged) => http.push(merged),
                None => expanded.notes.push(format!(
                    "{id}: {field}: {target_id} spec.http[{j}]: no match of it fits within \
                     the root rule's matches: dropped, as Istio drops it"
                )),
            }
        }
        expanded.notes.push(format!(
            "{id}: {field}: the rules of {target_id} stand here, merged (rules {} of the \
             expanded table; fields below name them by that place)",
            place(first, http.len())
        ));
    }
    let mut merged_spec = (**spec).clone();
    merged_spec.http = http;
    expanded.resource = Arc::new(Resource {
        id: root.id.clone(),
        origin: root.origin.clone(),
        precedence: root.precedence.clone(),
        api_version: root.api_version.clone(),
        spec: ResourceSpec::VirtualService(Box::new(merged_spec)),
    });
    expanded
}

/// `http[a..b]` as written in notes: none, one place or a range.
fn place(first: usize, end: usize) -> String {
    match end - first {
        0 => "none".to_string(),
        1 => format!("http[{first}]"),
        _ => format!("http[{first}..={}]", end - 1),
    }
}

/// Istio's test: the delegate's `exportTo` (everywhere when unset) names `*`, the root's
/// namespace, or `.` with both in one namespace.
fn exported_to(target: &Resource, spec: &VirtualServiceSpec, namespace: &str) -> bool {
    spec.export_to.is_empty()
        || spec.export_to.iter().any(|to| {
            to == "*" || to == namespace || (to == "." && target.namespace() == namespace)
        })
}

/// `rule` with its destination hosts resolved in `namespace` (the delegate's): once merged
/// into the root, a short name would otherwise resolve in the root's.
fn resolved_in(rule: &HttpRoute, namespace: &str) -> HttpRoute {
    let mut rule = rule.clone();
    let resolve = |d: &mut Destination| d.host = resolve_host(&d.host, namespace);
    rule.route
        .iter_mut()
        .for_each(|r| resolve(&mut r.destination));
    rule.mirror.iter_mut().for_each(resolve);
    rule.mirrors
        .iter_mut()
        .for_each(|m| resolve(&mut m.destination));
    rule
}

/// Istio's `mergeHTTPRoute`: the delegate's rule with the root's fields where it sets none;
/// `None` when its matches conflict.
fn merge_rule(root: &HttpRoute, mut leaf: HttpRoute) -> Option<HttpRoute> {
    leaf.matches = merge_matches(&root.matches, &leaf.matches)?;
    leaf.name = joined(root.name.as_deref(), leaf.name.take());
    fn inherit<T: Clone>(leaf: &mut Option<T>, root: &Option<T>) {
        if leaf.is_none() {
            leaf.clone_from(root);
        }
    }
    inherit(&mut leaf.rewrite, &root.rewrite);
    inherit(&mut leaf.direct_response, &root.direct_response);
    inherit(&mut leaf.timeout, &root.timeout);
    inherit(&mut leaf.retries, &root.retries);
    inherit(&mut leaf.fault, &root.fault);
    inherit(&mut leaf.mirror, &root.mirror);
    inherit(&mut leaf.mirror_percent, &root.mirror_percent);
    inherit(&mut leaf.mirror_percentage, &root.mirror_percentage);
    inherit(&mut leaf.cors_policy, &root.cors_policy);
    inherit(&mut leaf.headers, &root.headers);
    if leaf.mirrors.is_empty() {
        leaf.mirrors.clone_from(&root.mirrors);
    }
    Some(leaf)
}

/// `root-leaf` when both are named, else whichever is.
fn joined(root: Option<&str>, leaf: Option<String>) -> Option<String> {
    match (
        root.filter(|r| !r.is_empty()),
        leaf.filter(|l| !l.is_empty()),
    ) {
        (Some(root), Some(leaf)) => Some(format!("{root}-{leaf}")),
        (Some(root), None) => Some(root.to_string()),
        (None, leaf) => leaf,
    }
}

/// Istio's `mergeHTTPMatchRequests`: every match of the delegate's rule merged with each
/// root match it does not conflict with; `None` when one of them fits none.
fn merge_matches(
    root: &[HttpMatchRequest],
    leaf: &[HttpMatchRequest],
) -> Option<Vec<HttpMatchRequest>> {
    if root.is_empty() {
        return Some(leaf.to_vec());
    }
    if leaf.is_empty() {
        return Some(root.to_vec());
    }
    let mut merged = Vec::new();
    for leaf in leaf {
        let before = merged.len();
        merged.extend(
            root.iter()
                .filter(|root| !conflicts(root, leaf))
                .map(|root| merge_match(root, leaf)),
        );
        if merged.len() == before {
            return None;
        }
    }
    Some(merged)
}

/// Istio's `mergeHTTPMatchRequest`: the delegate's match, completed by the root's.
fn merge_match(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> HttpMatchRequest {
    let mut out = leaf.clone();
    out.name = joined(root.name.as_deref(), out.name.take());
    for (out, root) in [
        (&mut out.uri, &root.uri),
        (&mut out.scheme, &root.scheme),
        (&mut out.method, &root.method),
        (&mut out.authority, &root.authority),
    ] {
        if out.is_none() {
            out.clone_from(root);
        }
    }
    out.headers = union(&root.headers, &leaf.headers);
    out.without_headers = union(&root.without_headers, &leaf.without_headers);
    out.query_params = union(&root.query_params, &leaf.query_params);
    out.source_labels = union(&root.source_labels, &leaf.source_labels);
    if out.port.is_none_or(|p| p == 0) {
        out.port = root.port;
    }
    if out.source_namespace.as_deref().is_none_or(str::is_empty) {
        out.source_namespace.clone_from(&root.source_namespace);
    }
    if out.gateways.is_empty() {
        out.gateways.clone_from(&root.gateways);
    }
    if out.stat_prefix.as_deref().is_none_or(str::is_empty) {
        out.stat_prefix.clone_from(&root.stat_prefix);
    }
    out
}

/// Both maps' entries; the delegate's value where both have a key.
fn union<V: Clone>(root: &BTreeMap<String, V>, leaf: &BTreeMap<String, V>) -> BTreeMap<String, V> {
    let mut out = root.clone();
    out.extend(leaf.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// Istio's `hasConflict`: whether the delegate's match asks for something the root's rules
/// out.
fn conflicts(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> bool {
    let strings = [
        (&root.uri, &leaf.uri),
        (&root.scheme, &leaf.scheme),
        (&root.method, &leaf.method),
        (&root.authority, &leaf.authority),
    ];
    if strings
        .iter()
        .any(|(r, l)| string_conflict(r.as_ref(), l.as_ref()))
    {
        return true;
    }
    let maps = [
        (&root.headers, &leaf.headers),
        (&root.without_headers, &leaf.without_headers),
        (&root.query_params, &leaf.query_params),
    ];
    if maps.iter().any(|(root, leaf)| {
        leaf.iter()
            .any(|(key, l)| string_conflict(root.get(key), Some(l)))
    }) {
        return true;
    }
    let port = |p: Option<u32>| p.filter(|&p| p > 0);
    if root.ignore_uri_case != leaf.ignore_uri_case
        || matches!((port(root.port), port(leaf.port)), (Some(r), Some(l)) if r != l)
    {
        return true;
    }
    if let Some(namespace) = root.source_namespace.as_deref().filter(|n| !n.is_empty())
        && leaf.source_namespace.as_deref() != Some(namespace)
    {
        return true;
    }
    if leaf
        .source_labels
        .iter()
        .any(|(key, value)| root.source_labels.get(key).is_some_and(|v| v != value))
    {
        return true;
    }
    !root.gateways.is_empty()
        && !leaf.gateways.is_empty()
        && leaf.gateways.iter().any(|g| !root.gateways.contains(g))
}

/// Istio's `stringMatchConflict`: the delegate's condition must narrow the root's: the same
/// exact value, or a prefix or exact value under the root's prefix; a regex on either side
/// conflicts with anything on the other.
fn string_conflict(root: Option<&StringMatch>, leaf: Option<&StringMatch>) -> bool {
    let (Some(root), Some(leaf)) = (root, leaf) else {
        return false;
    };
    match (root, leaf) {
        (StringMatch::Exact(r), StringMatch::Exact(l)) if !r.is_empty() => r != l,
        (StringMatch::Prefix(r), StringMatch::Prefix(l) | StringMatch::Exact(l))
            if !r.is_empty() && !l.is_empty() =>
        {
            !l.starts_with(r.as_str())
        }
        _ => true,
    }
}
