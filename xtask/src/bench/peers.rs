//! The peers vsteer is measured against, from Debian's packages, run inside the bench's own
//! network namespace and stopped by their pid.
use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use vsteer_testkit::NetNs;

use crate::setup;

/// Installs what is missing of the peers' packages.
pub fn ensure_installed() -> Result<()> {
    let missing: Vec<&str> = [("iptables-restore", "iptables"), ("haproxy", "haproxy")]
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

/// haproxy, started inside `ns` pinned to `cpu`, killed by pid on drop.
pub struct Haproxy {
    child: Child,
}

impl Haproxy {
    pub fn start(ns: &NetNs, config: &Path, cpu: usize) -> Result<Haproxy> {
        let config = config.to_path_buf();
        let log = config.with_extension("log");
        let stderr =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = ns.run(move || {
            Command::new("taskset")
                .args(["-c", &cpu.to_string(), "haproxy", "-db", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
        })??;
        let mut haproxy = Haproxy { child };
        // Give it a moment to bind, and make sure it did not stop at its config.
        std::thread::sleep(Duration::from_millis(300));
        if let Some(status) = haproxy.child.try_wait()? {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("haproxy exited with {status}: {}", text.trim());
        }
        Ok(haproxy)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
