//! Following a config directory by its path: raw file events (notify, inotify on Linux)
//! settle here into batches of the paths that changed. A file is delivered once it has been
//! quiet for the settle time and no writer holds it open (a file written to but not yet
//! closed is being written: a slow writer's pause is not the end of its write; one that
//! never closes is delivered after [`MAX_OPEN`] anyway). Events that cannot change the config
//! (reads, metadata, editors' temp files, hidden files) are dropped; a ConfigMap volume's
//! `..data` swap, the directory itself changing, or a watch error ask for a full read.
//!
//! The directory is watched through its parent too, and its identity is checked every
//! second: a directory deleted and recreated, or replaced with `mv`, is watched again by its
//! path (and read whole), never followed to where the old one went.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::dir::{DATA_LINK, is_config_name};

/// How long a file must be quiet before it is read (`--settle-ms`).
pub const SETTLE: Duration = Duration::from_millis(200);
/// How long a file may stay open for writing before it is read all the same.
pub const MAX_OPEN: Duration = Duration::from_secs(30);
/// How often pending paths are looked at.
const TICK: Duration = Duration::from_millis(20);
/// How often the directory's identity is checked when no event said it changed.
const CHECK: Duration = Duration::from_secs(1);

/// Paths that changed (empty: everything may have), and when the first of their events
/// happened (the settle wait is the time from then to delivery).
#[derive(Debug)]
pub struct Batch {
    pub paths: Vec<PathBuf>,
    pub first_event: Instant,
}

/// The watch; dropping it stops it.
pub struct Watch {
    watched: Arc<Mutex<Watched>>,
    stop: Arc<AtomicBool>,
}

/// The watcher and what it watches.
struct Watched {
    watcher: RecommendedWatcher,
    dir: PathBuf,
    /// (device, inode) of the directory the watch is on; `None` while the path names none.
    identity: Option<(u64, u64)>,
}

impl Watched {
    /// Watches `dir` again when its path names another directory than the one watched (or
    /// one again after none), or always when `force`d; true when it did, so everything must
    /// be read.
    ///
    /// An event about the directory itself forces it: notify drops its watch of a path when
    /// it sees that path deleted or renamed away, which may come after the directory was
    /// already watched again (found by identity), and only events tell.
    fn follow(&mut self, force: bool) -> bool {
        let now = identity(&self.dir);
        if now == self.identity && !(force && now.is_some()) {
            return false;
        }
        if self.identity.is_some() {
            // The old directory's watch is gone already when it was deleted.
            let _ = self.watcher.unwatch(&self.dir);
            self.identity = None;
        }
        let Some(now) = now else {
            tracing::warn!(dir = %self.dir.display(), "the config directory is gone; the last good config stays in force, and the directory is watched for again");
            return false;
        };
        match self.watcher.watch(&self.dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                tracing::info!(dir = %self.dir.display(), "watching the config directory (again): reading it whole");
                self.identity = Some(now);
                true
            }
            Err(err) => {
                tracing::warn!(dir = %self.dir.display(), "cannot watch the config directory (retried every second): {err}");
                false
            }
        }
    }
}

impl Watch {
    /// Watches the directory at its path again (SIGHUP calls this: what the operator sees at
    /// the path is what is followed, even if a watch was lost); true when it did.
    pub fn follow(&self) -> bool {
        self.watched
            .lock()
            .map(|mut w| w.follow(true))
            .unwrap_or(false)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn identity(dir: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(dir)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| (m.dev(), m.ino()))
}

/// Sends a [`Batch`] on `changed` for every settled change in `dir`; a file is settled when
/// it has been quiet for `settle` and no writer holds it open.
pub fn watch(dir: &Path, settle: Duration, changed: mpsc::UnboundedSender<Batch>) -> Result<Watch> {
    let (raw_tx, raw) = std_mpsc::channel::<notify::Result<Event>>();
    let watcher = notify::recommended_watcher(move |event| {
        let _ = raw_tx.send(event);
    })
    .context("creating the config watcher")?;
    let mut watched = Watched {
        watcher,
        dir: dir.to_path_buf(),
        identity: identity(dir),
    };
    watched
        .watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("watching {}", dir.display()))?;
    // The parent sees the directory itself deleted, created or renamed over.
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Err(err) = watched.watcher.watch(parent, RecursiveMode::NonRecursive) {
        tracing::warn!(
            parent = %parent.display(),
            "cannot watch the config directory's parent ({err}); a replaced directory is found within a second instead"
        );
    }
    let watched = Arc::new(Mutex::new(watched));
    let stop = Arc::new(AtomicBool::new(false));
    let mut settler = Settler {
        dir: dir.to_path_buf(),
        settle,
        pending: BTreeMap::new(),
        everything: None,
        out: changed,
    };
    let (thread_watched, thread_stop) = (watched.clone(), stop.clone());
    std::thread::Builder::new()
        .name("vsteer-watch".into())
        .spawn(move || settler.run(&raw, &thread_watched, &thread_stop))
        .context("starting the config watcher thread")?;
    Ok(Watch { watched, stop })
}

/// A path with events not yet delivered.
#[derive(Debug, Clone, Copy)]
struct Pending {
    first: Instant,
    last: Instant,
    /// Written to and not closed since: a writer is still at it.
    writing: bool,
}

impl Pending {
    fn new(now: Instant) -> Pending {
        Pending {
            first: now,
            last: now,
            writing: false,
        }
    }
}

/// What one event means for the config.
#[derive(Debug, PartialEq, Eq)]
enum Meaning {
    /// Nothing (a read, metadata, a file that is not config).
    Nothing,
    /// The file changed; `Some(writing)` says whether a writer now holds it open, `None`
    /// leaves that as it was.
    File(PathBuf, Option<bool>),
    /// Anything may have changed: read everything.
    Everything,
    /// The directory itself was replaced (or deleted, or created): watch it again, then
    /// read everything.
    Directory,
}

struct Settler {
    dir: PathBuf,
    settle: Duration,
    pending: BTreeMap<PathBuf, Pending>,
    everything: Option<Pending>,
    out: mpsc::UnboundedSender<Batch>,
}

impl Settler {
    fn run(
        &mut self,
        raw: &std_mpsc::Receiver<notify::Result<Event>>,
        watched: &Mutex<Watched>,
        stop: &AtomicBool,
    ) {
        let mut checked = Instant::now();
        while !stop.load(Ordering::Relaxed) && !self.out.is_closed() {
            let mut rewatch = false;
            match raw.recv_timeout(TICK) {
                Ok(event) => rewatch |= self.take(event),
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            }
            while let Ok(event) = raw.try_recv() {
                rewatch |= self.take(event);
            }
            if rewatch || checked.elapsed() >= CHECK {
                checked = Instant::now();
                if watched.lock().is_ok_and(|mut w| w.follow(rewatch)) {
                    self.mark_everything(Instant::now());
                }
            }
            self.deliver(Instant::now());
        }
    }

    /// Records one event; true when the directory must be watched again.
    fn take(&mut self, event: notify::Result<Event>) -> bool {
        let now = Instant::now();
        match self.meaning(event) {
            Meaning::Nothing => false,
            Meaning::File(path, writing) => {
                let pending = self.pending.entry(path).or_insert(Pending::new(now));
                pending.last = now;
                if let Some(writing) = writing {
                    pending.writing = writing;
                }
                false
            }
            Meaning::Everything => {
                self.mark_everything(now);
                false
            }
            Meaning::Directory => {
                self.mark_everything(now);
                true
            }
        }
    }

    fn mark_everything(&mut self, now: Instant) {
        let everything = self.everything.get_or_insert(Pending::new(now));
        everything.last = now;
    }

    fn meaning(&self, event: notify::Result<Event>) -> Meaning {
        // The watch itself failed: everything may have changed.
        let Ok(event) = event else {
            return Meaning::Everything;
        };
        if event.need_rescan() {
            return Meaning::Everything;
        }
        let mut meaning = Meaning::Nothing;
        for path in &event.paths {
            let this = if path == &self.dir {
                match event.kind {
                    // Every read opens the directory (seen by its own watch and its
                    // parent's): that is no change, or each read would cause the next.
                    EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => {
                        Meaning::Nothing
                    }
                    _ => Meaning::Directory,
                }
            } else if path.parent() != Some(self.dir.as_path()) {
                // A sibling in the parent directory.
                Meaning::Nothing
            } else {
                file_meaning(path, &event.kind)
            };
            meaning = match (meaning, this) {
                (Meaning::Directory, _) | (_, Meaning::Directory) => Meaning::Directory,
                (Meaning::Everything, _) | (_, Meaning::Everything) => Meaning::Everything,
                (Meaning::Nothing, this) => this,
                // A rename names two files: the last one counts (both are pending then).
                (earlier, Meaning::Nothing) => earlier,
                (_, this) => this,
            };
        }
        meaning
    }

    /// Sends what has settled: everything once nothing is being written, else each file
    /// quiet for the settle time and closed (or open for longer than [`MAX_OPEN`]).
    fn deliver(&mut self, now: Instant) {
        let settled = |p: &Pending| {
            let quiet = now.saturating_duration_since(p.last);
            (!p.writing && quiet >= self.settle) || quiet >= MAX_OPEN
        };
        if let Some(everything) = self.everything {
            if settled(&everything) && self.pending.values().all(settled) {
                let first = self
                    .pending
                    .values()
                    .map(|p| p.first)
                    .fold(everything.first, Instant::min);
                self.pending.clear();
                self.everything = None;
                let _ = self.out.send(Batch {
                    paths: Vec::new(),
                    first_event: first,
                });
            }
            return;
        }
        let ready: Vec<PathBuf> = self
            .pending
            .iter()
            .filter(|(_, p)| settled(p))
            .map(|(path, _)| path.clone())
            .collect();
        if ready.is_empty() {
            return;
        }
        let mut first = now;
        for path in &ready {
            if let Some(p) = self.pending.remove(path) {
                if p.writing {
                    tracing::warn!(
                        file = %path.display(),
                        "still open for writing after {}s; reading it anyway (write config files to a temporary name and rename them into place)",
                        MAX_OPEN.as_secs()
                    );
                }
                first = first.min(p.first);
            }
        }
        let _ = self.out.send(Batch {
            paths: ready,
            first_event: first,
        });
    }
}

/// What an event on a file of the directory means.
fn file_meaning(path: &Path, kind: &EventKind) -> Meaning {
    let Some(name) = path.file_name() else {
        return Meaning::Nothing;
    };
    // A ConfigMap volume's swap: `..data` renamed over, pointing at a new generation.
    if name == DATA_LINK {
        return Meaning::Everything;
    }
    if !is_config_name(name) {
        // Hidden files (editors' swap and lock files, `..data_tmp`, the timestamped
        // generations), backups (`~`), anything that is not `*.yaml` or `*.yml`.
        return Meaning::Nothing;
    }
    let writing = match kind {
        // Opening and reading the files (which every reload does) and metadata changes
        // cannot change the config: reacting to them would reload forever.
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(false),
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => {
            return Meaning::Nothing;
        }
        EventKind::Modify(ModifyKind::Data(_)) => Some(true),
        // A new regular file is being written until it is closed; a new symlink is complete.
        EventKind::Create(_) => {
            Some(std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file()))
        }
        // Renamed into place (an atomic write), renamed away, removed: complete.
        EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_) => Some(false),
        EventKind::Modify(_) | EventKind::Any | EventKind::Other => None,
    };
    Meaning::File(path.to_path_buf(), writing)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use notify::event::{CreateKind, DataChange, MetadataKind, RemoveKind, RenameMode};

    use super::*;

    fn event(kind: EventKind, path: &Path) -> notify::Result<Event> {
        Ok(Event::new(kind).add_path(path.to_path_buf()))
    }

    fn settler(dir: &Path) -> (Settler, mpsc::UnboundedReceiver<Batch>) {
        let (out, rx) = mpsc::unbounded_channel();
        let settler = Settler {
            dir: dir.to_path_buf(),
            settle: SETTLE,
            pending: BTreeMap::new(),
            everything: None,
            out,
        };
        (settler, rx)
    }

    #[test]
    fn reading_the_config_editor_files_and_hidden_files_are_no_change() {
        let dir = Path::new("/cfg");
        let (s, _rx) = settler(dir);
        let a = dir.join("a.yaml");
        for kind in [
            EventKind::Access(AccessKind::Any),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)),
        ] {
            assert_eq!(s.meaning(event(kind, &a)), Meaning::Nothing);
        }
        let data = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        for name in [
            ".a.yaml.swp",
            ".a.yaml.swx",
            "a.yaml~",
            ".#a.yaml",
            "#a.yaml#",
            "4913",
            ".hidden.yaml",
            "..data_tmp",
            "..2026_12_01_12_00_00.123456789",
            "a.yaml.tmp",
            "notes.txt",
        ] {
            assert_eq!(
                s.meaning(event(data, &dir.join(name))),
                Meaning::Nothing,
                "{name}"
            );
        }
        // A sibling of the directory in its parent.
        assert_eq!(
            s.meaning(event(data, Path::new("/other.yaml"))),
            Meaning::Nothing
        );
        assert_eq!(
            s.meaning(event(
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                &dir.join("..data")
            )),
            Meaning::Everything
        );
        assert_eq!(
            s.meaning(event(EventKind::Remove(RemoveKind::Folder), dir)),
            Meaning::Directory
        );
        // Reading the directory itself.
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
        ] {
            assert_eq!(s.meaning(event(kind, dir)), Meaning::Nothing);
        }
        assert_eq!(
            s.meaning(event(data, &a)),
            Meaning::File(a.clone(), Some(true))
        );
        assert_eq!(
            s.meaning(event(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                &a
            )),
            Meaning::File(a, Some(false))
        );
    }

    #[test]
    fn a_file_open_for_writing_is_not_delivered_until_closed() {
        let dir = Path::new("/cfg");
        let a = dir.join("a.yaml");
        let (mut s, mut rx) = settler(dir);
        s.take(event(EventKind::Create(CreateKind::File), &a));
        s.take(event(
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            &a,
        ));
        // A pause far longer than the settle time: still being written.
        let later = Instant::now() + SETTLE * 5;
        s.deliver(later);
        assert!(rx.try_recv().is_err(), "delivered while open for writing");
        s.take(event(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            &a,
        ));
        s.deliver(Instant::now());
        assert!(rx.try_recv().is_err(), "delivered before it settled");
        s.deliver(Instant::now() + SETTLE);
        let batch = rx.try_recv().unwrap();
        assert_eq!(batch.paths, std::slice::from_ref(&a));
        // A writer that never closes is read after MAX_OPEN.
        s.take(event(
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            &a,
        ));
        s.deliver(Instant::now() + MAX_OPEN);
        assert_eq!(rx.try_recv().unwrap().paths, [a]);
    }

    #[test]
    fn a_full_read_waits_for_files_being_written() {
        let dir = Path::new("/cfg");
        let a = dir.join("a.yaml");
        let (mut s, mut rx) = settler(dir);
        s.take(event(
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            &a,
        ));
        s.take(event(
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            &dir.join("..data"),
        ));
        s.deliver(Instant::now() + SETTLE * 5);
        assert!(
            rx.try_recv().is_err(),
            "read everything while a.yaml is written"
        );
        s.take(event(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            &a,
        ));
        s.deliver(Instant::now() + SETTLE);
        let batch = rx.try_recv().unwrap();
        assert!(batch.paths.is_empty(), "{batch:?}");
        s.deliver(Instant::now() + SETTLE * 5);
        assert!(rx.try_recv().is_err(), "delivered twice");
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<Batch>) -> Batch {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a batch within 10 s")
            .expect("the watch is running")
    }

    #[tokio::test]
    async fn a_write_arrives_once_settled() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _watch = watch(dir.path(), SETTLE, tx).unwrap();
        let file = dir.path().join("a.yaml");
        std::fs::write(&file, "kind: x\n").unwrap();
        let written = Instant::now();
        let batch = next(&mut rx).await;
        assert!(batch.paths.contains(&file), "{batch:?}");
        assert!(written.elapsed() >= SETTLE);
    }

    /// A writer that pauses longer than the settle time mid-file: the file is read once,
    /// after it is closed, never half-written.
    #[tokio::test]
    async fn a_slow_writer_is_read_once_it_closes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _watch = watch(dir.path(), SETTLE, tx).unwrap();
        let path = dir.path().join("a.yaml");
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(b"apiVersion: networking.istio.io/v1\n")
            .unwrap();
        std::thread::sleep(SETTLE * 3);
        file.write_all(b"kind: ServiceEntry\n").unwrap();
        drop(file);
        let closed = Instant::now();
        let batch = next(&mut rx).await;
        assert!(closed.elapsed() >= SETTLE, "delivered before it was closed");
        assert_eq!(batch.paths, [path]);
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
        let _watch = watch(dir.path(), SETTLE, tx).unwrap();
        let file = dir.path().join("a.yaml");
        std::fs::write(&file, "kind: x\n").unwrap();
        let batch = next(&mut rx).await;
        assert!(batch.paths.contains(&file), "{batch:?}");
    }

    /// The directory deleted and recreated, then replaced with `mv`: each time it is read
    /// whole, and later edits in the new directory are followed (not the old one's).
    #[tokio::test]
    async fn a_replaced_directory_is_followed_by_its_path() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("config");
        std::fs::create_dir(&dir).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _watch = watch(&dir, SETTLE, tx).unwrap();

        std::fs::remove_dir(&dir).unwrap();
        std::fs::create_dir(&dir).unwrap();
        let batch = next(&mut rx).await;
        assert!(batch.paths.is_empty(), "a full read: {batch:?}");
        std::fs::write(dir.join("a.yaml"), "kind: x\n").unwrap();
        let batch = next(&mut rx).await;
        assert_eq!(batch.paths, [dir.join("a.yaml")]);

        let staged = parent.path().join("config.new");
        std::fs::create_dir(&staged).unwrap();
        std::fs::write(staged.join("b.yaml"), "kind: y\n").unwrap();
        let old = parent.path().join("config.old");
        std::fs::rename(&dir, &old).unwrap();
        std::fs::rename(&staged, &dir).unwrap();
        let batch = next(&mut rx).await;
        assert!(batch.paths.is_empty(), "a full read: {batch:?}");
        // The old directory (renamed away) is no longer followed; the new one is.
        std::fs::write(old.join("old.yaml"), "kind: x\n").unwrap();
        std::fs::write(dir.join("b.yaml"), "kind: z\n").unwrap();
        let batch = next(&mut rx).await;
        assert_eq!(batch.paths, [dir.join("b.yaml")]);
    }
}
