//! Handing freed memory back to the kernel. The start (above all over every Service of a
//! cluster: a listed page of JSON per 500 objects, decoded, compiled, dropped) frees much
//! of what it allocated; mimalloc keeps a freed page for a second before it purges it, and
//! by then the next page of the list has been laid out around it. Measured at 30,000
//! Services of a cluster: 231 MiB resident at the peak and 203 after, against 202 and 194
//! with pages purged as soon as they empty. So the start purges at once, and every large
//! pass ends with a purge. Afterwards freed pages wait 10 ms, not mimalloc 3's second:
//! with a second, 10 EndpointSlice changes a second kept 10 MiB more resident (194.7 MiB
//! ready, 204.8 while the changes ran). 10 ms is mimalloc 2's default, which it shipped
//! for years, long enough that the proxy's request path does not purge and refault a
//! page per request.
//!
//! The agent also keeps to small pages: see [`use_small_pages`].

#[cfg(feature = "mimalloc")]
use libmimalloc_sys as mi;

/// Passes that read at least this many resources (a start, a relist, a directory
/// replaced) are followed by a purge.
pub const LARGE_PASS: usize = 1_000;

/// mimalloc's `mi_option_purge_delay` (milliseconds), by its place in mimalloc 3's option
/// list: libmimalloc-sys names no constant for it. A test checks it reads 1,000 ms, that
/// option's default, before anything sets it.
#[cfg(feature = "mimalloc")]
const PURGE_DELAY: mi::mi_option_t = 15;

/// The purge delay once the agent is ready, ms.
#[cfg(feature = "mimalloc")]
const RUNNING_PURGE_DELAY_MS: std::os::raw::c_long = 10;

/// While it lives, freed pages are purged at once; dropped, they wait 10 ms.
pub struct PurgeAtOnce(());

impl PurgeAtOnce {
    pub fn start() -> PurgeAtOnce {
        set_purge_delay(0);
        PurgeAtOnce(())
    }
}

impl Drop for PurgeAtOnce {
    fn drop(&mut self) {
        #[cfg(feature = "mimalloc")]
        set_purge_delay(RUNNING_PURGE_DELAY_MS);
    }
}

#[cfg_attr(not(feature = "mimalloc"), allow(unused_variables))]
fn set_purge_delay(ms: std::os::raw::c_long) {
    #[cfg(feature = "mimalloc")]
    // SAFETY: options are plain integers mimalloc reads on its own; any thread may set one
    // at any time.
    unsafe {
        mi::mi_option_set(PURGE_DELAY, ms)
    };
}

/// Turns transparent huge pages off for the agent (`PR_SET_THP_DISABLE`; it holds across
/// `exec` for whatever the agent starts). mimalloc asks for huge pages for its arenas, and a
/// 2 MiB page that holds a few live objects is resident whole: the agent's heap is tens of
/// thousands of small records, kept for long, and gains nothing from fewer TLB misses. Measured at
/// 30,000 Services of a cluster: 203 MB resident when ready with huge pages (39 MB of them
/// huge), 187 MB without. Called first thing, before the heap grows.
pub fn use_small_pages() {
    if let Err(error) = nix::sys::prctl::set_thp_disable(true) {
        // Only memory is at stake: a kernel without the call (before 3.15) still runs vsteer.
        tracing::warn!(%error, "could not turn transparent huge pages off");
    }
}

/// Purges the allocator's freed pages now (a no-op without mimalloc: glibc's allocator
/// returns the top of its heap by itself).
pub fn release_freed() {
    #[cfg(feature = "mimalloc")]
    {
        let started = std::time::Instant::now();
        // SAFETY: `mi_collect` takes no pointers; any thread may call it at any time.
        unsafe { mi::mi_collect(true) };
        tracing::debug!(
            took_us = started.elapsed().as_micros() as u64,
            "freed memory handed back"
        );
    }
}

#[cfg(test)]
mod small_pages_tests {
    #[test]
    fn the_agent_turns_transparent_huge_pages_off_for_itself() {
        super::use_small_pages();
        assert_eq!(nix::sys::prctl::get_thp_disable(), Ok(true));
    }
}

#[cfg(all(test, feature = "mimalloc"))]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_with_mimallocs_default_of_a_second() {
        // Nothing in this test binary sets it: the default, as mimalloc 3 documents it.
        assert_eq!(unsafe { mi::mi_option_get(PURGE_DELAY) }, 1_000);
        let guard = PurgeAtOnce::start();
        assert_eq!(unsafe { mi::mi_option_get(PURGE_DELAY) }, 0);
        drop(guard);
        assert_eq!(
            unsafe { mi::mi_option_get(PURGE_DELAY) },
            RUNNING_PURGE_DELAY_MS
        );
    }
}
