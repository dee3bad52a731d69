//! The resources in force, by identity. Every source feeds this store with what it read;
//! for whatever could not be read this time (a file with a syntax error, an unreadable file,
//! one document that no longer decodes), the last good version stays in force, at the
//! precedence it had, so an error never changes who wins a tie. The one last-good mechanism
//! of the input side; the compiler keeps the last good plan of a service whose resource is
//! rejected on semantic grounds.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use crate::diagnostic::Diagnostic;
use crate::identity::{Precedence, ResourceId};
use crate::parse::Parsed;
use crate::resource::Resource;

/// A second copy of a resource (same kind, namespace and name), as a Kubernetes API server
/// would hold only one: the first by precedence is in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("already defined in {first_file} (document {first_document}); this copy is ignored")]
pub struct DuplicateError {
    pub first_file: Arc<str>,
    /// 1-based.
    pub first_document: usize,
}

/// What happened to one file.
#[derive(Debug, Clone)]
pub enum FileUpdate {
    /// The file was read (it may still hold errors: see [`Parsed`]).
    Read { file: Arc<str>, parsed: Parsed },
    /// The file exists but could not be read (permissions, a dangling link): what it held
    /// stays in force.
    Unreadable { file: Arc<str>, error: Diagnostic },
    /// The file is gone, and with it what it held.
    Removed { file: Arc<str> },
}

/// What an update changed in what is in force.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// New resources and new versions, as now in force.
    pub upserted: Vec<Arc<Resource>>,
    /// Resources no longer in force.
    pub removed: Vec<ResourceId>,
    /// Resources that could not be read this time and keep their last good version.
    pub kept: Vec<Arc<Resource>>,
    /// The errors and warnings of the files updated (all of them, not only new ones).
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.upserted.is_empty() && self.removed.is_empty()
    }
}

/// Position of a resource in its file: document, then item of a list.
type Slot = (u32, u32);

#[derive(Default)]
struct FileState {
    /// What the file contributes, kept last good versions included, sorted by slot. A
    /// slice: most files hold one resource, which a map would give a whole B-tree node.
    resources: Box<[(Slot, Arc<Resource>)]>,
    /// Its errors and warnings; `None` for a clean file (most files, and every object of a
    /// cluster: one pointer each, not two empty lists).
    problems: Option<Box<Problems>>,
}

#[derive(Clone, Default)]
struct Problems {
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl FileState {
    fn new(
        resources: Box<[(Slot, Arc<Resource>)]>,
        errors: Vec<Diagnostic>,
        warnings: Vec<Diagnostic>,
    ) -> FileState {
        let clean = errors.is_empty() && warnings.is_empty();
        FileState {
            resources,
            problems: (!clean).then(|| Box::new(Problems { errors, warnings })),
        }
    }

    fn errors(&self) -> &[Diagnostic] {
        self.problems.as_ref().map_or(&[], |p| &p.errors)
    }

    fn warnings(&self) -> &[Diagnostic] {
        self.problems.as_ref().map_or(&[], |p| &p.warnings)
    }
}

#[derive(Default)]
pub struct Store {
    files: BTreeMap<Arc<str>, FileState>,
    /// The copy of each resource in force: the first by precedence.
    in_force: HashMap<ResourceId, Arc<Resource>>,
    /// The other copies of resources defined more than once (rare), by precedence.
    duplicates: HashMap<ResourceId, Vec<Arc<Resource>>>,
}

impl Store {
    /// Applies what the sources read; returns what changed in what is in force.
    pub fn apply(&mut self, updates: impl IntoIterator<Item = FileUpdate>) -> Changes {
        let mut changes = Changes::default();
        let mut touched: BTreeSet<ResourceId> = BTreeSet::new();
        let mut before: HashMap<ResourceId, Option<Arc<Resource>>> = HashMap::default();
        for update in updates {
            let (file, next) = match update {
                FileUpdate::Read { file, parsed } => {
                    let previous = self.files.get(&file);
                    let next = next_state(previous, parsed, &mut changes.kept);
                    (file, Some(next))
                }
                FileUpdate::Unreadable { file, error } => {
                    let previous = self.files.get(&file);
                    let resources = previous.map(|p| p.resources.clone()).unwrap_or_default();
                    changes
                        .kept
                        .extend(resources.iter().map(|(_, r)| r.clone()));
                    let next = FileState::new(resources, vec![error], Vec::new());
                    (file, Some(next))
                }
                FileUpdate::Removed { file } => (file, None),
            };
            let old = match &next {
                Some(state) => self.files.insert(file.clone(), clone_state(state)),
                None => self.files.remove(&file),
            };
            for (_, resource) in old.iter().flat_map(|s| s.resources.iter()) {
                let id = &resource.id;
                before
                    .entry(id.clone())
                    .or_insert_with(|| self.in_force(id).cloned());
                touched.insert(id.clone());
                self.remove_copy(resource);
            }
            if let Some(state) = &next {
                for (_, resource) in state.resources.iter() {
                    let id = &resource.id;
                    before
                        .entry(id.clone())
                        .or_insert_with(|| self.in_force(id).cloned());
                    touched.insert(id.clone());
                    self.add_copy(resource);
                }
                changes.errors.extend(state.errors().iter().cloned());
                changes.warnings.extend(state.warnings().iter().cloned());
            }
        }
        for id in touched {
            let was = before.remove(&id).flatten();
            match (was, self.in_force(&id)) {
                (Some(_), None) => changes.removed.push(id.clone()),
                (None, Some(now)) => changes.upserted.push(now.clone()),
                (Some(was), Some(now)) if !Arc::ptr_eq(&was, now) && *was != **now => {
                    changes.upserted.push(now.clone())
                }
                _ => {}
            }
            for duplicate in self.duplicates_of(&id) {
                changes.errors.push(duplicate);
            }
        }
        changes
    }

    /// The version of `id` in force.
    pub fn in_force(&self, id: &ResourceId) -> Option<&Arc<Resource>> {
        self.in_force.get(id)
    }

    fn add_copy(&mut self, resource: &Arc<Resource>) {
        let id = &resource.id;
        self.remove_copy(resource);
        let mut copies = self.duplicates.remove(id).unwrap_or_default();
        copies.extend(self.in_force.remove(id));
        let at = copies.partition_point(|c| c.precedence < resource.precedence);
        copies.insert(at, resource.clone());
        self.settle(id, copies);
    }

    fn remove_copy(&mut self, resource: &Resource) {
        let id = &resource.id;
        let mut copies = self.duplicates.remove(id).unwrap_or_default();
        copies.extend(self.in_force.remove(id));
        copies.sort_by(|a, b| a.precedence.cmp(&b.precedence));
        copies.retain(|c| c.precedence != resource.precedence);
        self.settle(id, copies);
    }

    /// `copies` sorted by precedence: the first in force, the rest kept aside.
    fn settle(&mut self, id: &ResourceId, copies: Vec<Arc<Resource>>) {
        let mut copies = copies.into_iter();
        if let Some(first) = copies.next() {
            self.in_force.insert(id.clone(), first);
        }
        let rest: Vec<Arc<Resource>> = copies.collect();
        if !rest.is_empty() {
            self.duplicates.insert(id.clone(), rest);
        }
    }

    /// Every resource in force, by precedence.
    pub fn resources(&self) -> Vec<Arc<Resource>> {
        let mut all: Vec<Arc<Resource>> = self.in_force.values().cloned().collect();
        all.sort_by(|a, b| a.precedence.cmp(&b.precedence));
        all
    }

    /// The errors of every file (and of every duplicate), in file order.
    pub fn errors(&self) -> Vec<Diagnostic> {
        let mut errors: Vec<Diagnostic> = self
            .files
            .values()
            .flat_map(|f| f.errors().iter().cloned())
            .collect();
        let mut ids: Vec<&ResourceId> = self.duplicates.keys().collect();
        ids.sort();
        for id in ids {
            errors.extend(self.duplicates_of(id));
        }
        errors
    }

    pub fn warnings(&self) -> Vec<Diagnostic> {
        self.files
            .values()
            .flat_map(|f| f.warnings().iter().cloned())
            .collect()
    }

    /// The files the store holds something for.
    pub fn files(&self) -> impl Iterator<Item = &Arc<str>> {
        self.files.keys()
    }

    fn duplicates_of(&self, id: &ResourceId) -> Vec<Diagnostic> {
        let (Some(first), Some(rest)) = (self.in_force.get(id), self.duplicates.get(id)) else {
            return Vec::new();
        };
        rest.iter().map(|copy| duplicate(first, copy)).collect()
    }
}

/// The first copy of each resource in `resources` (by precedence), and an error for every
/// other copy: for callers that hold a plain list rather than a store.
pub fn first_copies(resources: &[Resource]) -> (Vec<&Resource>, Vec<Diagnostic>) {
    let mut by_id: HashMap<&ResourceId, &Resource> = HashMap::default();
    let mut sorted: Vec<&Resource> = resources.iter().collect();
    sorted.sort_by(|a, b| a.precedence.cmp(&b.precedence));
    let mut kept = Vec::new();
    let mut errors = Vec::new();
    for resource in sorted {
        match by_id.get(&resource.id) {
            Some(first) => errors.push(duplicate(first, resource)),
            None => {
                by_id.insert(&resource.id, resource);
                kept.push(resource);
            }
        }
    }
    (kept, errors)
}

fn duplicate(first: &Resource, copy: &Resource) -> Diagnostic {
    Diagnostic::new(
        copy.origin.file.clone(),
        DuplicateError {
            first_file: first.origin.file.clone(),
            first_document: first.origin.document + 1,
        },
    )
    .resource_id(&copy.id)
    .field("metadata.name")
}

fn slot(resource: &Resource) -> Slot {
    match &resource.precedence {
        Precedence::Position { document, item, .. } => (*document, *item),
        Precedence::Created(_) => (0, 0),
    }
}

fn clone_state(state: &FileState) -> FileState {
    FileState {
        resources: state.resources.clone(),
        problems: state.problems.clone(),
    }
}

/// A file's new contents: what it read, plus the last good version of whatever it failed to
/// read (a whole unreadable file; a document that no longer decodes, found by the resource
/// it names or, failing that, by its position).
fn next_state(
    previous: Option<&FileState>,
    parsed: Parsed,
    kept: &mut Vec<Arc<Resource>>,
) -> FileState {
    let Parsed {
        resources,
        errors,
        warnings,
        unreadable,
        failed,
    } = parsed;
    let mut next: BTreeMap<Slot, Arc<Resource>> = resources
        .into_iter()
        .map(|r| (slot(&r), Arc::new(r)))
        .collect();
    if let Some(previous) = previous {
        if unreadable {
            for (position, resource) in previous.resources.iter() {
                next.insert(*position, resource.clone());
                kept.push(resource.clone());
            }
        } else {
            let present: BTreeSet<ResourceId> = next.values().map(|r| r.id.clone()).collect();
            for failure in failed {
                let position = (
                    u32::try_from(failure.document).unwrap_or(u32::MAX),
                    u32::try_from(failure.item).unwrap_or(u32::MAX),
                );
                let last = match &failure.id {
                    Some(id) => previous.resources.iter().find(|(_, r)| &r.id == id),
                    None => previous
                        .resources
                        .binary_search_by_key(&position, |(p, _)| *p)
                        .ok()
                        .map(|i| &previous.resources[i])
                        .filter(|(_, r)| !present.contains(&r.id)),
                };
                if let Some((position, resource)) = last
                    && !present.contains(&resource.id)
                    && !next.contains_key(position)
                {
                    next.insert(*position, resource.clone());
                    kept.push(resource.clone());
                }
            }
        }
    }
    FileState::new(next.into_iter().collect(), errors, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_str;

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

    fn read(file: &str, text: &str) -> FileUpdate {
        FileUpdate::Read {
            file: file.into(),
            parsed: parse_str(file, text),
        }
    }

    fn ids(store: &Store) -> Vec<String> {
        let mut ids: Vec<String> = store.resources().iter().map(|r| r.id.to_string()).collect();
        ids.sort();
        ids
    }

    #[test]
    fn a_malformed_file_keeps_all_it_held() {
        let mut store = Store::default();
        store.apply([read("svc.yaml", GOOD)]);
        let changes = store.apply([read("svc.yaml", "apiVersion: [unclosed\n")]);
        assert_eq!(changes.errors.len(), 1);
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(changes.kept.len(), 2);
        assert_eq!(
            ids(&store),
            ["ServiceEntry default/a", "ServiceEntry default/b"]
        );
    }

    #[test]
    fn garbage_that_parses_as_a_string_or_a_list_keeps_all_the_file_held() {
        for garbage in ["dGhpcyBpcyBiYXNlNjQ= some garbage\n", "- [1, 2]\n- x\n"] {
            let mut store = Store::default();
            store.apply([read("svc.yaml", GOOD)]);
            let changes = store.apply([read("svc.yaml", garbage)]);
            assert_eq!(changes.errors.len(), 1, "{garbage:?}");
            assert!(changes.is_empty(), "{garbage:?}: {changes:?}");
            assert_eq!(changes.kept.len(), 2, "{garbage:?}");
            assert_eq!(
                ids(&store),
                ["ServiceEntry default/a", "ServiceEntry default/b"]
            );
        }
    }

    #[test]
    fn one_undecodable_document_keeps_only_itself() {
        let mut store = Store::default();
        store.apply([read("svc.yaml", GOOD)]);
        let text = GOOD.replacen("number: 80", "number: eighty", 2).replacen(
            "number: eighty",
            "number: 80",
            1,
        );
        let changes = store.apply([read("svc.yaml", &text)]);
        assert_eq!(changes.errors.len(), 1, "{:?}", changes.errors);
        assert_eq!(
            ids(&store),
            ["ServiceEntry default/a", "ServiceEntry default/b"]
        );
        // The kept one is the old version, at its old position.
        assert_eq!(changes.kept.len(), 1);
        assert_eq!(changes.kept[0].id.to_string(), "ServiceEntry default/b");
    }

    #[test]
    fn a_deleted_resource_is_gone() {
        let mut store = Store::default();
        store.apply([read("svc.yaml", GOOD)]);
        let first_only = GOOD.split("---").next().unwrap_or_default();
        let changes = store.apply([read("svc.yaml", first_only)]);
        assert_eq!(ids(&store), ["ServiceEntry default/a"]);
        assert_eq!(changes.removed.len(), 1);
        let changes = store.apply([FileUpdate::Removed {
            file: "svc.yaml".into(),
        }]);
        assert_eq!(changes.removed.len(), 1);
        assert!(store.resources().is_empty());
    }

    #[test]
    fn kept_versions_keep_their_precedence() {
        let mut store = Store::default();
        store.apply([read("a.yaml", GOOD), read("z.yaml", "")]);
        let before: Vec<Precedence> = store
            .resources()
            .iter()
            .map(|r| r.precedence.clone())
            .collect();
        store.apply([read("a.yaml", "kind: [\n")]);
        let after: Vec<Precedence> = store
            .resources()
            .iter()
            .map(|r| r.precedence.clone())
            .collect();
        assert_eq!(before, after);
    }

    #[test]
    fn only_changed_resources_are_reported() {
        let mut store = Store::default();
        let changes = store.apply([read("svc.yaml", GOOD)]);
        assert_eq!(changes.upserted.len(), 2);
        let changes = store.apply([read("svc.yaml", GOOD)]);
        assert!(changes.is_empty());
        let edited = GOOD.replace("127.0.0.2", "127.0.0.3");
        let changes = store.apply([read("svc.yaml", &edited)]);
        assert_eq!(changes.upserted.len(), 1);
        assert_eq!(changes.upserted[0].id.to_string(), "ServiceEntry default/b");
    }

    #[test]
    fn the_first_copy_of_a_resource_is_in_force_and_others_are_errors() {
        let mut store = Store::default();
        let first = GOOD.split("---").next().unwrap_or_default();
        let changes = store.apply([read("b.yaml", first), read("a.yaml", first)]);
        assert_eq!(changes.upserted.len(), 1);
        let resource = store.resources()[0].clone();
        assert_eq!(&*resource.origin.file, "a.yaml");
        assert_eq!(changes.errors.len(), 1);
        let e = &changes.errors[0];
        assert_eq!(&*e.file, "b.yaml");
        assert_eq!(e.field.as_deref(), Some("metadata.name"));
        assert!(
            e.message()
                .contains("already defined in a.yaml (document 1)"),
            "{e}"
        );
        // Without the first copy, the second is in force.
        let changes = store.apply([FileUpdate::Removed {
            file: "a.yaml".into(),
        }]);
        assert_eq!(changes.upserted.len(), 1);
        assert_eq!(&*changes.upserted[0].origin.file, "b.yaml");
        assert!(store.errors().is_empty());
    }
}
