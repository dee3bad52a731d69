//! The harness's own guarantees, checked in the real kernel (needs root).
use std::{
    collections::BTreeMap, net::SocketAddr, os::fd::AsRawFd, process::Command, time::Duration,
};

use vsteer_testkit::{Backend, NetNs, TestCgroup, connect_many, kernel_tests_enabled};

const DEADLINE: Duration = Duration::from_secs(30);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The bench starts iptables and haproxy from a thread inside the namespace: they must land
/// there, never in the machine's own namespace.
#[test]
fn processes_started_inside_live_in_the_namespace() {
    if !kernel_tests_enabled("processes_started_inside_live_in_the_namespace") {
        return;
    }
    let ns = NetNs::new().unwrap();
    let links = ns
        .run(|| Command::new("ip").args(["-o", "link", "show"]).output())
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&links.stdout);
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(str::trim)
        .collect();
    assert_eq!(names, ["lo"], "{text}");
    let own = std::fs::read_link("/proc/self/ns/net").unwrap();
    let child = ns
        .run(|| Command::new("readlink").arg("/proc/self/ns/net").output())
        .unwrap()
        .unwrap();
    assert_ne!(
        String::from_utf8_lossy(&child.stdout).trim(),
        own.to_string_lossy()
    );
}

/// Names of the calling thread's network interfaces.
fn links() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .collect()
}

/// A pod-like namespace joined to a node-like one: traffic flows between the two 198.18
/// addresses, and the machine's own namespace never sees either end.
#[test]
fn a_veth_pair_joins_two_namespaces_and_only_them() {
    if !kernel_tests_enabled("a_veth_pair_joins_two_namespaces_and_only_them") {
        return;
    }
    let before = links();
    let node = NetNs::new().unwrap();
    let pod = NetNs::new().unwrap();
    let veth = vsteer_testkit::Veth::pair(&node, "198.18.0.1/30", &pod, "198.18.0.2/30").unwrap();
    assert_eq!(links(), before, "the host namespace gained an interface");
    assert_eq!(node.run(links).unwrap().len(), 2);
    assert_eq!(pod.run(links).unwrap().len(), 2);
    let _server = Backend::tcp(&node, addr("198.18.0.1:7000"), "node").unwrap();
    let report = connect_many(&pod, None, addr("198.18.0.1:7000"), 5, DEADLINE).unwrap();
    assert_eq!(report.replies(), BTreeMap::from([("node".to_string(), 5)]));
    assert!(vsteer_testkit::Veth::pair(&node, "10.0.0.1/30", &pod, "10.0.0.2/30").is_err());
    drop(veth);
    assert_eq!(node.run(links).unwrap(), ["lo"]);
    assert_eq!(pod.run(links).unwrap(), ["lo"]);
}

/// Sockets and processes placed in a namespace and a cgroup are there.
#[test]
fn placed_sockets_and_processes_live_in_the_namespace_and_cgroup() {
    if !kernel_tests_enabled("placed_sockets_and_processes_live_in_the_namespace_and_cgroup") {
        return;
    }
    let ns = NetNs::new().unwrap();
    let cgroup = TestCgroup::new().unwrap();
    // Sockets made inside live in the namespace: a connect from one reaches a listener
    // there (the same address in the machine's namespace has no listener).
    let fds = vsteer_testkit::tcp_sockets_in(&ns, &cgroup, nix::libc::AF_INET, 40).unwrap();
    assert_eq!(fds.len(), 40);
    let _server = Backend::tcp(&ns, addr("127.0.0.1:7001"), "inside").unwrap();
    let stream = std::net::TcpStream::from(fds.into_iter().next().unwrap());
    let target = nix::sys::socket::SockaddrIn::from(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::LOCALHOST,
        7001,
    ));
    nix::sys::socket::connect(stream.as_raw_fd(), &target).unwrap();
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut &stream, &mut reply).unwrap();
    assert_eq!(reply, "inside\n");
    let mut sleeper = Command::new("sleep");
    sleeper.arg("30");
    let mut child = vsteer_testkit::Spawned::start(sleeper, &ns, Some(&cgroup)).unwrap();
    let pid = child.pid();
    let groups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let name = cgroup
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert!(groups.contains(&name), "{groups}");
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let inside = ns
        .run(|| std::fs::read_link("/proc/thread-self/ns/net").unwrap())
        .unwrap();
    assert_eq!(theirs, inside);
    child.stop(Duration::from_secs(5)).unwrap();
}
