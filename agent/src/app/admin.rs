//! The admin listener: Prometheus metrics at `/metrics`, `/healthz` (the agent answers),
//! `/readyz` (its first config is in the kernel), and JSON pages the agent adds once it has
//! what they show (`/node/pods` in Kubernetes mode). Loopback by default: it is the node's,
//! not the mesh's.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{encoding::text::encode, registry::Registry};
use tokio::net::TcpListener;

/// After a failed accept.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);
/// A whole scrape: the request, the metrics, done.
const CLIENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether the agent's first config is in the kernel (`/readyz`).
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A JSON page: rendered at each request.
pub type Page = Arc<dyn Fn() -> String + Send + Sync>;

/// The JSON pages by path, added while the listener runs.
#[derive(Clone, Default)]
pub struct Pages(Arc<std::sync::Mutex<std::collections::BTreeMap<&'static str, Page>>>);

impl Pages {
    pub fn add(&self, path: &'static str, page: Page) {
        if let Ok(mut pages) = self.0.lock() {
            pages.insert(path, page);
        }
    }

    fn render(&self, path: &str) -> Option<String> {
        let page = self.0.lock().ok()?.get(path).cloned()?;
        Some(page())
    }
}

/// Binds `addr` and serves until the task is dropped; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    ready: Readiness,
    pages: Pages,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the admin address {addr} (--admin-addr)"))?;
    let bound = listener
        .local_addr()
        .context("the admin listener's address")?;
    let registry = Arc::new(registry);
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    // E.g. out of file descriptors: wait rather than spin on the control
                    // loop's thread.
                    tracing::debug!("admin accept: {err}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let registry = registry.clone();
            let ready = ready.clone();
            let pages = pages.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let registry = registry.clone();
                    let ready = ready.get();
                    let page = pages.render(request.uri().path());
                    async move { Ok::<_, Infallible>(respond(&registry, ready, page, &request)) }
                });
                let serving = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(CLIENT_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                // A scraper that stalls is dropped; metrics are small.
                let _ = tokio::time::timeout(CLIENT_TIMEOUT, serving).await;
            });
        }
    });
    Ok((bound, task))
}

fn respond(
    registry: &Registry,
    ready: bool,
    page: Option<String>,
    request: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, kind: &'static str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(kind));
        response
    };
    if let Some(json) = page {
        return reply(StatusCode::OK, "application/json", json);
    }
    match request.uri().path() {
        "/metrics" => {
            let mut text = String::new();
            match encode(&mut text, registry) {
                Ok(()) => reply(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                ),
                Err(err) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    format!("encoding the metrics: {err}\n"),
                ),
            }
        }
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" if ready => reply(StatusCode::OK, "text/plain", "ready\n".into()),
        "/readyz" => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready: the first config is not in the kernel yet\n".into(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}
