//! The `opentelemetry` feature end to end: request spans exported over OTLP/HTTP to a receiver on
//! loopback, decoded from protobuf and checked for trace grouping, `traceparent` parents, typed
//! attributes and privacy; and spans exported through the SDK to an exporter that keeps them in
//! memory, for where a span sits in its trace.
#![cfg(feature = "opentelemetry")]

mod support;

use axum::body::{Body, Bytes};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_sdk::trace::SdkTracerProvider;
use prost::Message;
use requesty_metadata::otel::group_trace_id;
use requesty_metadata::RequestyMetadataLayer;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{client, serve};
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

const OPENAI_JSON: &[u8] = include_bytes!("data/openai-chat-response.json");
const OPENAI_SSE: &[u8] = include_bytes!("data/openai-chat-stream.sse");
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

type Spans = Arc<Mutex<Vec<Span>>>;

/// An OTLP/HTTP receiver on its own thread and runtime, so exports never wait on the test's.
fn receiver() -> (SocketAddr, Spans) {
    let spans = Spans::default();
    let sink = spans.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = Router::new().route(
                "/v1/traces",
                post(move |body: Bytes| async move {
                    let request = ExportTraceServiceRequest::decode(body).unwrap();
                    let mut spans = sink.lock().unwrap();
                    for resource in request.resource_spans {
                        for scope in resource.scope_spans {
                            spans.extend(scope.spans);
                        }
                    }
                    Response::builder()
                        .header("content-type", "application/x-protobuf")
                        .body(Body::from(
                            ExportTraceServiceResponse::default().encode_to_vec(),
                        ))
                        .unwrap()
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (rx.recv_timeout(Duration::from_secs(10)).unwrap(), spans)
}

/// This thread's subscriber: the tracing-opentelemetry layer, batching to the receiver.
struct Otel {
    provider: SdkTracerProvider,
    spans: Spans,
    _guard: DefaultGuard,
}

impl Otel {
    fn install() -> Self {
        let (addr, spans) = receiver();
        // Plain HTTP, but the exporter's client wants a crypto provider all the same.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("http://{addr}/v1/traces"))
            .with_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .build();
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("test"))
            .with_filter(Targets::new().with_target("requesty_metadata", tracing::Level::TRACE));
        let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
        Otel {
            provider,
            spans,
            _guard: guard,
        }
    }

    /// Flushes until `count` spans have arrived (bounded).
    async fn exported(&self, count: usize) -> Vec<Span> {
        for _ in 0..100 {
            let provider = self.provider.clone();
            tokio::task::spawn_blocking(move || provider.force_flush())
                .await
                .unwrap()
                .unwrap();
            let spans = self.spans.lock().unwrap().clone();
            if spans.len() >= count {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "{count} spans were not exported: {:#?}",
            self.spans.lock().unwrap()
        );
    }

    async fn shutdown(self) {
        let provider = self.provider;
        tokio::task::spawn_blocking(move || provider.shutdown())
            .await
            .unwrap()
            .unwrap();
    }
}

fn app(layer: RequestyMetadataLayer) -> Router {
    Router::new()
        .route(
            "/v1/chat/completions",
            post(|body: Bytes| async move {
                let (content, content_type) = if body.windows(14).any(|w| w == b"\"stream\": true")
                {
                    (OPENAI_SSE, "text/event-stream")
                } else {
                    (OPENAI_JSON, "application/json")
                };
                Response::builder()
                    .header("content-type", content_type)
                    .body(Body::from(content))
                    .unwrap()
            }),
        )
        .layer(layer)
}

async fn call(addr: SocketAddr, body: &str, traceparent: Option<&str>) {
    let mut request = client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn string(value: &str) -> Value {
    Value::StringValue(value.into())
}

fn strings(values: &[&str]) -> Value {
    let values = values
        .iter()
        .map(|v| AnyValue {
            value: Some(string(v)),
        })
        .collect();
    Value::ArrayValue(ArrayValue { values })
}

/// Each key once: a key set twice is exported twice, and a backend keeps either value.
fn assert_unique_keys(span: &Span) {
    let mut keys: Vec<&str> = span.attributes.iter().map(|kv| kv.key.as_str()).collect();
    keys.sort_unstable();
    for pair in keys.windows(2) {
        assert_ne!(pair[0], pair[1], "exported twice in {span:#?}");
    }
}

/// The span whose `requesty.extra.req` is `name`.
fn request<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| attr(s, "requesty.extra.req") == Some(&string(name)))
        .unwrap_or_else(|| panic!("no span for request {name} in {spans:#?}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn workflows_share_a_trace_and_traceparent_wins() {
    let otel = Otel::install();
    let addr = serve(app(RequestyMetadataLayer::new().group_by_trace_id(true))).await;
    let a = r#"{"model": "gpt-4o", "messages": [], "temperature": 0.5, "top_p": 1, "max_tokens": 300,
        "seed": 42, "requesty": {"trace_id": "wf-1", "user_id": "u-9",
        "tags": ["x", "y,z"], "extra": {"req": "a", "country": "ca", "step": 2, "ratio": 0.5, "beta": true, "cfg": {"k": [1]}}}}"#;
    let b = r#"{"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
        "messages": [], "requesty": {"trace_id": "wf-1", "extra": {"req": "b"}}}"#;
    let c = r#"{"model": "gpt-4o", "messages": [], "requesty": {"trace_id": "wf-2", "extra": {"req": "c"}}}"#;
    let d = r#"{"model": "gpt-4o", "messages": [], "requesty": {"trace_id": "wf-1", "extra": {"req": "d"}}}"#;
    let e = r#"{"model": "gpt-4o", "messages": [], "requesty": {"extra": {"req": "e"}}}"#;
    call(addr, a, None).await;
    call(addr, b, None).await;
    call(addr, c, None).await;
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    call(addr, d, Some(&traceparent)).await;
    call(addr, e, None).await;
    let spans = otel.exported(5).await;
    let [a, b, c, d, e] = ["a", "b", "c", "d", "e"].map(|name| request(&spans, name));

    // One trace per business trace_id, under one synthetic parent.
    assert_eq!(a.trace_id, group_trace_id("wf-1").to_bytes());
    assert_eq!(b.trace_id, a.trace_id);
    assert_eq!(b.parent_span_id, a.parent_span_id);
    assert_eq!(a.parent_span_id.len(), 8);
    assert_eq!(c.trace_id, group_trace_id("wf-2").to_bytes());
    assert_ne!(c.trace_id, a.trace_id);
    // The caller's traceparent wins over grouping.
    assert_eq!(hex(&d.trace_id), CALLER_TRACE);
    assert_eq!(hex(&d.parent_span_id), CALLER_SPAN);
    // No trace_id, no traceparent: a root of its own.
    assert!(e.parent_span_id.is_empty());
    assert!(![&a.trace_id, &c.trace_id, &d.trace_id].contains(&&e.trace_id));

    for span in [a, b] {
        assert_eq!(span.name, "chat gpt-4o");
        assert_eq!(span.kind, SpanKind::Server as i32);
        assert_eq!(
            attr(span, "gen_ai.usage.input_tokens"),
            Some(&Value::IntValue(19))
        );
        assert_eq!(
            attr(span, "gen_ai.usage.output_tokens"),
            Some(&Value::IntValue(6))
        );
        assert_eq!(attr(span, "gen_ai.request.model"), Some(&string("gpt-4o")));
        assert_eq!(attr(span, "gen_ai.operation.name"), Some(&string("chat")));
        assert_eq!(attr(span, "gen_ai.provider.name"), Some(&string("openai")));
        assert_eq!(attr(span, "requesty.trace_id"), Some(&string("wf-1")));
        assert_eq!(attr(span, "gen_ai.conversation.id"), Some(&string("wf-1")));
        assert_eq!(
            attr(span, "requesty.response.completed"),
            Some(&Value::BoolValue(true))
        );
        // The conventions type the reasons `string[]`: an array, not its JSON text.
        assert_eq!(
            attr(span, "gen_ai.response.finish_reasons"),
            Some(&strings(&["stop"]))
        );
        assert_unique_keys(span);
    }
    // The tags are a list too, one element per tag whatever it holds.
    assert_eq!(attr(a, "requesty.tags"), Some(&strings(&["x", "y,z"])));
    assert_eq!(attr(a, "tags"), Some(&string(r#"["x","y,z"]"#)));
    assert_eq!(
        attr(b, "gen_ai.request.stream"),
        Some(&Value::BoolValue(true))
    );
    assert_eq!(
        attr(b, "gen_ai.response.id"),
        Some(&string("chatcmpl-AbC123"))
    );
    // Numbers keep their types: integers as ints, whatever the JSON spelled.
    let params = [
        ("gen_ai.request.temperature", Value::DoubleValue(0.5)),
        ("gen_ai.request.top_p", Value::DoubleValue(1.0)),
        ("gen_ai.request.max_tokens", Value::IntValue(300)),
        ("gen_ai.request.seed", Value::IntValue(42)),
        ("http.response.status_code", Value::IntValue(200)),
    ];
    for (key, value) in params {
        assert_eq!(attr(a, key), Some(&value), "{key}");
    }
    assert_eq!(attr(a, "user.id"), Some(&string("u-9")));
    assert_eq!(attr(a, "requesty.extra.country"), Some(&string("ca")));
    assert_eq!(attr(a, "requesty.extra.step"), Some(&Value::IntValue(2)));
    assert_eq!(
        attr(a, "requesty.extra.ratio"),
        Some(&Value::DoubleValue(0.5))
    );
    assert_eq!(
        attr(a, "requesty.extra.beta"),
        Some(&Value::BoolValue(true))
    );
    assert_eq!(attr(a, "requesty.extra.cfg"), Some(&string(r#"{"k":[1]}"#)));
    otel.shutdown().await;
}

#[tokio::test]
async fn hashed_user_ids_never_leave_and_grouping_is_opt_in() {
    let otel = Otel::install();
    let layer = RequestyMetadataLayer::new()
        .hash_user_ids("secret-key")
        .extra_allowlist(["req", "country"]);
    let addr = serve(app(layer)).await;
    let body = r#"{"model": "gpt-4o", "messages": [], "requesty": {"trace_id": "wf-1",
        "user_id": "alice@example.com", "extra": {"req": "p", "country": "ca", "email": "alice@example.com"}}}"#;
    call(addr, body, None).await;
    let body = body.replace(r#""req": "p""#, r#""req": "q""#);
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    call(addr, &body, Some(&traceparent)).await;
    let spans = otel.exported(2).await;
    let (p, q) = (request(&spans, "p"), request(&spans, "q"));

    for span in [p, q] {
        for kv in &span.attributes {
            let value = format!("{:?}", kv.value);
            assert!(
                !kv.key.contains("alice") && !value.contains("alice"),
                "{} leaks the user: {value}",
                kv.key
            );
        }
        match attr(span, "user.hash") {
            Some(Value::StringValue(hash)) => assert_eq!(hash.len(), 32),
            other => panic!("user.hash is {other:?}"),
        }
        assert_eq!(attr(span, "requesty.extra.country"), Some(&string("ca")));
        assert!(attr(span, "requesty.extra.email").is_none());
        assert!(attr(span, "user.id").is_none());
        assert_unique_keys(span);
    }
    // Grouping is off by default; a traceparent is honored all the same.
    assert!(p.parent_span_id.is_empty());
    assert_ne!(p.trace_id, group_trace_id("wf-1").to_bytes());
    assert_eq!(hex(&q.trace_id), CALLER_TRACE);
    assert_eq!(hex(&q.parent_span_id), CALLER_SPAN);
    otel.shutdown().await;
}

/// A gateway that forwards its caller's headers upstream sends the caller's `traceparent` on: its
/// client span still belongs under the span it is made in, not under that caller.
#[tokio::test]
async fn a_client_span_stays_under_the_span_it_is_made_in() {
    use http_body_util::{BodyExt, Full};
    use requesty_metadata::RequestMetadata;
    use tower::{ServiceBuilder, ServiceExt};
    use tracing::Instrument;

    let otel = Otel::install();
    let upstream = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
        let response = http::Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(OPENAI_JSON)));
        Ok::<_, std::convert::Infallible>(response.unwrap())
    });
    let service = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(RequestMetadata::new().trace_id("wf")).headers_only())
        .service(upstream);
    let handler = tracing::info_span!(target: "requesty_metadata", "gateway_handler");
    let request = http::Request::post("http://upstream/v1/chat/completions")
        .header("content-type", "application/json")
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .body(Full::new(Bytes::from_static(
            br#"{"model":"gpt-4o","messages":[]}"#,
        )))
        .unwrap();
    let response = service
        .oneshot(request)
        .instrument(handler.clone())
        .await
        .unwrap();
    response.into_body().collect().await.unwrap();
    drop(handler);
    let spans = otel.exported(2).await;
    let handler = spans.iter().find(|s| s.name == "gateway_handler").unwrap();
    let client = spans
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .unwrap_or_else(|| panic!("no client span in {spans:#?}"));
    assert_eq!(hex(&client.parent_span_id), hex(&handler.span_id));
    assert_eq!(hex(&client.trace_id), hex(&handler.trace_id));
    // What the server side records, and where the call went (the port the scheme implies).
    assert_eq!(attr(client, "requesty.trace_id"), Some(&string("wf")));
    assert_eq!(
        attr(client, "gen_ai.response.finish_reasons"),
        Some(&strings(&["stop"]))
    );
    assert_eq!(
        attr(client, "gen_ai.usage.input_tokens"),
        Some(&Value::IntValue(19))
    );
    assert_eq!(attr(client, "server.address"), Some(&string("upstream")));
    assert_eq!(attr(client, "server.port"), Some(&Value::IntValue(80)));
    assert_unique_keys(client);
    otel.shutdown().await;
}

/// A request that failed is exported with the span status Error: an upstream that cut its stream,
/// or a `5xx` answer; a `4xx` of the server's is the client's error, and leaves it unset.
#[tokio::test]
async fn failed_requests_are_exported_with_an_error_status() {
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
    let otel = Otel::install();
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            post(|| async {
                let frames: [Result<Bytes, std::io::Error>; 2] = [
                    Ok(Bytes::from_static(b"data: {\"choices\":[]}\n\n")),
                    Err(std::io::Error::other("upstream cut the stream")),
                ];
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::from_stream(futures_util::stream::iter(frames)))
                    .unwrap()
            }),
        )
        .route(
            "/v1/embeddings",
            post(|| async { Response::builder().status(503).body(Body::empty()).unwrap() }),
        )
        .layer(RequestyMetadataLayer::new());
    let addr = serve(app).await;
    for (path, req) in [
        ("/v1/chat/completions", "cut"),
        ("/v1/embeddings", "503"),
        ("/v1/embeddings", "400"),
    ] {
        let extra = if req == "400" {
            r#""tags": "not-a-list", "extra": {"req": "400"}"#.to_owned()
        } else {
            format!(r#""extra": {{"req": "{req}"}}"#)
        };
        let body = format!(r#"{{"model": "m", "requesty": {{{extra}}}}}"#);
        let response = client()
            .post(format!("http://{addr}{path}"))
            .header("content-type", "application/json")
            .header("x-requesty-req", req)
            .body(body)
            .send()
            .await;
        if let Ok(response) = response {
            let _ = response.bytes().await;
        }
    }
    let spans = otel.exported(3).await;
    let status = |req: &str| request(&spans, req).status.as_ref().map(|s| s.code);
    assert_eq!(status("cut"), Some(StatusCode::Error as i32));
    assert_eq!(status("503"), Some(StatusCode::Error as i32));
    assert_eq!(status("400"), Some(StatusCode::Unset as i32));
    let error = |req: &str| attr(request(&spans, req), "error.type");
    assert_eq!(error("cut"), Some(&string("response_body")));
    assert_eq!(error("503"), Some(&string("503")));
    assert_eq!(error("400"), None);
    for span in &spans {
        assert_unique_keys(span);
    }
    otel.shutdown().await;
}

/// An empty business `trace_id` names no workflow: requests that carry one are not grouped, or every
/// client that sends `""` for "none" would share one endless trace.
#[tokio::test]
async fn an_empty_trace_id_groups_nothing() {
    let otel = Otel::install();
    let addr = serve(app(RequestyMetadataLayer::new().group_by_trace_id(true))).await;
    for req in ["x", "y"] {
        let body = format!(
            r#"{{"model": "gpt-4o", "messages": [], "requesty": {{"trace_id": "", "extra": {{"req": "{req}"}}}}}}"#
        );
        call(addr, &body, None).await;
    }
    let spans = otel.exported(2).await;
    let (x, y) = (request(&spans, "x"), request(&spans, "y"));
    for span in [x, y] {
        assert_ne!(span.trace_id, group_trace_id("").to_bytes());
        assert!(span.parent_span_id.is_empty(), "{span:#?}");
    }
    assert_ne!(x.trace_id, y.trace_id);
    otel.shutdown().await;
}

/// A span of one's own (`make_span_with`) gets only the fields it declares, lists included.
#[tokio::test]
async fn a_span_of_ones_own_gets_only_what_it_declares() {
    use http_body_util::{BodyExt, Full};
    use requesty_metadata::server::RequestInfo;
    use tower::{Layer, ServiceExt};
    let otel = Otel::install();
    let layer = RequestyMetadataLayer::new().make_span_with(|info: &RequestInfo<'_>| {
        let trace_id = info.metadata.and_then(|m| m.trace_id.as_deref());
        tracing::info_span!(target: "requesty_metadata", "own", trace_id)
    });
    let inner = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
        let response = http::Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(OPENAI_JSON)));
        Ok::<_, std::convert::Infallible>(response.unwrap())
    });
    let body =
        r#"{"model": "gpt-4o", "messages": [], "requesty": {"trace_id": "wf-9", "tags": ["x"]}}"#;
    let request = http::Request::post("http://gateway/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = layer.layer(inner).oneshot(request).await.unwrap();
    response.into_body().collect().await.unwrap();
    let spans = otel.exported(1).await;
    let span = &spans[0];
    assert_eq!(span.name, "own");
    assert_eq!(attr(span, "trace_id"), Some(&string("wf-9")));
    for undeclared in [
        "gen_ai.response.finish_reasons",
        "requesty.tags",
        "gen_ai.usage.input_tokens",
    ] {
        assert!(attr(span, undeclared).is_none(), "{undeclared}: {span:#?}");
    }
    otel.shutdown().await;
}

/// A gRPC answer whose head carries a `grpc-status` and whose trailers carry another is exported
/// with one status code, the trailers' (the last word), not both under one key.
#[tokio::test]
async fn a_grpc_status_is_exported_once() {
    use http_body::Frame;
    use http_body_util::{BodyExt, Full, StreamBody};
    use tower::{Layer, ServiceExt};
    let otel = Otel::install();
    let inner = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("14"));
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
            Ok(Frame::trailers(trailers)),
        ];
        let response = http::Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", "0")
            .body(StreamBody::new(futures_util::stream::iter(frames)));
        Ok::<_, std::convert::Infallible>(response.unwrap())
    });
    let service = RequestyMetadataLayer::new().headers_only().layer(inner);
    let request = http::Request::post("http://gateway/grpc.health.v1.Health/Check")
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    response.into_body().collect().await.unwrap();
    let spans = otel.exported(1).await;
    let span = &spans[0];
    assert_eq!(span.name, "grpc.health.v1.Health/Check");
    assert_eq!(
        attr(span, "rpc.response.status_code"),
        Some(&string("UNAVAILABLE"))
    );
    assert_eq!(
        attr(span, "rpc.method"),
        Some(&string("grpc.health.v1.Health/Check"))
    );
    assert_unique_keys(span);
    otel.shutdown().await;
}

/// A span the OpenTelemetry layer filters out (a per-layer filter) has no OpenTelemetry span to
/// hold the lists: the other layers get them as JSON text in the fields, as without the feature.
#[tokio::test]
async fn a_span_the_opentelemetry_layer_filters_out_keeps_its_lists_as_text() {
    use http_body_util::{BodyExt, Full};
    use tower::{Layer, ServiceExt};
    let provider = SdkTracerProvider::builder().build();
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("test"))
        .with_filter(Targets::new().with_target("elsewhere", tracing::Level::TRACE));
    let recorder = support::Recorder::default();
    let subscriber = tracing_subscriber::registry()
        .with(otel)
        .with(recorder.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let inner = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
        let response = http::Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(OPENAI_JSON)));
        Ok::<_, std::convert::Infallible>(response.unwrap())
    });
    let body = r#"{"model": "gpt-4o", "messages": [], "requesty": {"tags": ["x", "y,z"]}}"#;
    let request = http::Request::post("http://gateway/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = RequestyMetadataLayer::new()
        .layer(inner)
        .oneshot(request)
        .await
        .unwrap();
    response.into_body().collect().await.unwrap();
    let spans = recorder.wait_closed(1).await;
    assert_eq!(spans[0].field("requesty.tags"), Some(r#"["x","y,z"]"#));
    assert_eq!(
        spans[0].field("gen_ai.response.finish_reasons"),
        Some(r#"["stop"]"#)
    );
}

/// An exporter that keeps what it is given: with the SDK's simple processor, a span is there as soon
/// as it closes.
#[derive(Clone, Debug, Default)]
struct Memory(Arc<Mutex<Vec<opentelemetry_sdk::trace::SpanData>>>);

impl opentelemetry_sdk::trace::SpanExporter for Memory {
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

impl Memory {
    /// This thread's subscriber: the tracing-opentelemetry layer, exporting each span as it closes.
    fn install() -> (Self, DefaultGuard) {
        let memory = Memory::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(memory.clone())
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
        (memory, guard)
    }

    fn spans(&self) -> Vec<opentelemetry_sdk::trace::SpanData> {
        self.0.lock().unwrap().clone()
    }

    /// Waits (bounded) until `count` spans have closed: a server's span closes as its response body
    /// ends, on the server's task, a moment after the client has read the last byte.
    async fn exported(&self, count: usize) -> Vec<opentelemetry_sdk::trace::SpanData> {
        for _ in 0..200 {
            let spans = self.spans();
            if spans.len() >= count {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{count} spans were not exported: {:#?}", self.spans());
    }
}

/// The caller's context, as an outer instrumentation extracts it from `traceparent`.
fn caller_context(traceparent: &str) -> opentelemetry::Context {
    use opentelemetry::propagation::TextMapPropagator;
    let carrier =
        std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&carrier)
}

/// An inner service that answers a chat completion.
fn chat_service() -> impl tower::Service<
    http::Request<http_body_util::Full<Bytes>>,
    Response = http::Response<http_body_util::Full<Bytes>>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(|_: http::Request<http_body_util::Full<Bytes>>| async {
        let response = http::Response::builder()
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(Bytes::from_static(OPENAI_JSON)));
        Ok::<_, std::convert::Infallible>(response.unwrap())
    })
}

/// A span made inside an enclosing span that already belongs to the caller's trace (an outer HTTP
/// instrumentation that read the same `traceparent`) stays that span's child: taking the caller's
/// span as its parent again would make it a sibling of the span it runs in. An enclosing span of
/// another trace (a connection's, say) still gives way to the caller's.
#[tokio::test]
async fn a_span_already_in_the_callers_trace_stays_under_the_span_it_is_made_in() {
    use http_body_util::{BodyExt, Full};
    use tower::{Layer, ServiceExt};
    use tracing::Instrument;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let (memory, _guard) = Memory::install();
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    for (outer, joined) in [("http_server", true), ("connection", false)] {
        let enclosing = tracing::info_span!("enclosing", otel.name = outer);
        if joined {
            enclosing.set_parent(caller_context(&traceparent)).unwrap();
        }
        let request = http::Request::post("http://gateway/v1/chat/completions")
            .header("content-type", "application/json")
            .header("traceparent", &traceparent)
            .body(Full::new(Bytes::from_static(br#"{"model": "gpt-4o"}"#)))
            .unwrap();
        let service = RequestyMetadataLayer::new().layer(chat_service());
        let response = service
            .oneshot(request)
            .instrument(enclosing.clone())
            .await
            .unwrap();
        response.into_body().collect().await.unwrap();
        drop(enclosing);
    }
    let spans = memory.spans();
    let named = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} in {spans:#?}"))
    };
    let requests: Vec<_> = spans.iter().filter(|s| s.name == "chat gpt-4o").collect();
    assert_eq!(requests.len(), 2, "{spans:#?}");
    let (http_server, connection) = (named("http_server"), named("connection"));
    let under = |parent: &opentelemetry_sdk::trace::SpanData| {
        requests
            .iter()
            .find(|s| s.parent_span_id == parent.span_context.span_id())
            .is_some()
    };
    assert_eq!(
        http_server.span_context.trace_id().to_string(),
        CALLER_TRACE
    );
    assert!(
        under(http_server),
        "not under the enclosing span: {spans:#?}"
    );
    // Outside the caller's trace, the caller's span is the parent.
    assert!(!under(connection), "{spans:#?}");
    assert!(
        requests
            .iter()
            .any(|s| s.parent_span_id.to_string() == CALLER_SPAN),
        "{spans:#?}"
    );
    for span in requests {
        assert_eq!(span.span_context.trace_id().to_string(), CALLER_TRACE);
    }
}

/// Two layers that group by `trace_id`, one inside the other (the outer one keeping the headers, so
/// that both read the `trace_id`): the inner request's span is the outer one's child, in the
/// workflow's trace, not a second span directly under the workflow's root.
#[tokio::test]
async fn a_grouped_span_inside_a_grouped_span_is_its_child() {
    use http_body_util::{BodyExt, Full};
    use tower::{Layer, ServiceExt};

    let (memory, _guard) = Memory::install();
    let inner = RequestyMetadataLayer::new()
        .group_by_trace_id(true)
        .layer(chat_service());
    let service = RequestyMetadataLayer::new()
        .group_by_trace_id(true)
        .keep_headers(true)
        .layer(inner);
    let request = http::Request::post("http://gateway/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-requesty-trace-id", "wf-1")
        .body(Full::new(Bytes::from_static(br#"{"model": "gpt-4o"}"#)))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    response.into_body().collect().await.unwrap();
    let spans = memory.spans();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    for span in &spans {
        assert_eq!(span.span_context.trace_id(), group_trace_id("wf-1"));
    }
    let ids: Vec<_> = spans.iter().map(|s| s.span_context.span_id()).collect();
    let children = spans
        .iter()
        .filter(|s| ids.contains(&s.parent_span_id))
        .count();
    assert_eq!(children, 1, "one span is the other's child: {spans:#?}");
}

/// A request's span belongs to the span `call` ran in, whatever the body, though a JSON body's span
/// is made only once the body is read, wherever the future is polled then (a future spawned onto
/// another task, say), as a client span does.
#[tokio::test]
async fn a_request_span_is_a_child_of_the_span_call_ran_in_for_json_bodies_too() {
    use http_body_util::{BodyExt, Full};
    use tower::{Layer, Service, ServiceExt};

    let (memory, _guard) = Memory::install();
    let mut service = RequestyMetadataLayer::new().layer(chat_service());
    let caller = tracing::info_span!("caller");
    for content_type in ["text/plain", "application/json"] {
        let request = http::Request::post("http://gateway/v1/chat/completions")
            .header("content-type", content_type)
            .body(Full::new(Bytes::from_static(br#"{"model": "gpt-4o"}"#)))
            .unwrap();
        let future = {
            let _entered = caller.enter();
            service.ready().await.unwrap().call(request)
        };
        let response = future.await.unwrap();
        response.into_body().collect().await.unwrap();
    }
    drop(caller);
    let spans = memory.spans();
    let caller = spans
        .iter()
        .find(|s| s.name == "caller")
        .unwrap_or_else(|| panic!("no caller span in {spans:#?}"));
    let parents: Vec<_> = spans
        .iter()
        .filter(|s| s.name != "caller")
        .map(|s| s.parent_span_id)
        .collect();
    assert_eq!(
        parents,
        [caller.span_context.span_id(), caller.span_context.span_id()],
        "{spans:#?}"
    );
}

/// What the span table promises, exported through the SDK: for a streamed Anthropic answer to a
/// request with every kind of metadata, each attribute once, with the type the conventions give it
/// (integers as ints, lists as string arrays, times as doubles), the name `{operation} {model}`,
/// kind server and an unset status.
#[tokio::test]
async fn an_exported_span_has_the_attributes_the_span_table_promises() {
    use opentelemetry::{Array, StringValue, Value as V};

    const ANTHROPIC_SSE: &[u8] = include_bytes!("data/anthropic-messages-stream.sse");
    let (memory, _guard) = Memory::install();
    let app = Router::new()
        .route(
            "/v1/messages",
            post(|| async {
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::from(ANTHROPIC_SSE))
                    .unwrap()
            }),
        )
        .layer(RequestyMetadataLayer::new());
    let addr = serve(app).await;
    let body = r#"{"model": "claude-sonnet-4-5", "stream": true, "max_tokens": 64, "temperature": 0.2,
        "top_p": 0.9, "seed": 7, "messages": [],
        "requesty": {"trace_id": "wf-1", "user_id": "u-9", "tags": ["a", "b,c"], "extra": {"step": 2}}}"#;
    let response = client()
        .post(format!("http://{addr}/v1/messages"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.bytes().await.unwrap(), ANTHROPIC_SSE);
    let span = memory.exported(1).await.remove(0);
    assert_eq!(span.name, "chat claude-sonnet-4-5");
    assert_eq!(span.span_kind, opentelemetry::trace::SpanKind::Server);
    assert_eq!(span.status, opentelemetry::trace::Status::Unset);
    let text = |s: &str| V::from(s.to_owned());
    let strings = |values: &[&str]| {
        let values = values.iter().map(|v| StringValue::from(v.to_string()));
        V::Array(Array::String(values.collect()))
    };
    let want = [
        ("trace_id", text("wf-1")),
        ("user_id", text("u-9")),
        ("tags", text(r#"["a","b,c"]"#)),
        ("extra", text(r#"{"step":2}"#)),
        ("requesty.trace_id", text("wf-1")),
        ("requesty.user_id", text("u-9")),
        ("requesty.tags", strings(&["a", "b,c"])),
        ("requesty.extra.step", V::I64(2)),
        ("gen_ai.conversation.id", text("wf-1")),
        ("user.id", text("u-9")),
        ("http.request.method", text("POST")),
        ("url.path", text("/v1/messages")),
        ("server.address", text("127.0.0.1")),
        ("server.port", V::I64(addr.port().into())),
        ("http.response.status_code", V::I64(200)),
        ("gen_ai.operation.name", text("chat")),
        ("gen_ai.provider.name", text("anthropic")),
        ("gen_ai.request.model", text("claude-sonnet-4-5")),
        ("gen_ai.request.max_tokens", V::I64(64)),
        ("gen_ai.request.temperature", V::F64(0.2)),
        ("gen_ai.request.top_p", V::F64(0.9)),
        ("gen_ai.request.seed", V::I64(7)),
        ("gen_ai.request.stream", V::Bool(true)),
        ("gen_ai.response.model", text("claude-sonnet-4-5-20250929")),
        ("gen_ai.response.id", text("msg_01XyZ")),
        ("gen_ai.response.finish_reasons", strings(&["end_turn"])),
        ("gen_ai.usage.input_tokens", V::I64(21)),
        ("gen_ai.usage.output_tokens", V::I64(7)),
        ("gen_ai.usage.cache_read.input_tokens", V::I64(0)),
        ("gen_ai.usage.cache_creation.input_tokens", V::I64(0)),
        ("requesty.response.completed", V::Bool(true)),
    ];
    let attribute = |key: &str| {
        let found: Vec<_> = span
            .attributes
            .iter()
            .filter(|kv| kv.key.as_str() == key)
            .collect();
        assert!(found.len() <= 1, "{key} exported twice: {span:#?}");
        found.first().map(|kv| kv.value.clone())
    };
    for (key, value) in want {
        assert_eq!(attribute(key), Some(value), "{key}");
    }
    for timing in [
        "gen_ai.response.time_to_first_chunk",
        "requesty.time_to_first_token_ms",
    ] {
        assert!(
            matches!(attribute(timing), Some(V::F64(t)) if t > 0.0),
            "{timing}: {span:#?}"
        );
    }
    for unset in ["error.type", "user.hash", "rpc.system.name", "otel.name"] {
        assert_eq!(attribute(unset), None, "{unset}");
    }
}
