//! A client that connects many times to one address from inside a network namespace and,
//! optionally, a cgroup, and records what each connect reached.
//!
//! The client is a forked child of the test process, because cgroup v2 membership is per
//! process and the test process itself must stay outside the test cgroup. The child only makes
//! async-signal-safe system calls until it exits, which is what is allowed after fork() in a
//! multi-threaded process: nix's wrappers (each one plain system call, its result turned into
//! an `Errno`) on buffers and socket addresses made before the fork; no allocation, no Rust std
//! I/O; it leaves with `_exit`.
use std::{
    collections::BTreeMap,
    fs::File,
    io::Read,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nix::{
    errno::Errno,
    fcntl::OFlag,
    libc,
    poll::{PollFd, PollFlags, PollTimeout, poll},
    sched::{CloneFlags, CpuSet, sched_setaffinity, setns},
    sys::{
        signal::{Signal, kill},
        socket::{
            AddressFamily, MsgFlags, SockFlag, SockType, SockaddrIn, SockaddrIn6, SockaddrLike,
            SockaddrStorage, connect, getpeername, recvfrom, send, sendto, setsockopt, socket,
            sockopt,
        },
        time::TimeVal,
        wait::{WaitStatus, waitpid},
    },
    unistd::{ForkResult, Pid, fork, pipe2, read, write},
};

use crate::{NetNs, TestCgroup, monotonic_ns};

/// One connect, as the child reports it over the pipe: errno, peer, reply, timestamp.
const RECORD: usize = 72;
const REPLY_MAX: usize = 40;
/// Per-socket send/receive timeout, so a lost connect cannot stall a test.
const SOCKET_TIMEOUT: TimeVal = TimeVal::new(5, 0);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// Got a reply; `reply` is the backend's name, `peer` what getpeername() returned (TCP)
    /// or where the reply came from (UDP).
    Reached { reply: String, peer: SocketAddr },
    /// The call failed with this errno.
    Failed { errno: i32 },
}

/// How the client talks to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// connect(), read the one-line reply, close.
    Tcp,
    /// connect() a UDP socket, send a datagram, receive the reply.
    UdpConnected,
    /// sendto() the target from an unconnected UDP socket, recvfrom() the reply.
    UdpUnconnected,
}

#[derive(Debug, Default)]
pub struct ConnectReport {
    pub outcomes: Vec<ConnectOutcome>,
    /// When each call finished, on the monotonic clock (comparable with `Instant`), in ns.
    pub times_ns: Vec<u64>,
}

impl ConnectReport {
    /// How many connects reached each backend, by the name it answered with.
    pub fn replies(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for outcome in &self.outcomes {
            if let ConnectOutcome::Reached { reply, .. } = outcome {
                *counts.entry(reply.clone()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Failed connects, by errno.
    pub fn failures(&self) -> BTreeMap<i32, u64> {
        let mut counts = BTreeMap::new();
        for outcome in &self.outcomes {
            if let ConnectOutcome::Failed { errno } = outcome {
                *counts.entry(*errno).or_insert(0) += 1;
            }
        }
        counts
    }
}

/// Connects `count` times to `target` over TCP; see [`probe_many`].
pub fn connect_many(
    ns: &NetNs,
    cgroup: Option<&TestCgroup>,
    target: SocketAddr,
    count: u32,
    deadline: Duration,
) -> Result<ConnectReport> {
    probe_many(ns, cgroup, target, Probe::Tcp, count, deadline)
}

/// Talks `count` times to `target` from a child process inside `ns` (and inside `cgroup`,
/// when given), recording each backend's one-line answer. Bounded: at most `count` calls,
/// each limited by a socket timeout, and the whole run by `deadline`.
pub fn probe_many(
    ns: &NetNs,
    cgroup: Option<&TestCgroup>,
    target: SocketAddr,
    probe: Probe,
    count: u32,
    deadline: Duration,
) -> Result<ConnectReport> {
    probe_many_on(ns, cgroup, target, probe, count, deadline, None)
}

/// [`probe_many`] with the client pinned to one CPU (for benchmarks).
pub fn probe_many_on(
    ns: &NetNs,
    cgroup: Option<&TestCgroup>,
    target: SocketAddr,
    probe: Probe,
    count: u32,
    deadline: Duration,
    cpu: Option<usize>,
) -> Result<ConnectReport> {
    probe_cycle_on(ns, cgroup, &[target], probe, count, deadline, cpu)
}

/// Most targets one client cycles through.
pub const MAX_TARGETS: usize = 8;

/// [`probe_many_on`] cycling through up to [`MAX_TARGETS`] targets: call i goes to
/// `targets[i % len]` (e.g. straight to each backend in turn, as a baseline).
pub fn probe_cycle_on(
    ns: &NetNs,
    cgroup: Option<&TestCgroup>,
    targets: &[SocketAddr],
    probe: Probe,
    count: u32,
    deadline: Duration,
    cpu: Option<usize>,
) -> Result<ConnectReport> {
    if targets.is_empty() || targets.len() > MAX_TARGETS {
        bail!(
            "a client takes 1 to {MAX_TARGETS} targets, not {}",
            targets.len()
        );
    }
    let mut addrs = [Target::new(targets[0]); MAX_TARGETS];
    for (slot, target) in addrs.iter_mut().zip(targets) {
        *slot = Target::new(*target);
    }
    let n = targets.len();
    let bytes = in_child(ns, cgroup, cpu, deadline, move |out| {
        child_probe(out, &addrs[..n], probe, count)
    })?;
    Ok(ConnectReport {
        outcomes: bytes.chunks_exact(RECORD).map(decode).collect(),
        times_ns: bytes
            .chunks_exact(RECORD)
            .map(|r| u64::from_le_bytes(r[64..72].try_into().unwrap_or_default()))
            .collect(),
    })
}

/// Connects once to `target` (from inside `ns` and `cgroup`, pinned to `cpu`) and reads for
/// `seconds`; returns the bytes per second received (None when the connect failed).
pub fn stream_bytes(
    ns: &NetNs,
    cgroup: Option<&TestCgroup>,
    target: SocketAddr,
    seconds: u32,
    cpu: Option<usize>,
) -> Result<Option<f64>> {
    let target = Target::new(target);
    let deadline = Duration::from_secs(u64::from(seconds) + 30);
    let bytes = in_child(ns, cgroup, cpu, deadline, move |out| {
        child_stream(out, &target, seconds)
    })?;
    let word = |i: usize| -> Option<u64> {
        Some(u64::from_le_bytes(bytes.get(i..i + 8)?.try_into().ok()?))
    };
    Ok(match (word(0), word(8)) {
        (Some(total), Some(elapsed)) if total != u64::MAX && elapsed > 0 => {
            Some(total as f64 * 1e9 / elapsed as f64)
        }
        _ => None,
    })
}

/// Forks a child that enters `ns` and `cgroup`, pins itself to `cpu`, runs `work` with the
/// write end of a pipe and exits; returns what it wrote. The child is killed (by pid) at the
/// deadline.
fn in_child(
    ns: &NetNs,
    cgroup: Option<&TestCgroup>,
    cpu: Option<usize>,
    deadline: Duration,
    work: impl FnOnce(BorrowedFd<'_>),
) -> Result<Vec<u8>> {
    let procs = cgroup.map(TestCgroup::procs_file).transpose()?;
    let cpus = cpu
        .map(|cpu| {
            let mut set = CpuSet::new();
            set.set(cpu)
                .map(|()| set)
                .with_context(|| format!("CPU {cpu} does not fit in a CPU set"))
        })
        .transpose()?;
    let (reader, writer) = pipe2(OFlag::O_CLOEXEC).context("pipe2")?;
    let mut reader = File::from(reader);
    // SAFETY: the child only makes async-signal-safe calls and leaves with _exit (see the
    // module comment); everything it touches was made above.
    let pid = match unsafe { fork() }.context("fork")? {
        ForkResult::Parent { child } => child,
        ForkResult::Child => {
            if setns(ns.fd(), CloneFlags::CLONE_NEWNET).is_err() {
                child_exit(101);
            }
            if let Some(procs) = &procs
                && write(procs, b"0") != Ok(1)
            {
                child_exit(102);
            }
            if let Some(set) = &cpus
                && sched_setaffinity(Pid::from_raw(0), set).is_err()
            {
                child_exit(104);
            }
            work(writer.as_fd());
            // The work functions exit themselves; this only guards against a return.
            child_exit(105)
        }
    };
    drop(writer);
    let bytes = read_until(&mut reader, pid, Instant::now() + deadline);
    let status = wait(pid)?;
    let bytes = bytes?;
    if status != 0 {
        bail!(
            "client process failed with exit code {status} ({})",
            exit_meaning(status)
        );
    }
    Ok(bytes)
}

/// Ends the forked child at once: no destructors, no atexit handlers, no stdio flush.
fn child_exit(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and touches no state of the process. nix has no
    // wrapper for it (its own fork docs call libc::_exit, through its re-export).
    unsafe { libc::_exit(code) }
}

fn exit_meaning(code: i32) -> &'static str {
    match code {
        101 => "could not enter the network namespace",
        102 => "could not join the cgroup",
        103 => "could not write to the result pipe",
        104 => "could not pin itself to the CPU",
        _ => "unexpected",
    }
}

/// A target's socket address with its exact length (sockaddr_in or sockaddr_in6), made
/// before the fork.
#[derive(Clone, Copy)]
enum Target {
    V4(SockaddrIn),
    V6(SockaddrIn6),
}

impl Target {
    fn new(addr: SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(a) => Self::V4(a.into()),
            SocketAddr::V6(a) => Self::V6(a.into()),
        }
    }

    fn family(&self) -> AddressFamily {
        match self {
            Self::V4(_) => AddressFamily::Inet,
            Self::V6(_) => AddressFamily::Inet6,
        }
    }

    fn addr(&self) -> &dyn SockaddrLike {
        match self {
            Self::V4(a) => a,
            Self::V6(a) => a,
        }
    }
}

/// The child's work: make `count` calls, write one record per call to the pipe, exit.
/// No allocation, no Rust std I/O.
fn child_probe(out: BorrowedFd<'_>, targets: &[Target], probe: Probe, count: u32) -> ! {
    let kind = if probe == Probe::Tcp {
        SockType::Stream
    } else {
        SockType::Datagram
    };
    for i in 0..count as usize {
        let mut record = [0u8; RECORD];
        if let Err(errno) = probe_once(&targets[i % targets.len()], kind, probe, &mut record) {
            record[..4].copy_from_slice(&(errno as i32).to_le_bytes());
        }
        record[64..72].copy_from_slice(&monotonic_ns().to_le_bytes());
        let mut written = 0;
        while written < RECORD {
            match write(out, &record[written..]) {
                Ok(n) if n > 0 => written += n,
                _ => child_exit(103),
            }
        }
    }
    child_exit(0)
}

/// One call to `target` on a new socket (closed on return): fills in the record's peer and
/// reply, or fails with the errno of the call that failed.
fn probe_once(
    target: &Target,
    kind: SockType,
    probe: Probe,
    record: &mut [u8; RECORD],
) -> nix::Result<()> {
    let fd = socket(target.family(), kind, SockFlag::SOCK_CLOEXEC, None)?;
    let _ = setsockopt(&fd, sockopt::ReceiveTimeout, &SOCKET_TIMEOUT);
    let _ = setsockopt(&fd, sockopt::SendTimeout, &SOCKET_TIMEOUT);
    let raw = fd.as_raw_fd();
    match probe {
        Probe::Tcp => {
            connect(raw, target.addr())?;
            if let Ok(peer) = getpeername::<SockaddrStorage>(raw) {
                fill_peer(&peer, record);
            }
            fill_reply(fd.as_fd(), record);
            // Close with a reset: the backend closed first and would keep the connection in
            // TIME_WAIT for a minute; a reset ends that, so thousands of short connections
            // cannot run into their own past (behind a DNAT, the client's port choice cannot
            // see it).
            let reset = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            let _ = setsockopt(&fd, sockopt::Linger, &reset);
        }
        Probe::UdpConnected => {
            connect(raw, target.addr())?;
            sent_one(send(raw, b"?", MsgFlags::empty()))?;
            receive_datagram(raw, record)?;
        }
        Probe::UdpUnconnected => {
            sent_one(sendto(raw, b"?", target.addr(), MsgFlags::empty()))?;
            receive_datagram(raw, record)?;
        }
    }
    Ok(())
}

/// A one-byte send that did not send exactly one byte fails with the errno left set, as
/// before the move to nix (a datagram is sent whole or not at all, so this does not happen).
fn sent_one(sent: nix::Result<usize>) -> nix::Result<()> {
    match sent? {
        1 => Ok(()),
        _ => Err(Errno::last()),
    }
}

/// The child's work: one connection, read for `seconds`, write the byte count (u64::MAX when
/// the connect failed) and the nanoseconds it read for, exit.
fn child_stream(out: BorrowedFd<'_>, target: &Target, seconds: u32) -> ! {
    let mut total: u64 = u64::MAX;
    let mut elapsed: u64 = 0;
    let stream = socket(
        target.family(),
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    );
    if let Ok(fd) = stream
        && connect(fd.as_raw_fd(), target.addr()).is_ok()
    {
        total = 0;
        let mut buf = [0u8; 65536];
        let start = monotonic_ns();
        let end = start + u64::from(seconds) * 1_000_000_000;
        loop {
            match read(&fd, &mut buf) {
                Ok(n) if n > 0 => total += n as u64,
                _ => break,
            }
            elapsed = monotonic_ns() - start;
            if start + elapsed >= end {
                break;
            }
        }
    }
    let mut record = [0u8; 16];
    record[..8].copy_from_slice(&total.to_le_bytes());
    record[8..].copy_from_slice(&elapsed.to_le_bytes());
    if write(out, &record) != Ok(16) {
        child_exit(103);
    }
    child_exit(0)
}

/// recvfrom() one datagram: the reply and the address it came from.
fn receive_datagram(fd: std::os::fd::RawFd, record: &mut [u8; RECORD]) -> nix::Result<()> {
    let (n, from) = recvfrom::<SockaddrStorage>(fd, &mut record[24..24 + REPLY_MAX])?;
    record[23] = n as u8;
    if let Some(from) = from {
        fill_peer(&from, record);
    }
    Ok(())
}

/// Record bytes 4..=22: family (4 or 6), 16 address bytes, port (big endian).
fn fill_peer(peer: &SockaddrStorage, record: &mut [u8; RECORD]) {
    if let Some(sin) = peer.as_sockaddr_in() {
        record[4] = 4;
        record[5..9].copy_from_slice(&sin.ip().octets());
        record[21..23].copy_from_slice(&sin.port().to_be_bytes());
    } else if let Some(sin6) = peer.as_sockaddr_in6() {
        record[4] = 6;
        record[5..21].copy_from_slice(&sin6.ip().octets());
        record[21..23].copy_from_slice(&sin6.port().to_be_bytes());
    }
}

/// Record byte 23: reply length; bytes 24..: the reply up to its newline.
fn fill_reply(fd: BorrowedFd<'_>, record: &mut [u8; RECORD]) {
    let mut got = 0usize;
    // A one-line reply normally comes in one read; a few more cover a split segment.
    for _ in 0..4 {
        let buf = &mut record[24 + got..24 + REPLY_MAX];
        if buf.is_empty() {
            break;
        }
        match read(fd, buf) {
            Ok(n) if n > 0 => got += n,
            _ => break,
        }
        if record[24..24 + got].contains(&b'\n') {
            break;
        }
    }
    record[23] = got as u8;
}

fn decode(record: &[u8]) -> ConnectOutcome {
    let errno = i32::from_le_bytes([record[0], record[1], record[2], record[3]]);
    if errno != 0 {
        return ConnectOutcome::Failed { errno };
    }
    let port = u16::from_be_bytes([record[21], record[22]]);
    let ip = match record[4] {
        6 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&record[5..21]);
            IpAddr::V6(Ipv6Addr::from(a))
        }
        4 => IpAddr::V4(Ipv4Addr::new(record[5], record[6], record[7], record[8])),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    let len = usize::from(record[23]).min(REPLY_MAX);
    let reply = String::from_utf8_lossy(&record[24..24 + len]);
    ConnectOutcome::Reached {
        reply: reply.trim_end_matches('\n').to_string(),
        peer: SocketAddr::new(ip, port),
    }
}

/// Reads the child's records until it closes the pipe; kills it (by pid) at the deadline.
fn read_until(reader: &mut File, pid: Pid, deadline: Instant) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 64 * RECORD];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = kill(pid, Signal::SIGKILL);
            bail!("client did not finish before its deadline; killed pid {pid}");
        }
        let ms = u16::try_from(left.as_millis().min(1000)).unwrap_or(1000);
        let mut pfd = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
        if !matches!(poll(&mut pfd, PollTimeout::from(ms)), Ok(n) if n > 0) {
            continue;
        }
        let n = reader.read(&mut chunk).context("reading client results")?;
        if n == 0 {
            return Ok(bytes);
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
}

fn wait(pid: Pid) -> Result<i32> {
    match waitpid(pid, None).context("waitpid")? {
        WaitStatus::Exited(_, code) => Ok(code),
        WaitStatus::Signaled(_, signal, _) => bail!("client process {pid} died from {signal}"),
        other => bail!("client process {pid} did not exit: {other:?}"),
    }
}
