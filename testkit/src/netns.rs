//! A private network namespace with only a loopback interface (all of 127.0.0.0/8 and ::1).
//!
//! The namespace has no name in /run/netns: it lives as long as the file descriptor this type
//! holds, so nothing is left behind even if the test process dies.
use std::{
    fs::File,
    os::fd::{AsFd, AsRawFd},
    thread,
};

use anyhow::{Context, Result, bail};

use crate::last_os_error;

pub struct NetNs {
    fd: File,
}

impl NetNs {
    /// Creates the namespace and brings its loopback interface up.
    pub fn new() -> Result<Self> {
        // unshare() moves the calling thread only, so do it on a thread of its own.
        let fd = thread::spawn(|| -> Result<File> {
            // SAFETY: plain syscall; affects this short-lived thread only.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(last_os_error("unshare(CLONE_NEWNET)"));
            }
            loopback_up()?;
            File::open("/proc/thread-self/ns/net").context("opening the new network namespace")
        })
        .join()
        .map_err(|_| anyhow::anyhow!("network namespace thread panicked"))??;
        Ok(Self { fd })
    }

    /// Moves the calling thread into this namespace: sockets it creates from now on live here.
    pub fn enter(&self) -> Result<()> {
        // SAFETY: valid namespace fd; affects the calling thread only.
        if unsafe { libc::setns(self.fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(last_os_error("setns(CLONE_NEWNET)"));
        }
        Ok(())
    }

    /// Runs `f` on a new thread inside the namespace and returns its result.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        self.spawn(f)?
            .join()
            .map_err(|_| anyhow::anyhow!("thread inside the network namespace panicked"))?
    }

    /// Starts `f` on a new thread inside the namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<thread::JoinHandle<Result<T>>> {
        let ns = self
            .fd
            .try_clone()
            .context("duplicating the namespace fd")?;
        Ok(thread::spawn(move || -> Result<T> {
            // SAFETY: valid namespace fd; affects this thread only.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(last_os_error("setns(CLONE_NEWNET)"));
            }
            drop(ns);
            Ok(f())
        }))
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `ip link set lo up`, by ioctl, in the calling thread's namespace.
fn loopback_up() -> Result<()> {
    // SAFETY: a socket used only for the interface ioctls below, closed at the end.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(last_os_error("socket for interface ioctl"));
    }
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    let result = (|| {
        // SAFETY: req is a valid ifreq naming "lo".
        if unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) } != 0 {
            return Err(last_os_error("SIOCGIFFLAGS lo"));
        }
        unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
        if unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) } != 0 {
            return Err(last_os_error("SIOCSIFFLAGS lo up"));
        }
        Ok(())
    })();
    unsafe { libc::close(sock) };
    result?;
    if !std::path::Path::new("/proc/thread-self/ns/net").exists() {
        bail!("/proc/thread-self/ns/net is missing");
    }
    Ok(())
}
