//! A TCP backend that answers every connection with its own name and a newline, so a client
//! can tell which backend it reached.
use std::{
    io::Write,
    net::{SocketAddr, TcpListener},
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
};

use anyhow::{Context, Result};

use crate::NetNs;

/// How long the accept loop waits before looking at its stop flag again.
const POLL_MS: i32 = 50;

pub struct TcpBackend {
    name: String,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl TcpBackend {
    /// Listens on `addr` inside `ns` and answers with `name`.
    pub fn start(ns: &NetNs, addr: SocketAddr, name: &str) -> Result<Self> {
        let listener = ns
            .run(move || TcpListener::bind(addr))?
            .with_context(|| format!("binding backend {addr}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let reply = format!("{name}\n").into_bytes();
        let thread = {
            let (stop, accepted) = (stop.clone(), accepted.clone());
            std::thread::spawn(move || serve(&listener, &reply, &stop, &accepted))
        };
        Ok(Self {
            name: name.to_string(),
            addr,
            stop,
            accepted,
            thread: Some(thread),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    listener: &TcpListener,
    reply: &[u8],
    stop: &AtomicBool,
    accepted: &AtomicU64,
) -> Result<()> {
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, POLL_MS) };
        if ready <= 0 {
            continue;
        }
        if let Ok((mut stream, _)) = listener.accept() {
            accepted.fetch_add(1, Ordering::Relaxed);
            // A client that already left is not the backend's problem.
            let _ = stream.write_all(reply);
        }
    }
    Ok(())
}
