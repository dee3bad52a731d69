//! A small Kubernetes API server for tests (no real one can be installed here): discovery
//! (`/api`, `/apis`, group and resource lists), cluster-wide list with `resourceVersion` and
//! `limit`/`continue`, `watch=true` streams of ADDED / MODIFIED / DELETED / BOOKMARK events,
//! `410 Gone` for a resource version older than the last compaction, cut watches, and the
//! metadata-only form kube-rs asks for pods. Plain HTTP on loopback; no auth, no
//! namespaced paths, no writes over HTTP: the test changes objects by calling methods. Test
//! equipment, not a feature: it serves only what the agent under test asks.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};

/// The collections the server holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Collection {
    Services,
    Pods,
    EndpointSlices,
    VirtualServices,
    DestinationRules,
    ServiceEntries,
}

impl Collection {
    const ALL: [Collection; 6] = [
        Collection::Services,
        Collection::Pods,
        Collection::EndpointSlices,
        Collection::VirtualServices,
        Collection::DestinationRules,
        Collection::ServiceEntries,
    ];

    fn plural(self) -> &'static str {
        match self {
            Collection::Services => "services",
            Collection::Pods => "pods",
            Collection::EndpointSlices => "endpointslices",
            Collection::VirtualServices => "virtualservices",
            Collection::DestinationRules => "destinationrules",
            Collection::ServiceEntries => "serviceentries",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Collection::Services => "Service",
            Collection::Pods => "Pod",
            Collection::EndpointSlices => "EndpointSlice",
            Collection::VirtualServices => "VirtualService",
            Collection::DestinationRules => "DestinationRule",
            Collection::ServiceEntries => "ServiceEntry",
        }
    }

    fn is_istio(self) -> bool {
        matches!(
            self,
            Collection::VirtualServices | Collection::DestinationRules | Collection::ServiceEntries
        )
    }

    /// The group/version prefix of its path (`api/v1`, `apis/discovery.k8s.io/v1`).
    fn group_version(self, istio: &str) -> String {
        match self {
            Collection::Services | Collection::Pods => "api/v1".into(),
            Collection::EndpointSlices => "apis/discovery.k8s.io/v1".into(),
            _ => format!("apis/networking.istio.io/{istio}"),
        }
    }

    fn of_kind(kind: &str) -> Option<Collection> {
        Collection::ALL.into_iter().find(|c| c.kind() == kind)
    }
}

/// Which versions of Istio's networking group the server serves (`None`: no Istio CRDs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IstioApi {
    V1,
    /// An older Istio: only `v1beta1`.
    V1beta1Only,
    None,
}

impl IstioApi {
    fn version(self) -> Option<&'static str> {
        match self {
            IstioApi::V1 => Some("v1"),
            IstioApi::V1beta1Only => Some("v1beta1"),
            IstioApi::None => None,
        }
    }
}

#[derive(Clone, Debug)]
struct Event {
    rv: u64,
    collection: Collection,
    kind: &'static str,
    object: Value,
}

struct State {
    istio: IstioApi,
    rv: u64,
    objects: BTreeMap<(Collection, String, String), Value>,
    /// Every change since the last compaction, for watches that resume from a version.
    log: Vec<Event>,
    /// A watch from a version older than this gets 410 Gone.
    oldest: u64,
    /// Bumped to cut every open watch.
    generation: u64,
    /// Unreachable: every connection is closed at once, unanswered.
    down: bool,
    uid: u64,
}

pub struct KubeApi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<Event>,
    /// Watch streams open now.
    watches: Arc<std::sync::atomic::AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How many events a slow watch may lag behind before it is cut (it then resumes from its
/// last version, as from any cut).
const LAG: usize = 65_536;

impl KubeApi {
    /// Starts the server on a free loopback port, on a thread of its own.
    pub fn start(istio: IstioApi) -> Result<KubeApi> {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").context("binding the test API server")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            istio,
            rv: 100,
            objects: BTreeMap::new(),
            log: Vec::new(),
            oldest: 0,
            generation: 0,
            down: false,
            uid: 0,
        }));
        let (events, _) = broadcast::channel(LAG);
        let watches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = Server {
            state: state.clone(),
            events: events.clone(),
            watches: watches.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("kube-api".into())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(server.serve(listener, stopped));
            })
            .context("starting the test API server's thread")?;
        Ok(KubeApi {
            addr,
            state,
            events,
            watches,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Writes a kubeconfig that points at this server.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<()> {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: http://{}\n\
             users:\n- name: test\n  user:\n    token: test\ncontexts:\n- name: test\n  context:\n    \
             cluster: test\n    user: test\ncurrent-context: test\n",
            self.addr
        );
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// Creates or replaces `object` (its `kind` picks the collection), as `kubectl apply`
    /// would: the server sets uid, resourceVersion and creationTimestamp.
    pub fn apply(&self, mut object: Value) -> Result<()> {
        let (collection, namespace, name) = identify(&object)?;
        let mut state = self.lock();
        state.rv += 1;
        let rv = state.rv;
        let key = (collection, namespace, name);
        let (kind, uid, created) = match state.objects.get(&key) {
            Some(old) => (
                "MODIFIED",
                old["metadata"]["uid"].clone(),
                old["metadata"]["creationTimestamp"].clone(),
            ),
            None => {
                state.uid += 1;
                let uid = json!(format!("00000000-0000-0000-0000-{:012}", state.uid));
                // Distinct, increasing creation times: Istio orders conflicts by them.
                let created = json!(format!(
                    "2026-11-01T00:{:02}:{:02}Z",
                    (state.uid / 60) % 60,
                    state.uid % 60
                ));
                ("ADDED", uid, created)
            }
        };
        let metadata = &mut object["metadata"];
        metadata["uid"] = uid;
        metadata["resourceVersion"] = json!(rv.to_string());
        metadata["creationTimestamp"] = created;
        state.objects.insert(key, object.clone());
        self.record(
            &mut state,
            Event {
                rv,
                collection,
                kind,
                object,
            },
        );
        Ok(())
    }

    /// The object `kind` `namespace/name` as the server holds it (uid and versions set).
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let collection = Collection::of_kind(kind)?;
        self.lock()
            .objects
            .get(&(collection, namespace.into(), name.into()))
            .cloned()
    }

    /// Deletes the object `kind` `namespace/name`; false if there was none.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> Result<bool> {
        let collection =
            Collection::of_kind(kind).with_context(|| format!("no collection for kind {kind}"))?;
        let mut state = self.lock();
        let Some(mut object) = state
            .objects
            .remove(&(collection, namespace.into(), name.into()))
        else {
            return Ok(false);
        };
        state.rv += 1;
        let rv = state.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.record(
            &mut state,
            Event {
                rv,
                collection,
                kind: "DELETED",
                object,
            },
        );
        Ok(true)
    }

    /// Makes the server unreachable (every open watch cut, every new connection closed at
    /// once, unanswered) or reachable again.
    pub fn set_down(&self, down: bool) {
        let mut state = self.lock();
        state.down = down;
        state.generation += 1;
    }

    /// Cuts every open watch; clients resume from their last resource version.
    pub fn cut_watches(&self) {
        self.lock().generation += 1;
    }

    /// Forgets the change log and cuts every watch: a client resuming from a version older
    /// than the latest gets 410 Gone and must list again.
    pub fn compact(&self) {
        let mut state = self.lock();
        state.log.clear();
        // Events up to now are forgotten: a watch must start from now or later.
        state.oldest = state.rv;
        state.generation += 1;
    }

    /// Sends a BOOKMARK with the current version on every open watch.
    pub fn bookmark(&self) {
        let state = self.lock();
        for collection in Collection::ALL {
            let object = json!({"kind": collection.kind(), "apiVersion": api_version(collection, state.istio),
                                "metadata": {"resourceVersion": state.rv.to_string()}});
            let _ = self.events.send(Event {
                rv: state.rv,
                collection,
                kind: "BOOKMARK",
                object,
            });
        }
    }

    /// Watch streams open now.
    pub fn open_watches(&self) -> usize {
        self.watches.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until at least `n` watches are open.
    pub fn wait_for_watches(&self, n: usize, timeout: Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        while self.open_watches() < n {
            if std::time::Instant::now() > deadline {
                bail!(
                    "{} watches open after {timeout:?}, {n} expected",
                    self.open_watches()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs and broadcasts under the state's lock, so a watch that replays the log and then
    /// subscribes (also under the lock) never misses nor repeats an event.
    fn record(&self, state: &mut State, event: Event) {
        state.log.push(event.clone());
        let _ = self.events.send(event);
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn identify(object: &Value) -> Result<(Collection, String, String)> {
    let kind = object["kind"].as_str().context("the object has no kind")?;
    let collection =
        Collection::of_kind(kind).with_context(|| format!("no collection for kind {kind}"))?;
    let name = object["metadata"]["name"]
        .as_str()
        .context("the object has no metadata.name")?;
    let namespace = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    Ok((collection, namespace.into(), name.into()))
}

fn api_version(collection: Collection, istio: IstioApi) -> String {
    match collection {
        Collection::Services | Collection::Pods => "v1".into(),
        Collection::EndpointSlices => "discovery.k8s.io/v1".into(),
        _ => format!("networking.istio.io/{}", istio.version().unwrap_or("v1")),
    }
}

type Body = BoxBody<Bytes, Infallible>;

#[derive(Clone)]
struct Server {
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<Event>,
    watches: Arc<std::sync::atomic::AtomicUsize>,
}

impl Server {
    async fn serve(self, listener: std::net::TcpListener, mut stopped: oneshot::Receiver<()>) {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            return;
        };
        loop {
            let stream = tokio::select! {
                _ = &mut stopped => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            if self.lock().down {
                drop(stream);
                continue;
            }
            let server = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.handle(request)) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    }

    fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let path = request.uri().path().trim_end_matches('/').to_string();
        let query: BTreeMap<String, String> = request
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_string(), percent_decoded(v)))
            .collect();
        let metadata_only = request
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("as=PartialObjectMetadata"));
        let istio = self.lock().istio;
        if let Some(body) = discovery(&path, istio) {
            return json_response(StatusCode::OK, &body);
        }
        let Some(collection) = Collection::ALL.into_iter().find(|c| {
            (!c.is_istio() || istio.version().is_some())
                && path
                    == format!(
                        "/{}/{}",
                        c.group_version(istio.version().unwrap_or("v1")),
                        c.plural()
                    )
        }) else {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("the server could not find the requested resource ({path})"),
            );
        };
        if matches!(query.get("watch").map(String::as_str), Some("true" | "1")) {
            return self.watch(collection, &query, metadata_only);
        }
        self.list(collection, &query, metadata_only)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn list(
        &self,
        collection: Collection,
        query: &BTreeMap<String, String>,
        metadata_only: bool,
    ) -> Response<Body> {
        let state = self.lock();
        let selector = query
            .get("fieldSelector")
            .map(String::as_str)
            .unwrap_or_default();
        let all: Vec<&Value> = state
            .objects
            .iter()
            .filter(|((c, _, _), v)| *c == collection && selects(selector, v))
            .map(|(_, v)| v)
            .collect();
        // `continue` is `<version>:<offset>`: pages of one list share the version they began at.
        let (rv, offset) = match query.get("continue").and_then(|c| c.split_once(':')) {
            Some((rv, offset)) => (rv.parse().unwrap_or(state.rv), offset.parse().unwrap_or(0)),
            None => (state.rv, 0),
        };
        if rv < state.oldest {
            return status(StatusCode::GONE, "Expired", "the continue token is too old");
        }
        let limit = query
            .get("limit")
            .and_then(|l| l.parse().ok())
            .filter(|&l: &usize| l > 0)
            .unwrap_or(usize::MAX);
        let page: Vec<Value> = all
            .iter()
            .skip(offset)
            .take(limit)
            .map(|o| {
                if metadata_only {
                    partial(o)
                } else {
                    (*o).clone()
                }
            })
            .collect();
        let next = offset + page.len();
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if next < all.len() {
            metadata["continue"] = json!(format!("{rv}:{next}"));
        }
        let (kind, api_version) = if metadata_only {
            (
                "PartialObjectMetadataList".to_string(),
                "meta.k8s.io/v1".to_string(),
            )
        } else {
            (
                format!("{}List", collection.kind()),
                api_version(collection, state.istio),
            )
        };
        json_response(
            StatusCode::OK,
            &json!({"kind": kind, "apiVersion": api_version, "metadata": metadata, "items": page}),
        )
    }

    fn watch(
        &self,
        collection: Collection,
        query: &BTreeMap<String, String>,
        metadata_only: bool,
    ) -> Response<Body> {
        let (lines, rx) = mpsc::channel::<Bytes>(1024);
        let from: u64 = query
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let timeout = query
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .map_or(Duration::from_secs(300), Duration::from_secs);
        let selector = query.get("fieldSelector").cloned().unwrap_or_default();
        let bookmarks = query
            .get("allowWatchBookmarks")
            .is_some_and(|v| v == "true");
        let (backlog, mut events, generation) = {
            let state = self.lock();
            if from < state.oldest {
                let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                    "status": "Failure", "reason": "Expired", "code": 410,
                    "message": format!("too old resource version: {from} ({})", state.oldest)}});
                return stream_of(vec![line(&gone)]);
            }
            let backlog: Vec<Event> = state
                .log
                .iter()
                .filter(|e| e.collection == collection && e.rv > from)
                .filter(|e| selects(&selector, &e.object))
                .cloned()
                .collect();
            (backlog, self.events.subscribe(), state.generation)
        };
        let state = self.state.clone();
        let watches = self.watches.clone();
        watches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::spawn(async move {
            let render = |event: &Event| {
                let object = if metadata_only && event.kind != "BOOKMARK" {
                    partial(&event.object)
                } else {
                    event.object.clone()
                };
                line(&json!({"type": event.kind, "object": object}))
            };
            let deadline = tokio::time::Instant::now() + timeout;
            'stream: {
                for event in &backlog {
                    if lines.send(render(event)).await.is_err() {
                        break 'stream;
                    }
                }
                loop {
                    let cut = || state.lock().map_or(true, |s| s.generation != generation);
                    if cut() {
                        break;
                    }
                    let event = tokio::select! {
                        event = events.recv() => event,
                        _ = tokio::time::sleep_until(deadline) => break,
                        // Cuts are noticed within this tick.
                        _ = tokio::time::sleep(Duration::from_millis(20)) => continue,
                    };
                    match event {
                        Ok(event)
                            if event.collection != collection
                                || (event.kind == "BOOKMARK" && !bookmarks)
                                || (event.kind != "BOOKMARK"
                                    && !selects(&selector, &event.object)) => {}
                        Ok(event) => {
                            if cut() || lines.send(render(&event)).await.is_err() {
                                break;
                            }
                        }
                        // Lagged or closed: the client resumes from its last version.
                        Err(_) => break,
                    }
                }
            }
            watches.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|bytes| (Ok::<_, Infallible>(Frame::data(bytes)), rx))
        });
        let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// Whether `object` matches a field selector (`a.b=v,c==w,d!=x`; empty: everything).
fn selects(selector: &str, object: &Value) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let (path, want, equal) = match term.split_once("!=") {
            Some((path, want)) => (path, want, false),
            None => match term.split_once("==").or_else(|| term.split_once('=')) {
                Some((path, want)) => (path, want, true),
                None => return false,
            },
        };
        let found = path
            .split('.')
            .try_fold(object, |value, key| value.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default();
        (found == want) == equal
    })
}

/// A query value with its `%XX` escapes (and `+`) decoded.
fn percent_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An object as the metadata-only form gives it.
fn partial(object: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"]})
}

fn line(value: &Value) -> Bytes {
    let mut text = value.to_string();
    text.push('\n');
    Bytes::from(text)
}

fn stream_of(lines: Vec<Bytes>) -> Response<Body> {
    let stream = futures_util::stream::iter(
        lines
            .into_iter()
            .map(|b| Ok::<_, Infallible>(Frame::data(b))),
    );
    Response::new(BodyExt::boxed(StreamBody::new(stream)))
}

fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(BodyExt::boxed(Full::new(Bytes::from(body.to_string()))));
    *response.status_mut() = code;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "reason": reason, "message": message, "code": code.as_u16()}),
    )
}

/// Kinds served for discovery only (no lists, no watches): what `kubectl apply --dry-run` of
/// the deploy manifests maps, as (group, version, plural, kind, namespaced).
const DISCOVERY_ONLY: [(&str, &str, &str, &str, bool); 6] = [
    ("", "v1", "namespaces", "Namespace", false),
    ("", "v1", "serviceaccounts", "ServiceAccount", true),
    ("apps", "v1", "daemonsets", "DaemonSet", true),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
    ),
];

/// The discovery documents: `/api`, `/apis`, and each group's and version's resources.
fn discovery(path: &str, istio: IstioApi) -> Option<Value> {
    // (group, version, plural, kind, namespaced) of everything served.
    let mut served: Vec<(String, String, &str, &str, bool)> = DISCOVERY_ONLY
        .iter()
        .map(|(g, v, p, k, n)| (g.to_string(), v.to_string(), *p, *k, *n))
        .collect();
    for c in Collection::ALL {
        let group_version = c.group_version(istio.version().unwrap_or("v1"));
        if c.is_istio() && istio.version().is_none() {
            continue;
        }
        let parts: Vec<&str> = group_version.split('/').collect();
        let (group, version) = match parts[..] {
            ["api", version] => ("", version),
            ["apis", group, version] => (group, version),
            _ => continue,
        };
        served.push((group.into(), version.into(), c.plural(), c.kind(), true));
    }
    let resources = |group: &str, version: &str| {
        let group_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        let list: Vec<Value> = served
            .iter()
            .filter(|(g, v, ..)| g == group && v == version)
            .map(|(_, _, plural, kind, namespaced)| {
                json!({"name": plural, "singularName": kind.to_lowercase(), "namespaced": namespaced,
                       "kind": kind, "verbs": ["get", "list", "watch"]})
            })
            .collect();
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": list})
    };
    let group_doc = |name: &str| {
        let versions: Vec<Value> = served
            .iter()
            .filter(|(g, ..)| g == name)
            .map(|(_, v, ..)| v.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
            .collect();
        json!({"name": name, "versions": versions, "preferredVersion": versions[0]})
    };
    let groups: std::collections::BTreeSet<&str> = served
        .iter()
        .map(|(g, ..)| g.as_str())
        .filter(|g| !g.is_empty())
        .collect();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts[..] {
        ["api"] => Some(
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        ),
        ["api", "v1"] => Some(resources("", "v1")),
        ["apis"] => {
            let list: Vec<Value> = groups.iter().map(|g| group_doc(g)).collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list}))
        }
        ["apis", group] if groups.contains(group) => Some(group_doc(group)),
        ["apis", group, version] if served.iter().any(|(g, v, ..)| g == group && v == version) => {
            Some(resources(group, version))
        }
        _ => None,
    }
}
