//! One agent's state between changes: source -> store -> compiler -> sink. Each step
//! passes on only what changed, so a one-resource edit among tens of thousands costs about
//! one resource's work. Reading the source (`read`) may run on a thread of its own, so that
//! nothing (a signal to stop) waits for a long parse.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use vsteer_compiler::{Change, Compiler, Update};
use vsteer_datapath::{ApplyStats, Datapath};
use vsteer_model::store::{Changes, Store};
use vsteer_plan::{Plan, ServiceKey};

use super::report;
use crate::resolve::{Answers, Watch, dns::Answer};
use crate::sources::{Reading, Source};

/// Where the plan goes: the kernel's maps, or a test's record of them.
pub trait Sink {
    /// Brings everything in line with `plan` (at start, and to adopt an earlier agent's
    /// maps).
    fn apply_all(&mut self, plan: &Plan) -> Result<ApplyStats>;
    /// Brings the services `keys` in line with `plan`.
    fn apply_changes(&mut self, plan: &Plan, keys: &[ServiceKey]) -> Result<ApplyStats>;
    /// Periodic housekeeping (freeing replaced tables).
    fn sweep(&mut self) {}
    /// Drops the state kept for backends `plan` no longer has; how many. Required: a sink
    /// that wraps another must pass it on.
    fn prune(&mut self, plan: &Plan) -> Result<usize>;
}

impl Sink for Datapath {
    fn apply_all(&mut self, plan: &Plan) -> Result<ApplyStats> {
        self.apply(plan)
    }

    fn apply_changes(&mut self, plan: &Plan, keys: &[ServiceKey]) -> Result<ApplyStats> {
        Datapath::apply_changes(self, plan, keys)
    }

    fn sweep(&mut self) {
        Datapath::sweep(self)
    }

    fn prune(&mut self, plan: &Plan) -> Result<usize> {
        self.prune_counters(plan)
    }
}

/// Why a pass from the source to the sink stopped; either way the kernel keeps what it has.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("config not read, the last good one stays in force: {0:#}")]
    Read(anyhow::Error),
    #[error(
        "writing the plan into the kernel failed; the kernel keeps what it has and the change is retried with the next: {0:#}"
    )]
    Write(anyhow::Error),
}

/// What one pass from the source to the sink did, and how long each step took.
#[derive(Debug, Default, Clone)]
pub struct Applied {
    pub stats: ApplyStats,
    pub read: Duration,
    pub compile: Duration,
    pub apply: Duration,
    /// Services recompiled.
    pub recompiled: usize,
    /// Resources whose version in force changed.
    pub resources: usize,
    /// Rejections reported (a resource, a document or a file that could not be used).
    pub rejected: usize,
}

pub struct Agent<S: Sink> {
    /// Shared with the thread that reads (so that a signal never waits for a long parse).
    source: Arc<Mutex<Source>>,
    store: Store,
    /// DNS-resolved ServiceEntries reach the compiler with the answers for their names.
    dns: Answers,
    /// Names to start or stop resolving, for the resolver (see `take_dns_watch`).
    dns_watch: Watch,
    compiler: Compiler,
    sink: S,
    /// Services changed but not yet written (a failed write is retried with the next).
    unwritten: BTreeSet<ServiceKey>,
    /// Backends may have left since the sink was last pruned (and when that was).
    prune_due: bool,
    pruned_at: Option<Instant>,
}

/// How often at most the sink's per-backend state (the connection counters) is pruned: a
/// walk of up to 65,536 counters and of the plan's backends, too slow for every change.
pub const PRUNE_EVERY: Duration = Duration::from_secs(5);

/// A start's config, compiled and not yet written.
pub struct Loaded {
    started: Instant,
    applied: Applied,
}

/// What one read of the source gave, and how long it took.
pub struct Read {
    reading: Result<Reading>,
    took: Duration,
}

impl Read {
    /// Why nothing could be read, if so.
    pub fn error(&self) -> Option<&anyhow::Error> {
        self.reading.as_ref().err()
    }
}

/// Reads what changed (`None`: everything, as at start and on SIGHUP).
pub fn read(source: &Mutex<Source>, paths: Option<&[PathBuf]>) -> Read {
    let started = Instant::now();
    let reading = match source.lock() {
        Ok(mut source) => match paths {
            Some(paths) => source.read_changed(paths),
            None => source.read_all(),
        },
        Err(_) => Err(anyhow::anyhow!("an earlier read of the config panicked")),
    };
    Read {
        reading,
        took: started.elapsed(),
    }
}

impl<S: Sink> Agent<S> {
    pub fn new(source: Source, sink: S) -> Agent<S> {
        Agent::shared(Arc::new(Mutex::new(source)), sink)
    }

    /// An agent on a source that has been read already (see [`read`]).
    pub fn shared(source: Arc<Mutex<Source>>, sink: S) -> Agent<S> {
        Agent {
            source,
            store: Store::default(),
            dns: Answers::default(),
            dns_watch: Watch::default(),
            compiler: Compiler::default(),
            sink,
            unwritten: BTreeSet::new(),
            // An earlier agent may have left counters of backends gone since.
            prune_due: true,
            pruned_at: None,
        }
    }

    /// Sees `localityLbSetting` from the node's locality; before the first read.
    pub fn set_locality(&mut self, node: Option<vsteer_compiler::locality::Locality>) {
        self.compiler.set_locality(node);
    }

    /// The source, for a thread of its own to read.
    pub fn source(&self) -> Arc<Mutex<Source>> {
        self.source.clone()
    }

    pub fn plan(&self) -> &Plan {
        self.compiler.plan()
    }

    pub fn sink(&self) -> &S {
        &self.sink
    }

    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// Reads the whole source and brings the sink in line with everything (writing only
    /// what differs from what it holds).
    pub fn start(&mut self) -> Result<Applied, PassError> {
        let read = read(&self.source, None);
        self.start_from(read)
    }

    /// [`Agent::start`] with the source read already.
    pub fn start_from(&mut self, read: Read) -> Result<Applied, PassError> {
        let loaded = self.load(read)?;
        self.write_loaded(loaded)
    }

    /// The first half of a start: the store and the compiler take what was read; nothing
    /// is written (DNS answers may be awaited before [`Agent::write_loaded`]).
    pub fn load(&mut self, read: Read) -> Result<Loaded, PassError> {
        let started = Instant::now();
        let reading = read.reading.map_err(PassError::Read)?;
        let (update, resources, rejected) = self.compile(reading);
        Ok(Loaded {
            started,
            applied: Applied {
                read: read.took,
                compile: started.elapsed(),
                recompiled: update.recompiled_services,
                resources,
                rejected,
                ..Applied::default()
            },
        })
    }

    /// The second half of a start: the sink is brought in line with everything.
    pub fn write_loaded(&mut self, loaded: Loaded) -> Result<Applied, PassError> {
        let Loaded {
            started,
            mut applied,
        } = loaded;
        applied.stats = self.rewrite_all()?;
        applied.apply = started.elapsed().saturating_sub(applied.compile);
        Ok(applied)
    }

    /// Names to start and stop resolving since the last call: for the resolver.
    pub fn take_dns_watch(&mut self) -> Watch {
        std::mem::take(&mut self.dns_watch)
    }

    /// Every name the config needs resolved.
    pub fn dns_names(&self) -> Vec<Box<str>> {
        self.dns.names().map(Box::from).collect()
    }

    /// The DNS answer in force for every name that has one.
    pub fn dns_table(
        &self,
    ) -> std::collections::BTreeMap<Box<str>, std::sync::Arc<[std::net::IpAddr]>> {
        self.dns.table().clone()
    }

    /// The names the config needs resolved that have had no answer yet.
    pub fn dns_unanswered(&self) -> Vec<Box<str>> {
        self.dns.unanswered()
    }

    /// Whether every name the config needs resolved has had an answer.
    pub fn dns_answered_all(&self) -> bool {
        self.dns.all_answered()
    }

    /// New DNS answers: the entries that use the names are compiled again; the services
    /// that changed are written with the next [`Agent::flush`] (or the start's write).
    pub fn dns_answered(&mut self, answers: impl IntoIterator<Item = Answer>) -> Update {
        let mut batch: Vec<Change> = Vec::new();
        for answer in answers {
            for change in self.dns.answered(&answer.name, answer.addresses) {
                // A later answer's copy of an entry holds the earlier answers too.
                batch.retain(|(id, _)| *id != change.0);
                batch.push(change);
            }
        }
        if batch.is_empty() {
            return Update::default();
        }
        let update = self.compiler.update(&batch);
        report::compiled(&update);
        self.unwritten.extend(update.changed.iter().copied());
        update
    }

    /// Writes the services changed and not written yet; a failed write is retried with the
    /// next.
    pub fn flush(&mut self) -> Result<ApplyStats, PassError> {
        if self.unwritten.is_empty() {
            return Ok(ApplyStats::default());
        }
        self.write_unwritten()
    }

    /// Hands the sink the services not written yet (also none: a reload reports what the
    /// sink holds).
    fn write_unwritten(&mut self) -> Result<ApplyStats, PassError> {
        let keys: Vec<ServiceKey> = self.unwritten.iter().copied().collect();
        let stats = self
            .sink
            .apply_changes(self.compiler.plan(), &keys)
            .map_err(PassError::Write)?;
        self.unwritten.clear();
        self.note_applied(&stats);
        Ok(stats)
    }

    /// Prunes the sink's per-backend state when backends may have left, at most every
    /// [`PRUNE_EVERY`]; `None` when not due.
    pub fn prune(&mut self) -> Option<Result<usize>> {
        let recent = self.pruned_at.is_some_and(|at| at.elapsed() < PRUNE_EVERY);
        if !self.prune_due || recent {
            return None;
        }
        self.prune_due = false;
        self.pruned_at = Some(Instant::now());
        Some(self.sink.prune(self.compiler.plan()))
    }

    /// Writes the whole plan in force into the sink (at start, and again into a datapath
    /// created anew, whose maps are empty); the config is not read again.
    pub fn rewrite_all(&mut self) -> Result<ApplyStats, PassError> {
        let stats = self
            .sink
            .apply_all(self.compiler.plan())
            .map_err(PassError::Write)?;
        self.unwritten.clear();
        self.note_applied(&stats);
        Ok(stats)
    }

    /// Writes services `keys` again as the plan has them (what the sink makes of them
    /// changed, e.g. an endpoint was ejected); a failed write is retried with the next.
    pub fn rewrite(&mut self, keys: &[ServiceKey]) -> Result<ApplyStats, PassError> {
        if keys.is_empty() {
            return Ok(ApplyStats::default());
        }
        match self.sink.apply_changes(self.compiler.plan(), keys) {
            Ok(stats) => {
                self.note_applied(&stats);
                Ok(stats)
            }
            Err(err) => {
                self.unwritten.extend(keys.iter().copied());
                Err(PassError::Write(err))
            }
        }
    }

    /// Services the kernel had no room for are written with the next change; backends may
    /// have left when services changed or went.
    fn note_applied(&mut self, stats: &ApplyStats) {
        self.prune_due |= stats.changed + stats.removed > 0;
        self.unwritten.extend(
            stats
                .refused
                .iter()
                .filter_map(|refused| vsteer_datapath::service_key(&refused.key)),
        );
    }

    /// Reads what changed (`None`: everything, as on SIGHUP) and writes the services it
    /// changed. On a read error nothing changes; on a write error the kernel keeps what it
    /// has and the services are written with the next change.
    pub fn reload(&mut self, paths: Option<&[PathBuf]>) -> Result<Applied, PassError> {
        let read = read(&self.source, paths);
        self.reload_from(read)
    }

    /// [`Agent::reload`] with the source read already.
    pub fn reload_from(&mut self, read: Read) -> Result<Applied, PassError> {
        let started = Instant::now();
        let reading = read.reading.map_err(PassError::Read)?;
        let (update, resources, rejected) = self.compile(reading);
        let compiled = started.elapsed();
        self.unwritten.extend(update.changed.iter().copied());
        let stats = self.write_unwritten()?;
        Ok(Applied {
            stats,
            read: read.took,
            compile: compiled,
            apply: started.elapsed() - compiled,
            recompiled: update.recompiled_services,
            resources,
            rejected,
        })
    }

    /// Periodic housekeeping: the sink frees replaced tables, then the services it had no
    /// room for are tried again (room may be free now). `None` when none waited.
    pub fn sweep(&mut self) -> Option<Result<ApplyStats, PassError>> {
        self.sink.sweep();
        if self.unwritten.is_empty() {
            return None;
        }
        let keys: Vec<ServiceKey> = self.unwritten.iter().copied().collect();
        let result = self
            .sink
            .apply_changes(self.compiler.plan(), &keys)
            .map_err(PassError::Write);
        if let Ok(stats) = &result {
            self.unwritten.clear();
            self.note_applied(stats);
        }
        Some(result)
    }

    /// The store and the compiler take what was read; everything worth saying is logged.
    /// Returns the update, the resources that changed and the rejections reported.
    fn compile(&mut self, reading: Reading) -> (Update, usize, usize) {
        let Reading { updates, warnings } = reading;
        let started = Instant::now();
        let changes: Changes = self.store.apply(updates);
        let stored = started.elapsed();
        report::source(&warnings, &changes);
        let mut batch: Vec<Change> = changes
            .upserted
            .iter()
            .map(|r| (r.id.clone(), Some(r.clone())))
            .collect();
        batch.extend(changes.removed.iter().map(|id| (id.clone(), None)));
        let watch = self.dns.pass(&mut batch);
        self.dns_watch.merge(watch);
        let update = self.compiler.update(&batch);
        tracing::debug!(
            store_us = stored.as_micros() as u64,
            compiler_us = (started.elapsed() - stored).as_micros() as u64,
            resources = batch.len(),
            services = update.recompiled_services,
            "compiled"
        );
        report::compiled(&update);
        let rejected = changes.errors.len() + update.errors.len();
        (update, batch.len(), rejected)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;
    use std::time::Duration;

    use vsteer_model::ResourceId;

    use super::*;

    /// A sink that keeps what it was told, as the kernel maps would.
    #[derive(Default)]
    struct Recorder {
        plan: Plan,
        writes: usize,
        prunes: usize,
    }

    impl Sink for Recorder {
        fn apply_all(&mut self, plan: &Plan) -> Result<ApplyStats> {
            self.plan = plan.clone();
            self.writes += 1;
            Ok(ApplyStats::default())
        }

        fn apply_changes(&mut self, plan: &Plan, keys: &[ServiceKey]) -> Result<ApplyStats> {
            for key in keys {
                match plan.service(key) {
                    Some(service) => {
                        self.plan.insert(service.clone());
                    }
                    None => {
                        self.plan.remove(key);
                    }
                }
            }
            self.writes += 1;
            Ok(ApplyStats {
                changed: keys.len(),
                ..ApplyStats::default()
            })
        }

        fn prune(&mut self, _plan: &Plan) -> Result<usize> {
            self.prunes += 1;
            Ok(0)
        }
    }

    /// Pruning is due at start (an earlier agent's leftovers) and after a change that may
    /// have removed backends, at most every PRUNE_EVERY; never for nothing.
    #[test]
    fn the_sink_is_pruned_after_changes_at_most_every_interval() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        fs::write(&a, entry("first", "10.0.0.1")).unwrap();
        let mut agent = agent(dir.path());
        agent.start().unwrap();
        assert!(agent.prune().is_some(), "due at start");
        assert!(agent.prune().is_none(), "nothing changed");
        fs::write(&a, entry("first", "10.0.0.2")).unwrap();
        agent.reload(Some(std::slice::from_ref(&a))).unwrap();
        assert!(agent.prune().is_none(), "pruned less than PRUNE_EVERY ago");
        agent.pruned_at = agent.pruned_at.map(|at| at - PRUNE_EVERY);
        assert!(agent.prune().is_some(), "due after the change");
        assert!(agent.prune().is_none());
        assert_eq!(agent.sink().prunes, 2);
    }

    fn entry(name: &str, endpoint: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}}}
spec:
  hosts: [{name}.example.com]
  addresses: [127.100.0.1]
  ports: [{{number: 80, name: tcp, protocol: TCP}}]
  resolution: STATIC
  endpoints: [{{address: {endpoint}}}]
"
        )
    }

    /// Two services on two VIPs: `first` in `a`, `second` in `b`.
    fn write_two_services(a: &Path, b: &Path) {
        fs::write(a, entry("first", "10.0.0.1")).unwrap();
        let second = entry("second", "10.0.0.2").replace("127.100.0.1", "127.100.0.2");
        fs::write(b, second).unwrap();
    }

    fn agent(dir: &Path) -> Agent<Recorder> {
        // Files are written just before each read: no settle wait.
        let source = Source::with_settle(Some(dir.to_path_buf()), std::time::Duration::ZERO);
        Agent::new(source, Recorder::default())
    }

    /// Who the kernel (the recorder) says holds the VIP.
    fn owner(agent: &Agent<Recorder>) -> String {
        let plan = &agent.sink().plan;
        assert_eq!(plan.len(), 1, "{plan:?}");
        let service = plan.services().next().unwrap();
        service.resource.name.to_string()
    }

    #[test]
    fn a_syntax_error_in_the_winners_file_does_not_hand_its_vip_over() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.yaml"), entry("first", "10.0.0.1")).unwrap();
        fs::write(dir.path().join("b.yaml"), entry("second", "10.0.0.2")).unwrap();
        let mut agent = agent(dir.path());
        agent.start().unwrap();
        assert_eq!(owner(&agent), "first");

        // The winner's file breaks: its resource keeps its last good version, at its place
        // in the precedence order, so it still wins.
        let a = dir.path().join("a.yaml");
        fs::write(&a, "kind: [unclosed\n").unwrap();
        agent.reload(Some(std::slice::from_ref(&a))).unwrap();
        assert_eq!(owner(&agent), "first");
        assert_eq!(agent.plan(), &agent.sink().plan);
        agent.reload(None).unwrap();
        assert_eq!(owner(&agent), "first");

        // Fixed, still the same owner; removed, the other takes over.
        fs::write(&a, entry("first", "10.0.0.3")).unwrap();
        agent.reload(Some(std::slice::from_ref(&a))).unwrap();
        assert_eq!(owner(&agent), "first");
        fs::remove_file(&a).unwrap();
        agent.reload(Some(std::slice::from_ref(&a))).unwrap();
        assert_eq!(owner(&agent), "second");
    }

    #[test]
    fn the_rejected_entry_named_in_the_errors_is_the_one_the_kernel_does_not_hold() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.yaml"), entry("original", "10.0.0.1")).unwrap();
        let mut agent = agent(dir.path());
        agent.start().unwrap();
        assert_eq!(owner(&agent), "original");

        // A file that sorts first claims the same VIP: by precedence (file path) it wins.
        let zero = dir.path().join("0.yaml");
        fs::write(&zero, entry("newcomer", "10.0.0.2")).unwrap();
        agent.reload(Some(std::slice::from_ref(&zero))).unwrap();
        let errors = agent.compiler.errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        let rejected = errors[0].resource_id_of().cloned();
        let original = ResourceId::new(vsteer_model::Kind::ServiceEntry, "default", "original");
        assert_eq!(rejected, Some(original));
        assert!(
            errors[0]
                .message()
                .contains("already claimed by ServiceEntry default/newcomer"),
            "{}",
            errors[0]
        );
        assert_eq!(owner(&agent), "newcomer");
    }

    /// An empty directory is read like a missing one: a volume not mounted yet or a
    /// directory being replaced must not remove every service. An empty YAML file says
    /// "nothing" on purpose.
    #[test]
    fn an_empty_directory_keeps_the_last_good_config_and_an_empty_file_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.yaml");
        write_two_services(&a, &b);
        let mut agent = agent(dir.path());
        agent.start().unwrap();
        assert_eq!(agent.sink().plan.len(), 2);

        // One file goes: its services go.
        fs::remove_file(&b).unwrap();
        agent.reload(Some(std::slice::from_ref(&b))).unwrap();
        assert_eq!(owner(&agent), "first");
        // The last one goes: the directory is empty, nothing changes (by event and by SIGHUP).
        fs::remove_file(&a).unwrap();
        agent.reload(Some(std::slice::from_ref(&a))).unwrap();
        assert_eq!(owner(&agent), "first");
        agent.reload(None).unwrap();
        assert_eq!(owner(&agent), "first");
        assert_eq!(agent.plan(), &agent.sink().plan);

        // Files come back: the directory is the truth again.
        fs::write(&b, entry("second", "10.0.0.2")).unwrap();
        agent.reload(Some(std::slice::from_ref(&b))).unwrap();
        assert_eq!(owner(&agent), "second");
        // An empty file: everything removed on purpose.
        fs::write(&b, "").unwrap();
        agent.reload(Some(std::slice::from_ref(&b))).unwrap();
        assert!(agent.sink().plan.is_empty(), "{:?}", agent.sink().plan);
    }

    /// A file that cannot be read (a dangling symlink, a symlink loop) is skipped and
    /// reported; what it held stays in force and every other file is applied, at start and
    /// on every reload.
    #[test]
    fn an_unreadable_file_keeps_what_it_held_and_the_rest_is_applied() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.yaml");
        let c = dir.path().join("c.yaml");
        write_two_services(&a, &b);
        // At start: a dangling link and a loop among good files.
        symlink(dir.path().join("nowhere.yaml"), &c).unwrap();
        symlink(dir.path().join("loop2.yaml"), dir.path().join("loop1.yaml")).unwrap();
        symlink(dir.path().join("loop1.yaml"), dir.path().join("loop2.yaml")).unwrap();
        let mut agent = agent(dir.path());
        agent.start().unwrap();
        assert_eq!(agent.sink().plan.len(), 2);
        let errors = agent.store.errors();
        for name in ["c.yaml", "loop1.yaml", "loop2.yaml"] {
            assert!(
                errors
                    .iter()
                    .any(|e| e.file.ends_with(name) && e.message().contains("cannot be read")),
                "{name} not reported: {errors:?}"
            );
        }

        // A good file turns into a dangling link: its service stays; another file's change
        // is still applied.
        fs::remove_file(&a).unwrap();
        symlink(dir.path().join("gone.yaml"), &a).unwrap();
        agent.reload(Some(std::slice::from_ref(&a))).unwrap();
        agent.reload(None).unwrap();
        assert_eq!(agent.sink().plan.len(), 2, "{:?}", agent.sink().plan);
        fs::write(
            &b,
            entry("second", "10.0.0.9").replace("127.100.0.1", "127.100.0.3"),
        )
        .unwrap();
        agent.reload(Some(std::slice::from_ref(&b))).unwrap();
        let vips: Vec<String> = agent
            .sink()
            .plan
            .services()
            .map(|s| s.key.to_string())
            .collect();
        assert_eq!(vips.len(), 2, "{vips:?}");
        assert!(vips.iter().any(|v| v.contains("127.100.0.1")), "{vips:?}");
        assert!(vips.iter().any(|v| v.contains("127.100.0.3")), "{vips:?}");
    }

    /// The last good copy of each file survives a restart: a file broken while the agent
    /// ran (or while none ran) still holds what it held, and so does a directory found
    /// empty at start.
    #[test]
    fn a_restart_keeps_the_last_good_version_of_a_file_that_no_longer_parses() {
        use crate::sources::snapshot::Snapshot;
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let restarted = || {
            let snapshot =
                Snapshot::open(state.path(), Path::new("/sys/fs/bpf/test"), dir.path()).unwrap();
            let source = Source::with_settle(Some(dir.path().to_path_buf()), Duration::ZERO)
                .with_snapshot(snapshot);
            let mut agent = Agent::new(source, Recorder::default());
            agent.start().unwrap();
            agent
        };
        let vips = |agent: &Agent<Recorder>| -> Vec<String> {
            agent
                .sink()
                .plan
                .services()
                .map(|s| format!("{} {}", s.key, s.resource.name))
                .collect()
        };
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.yaml");
        write_two_services(&a, &b);
        let mut agent = restarted();
        let both = vips(&agent);
        assert_eq!(both.len(), 2, "{both:?}");

        // Broken while running, then a restart: a.yaml's service stays.
        fs::write(&a, "kind: [unclosed\n").unwrap();
        agent.reload(Some(std::slice::from_ref(&a))).unwrap();
        drop(agent);
        let agent = restarted();
        assert_eq!(vips(&agent), both);
        // Garbage, and a document that no longer decodes, written while no agent ran.
        drop(agent);
        fs::write(&a, "just text\n").unwrap();
        fs::write(
            &b,
            entry("second", "10.0.0.2")
                .replace("127.100.0.1", "127.100.0.2")
                .replace("number: 80", "number: eighty"),
        )
        .unwrap();
        let agent = restarted();
        assert_eq!(vips(&agent), both);

        // Both files gone while no agent ran: an empty directory keeps the last good config.
        drop(agent);
        fs::remove_file(&a).unwrap();
        fs::remove_file(&b).unwrap();
        let mut agent = restarted();
        assert_eq!(vips(&agent), both);
        // A file comes back: the directory is the truth again.
        let c = dir.path().join("c.yaml");
        fs::write(
            &c,
            entry("third", "10.0.0.3").replace("127.100.0.1", "127.100.0.3"),
        )
        .unwrap();
        agent.reload(Some(std::slice::from_ref(&c))).unwrap();
        assert_eq!(owner(&agent), "third");
        drop(agent);
        // And a file deleted while no agent ran has no copy left.
        let agent = restarted();
        assert_eq!(owner(&agent), "third");
    }

    #[test]
    fn a_one_file_change_writes_only_its_services() {
        let dir = tempfile::tempdir().unwrap();
        for n in 0..50 {
            let text = entry(&format!("s{n}"), "10.0.0.1")
                .replace("127.100.0.1", &format!("127.100.1.{n}"));
            fs::write(dir.path().join(format!("s{n:02}.yaml")), text).unwrap();
        }
        let mut agent = agent(dir.path());
        let started = agent.start().unwrap();
        assert_eq!(started.recompiled, 50);
        let file = dir.path().join("s07.yaml");
        let text = entry("s7", "10.0.0.9").replace("127.100.0.1", "127.100.1.7");
        fs::write(&file, text).unwrap();
        let applied = agent.reload(Some(std::slice::from_ref(&file))).unwrap();
        assert_eq!(applied.resources, 1);
        assert_eq!(applied.recompiled, 1);
        assert_eq!(agent.plan(), &agent.sink().plan);
    }

    /// A DNS entry's endpoints come with its answers: none before, the answer's addresses
    /// after `dns_answered` and `flush`; an edit of the entry keeps the answer.
    #[test]
    fn dns_answers_reach_the_sink_and_survive_an_edit() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        let dns = |port: u16| {
            entry("first", "backend.example.com")
                .replace("resolution: STATIC", "resolution: DNS")
                .replace("number: 80", &format!("number: {port}"))
        };
        fs::write(&a, dns(80)).unwrap();
        let mut agent = agent(dir.path());
        agent.start().unwrap();
        let watch = agent.take_dns_watch();
        assert_eq!(watch.added, [Box::<str>::from("backend.example.com")]);
        let backends = |agent: &Agent<Recorder>| -> Vec<String> {
            let plan = &agent.sink().plan;
            plan.services()
                .flat_map(|s| {
                    s.backends
                        .iter()
                        .map(|b| format!("{}:{}", b.address, b.port))
                })
                .collect()
        };
        assert!(backends(&agent).is_empty(), "no answer yet");
        let update = agent.dns_answered([Answer {
            name: "backend.example.com".into(),
            addresses: std::sync::Arc::from(["10.9.0.1".parse::<std::net::IpAddr>().unwrap()]),
        }]);
        assert_eq!(update.changed.len(), 1);
        assert!(backends(&agent).is_empty(), "written with the flush");
        agent.flush().unwrap();
        assert_eq!(backends(&agent), ["10.9.0.1:80"]);
        // The same answer again changes nothing.
        let again = agent.dns_answered([Answer {
            name: "backend.example.com".into(),
            addresses: std::sync::Arc::from(["10.9.0.1".parse::<std::net::IpAddr>().unwrap()]),
        }]);
        assert!(again.changed.is_empty());
        // An edit (another port) keeps the answer.
        fs::write(&a, dns(81)).unwrap();
        agent.reload(Some(std::slice::from_ref(&a))).unwrap();
        assert!(agent.take_dns_watch().is_empty());
        assert_eq!(backends(&agent), ["10.9.0.1:81"]);
    }
}
