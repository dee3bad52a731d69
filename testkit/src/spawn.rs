//! Child processes and sockets placed inside a test's network namespace and cgroup: the
//! agent (whose own sockets must meet the hooks), a plain listener, or sockets the test
//! process uses itself. cgroup hooks judge a socket by the cgroup it was created in, so a
//! socket made by a child inside the cgroup and handed back keeps meeting them in the test
//! process.
use std::{
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::process::CommandExt,
    },
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nix::{
    libc,
    poll::{PollFd, PollFlags, PollTimeout, poll},
    sys::{
        signal::{Signal, kill},
        wait::{WaitStatus, waitpid},
    },
    unistd::{ForkResult, Pid, fork},
};

use crate::{NetNs, TestCgroup};

/// Makes `cmd` start inside `ns` and `cgroup` (entered between fork and exec).
pub fn place(cmd: &mut Command, ns: &NetNs, cgroup: Option<&TestCgroup>) -> Result<()> {
    let ns = ns
        .fd()
        .try_clone_to_owned()
        .context("duplicating the namespace fd")?;
    let procs = cgroup.map(TestCgroup::procs_file).transpose()?;
    // SAFETY: the hook makes only async-signal-safe system calls (setns, write) on
    // descriptors opened before the fork; both are close-on-exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(procs) = &procs
                && libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// A child process started by [`Spawned::start`], stopped by its pid on drop.
pub struct Spawned {
    child: Child,
}

impl Spawned {
    /// Starts `cmd` inside `ns` and `cgroup`.
    pub fn start(mut cmd: Command, ns: &NetNs, cgroup: Option<&TestCgroup>) -> Result<Self> {
        place(&mut cmd, ns, cgroup)?;
        let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        Ok(Self { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Sends SIGTERM, waits up to `timeout`, then SIGKILL; returns the exit code.
    pub fn stop(&mut self, timeout: Duration) -> Result<Option<i32>> {
        stop_child(&mut self.child, Signal::SIGTERM, timeout)
    }
}

/// Sends `signal` to our own child and waits (bounded) for it to exit, killing it when it
/// does not; returns its exit code.
pub fn stop_child(child: &mut Child, signal: Signal, timeout: Duration) -> Result<Option<i32>> {
    let pid = Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?);
    if child.try_wait()?.is_none() {
        // Our own unreaped child: the pid is still its. An error (it exited meanwhile) shows
        // in the wait below.
        let _ = kill(pid, signal);
    }
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.code());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{pid} ignored {signal} for {timeout:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.stop(Duration::from_secs(10));
    }
}

/// Most descriptors passed in one message.
const BATCH: usize = 32;

/// `count` new TCP sockets of `family` (`libc::AF_INET` or `libc::AF_INET6`) created inside
/// `ns` and `cgroup` by a short-lived child and handed to this process: they live in that
/// namespace and meet that cgroup's hooks whatever thread uses them.
pub fn tcp_sockets_in(
    ns: &NetNs,
    cgroup: &TestCgroup,
    family: i32,
    count: usize,
) -> Result<Vec<OwnedFd>> {
    sockets_in(ns, cgroup, family, libc::SOCK_STREAM, count)
}

/// As [`tcp_sockets_in`], UDP sockets.
pub fn udp_sockets_in(
    ns: &NetNs,
    cgroup: &TestCgroup,
    family: i32,
    count: usize,
) -> Result<Vec<OwnedFd>> {
    sockets_in(ns, cgroup, family, libc::SOCK_DGRAM, count)
}

fn sockets_in(
    ns: &NetNs,
    cgroup: &TestCgroup,
    family: i32,
    kind: i32,
    count: usize,
) -> Result<Vec<OwnedFd>> {
    if family != libc::AF_INET && family != libc::AF_INET6 {
        bail!("family {family} is neither AF_INET nor AF_INET6");
    }
    let procs = cgroup.procs_file()?;
    let mut pair = [0 as RawFd; 2];
    // SAFETY: plain socketpair(2) into a two-element array.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error()).context("socketpair");
    }
    // SAFETY: two new descriptors owned by nothing else.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) };
    // SAFETY: the child makes only async-signal-safe system calls on memory and descriptors
    // made before the fork, and leaves with _exit.
    let pid = match unsafe { fork() }.context("fork")? {
        ForkResult::Parent { child } => child,
        ForkResult::Child => unsafe {
            if libc::setns(ns.fd().as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                libc::_exit(101);
            }
            if libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                libc::_exit(102);
            }
            let mut left = count;
            while left > 0 {
                let n = left.min(BATCH);
                let mut fds = [0 as RawFd; BATCH];
                for fd in fds.iter_mut().take(n) {
                    *fd = libc::socket(family, kind | libc::SOCK_CLOEXEC, 0);
                    if *fd < 0 {
                        libc::_exit(103);
                    }
                }
                if !send_fds(theirs.as_raw_fd(), &fds[..n]) {
                    libc::_exit(104);
                }
                for fd in &fds[..n] {
                    libc::close(*fd);
                }
                left -= n;
            }
            libc::_exit(0)
        },
    };
    drop(theirs);
    let received = receive_fds(&ours, count, Instant::now() + Duration::from_secs(30));
    if received.is_err() {
        let _ = kill(pid, Signal::SIGKILL);
    }
    match waitpid(pid, None).context("waitpid")? {
        WaitStatus::Exited(_, 0) => {}
        other => bail!(
            "socket-making child failed: {other:?} (101 netns, 102 cgroup, 103 socket, 104 send)"
        ),
    }
    let fds = received?;
    if fds.len() != count {
        bail!("received {} of {count} sockets", fds.len());
    }
    Ok(fds)
}

/// Control-message buffer for BATCH descriptors, aligned for cmsghdr.
#[repr(C, align(8))]
struct CmsgBuf([u8; 256]);

/// sendmsg(2) with SCM_RIGHTS; async-signal-safe (no allocation).
unsafe fn send_fds(sock: RawFd, fds: &[RawFd]) -> bool {
    let bytes = size_of_val(fds) as u32;
    let mut buf = CmsgBuf([0; 256]);
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: all-zero is a valid msghdr; the pointers set below outlive the call.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = buf.0.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(bytes) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(bytes) as usize;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast(), fds.len());
        libc::sendmsg(sock, &msg, 0) == 1
    }
}

/// Receives descriptors until `count` came, the sender closed, or `deadline`.
fn receive_fds(sock: &OwnedFd, count: usize, deadline: Instant) -> Result<Vec<OwnedFd>> {
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no sockets from the child within the deadline");
        }
        let ms = u16::try_from(left.as_millis().min(1000)).unwrap_or(1000);
        let mut pfd = [PollFd::new(
            std::os::fd::AsFd::as_fd(sock),
            PollFlags::POLLIN,
        )];
        if !matches!(poll(&mut pfd, PollTimeout::from(ms)), Ok(n) if n > 0) {
            continue;
        }
        let mut buf = CmsgBuf([0; 256]);
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        // SAFETY: all-zero is a valid msghdr; the buffers outlive the call; the kernel
        // writes at most msg_controllen control bytes.
        let n = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = buf.0.as_mut_ptr().cast();
            msg.msg_controllen = buf.0.len();
            let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
            if n > 0 {
                let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
                while !cmsg.is_null() {
                    if (*cmsg).cmsg_level == libc::SOL_SOCKET
                        && (*cmsg).cmsg_type == libc::SCM_RIGHTS
                    {
                        let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                        let len = (*cmsg).cmsg_len - libc::CMSG_LEN(0) as usize;
                        for i in 0..len / size_of::<RawFd>() {
                            out.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                        }
                    }
                    cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
                }
            }
            n
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error()).context("recvmsg");
        }
        if n == 0 {
            break;
        }
    }
    Ok(out)
}
