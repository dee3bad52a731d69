//! The body of every response the proxy sends downstream: nothing, a local reply's bytes, or
//! an upstream body streamed frame by frame (trailers included, never buffered whole), which
//! on its end or drop releases what the request held (its in-flight counts, its pooled
//! HTTP/1.1 connection). A route's timeout also bounds the upstream body: when it fires
//! mid-body the stream is reset, as Envoy resets it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

pub(crate) struct ProxyBody(Kind);

enum Kind {
    Empty,
    Full(Option<Bytes>),
    Upstream {
        body: Incoming,
        /// Dropped when the body ends.
        release: Option<Box<dyn Send>>,
        /// The route's timeout, when it has one.
        deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    },
}

/// Why a streamed body ended early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error(transparent)]
    Upstream(#[from] hyper::Error),
    #[error("upstream request timeout (the route's timeout fired while the body streamed)")]
    Timeout,
}

impl ProxyBody {
    pub(crate) fn empty() -> ProxyBody {
        ProxyBody(Kind::Empty)
    }

    pub(crate) fn full(bytes: Bytes) -> ProxyBody {
        ProxyBody(Kind::Full(Some(bytes)))
    }

    /// `body` streamed until it ends, or until `deadline`.
    pub(crate) fn upstream(
        body: Incoming,
        release: Box<dyn Send>,
        deadline: Option<tokio::time::Instant>,
    ) -> ProxyBody {
        ProxyBody(Kind::Upstream {
            body,
            release: Some(release),
            deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
        })
    }
}

impl std::fmt::Debug for ProxyBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Kind::Empty => "ProxyBody::Empty",
            Kind::Full(_) => "ProxyBody::Full",
            Kind::Upstream { .. } => "ProxyBody::Upstream",
        })
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.get_mut().0 {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Kind::Upstream {
                body,
                release,
                deadline,
            } => {
                // Checked first: a body that is always ready never reaches the timer below.
                if deadline.as_ref().is_some_and(|d| d.is_elapsed()) {
                    release.take();
                    return Poll::Ready(Some(Err(BodyError::Timeout)));
                }
                let polled = Pin::new(body).poll_frame(cx);
                if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
                    release.take();
                    return polled.map_err(BodyError::Upstream);
                }
                if polled.is_pending()
                    && let Some(deadline) = deadline
                    && deadline.as_mut().poll(cx).is_ready()
                {
                    // Releasing drops the upstream connection with the rest of its body.
                    release.take();
                    return Poll::Ready(Some(Err(BodyError::Timeout)));
                }
                polled.map_err(BodyError::Upstream)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Empty => true,
            Kind::Full(data) => data.is_none(),
            Kind::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Upstream { body, .. } => body.size_hint(),
        }
    }
}
