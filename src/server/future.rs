//! [`ResponseFuture`]: reads the JSON body when there is one, then runs the inner service in the
//! request's span.

use super::complete::{self, Tracker};
use super::layer::Config;
use super::span::{MakeSpan, RequestInfo};
use super::ResponseBody;
use crate::codec::{self, Parameters};
use crate::collect::{CollectError, Collected, ReadFailure};
use crate::content::response_length;
use crate::error::{error_body, MetadataError};
use crate::headers::Origins;
use crate::mode::Reading;
use crate::{dialects, RequestMetadata};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;
use tower_service::Service;
use tracing::Span;

/// What the body said besides the metadata.
#[derive(Default)]
struct Facts {
    model: Option<String>,
    stream: Option<bool>,
    parameters: Parameters,
    /// The body came with trailers, which the rebuilt body does not carry.
    trailers: bool,
    /// Other formats' body fields that were not taken as metadata: they did not fit the limits.
    left_out: Vec<String>,
    /// Other gateways' JSON metadata headers that were not read: they held no JSON object.
    unread: Vec<&'static str>,
}

impl Facts {
    /// Takes the facts out of the scan (its model string moves rather than being copied).
    fn of(scan: &mut codec::Scan) -> Self {
        Self {
            model: scan.take_model(),
            stream: scan.stream(),
            parameters: scan.parameters(),
            trailers: false,
            left_out: Vec::new(),
            unread: Vec::new(),
        }
    }
}

/// The layer's own answer to a request it refused.
struct Rejection {
    status: StatusCode,
    body: Bytes,
    /// `None` for a request already reported.
    tracker: Option<Tracker>,
    /// A HEAD request: the server sends no body and never polls it.
    head: bool,
    /// For a gRPC or gRPC-Web request, the media type of its answer, which carries a gRPC status
    /// rather than an HTTP one.
    grpc: Option<&'static str>,
}

/// Everything a request needs between `call` and the inner service's call.
pub(crate) struct Pending<S, M> {
    pub(crate) inner: S,
    pub(crate) parts: Parts,
    /// What the headers carried; `None` when they carried nothing. Boxed because the future that
    /// holds it moves a few times before the inner service is called.
    pub(crate) headers: Option<Box<HeaderMetadata>>,
    pub(crate) config: Arc<Config>,
    pub(crate) make_span: M,
    pub(crate) start: Instant,
    /// The span `call` ran in: the request span's parent, wherever the future is polled when the
    /// span is made (after a JSON body was read).
    pub(crate) parent: Span,
}

/// A request whose body was read, waiting for a clone of the inner service to be ready: the
/// readiness `call` was given came back while the body was read (see `ExtractMetadata::call`).
struct Waiting<S, B, M> {
    pending: Pending<S, M>,
    body: B,
    metadata: Option<RequestMetadata>,
    facts: Facts,
}

impl<S, B, M: MakeSpan> Waiting<S, B, M> {
    /// The span and tracker of a request that will not reach the inner service, with its whole
    /// metadata.
    fn unserved(self) -> Tracker {
        let Self {
            mut pending,
            metadata,
            facts,
            ..
        } = self;
        pending.headers = metadata.and_then(|metadata| {
            HeaderMetadata::boxed(metadata, RequestMetadata::default(), Origins::default())
        });
        unserved(pending, facts)
    }
}

/// The metadata of a request's headers, kept apart by rank: the body ranks between the two.
#[derive(Default)]
pub(crate) struct HeaderMetadata {
    /// From `X-Requesty-*` headers.
    pub(crate) requesty: RequestMetadata,
    /// From the other gateways' headers.
    pub(crate) dialects: RequestMetadata,
    /// The headers that carried the ids and a tag too long, the `X-Requesty-*` ones winning.
    pub(crate) origins: Origins,
    /// The keys of `dialects.extra` that a header's name gave (Helicone's properties), lowercased
    /// as header names arrive.
    pub(crate) named: Vec<String>,
    /// Other gateways' JSON metadata headers that were not read: they held no JSON object.
    pub(crate) unread: Vec<&'static str>,
}

impl HeaderMetadata {
    /// `None` when neither kind of header carried anything.
    pub(crate) fn boxed(
        requesty: RequestMetadata,
        dialects: RequestMetadata,
        origins: Origins,
    ) -> Option<Box<Self>> {
        (!requesty.is_empty() || !dialects.is_empty()).then(|| {
            Box::new(Self {
                requesty,
                dialects,
                origins,
                named: Vec::new(),
                unread: Vec::new(),
            })
        })
    }

    /// Both, the `X-Requesty-*` headers winning.
    fn combined(headers: Option<Box<Self>>) -> RequestMetadata {
        headers.map_or_else(RequestMetadata::default, |h| {
            let Self {
                mut requesty,
                dialects,
                ..
            } = *h;
            requesty.fill_from(dialects);
            requesty
        })
    }
}

pin_project! {
    /// The future of [`ExtractMetadata`](super::ExtractMetadata).
    pub struct ResponseFuture<S, B, M>
    where
        S: Service<Request<B>>,
        B: Body,
        M: MakeSpan,
    {
        #[pin]
        state: State<S, B, M>,
    }

    impl<S, B, M> PinnedDrop for ResponseFuture<S, B, M>
    where
        S: Service<Request<B>>,
        B: Body,
        M: MakeSpan,
    {
        fn drop(this: Pin<&mut Self>) {
            let mut state = this.project().state;
            match state.as_mut().project() {
                // Dropped while its body was read (the client went away mid-upload, or the server
                // shut down): reported like any request that ended without a response, from its
                // headers.
                StateProj::Collect { pending, .. } => {
                    if let Some(pending) = pending.take() {
                        drop(unserved(pending, Facts::default()));
                    }
                }
                // Dropped before the inner service answered (the client went away while a
                // completion was generated): its future goes as it was polled, in the span with the
                // metadata current, for a drop guard in it that calls onward to cancel work
                // upstream. Then the tracker reports the request.
                StateProj::Call { tracker, .. } => {
                    if let Some(mut tracker) = tracker.take() {
                        let entered = tracker.enter();
                        state.set(State::Reject { rejection: None });
                        drop(entered);
                    }
                }
                // Dropped while the inner service was not ready yet: reported like a request
                // dropped while its body was read, with the metadata the body gave.
                StateProj::Ready { waiting } => {
                    if let Some(waiting) = waiting.take() {
                        drop(waiting.unserved());
                    }
                }
                StateProj::Reject { .. } => {}
            }
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B, M>
    where
        S: Service<Request<B>>,
        B: Body,
    {
        Collect {
            #[pin]
            body: B,
            collected: Collected,
            pending: Option<Pending<S, M>>,
            reading: Reading<B>,
        },
        Ready {
            waiting: Option<Waiting<S, B, M>>,
        },
        Call {
            #[pin]
            future: S::Future,
            // Taken when the response arrives; dropped with the future before that, it reports a
            // request that did not complete.
            tracker: Option<Tracker>,
            // A HEAD request: its response has no body, which the server will not poll.
            head: bool,
        },
        Reject {
            rejection: Option<Rejection>,
        },
    }
}

impl<S, B, M> ResponseFuture<S, B, M>
where
    S: Service<Request<B>>,
    B: Body,
    M: MakeSpan,
{
    pub(crate) fn collect(pending: Pending<S, M>, body: B, reading: Reading<B>) -> Self {
        let capacity = body.size_hint().lower().min(pending.config.max_body as u64) as usize;
        Self {
            state: State::Collect {
                body,
                collected: Collected::new(capacity),
                pending: Some(pending),
                reading,
            },
        }
    }

    pub(crate) fn call(mut pending: Pending<S, M>, body: B) -> Self {
        let origins = pending
            .headers
            .as_ref()
            .map(|h| h.origins)
            .unwrap_or_default();
        let unread = pending
            .headers
            .as_mut()
            .map(|h| std::mem::take(&mut h.unread))
            .unwrap_or_default();
        let metadata = HeaderMetadata::combined(pending.headers.take());
        let limits = &pending.config.limits;
        let checked = origins
            .check(&metadata, limits)
            .and_then(|()| codec::check(&metadata, limits, true));
        if let Err(error) = checked {
            return Self {
                state: refuse(pending, metadata, &error, Facts::default()),
            };
        }
        let facts = Facts {
            unread,
            ..Facts::default()
        };
        Self {
            state: start(pending, body, non_empty(metadata), facts),
        }
    }

    pub(crate) fn reject(pending: Pending<S, M>, status: StatusCode, body: Bytes) -> Self {
        Self {
            state: reject(pending, status, body, Facts::default()),
        }
    }

    pub(crate) fn too_large(pending: Pending<S, M>) -> Self {
        let body = too_large_body(pending.config.max_body);
        Self::reject(pending, StatusCode::PAYLOAD_TOO_LARGE, body)
    }
}

impl<S, B, M, ResBody> Future for ResponseFuture<S, B, M>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: Body,
    ResBody: Body<Data = Bytes>,
    M: MakeSpan,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Collect {
                    mut body,
                    collected,
                    pending,
                    reading,
                } => {
                    let outcome = ready!(collected.poll_body(body.as_mut(), cx, max_body(pending)));
                    let Some(pending) = pending.take() else {
                        unreachable!("a collecting future always holds its request")
                    };
                    let next = match outcome {
                        Ok(()) => read_json(pending, std::mem::take(collected), reading.rebuild),
                        Err(CollectError::TooLarge) => {
                            let body = too_large_body(pending.config.max_body);
                            reject(
                                pending,
                                StatusCode::PAYLOAD_TOO_LARGE,
                                body,
                                Facts::default(),
                            )
                        }
                        Err(CollectError::Read(error)) => {
                            match ReadFailure::of((reading.boxed)(error)) {
                                ReadFailure::TooLarge => {
                                    let body = error_body(
                                        "the request body is over a size limit of this server",
                                        None,
                                        "request_too_large",
                                    );
                                    reject(
                                        pending,
                                        StatusCode::PAYLOAD_TOO_LARGE,
                                        body,
                                        Facts::default(),
                                    )
                                }
                                // Reported as a request dropped before its answer; the answer
                                // still goes, for a client that only stopped sending.
                                ReadFailure::ClientGone => unreported(pending, read_error_body()),
                                ReadFailure::Broken => reject(
                                    pending,
                                    StatusCode::BAD_REQUEST,
                                    read_error_body(),
                                    Facts::default(),
                                ),
                            }
                        }
                    };
                    this.state.set(next);
                }
                StateProj::Ready { waiting } => {
                    let Some(ready) = waiting.as_mut() else {
                        unreachable!("a waiting future is polled once more after it completed")
                    };
                    let readiness = ready!(ready.pending.inner.poll_ready(cx));
                    let Some(ready) = waiting.take() else {
                        unreachable!("a waiting future holds its request")
                    };
                    if let Err(error) = readiness {
                        ready.unserved().call_failed();
                        return Poll::Ready(Err(error));
                    }
                    let Waiting {
                        pending,
                        body,
                        metadata,
                        facts,
                    } = ready;
                    this.state.set(start(pending, body, metadata, facts));
                }
                StateProj::Call {
                    future,
                    tracker,
                    head,
                } => {
                    let result = {
                        let _entered = tracker.as_mut().map(Tracker::enter);
                        ready!(future.poll(cx))
                    };
                    let Some(mut tracker) = tracker.take() else {
                        unreachable!("a calling future is polled once more after it completed")
                    };
                    return Poll::Ready(match result {
                        Ok(response) => {
                            let (parts, body) = response.into_parts();
                            // A server writes no body for these and drops it unpolled: known
                            // to be complete already. With no `Content-Length`, hyper sends a
                            // body's exact size hint as one, and stops polling once it is written;
                            // but not for a body the head says is sent chunked, which ends with
                            // its last chunk.
                            let chunked = parts.headers.contains_key(TRANSFER_ENCODING);
                            let declared = response_length(*head, parts.status, &parts.headers)
                                .or_else(|| body.size_hint().exact().filter(|_| !chunked));
                            tracker.respond(parts.status, Some(&parts.headers));
                            Ok(Response::from_parts(
                                parts,
                                ResponseBody::inner(body, Some(tracker), declared),
                            ))
                        }
                        Err(error) => {
                            tracker.call_failed();
                            Err(error)
                        }
                    });
                }
                StateProj::Reject { rejection } => {
                    let Some(Rejection {
                        status,
                        body,
                        mut tracker,
                        head,
                        grpc,
                    }) = rejection.take()
                    else {
                        unreachable!("a rejecting future is polled once more after it completed")
                    };
                    // The answer is noted as it goes out, not before: dropped first, the request
                    // is one that got no answer (see `ResponseBody::error`).
                    if let Some(content_type) = grpc {
                        // A gRPC refusal goes out as `200` with its `grpc-status`, which the
                        // tracker notes with it.
                        let response = crate::error::grpc_answer(status, &body, content_type);
                        let (parts, ()) = response.into_parts();
                        if let Some(tracker) = tracker.as_mut() {
                            tracker.grpc(&parts.headers);
                        }
                        let body = ResponseBody::error(Bytes::new(), tracker, StatusCode::OK);
                        return Poll::Ready(Ok(Response::from_parts(parts, body)));
                    }
                    // The answer to a HEAD request has the head a GET would get, and no body: over
                    // HTTP/2 one would be a protocol error.
                    let length = HeaderValue::from(body.len());
                    let body = if head { Bytes::new() } else { body };
                    let mut response = Response::new(ResponseBody::error(body, tracker, status));
                    *response.status_mut() = status;
                    let headers = response.headers_mut();
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    headers.insert(CONTENT_LENGTH, length);
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}

/// Whether a JSON request body is well-formed JSON text, for `reject_malformed`: the scan judged an
/// object's shape and depth, a parser checks the rest (on this path only). No body at all is fine.
fn well_formed(body: &[u8], kind: codec::BodyKind) -> bool {
    // A parser may skip a byte order mark (RFC 8259), serde_json does not.
    let text = body.strip_prefix(codec::BOM).unwrap_or(body);
    // serde_json skips an ignored string's bytes without checking their UTF-8: checked first.
    let valid = || {
        std::str::from_utf8(text)
            .is_ok_and(|text| serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok())
    };
    match kind {
        // The scan checked the object's own members and the `requesty` member, not the grammar
        // inside the other values: that takes a parser, on this path only.
        codec::BodyKind::Object => valid(),
        codec::BodyKind::Malformed => false,
        // JSON's own whitespace only: a form feed, say, is not JSON.
        codec::BodyKind::NotObject => {
            text.iter()
                .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
                || valid()
        }
    }
}

fn max_body<S, M>(pending: &Option<Pending<S, M>>) -> usize {
    pending.as_ref().map_or(0, |p| p.config.max_body)
}

/// Scans the collected JSON body, merges its metadata over the headers', strips the member and calls
/// the inner service, or rejects the request.
fn read_json<S, B, M>(
    mut pending: Pending<S, M>,
    collected: Collected,
    rebuild: fn(Bytes) -> B,
) -> State<S, B, M>
where
    S: Service<Request<B>>,
    B: Body,
    M: MakeSpan,
{
    let config = pending.config.clone();
    let sources = &config.sources;
    let bytes = collected.as_slice();
    let mut scan = match codec::scan_reading(bytes, &config.limits, sources.reads_requesty()) {
        Ok(scan) => scan,
        Err(error) => {
            // The member broke a rule, but the rest of the body still says which model was asked
            // for: scan again without reading the member (only on this path) for the span and hook.
            let facts = codec::scan_reading(bytes, &config.limits, false)
                .map(|mut scan| Facts::of(&mut scan))
                .unwrap_or_default();
            return reject_metadata(pending, &error, facts);
        }
    };
    if config.reject_malformed && !well_formed(bytes, scan.kind()) {
        let body = error_body(
            "the request body is not valid JSON (or nests deeper than the layer's max_depth)",
            None,
            "invalid_json",
        );
        return reject(pending, StatusCode::BAD_REQUEST, body, Facts::default());
    }
    let mut facts = Facts {
        trailers: collected.had_trailers(),
        ..Facts::of(&mut scan)
    };
    // Requesty's body member, its headers, the other dialects' body fields and headers, then the
    // native `user`: earlier sources win.
    let HeaderMetadata {
        requesty: headers,
        dialects: mut dialect_headers,
        origins,
        named,
        unread,
    } = pending.headers.take().map(|h| *h).unwrap_or_default();
    facts.unread = unread;
    // The member's `extra` was measured as sent; only keys from elsewhere call for measuring again.
    let member_extra = scan.metadata().map_or(0, |m| m.extra.len());
    let mut metadata = match scan.take_metadata() {
        Some(mut from_body) => {
            let mut headers = headers;
            // A header name arrives lowercased: an `extra` key the body spells with capitals is the
            // same key (a client that sends both carriers, or the member and Helicone's form), and
            // the body's wins. Only names are folded: a key of a JSON header keeps its case.
            let body_keys = &from_body.extra;
            let same_key = |key: &String| {
                body_keys
                    .keys()
                    .any(|own| own != key && own.eq_ignore_ascii_case(key))
            };
            headers.extra.retain(|key, _| !same_key(key));
            for key in &named {
                if same_key(key) {
                    dialect_headers.extra.remove(key);
                }
            }
            from_body.fill_from(headers);
            from_body
        }
        None => headers,
    };
    // An empty id or origin that the member gave and no header filled carries nothing: the other
    // formats' body fields and the native `user` below may still fill it. An empty tag takes no
    // place under the tag limit.
    clear_empty(&mut metadata);
    // The other formats' body fields are read within the limits field by field, but together with
    // everything else they may still go over one: then the request goes on without them, as if they
    // were not there, so what is kept to fall back on is the metadata without them.
    let foreign = dialects::body_fields(&scan, sources);
    let without_foreign = (!foreign.is_empty()).then(|| {
        let mut without = metadata.clone();
        without.fill_from(dialect_headers.clone());
        without
    });
    let (limits, left_out) = (&config.limits, &mut facts.left_out);
    dialects::fill_from_body(&mut metadata, bytes, &scan, sources, limits, left_out);
    metadata.fill_from(dialect_headers);
    dialects::fill_native_user(&mut metadata, bytes, &scan, sources, limits, left_out);
    let finish = |metadata: &mut RequestMetadata| {
        if config.reconstruct_sessions && metadata.trace_id.as_deref().is_none_or(str::is_empty) {
            // A limit set below the derived id's length (29 bytes) leaves the request without one.
            metadata.trace_id =
                dialects::conversation_id(bytes, scan.members(), config.limits.depth())
                    .filter(|id| id.len() <= config.limits.id_len());
        }
        let measure_extra = metadata.extra.len() > member_extra;
        origins
            .check(metadata, &config.limits)
            .and_then(|()| codec::check(metadata, &config.limits, measure_extra))
    };
    if let Err(error) = finish(&mut metadata) {
        let Some(mut without) = without_foreign else {
            return refuse(pending, metadata, &error, facts);
        };
        let mut left_out = foreign.into_iter().map(str::to_owned).collect();
        dialects::fill_native_user(&mut without, bytes, &scan, sources, limits, &mut left_out);
        if let Err(error) = finish(&mut without) {
            return refuse(pending, without, &error, facts);
        }
        metadata = without;
        facts.left_out = left_out;
    }
    let body = match scan.member_range().filter(|_| config.strip_body) {
        Some(member) => collected.splice(member, b""),
        None => collected.into_bytes(),
    };
    // The body is whole now, whatever framing it came in.
    crate::content::set_whole_length(&mut pending.parts.headers, body.len());
    State::Ready {
        waiting: Some(Waiting {
            pending,
            body: rebuild(body),
            metadata: non_empty(metadata),
            facts,
        }),
    }
}

/// Refuses a request whose whole metadata, `metadata`, breaks a rule: its span and report carry
/// what it said all the same.
fn refuse<S, B, M>(
    mut pending: Pending<S, M>,
    metadata: RequestMetadata,
    error: &MetadataError,
    facts: Facts,
) -> State<S, B, M>
where
    S: Service<Request<B>>,
    B: Body,
    M: MakeSpan,
{
    pending.headers =
        HeaderMetadata::boxed(metadata, RequestMetadata::default(), Origins::default());
    reject_metadata(pending, error, facts)
}

fn reject_metadata<S, B, M>(
    pending: Pending<S, M>,
    error: &MetadataError,
    facts: Facts,
) -> State<S, B, M>
where
    S: Service<Request<B>>,
    B: Body,
    M: MakeSpan,
{
    reject(pending, error.status(), error.to_json(), facts)
}

/// Makes the span and calls the inner service inside it.
fn start<S, B, M>(
    pending: Pending<S, M>,
    body: B,
    metadata: Option<RequestMetadata>,
    mut facts: Facts,
) -> State<S, B, M>
where
    S: Service<Request<B>>,
    B: Body,
    M: MakeSpan,
{
    let Pending {
        mut inner,
        parts,
        config,
        mut make_span,
        start,
        parent,
        ..
    } = pending;
    // A server layer further out read this request first; what it kept (its headers, say), this
    // one reads again. What this one reads fills in what that one's lacks, so the handler, the
    // span and onward calls see the whole request's metadata; where both give a field, the outer
    // one's wins: it read the whole request, a body member this one no longer sees ranking above
    // the headers both read.
    let metadata = match (metadata, parts.extensions.get::<RequestMetadata>()) {
        (Some(read), Some(outer)) => Some(outer.clone().with_fallback(read)),
        (metadata, _) => metadata,
    };
    // Shared by the propagation scope and the completion hook (when either wants it); the extension
    // gets the value itself.
    let shared = config.propagate || config.on_complete.is_some();
    let current = metadata
        .as_ref()
        .filter(|_| shared)
        .map(|m| Arc::new(m.clone()));
    let trailers = facts.trailers;
    let left_out = std::mem::take(&mut facts.left_out);
    let unread = std::mem::take(&mut facts.unread);
    // With nothing left to read (a layer further out took it all out), the span still carries the
    // request's metadata: the outer layer's, which the handler finds in the extensions.
    let traced = metadata
        .as_ref()
        .or_else(|| parts.extensions.get::<RequestMetadata>());
    let (span, request) = trace(
        &mut make_span,
        &parts,
        traced,
        current.clone(),
        facts,
        &config,
        &parent,
    );
    let mut req = Request::from_parts(parts, body);
    if let Some(metadata) = metadata {
        req.extensions_mut().insert(metadata);
    }
    if let Some(current) = &current {
        req.extensions_mut()
            .insert(crate::current::Inbound(current.clone()));
    }
    let head = req.method() == Method::HEAD;
    let current = current.filter(|_| config.propagate);
    let mut tracker = Tracker::new(span, request, current, start);
    let future = {
        let _entered = tracker.enter();
        if trailers {
            crate::collect::warn_dropped_trailers();
        }
        for field in left_out {
            crate::dialects::warn_left_out(&field);
        }
        for header in unread {
            crate::dialects::warn_unread(header);
        }
        inner.call(req)
    };
    State::Call {
        future,
        tracker: Some(tracker),
        head,
    }
}

/// Answers for the layer, in a span of its own so rejected requests are traced and logged too.
fn reject<S, B, M>(
    pending: Pending<S, M>,
    status: StatusCode,
    body: Bytes,
    facts: Facts,
) -> State<S, B, M>
where
    S: Service<Request<B>>,
    B: Body,
    M: MakeSpan,
{
    let head = pending.parts.method == Method::HEAD;
    let grpc = crate::content::grpc_answer_type(&pending.parts.headers);
    let tracker = unserved(pending, facts);
    State::Reject {
        rejection: Some(Rejection {
            status,
            body,
            tracker: Some(tracker),
            head,
            grpc,
        }),
    }
}

/// The answer to a request whose client went away while its body was read: reported as a request
/// dropped before its answer (`499`, not completed), and answered with `body` all the same, for a
/// client that only stopped sending.
fn unreported<S, B, M>(pending: Pending<S, M>, body: Bytes) -> State<S, B, M>
where
    S: Service<Request<B>>,
    B: Body,
    M: MakeSpan,
{
    let head = pending.parts.method == Method::HEAD;
    let grpc = crate::content::grpc_answer_type(&pending.parts.headers);
    drop(unserved(pending, Facts::default()));
    State::Reject {
        rejection: Some(Rejection {
            status: StatusCode::BAD_REQUEST,
            body,
            tracker: None,
            head,
            grpc,
        }),
    }
}

fn read_error_body() -> Bytes {
    error_body(
        "the request body could not be read",
        None,
        "body_read_error",
    )
}

/// The span and tracker of a request the inner service will not see, made from its headers.
fn unserved<S, M: MakeSpan>(pending: Pending<S, M>, facts: Facts) -> Tracker {
    let Pending {
        parts,
        config,
        mut make_span,
        start,
        headers,
        parent,
        ..
    } = pending;
    let metadata = non_empty(HeaderMetadata::combined(headers)).map(Arc::new);
    let (span, request) = trace(
        &mut make_span,
        &parts,
        metadata.as_deref(),
        metadata.clone(),
        facts,
        &config,
        &parent,
    );
    Tracker::new(span, request, None, start)
}

/// The request's span, made in `parent` (the span `call` ran in), and what the completion hook will
/// want at the end (only when there is one).
fn trace<M: MakeSpan>(
    make_span: &mut M,
    parts: &Parts,
    metadata: Option<&RequestMetadata>,
    shared: Option<Arc<RequestMetadata>>,
    mut facts: Facts,
    config: &Config,
    parent: &Span,
) -> (Span, Option<Box<complete::Request>>) {
    // Gemini's and Bedrock's own APIs name the model in the path, and whether the answer streams.
    if let Some(native) = crate::genai::native_path(parts.uri.path()) {
        facts.stream = facts.stream.or(native.stream);
        if facts.model.is_none() {
            facts.model = Some(native.model.into_owned());
        }
    }
    let info = RequestInfo {
        method: &parts.method,
        uri: &parts.uri,
        headers: &parts.headers,
        metadata,
        model: facts.model.as_deref(),
        stream: facts.stream,
        parameters: facts.parameters,
    };
    let span = parent.in_scope(|| make_span.make_span(&info));
    let request = config.on_complete.as_ref().map(|hook| {
        Box::new(complete::Request {
            metadata: shared,
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            model: facts.model,
            stream: facts.stream,
            on_complete: hook.clone(),
        })
    });
    (span, request)
}

/// The metadata a request carried, `None` for none. An empty id or origin (`""`) that no other
/// source filled carries nothing, as an empty header does: it is no value; nor is an empty tag, as
/// in a header's `a, , b`.
fn non_empty(mut metadata: RequestMetadata) -> Option<RequestMetadata> {
    clear_empty(&mut metadata);
    (!metadata.is_empty()).then_some(metadata)
}

/// Takes an empty id or origin (`""`) for none, and leaves out empty tags.
fn clear_empty(metadata: &mut RequestMetadata) {
    metadata.tags.retain(|tag| !tag.is_empty());
    for field in [
        &mut metadata.user_id,
        &mut metadata.trace_id,
        &mut metadata.origin_referer,
        &mut metadata.origin_title,
    ] {
        if field.as_deref() == Some("") {
            *field = None;
        }
    }
}

fn too_large_body(max: usize) -> Bytes {
    error_body(
        &format!(
            "the request body is larger than the limit of {}",
            crate::error::Size(max)
        ),
        None,
        "request_too_large",
    )
}
