//! The machine the numbers come from, and the kernel's own BPF statistics.
use std::{fs, process::Command};

use anyhow::{Context, Result};

use super::results::Machine;

pub fn machine(command: &str, repeats: usize) -> Machine {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu,
        kernel,
        date,
        command: command.to_string(),
        repeats,
    }
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Turns on `kernel.bpf_stats_enabled` and restores the previous value on drop.
pub struct BpfStats {
    previous: String,
}

impl BpfStats {
    pub fn enable() -> Result<BpfStats> {
        let previous = fs::read_to_string(BPF_STATS).context("reading kernel.bpf_stats_enabled")?;
        fs::write(BPF_STATS, "1").context("enabling kernel.bpf_stats_enabled")?;
        Ok(BpfStats { previous })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = fs::write(BPF_STATS, self.previous.trim());
    }
}

/// (run count, total run time ns) of a pinned program, from the kernel's statistics.
pub fn program_stats(pinned: &std::path::Path) -> Result<(u64, u64)> {
    let out = Command::new("bpftool")
        .args(["-j", "prog", "show", "pinned"])
        .arg(pinned)
        .output()
        .context("running bpftool")?;
    let info: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("bpftool on {}", pinned.display()))?;
    let count = info["run_cnt"].as_u64().unwrap_or(0);
    let time = info["run_time_ns"].as_u64().unwrap_or(0);
    Ok((count, time))
}

/// (VmRSS, VmHWM) of process `pid`, KiB.
pub fn memory_kib(pid: u32) -> Result<(u64, u64)> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |key: &str| status_kib(&status, key).with_context(|| format!("no {key} in {path}"));
    Ok((field("VmRSS")?, field("VmHWM")?))
}

/// A command run to its end: wall time and its peak resident set.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub wall: std::time::Duration,
    /// `ru_maxrss` of the process as `wait4` reports it, KiB.
    pub max_rss_kib: u64,
}

/// Runs `command` (output discarded) and waits for it with `wait4`, which gives this one
/// child's peak memory (getrusage's RUSAGE_CHILDREN would be the maximum over all children
/// the bench ever waited for). Fails when it does not exit 0.
pub fn run_measured(mut command: Command) -> Result<Measured> {
    use std::process::Stdio;
    let what = format!("{command:?}");
    let started = std::time::Instant::now();
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // Reaped here, by its pid, so `Child` is never waited on (its drop does not wait).
    loop {
        // SAFETY: pointers to locals that outlive the call.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            anyhow::bail!("waiting for {what}: {error}");
        }
    }
    let wall = started.elapsed();
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        anyhow::bail!("{what} failed (wait status {status:#x})");
    }
    Ok(Measured {
        wall,
        max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
    })
}

/// CPU time process `pid` used so far, all its threads, user and system, in seconds
/// (`utime + stime` of `/proc/PID/stat`).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = stat_ticks(&stat).with_context(|| format!("no utime/stime in {path}"))?;
    let per_sec = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .context("sysconf(CLK_TCK)")?
        .filter(|&t| t > 0)
        .context("no CLK_TCK")?;
    Ok(ticks as f64 / per_sec as f64)
}

/// `utime + stime` (fields 14 and 15) of `/proc/PID/stat` text, in clock ticks. The command
/// name (field 2) may hold spaces and parentheses: fields are counted after its last `)`.
pub fn stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The value of `key` (e.g. `VmRSS`) in `/proc/PID/status` text, KiB.
pub fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_after_the_command_name() {
        let stat = "4242 (vsteer (x) y) S 1 4242 4242 0 -1 4194560 1519 0 0 0 250 75 0 0 20 0 \
                    9 0 1000 100000000 5000 18446744073709551615";
        assert_eq!(stat_ticks(stat), Some(325));
        assert_eq!(stat_ticks("4242 (vsteer) S 1"), None);
        assert!(cpu_seconds(std::process::id()).unwrap() >= 0.0);
    }

    #[test]
    fn status_fields_in_kib() {
        let status = "Name:\tvsteer\nVmHWM:\t  358764 kB\nVmRSS:\t  201332 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(201_332));
        assert_eq!(status_kib(status, "VmHWM"), Some(358_764));
        assert_eq!(status_kib(status, "VmSwap"), None);
        // A key that is a prefix of another is not mistaken for it.
        assert_eq!(status_kib(status, "Rss"), None);
    }
}
