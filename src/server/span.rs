//! The per-request span: what it is made from and how to customize it.

use crate::RequestMetadata;
use http::{HeaderMap, Method, Uri};
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
    /// The request headers, after `X-Requesty-*` were removed (when configured).
    pub headers: &'a HeaderMap,
    /// The request's metadata, when it carried any.
    pub metadata: Option<&'a RequestMetadata>,
    /// The body's top-level `model`, when it is a JSON string.
    pub model: Option<&'a str>,
    /// The body's top-level `stream` flag.
    pub stream: Option<bool>,
}

impl RequestInfo<'_> {
    /// The GenAI operation the path names (`chat`, `text_completion`, `embeddings`), per the
    /// OpenTelemetry GenAI conventions.
    pub fn operation(&self) -> Option<&'static str> {
        operation(self.uri.path())
    }
}

/// The GenAI operation for an OpenAI- or Anthropic-style path.
pub(crate) fn operation(path: &str) -> Option<&'static str> {
    let path = path.trim_end_matches('/');
    if path.ends_with("/chat/completions") || path.ends_with("/messages") || path.ends_with("/responses") {
        Some("chat")
    } else if path.ends_with("/completions") {
        Some("text_completion")
    } else if path.ends_with("/embeddings") {
        Some("embeddings")
    } else {
        None
    }
}

/// Makes the span a request runs in, in the style of `tower_http::trace::MakeSpan`.
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
/// The layer records `http.response.status_code` and `response.completed` on whatever span this
/// returns; a span that did not declare those fields ignores them.
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

/// The default span, named `llm_request`, with every field declared up front so later records land:
///
/// | field | value |
/// |---|---|
/// | `trace_id`, `user_id` | from the metadata |
/// | `tags` | the tags as a JSON array string (a tag may itself contain a comma) |
/// | `extra` | the `extra` object as a JSON string |
/// | `http.request.method`, `url.path` | from the request |
/// | `http.response.status_code` | recorded when the response head arrives |
/// | `gen_ai.request.model` | the body's `model` |
/// | `gen_ai.operation.name` | from the path (`chat`, `text_completion`, `embeddings`) |
/// | `otel.name` | `{operation} {model}` (or the method when the path names no operation) |
/// | `otel.kind` | `server` |
/// | `response.completed` | `true` when the response body ended, `false` when it was dropped first |
#[derive(Clone, Copy, Debug)]
pub struct DefaultMakeSpan {
    level: Level,
}

impl DefaultMakeSpan {
    /// Spans at `INFO`.
    pub fn new() -> Self {
        Self { level: Level::INFO }
    }

    /// Sets the span level.
    pub fn level(mut self, level: Level) -> Self {
        self.level = level;
        self
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

impl MakeSpan for DefaultMakeSpan {
    fn make_span(&mut self, info: &RequestInfo<'_>) -> Span {
        use tracing::field::Empty;
        let operation = info.operation();
        let span = span_at!(
            self.level,
            "llm_request",
            trace_id = Empty,
            user_id = Empty,
            tags = Empty,
            extra = Empty,
            http.request.method = info.method.as_str(),
            url.path = info.uri.path(),
            http.response.status_code = Empty,
            gen_ai.request.model = info.model,
            gen_ai.operation.name = operation,
            otel.name = Empty,
            otel.kind = "server",
            response.completed = Empty,
        );
        // The formatted fields cost allocations: make them only for a span someone records.
        if span.is_disabled() {
            return span;
        }
        let name = match (operation, info.model) {
            (Some(op), Some(model)) => format!("{op} {model}"),
            (Some(op), None) => op.to_owned(),
            (None, _) => info.method.as_str().to_owned(),
        };
        span.record("otel.name", name);
        if let Some(meta) = info.metadata {
            span.record("trace_id", meta.trace_id.as_deref());
            span.record("user_id", meta.user_id.as_deref());
            // Serializing strings and JSON values cannot fail.
            if !meta.tags.is_empty() {
                span.record("tags", serde_json::to_string(&meta.tags).unwrap_or_default());
            }
            if !meta.extra.is_empty() {
                span.record("extra", serde_json::to_string(&meta.extra).unwrap_or_default());
            }
        }
        span
    }
}

#[cfg(test)]
mod tests {
    use super::operation;

    #[test]
    fn operations_from_paths() {
        assert_eq!(operation("/v1/chat/completions"), Some("chat"));
        assert_eq!(operation("/v1/messages/"), Some("chat"));
        assert_eq!(operation("/v1/completions"), Some("text_completion"));
        assert_eq!(operation("/v1/embeddings"), Some("embeddings"));
        assert_eq!(operation("/v1/models"), None);
    }
}
