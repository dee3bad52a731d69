//! The shipped examples, built into the binary: vsteer's configuration when none is given.

use super::Loaded;
use super::files::parse_str;

/// The files of `examples/`, in name order like [`super::load_dir`] reads a directory.
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

/// Parses the built-in examples; origins read `<embedded>/<file>.yaml`.
pub fn load_embedded() -> Loaded {
    let mut loaded = Loaded::default();
    for (name, text) in FILES {
        loaded.extend(parse_str(&format!("<embedded>/{name}"), text));
    }
    loaded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Kind;

    #[test]
    fn examples_load_without_errors_or_warnings() {
        let loaded = load_embedded();
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let ids: Vec<_> = loaded.resources.iter().map(|r| r.id()).collect();
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
        let entries = loaded
            .resources
            .iter()
            .filter(|r| r.spec.kind() == Kind::ServiceEntry)
            .count();
        assert_eq!(entries, 3);
        assert!(
            loaded
                .resources
                .iter()
                .all(|r| r.origin.file.starts_with("<embedded>/"))
        );
    }
}
