//! What the agent tells the operator about the config: errors (a resource rejected, with
//! file, resource and field), warnings (things skipped), last good versions kept, notes.

use vsteer_compiler::Update;
use vsteer_model::Diagnostic;
use vsteer_model::store::Changes;

/// What the source and the store saw.
pub fn source(warnings: &[Diagnostic], changes: &Changes) {
    for warning in warnings.iter().chain(&changes.warnings) {
        tracing::warn!("{warning}");
    }
    for error in &changes.errors {
        tracing::error!("rejected: {error}");
    }
    for resource in &changes.kept {
        tracing::warn!(
            resource = %resource.id,
            file = %resource.origin.file,
            "keeping the last good version"
        );
    }
}

/// What the compiler found in what it looked at again.
pub fn compiled(update: &Update) {
    for error in &update.errors {
        tracing::error!("rejected: {error}");
    }
    for note in &update.notes {
        tracing::info!("{note}");
    }
}
