//! The peers vsteer is measured against, from Debian's packages, run inside the bench's own
//! network namespace and stopped by their pid.
use std::{
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use vsteer_testkit::NetNs;

use crate::setup;

/// Installs what is missing of the peers' packages.
pub fn ensure_installed() -> Result<()> {
    let missing: Vec<&str> = [
        ("iptables-restore", "iptables"),
        ("haproxy", "haproxy"),
        ("nginx", "nginx"),
        ("wrk", "wrk"),
        ("h2load", "nghttp2-client"),
        ("curl", "curl"),
    ]
    .into_iter()
    .filter(|(tool, _)| !setup::have(tool))
    .map(|(_, package)| package)
    .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("bench: installing {}", missing.join(" "));
    setup::run_cmd(Command::new("apt-get").args(["update", "-qq"]))?;
    setup::run_cmd(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Runs a command inside `ns` (its thread enters the namespace, the child inherits it).
pub fn run_in(ns: &NetNs, program: &str, args: &[&str], stdin: Option<String>) -> Result<Duration> {
    let program = program.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    ns.run(move || -> Result<Duration> {
        let started = Instant::now();
        let mut child = Command::new(&program)
            .args(&args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        if let Some(text) = stdin {
            use std::io::Write;
            let mut pipe = child.stdin.take().context("stdin")?;
            pipe.write_all(text.as_bytes())
                .with_context(|| format!("feeding {program}"))?;
        }
        let out = child
            .wait_with_output()
            .with_context(|| format!("waiting for {program}"))?;
        if !out.status.success() {
            bail!(
                "{program} {args:?}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(started.elapsed())
    })?
}

/// `iptables-restore` of a whole nat table, as kube-proxy's full sync does; returns how long
/// it took.
pub fn iptables_restore(ns: &NetNs, ruleset: &str) -> Result<Duration> {
    run_in(ns, "iptables-restore", &[], Some(ruleset.to_string())).context("iptables-restore")
}

pub fn iptables_flush(ns: &NetNs) -> Result<()> {
    run_in(ns, "iptables", &["-t", "nat", "-F"], None)?;
    run_in(ns, "iptables", &["-t", "nat", "-X"], None)?;
    Ok(())
}

/// A peer's server process (haproxy, nginx), started inside the bench's namespace pinned to
/// a CPU, in the foreground so that its pid is the one to measure and to stop; killed by pid
/// on drop.
pub struct Daemon {
    child: Child,
}

impl Daemon {
    /// `taskset -c CPU program args...` inside `ns`, its stderr into `log`; returns once every
    /// address of `ready` accepts a connection (bounded), or fails with the log.
    pub fn start(
        ns: &NetNs,
        program: &str,
        args: &[String],
        cpu: usize,
        log: &Path,
        ready: &[SocketAddr],
    ) -> Result<Daemon> {
        let stderr =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let (program, args) = (program.to_string(), args.to_vec());
        let child = ns.run(move || {
            Command::new("taskset")
                .args(["-c", &cpu.to_string(), &program])
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
        })??;
        let mut daemon = Daemon { child };
        let failed = |daemon: &mut Daemon, why: String| -> anyhow::Error {
            let _ = daemon.child.kill();
            let _ = daemon.child.wait();
            let text = std::fs::read_to_string(log).unwrap_or_default();
            anyhow::anyhow!("{why}: {}", text.trim())
        };
        let deadline = Instant::now() + READY_WITHIN;
        let ready = ready.to_vec();
        loop {
            if let Some(status) = daemon.child.try_wait()? {
                return Err(failed(&mut daemon, format!("exited with {status}")));
            }
            let targets = ready.clone();
            let up = ns.run(move || {
                targets.iter().all(|addr| {
                    std::net::TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok()
                })
            })?;
            if up {
                return Ok(daemon);
            }
            if Instant::now() > deadline {
                return Err(failed(
                    &mut daemon,
                    format!("not listening on {ready:?} within {READY_WITHIN:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Our own unreaped child: the pid is still its.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long a peer gets to start listening.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// haproxy on `config`, one process in the foreground (`-db`).
pub fn haproxy(ns: &NetNs, config: &Path, cpu: usize, ready: &[SocketAddr]) -> Result<Daemon> {
    let args = ["-db".to_string(), "-f".into(), config.display().to_string()];
    Daemon::start(
        ns,
        "haproxy",
        &args,
        cpu,
        &config.with_extension("log"),
        ready,
    )
    .context("starting haproxy")
}

/// nginx on `config` with every path it writes under `prefix` (never /etc/nginx or
/// /var/log/nginx: `-e` is the log before the config is read); the config says `daemon off`
/// and `master_process off`, so the process started is the one that serves.
pub fn nginx(
    ns: &NetNs,
    config: &Path,
    prefix: &Path,
    cpu: usize,
    ready: &[SocketAddr],
) -> Result<Daemon> {
    let name = config
        .file_stem()
        .map_or_else(|| "nginx".into(), |s| s.to_string_lossy().to_string());
    for dir in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        let tmp = prefix.join(format!("{name}-tmp")).join(dir);
        std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    }
    let args = [
        "-p".to_string(),
        prefix.display().to_string(),
        "-e".into(),
        prefix
            .join(format!("{name}-startup.log"))
            .display()
            .to_string(),
        "-c".into(),
        config.display().to_string(),
    ];
    Daemon::start(
        ns,
        "nginx",
        &args,
        cpu,
        &config.with_extension("log"),
        ready,
    )
    .with_context(|| format!("starting nginx on {}", config.display()))
}
