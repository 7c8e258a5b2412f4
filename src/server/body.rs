//! The response body: the inner service's body passed through frame by frame, keeping the request's
//! span open until it ends.

use super::complete::{End, Tracker};
use bytes::Bytes;
use http::StatusCode;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project! {
    /// The response body of [`ExtractMetadata`](super::ExtractMetadata): the inner body unchanged, or
    /// the layer's own error body.
    ///
    /// The request's span stays open until this body returns its last frame, reports
    /// [`is_end_stream`](Body::is_end_stream), or is dropped (then the span records
    /// `requesty.response.completed = false`).
    pub struct ResponseBody<B: Body> {
        #[pin]
        kind: Kind<B>,
        tracker: Option<Tracker>,
        // Bytes still to come when the response declared its length: an HTTP/1 server stops
        // polling once it has written that many and drops the body, so reaching `0` makes that drop
        // the body's end for bodies that cannot tell. An HTTP/2 server polls on, for trailers.
        remaining: Option<u64>,
    }

    impl<B: Body> PinnedDrop for ResponseBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if let Some(tracker) = this.tracker {
                let at_end = match &*this.kind {
                    Kind::Inner { body } => body.is_end_stream(),
                    Kind::Error { bytes, .. } => bytes.is_none(),
                };
                // The inner body goes as it was polled, in the span with the metadata current: a
                // stream dropped mid-way (the client went away) may hold a guard that calls onward
                // to cancel work upstream.
                let entered = tracker.enter();
                this.kind.set(Kind::Error { bytes: None, status: None });
                drop(entered);
                let end = match *this.remaining {
                    Some(0) => End::Complete,
                    // Ended, but short of the length its head declared.
                    Some(_) if at_end => End::Failed,
                    _ if at_end => End::Complete,
                    _ => End::Dropped,
                };
                tracker.finish(end);
            }
        }
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        // The status is noted once the body is polled: an answer dropped unsent (the client went
        // away first) is one that got no answer.
        Error { bytes: Option<Bytes>, status: Option<StatusCode> },
    }
}

impl<B: Body> ResponseBody<B> {
    /// Wraps the inner body; `declared` is the length it goes out with, when known: its
    /// `Content-Length`, or (on the server side, where hyper declares it) its exact size hint.
    pub(crate) fn inner(body: B, tracker: Option<Tracker>, declared: Option<u64>) -> Self {
        Self {
            kind: Kind::Inner { body },
            tracker,
            remaining: declared,
        }
    }

    /// The layer's own answer, with `status`. An empty one is at its end from the start, so the head
    /// goes out as the whole answer (a gRPC trailers-only response, the answer to a HEAD request),
    /// and counts as sent; another counts once a server polls it.
    pub(crate) fn error(bytes: Bytes, mut tracker: Option<Tracker>, status: StatusCode) -> Self {
        let bytes = (!bytes.is_empty()).then_some(bytes);
        let status = match (&bytes, tracker.as_mut()) {
            (None, Some(tracker)) => {
                tracker.respond(status, None);
                None
            }
            _ => Some(status),
        };
        Self {
            kind: Kind::Error { bytes, status },
            tracker,
            remaining: None,
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let entered = this.tracker.as_mut().map(Tracker::enter);
        let mut answered = None;
        let (result, end_of_body) = match this.kind.project() {
            KindProj::Inner { mut body } => match body.as_mut().poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(result) => {
                    let at_end = body.is_end_stream();
                    (result, at_end)
                }
            },
            KindProj::Error { bytes, status } => {
                answered = status.take();
                (bytes.take().map(|b| Ok(Frame::data(b))), true)
            }
        };
        drop(entered);
        if let (Some(status), Some(tracker)) = (answered, this.tracker.as_mut()) {
            tracker.respond(status, None);
        }
        if let Some(Ok(frame)) = &result {
            if let Some(data) = frame.data_ref() {
                if let Some(remaining) = this.remaining.as_mut() {
                    *remaining = remaining.saturating_sub(data.len() as u64);
                }
                if let Some(tracker) = this.tracker.as_mut() {
                    tracker.observe(data);
                }
            } else if let (Some(trailers), Some(tracker)) =
                (frame.trailers_ref(), this.tracker.as_mut())
            {
                tracker.grpc(trailers);
            }
        }
        // Trailers are a body's last frame: a server writes them and drops the body unpolled, also
        // when the body itself would not say it has ended.
        let at_end = match &result {
            None => true,
            Some(Err(_)) => false,
            Some(Ok(frame)) => end_of_body || frame.is_trailers(),
        };
        let end = match (&result, *this.remaining) {
            (Some(Err(_)), _) => Some(End::Failed),
            // Ended short of the length the head declared: the server cuts the connection, and
            // the client never gets the rest.
            (_, Some(remaining)) if remaining > 0 && at_end => Some(End::Failed),
            _ => at_end.then_some(End::Complete),
        };
        if let (Some(end), Some(tracker)) = (end, this.tracker.as_mut()) {
            tracker.finish(end);
        }
        Poll::Ready(result)
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Error { bytes, .. } => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Error { bytes, .. } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

impl<B: Body> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}
