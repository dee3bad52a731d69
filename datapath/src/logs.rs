//! Forwards the kernel programs' aya-log records to the agent's log (shown at debug level).
use anyhow::{Context, Result};
use aya::Ebpf;
use aya_log::EbpfLogger;
use tokio::io::{Interest, unix::AsyncFd};

/// Starts a task that drains the programs' log ring buffer into `log`/`tracing`.
pub fn forward(ebpf: &mut Ebpf) -> Result<tokio::task::JoinHandle<()>> {
    let logger = EbpfLogger::init(ebpf).context("opening the eBPF log ring buffer")?;
    // SAFETY: the fd is the logger's own ring buffer map, which it keeps open (and the same)
    // for as long as it lives, and the AsyncFd owns the logger.
    let mut logger = unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) }
        .map_err(|err| err.into_parts().1)
        .context("registering the eBPF log ring buffer with tokio")?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok(mut guard) = logger.readable_mut().await else {
                tracing::warn!("eBPF log ring buffer closed");
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    }))
}

/// The level the kernel programs log at: per-connection records only when the agent itself
/// logs at debug, so the hot path pays for no ring-buffer writes otherwise.
pub fn kernel_level() -> u8 {
    if tracing::enabled!(tracing::Level::DEBUG) {
        aya_log::Level::Debug as u8
    } else {
        aya_log::Level::Info as u8
    }
}
