//! `vsteer run`'s arguments; the agent itself is `app::run`.

use std::net::{Ipv6Addr, SocketAddr, TcpListener};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use vsteer_datapath::DEFAULT_PIN_DIR;

use super::SourceArgs;
use crate::app::{self, ProxySettings, RunOptions};
use crate::resolve::DnsSettings;
use crate::sources::kubernetes::KubeSettings;
use crate::sources::snapshot::DEFAULT_STATE_DIR;

/// Where the proxy listens unless told: loopback, so only the node's own processes (host
/// network namespace) are redirected to it; pods in their own namespaces keep the kernel
/// path. A DaemonSet passes the node's IP (`--proxy-addr $(NODE_IP):15001`) so pods reach it.
pub const DEFAULT_PROXY_ADDRS: &str = "127.0.0.1:15001,[::1]:15001";
/// The mark on the proxy's own sockets: a bit that kube-proxy (0x4000, 0x8000), Cilium
/// (0x0F00) and Calico (0xFFFF0000) leave alone.
pub const DEFAULT_PROXY_MARK: &str = "0x2000";

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Where the resources come from: `files` (--config, or the embedded examples) or
    /// `kubernetes` (the API server: Istio's kinds, Services, EndpointSlices, pod labels).
    #[arg(long = "source", value_enum, default_value = "files")]
    source_kind: SourceKind,
    /// Kubernetes mode: the kubeconfig to use (default: in-cluster, else KUBECONFIG or
    /// ~/.kube/config).
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// Kubernetes mode: the cluster's DNS domain; a Service's host is
    /// `name.namespace.svc.<domain>`.
    #[arg(long, value_name = "DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// Kubernetes mode: this node's name (the DaemonSet passes `spec.nodeName`); the agent
    /// keeps its pods with their cgroups, shown by `vsteer status`.
    #[arg(long, value_name = "NAME", env = "NODE_NAME")]
    node_name: Option<String>,
    /// cgroup v2 directory whose processes are steered (default: the cgroup v2 root, i.e. the
    /// whole node).
    #[arg(long, value_name = "PATH")]
    cgroup: Option<PathBuf>,
    /// bpffs directory for vsteer's pinned maps and program links.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
    /// Where the last good copy of each config file is kept, so that a restarted agent
    /// still has what a file that no longer parses held (one snapshot per pin directory).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Where the L7 proxy listens, at most one IPv4 and one IPv6 address (port 0: any free
    /// port). It must be reachable from the clients' network namespaces: loopback serves the
    /// node's own processes only, the node's IP serves pods too.
    #[arg(
        long,
        value_name = "ADDR[,ADDR6]",
        value_delimiter = ',',
        conflicts_with = "no_proxy"
    )]
    proxy_addr: Vec<SocketAddr>,
    /// Runs no proxy: services that need one are served by the kernel alone (their L4
    /// route, without the HTTP rules).
    #[arg(long)]
    no_proxy: bool,
    /// SO_MARK of the proxy's upstream sockets; the kernel never redirects a socket with it.
    #[arg(long, value_name = "MARK", default_value = DEFAULT_PROXY_MARK, value_parser = parse_mark)]
    proxy_mark: u32,
    /// Proxy workers: each a thread with a single-threaded runtime, sharing the listener.
    #[arg(long, value_name = "N", default_value_t = 2)]
    proxy_threads: usize,
    /// How long (milliseconds) a config file must be left alone before it is read: a writer
    /// pausing mid-file for less is waited for (one that holds the file open is waited for
    /// until it closes it). Atomic writes (write a temporary file, rename it into place) need
    /// no wait.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    settle_ms: u64,
    /// The name servers that resolve ServiceEntries with `resolution: DNS` or
    /// `DNS_ROUND_ROBIN` (IP, or IP:PORT; default: those of /etc/resolv.conf).
    #[arg(long, value_name = "ADDR[,ADDR]", value_delimiter = ',', value_parser = parse_dns_server)]
    dns_server: Vec<SocketAddr>,
    /// How soon (seconds) a name is looked up again when its answer has no TTL, and the
    /// longest wait between retries after failed lookups (Istio's dnsRefreshRate). Answers
    /// with a TTL are looked up again when it runs out.
    #[arg(long, value_name = "S", default_value_t = 60)]
    dns_refresh_s: u64,
    /// This node's locality (`region/zone/subzone`): DestinationRules'
    /// `localityLbSetting.distribute` is seen from it; without it none applies.
    #[arg(long, value_name = "REGION/ZONE/SUBZONE", env = "VSTEER_LOCALITY", value_parser = super::parse_locality)]
    locality: Option<vsteer_compiler::locality::Locality>,
    /// Where Prometheus metrics are served (`/metrics`); `off` serves none.
    #[arg(long, value_name = "ADDR|off", default_value = "127.0.0.1:15020", value_parser = parse_admin)]
    admin_addr: Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SourceKind {
    Files,
    Kubernetes,
}

#[derive(Debug, Clone, Copy)]
enum Admin {
    Off,
    At(SocketAddr),
}

pub fn run(args: &RunArgs) -> Result<i32> {
    let proxy = if args.no_proxy {
        None
    } else {
        Some(ProxySettings {
            listen: proxy_addrs(&args.proxy_addr)?,
            mark: args.proxy_mark,
            threads: args.proxy_threads,
        })
    };
    let config = match &args.source.config {
        // Absolute, so that the directory is followed by the path given whatever happens to
        // the working directory (symlinks are kept: the path is what is followed).
        Some(dir) => {
            Some(std::path::absolute(dir).with_context(|| format!("--config {}", dir.display()))?)
        }
        None => None,
    };
    let kubernetes = match args.source_kind {
        SourceKind::Files => None,
        SourceKind::Kubernetes if config.is_some() => {
            bail!("--source kubernetes reads the API server: it takes no --config")
        }
        SourceKind::Kubernetes => Some(KubeSettings {
            kubeconfig: args.kubeconfig.clone(),
            cluster_domain: args.cluster_domain.clone(),
            node_name: args.node_name.clone(),
            // Kubelet's pod cgroups are under the node's cgroup v2 root, which --cgroup names.
            cgroup_root: match &args.cgroup {
                Some(cgroup) => cgroup.clone(),
                None => vsteer_datapath::cgroup2_root()?,
            },
        }),
    };
    app::run(&RunOptions {
        kubernetes,
        config,
        cgroup: args.cgroup.clone(),
        pin_dir: args.pin_dir.clone(),
        state_dir: args.state_dir.clone(),
        proxy,
        admin: match args.admin_addr {
            Admin::Off => None,
            Admin::At(addr) => Some(addr),
        },
        settle: std::time::Duration::from_millis(args.settle_ms),
        locality: args.locality.clone(),
        dns: DnsSettings {
            servers: args.dns_server.clone(),
            refresh: std::time::Duration::from_secs(args.dns_refresh_s.max(1)),
        },
    })
}

/// A name server: `IP:PORT`, `[IP6]:PORT`, or an IP alone (port 53).
fn parse_dns_server(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("{text:?} is not an IP address or IP:PORT"))
}

/// The given addresses, checked; or the defaults, without IPv6 on a node that has none.
fn proxy_addrs(given: &[SocketAddr]) -> Result<Vec<SocketAddr>> {
    if given.is_empty() {
        let mut addrs: Vec<SocketAddr> = DEFAULT_PROXY_ADDRS
            .split(',')
            .filter_map(|a| a.parse().ok())
            .collect();
        if TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_err() {
            tracing::info!("no IPv6 loopback here: the proxy listens on IPv4 only");
            addrs.retain(SocketAddr::is_ipv4);
        }
        return Ok(addrs);
    }
    let v4 = given.iter().filter(|a| a.is_ipv4()).count();
    let v6 = given.len() - v4;
    if v4 > 1 || v6 > 1 {
        bail!(
            "--proxy-addr takes at most one IPv4 and one IPv6 address, got {}",
            given
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    Ok(given.to_vec())
}

fn parse_mark(text: &str) -> Result<u32, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse(),
    };
    match parsed {
        Ok(0) => Err("the mark must not be 0: every socket has mark 0".into()),
        Ok(mark) => Ok(mark),
        Err(err) => Err(format!(
            "{text:?} is not a number (decimal or 0x hex): {err}"
        )),
    }
}

fn parse_admin(text: &str) -> Result<Admin, String> {
    if text == "off" {
        return Ok(Admin::Off);
    }
    text.parse()
        .map(Admin::At)
        .map_err(|err| format!("{text:?} is not an address (or `off`): {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_decimal_or_hex_and_never_zero() {
        assert_eq!(parse_mark("0x2000"), Ok(0x2000));
        assert_eq!(parse_mark("1337"), Ok(1337));
        assert!(parse_mark("0").is_err());
        assert!(parse_mark("0xzz").unwrap_err().contains("not a number"));
    }

    #[test]
    fn dns_servers_default_to_port_53() {
        assert_eq!(
            parse_dns_server("10.96.0.10"),
            Ok("10.96.0.10:53".parse().unwrap())
        );
        assert_eq!(
            parse_dns_server("127.0.0.53:5353"),
            Ok("127.0.0.53:5353".parse().unwrap())
        );
        assert_eq!(
            parse_dns_server("fd00::a"),
            Ok("[fd00::a]:53".parse().unwrap())
        );
        assert_eq!(
            parse_dns_server("[fd00::a]:54"),
            Ok("[fd00::a]:54".parse().unwrap())
        );
        assert!(
            parse_dns_server("dns.local")
                .unwrap_err()
                .contains("not an IP address")
        );
    }

    #[test]
    fn proxy_addresses_are_one_per_family() {
        let two_v4: Vec<SocketAddr> = vec![
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.2:1".parse().unwrap(),
        ];
        let err = proxy_addrs(&two_v4).unwrap_err().to_string();
        assert!(err.contains("at most one IPv4"), "{err}");
        let dual: Vec<SocketAddr> =
            vec!["127.0.0.1:1".parse().unwrap(), "[::1]:1".parse().unwrap()];
        assert_eq!(proxy_addrs(&dual).unwrap(), dual);
        let defaults = proxy_addrs(&[]).unwrap();
        assert!(defaults.contains(&"127.0.0.1:15001".parse().unwrap()));
    }
}
