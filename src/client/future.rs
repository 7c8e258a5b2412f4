//! [`InjectFuture`]: reads a JSON body of known size, adds the member, then calls the client.

use super::layer::{Carrier, InjectConfig};
use crate::collect::Collected;
use crate::{codec, headers, RequestMetadata};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::request::Parts;
use http::{HeaderValue, Request};
use http_body::Body;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tower_service::Service;

pub(crate) struct Pending<S> {
    pub(crate) inner: S,
    pub(crate) parts: Parts,
    pub(crate) metadata: RequestMetadata,
    pub(crate) config: Arc<InjectConfig>,
}

pin_project! {
    /// The future of [`InjectMetadata`](super::InjectMetadata).
    pub struct InjectFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Collect {
            #[pin]
            body: B,
            collected: Collected,
            pending: Option<Pending<S>>,
            rebuild: fn(Bytes) -> B,
        },
        Call {
            #[pin]
            future: S::Future,
        },
    }
}

impl<S: Service<Request<B>>, B: Body> InjectFuture<S, B> {
    pub(crate) fn collect(
        pending: Pending<S>,
        body: B,
        rebuild: fn(Bytes) -> B,
        capacity: usize,
    ) -> Self {
        Self {
            state: State::Collect {
                body,
                collected: Collected::new(capacity),
                pending: Some(pending),
                rebuild,
            },
        }
    }

    pub(crate) fn call(future: S::Future) -> Self {
        Self {
            state: State::Call { future },
        }
    }
}

impl<S, B> Future for InjectFuture<S, B>
where
    S: Service<Request<B>>,
    B: Body,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Collect {
                    body,
                    collected,
                    pending,
                    rebuild,
                } => {
                    // The body declared its exact size and it is within bounds, so no limit applies
                    // here. A body that fails while being read is sent as far as it was read: the
                    // error belongs to the body's own type, which this layer cannot return.
                    if ready!(collected.poll_body(body, cx, usize::MAX)).is_err() {
                        tracing::warn!("request body failed while being read for metadata");
                    }
                    let Some(pending) = pending.take() else {
                        unreachable!("a collecting future always holds its request")
                    };
                    let future = send(pending, std::mem::take(collected), *rebuild);
                    this.state.set(State::Call { future });
                }
                StateProj::Call { future } => return future.poll(cx),
            }
        }
    }
}

/// Puts the metadata into the body (or, for a body that is not a JSON object, the headers) and calls
/// the client.
fn send<S, B>(pending: Pending<S>, collected: Collected, rebuild: fn(Bytes) -> B) -> S::Future
where
    S: Service<Request<B>>,
{
    let Pending {
        mut inner,
        mut parts,
        mut metadata,
        config,
    } = pending;
    let body = match codec::scan(collected.as_slice(), &config.limits) {
        Ok(mut scan) if scan.kind() == codec::BodyKind::Object => {
            if let Some(existing) = scan.take_metadata() {
                metadata.merge(existing);
            }
            let metadata = config.filter(metadata);
            let (range, insert) = scan.edit(&metadata);
            let body = collected.splice(range, &insert);
            if config.carrier == Carrier::Both {
                headers::write(&metadata, &mut parts.headers);
            } else {
                headers::remove(&mut parts.headers);
            }
            parts.headers.remove(TRANSFER_ENCODING);
            parts
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
            body
        }
        // Not an object, or an invalid member of the caller's own: the body is left as it is.
        _ => {
            headers::write(&config.filter(metadata), &mut parts.headers);
            collected.into_bytes()
        }
    };
    inner.call(Request::from_parts(parts, rebuild(body)))
}
