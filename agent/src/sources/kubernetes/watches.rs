//! The watches on the API server (kube-rs watchers, which list, then watch from the list's
//! resource version, resume a cut watch from the last version seen and list again after a
//! 410 Gone), feeding the cluster state; and the debounce that turns a burst of events into
//! one batch for the agent's loop.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Config};
use tokio::sync::{Notify, mpsc};
use vsteer_model::Kind;
use vsteer_model::identity::ISTIO_NETWORKING_GROUP;

use super::cluster::{Cluster, Object, Watched};
use super::node_pods::NodePods;
use crate::sources::watch::Batch;

/// A batch is sent once events stop for this long...
pub const QUIET: Duration = Duration::from_millis(10);
/// ...or this long after its first event, whichever comes first. istiod waits 100 ms (at
/// most 10 s) because each push goes to every proxy of the mesh; vsteer writes one node's
/// maps, in microseconds per service, so it waits far less: an endpoint change reaches the
/// kernel in tens of milliseconds.
pub const CEILING: Duration = Duration::from_millis(30);

/// How to reach the API server and name its services.
#[derive(Debug, Clone)]
pub struct KubeSettings {
    /// `None`: in-cluster config, else `KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Services are `name.namespace.svc.<domain>`.
    pub cluster_domain: String,
    /// This node's name: its pods are watched, with their cgroups under `cgroup_root`
    /// (`None`: no node pods are kept).
    pub node_name: Option<String>,
    /// The cgroup v2 directory kubelet's pod cgroups are under.
    pub cgroup_root: PathBuf,
}

/// The running watches; dropping them stops them.
pub struct Watches {
    pub cluster: Arc<Mutex<Cluster>>,
    /// The pods of this node, when its name is known.
    pub node_pods: Option<Arc<Mutex<NodePods>>>,
    synced: tokio::sync::watch::Receiver<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Watches {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Watches {
    /// Waits until every watch has listed its kind once (the agent applies nothing before:
    /// a partial view would remove services that are only not listed yet). Fails when the
    /// watches stopped first.
    pub async fn synced(&mut self) -> Result<()> {
        match self.synced.wait_for(|synced| *synced).await {
            Ok(_) => Ok(()),
            Err(_) => anyhow::bail!("the Kubernetes watches stopped before their first list"),
        }
    }

    /// Whether a watch task ended: they never do unless one broke (a panic), and then the
    /// agent's view of the cluster stops following it.
    pub fn stopped(&self) -> bool {
        self.tasks.iter().any(|task| task.is_finished())
    }
}

/// Connects and starts the watches; batches of changes go to `changed` once all are synced,
/// and every watch failure counts in `errors`.
pub async fn start(
    settings: &KubeSettings,
    changed: mpsc::UnboundedSender<Batch>,
    errors: prometheus_client::metrics::counter::Counter,
) -> Result<Watches> {
    let config = match &settings.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("--kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("--kubeconfig {}", path.display()))?
        }
        None => Config::infer()
            .await
            .context("no Kubernetes config: not in a cluster, and no KUBECONFIG or ~/.kube/config (or give --kubeconfig)")?,
    };
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config).context("the Kubernetes client")?;
    let istio = discover(&client, &server).await;
    if istio.is_empty() {
        tracing::info!(
            "the API server serves no {ISTIO_NETWORKING_GROUP} kinds (Istio's CRDs are not installed): \
             the cluster's Services alone are steered"
        );
    }
    let cluster = Arc::new(Mutex::new(Cluster::new(&settings.cluster_domain)));
    let notify = Arc::new(Notify::new());
    let mut watches = vec![
        (Watched::Services, ApiResource::erase::<Service>(&())),
        (
            Watched::EndpointSlices,
            ApiResource::erase::<EndpointSlice>(&()),
        ),
    ];
    watches.extend(istio.iter().map(|(k, r)| (Watched::Istio(*k), r.clone())));
    let mut expected: Vec<Watched> = watches.iter().map(|(w, _)| *w).collect();
    expected.push(Watched::Pods);
    let mut tasks = Vec::new();
    // Every event goes to the cluster state, then wakes the debounce.
    let into_cluster = |watched: Watched| {
        let (cluster, notify) = (cluster.clone(), notify.clone());
        move |event| {
            let Ok(mut cluster) = cluster.lock() else {
                return false;
            };
            cluster.event(watched, event);
            notify.notify_one();
            true
        }
    };
    for (watched, resource) in watches {
        let stream = dynamic_watch(&client, resource, watcher::Config::default());
        tasks.push(tokio::spawn(follow(
            watched.name(),
            stream,
            errors.clone(),
            into_cluster(watched),
        )));
    }
    // Metadata only: a pod's labels, never its spec (a node may see thousands of pods).
    let pods = Api::<PartialObjectMeta<Pod>>::all(client.clone());
    let pods = watcher::watcher(pods, watcher::Config::default())
        .default_backoff()
        .map(|event| {
            event.map(|e| {
                map_event(e, |p| Object {
                    meta: p.metadata,
                    body: serde_json::Value::Null,
                })
            })
        });
    tasks.push(tokio::spawn(follow(
        Watched::Pods.name(),
        pods,
        errors.clone(),
        into_cluster(Watched::Pods),
    )));
    let node_pods = settings.node_name.as_ref().map(|node| {
        let pods = Arc::new(Mutex::new(NodePods::new(&settings.cgroup_root)));
        let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
        let stream = dynamic_watch(&client, ApiResource::erase::<Pod>(&()), config);
        let into_pods = {
            let pods = pods.clone();
            // Nothing to recompile: no batch.
            move |event| {
                let Ok(mut pods) = pods.lock() else {
                    return false;
                };
                pods.event(event);
                true
            }
        };
        tasks.push(tokio::spawn(follow(
            "node's Pod",
            stream,
            errors.clone(),
            into_pods,
        )));
        pods
    });
    let (synced_tx, synced) = tokio::sync::watch::channel(false);
    tasks.push(tokio::spawn(debounce(
        cluster.clone(),
        expected,
        notify,
        synced_tx,
        changed,
    )));
    tracing::info!(
        server,
        istio_kinds = istio.len(),
        "watching the Kubernetes API"
    );
    Ok(Watches {
        cluster,
        node_pods,
        synced,
        tasks,
    })
}

/// How long discovery waits between tries, at most.
const DISCOVERY_RETRY_MAX: Duration = Duration::from_secs(30);

/// [`istio_resources`], tried until the API server answers (a node's agent may start before
/// the API server is reachable: the pinned datapath serves meanwhile), with backoff.
async fn discover(client: &Client, server: &str) -> Vec<(Kind, ApiResource)> {
    let mut wait = Duration::from_millis(200);
    loop {
        match istio_resources(client).await {
            Ok(found) => return found,
            Err(err) => {
                tracing::warn!(
                    "the API server {server} does not answer discovery: {err:#}; the pinned \
                     datapath serves meanwhile; trying again in {} ms",
                    wait.as_millis()
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(DISCOVERY_RETRY_MAX);
            }
        }
    }
}

/// The Istio kinds the server serves, each at the newest version vsteer reads (`v1`, else
/// `v1beta1`): none when the group is not served.
async fn istio_resources(client: &Client) -> Result<Vec<(Kind, ApiResource)>> {
    let groups = client
        .list_api_groups()
        .await
        .context("listing the API groups")?;
    if !groups
        .groups
        .iter()
        .any(|g| g.name == ISTIO_NETWORKING_GROUP)
    {
        return Ok(Vec::new());
    }
    let group = kube::discovery::group(client, ISTIO_NETWORKING_GROUP).await?;
    let mut found = Vec::new();
    for kind in Kind::ISTIO {
        let resource = vsteer_model::identity::SUPPORTED_VERSIONS
            .iter()
            .find_map(|version| {
                group
                    .versioned_resources(version)
                    .into_iter()
                    .find(|(r, _)| r.kind == kind.as_str())
                    .map(|(r, _)| r)
            });
        if let Some(resource) = resource {
            found.push((kind, resource));
        }
    }
    Ok(found)
}

/// A watched object with its kind and apiVersion set: list items come without them.
fn full(mut object: DynamicObject, resource: &ApiResource) -> Object {
    let types = object.types.get_or_insert_with(|| kube::api::TypeMeta {
        api_version: resource.api_version.clone(),
        kind: resource.kind.clone(),
    });
    if types.kind.is_empty() {
        types.kind = resource.kind.clone();
        types.api_version = resource.api_version.clone();
    }
    let meta = object.metadata.clone();
    let body = serde_json::to_value(&object).unwrap_or(serde_json::Value::Null);
    Object { meta, body }
}

fn map_event<K>(event: Event<K>, f: impl Fn(K) -> Object) -> Event<Object> {
    match event {
        Event::Apply(o) => Event::Apply(f(o)),
        Event::Delete(o) => Event::Delete(f(o)),
        Event::Init => Event::Init,
        Event::InitApply(o) => Event::InitApply(f(o)),
        Event::InitDone => Event::InitDone,
    }
}

/// One kind's watch, every object read as JSON (a malformed one is then one error of its
/// own, not a failed list).
fn dynamic_watch(
    client: &Client,
    resource: ApiResource,
    config: watcher::Config,
) -> impl futures_util::Stream<Item = Result<Event<Object>, watcher::Error>> + use<> {
    let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
    watcher::watcher(api, config)
        .default_backoff()
        .map(move |event| event.map(|e| map_event(e, |o| full(o, &resource))))
}

/// Hands one watch's events to `take` until the stream ends (it does not: the watcher
/// retries with backoff, and each failure is logged and counted) or `take` says stop.
async fn follow(
    name: &'static str,
    stream: impl futures_util::Stream<Item = Result<Event<Object>, watcher::Error>>,
    errors: prometheus_client::metrics::counter::Counter,
    mut take: impl FnMut(Event<Object>) -> bool,
) {
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => {
                if !take(event) {
                    return;
                }
            }
            Err(err) => {
                errors.inc();
                tracing::warn!("the {name} watch failed: {err}; retrying");
            }
        }
    }
}

/// Sends one batch per burst of events, once every expected watch has listed once.
async fn debounce(
    cluster: Arc<Mutex<Cluster>>,
    expected: Vec<Watched>,
    notify: Arc<Notify>,
    synced: tokio::sync::watch::Sender<bool>,
    changed: mpsc::UnboundedSender<Batch>,
) {
    loop {
        notify.notified().await;
        let started = Instant::now();
        loop {
            let wait = QUIET.min(CEILING.saturating_sub(started.elapsed()));
            tokio::select! {
                _ = notify.notified() => {}
                _ = tokio::time::sleep(wait) => break,
            }
            if started.elapsed() >= CEILING {
                break;
            }
        }
        let (ready, first) = match cluster.lock() {
            Ok(cluster) => (cluster.synced(&expected), cluster.first_unread()),
            Err(_) => return,
        };
        if !ready {
            continue;
        }
        if !*synced.borrow() {
            // The first read is the agent's own, after this: no batch for it.
            let _ = synced.send(true);
            continue;
        }
        if let Some(first) = first {
            let batch = Batch {
                paths: Vec::new(),
                first_event: first,
            };
            if changed.send(batch).is_err() {
                return;
            }
        }
    }
}
