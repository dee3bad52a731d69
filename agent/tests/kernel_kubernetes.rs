//! Kubernetes mode against the test API server: the real agent binary, with a kubeconfig
//! pointing at it, steers a bookinfo-shaped cluster (Services with EndpointSlices, pods
//! labelled by version, a VirtualService and a DestinationRule for reviews); objects
//! created, changed and deleted on the server show up in real connects; a cut watch and a
//! 410 Gone converge to the server's state while connects to an unchanged service never
//! fail; a malformed object is named and skipped.
//!
//! Kernel tests: they need root. Without it they skip loudly, unless
//! VSTEER_REQUIRE_KERNEL_TESTS=1 (CI).
mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::{addr, assert_only, assert_seed_rule_alternates, counts};
use vsteer_testkit::agent::RunPlacement;
use vsteer_testkit::kube_api::{IstioApi, KubeApi};
use vsteer_testkit::{
    AgentProcess, Backend, NetNs, PinDir, TestCgroup, connect_many, kernel_tests_enabled,
};

const VSTEER: &str = env!("CARGO_BIN_EXE_vsteer");
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const APPLIED: Duration = Duration::from_secs(10);
const DEADLINE: Duration = Duration::from_secs(60);

/// ClusterIPs: in the loopback range of the test's own namespace.
const REVIEWS_VIP: &str = "127.100.0.1:9080";
const RATINGS_VIP: &str = "127.100.0.2:9080";
const DETAILS_VIP: &str = "127.100.0.3:9080";
const PRODUCTPAGE_VIP: &str = "127.100.0.4:9080";

fn service(name: &str, vip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "bookinfo", "labels": {"app": name}},
        "spec": {"type": "ClusterIP", "clusterIP": vip, "clusterIPs": [vip],
                 "selector": {"app": name},
                 "ports": [{"name": "http", "port": 9080, "protocol": "TCP", "targetPort": 9080}]}
    })
}

/// The slice of `service`: each `(ip, pod)` ready.
fn slice(service: &str, endpoints: &[(&str, &str)]) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(ip, pod)| {
            json!({"addresses": [ip], "conditions": {"ready": true, "serving": true, "terminating": false},
                   "nodeName": "node-1",
                   "targetRef": {"kind": "Pod", "name": pod, "namespace": "bookinfo"}})
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-x1"), "namespace": "bookinfo",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 9080, "protocol": "TCP"}],
        "endpoints": endpoints
    })
}

fn pod(name: &str, app: &str, version: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "bookinfo",
                     "labels": {"app": app, "version": version}},
        "spec": {"nodeName": "node-1", "containers": [{"name": app, "image": "bookinfo"}]}
    })
}

fn reviews_rule() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": "bookinfo"},
        "spec": {"host": "reviews", "subsets": [
            {"name": "v1", "labels": {"version": "v1"}},
            {"name": "v2", "labels": {"version": "v2"}},
            {"name": "v3", "labels": {"version": "v3"}}]}
    })
}

fn reviews_to(subset: &str) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "bookinfo"},
        "spec": {"hosts": ["reviews"], "http": [{"route": [
            {"destination": {"host": "reviews", "subset": subset}}]}]}
    })
}

/// The bookinfo services, their pods (reviews v1/v2/v3) and reviews' rules, all to `v2`.
fn bookinfo(api: &KubeApi) {
    registry(api);
    for object in [reviews_rule(), reviews_to("v2")] {
        api.apply(object).expect("apply");
    }
}

/// [`bookinfo`]'s Services, slices and pods, without the Istio rules.
fn registry(api: &KubeApi) {
    let objects = [
        service("reviews", "127.100.0.1"),
        service("ratings", "127.100.0.2"),
        service("productpage", "127.100.0.4"),
        slice("productpage", &[("127.0.4.1", "productpage-v1")]),
        pod("productpage-v1", "productpage", "v1"),
        slice(
            "reviews",
            &[
                ("127.0.1.1", "reviews-v1"),
                ("127.0.1.2", "reviews-v2"),
                ("127.0.1.3", "reviews-v3"),
            ],
        ),
        slice("ratings", &[("127.0.2.1", "ratings-v1")]),
        pod("reviews-v1", "reviews", "v1"),
        pod("reviews-v2", "reviews", "v2"),
        pod("reviews-v3", "reviews", "v3"),
        pod("ratings-v1", "ratings", "v1"),
    ];
    for object in objects {
        api.apply(object).expect("apply");
    }
}

struct Cluster {
    api: KubeApi,
    kubeconfig: tempfile::NamedTempFile,
    _backends: Vec<Backend>,
    pins: PinDir,
    cgroup: TestCgroup,
    ns: NetNs,
}

impl Cluster {
    fn new(istio: IstioApi) -> Cluster {
        let ns = NetNs::new().expect("netns");
        let backends = [
            ("127.0.1.1:9080", "reviews-v1"),
            ("127.0.1.2:9080", "reviews-v2"),
            ("127.0.1.3:9080", "reviews-v3"),
            ("127.0.2.1:9080", "ratings-v1"),
            ("127.0.3.1:9080", "details-v1"),
            ("127.0.4.1:9080", "productpage-v1"),
        ]
        .iter()
        .map(|(a, name)| Backend::tcp(&ns, addr(a), name).expect("backend"))
        .collect();
        let api = KubeApi::start(istio).expect("test API server");
        let kubeconfig = tempfile::NamedTempFile::new().expect("kubeconfig");
        api.write_kubeconfig(kubeconfig.path()).expect("kubeconfig");
        Cluster {
            api,
            kubeconfig,
            _backends: backends,
            pins: PinDir::new(),
            cgroup: TestCgroup::new().expect("cgroup"),
            ns,
        }
    }

    /// The agent, its admin listener on a free loopback port.
    fn agent(&self) -> AgentProcess {
        self.agent_with(&[])
    }

    fn agent_with(&self, extra: &[&str]) -> AgentProcess {
        self.agent_until(extra, vsteer_testkit::agent::READY)
    }

    /// The agent, returned once it logs `needle`.
    fn agent_until(&self, extra: &[&str], needle: &str) -> AgentProcess {
        let placement = RunPlacement {
            cgroup: self.cgroup.path(),
            pin_dir: self.pins.path(),
            proxy_addr: "127.0.0.1:0",
            admin_addr: "127.0.0.1:0",
        };
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "--source".as_ref(),
            "kubernetes".as_ref(),
            "--kubeconfig".as_ref(),
            self.kubeconfig.path().as_os_str(),
        ];
        args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
        AgentProcess::start_run(Path::new(VSTEER), &placement, &args, needle, READY_TIMEOUT)
            .expect("agent")
    }

    /// Connects to `vip` until every one lands on one of `names` (a change may reach the
    /// kernel in more than one batch), at most 5 s; then asserts it.
    fn settles_to(&self, vip: &str, count: u32, names: &[&str]) {
        for _ in 0..50 {
            let report = self.replies(vip, count);
            let replies = report.replies();
            if report.failures().is_empty() && replies.keys().all(|n| names.contains(&n.as_str())) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_only(&self.replies(vip, count), names);
    }

    /// Where `count` connects to `vip` land, by backend name.
    fn replies(&self, vip: &str, count: u32) -> vsteer_testkit::ConnectReport {
        connect_many(&self.ns, Some(&self.cgroup), addr(vip), count, DEADLINE).expect("connects")
    }
}

/// `GET path` from the agent's admin listener (its address is in the ready line).
fn admin_get(agent: &AgentProcess, path: &str) -> String {
    use std::io::{Read, Write};
    let admin = admin_addr(agent);
    let mut stream = std::net::TcpStream::connect(&admin).expect("admin");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: admin\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

/// The value of the metric line that starts with `name` (labels included).
fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

/// Applies a change on the server and waits for the agent to write it.
fn changed(agent: &mut AgentProcess, change: impl FnOnce()) {
    agent.drain();
    change();
    agent.wait_for("config applied", APPLIED).expect("applied");
}

#[test]
fn objects_on_the_api_server_steer_real_connects_and_cuts_converge() {
    if !kernel_tests_enabled("objects_on_the_api_server_steer_real_connects_and_cuts_converge") {
        return;
    }
    let cluster = Cluster::new(IstioApi::V1);
    bookinfo(&cluster.api);
    let mut agent = cluster.agent();
    assert_only(&cluster.replies(REVIEWS_VIP, 200), &["reviews-v2"]);
    assert_only(&cluster.replies(RATINGS_VIP, 50), &["ratings-v1"]);
    assert_only(&cluster.replies(PRODUCTPAGE_VIP, 50), &["productpage-v1"]);

    // Changed: the route moves to v3.
    changed(&mut agent, || {
        cluster.api.apply(reviews_to("v3")).expect("apply")
    });
    cluster.settles_to(REVIEWS_VIP, 200, &["reviews-v3"]);

    // Created after the start: a Service and its slice.
    changed(&mut agent, || {
        cluster
            .api
            .apply(service("details", "127.100.0.3"))
            .expect("apply");
        cluster
            .api
            .apply(slice("details", &[("127.0.3.1", "details-v1")]))
            .expect("apply");
    });
    cluster.settles_to(DETAILS_VIP, 50, &["details-v1"]);

    // A pod relabelled: subset v3 selects reviews-v1 too.
    changed(&mut agent, || {
        cluster
            .api
            .apply(pod("reviews-v1", "reviews", "v3"))
            .expect("apply")
    });
    let report = cluster.replies(REVIEWS_VIP, 400);
    assert_only(&report, &["reviews-v1", "reviews-v3"]);
    assert!(
        counts(&report, &["reviews-v1"])[0] > 0,
        "{:?}",
        report.replies()
    );

    // A cut watch resumes from its version: the change made meanwhile arrives. Then 410
    // Gone: the log is compacted while a Service is deleted; the watches list again and the
    // deleted Service leaves the kernel. Connects to ratings, unchanged, never fail meanwhile.
    std::thread::scope(|scope| {
        let ratings = scope.spawn(|| cluster.replies(RATINGS_VIP, 6000));
        changed(&mut agent, || {
            cluster.api.cut_watches();
            cluster.api.apply(reviews_to("v2")).expect("apply");
        });
        cluster.settles_to(REVIEWS_VIP, 200, &["reviews-v2"]);

        agent.drain();
        cluster.api.compact();
        cluster
            .api
            .delete("Service", "bookinfo", "details")
            .expect("delete");
        cluster
            .api
            .delete("EndpointSlice", "bookinfo", "details-x1")
            .expect("delete");
        agent
            .wait_for("too old resource version", APPLIED)
            .expect("the watches were told 410 Gone");
        // Each watch lists again after its own backoff: the Service leaves the kernel when
        // its watch has (a pass that removes a VIP).
        let deadline = std::time::Instant::now() + APPLIED;
        loop {
            let line = agent.wait_for("config applied", APPLIED).expect("applied");
            if line.contains(" removed=1 ") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the deleted Service never left"
            );
        }
        let mut refused = 0;
        for _ in 0..50 {
            let report = cluster.replies(DETAILS_VIP, 20);
            refused = report.failures().values().sum::<u64>();
            if refused == 20 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(refused, 20, "the deleted Service still steers");
        let ratings = ratings.join().expect("ratings client");
        assert_only(&ratings, &["ratings-v1"]);
        assert_eq!(ratings.outcomes.len(), 6000);
    });

    // A malformed object is named and skipped; the others apply.
    agent.drain();
    let mut bad = reviews_to("v3");
    bad["metadata"]["name"] = json!("broken");
    bad["spec"]["http"][0]["route"][0]["weight"] = json!("all");
    cluster.api.apply(bad).expect("apply");
    cluster.api.apply(reviews_to("v3")).expect("apply");
    let error = agent
        .wait_for("VirtualService bookinfo/broken", APPLIED)
        .expect("the malformed object is named");
    assert!(
        error.contains("kubernetes:VirtualService/bookinfo/broken") && error.contains("weight"),
        "{error}"
    );
    agent.wait_for("config applied", APPLIED).expect("applied");
    cluster.settles_to(REVIEWS_VIP, 200, &["reviews-v1", "reviews-v3"]);

    // What the agent says of itself.
    assert!(admin_get(&agent, "/readyz").starts_with("HTTP/1.0 200"));
    assert!(admin_get(&agent, "/healthz").starts_with("HTTP/1.0 200"));
    let metrics = admin_get(&agent, "/metrics");
    assert_eq!(
        metric(&metrics, "vsteer_kubernetes_objects{kind=\"Service\"}"),
        3.0
    );
    assert_eq!(
        metric(&metrics, "vsteer_kubernetes_objects{kind=\"Pod\"}"),
        5.0
    );
    assert_eq!(metric(&metrics, "vsteer_services "), 3.0);
    // A failure for each watch told 410 Gone (those behind the latest version).
    assert!(metric(&metrics, "vsteer_errors_total{step=\"watch\"}") >= 1.0);
    assert!(metric(&metrics, "vsteer_rejected_total") >= 1.0);
    assert!(metric(&metrics, "vsteer_sync_latency_seconds_count") >= 6.0);
    agent
        .stop_with(libc::SIGTERM, Duration::from_secs(10))
        .expect("stop");
}

#[test]
fn without_istio_crds_the_services_alone_steer_and_v1beta1_is_read_when_v1_is_not_served() {
    if !kernel_tests_enabled(
        "without_istio_crds_the_services_alone_steer_and_v1beta1_is_read_when_v1_is_not_served",
    ) {
        return;
    }
    // No Istio: the registry alone, every ready endpoint of reviews.
    let cluster = Cluster::new(IstioApi::None);
    registry(&cluster.api);
    let agent = cluster.agent();
    let report = cluster.replies(REVIEWS_VIP, 600);
    assert_only(&report, &["reviews-v1", "reviews-v2", "reviews-v3"]);
    assert!(
        counts(&report, &["reviews-v1", "reviews-v2", "reviews-v3"])
            .iter()
            .all(|&n| n > 0),
        "{:?}",
        report.replies()
    );
    drop(agent);

    // An Istio that serves only v1beta1: its rules are read there.
    let cluster = Cluster::new(IstioApi::V1beta1Only);
    registry(&cluster.api);
    for mut rule in [reviews_rule(), reviews_to("v3")] {
        rule["apiVersion"] = json!("networking.istio.io/v1beta1");
        cluster.api.apply(rule).expect("apply");
    }
    let _agent = cluster.agent();
    assert_only(&cluster.replies(REVIEWS_VIP, 200), &["reviews-v3"]);
}

/// The admin address in the agent's ready line.
fn admin_addr(agent: &AgentProcess) -> String {
    agent
        .ready_line()
        .split_whitespace()
        .find_map(|field| field.strip_prefix("admin="))
        .expect("the admin address in the ready line")
        .to_string()
}

#[test]
fn the_nodes_pods_are_kept_with_their_cgroups_and_shown_by_status() {
    if !kernel_tests_enabled("the_nodes_pods_are_kept_with_their_cgroups_and_shown_by_status") {
        return;
    }
    let cluster = Cluster::new(IstioApi::None);
    registry(&cluster.api);
    let mut elsewhere = pod("other-node-pod", "productpage", "v1");
    elsewhere["spec"]["nodeName"] = json!("node-2");
    cluster.api.apply(elsewhere).expect("apply");
    for (name, qos) in [("reviews-v1", "Burstable"), ("reviews-v2", "BestEffort")] {
        let mut pod = cluster.api.get("Pod", "bookinfo", name).expect("pod");
        pod["status"] = json!({"qosClass": qos, "phase": "Running"});
        cluster.api.apply(pod).expect("apply");
    }
    let uid = |name: &str| -> String {
        let pod = cluster.api.get("Pod", "bookinfo", name).expect("pod");
        pod["metadata"]["uid"].as_str().expect("uid").to_string()
    };
    // Kubelet's layouts, under the agent's cgroup: systemd's for one pod (made before the
    // agent starts), cgroupfs' for the other (made after: found on a later look).
    let root = cluster.cgroup.path().to_path_buf();
    let systemd = root
        .join("kubepods.slice/kubepods-burstable.slice")
        .join(format!(
            "kubepods-burstable-pod{}.slice",
            uid("reviews-v1").replace('-', "_")
        ));
    let cgroupfs = root
        .join("kubepods/besteffort")
        .join(format!("pod{}", uid("reviews-v2")));
    std::fs::create_dir_all(&systemd).expect("systemd cgroup");
    let agent = cluster.agent_with(&["--node-name", "node-1"]);
    std::fs::create_dir_all(&cgroupfs).expect("cgroupfs cgroup");
    let inode = |path: &Path| {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).expect("cgroup"))
    };

    let status = || {
        let out = std::process::Command::new(VSTEER)
            .args(["status", "--admin-addr", &admin_addr(&agent), "--pin-dir"])
            .arg(cluster.pins.path())
            .output()
            .expect("vsteer status");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut shown = String::new();
    for _ in 0..50 {
        shown = status();
        if shown.contains(&cgroupfs.display().to_string()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let line = |pod: &str| -> String {
        shown
            .lines()
            .find(|l| l.starts_with(&format!("bookinfo/{pod} ")))
            .unwrap_or_else(|| panic!("{pod} not shown: {shown}"))
            .to_string()
    };
    assert!(shown.contains("node pods"), "{shown}");
    let v1 = line("reviews-v1");
    assert!(
        v1.contains("Burstable")
            && v1.contains(&inode(&systemd).to_string())
            && v1.contains(&systemd.display().to_string())
            && v1.contains("version=v1"),
        "{v1}"
    );
    let v2 = line("reviews-v2");
    assert!(
        v2.contains("BestEffort") && v2.contains(&inode(&cgroupfs).to_string()),
        "{v2}"
    );
    // A pod without a cgroup yet is listed as such; another node's pod is not listed.
    assert!(line("reviews-v3").contains("(not made yet)"), "{shown}");
    assert!(!shown.contains("other-node-pod"), "{shown}");
    drop(agent);
    for dir in [
        systemd.clone(),
        systemd.parent().expect("parent").to_path_buf(),
        root.join("kubepods.slice"),
        cgroupfs.clone(),
        root.join("kubepods/besteffort"),
        root.join("kubepods"),
    ] {
        std::fs::remove_dir(&dir).expect("remove the kubelet-like cgroup");
    }
}

/// The seed's rule in Kubernetes mode, on the L7 path: the agent in a "node" namespace (with
/// the API server there too), a client in a "pod" namespace joined by a veth pair. reviews'
/// port is named `http`, so its header rule goes to the proxy: `end-user: jason` reaches the
/// pod labelled v2, everyone else v3, request by request on one connection.
#[test]
fn the_seed_rule_is_served_on_the_l7_path_in_kubernetes_mode() {
    use vsteer_testkit::http::H1;
    use vsteer_testkit::tcp_sockets_in;
    if !kernel_tests_enabled("the_seed_rule_is_served_on_the_l7_path_in_kubernetes_mode") {
        return;
    }
    let stage = support::L7Node::new(&[
        ("reviews-v1", "127.0.1.1:9080"),
        ("reviews-v2", "127.0.1.2:9080"),
        ("reviews-v3", "127.0.1.3:9080"),
    ]);
    let (node, pod_ns, runtime) = (&stage.node, &stage.pod, &stage.runtime);
    let cgroup = TestCgroup::new().expect("cgroup");
    let pins = PinDir::new();
    // The API server where the agent is: the node's namespace.
    let api = node
        .run(|| KubeApi::start(IstioApi::V1))
        .expect("in the node namespace")
        .expect("test API server");
    registry(&api);
    api.apply(reviews_rule()).expect("apply");
    api.apply(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "bookinfo"},
        "spec": {"hosts": ["reviews"], "http": [
            {"match": [{"headers": {"end-user": {"exact": "jason"}}}],
             "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
            {"route": [{"destination": {"host": "reviews", "subset": "v3"}}]}]}
    }))
    .expect("apply");
    let kubeconfig = tempfile::NamedTempFile::new().expect("kubeconfig");
    api.write_kubeconfig(kubeconfig.path()).expect("kubeconfig");
    let placement = RunPlacement {
        cgroup: cgroup.path(),
        pin_dir: pins.path(),
        proxy_addr: &format!("{}:15001", support::L7_NODE_ADDR),
        admin_addr: "off",
    };
    let mut args = vsteer_testkit::agent::run_args(&placement);
    args.extend([
        "--source".into(),
        "kubernetes".into(),
        "--kubeconfig".into(),
    ]);
    args.push(kubeconfig.path().into());
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let agent =
        AgentProcess::start_in(Path::new(VSTEER), &args, READY_TIMEOUT, node, Some(&cgroup))
            .expect("agent ready");
    assert!(
        agent.ready_line().contains("proxied=1"),
        "{}",
        agent.ready_line()
    );

    let socket = tcp_sockets_in(pod_ns, &cgroup, libc::AF_INET, 1)
        .expect("a socket in the pod")
        .pop()
        .expect("one socket");
    let socket = socket2::Socket::from(socket);
    socket
        .connect(&addr(REVIEWS_VIP).into())
        .expect("connect from the pod");
    let stream: std::net::TcpStream = socket.into();
    stream.set_nonblocking(true).expect("non-blocking");
    runtime.block_on(async {
        let stream = tokio::net::TcpStream::from_std(stream).expect("tokio stream");
        let mut h1 = H1::over(stream).await;
        assert_seed_rule_alternates(&mut h1, 20, DEADLINE).await
    });
    drop(agent);
}

/// A restarted agent whose API server does not answer applies nothing: the datapath its
/// predecessor pinned keeps steering, and the agent syncs once the server answers.
#[test]
fn while_the_api_server_is_down_a_restarted_agent_keeps_the_pinned_datapath() {
    if !kernel_tests_enabled(
        "while_the_api_server_is_down_a_restarted_agent_keeps_the_pinned_datapath",
    ) {
        return;
    }
    let cluster = Cluster::new(IstioApi::V1);
    bookinfo(&cluster.api);
    let first = cluster.agent();
    assert_only(&cluster.replies(REVIEWS_VIP, 100), &["reviews-v2"]);
    drop(first);

    cluster.api.set_down(true);
    let mut second = cluster.agent_until(&[], "does not answer discovery");
    // Changed meanwhile, not seen yet: the pinned datapath steers as before.
    cluster.api.apply(reviews_to("v3")).expect("apply");
    assert_only(&cluster.replies(REVIEWS_VIP, 200), &["reviews-v2"]);
    assert_only(&cluster.replies(RATINGS_VIP, 50), &["ratings-v1"]);

    cluster.api.set_down(false);
    let ready = second
        .wait_for(vsteer_testkit::agent::READY, READY_TIMEOUT)
        .expect("ready once the API server answers");
    assert!(ready.contains("adopted=3"), "{ready}");
    assert_only(&cluster.replies(REVIEWS_VIP, 200), &["reviews-v3"]);
}
