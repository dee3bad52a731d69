//! The L7 kernel tests' stage: the real agent (kernel programs and proxy) on a config of the
//! test's own in a "node" namespace with HTTP backends, a "pod" namespace joined to it by a
//! veth pair whose sockets are made in the agent's cgroup, and the YAML the configs are
//! written with (a ServiceEntry with version subsets, a VirtualService).

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use vsteer_datapath::OriginalDestinations;
use vsteer_testkit::http::{Backend, H1, H2};
use vsteer_testkit::{AgentProcess, PinDir, TestCgroup, tcp_sockets_in};

use super::{ConfigDir, L7Node, addr, resource};

const VSTEER: &str = env!("CARGO_BIN_EXE_vsteer");
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Any one exchange; a lost connection fails the test instead of stalling it.
pub const TIMEOUT: Duration = Duration::from_secs(20);
/// Where the agent's proxy listens: the node's veth address, which the pod reaches.
pub const PROXY: &str = "198.18.0.1:15001";
const ADMIN: &str = "127.0.0.1:15020";

/// ServiceEntry, DestinationRule (subsets by version) for one service; `port` is the
/// port's `name` and `protocol`, `endpoints` are `(address:port, version)`.
pub fn service(name: &str, vip: &str, port: &str, endpoints: &[(&str, &str)]) -> String {
    let (ip, number) = vip.rsplit_once(':').expect("VIP:port");
    let mut yaml = resource(
        "ServiceEntry",
        name,
        &format!(
            "  hosts: [{name}.default.svc.cluster.local]
  addresses: [{ip}]
  ports: [{{number: {number}, {port}}}]
  resolution: STATIC
  endpoints:
"
        ),
    );
    let port_name = port
        .split(',')
        .next()
        .unwrap_or_default()
        .trim_start_matches("name: ");
    let mut versions = Vec::new();
    for (address, version) in endpoints {
        let (ip, target) = address.rsplit_once(':').expect("endpoint address:port");
        yaml.push_str(&format!(
            "  - {{address: {ip}, ports: {{{port_name}: {target}}}, labels: {{version: {version}}}}}\n",
        ));
        versions.push(*version);
    }
    yaml.push_str(&resource(
        "DestinationRule",
        name,
        &format!("  host: {name}\n  subsets:\n"),
    ));
    for version in versions {
        yaml.push_str(&format!(
            "  - {{name: {version}, labels: {{version: {version}}}}}\n"
        ));
    }
    yaml
}

/// A VirtualService for `name` with the `http` rules given (indented as list items).
pub fn virtual_service(name: &str, http: &str) -> String {
    resource(
        "VirtualService",
        name,
        &format!("  hosts: [{name}]\n  http:\n{http}"),
    )
}

/// The node (agent, proxy, backends) and a pod joined to it, with the agent running.
pub struct L7Stage {
    // Field order is drop order: the agent first (it stops by its pid), then the backends,
    // their runtime, the link and the namespaces, the pins and the cgroup.
    pub agent: AgentProcess,
    pub l7: L7Node,
    pub config: ConfigDir,
    pub pins: PinDir,
    pub cgroup: TestCgroup,
}

impl L7Stage {
    /// `backends` (`(name, address)`) in the node's namespace and the agent on `files`.
    pub fn new(backends: &[(&str, &str)], files: &[(&str, String)]) -> L7Stage {
        let l7 = L7Node::new(backends);
        let cgroup = TestCgroup::new().expect("cgroup");
        let pins = PinDir::new();
        let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
        let config = ConfigDir::new(&files);
        let state_dir = pins.state_dir();
        let args: Vec<&std::ffi::OsStr> = vec![
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
            PROXY.as_ref(),
            "--admin-addr".as_ref(),
            ADMIN.as_ref(),
        ];
        // The agent in the node's namespace and in the cgroup: its proxy's upstream connects
        // meet the hooks (and must pass by their mark).
        let agent = AgentProcess::start_in(
            Path::new(VSTEER),
            &args,
            READY_TIMEOUT,
            &l7.node,
            Some(&cgroup),
        )
        .expect("agent ready");
        L7Stage {
            agent,
            l7,
            config,
            pins,
            cgroup,
        }
    }

    /// The backend called `name`.
    pub fn backend(&self, name: &str) -> &Backend {
        self.l7
            .backends
            .iter()
            .find(|b| b.name == name)
            .unwrap_or_else(|| panic!("no backend {name}"))
    }

    /// `count` TCP connections from the pod to `target`, as an application makes them.
    pub fn connect(&self, target: &str, count: usize) -> Vec<tokio::net::TcpStream> {
        self.connect_from(&self.l7.pod, target, count)
    }

    /// `count` TCP connections to `target` from sockets of namespace `ns` (the pod's, or
    /// the node's, where the backends' loopback addresses are) in the agent's cgroup.
    pub fn connect_from(
        &self,
        ns: &vsteer_testkit::NetNs,
        target: &str,
        count: usize,
    ) -> Vec<tokio::net::TcpStream> {
        let target = addr(target);
        let sockets = tcp_sockets_in(ns, &self.cgroup, libc::AF_INET, count)
            .expect("sockets in the namespace");
        let _in_runtime = self.l7.runtime.enter();
        sockets
            .into_iter()
            .map(|fd| {
                let socket = socket2::Socket::from(fd);
                socket
                    .set_read_timeout(Some(TIMEOUT))
                    .expect("socket timeout");
                socket
                    .connect(&target.into())
                    .unwrap_or_else(|e| panic!("connect to {target}: {e}"));
                let stream: std::net::TcpStream = socket.into();
                stream.set_nonblocking(true).expect("non-blocking");
                tokio::net::TcpStream::from_std(stream).expect("tokio stream")
            })
            .collect()
    }

    /// `count` HTTP/1.1 keep-alive connections from the pod to `target`.
    pub fn h1s(&self, target: &str, count: usize) -> Vec<H1> {
        let streams = self.connect(target, count);
        self.block(async {
            let mut connections = Vec::with_capacity(count);
            for stream in streams {
                connections.push(H1::over(stream).await);
            }
            connections
        })
    }

    pub fn h1(&self, target: &str) -> H1 {
        self.h1s(target, 1).pop().expect("one connection")
    }

    pub fn h2(&self, target: &str) -> H2 {
        let stream = self.connect(target, 1).pop().expect("one connection");
        self.block(H2::over(stream))
    }

    /// Runs `f` on the test runtime, bounded by [`TIMEOUT`].
    pub fn block<T>(&self, f: impl Future<Output = T>) -> T {
        self.block_for(TIMEOUT, f)
    }

    /// Runs `f` on the test runtime, bounded by `limit`.
    pub fn block_for<T>(&self, limit: Duration, f: impl Future<Output = T>) -> T {
        self.l7
            .runtime
            .block_on(async { tokio::time::timeout(limit, f).await })
            .unwrap_or_else(|_| panic!("an exchange took longer than {limit:?}"))
    }

    pub fn original_entries(&self) -> usize {
        OriginalDestinations::open_pinned(self.pins.path())
            .expect("the pinned original-destination map")
            .len()
    }

    /// `vsteer status` of the agent, run in its namespace.
    pub fn status(&self) -> String {
        let pins = self.pins.path().to_path_buf();
        let output = self
            .l7
            .node
            .run(move || {
                std::process::Command::new(VSTEER)
                    .arg("status")
                    .arg("--pin-dir")
                    .arg(&pins)
                    .args(["--admin-addr", ADMIN])
                    .output()
            })
            .expect("a thread in the node's namespace")
            .expect("vsteer status");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The agent's `/metrics`, fetched inside its namespace.
    pub fn metrics(&self) -> String {
        let reply = self.l7.node.run(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut h1 = tokio::time::timeout(TIMEOUT, H1::connect(addr(ADMIN)))
                    .await
                    .expect("admin connect");
                tokio::time::timeout(TIMEOUT, h1.get("admin", "/metrics", &[]))
                    .await
                    .expect("admin reply")
            })
        });
        let reply = reply.expect("the metrics fetch");
        assert_eq!(reply.status, 200);
        reply.body
    }
}

/// The value of the first sample whose name contains `name`.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|n| n.contains(name))
        })
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}
