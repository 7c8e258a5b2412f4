//! The end of a request: when the response body ended or was dropped, what the span records and what
//! the completion hook sees.

use super::grpc_web;
use super::span::record_response;
use crate::usage::{ResponseInfo, UsageReader};
use crate::RequestMetadata;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, Method, StatusCode};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Span;

pub(crate) type OnComplete = Arc<dyn Fn(&Completion<'_>) + Send + Sync>;

/// One finished request, as [`RequestyMetadataLayer::on_complete`](crate::RequestyMetadataLayer::on_complete)
/// sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Completion<'a> {
    /// The request's metadata, when it carried any.
    pub metadata: Option<&'a RequestMetadata>,
    /// The request method.
    pub method: &'a Method,
    /// The request path.
    pub path: &'a str,
    /// The body's `model`, when it had one; else the model a Gemini or Bedrock Converse path names.
    pub model: Option<&'a str>,
    /// The body's `stream` flag, when it had one; else whether a Gemini or Bedrock Converse path
    /// streams.
    pub stream: Option<bool>,
    /// The response status: `400`/`413` for requests this layer rejected (for a gRPC request, `200`
    /// as on the wire, its refusal in [`grpc_status`](Self::grpc_status)), and `499` (nginx's
    /// "client closed request") when the request got no answer: dropped before the inner service
    /// answered (the client went away while a long completion was generated), or before this
    /// layer's refusal went out (the client went away mid-upload); `500` when the inner service's
    /// call returned an error (then no response went out, and the span records no status code).
    pub status: StatusCode,
    /// From the request reaching the layer to the response body's end (or drop).
    pub latency: Duration,
    /// Until the first byte of the response body.
    pub time_to_first_byte: Option<Duration>,
    /// Streams: until the first generated text.
    pub time_to_first_token: Option<Duration>,
    /// What a JSON or event-stream response said about itself: usage, response model, id, finish
    /// reasons.
    pub response: Option<&'a ResponseInfo>,
    /// `false` when the response body was dropped before it ended (a client that went away
    /// mid-stream), or the request before there was a response, or the body ended in an error.
    pub completed: bool,
    /// The response failed: the inner service's body ended in an error (a proxy's upstream that cut
    /// its stream, say) or short of the `Content-Length` its head declared, or its call returned an
    /// error, rather than the client going away; or a successful answer's body reported an error
    /// (a stream's error event, in [`ResponseInfo::error`]).
    pub failed: bool,
    /// A gRPC response's status code (`grpc-status`, `0` for OK), from its trailers or, for a
    /// trailers-only response, its head: the HTTP status of a gRPC call is `200` whatever its outcome.
    /// A gRPC-Web answer with a body carries its trailers in the body's last frame, which is read
    /// when the body is binary (`application/grpc-web`, not `application/grpc-web-text`) and not
    /// content-encoded.
    pub grpc_status: Option<i32>,
    /// The request's span, still open. The hook runs wherever the response body ended (a server's
    /// connection task, say), outside that span: name it as the parent of what the hook logs,
    /// `tracing::info!(parent: &done.span, ...)`, for the event to belong to the request.
    pub span: Span,
}

impl<'a> Completion<'a> {
    /// A request that was answered `status` at once, with no metadata, nothing read from its body
    /// or response, and a body that ended: the layer builds its own, and this is for testing a
    /// completion hook. The other fields are public, to be set after.
    ///
    /// ```
    /// use http::{Method, StatusCode};
    /// use requesty_metadata::{server::Completion, RequestMetadata};
    /// use std::time::Duration;
    ///
    /// let metadata = RequestMetadata::new().user_id("u-1");
    /// let mut done = Completion::new(&Method::POST, "/v1/chat/completions", StatusCode::OK);
    /// done.metadata = Some(&metadata);
    /// done.latency = Duration::from_millis(120);
    ///
    /// let hook = |done: &Completion<'_>| {
    ///     format!("{} {}", done.status.as_u16(), done.metadata.and_then(|m| m.user_id.as_deref()).unwrap_or("-"))
    /// };
    /// assert_eq!(hook(&done), "200 u-1");
    /// ```
    pub fn new(method: &'a Method, path: &'a str, status: StatusCode) -> Self {
        Self {
            metadata: None,
            method,
            path,
            model: None,
            stream: None,
            status,
            latency: Duration::ZERO,
            time_to_first_byte: None,
            time_to_first_token: None,
            response: None,
            completed: true,
            failed: false,
            grpc_status: None,
            span: Span::none(),
        }
    }
}

/// What a request keeps for the completion hook (only when one is set). Boxed so a response body stays
/// small.
pub(crate) struct Request {
    pub(crate) metadata: Option<Arc<RequestMetadata>>,
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) model: Option<String>,
    pub(crate) stream: Option<bool>,
    pub(crate) on_complete: OnComplete,
}

/// The status reported for a request whose response never came: the client went away (or the
/// server dropped the request) before the inner service answered. 499 is what nginx logs for a
/// client that closed its connection.
fn client_closed() -> StatusCode {
    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
}

/// Follows a request from the inner service's call to the end of its response body: reads usage on
/// the side, closes the span and calls the hook exactly once, also when it is dropped before the
/// end (then the request did not complete).
pub(crate) struct Tracker {
    span: Span,
    /// The request's metadata, current while the inner future and the body are polled (a streaming
    /// handler may call on).
    current: Option<Arc<RequestMetadata>>,
    request: Option<Box<Request>>,
    /// `None` until the inner service answered.
    status: Option<StatusCode>,
    start: Instant,
    first_byte: Option<Duration>,
    first_token: Option<Duration>,
    reader: Option<UsageReader>,
    /// The response is gRPC (its head said so): only then is a `grpc-status` its status.
    grpc_response: bool,
    /// The gRPC status, once the head or the trailers carried one.
    grpc_status: Option<i32>,
    /// For a gRPC-Web response, its frames followed to the trailers frame at the body's end. Boxed
    /// so that other responses pay for no more than a pointer.
    grpc_web: Option<Box<grpc_web::Frames>>,
    done: bool,
    /// A client span's tracker: a `4xx` answer is an error of the call too.
    client: bool,
}

/// How a response body came to its end, for [`Tracker::finish`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum End {
    /// All of it was sent.
    Complete,
    /// It was dropped first: the client went away, or the request before a response.
    Dropped,
    /// The inner body failed.
    Failed,
    /// The inner service's call failed: there was no response.
    CallFailed,
}

impl Tracker {
    pub(crate) fn new(
        span: Span,
        request: Option<Box<Request>>,
        current: Option<Arc<RequestMetadata>>,
        start: Instant,
    ) -> Self {
        Self {
            span,
            current,
            request,
            status: None,
            start,
            first_byte: None,
            first_token: None,
            reader: None,
            grpc_response: false,
            grpc_status: None,
            grpc_web: None,
            done: false,
            client: false,
        }
    }

    /// A tracker for a response already at hand, with no hook and nothing to make current: the
    /// client side's.
    pub(crate) fn for_response(
        span: Span,
        start: Instant,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Self {
        let mut tracker = Self::new(span, None, None, start);
        tracker.client = true;
        tracker.respond(status, Some(headers));
        tracker
    }

    /// Notes the response's status; `headers` are the response's, when there is a response body
    /// worth reading for usage (or a gRPC status in them).
    pub(crate) fn respond(&mut self, status: StatusCode, headers: Option<&HeaderMap>) {
        self.span
            .record("http.response.status_code", i64::from(status.as_u16()));
        self.status = Some(status);
        if let Some(headers) = headers {
            self.grpc(headers);
        }
        // Usage, and a gRPC-Web body's status, are read only for someone: a span that records, or
        // the completion hook.
        let wanted = !self.span.is_disabled() || self.request.is_some();
        let headers = headers.filter(|_| wanted);
        self.reader = headers.and_then(reader_for);
        self.grpc_web = headers
            .filter(|headers| grpc_web::is_binary(headers))
            .map(|_| Box::default());
    }

    /// Ends a request whose inner service's call returned an error: no response went out, so the
    /// span records no status code; the hook hears `500`, as a gateway logs such a request.
    pub(crate) fn call_failed(&mut self) {
        self.status = Some(StatusCode::INTERNAL_SERVER_ERROR);
        self.finish(End::CallFailed);
    }

    /// Enters the span and makes the metadata current, for one poll of the body. A client span's
    /// tracker leaves the current metadata as it is: the body is read within the caller's request.
    /// So does a server span's with no metadata to make current (the request carried none, or
    /// propagation is off): inside another server layer, the outer request's stays current.
    pub(crate) fn enter(
        &mut self,
    ) -> (tracing::span::Entered<'_>, Option<crate::current::Lent<'_>>) {
        let lend = !self.client && self.current.is_some();
        let lent = lend.then(|| crate::current::lend(&mut self.current));
        (self.span.enter(), lent)
    }

    /// Looks at a data frame on its way out.
    pub(crate) fn observe(&mut self, data: &Bytes) {
        if self.first_byte.is_none() && !data.is_empty() {
            self.first_byte = Some(self.start.elapsed());
        }
        if let Some(frames) = &mut self.grpc_web {
            frames.feed(data);
        }
        if let Some(reader) = &mut self.reader {
            reader.feed(data);
            if self.first_token.is_none() && reader.saw_token() {
                self.first_token = Some(self.start.elapsed());
            }
        }
    }

    /// Notes the gRPC status in a gRPC response's head (a trailers-only response) or its trailers;
    /// the head's `Content-Type` says whether the response is gRPC or gRPC-Web (a JSON answer that
    /// passes a `grpc-status` on, from a transcoder say, is not). A gRPC-Web answer with a body
    /// carries its status inside the body instead, in a trailers frame that [`observe`](Self::observe)
    /// follows the frames to (when the body is binary: `application/grpc-web-text` is base64, and
    /// not read).
    pub(crate) fn grpc(&mut self, headers: &HeaderMap) {
        self.grpc_response |= crate::content::grpc_answer_type(headers).is_some();
        if !self.grpc_response {
            return;
        }
        // Recorded at the end: a head's status that trailers then restate would be exported as a
        // second attribute under the same key.
        if let Some(code) = grpc_status(headers) {
            self.grpc_status = Some(code);
        }
    }

    /// Whether an answer with `status` makes the span's status an error: `5xx` for a server span,
    /// `4xx` too for a client span (the HTTP conventions).
    fn is_error(&self, status: StatusCode) -> bool {
        status.is_server_error() || (self.client && status.is_client_error())
    }

    /// Whether the gRPC status makes the span's status an error, as the RPC conventions say: any
    /// code but OK for a client span; for a server span only those that say the server failed
    /// (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS), not those
    /// that say the caller asked amiss.
    fn is_grpc_error(&self) -> bool {
        match self.grpc_status {
            None | Some(0) => false,
            Some(code) => self.client || matches!(code, 2 | 4 | 12 | 13 | 14 | 15),
        }
    }

    /// Records the end; later calls do nothing.
    pub(crate) fn finish(&mut self, end: End) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let completed = end == End::Complete;
        // A gRPC-Web body's trailers frame counts as trailers would: it is the body's last.
        if let Some(code) = self.grpc_web.take().and_then(|frames| frames.status()) {
            self.grpc_status = Some(code);
        }
        let stream = self.reader.as_ref().is_some_and(UsageReader::is_stream);
        let response = self.reader.take().map(UsageReader::finish);
        if let Some(info) = &response {
            record_response(&self.span, info, self.first_token);
        }
        if let Some(first) = self.first_byte.filter(|_| stream) {
            self.span
                .record("gen_ai.response.time_to_first_chunk", first.as_secs_f64());
        }
        // A body that came whole after a success, but reported an error (a stream's error event):
        // the answer failed all the same.
        let reported = response
            .as_ref()
            .and_then(|info| info.error.as_deref())
            .filter(|_| completed && self.status.is_some_and(|s| s.is_success()));
        let failed = matches!(end, End::Failed | End::CallFailed) || reported.is_some();
        self.span.record("requesty.response.completed", completed);
        if let Some(code) = self.grpc_status {
            // The RPC conventions' string form: the code's name (`OK`, `UNAVAILABLE`).
            self.span
                .record("rpc.response.status_code", &*grpc_code_name(code));
        }
        // An answer whose status makes the span an error (a `5xx`; on a client span a `4xx` too)
        // names its error as the GenAI and HTTP conventions require: the provider's error type when
        // the body gave one, else the status code.
        let status_error = self.status.filter(|&s| self.is_error(s)).map(|status| {
            response
                .as_ref()
                .and_then(|info| info.error.clone())
                .unwrap_or_else(|| status.as_str().to_owned())
        });
        // A gRPC status that makes the span an error names it by its code, as the RPC conventions
        // have it (`UNAVAILABLE`).
        let grpc_error = self
            .grpc_status
            .filter(|_| self.is_grpc_error())
            .map(grpc_code_name);
        let error = match end {
            End::Failed => Some("response_body"),
            End::CallFailed => Some("service"),
            End::Complete | End::Dropped => reported
                .or(status_error.as_deref())
                .or(grpc_error.as_deref()),
        };
        if let Some(error) = error {
            self.span.record("error.type", error);
        }
        if error.is_some()
            || self.status.is_some_and(|status| self.is_error(status))
            || self.is_grpc_error()
        {
            self.span.record("otel.status_code", "ERROR");
        }
        if let Some(r) = &self.request {
            (r.on_complete)(&Completion {
                metadata: r.metadata.as_deref(),
                method: &r.method,
                path: &r.path,
                model: r.model.as_deref(),
                stream: r.stream,
                status: self.status.unwrap_or_else(client_closed),
                latency: self.start.elapsed(),
                time_to_first_byte: self.first_byte,
                time_to_first_token: self.first_token,
                response: response.as_ref(),
                completed,
                failed,
                grpc_status: self.grpc_status,
                span: self.span.clone(),
            });
        }
        // Close the span now rather than whenever the body value is dropped.
        self.span = Span::none();
        self.current = None;
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.finish(End::Dropped);
    }
}

/// A usage reader for a JSON or event-stream response that is not content-encoded.
fn reader_for(headers: &HeaderMap) -> Option<UsageReader> {
    if crate::content::is_encoded(headers) {
        return None;
    }
    UsageReader::new(headers.get(CONTENT_TYPE)?.to_str().ok()?)
}

/// A gRPC status code's name, as the RPC conventions record an error (`NOT_FOUND`); a code gRPC
/// does not define, as its number.
fn grpc_code_name(code: i32) -> Cow<'static, str> {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    match usize::try_from(code).ok().and_then(|i| NAMES.get(i)) {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(code.to_string()),
    }
}

/// The `grpc-status` in a response head or trailers: a decimal code, or `None` when absent or not
/// one.
fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    grpc_code(headers.get("grpc-status")?.as_bytes())
}

/// A `grpc-status` value: a decimal code, or `None` when it is not one.
pub(super) fn grpc_code(value: &[u8]) -> Option<i32> {
    if value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}
