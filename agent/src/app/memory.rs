//! Handing freed memory back to the kernel after a pass. A pass (above all the first, over
//! every Service of a cluster) frees much of what it allocated; mimalloc keeps freed pages
//! for reuse and purges them only after a delay, so the agent's resident set stayed up to a
//! quarter above what it holds. Once per pass, never on the proxy's request path.

/// Purges the allocator's freed pages now (a no-op without mimalloc: glibc's allocator
/// returns the top of its heap by itself).
pub fn release_freed() {
    #[cfg(feature = "mimalloc")]
    // SAFETY: `mi_collect` takes no pointers; any thread may call it at any time.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}
