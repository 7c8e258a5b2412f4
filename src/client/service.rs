//! [`InjectMetadata`]: the service the inject layer wraps around a client.

use super::future::{client_span, BoxError, InjectFuture, Pending};
use super::layer::InjectConfig;
use crate::content::{is_encoded, is_json};
use crate::server::ResponseBody;
use crate::{headers, BodyMode, JsonBodies};
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// Room left after a read body so the member is appended without moving it.
const HEADROOM: usize = 512;

/// The service made by [`InjectMetadataLayer`](super::InjectMetadataLayer).
pub struct InjectMetadata<S, R = JsonBodies> {
    inner: S,
    config: Arc<InjectConfig>,
    mode: PhantomData<fn() -> R>,
}

impl<S, R> InjectMetadata<S, R> {
    pub(crate) fn new(inner: S, config: Arc<InjectConfig>) -> Self {
        Self {
            inner,
            config,
            mode: PhantomData,
        }
    }
}

impl<S: Clone, R> Clone for InjectMetadata<S, R> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone(), self.config.clone())
    }
}

impl<S, R, B, ResBody> Service<Request<B>> for InjectMetadata<S, R>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    B: Body,
    ResBody: Body<Data = Bytes>,
    R: BodyMode<B>,
{
    type Response = Response<ResponseBody<ResBody>>;
    /// The client's error, or the error of a request body that failed while being read to add
    /// the member (the request is then not sent).
    type Error = BoxError;
    type Future = InjectFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let (mut parts, body) = req.into_parts();
        let config = &self.config;
        let mut metadata = config.starting(&parts.extensions);
        // Headers the caller set are the request's own; they are rewritten from the result below.
        // Read with looser bounds than a server's: a request over the limits goes out with a
        // warning, for the gateway to decide; past them (thousands of tags), they are not read.
        let unreadable = headers::read_own(&parts.headers, &config.limits)
            .map(|own| headers::merge_over(&mut metadata, own))
            .err();
        let size = body
            .size_hint()
            .exact()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= config.max_body);
        let reading = R::reading().filter(|_| {
            config.reads_body() && is_json(&parts.headers) && !is_encoded(&parts.headers)
        });
        match (reading, size) {
            (Some(reading), Some(size)) => InjectFuture::collect(
                Pending {
                    inner,
                    parts,
                    metadata,
                    config: config.clone(),
                    unreadable,
                    parent: tracing::Span::current(),
                },
                body,
                reading,
                size,
                size.saturating_add(HEADROOM),
            ),
            _ => {
                let metadata = config.filter(metadata);
                // The request is the call's: nothing to put back.
                let _ = InjectConfig::hand_on(&metadata, &mut parts.extensions);
                let span = client_span(config, &parts, &metadata, None);
                span.in_scope(|| config.write_headers(&metadata, false, &mut parts.headers));
                let request = Request::from_parts(parts, body);
                InjectFuture::call(inner, request, span, &metadata, config, unreadable.as_ref())
            }
        }
    }
}

impl<S: std::fmt::Debug, R> std::fmt::Debug for InjectMetadata<S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InjectMetadata")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}
