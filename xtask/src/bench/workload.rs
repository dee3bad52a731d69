//! The services a bench run configures, written as vsteer YAML, as a kube-proxy-style
//! iptables ruleset, and as an haproxy config: the same services for every peer.
use std::{fmt::Write as _, fs, net::Ipv4Addr, path::Path};

use anyhow::{Context, Result};

/// The service every client measures: 4 backends.
pub const VIP: Ipv4Addr = Ipv4Addr::new(127, 100, 0, 1);
pub const PORT: u16 = 80;
pub const BACKEND_PORT: u16 = 8080;
/// haproxy's frontend for the same backends: a VIP of its own, so that it can stay up while
/// vsteer steers [`VIP`] in the same namespace and the variants run round by round.
pub const HAPROXY_VIP: Ipv4Addr = Ipv4Addr::new(127, 100, 0, 2);
pub const BACKENDS: [Ipv4Addr; 4] = [
    Ipv4Addr::new(127, 0, 1, 1),
    Ipv4Addr::new(127, 0, 1, 2),
    Ipv4Addr::new(127, 0, 1, 3),
    Ipv4Addr::new(127, 0, 1, 4),
];
/// The long-connection service: one streaming backend.
pub const STREAM_VIP: Ipv4Addr = Ipv4Addr::new(127, 100, 0, 9);
pub const STREAM_PORT: u16 = 81;
pub const STREAM_BACKEND: Ipv4Addr = Ipv4Addr::new(127, 0, 1, 9);
pub const STREAM_BACKEND_PORT: u16 = 8081;

/// A CIDR range served by the measured service's backends, and the address of it clients
/// dial: its connects take the trie lookup that follows an exact miss.
pub const RANGE: &str = "127.102.0.0/16";
pub const RANGE_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 102, 7, 7);

/// Services per generated YAML file.
const PER_FILE: usize = 1_000;

/// The VIP of filler service `i` (never connected to; it only makes the tables big).
fn filler_vip(i: usize) -> Ipv4Addr {
    let n = u32::try_from(i).unwrap_or(u32::MAX);
    Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 101, 0, 0)) + n)
}

/// The 4 endpoints of filler service `i`.
fn filler_endpoints(i: usize) -> [Ipv4Addr; 4] {
    let base = u32::from(Ipv4Addr::new(127, 2, 0, 0)) + 4 * u32::try_from(i).unwrap_or(0);
    [0, 1, 2, 3].map(|k| Ipv4Addr::from(base + k))
}

/// The endpoints of a config of `services` services written by [`write_vsteer_config`]: the
/// measured one's backends and four per filler.
pub fn endpoints_of(services: usize) -> usize {
    BACKENDS.len() + 4 * services.saturating_sub(1)
}

/// The measured service's canary weights (percent) over its 4 backends.
pub fn weights(variant: usize) -> [u32; 4] {
    if variant.is_multiple_of(2) {
        [40, 30, 20, 10]
    } else {
        [10, 20, 30, 40]
    }
}

/// Writes a vsteer config directory with `services` services in all: the measured one
/// (ServiceEntry, DestinationRule with 4 subsets, VirtualService with a weighted split), the
/// streaming one, and fillers. With `virtual_services`, every filler also gets a
/// DestinationRule and a weighted VirtualService (the compile-and-load scenario).
pub fn write_vsteer_config(dir: &Path, services: usize, virtual_services: bool) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_measured(dir, 0)?;
    write_range(dir)?;
    let fillers = services.saturating_sub(1);
    for chunk_start in (0..fillers).step_by(PER_FILE) {
        let mut yaml = String::new();
        for i in chunk_start..(chunk_start + PER_FILE).min(fillers) {
            filler_yaml(&mut yaml, i, virtual_services);
        }
        let file = dir.join(format!("fill-{:05}.yaml", chunk_start / PER_FILE));
        fs::write(&file, yaml).with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(())
}

/// (Re)writes the measured service's file with weight set `variant`.
pub fn write_measured(dir: &Path, variant: usize) -> Result<()> {
    let w = weights(variant);
    let mut yaml = String::new();
    let _ = write!(
        yaml,
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: measured}}
spec:
  hosts: [measured.bench.svc.cluster.local]
  addresses: [{VIP}]
  ports: [{{number: {PORT}, name: tcp, protocol: TCP, targetPort: {BACKEND_PORT}}}]
  resolution: STATIC
  endpoints:
"
    );
    for (i, b) in BACKENDS.iter().enumerate() {
        let _ = writeln!(yaml, "  - {{address: {b}, labels: {{version: v{i}}}}}");
    }
    yaml.push_str(
        "---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: measured}
spec:
  host: measured.bench.svc.cluster.local
  subsets:
",
    );
    for i in 0..BACKENDS.len() {
        let _ = writeln!(yaml, "  - {{name: v{i}, labels: {{version: v{i}}}}}");
    }
    yaml.push_str(
        "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: measured}
spec:
  hosts: [measured.bench.svc.cluster.local]
  tcp:
  - route:
",
    );
    for (i, weight) in w.iter().enumerate() {
        let _ = writeln!(
            yaml,
            "    - {{destination: {{host: measured.bench.svc.cluster.local, subset: v{i}}}, weight: {weight}}}"
        );
    }
    let _ = write!(
        yaml,
        "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: stream}}
spec:
  hosts: [stream.bench.svc.cluster.local]
  addresses: [{STREAM_VIP}]
  ports: [{{number: {STREAM_PORT}, name: tcp, protocol: TCP, targetPort: {STREAM_BACKEND_PORT}}}]
  resolution: STATIC
  endpoints: [{{address: {STREAM_BACKEND}}}]
"
    );
    let file = dir.join("measured.yaml");
    // Written whole and renamed, as an operator's tooling would, so the agent never reads a
    // half-written file.
    let tmp = dir.join(".measured.yaml.tmp");
    fs::write(&tmp, yaml).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, &file).with_context(|| format!("writing {}", file.display()))
}

/// The range service: a ServiceEntry whose one address is [`RANGE`], with the measured
/// service's backends.
fn write_range(dir: &Path) -> Result<()> {
    let mut yaml = format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: range}}
spec:
  hosts: [range.bench.internal]
  addresses: [{RANGE}]
  ports: [{{number: {PORT}, name: tcp, protocol: TCP, targetPort: {BACKEND_PORT}}}]
  resolution: STATIC
  endpoints:
"
    );
    for b in BACKENDS {
        let _ = writeln!(yaml, "  - {{address: {b}}}");
    }
    let file = dir.join("range.yaml");
    fs::write(&file, yaml).with_context(|| format!("writing {}", file.display()))
}

fn filler_yaml(yaml: &mut String, i: usize, virtual_services: bool) {
    let vip = filler_vip(i);
    let endpoints = filler_endpoints(i);
    let _ = write!(
        yaml,
        "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: fill-{i}}}
spec:
  hosts: [fill-{i}.bench.svc.cluster.local]
  addresses: [{vip}]
  ports: [{{number: {PORT}, name: tcp, protocol: TCP, targetPort: {BACKEND_PORT}}}]
  resolution: STATIC
  endpoints:
  - {{address: {}, labels: {{version: v1}}}}
  - {{address: {}, labels: {{version: v1}}}}
  - {{address: {}, labels: {{version: v2}}}}
  - {{address: {}, labels: {{version: v2}}}}
",
        endpoints[0], endpoints[1], endpoints[2], endpoints[3]
    );
    if virtual_services {
        let _ = write!(
            yaml,
            "---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: fill-{i}}}
spec:
  host: fill-{i}.bench.svc.cluster.local
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: fill-{i}}}
spec:
  hosts: [fill-{i}.bench.svc.cluster.local]
  tcp:
  - route:
    - {{destination: {{host: fill-{i}.bench.svc.cluster.local, subset: v1}}, weight: 90}}
    - {{destination: {{host: fill-{i}.bench.svc.cluster.local, subset: v2}}, weight: 10}}
"
        );
    }
}

/// The nat table kube-proxy's iptables mode would write for the same services: a
/// KUBE-SERVICES dispatch chain with one rule per service, a KUBE-SVC chain per service that
/// picks an endpoint with `statistic --mode random` probabilities 1/n, 1/(n-1), ..., and a
/// KUBE-SEP chain per endpoint that DNATs. The measured service sits in the middle of the
/// dispatch list (the average case of its linear walk).
pub fn iptables_ruleset(services: usize) -> String {
    let fillers = services.saturating_sub(1);
    let mut chains = String::new();
    let mut rules = String::new();
    let mut dispatch = String::new();
    let mut service =
        |name: &str, vip: Ipv4Addr, port: u16, endpoints: &[Ipv4Addr], backend_port: u16| {
            let svc = format!("KUBE-SVC-{name}");
            let _ = writeln!(chains, ":{svc} - [0:0]");
            let _ = writeln!(
                dispatch,
                "-A KUBE-SERVICES -d {vip}/32 -p tcp -m tcp --dport {port} -j {svc}"
            );
            let n = endpoints.len();
            for (k, ep) in endpoints.iter().enumerate() {
                let sep = format!("KUBE-SEP-{name}-{k}");
                let _ = writeln!(chains, ":{sep} - [0:0]");
                let left = n - k;
                if left > 1 {
                    let p = 1.0 / left as f64;
                    let _ = writeln!(
                        rules,
                        "-A {svc} -m statistic --mode random --probability {p:.11} -j {sep}"
                    );
                } else {
                    let _ = writeln!(rules, "-A {svc} -j {sep}");
                }
                let _ = writeln!(
                    rules,
                    "-A {sep} -p tcp -m tcp -j DNAT --to-destination {ep}:{backend_port}"
                );
            }
        };
    let middle = fillers / 2;
    for i in 0..fillers {
        if i == middle {
            service("MEASURED", VIP, PORT, &BACKENDS, BACKEND_PORT);
        }
        service(
            &format!("F{i}"),
            filler_vip(i),
            PORT,
            &filler_endpoints(i),
            BACKEND_PORT,
        );
    }
    if fillers == 0 {
        service("MEASURED", VIP, PORT, &BACKENDS, BACKEND_PORT);
    }
    format!(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n{chains}-A OUTPUT -j KUBE-SERVICES\n{dispatch}{rules}COMMIT\n"
    )
}

/// haproxy in TCP mode on [`HAPROXY_VIP`] in front of the measured service's backends, one
/// thread.
pub fn haproxy_config() -> String {
    let mut cfg = format!(
        "global\n    nbthread 1\n    maxconn 4000\n\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\nfrontend measured\n    bind {HAPROXY_VIP}:{PORT}\n    default_backend measured\n\nbackend measured\n    balance roundrobin\n"
    );
    for (i, b) in BACKENDS.iter().enumerate() {
        let _ = writeln!(cfg, "    server b{i} {b}:{BACKEND_PORT}");
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_has_kube_proxy_shape() {
        let rules = iptables_ruleset(3);
        assert_eq!(rules.matches("-A KUBE-SERVICES -d").count(), 3);
        assert!(rules.contains("--probability 0.25000000000 -j KUBE-SEP-MEASURED-0"));
        assert!(rules.contains("--probability 0.33333333333 -j KUBE-SEP-MEASURED-1"));
        assert!(rules.contains("-A KUBE-SVC-MEASURED -j KUBE-SEP-MEASURED-3"));
        assert!(rules.contains("DNAT --to-destination 127.0.1.4:8080"));
        assert!(rules.starts_with("*nat\n") && rules.ends_with("COMMIT\n"));
    }

    #[test]
    fn haproxy_binds_its_own_vip() {
        let cfg = haproxy_config();
        assert!(cfg.contains("bind 127.100.0.2:80\n"), "{cfg}");
        assert!(!cfg.contains(&VIP.to_string()), "{cfg}");
        assert!(cfg.contains("server b3 127.0.1.4:8080"));
    }

    #[test]
    fn filler_addresses_are_distinct_loopback() {
        assert_eq!(filler_vip(0), Ipv4Addr::new(127, 101, 0, 0));
        assert_eq!(filler_vip(30_000), Ipv4Addr::new(127, 101, 117, 48));
        assert!(filler_endpoints(29_999).iter().all(|a| a.is_loopback()));
    }
}
