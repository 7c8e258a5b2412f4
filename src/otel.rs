//! OpenTelemetry extras for [`DefaultMakeSpan`], for a subscriber with a [`tracing_opentelemetry`]
//! layer (feature `opentelemetry`).
//!
//! ```no_run
//! use opentelemetry::trace::TracerProvider as _;
//! use requesty_metadata::RequestyMetadataLayer;
//! use tracing_subscriber::prelude::*;
//!
//! // Add an exporter (OTLP, stdout, ...) to the provider.
//! let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
//! tracing_subscriber::registry()
//!     .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("gateway")))
//!     .init();
//! let layer = RequestyMetadataLayer::new().group_by_trace_id(true);
//! ```
//!
//! # `extra`, one attribute per key
//!
//! A `tracing` span's fields are fixed where it is declared, so the free-form `extra` object is
//! also set as one attribute per key, `requesty.extra.<key>`, searchable on its own: strings stay
//! strings, integers are ints, other numbers doubles, booleans bools, and anything else (arrays,
//! objects, `null`) its JSON text. [`extra_allowlist`](crate::server::DefaultMakeSpan::extra_allowlist)
//! applies.
//!
//! # Lists as arrays
//!
//! `requesty.tags` and `gen_ai.response.finish_reasons` (typed `string[]` by the GenAI conventions)
//! are string array attributes, one element per tag or reason, rather than the JSON text logs get:
//! a `tracing` field holds no array. The field is then left empty, since a field recorded as well
//! would be exported as a second attribute under the same key; a log layer in the same subscriber
//! still finds the tags in `tags`. A span the OpenTelemetry layer does not see (no such layer, or
//! one that filters the span out) records the JSON text as before.
//!
//! Finding out whether the span has an OpenTelemetry span starts that span, so a request with
//! tags has it started as [`DefaultMakeSpan`] makes it (after
//! setting the parents below), not when it is first entered: a `make_span_with` that wraps the
//! default span and then sets a parent or records `otel.name` of its own should do so on a span
//! it declares itself.
//!
//! # The caller's trace: `traceparent`
//!
//! A request with a valid W3C `traceparent` header (and its `tracestate`, several such headers read
//! as one list) gets the caller's span as its parent, so the gateway's span joins the caller's
//! trace, whether or not grouping is on: a caller that propagates a trace asked for it. An invalid
//! `traceparent` is ignored. A caller that
//! sent the sampled flag unset gets its decision honored by a parent-based sampler (the SDK's
//! default).
//!
//! # One trace per workflow: `group_by_trace_id`
//!
//! An agent workflow makes many independent requests, and each would be a trace of its own. With
//! [`group_by_trace_id(true)`](crate::RequestyMetadataLayer::group_by_trace_id), every request
//! carrying the same non-empty business `trace_id` (and no `traceparent`) gets the same remote
//! parent: its trace id is the first 16 bytes of the SHA-256 of the `trace_id`
//! ([`group_trace_id`]), its span id the next 8, sampled. No process has to remember anything, so
//! requests served by different replicas, hours apart, still land in one trace.
//!
//! How it shows in Jaeger or Grafana Tempo:
//! - one trace per business `trace_id`, each request a span directly under the root;
//! - the root is never exported (it stands for the workflow, not for a call), so Jaeger warns
//!   about an "invalid parent span ID" and Tempo lists the trace with "root span not yet
//!   received": expected, not data loss;
//! - find a workflow by the tag `requesty.trace_id` (Jaeger: Tags `requesty.trace_id=session_abc123`;
//!   Tempo: `{ span.requesty.trace_id = "session_abc123" }`), or open it by the id
//!   [`group_trace_id`] returns;
//! - a request with a well-formed `traceparent` (one header) stays in its caller's trace and is not
//!   grouped.
//!
//! Either parent is set when the span is made, before it is first entered (it is made after the
//! metadata was read, which is what makes this possible). It replaces the parent the span would
//! have had from an enclosing `tracing` span, so with grouping on, put this layer outside any
//! other layer that makes spans; but an enclosing span already in that trace (an outer HTTP
//! instrumentation that read the same `traceparent`, or a layer further out that grouped the same
//! `trace_id`) stays the parent, so the request's span is its child rather than its sibling.
//!
//! ## Sampling grouped requests
//!
//! The shared parent is marked sampled, so under the SDK's default sampler (parent-based) every
//! grouped request is exported, whatever ratio the provider applies to traces that start here. To
//! keep a fraction of workflows, sample on the trace id: every request of a workflow has the same
//! one, so a workflow is kept or dropped whole, never in part. A plain ratio sampler does that (it
//! also overrides the sampled flag of callers that send a `traceparent`):
//!
//! ```
//! use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
//!
//! // Keep one workflow in ten, all of its requests or none.
//! let provider = SdkTracerProvider::builder()
//!     .with_sampler(Sampler::TraceIdRatioBased(0.1))
//!     .build();
//! # drop(provider);
//! ```

use crate::server::{DefaultMakeSpan, RequestInfo};
use http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{Array, Context, StringValue, Value};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use sha2::{Digest, Sha256};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The OpenTelemetry trace id that requests with this business `trace_id` share under
/// [`group_by_trace_id`](crate::RequestyMetadataLayer::group_by_trace_id): the first 16 bytes of
/// its SHA-256 (never the invalid all-zero id). Its hex form (`to_string`) opens the workflow in
/// Jaeger or Tempo directly.
///
/// ```
/// let id = requesty_metadata::otel::group_trace_id("session_abc123");
/// assert_eq!(id, requesty_metadata::otel::group_trace_id("session_abc123"));
/// assert_eq!(id.to_string().len(), 32);
/// ```
pub fn group_trace_id(trace_id: &str) -> TraceId {
    group_parent(trace_id).trace_id()
}

/// The synthetic, never-exported parent of a workflow's spans.
fn group_parent(trace_id: &str) -> SpanContext {
    let digest = Sha256::digest(trace_id.as_bytes());
    let mut trace = [0; 16];
    trace.copy_from_slice(&digest[..16]);
    let mut span = [0; 8];
    span.copy_from_slice(&digest[16..24]);
    // All-zero ids are invalid and would make the span a root: never produce one.
    if trace == [0; 16] {
        trace[15] = 1;
    }
    if span == [0; 8] {
        span[7] = 1;
    }
    SpanContext::new(
        TraceId::from_bytes(trace),
        SpanId::from_bytes(span),
        TraceFlags::SAMPLED,
        true,
        TraceState::NONE,
    )
}

/// Sets the `extra` attributes and the parent on a span [`DefaultMakeSpan`] just made.
pub(crate) fn decorate(span: &Span, info: &RequestInfo<'_>, options: &DefaultMakeSpan) {
    if let Some(meta) = info.metadata {
        let allowed = meta
            .extra
            .iter()
            .filter(|(key, _)| options.allows_extra(key));
        for (key, value) in allowed {
            span.set_attribute(format!("requesty.extra.{key}"), attribute(value));
        }
    }
    // A server span's caller is named by the request's `traceparent`. A client span's parent is the
    // span it is made in: the `traceparent` on an outgoing request is what is sent onward (often a
    // forwarded caller's), not its parent.
    let caller = if options.client {
        None
    } else {
        caller_context(info.headers)
    };
    let parent = caller.or_else(|| {
        // An empty `trace_id` names no workflow: grouping it would put every request that sends
        // `""` for "none" in one trace.
        let trace_id = info
            .metadata?
            .trace_id
            .as_deref()
            .filter(|id| !id.is_empty())?;
        options
            .group_by_trace_id
            .then(|| Context::new().with_remote_span_context(group_parent(trace_id)))
    });
    // The span it is made in may already be in that trace: an outer instrumentation that read the
    // same `traceparent`, or a layer further out that grouped the same `trace_id`. It stays that
    // span's child, rather than becoming its sibling.
    let parent = parent.filter(|parent| !in_enclosing_trace(parent));
    if let Some(parent) = parent {
        // Fails only without a tracing-opentelemetry layer, where there is no parent to set.
        let _ = span.set_parent(parent);
    }
}

/// Whether the span a new span is made in (its contextual parent) belongs to `parent`'s trace.
fn in_enclosing_trace(parent: &Context) -> bool {
    let trace = parent.span().span_context().trace_id();
    let in_trace = |context: &Context| {
        let span = context.span();
        let span = span.span_context();
        span.is_valid() && span.trace_id() == trace
    };
    // The layer makes the OpenTelemetry context current as a span is entered, and takes it as a new
    // span's parent: an enclosing span it filters out leaves the one that encloses it. With context
    // activation off, the current span's own context says (asking starts its OpenTelemetry span, as
    // entering it does with activation on).
    in_trace(&Context::current()) || in_trace(&Span::current().context())
}

/// Sets a list on the span's OpenTelemetry span as a string array, which no `tracing` field can hold
/// (a field recorded as well would be exported as a second attribute under the same key). `false`
/// when the span has no OpenTelemetry span (no layer, or one that filters it out): the caller then
/// records the list in the field, for logs. Asking starts the OpenTelemetry span, so its parent
/// must be set before.
pub(crate) fn set_strings(span: &Span, key: &'static str, values: &[String]) -> bool {
    if !span.context().has_active_span() {
        return false;
    }
    let values = values.iter().cloned().map(StringValue::from).collect();
    span.set_attribute(key, Value::Array(Array::String(values)));
    true
}

/// The caller's span context from a valid `traceparent` header; a request with two is ambiguous,
/// and has none.
fn caller_context(headers: &HeaderMap) -> Option<Context> {
    let mut values = headers.get_all("traceparent").iter();
    let value = values.next()?;
    if values.next().is_some() || !well_formed_traceparent(value.as_bytes()) {
        return None;
    }
    let context = TraceContextPropagator::new().extract(&Headers {
        map: headers,
        tracestate: tracestate(headers),
    });
    let valid = context.span().span_context().is_valid();
    valid.then_some(context)
}

/// The request's `tracestate` as one list: W3C Trace Context has a receiver combine several
/// `tracestate` headers into one, comma-separated, as HTTP does any list header. A value that is
/// not text spoils the list (`None`, read as no state), as an invalid entry would.
fn tracestate(headers: &HeaderMap) -> Option<String> {
    let mut list = String::new();
    for value in headers.get_all("tracestate") {
        let value = value.to_str().ok()?.trim_matches([' ', '\t']);
        if value.is_empty() {
            continue;
        }
        if !list.is_empty() {
            list.push(',');
        }
        list.push_str(value);
    }
    Some(list)
}

/// Whether `value` has the W3C Trace Context form `version-traceid-parentid-flags`: lowercase hex
/// of 2, 32, 16 and 2 digits, version `ff` being invalid, and nothing after the flags in version
/// `00` (a later version may add fields after a `-`). The propagator itself is laxer: it takes
/// `00-1-2-01`.
fn well_formed_traceparent(value: &[u8]) -> bool {
    let hex = |part: &[u8]| part.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let Some(head) = value.get(..55) else {
        return false;
    };
    let version = &head[..2];
    let fields = hex(version)
        && version != b"ff"
        && head[2] == b'-'
        && hex(&head[3..35])
        && head[35] == b'-'
        && hex(&head[36..52])
        && head[52] == b'-'
        && hex(&head[53..55]);
    let rest = &value[55..];
    fields && (rest.is_empty() || (version != b"00" && rest[0] == b'-'))
}

/// An `extra` value as a typed attribute.
fn attribute(value: &serde_json::Value) -> Value {
    use serde_json::Value as Json;
    match value {
        Json::String(s) => s.clone().into(),
        Json::Bool(b) => (*b).into(),
        Json::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            // Integers beyond i64 keep their digits rather than lose them to a double.
            None if n.is_f64() => n.as_f64().unwrap_or_default().into(),
            None => n.to_string().into(),
        },
        other => other.to_string().into(),
    }
}

/// The request's headers as the propagator reads them, `tracestate` combined.
struct Headers<'a> {
    map: &'a HeaderMap,
    tracestate: Option<String>,
}

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key.eq_ignore_ascii_case("tracestate") {
            return self.tracestate.as_deref();
        }
        self.map.get(key)?.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.map.keys().map(|name| name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_one_well_formed_traceparent_names_the_caller() {
        let caller = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append("traceparent", value.parse().unwrap());
            }
            caller_context(&headers).map(|cx| cx.span().span_context().trace_id())
        };
        let good = "00-12345678901234567890123456789012-1234567890123456-01";
        assert!(caller(&[good]).is_some());
        assert!(
            caller(&["01-12345678901234567890123456789012-1234567890123456-01-future"]).is_some()
        );
        for bad in [
            "00-1-2-01",
            "00-1234567890123456789012345678901-1234567890123456-01",
            "00-12345678901234567890123456789012-123456789012345-01",
            "0-12345678901234567890123456789012-1234567890123456-01",
            "00-12345678901234567890123456789012-1234567890123456-1",
            "00-12345678901234567890123456789012-1234567890123456-01-",
            "00-+2345678901234567890123456789012-1234567890123456-01",
            "00-12345678901234567890123456789ABC-1234567890123456-01",
            "ff-12345678901234567890123456789012-1234567890123456-01",
        ] {
            assert!(caller(&[bad]).is_none(), "{bad}");
        }
        let other = "00-12345678901234567890123456789011-1234567890123456-01";
        assert!(caller(&[good, other]).is_none(), "two are ambiguous");
    }

    #[test]
    fn several_tracestate_headers_are_one_list() {
        let state = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            headers.insert("traceparent", traceparent.parse().unwrap());
            for value in values {
                headers.append("tracestate", value.parse().unwrap());
            }
            let context = caller_context(&headers).expect("a valid traceparent");
            context.span().span_context().trace_state().header()
        };
        assert_eq!(state(&["a=1"]), "a=1");
        // W3C Trace Context: several `tracestate` headers are combined as one comma-separated list.
        assert_eq!(state(&["a=1,b=2", "c=3"]), "a=1,b=2,c=3");
        assert_eq!(state(&["a=1", "", "c=3"]), "a=1,c=3");
        // A value that is not text makes the combined list invalid, as a bad entry does: none is kept.
        let mut headers = HeaderMap::new();
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.insert("traceparent", traceparent.parse().unwrap());
        headers.append("tracestate", "a=1".parse().unwrap());
        headers.append(
            "tracestate",
            http::HeaderValue::from_bytes(b"b=\xff").unwrap(),
        );
        let context = caller_context(&headers).expect("a valid traceparent");
        assert_eq!(context.span().span_context().trace_state().header(), "");
    }

    #[test]
    fn group_parents_are_stable_valid_and_distinct() {
        let a = group_parent("wf-1");
        assert_eq!(a, group_parent("wf-1"));
        assert!(a.is_valid() && a.is_remote() && a.is_sampled());
        assert_ne!(a.trace_id(), group_parent("wf-2").trace_id());
        assert!(group_parent("").is_valid());
    }

    #[test]
    fn extra_values_keep_their_types() {
        assert_eq!(attribute(&json!("ca")), Value::from("ca"));
        assert_eq!(attribute(&json!(2)), Value::I64(2));
        assert_eq!(attribute(&json!(0.5)), Value::F64(0.5));
        assert_eq!(attribute(&json!(true)), Value::Bool(true));
        assert_eq!(
            attribute(&json!(u64::MAX)),
            Value::from(u64::MAX.to_string())
        );
        assert_eq!(attribute(&json!({"a": [1]})), Value::from(r#"{"a":[1]}"#));
        assert_eq!(attribute(&json!(null)), Value::from("null"));
    }

    #[test]
    fn only_a_valid_traceparent_is_a_parent() {
        let mut headers = HeaderMap::new();
        assert!(caller_context(&headers).is_none());
        headers.insert("traceparent", "00-zz-00f067aa0ba902b7-01".parse().unwrap());
        assert!(caller_context(&headers).is_none());
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.insert("traceparent", traceparent.parse().unwrap());
        let context = caller_context(&headers).expect("a valid traceparent");
        let span = context.span();
        let parent = span.span_context();
        assert_eq!(
            parent.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.span_id().to_string(), "00f067aa0ba902b7");
    }
}
