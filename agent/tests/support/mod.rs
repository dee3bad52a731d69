//! What the kernel and agent tests share: plans from YAML, a config directory, a namespace,
//! cgroup and pinned datapath of the test's own.
#![allow(dead_code)]

pub mod l7_stage;

use std::{collections::BTreeMap, net::SocketAddr, path::Path};

use vsteer_compiler as compiler;
use vsteer_datapath::{Datapath, DatapathOptions, ProxyRedirect};
use vsteer_model::parse::parse_str;
use vsteer_plan::Plan;
use vsteer_testkit::{Backend, ConnectReport, NetNs, PinDir, TestCgroup, unique_name};

/// One Istio resource as a YAML document (`---` first, so documents concatenate); `spec`
/// is the spec's lines, indented by two.
pub fn resource(kind: &str, name: &str, spec: &str) -> String {
    format!(
        "---
apiVersion: networking.istio.io/v1
kind: {kind}
metadata: {{name: {name}}}
spec:
{spec}"
    )
}

/// Compiles YAML text; panics on any config error (the tests' configs are meant to be good).
pub fn plan_from_yaml(yaml: &str) -> Plan {
    let loaded = parse_str("test.yaml", yaml);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let compiled = compiler::compile(&loaded.resources, &Plan::default());
    assert!(compiled.errors.is_empty(), "{:?}", compiled.errors);
    compiled.plan
}

/// A namespace, a cgroup, a pin directory and the datapath attached to that cgroup.
pub struct Fixture {
    // Field order is drop order: the datapath handles go first, then the pins (which detaches
    // the programs), then the cgroup and the namespace.
    pub datapath: Datapath,
    pub pins: PinDir,
    pub cgroup: TestCgroup,
    pub ns: NetNs,
}

impl Fixture {
    pub fn new(plan: &Plan) -> Fixture {
        let ns = NetNs::new().expect("network namespace");
        let cgroup = TestCgroup::new().expect("cgroup");
        let pins = PinDir::new();
        let mut datapath = Datapath::start(&DatapathOptions {
            cgroup: Some(cgroup.path().to_path_buf()),
            pin_dir: pins.path().to_path_buf(),
            proxy: None,
        })
        .expect("load and attach the datapath");
        datapath.apply(plan).expect("apply the plan");
        Fixture {
            datapath,
            pins,
            cgroup,
            ns,
        }
    }

    /// Like [`Fixture::new`] with the datapath started inside the fixture's namespace (the
    /// agent's: where a loopback proxy address reaches the proxy) and redirecting proxied
    /// services to `proxy`.
    pub fn with_proxy(plan: &Plan, proxy: Option<ProxyRedirect>) -> Fixture {
        let ns = NetNs::new().expect("network namespace");
        let cgroup = TestCgroup::new().expect("cgroup");
        let pins = PinDir::new();
        let options = DatapathOptions {
            cgroup: Some(cgroup.path().to_path_buf()),
            pin_dir: pins.path().to_path_buf(),
            proxy,
        };
        let mut datapath = ns
            .run(move || Datapath::start(&options))
            .expect("thread in the namespace")
            .expect("load and attach the datapath");
        datapath.apply(plan).expect("apply the plan");
        Fixture {
            datapath,
            pins,
            cgroup,
            ns,
        }
    }

    /// Stops the datapath (its pins stay), runs `between` on the pin directory, and starts a
    /// new one on the same pins, cgroup and namespace: an agent's restart.
    pub fn restart(self, between: impl FnOnce(&std::path::Path)) -> Fixture {
        let Fixture {
            datapath,
            pins,
            cgroup,
            ns,
        } = self;
        drop(datapath);
        between(pins.path());
        let datapath = Datapath::start(&DatapathOptions {
            cgroup: Some(cgroup.path().to_path_buf()),
            pin_dir: pins.path().to_path_buf(),
            proxy: None,
        })
        .expect("restart on the same pins");
        Fixture {
            datapath,
            pins,
            cgroup,
            ns,
        }
    }

    /// A TCP backend per address, answering with its address.
    pub fn tcp_backends(&self, addrs: &[&str]) -> Vec<Backend> {
        addrs
            .iter()
            .map(|a| Backend::tcp(&self.ns, a.parse().expect("address"), a).expect("backend"))
            .collect()
    }
}

/// How many calls reached each of `names`, in that order (0 for none).
pub fn counts(report: &ConnectReport, names: &[&str]) -> Vec<u64> {
    let replies = report.replies();
    names
        .iter()
        .map(|n| replies.get(*n).copied().unwrap_or(0))
        .collect()
}

/// Every reply must be one of `names`, and no call may fail.
pub fn assert_only(report: &ConnectReport, names: &[&str]) {
    assert!(
        report.failures().is_empty(),
        "failures: {:?}",
        report.failures()
    );
    let replies: BTreeMap<String, u64> = report.replies();
    for name in replies.keys() {
        assert!(
            names.contains(&name.as_str()),
            "{name} reached; only {names:?} should be: {replies:?}"
        );
    }
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

/// A config directory of the test's own, removed on drop.
pub struct ConfigDir(tempfile::TempDir);

impl ConfigDir {
    pub fn new(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&unique_name("config"))
            .tempdir()
            .expect("config dir");
        let config = Self(dir);
        for (name, text) in files {
            config.write(name, text);
        }
        config
    }

    /// Writes a file atomically (temp file and rename), as a careful operator or a
    /// ConfigMap update does.
    pub fn write(&self, name: &str, text: &str) {
        let tmp = self.0.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, self.0.path().join(name)).expect("rename config");
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// A "node" namespace and a "pod" namespace joined by a veth pair (node 198.18.0.1/30, pod
/// 198.18.0.2/30), a multi-threaded runtime for HTTP clients, and HTTP backends
/// (`(name, address)`) in the node's namespace: the L7 path's stage, as a pod on a node
/// reaches the node's proxy.
pub struct L7Node {
    // Field order is drop order: backends before their runtime, the link before the
    // namespaces.
    pub backends: Vec<vsteer_testkit::http::Backend>,
    pub runtime: tokio::runtime::Runtime,
    pub veth: vsteer_testkit::Veth,
    pub pod: NetNs,
    pub node: NetNs,
}

/// The node's address on the veth pair.
pub const L7_NODE_ADDR: &str = "198.18.0.1";

impl L7Node {
    pub fn new(backends: &[(&str, &str)]) -> L7Node {
        let node = NetNs::new().expect("node namespace");
        let pod = NetNs::new().expect("pod namespace");
        let veth =
            vsteer_testkit::Veth::pair(&node, &format!("{L7_NODE_ADDR}/30"), &pod, "198.18.0.2/30")
                .expect("veth pair");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("test runtime");
        let backends = {
            let _in_runtime = runtime.enter();
            backends
                .iter()
                .map(|(name, a)| {
                    vsteer_testkit::http::Backend::start_in(&node, name, addr(a)).expect("backend")
                })
                .collect()
        };
        L7Node {
            backends,
            runtime,
            veth,
            pod,
            node,
        }
    }
}

/// The seed's rule, request by request over one HTTP/1.1 connection: even requests carry
/// `end-user: jason` (Istio sends them to reviews-v2), odd ones carry nothing (the default
/// route, reviews-v3). Asserts every reply is 200 from the expected version and returns
/// the backends in order.
pub async fn assert_seed_rule_alternates(
    h1: &mut vsteer_testkit::http::H1,
    requests: usize,
    deadline: std::time::Duration,
) -> Vec<String> {
    let mut seen = Vec::with_capacity(requests);
    for i in 0..requests {
        let jason = i % 2 == 0;
        let headers: &[(&str, &str)] = if jason { &[("end-user", "jason")] } else { &[] };
        let reply = tokio::time::timeout(deadline, h1.get("reviews:9080", "/reviews/0", headers))
            .await
            .expect("a reply in time");
        assert_eq!(reply.status, 200, "request {i}: {reply:?}");
        seen.push(reply.backend().to_string());
        let expected = if jason { "reviews-v2" } else { "reviews-v3" };
        assert_eq!(seen[i], expected, "request {i} of one connection: {seen:?}");
    }
    seen
}
