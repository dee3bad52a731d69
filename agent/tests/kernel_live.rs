//! The agent as operators run it: config changes and agent restarts while clients connect
//! without pause. Not one connect may fail, and every connect must land on a backend that
//! was valid at that moment.
//!
//! Kernel tests: they need root. Without it they skip loudly, unless
//! VSTEER_REQUIRE_KERNEL_TESTS=1 (CI).
mod support;

use std::{collections::BTreeSet, path::Path, time::Duration};

use support::{ConfigDir, addr, assert_only};
use vsteer_testkit::{
    AgentProcess, Backend, ConnectOutcome, ConnectReport, NetNs, PinDir, TestCgroup, connect_many,
    kernel_tests_enabled, monotonic_ns,
};

const VSTEER: &str = env!("CARGO_BIN_EXE_vsteer");
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const DEADLINE: Duration = Duration::from_secs(180);
const VIP: &str = "127.100.0.1:9080";
const V1: &str = "127.0.1.1:9080";
const V2: &str = "127.0.1.2:9080";
const V2B: &str = "127.0.1.4:9080";
const V3: &str = "127.0.1.3:9080";

fn service_entry(endpoints: &[(&str, &str)]) -> String {
    let mut yaml = String::from(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews.default.svc.cluster.local]
  addresses: [127.100.0.1]
  ports: [{number: 9080, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints:
",
    );
    for (address, version) in endpoints {
        yaml.push_str(&format!(
            "  - {{address: {address}, labels: {{version: {version}}}}}\n"
        ));
    }
    yaml.push_str(
        "---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
",
    );
    yaml
}

fn all_endpoints() -> String {
    service_entry(&[
        ("127.0.1.1", "v1"),
        ("127.0.1.2", "v2"),
        ("127.0.1.3", "v3"),
    ])
}

fn split(v1: u32, v2: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  tcp:
  - route:
    - {{destination: {{host: reviews, subset: v1}}, weight: {v1}}}
    - {{destination: {{host: reviews, subset: v2}}, weight: {v2}}}
"
    )
}

fn only(subset: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  tcp:
  - route:
    - destination: {{host: reviews, subset: {subset}}}
"
    )
}

/// Namespace, cgroup, pins and backends for the live tests.
struct Stage {
    backends: Vec<Backend>,
    pins: PinDir,
    cgroup: TestCgroup,
    ns: NetNs,
}

impl Stage {
    fn new() -> Stage {
        let ns = NetNs::new().unwrap();
        let backends = [V1, V2, V2B, V3]
            .iter()
            .map(|a| Backend::tcp(&ns, addr(a), a).unwrap())
            .collect();
        Stage {
            backends,
            pins: PinDir::new(),
            cgroup: TestCgroup::new().unwrap(),
            ns,
        }
    }

    fn agent(&self, config: &Path) -> AgentProcess {
        AgentProcess::run(
            Path::new(VSTEER),
            Some(config),
            self.cgroup.path(),
            self.pins.path(),
            READY_TIMEOUT,
        )
        .unwrap()
    }
}

/// A backend set and when it was in force: from when its config was written (the kernel may
/// flip any moment after) until the next set's "config applied" was seen (the flip is done by
/// then), plus a little for the reply read after connect().
struct Phase {
    set: &'static [&'static str],
    from_ns: u64,
    until_ns: u64,
}

const SLACK_NS: u64 = 100_000_000;

/// Connects to the VIP in batches until `done` is set (bounded: 400 batches of 500, far
/// beyond the seconds a test's changes take), so the connects cover the whole change window
/// however fast this machine connects.
fn connect_until(
    stage: &Stage,
    done: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<vsteer_testkit::ConnectReport> {
    let mut all = vsteer_testkit::ConnectReport {
        outcomes: Vec::new(),
        times_ns: Vec::new(),
    };
    for _ in 0..400 {
        if done.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        let batch = connect_many(&stage.ns, Some(&stage.cgroup), addr(VIP), 500, DEADLINE)?;
        all.outcomes.extend(batch.outcomes);
        all.times_ns.extend(batch.times_ns);
    }
    Ok(all)
}

fn assert_every_connect_was_valid(report: &ConnectReport, phases: &[Phase]) {
    assert!(
        report.failures().is_empty(),
        "failed connects: {:?}",
        report.failures()
    );
    for (outcome, t) in report.outcomes.iter().zip(&report.times_ns) {
        let ConnectOutcome::Reached { reply, .. } = outcome else {
            unreachable!()
        };
        let valid: BTreeSet<&str> = phases
            .iter()
            .filter(|p| p.from_ns <= *t && *t <= p.until_ns.saturating_add(SLACK_NS))
            .flat_map(|p| p.set.iter().copied())
            .collect();
        assert!(
            valid.contains(reply.as_str()),
            "a connect at t={t} reached {reply}, valid then: {valid:?}"
        );
    }
}

#[test]
fn live_reweighting_and_endpoint_changes_drop_no_connect() {
    if !kernel_tests_enabled("live_reweighting_and_endpoint_changes_drop_no_connect") {
        return;
    }
    let stage = Stage::new();
    let config = ConfigDir::new(&[("se.yaml", &all_endpoints()), ("vs.yaml", &split(100, 0))]);
    let mut agent = stage.agent(config.path());
    let changes: [(&str, String, &'static [&'static str]); 4] = [
        ("vs.yaml", split(0, 100), &[V2]),
        // A second v2 endpoint joins...
        (
            "se.yaml",
            service_entry(&[
                ("127.0.1.1", "v1"),
                ("127.0.1.2", "v2"),
                ("127.0.1.4", "v2"),
                ("127.0.1.3", "v3"),
            ]),
            &[V2, V2B],
        ),
        // ...and the first leaves.
        (
            "se.yaml",
            service_entry(&[
                ("127.0.1.1", "v1"),
                ("127.0.1.4", "v2"),
                ("127.0.1.3", "v3"),
            ]),
            &[V2B],
        ),
        ("vs.yaml", split(100, 0), &[V1]),
    ];
    // The changes are paced by the traffic itself: each waits for CONNECTS_PER_PHASE more
    // connects, so the window from the first change to the last holds at least 20,000 of
    // them however fast this machine is.
    const CONNECTS_PER_PHASE: u64 = 7_000;
    let connects = 40_000;
    let served = || stage.backends.iter().map(Backend::served).sum::<u64>();
    let (report, phases, window) = std::thread::scope(|scope| {
        let client = scope.spawn(|| {
            connect_many(
                &stage.ns,
                Some(&stage.cgroup),
                addr(VIP),
                connects,
                DEADLINE,
            )
        });
        let mut phases = vec![Phase {
            set: &[V1],
            from_ns: 0,
            until_ns: u64::MAX,
        }];
        let mut window = (0, 0);
        let mut mark = 0;
        for (i, (file, text, set)) in changes.iter().enumerate() {
            let wanted = mark + if i == 0 { 1_000 } else { CONNECTS_PER_PHASE };
            let started = std::time::Instant::now();
            while served() < wanted && started.elapsed() < DEADLINE {
                std::thread::sleep(Duration::from_millis(5));
            }
            mark = served();
            agent.drain();
            let written = monotonic_ns();
            config.write(file, text);
            agent.wait_for("config applied", READY_TIMEOUT).unwrap();
            let applied = monotonic_ns();
            if let Some(last) = phases.last_mut() {
                last.until_ns = applied;
            }
            phases.push(Phase {
                set,
                from_ns: written,
                until_ns: u64::MAX,
            });
            if i == 0 {
                window.0 = written;
            }
            window.1 = applied;
        }
        (client.join().unwrap().unwrap(), phases, window)
    });
    assert_eq!(report.outcomes.len(), connects as usize);
    let in_window = report
        .times_ns
        .iter()
        .filter(|t| (window.0..=window.1).contains(*t))
        .count();
    assert!(
        in_window >= 20_000,
        "only {in_window} connects while the config changed; the client was too slow or done"
    );
    assert_every_connect_was_valid(&report, &phases);
    // Every phase's backends were really used.
    let reached: BTreeSet<String> = report.replies().into_keys().collect();
    for b in [V1, V2, V2B] {
        assert!(reached.contains(b), "{b} never reached: {reached:?}");
    }
    assert!(!reached.contains(V3), "v3 is in no route");
    drop(stage.backends);
}

#[test]
fn sigkill_and_restart_of_the_agent_drop_no_connect() {
    if !kernel_tests_enabled("sigkill_and_restart_of_the_agent_drop_no_connect") {
        return;
    }
    let stage = Stage::new();
    let config = ConfigDir::new(&[("se.yaml", &all_endpoints()), ("vs.yaml", &split(50, 50))]);
    let mut first = stage.agent(config.path());
    let connects = 20_000;
    let report = std::thread::scope(|scope| {
        let client = scope.spawn(|| {
            connect_many(
                &stage.ns,
                Some(&stage.cgroup),
                addr(VIP),
                connects,
                DEADLINE,
            )
        });
        std::thread::sleep(Duration::from_millis(300));
        first
            .stop_with(libc::SIGKILL, Duration::from_secs(5))
            .unwrap();
        // No agent at all for a moment: the pinned datapath carries on.
        std::thread::sleep(Duration::from_millis(300));
        let _second = stage.agent(config.path());
        client.join().unwrap().unwrap()
    });
    assert_eq!(report.outcomes.len(), connects as usize);
    assert_only(&report, &[V1, V2]);
    let reached = report.replies();
    assert_eq!(reached.len(), 2, "{reached:?}");
}

#[test]
fn a_restarted_agent_adopts_the_kernel_state_without_rewriting_it() {
    if !kernel_tests_enabled("a_restarted_agent_adopts_the_kernel_state_without_rewriting_it") {
        return;
    }
    let stage = Stage::new();
    let config = ConfigDir::new(&[("se.yaml", &all_endpoints()), ("vs.yaml", &split(80, 20))]);
    let mut first = stage.agent(config.path());
    first
        .stop_with(libc::SIGKILL, Duration::from_secs(5))
        .unwrap();
    let mut second = stage.agent(config.path());
    let ready = second.ready_line().to_string();
    assert!(ready.contains("adopted=1"), "{ready}");
    assert!(ready.contains("written=0"), "nothing rewritten: {ready}");
    // Reading its config must not look like a change to the agent itself.
    assert!(
        second
            .wait_for("config applied", Duration::from_secs(1))
            .is_err(),
        "the agent reloaded an unchanged config"
    );
    let report = connect_many(&stage.ns, Some(&stage.cgroup), addr(VIP), 200, DEADLINE).unwrap();
    assert_only(&report, &[V1, V2]);
}

#[test]
fn bad_config_is_reported_and_the_last_good_one_stays_in_force() {
    if !kernel_tests_enabled("bad_config_is_reported_and_the_last_good_one_stays_in_force") {
        return;
    }
    let stage = Stage::new();
    let config = ConfigDir::new(&[("se.yaml", &all_endpoints()), ("vs.yaml", &only("v1"))]);
    let mut agent = stage.agent(config.path());
    let vs_file = config.path().join("vs.yaml").display().to_string();
    let bad: [(String, &[&str]); 3] = [
        (
            only("v2").replace("host: reviews, subset", "host: nosuch, subset"),
            &[
                "VirtualService default/reviews",
                "spec.tcp[0].route[0].destination.host",
                "unknown host",
            ],
        ),
        (
            split(0, 0),
            &[
                "VirtualService default/reviews",
                "spec.tcp[0].route",
                "total destination weight = 0",
            ],
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: [unclosed\n".to_string(),
            &["line"],
        ),
    ];
    for (text, expected) in &bad {
        agent.drain();
        config.write("vs.yaml", text);
        let line = agent.wait_for("rejected:", READY_TIMEOUT).unwrap();
        assert!(line.contains(&vs_file), "names the file: {line}");
        for part in *expected {
            assert!(line.contains(part), "names {part}: {line}");
        }
        let report =
            connect_many(&stage.ns, Some(&stage.cgroup), addr(VIP), 200, DEADLINE).unwrap();
        assert_only(&report, &[V1]);
        assert_eq!(
            report.replies().values().sum::<u64>(),
            200,
            "traffic keeps following the last good config"
        );
    }
    // The agent is alive and still applies good config.
    agent.drain();
    config.write("vs.yaml", &only("v2"));
    agent.wait_for("config applied", READY_TIMEOUT).unwrap();
    let report = connect_many(&stage.ns, Some(&stage.cgroup), addr(VIP), 200, DEADLINE).unwrap();
    assert_only(&report, &[V2]);
}

/// The last good config survives a restart: both files break while the agent runs (a YAML
/// syntax error, and garbage that is valid YAML), the agent is restarted on them, and not
/// one connect fails or leaves the last good split; the new agent finds nothing to write.
#[test]
fn a_restart_with_broken_files_keeps_every_connect_working() {
    if !kernel_tests_enabled("a_restart_with_broken_files_keeps_every_connect_working") {
        return;
    }
    let stage = Stage::new();
    let config = ConfigDir::new(&[("se.yaml", &all_endpoints()), ("vs.yaml", &split(50, 50))]);
    let mut first = stage.agent(config.path());
    for (file, text) in [
        (
            "se.yaml",
            "apiVersion: networking.istio.io/v1\nkind: [unclosed\n",
        ),
        ("vs.yaml", "garbage that happens to be valid YAML\n"),
    ] {
        first.drain();
        config.write(file, text);
        let line = first.wait_for("rejected:", READY_TIMEOUT).unwrap();
        assert!(line.contains(file), "{line}");
    }
    let connects = 20_000;
    let (report, ready) = std::thread::scope(|scope| {
        let client = scope.spawn(|| {
            connect_many(
                &stage.ns,
                Some(&stage.cgroup),
                addr(VIP),
                connects,
                DEADLINE,
            )
        });
        std::thread::sleep(Duration::from_millis(300));
        first
            .stop_with(libc::SIGTERM, Duration::from_secs(10))
            .unwrap();
        let second = stage.agent(config.path());
        let ready = second.ready_line().to_string();
        (client.join().unwrap().unwrap(), (ready, second))
    });
    let (ready, _second) = ready;
    assert!(ready.contains("written=0"), "the last good config: {ready}");
    assert_eq!(report.outcomes.len(), connects as usize);
    assert_only(&report, &[V1, V2]);
    let after = connect_many(&stage.ns, Some(&stage.cgroup), addr(VIP), 400, DEADLINE).unwrap();
    assert_only(&after, &[V1, V2]);
    assert_eq!(
        after.replies().len(),
        2,
        "still the split: {:?}",
        after.replies()
    );
}

/// A writer that pauses mid-file for longer than the settle time (0.6 s) while clients
/// connect: the half-written file (a ServiceEntry cut before its endpoints: valid YAML, and a
/// service with no backend) is never applied, and not one connect fails.
#[test]
fn a_slow_writer_drops_no_connect() {
    if !kernel_tests_enabled("a_slow_writer_drops_no_connect") {
        return;
    }
    use std::io::Write;
    let stage = Stage::new();
    let se = all_endpoints();
    let config = ConfigDir::new(&[("se.yaml", &se), ("vs.yaml", &only("v1"))]);
    let mut agent = stage.agent(config.path());
    let cut = se.find("  endpoints:").unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let report = std::thread::scope(|scope| {
        let client = scope.spawn(|| connect_until(&stage, &done));
        std::thread::sleep(Duration::from_millis(200));
        for _ in 0..2 {
            agent.drain();
            let mut file = std::fs::File::create(config.path().join("se.yaml")).unwrap();
            file.write_all(&se.as_bytes()[..cut]).unwrap();
            file.flush().unwrap();
            std::thread::sleep(Duration::from_millis(600));
            file.write_all(&se.as_bytes()[cut..]).unwrap();
            drop(file);
            agent.wait_for("config applied", READY_TIMEOUT).unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        client.join().unwrap().unwrap()
    });
    // Connects ran through both 0.6 s pauses.
    assert!(
        report.outcomes.len() >= 1_000,
        "{} connects",
        report.outcomes.len()
    );
    assert_only(&report, &[V1]);
}

/// Atomically published generations, as the kubelet does for a ConfigMap volume: the files
/// are links into `..data/`, `..data` links to a timestamped directory and is replaced by a
/// rename. Each swap is applied whole (the service moves from v1 to v2 and back, with a new
/// file appearing in the middle one), with no connect failing or landing outside the
/// backends valid at that moment.
#[test]
fn configmap_volume_swaps_drop_no_connect() {
    if !kernel_tests_enabled("configmap_volume_swaps_drop_no_connect") {
        return;
    }
    use std::os::unix::fs::symlink;
    let stage = Stage::new();
    let config = ConfigDir::new(&[]);
    let dir = config.path();
    let publish = |generation: &str, files: &[(&str, String)]| {
        let staged = dir.join(generation);
        std::fs::create_dir(&staged).unwrap();
        for (name, text) in files {
            std::fs::write(staged.join(name), text).unwrap();
        }
        symlink(generation, dir.join("..data_tmp")).unwrap();
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
        for (name, _) in files {
            let link = dir.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                symlink(format!("..data/{name}"), link).unwrap();
            }
        }
    };
    publish(
        "..2026_12_01_00_00_00.1",
        &[("se.yaml", all_endpoints()), ("vs.yaml", only("v1"))],
    );
    let mut agent = stage.agent(dir);
    // The middle generation moves the route into a new file, the last moves it back.
    // A generation's directory name, its files, and the backends valid once it is applied.
    type Generation = (
        &'static str,
        Vec<(&'static str, String)>,
        &'static [&'static str],
    );
    let generations: [Generation; 2] = [
        (
            "..2026_12_01_00_01_00.2",
            vec![
                ("se.yaml", all_endpoints()),
                ("vs.yaml", String::new()),
                ("vs2.yaml", only("v2")),
            ],
            &[V2],
        ),
        (
            "..2026_12_01_00_02_00.3",
            vec![("se.yaml", all_endpoints()), ("vs.yaml", only("v1"))],
            &[V1],
        ),
    ];
    // The client connects in batches until every generation is applied, however fast this
    // machine connects (a fixed count could end before the middle generation applies).
    let done = std::sync::atomic::AtomicBool::new(false);
    let (report, phases) = std::thread::scope(|scope| {
        let client = scope.spawn(|| connect_until(&stage, &done));
        let mut phases = vec![Phase {
            set: &[V1],
            from_ns: 0,
            until_ns: u64::MAX,
        }];
        let mut previous: Option<&str> = None;
        for (generation, files, set) in &generations {
            std::thread::sleep(Duration::from_millis(300));
            agent.drain();
            let written = monotonic_ns();
            publish(generation, files);
            agent.wait_for("config applied", READY_TIMEOUT).unwrap();
            let applied = monotonic_ns();
            // The kubelet removes the old generation after the swap.
            let old = previous.unwrap_or("..2026_12_01_00_00_00.1");
            std::fs::remove_dir_all(dir.join(old)).unwrap();
            previous = Some(generation);
            if let Some(last) = phases.last_mut() {
                last.until_ns = applied;
            }
            phases.push(Phase {
                set,
                from_ns: written,
                until_ns: u64::MAX,
            });
        }
        // Connects go on a moment past the last swap too.
        std::thread::sleep(Duration::from_millis(300));
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        (client.join().unwrap().unwrap(), phases)
    });
    assert!(
        report.outcomes.len() >= 1_000,
        "{} connects",
        report.outcomes.len()
    );
    assert_every_connect_was_valid(&report, &phases);
    let reached: BTreeSet<String> = report.replies().into_keys().collect();
    assert!(
        reached.contains(V2),
        "the middle generation was applied: {reached:?}"
    );
    let after = connect_many(&stage.ns, Some(&stage.cgroup), addr(VIP), 200, DEADLINE).unwrap();
    assert_only(&after, &[V1]);
}

/// The config directory replaced while the agent runs (moved away and another moved into
/// its place, then deleted and created again): the agent follows the path, reads the new
/// directory whole, and follows later edits in it.
#[test]
fn a_replaced_config_directory_is_followed_by_its_path() {
    if !kernel_tests_enabled("a_replaced_config_directory_is_followed_by_its_path") {
        return;
    }
    let stage = Stage::new();
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("config");
    let fill = |at: &Path, vs: &str| {
        std::fs::create_dir(at).unwrap();
        std::fs::write(at.join("se.yaml"), all_endpoints()).unwrap();
        std::fs::write(at.join("vs.yaml"), vs).unwrap();
    };
    fill(&dir, &only("v1"));
    let mut agent = stage.agent(&dir);
    let check = |set: &[&str]| {
        let report =
            connect_many(&stage.ns, Some(&stage.cgroup), addr(VIP), 100, DEADLINE).unwrap();
        assert_only(&report, set);
    };
    check(&[V1]);

    // Replaced with mv.
    let staged = parent.path().join("config.new");
    fill(&staged, &only("v2"));
    agent.drain();
    std::fs::rename(&dir, parent.path().join("config.old")).unwrap();
    std::fs::rename(&staged, &dir).unwrap();
    agent.wait_for("config applied", READY_TIMEOUT).unwrap();
    check(&[V2]);
    // An edit in the old one is not followed; one in the new one is.
    std::fs::write(parent.path().join("config.old/vs.yaml"), only("v3")).unwrap();
    agent.drain();
    let tmp = dir.join(".vs.yaml.tmp");
    std::fs::write(&tmp, split(50, 50)).unwrap();
    std::fs::rename(&tmp, dir.join("vs.yaml")).unwrap();
    agent.wait_for("config applied", READY_TIMEOUT).unwrap();
    check(&[V1, V2]);

    // Deleted (the agent keeps the last good config) and created again.
    agent.drain();
    std::fs::remove_dir_all(&dir).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    check(&[V1, V2]);
    fill(&dir, &only("v3"));
    agent.wait_for("config applied", READY_TIMEOUT).unwrap();
    check(&[V3]);
    agent.drain();
    std::fs::write(dir.join("vs.yaml"), only("v1")).unwrap();
    agent.wait_for("config applied", READY_TIMEOUT).unwrap();
    check(&[V1]);
}

/// ServiceEntries `hashed-i` for `i` in `range`, with consistent hashing (`useSourceIp`) on
/// 127.100.10.i, each with 200 endpoints (nothing listens there): each needs a Maglev table
/// of 65,521 slots, so 8 fill the 524,288-slot array and a 9th finds no room.
fn hashed_services(range: std::ops::RangeInclusive<u8>) -> String {
    let mut yaml = String::new();
    for i in range {
        yaml.push_str(&format!(
            "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: hashed-{i}}}
spec:
  hosts: [hashed-{i}.example.com]
  addresses: [127.100.10.{i}]
  ports: [{{number: 80, name: tcp, protocol: TCP}}]
  resolution: STATIC
  endpoints:
"
        ));
        for e in 0..200u32 {
            yaml.push_str(&format!("  - address: 127.3.{i}.{e}\n"));
        }
        yaml.push_str(&format!(
            "---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: hashed-{i}}}
spec:
  host: hashed-{i}.example.com
  trafficPolicy: {{loadBalancer: {{consistentHash: {{useSourceIp: true}}}}}}
"
        ));
    }
    yaml
}

/// A service the kernel maps have no room for is refused alone: the agent starts (a
/// DaemonSet would crash-loop otherwise), logs which service and which limit, every other
/// service applies (one sorting after the refused one too), and once room is freed the
/// refused service is written without another change to it.
#[test]
fn a_service_without_room_is_refused_alone_and_written_once_room_frees() {
    if !kernel_tests_enabled("a_service_without_room_is_refused_alone_and_written_once_room_frees")
    {
        return;
    }
    let stage = Stage::new();
    // reviews (127.100.0.1) sorts before the hashed ones, later (127.100.20.1) after.
    let later = service_entry(&[("127.0.1.2", "v2")])
        .replace("name: reviews}", "name: later}")
        .replace("reviews.default.svc", "later.default.svc")
        .replace("127.100.0.1", "127.100.20.1")
        .replace("host: reviews", "host: later.default.svc.cluster.local");
    let config = ConfigDir::new(&[
        ("a-reviews.yaml", &service_entry(&[("127.0.1.1", "v1")])),
        ("b-hashed.yaml", &hashed_services(1..=9)),
        ("c-later.yaml", &later),
    ]);
    let mut agent = AgentProcess::run_until(
        Path::new(VSTEER),
        Some(config.path()),
        stage.cgroup.path(),
        stage.pins.path(),
        "not written",
        READY_TIMEOUT,
    )
    .unwrap();
    let refused = agent.ready_line().to_string();
    assert!(
        refused.contains("service 127.100.10.9:80/TCP not written")
            && refused.contains("needs 65521 contiguous backend slots")
            && refused.contains("MAX_BACKEND_SLOTS"),
        "{refused}"
    );
    let ready = agent
        .wait_for(vsteer_testkit::READY, READY_TIMEOUT)
        .unwrap();
    assert!(ready.contains("refused=1"), "{ready}");
    let report = connect_many(&stage.ns, Some(&stage.cgroup), addr(VIP), 100, DEADLINE).unwrap();
    assert_only(&report, &[V1]);
    assert_eq!(report.replies().values().sum::<u64>(), 100);
    let later_vip = addr("127.100.20.1:9080");
    let report = connect_many(&stage.ns, Some(&stage.cgroup), later_vip, 100, DEADLINE).unwrap();
    assert_only(&report, &[V2]);
    let status = || {
        let out = std::process::Command::new(VSTEER)
            .args(["status", "--pin-dir", stage.pins.path().to_str().unwrap()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(status().contains("127.100.10.8:80/TCP"));
    assert!(!status().contains("127.100.10.9:80/TCP"), "{}", status());

    // Room: the first hashed service goes; once its slots are past their grace period, the
    // refused one is written by the agent's own housekeeping.
    agent.drain();
    config.write("b-hashed.yaml", &hashed_services(2..=9));
    agent.wait_for("config applied", READY_TIMEOUT).unwrap();
    let line = agent
        .wait_for(
            "services written once the kernel maps had room",
            READY_TIMEOUT,
        )
        .unwrap();
    assert!(line.contains("still_refused=0"), "{line}");
    let now = status();
    assert!(
        now.contains("127.100.10.9:80/TCP") && !now.contains("127.100.10.1:80/TCP"),
        "{now}"
    );
}

/// The IPv4 backends the kernel's connection counters hold, read from the pinned map (keys:
/// a 16-byte IPv4-mapped address, the port, padding).
fn counted_backends(pins: &PinDir) -> BTreeSet<String> {
    use aya::maps::{Map, MapData, PerCpuHashMap};
    let data = MapData::from_pin(pins.path().join("VSTEER_COUNTERS")).unwrap();
    let map: PerCpuHashMap<_, [u8; 20], u64> =
        PerCpuHashMap::try_from(Map::PerCpuHashMap(data)).unwrap();
    map.keys()
        .map(|key| {
            let key = key.unwrap();
            let ip = std::net::Ipv4Addr::new(key[12], key[13], key[14], key[15]);
            format!("{ip}:{}", u16::from_ne_bytes([key[16], key[17]]))
        })
        .collect()
}

/// The kernel counts connections per backend in a map of 65,536 entries: the counters of
/// backends that left the config are pruned (within the prune interval), those in force
/// kept.
#[test]
fn counters_of_removed_backends_are_pruned() {
    if !kernel_tests_enabled("counters_of_removed_backends_are_pruned") {
        return;
    }
    let stage = Stage::new();
    let config = ConfigDir::new(&[("se.yaml", &all_endpoints())]);
    let mut agent = stage.agent(config.path());
    let report = connect_many(&stage.ns, Some(&stage.cgroup), addr(VIP), 300, DEADLINE).unwrap();
    assert_eq!(report.replies().len(), 3, "{:?}", report.replies());
    let all: BTreeSet<String> = [V1, V2, V3].map(String::from).into();
    assert_eq!(counted_backends(&stage.pins), all);

    agent.drain();
    config.write("se.yaml", &service_entry(&[("127.0.1.1", "v1")]));
    agent.wait_for("config applied", READY_TIMEOUT).unwrap();
    // (A prune with nothing to do may come first: the one due at start.)
    agent
        .wait_for("of removed backends pruned=2", READY_TIMEOUT)
        .unwrap();
    assert_eq!(counted_backends(&stage.pins), [V1.to_string()].into());
    // Counting goes on for the backend in force.
    let report = connect_many(&stage.ns, Some(&stage.cgroup), addr(VIP), 50, DEADLINE).unwrap();
    assert_only(&report, &[V1]);
}
