//! Backends that answer every TCP connection or UDP datagram with their own name and a
//! newline, so a client can tell which backend it reached.
use std::{
    io::Write,
    net::{SocketAddr, TcpListener, UdpSocket},
    os::fd::{AsFd, BorrowedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
};

use anyhow::{Context, Result};
use nix::{
    poll::{PollFd, PollFlags, PollTimeout, poll},
    sched::{CpuSet, sched_setaffinity},
    unistd::Pid,
};

use crate::NetNs;

/// How long a serving loop waits before looking at its stop flag again, in ms.
const POLL_MS: u16 = 50;

/// A serving thread, stopped (by its flag, then joined) on drop.
pub struct Backend {
    name: String,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

enum Socket {
    Tcp(TcpListener),
    Udp(UdpSocket),
    /// Streams zeros to every connection until it closes.
    Stream(TcpListener),
}

impl Backend {
    /// Listens for TCP on `addr` inside `ns`; each connection gets `name` and is closed.
    pub fn tcp(ns: &NetNs, addr: SocketAddr, name: &str) -> Result<Self> {
        let listener = ns
            .run(move || TcpListener::bind(addr))?
            .with_context(|| format!("binding TCP backend {addr}"))?;
        Ok(Self::serve(Socket::Tcp(listener), addr, name, None))
    }

    /// [`Backend::tcp`] with the serving thread pinned to `cpu` (for benchmarks).
    pub fn tcp_on(ns: &NetNs, addr: SocketAddr, name: &str, cpu: usize) -> Result<Self> {
        let listener = ns
            .run(move || TcpListener::bind(addr))?
            .with_context(|| format!("binding TCP backend {addr}"))?;
        Ok(Self::serve(Socket::Tcp(listener), addr, name, Some(cpu)))
    }

    /// Receives UDP datagrams on `addr` inside `ns`; each gets `name` back.
    pub fn udp(ns: &NetNs, addr: SocketAddr, name: &str) -> Result<Self> {
        let socket = ns
            .run(move || UdpSocket::bind(addr))?
            .with_context(|| format!("binding UDP backend {addr}"))?;
        Ok(Self::serve(Socket::Udp(socket), addr, name, None))
    }

    /// Listens for TCP on `addr` inside `ns` and streams to every connection without end
    /// (until the client closes or the backend stops): for throughput measurements.
    pub fn stream(ns: &NetNs, addr: SocketAddr) -> Result<Self> {
        Self::stream_with(ns, addr, None)
    }

    /// [`Backend::stream`] with the serving and writing threads pinned to `cpu`.
    pub fn stream_on(ns: &NetNs, addr: SocketAddr, cpu: usize) -> Result<Self> {
        Self::stream_with(ns, addr, Some(cpu))
    }

    fn stream_with(ns: &NetNs, addr: SocketAddr, cpu: Option<usize>) -> Result<Self> {
        let listener = ns
            .run(move || TcpListener::bind(addr))?
            .with_context(|| format!("binding streaming backend {addr}"))?;
        Ok(Self::serve(Socket::Stream(listener), addr, "stream", cpu))
    }

    fn serve(socket: Socket, addr: SocketAddr, name: &str, cpu: Option<usize>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let reply = format!("{name}\n").into_bytes();
        let thread = {
            let (stop, served) = (stop.clone(), served.clone());
            std::thread::spawn(move || {
                if let Some(cpu) = cpu {
                    pin_current_thread(cpu);
                }
                serve_until(&socket, &reply, &stop, &served, cpu)
            })
        };
        Self {
            name: name.to_string(),
            addr,
            stop,
            served,
            thread: Some(thread),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections (TCP) or datagrams (UDP) answered so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_until(
    socket: &Socket,
    reply: &[u8],
    stop: &AtomicBool,
    served: &AtomicU64,
    cpu: Option<usize>,
) {
    let fd: BorrowedFd<'_> = match socket {
        Socket::Tcp(l) | Socket::Stream(l) => l.as_fd(),
        Socket::Udp(u) => u.as_fd(),
    };
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        let mut pfd = [PollFd::new(fd, PollFlags::POLLIN)];
        if !matches!(poll(&mut pfd, PollTimeout::from(POLL_MS)), Ok(n) if n > 0) {
            continue;
        }
        // A client that already left is not the backend's problem: errors are ignored.
        match socket {
            Socket::Tcp(listener) => {
                if let Ok((mut stream, _)) = listener.accept() {
                    served.fetch_add(1, Ordering::Relaxed);
                    let _ = stream.write_all(reply);
                }
            }
            Socket::Stream(listener) => {
                if let Ok((mut stream, _)) = listener.accept() {
                    served.fetch_add(1, Ordering::Relaxed);
                    let chunk = vec![0u8; 1 << 16];
                    // Ends when the client closes (write error); bounded by the client.
                    std::thread::spawn(move || {
                        if let Some(cpu) = cpu {
                            pin_current_thread(cpu);
                        }
                        while stream.write_all(&chunk).is_ok() {}
                    });
                }
            }
            Socket::Udp(udp) => {
                if let Ok((_, from)) = udp.recv_from(&mut buf) {
                    served.fetch_add(1, Ordering::Relaxed);
                    let _ = udp.send_to(reply, from);
                }
            }
        }
    }
}

/// Pins the calling thread to one CPU; a failure only costs measurement quality.
fn pin_current_thread(cpu: usize) {
    let mut set = CpuSet::new();
    if set.set(cpu).is_ok() {
        let _ = sched_setaffinity(Pid::from_raw(0), &set);
    }
}
