//! Handing freed memory back to the kernel after a pass. A pass (above all the first, over
//! every Service of a cluster) frees much of what it allocated; mimalloc keeps freed pages
//! for reuse and purges them only after a delay (measured: 20 to 30 MiB more resident at
//! 30,000 Services of a cluster, until the purge). After the first pass and after large ones only: a purge
//! walks the whole heap, which a one-Service change must not wait behind; never on the
//! proxy's request path.

/// Passes that read at least this many resources (a start, a relist, a directory
/// replaced) are followed by a purge.
pub const LARGE_PASS: usize = 1_000;

/// Purges the allocator's freed pages now (a no-op without mimalloc: glibc's allocator
/// returns the top of its heap by itself).
pub fn release_freed() {
    #[cfg(feature = "mimalloc")]
    {
        let started = std::time::Instant::now();
        // SAFETY: `mi_collect` takes no pointers; any thread may call it at any time.
        unsafe { libmimalloc_sys::mi_collect(true) };
        tracing::debug!(
            took_us = started.elapsed().as_micros() as u64,
            "freed memory handed back"
        );
    }
}
