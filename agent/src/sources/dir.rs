//! A config directory, read again and again: on start, on SIGHUP, and for the files a watch
//! reports changed. Files whose bytes did not change are not parsed again, so a one-service
//! edit among thousands of services costs one file's parse; nothing but a hash of each file
//! is kept here (the resources live in the store).
//!
//! What is read, and when: a file is read once it is stable (not modified within the settle
//! time, and unchanged while it was read), so a writer caught mid-file is waited for. A
//! Kubernetes ConfigMap volume (files that are links into `..data/`, itself a link to a
//! timestamped generation that the kubelet swaps atomically) is read from the generation
//! `..data` names when the read starts, so one read never mixes two generations; a swap
//! during the read reads again. An empty directory is treated like a missing one.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use vsteer_model::Diagnostic;
use vsteer_model::parse::{parse_bytes, parse_str};
use vsteer_model::store::FileUpdate;

use super::Reading;
use super::snapshot::Snapshot;
use super::watch::{MAX_OPEN, SETTLE};

/// The link a Kubernetes ConfigMap (or Secret, or projected) volume swaps to publish a new
/// generation of its files.
pub const DATA_LINK: &str = "..data";
/// How often a ConfigMap volume's read is retried when `..data` keeps moving under it.
const GENERATION_ATTEMPTS: usize = 5;

/// A directory that holds no config files: most likely a mistake (a volume not mounted yet, a
/// directory being replaced, a `rm *.yaml` in the wrong place), so it is treated like a
/// missing directory and nothing is removed. An empty `*.yaml` file is how to say "nothing".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "NO *.yaml, *.yml OR *.json FILES in this directory: treated like a missing directory, the last \
     good config stays in force ({files} file(s) of it); to remove everything on purpose, leave \
     an empty .yaml file in the directory, or run `vsteer uninstall`"
)]
pub struct NoConfigFiles {
    /// How many files the config in force came from.
    pub files: usize,
}

/// The YAML parser panicked on a file (a bug: please report the file).
#[derive(Debug, thiserror::Error)]
#[error("the parser failed on this file (a bug in vsteer); what it held stays in force")]
pub struct ParserPanicked;

/// A config file that exists but cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot be read ({0}); what it held stays in force")]
pub struct Unreadable(std::io::Error);

pub struct DirSource {
    dir: PathBuf,
    /// A hash of the bytes each file had when last read.
    known: BTreeMap<PathBuf, u64>,
    /// The last read found no config files (and kept what `known` holds): the next change
    /// is read as a whole, so files gone meanwhile are removed once others are back.
    was_empty: bool,
    /// How long a file must be unmodified before it is read.
    settle: Duration,
    /// The last good copy of each file, kept for a restart.
    snapshot: Option<Snapshot>,
    /// The first read is done (the snapshot is consulted only by the first).
    started: bool,
}

/// One config file: the path it is known by (in the directory; it names the file's
/// resources) and where its bytes are read (the same path, or its copy in the generation a
/// ConfigMap volume's `..data` names).
struct Entry {
    path: PathBuf,
    from: PathBuf,
}

/// The config files of the directory, as listed once.
struct Listing {
    /// The generation `..data` named when listed (a ConfigMap volume), else `None`.
    generation: Option<PathBuf>,
    entries: Vec<Entry>,
}

/// A file's bytes, read, waiting to be parsed.
struct Read {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl DirSource {
    pub fn new(dir: PathBuf) -> DirSource {
        DirSource::with_settle(dir, SETTLE)
    }

    /// A source that reads a file only once it has not been modified for `settle`.
    pub fn with_settle(dir: PathBuf, settle: Duration) -> DirSource {
        DirSource {
            dir,
            known: BTreeMap::new(),
            was_empty: false,
            settle,
            snapshot: None,
            started: false,
        }
    }

    /// Keeps the last good copy of each file in `snapshot`, and starts from it for files
    /// that do not parse at the first read.
    pub fn with_snapshot(mut self, snapshot: Snapshot) -> DirSource {
        self.snapshot = Some(snapshot);
        self
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Every config file (`*.yaml`, `*.yml`, `*.json`) of the directory (not its subdirectories); only those
    /// whose bytes changed are parsed, in parallel. `Err` when the directory itself cannot
    /// be listed: nothing is known then, so nothing changes.
    pub fn read_all(&mut self) -> Result<Reading> {
        let mut attempt = 0;
        let (listing, contents) = loop {
            attempt += 1;
            let listing = self.list()?;
            let contents: Vec<std::io::Result<Vec<u8>>> = listing
                .entries
                .iter()
                .map(|entry| match listing.generation {
                    // A generation is complete before `..data` names it.
                    Some(_) => fs::read(&entry.from),
                    None => read_stable(&entry.from, self.settle),
                })
                .collect();
            // The kubelet swapped generations meanwhile (and may have removed the one read
            // from): read the new one.
            if listing.generation.is_none()
                || generation(&self.dir) == listing.generation
                || attempt >= GENERATION_ATTEMPTS
            {
                break (listing, contents);
            }
        };
        let mut reading = Reading::default();
        let first = !self.started;
        self.started = true;
        self.was_empty = listing.entries.is_empty();
        if listing.entries.is_empty() {
            // Like a missing directory: nothing is known, so nothing changes; at start, what
            // was in force before it is.
            if first {
                reading.updates = self.restore_all();
            }
            reading.warnings.push(Diagnostic::new(
                self.dir.display().to_string(),
                NoConfigFiles {
                    files: self.known.len(),
                },
            ));
            return Ok(reading);
        }
        let gone: Vec<PathBuf> = self
            .known
            .keys()
            .filter(|known| !listing.entries.iter().any(|e| &e.path == *known))
            .cloned()
            .collect();
        for path in gone {
            self.known.remove(&path);
            self.forget(&path);
            reading
                .updates
                .push(FileUpdate::Removed { file: name(&path) });
        }
        if first && let Some(snapshot) = &self.snapshot {
            // Copies of files deleted while no agent ran.
            for copy in snapshot.names() {
                let path = self.dir.join(&copy);
                if !listing.entries.iter().any(|e| e.path == path) {
                    snapshot.remove(&path);
                }
            }
        }
        let mut reads = Vec::new();
        for (entry, content) in listing.entries.into_iter().zip(contents) {
            self.take(entry.path, content, &mut reads, &mut reading.updates);
        }
        reading
            .updates
            .extend(parse_all(reads, self.snapshot.as_ref()));
        if first {
            reading.updates = self.with_last_good(reading.updates);
        }
        Ok(reading)
    }

    /// At start: every file that does not parse is first given its last good copy, so that
    /// the store keeps what it held before the restart.
    fn with_last_good(&self, updates: Vec<FileUpdate>) -> Vec<FileUpdate> {
        let Some(snapshot) = &self.snapshot else {
            return updates;
        };
        let mut all = Vec::with_capacity(updates.len());
        for update in updates {
            let failed = match &update {
                FileUpdate::Read { file, parsed } => {
                    (parsed.unreadable || !parsed.failed.is_empty()).then_some(file)
                }
                FileUpdate::Unreadable { file, .. } => Some(file),
                FileUpdate::Removed { .. } => None,
            };
            if let Some(file) = failed
                && let Some(bytes) = snapshot.load(Path::new(&**file))
            {
                tracing::warn!(
                    file = %file,
                    "does not parse at start: starting from its last good copy (from before the restart)"
                );
                all.push(FileUpdate::Read {
                    parsed: parse_bytes(file, bytes),
                    file: file.clone(),
                });
            }
            all.push(update);
        }
        all
    }

    /// At start, with no config files: everything of the snapshot, as it was in force.
    fn restore_all(&mut self) -> Vec<FileUpdate> {
        let Some(snapshot) = &self.snapshot else {
            return Vec::new();
        };
        let mut updates = Vec::new();
        for copy in snapshot.names() {
            let path = self.dir.join(&copy);
            let Some(bytes) = snapshot.load(&path) else {
                continue;
            };
            tracing::warn!(file = %path.display(), "not in the directory at start: its last good copy (from before the restart) stays in force");
            self.known.insert(path.clone(), hash(&bytes));
            let file = name(&path);
            updates.push(FileUpdate::Read {
                parsed: parse_bytes(&file, bytes),
                file,
            });
        }
        updates
    }

    /// A file is gone: so is its last good copy.
    fn forget(&self, path: &Path) {
        if let Some(snapshot) = &self.snapshot {
            snapshot.remove(path);
        }
    }

    /// The files at `paths`: read when they are config files of the directory, removed
    /// when they are gone. A path that is not a plain file of the directory (the directory
    /// itself, a `..data` link a ConfigMap volume swaps) means everything may have changed,
    /// and so does any change in a ConfigMap volume.
    pub fn read_changed(&mut self, paths: &[PathBuf]) -> Result<Reading> {
        if self.was_empty || generation(&self.dir).is_some() {
            return self.read_all();
        }
        let mut files = Vec::new();
        for path in paths {
            let in_dir = path.parent() == Some(self.dir.as_path());
            let Some(file_name) = path.file_name().filter(|_| in_dir) else {
                return self.read_all();
            };
            if file_name == DATA_LINK {
                return self.read_all();
            }
            if is_config_name(file_name) {
                files.push(path.clone());
            }
        }
        files.sort();
        files.dedup();
        // Removing the last file empties the directory: that is read as a whole, and an
        // empty directory changes nothing.
        let removes = files.iter().any(|path| !present(path));
        if removes && config_files(&self.dir)?.is_empty() {
            return self.read_all();
        }
        let mut reading = Reading::default();
        let mut reads = Vec::new();
        for path in files {
            if present(&path) {
                let content = read_stable(&path, self.settle);
                self.take(path, content, &mut reads, &mut reading.updates)
            } else if self.known.remove(&path).is_some() {
                self.forget(&path);
                reading
                    .updates
                    .push(FileUpdate::Removed { file: name(&path) });
            }
        }
        reading
            .updates
            .extend(parse_all(reads, self.snapshot.as_ref()));
        Ok(reading)
    }

    /// The config files, from the generation `..data` names when there is one.
    fn list(&self) -> Result<Listing> {
        let Some(generation) = generation(&self.dir) else {
            let entries = config_files(&self.dir)?
                .into_iter()
                .map(|path| Entry {
                    from: path.clone(),
                    path,
                })
                .collect();
            return Ok(Listing {
                generation: None,
                entries,
            });
        };
        // Listed by the generation, not by the links at the top: the kubelet adds the links
        // of new files after the swap and removes those of old ones later.
        let entries = config_files(&generation)?
            .into_iter()
            .filter_map(|from| {
                let path = self.dir.join(from.file_name()?);
                Some(Entry { path, from })
            })
            .collect();
        Ok(Listing {
            generation: Some(generation),
            entries,
        })
    }

    /// Keeps one file's bytes for parsing when they changed; an unreadable one becomes an
    /// update of its own.
    fn take(
        &mut self,
        path: PathBuf,
        content: std::io::Result<Vec<u8>>,
        reads: &mut Vec<Read>,
        updates: &mut Vec<FileUpdate>,
    ) {
        match content {
            Ok(bytes) => {
                let hash = hash(&bytes);
                if self.known.insert(path.clone(), hash) != Some(hash) {
                    reads.push(Read { path, bytes });
                }
            }
            Err(e) => {
                let file = name(&path);
                updates.push(FileUpdate::Unreadable {
                    error: Diagnostic::new(file.clone(), Unreadable(e)),
                    file,
                });
            }
        }
    }
}

/// The generation directory `dir/..data` names, when `dir` is a ConfigMap-style volume.
fn generation(dir: &Path) -> Option<PathBuf> {
    let link = dir.join(DATA_LINK);
    let target = fs::read_link(&link).ok()?;
    let generation = dir.join(target);
    fs::metadata(&generation)
        .is_ok_and(|m| m.is_dir())
        .then_some(generation)
}

/// A file's bytes once it is stable: not modified within `settle` (a writer may be pausing
/// mid-file), and unchanged (size, modification time, inode) while it was read. A file that
/// keeps changing is read after [`MAX_OPEN`] all the same.
fn read_stable(path: &Path, settle: Duration) -> std::io::Result<Vec<u8>> {
    let started = Instant::now();
    loop {
        let before = Stamp::of(path)?;
        let waited = started.elapsed();
        let age = before.age();
        if age < settle && waited < MAX_OPEN {
            std::thread::sleep((settle - age).min(MAX_OPEN - waited));
            continue;
        }
        let bytes = fs::read(path)?;
        if Stamp::of(path)? == before || started.elapsed() >= MAX_OPEN {
            return Ok(bytes);
        }
    }
}

/// What tells that a file changed without reading it.
#[derive(Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> std::io::Result<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let metadata = fs::metadata(path)?;
        Ok(Stamp {
            len: metadata.len(),
            modified: metadata.modified().ok(),
            inode: metadata.ino(),
        })
    }

    /// Since the last modification; a time in the future (a clock set back, an archive
    /// from elsewhere) says nothing about a writer, and counts as old.
    fn age(&self) -> Duration {
        self.modified
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .unwrap_or(Duration::MAX)
    }
}

fn hash(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

fn name(path: &Path) -> Arc<str> {
    Arc::from(path.display().to_string())
}

/// Parses the files, spread over the machine's cores (YAML parsing is most of a large
/// load), in the order given; each that parses without an error becomes its last good copy
/// in `snapshot`.
fn parse_all(reads: Vec<Read>, snapshot: Option<&Snapshot>) -> Vec<FileUpdate> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = reads.len().div_ceil(threads).max(1);
    let mut chunks: Vec<Vec<Read>> = Vec::new();
    let mut reads = reads.into_iter().peekable();
    while reads.peek().is_some() {
        chunks.push(reads.by_ref().take(per_thread).collect());
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|read| {
                            let file = name(&read.path);
                            // A bug in a parser must not take the agent down, nor the
                            // file's resources: they are kept as for an unreadable file.
                            let parsed = std::panic::catch_unwind(AssertUnwindSafe(|| {
                                match std::str::from_utf8(&read.bytes) {
                                    Ok(text) => parse_str(&file, text),
                                    Err(_) => parse_bytes(&file, read.bytes.clone()),
                                }
                            }));
                            match parsed {
                                Ok(parsed) => {
                                    if let Some(snapshot) = snapshot
                                        && !parsed.unreadable
                                        && parsed.failed.is_empty()
                                    {
                                        snapshot.save(&read.path, &read.bytes);
                                    }
                                    FileUpdate::Read { parsed, file }
                                }
                                Err(_) => FileUpdate::Unreadable {
                                    error: Diagnostic::new(file.clone(), ParserPanicked),
                                    file,
                                },
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// Whether `path` is a config file of the directory: a file, a symlink to one, or an entry
/// that cannot be followed (a dangling link, a loop, no permission): reading it reports why,
/// and what it held stays in force. Gone, or a directory: not a config file.
fn present(path: &Path) -> bool {
    match fs::metadata(path) {
        Ok(metadata) => metadata.is_file(),
        Err(_) => fs::symlink_metadata(path).is_ok(),
    }
}

/// The config files (`*.yaml`, `*.yml`, `*.json`: what `kubectl apply -f DIR` reads) of
/// `dir` (not its subdirectories), sorted by name, so
/// precedence (file path, then document) gives the same answer on every run.
pub fn config_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries =
        fs::read_dir(dir).with_context(|| format!("reading config directory {}", dir.display()))?;
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing config directory {}", dir.display()))?;
        let path = entry.path();
        if !is_config_name(&entry.file_name()) {
            continue;
        }
        // A ConfigMap volume mounts each file as a symlink: they are followed.
        if present(&path) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

pub fn is_config_name(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    // Dot files include the `..data` links and generations of ConfigMap volumes, editors'
    // swap and lock files (`.a.yaml.swp`, `.#a.yaml`) and temporary files of atomic writes;
    // backups (`a.yaml~`, `#a.yaml#`) do not end in `.yaml`.
    if name.starts_with('.') {
        return false;
    }
    Path::new(name.as_ref())
        .extension()
        .and_then(OsStr::to_str)
        .is_some_and(|ext| {
            ["yaml", "yml", "json"]
                .iter()
                .any(|known| ext.eq_ignore_ascii_case(known))
        })
}

#[cfg(test)]
mod tests {
    use vsteer_model::store::Store;

    use super::*;

    const SE: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: db
  namespace: data
spec:
  hosts: [db.data.svc.cluster.local]
  addresses: [10.9.0.1]
  ports:
  - {number: 5432, name: tcp-pg, protocol: TCP}
  resolution: STATIC
  endpoints:
  - address: 10.9.1.1
";

    fn source(dir: &Path) -> DirSource {
        // The files are written just before they are read: no settle wait.
        DirSource::with_settle(dir.to_path_buf(), Duration::ZERO)
    }

    fn read_dir(dir: &Path) -> Store {
        let mut store = Store::default();
        let reading = source(dir).read_all().unwrap();
        store.apply(reading.updates);
        store
    }

    #[test]
    fn reads_yaml_and_json_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: db, namespace: data}\nspec: {host: db}\n";
        fs::write(dir.path().join("b-rules.yml"), dr).unwrap();
        fs::write(dir.path().join("a-services.yaml"), SE).unwrap();
        // JSON, as `kubectl apply -f DIR` reads it too (indented with tabs, which YAML's
        // block style forbids and JSON allows).
        let vs = "{\n\t\"apiVersion\": \"networking.istio.io/v1\",\n\t\"kind\": \"VirtualService\",\n\t\"metadata\": {\"name\": \"db\", \"namespace\": \"data\"},\n\t\"spec\": {\n\t\t\"hosts\": [\"db\"],\n\t\t\"tcp\": [{\"route\": [{\"destination\": {\"host\": \"db\"}}]}]\n\t}\n}\n";
        fs::write(dir.path().join("c-routes.JSON"), vs).unwrap();
        fs::write(dir.path().join("notes.txt"), "not: [yaml").unwrap();
        fs::create_dir(dir.path().join("sub.yaml")).unwrap();

        let store = read_dir(dir.path());
        assert!(store.errors().is_empty(), "{:?}", store.errors());
        let resources = store.resources();
        let ids: Vec<_> = resources.iter().map(|r| r.id.to_string()).collect();
        assert_eq!(
            ids,
            [
                "ServiceEntry data/db",
                "DestinationRule data/db",
                "VirtualService data/db"
            ]
        );
        assert!(resources[0].origin.file.ends_with("a-services.yaml"));
        assert!(resources[1].origin.file.ends_with("b-rules.yml"));
        assert!(resources[2].origin.file.ends_with("c-routes.JSON"));
    }

    #[test]
    fn a_missing_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = DirSource::new(missing).read_all().unwrap_err();
        assert!(format!("{e:#}").contains("nope"), "{e:#}");
    }

    #[test]
    fn non_utf8_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("bin.yaml"), b"kind: \xff\n").unwrap();
        let store = read_dir(dir.path());
        assert_eq!(store.errors().len(), 1);
        assert!(store.errors()[0].message().contains("UTF-8"));
    }

    #[test]
    fn only_changed_files_are_parsed_and_gone_ones_removed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.yaml"), SE.replace("db", "a")).unwrap();
        fs::write(dir.path().join("b.yaml"), SE.replace("db", "b")).unwrap();
        let mut source = source(dir.path());
        assert_eq!(source.read_all().unwrap().updates.len(), 2);
        assert!(
            source.read_all().unwrap().updates.is_empty(),
            "nothing changed"
        );

        fs::write(dir.path().join("b.yaml"), SE.replace("db", "c")).unwrap();
        let again = source.read_all().unwrap();
        assert_eq!(again.updates.len(), 1);
        assert!(
            matches!(&again.updates[0], FileUpdate::Read { file, .. } if file.ends_with("b.yaml"))
        );

        fs::remove_file(dir.path().join("a.yaml")).unwrap();
        let changed = source
            .read_changed(&[dir.path().join("a.yaml"), dir.path().join("b.yaml")])
            .unwrap();
        assert_eq!(changed.updates.len(), 1, "b.yaml is unchanged");
        assert!(
            matches!(&changed.updates[0], FileUpdate::Removed { file } if file.ends_with("a.yaml"))
        );
    }

    fn resources(reading: Reading) -> Vec<(String, String)> {
        let mut store = Store::default();
        store.apply(reading.updates);
        assert!(store.errors().is_empty(), "{:?}", store.errors());
        store
            .resources()
            .iter()
            .map(|r| (r.id.to_string(), r.origin.file.to_string()))
            .collect()
    }

    /// The kubelet's atomic writer: files are links into `..data/`, `..data` is a link to a
    /// timestamped generation, and an update writes a new generation, points `..data_tmp` at
    /// it, renames that over `..data`, then adds links for new files and removes old ones.
    #[test]
    fn a_configmap_volume_is_read_from_the_generation_data_names() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let publish = |generation: &str, files: &[(&str, String)]| {
            fs::create_dir(dir.join(generation)).unwrap();
            for (file, text) in files {
                fs::write(dir.join(generation).join(file), text).unwrap();
            }
            symlink(generation, dir.join("..data_tmp")).unwrap();
            fs::rename(dir.join("..data_tmp"), dir.join(DATA_LINK)).unwrap();
        };
        publish(
            "..2026_12_01_10_00_00.1",
            &[("a.yaml", SE.replace("db", "a"))],
        );
        symlink("..data/a.yaml", dir.join("a.yaml")).unwrap();
        let mut source = source(dir);
        let a = dir.join("a.yaml").display().to_string();
        let b = dir.join("b.yaml").display().to_string();
        assert_eq!(
            resources(source.read_all().unwrap()),
            [("ServiceEntry data/a".to_string(), a.clone())]
        );

        // A new generation with a.yaml changed and b.yaml added; b.yaml's link is not there
        // yet when the swap is seen.
        publish(
            "..2026_12_01_10_01_00.2",
            &[
                ("a.yaml", SE.replace("db", "a2")),
                ("b.yaml", SE.replace("db", "b")),
            ],
        );
        let reading = source.read_changed(&[dir.join(DATA_LINK)]).unwrap();
        let mut store = Store::default();
        store.apply(reading.updates);
        let mut got: Vec<(String, String)> = store
            .resources()
            .iter()
            .map(|r| (r.id.to_string(), r.origin.file.to_string()))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("ServiceEntry data/a2".to_string(), a.clone()),
                ("ServiceEntry data/b".to_string(), b.clone()),
            ]
        );
        fs::remove_dir_all(dir.join("..2026_12_01_10_00_00.1")).unwrap();
        symlink("..data/b.yaml", dir.join("b.yaml")).unwrap();

        // a.yaml leaves the ConfigMap: its link still dangles at the top for a while.
        publish(
            "..2026_12_01_10_02_00.3",
            &[("b.yaml", SE.replace("db", "b"))],
        );
        let reading = source.read_changed(&[dir.join("a.yaml")]).unwrap();
        assert!(
            reading
                .updates
                .iter()
                .any(|u| matches!(u, FileUpdate::Removed { file } if **file == *a)),
            "{:?}",
            reading.updates
        );
        assert!(
            !reading
                .updates
                .iter()
                .any(|u| matches!(u, FileUpdate::Unreadable { .. })),
            "{:?}",
            reading.updates
        );
    }

    /// A writer that pauses mid-file: the read waits until the file has been left alone for
    /// the settle time, and so sees it whole.
    #[test]
    fn a_file_is_read_once_it_has_been_unmodified_for_the_settle_time() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.yaml");
        // Cut before the endpoints: still valid, but another config.
        let (head, tail) = SE.split_at(SE.find("  endpoints:").unwrap());
        fs::write(&path, head).unwrap();
        let writer = {
            let path = path.clone();
            let tail = tail.to_string();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(150));
                let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
                file.write_all(tail.as_bytes()).unwrap();
            })
        };
        let started = Instant::now();
        let mut source =
            DirSource::with_settle(dir.path().to_path_buf(), Duration::from_millis(400));
        let reading = source.read_all().unwrap();
        writer.join().unwrap();
        assert!(started.elapsed() >= Duration::from_millis(400));
        let FileUpdate::Read { parsed, .. } = &reading.updates[0] else {
            panic!("{:?}", reading.updates);
        };
        let vsteer_model::ResourceSpec::ServiceEntry(entry) = &parsed.resources[0].spec else {
            panic!("not a ServiceEntry");
        };
        assert_eq!(entry.endpoints.len(), 1, "read before the writer was done");
    }
}
