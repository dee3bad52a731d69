//! A veth pair joining two of the test's network namespaces, like a pod's interface and its
//! node end, with addresses from 198.18.0.0/15 (reserved for benchmarks: never a real
//! network). Both ends are made inside the test's namespaces, never in the machine's own;
//! they vanish with the namespaces and are deleted on drop.
use std::{
    net::Ipv4Addr,
    os::fd::AsRawFd,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context, Result, bail};

use crate::NetNs;

pub struct Veth {
    /// Namespace holding the "node" end; the link is deleted from there.
    node_ns: std::fs::File,
    node_if: String,
    pub node: Ipv4Addr,
    pub pod: Ipv4Addr,
    pub prefix: u8,
}

impl Veth {
    /// Creates the pair: `node_addr` (e.g. "198.18.0.1/30") on the end in `node`, `pod_addr`
    /// ("198.18.0.2/30") on the end in `pod`, both up. Addresses outside 198.18.0.0/15 are
    /// refused.
    pub fn pair(node: &NetNs, node_addr: &str, pod: &NetNs, pod_addr: &str) -> Result<Self> {
        let (node_ip, prefix) = benchmark_cidr(node_addr)?;
        let (pod_ip, pod_prefix) = benchmark_cidr(pod_addr)?;
        if prefix != pod_prefix {
            bail!("{node_addr} and {pod_addr} are not on one subnet");
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Names are per namespace: these never meet the machine's interfaces.
        let node_if = format!("vsnode{n}");
        let pod_if = format!("vspod{n}");
        // The pod's namespace by a path iproute2 opens (an fd of this process).
        let pod_path = format!("/proc/{}/fd/{}", std::process::id(), pod.fd().as_raw_fd());
        let node_cidr = node_addr.to_string();
        {
            let (node_if, pod_if) = (node_if.clone(), pod_if.clone());
            node.run(move || -> Result<()> {
                ip(&[
                    "link", "add", &node_if, "type", "veth", "peer", "name", &pod_if, "netns",
                    &pod_path,
                ])?;
                ip(&["addr", "add", &node_cidr, "dev", &node_if])?;
                ip(&["link", "set", &node_if, "up"])
            })??;
        }
        let pod_cidr = pod_addr.to_string();
        pod.run(move || -> Result<()> {
            ip(&["addr", "add", &pod_cidr, "dev", &pod_if])?;
            ip(&["link", "set", &pod_if, "up"])
        })??;
        let node_ns = std::fs::File::from(
            node.fd()
                .try_clone_to_owned()
                .context("duplicating the namespace fd")?,
        );
        Ok(Self {
            node_ns,
            node_if,
            node: node_ip,
            pod: pod_ip,
            prefix,
        })
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Deleting one end deletes both. The namespace going away would do it too.
        let ns = match self.node_ns.try_clone() {
            Ok(ns) => ns,
            Err(_) => return,
        };
        let name = self.node_if.clone();
        let _ = std::thread::spawn(move || {
            if nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).is_ok() {
                let _ = ip(&["link", "del", &name]);
            }
        })
        .join();
    }
}

/// An address with prefix inside 198.18.0.0/15, or an error.
fn benchmark_cidr(cidr: &str) -> Result<(Ipv4Addr, u8)> {
    let (addr, prefix) = cidr
        .split_once('/')
        .with_context(|| format!("{cidr}: expected ADDRESS/PREFIX"))?;
    let addr: Ipv4Addr = addr.parse().with_context(|| format!("{cidr}: not IPv4"))?;
    let prefix: u8 = prefix
        .parse()
        .with_context(|| format!("{cidr}: bad prefix"))?;
    let o = addr.octets();
    if o[0] != 198 || (o[1] & 0xfe) != 18 || !(15..=30).contains(&prefix) {
        bail!("{cidr}: test links use 198.18.0.0/15 only (prefix 15..=30)");
    }
    Ok((addr, prefix))
}

/// Runs `ip ARGS` in the calling thread's network namespace.
fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2; `cargo xtask setup` installs it)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_benchmark_addresses_are_accepted() {
        assert!(benchmark_cidr("198.18.0.1/30").is_ok());
        assert!(benchmark_cidr("198.19.255.1/24").is_ok());
        for bad in [
            "10.0.0.1/30",
            "198.20.0.1/30",
            "198.18.0.1",
            "198.18.0.1/8",
            "::1/128",
        ] {
            assert!(benchmark_cidr(bad).is_err(), "{bad}");
        }
    }
}
