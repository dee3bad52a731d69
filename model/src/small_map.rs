//! A few (name, value) pairs, sorted by name, behind one `Arc`: the shape of an endpoint's
//! labels and of its ports by name. A `BTreeMap` with one entry costs a whole B-tree node
//! (hundreds of bytes) and every clone copies it; tens of thousands of endpoints, each
//! held by the model and by the compiler, made that most of the agent's memory. Names are
//! shared process-wide (`intern::shared`): a cluster uses a few dozen label keys and port
//! names over and over (`app`, `version`, `http`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Sorted by name, each name once. Cloning shares the pairs.
#[derive(PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SmallMap<V>(Arc<[(Arc<str>, V)]>);

impl<V> SmallMap<V> {
    pub fn get(&self, name: &str) -> Option<&V> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(name))
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// In name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> + '_ {
        self.0.iter().map(|(k, v)| (&**k, v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many copies share these pairs (an interner forgets what only it holds).
    pub fn holders(&self) -> usize {
        Arc::strong_count(&self.0)
    }
}

// By hand: deriving would ask `V: Clone` / `V: Default`, which sharing never needs.
impl<V> Clone for SmallMap<V> {
    fn clone(&self) -> Self {
        SmallMap(Arc::clone(&self.0))
    }
}

impl<V> Default for SmallMap<V> {
    fn default() -> Self {
        SmallMap(Arc::from(Vec::new()))
    }
}

/// A name given twice keeps its last value, as a map's insert does.
impl<K: AsRef<str>, V> FromIterator<(K, V)> for SmallMap<V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let map: BTreeMap<Arc<str>, V> = iter
            .into_iter()
            .map(|(k, v)| (crate::intern::shared(k.as_ref()), v))
            .collect();
        SmallMap(map.into_iter().collect())
    }
}

impl<V: fmt::Debug> fmt::Debug for SmallMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for SmallMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, V>::deserialize(deserializer)?;
        Ok(map.into_iter().collect())
    }
}

impl<V: Serialize> Serialize for SmallMap<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_lookup_last_value_wins_and_clones_share() {
        let ports: SmallMap<u32> = [("web", 8080), ("admin", 9000), ("web", 8081)]
            .into_iter()
            .collect();
        assert_eq!(ports.get("web"), Some(&8081));
        assert_eq!(ports.get("admin"), Some(&9000));
        assert_eq!(ports.get("grpc"), None);
        let names: Vec<&str> = ports.iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["admin", "web"]);
        let copy = ports.clone();
        assert!(Arc::ptr_eq(&copy.0, &ports.0));
        assert_eq!(ports.holders(), 2);
        // Names are one copy wherever they appear.
        let other: SmallMap<u32> = [("web", 1)].into_iter().collect();
        assert!(Arc::ptr_eq(&other.0[0].0, &ports.0[1].0));
        let yaml: SmallMap<u32> = crate::yaml::from_str("{web: 8081, admin: 9000}").unwrap();
        assert_eq!(yaml, ports);
        assert!(SmallMap::<u32>::default().is_empty());
    }

    #[test]
    fn a_value_of_the_wrong_type_is_an_error() {
        assert!(crate::yaml::from_str::<SmallMap<u32>>("{web: high}").is_err());
    }
}
