//! [`ExtractMetadata`]: the service the layer wraps around yours.

use super::future::{HeaderMetadata, Pending, ResponseFuture};
use super::layer::Config;
use super::span::{DefaultMakeSpan, MakeSpan};
use super::ResponseBody;
use crate::content::{declared_length, is_encoded, is_json};
use crate::dialects;
use crate::headers::Origins;
use crate::{headers, BodyMode, JsonBodies, MetadataError, RequestMetadata};
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tower_service::Service;

/// The service made by [`RequestyMetadataLayer`](crate::RequestyMetadataLayer).
///
/// The inner service receives the same request body type it would without the layer: a JSON body is
/// rebuilt with `B::from(Bytes)` after the member is stripped; any other body is the original value.
/// With [`HeadersOnly`](crate::HeadersOnly) bodies are never read and may be of any type.
///
/// A request is passed to the instance of the inner service that `poll_ready` readied, but for one
/// whose JSON body is read first: reading takes as long as the client does, so what readiness
/// reserved (a `tower::buffer::Buffer` slot, say) is given back meanwhile, and a clone is readied
/// again once the body is in. A readiness error then is the call's error.
pub struct ExtractMetadata<S, M = DefaultMakeSpan, R = JsonBodies> {
    pub(crate) inner: S,
    pub(crate) config: Arc<Config>,
    pub(crate) make_span: M,
    pub(crate) mode: PhantomData<fn() -> R>,
}

impl<S: Clone, M: Clone, R> Clone for ExtractMetadata<S, M, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
            make_span: self.make_span.clone(),
            mode: PhantomData,
        }
    }
}

impl<S, M, R, ReqBody, ResBody> Service<Request<ReqBody>> for ExtractMetadata<S, M, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ReqBody: Body,
    ResBody: Body<Data = Bytes>,
    M: MakeSpan + Clone,
    R: BodyMode<ReqBody>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, M>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // Call the instance `poll_ready` readied; leave a fresh clone for the next request. (A
        // request whose body is read first gives it back, below.)
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let (mut parts, body) = req.into_parts();
        let config = self.config.clone();
        // Limits are checked once the metadata is whole: here for header-only requests, after the
        // body otherwise. Only the count of header tags is bounded as they are read.
        let checked = read_headers(&mut parts.headers, &config, config.strip_headers);
        let reading =
            R::reading().filter(|_| is_json(&parts.headers) && !is_encoded(&parts.headers));
        let declared = declared_length(&parts.headers);
        let (headers, rejection) = match checked {
            Ok(headers) => (headers, None),
            Err((error, said)) => (said, Some(error)),
        };
        let pending = Pending {
            inner,
            parts,
            headers,
            config,
            make_span: self.make_span.clone(),
            start: Instant::now(),
            parent: tracing::Span::current(),
        };
        if let Some(error) = rejection {
            return ResponseFuture::reject(pending, error.status(), error.to_json());
        }
        let Some(reading) = reading else {
            return ResponseFuture::call(pending, body);
        };
        match declared {
            Some(len) if len > pending.config.max_body as u64 => ResponseFuture::too_large(pending),
            _ => {
                // The body is read before the call, for as long as the client takes to send it:
                // what readiness reserved in the inner service (a `Buffer`'s slot, say) is given
                // back meanwhile, or a few stalled uploads would hold every slot. A clone is
                // readied again once the body is in.
                let mut pending = pending;
                drop(std::mem::replace(&mut pending.inner, self.inner.clone()));
                ResponseFuture::collect(pending, body, reading)
            }
        }
    }
}

/// What a request's headers said: `None` when they carried nothing.
type Said = Option<Box<HeaderMetadata>>;

/// Requesty's headers and the other dialects' headers, kept apart: the body ranks between them.
/// With `strip`, the headers of the sources that are on are removed.
///
/// A header that gets the request refused comes back with what the `X-Requesty-*` headers said,
/// for its span and report (the request goes nowhere): all of it when another gateway's header is
/// the one refused, all but the tags when an `X-Requesty-*` header is (the tags may be why).
fn read_headers(
    headers: &mut http::HeaderMap,
    config: &Config,
    strip: bool,
) -> Result<Said, (MetadataError, Said)> {
    let sources = &config.sources;
    let said = |requesty: RequestMetadata| {
        HeaderMetadata::boxed(requesty, RequestMetadata::default(), Origins::default())
    };
    let (requesty, long_tag) = if sources.reads_requesty() {
        let found = match headers::read(headers, &config.limits) {
            Ok(found) => found,
            Err(error) => return Err((error, said(headers::read_for_report(headers)))),
        };
        if strip {
            headers::remove(headers);
        }
        found
    } else {
        (RequestMetadata::default(), None)
    };
    let taken = match dialects::take_headers(headers, sources, &config.limits, strip) {
        Ok(taken) => taken,
        Err(error) => return Err((error, said(requesty))),
    };
    let origins = Origins::over(&requesty, long_tag, taken.origins);
    let mut said = HeaderMetadata::boxed(requesty, taken.meta, origins);
    if let Some(said) = &mut said {
        said.named = taken.named;
    }
    // A header that was not read is warned about in the request's span, also when nothing was.
    if !taken.unread.is_empty() {
        said.get_or_insert_with(Box::default).unread = taken.unread;
    }
    Ok(said)
}

impl<S, M, R> std::fmt::Debug for ExtractMetadata<S, M, R>
where
    S: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtractMetadata")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}
