//! The shipped examples, built into the binary: vsteer's configuration when none is given.

use vsteer_model::parse::parse_str;
use vsteer_model::store::FileUpdate;

/// The files of `examples/`, in name order like a directory is read.
const FILES: [(&str, &str); 3] = [
    (
        "details.yaml",
        include_str!("../../../examples/details.yaml"),
    ),
    (
        "ratings.yaml",
        include_str!("../../../examples/ratings.yaml"),
    ),
    (
        "reviews.yaml",
        include_str!("../../../examples/reviews.yaml"),
    ),
];

/// The built-in examples, parsed; files read `<embedded>/<file>.yaml`.
pub fn updates() -> Vec<FileUpdate> {
    FILES
        .iter()
        .map(|(name, text)| {
            let file = format!("<embedded>/{name}");
            FileUpdate::Read {
                parsed: parse_str(&file, text),
                file: file.into(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use vsteer_model::Kind;
    use vsteer_model::store::Store;

    use super::*;

    #[test]
    fn examples_load_without_errors_or_warnings() {
        let mut store = Store::default();
        let changes = store.apply(updates());
        assert!(changes.errors.is_empty(), "{:?}", changes.errors);
        assert!(changes.warnings.is_empty(), "{:?}", changes.warnings);
        let ids: Vec<_> = store.resources().iter().map(|r| r.id.to_string()).collect();
        assert_eq!(
            ids,
            [
                "ServiceEntry default/details",
                "ServiceEntry default/ratings",
                "DestinationRule default/ratings",
                "VirtualService default/ratings",
                "ServiceEntry default/reviews",
                "DestinationRule default/reviews",
                "VirtualService default/reviews",
            ]
        );
        let resources = store.resources();
        let entries = resources
            .iter()
            .filter(|r| r.kind() == Kind::ServiceEntry)
            .count();
        assert_eq!(entries, 3);
        assert!(
            resources
                .iter()
                .all(|r| r.origin.file.starts_with("<embedded>/"))
        );
    }
}
