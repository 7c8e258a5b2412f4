//! The per-request span: what it is made from and how to customize it.

use crate::codec::Parameters;
use crate::genai::{self, HashKey};
use crate::usage::ResponseInfo;
use crate::RequestMetadata;
use http::{HeaderMap, Method, Uri};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use tracing::{Level, Span};

/// What is known about a request when its span is made: after the metadata has been read from the
/// headers and the body, before the inner service is called.
#[derive(Debug)]
#[non_exhaustive]
pub struct RequestInfo<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request URI.
    pub uri: &'a Uri,
    /// The request headers, after the metadata headers were removed (unless the layer keeps them);
    /// for a client span, as the caller set them, before the metadata headers are written (the span
    /// is made first, so that what writing them warns about lands inside).
    pub headers: &'a HeaderMap,
    /// The request's metadata, when it carried any (for a server layer inside another that left it
    /// nothing to read, the outer layer's, from the request's extensions).
    pub metadata: Option<&'a RequestMetadata>,
    /// The body's top-level `model`, when it is a JSON string; else the model a Gemini or Bedrock
    /// Converse path names (`/v1beta/models/gemini-2.5-pro:generateContent`,
    /// `/model/{modelId}/converse`, percent-decoded).
    pub model: Option<&'a str>,
    /// The body's top-level `stream` flag; else whether a Gemini or Bedrock Converse path streams
    /// (`:streamGenerateContent`, `/converse-stream`).
    pub stream: Option<bool>,
    /// The body's sampling parameters.
    pub parameters: Parameters,
}

impl<'a> RequestInfo<'a> {
    /// What is known of a request with no metadata and a body that named nothing: the layer
    /// builds its own, and this is for testing a [`MakeSpan`] of one's own. The other fields are
    /// public, to be set after.
    ///
    /// ```
    /// use http::{HeaderMap, Method, Uri};
    /// use requesty_metadata::{server::{MakeSpan, RequestInfo}, RequestMetadata};
    ///
    /// let uri = Uri::from_static("/v1/chat/completions");
    /// let headers = HeaderMap::new();
    /// let metadata = RequestMetadata::new().trace_id("wf-1");
    /// let mut info = RequestInfo::new(&Method::POST, &uri, &headers);
    /// info.metadata = Some(&metadata);
    /// info.model = Some("gpt-4o");
    /// assert_eq!(info.operation(), Some("chat"));
    ///
    /// let mut make_span = |info: &RequestInfo<'_>| {
    ///     tracing::info_span!("llm", model = info.model)
    /// };
    /// let _span = make_span.make_span(&info);
    /// ```
    pub fn new(method: &'a Method, uri: &'a Uri, headers: &'a HeaderMap) -> Self {
        Self {
            method,
            uri,
            headers,
            metadata: None,
            model: None,
            stream: None,
            parameters: Parameters::default(),
        }
    }

    /// The GenAI operation a `POST` to the path asks for (`chat`, `text_completion`, `embeddings`;
    /// Gemini's `generate_content`), per the OpenTelemetry GenAI conventions. Other methods ask a
    /// model for nothing (`GET /v1/chat/completions` lists stored completions): `None`.
    pub fn operation(&self) -> Option<&'static str> {
        if self.method != Method::POST {
            return None;
        }
        genai::operation(self.uri.path())
    }
}

/// Makes the span a request runs in, in the style of `tower_http::trace::MakeSpan`.
///
/// Called inside the span the service's `call` ran in, so that span is the new one's contextual
/// parent, also when the span is made later (once a JSON body was read), wherever the future is
/// polled then.
///
/// Implemented for closures, so a custom span is one line:
///
/// ```
/// use requesty_metadata::{server::RequestInfo, RequestyMetadataLayer};
///
/// let layer = RequestyMetadataLayer::new().make_span_with(|info: &RequestInfo<'_>| {
///     tracing::debug_span!("llm", trace_id = info.metadata.and_then(|m| m.trace_id.as_deref()))
/// });
/// ```
///
/// The layer records `http.response.status_code`, `requesty.response.completed`, `error.type`,
/// `otel.status_code`, `rpc.response.status_code`, and what the response said (`gen_ai.response.*`,
/// `gen_ai.usage.*`, `requesty.time_to_first_token_ms`) on whatever span this returns; a span that
/// did not declare those fields ignores them.
pub trait MakeSpan {
    /// Makes the span for one request.
    fn make_span(&mut self, info: &RequestInfo<'_>) -> Span;
}

impl<F> MakeSpan for F
where
    F: FnMut(&RequestInfo<'_>) -> Span,
{
    fn make_span(&mut self, info: &RequestInfo<'_>) -> Span {
        self(info)
    }
}

/// The default span, named `llm_request`, with every field declared up front so later records land.
///
/// | field | value |
/// |---|---|
/// | `trace_id`, `user_id`; also as `requesty.trace_id`, `requesty.user_id` | from the metadata |
/// | `tags`, `requesty.tags` | the tags as a JSON array string (a tag may itself contain a comma) |
/// | `extra` | the `extra` object as a JSON string |
/// | `gen_ai.conversation.id` | the `trace_id` |
/// | `user.id`, or `user.hash` with [`hash_user_ids`](Self::hash_user_ids) | the `user_id` |
/// | `http.request.method`, `url.path` | from the request; a method the HTTP conventions do not know (RFC 9110's, `PATCH` and `QUERY`, or those of [`known_http_methods`](Self::known_http_methods)) as `_OTHER`, with the method as sent in `http.request.method_original` |
/// | `server.address`, `server.port` | client spans: the host the call goes to and its port (or the one its scheme implies); server spans: the host the request was sent to, and its port; for a relative URI (an HTTP/1 request), those its `Host` header names (never `Forwarded` or `X-Forwarded-Host`, which the conventions would take first behind a proxy, but which any client can set) |
/// | `http.response.status_code` | recorded when the response head arrives (none when the inner service's call returned an error) |
/// | `rpc.system.name`, `rpc.method` | for a gRPC request: `grpc` and the fully-qualified method its path names (`package.Service/Method`), as the RPC conventions name them |
/// | `rpc.response.status_code` | the name of a gRPC response's `grpc-status` code (`OK`, `UNAVAILABLE`; a code past the known ones as its number), from its trailers (for binary gRPC-Web, the trailers frame that ends its body), or the head of a trailers-only response |
/// | `gen_ai.operation.name` | from the path of a `POST` (`chat`, `text_completion`, `embeddings`; `generate_content` for Gemini's `:generateContent` and `:streamGenerateContent`, `chat` for Bedrock's `/converse`); none for other methods (`GET /v1/chat/completions` lists stored completions) |
/// | `gen_ai.provider.name` | [`provider`](Self::provider), or a known routing prefix of the model (`openai/…`, `google/gemini…` as `gcp.gemini`; not before a model others serve, `google/gemma…` or `openai/gpt-oss…`), the path (`/v1/messages`, Azure's `/openai/deployments/…`, Gemini's `…/models/{model}:generateContent` as `gcp.gemini`, Vertex AI's `…/publishers/google/models/…` as `gcp.vertex_ai`, Bedrock's `/model/{modelId}/converse` as `aws.bedrock`) or the family of a bare model name (a fine-tune's, `ft:…`, by its base model; never `gpt-oss…`) |
/// | `gen_ai.request.model`, `gen_ai.request.temperature`, `…top_p`, `…max_tokens`, `…seed` | from the body (the model, failing that, from a Gemini or Bedrock Converse path) |
/// | `gen_ai.request.stream` | the body's `stream` flag, or a Gemini or Bedrock Converse path's method |
/// | `gen_ai.response.model`, `gen_ai.response.id`, `gen_ai.response.finish_reasons` | from the response, when it ends |
/// | `gen_ai.usage.input_tokens`, `…output_tokens`, `…cache_read.input_tokens`, `…cache_creation.input_tokens`, `…reasoning.output_tokens` | from the response's `usage` (Gemini's `usageMetadata`); input tokens include cached ones, output tokens reasoning ones (see [`Usage`](crate::usage::Usage)) |
/// | `gen_ai.response.time_to_first_chunk` | event streams: seconds until the first bytes of the response body |
/// | `requesty.time_to_first_token_ms` | streams: until the first generated text |
/// | `otel.name` | `{operation} {model}` (or, when the path names no operation, `{rpc.method}` for gRPC and the HTTP method otherwise, `HTTP` for one recorded as `_OTHER`) |
/// | `otel.kind` | `server` (`client` for [`client`](Self::client) spans) |
/// | `requesty.response.completed` | `true` when the response body ended, `false` when it (or the request, before a response) was dropped first, or it ended in an error |
/// | `error.type` | `response_body` when the response body ended in an error (an upstream that cut its stream, say) or short of its declared `Content-Length`, `service` when the inner service's call returned one, `request_body` on a client span whose request body failed while the client read it (the call is not made), the provider's error type or code when a successful answer's body reported one (a stream's error event, [`ResponseInfo::error`](crate::usage::ResponseInfo::error)); for an answer `otel.status_code` marks failed (a `5xx`, a client span's `4xx`), the provider's error type its body gave, else the status code (`503`); for a gRPC code that makes the span an error (see `otel.status_code`), its name (`UNAVAILABLE`) |
/// | `otel.status_code` | `ERROR` for those, and for a server span's `5xx` answer (a client span's `4xx` too), as the HTTP conventions set the span status; for gRPC, a code that says the server failed (`UNKNOWN`, `DEADLINE_EXCEEDED`, `UNIMPLEMENTED`, `INTERNAL`, `UNAVAILABLE`, `DATA_LOSS`; a client span's every code but `OK`) |
/// | `requesty.extra.<key>` (feature `opentelemetry`) | each allowed `extra` key as a typed attribute |
/// | `requesty.tags`, `gen_ai.response.finish_reasons` (feature `opentelemetry`) | on a span with an OpenTelemetry layer, string array attributes (the conventions type the reasons `string[]`) instead of the JSON text: a field can hold no array, and one recorded as well would be exported as a second attribute under the key; so other layers of that subscriber see these two fields empty (`tags` still has the tags) |
/// | parent (feature `opentelemetry`) | server spans: the caller's span from a W3C `traceparent`; else, with `group_by_trace_id`, one per `trace_id` (module `otel`); either way, the span they are made in when it is already in that trace; client spans: the span they are made in |
#[derive(Clone, Debug)]
#[must_use = "a span maker does nothing until given to a layer"]
pub struct DefaultMakeSpan {
    level: Level,
    pub(crate) client: bool,
    pub(crate) provider: Option<Arc<str>>,
    user_hash_key: Option<HashKey>,
    extra_allowlist: Option<Arc<[String]>>,
    known_methods: Option<Arc<[String]>>,
    #[cfg(feature = "opentelemetry")]
    pub(crate) group_by_trace_id: bool,
}

impl DefaultMakeSpan {
    /// Spans at `INFO`.
    pub fn new() -> Self {
        Self {
            level: Level::INFO,
            client: false,
            provider: None,
            user_hash_key: None,
            extra_allowlist: None,
            known_methods: None,
            #[cfg(feature = "opentelemetry")]
            group_by_trace_id: false,
        }
    }

    /// The client-side variant the inject layer uses: named `llm_client_request`, `otel.kind` =
    /// `client`, with the same fields.
    pub fn client() -> Self {
        Self {
            client: true,
            ..Self::new()
        }
    }

    /// Sets the span level.
    pub fn level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }

    /// Names the provider behind this service (`gen_ai.provider.name`) instead of inferring it.
    pub fn provider(mut self, name: impl Into<Arc<str>>) -> Self {
        self.provider = Some(name.into());
        self
    }

    /// Records `user.hash`, a keyed hash of the user id (HMAC-SHA-256 with `key`), instead of the
    /// raw id in any field, so raw user ids never leave the process through spans. The same key
    /// gives the same hash, so per-user views still work. The key is a secret: with a known one
    /// (an empty key, say, which logs a warning) anyone can hash a list of likely ids and match them.
    pub fn hash_user_ids(self, key: impl AsRef<[u8]>) -> Self {
        self.hashing_with(HashKey::new(key.as_ref()))
    }

    /// [`hash_user_ids`](Self::hash_user_ids) with a key already made, shared with the client
    /// layer's.
    pub(crate) fn hashing_with(mut self, key: HashKey) -> Self {
        self.user_hash_key = Some(key);
        self
    }

    /// Records only these `extra` keys (default: all of them).
    pub fn extra_allowlist<I, K>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        self.extra_allowlist = Some(keys.into_iter().map(Into::into).collect());
        self
    }

    /// The HTTP methods recorded as they are in `http.request.method` (default: RFC 9110's, `PATCH`
    /// and `QUERY`); any other is recorded as `_OTHER`, as the HTTP conventions ask, with the method
    /// as sent in `http.request.method_original`. The list replaces the default one whole, and
    /// names methods exactly, case included (a WebDAV server's `PROPFIND`, say).
    pub fn known_http_methods<I, K>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        self.known_methods = Some(methods.into_iter().map(Into::into).collect());
        self
    }

    /// Whether `method` is recorded as it is (see [`known_http_methods`](Self::known_http_methods)).
    fn knows(&self, method: &Method) -> bool {
        match &self.known_methods {
            Some(known) => known.iter().any(|known| known == method.as_str()),
            None => KNOWN_METHODS.contains(&method.as_str()),
        }
    }

    /// Puts every request carrying the same `trace_id` in one OpenTelemetry trace (default: off),
    /// so a multi-request workflow reads as one trace; an empty `trace_id` is not grouped. A
    /// well-formed W3C `traceparent` header still wins; see [`otel`](crate::otel) for how it shows in
    /// Jaeger or Tempo.
    #[cfg(feature = "opentelemetry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
    pub fn group_by_trace_id(mut self, group: bool) -> Self {
        self.group_by_trace_id = group;
        self
    }

    /// Whether an `extra` key may be recorded.
    pub(crate) fn allows_extra(&self, key: &str) -> bool {
        self.extra_allowlist
            .as_ref()
            .is_none_or(|keys| keys.iter().any(|k| k == key))
    }
}

impl Default for DefaultMakeSpan {
    fn default() -> Self {
        Self::new()
    }
}

macro_rules! span_at {
    ($level:expr, $($rest:tt)*) => {
        match $level {
            Level::ERROR => tracing::error_span!($($rest)*),
            Level::WARN => tracing::warn_span!($($rest)*),
            Level::INFO => tracing::info_span!($($rest)*),
            Level::DEBUG => tracing::debug_span!($($rest)*),
            Level::TRACE => tracing::trace_span!($($rest)*),
        }
    };
}

/// The span with every field declared: one call site per name and level, as `tracing` needs.
macro_rules! llm_span {
    ($level:expr, $target:expr, $name:literal, $kind:literal, $info:expr, $operation:expr, $method:expr) => {{
        let info = $info;
        let operation = $operation;
        let method = $method;
        span_at!(
            $level,
            target: $target,
            $name,
            trace_id = Empty,
            user_id = Empty,
            tags = Empty,
            extra = Empty,
            requesty.trace_id = Empty,
            requesty.user_id = Empty,
            requesty.tags = Empty,
            requesty.time_to_first_token_ms = Empty,
            gen_ai.conversation.id = Empty,
            user.id = Empty,
            user.hash = Empty,
            http.request.method = method,
            http.request.method_original = Empty,
            url.path = info.uri.path(),
            server.address = Empty,
            server.port = Empty,
            http.response.status_code = Empty,
            rpc.system.name = Empty,
            rpc.method = Empty,
            rpc.response.status_code = Empty,
            gen_ai.operation.name = operation,
            gen_ai.provider.name = Empty,
            gen_ai.request.model = info.model,
            gen_ai.request.temperature = info.parameters.temperature,
            gen_ai.request.top_p = info.parameters.top_p,
            gen_ai.request.max_tokens = info
                .parameters
                .max_tokens
                .and_then(|n| i64::try_from(n).ok()),
            gen_ai.request.seed = info.parameters.seed,
            gen_ai.request.stream = info.stream,
            gen_ai.response.model = Empty,
            gen_ai.response.id = Empty,
            gen_ai.response.finish_reasons = Empty,
            gen_ai.usage.input_tokens = Empty,
            gen_ai.usage.output_tokens = Empty,
            gen_ai.usage.cache_read.input_tokens = Empty,
            gen_ai.usage.cache_creation.input_tokens = Empty,
            gen_ai.usage.reasoning.output_tokens = Empty,
            gen_ai.response.time_to_first_chunk = Empty,
            otel.name = Empty,
            otel.kind = $kind,
            requesty.response.completed = Empty,
            error.r#type = Empty,
            otel.status_code = Empty,
        )
    }};
}

impl MakeSpan for DefaultMakeSpan {
    fn make_span(&mut self, info: &RequestInfo<'_>) -> Span {
        use tracing::field::Empty;
        let operation = info.operation();
        let known = self.knows(info.method);
        let method = if known {
            info.method.as_str()
        } else {
            "_OTHER"
        };
        // Targets name the side, so a filter on `requesty_metadata::client` finds client spans.
        let span = if self.client {
            llm_span!(
                self.level,
                "requesty_metadata::client",
                "llm_client_request",
                "client",
                info,
                operation,
                method
            )
        } else {
            llm_span!(
                self.level,
                module_path!(),
                "llm_request",
                "server",
                info,
                operation,
                method
            )
        };
        // The formatted fields cost allocations: make them only for a span someone records.
        if span.is_disabled() {
            return span;
        }
        let rpc = crate::content::grpc_answer_type(info.headers)
            .is_some()
            .then(|| grpc_method(info.uri.path()));
        if let Some(method) = rpc {
            span.record("rpc.system.name", "grpc");
            if let Some((service, method)) = method {
                span.record("rpc.method", format_args!("{service}/{method}"));
            }
        }
        if !known {
            span.record("http.request.method_original", info.method.as_str());
        }
        let name = match (operation, info.model.filter(|model| !model.is_empty()), rpc) {
            (Some(op), Some(model), _) => format!("{op} {model}"),
            (Some(op), None, _) => op.to_owned(),
            (None, _, Some(Some((service, method)))) => format!("{service}/{method}"),
            // The HTTP conventions name a span of a method they do not know `HTTP`.
            (None, _, _) if known => method.to_owned(),
            (None, _, _) => "HTTP".to_owned(),
        };
        span.record("otel.name", name);
        let provider = match &self.provider {
            Some(name) => Some(name.to_string()),
            None => genai::provider(info.model, info.uri.path()),
        };
        span.record("gen_ai.provider.name", provider);
        if let Some((address, port)) = server(info.uri, info.headers) {
            span.record("server.address", &*address);
            span.record("server.port", port.map(i64::from));
        }
        // The parent first: recording a list may start the OpenTelemetry span, which fixes it.
        #[cfg(feature = "opentelemetry")]
        crate::otel::decorate(&span, info, self);
        if let Some(meta) = info.metadata {
            record_metadata(&span, meta, self);
        }
        span
    }
}

/// Where a request goes, as the GenAI and HTTP conventions record it: the URI's host (an IPv6 one
/// without its brackets) and its port, or the one its scheme implies (the conventions require the
/// port with the address). A relative URI (an HTTP/1 server's request, or a tower client's over an
/// HTTP/1 connection) leaves both to the `Host` header, with no scheme to imply a port.
fn server<'a>(uri: &'a Uri, headers: &HeaderMap) -> Option<(Cow<'a, str>, Option<u16>)> {
    let Some(host) = uri.host() else {
        let authority: http::uri::Authority = headers
            .get(http::header::HOST)?
            .as_bytes()
            .try_into()
            .ok()?;
        let host = unbracketed(authority.host()).to_owned();
        return Some((Cow::Owned(host), authority.port_u16()));
    };
    // A scheme given to a builder keeps its case.
    let port = uri.port_u16().or_else(|| match uri.scheme_str()? {
        scheme if scheme.eq_ignore_ascii_case("https") => Some(443),
        scheme if scheme.eq_ignore_ascii_case("http") => Some(80),
        _ => None,
    });
    Some((Cow::Borrowed(unbracketed(host)), port))
}

/// The methods the HTTP conventions know (RFC 9110's, `PATCH` and `QUERY`, spelled exactly): any
/// other token a client may send is recorded as `_OTHER`, so that the attribute and the span name
/// keep a low cardinality.
const KNOWN_METHODS: [&str; 10] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE", "QUERY",
];

/// An IPv6 host without its brackets, as `server.address` holds it.
fn unbracketed(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// The service and method a gRPC path names (`/package.Service/Method`); `None` for any other path.
fn grpc_method(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/'))
        .then_some((service, method))
}

/// Records the metadata fields, applying the privacy options.
fn record_metadata(span: &Span, meta: &RequestMetadata, options: &DefaultMakeSpan) {
    if let Some(trace_id) = meta.trace_id.as_deref() {
        for field in ["trace_id", "requesty.trace_id", "gen_ai.conversation.id"] {
            span.record(field, trace_id);
        }
    }
    if let Some(user_id) = meta.user_id.as_deref() {
        match &options.user_hash_key {
            Some(key) => {
                span.record("user.hash", key.hash(user_id));
            }
            None => {
                for field in ["user_id", "requesty.user_id", "user.id"] {
                    span.record(field, user_id);
                }
            }
        }
    }
    // Serializing strings and JSON values cannot fail.
    if !meta.tags.is_empty() {
        span.record(
            "tags",
            serde_json::to_string(&meta.tags).unwrap_or_default(),
        );
        record_list(span, "requesty.tags", &meta.tags);
    }
    let extra: serde_json::Map<_, _> = meta
        .extra
        .iter()
        .filter(|(key, _)| options.allows_extra(key))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    if !extra.is_empty() {
        span.record("extra", serde_json::to_string(&extra).unwrap_or_default());
    }
}

/// Records a list: with feature `opentelemetry`, as a string array attribute when the span has an
/// OpenTelemetry span; else (logs) as its JSON text in the field, which keeps a comma inside an
/// element apart from one between elements.
fn record_list(span: &Span, field: &'static str, values: &[String]) {
    // A span that does not declare the field (one of `make_span_with`'s) ignores it, in either form.
    if span.field(field).is_none() {
        return;
    }
    #[cfg(feature = "opentelemetry")]
    if crate::otel::set_strings(span, field, values) {
        return;
    }
    // Serializing strings cannot fail.
    span.record(field, serde_json::to_string(values).unwrap_or_default());
}

/// Records what the response said, once its body has ended.
pub(crate) fn record_response(span: &Span, info: &ResponseInfo, first_token: Option<Duration>) {
    if span.is_disabled() {
        return;
    }
    span.record("gen_ai.response.model", info.model.as_deref());
    span.record("gen_ai.response.id", info.id.as_deref());
    if !info.finish_reasons.is_empty() {
        record_list(span, "gen_ai.response.finish_reasons", &info.finish_reasons);
    }
    let usage = &info.usage;
    // Integers as i64, which OpenTelemetry exports as ints.
    let count = |n: Option<u64>| n.and_then(|n| i64::try_from(n).ok());
    span.record("gen_ai.usage.input_tokens", count(usage.input_tokens));
    span.record("gen_ai.usage.output_tokens", count(usage.output_tokens));
    span.record(
        "gen_ai.usage.cache_read.input_tokens",
        count(usage.cache_read_input_tokens),
    );
    span.record(
        "gen_ai.usage.cache_creation.input_tokens",
        count(usage.cache_creation_input_tokens),
    );
    span.record(
        "gen_ai.usage.reasoning.output_tokens",
        count(usage.reasoning_output_tokens),
    );
    if let Some(ttft) = first_token {
        span.record(
            "requesty.time_to_first_token_ms",
            ttft.as_secs_f64() * 1000.0,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{grpc_method, server};

    #[test]
    fn a_call_goes_to_its_host_and_port() {
        let none = http::HeaderMap::new();
        let server =
            |uri: &str| server(&uri.parse().unwrap(), &none).map(|(h, p)| (h.into_owned(), p));
        let some = |host: &str, port| Some((host.to_owned(), port));
        assert_eq!(server("http://upstream/v1"), some("upstream", Some(80)));
        assert_eq!(
            server("https://api.openai.com/v1"),
            some("api.openai.com", Some(443))
        );
        assert_eq!(
            server("http://127.0.0.1:8080/"),
            some("127.0.0.1", Some(8080))
        );
        assert_eq!(server("http://[::1]:9000/v1"), some("::1", Some(9000)));
        assert_eq!(server("grpc://host/x"), some("host", None));
        // Credentials in the URI are not the host.
        assert_eq!(
            server("https://user:secret@host/v1"),
            some("host", Some(443))
        );
        assert_eq!(server("/v1/chat/completions"), None);
    }

    /// A relative URI (a tower client over an HTTP/1 connection sends one) leaves the host to the
    /// `Host` header: the call goes there.
    #[test]
    fn a_relative_uris_call_goes_to_the_host_its_host_header_names() {
        let uri: http::Uri = "/v1/chat/completions".parse().unwrap();
        let server = |host: &'static str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::HOST, http::HeaderValue::from_static(host));
            server(&uri, &headers).map(|(h, p)| (h.into_owned(), p))
        };
        assert_eq!(
            server("upstream:8080"),
            Some(("upstream".into(), Some(8080)))
        );
        assert_eq!(server("[::1]"), Some(("::1".into(), None)));
        assert_eq!(server("not a host"), None);
        // An absolute URI names the host itself, whatever the header says.
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::HOST, http::HeaderValue::from_static("other"));
        let absolute: http::Uri = "http://upstream/v1".parse().unwrap();
        assert_eq!(
            super::server(&absolute, &headers).map(|(h, p)| (h.into_owned(), p)),
            Some(("upstream".into(), Some(80)))
        );
        // A scheme given to a builder keeps its case, and still implies its port.
        let built = http::Uri::builder()
            .scheme("HTTPS")
            .authority("upstream")
            .path_and_query("/v1")
            .build()
            .unwrap();
        assert_eq!(
            super::server(&built, &headers).map(|(h, p)| (h.into_owned(), p)),
            Some(("upstream".into(), Some(443)))
        );
    }

    #[test]
    fn grpc_paths_name_a_service_and_a_method() {
        assert_eq!(
            grpc_method("/grpc.health.v1.Health/Check"),
            Some(("grpc.health.v1.Health", "Check"))
        );
        for other in [
            "",
            "/",
            "/Health",
            "//Check",
            "/Health/",
            "/a/b/c",
            "Health/Check",
        ] {
            assert_eq!(grpc_method(other), None, "{other}");
        }
    }
}
