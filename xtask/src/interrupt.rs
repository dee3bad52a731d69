//! Ctrl-C for the long-running commands: the flag is checked between steps, so the guards
//! (namespace, cgroup, pins, child processes) clean up on the way out.
use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use anyhow::{Context, Result, bail};

#[derive(Clone)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    pub fn install() -> Result<Interrupt> {
        let flag = Arc::new(AtomicBool::new(false));
        let handler_flag = flag.clone();
        ctrlc::set_handler(move || handler_flag.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C handler")?;
        Ok(Interrupt(flag))
    }

    /// Fails once Ctrl-C was pressed.
    pub fn check(&self) -> Result<()> {
        if self.0.load(Ordering::SeqCst) {
            bail!("interrupted; cleaned up");
        }
        Ok(())
    }
}
