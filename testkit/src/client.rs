//! A client that connects many times to one address from inside a network namespace and,
//! optionally, a cgroup, and records what each connect reached.
//!
//! The client is a forked child of the test process, because cgroup v2 membership is per
//! process and the test process itself must stay outside the test cgroup. The child runs only
//! async-signal-safe libc calls (no allocation) until it exits, which is what is allowed after
//! fork() in a multi-threaded process.
use std::{
    collections::BTreeMap,
    fs::File,
    io::Read,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd, FromRawFd},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{NetNs, TestCgroup, last_os_error};

/// One connect, as the child reports it over the pipe: errno, peer, reply, timestamp.
const RECORD: usize = 72;
const REPLY_MAX: usize = 40;
/// Per-socket send/receive timeout, so a lost connect cannot stall a test.
const SOCKET_TIMEOUT_S: libc::time_t = 5;

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
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut addrs = [(unsafe { std::mem::zeroed::<libc::sockaddr_storage>() }, 0); MAX_TARGETS];
    for (slot, target) in addrs.iter_mut().zip(targets) {
        *slot = sockaddr(*target);
    }
    let n = targets.len();
    let bytes = in_child(ns, cgroup, cpu, deadline, move |out| {
        // SAFETY: in the forked child, see the module comment.
        unsafe { child_probe(out, &addrs[..n], probe, count) }
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
    let (storage, len) = sockaddr(target);
    let deadline = Duration::from_secs(u64::from(seconds) + 30);
    let bytes = in_child(ns, cgroup, cpu, deadline, move |out| {
        // SAFETY: in the forked child, see the module comment.
        unsafe { child_stream(out, &storage, len, seconds) }
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
    work: impl FnOnce(libc::c_int),
) -> Result<Vec<u8>> {
    let procs = cgroup.map(TestCgroup::procs_file).transpose()?;
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(last_os_error("pipe2"));
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (mut reader, writer) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    let ns_fd = ns.fd().as_raw_fd();
    let procs_fd = procs.as_ref().map(|f| f.as_raw_fd());
    // SAFETY: the child only makes async-signal-safe calls and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(last_os_error("fork"));
    }
    if pid == 0 {
        // SAFETY: in the child: raw syscalls only.
        unsafe {
            if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                libc::_exit(101);
            }
            if let Some(fd) = procs_fd
                && libc::write(fd, b"0".as_ptr().cast(), 1) != 1
            {
                libc::_exit(102);
            }
            if let Some(cpu) = cpu {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
                    libc::_exit(104);
                }
            }
        }
        work(writer.as_raw_fd());
        // SAFETY: the work functions exit themselves; this only guards against a return.
        unsafe { libc::_exit(105) }
    }
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

fn exit_meaning(code: i32) -> &'static str {
    match code {
        101 => "could not enter the network namespace",
        102 => "could not join the cgroup",
        103 => "could not write to the result pipe",
        104 => "could not pin itself to the CPU",
        _ => "unexpected",
    }
}

fn sockaddr(target: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match target {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
            unsafe { std::ptr::write(std::ptr::addr_of_mut!(storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: as above.
            unsafe { std::ptr::write(std::ptr::addr_of_mut!(storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// The child's work: make `count` calls, write one record per call to the pipe, exit.
/// No allocation, no Rust std I/O.
unsafe fn child_probe(
    out: libc::c_int,
    targets: &[(libc::sockaddr_storage, libc::socklen_t)],
    probe: Probe,
    count: u32,
) -> ! {
    unsafe {
        let timeout = libc::timeval {
            tv_sec: SOCKET_TIMEOUT_S,
            tv_usec: 0,
        };
        let kind = if probe == Probe::Tcp {
            libc::SOCK_STREAM
        } else {
            libc::SOCK_DGRAM
        };
        for i in 0..count as usize {
            let (target, len) = &targets[i % targets.len()];
            let len = *len;
            let family = target.ss_family as libc::c_int;
            let target_ptr = (target as *const libc::sockaddr_storage).cast::<libc::sockaddr>();
            let mut record = [0u8; RECORD];
            let fd = libc::socket(family, kind | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                set_errno(&mut record);
            } else {
                for opt in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
                    libc::setsockopt(
                        fd,
                        libc::SOL_SOCKET,
                        opt,
                        std::ptr::addr_of!(timeout).cast(),
                        size_of::<libc::timeval>() as libc::socklen_t,
                    );
                }
                match probe {
                    Probe::Tcp => {
                        if libc::connect(fd, target_ptr, len) != 0 {
                            set_errno(&mut record);
                        } else {
                            let mut peer: libc::sockaddr_storage = std::mem::zeroed();
                            let mut plen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                            if libc::getpeername(fd, std::ptr::addr_of_mut!(peer).cast(), &mut plen)
                                == 0
                            {
                                fill_peer(&peer, &mut record);
                            }
                            fill_reply(fd, &mut record);
                            // Close with a reset: the backend closed first and would keep the
                            // connection in TIME_WAIT for a minute; a reset ends that, so
                            // thousands of short connections cannot run into their own past
                            // (behind a DNAT, the client's port choice cannot see it).
                            let linger = libc::linger {
                                l_onoff: 1,
                                l_linger: 0,
                            };
                            libc::setsockopt(
                                fd,
                                libc::SOL_SOCKET,
                                libc::SO_LINGER,
                                std::ptr::addr_of!(linger).cast(),
                                size_of::<libc::linger>() as libc::socklen_t,
                            );
                        }
                    }
                    Probe::UdpConnected => {
                        if libc::connect(fd, target_ptr, len) != 0
                            || libc::send(fd, b"?".as_ptr().cast(), 1, 0) != 1
                        {
                            set_errno(&mut record);
                        } else {
                            receive_datagram(fd, &mut record);
                        }
                    }
                    Probe::UdpUnconnected => {
                        if libc::sendto(fd, b"?".as_ptr().cast(), 1, 0, target_ptr, len) != 1 {
                            set_errno(&mut record);
                        } else {
                            receive_datagram(fd, &mut record);
                        }
                    }
                }
                libc::close(fd);
            }
            let mut now: libc::timespec = std::mem::zeroed();
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
            let ns = (now.tv_sec as u64) * 1_000_000_000 + now.tv_nsec as u64;
            record[64..72].copy_from_slice(&ns.to_le_bytes());
            let mut written = 0;
            while written < RECORD {
                let n = libc::write(out, record[written..].as_ptr().cast(), RECORD - written);
                if n <= 0 {
                    libc::_exit(103);
                }
                written += n as usize;
            }
        }
        libc::_exit(0)
    }
}

/// The child's work: one connection, read for `seconds`, write the byte count (u64::MAX when
/// the connect failed) and the nanoseconds it read for, exit.
unsafe fn child_stream(
    out: libc::c_int,
    target: &libc::sockaddr_storage,
    len: libc::socklen_t,
    seconds: u32,
) -> ! {
    unsafe fn now_ns() -> u64 {
        let mut now: libc::timespec = unsafe { std::mem::zeroed() };
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
        (now.tv_sec as u64) * 1_000_000_000 + now.tv_nsec as u64
    }
    unsafe {
        let mut total: u64 = u64::MAX;
        let mut elapsed: u64 = 0;
        let fd = libc::socket(
            target.ss_family as libc::c_int,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
        );
        if fd >= 0 && libc::connect(fd, (target as *const libc::sockaddr_storage).cast(), len) == 0
        {
            total = 0;
            let mut buf = [0u8; 65536];
            let start = now_ns();
            let end = start + u64::from(seconds) * 1_000_000_000;
            loop {
                let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                if n <= 0 {
                    break;
                }
                total += n as u64;
                elapsed = now_ns() - start;
                if start + elapsed >= end {
                    break;
                }
            }
        }
        let mut record = [0u8; 16];
        record[..8].copy_from_slice(&total.to_le_bytes());
        record[8..].copy_from_slice(&elapsed.to_le_bytes());
        if libc::write(out, record.as_ptr().cast(), record.len()) != 16 {
            libc::_exit(103);
        }
        libc::_exit(0)
    }
}

unsafe fn set_errno(record: &mut [u8; RECORD]) {
    let errno = unsafe { *libc::__errno_location() };
    record[..4].copy_from_slice(&errno.to_le_bytes());
}

/// recvfrom() one datagram: the reply and the address it came from.
unsafe fn receive_datagram(fd: libc::c_int, record: &mut [u8; RECORD]) {
    unsafe {
        let mut from: libc::sockaddr_storage = std::mem::zeroed();
        let mut flen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let buf = &mut record[24..24 + REPLY_MAX];
        let n = libc::recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
            std::ptr::addr_of_mut!(from).cast(),
            &mut flen,
        );
        if n < 0 {
            set_errno(record);
            return;
        }
        record[23] = n as u8;
        fill_peer(&from, record);
    }
}

/// Record bytes 4..=22: family (4 or 6), 16 address bytes, port (big endian).
unsafe fn fill_peer(peer: &libc::sockaddr_storage, record: &mut [u8; RECORD]) {
    unsafe {
        match peer.ss_family as libc::c_int {
            libc::AF_INET => {
                let sin = &*std::ptr::addr_of!(*peer).cast::<libc::sockaddr_in>();
                record[4] = 4;
                record[5..9].copy_from_slice(&sin.sin_addr.s_addr.to_ne_bytes());
                record[21..23].copy_from_slice(&sin.sin_port.to_ne_bytes());
            }
            libc::AF_INET6 => {
                let sin6 = &*std::ptr::addr_of!(*peer).cast::<libc::sockaddr_in6>();
                record[4] = 6;
                record[5..21].copy_from_slice(&sin6.sin6_addr.s6_addr);
                record[21..23].copy_from_slice(&sin6.sin6_port.to_ne_bytes());
            }
            _ => {}
        }
    }
}

/// Record byte 23: reply length; bytes 24..: the reply up to its newline.
unsafe fn fill_reply(fd: libc::c_int, record: &mut [u8; RECORD]) {
    unsafe {
        let mut got = 0usize;
        // A one-line reply normally comes in one read; a few more cover a split segment.
        for _ in 0..4 {
            let buf = &mut record[24 + got..24 + REPLY_MAX];
            if buf.is_empty() {
                break;
            }
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            if n <= 0 {
                break;
            }
            got += n as usize;
            if record[24..24 + got].contains(&b'\n') {
                break;
            }
        }
        record[23] = got as u8;
    }
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
fn read_until(reader: &mut File, pid: libc::pid_t, deadline: Instant) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 64 * RECORD];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            bail!("client did not finish before its deadline; killed pid {pid}");
        }
        let mut pfd = libc::pollfd {
            fd: reader.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(1000) as libc::c_int;
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
            continue;
        }
        let n = reader.read(&mut chunk).context("reading client results")?;
        if n == 0 {
            return Ok(bytes);
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
}

fn wait(pid: libc::pid_t) -> Result<i32> {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(last_os_error("waitpid"));
    }
    if libc::WIFEXITED(status) {
        Ok(libc::WEXITSTATUS(status))
    } else {
        bail!(
            "client process {pid} died from signal {}",
            libc::WTERMSIG(status)
        )
    }
}
