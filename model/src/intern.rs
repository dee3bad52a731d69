//! One shared copy of strings that repeat across thousands of resources (namespaces, API
//! versions, host names): each resource would otherwise hold its own allocation of
//! `default` and `networking.istio.io/v1`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// A set of shared strings. Entries live as long as the interner.
#[derive(Default)]
pub struct Interner(Mutex<HashSet<Arc<str>>>);

impl Interner {
    pub fn get(&self, text: &str) -> Arc<str> {
        let mut set = match self.0.lock() {
            Ok(set) => set,
            // A panic while holding the lock cannot leave the set inconsistent.
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(shared) = set.get(text) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(text);
        set.insert(shared.clone());
        shared
    }
}

impl Interner {
    /// Forgets the strings nobody else holds any more, once the set has grown by a quarter
    /// since last time (so that hosts that come and go do not pile up, at a cost spread
    /// over many calls).
    pub fn prune(&self, last_size: &mut usize) {
        let mut set = match self.0.lock() {
            Ok(set) => set,
            Err(poisoned) => poisoned.into_inner(),
        };
        if set.len() <= *last_size + *last_size / 4 + 16 {
            return;
        }
        set.retain(|s| Arc::strong_count(s) > 1);
        *last_size = set.len();
    }

    pub fn len(&self) -> usize {
        self.0.lock().map(|s| s.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// For the few strings of which a node has a handful of values (namespaces, API versions):
/// process-wide, never emptied.
pub fn shared(text: &str) -> Arc<str> {
    static SMALL: std::sync::OnceLock<Interner> = std::sync::OnceLock::new();
    SMALL.get_or_init(Interner::default).get(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_share_one_allocation() {
        let interner = Interner::default();
        let a = interner.get("default");
        let b = interner.get(&String::from("default"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &interner.get("shop")));
        assert!(Arc::ptr_eq(&shared("v1"), &shared("v1")));
    }

    #[test]
    fn pruning_forgets_what_nobody_holds() {
        let interner = Interner::default();
        let kept = interner.get("kept");
        for n in 0..100 {
            interner.get(&format!("gone-{n}"));
        }
        let mut last = 0;
        interner.prune(&mut last);
        assert_eq!(interner.len(), 1);
        assert_eq!(last, 1);
        assert!(Arc::ptr_eq(&kept, &interner.get("kept")));
    }
}
