//! `vsteer plan`: what the config compiles to, without root.

use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use vsteer_compiler::{Change, Compiler};
use vsteer_model::store::Store;

use super::SourceArgs;
use crate::sources::Source;

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Print the plan as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// The node's locality (`region/zone/subzone`) the plan is for: DestinationRules'
    /// `localityLbSetting.distribute` is seen from it.
    #[arg(long, value_name = "REGION/ZONE/SUBZONE", value_parser = super::parse_locality)]
    locality: Option<vsteer_compiler::locality::Locality>,
}

/// Prints the plan; exits 1 when any resource had an error (the valid ones are still shown).
pub fn run(args: &PlanArgs) -> Result<i32> {
    let reading = Source::new(args.source.config.clone()).read_all()?;
    let mut store = Store::default();
    store.apply(reading.updates);
    let changes: Vec<Change> = store
        .resources()
        .into_iter()
        .map(|r| (r.id.clone(), Some(Arc::clone(&r))))
        .collect();
    let mut compiler = Compiler::default();
    compiler.set_locality(args.locality.clone());
    compiler.update(&changes);
    for warning in reading.warnings.iter().chain(&store.warnings()) {
        eprintln!("warning: {warning}");
    }
    for note in compiler.notes() {
        eprintln!("note: {note}");
    }
    let errors: Vec<_> = store
        .errors()
        .into_iter()
        .chain(compiler.errors())
        .collect();
    for error in &errors {
        eprintln!("error: {error}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(compiler.plan())?);
    } else {
        print!("{}", vsteer_plan::render(compiler.plan()));
    }
    Ok(if errors.is_empty() { 0 } else { 1 })
}
