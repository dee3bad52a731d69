//! Kernel tests: the real connect4 program, loaded into the real kernel, attached to a cgroup
//! of the test's own, steering clients inside a private network namespace.
//!
//! They need root. Without it they skip loudly, unless VSTEER_REQUIRE_KERNEL_TESTS=1 (CI).

mod support;

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::Command,
    time::Duration,
};

use support::Fixture;
use vsteer_common::map_names;
use vsteer_datapath::{CONNECT4, PROGRAMS};
use vsteer_model::{Kind, ResourceId};
use vsteer_plan::{
    BackendPlan, Decision, LoadBalancer, Plan, Protocol, ServiceKey, ServicePlan, WEIGHT_SCALE,
};
use vsteer_testkit::{Backend, connect_many, kernel_tests_enabled, stats};

const DEADLINE: Duration = Duration::from_secs(60);

fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port)
}

/// A service spreading evenly over `backends`.
fn service(vip: SocketAddr, backends: &[SocketAddr]) -> ServicePlan {
    let n = backends.len() as u32;
    ServicePlan {
        key: ServiceKey::new(vip.ip(), vip.port(), Protocol::Tcp),
        host: "svc.test.local".into(),
        resource: ResourceId::new(Kind::ServiceEntry, "test", "svc"),
        route: None,
        load_balancer: LoadBalancer::Random,
        backends: backends
            .iter()
            .enumerate()
            .map(|(i, b)| BackendPlan {
                address: b.ip(),
                port: b.port(),
                // Largest remainder: the first backends take the leftover ppm.
                weight: WEIGHT_SCALE / n + u32::from((i as u32) < WEIGHT_SCALE % n),
                labels: vsteer_model::Labels::default(),
                subsets: Vec::new(),
            })
            .collect(),
        decision: Decision::Kernel,
        http: None,
    }
}

#[test]
fn cgroup_clients_reach_the_backend_and_others_are_not_rewritten() {
    if !kernel_tests_enabled("cgroup_clients_reach_the_backend_and_others_are_not_rewritten") {
        return;
    }
    let vip = v4(127, 100, 0, 1, 18080);
    let backend_addr = v4(127, 0, 0, 11, 18080);
    let plan: Plan = [service(vip, &[backend_addr])].into_iter().collect();
    let fx = Fixture::new(&plan);
    let _backend = Backend::tcp(&fx.ns, backend_addr, "backend").unwrap();
    // A listener on the VIP itself: whoever reaches it was not rewritten.
    let _sentinel = Backend::tcp(&fx.ns, vip, "vip-itself").unwrap();

    let inside = connect_many(&fx.ns, Some(&fx.cgroup), vip, 200, DEADLINE).unwrap();
    assert_eq!(
        inside.replies(),
        BTreeMap::from([("backend".to_string(), 200)])
    );
    assert!(inside.failures().is_empty());

    let outside = connect_many(&fx.ns, None, vip, 50, DEADLINE).unwrap();
    assert_eq!(
        outside.replies(),
        BTreeMap::from([("vip-itself".to_string(), 50)])
    );

    // A port the plan does not name passes through untouched, even from inside the cgroup.
    let other_port = v4(127, 100, 0, 1, 18081);
    let _other = Backend::tcp(&fx.ns, other_port, "other-port").unwrap();
    let unrelated = connect_many(&fx.ns, Some(&fx.cgroup), other_port, 20, DEADLINE).unwrap();
    assert_eq!(
        unrelated.replies(),
        BTreeMap::from([("other-port".to_string(), 20)])
    );
}

#[test]
fn connects_spread_evenly_over_the_backends() {
    if !kernel_tests_enabled("connects_spread_evenly_over_the_backends") {
        return;
    }
    let vip = v4(127, 100, 0, 2, 18080);
    let backends = [
        v4(127, 0, 0, 21, 18080),
        v4(127, 0, 0, 22, 18080),
        v4(127, 0, 0, 23, 18081),
    ];
    let plan: Plan = [service(vip, &backends)].into_iter().collect();
    let fx = Fixture::new(&plan);
    let _servers: Vec<_> = backends
        .iter()
        .map(|b| Backend::tcp(&fx.ns, *b, &b.to_string()).unwrap())
        .collect();

    let report = connect_many(&fx.ns, Some(&fx.cgroup), vip, 3000, DEADLINE).unwrap();
    assert!(
        report.failures().is_empty(),
        "failures: {:?}",
        report.failures()
    );
    let replies = report.replies();
    let observed: Vec<u64> = backends
        .iter()
        .map(|b| replies.get(&b.to_string()).copied().unwrap_or(0))
        .collect();
    assert_eq!(
        observed.iter().sum::<u64>(),
        3000,
        "every connect reached a backend: {replies:?}"
    );
    stats::assert_split(&observed, &[1.0, 1.0, 1.0]).unwrap();
}

#[test]
fn bpftool_shows_the_program_and_structured_maps() {
    if !kernel_tests_enabled("bpftool_shows_the_program_and_structured_maps") {
        return;
    }
    let vip = v4(127, 100, 0, 3, 9080);
    let plan: Plan = [service(vip, &[v4(127, 0, 0, 31, 9080)])]
        .into_iter()
        .collect();
    let fx = Fixture::new(&plan);

    // The kernel's own list of programs has ours under its readable name.
    let names: Vec<String> = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|p| p.name_as_str().map(str::to_string))
        .collect();
    for program in PROGRAMS {
        assert!(
            names.iter().any(|n| n == program),
            "{program} not among {names:?}"
        );
    }

    let Some(prog) = bpftool(&["prog", "show", "name", CONNECT4]) else {
        return;
    };
    assert!(
        prog.contains(CONNECT4) && prog.contains("cgroup_sock_addr"),
        "{prog}"
    );

    let pin = fx.pins.path().join("VSTEER_SERVICES");
    let dump = bpftool(&["-j", "map", "dump", "pinned", pin.to_str().unwrap()]).unwrap();
    let entries: serde_json::Value = serde_json::from_str(&dump).unwrap();
    let entry = &entries[0];
    // Field names from BTF, and the port in host order, as the README promises.
    assert_eq!(entry["formatted"]["key"]["port"], 9080, "{dump}");
    assert_eq!(entry["formatted"]["key"]["proto"], 6, "{dump}");
    let index = entry["formatted"]["value"]["entry"].as_u64().unwrap() as u32;
    // The entry the handle names: its key, and the service's table.
    let entries = fx.pins.path().join(map_names::ENTRIES);
    let key: Vec<String> = index.to_le_bytes().iter().map(|b| b.to_string()).collect();
    let mut args = vec![
        "-j",
        "map",
        "lookup",
        "pinned",
        entries.to_str().unwrap(),
        "key",
    ];
    args.extend(key.iter().map(String::as_str));
    let lookup = bpftool(&args).unwrap();
    let found: serde_json::Value = serde_json::from_str(&lookup).unwrap();
    let value = &found["formatted"]["value"];
    assert_eq!(value["key"]["port"], 9080, "{lookup}");
    assert_eq!(value["service"]["slot_count"], 1, "{lookup}");
    assert_eq!(value["service"]["mode"], 0, "{lookup}");

    // Links are pinned too: the datapath outlives the agent.
    for program in PROGRAMS {
        assert!(
            fx.pins.path().join("links").join(program).exists(),
            "{program} link pinned"
        );
    }
}

/// Runs bpftool; `None` (with a loud note) when it is not installed and CI does not demand it.
fn bpftool(args: &[&str]) -> Option<String> {
    match Command::new("bpftool").args(args).output() {
        Ok(out) => {
            assert!(
                out.status.success(),
                "bpftool {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(String::from_utf8_lossy(&out.stdout).into_owned())
        }
        Err(err) => {
            if std::env::var(vsteer_testkit::REQUIRE_ENV).is_ok_and(|v| v == "1") {
                panic!("bpftool is required in CI (cargo xtask setup installs it): {err}");
            }
            eprintln!("*** bpftool not installed: skipping the bpftool part ***");
            None
        }
    }
}
