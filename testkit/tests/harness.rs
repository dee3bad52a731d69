//! The harness's clients, backends, cgroup and agent process on their own, without the agent:
//! what the kernel tests rely on, checked in the real kernel (needs root).
use std::{collections::BTreeMap, net::SocketAddr, process::Command, time::Duration};

use nix::sys::signal::Signal;
use vsteer_testkit::{
    AgentProcess, Backend, ConnectOutcome, NetNs, Probe, TestCgroup, connect_many,
    kernel_tests_enabled, monotonic_ns, probe_cycle_on, probe_many, stream_bytes,
};

const DEADLINE: Duration = Duration::from_secs(30);
const ECONNREFUSED: i32 = nix::errno::Errno::ECONNREFUSED as i32;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn assert_reached(outcomes: &[ConnectOutcome], reply: &str, peer: SocketAddr) {
    for outcome in outcomes {
        assert_eq!(
            outcome,
            &ConnectOutcome::Reached {
                reply: reply.to_string(),
                peer
            }
        );
    }
}

#[test]
fn tcp_clients_reach_the_backend_from_inside_the_cgroup() {
    if !kernel_tests_enabled("tcp_clients_reach_the_backend_from_inside_the_cgroup") {
        return;
    }
    let ns = NetNs::new().unwrap();
    let cgroup = TestCgroup::new().unwrap();
    let path = cgroup.path().to_path_buf();
    let v4 = addr("127.0.7.1:7001");
    let v6 = addr("[::1]:7002");
    let _b4 = Backend::tcp(&ns, v4, "four").unwrap();
    let _b6 = Backend::tcp(&ns, v6, "six").unwrap();

    let before = monotonic_ns();
    let report = connect_many(&ns, Some(&cgroup), v4, 20, DEADLINE).unwrap();
    let after = monotonic_ns();
    assert_eq!(report.outcomes.len(), 20);
    assert_reached(&report.outcomes, "four", v4);
    assert_eq!(report.replies(), BTreeMap::from([("four".to_string(), 20)]));
    assert!(report.failures().is_empty());
    assert_eq!(report.times_ns.len(), 20);
    assert!(report.times_ns.is_sorted(), "{:?}", report.times_ns);
    assert!(before <= report.times_ns[0] && report.times_ns[19] <= after);

    let report = connect_many(&ns, None, v6, 5, DEADLINE).unwrap();
    assert_reached(&report.outcomes, "six", v6);

    drop(cgroup);
    assert!(!path.exists(), "{} is left behind", path.display());
}

#[test]
fn refused_connects_are_recorded_by_errno() {
    if !kernel_tests_enabled("refused_connects_are_recorded_by_errno") {
        return;
    }
    let ns = NetNs::new().unwrap();
    let report = connect_many(&ns, None, addr("127.0.7.1:7009"), 3, DEADLINE).unwrap();
    assert_eq!(
        report.outcomes,
        vec![
            ConnectOutcome::Failed {
                errno: ECONNREFUSED
            };
            3
        ]
    );
    assert_eq!(report.failures(), BTreeMap::from([(ECONNREFUSED, 3)]));
    assert!(report.replies().is_empty());
}

#[test]
fn udp_probes_and_cycles_reach_each_backend() {
    if !kernel_tests_enabled("udp_probes_and_cycles_reach_each_backend") {
        return;
    }
    let ns = NetNs::new().unwrap();
    let (a, b) = (addr("127.0.7.1:7003"), addr("127.0.7.2:7003"));
    let _ua = Backend::udp(&ns, a, "udp-a").unwrap();
    let _ub = Backend::udp(&ns, b, "udp-b").unwrap();
    for probe in [Probe::UdpConnected, Probe::UdpUnconnected] {
        let report = probe_many(&ns, None, a, probe, 4, DEADLINE).unwrap();
        assert_reached(&report.outcomes, "udp-a", a);
    }

    let _ta = Backend::tcp(&ns, a, "tcp-a").unwrap();
    let _tb = Backend::tcp(&ns, b, "tcp-b").unwrap();
    let report = probe_cycle_on(&ns, None, &[a, b], Probe::Tcp, 6, DEADLINE, Some(0)).unwrap();
    let replies: Vec<_> = report
        .outcomes
        .iter()
        .map(|o| match o {
            ConnectOutcome::Reached { reply, .. } => reply.as_str(),
            ConnectOutcome::Failed { .. } => "failed",
        })
        .collect();
    assert_eq!(
        replies,
        ["tcp-a", "tcp-b", "tcp-a", "tcp-b", "tcp-a", "tcp-b"]
    );
    assert!(probe_cycle_on(&ns, None, &[], Probe::Tcp, 1, DEADLINE, None).is_err());
}

#[test]
fn stream_clients_measure_throughput() {
    if !kernel_tests_enabled("stream_clients_measure_throughput") {
        return;
    }
    let ns = NetNs::new().unwrap();
    let target = addr("127.0.7.1:7004");
    let _stream = Backend::stream(&ns, target).unwrap();
    let rate = stream_bytes(&ns, None, target, 1, None).unwrap();
    assert!(rate.is_some_and(|r| r > 0.0), "{rate:?}");
    let refused = stream_bytes(&ns, None, addr("127.0.7.1:7005"), 1, None).unwrap();
    assert_eq!(refused, None);
}

#[test]
fn cgroup_drop_kills_what_is_left_inside() {
    if !kernel_tests_enabled("cgroup_drop_kills_what_is_left_inside") {
        return;
    }
    let cgroup = TestCgroup::new().unwrap();
    let path = cgroup.path().to_path_buf();
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    std::fs::write(path.join("cgroup.procs"), sleeper.id().to_string()).unwrap();
    drop(cgroup);
    let status = sleeper.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert!(!path.exists(), "{} is left behind", path.display());
}

/// A stand-in agent: reports ready (after setting its trap), exits 7 on SIGTERM.
fn fake_agent() -> AgentProcess {
    let script = "trap 'exit 7' TERM; echo 'datapath ready (fake)' >&2; \
                  while :; do sleep 0.05; done";
    AgentProcess::start(
        "/bin/sh".as_ref(),
        &["-c".as_ref(), script.as_ref()],
        Duration::from_secs(10),
    )
    .unwrap()
}

/// Needs no root: the stand-in is a shell.
#[test]
fn agent_process_stops_by_signal() {
    let mut agent = fake_agent();
    assert!(agent.ready_line().contains("datapath ready"));
    // A raw signal number, as the agent's tests pass it.
    assert_eq!(
        agent
            .stop_with(nix::libc::SIGTERM, Duration::from_secs(10))
            .unwrap(),
        Some(7)
    );
    let mut agent = fake_agent();
    assert_eq!(
        agent
            .stop_with(Signal::SIGKILL, Duration::from_secs(10))
            .unwrap(),
        None
    );
    // Dropping a running agent stops it (SIGTERM) before the reader thread goes away.
    let agent = fake_agent();
    let pid = agent.pid();
    drop(agent);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}
