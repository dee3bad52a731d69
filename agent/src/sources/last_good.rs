//! Keeping the last good version of what a reload could not read.
//!
//! When a file turns malformed, or one document in it stops decoding, the resources it held
//! must not vanish (that would remove services or reset routes): the version read last time
//! stays in force, next to everything that did read. Semantic errors (an unknown subset, bad
//! weights) are the compiler's, which keeps the last good plan for what they touch.
use std::collections::BTreeSet;

use super::Loaded;
use crate::config::Resource;

/// The resources to compile: what `loaded` read, plus, for each resource or whole file it
/// failed to read, the version from `previous` (the last accepted resource set).
pub fn with_last_good(loaded: &Loaded, previous: &[Resource]) -> Vec<Resource> {
    let mut resources = loaded.resources.clone();
    let mut present: BTreeSet<String> = resources.iter().map(Resource::id).collect();
    for error in &loaded.errors {
        let lost = previous.iter().filter(|r| match &error.resource {
            // One document failed: keep that resource's last good version.
            Some(id) => &r.id() == id,
            // The whole file failed (e.g. a YAML syntax error): keep all it held.
            None => r.origin.file == error.file,
        });
        for resource in lost {
            if present.insert(resource.id()) {
                tracing::warn!(resource = %resource.id(), file = %resource.origin.file, "keeping the last good version");
                resources.push(resource.clone());
            }
        }
    }
    resources
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::parse_str;

    const GOOD: &str = "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a}
spec:
  hosts: [a.example.com]
  addresses: [127.100.0.1]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: b}
spec:
  hosts: [b.example.com]
  addresses: [127.100.0.2]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.2}]
";

    fn ids(resources: &[Resource]) -> Vec<String> {
        let mut ids: Vec<String> = resources.iter().map(Resource::id).collect();
        ids.sort();
        ids
    }

    #[test]
    fn a_malformed_file_keeps_all_it_held() {
        let previous = parse_str("svc.yaml", GOOD).resources;
        let broken = parse_str("svc.yaml", "apiVersion: [unclosed\n");
        assert!(!broken.errors.is_empty());
        let kept = with_last_good(&broken, &previous);
        assert_eq!(
            ids(&kept),
            ["ServiceEntry default/a", "ServiceEntry default/b"]
        );
    }

    #[test]
    fn one_undecodable_document_keeps_only_itself() {
        let previous = parse_str("svc.yaml", GOOD).resources;
        let text = GOOD.replace("number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: 127.0.0.2}]", "number: eighty, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: 127.0.0.2}]");
        let loaded = parse_str("svc.yaml", &text);
        assert_eq!(loaded.resources.len(), 1, "{:?}", loaded.errors);
        let kept = with_last_good(&loaded, &previous);
        assert_eq!(
            ids(&kept),
            ["ServiceEntry default/a", "ServiceEntry default/b"]
        );
        // The kept one is the old version, the readable one the new.
        assert_eq!(kept.len(), 2);
    }

    #[test]
    fn a_deleted_resource_is_gone() {
        let previous = parse_str("svc.yaml", GOOD).resources;
        let first_only = GOOD.split("---").next().unwrap_or_default();
        let loaded = parse_str("svc.yaml", first_only);
        assert_eq!(
            ids(&with_last_good(&loaded, &previous)),
            ["ServiceEntry default/a"]
        );
    }
}
