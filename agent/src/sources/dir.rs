//! A config directory, read again and again: on start, on SIGHUP, and for the files a watch
//! reports changed. Files whose bytes did not change are not parsed again, so a one-service
//! edit among thousands of services costs one file's parse; nothing but a hash of each file
//! is kept here (the resources live in the store).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use vsteer_model::Diagnostic;
use vsteer_model::parse::parse_bytes;
use vsteer_model::store::FileUpdate;

use super::Reading;

/// A directory that holds no config files: most likely a mistake (a volume not mounted yet, a
/// directory being replaced, a `rm *.yaml` in the wrong place), so it is treated like a
/// missing directory and nothing is removed. An empty `*.yaml` file is how to say "nothing".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "NO *.yaml OR *.yml FILES in this directory: treated like a missing directory, the last \
     good config stays in force ({files} file(s) of it); to remove everything on purpose, leave \
     an empty .yaml file in the directory, or run `vsteer uninstall`"
)]
pub struct NoConfigFiles {
    /// How many files the config in force came from.
    pub files: usize,
}

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
}

/// A file's bytes, read, waiting to be parsed.
struct Read {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl DirSource {
    pub fn new(dir: PathBuf) -> DirSource {
        DirSource {
            dir,
            known: BTreeMap::new(),
            was_empty: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Every `*.yaml` and `*.yml` file of the directory (not its subdirectories); only those
    /// whose bytes changed are parsed, in parallel. `Err` when the directory itself cannot
    /// be listed: nothing is known then, so nothing changes.
    pub fn read_all(&mut self) -> Result<Reading> {
        let paths = yaml_files(&self.dir)?;
        let mut reading = Reading::default();
        self.was_empty = paths.is_empty();
        if paths.is_empty() {
            // Like a missing directory: nothing is known, so nothing changes.
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
            .filter(|known| !paths.contains(known))
            .cloned()
            .collect();
        for path in gone {
            self.known.remove(&path);
            reading
                .updates
                .push(FileUpdate::Removed { file: name(&path) });
        }
        let mut reads = Vec::new();
        for path in paths {
            self.read(path, &mut reads, &mut reading.updates);
        }
        reading.updates.extend(parse_all(reads));
        Ok(reading)
    }

    /// The files at `paths`: read when they are config files of the directory, removed
    /// when they are gone. A path that is not a plain file of the directory (the directory
    /// itself, a `..data` link a ConfigMap volume swaps) means everything may have changed.
    pub fn read_changed(&mut self, paths: &[PathBuf]) -> Result<Reading> {
        if self.was_empty {
            return self.read_all();
        }
        let mut files = Vec::new();
        for path in paths {
            let in_dir = path.parent() == Some(self.dir.as_path());
            let Some(file_name) = path.file_name().filter(|_| in_dir) else {
                return self.read_all();
            };
            if file_name.to_string_lossy().starts_with("..") {
                return self.read_all();
            }
            if is_yaml_name(file_name) {
                files.push(path.clone());
            }
        }
        files.sort();
        files.dedup();
        // Removing the last file empties the directory: that is read as a whole, and an
        // empty directory changes nothing.
        let removes = files.iter().any(|path| !present(path));
        if removes && yaml_files(&self.dir)?.is_empty() {
            return self.read_all();
        }
        let mut reading = Reading::default();
        let mut reads = Vec::new();
        for path in files {
            if present(&path) {
                self.read(path, &mut reads, &mut reading.updates)
            } else if self.known.remove(&path).is_some() {
                reading
                    .updates
                    .push(FileUpdate::Removed { file: name(&path) });
            }
        }
        reading.updates.extend(parse_all(reads));
        Ok(reading)
    }

    /// Reads one file into `reads` when its bytes changed; an unreadable one becomes an
    /// update of its own.
    fn read(&mut self, path: PathBuf, reads: &mut Vec<Read>, updates: &mut Vec<FileUpdate>) {
        match fs::read(&path) {
            Ok(bytes) => {
                let mut hasher = DefaultHasher::new();
                bytes.hash(&mut hasher);
                let hash = hasher.finish();
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

fn name(path: &Path) -> Arc<str> {
    Arc::from(path.display().to_string())
}

/// Parses the files, spread over the machine's cores (YAML parsing is most of a large
/// load), in the order given.
fn parse_all(reads: Vec<Read>) -> Vec<FileUpdate> {
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
                            FileUpdate::Read {
                                parsed: parse_bytes(&file, read.bytes),
                                file,
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

/// The `*.yaml` and `*.yml` files of `dir` (not its subdirectories), sorted by name, so
/// precedence (file path, then document) gives the same answer on every run.
pub fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries =
        fs::read_dir(dir).with_context(|| format!("reading config directory {}", dir.display()))?;
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing config directory {}", dir.display()))?;
        let path = entry.path();
        if !is_yaml_name(&entry.file_name()) {
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

fn is_yaml_name(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    // Dot files include the `..data` links of ConfigMap volumes and editors' backups.
    if name.starts_with('.') {
        return false;
    }
    Path::new(name.as_ref())
        .extension()
        .and_then(OsStr::to_str)
        .is_some_and(|ext| ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml"))
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

    fn read_dir(dir: &Path) -> Store {
        let mut store = Store::default();
        let reading = DirSource::new(dir.to_path_buf()).read_all().unwrap();
        store.apply(reading.updates);
        store
    }

    #[test]
    fn reads_yaml_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: db, namespace: data}\nspec: {host: db}\n";
        fs::write(dir.path().join("b-rules.yml"), dr).unwrap();
        fs::write(dir.path().join("a-services.yaml"), SE).unwrap();
        fs::write(dir.path().join("notes.txt"), "not: [yaml").unwrap();
        fs::create_dir(dir.path().join("sub.yaml")).unwrap();

        let store = read_dir(dir.path());
        assert!(store.errors().is_empty(), "{:?}", store.errors());
        let resources = store.resources();
        let ids: Vec<_> = resources.iter().map(|r| r.id.to_string()).collect();
        assert_eq!(ids, ["ServiceEntry data/db", "DestinationRule data/db"]);
        assert!(resources[0].origin.file.ends_with("a-services.yaml"));
        assert!(resources[1].origin.file.ends_with("b-rules.yml"));
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
        let mut source = DirSource::new(dir.path().to_path_buf());
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
}
