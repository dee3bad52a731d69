//! ServiceEntries with `resolution: DNS`: the agent resolves their names with the DNS
//! server the test runs on a loopback address of its own namespace, follows the answers as
//! their TTL runs out, and keeps the last good answer while DNS fails.
//!
//! Kernel tests (network namespaces): they need root. Without it they skip loudly, unless
//! VSTEER_REQUIRE_KERNEL_TESTS=1 (CI).
mod support;

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{ConfigDir, addr, assert_only};
use vsteer::resolve::{DnsSettings, Resolver, Watch, dns::Answer};
use vsteer_testkit::agent::{RunPlacement, run_args};
use vsteer_testkit::{
    AgentProcess, Backend, DnsServer, NetNs, PinDir, TestCgroup, connect_many, kernel_tests_enabled,
};

const VSTEER: &str = env!("CARGO_BIN_EXE_vsteer");
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const DNS: &str = "127.0.0.53:53";
/// The answers' TTL: short, so the test sees several lookups.
const TTL: u32 = 1;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ips(list: &[&str]) -> std::sync::Arc<[IpAddr]> {
    list.iter().map(|s| ip(s)).collect()
}

/// The next answer within `within`, or `None`.
fn next(
    runtime: &tokio::runtime::Runtime,
    resolver: &mut Resolver,
    within: Duration,
) -> Option<Answer> {
    runtime.block_on(async { tokio::time::timeout(within, resolver.next()).await.ok() })
}

/// The resolver alone: first answers (one name NXDOMAIN), a changed answer found when the
/// TTL runs out, an unchanged one not reported, failures reported as nothing (the last good
/// answer stays), and answers again once DNS recovers.
#[test]
fn the_resolver_follows_ttls_and_reports_only_changes() {
    if !kernel_tests_enabled("the_resolver_follows_ttls_and_reports_only_changes") {
        return;
    }
    let ns = NetNs::new().unwrap();
    let server = DnsServer::start(&ns, addr(DNS), TTL).unwrap();
    server.set("api.vsteer.test", &[ip("10.1.0.1"), ip("fd00::1")]);
    let settings = DnsSettings {
        servers: vec![addr(DNS)],
        // Long: every lookup in the windows below is one the TTL asked for.
        refresh: Duration::from_secs(60),
    };
    // Its thread is started from inside the namespace, so its sockets live there.
    let mut resolver = ns.run(move || Resolver::start(&settings)).unwrap().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    resolver.watch(Watch {
        added: vec!["api.vsteer.test".into(), "missing.vsteer.test".into()],
        removed: Vec::new(),
    });
    let mut first = vec![
        next(&runtime, &mut resolver, Duration::from_secs(10)).expect("first answer"),
        next(&runtime, &mut resolver, Duration::from_secs(10)).expect("second answer"),
    ];
    first.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        first,
        [
            Answer {
                name: "api.vsteer.test".into(),
                addresses: ips(&["10.1.0.1", "fd00::1"]),
            },
            // NXDOMAIN: an answer with no address.
            Answer {
                name: "missing.vsteer.test".into(),
                addresses: ips(&[]),
            },
        ]
    );

    // Unchanged answers are looked up again at each TTL but not reported.
    let lookups = server.a_queries("api.vsteer.test");
    assert_eq!(
        next(&runtime, &mut resolver, Duration::from_millis(2500)),
        None
    );
    let again = server.a_queries("api.vsteer.test") - lookups;
    assert!(
        again >= 2,
        "looked up again as the 1 s TTL ran out: {again} lookups in 2.5 s"
    );
    // The NXDOMAIN name has no TTL: not asked again within the refresh rate.
    assert_eq!(server.a_queries("missing.vsteer.test"), 1);

    // AAAA fails while A changes: the new IPv4 address, the last good IPv6 one.
    server.set_failing_aaaa(true);
    server.set("api.vsteer.test", &[ip("10.1.0.9"), ip("fd00::9")]);
    let answer =
        next(&runtime, &mut resolver, Duration::from_secs(5)).expect("the changed A answer");
    assert_eq!(answer.addresses, ips(&["10.1.0.9", "fd00::1"]));
    server.set_failing_aaaa(false);
    let answer = next(&runtime, &mut resolver, Duration::from_secs(5)).expect("AAAA answers again");
    assert_eq!(answer.addresses, ips(&["10.1.0.9", "fd00::9"]));

    let changed_at = Instant::now();
    server.set("api.vsteer.test", &[ip("10.1.0.2")]);
    let answer = next(&runtime, &mut resolver, Duration::from_secs(5)).expect("the changed answer");
    assert_eq!(answer.addresses, ips(&["10.1.0.2"]));
    eprintln!("change seen after {:?}", changed_at.elapsed());

    // Failing DNS: lookups go on (with backoff), nothing is reported, so the last good
    // answer stays in force.
    server.set_failing(true);
    let queries = server.queries();
    assert_eq!(next(&runtime, &mut resolver, Duration::from_secs(4)), None);
    assert!(server.queries() > queries, "retried while failing");
    server.set("api.vsteer.test", &[ip("10.1.0.3")]);
    server.set_failing(false);
    // The backoff doubles from 1 s: the 4 s of failures end within the next 4 s.
    let answer =
        next(&runtime, &mut resolver, Duration::from_secs(8)).expect("answer after recovery");
    assert_eq!(answer.addresses, ips(&["10.1.0.3"]));

    // A name no longer watched is no longer looked up.
    resolver.watch(Watch {
        added: Vec::new(),
        removed: vec!["api.vsteer.test".into(), "missing.vsteer.test".into()],
    });
    std::thread::sleep(Duration::from_millis(300));
    let queries = server.queries();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(server.queries(), queries, "stopped looking up");
}

const BACKEND_A: &str = "127.0.1.1:9080";
const BACKEND_B: &str = "127.0.1.2:9080";
const VIP: &str = "127.100.0.1:9080";

const ENTRY: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external}
spec:
  hosts: [external.vsteer.test]
  addresses: [127.100.0.1]
  ports: [{number: 9080, name: tcp, protocol: TCP}]
  resolution: DNS
  endpoints: [{address: backend.vsteer.test}]
";

/// Where connects to the VIP land now (all of `count`, or the test fails on a refusal).
fn connects(ns: &NetNs, cgroup: &TestCgroup, count: u32) -> vsteer_testkit::ConnectReport {
    connect_many(ns, Some(cgroup), addr(VIP), count, Duration::from_secs(30)).unwrap()
}

/// The agent end to end: connects to the entry's VIP reach the address DNS gives its
/// endpoint's name; a changed answer moves new connects once the TTL runs out; while DNS
/// fails they stay on the last good answer.
#[test]
fn a_dns_resolved_service_follows_its_answers_and_keeps_the_last_good_one() {
    if !kernel_tests_enabled(
        "a_dns_resolved_service_follows_its_answers_and_keeps_the_last_good_one",
    ) {
        return;
    }
    let ns = NetNs::new().unwrap();
    let _a = Backend::tcp(&ns, addr(BACKEND_A), "a").unwrap();
    let _b = Backend::tcp(&ns, addr(BACKEND_B), "b").unwrap();
    let server = DnsServer::start(&ns, addr(DNS), TTL).unwrap();
    server.set("backend.vsteer.test", &[addr(BACKEND_A).ip()]);
    let config = ConfigDir::new(&[("external.yaml", ENTRY)]);
    let cgroup = TestCgroup::new().unwrap();
    let pins = PinDir::new();
    let mut args = run_args(&RunPlacement {
        cgroup: cgroup.path(),
        pin_dir: pins.path(),
        proxy_addr: "127.0.0.1:0",
        admin_addr: "off",
    });
    args.extend([
        "--config".into(),
        config.path().into(),
        "--dns-server".into(),
        DNS.into(),
    ]);
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    // The agent in the namespace (where its DNS server is), not in the steered cgroup.
    let start =
        || AgentProcess::start_in(Path::new(VSTEER), &args, READY_TIMEOUT, &ns, None).unwrap();
    let mut agent = start();

    // The start waited for the first answer: no connect is refused.
    let report = connects(&ns, &cgroup, 50);
    assert_only(&report, &["a"]);
    assert_eq!(report.replies().get("a"), Some(&50));

    server.set("backend.vsteer.test", &[addr(BACKEND_B).ip()]);
    agent
        .wait_for("DNS answers applied", Duration::from_secs(10))
        .unwrap();
    let report = connects(&ns, &cgroup, 50);
    assert_only(&report, &["b"]);

    server.set_failing(true);
    agent
        .wait_for(
            "DNS lookup of backend.vsteer.test failed",
            Duration::from_secs(10),
        )
        .unwrap();
    // Several TTLs and retries later, still the last good answer.
    std::thread::sleep(Duration::from_secs(3));
    let report = connects(&ns, &cgroup, 50);
    assert_only(&report, &["b"]);
    assert_eq!(report.replies().get("b"), Some(&50));

    // An agent restarted while DNS still fails starts from the answer the last run saved.
    assert_eq!(
        agent
            .stop_with(libc::SIGTERM, Duration::from_secs(10))
            .unwrap(),
        Some(0)
    );
    drop(agent);
    // (It waits up to 5 s for DNS before it writes the maps, then takes the saved answer.)
    let mut agent = start();
    let report = connects(&ns, &cgroup, 50);
    assert_only(&report, &["b"]);
    assert_eq!(report.replies().get("b"), Some(&50));

    // And follows DNS again once it answers.
    server.set("backend.vsteer.test", &[addr(BACKEND_A).ip()]);
    server.set_failing(false);
    agent
        .wait_for("DNS answers applied", Duration::from_secs(15))
        .unwrap();
    let report = connects(&ns, &cgroup, 50);
    assert_only(&report, &["a"]);
}
