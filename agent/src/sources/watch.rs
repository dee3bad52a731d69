//! Following a config directory: file events, debounced by notify-debouncer-full (editors
//! and tools write in several steps; a file is reported once it has been quiet for the
//! settle time), delivered as batches of the paths that changed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use notify::{EventKind, RecursiveMode, event::ModifyKind};
use notify_debouncer_full::{
    DebounceEventResult, Debouncer, RecommendedCache, new_debouncer, notify::RecommendedWatcher,
};
use tokio::sync::mpsc;

/// How long a file must be quiet before it is read.
pub const SETTLE: Duration = Duration::from_millis(200);

/// Paths that changed, and when the first of their events happened (the settle wait is
/// the time from then to delivery).
#[derive(Debug)]
pub struct Batch {
    pub paths: Vec<PathBuf>,
    pub first_event: Instant,
}

/// The watch; dropping it stops it.
pub struct Watch {
    _debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
}

/// Sends a [`Batch`] on `changed` for every settled change in `dir`.
pub fn watch(dir: &Path, changed: mpsc::UnboundedSender<Batch>) -> Result<Watch> {
    let mut debouncer = new_debouncer(SETTLE, None, move |result: DebounceEventResult| {
        let Ok(events) = result else {
            // The watch itself failed (e.g. inotify's queue overflowed): everything may
            // have changed, so ask for a full read.
            let _ = changed.send(Batch {
                paths: Vec::new(),
                first_event: Instant::now(),
            });
            return;
        };
        let events: Vec<_> = events.into_iter().filter(|e| is_change(&e.kind)).collect();
        let Some(first_event) = events.iter().map(|e| e.time).min() else {
            return;
        };
        let mut paths: Vec<PathBuf> = events.into_iter().flat_map(|e| e.event.paths).collect();
        paths.sort();
        paths.dedup();
        let _ = changed.send(Batch { paths, first_event });
    })
    .context("creating the config watcher")?;
    debouncer
        .watch(dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("watching {}", dir.display()))?;
    Ok(Watch {
        _debouncer: debouncer,
    })
}

/// Whether a file event can change the config. Opening and reading the files (which every
/// reload does) and metadata changes cannot: reacting to them would reload forever.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        EventKind::Any | EventKind::Other => true,
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{AccessKind, CreateKind, DataChange, MetadataKind, RenameMode};

    use super::*;

    #[test]
    fn reading_the_config_is_no_change() {
        assert!(!is_change(&EventKind::Access(AccessKind::Any)));
        assert!(!is_change(&EventKind::Modify(ModifyKind::Metadata(
            MetadataKind::AccessTime
        ))));
        assert!(is_change(&EventKind::Create(CreateKind::File)));
        assert!(is_change(&EventKind::Modify(ModifyKind::Data(
            DataChange::Any
        ))));
        assert!(is_change(&EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
    }

    #[tokio::test]
    async fn a_directory_with_links_that_cannot_be_followed_is_watched() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        symlink(dir.path().join("l2.yaml"), dir.path().join("l1.yaml")).unwrap();
        symlink(dir.path().join("l1.yaml"), dir.path().join("l2.yaml")).unwrap();
        symlink(dir.path().join("nowhere"), dir.path().join("d.yaml")).unwrap();
        symlink(dir.path(), dir.path().join("self")).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _watch = watch(dir.path(), tx).unwrap();
        let file = dir.path().join("a.yaml");
        std::fs::write(&file, "kind: x\n").unwrap();
        let batch = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(batch.paths.contains(&file), "{batch:?}");
    }

    #[tokio::test]
    async fn a_write_arrives_once_settled() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _watch = watch(dir.path(), tx).unwrap();
        let file = dir.path().join("a.yaml");
        std::fs::write(&file, "kind: x\n").unwrap();
        let written = Instant::now();
        let batch = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(batch.paths.contains(&file), "{batch:?}");
        assert!(written.elapsed() >= SETTLE);
    }
}
