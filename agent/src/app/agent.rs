//! One agent's state between changes: source -> store -> compiler -> sink. Each step
//! passes on only what changed, so a one-resource edit among tens of thousands costs about
//! one resource's work.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Result;
use vsteer_compiler::{Change, Compiler, Update};
use vsteer_datapath::{ApplyStats, Datapath};
use vsteer_model::store::{Changes, Store};
use vsteer_plan::{Plan, ServiceKey};

use super::report;
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
}

pub struct Agent<S: Sink> {
    source: Source,
    store: Store,
    compiler: Compiler,
    sink: S,
    /// Services changed but not yet written (a failed write is retried with the next).
    unwritten: BTreeSet<ServiceKey>,
}

impl<S: Sink> Agent<S> {
    pub fn new(source: Source, sink: S) -> Agent<S> {
        Agent {
            source,
            store: Store::default(),
            compiler: Compiler::default(),
            sink,
            unwritten: BTreeSet::new(),
        }
    }

    pub fn source(&self) -> &Source {
        &self.source
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
        let started = Instant::now();
        let reading = self.source.read_all().map_err(PassError::Read)?;
        let read = started.elapsed();
        let (update, resources) = self.compile(reading);
        let compiled = started.elapsed();
        let stats = self
            .sink
            .apply_all(self.compiler.plan())
            .map_err(PassError::Write)?;
        self.unwritten.clear();
        Ok(Applied {
            stats,
            read,
            compile: compiled - read,
            apply: started.elapsed() - compiled,
            recompiled: update.recompiled_services,
            resources,
        })
    }

    /// Reads what changed (`None`: everything, as on SIGHUP) and writes the services it
    /// changed. On a read error nothing changes; on a write error the kernel keeps what it
    /// has and the services are written with the next change.
    pub fn reload(&mut self, paths: Option<&[std::path::PathBuf]>) -> Result<Applied, PassError> {
        let started = Instant::now();
        let reading = match paths {
            Some(paths) if !paths.is_empty() => self.source.read_changed(paths),
            _ => self.source.read_all(),
        }
        .map_err(PassError::Read)?;
        let read = started.elapsed();
        let (update, resources) = self.compile(reading);
        let compiled = started.elapsed();
        self.unwritten.extend(update.changed.iter().copied());
        let keys: Vec<ServiceKey> = self.unwritten.iter().copied().collect();
        let stats = self
            .sink
            .apply_changes(self.compiler.plan(), &keys)
            .map_err(PassError::Write)?;
        self.unwritten.clear();
        Ok(Applied {
            stats,
            read,
            compile: compiled - read,
            apply: started.elapsed() - compiled,
            recompiled: update.recompiled_services,
            resources,
        })
    }

    /// Periodic housekeeping of the sink.
    pub fn sweep(&mut self) {
        self.sink.sweep();
    }

    /// The store and the compiler take what was read; everything worth saying is logged.
    fn compile(&mut self, reading: Reading) -> (Update, usize) {
        let Reading { updates, warnings } = reading;
        let changes: Changes = self.store.apply(updates);
        report::source(&warnings, &changes);
        let mut batch: Vec<Change> = changes
            .upserted
            .iter()
            .map(|r| (r.id.clone(), Some(r.clone())))
            .collect();
        batch.extend(changes.removed.iter().map(|id| (id.clone(), None)));
        let update = self.compiler.update(&batch);
        report::compiled(&update);
        (update, batch.len())
    }
}
