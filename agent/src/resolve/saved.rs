//! The last good DNS answers, kept on disk next to the config snapshot
//! (`<state dir>/<pin dir as a name>/dns-answers.json`), so that an agent restarted while
//! DNS fails still has what its names last resolved to. Written atomically when an answer
//! changes; read once at start, for the names DNS has not answered by then.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::dns::Answer;

const FILE: &str = "dns-answers.json";

pub struct SavedAnswers {
    path: PathBuf,
    /// What the file holds, so that it is written only when that changes.
    written: BTreeMap<Box<str>, Arc<[IpAddr]>>,
}

impl SavedAnswers {
    /// The answers saved for the datapath pinned at `pin_dir` (none if unreadable: said).
    pub fn open(state_dir: &Path, pin_dir: &Path) -> SavedAnswers {
        let path = crate::sources::snapshot::location(state_dir, pin_dir).join(FILE);
        let written = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<BTreeMap<Box<str>, Vec<IpAddr>>>(&bytes) {
                Ok(table) => table.into_iter().map(|(n, a)| (n, a.into())).collect(),
                Err(err) => {
                    tracing::warn!(file = %path.display(), "the saved DNS answers do not parse, so they are not used: {err}");
                    BTreeMap::new()
                }
            },
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(err) => {
                tracing::warn!(file = %path.display(), "the saved DNS answers cannot be read, so they are not used: {err}");
                BTreeMap::new()
            }
        };
        SavedAnswers { path, written }
    }

    /// The saved answers for `names`.
    pub fn for_names<'a>(&'a self, names: &'a [Box<str>]) -> impl Iterator<Item = Answer> + 'a {
        names.iter().filter_map(|name| {
            Some(Answer {
                name: name.clone(),
                addresses: self.written.get(name)?.clone(),
            })
        })
    }

    /// Keeps `answers` (every name's answer in force) unless the file holds them already.
    pub fn save(&mut self, answers: BTreeMap<Box<str>, Arc<[IpAddr]>>) {
        if answers == self.written {
            return;
        }
        let table: BTreeMap<&str, &[IpAddr]> = answers.iter().map(|(n, a)| (&**n, &**a)).collect();
        let written = serde_json::to_vec_pretty(&table)
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_atomically(&self.path, &bytes));
        match written {
            Ok(()) => self.written = answers,
            Err(err) => tracing::warn!(
                file = %self.path.display(),
                "the DNS answers could not be saved (a restart while DNS fails would not have them): {err}"
            ),
        }
    }
}

/// A temporary file next to `path`, renamed over it; its directory made first.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_file_name(format!(".{FILE}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_survive_a_restart_and_a_bad_file_is_ignored() {
        let state = tempfile::tempdir().unwrap();
        let pins = Path::new("/sys/fs/bpf/vsteer-test");
        let mut saved = SavedAnswers::open(state.path(), pins);
        let names: Vec<Box<str>> = vec!["a.example.com".into(), "b.example.com".into()];
        assert_eq!(saved.for_names(&names).count(), 0);
        let a: Arc<[IpAddr]> = Arc::from(["10.0.0.1".parse::<IpAddr>().unwrap()]);
        saved.save(BTreeMap::from([(names[0].clone(), a.clone())]));
        let again = SavedAnswers::open(state.path(), pins);
        let found: Vec<Answer> = again.for_names(&names).collect();
        assert_eq!(
            found,
            [Answer {
                name: names[0].clone(),
                addresses: a
            }]
        );
        std::fs::write(&again.path, b"{not json").unwrap();
        assert_eq!(
            SavedAnswers::open(state.path(), pins)
                .for_names(&names)
                .count(),
            0
        );
    }
}
