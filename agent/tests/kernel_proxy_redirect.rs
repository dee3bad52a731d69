//! Kernel tests of the L7 path's kernel side: the real connect, sockops, getpeername and
//! getsockopt programs redirecting proxied services to a proxy (a plain TCP listener stands
//! in for it), recording each connection's original destination, answering SO_ORIGINAL_DST,
//! and leaving the proxy's own marked sockets, and namespaces that cannot reach a loopback
//! proxy, on the L4 table.
//!
//! cgroup hooks judge a socket by the cgroup it was created in, so the clients' and the
//! stand-in proxy's sockets are made inside the test cgroup (by a short-lived child) and
//! used from the test's threads.
//!
//! They need root. Without it they skip loudly, unless VSTEER_REQUIRE_KERNEL_TESTS=1 (CI).
mod support;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd, OwnedFd},
    sync::{
        Arc, Barrier, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    libc,
    poll::{PollFd, PollFlags, PollTimeout, poll},
    sys::socket::{
        Backlog, SockaddrStorage, bind, connect, getpeername, getsockopt, listen, setsockopt,
        sockopt,
    },
};
use support::{Fixture, addr};
use vsteer_datapath::{OriginalDestinations, ProxyRedirect, status};
use vsteer_model::{Kind, Labels, ResourceId};
use vsteer_plan::{
    BackendPlan, Decision, LoadBalancer, Plan, Protocol, ServiceKey, ServicePlan, WEIGHT_SCALE,
};
use vsteer_testkit::{NetNs, TestCgroup, Veth, kernel_tests_enabled, tcp_sockets_in};

/// SO_MARK of the (stand-in) proxy's own sockets.
const MARK: u32 = 0x10ee;
const PROXY4: &str = "127.0.0.1:15001";
const PROXY6: &str = "[::1]:15001";
/// Socket timeouts and waits: a lost connection fails the test instead of stalling it.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A proxied service (the compiler's decision) with `backends` as its L4 fallback.
fn proxied(vip: &str, backends: &[&str]) -> ServicePlan {
    let vip = addr(vip);
    let n = backends.len().max(1) as u32;
    ServicePlan {
        key: ServiceKey::new(vip.ip(), vip.port(), Protocol::Tcp),
        host: format!("svc-{}.test.local", vip.port()).into(),
        resource: ResourceId::new(Kind::ServiceEntry, "test", "svc"),
        route: None,
        load_balancer: LoadBalancer::Random,
        backends: backends
            .iter()
            .map(|b| BackendPlan {
                address: addr(b).ip(),
                port: addr(b).port(),
                weight: WEIGHT_SCALE / n,
                labels: Labels::default(),
                subsets: Vec::new(),
            })
            .collect(),
        decision: Decision::Proxy {
            reason: "http[0].match[0].headers[end-user]".into(),
        },
        http: None,
    }
}

fn redirect(v4: Option<&str>, v6: Option<&str>) -> ProxyRedirect {
    ProxyRedirect {
        v4: v4.map(|a| a.parse().expect("IPv4 socket address")),
        v6: v6.map(|a| a.parse().expect("IPv6 socket address")),
        mark: MARK,
    }
}

/// What a server saw of one accepted connection.
#[derive(Debug, Clone)]
struct Accepted {
    peer: SocketAddr,
    local: SocketAddr,
    /// The first line the client sent: the address it dialed.
    said: String,
    lookup: Option<SocketAddr>,
    sockopt: Result<SocketAddr, Errno>,
}

/// A TCP server that reads one line, records the connection (with its original destination
/// by `OriginalDestinations::lookup` and by getsockopt), and answers with its name.
struct Server {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Accepted>>>,
    held: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// The proxy's stand-in: its listening socket is made inside the cgroup (as the agent's
    /// would be), so its accepted sockets meet the getsockopt hook.
    fn proxy(fx: &Fixture, at: &str, original: OriginalDestinations) -> Server {
        Self::proxy_holding(fx, at, original, 1)
    }

    /// [`Server::proxy`] that accepts `hold` connections before it answers any of them, so
    /// that all of them are established at once; `held` says how many original-destination
    /// entries the map had then.
    fn proxy_holding(
        fx: &Fixture,
        at: &str,
        original: OriginalDestinations,
        hold: usize,
    ) -> Server {
        let at = addr(at);
        let fd = one_socket(&fx.ns, &fx.cgroup, at);
        Self::serve(listen_on(fd, at), "proxy", Some(original), hold)
    }

    /// A backend: a plain listener in `ns`.
    fn backend(ns: &NetNs, at: &str, name: &str) -> Server {
        let at = addr(at);
        let listener = ns
            .run(move || TcpListener::bind(at))
            .expect("thread in the namespace")
            .unwrap_or_else(|e| panic!("binding {at}: {e}"));
        Self::serve(listener, name, None, 1)
    }

    fn serve(
        listener: TcpListener,
        name: &str,
        original: Option<OriginalDestinations>,
        hold: usize,
    ) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let held = Arc::new(AtomicUsize::new(0));
        let reply = format!("{name}\n");
        let thread = {
            let (stop, seen, held) = (stop.clone(), seen.clone(), held.clone());
            std::thread::spawn(move || {
                let mut waiting = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let mut pfd = [PollFd::new(
                        std::os::fd::AsFd::as_fd(&listener),
                        PollFlags::POLLIN,
                    )];
                    if !matches!(poll(&mut pfd, PollTimeout::from(50u16)), Ok(n) if n > 0) {
                        continue;
                    }
                    let Ok(accepted) = listener.accept() else {
                        continue;
                    };
                    waiting.push(accepted);
                    if waiting.len() < hold {
                        continue;
                    }
                    if let Some(original) = &original {
                        held.store(original.len(), Ordering::Relaxed);
                    }
                    for (stream, peer) in waiting.drain(..) {
                        handle(stream, peer, &reply, original.as_ref(), &seen);
                    }
                }
            })
        };
        Server {
            stop,
            seen,
            held,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<Accepted> {
        self.seen.lock().expect("lock").clone()
    }

    fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One accepted connection: read the client's line, look its original destination up both
/// ways, record it, answer (recorded first: a client holding its answer finds its record).
/// A client that vanished is skipped.
fn handle(
    mut stream: TcpStream,
    peer: SocketAddr,
    reply: &str,
    original: Option<&OriginalDestinations>,
    seen: &Mutex<Vec<Accepted>>,
) -> Option<()> {
    stream.set_read_timeout(Some(TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(TIMEOUT)).ok()?;
    let local = stream.local_addr().ok()?;
    let mut said = String::new();
    BufReader::new(&stream).take_line(&mut said).then_some(())?;
    let lookup = original.and_then(|o| o.lookup(peer, local));
    let sockopt = original_dst(&stream, local);
    seen.lock().expect("lock").push(Accepted {
        peer,
        local,
        said: said.trim_end().to_string(),
        lookup,
        sockopt,
    });
    stream.write_all(reply.as_bytes()).ok()
}

/// Reads one line of at most 128 bytes.
trait TakeLine {
    fn take_line(self, line: &mut String) -> bool;
}

impl<R: BufRead> TakeLine for R {
    fn take_line(self, line: &mut String) -> bool {
        matches!(self.take(128).read_line(line), Ok(n) if n > 0)
    }
}

/// getsockopt(SO_ORIGINAL_DST) on an IPv4 socket, IP6T_SO_ORIGINAL_DST on an IPv6 one.
fn original_dst(stream: &TcpStream, local: SocketAddr) -> Result<SocketAddr, Errno> {
    match local {
        SocketAddr::V4(_) => getsockopt(stream, sockopt::OriginalDst).map(|sin| {
            SocketAddr::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)).into(),
                u16::from_be(sin.sin_port),
            )
        }),
        SocketAddr::V6(_) => getsockopt(stream, sockopt::Ip6tOriginalDst).map(|sin6| {
            SocketAddr::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr).into(),
                u16::from_be(sin6.sin6_port),
            )
        }),
    }
}

fn family(a: SocketAddr) -> i32 {
    match a {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    }
}

/// One TCP socket of `at`'s family made inside `ns` and `cgroup`.
fn one_socket(ns: &NetNs, cgroup: &TestCgroup, at: SocketAddr) -> OwnedFd {
    tcp_sockets_in(ns, cgroup, family(at), 1)
        .expect("a socket inside the cgroup")
        .pop()
        .expect("one socket")
}

fn storage(a: SocketAddr) -> SockaddrStorage {
    SockaddrStorage::from(a)
}

fn listen_on(fd: OwnedFd, at: SocketAddr) -> TcpListener {
    setsockopt(&fd, sockopt::ReuseAddr, &true).expect("SO_REUSEADDR");
    bind(fd.as_raw_fd(), &storage(at)).unwrap_or_else(|e| panic!("binding {at}: {e}"));
    listen(&fd, Backlog::new(1024).expect("backlog")).expect("listen");
    TcpListener::from(fd)
}

/// What a client got: the server's name and what getpeername() said.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dialed {
    reply: String,
    peer: SocketAddr,
}

/// Connects `fd` to `target` (after setting SO_MARK to `mark`), sends the target as a line,
/// reads the one-line answer, then closes.
fn dial(fd: OwnedFd, target: SocketAddr, mark: Option<u32>) -> Result<Dialed, Errno> {
    if let Some(mark) = mark {
        setsockopt(&fd, sockopt::Mark, &mark)?;
    }
    connect(fd.as_raw_fd(), &storage(target))?;
    let peer: SockaddrStorage = getpeername(fd.as_raw_fd())?;
    let peer = match (peer.as_sockaddr_in(), peer.as_sockaddr_in6()) {
        (Some(v4), _) => SocketAddr::V4((*v4).into()),
        (_, Some(v6)) => SocketAddr::V6((*v6).into()),
        _ => return Err(Errno::EAFNOSUPPORT),
    };
    let mut stream = TcpStream::from(fd);
    let io = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    stream
        .write_all(format!("{target}\n").as_bytes())
        .map_err(io)?;
    let mut reply = String::new();
    if !BufReader::new(&stream).take_line(&mut reply) {
        return Err(Errno::ECONNRESET);
    }
    Ok(Dialed {
        reply: reply.trim_end().to_string(),
        peer,
    })
}

/// `count` sequential dials to `target` from sockets made inside `ns` and the cgroup.
fn dial_from(
    ns: &NetNs,
    cgroup: &TestCgroup,
    target: &str,
    count: usize,
    mark: Option<u32>,
) -> Vec<Result<Dialed, Errno>> {
    let target = addr(target);
    tcp_sockets_in(ns, cgroup, family(target), count)
        .expect("sockets inside the cgroup")
        .into_iter()
        .map(|fd| dial(fd, target, mark))
        .collect()
}

/// Every dial reached `name` and saw `peer` as its peer.
fn assert_all(dials: &[Result<Dialed, Errno>], name: &str, peer: &str) {
    for d in dials {
        assert_eq!(
            d,
            &Ok(Dialed {
                reply: name.into(),
                peer: addr(peer),
            })
        );
    }
}

/// One dial from a socket of the test process itself (outside the cgroup), inside `ns`.
fn outside_dial(ns: &NetNs, target: &'static str) -> String {
    ns.run(move || {
        let mut stream = TcpStream::connect(addr(target)).expect("connect from outside");
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        stream
            .write_all(format!("{target}\n").as_bytes())
            .expect("send");
        let mut reply = String::new();
        BufReader::new(&stream).take_line(&mut reply);
        reply.trim_end().to_string()
    })
    .expect("thread in the namespace")
}

/// Waits (bounded) until the original-destination map is empty.
fn wait_empty(original: &OriginalDestinations) {
    let deadline = Instant::now() + TIMEOUT;
    while !original.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} original-destination entries left after every client closed",
            original.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every connection the proxy accepted came with `vip` both ways.
fn assert_original(seen: &[Accepted], vip: &str) {
    for a in seen {
        assert_eq!(a.said, vip, "{a:?}");
        assert_eq!(a.lookup, Some(addr(vip)), "{a:?}");
        assert_eq!(a.sockopt, Ok(addr(vip)), "{a:?}");
    }
}

#[test]
fn a_proxied_vip_reaches_the_proxy_which_recovers_the_vip() {
    if !kernel_tests_enabled("a_proxied_vip_reaches_the_proxy_which_recovers_the_vip") {
        return;
    }
    let vip = "127.100.0.1:9080";
    let plan: Plan = [proxied(vip, &["127.0.1.1:9080"])].into_iter().collect();
    let fx = Fixture::with_proxy(&plan, Some(redirect(Some(PROXY4), None)));
    let original = fx.datapath.original_destinations().unwrap();
    let proxy = Server::proxy(&fx, PROXY4, original.clone());
    let _backend = Server::backend(&fx.ns, "127.0.1.1:9080", "backend");

    let dials = dial_from(&fx.ns, &fx.cgroup, vip, 20, None);
    // The client believes it talks to the VIP.
    assert_all(&dials, "proxy", vip);
    let seen = proxy.seen();
    assert_eq!(seen.len(), 20);
    assert_original(&seen, vip);
    for a in &seen {
        assert_eq!(a.local, addr(PROXY4));
    }
    wait_empty(&original);

    // Outside the cgroup nothing is redirected: the VIP itself answers.
    let _sentinel = Server::backend(&fx.ns, vip, "vip-itself");
    assert_eq!(outside_dial(&fx.ns, vip), "vip-itself");

    // `vsteer status` marks the service as the proxy's.
    let rows = status::read(fx.pins.path()).unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].proxied, "{rows:?}");
    assert!(status::render(&rows).contains("proxy"));
}

#[test]
fn ipv6_and_dual_stack_clients_are_redirected_too() {
    if !kernel_tests_enabled("ipv6_and_dual_stack_clients_are_redirected_too") {
        return;
    }
    let vip6 = "[fd00:100::1]:8080";
    let vip4 = "127.100.0.1:9080";
    let plan: Plan = [
        proxied(vip6, &["[::1]:18081"]),
        proxied(vip4, &["127.0.1.1:9080"]),
    ]
    .into_iter()
    .collect();
    let fx = Fixture::with_proxy(&plan, Some(redirect(Some(PROXY4), Some(PROXY6))));
    let original = fx.datapath.original_destinations().unwrap();
    let proxy6 = Server::proxy(&fx, PROXY6, original.clone());
    let proxy4 = Server::proxy(&fx, PROXY4, original.clone());
    let _backend = Server::backend(&fx.ns, "[::1]:18081", "backend");

    let dials = dial_from(&fx.ns, &fx.cgroup, vip6, 20, None);
    assert_all(&dials, "proxy", vip6);
    let seen = proxy6.seen();
    assert_eq!(seen.len(), 20);
    assert_original(&seen, vip6);

    // An IPv6 socket dialing the IPv4 VIP IPv4-mapped goes to the IPv4 proxy, which finds
    // the VIP under the plain IPv4 key.
    let mapped = "[::ffff:127.100.0.1]:9080";
    let dials = dial_from(&fx.ns, &fx.cgroup, mapped, 10, None);
    assert_all(&dials, "proxy", mapped);
    let seen = proxy4.seen();
    assert_eq!(seen.len(), 10);
    for a in &seen {
        assert_eq!(a.said, mapped);
        assert_eq!(a.lookup, Some(addr(vip4)), "{a:?}");
        assert_eq!(a.sockopt, Ok(addr(vip4)), "{a:?}");
    }
    wait_empty(&original);
}

#[test]
fn two_hundred_concurrent_clients_each_get_their_own_destination() {
    if !kernel_tests_enabled("two_hundred_concurrent_clients_each_get_their_own_destination") {
        return;
    }
    const CLIENTS: usize = 200;
    let vips = ["127.100.0.1:9080", "127.100.0.2:9080"];
    let plan: Plan = vips.iter().map(|v| proxied(v, &[])).collect();
    let fx = Fixture::with_proxy(&plan, Some(redirect(Some(PROXY4), None)));
    let original = fx.datapath.original_destinations().unwrap();
    // Answers none before all are established: 200 connections live at once.
    let proxy = Server::proxy_holding(&fx, PROXY4, original.clone(), CLIENTS);

    let sockets =
        tcp_sockets_in(&fx.ns, &fx.cgroup, libc::AF_INET, CLIENTS).expect("client sockets");
    let start = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, fd)| {
            let start = start.clone();
            let target = addr(vips[i % 2]);
            std::thread::spawn(move || {
                start.wait();
                (target, dial(fd, target, None))
            })
        })
        .collect();
    let mut per_vip: BTreeMap<SocketAddr, usize> = BTreeMap::new();
    for client in clients {
        let (target, dialed) = client.join().expect("client thread");
        assert_eq!(
            dialed,
            Ok(Dialed {
                reply: "proxy".into(),
                peer: target
            })
        );
        *per_vip.entry(target).or_default() += 1;
    }
    assert_eq!(per_vip.values().sum::<usize>(), CLIENTS);
    let seen = proxy.seen();
    assert_eq!(seen.len(), CLIENTS);
    // Each connection's original destination is the VIP that very client dialed.
    for a in &seen {
        let said: SocketAddr = a.said.parse().expect("the client's VIP");
        assert_eq!(a.lookup, Some(said), "{a:?}");
        assert_eq!(a.sockopt, Ok(said), "{a:?}");
    }
    let peers: std::collections::BTreeSet<_> = seen.iter().map(|a| a.peer).collect();
    assert_eq!(peers.len(), CLIENTS, "every client its own connection");
    assert_eq!(proxy.held(), CLIENTS, "one entry per live connection");
    wait_empty(&original);
}

#[test]
fn the_proxys_marked_sockets_get_the_l4_table() {
    if !kernel_tests_enabled("the_proxys_marked_sockets_get_the_l4_table") {
        return;
    }
    // frontend's one backend is reviews' VIP: the proxy, routing frontend, dials that VIP.
    let frontend = "127.100.0.1:9080";
    let reviews = "127.100.0.2:9080";
    let plan: Plan = [
        proxied(frontend, &[reviews]),
        proxied(reviews, &["127.0.1.2:9080"]),
    ]
    .into_iter()
    .collect();
    let fx = Fixture::with_proxy(&plan, Some(redirect(Some(PROXY4), None)));
    let original = fx.datapath.original_destinations().unwrap();
    let proxy = Server::proxy(&fx, PROXY4, original.clone());
    let _reviews_backend = Server::backend(&fx.ns, "127.0.1.2:9080", "reviews-backend");
    // Whoever reaches reviews' address itself got frontend's L4 table (one rewrite).
    let _reviews_vip = Server::backend(&fx.ns, reviews, "reviews-vip-itself");

    // The proxy's upstream connect to reviews: steered by reviews' L4 table, not redirected.
    let marked = dial_from(&fx.ns, &fx.cgroup, reviews, 20, Some(MARK));
    assert_all(&marked, "reviews-backend", reviews);
    // A marked connect to frontend gets frontend's L4 table too.
    let marked = dial_from(&fx.ns, &fx.cgroup, frontend, 5, Some(MARK));
    assert_all(&marked, "reviews-vip-itself", frontend);
    assert!(proxy.seen().is_empty(), "{:?}", proxy.seen());

    // Any other mark is an application's: redirected.
    let other = dial_from(&fx.ns, &fx.cgroup, reviews, 5, Some(MARK + 1));
    assert_all(&other, "proxy", reviews);
    let plain = dial_from(&fx.ns, &fx.cgroup, frontend, 5, None);
    assert_all(&plain, "proxy", frontend);
    let seen = proxy.seen();
    assert_eq!(seen.len(), 10);
    assert_original(&seen[..5], reviews);
    assert_original(&seen[5..], frontend);
    wait_empty(&original);
}

#[test]
fn a_pod_behind_a_veth_reaches_the_node_proxy_but_not_a_loopback_one() {
    if !kernel_tests_enabled("a_pod_behind_a_veth_reaches_the_node_proxy_but_not_a_loopback_one") {
        return;
    }
    let vip = "127.100.0.1:9080";
    let node_proxy = "198.18.0.1:15001";
    let plan: Plan = [proxied(vip, &["127.0.1.1:9080"])].into_iter().collect();
    let mut fx = Fixture::with_proxy(&plan, Some(redirect(Some(node_proxy), None)));
    let pod = NetNs::new().unwrap();
    let veth = Veth::pair(&fx.ns, "198.18.0.1/30", &pod, "198.18.0.2/30").unwrap();
    let original = fx.datapath.original_destinations().unwrap();
    let proxy = Server::proxy(&fx, node_proxy, original.clone());
    // Each namespace's own copy of the L4 backend: where the fallback lands.
    let _pod_backend = Server::backend(&pod, "127.0.1.1:9080", "pod-backend");
    let _node_backend = Server::backend(&fx.ns, "127.0.1.1:9080", "node-backend");

    let dials = dial_from(&pod, &fx.cgroup, vip, 20, None);
    assert_all(&dials, "proxy", vip);
    let seen = proxy.seen();
    assert_eq!(seen.len(), 20);
    assert_original(&seen, vip);
    for a in &seen {
        assert_eq!(a.peer.ip(), std::net::IpAddr::V4(veth.pod), "{a:?}");
    }
    wait_empty(&original);

    // With the proxy on the node's loopback, a pod cannot reach it: L4 in the pod, while
    // the node's own clients are redirected to it.
    fx.datapath
        .set_proxy(Some(&redirect(Some(PROXY4), None)))
        .unwrap();
    let loopback_proxy = Server::proxy(&fx, PROXY4, original.clone());
    let from_pod = dial_from(&pod, &fx.cgroup, vip, 20, None);
    assert_all(&from_pod, "pod-backend", vip);
    let from_node = dial_from(&fx.ns, &fx.cgroup, vip, 20, None);
    assert_all(&from_node, "proxy", vip);
    assert_eq!(loopback_proxy.seen().len(), 20);
    assert_original(&loopback_proxy.seen(), vip);
    assert_eq!(
        proxy.seen().len(),
        20,
        "the node-address proxy got nothing new"
    );
    wait_empty(&original);
}

#[test]
fn without_a_proxy_proxied_services_fall_back_to_l4() {
    if !kernel_tests_enabled("without_a_proxy_proxied_services_fall_back_to_l4") {
        return;
    }
    let vip = "127.100.0.1:9080";
    let empty = "127.100.0.2:9080";
    let plan: Plan = [proxied(vip, &["127.0.1.1:9080"]), proxied(empty, &[])]
        .into_iter()
        .collect();
    let mut fx = Fixture::with_proxy(&plan, Some(redirect(Some(PROXY4), None)));
    let original = fx.datapath.original_destinations().unwrap();
    let proxy = Server::proxy(&fx, PROXY4, original.clone());
    let _backend = Server::backend(&fx.ns, "127.0.1.1:9080", "backend");
    // Something listens on the empty VIP: a refused connect proves the hook refused it.
    let _sentinel = Server::backend(&fx.ns, empty, "vip-itself");

    // A proxied service without L4 backends is redirected all the same.
    assert_all(
        &dial_from(&fx.ns, &fx.cgroup, empty, 3, None),
        "proxy",
        empty,
    );

    fx.datapath.set_proxy(None).unwrap();
    assert_all(
        &dial_from(&fx.ns, &fx.cgroup, vip, 10, None),
        "backend",
        vip,
    );
    let refused = dial_from(&fx.ns, &fx.cgroup, empty, 5, None);
    assert!(
        refused.iter().all(|d| d == &Err(Errno::ECONNREFUSED)),
        "{refused:?}"
    );

    fx.datapath
        .set_proxy(Some(&redirect(Some(PROXY4), None)))
        .unwrap();
    assert_all(&dial_from(&fx.ns, &fx.cgroup, vip, 5, None), "proxy", vip);
    assert_eq!(proxy.seen().len(), 8);
    // A proxy for IPv6 only leaves IPv4 VIPs on the L4 table.
    fx.datapath
        .set_proxy(Some(&redirect(None, Some(PROXY6))))
        .unwrap();
    assert_all(&dial_from(&fx.ns, &fx.cgroup, vip, 5, None), "backend", vip);
    wait_empty(&original);
}

#[test]
fn a_connection_the_hook_did_not_redirect_has_no_original_destination() {
    if !kernel_tests_enabled("a_connection_the_hook_did_not_redirect_has_no_original_destination") {
        return;
    }
    let plan: Plan = [proxied("127.100.0.1:9080", &["127.0.1.1:9080"])]
        .into_iter()
        .collect();
    let fx = Fixture::with_proxy(&plan, Some(redirect(Some(PROXY4), Some(PROXY6))));
    let original = fx.datapath.original_destinations().unwrap();
    let proxy4 = Server::proxy(&fx, PROXY4, original.clone());
    let proxy6 = Server::proxy(&fx, PROXY6, original.clone());

    // Straight to the proxy's address, from inside the cgroup and from outside it.
    assert_all(
        &dial_from(&fx.ns, &fx.cgroup, PROXY4, 5, None),
        "proxy",
        PROXY4,
    );
    assert_all(
        &dial_from(&fx.ns, &fx.cgroup, PROXY6, 5, None),
        "proxy",
        PROXY6,
    );
    assert_eq!(outside_dial(&fx.ns, PROXY4), "proxy");
    let seen: Vec<_> = proxy4.seen().into_iter().chain(proxy6.seen()).collect();
    assert_eq!(seen.len(), 11);
    for a in &seen {
        assert_eq!(a.lookup, None, "{a:?}");
        assert!(a.sockopt.is_err(), "{a:?}");
    }
    assert!(original.is_empty());

    // Every other getsockopt on the cgroup's sockets gets the kernel's own answer, also
    // with a buffer larger than a page.
    let fd = one_socket(&fx.ns, &fx.cgroup, addr(PROXY4));
    assert_eq!(
        getsockopt(&fd, sockopt::SockType),
        Ok(nix::sys::socket::SockType::Stream)
    );
    let mut info = vec![0u8; 8192];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: the buffer and its length are valid for the kernel to write.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    assert!(len > 0 && (len as usize) < 4096, "{len}");
    // tcpi_state of a new socket: TCP_CLOSE.
    assert_eq!(info[0], 7);
}

#[test]
fn a_restarted_datapath_keeps_live_connections_original_destinations() {
    if !kernel_tests_enabled("a_restarted_datapath_keeps_live_connections_original_destinations") {
        return;
    }
    let vip = "127.100.0.1:9080";
    let plan: Plan = [proxied(vip, &["127.0.1.1:9080"])].into_iter().collect();
    let proxy = redirect(Some(PROXY4), None);
    let mut fx = Fixture::with_proxy(&plan, Some(proxy.clone()));
    let listener = listen_on(one_socket(&fx.ns, &fx.cgroup, addr(PROXY4)), addr(PROXY4));
    let client = one_socket(&fx.ns, &fx.cgroup, addr(vip));
    connect(client.as_raw_fd(), &storage(addr(vip))).expect("connect to the VIP");
    let (accepted, peer) = listener.accept().expect("the proxy accepts");
    let local = accepted.local_addr().unwrap();

    // A new agent: the programs are replaced, the pinned maps adopted.
    let options = vsteer_datapath::DatapathOptions {
        cgroup: Some(fx.cgroup.path().to_path_buf()),
        pin_dir: fx.pins.path().to_path_buf(),
        proxy: Some(proxy),
    };
    fx.datapath = fx
        .ns
        .run(move || vsteer_datapath::Datapath::start(&options))
        .unwrap()
        .expect("restart the datapath");
    fx.datapath.apply(&plan).unwrap();
    let original = fx.datapath.original_destinations().unwrap();
    assert_eq!(original.lookup(peer, local), Some(addr(vip)));
    assert_eq!(original_dst(&accepted, local), Ok(addr(vip)));
    let shown: SockaddrStorage = getpeername(client.as_raw_fd()).unwrap();
    assert_eq!(
        shown.as_sockaddr_in().map(|s| SocketAddr::V4((*s).into())),
        Some(addr(vip))
    );
    // The new sockops program deletes the entry the old one wrote.
    drop(client);
    wait_empty(&original);
    drop(accepted);
}
