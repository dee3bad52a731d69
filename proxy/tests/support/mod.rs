//! What the proxy's tests share: plans compiled from Istio YAML, the testkit's HTTP backends
//! and clients, and a proxy started on 127.0.0.1:0 with a fake original destination.
//! Everything started here is stopped: backends and the proxy on drop (tasks aborted) or
//! `stop()`.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vsteer_model::parse::parse_str;
use vsteer_plan::Plan;
use vsteer_proxy::{OriginalDestination, Proxy, ProxyOptions, ProxyStats, RouteTables};
pub use vsteer_testkit::http::*;

/// Compiles YAML text; panics on any config error (the tests' configs are meant to be good).
pub fn plan_from_yaml(yaml: &str) -> Plan {
    let loaded = parse_str("test.yaml", yaml);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let compiled = vsteer_compiler::compile(&loaded.resources, &Plan::default());
    assert!(compiled.errors.is_empty(), "{:?}", compiled.errors);
    compiled.plan
}

/// A proxy serving `plan`, with every accepted connection's original destination `vip`.
pub struct Harness {
    pub addr: SocketAddr,
    pub tables: RouteTables,
    pub stats: Arc<ProxyStats>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

pub fn fixed(vip: &str) -> Arc<dyn OriginalDestination> {
    let vip: SocketAddr = vip.parse().expect("a VIP:port");
    Arc::new(move |_peer: SocketAddr, _local: SocketAddr| Some(vip))
}

/// Original destinations by the client's source IP: `(client IP, VIP:port)`.
pub fn by_peer_ip(map: &[(&str, &str)]) -> Arc<dyn OriginalDestination> {
    let map: Vec<(IpAddr, SocketAddr)> = map
        .iter()
        .map(|(ip, vip)| (ip.parse().expect("an IP"), vip.parse().expect("a VIP:port")))
        .collect();
    Arc::new(move |peer: SocketAddr, _local: SocketAddr| {
        map.iter()
            .find(|(ip, _)| *ip == peer.ip())
            .map(|(_, vip)| *vip)
    })
}

/// Polls `condition` every 5 ms for up to 10 s; panics naming `what` if it never holds.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{what}: not within 10 s");
}

pub fn test_options() -> ProxyOptions {
    ProxyOptions {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        ..ProxyOptions::default()
    }
}

impl Harness {
    pub async fn start(plan: &Plan, original: Arc<dyn OriginalDestination>) -> Harness {
        Self::with_options(plan, original, test_options()).await
    }

    pub async fn with_options(
        plan: &Plan,
        original: Arc<dyn OriginalDestination>,
        options: ProxyOptions,
    ) -> Harness {
        let tables = RouteTables::new();
        tables.replace(plan);
        let proxy = Proxy::bind(options, original, tables.clone()).expect("bind the proxy");
        let addr = proxy.local_addrs()[0];
        let stats = proxy.stats();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(proxy.serve(async move {
            let _ = stopped.await;
        }));
        Harness {
            addr,
            tables,
            stats,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the proxy and waits for it (bounded).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let done = tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("the proxy stops within 30 s");
            done.expect("the proxy task")
                .expect("the proxy serves without error");
        }
    }
}

/// A ServiceEntry `name` at `vip:port` (port named `http-like`, of `protocol`) with one
/// endpoint per backend, labelled `version: <v>`.
pub fn service_entry(
    name: &str,
    vip: &str,
    port: u16,
    protocol: &str,
    endpoints: &[(&Backend, &str)],
) -> String {
    let mut eps = String::new();
    for (backend, version) in endpoints {
        eps.push_str(&format!(
            "  - address: {}\n    ports:\n      web: {}\n    labels:\n      version: {version}\n",
            backend.addr.ip(),
            backend.addr.port()
        ));
    }
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: {name}
  namespace: default
spec:
  hosts:
  - {name}.default.svc.cluster.local
  addresses:
  - {vip}
  ports:
  - number: {port}
    name: web
    protocol: {protocol}
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
{eps}---
"
    )
}

/// A DestinationRule for `name` with a subset per version, and `policy` (YAML of a
/// trafficPolicy, indented for `spec.trafficPolicy`, may be empty).
pub fn destination_rule(name: &str, versions: &[&str], policy: &str) -> String {
    let mut subsets = String::new();
    for v in versions {
        subsets.push_str(&format!("  - name: {v}\n    labels:\n      version: {v}\n"));
    }
    let policy = if policy.is_empty() {
        String::new()
    } else {
        format!("  trafficPolicy:\n{policy}")
    };
    format!(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: {name}
  namespace: default
spec:
  host: {name}
{policy}  subsets:
{subsets}---
"
    )
}

/// A VirtualService for `name` whose `spec.http` is `http` (YAML, indented by two).
pub fn virtual_service(name: &str, http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {name}
  namespace: default
spec:
  hosts:
  - {name}
  http:
{http}---
"
    )
}
