//! `cargo xtask demo`: vsteer steering real connections, in a private network namespace and a
//! throwaway cgroup, on the embedded default config (the files of examples/): the kernel
//! alone for the TCP services, its proxy for the seed's `reviews` rule (`end-user: jason` to
//! v2, everything else to v3), request by request on one keep-alive connection.
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::Path,
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use nix::{sys::signal::Signal, unistd::geteuid};
use serde::Deserialize;
use vsteer_testkit::{
    AgentProcess, Backend, ConnectOutcome, NetNs, PinDir, TestCgroup, connect_many, http,
    tcp_sockets_in,
};

use crate::{build, interrupt::Interrupt, setup};

const CONNECTS_PER_SERVICE: u32 = 1_000;
/// Requests of the L7 part, on one keep-alive connection per protocol.
const REQUESTS: usize = 200;
/// Where the demo's agent serves its proxy and metrics, inside the demo's namespace.
const PROXY_ADDR: &str = "127.0.0.1:15001";
const ADMIN_ADDR: &str = "127.0.0.1:15020";
const CLIENT_DEADLINE: Duration = Duration::from_secs(60);

/// The part of `vsteer plan --json` the demo needs.
#[derive(Deserialize)]
struct Plan {
    services: Vec<Service>,
}

#[derive(Deserialize)]
struct Service {
    /// An address, or a CIDR range (`10.1.0.0/16`).
    vip: String,
    port: u16,
    protocol: String,
    host: String,
    backends: Vec<PlannedBackend>,
    route: Option<String>,
    decision: Decision,
    http: Option<HttpTable>,
}

#[derive(Deserialize)]
struct Decision {
    serve: String,
    reason: Option<String>,
}

#[derive(Deserialize)]
struct HttpTable {
    clusters: Vec<Cluster>,
}

#[derive(Deserialize)]
struct Cluster {
    subset: Option<String>,
    endpoints: Vec<Endpoint>,
}

#[derive(Deserialize)]
struct Endpoint {
    address: IpAddr,
    port: u16,
}

impl Service {
    fn proxied(&self) -> bool {
        self.decision.serve == "proxy"
    }

    /// Where the demo connects: the VIP, or for a range its network address (an address of
    /// it like any other).
    fn connect_to(&self) -> Result<SocketAddr> {
        let address = self.vip.split_once('/').map_or(&*self.vip, |(a, _)| a);
        let ip: IpAddr = address
            .parse()
            .with_context(|| format!("vsteer plan --json: vip {:?}", self.vip))?;
        Ok(SocketAddr::new(ip, self.port))
    }
}

#[derive(Deserialize)]
struct PlannedBackend {
    address: IpAddr,
    port: u16,
    /// Parts per million of the service's connections.
    weight: u32,
    subsets: Vec<String>,
}

impl PlannedBackend {
    /// A refused share's slot, which has no server (see `vsteer_plan::REFUSED_PORT`).
    fn is_refused(&self) -> bool {
        self.port == vsteer_plan::REFUSED_PORT && !self.is_passthrough()
    }

    /// A passthrough share (a `NONE` host): its connects go on to the address dialled.
    fn is_passthrough(&self) -> bool {
        vsteer_plan::is_passthrough(self.address, self.port)
    }

    /// The server a connect of this share reaches, as the demo's backends name themselves.
    fn reaches(&self, vip: SocketAddr) -> SocketAddr {
        if self.is_passthrough() {
            vip
        } else {
            SocketAddr::new(self.address, self.port)
        }
    }
}

pub fn run() -> Result<()> {
    if !geteuid().is_root() {
        bail!("the demo loads eBPF programs and creates a network namespace: run it as root");
    }
    // The agent child gets the same Ctrl-C and exits on its own; the demo stops at the next
    // step and its guards remove the namespace, cgroup, pins and backends.
    let interrupt = Interrupt::install()?;
    let check = || interrupt.check();
    setup::run()?;
    let vsteer = build::all(false)?;
    let plan = plan(&vsteer)?;

    let ns = NetNs::new().context("creating the demo's network namespace")?;
    let cgroup = TestCgroup::new().context("creating the demo's cgroup")?;
    println!(
        "demo: private network namespace created; client cgroup {}",
        cgroup.path().display()
    );
    // The proxy's requests need HTTP backends; the kernel-only services get TCP ones that
    // answer each connection with their address.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("the demo's runtime")?;
    let mut backends = Vec::new();
    let mut http_backends = Vec::new();
    for service in &plan.services {
        if service.proxied() {
            let _in_runtime = runtime.enter();
            for cluster in service.http.iter().flat_map(|t| &t.clusters) {
                for e in &cluster.endpoints {
                    let addr = SocketAddr::new(e.address, e.port);
                    let name = match &cluster.subset {
                        Some(subset) => format!("{addr} ({subset})"),
                        None => addr.to_string(),
                    };
                    if !http_backends.iter().any(|b: &http::Backend| b.addr == addr) {
                        http_backends.push(http::Backend::start_in(&ns, &name, addr)?);
                    }
                }
            }
            continue;
        }
        // A refused share has no server: its connects fail; a passthrough one reaches the
        // address dialled, where nothing listens either.
        for b in service
            .backends
            .iter()
            .filter(|b| !b.is_refused() && !b.is_passthrough())
        {
            let addr = SocketAddr::new(b.address, b.port);
            backends.push(Backend::tcp(&ns, addr, &addr.to_string())?);
        }
    }
    println!(
        "demo: {} TCP and {} HTTP backend servers listening on loopback addresses",
        backends.len(),
        http_backends.len()
    );
    check()?;

    let pins = PinDir::new();
    let pin_dir = pins.path();
    let pin_arg = pin_dir.display().to_string();
    let cgroup_arg = cgroup.path().display().to_string();
    let args = [
        "run",
        "--cgroup",
        &cgroup_arg,
        "--pin-dir",
        &pin_arg,
        "--proxy-addr",
        PROXY_ADDR,
        "--admin-addr",
        ADMIN_ADDR,
    ];
    println!("demo: starting {} {}", vsteer.display(), args.join(" "));
    println!("      (in the demo's namespace and cgroup: its proxy's own connects meet the hooks)");
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    let mut agent =
        AgentProcess::start_in(&vsteer, &args, Duration::from_secs(30), &ns, Some(&cgroup))?;
    check()?;
    show_bpftool(pin_dir);

    for service in plan.services.iter().filter(|s| s.proxied()) {
        check()?;
        l7(&runtime, &ns, &cgroup, service)?;
    }

    for service in plan
        .services
        .iter()
        .filter(|s| s.protocol == "TCP" && !s.proxied())
    {
        check()?;
        let vip = service.connect_to()?;
        let report = connect_many(
            &ns,
            Some(&cgroup),
            vip,
            CONNECTS_PER_SERVICE,
            CLIENT_DEADLINE,
        )?;
        println!(
            "\n{} ({vip}): {CONNECTS_PER_SERVICE} connects from a process in the cgroup",
            service.host
        );
        println!(
            "  route: {}",
            service
                .route
                .as_deref()
                .unwrap_or("none (all endpoints of the ServiceEntry)")
        );
        let replies = report.replies();
        for b in &service.backends {
            let name = b.reaches(vip).to_string();
            let n = replies.get(&name).copied().unwrap_or(0);
            let share = 100.0 * n as f64 / f64::from(CONNECTS_PER_SERVICE);
            let subsets = if b.subsets.is_empty() {
                "-".to_string()
            } else {
                b.subsets.join(",")
            };
            let planned = f64::from(b.weight) / 10_000.0;
            println!(
                "  -> {name:<18} subsets {subsets:<8} {n:>5} connects  {share:5.1}%  (planned {planned:.1}%)"
            );
        }
        print_failures(&report.failures());
        let peers: BTreeMap<String, u64> =
            report.outcomes.iter().fold(BTreeMap::new(), |mut m, o| {
                if let ConnectOutcome::Reached { peer, .. } = o {
                    *m.entry(peer.to_string()).or_insert(0) += 1;
                }
                m
            });
        println!("  getpeername() seen by the client: {peers:?}");
    }

    if let Some(first) = plan
        .services
        .iter()
        .find(|s| s.protocol == "TCP" && !s.proxied())
    {
        check()?;
        let vip = first.connect_to()?;
        let outside = connect_many(&ns, None, vip, 5, CLIENT_DEADLINE)?;
        println!(
            "\nA process outside the cgroup connecting to {vip} (not steered, nothing listens on the VIP):"
        );
        print_failures(&outside.failures());
        println!("  reached: {:?}", outside.replies());
    }

    println!("\n$ curl http://{ADMIN_ADDR}/metrics   (the proxy's counters)");
    for line in metrics(&runtime, &ns)?
        .lines()
        .filter(|l| l.starts_with("vsteer_proxy_") && !l.ends_with(" 0"))
    {
        println!("    {line}");
    }
    println!("\n$ vsteer status --pin-dir {pin_arg}");
    print!(
        "{}",
        setup::output_of(Command::new(&vsteer).args(["status", "--pin-dir", &pin_arg]))?
    );
    let code = agent.stop_with(Signal::SIGTERM, Duration::from_secs(10))?;
    println!("\ndemo: agent stopped (exit code {code:?}); its datapath stays until uninstalled:");
    println!("$ vsteer uninstall --pin-dir {pin_arg}");
    println!(
        "{}",
        setup::output_of(Command::new(&vsteer).args(["uninstall", "--pin-dir", &pin_arg]))?
    );
    drop(http_backends);
    println!("demo: namespace, cgroup and backends removed");
    Ok(())
}

/// The seed's rule at work: requests alternating with and without `end-user: jason` on one
/// HTTP/1.1 keep-alive connection, then on one HTTP/2 (prior knowledge) connection, each
/// routed on its own by the proxy the kernel redirected the connection to.
fn l7(
    runtime: &tokio::runtime::Runtime,
    ns: &NetNs,
    cgroup: &TestCgroup,
    service: &Service,
) -> Result<()> {
    let vip = service.connect_to()?;
    println!(
        "\n{} ({vip}): served by the proxy ({})",
        service.host,
        service.decision.reason.as_deref().unwrap_or("-")
    );
    let host = format!("{}:{}", service.host, service.port);
    for http2 in [false, true] {
        let stream = connect_in(ns, cgroup, vip)?;
        let counts = runtime.block_on(async {
            tokio::time::timeout(CLIENT_DEADLINE, async {
                let stream = tokio::net::TcpStream::from_std(stream)?;
                let (mut h1, mut h2) = if http2 {
                    (None, Some(http::H2::over(stream).await))
                } else {
                    (Some(http::H1::over(stream).await), None)
                };
                let mut counts: BTreeMap<(bool, String), u64> = BTreeMap::new();
                for i in 0..REQUESTS {
                    let jason = i % 2 == 0;
                    let headers: &[(&str, &str)] =
                        if jason { &[("end-user", "jason")] } else { &[] };
                    let reply = match (&mut h1, &mut h2) {
                        (Some(h1), _) => h1.get(&host, "/reviews/0", headers).await,
                        (_, Some(h2)) => h2.get(&host, "/reviews/0", headers).await,
                        (None, None) => unreachable!("one client is made above"),
                    };
                    *counts
                        .entry((jason, reply.backend().to_string()))
                        .or_default() += 1;
                }
                anyhow::Ok(counts)
            })
            .await
            .context("the proxy's answers took too long")?
        })?;
        let protocol = if http2 {
            "HTTP/2 (prior knowledge)"
        } else {
            "HTTP/1.1 keep-alive"
        };
        println!("  {REQUESTS} requests on one {protocol} connection, alternating:");
        // The seed's rule sends each kind of request to one subset of its own.
        let with: Vec<&str> = counts
            .keys()
            .filter(|k| k.0)
            .map(|k| k.1.as_str())
            .collect();
        let without: Vec<&str> = counts
            .keys()
            .filter(|k| !k.0)
            .map(|k| k.1.as_str())
            .collect();
        if with.len() != 1 || without.len() != 1 || with == without {
            bail!("the header rule did not hold on {protocol}: {counts:?}");
        }
        for ((jason, backend), n) in &counts {
            let with = if *jason { "with   " } else { "without" };
            println!("    {with} end-user: jason -> {backend:<21} {n:>4} requests");
        }
    }
    Ok(())
}

/// A TCP connection to `to` from a socket made inside `ns` and `cgroup`, as a client
/// process there would make it (the cgroup's hooks judge a socket by where it was made).
fn connect_in(ns: &NetNs, cgroup: &TestCgroup, to: SocketAddr) -> Result<std::net::TcpStream> {
    let family = if to.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let fd = tcp_sockets_in(ns, cgroup, family, 1)?
        .pop()
        .context("a client socket")?;
    let socket = socket2::Socket::from(fd);
    socket.set_read_timeout(Some(CLIENT_DEADLINE))?;
    socket
        .connect(&to.into())
        .with_context(|| format!("connecting to {to}"))?;
    let stream: std::net::TcpStream = socket.into();
    stream.set_nonblocking(true)?;
    Ok(stream)
}

/// The agent's `/metrics`, read inside the demo's namespace.
fn metrics(runtime: &tokio::runtime::Runtime, ns: &NetNs) -> Result<String> {
    let stream = ns
        .run(|| std::net::TcpStream::connect(ADMIN_ADDR))?
        .with_context(|| format!("connecting to the admin address {ADMIN_ADDR}"))?;
    stream.set_nonblocking(true)?;
    runtime.block_on(async {
        tokio::time::timeout(CLIENT_DEADLINE, async {
            let stream = tokio::net::TcpStream::from_std(stream)?;
            let mut h1 = http::H1::over(stream).await;
            anyhow::Ok(h1.get("admin", "/metrics", &[]).await.body)
        })
        .await
        .context("the metrics took too long")?
    })
}

fn plan(vsteer: &Path) -> Result<Plan> {
    let json = setup::output_of(Command::new(vsteer).args(["plan", "--json"]))
        .context("vsteer plan --json on the embedded config")?;
    println!("{}", setup::output_of(Command::new(vsteer).arg("plan"))?);
    serde_json::from_str(&json).context("parsing vsteer plan --json")
}

fn print_failures(failures: &BTreeMap<i32, u64>) {
    for (errno, n) in failures {
        println!(
            "  {n} connects failed: {}",
            std::io::Error::from_raw_os_error(*errno)
        );
    }
}

/// Shows what an operator would see with bpftool, when it is installed.
fn show_bpftool(pin_dir: &Path) {
    let services = pin_dir.join("VSTEER_SERVICES");
    let commands = [
        vec![
            "prog".into(),
            "show".into(),
            "name".into(),
            "vsteer_connect4".into(),
        ],
        vec![
            "map".into(),
            "dump".into(),
            "pinned".into(),
            services.display().to_string(),
        ],
    ];
    for args in commands {
        println!("\n$ bpftool {}", args.join(" "));
        let Ok(out) = Command::new("bpftool").args(&args).output() else {
            println!("    (bpftool is not installed)");
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines().take(14) {
            println!("    {line}");
        }
    }
}
