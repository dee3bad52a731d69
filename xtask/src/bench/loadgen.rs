//! The L7 load generators (wrk for keep-alive HTTP/1.1, h2load for HTTP/2 prior knowledge)
//! and curl, started inside the bench's network namespace and a cgroup, pinned to a CPU,
//! stopped by their pid; and what their output says.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use vsteer_testkit::{NetNs, TestCgroup, place};

use super::l7_workload::{HEADER, JASON, WRK_LINE};

/// Where a client runs: its namespace, its cgroup (the agent's attached one for vsteer), the
/// CPU it is pinned to.
#[derive(Clone, Copy)]
pub struct Placement<'a> {
    pub ns: &'a NetNs,
    pub cgroup: &'a TestCgroup,
    pub cpu: usize,
}

impl Placement<'_> {
    /// `taskset -c CPU program args...`, to be started inside the namespace and cgroup (taskset
    /// execs `program`, so the pid is the program's).
    fn command(&self, program: &str, args: &[String]) -> Result<Command> {
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", &self.cpu.to_string(), program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        place(&mut cmd, self.ns, Some(self.cgroup))?;
        Ok(cmd)
    }
}

/// One load run's numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadNumbers {
    /// Requests completed.
    pub requests: u64,
    pub requests_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// How long the load ran by the generator's own clock, seconds (the longer of h2load's
    /// two).
    pub secs: f64,
}

/// The load generators of the scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generator {
    /// `wrk -t1 -cN` with the script that alternates the header on every connection.
    Wrk { connections: u32 },
    /// Two h2load processes side by side, one sending the header and one not, each with
    /// `clients` connections of `streams` concurrent streams.
    H2load { clients: u32, streams: u32 },
}

/// A load generator at work; its processes are killed (by pid) if dropped unfinished.
pub struct Running {
    generator: Generator,
    children: Vec<Child>,
    logs: Vec<PathBuf>,
    deadline: Instant,
}

/// Starts `generator` against `target` for `secs` seconds. `work` holds the wrk script and
/// h2load's per-request logs.
pub fn start(
    generator: Generator,
    at: Placement<'_>,
    target: SocketAddr,
    secs: u32,
    work: &Path,
) -> Result<Running> {
    let url = format!("http://{target}/");
    let mut children = Vec::new();
    let mut logs = Vec::new();
    match generator {
        Generator::Wrk { connections } => {
            let script = work.join("l7-mix.lua");
            std::fs::write(&script, super::l7_workload::wrk_script())
                .with_context(|| format!("writing {}", script.display()))?;
            let args = [
                "-t1".to_string(),
                format!("-c{connections}"),
                format!("-d{secs}s"),
                "--timeout".into(),
                "5s".into(),
                "-s".into(),
                script.display().to_string(),
                url,
            ];
            let mut cmd = at.command("wrk", &args)?;
            children.push(cmd.spawn().context("starting wrk")?);
        }
        Generator::H2load { clients, streams } => {
            for (k, header) in [Some(format!("{HEADER}: {JASON}")), None]
                .into_iter()
                .enumerate()
            {
                let log = work.join(format!("h2load-{k}.log"));
                // h2load appends to its log.
                let _ = std::fs::remove_file(&log);
                let mut args = vec![
                    "-D".to_string(),
                    secs.to_string(),
                    "-c".into(),
                    clients.to_string(),
                    "-m".into(),
                    streams.to_string(),
                    "-t".into(),
                    "1".into(),
                    "--log-file".into(),
                    log.display().to_string(),
                ];
                if let Some(header) = header {
                    args.extend(["-H".into(), header]);
                }
                args.push(url.clone());
                let mut cmd = at.command("h2load", &args)?;
                children.push(cmd.spawn().context("starting h2load")?);
                logs.push(log);
            }
        }
    }
    Ok(Running {
        generator,
        children,
        logs,
        deadline: Instant::now() + Duration::from_secs(u64::from(secs) + 30),
    })
}

impl Running {
    /// Waits for every process (bounded) and reads the numbers. A run with any failed
    /// request does not count: the variant is broken, not slow.
    pub fn finish(mut self) -> Result<LoadNumbers> {
        let mut outputs = Vec::new();
        for child in &mut self.children {
            outputs.push(wait_bounded(child, self.deadline)?);
        }
        let numbers = match self.generator {
            Generator::Wrk { .. } => parse_wrk(&outputs[0]),
            Generator::H2load { .. } => {
                let mut latencies = Vec::new();
                let mut requests = 0;
                let mut rate = 0.0;
                let mut secs: f64 = 0.0;
                for (output, log) in outputs.iter().zip(&self.logs) {
                    let summary = parse_h2load(output)?;
                    requests += summary.succeeded;
                    rate += summary.requests_per_sec;
                    secs = secs.max(summary.secs);
                    let text = std::fs::read_to_string(log)
                        .with_context(|| format!("reading {}", log.display()))?;
                    latencies.extend(h2load_latencies(&text)?);
                    let _ = std::fs::remove_file(log);
                }
                latencies.sort_unstable();
                Ok(LoadNumbers {
                    requests,
                    requests_per_sec: rate,
                    p50_us: percentile(&latencies, 0.50),
                    p99_us: percentile(&latencies, 0.99),
                    secs,
                })
            }
        }?;
        if numbers.requests == 0 {
            bail!("no request completed");
        }
        Ok(numbers)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for child in &mut self.children {
            if child.try_wait().ok().flatten().is_none() {
                // Our own unreaped child: the pid is still its.
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// What a finished process printed; fails on a non-zero exit or at the deadline (then the
/// process is killed by its pid).
fn wait_bounded(child: &mut Child, deadline: Instant) -> Result<String> {
    use std::io::Read;
    loop {
        if let Some(status) = child.try_wait()? {
            let mut out = String::new();
            let mut err = String::new();
            if let Some(mut pipe) = child.stdout.take() {
                pipe.read_to_string(&mut out).context("reading stdout")?;
            }
            if let Some(mut pipe) = child.stderr.take() {
                pipe.read_to_string(&mut err).context("reading stderr")?;
            }
            if !status.success() {
                bail!("{status}: {}{}", err.trim(), out.trim());
            }
            return Ok(out);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("still running at its deadline; killed");
        }
        // The output is a few hundred bytes: it fits in the pipe while we wait.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The reply body of one `curl` GET, with or without the header, over HTTP/1.1 or HTTP/2
/// prior knowledge: the check that a variant routes as the seed says before it is measured.
pub fn curl(at: Placement<'_>, target: SocketAddr, jason: bool, http2: bool) -> Result<String> {
    let mut args = vec!["-sS".to_string(), "-m".into(), "5".into()];
    if http2 {
        args.push("--http2-prior-knowledge".into());
    }
    if jason {
        args.extend(["-H".into(), format!("{HEADER}: {JASON}")]);
    }
    args.push(format!("http://{target}/"));
    let mut child = at
        .command("curl", &args)?
        .spawn()
        .context("starting curl")?;
    wait_bounded(&mut child, Instant::now() + Duration::from_secs(15))
        .with_context(|| format!("curl {target}"))
}

/// The numbers of the wrk script's `done` line; fails on any socket error or non-2xx/3xx
/// status.
pub fn parse_wrk(output: &str) -> Result<LoadNumbers> {
    let line = output
        .lines()
        .find(|l| l.starts_with(WRK_LINE))
        .with_context(|| format!("no {WRK_LINE} line in wrk's output: {output}"))?;
    let field = |name: &str| -> Result<u64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .with_context(|| format!("no {name} in {line:?}"))?
            .parse::<u64>()
            .with_context(|| format!("{name} in {line:?}"))
    };
    let errors: Vec<String> = ["connect", "read", "write", "status", "timeout"]
        .into_iter()
        .filter_map(|e| match field(e) {
            Ok(0) => None,
            Ok(n) => Some(format!("{n} {e}")),
            Err(err) => Some(err.to_string()),
        })
        .collect();
    if !errors.is_empty() {
        bail!("wrk counted errors: {}", errors.join(", "));
    }
    let requests = field("requests")?;
    let duration_us = field("duration_us")?;
    if duration_us == 0 {
        bail!("wrk ran for 0 µs: {line:?}");
    }
    Ok(LoadNumbers {
        requests,
        requests_per_sec: requests as f64 * 1e6 / duration_us as f64,
        p50_us: field("p50_us")? as f64,
        p99_us: field("p99_us")? as f64,
        secs: duration_us as f64 / 1e6,
    })
}

/// h2load's summary lines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct H2loadSummary {
    pub requests_per_sec: f64,
    pub succeeded: u64,
    pub secs: f64,
}

/// Reads `finished in 3.00s, 60534.00 req/s, ...`, `requests: ... N succeeded, N failed, N
/// errored, N timeout` and `status codes: N 2xx, N 3xx, N 4xx, N 5xx`; fails on any failed,
/// errored or timed-out request and on any status but 2xx.
pub fn parse_h2load(output: &str) -> Result<H2loadSummary> {
    let line = |prefix: &str| {
        output
            .lines()
            .find(|l| l.starts_with(prefix))
            .with_context(|| format!("no {prefix:?} line in h2load's output: {output}"))
    };
    // "N word" pairs of a comma-separated line.
    let counts = |l: &str| -> Vec<(String, f64)> {
        l.split(',')
            .filter_map(|part| {
                let mut words = part.split_whitespace().rev();
                let word = words.next()?.to_string();
                let n = words.next()?.parse::<f64>().ok()?;
                Some((word, n))
            })
            .collect()
    };
    let get = |pairs: &[(String, f64)], word: &str| -> Result<f64> {
        pairs
            .iter()
            .find(|(w, _)| w == word)
            .map(|(_, n)| *n)
            .with_context(|| format!("no {word:?} count in h2load's output: {output}"))
    };
    let finished_line = line("finished in")?;
    let finished = counts(finished_line);
    let secs = finished_line
        .strip_prefix("finished in")
        .and_then(|rest| rest.split(',').next())
        .and_then(|t| duration_secs(t.trim()))
        .with_context(|| format!("no duration in {finished_line:?}"))?;
    let requests = counts(line("requests:")?);
    let statuses = counts(line("status codes:")?);
    let mut bad = Vec::new();
    for word in ["failed", "errored", "timeout"] {
        let n = get(&requests, word)?;
        if n > 0.0 {
            bad.push(format!("{n} {word}"));
        }
    }
    for word in ["3xx", "4xx", "5xx"] {
        let n = get(&statuses, word)?;
        if n > 0.0 {
            bad.push(format!("{n} {word}"));
        }
    }
    if !bad.is_empty() {
        bail!("h2load counted bad requests: {}", bad.join(", "));
    }
    Ok(H2loadSummary {
        requests_per_sec: get(&finished, "req/s")?,
        succeeded: get(&requests, "succeeded")? as u64,
        secs,
    })
}

/// h2load's durations: `3.00s`, `999.93ms`, `850.12us`.
fn duration_secs(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix("us") {
        (n, 1e-6)
    } else {
        (text.strip_suffix('s')?, 1.0)
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// Each request's time (µs) from h2load's log: `start µs<TAB>status<TAB>duration µs` lines.
pub fn h2load_latencies(log: &str) -> Result<Vec<u64>> {
    log.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split('\t')
                .nth(2)
                .and_then(|d| d.trim().parse::<u64>().ok())
                .with_context(|| format!("h2load log line {l:?}"))
        })
        .collect()
}

/// The `p` quantile (0..1) of sorted samples, nearest rank; NaN for none.
pub fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 3s test @ http://127.100.0.1:9080/
  1 threads and 32 connections
Requests/sec:  63719.21
vsteer-bench-wrk requests=191530 duration_us=3005844 p50_us=373 p99_us=826 connect=0 read=0 write=0 status=0 timeout=0
";

    #[test]
    fn wrk_line() {
        let n = parse_wrk(WRK).unwrap();
        assert_eq!(n.requests, 191_530);
        assert!((n.requests_per_sec - 191_530.0 / 3.005844).abs() < 1e-6);
        assert_eq!((n.p50_us, n.p99_us), (373.0, 826.0));
        assert_eq!(n.secs, 3.005844);
        let broken = WRK.replace("status=0", "status=12");
        let err = parse_wrk(&broken).unwrap_err().to_string();
        assert!(err.contains("12 status"), "{err}");
        assert!(parse_wrk("Requests/sec: 5\n").is_err());
        assert!(parse_wrk(&WRK.replace(" p99_us=826", "")).is_err());
    }

    const H2LOAD: &str = "starting benchmark...
finished in 3.00s, 60534.00 req/s, 4.50MB/s
requests: 181602 total, 181618 started, 181602 done, 181602 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 181602 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 13.50MB (14155012) total, 532.11KB (544875) headers (space savings 95.14%)
";

    #[test]
    fn h2load_summary() {
        let s = parse_h2load(H2LOAD).unwrap();
        assert_eq!(s.requests_per_sec, 60_534.0);
        assert_eq!(s.succeeded, 181_602);
        assert_eq!(s.secs, 3.0);
        let err = parse_h2load(&H2LOAD.replace("0 4xx", "7 4xx"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("7 4xx"), "{err}");
        let err = parse_h2load(&H2LOAD.replace("0 errored", "3 errored"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("3 errored"), "{err}");
        assert!(parse_h2load("finished in 3.00s, 1 req/s\n").is_err());
        let short = H2LOAD.replace("3.00s", "999.93ms");
        assert!((parse_h2load(&short).unwrap().secs - 0.99993).abs() < 1e-12);
        assert_eq!(duration_secs("850us"), Some(850e-6));
        assert_eq!(duration_secs("3 weeks"), None);
    }

    #[test]
    fn h2load_log_and_percentiles() {
        let log = "1796122815742757\t200\t269\n1796122815742758\t200\t293\n\n";
        assert_eq!(h2load_latencies(log).unwrap(), [269, 293]);
        assert!(h2load_latencies("1\t200\n").is_err());
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 0.5), 51.0);
        assert_eq!(percentile(&sorted, 0.99), 99.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
