//! Labels (of an endpoint, or a subset's selector): a `SmallMap` of strings, shared by
//! every backend planned from the endpoint.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::small_map::SmallMap;

/// Sorted by key, each key once. Cloning shares the pairs. Read and written as a map.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Labels(SmallMap<Box<str>>);

impl Labels {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| &**v)
    }

    /// In key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.0.iter().map(|(k, v)| (k, &**v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many copies share these labels (an interner forgets what only it holds).
    pub fn holders(&self) -> usize {
        self.0.holders()
    }

    /// Whether every pair of `selector` is among these labels (an empty selector selects
    /// everything), as a subset's labels select endpoints.
    pub fn contains_all(&self, selector: &Labels) -> bool {
        selector.iter().all(|(k, v)| self.get(k) == Some(v))
    }
}

impl<K: AsRef<str>, V: Into<Box<str>>> FromIterator<(K, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Labels(iter.into_iter().map(|(k, v)| (k, v.into())).collect())
    }
}

impl std::ops::Index<&str> for Labels {
    type Output = str;

    fn index(&self, key: &str) -> &str {
        match self.get(key) {
            Some(value) => value,
            None => panic!("no label {key:?}"),
        }
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_lookup_and_selection() {
        let labels: Labels = [("version", "v1"), ("app", "reviews")]
            .into_iter()
            .collect();
        assert_eq!(labels.get("app"), Some("reviews"));
        assert_eq!(&labels["version"], "v1");
        assert_eq!(labels.get("zone"), None);
        let keys: Vec<&str> = labels.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["app", "version"]);
        let v1: Labels = [("version", "v1")].into_iter().collect();
        let v2: Labels = [("version", "v2")].into_iter().collect();
        assert!(labels.contains_all(&v1));
        assert!(!labels.contains_all(&v2));
        assert!(labels.contains_all(&Labels::default()));
        let yaml: Labels = crate::yaml::from_str("{version: v1, app: reviews}").unwrap();
        assert_eq!(yaml, labels);
    }
}
