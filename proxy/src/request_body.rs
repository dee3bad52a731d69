//! The body the proxy sends upstream: the downstream request's body passed through frame by
//! frame, noting when it fails, so that a client that aborts its request is told apart from
//! an upstream that fails (hyper reports both as the upstream exchange failing). When a
//! rule may send the request again (a retry) or copy it (a mirror), the body is also teed
//! into a copy, up to [`COPY_LIMIT`]: it still streams as it arrives (a gRPC stream is never
//! held back), and once it has ended within the bound it can be sent again, as Envoy's
//! request buffer allows.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::watch;

/// The most of a body kept to send again. Envoy's own bound (its connection buffer limit)
/// is 1 MiB; a node proxy serves every pod of the node, so it keeps less: a larger body
/// streams once and is not retried after it left, nor mirrored.
pub(crate) const COPY_LIMIT: usize = 64 * 1024;

/// What the parts of one request share.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    /// The downstream request body failed (the client reset the stream or closed).
    downstream_failed: AtomicBool,
}

impl StreamState {
    pub(crate) fn downstream_failed(&self) -> bool {
        self.downstream_failed.load(Relaxed)
    }
}

/// A whole request body, kept to send again: its data copied into one buffer of its own
/// (a slice of the connection's read buffer would keep all of that alive), and its trailers.
#[derive(Debug, Clone, Default)]
pub(crate) struct BodyCopy {
    data: Bytes,
    trailers: Option<HeaderMap>,
}

impl BodyCopy {
    /// The body again, as a request body of its own.
    pub(crate) fn body(&self) -> RequestBody {
        RequestBody {
            inner: None,
            replay: (!self.data.is_empty())
                .then(|| self.data.clone())
                .into_iter()
                .collect(),
            trailers: self.trailers.clone(),
            tee: None,
            state: Arc::default(),
        }
    }
}

/// How a teed copy ended: `None` while the body streams, then the copy, or `Err` when the
/// body outgrew [`COPY_LIMIT`] or failed.
type Teed = Option<Result<BodyCopy, ()>>;

/// The copy being made as the body streams, and who waits for it.
#[derive(Debug)]
struct Tee {
    data: BytesMut,
    trailers: Option<HeaderMap>,
    done: watch::Sender<Teed>,
}

impl Tee {
    fn finish(&mut self, outcome: Result<(), ()>) {
        let result = outcome.map(|()| BodyCopy {
            data: std::mem::take(&mut self.data).freeze(),
            trailers: self.trailers.take(),
        });
        self.done.send_replace(Some(result));
    }
}

/// Where a teed body's copy can be had once the body has ended.
#[derive(Debug, Clone)]
pub(crate) struct CopyHandle(watch::Receiver<Teed>);

impl CopyHandle {
    /// The copy, if the body has ended within the bound by now.
    pub(crate) fn ready(&self) -> Option<BodyCopy> {
        self.0.borrow().clone().and_then(Result::ok)
    }

    /// Waits for the body to end; `None` when it outgrew the bound, failed or was dropped.
    pub(crate) async fn wait(mut self) -> Option<BodyCopy> {
        let ended = self.0.wait_for(Option::is_some).await.ok()?;
        ended.clone().and_then(Result::ok)
    }
}

pub(crate) struct RequestBody {
    /// `None`: no body left to stream (a mirrored or replayed request's).
    inner: Option<Incoming>,
    /// A replayed body's data, last chunk first, and its trailers.
    replay: Vec<Bytes>,
    trailers: Option<HeaderMap>,
    tee: Option<Tee>,
    state: Arc<StreamState>,
}

impl RequestBody {
    pub(crate) fn new(inner: Incoming, state: Arc<StreamState>) -> RequestBody {
        RequestBody {
            inner: Some(inner),
            replay: Vec::new(),
            trailers: None,
            tee: None,
            state,
        }
    }

    pub(crate) fn empty() -> RequestBody {
        RequestBody {
            inner: None,
            replay: Vec::new(),
            trailers: None,
            tee: None,
            state: Arc::default(),
        }
    }

    /// Tees the rest of the body into a copy (up to [`COPY_LIMIT`]); the handle gives it
    /// once the body has ended. A body that has ended already gives an empty copy.
    pub(crate) fn tee(&mut self) -> CopyHandle {
        let (done, handle) = watch::channel(None);
        let mut tee = Tee {
            data: BytesMut::new(),
            trailers: None,
            done,
        };
        if self.is_end_stream() {
            tee.finish(Ok(()));
        } else {
            self.tee = Some(tee);
        }
        CopyHandle(handle)
    }

    fn record(&mut self, polled: &Poll<Option<Result<Frame<Bytes>, hyper::Error>>>) {
        let Some(tee) = &mut self.tee else {
            return;
        };
        if tee.done.borrow().is_some() {
            return;
        }
        match polled {
            Poll::Pending => {}
            Poll::Ready(None) => tee.finish(Ok(())),
            Poll::Ready(Some(Err(_))) => tee.finish(Err(())),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if tee.data.len() + data.len() > COPY_LIMIT {
                        tee.data = BytesMut::new();
                        tee.finish(Err(()));
                        return;
                    }
                    tee.data.extend_from_slice(data);
                } else if let Some(trailers) = frame.trailers_ref() {
                    // Trailers are always the last frame: hyper may drop the body without
                    // polling it again.
                    tee.trailers = Some(trailers.clone());
                    tee.finish(Ok(()));
                    return;
                }
                if self.inner.as_ref().is_none_or(Incoming::is_end_stream) {
                    tee.finish(Ok(()));
                }
            }
        }
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        // A body dropped before its end (the upstream answered early, or failed) gives no
        // copy: its waiters are told. One that has ended (an HTTP/2 END_STREAM may arrive
        // between the last frame and hyper's drop) gives its copy.
        let ended = self.inner.as_ref().is_none_or(Incoming::is_end_stream);
        if let Some(tee) = &mut self.tee
            && tee.done.borrow().is_none()
        {
            tee.finish(if ended { Ok(()) } else { Err(()) });
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(data) = this.replay.pop() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        let Some(inner) = &mut this.inner else {
            return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            this.state.downstream_failed.store(true, Relaxed);
        }
        this.record(&polled);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.replay.is_empty()
            && self.trailers.is_none()
            && self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let replayed: u64 = self.replay.iter().map(|b| b.len() as u64).sum();
        match &self.inner {
            Some(inner) => inner.size_hint(),
            // Not exact with trailers: an exact size makes HTTP/1.1 send a length, and
            // trailers need chunks.
            None if self.trailers.is_some() => {
                let mut hint = SizeHint::new();
                hint.set_lower(replayed);
                hint
            }
            None => SizeHint::with_exact(replayed),
        }
    }
}
