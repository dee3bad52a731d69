//! The body the proxy sends upstream: the downstream request's body passed through frame by
//! frame, noting when it fails, so that a client that aborts its request is told apart from
//! an upstream that fails (hyper reports both as the upstream exchange failing).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

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

pub(crate) struct RequestBody {
    /// `None`: no body (a mirrored request's).
    inner: Option<Incoming>,
    state: Arc<StreamState>,
}

impl RequestBody {
    pub(crate) fn new(inner: Incoming, state: Arc<StreamState>) -> RequestBody {
        RequestBody {
            inner: Some(inner),
            state,
        }
    }

    pub(crate) fn empty() -> RequestBody {
        RequestBody {
            inner: None,
            state: Arc::default(),
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
        let Some(inner) = &mut this.inner else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            this.state.downstream_failed.store(true, Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint)
    }
}
