//! The `vsteer` agent as a child process, stopped by its pid when dropped.
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

/// The log line `vsteer run` prints once its maps are filled.
pub const READY: &str = "datapath ready";

pub struct AgentProcess {
    child: Child,
    /// The agent's ready line.
    ready: String,
    /// The agent's stderr lines, forwarded by a reader thread.
    lines: mpsc::Receiver<String>,
}

impl AgentProcess {
    /// Starts `vsteer <args>` and waits until it reports ready (or fails, or `timeout` passes).
    pub fn start(binary: &Path, args: &[&std::ffi::OsStr], timeout: Duration) -> Result<Self> {
        Self::launch(Command::new(binary), args, timeout)
    }

    /// [`AgentProcess::start`] that returns once the agent logs `needle`, ready or not.
    pub fn start_until(
        binary: &Path,
        args: &[&std::ffi::OsStr],
        needle: &str,
        timeout: Duration,
    ) -> Result<Self> {
        Self::launch_until(Command::new(binary), args, needle, timeout)
    }

    /// [`AgentProcess::start`] inside `ns` and `cgroup`: the agent's own sockets (its
    /// proxy's listener and upstream connects) then live there and meet the cgroup's hooks.
    pub fn start_in(
        binary: &Path,
        args: &[&std::ffi::OsStr],
        timeout: Duration,
        ns: &crate::NetNs,
        cgroup: Option<&crate::TestCgroup>,
    ) -> Result<Self> {
        let mut cmd = Command::new(binary);
        crate::spawn::place(&mut cmd, ns, cgroup)?;
        Self::launch(cmd, args, timeout)
    }

    fn launch(cmd: Command, args: &[&std::ffi::OsStr], timeout: Duration) -> Result<Self> {
        Self::launch_until(cmd, args, READY, timeout)
    }

    /// Starts the agent and waits for a line containing `needle` (instead of ready).
    fn launch_until(
        mut cmd: Command,
        args: &[&std::ffi::OsStr],
        needle: &str,
        timeout: Duration,
    ) -> Result<Self> {
        let binary = cmd.get_program().to_owned();
        let mut child = cmd
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.to_string_lossy()))?;
        let stderr = child.stderr.take().context("agent stderr")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[vsteer] {line}");
                if tx.send(line).is_err() {
                    // Nobody listens any more; keep draining so the agent never blocks.
                    continue;
                }
            }
        });
        let mut agent = Self {
            child,
            ready: String::new(),
            lines,
        };
        agent.ready = agent.wait_for(needle, timeout)?;
        Ok(agent)
    }

    /// The line with which the agent reported ready.
    pub fn ready_line(&self) -> &str {
        &self.ready
    }

    /// Forgets the log lines received so far, so the next `wait_for` sees only new ones.
    pub fn drain(&mut self) {
        while self.lines.try_recv().is_ok() {}
    }

    /// Starts `vsteer run [--config CONFIG] --cgroup CGROUP --pin-dir PIN_DIR --state-dir
    /// STATE`: the agent attached to a cgroup and a pin directory of the caller's own (and
    /// the state directory that goes with it, see [`crate::pins::state_dir_for`]), its proxy
    /// on a free loopback port and no admin listener (nothing shared with another test).
    pub fn run(
        binary: &Path,
        config: Option<&Path>,
        cgroup: &Path,
        pin_dir: &Path,
        timeout: Duration,
    ) -> Result<Self> {
        Self::run_until(binary, config, cgroup, pin_dir, READY, timeout)
    }

    /// [`AgentProcess::start`] with [`run_args`] first, then `extra`.
    pub fn start_run(
        binary: &Path,
        placement: &RunPlacement,
        extra: &[&std::ffi::OsStr],
        needle: &str,
        timeout: Duration,
    ) -> Result<Self> {
        let mut args = run_args(placement);
        args.extend(extra.iter().map(|a| a.to_os_string()));
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        Self::launch_until(Command::new(binary), &args, needle, timeout)
    }

    /// [`AgentProcess::run`] that returns once the agent logs `needle` (e.g. that it waits
    /// for another agent), ready or not; [`AgentProcess::ready_line`] is that line.
    pub fn run_until(
        binary: &Path,
        config: Option<&Path>,
        cgroup: &Path,
        pin_dir: &Path,
        needle: &str,
        timeout: Duration,
    ) -> Result<Self> {
        let placement = RunPlacement {
            cgroup,
            pin_dir,
            proxy_addr: "127.0.0.1:0",
            admin_addr: "off",
        };
        let mut extra: Vec<&std::ffi::OsStr> = Vec::new();
        if let Some(config) = config {
            extra.extend(["--config".as_ref(), config.as_os_str()]);
        }
        Self::start_run(binary, &placement, &extra, needle, timeout)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stderr line containing `needle`; fails if the agent exits first.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                Ok(line) if line.contains(needle) => return Ok(line),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(status) = self.child.try_wait()? {
                        bail!("agent exited with {status} before logging {needle:?}");
                    }
                    if left.is_zero() {
                        bail!("agent did not log {needle:?} within {timeout:?}");
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait()?;
                    bail!("agent exited with {status} before logging {needle:?}");
                }
            }
        }
    }

    /// Sends `signal` and waits (bounded) for the agent to exit; returns its exit code.
    ///
    /// `signal` is a [`Signal`] or a raw signal number (`libc::SIGTERM`).
    pub fn stop_with(
        &mut self,
        signal: impl TryInto<Signal, Error: std::error::Error + Send + Sync + 'static>,
        timeout: Duration,
    ) -> Result<Option<i32>> {
        let signal = signal.try_into().context("not a signal")?;
        crate::spawn::stop_child(&mut self.child, signal, timeout)
    }
}

/// Where a test's agent runs: its own cgroup and pins (and the state directory that goes
/// with them), its proxy and admin addresses (`off`: none).
pub struct RunPlacement<'a> {
    pub cgroup: &'a Path,
    pub pin_dir: &'a Path,
    pub proxy_addr: &'a str,
    pub admin_addr: &'a str,
}

/// `run --cgroup C --pin-dir P --state-dir S --proxy-addr X --admin-addr Y`: the arguments
/// every test agent takes, so that nothing of it is the node's.
pub fn run_args(placement: &RunPlacement) -> Vec<std::ffi::OsString> {
    let state = crate::pins::state_dir_for(placement.pin_dir);
    vec![
        "run".into(),
        "--cgroup".into(),
        placement.cgroup.into(),
        "--pin-dir".into(),
        placement.pin_dir.into(),
        "--state-dir".into(),
        state.into(),
        "--proxy-addr".into(),
        placement.proxy_addr.into(),
        "--admin-addr".into(),
        placement.admin_addr.into(),
    ]
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.stop_with(Signal::SIGTERM, Duration::from_secs(10));
    }
}
