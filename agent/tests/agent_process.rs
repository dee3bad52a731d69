//! The `vsteer` binary end to end: `vsteer plan` without root, and `vsteer run` steering a
//! client in a test cgroup (kernel test: needs root).

use std::{
    collections::BTreeMap, ffi::OsStr, net::SocketAddr, path::Path, process::Command,
    time::Duration,
};

mod support;

use support::ConfigDir;
use vsteer_testkit::{
    AgentProcess, Backend, NetNs, PinDir, TestCgroup, connect_many, kernel_tests_enabled,
};

const VSTEER: &str = env!("CARGO_BIN_EXE_vsteer");

const SERVICE: &str = "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: web
  namespace: shop
spec:
  hosts: [web.shop.svc.cluster.local]
  addresses: [127.100.9.1]
  ports:
  - number: 8080
    name: http
    protocol: HTTP
  resolution: STATIC
  endpoints:
  - address: 127.0.9.1
    labels: {version: v1}
  - address: 127.0.9.2
    labels: {version: v2}
";

#[test]
fn plan_prints_every_backend_of_the_config() {
    let config = ConfigDir::new(&[("web.yaml", SERVICE)]);
    let out = Command::new(VSTEER)
        .args([
            OsStr::new("plan"),
            OsStr::new("--config"),
            config.path().as_os_str(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("127.100.9.1:8080"), "{stdout}");
    assert!(
        stdout.contains("127.0.9.1:8080") && stdout.contains("127.0.9.2:8080"),
        "{stdout}"
    );
    assert!(stdout.contains("50.0%"), "{stdout}");
}

#[test]
fn plan_names_file_resource_and_field_of_a_bad_config() {
    let bad = SERVICE.replace("127.0.9.2", "127.0.9.300");
    let config = ConfigDir::new(&[("web.yaml", &bad)]);
    let out = Command::new(VSTEER)
        .args([
            OsStr::new("plan"),
            OsStr::new("--config"),
            config.path().as_os_str(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("web.yaml"), "{stderr}");
    assert!(stderr.contains("ServiceEntry shop/web"), "{stderr}");
    assert!(stderr.contains("spec.endpoints[1].address"), "{stderr}");
}

#[test]
fn plan_without_config_shows_the_embedded_examples() {
    let out = Command::new(VSTEER).arg("plan").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("reviews.default.svc.cluster.local"),
        "{stdout}"
    );
}

#[test]
fn run_steers_survives_its_exit_and_uninstall_removes_it() {
    if !kernel_tests_enabled("run_steers_survives_its_exit_and_uninstall_removes_it") {
        return;
    }
    let config = ConfigDir::new(&[("web.yaml", SERVICE)]);
    let ns = NetNs::new().unwrap();
    let cgroup = TestCgroup::new().unwrap();
    let pins = PinDir::new();
    let backends: Vec<_> = ["127.0.9.1:8080", "127.0.9.2:8080"]
        .iter()
        .map(|a| Backend::tcp(&ns, a.parse().unwrap(), a).unwrap())
        .collect();
    let mut agent = AgentProcess::run(
        Path::new(VSTEER),
        Some(config.path()),
        cgroup.path(),
        pins.path(),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(
        pins.path().join("VSTEER_SERVICES").exists(),
        "maps are pinned while running"
    );

    let vip: SocketAddr = "127.100.9.1:8080".parse().unwrap();
    let report = connect_many(&ns, Some(&cgroup), vip, 400, Duration::from_secs(60)).unwrap();
    let replies = report.replies();
    assert_eq!(
        replies.values().sum::<u64>(),
        400,
        "{replies:?} {:?}",
        report.failures()
    );
    assert_eq!(replies.len(), 2, "both endpoints get traffic: {replies:?}");
    assert_eq!(backends.iter().map(Backend::served).sum::<u64>(), 400);

    let status = vsteer(&["status", "--pin-dir", pins.path().to_str().unwrap()]);
    assert!(status.contains("127.100.9.1:8080/TCP"), "{status}");
    assert!(
        status.contains("127.0.9.1:8080") && status.contains("50.000%"),
        "{status}"
    );

    assert_eq!(
        agent
            .stop_with(libc::SIGTERM, Duration::from_secs(10))
            .unwrap(),
        Some(0)
    );
    // The agent is gone; its datapath is not.
    let after_exit = connect_many(&ns, Some(&cgroup), vip, 50, Duration::from_secs(30)).unwrap();
    assert_eq!(
        after_exit.replies().values().sum::<u64>(),
        50,
        "{:?}",
        after_exit.failures()
    );
    // The kernel counted every connection.
    let status = vsteer(&["status", "--pin-dir", pins.path().to_str().unwrap()]);
    let counted: u64 = status
        .lines()
        .filter(|l| l.contains("127.0.9."))
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum();
    assert_eq!(counted, 450, "{status}");

    let removed = vsteer(&["uninstall", "--pin-dir", pins.path().to_str().unwrap()]);
    assert!(removed.contains("VSTEER_SERVICES"), "{removed}");
    assert!(!pins.path().exists(), "pin directory removed");
    // Detached: the VIP is no longer rewritten (nothing listens there).
    let after = connect_many(&ns, Some(&cgroup), vip, 5, Duration::from_secs(30)).unwrap();
    assert_eq!(after.replies(), BTreeMap::new());
    assert_eq!(after.failures().values().sum::<u64>(), 5);
}

/// Runs `vsteer ARGS`, asserts success, returns stdout.
fn vsteer(args: &[&str]) -> String {
    let out = Command::new(VSTEER).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "vsteer {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A port the agent needs is taken (another process, an old agent still draining): the
/// agent says which and exits before it touches the kernel, so whatever steers the node now
/// keeps doing so. Kernel test: `run` needs root to get that far.
#[test]
fn run_with_a_taken_port_exits_before_touching_the_kernel() {
    if !kernel_tests_enabled("run_with_a_taken_port_exits_before_touching_the_kernel") {
        return;
    }
    let config = ConfigDir::new(&[("web.yaml", SERVICE)]);
    let ns = NetNs::new().unwrap();
    let cgroup = TestCgroup::new().unwrap();
    let pins = PinDir::new();
    // Taken inside the namespace the agent will run in.
    let taken = ns
        .run(|| std::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap()
        .unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let free = "127.0.0.1:0";
    for (proxy, admin, flag) in [
        (&*port, "off", "--proxy-addr"),
        (free, &*port, "--admin-addr"),
    ] {
        let mut cmd = Command::new(VSTEER);
        cmd.args(["run", "--config"])
            .arg(config.path())
            .arg("--cgroup")
            .arg(cgroup.path())
            .arg("--pin-dir")
            .arg(pins.path())
            .args(["--proxy-addr", proxy, "--admin-addr", admin]);
        vsteer_testkit::spawn::place(&mut cmd, &ns, None).unwrap();
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} {port}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(&port),
            "{flag}: the error names the flag and the address: {stderr}"
        );
        assert!(
            !pins.path().join("VSTEER_SERVICES").exists(),
            "{flag}: the agent pinned maps before failing: {stderr}"
        );
    }
    drop(taken);
}

/// "Max open files" of a process: (soft, hard), from /proc.
fn open_files_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let mut words = line["Max open files".len()..].split_whitespace();
    (
        words.next().unwrap().to_owned(),
        words.next().unwrap().to_owned(),
    )
}

#[test]
fn run_lifts_its_open_files_limit_to_the_hard_one() {
    if !kernel_tests_enabled("run_lifts_its_open_files_limit_to_the_hard_one") {
        return;
    }
    let config = ConfigDir::new(&[("web.yaml", SERVICE)]);
    let cgroup = TestCgroup::new().unwrap();
    let pins = PinDir::new();
    let (_, hard) = open_files_limits(std::process::id());
    // A soft limit below the hard one (prlimit execs the agent: the pid is the agent's).
    let nofile = format!("--nofile=256:{hard}");
    let mut agent = AgentProcess::start(
        Path::new("prlimit"),
        &[
            nofile.as_ref(),
            VSTEER.as_ref(),
            "run".as_ref(),
            "--config".as_ref(),
            config.path().as_os_str(),
            "--cgroup".as_ref(),
            cgroup.path().as_os_str(),
            "--pin-dir".as_ref(),
            pins.path().as_os_str(),
            "--proxy-addr".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--admin-addr".as_ref(),
            "off".as_ref(),
        ],
        Duration::from_secs(30),
    )
    .unwrap();
    let (soft_now, hard_now) = open_files_limits(agent.pid());
    assert_eq!(hard_now, hard);
    assert_eq!(soft_now, hard, "the soft limit stayed below the hard one");
    assert_eq!(
        agent
            .stop_with(libc::SIGTERM, Duration::from_secs(10))
            .unwrap(),
        Some(0)
    );
    let out = vsteer(&["uninstall", "--pin-dir", pins.path().to_str().unwrap()]);
    assert!(!pins.path().join("VSTEER_SERVICES").exists(), "{out}");
}
