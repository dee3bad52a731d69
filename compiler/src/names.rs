//! Istio's naming rules: how a host name in a rule finds a service, and what a valid port
//! or subset name is.

use std::net::IpAddr;

/// The Kubernetes cluster domain Istio appends to short names.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// Resolves a host as Istio does for a rule in `namespace`: a short name (no dot) such as
/// `reviews` means `reviews.<namespace>.svc.cluster.local`; anything with a dot, `*`, and IP
/// addresses are taken as written.
pub fn resolve_host(host: &str, namespace: &str) -> String {
    if host.is_empty() || host == "*" || host.contains('.') || host.parse::<IpAddr>().is_ok() {
        return host.to_string();
    }
    format!("{host}.{namespace}.svc.{CLUSTER_DOMAIN}")
}

/// How specifically a resolved rule host covers `host`: `None` when it does not, and a
/// larger value for a closer match (an exact name beats any wildcard, a longer wildcard
/// suffix beats a shorter one), so "the most specific rule wins" is a max.
pub fn host_match(pattern: &str, host: &str) -> Option<usize> {
    if pattern == host {
        return Some(usize::MAX);
    }
    if pattern == "*" {
        return Some(0);
    }
    // `*.example.com` covers `a.example.com` and `a.b.example.com`, not `example.com`.
    let suffix = pattern.strip_prefix('*')?;
    (suffix.starts_with('.') && host.ends_with(suffix) && host.len() > suffix.len())
        .then_some(suffix.len())
}

/// A DNS-1123 label: what Istio requires of port and subset names.
pub fn is_dns1123_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| alnum(b) || *b == b'-')
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
}

/// A name DNS can resolve, as Istio's `ValidateFQDN` takes it: labels of letters (either
/// case), digits and inner hyphens, up to 63 bytes, joined by dots, at most 255 bytes, a
/// final dot allowed, the last label not all digits; no wildcard.
pub fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let label = |l: &str| is_dns1123_label(&l.to_ascii_lowercase());
    name.len() <= 255
        && name.split('.').all(label)
        && name
            .rsplit('.')
            .next()
            .is_some_and(|last| !last.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_are_dns1123_labels_joined_by_dots() {
        for good in [
            "httpbin.org",
            "a.b-c.example.com.",
            "localhost",
            "x1.y2",
            "API.Example.com",
        ] {
            assert!(is_dns_name(good), "{good}");
        }
        let long = format!("{}.com", vec!["a".repeat(63); 4].join("."));
        for bad in [
            "",
            "*.example.com",
            "a..b",
            "-a.com",
            "a-.com",
            "foo.123",
            "10.0.0.1",
            "a_b.com",
            "10.0.0.1/8",
            &long,
            ".",
        ] {
            assert!(!is_dns_name(bad), "{bad}");
        }
    }

    #[test]
    fn short_names_get_namespace_and_domain() {
        assert_eq!(
            resolve_host("reviews", "default"),
            "reviews.default.svc.cluster.local"
        );
        assert_eq!(
            resolve_host("reviews", "shop"),
            "reviews.shop.svc.cluster.local"
        );
        // Istio only expands names without a dot.
        assert_eq!(resolve_host("reviews.shop", "default"), "reviews.shop");
        assert_eq!(resolve_host("api.example.com", "x"), "api.example.com");
        assert_eq!(resolve_host("*", "x"), "*");
        assert_eq!(resolve_host("::1", "x"), "::1");
    }

    #[test]
    fn exact_beats_longer_wildcard_beats_shorter() {
        let host = "a.b.example.com";
        let exact = host_match("a.b.example.com", host).unwrap();
        let long = host_match("*.b.example.com", host).unwrap();
        let short = host_match("*.example.com", host).unwrap();
        let any = host_match("*", host).unwrap();
        assert!(exact > long && long > short && short > any);
        assert_eq!(host_match("*.example.com", "example.com"), None);
        assert_eq!(host_match("*example.com", "badexample.com"), None);
        assert_eq!(host_match("b.example.com", host), None);
    }

    #[test]
    fn dns1123_labels() {
        assert!(is_dns1123_label("http"));
        assert!(is_dns1123_label("tcp-9080"));
        assert!(!is_dns1123_label(""));
        assert!(!is_dns1123_label("Http"));
        assert!(!is_dns1123_label("http_web"));
        assert!(!is_dns1123_label("-http"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
    }
}
