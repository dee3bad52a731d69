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
    /// What `files::load_dir` would return, parsing only files that changed since last time.
    pub fn load(&mut self, dir: &Path) -> anyhow::Result<Loaded> {
        let paths = yaml_files(dir)?;
        let mut loaded = Loaded::default();
        if paths.is_empty() {
            loaded.warnings.push(no_yaml_warning(dir));
        }
        let mut next = BTreeMap::new();
        for path in paths {
            let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let mut hasher = DefaultHasher::new();
            bytes.hash(&mut hasher);
            let hash = hasher.finish();
            let parsed = match self.files.remove(&path) {
                Some((old, parsed)) if old == hash => parsed,
                _ => parse_bytes(&path, bytes),
            };
            loaded.extend(parsed.clone());
            next.insert(path, (hash, parsed));
        }
        // Files gone from the directory are forgotten with what they held.
        self.files = next;
        Ok(loaded)
    }
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
