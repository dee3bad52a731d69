//! `vsteer plan`: what the config compiles to, without root.
use anyhow::Result;
use clap::Args;

use super::SourceArgs;
use crate::compiler;

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Print the plan as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Prints the plan; exits 1 when any resource had an error (the valid ones are still shown).
pub fn run(args: &PlanArgs) -> Result<i32> {
    let loaded = args.source.reader().read()?;
    let compiled = compiler::compile(&loaded.resources, &compiler::Plan::default());
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    for note in &compiled.notes {
        eprintln!("note: {note}");
    }
    let errors: Vec<_> = loaded.errors.iter().chain(&compiled.errors).collect();
    for error in &errors {
        eprintln!("error: {error}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&compiled.plan)?);
    } else {
        print!("{}", compiler::render(&compiled.plan));
    }
    Ok(if errors.is_empty() { 0 } else { 1 })
}
