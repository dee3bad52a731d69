//! A config directory read again and again (every change the agent sees): files whose bytes
//! did not change are not parsed again, so a one-service edit among thousands of services
//! costs one file's parse.
use std::{
    collections::{BTreeMap, hash_map::DefaultHasher},
    fs,
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
};

use anyhow::Context;

use super::{
    Loaded,
    files::{no_yaml_warning, parse_bytes, yaml_files},
};

#[derive(Default)]
pub struct DirCache {
    /// Per file: a hash of its bytes and what they parsed to.
    files: BTreeMap<PathBuf, (u64, Loaded)>,
}

impl DirCache {
    /// What `files::load_dir` would return, parsing only files that changed since last time
    /// (those in parallel, one thread per core: YAML parsing is most of a large load).
    pub fn load(&mut self, dir: &Path) -> anyhow::Result<Loaded> {
        let paths = yaml_files(dir)?;
        let mut loaded = Loaded::default();
        if paths.is_empty() {
            loaded.warnings.push(no_yaml_warning(dir));
        }
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let mut hasher = DefaultHasher::new();
            bytes.hash(&mut hasher);
            let hash = hasher.finish();
            let cached = match self.files.remove(&path) {
                Some((old, parsed)) if old == hash => Some(parsed),
                _ => None,
            };
            files.push((path, hash, bytes, cached));
        }
        parse_missing(&mut files);
        let mut next = BTreeMap::new();
        for (path, hash, _, parsed) in files {
            let parsed = parsed.unwrap_or_default();
            loaded.extend(parsed.clone());
            next.insert(path, (hash, parsed));
        }
        // Files gone from the directory are forgotten with what they held.
        self.files = next;
        Ok(loaded)
    }
}

type File = (PathBuf, u64, Vec<u8>, Option<Loaded>);

/// Parses every file that has no cached result yet, spread over the machine's cores.
fn parse_missing(files: &mut [File]) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let todo: Vec<&mut File> = files.iter_mut().filter(|f| f.3.is_none()).collect();
    let per_thread = todo.len().div_ceil(threads).max(1);
    let mut todo = todo;
    std::thread::scope(|scope| {
        while !todo.is_empty() {
            let chunk: Vec<&mut File> = todo.drain(..per_thread.min(todo.len())).collect();
            scope.spawn(move || {
                for (path, _, bytes, parsed) in chunk {
                    *parsed = Some(parse_bytes(path, std::mem::take(bytes)));
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::load_dir;

    const SE: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: NAME}
spec:
  hosts: [NAME.example.com]
  addresses: [127.100.0.1]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
";

    #[test]
    fn reads_like_load_dir_and_follows_changes() {
        let dir = std::env::temp_dir().join(format!("vsteer-cache-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("a.yaml"), SE.replace("NAME", "a")).unwrap();
        fs::write(dir.join("b.yaml"), SE.replace("NAME", "b")).unwrap();
        let mut cache = DirCache::default();
        assert_eq!(cache.load(&dir).unwrap(), load_dir(&dir).unwrap());

        fs::write(dir.join("b.yaml"), SE.replace("NAME", "c")).unwrap();
        let again = cache.load(&dir).unwrap();
        assert_eq!(again, load_dir(&dir).unwrap());
        let names: Vec<_> = again
            .resources
            .iter()
            .map(|r| r.meta.name.clone())
            .collect();
        assert_eq!(names, ["a", "c"]);

        fs::remove_file(dir.join("a.yaml")).unwrap();
        assert_eq!(cache.load(&dir).unwrap().resources.len(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
