//! The harness's own guarantees, checked in the real kernel (needs root).
use std::process::Command;

use vsteer_testkit::{NetNs, kernel_tests_enabled};

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
