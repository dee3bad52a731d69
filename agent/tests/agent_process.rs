//! The `vsteer` binary end to end: `vsteer plan` without root, and `vsteer run` steering a
//! client in a test cgroup (kernel test: needs root).

use std::{
    collections::BTreeMap, ffi::OsStr, net::SocketAddr, path::Path, process::Command,
    time::Duration,
};

mod support;

use support::ConfigDir;
use vsteer_common::MAP_LAYOUT;
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

/// A namespace of the test's own with a TCP backend per address (each answering with its
/// address), a cgroup and a pin directory: where an agent under test steers.
struct Stage {
    backends: Vec<Backend>,
    ns: NetNs,
    cgroup: TestCgroup,
    pins: PinDir,
}

impl Stage {
    fn with_backends(addrs: &[&str]) -> Stage {
        let ns = NetNs::new().unwrap();
        let backends = addrs
            .iter()
            .map(|a| Backend::tcp(&ns, a.parse().unwrap(), a).unwrap())
            .collect();
        Stage {
            backends,
            ns,
            cgroup: TestCgroup::new().unwrap(),
            pins: PinDir::new(),
        }
    }
}

#[test]
fn run_steers_survives_its_exit_and_uninstall_removes_it() {
    if !kernel_tests_enabled("run_steers_survives_its_exit_and_uninstall_removes_it") {
        return;
    }
    let config = ConfigDir::new(&[("web.yaml", SERVICE)]);
    let stage = Stage::with_backends(&["127.0.9.1:8080", "127.0.9.2:8080"]);
    let (ns, cgroup, pins) = (&stage.ns, &stage.cgroup, &stage.pins);
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
    let report = connect_many(ns, Some(cgroup), vip, 400, Duration::from_secs(60)).unwrap();
    let replies = report.replies();
    assert_eq!(
        replies.values().sum::<u64>(),
        400,
        "{replies:?} {:?}",
        report.failures()
    );
    assert_eq!(replies.len(), 2, "both endpoints get traffic: {replies:?}");
    assert_eq!(stage.backends.iter().map(Backend::served).sum::<u64>(), 400);

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
    let after_exit = connect_many(ns, Some(cgroup), vip, 50, Duration::from_secs(30)).unwrap();
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
    let after = connect_many(ns, Some(cgroup), vip, 5, Duration::from_secs(30)).unwrap();
    assert_eq!(after.replies(), BTreeMap::new());
    assert_eq!(after.failures().values().sum::<u64>(), 5);
}

/// Exactly one agent owns a pin directory. A second one on the same pins (an operator's
/// mistake, or the new pod of a rolling upgrade) waits without changing a map, so traffic
/// keeps following the first one's config, and `vsteer uninstall` refuses while an agent
/// owns the pins; when the first exits, the second takes over and its config applies.
#[test]
fn a_second_agent_on_the_same_pins_waits_and_takes_over_when_the_first_exits() {
    if !kernel_tests_enabled(
        "a_second_agent_on_the_same_pins_waits_and_takes_over_when_the_first_exits",
    ) {
        return;
    }
    let first_config = ConfigDir::new(&[("web.yaml", SERVICE)]);
    let moved = SERVICE
        .replace("127.0.9.1", "127.0.9.3")
        .replace("127.0.9.2", "127.0.9.4");
    let second_config = ConfigDir::new(&[("web.yaml", &moved)]);
    let stage = Stage::with_backends(&[
        "127.0.9.1:8080",
        "127.0.9.2:8080",
        "127.0.9.3:8080",
        "127.0.9.4:8080",
    ]);
    let (ns, cgroup, pins) = (&stage.ns, &stage.cgroup, &stage.pins);
    let vip: SocketAddr = "127.100.9.1:8080".parse().unwrap();
    let served_by = |count: u32| {
        let report = connect_many(ns, Some(cgroup), vip, count, Duration::from_secs(60)).unwrap();
        assert!(report.failures().is_empty(), "{:?}", report.failures());
        report.replies().into_keys().collect::<Vec<String>>()
    };
    let status = || {
        let pins = pins.path().to_str().unwrap();
        vsteer(&["status", "--pin-dir", pins, "--admin-addr", "off"])
    };
    let timeout = Duration::from_secs(30);
    let mut first = AgentProcess::run(
        Path::new(VSTEER),
        Some(first_config.path()),
        cgroup.path(),
        pins.path(),
        timeout,
    )
    .unwrap();
    let before = status();

    let mut second = AgentProcess::run_until(
        Path::new(VSTEER),
        Some(second_config.path()),
        cgroup.path(),
        pins.path(),
        "WAITING for it to exit",
        timeout,
    )
    .unwrap();
    assert!(
        second
            .ready_line()
            .contains(&format!("owned by the agent with pid {}", first.pid())),
        "{}",
        second.ready_line()
    );
    // Long enough for many attempts at the lock; the maps are the first agent's still.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(status(), before);
    assert_eq!(served_by(200), ["127.0.9.1:8080", "127.0.9.2:8080"]);
    let out = Command::new(VSTEER)
        .args(["uninstall", "--pin-dir", pins.path().to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "uninstall removed a running agent's pins"
    );
    assert!(stderr.contains(&format!("pid {}", first.pid())), "{stderr}");
    assert!(pins.path().join("VSTEER_SERVICES").exists());

    // The rolling upgrade's end: the old agent exits, the new one takes over.
    assert_eq!(first.stop_with(libc::SIGTERM, timeout).unwrap(), Some(0));
    second
        .wait_for("took over the pin directory", timeout)
        .unwrap();
    second.wait_for(vsteer_testkit::READY, timeout).unwrap();
    assert_eq!(served_by(200), ["127.0.9.3:8080", "127.0.9.4:8080"]);
    assert!(status().contains("127.0.9.3:8080"), "{}", status());
    assert_eq!(second.stop_with(libc::SIGTERM, timeout).unwrap(), Some(0));
}

/// An agent whose pins are removed under it (`vsteer uninstall --force`, or by hand) says so
/// and puts the datapath back: within its housekeeping tick the VIP steers again, and the
/// pins are there for `vsteer status`.
#[test]
fn an_agent_whose_pins_vanish_says_so_and_re_creates_them() {
    if !kernel_tests_enabled("an_agent_whose_pins_vanish_says_so_and_re_creates_them") {
        return;
    }
    let config = ConfigDir::new(&[("web.yaml", SERVICE)]);
    let stage = Stage::with_backends(&["127.0.9.1:8080", "127.0.9.2:8080"]);
    let timeout = Duration::from_secs(30);
    let mut agent = AgentProcess::run(
        Path::new(VSTEER),
        Some(config.path()),
        stage.cgroup.path(),
        stage.pins.path(),
        timeout,
    )
    .unwrap();
    let vip: SocketAddr = "127.100.9.1:8080".parse().unwrap();
    let steered = || {
        let report = connect_many(&stage.ns, Some(&stage.cgroup), vip, 20, timeout).unwrap();
        report.replies().values().sum::<u64>()
    };
    assert_eq!(steered(), 20);
    agent.drain();
    let pins = stage.pins.path().to_str().unwrap();
    let removed = vsteer(&["uninstall", "--force", "--pin-dir", pins]);
    assert!(removed.contains("VSTEER_SERVICES"), "{removed}");
    let said = agent
        .wait_for("was removed while this agent ran", timeout)
        .unwrap();
    assert!(said.contains(pins), "{said}");
    agent.wait_for("datapath re-created", timeout).unwrap();
    assert_eq!(steered(), 20);
    let status = vsteer(&["status", "--pin-dir", pins]);
    assert!(status.contains("127.100.9.1:8080/TCP"), "{status}");

    // By hand: the links and the service map go, the directory (and the agent's lock on
    // it) stays; the agent re-creates them in place.
    agent.drain();
    for link in std::fs::read_dir(stage.pins.path().join("links")).unwrap() {
        std::fs::remove_file(link.unwrap().path()).unwrap();
    }
    std::fs::remove_file(stage.pins.path().join("VSTEER_SERVICES")).unwrap();
    agent.wait_for("datapath re-created", timeout).unwrap();
    assert_eq!(steered(), 20);
    assert_eq!(agent.stop_with(libc::SIGTERM, timeout).unwrap(), Some(0));
}

/// `vsteer status` shows the proxy's counters, read from the running agent's `/metrics`, after
/// what the kernel maps hold; without an agent there it says so.
#[test]
fn status_shows_the_proxys_counters_from_the_agent() {
    if !kernel_tests_enabled("status_shows_the_proxys_counters_from_the_agent") {
        return;
    }
    let config = ConfigDir::new(&[("web.yaml", SERVICE)]);
    let stage = Stage::with_backends(&["127.0.9.1:8080"]);
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin_addr = admin.local_addr().unwrap().to_string();
    drop(admin);
    let state = vsteer_testkit::pins::state_dir_for(stage.pins.path());
    let args: Vec<&OsStr> = vec![
        "run".as_ref(),
        "--config".as_ref(),
        config.path().as_os_str(),
        "--cgroup".as_ref(),
        stage.cgroup.path().as_os_str(),
        "--pin-dir".as_ref(),
        stage.pins.path().as_os_str(),
        "--state-dir".as_ref(),
        state.as_os_str(),
        "--proxy-addr".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--admin-addr".as_ref(),
        admin_addr.as_ref(),
    ];
    let _agent = AgentProcess::start(Path::new(VSTEER), &args, Duration::from_secs(30)).unwrap();
    let pins = stage.pins.path().to_str().unwrap();
    let status = vsteer(&["status", "--pin-dir", pins, "--admin-addr", &admin_addr]);
    assert!(status.contains("127.100.9.1:8080/TCP"), "{status}");
    assert!(
        status.contains(&format!("proxy counters ({admin_addr}/metrics):"))
            && status.contains("vsteer_proxy_accepted_connections_total"),
        "{status}"
    );
    let nobody = vsteer(&["status", "--pin-dir", pins, "--admin-addr", "127.0.0.1:1"]);
    assert!(
        nobody.contains("proxy counters: no agent admin endpoint at 127.0.0.1:1"),
        "{nobody}"
    );
}

/// `vsteer run` on `config`, steering `cgroup`, pinned in `pins`, ready within `timeout`.
fn run_agent(
    config: &ConfigDir,
    cgroup: &TestCgroup,
    pins: &PinDir,
    timeout: Duration,
) -> anyhow::Result<AgentProcess> {
    AgentProcess::run(
        Path::new(VSTEER),
        Some(config.path()),
        cgroup.path(),
        pins.path(),
        timeout,
    )
}

/// Pins of another map layout (an agent of another version left them) are never adopted:
/// the agent refuses, naming `vsteer uninstall`, and leaves them as they are, still
/// steering; uninstall removes them, marker included.
#[test]
fn pins_of_another_layout_are_refused_and_left_steering() {
    if !kernel_tests_enabled("pins_of_another_layout_are_refused_and_left_steering") {
        return;
    }
    let config = ConfigDir::new(&[("web.yaml", SERVICE)]);
    let stage = Stage::with_backends(&["127.0.9.1:8080", "127.0.9.2:8080"]);
    let (ns, cgroup, pins) = (&stage.ns, &stage.cgroup, &stage.pins);
    let timeout = Duration::from_secs(30);
    let run = || run_agent(&config, cgroup, pins, timeout);
    let mut agent = run().unwrap();
    let ours = format!("layout-v{MAP_LAYOUT}");
    let newer = format!("layout-v{}", MAP_LAYOUT + 1);
    assert!(
        pins.path().join(&ours).is_dir(),
        "the pins carry their layout"
    );
    assert_eq!(agent.stop_with(libc::SIGTERM, timeout).unwrap(), Some(0));
    // As if a newer vsteer had pinned them.
    std::fs::rename(pins.path().join(&ours), pins.path().join(&newer)).unwrap();
    let kernel_maps = || {
        let pins = pins.path().to_str().unwrap();
        vsteer(&["status", "--pin-dir", pins, "--admin-addr", "off"])
    };
    let before = kernel_maps();

    let mut args: Vec<&OsStr> = vec![
        "run".as_ref(),
        "--config".as_ref(),
        config.path().as_os_str(),
    ];
    let state = vsteer_testkit::pins::state_dir_for(pins.path());
    args.extend([
        "--cgroup".as_ref(),
        cgroup.path().as_os_str(),
        "--pin-dir".as_ref(),
        pins.path().as_os_str(),
        "--state-dir".as_ref(),
        state.as_os_str(),
        "--no-proxy".as_ref(),
    ]);
    let out = Command::new(VSTEER).args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "an agent adopted pins of another layout: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "have layout {}, and this vsteer uses layout {MAP_LAYOUT}",
            MAP_LAYOUT + 1
        )) && stderr.contains(&format!(
            "vsteer uninstall --pin-dir {}",
            pins.path().display()
        )),
        "{stderr}"
    );
    assert_eq!(kernel_maps(), before);
    let vip: SocketAddr = "127.100.9.1:8080".parse().unwrap();
    let report = connect_many(ns, Some(cgroup), vip, 50, timeout).unwrap();
    assert_eq!(
        report.replies().values().sum::<u64>(),
        50,
        "{:?}",
        report.failures()
    );

    let removed = vsteer(&["uninstall", "--pin-dir", pins.path().to_str().unwrap()]);
    assert!(removed.contains(&newer), "{removed}");
    assert!(!pins.path().exists(), "pin directory removed");
}

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
            .arg("--state-dir")
            .arg(pins.state_dir())
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

/// `vsteer run ARGS` that must fail: its exit status and stderr.
fn run_failing(args: &[&OsStr]) -> String {
    let out = Command::new(VSTEER).arg("run").args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?}: {stderr}");
    stderr
}

/// Wrong paths are named, and fail before anything is pinned. Needs no root: the paths are
/// checked first.
#[test]
fn run_with_a_wrong_path_names_it_and_pins_nothing() {
    let config = ConfigDir::new(&[("web.yaml", SERVICE)]);
    let pins = PinDir::new();
    let pin = ["--pin-dir".as_ref(), pins.path().as_os_str()];
    let missing = config.path().join("nonexistent");
    let stderr = run_failing(&[&["--config".as_ref(), missing.as_os_str()], &pin[..]].concat());
    assert!(
        stderr.contains(&format!("--config {}", missing.display()))
            && stderr.contains("No such file"),
        "{stderr}"
    );
    assert!(!stderr.contains("No path was found"), "{stderr}");
    let file = config.path().join("web.yaml");
    let stderr = run_failing(&[&["--config".as_ref(), file.as_os_str()], &pin[..]].concat());
    assert!(stderr.contains("not a directory"), "{stderr}");

    let good = ["--config".as_ref(), config.path().as_os_str()];
    let no_cgroup = config.path().join("no-such-cgroup");
    let stderr = run_failing(
        &[
            &good[..],
            &pin[..],
            &["--cgroup".as_ref(), no_cgroup.as_os_str()],
        ]
        .concat(),
    );
    assert!(
        stderr.contains(&format!("--cgroup {}", no_cgroup.display()))
            && stderr.contains("no such cgroup"),
        "{stderr}"
    );
    let stderr =
        run_failing(&[&good[..], &pin[..], &["--cgroup".as_ref(), "/tmp".as_ref()]].concat());
    assert!(
        stderr.contains("--cgroup /tmp: not a cgroup v2 directory"),
        "{stderr}"
    );
    assert!(!stderr.contains("Bad file descriptor"), "{stderr}");
    assert!(!pins.path().exists(), "pins were created");
    assert!(!pins.state_dir().exists(), "a snapshot was created");
}

/// A pin directory that is not on a bpffs is refused with a message naming it; nothing is
/// mounted over its parent (which would hide what that directory holds) nor under it.
/// Kernel test: as root the agent gets as far as the pin directory.
#[test]
fn run_refuses_a_pin_dir_off_bpffs_and_mounts_nothing() {
    if !kernel_tests_enabled("run_refuses_a_pin_dir_off_bpffs_and_mounts_nothing") {
        return;
    }
    let config = ConfigDir::new(&[("web.yaml", SERVICE)]);
    let cgroup = TestCgroup::new().unwrap();
    // A directory that holds something, as /var/run does.
    let parent = tempfile::tempdir().unwrap();
    std::fs::write(parent.path().join("kept"), "x").unwrap();
    let pin_dir = parent.path().join("pins");
    let state = tempfile::tempdir().unwrap();
    let stderr = run_failing(&[
        "--config".as_ref(),
        config.path().as_os_str(),
        "--cgroup".as_ref(),
        cgroup.path().as_os_str(),
        "--pin-dir".as_ref(),
        pin_dir.as_os_str(),
        "--state-dir".as_ref(),
        state.path().as_os_str(),
        "--no-proxy".as_ref(),
    ]);
    assert!(
        stderr.contains(&format!(
            "--pin-dir {}: not on a BPF filesystem",
            pin_dir.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("mount -t bpf bpf DIR"), "{stderr}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let parent_name = parent.path().display().to_string();
    assert!(
        !mounts.contains(&parent_name),
        "something was mounted at or under {parent_name}: {mounts}"
    );
    assert!(parent.path().join("kept").exists());
    assert!(!pin_dir.exists(), "the pin directory was created");
}

/// Without root the agent says what it needs. As root, the test drops to nobody with
/// setpriv (no capabilities left).
#[test]
fn run_without_privileges_names_root_and_the_capabilities() {
    let root = unsafe { libc::geteuid() } == 0;
    let pins = PinDir::new();
    // Never the node's root cgroup, even if the check failed to stop it: a test cgroup when
    // root can make one, else a path that is no cgroup at all.
    let cgroup = if root {
        Some(TestCgroup::new().unwrap())
    } else {
        None
    };
    let cgroup_path = cgroup.as_ref().map_or_else(
        || Path::new("/nonexistent").to_path_buf(),
        |c| c.path().to_path_buf(),
    );
    let mut cmd = if root {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--",
        ])
        .arg(VSTEER);
        cmd
    } else {
        Command::new(VSTEER)
    };
    cmd.args(["run", "--no-proxy", "--admin-addr", "off", "--pin-dir"])
        .arg(pins.path())
        .arg("--cgroup")
        .arg(&cgroup_path);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    if cgroup.is_none() {
        // Without root no test cgroup could be made: the path check spoke first.
        assert!(stderr.contains("no such cgroup"), "{stderr}");
        return;
    }
    for needed in ["root", "CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"] {
        assert!(stderr.contains(needed), "names {needed}: {stderr}");
    }
    assert!(!stderr.contains("Operation not permitted"), "{stderr}");
    assert!(!pins.path().exists(), "pins were created");
}

/// SIGTERM while a large config is being parsed at start: the agent exits at once, before
/// the kernel is touched, instead of finishing the parse. Kernel test: `run` needs root to
/// get that far.
#[test]
fn sigterm_during_a_long_parse_exits_without_waiting_for_it() {
    if !kernel_tests_enabled("sigterm_during_a_long_parse_exits_without_waiting_for_it") {
        return;
    }
    // About 30 MB of ServiceEntries: seconds of parsing in any build.
    let mut big = String::new();
    for n in 0..40_000u32 {
        big.push_str(&format!(
            "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: s{n}, namespace: big}}\nspec:\n  hosts: [s{n}.big.svc.cluster.local]\n  addresses: [10.{}.{}.{}]\n  ports: [{{number: 80, name: http, protocol: HTTP}}, {{number: 443, name: tls, protocol: TLS}}]\n  resolution: STATIC\n  endpoints:\n{}",
            n >> 16,
            (n >> 8) & 255,
            n & 255,
            (1..=8)
                .map(|e| format!("  - {{address: 10.200.{}.{e}, labels: {{app: s{n}, version: v{e}, zone: a, tier: web}}}}\n", n & 255))
                .collect::<String>()
        ));
    }
    let config = ConfigDir::new(&[("big.yaml", &big)]);
    let cgroup = TestCgroup::new().unwrap();
    let pins = PinDir::new();
    let ns = NetNs::new().unwrap();
    let mut cmd = Command::new(VSTEER);
    cmd.args(["run", "--no-proxy", "--admin-addr", "off", "--config"])
        .arg(config.path())
        .arg("--cgroup")
        .arg(cgroup.path())
        .arg("--pin-dir")
        .arg(pins.path())
        .arg("--state-dir")
        .arg(pins.state_dir())
        .stderr(std::process::Stdio::piped());
    let mut agent = vsteer_testkit::spawn::Spawned::start(cmd, &ns, None).unwrap();
    // Past the listeners and the settle wait for the fresh file: into the parse.
    std::thread::sleep(Duration::from_millis(400));
    let signalled = std::time::Instant::now();
    let code = agent.stop(Duration::from_secs(30)).unwrap();
    let took = signalled.elapsed();
    let mut stderr = String::new();
    if let Some(mut err) = agent.child().stderr.take() {
        use std::io::Read;
        let _ = err.read_to_string(&mut stderr);
    }
    assert!(
        !pins.path().join("VSTEER_SERVICES").exists(),
        "the parse was over before SIGTERM (make the config bigger): {stderr}"
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("stopped while reading the config"),
        "{stderr}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "exit took {took:?} after SIGTERM: {stderr}"
    );
}

/// A file the reader may not read is skipped and named; the other files are planned. As root
/// (which reads everything) the test runs `vsteer plan` as nobody with setpriv.
#[test]
fn a_file_without_read_permission_is_skipped_and_named() {
    use std::os::unix::fs::PermissionsExt;
    let root = unsafe { libc::geteuid() } == 0;
    let dir = tempfile::Builder::new()
        .prefix("vsteer-perm")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.path().join("web.yaml"), SERVICE).unwrap();
    std::fs::set_permissions(
        dir.path().join("web.yaml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let secret = dir.path().join("secret.yaml");
    std::fs::write(&secret, SERVICE.replace("web", "other")).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    let mut cmd = if root {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--",
        ])
        .arg(VSTEER);
        cmd
    } else {
        Command::new(VSTEER)
    };
    let out = cmd
        .args(["plan", "--config"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("127.100.9.1:8080"), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("{}: cannot be read", secret.display()))
            && stderr.contains("Permission denied"),
        "{stderr}"
    );
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
    let state_dir = pins.state_dir();
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
            "--state-dir".as_ref(),
            state_dir.as_os_str(),
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
