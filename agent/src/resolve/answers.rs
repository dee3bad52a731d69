//! Which DNS-resolved entries need which names, and the last answer for each name. The
//! compiler gets each such entry with the answers for its names filled in
//! (`spec.resolved`); a changed answer brings every entry that uses the name up to date.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use vsteer_compiler::Change;
use vsteer_model::istio::DnsAnswers;
use vsteer_model::{Resource, ResourceId, ResourceSpec};

/// Names to start and stop resolving, after a pass.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Watch {
    pub added: Vec<Box<str>>,
    pub removed: Vec<Box<str>>,
}

impl Watch {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }

    /// `later` on top of this one: a name added and then removed (or the other way round)
    /// cancels out.
    pub fn merge(&mut self, later: Watch) {
        for name in later.added {
            match self.removed.iter().position(|n| *n == name) {
                Some(i) => {
                    self.removed.remove(i);
                }
                None => self.added.push(name),
            }
        }
        for name in later.removed {
            match self.added.iter().position(|n| *n == name) {
                Some(i) => {
                    self.added.remove(i);
                }
                None => self.removed.push(name),
            }
        }
    }
}

#[derive(Default)]
pub struct Answers {
    /// Each DNS-resolved entry as the store holds it, the names it needs, and whether it
    /// is DNS_ROUND_ROBIN.
    entries: HashMap<ResourceId, Recorded>,
    /// The entries that need each name.
    users: BTreeMap<Box<str>, BTreeSet<ResourceId>>,
    /// The last answer for each name (kept while any entry needs it).
    answers: BTreeMap<Box<str>, Arc<[IpAddr]>>,
    /// The last answer with addresses, for DNS_ROUND_ROBIN entries: Envoy's logical DNS
    /// keeps its address when an answer comes back empty.
    nonempty: BTreeMap<Box<str>, Arc<[IpAddr]>>,
    /// Answers of names no entry needs any more, newest last, so that an entry deleted and
    /// created again (a file replaced under a new name) while DNS fails keeps its answer.
    recent: Vec<RecentAnswer>,
}

/// A DNS-resolved entry as written, its names, and whether it is DNS_ROUND_ROBIN.
type Recorded = (Arc<Resource>, Vec<Box<str>>, bool);

/// A name's answer and last non-empty answer, kept after no entry needs it.
type RecentAnswer = (Box<str>, Arc<[IpAddr]>, Option<Arc<[IpAddr]>>);

/// How many answers of names no longer needed are kept.
const RECENT: usize = 1024;

impl Answers {
    /// Takes a batch of changes on its way to the compiler: each entry with DNS resolution
    /// is recorded and replaced by a copy holding the answers for its names. Returns the
    /// names that no entry needed before, and those no entry needs any more.
    pub fn pass(&mut self, batch: &mut [Change]) -> Watch {
        let before: BTreeSet<Box<str>> = self.users.keys().cloned().collect();
        for (id, resource) in batch.iter_mut() {
            self.forget(id);
            let Some(written) = resource else { continue };
            let names = names_of(written);
            if names.is_empty() {
                continue;
            }
            for name in &names {
                self.users
                    .entry(name.clone())
                    .or_default()
                    .insert(id.clone());
                self.recall(name);
            }
            let written = written.clone();
            let round_robin = is_round_robin(&written);
            *resource = Some(self.with_answers(&written, &names, round_robin));
            self.entries
                .insert(id.clone(), (written, names, round_robin));
        }
        let gone: Vec<Box<str>> = self
            .answers
            .keys()
            .filter(|name| !self.users.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            if let Some(answer) = self.answers.remove(&name) {
                let nonempty = self.nonempty.remove(&name);
                self.recent.retain(|(n, _, _)| *n != name);
                self.recent.push((name, answer, nonempty));
            }
        }
        if self.recent.len() > RECENT {
            self.recent.drain(..self.recent.len() - RECENT);
        }
        let now: BTreeSet<&Box<str>> = self.users.keys().collect();
        Watch {
            added: now
                .iter()
                .filter(|n| !before.contains(**n))
                .map(|n| (*n).clone())
                .collect(),
            removed: before.into_iter().filter(|n| !now.contains(n)).collect(),
        }
    }

    /// DNS answered `addresses` for `name`: the changes that give its entries the answer
    /// (none when they have it already, or no entry needs the name).
    pub fn answered(&mut self, name: &str, addresses: Arc<[IpAddr]>) -> Vec<Change> {
        let Some(users) = self.users.get(name) else {
            return Vec::new();
        };
        if self.answers.get(name) == Some(&addresses) {
            return Vec::new();
        }
        if !addresses.is_empty() {
            self.nonempty.insert(name.into(), addresses.clone());
        }
        self.answers.insert(name.into(), addresses);
        users
            .iter()
            .filter_map(|id| {
                let (written, names, round_robin) = self.entries.get(id)?;
                Some((
                    id.clone(),
                    Some(self.with_answers(written, names, *round_robin)),
                ))
            })
            .collect()
    }

    /// Every name some entry needs.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.users.keys().map(|n| &**n)
    }

    /// The answer in force for every name that has one.
    pub fn table(&self) -> &BTreeMap<Box<str>, Arc<[IpAddr]>> {
        &self.answers
    }

    /// The names needed that have had no answer yet.
    pub fn unanswered(&self) -> Vec<Box<str>> {
        self.users
            .keys()
            .filter(|n| !self.answers.contains_key(*n))
            .cloned()
            .collect()
    }

    /// Whether every name needed has had an answer.
    pub fn all_answered(&self) -> bool {
        self.users.keys().all(|n| self.answers.contains_key(n))
    }

    /// A name needed again gets the answer it had, if it has none now.
    fn recall(&mut self, name: &str) {
        if self.answers.contains_key(name) {
            return;
        }
        if let Some(at) = self.recent.iter().position(|(n, _, _)| &**n == name) {
            let (name, answer, nonempty) = self.recent.remove(at);
            if let Some(nonempty) = nonempty {
                self.nonempty.insert(name.clone(), nonempty);
            }
            self.answers.insert(name, answer);
        }
    }

    fn forget(&mut self, id: &ResourceId) {
        let Some((_, names, _)) = self.entries.remove(id) else {
            return;
        };
        for name in names {
            if let Some(users) = self.users.get_mut(&name) {
                users.remove(id);
                if users.is_empty() {
                    self.users.remove(&name);
                }
            }
        }
    }

    /// `written` with the answers known for `names` (those not answered yet left out); a
    /// DNS_ROUND_ROBIN entry keeps a name's last addresses over an empty answer.
    fn with_answers(
        &self,
        written: &Resource,
        names: &[Box<str>],
        round_robin: bool,
    ) -> Arc<Resource> {
        let mut resource = written.clone();
        if let ResourceSpec::ServiceEntry(spec) = &mut resource.spec {
            let known = names
                .iter()
                .filter_map(|n| {
                    let answer = self.answers.get(n)?;
                    let answer = match self.nonempty.get(n) {
                        Some(last) if round_robin && answer.is_empty() => last,
                        _ => answer,
                    };
                    Some((n.clone(), answer.clone()))
                })
                .collect();
            spec.resolved = Some(Arc::new(DnsAnswers(known)));
        }
        Arc::new(resource)
    }
}

fn is_round_robin(resource: &Resource) -> bool {
    matches!(&resource.spec, ResourceSpec::ServiceEntry(spec)
        if spec.resolution.as_deref() == Some("DNS_ROUND_ROBIN"))
}

/// The names a resource needs resolved (the compiler says which: see `dns_names`).
fn names_of(resource: &Resource) -> Vec<Box<str>> {
    let ResourceSpec::ServiceEntry(spec) = &resource.spec else {
        return Vec::new();
    };
    let names: BTreeSet<&str> = vsteer_compiler::dns_names(spec).into_iter().collect();
    names.into_iter().map(Box::from).collect()
}

#[cfg(test)]
mod tests {
    use vsteer_model::parse::parse_str;

    use super::*;

    fn entry(name: &str, endpoints: &str) -> Change {
        let text = format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}}}
spec:
  hosts: [{name}.example.com]
  addresses: [10.0.0.1]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: DNS
  endpoints: {endpoints}
"
        );
        let parsed = parse_str("t.yaml", &text);
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let resource = parsed.resources.into_iter().next().unwrap();
        (resource.id.clone(), Some(Arc::new(resource)))
    }

    fn resolved(change: &Change) -> Option<Arc<DnsAnswers>> {
        match &change.1.as_ref()?.spec {
            ResourceSpec::ServiceEntry(spec) => spec.resolved.clone(),
            _ => None,
        }
    }

    fn ips(list: &[&str]) -> Arc<[IpAddr]> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    fn names(list: &[&str]) -> Vec<Box<str>> {
        list.iter().map(|n| Box::from(*n)).collect()
    }

    #[test]
    fn entries_pass_with_the_answers_for_their_names_and_follow_new_answers() {
        let mut answers = Answers::default();
        let mut batch = vec![
            entry("a", "[{address: x.example.com}, {address: 10.1.0.1}]"),
            entry("b", "[{address: x.example.com}, {address: y.example.com}]"),
        ];
        let watch = answers.pass(&mut batch);
        assert_eq!(watch.added, names(&["x.example.com", "y.example.com"]));
        assert!(watch.removed.is_empty());
        // Nothing answered yet: resolved, but empty (the compiler notes it).
        assert_eq!(resolved(&batch[0]).unwrap().0.len(), 0);
        assert!(!answers.all_answered());

        let changes = answers.answered("x.example.com", ips(&["10.2.0.1"]));
        assert_eq!(changes.len(), 2, "both entries use x");
        for change in &changes {
            let table = resolved(change).unwrap();
            assert_eq!(table.0.get("x.example.com"), Some(&ips(&["10.2.0.1"])));
        }
        assert!(
            answers
                .answered("x.example.com", ips(&["10.2.0.1"]))
                .is_empty(),
            "the same answer changes nothing"
        );
        assert!(
            answers
                .answered("z.example.com", ips(&["10.9.0.1"]))
                .is_empty()
        );
        let changes = answers.answered("y.example.com", ips(&[]));
        assert_eq!(changes.len(), 1);
        assert!(answers.all_answered());
        // A new version of b keeps x's answer and needs y no more.
        let mut batch = vec![entry("b", "[{address: x.example.com}]")];
        let watch = answers.pass(&mut batch);
        assert_eq!(watch.removed, names(&["y.example.com"]));
        let table = resolved(&batch[0]).unwrap();
        assert_eq!(table.0.get("x.example.com"), Some(&ips(&["10.2.0.1"])));
        assert_eq!(answers.names().collect::<Vec<_>>(), ["x.example.com"]);
        // Removing both frees x, and its answer.
        let mut batch: Vec<Change> = ["a", "b"]
            .iter()
            .map(|n| (entry(n, "[]").0, None))
            .collect();
        let watch = answers.pass(&mut batch);
        assert_eq!(watch.removed, names(&["x.example.com"]));
        assert!(answers.answers.is_empty() && answers.entries.is_empty());
        // Created again (DNS may be failing by then): it has x's last answer at once.
        let mut batch = vec![entry("a", "[{address: x.example.com}]")];
        answers.pass(&mut batch);
        let table = resolved(&batch[0]).unwrap();
        assert_eq!(table.0.get("x.example.com"), Some(&ips(&["10.2.0.1"])));
        assert!(answers.all_answered());
    }

    #[test]
    fn a_round_robin_entry_keeps_its_address_over_an_empty_answer() {
        let mut answers = Answers::default();
        let (id, resource) = entry("rr", "[{address: x.example.com}]");
        let mut rr = (*resource.unwrap()).clone();
        if let ResourceSpec::ServiceEntry(spec) = &mut rr.spec {
            spec.resolution = Some("DNS_ROUND_ROBIN".into());
        }
        let mut batch = vec![
            (id, Some(Arc::new(rr))),
            entry("strict", "[{address: x.example.com}]"),
        ];
        answers.pass(&mut batch);
        answers.answered("x.example.com", ips(&["10.2.0.1"]));
        let changes = answers.answered("x.example.com", ips(&[]));
        let by_name = |name: &str| {
            let change = changes.iter().find(|(id, _)| &*id.name == name).unwrap();
            resolved(change).unwrap().0.get("x.example.com").cloned()
        };
        assert_eq!(by_name("rr"), Some(ips(&["10.2.0.1"])));
        assert_eq!(by_name("strict"), Some(ips(&[])));
    }

    #[test]
    fn watches_merge_and_cancel_out() {
        let mut watch = Watch {
            added: names(&["a", "b"]),
            removed: names(&["c"]),
        };
        watch.merge(Watch {
            added: names(&["c", "d"]),
            removed: names(&["b"]),
        });
        assert_eq!(
            watch,
            Watch {
                added: names(&["a", "d"]),
                removed: Vec::new(),
            }
        );
    }

    #[test]
    fn static_entries_pass_untouched() {
        let mut answers = Answers::default();
        let (id, resource) = entry("a", "[{address: 10.1.0.1}]");
        let text = resource.unwrap();
        let mut static_one = (*text).clone();
        if let ResourceSpec::ServiceEntry(spec) = &mut static_one.spec {
            spec.resolution = Some("STATIC".into());
        }
        let original = Arc::new(static_one);
        let mut batch = vec![(id, Some(original.clone()))];
        assert!(answers.pass(&mut batch).is_empty());
        assert!(Arc::ptr_eq(batch[0].1.as_ref().unwrap(), &original));
    }
}
