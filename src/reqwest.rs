//! Metadata on reqwest calls, as a [`reqwest_middleware::Middleware`].
//!
//! ```no_run
//! use requesty_metadata::{reqwest::MetadataMiddleware, RequestMetadata};
//! use reqwest_middleware::ClientBuilder;
//!
//! # async fn run() -> Result<(), reqwest_middleware::Error> {
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(MetadataMiddleware::new(RequestMetadata::new().tag("research-agent")))
//!     .build();
//! client
//!     .post("http://127.0.0.1:8080/v1/chat/completions")
//!     .header("content-type", "application/json")
//!     .body(r#"{"model":"openai/gpt-4o","messages":[]}"#)
//!     // Per-request metadata, merged over the defaults and the current request's.
//!     .with_extension(RequestMetadata::new().trace_id("session-42"))
//!     .send()
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! Sources and precedence are the inject layer's ([`client`](crate::client)). A buffered JSON body
//! gets the member and stays buffered, so `try_clone` (and retry middleware) keeps working; a
//! streaming body gets the header form.

use crate::client::{Awaiting, Carrier, HandedOn, InjectConfig, InjectMetadataLayer};
use crate::codec::{self, splice::spliced};
use crate::content::{is_encoded, is_json, response_length};
use crate::server::span::{MakeSpan, RequestInfo};
use crate::server::{ResponseBody, Tracker};
use crate::{headers, RequestMetadata};
use http::header::CONTENT_LENGTH;
use http::{Extensions, HeaderValue};
use reqwest_middleware::{Middleware, Next, Result};
use std::sync::Arc;
use std::time::Instant;
use tracing::{Instrument, Span};

/// Adds metadata to every request of a `reqwest_middleware` client.
#[derive(Clone, Debug)]
pub struct MetadataMiddleware {
    config: Arc<InjectConfig>,
}

impl MetadataMiddleware {
    /// Adds `defaults` (and the current request's metadata, and per-request extensions).
    ///
    /// A redirect that reqwest follows happens below the middleware: one that turns a `POST` into a
    /// `GET` (`303`, and `301`/`302` for `POST`) drops the body, and with it metadata that travelled
    /// in the body. Use `Carrier::Both` where that matters.
    pub fn new(defaults: RequestMetadata) -> Self {
        crate::RequestyMetadataLayer::inject(defaults).into()
    }
}

/// The middleware with the inject layer's options (carrier, boundary, propagation, limits). One made
/// from a [`headers_only`](InjectMetadataLayer::headers_only) layer reads no body, as the layer does
/// not: the metadata goes in headers.
impl<R> From<InjectMetadataLayer<R>> for MetadataMiddleware {
    fn from(layer: InjectMetadataLayer<R>) -> Self {
        Self {
            config: layer.config,
        }
    }
}

#[async_trait::async_trait]
impl Middleware for MetadataMiddleware {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<reqwest::Response> {
        let config = &self.config;
        let mut metadata = config.starting(extensions);
        // As the tower layer reads them, within looser bounds.
        let unreadable = headers::read_own(req.headers(), &config.limits)
            .map(|own| headers::merge_over(&mut metadata, own))
            .err();
        let json = config.reads_body() && is_json(req.headers()) && !is_encoded(req.headers());
        let buffered = req
            .body()
            .and_then(reqwest::Body::as_bytes)
            .filter(|bytes| json && bytes.len() <= config.max_body);
        let unread = buffered.is_none() && req.body().is_some();
        let read = buffered.is_some();
        let mut unreadable_member = None;
        let mut unscanned = false;
        // `Some(scan)` when the body is an object, to carry the metadata.
        let object =
            buffered.and_then(
                |bytes| match codec::scan(bytes, &config.limits.own_body()) {
                    Ok(scan) if scan.kind() == codec::BodyKind::Object => Some(scan),
                    Ok(scan) => {
                        unscanned = scan.kind() == codec::BodyKind::Malformed;
                        None
                    }
                    Err(error) => {
                        unreadable_member = Some((error, config.cut_unreadable_member(bytes)));
                        None
                    }
                },
            );
        if let Some(existing) = object.as_ref().and_then(codec::Scan::metadata) {
            codec::merge_member(&mut metadata, existing);
        }
        let metadata = config.filter(metadata);
        // Middlewares further in see only what the call carries; the caller gets its own back,
        // also when the call is given up.
        let lent = Lent {
            handed_on: Some(InjectConfig::hand_on(&metadata, extensions)),
            extensions,
        };
        // The span comes first, so that what writing the metadata warns about lands inside.
        let uri: http::Uri = req.url().as_str().parse().unwrap_or_default();
        // Gemini's and Bedrock's own APIs name the model in the path, and whether the answer
        // streams.
        let native = crate::genai::native_path(uri.path());
        let span = config.make_span.clone().make_span(&RequestInfo {
            method: req.method(),
            uri: &uri,
            headers: req.headers(),
            metadata: (!metadata.is_empty()).then_some(&metadata),
            model: object
                .as_ref()
                .and_then(codec::Scan::model)
                .or(native.as_ref().map(|native| &*native.model)),
            stream: object
                .as_ref()
                .and_then(codec::Scan::stream)
                .or(native.as_ref().and_then(|native| native.stream)),
            parameters: object
                .as_ref()
                .map(codec::Scan::parameters)
                .unwrap_or_default(),
        });
        span.in_scope(|| {
            let bytes = req.body().and_then(reqwest::Body::as_bytes);
            // The object's edited bytes (`None`: unchanged) with the provider's user field added.
            let with_native =
                |body: Option<bytes::Bytes>, bytes: &[u8]| match (body, config.native.is_some()) {
                    (Some(body), true) => Some(config.native_field(&metadata, body)),
                    (None, true) => {
                        Some(config.native_field(&metadata, bytes::Bytes::copy_from_slice(bytes)))
                    }
                    (body, false) => body,
                };
            // The size of the member sent, measured as it is written.
            let mut member_len = 0;
            // Why a reader refuses the caller's own `extra` as it is sent, if it does.
            let mut extra_refused = None;
            // The body to send instead, when it changes.
            let replacement = match (&object, bytes) {
                (Some(scan), Some(bytes)) => {
                    let (range, insert) = scan.edit(bytes, &config.in_body(&metadata));
                    member_len = scan.member_len_after((&range, &insert));
                    extra_refused =
                        scan.own_extra_error_after(bytes, (&range, &insert), &config.limits);
                    let changed = !range.is_empty() || !insert.is_empty();
                    with_native(changed.then(|| spliced(bytes, range, &insert)), bytes)
                }
                // A member this client cannot read goes whole when a boundary is to hold; the
                // provider's user field still goes in the object.
                // Not an object (or too deep to read): `native_field` says in the span that the
                // provider's field cannot go in (a request with no body at all has none to leave
                // out).
                (None, Some(bytes)) if read && !bytes.trim_ascii().is_empty() => {
                    let cut = unreadable_member.as_ref().and_then(|(_, cut)| cut.clone());
                    with_native(cut.map(|range| spliced(bytes, range, b"")), bytes)
                }
                _ => None,
            };
            if let Some(body) = replacement {
                if req.headers().contains_key(CONTENT_LENGTH) {
                    req.headers_mut()
                        .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
                }
                // A body made from bytes stays clonable, for retries.
                *req.body_mut() = Some(body.into());
            }
            let in_body = object.is_some() && config.carrier != Carrier::Headers;
            if in_body {
                config.warn_member_size(member_len);
                config.warn_extra_size(extra_refused.take(), &metadata);
                config.warn_member_depth(&metadata);
            }
            config.write_headers(&metadata, in_body, req.headers_mut());
            if let Some(error) = &unreadable {
                headers::warn_unreadable(error);
            }
            config.warn_over_limits(&metadata);
            if unread {
                config.warn_unread_json(req.headers(), &metadata);
            }
            if let Some((error, cut)) = &unreadable_member {
                config.warn_unreadable_member(error, cut.is_some());
            }
            if unscanned {
                config.warn_unscanned_body();
            }
        });
        let head = req.method() == reqwest::Method::HEAD;
        let start = Instant::now();
        let mut awaiting = Awaiting::new(span);
        // A dropped field stays dropped for a middleware further in that propagates what is
        // current.
        let outcome = next.run(req, &mut *lent.extensions);
        let outcome = match config.serving(&metadata) {
            Some(serving) => {
                crate::scope(Some(serving), outcome)
                    .instrument(awaiting.span().clone())
                    .await
            }
            None => outcome.instrument(awaiting.span().clone()).await,
        };
        drop(lent);
        let span = awaiting.answered();
        match outcome {
            Ok(response) => Ok(traced(response, span, start, head)),
            Err(error) => {
                // No response: the call failed, as the server side records it.
                span.record("requesty.response.completed", false);
                span.record("error.type", "service");
                span.record("otel.status_code", "ERROR");
                Err(error)
            }
        }
    }
}

/// The caller's extensions while a call has them. What [`InjectConfig::hand_on`] took out goes back
/// when the call ends, and also when it is given up (its future dropped, by a timeout say):
/// extensions the caller keeps (`execute_with_extensions`) outlive the call either way.
struct Lent<'a> {
    extensions: &'a mut Extensions,
    handed_on: Option<HandedOn>,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(handed_on) = self.handed_on.take() {
            handed_on.restore(self.extensions);
        }
    }
}

/// The response with its body passed through the tracker, so the client span lasts until the body
/// ends and records the usage it carries.
fn traced(
    response: reqwest::Response,
    span: Span,
    start: Instant,
    head: bool,
) -> reqwest::Response {
    use reqwest::ResponseBuilderExt;
    let url = response.url().clone();
    let (mut parts, body) = http::Response::<reqwest::Body>::from(response).into_parts();
    // The conversion drops the URL, which `Response::url` must still answer: reqwest keeps it in an
    // extension only its response builder can write.
    let mut with_url = http::Response::builder().url(url);
    if let Some(extensions) = with_url.extensions_mut() {
        parts.extensions.extend(std::mem::take(extensions));
    }
    let declared = response_length(head, parts.status, &parts.headers);
    let tracker = Tracker::for_response(span, start, parts.status, &parts.headers);
    let body = reqwest::Body::wrap(ResponseBody::inner(body, Some(tracker), declared));
    reqwest::Response::from(http::Response::from_parts(parts, body))
}
