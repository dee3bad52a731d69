//! The route tables the proxy serves, by original destination (VIP:port), swapped atomically:
//! a request loads the map once and keeps its table to the end, so a change applies to new
//! requests at once while in-flight ones finish on the table they started with.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustc_hash::FxHashMap;
use vsteer_plan::http::HttpRouteTable;
use vsteer_plan::{Decision, Plan, Protocol, ServiceKey, ServicePlan};

use crate::compiled::CompiledTable;
use crate::pool::Pools;

type TableMap = FxHashMap<SocketAddr, Arc<CompiledTable>>;

/// Every proxied service's compiled HTTP route table. Cloning shares it.
#[derive(Clone, Default)]
pub struct RouteTables {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    current: ArcSwap<TableMap>,
    /// Serialises writers (readers never wait).
    write: Mutex<()>,
    /// Times `current` was replaced.
    generation: AtomicU64,
    /// Told each time `current` is replaced: connections whose service left then drain.
    changes: tokio::sync::watch::Sender<u64>,
    pools: Pools,
}

impl std::fmt::Debug for RouteTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteTables")
            .field("len", &self.len())
            .finish()
    }
}

/// The table the proxy serves for `service`: a TCP service decided for the proxy, with one.
fn proxied(service: &ServicePlan) -> Option<&Arc<HttpRouteTable>> {
    match (&service.decision, service.key.protocol) {
        (Decision::Proxy { .. }, Protocol::Tcp) => service.http.as_ref(),
        _ => None,
    }
}

fn addr(key: &ServiceKey) -> SocketAddr {
    SocketAddr::new(key.vip, key.port)
}

impl RouteTables {
    pub fn new() -> Self {
        Self::default()
    }

    /// The endpoints outlier detection has ejected, across every cluster.
    pub fn ejections(&self) -> crate::Ejections {
        self.inner.pools.outliers.feed.clone()
    }

    /// Serves all proxied services of `plan` (decision Proxy and http Some), and only them.
    pub fn replace(&self, plan: &Plan) {
        let _writer = self.inner.write.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.inner.current.load_full();
        let mut map = TableMap::default();
        for service in plan.services() {
            if let Some(table) = proxied(service) {
                let vip = addr(&service.key);
                map.insert(vip, self.compiled(old.get(&vip), table, vip.port()));
            }
        }
        self.store(map);
    }

    /// Looks only at `changed` keys of `plan`: cheap when none of them is or was proxied (no
    /// copy of the map); otherwise the map is copied once and the changed entries compiled.
    pub fn update(&self, plan: &Plan, changed: &[ServiceKey]) {
        let _writer = self.inner.write.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.inner.current.load_full();
        let mut edits: Vec<(SocketAddr, Option<&Arc<HttpRouteTable>>)> = Vec::new();
        for key in changed {
            if key.protocol != Protocol::Tcp {
                continue;
            }
            let vip = addr(key);
            let new = plan.service(key).and_then(proxied);
            let unchanged = match (old.get(&vip), new) {
                (None, None) => true,
                (Some(current), Some(table)) => same(&current.source, table),
                _ => false,
            };
            if !unchanged {
                edits.push((vip, new));
            }
        }
        if edits.is_empty() {
            return;
        }
        let mut map = TableMap::clone(&old);
        for (vip, table) in edits {
            match table {
                Some(table) => {
                    let compiled = self.compiled(old.get(&vip), table, vip.port());
                    map.insert(vip, compiled);
                }
                None => {
                    map.remove(&vip);
                }
            }
        }
        self.store(map);
    }

    fn store(&self, map: TableMap) {
        self.inner.current.store(Arc::new(map));
        let generation = self.inner.generation.fetch_add(1, Relaxed) + 1;
        self.inner.changes.send_replace(generation);
        self.inner.pools.prune();
    }

    /// How many times the served tables changed (an update touching no proxied service
    /// changes nothing, and leaves this as it was).
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Relaxed)
    }

    /// Proxied services served now.
    pub fn len(&self) -> usize {
        self.inner.current.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `vip` (an original destination) has a table.
    pub fn contains(&self, vip: SocketAddr) -> bool {
        self.inner.current.load().contains_key(&vip)
    }

    /// Changes whenever the served tables do.
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    pub(crate) fn get(&self, vip: SocketAddr) -> Option<Arc<CompiledTable>> {
        self.inner.current.load().get(&vip).cloned()
    }

    /// `table` compiled, or the current compilation when it is the same table.
    fn compiled(
        &self,
        current: Option<&Arc<CompiledTable>>,
        table: &Arc<HttpRouteTable>,
        port: u16,
    ) -> Arc<CompiledTable> {
        match current {
            Some(c) if same(&c.source, table) => c.clone(),
            _ => Arc::new(CompiledTable::compile(table, port, &self.inner.pools)),
        }
    }
}

fn same(a: &Arc<HttpRouteTable>, b: &Arc<HttpRouteTable>) -> bool {
    Arc::ptr_eq(a, b) || **a == **b
}
