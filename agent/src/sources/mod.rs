//! Where resources come from: a config directory (read whole, or only the files a watch
//! says changed; `dir` decides what is read and when a file is stable, `watch` follows the
//! directory by its path), the examples built into the binary, or the Kubernetes API
//! (`kubernetes`: each object is read as a file is). A source only reads: it hands each
//! file's parse to the model's store, which decides what is in force.

pub mod dir;
pub mod embedded;
pub mod kubernetes;
pub mod snapshot;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use vsteer_model::Diagnostic;
use vsteer_model::store::FileUpdate;

/// What one read produced.
#[derive(Debug, Default)]
pub struct Reading {
    pub updates: Vec<FileUpdate>,
    /// About the source itself (e.g. a directory with no YAML files).
    pub warnings: Vec<Diagnostic>,
}

/// The configured source.
pub enum Source {
    Dir(dir::DirSource),
    /// The examples of `examples/`, compiled into the binary.
    Embedded,
    /// What the Kubernetes watches have seen.
    Kubernetes(Arc<Mutex<kubernetes::cluster::Cluster>>),
}

impl Source {
    /// `dir`, or the embedded examples when `None`.
    pub fn new(dir: Option<PathBuf>) -> Source {
        Source::with_settle(dir, watch::SETTLE)
    }

    /// `dir` (or the embedded examples), whose files are read once unmodified for `settle`.
    pub fn with_settle(dir: Option<PathBuf>, settle: Duration) -> Source {
        match dir {
            Some(dir) => Source::Dir(dir::DirSource::with_settle(dir, settle)),
            None => Source::Embedded,
        }
    }

    /// Everything, compared with what was read before: only changed files are parsed.
    pub fn read_all(&mut self) -> Result<Reading> {
        match self {
            Source::Dir(dir) => dir.read_all(),
            Source::Embedded => Ok(Reading {
                updates: embedded::updates(),
                warnings: Vec::new(),
            }),
            Source::Kubernetes(cluster) => kubernetes_updates(cluster, true),
        }
    }

    /// The files at `paths` (what a watch reported), or everything when the paths say the
    /// directory itself changed (or none are given); the Kubernetes objects that changed.
    pub fn read_changed(&mut self, paths: &[PathBuf]) -> Result<Reading> {
        match self {
            Source::Dir(dir) if paths.is_empty() => dir.read_all(),
            Source::Dir(dir) => dir.read_changed(paths),
            Source::Embedded => Ok(Reading::default()),
            Source::Kubernetes(cluster) => kubernetes_updates(cluster, false),
        }
    }

    /// Keeps the last good copy of each file of a directory in `snapshot` (for a restart).
    pub fn with_snapshot(self, snapshot: snapshot::Snapshot) -> Source {
        match self {
            Source::Dir(dir) => Source::Dir(dir.with_snapshot(snapshot)),
            other => other,
        }
    }

    /// The directory to watch, if any.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Source::Dir(dir) => Some(dir.path()),
            Source::Embedded | Source::Kubernetes(_) => None,
        }
    }
}

fn kubernetes_updates(cluster: &Mutex<kubernetes::cluster::Cluster>, all: bool) -> Result<Reading> {
    let mut cluster = cluster
        .lock()
        .map_err(|_| anyhow::anyhow!("a Kubernetes watch panicked"))?;
    Ok(Reading {
        updates: cluster.updates(all),
        warnings: Vec::new(),
    })
}
