//! HTTP for tests: hyper backends that answer with their name and what they saw (HTTP/1.1
//! and HTTP/2 prior knowledge, gRPC-shaped exchanges with trailers, WebSocket echo, held
//! and streamed requests), and HTTP/1.1 and HTTP/2 clients over any TCP stream. Backends
//! bind on loopback or inside a test's network namespace; each is stopped (its task
//! aborted) on drop.
#![allow(clippy::missing_panics_doc)]

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use crate::NetNs;

pub type Body = BoxBody<Bytes, BoxError>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

pub fn empty() -> Body {
    Empty::new().map_err(|e| match e {}).boxed()
}

/// The next loopback address for a backend (127.0.1.1, 127.0.1.2, ...).
fn next_ip() -> IpAddr {
    static NEXT: AtomicU8 = AtomicU8::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    IpAddr::from([127, 0, 1, n.max(1)])
}

/// A backend: HTTP/1.1 and HTTP/2 (prior knowledge), answering with its name on the first
/// line of the body and, one per line, what it saw (`method`, `path`, `authority`,
/// `version`, `header NAME: VALUE`). Paths: `/hold` waits for [`Backend::release`] (and
/// `/hold-on/NAME` on the backend called NAME); `/fail-on/NAME` answers 503 from the backend
/// called NAME; `/keep` keeps the request body (see [`Backend::kept`]; `/keep/fail-on/NAME`
/// answers 503 from NAME after reading it); `/echo` streams the request body back; `/stall-body` sends its headers and a first line, then
/// nothing for 10 s; `/flaky` answers 503 and 200 in turn, by a count of the backend's own
/// (its first `/flaky` fails); `/sleep/MS` answers after MS milliseconds (and
/// `/sleep-on/NAME/MS` on the backend called NAME, the others at once), counting the sleeps
/// that ended and those whose request was dropped first (see [`Backend::sleeps`]); gRPC
/// requests get their body back with trailers; a WebSocket upgrade is accepted and each
/// message echoed as `NAME: message`.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    release: Arc<Semaphore>,
    held: Arc<AtomicUsize>,
    /// `METHOD HOST PATH` of every request, in arrival order.
    seen: Arc<std::sync::Mutex<Vec<String>>>,
    /// Connections accepted, open now, and the most open at once.
    connections: Arc<Connections>,
    /// The bodies of `/keep` requests, in arrival order.
    kept: Arc<std::sync::Mutex<Vec<String>>>,
    faults: Arc<Faults>,
    task: JoinHandle<()>,
}

/// What the backend's own failures and sleeps have done so far.
#[derive(Default)]
struct Faults {
    /// `/flaky` requests served: an even count before one means it fails.
    flaky: AtomicUsize,
    sleeps_started: AtomicUsize,
    sleeps_completed: AtomicUsize,
    sleeps_cancelled: AtomicUsize,
}

/// How `/sleep` requests ended so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sleeps {
    pub started: usize,
    /// Slept their time and answered.
    pub completed: usize,
    /// Dropped before their time was up: the connection or stream went away.
    pub cancelled: usize,
}

/// Counts a sleep as cancelled unless it ended.
struct SleepGuard<'a> {
    faults: &'a Faults,
    completed: bool,
}

impl Drop for SleepGuard<'_> {
    fn drop(&mut self) {
        let counter = if self.completed {
            &self.faults.sleeps_completed
        } else {
            &self.faults.sleeps_cancelled
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

/// How long the backend called `name` sleeps on `path`: `/sleep/MS` on any backend,
/// `/sleep-on/NAME/MS` on NAME only.
fn sleep_for(path: &str, name: &str) -> Option<std::time::Duration> {
    let ms = match path.strip_prefix("/sleep-on/") {
        Some(rest) => {
            let (on, ms) = rest.rsplit_once('/')?;
            (on == name).then_some(ms)?
        }
        None => path.strip_prefix("/sleep/")?,
    };
    ms.parse().ok().map(std::time::Duration::from_millis)
}

#[derive(Default)]
struct Connections {
    accepted: AtomicUsize,
    open: AtomicUsize,
    peak: AtomicUsize,
}

/// Counts an open connection until dropped.
struct OpenConnection(Arc<Connections>);

impl OpenConnection {
    fn new(connections: &Arc<Connections>) -> OpenConnection {
        connections.accepted.fetch_add(1, Ordering::SeqCst);
        let open = connections.open.fetch_add(1, Ordering::SeqCst) + 1;
        connections.peak.fetch_max(open, Ordering::SeqCst);
        OpenConnection(connections.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        let listener = TcpListener::bind(SocketAddr::new(next_ip(), 0))
            .await
            .expect("bind a backend");
        Self::serve(name, listener)
    }

    /// A backend on `addr` (e.g. `[::1]:0`).
    pub async fn start_at(name: &str, addr: SocketAddr) -> Backend {
        let listener = TcpListener::bind(addr).await.expect("bind a backend");
        Self::serve(name, listener)
    }

    /// A backend on `addr` inside `ns` (served by the calling runtime: the socket, not the
    /// thread, belongs to the namespace).
    pub fn start_in(ns: &NetNs, name: &str, addr: SocketAddr) -> anyhow::Result<Backend> {
        use anyhow::Context;
        let listener = ns
            .run(move || std::net::TcpListener::bind(addr))?
            .with_context(|| format!("binding HTTP backend {addr}"))?;
        listener
            .set_nonblocking(true)
            .context("non-blocking listener")?;
        let listener = TcpListener::from_std(listener).context("registering the listener")?;
        Ok(Self::serve(name, listener))
    }

    fn serve(name: &str, listener: TcpListener) -> Backend {
        let addr = listener.local_addr().expect("backend address");
        let release = Arc::new(Semaphore::new(0));
        let held = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (name2, release2, held2) = (name.to_string(), release.clone(), held.clone());
        let seen2 = seen.clone();
        let connections = Arc::new(Connections::default());
        let connections2 = connections.clone();
        let kept = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept2 = kept.clone();
        let faults = Arc::new(Faults::default());
        let faults2 = faults.clone();
        let task = tokio::spawn(async move {
            let mut tasks = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let open = OpenConnection::new(&connections2);
                let (name, release, held) = (name2.clone(), release2.clone(), held2.clone());
                let seen = seen2.clone();
                let kept = kept2.clone();
                let faults = faults2.clone();
                let (up_tx, mut up_rx) = tokio::sync::mpsc::unbounded_channel();
                tasks.spawn(async move {
                    let _open = open;
                    let service = service_fn(move |req: Request<Incoming>| {
                        let host = req
                            .headers()
                            .get("host")
                            .and_then(|h| h.to_str().ok())
                            .or_else(|| req.uri().authority().map(|a| a.as_str()))
                            .unwrap_or("")
                            .to_string();
                        if let Ok(mut seen) = seen.lock() {
                            seen.push(format!("{} {host} {}", req.method(), req.uri().path()));
                        }
                        let (name, release, held, up_tx) =
                            (name.clone(), release.clone(), held.clone(), up_tx.clone());
                        let kept = kept.clone();
                        let faults = faults.clone();
                        async move {
                            if req.uri().path() == "/keep" || req.uri().path().starts_with("/keep/")
                            {
                                return Ok::<_, Infallible>(keep(&name, &kept, req).await);
                            }
                            if let Some(response) = fault(&name, &faults, req.uri().path()).await {
                                return Ok(response);
                            }
                            Ok::<_, Infallible>(answer(&name, &release, &held, &up_tx, req).await)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                    // Upgraded connections echo on in this task.
                    let mut echoes = JoinSet::new();
                    while let Ok(fut) = up_rx.try_recv() {
                        echoes.spawn(fut);
                    }
                    while echoes.join_next().await.is_some() {}
                });
                while let Some(done) = tasks.try_join_next() {
                    let _ = done;
                }
            }
        });
        Backend {
            name: name.to_string(),
            addr,
            release,
            held,
            seen,
            connections,
            kept,
            faults,
            task,
        }
    }

    /// How the `/sleep` requests served so far ended.
    pub fn sleeps(&self) -> Sleeps {
        Sleeps {
            started: self.faults.sleeps_started.load(Ordering::SeqCst),
            completed: self.faults.sleeps_completed.load(Ordering::SeqCst),
            cancelled: self.faults.sleeps_cancelled.load(Ordering::SeqCst),
        }
    }

    /// The bodies of the `/keep` requests so far.
    pub fn kept(&self) -> Vec<String> {
        self.kept.lock().map(|k| k.clone()).unwrap_or_default()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.accepted.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.connections.open.load(Ordering::SeqCst)
    }

    /// The most connections that were open at once.
    pub fn peak_connections(&self) -> usize {
        self.connections.peak.load(Ordering::SeqCst)
    }

    /// `METHOD HOST PATH` of every request so far.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Requests waiting in `/hold` now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Lets `n` held requests (`/hold`) answer.
    pub fn release(&self, n: usize) {
        self.release.add_permits(n);
    }
}

/// `/flaky`'s 503 in turn, and `/sleep`'s wait (then `None`: answered as any request).
async fn fault(name: &str, faults: &Faults, path: &str) -> Option<Response<Body>> {
    if path == "/flaky"
        && faults
            .flaky
            .fetch_add(1, Ordering::SeqCst)
            .is_multiple_of(2)
    {
        return Some(
            Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .header("x-backend", name)
                .body(full(format!("{name}\nfailed on purpose\n")))
                .unwrap(),
        );
    }
    if let Some(time) = sleep_for(path, name) {
        faults.sleeps_started.fetch_add(1, Ordering::SeqCst);
        // hyper drops this future when the request's connection or stream goes: the guard
        // then counts it cancelled.
        let mut guard = SleepGuard {
            faults,
            completed: false,
        };
        tokio::time::sleep(time).await;
        guard.completed = true;
    }
    None
}

type Echo = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// `/keep`: the body read whole and kept; answered with the backend's name and its length.
/// `/keep/fail-on/NAME`: the same, but the backend called NAME reads the body and answers
/// 503 without keeping it.
async fn keep(
    name: &str,
    kept: &std::sync::Mutex<Vec<String>>,
    req: Request<Incoming>,
) -> Response<Body> {
    let fails = req.uri().path().strip_prefix("/keep/fail-on/") == Some(name);
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    if fails {
        return Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header("x-backend", name)
            .body(full(format!("{name}\nfailed on purpose\n")))
            .unwrap();
    }
    if let Ok(mut kept) = kept.lock() {
        kept.push(String::from_utf8_lossy(&body).into_owned());
    }
    Response::builder()
        .header("x-backend", name)
        .body(full(format!(
            "{name}
kept {}
",
            body.len()
        )))
        .unwrap()
}

async fn answer(
    name: &str,
    release: &Semaphore,
    held: &AtomicUsize,
    upgrades: &tokio::sync::mpsc::UnboundedSender<Echo>,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    if req
        .headers()
        .get("upgrade")
        .is_some_and(|v| v == "websocket")
    {
        let key = req
            .headers()
            .get("sec-websocket-key")
            .map(|k| tokio_tungstenite::tungstenite::handshake::derive_accept_key(k.as_bytes()))
            .unwrap_or_default();
        let on = hyper::upgrade::on(&mut req);
        let name = name.to_string();
        let echo: Echo = Box::pin(async move {
            use futures_util::{SinkExt, StreamExt};
            let Ok(upgraded) = on.await else { return };
            let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_text() {
                    let text = format!("{name}: {}", msg.into_text().unwrap_or_default());
                    if ws.send(text.into()).await.is_err() {
                        break;
                    }
                } else if msg.is_close() {
                    break;
                }
            }
        });
        let _ = upgrades.send(echo);
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .header("sec-websocket-accept", key)
            .body(empty())
            .unwrap();
    }
    if req
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
    {
        return grpc(name, req).await;
    }
    // `/fail-on/NAME` answers 503 from the backend called NAME, 200 from the others.
    if path.strip_prefix("/fail-on/") == Some(name) {
        return Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header("x-backend", name)
            .body(full(format!("{name}\nfailed on purpose\n")))
            .unwrap();
    }
    // `/hold-on/NAME` is held by the backend called NAME only.
    if path == "/hold" || path.strip_prefix("/hold-on/") == Some(name) {
        held.fetch_add(1, Ordering::SeqCst);
        let _ = release.acquire().await.map(|p| p.forget());
        held.fetch_sub(1, Ordering::SeqCst);
    }
    if path == "/stall-body" {
        // Headers and a first line now, the rest only after 10 s: a body that stalls.
        let frames = futures_util::stream::unfold(0u8, |step| async move {
            match step {
                0 => Some((
                    Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"start\n"))),
                    1,
                )),
                1 => {
                    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                    Some((Ok(Frame::data(Bytes::from_static(b"end\n"))), 2))
                }
                _ => None,
            }
        });
        return Response::builder()
            .header("x-backend", name)
            .body(StreamBody::new(frames).boxed())
            .unwrap();
    }
    if path == "/echo" {
        let body = req
            .into_body()
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>);
        return Response::builder()
            .header("x-backend", name)
            .body(body.boxed())
            .unwrap();
    }
    let mut text = format!(
        "{name}\nmethod {}\npath {}\nauthority {}\nversion {:?}\n",
        req.method(),
        req.uri().path_and_query().map(|p| p.as_str()).unwrap_or(""),
        req.uri()
            .authority()
            .map(|a| a.to_string())
            .or_else(|| req
                .headers()
                .get("host")
                .and_then(|h| h.to_str().ok())
                .map(String::from))
            .unwrap_or_default(),
        req.version()
    );
    for (k, v) in req.headers() {
        text.push_str(&format!("header {}: {}\n", k, v.to_str().unwrap_or("?")));
    }
    Response::builder()
        .header("x-backend", name)
        .header("x-upstream-set", "backend")
        .body(full(text))
        .unwrap()
}

/// A gRPC-shaped exchange: the request's messages come back, then trailers with
/// `grpc-status: 0`, the backend's name, and the client's `x-client` trailer.
async fn grpc(name: &str, req: Request<Incoming>) -> Response<Body> {
    let version = format!("{:?}", req.version());
    let collected = req.into_body().collect().await;
    let (data, client_trailer) = match collected {
        Ok(c) => {
            let trailer = c
                .trailers()
                .and_then(|t| t.get("x-client"))
                .cloned()
                .unwrap_or(HeaderValue::from_static("none"));
            (c.to_bytes(), trailer)
        }
        Err(_) => (Bytes::new(), HeaderValue::from_static("error")),
    };
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers.insert("x-backend", HeaderValue::from_str(name).unwrap());
    trailers.insert("x-client-echo", client_trailer);
    trailers.insert("x-version", HeaderValue::from_str(&version).unwrap());
    let frames: Vec<Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>> =
        vec![Ok(Frame::data(data)), Ok(Frame::trailers(trailers))];
    Response::builder()
        .header("content-type", "application/grpc")
        .body(StreamBody::new(futures_util::stream::iter(frames)).boxed())
        .unwrap()
}

/// A response read in full.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    /// The body as received.
    pub bytes: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl Reply {
    /// The backend that answered (the body's first line).
    pub fn backend(&self) -> &str {
        self.body.lines().next().unwrap_or("")
    }

    /// What the backend saw of `what` (`path`, `authority`, `method`, `version`).
    pub fn seen(&self, what: &str) -> Option<&str> {
        self.body
            .lines()
            .find_map(|l| l.strip_prefix(what).and_then(|r| r.strip_prefix(' ')))
    }

    /// Every value of request header `name` the backend saw.
    pub fn seen_header(&self, name: &str) -> Vec<&str> {
        let prefix = format!("header {name}: ");
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            .collect()
    }
}

async fn read(response: Response<Incoming>) -> Reply {
    let (head, body) = response.into_parts();
    let collected = body.collect().await.expect("read the response body");
    let trailers = collected.trailers().cloned();
    let bytes = collected.to_bytes();
    Reply {
        status: head.status,
        headers: head.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
        trailers,
    }
}

pub fn request(method: &str, uri: &str, headers: &[(&str, &str)], body: Body) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body).expect("a valid request")
}

/// One HTTP/1.1 keep-alive connection.
pub struct H1 {
    sender: hyper::client::conn::http1::SendRequest<Body>,
    task: JoinHandle<()>,
}

impl Drop for H1 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP connection to `addr` from source address `from` (port chosen by the kernel).
pub async fn connect_from(from: Option<IpAddr>, addr: SocketAddr) -> TcpStream {
    match from {
        None => TcpStream::connect(addr)
            .await
            .expect("connect to the proxy"),
        Some(ip) => {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind(SocketAddr::new(ip, 0))
                .expect("bind the client");
            socket.connect(addr).await.expect("connect to the proxy")
        }
    }
}

impl H1 {
    pub async fn connect(addr: SocketAddr) -> H1 {
        Self::connect_from(None, addr).await
    }

    pub async fn connect_from(from: Option<IpAddr>, addr: SocketAddr) -> H1 {
        Self::over(connect_from(from, addr).await).await
    }

    /// HTTP/1.1 over a connected stream (e.g. one made in a pod's namespace).
    pub async fn over(stream: TcpStream) -> H1 {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        let task = tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        H1 { sender, task }
    }

    pub async fn send(&mut self, req: Request<Body>) -> Result<Reply, hyper::Error> {
        self.sender.ready().await?;
        let response = self.sender.send_request(req).await?;
        Ok(read(response).await)
    }

    pub async fn send_raw(
        &mut self,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, hyper::Error> {
        self.sender.ready().await?;
        self.sender.send_request(req).await
    }

    /// GET `path` with a `Host` of `host` and extra headers.
    pub async fn get(&mut self, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut all = vec![("host", host)];
        all.extend_from_slice(headers);
        self.send(request("GET", path, &all, empty()))
            .await
            .expect("a response")
    }
}

/// Aborts its task when the last clone goes.
struct Abort(JoinHandle<()>);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One HTTP/2 connection (prior knowledge); clones open streams on the same connection.
#[derive(Clone)]
pub struct H2 {
    sender: hyper::client::conn::http2::SendRequest<Body>,
    _task: Arc<Abort>,
}

impl H2 {
    pub async fn connect(addr: SocketAddr) -> H2 {
        Self::over(connect_from(None, addr).await).await
    }

    /// HTTP/2 prior knowledge over a connected stream.
    pub async fn over(stream: TcpStream) -> H2 {
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("HTTP/2 handshake");
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        H2 {
            sender,
            _task: Arc::new(Abort(task)),
        }
    }

    pub async fn send(&mut self, req: Request<Body>) -> Result<Reply, hyper::Error> {
        self.sender.ready().await?;
        let response = self.sender.send_request(req).await?;
        Ok(read(response).await)
    }

    /// GET `http://{authority}{path}`.
    pub async fn get(&mut self, authority: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let uri = format!("http://{authority}{path}");
        self.send(request("GET", &uri, headers, empty()))
            .await
            .expect("a response")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sleep_paths() {
        assert_eq!(
            sleep_for("/sleep/250", "a"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            sleep_for("/sleep-on/a/9", "a"),
            Some(Duration::from_millis(9))
        );
        assert_eq!(sleep_for("/sleep-on/b/9", "a"), None);
        assert_eq!(sleep_for("/sleep/x", "a"), None);
        assert_eq!(sleep_for("/sleeps", "a"), None);
    }

    #[test]
    fn flaky_alternates_and_sleeps_count_how_they_end() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let backend = Backend::start("flaky").await;
            let mut h1 = H1::connect(backend.addr).await;
            let mut statuses = Vec::new();
            for _ in 0..4 {
                statuses.push(h1.get("x", "/flaky", &[]).await.status.as_u16());
            }
            assert_eq!(statuses, [503, 200, 503, 200]);
            assert_eq!(h1.get("x", "/sleep/1", &[]).await.status, 200);
            // A request dropped mid-sleep: its connection closes.
            let mut dropped = H1::connect(backend.addr).await;
            let gone = tokio::time::timeout(
                Duration::from_millis(50),
                dropped.get("x", "/sleep/10000", &[]),
            )
            .await;
            assert!(gone.is_err(), "answered before its sleep ended");
            drop(dropped);
            for _ in 0..200 {
                if backend.sleeps().cancelled == 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let sleeps = backend.sleeps();
            assert_eq!(
                sleeps,
                Sleeps {
                    started: 2,
                    completed: 1,
                    cancelled: 1
                }
            );
        });
    }
}
