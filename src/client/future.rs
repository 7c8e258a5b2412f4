//! [`InjectFuture`]: reads a JSON body of known size, adds the member, then calls the client in a
//! client span that lasts until the response body ends.

use super::layer::{Carrier, InjectConfig};
use crate::codec;
use crate::collect::{CollectError, Collected};
use crate::content::response_length;
use crate::error::Size;
use crate::mode::Reading;
use crate::server::span::{MakeSpan, RequestInfo};
use crate::server::{ResponseBody, Tracker};
use crate::{MetadataError, RequestMetadata};
use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;
use tower_service::Service;
use tracing::Span;

/// The error of client calls through the inject layer: the client's, or the request body's.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) struct Pending<S> {
    pub(crate) inner: S,
    pub(crate) parts: Parts,
    pub(crate) metadata: RequestMetadata,
    pub(crate) config: Arc<InjectConfig>,
    /// Why the caller's own metadata headers could not be read, for the client span.
    pub(crate) unreadable: Option<MetadataError>,
    /// The span `call` ran in: the client span's parent, wherever the future is polled.
    pub(crate) parent: Span,
}

pin_project! {
    /// The future of [`InjectMetadata`](super::InjectMetadata).
    pub struct InjectFuture<S, B>
    where
        S: Service<Request<B>>,
        B: Body,
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
        B: Body,
    {
        Collect {
            #[pin]
            body: B,
            // The exact size the body declared, which bounds what is read.
            size: usize,
            collected: Collected,
            pending: Unsent<S>,
            reading: Reading<B>,
        },
        Call {
            #[pin]
            future: S::Future,
            span: Awaiting,
            start: Instant,
            // A `HEAD` request's answer has no body.
            head: bool,
            // What is current while the client's future runs, as while it was called: a service
            // further in may call onward only from its future (an async filter, a retry's later
            // attempts).
            serving: Option<Arc<RequestMetadata>>,
        },
    }
}

impl<S: Service<Request<B>>, B: Body> InjectFuture<S, B> {
    /// Reads `body`, of the exact `size` it declared, to add the member; `capacity` leaves room for
    /// it.
    pub(crate) fn collect(
        pending: Pending<S>,
        body: B,
        reading: Reading<B>,
        size: usize,
        capacity: usize,
    ) -> Self {
        Self {
            state: State::Collect {
                body,
                size,
                collected: Collected::new(capacity),
                pending: Unsent(Some(pending)),
                reading,
            },
        }
    }

    /// Sends the request as it is now, in its client span.
    pub(crate) fn call(
        mut inner: S,
        request: Request<B>,
        span: Span,
        metadata: &RequestMetadata,
        config: &InjectConfig,
        unreadable: Option<&MetadataError>,
    ) -> Self {
        let read = Read::Unread;
        Self {
            state: call(
                &mut inner, request, span, metadata, config, read, unreadable,
            ),
        }
    }
}

impl<S, B, ResBody> Future for InjectFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    B: Body,
    ResBody: Body<Data = Bytes>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Collect {
                    body,
                    size,
                    collected,
                    pending,
                    reading,
                } => {
                    // The body declared its exact size, within bounds, and is held to it as hyper
                    // holds a body to its length: one that goes on past it is not buffered without
                    // end, and one that ends short of it is not sent as a whole body of another
                    // length. A body that fails while being read fails the call, as it would
                    // without the layer.
                    let read = match ready!(collected.poll_body(body, cx, *size)) {
                        Ok(()) if collected.as_slice().len() < *size => {
                            Err(BoxError::from(format!(
                                "the request body ended after {} of the {} its size hint declared",
                                collected.as_slice().len(),
                                Size(*size)
                            )))
                        }
                        Ok(()) => Ok(()),
                        Err(CollectError::Read(error)) => Err((reading.boxed)(error)),
                        Err(CollectError::TooLarge) => Err(BoxError::from(format!(
                            "the request body is longer than the {} its size hint declared",
                            Size(*size)
                        ))),
                    };
                    if let Err(error) = read {
                        // Never sent, as a call the client failed.
                        if let Some(pending) = pending.0.take() {
                            let span = unsent(pending);
                            span.record("error.type", "request_body");
                            span.record("otel.status_code", "ERROR");
                        }
                        return Poll::Ready(Err(error));
                    }
                    let Some(pending) = pending.0.take() else {
                        unreachable!("a collecting future always holds its request")
                    };
                    let next = send(pending, std::mem::take(collected), reading.rebuild);
                    this.state.set(next);
                }
                StateProj::Call {
                    future,
                    span,
                    start,
                    head,
                    serving,
                } => {
                    let result = {
                        let _entered = span.span().enter();
                        let _serving = serving.is_some().then(|| crate::current::lend(serving));
                        ready!(future.poll(cx))
                    };
                    let span = span.answered();
                    if result.is_err() {
                        // No response: the call failed, as the server side records it.
                        span.record("requesty.response.completed", false);
                        span.record("error.type", "service");
                        span.record("otel.status_code", "ERROR");
                    }
                    return Poll::Ready(result.map_err(Into::into).map(|response| {
                        let (parts, body) = response.into_parts();
                        let declared = response_length(*head, parts.status, &parts.headers);
                        let tracker =
                            Tracker::for_response(span, *start, parts.status, &parts.headers);
                        Response::from_parts(
                            parts,
                            ResponseBody::inner(body, Some(tracker), declared),
                        )
                    }));
                }
            }
        }
    }
}

/// A call's span until its answer (or its error) comes. Dropped before that, the call was given up
/// (a timeout, say), and the span says the response did not complete, as a server span does for a
/// request dropped before its answer.
pub(crate) struct Awaiting(Span);

impl Awaiting {
    pub(crate) fn new(span: Span) -> Self {
        Self(span)
    }

    pub(crate) fn span(&self) -> &Span {
        &self.0
    }

    /// The span, once the call has an outcome to record.
    pub(crate) fn answered(&mut self) -> Span {
        std::mem::replace(&mut self.0, Span::none())
    }
}

impl Drop for Awaiting {
    fn drop(&mut self) {
        self.0.record("requesty.response.completed", false);
    }
}

/// The request of a call whose body is being read. Dropped before it is sent (the call given up
/// while its body stalls), it still leaves a client span, as a server span is left for a request
/// dropped while its body is read.
struct Unsent<S>(Option<Pending<S>>);

impl<S> Drop for Unsent<S> {
    fn drop(&mut self) {
        if let Some(pending) = self.0.take() {
            unsent(pending);
        }
    }
}

/// The span of a call that is never sent, saying its response did not complete; the caller records
/// why.
fn unsent<S>(pending: Pending<S>) -> Span {
    let metadata = pending.config.filter(pending.metadata);
    let span = pending
        .parent
        .in_scope(|| client_span(&pending.config, &pending.parts, &metadata, None));
    span.record("requesty.response.completed", false);
    span
}

/// Puts the metadata into the body (or, for a body that is not a JSON object, the headers) and calls
/// the client.
fn send<S, B>(pending: Pending<S>, collected: Collected, rebuild: fn(Bytes) -> B) -> State<S, B>
where
    S: Service<Request<B>>,
    B: Body,
{
    let Pending {
        mut inner,
        mut parts,
        mut metadata,
        config,
        unreadable,
        parent,
    } = pending;
    let trailers = collected.had_trailers();
    let scanned = codec::scan(collected.as_slice(), &config.limits.own_body());
    // An object's own member joins the metadata; anything else is sent as it is.
    let object = match &scanned {
        Ok(scan) if scan.kind() == codec::BodyKind::Object => Some(scan),
        _ => None,
    };
    if let Some(existing) = object.and_then(codec::Scan::metadata) {
        codec::merge_member(&mut metadata, existing);
    }
    let metadata = config.filter(metadata);
    // The request is the call's: nothing to put back.
    let _ = InjectConfig::hand_on(&metadata, &mut parts.extensions);
    let span = parent.in_scope(|| client_span(&config, &parts, &metadata, object));
    // What the edits below warn about belongs to this call.
    let entered = span.enter();
    let mut read = Read::Whole {
        trailers,
        member: None,
        unscanned: false,
    };
    let body = match scanned {
        Ok(scan) if scan.kind() == codec::BodyKind::Object => {
            let (range, insert) = scan.edit(collected.as_slice(), &config.in_body(&metadata));
            let member_len = scan.member_len_after((&range, &insert));
            let extra_refused =
                scan.own_extra_error_after(collected.as_slice(), (&range, &insert), &config.limits);
            let body = collected.splice(range, &insert);
            let in_body = config.carrier != Carrier::Headers;
            if in_body {
                config.warn_member_size(member_len);
                config.warn_extra_size(extra_refused, &metadata);
                config.warn_member_depth(&metadata);
            }
            config.write_headers(&metadata, in_body, &mut parts.headers);
            let body = config.native_field(&metadata, body);
            crate::content::set_whole_length(&mut parts.headers, body.len());
            body
        }
        // Not an object, or an invalid member of the caller's own: the body is left as it is, but
        // for a boundary to hold, which takes out a member it cannot read whole.
        other => {
            let mut body = collected.into_bytes();
            match other {
                Err(error) => {
                    let cut = config.cut_unreadable_member(&body);
                    if let Some(range) = cut.clone() {
                        body = codec::splice::splice(body, range, b"");
                    }
                    // The provider's user field still goes in the object.
                    body = config.native_field(&metadata, body);
                    crate::content::set_whole_length(&mut parts.headers, body.len());
                    read = Read::Whole {
                        trailers,
                        member: Some((error, cut.is_some())),
                        unscanned: false,
                    };
                }
                // No object to put the provider's user field in: `native_field` says so in the
                // client span (a request with no body at all has none to leave out).
                Ok(scan) if scan.kind() == codec::BodyKind::Malformed => {
                    read = Read::Whole {
                        trailers,
                        member: None,
                        unscanned: true,
                    };
                    body = config.native_field(&metadata, body);
                }
                Ok(_) if body.trim_ascii().is_empty() => {}
                Ok(_) => body = config.native_field(&metadata, body),
            }
            if trailers {
                // Rebuilt from its bytes, the body goes without the trailers it came with.
                crate::content::set_whole_length(&mut parts.headers, body.len());
            }
            config.write_headers(&metadata, false, &mut parts.headers);
            body
        }
    };
    drop(entered);
    let request = Request::from_parts(parts, rebuild(body));
    call(
        &mut inner,
        request,
        span,
        &metadata,
        &config,
        read,
        unreadable.as_ref(),
    )
}

/// The client span of a call, made before the metadata is written so that what writing it warns
/// about lands inside. `parts` are the request as the caller made it.
pub(crate) fn client_span(
    config: &InjectConfig,
    parts: &Parts,
    metadata: &RequestMetadata,
    scan: Option<&codec::Scan>,
) -> Span {
    // Gemini's and Bedrock's own APIs name the model in the path, and whether the answer streams.
    let native = crate::genai::native_path(parts.uri.path());
    config.make_span.clone().make_span(&RequestInfo {
        method: &parts.method,
        uri: &parts.uri,
        headers: &parts.headers,
        metadata: (!metadata.is_empty()).then_some(metadata),
        model: scan
            .and_then(codec::Scan::model)
            .or(native.as_ref().map(|native| &*native.model)),
        stream: scan
            .and_then(codec::Scan::stream)
            .or(native.as_ref().and_then(|native| native.stream)),
        parameters: scan.map(codec::Scan::parameters).unwrap_or_default(),
    })
}

/// What became of the request body before the call, for the warnings in the client span.
enum Read {
    /// Read and rebuilt.
    Whole {
        /// Without the trailers it came with.
        trailers: bool,
        /// Its `requesty` member could not be read: removed whole (`true`, to hold a boundary) or
        /// sent as it came.
        member: Option<(MetadataError, bool)>,
        /// It could not be scanned at all (malformed, or too deep).
        unscanned: bool,
    },
    /// Sent as it came.
    Unread,
}

/// Calls the client inside the call's span.
fn call<S, B>(
    inner: &mut S,
    request: Request<B>,
    span: Span,
    metadata: &RequestMetadata,
    config: &InjectConfig,
    read: Read,
    unreadable: Option<&MetadataError>,
) -> State<S, B>
where
    S: Service<Request<B>>,
    B: Body,
{
    let head = request.method() == http::Method::HEAD;
    let mut serving = config.serving(metadata);
    let future = {
        let _entered = span.enter();
        if let Some(error) = unreadable {
            crate::headers::warn_unreadable(error);
        }
        config.warn_over_limits(metadata);
        match read {
            Read::Unread => config.warn_unread_json(request.headers(), metadata),
            Read::Whole {
                trailers,
                member,
                unscanned,
            } => {
                if trailers {
                    crate::collect::warn_dropped_trailers();
                }
                if let Some((error, removed)) = member {
                    config.warn_unreadable_member(&error, removed);
                }
                if unscanned {
                    config.warn_unscanned_body();
                }
            }
        }
        // A dropped field stays dropped for an inject layer further in, which reads what is
        // current as it is called: here, and from the future (see `State::Call`).
        let _serving = serving
            .is_some()
            .then(|| crate::current::lend(&mut serving));
        inner.call(request)
    };
    State::Call {
        future,
        span: Awaiting::new(span),
        start: Instant::now(),
        head,
        serving,
    }
}
