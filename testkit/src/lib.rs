//! Kernel test harness for vsteer: a private network namespace, a throwaway cgroup v2
//! directory, backends that say who they are, clients that connect from inside the cgroup,
//! and the agent as a child process. Everything it creates is removed on drop, also when a
//! test fails; every process it starts is stopped by its id.

pub mod agent;
pub mod backend;
pub mod cgroup;
pub mod client;
pub mod netns;
pub mod pins;
pub mod stats;

use std::sync::atomic::{AtomicU32, Ordering};

pub use agent::AgentProcess;
pub use backend::Backend;
pub use cgroup::TestCgroup;
pub use client::{
    ConnectOutcome, ConnectReport, Probe, connect_many, probe_cycle_on, probe_many, probe_many_on,
    stream_bytes,
};
pub use netns::NetNs;
pub use pins::PinDir;

/// Set (to 1) in CI: a kernel test that cannot run is then a failure, not a skip.
pub const REQUIRE_ENV: &str = "VSTEER_REQUIRE_KERNEL_TESTS";

/// Whether kernel tests can run here (root). Without root they skip loudly, unless
/// [`REQUIRE_ENV`] is set, in which case this panics.
pub fn kernel_tests_enabled(test: &str) -> bool {
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
        panic!("{test}: kernel tests are required ({REQUIRE_ENV}=1) but this process is not root");
    }
    eprintln!(
        "\n*** SKIPPED kernel test {test}: needs root (run `cargo xtask test` as root) ***\n"
    );
    false
}

/// A name no other test or process on the node uses: `vsteer-<what>-<pid>-<n>`.
pub fn unique_name(what: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("vsteer-{what}-{}-{n}", std::process::id())
}

/// The errno of the last failed libc call, as an io::Error.
pub(crate) fn last_os_error(what: &str) -> anyhow::Error {
    anyhow::Error::new(std::io::Error::last_os_error()).context(what.to_string())
}

/// Now on the monotonic clock, in ns: the clock the client stamps its calls with.
pub fn monotonic_ns() -> u64 {
    // SAFETY: all-zero is a valid timespec, filled in by the call.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64) * 1_000_000_000 + now.tv_nsec as u64
}
