//! A throwaway cgroup v2 directory for a test's client processes.
use std::{
    fs::{self, File},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use vsteer_common::mountinfo;

pub struct TestCgroup {
    path: PathBuf,
}

impl TestCgroup {
    /// Creates `<cgroup v2 root>/<unique name>`.
    pub fn new() -> Result<Self> {
        let root = mountinfo::mount_points("cgroup2")
            .context("reading /proc/self/mountinfo")?
            .into_iter()
            .next()
            .context("no cgroup v2 filesystem is mounted")?;
        let path = root.join(crate::unique_name("cg"));
        fs::create_dir(&path).with_context(|| format!("creating cgroup {}", path.display()))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `cgroup.procs`, opened for writing: a process that writes "0" to it joins the cgroup.
    pub fn procs_file(&self) -> Result<File> {
        let procs = self.path.join("cgroup.procs");
        File::options()
            .write(true)
            .open(&procs)
            .with_context(|| format!("opening {}", procs.display()))
    }

    fn pids(&self) -> Vec<Pid> {
        fs::read_to_string(self.path.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .map(Pid::from_raw)
            .collect()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Only this harness's clients join the cgroup; stop any still there, by pid.
        for pid in self.pids() {
            // One that exited meanwhile is gone already: the error changes nothing.
            let _ = kill(pid, Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Err(err) = fs::remove_dir(&self.path) {
            if Instant::now() > deadline {
                eprintln!(
                    "testkit: could not remove cgroup {}: {err}",
                    self.path.display()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
