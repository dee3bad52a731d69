//! The body of every response the proxy sends downstream: nothing, a local reply's bytes, or
//! an upstream body streamed frame by frame (trailers included, never buffered whole), which
//! on its end or drop releases what the request held (its in-flight counts, its pooled
//! HTTP/1.1 connection).

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
    },
}

impl ProxyBody {
    pub(crate) fn empty() -> ProxyBody {
        ProxyBody(Kind::Empty)
    }

    pub(crate) fn full(bytes: Bytes) -> ProxyBody {
        ProxyBody(Kind::Full(Some(bytes)))
    }

    pub(crate) fn upstream(body: Incoming, release: Box<dyn Send>) -> ProxyBody {
        ProxyBody(Kind::Upstream {
            body,
            release: Some(release),
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
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().0 {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Kind::Upstream { body, release } => {
                let polled = Pin::new(body).poll_frame(cx);
                if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
                    release.take();
                }
                polled
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
