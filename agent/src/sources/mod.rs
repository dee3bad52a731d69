//! Where resources come from: YAML files on disk, or the examples built into the binary.
//!
//! Every source produces a [`Loaded`]: the resources it could read, plus the errors and
//! warnings for what it could not, so one bad document never hides the others.

pub mod cache;
pub mod embedded;
pub mod files;
pub mod last_good;

pub use embedded::load_embedded;
pub use files::{load_dir, load_file, parse_str};

use crate::config::{ConfigError, Resource};

/// What a source read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    /// In input order: files by name, documents in file order.
    pub resources: Vec<Resource>,
    /// Problems that made vsteer skip a document or a file.
    pub errors: Vec<ConfigError>,
    /// Things skipped or ignored on purpose (other kinds, unknown fields).
    pub warnings: Vec<ConfigError>,
}

impl Loaded {
    /// Appends what another source (or file) read, keeping the order.
    pub fn extend(&mut self, other: Loaded) {
        self.resources.extend(other.resources);
        self.errors.extend(other.errors);
        self.warnings.extend(other.warnings);
    }
}
