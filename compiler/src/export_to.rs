//! `exportTo`: the namespaces whose clients see a resource (`.` its own, `*` all, `~` none,
//! or names). vsteer does not know each client's namespace yet, so every resource applies to
//! every client of the node; a resource whose `exportTo` says otherwise gets a note that
//! names it, so the difference from Istio is never silent.

use vsteer_model::ResourceId;

/// The note for a resource in `namespace` with `export_to`, when it restricts who sees it.
pub fn note(id: &ResourceId, namespace: &str, export_to: &[String]) -> Option<String> {
    if export_to.is_empty() || export_to.iter().any(|n| n == "*") {
        return None;
    }
    let seen_by = if export_to.iter().any(|n| n == "~") {
        "no client".to_string()
    } else {
        let mut namespaces: Vec<&str> = export_to
            .iter()
            .map(|n| if n == "." { namespace } else { n.as_str() })
            .collect();
        namespaces.sort_unstable();
        namespaces.dedup();
        format!("clients in namespace(s) {}", namespaces.join(", "))
    };
    Some(format!(
        "{id}: exportTo [{}] shows it to {seen_by} in Istio; vsteer does not know client \
         namespaces yet and applies it to every client",
        export_to.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use vsteer_model::Kind;

    use super::*;

    fn note_for(export_to: &[&str]) -> Option<String> {
        let id = ResourceId::new(Kind::VirtualService, "shop", "cart");
        let export_to: Vec<String> = export_to.iter().map(|s| s.to_string()).collect();
        note(&id, "shop", &export_to)
    }

    #[test]
    fn only_a_restricting_export_to_gets_a_note() {
        assert_eq!(note_for(&[]), None);
        assert_eq!(note_for(&["*"]), None);
        assert_eq!(note_for(&[".", "*"]), None);
        let own = note_for(&["."]).unwrap();
        assert!(
            own.starts_with("VirtualService shop/cart: exportTo [.]"),
            "{own}"
        );
        assert!(
            own.contains("clients in namespace(s) shop in Istio"),
            "{own}"
        );
        assert!(own.contains("applies it to every client"), "{own}");
        let listed = note_for(&["web", ".", "shop"]).unwrap();
        assert!(listed.contains("namespace(s) shop, web"), "{listed}");
        let hidden = note_for(&["~"]).unwrap();
        assert!(hidden.contains("shows it to no client"), "{hidden}");
    }
}
