//! [`RequestyMetadataLayer`]: the options and the tower `Layer`.

use super::complete::{Completion, OnComplete};
use super::service::ExtractMetadata;
use super::span::{DefaultMakeSpan, MakeSpan};
use crate::dialects::Sources;
use crate::{HeadersOnly, JsonBodies, Limits};
use std::marker::PhantomData;
use std::sync::Arc;
use tower_layer::Layer;
use tracing::Level;

/// Reads request metadata on the server side, strips it, and traces each request in a span.
///
/// For each request the service:
/// 1. reads `X-Requesty-*`, `HTTP-Referer` and `X-Title` headers (and the other gateways' headers,
///    with their [`sources`](Self::sources) on), and removes the metadata headers among them, also
///    those spelled with underscores (`x_requesty_user_id`), which CGI-style servers read alike;
/// 2. for a JSON body (`application/json`, `application/*+json` but gRPC's and Connect's message
///    streams, not content-encoded nor transfer-coded beyond `chunked`) buffers it up to
///    [`max_body_bytes`](Self::max_body_bytes), finds and strips the top-level `requesty` member in one
///    pass, and sets `Content-Length`; other bodies pass through unbuffered;
/// 3. merges header and body metadata (the body wins, and its tags come first:
///    [`RequestMetadata::with_fallback`](crate::RequestMetadata::with_fallback)) and puts the result in
///    the request's extensions, when there is any (filling in a `RequestMetadata` already there, as
///    a server layer further out leaves it, which wins where both give a field: that one read the
///    whole request, body included, and what it kept this one reads again);
/// 4. runs the inner service in a span ([`DefaultMakeSpan`] unless [`make_span_with`](Self::make_span_with)
///    says otherwise) that stays open until the response body has ended or was dropped.
///
/// ```
/// use axum::{routing::post, Extension, Router};
/// use requesty_metadata::{RequestMetadata, RequestyMetadataLayer};
///
/// async fn chat(meta: Option<Extension<RequestMetadata>>) -> String {
///     format!("{:?}", meta.and_then(|Extension(m)| m.trace_id))
/// }
///
/// let app: Router = Router::new()
///     .route("/v1/chat/completions", post(chat))
///     .layer(RequestyMetadataLayer::new());
/// ```
///
/// | answer | when | `code` |
/// |---|---|---|
/// | `400` | invalid metadata in the body or headers (the error names the field) | see [`ErrorKind::code`](crate::ErrorKind::code) |
/// | `400` | malformed JSON, only with [`reject_malformed`](Self::reject_malformed) | `invalid_json` |
/// | `400` | the request body could not be read | `body_read_error` |
/// | `413` | a JSON body over [`max_body_bytes`](Self::max_body_bytes), or cut off by a body limit in front of the layer | `request_too_large` |
///
/// In each case the inner service is not called, and the body is OpenAI-style:
/// `{"error":{"message":"…","type":"invalid_request_error","param":"requesty.tags","code":"…"}}`.
#[derive(Clone)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct RequestyMetadataLayer<M = DefaultMakeSpan, R = JsonBodies> {
    pub(crate) config: Arc<Config>,
    pub(crate) make_span: M,
    pub(crate) mode: PhantomData<fn() -> R>,
}

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) limits: Limits,
    pub(crate) max_body: usize,
    pub(crate) strip_body: bool,
    pub(crate) strip_headers: bool,
    pub(crate) reject_malformed: bool,
    pub(crate) on_complete: Option<OnComplete>,
    pub(crate) sources: Sources,
    pub(crate) reconstruct_sessions: bool,
    pub(crate) propagate: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            max_body: 32 * 1024 * 1024,
            strip_body: true,
            strip_headers: true,
            reject_malformed: false,
            on_complete: None,
            sources: Sources::default(),
            reconstruct_sessions: false,
            propagate: true,
        }
    }
}

impl RequestyMetadataLayer {
    /// The server layer with its defaults: 32 MiB body limit, metadata stripped from body and headers,
    /// malformed JSON passed through, `INFO` spans.
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config::default()),
            make_span: DefaultMakeSpan::new(),
            mode: PhantomData,
        }
    }
}

impl<R> RequestyMetadataLayer<DefaultMakeSpan, R> {
    /// Sets the level of the default span (`INFO` unless set).
    pub fn span_level(mut self, level: Level) -> Self {
        self.make_span = self.make_span.level(level);
        self
    }

    /// Names the provider behind this service in spans ([`DefaultMakeSpan::provider`]).
    pub fn provider(mut self, name: impl Into<Arc<str>>) -> Self {
        self.make_span = self.make_span.provider(name);
        self
    }

    /// Records a keyed hash of user ids instead of the ids ([`DefaultMakeSpan::hash_user_ids`]).
    ///
    /// The client spans of onward calls are the inject layer's: give it the same key
    /// ([`InjectMetadataLayer::hash_user_ids`](crate::InjectMetadataLayer::hash_user_ids)), since
    /// they carry the propagated user id too.
    pub fn hash_user_ids(mut self, key: impl AsRef<[u8]>) -> Self {
        self.make_span = self.make_span.hash_user_ids(key);
        self
    }

    /// Records only these `extra` keys in spans ([`DefaultMakeSpan::extra_allowlist`]); for the
    /// client spans of onward calls, set the inject layer's
    /// ([`InjectMetadataLayer::extra_allowlist`](crate::InjectMetadataLayer::extra_allowlist)).
    pub fn extra_allowlist<I, K>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        self.make_span = self.make_span.extra_allowlist(keys);
        self
    }

    /// The HTTP methods spans record as they are; any other is recorded as `_OTHER`
    /// ([`DefaultMakeSpan::known_http_methods`]).
    pub fn known_http_methods<I, K>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        self.make_span = self.make_span.known_http_methods(methods);
        self
    }

    /// Puts every request with the same `trace_id` in one OpenTelemetry trace
    /// ([`DefaultMakeSpan::group_by_trace_id`]).
    #[cfg(feature = "opentelemetry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
    pub fn group_by_trace_id(mut self, group: bool) -> Self {
        self.make_span = self.make_span.group_by_trace_id(group);
        self
    }
}

impl Default for RequestyMetadataLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<M, R> RequestyMetadataLayer<M, R> {
    fn config(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Limits on tags, ids, `extra` and nesting ([`Limits`] lists the defaults).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config().limits = limits;
        self
    }

    /// Leaves the metadata headers on the request (default: removed): `X-Requesty-*` and, with their
    /// sources on, the other gateways', underscore spellings included.
    pub fn keep_headers(mut self, keep: bool) -> Self {
        self.config().strip_headers = !keep;
        self
    }

    /// Which metadata formats to read besides Requesty's (default: Requesty only). See
    /// [`dialects`](crate::dialects) for the mapping and precedence.
    pub fn sources(mut self, sources: Sources) -> Self {
        self.config().sources = sources;
        self
    }

    /// Whether the request's metadata is made current while its service runs (default `true`), for
    /// the client side to carry onward ([`current`](crate::current)). A service that never calls
    /// onward can turn it off and save the copy it costs per request. Off, the layer leaves the
    /// current metadata as it finds it: that of an outer server layer's request, if any.
    pub fn propagate(mut self, on: bool) -> Self {
        self.config().propagate = on;
        self
    }

    /// Calls `f` once per request, after the response body has ended or was dropped: the place for
    /// an access log or analytics. A request dropped before the inner service answered (the client
    /// went away while a completion was generated) is reported too, with status `499` and
    /// `completed: false`; so is one dropped while its body was read, or whose connection ended
    /// mid-body (the client went away mid-upload), with what its headers carried, since the body
    /// was never read to its end.
    ///
    /// `f` runs on the task that polls the response body, as its last frame passes: often before
    /// the server has written that frame out. Keep it short and non-blocking. A blocking write per
    /// request (to stdout, a file, a socket) stalls the runtime's worker and, under load, makes the
    /// workers queue for the writer's lock; hand lines to a buffer or channel that a thread of its
    /// own writes out, as the gateway demo does with its access log.
    ///
    /// `f` runs outside the request's span; an event it emits belongs to that span when it names
    /// it as its parent, [`Completion::span`](crate::server::Completion::span).
    ///
    /// ```
    /// use requesty_metadata::{server::Completion, RequestyMetadataLayer};
    ///
    /// let layer = RequestyMetadataLayer::new().on_complete(|done: &Completion<'_>| {
    ///     let trace = done.metadata.and_then(|m| m.trace_id.as_deref());
    ///     println!("{} {:?} {:?} {:?}", done.status, trace, done.model, done.latency);
    /// });
    /// ```
    pub fn on_complete<F>(mut self, f: F) -> Self
    where
        F: Fn(&Completion<'_>) + Send + Sync + 'static,
    {
        self.config().on_complete = Some(Arc::new(f));
        self
    }

    /// Makes each request's span with `make_span` instead of [`DefaultMakeSpan`].
    ///
    /// The default span's options set on this layer before (`span_level`, `provider`,
    /// `hash_user_ids`, `extra_allowlist`, `known_http_methods`, `group_by_trace_id`) belong to the
    /// span maker this replaces: set them on
    /// `make_span` itself when it is a configured [`DefaultMakeSpan`].
    pub fn make_span_with<N: MakeSpan>(self, make_span: N) -> RequestyMetadataLayer<N, R> {
        RequestyMetadataLayer {
            config: self.config,
            make_span,
            mode: PhantomData,
        }
    }
}

/// Options for a layer that reads JSON bodies; a [`headers_only`](Self::headers_only) layer has none
/// of them.
impl<M> RequestyMetadataLayer<M, JsonBodies> {
    /// The largest JSON body buffered, in bytes (default 32 MiB). Larger ones get `413`; a declared
    /// `Content-Length` is checked before reading, a chunked body while reading.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.config().max_body = bytes;
        self
    }

    /// Leaves the `requesty` member in the body (default: stripped), for an inner service that wants
    /// to see it. The metadata is read and traced either way.
    pub fn keep_body_metadata(mut self, keep: bool) -> Self {
        self.config().strip_body = !keep;
        self
    }

    /// Answers `400` to a JSON body that is not well-formed JSON text, object or not, as serde_json
    /// reads it, or to an object that nests deeper than
    /// [`Limits::max_depth`](crate::Limits::max_depth) (default: passed through untouched, for the
    /// inner service to judge). An empty body (or one of whitespace alone, perhaps behind a byte
    /// order mark), and well-formed JSON that is not an object, pass. Checking the grammar inside
    /// every value takes a parser's pass over the body, which only this option costs.
    pub fn reject_malformed(mut self, reject: bool) -> Self {
        self.config().reject_malformed = reject;
        self
    }

    /// Gives a chat request without a `trace_id` one derived from its conversation's opening (system
    /// prompt and first user message), which every turn repeats: all turns of one conversation get the
    /// same `trace_id` (`conv_…`) and so the same `gen_ai.conversation.id`, also when a client marks
    /// the newest message for Anthropic's prompt caching (`cache_control` is left out; but for an
    /// opening whose content parts pass 64 KiB, an image or a document, which is hashed as sent).
    /// Off by default; the cost is reading and hashing those two messages, found without parsing
    /// the rest.
    pub fn reconstruct_sessions(mut self, on: bool) -> Self {
        self.config().reconstruct_sessions = on;
        self
    }

    /// Reads metadata from headers only and never touches a body, whatever its type: for tonic
    /// (`Server::builder().layer(RequestyMetadataLayer::new().headers_only())`) and other protocols
    /// whose bodies are not JSON. (In either mode, a gRPC request the layer refuses is answered with
    /// a gRPC status, `INVALID_ARGUMENT` naming the field and the rule, not an HTTP `400`.) The
    /// options about bodies belong to a layer that reads them: set before this, they have no effect,
    /// and after it they do not compile:
    ///
    /// ```compile_fail
    /// use requesty_metadata::RequestyMetadataLayer;
    ///
    /// let layer = RequestyMetadataLayer::new().headers_only().max_body_bytes(1 << 20);
    /// ```
    pub fn headers_only(self) -> RequestyMetadataLayer<M, HeadersOnly> {
        RequestyMetadataLayer {
            config: self.config,
            make_span: self.make_span,
            mode: PhantomData,
        }
    }
}

impl<S, M: Clone, R> Layer<S> for RequestyMetadataLayer<M, R> {
    type Service = ExtractMetadata<S, M, R>;

    fn layer(&self, inner: S) -> Self::Service {
        ExtractMetadata {
            inner,
            config: self.config.clone(),
            make_span: self.make_span.clone(),
            mode: PhantomData,
        }
    }
}

impl<M, R> std::fmt::Debug for RequestyMetadataLayer<M, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestyMetadataLayer")
            .field("limits", &self.config.limits)
            .field("max_body_bytes", &self.config.max_body)
            .field("strip_body", &self.config.strip_body)
            .field("strip_headers", &self.config.strip_headers)
            .field("reject_malformed", &self.config.reject_malformed)
            .field("sources", &self.config.sources)
            .field("reconstruct_sessions", &self.config.reconstruct_sessions)
            .field("propagate", &self.config.propagate)
            .finish_non_exhaustive()
    }
}
