//! Kernel test harness for vsteer: a private network namespace, a throwaway cgroup v2
//! directory, backends that say who they are, clients that connect from inside the cgroup,
//! veth pairs between namespaces (a pod and its node), processes and sockets placed in a
//! namespace and cgroup, and the agent as a child process. Everything it creates is removed on drop, also when a
//! test fails; every process it starts is stopped by its id.

pub mod agent;
pub mod backend;
pub mod cgroup;
pub mod client;
pub mod dns;
pub mod http;
pub mod kube_api;
pub mod netns;
pub mod pins;
pub mod spawn;
pub mod stats;
pub mod veth;

use std::sync::atomic::{AtomicU32, Ordering};

use nix::time::{ClockId, clock_gettime};

pub use agent::{AgentProcess, READY};
pub use backend::Backend;
pub use cgroup::TestCgroup;
pub use client::{
    ConnectOutcome, ConnectReport, Probe, connect_many, probe_cycle_on, probe_many, probe_many_on,
    stream_bytes,
};
pub use dns::DnsServer;
pub use netns::NetNs;
pub mod tls;
pub use pins::PinDir;
pub use spawn::{Spawned, place, tcp_sockets_in, udp_sockets_in};
pub use veth::Veth;

/// Set (to 1) in CI: a kernel test that cannot run is then a failure, not a skip.
pub const REQUIRE_ENV: &str = "VSTEER_REQUIRE_KERNEL_TESTS";

/// Whether kernel tests can run here (root). Without root they skip loudly, unless
/// [`REQUIRE_ENV`] is set, in which case this panics.
pub fn kernel_tests_enabled(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
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

/// Now on the monotonic clock, in ns: the clock the client stamps its calls with.
pub fn monotonic_ns() -> u64 {
    // Also called in the forked client: clock_gettime is async-signal-safe and this allocates
    // nothing. CLOCK_MONOTONIC cannot fail; 0 would only stand for an impossible error.
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |now| {
        (now.tv_sec() as u64) * 1_000_000_000 + now.tv_nsec() as u64
    })
}
