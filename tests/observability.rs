//! GenAI span attributes and usage read from real responses, through an axum server on loopback.

mod support;

use axum::body::{Body, Bytes};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use requesty_metadata::server::Completion;
use requesty_metadata::RequestyMetadataLayer;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{client, serve, Recorder, SpanRecord};

const OPENAI_JSON: &[u8] = include_bytes!("data/openai-chat-response.json");
const OPENAI_SSE: &[u8] = include_bytes!("data/openai-chat-stream.sse");
const ANTHROPIC_JSON: &[u8] = include_bytes!("data/anthropic-messages-response.json");
const ANTHROPIC_SSE: &[u8] = include_bytes!("data/anthropic-messages-stream.sse");

/// Answers with `body` as `content_type`, in frames of `frame` bytes, `gap` apart.
fn answer(
    body: &'static [u8],
    content_type: &'static str,
    frame: usize,
    gap: Duration,
) -> Response {
    let frames: Vec<Bytes> = body.chunks(frame).map(Bytes::from_static).collect();
    let stream = futures_util::stream::unfold(frames.into_iter(), move |mut frames| async move {
        let next = frames.next()?;
        tokio::time::sleep(gap).await;
        Some((Ok::<_, Infallible>(next), frames))
    });
    Response::builder()
        .header("content-type", content_type)
        .body(Body::from_stream(stream))
        .unwrap()
}

fn app(layer: RequestyMetadataLayer) -> Router {
    Router::new()
        .route(
            "/v1/chat/completions",
            post(|body: Bytes| async move {
                if body.windows(14).any(|w| w == b"\"stream\": true") {
                    answer(
                        OPENAI_SSE,
                        "text/event-stream",
                        97,
                        Duration::from_millis(2),
                    )
                } else {
                    answer(OPENAI_JSON, "application/json", 100, Duration::ZERO)
                }
            }),
        )
        .route(
            "/v1/messages",
            post(|body: Bytes| async move {
                if body.windows(14).any(|w| w == b"\"stream\": true") {
                    answer(
                        ANTHROPIC_SSE,
                        "text/event-stream; charset=utf-8",
                        61,
                        Duration::from_millis(2),
                    )
                } else {
                    answer(ANTHROPIC_JSON, "application/json", 1000, Duration::ZERO)
                }
            }),
        )
        .layer(layer)
}

async fn call(addr: std::net::SocketAddr, path: &str, body: &str) -> Bytes {
    let response = client()
        .post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap()
}

fn field<'a>(span: &'a SpanRecord, name: &str) -> &'a str {
    span.field(name)
        .unwrap_or_else(|| panic!("no {name} in {span:#?}"))
}

#[tokio::test]
async fn openai_stream_usage_and_attributes() {
    let (recorder, _guard) = Recorder::install();
    let addr = serve(app(RequestyMetadataLayer::new())).await;
    let body = r#"{"model": "openai/gpt-4o", "temperature": 0.7, "max_tokens": 300, "top_p": 1, "seed": 42,
        "stream": true, "stream_options": {"include_usage": true},
        "messages": [], "requesty": {"trace_id": "wf-1", "user_id": "u-9", "tags": ["a", "b,c"]}}"#;
    let received = call(addr, "/v1/chat/completions", body).await;
    assert_eq!(received, OPENAI_SSE, "the stream passes through untouched");
    let spans = recorder.wait_closed(1).await;
    let span = &spans[0];
    assert_eq!(field(span, "otel.name"), "chat openai/gpt-4o");
    assert_eq!(field(span, "gen_ai.operation.name"), "chat");
    assert_eq!(field(span, "gen_ai.provider.name"), "openai");
    assert_eq!(field(span, "gen_ai.request.model"), "openai/gpt-4o");
    assert_eq!(field(span, "gen_ai.request.temperature"), "0.7");
    assert_eq!(field(span, "gen_ai.request.max_tokens"), "300");
    assert_eq!(field(span, "gen_ai.request.top_p"), "1.0");
    assert_eq!(field(span, "gen_ai.request.seed"), "42");
    assert_eq!(field(span, "gen_ai.request.stream"), "true");
    assert_eq!(field(span, "gen_ai.response.model"), "gpt-4o-2024-08-06");
    assert_eq!(field(span, "gen_ai.response.id"), "chatcmpl-AbC123");
    assert_eq!(field(span, "gen_ai.response.finish_reasons"), r#"["stop"]"#);
    assert_eq!(field(span, "gen_ai.usage.input_tokens"), "19");
    assert_eq!(field(span, "gen_ai.usage.output_tokens"), "6");
    assert_eq!(field(span, "gen_ai.usage.cache_read.input_tokens"), "0");
    assert_eq!(field(span, "gen_ai.usage.reasoning.output_tokens"), "0");
    let first_chunk: f64 = field(span, "gen_ai.response.time_to_first_chunk")
        .parse()
        .unwrap();
    assert!(first_chunk > 0.0);
    assert_eq!(field(span, "requesty.trace_id"), "wf-1");
    assert_eq!(field(span, "gen_ai.conversation.id"), "wf-1");
    assert_eq!(field(span, "requesty.user_id"), "u-9");
    assert_eq!(field(span, "user.id"), "u-9");
    assert_eq!(field(span, "requesty.tags"), r#"["a","b,c"]"#);
    let ttft: f64 = field(span, "requesty.time_to_first_token_ms")
        .parse()
        .unwrap();
    assert!(ttft > 0.0);
    assert_eq!(field(span, "requesty.response.completed"), "true");
}

#[tokio::test]
async fn anthropic_json_and_stream_usage() {
    let (recorder, _guard) = Recorder::install();
    let addr = serve(app(RequestyMetadataLayer::new())).await;
    call(
        addr,
        "/v1/messages",
        r#"{"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": []}"#,
    )
    .await;
    call(
        addr,
        "/v1/messages",
        r#"{"model": "claude-sonnet-4-5", "stream": true, "messages": []}"#,
    )
    .await;
    let spans = recorder.wait_closed(2).await;
    for span in &spans {
        assert_eq!(field(span, "gen_ai.provider.name"), "anthropic");
        assert_eq!(
            field(span, "gen_ai.response.model"),
            "claude-sonnet-4-5-20250929"
        );
        assert_eq!(field(span, "gen_ai.response.id"), "msg_01XyZ");
        assert_eq!(
            field(span, "gen_ai.response.finish_reasons"),
            r#"["end_turn"]"#
        );
        assert_eq!(field(span, "gen_ai.usage.input_tokens"), "21");
        assert_eq!(field(span, "gen_ai.usage.output_tokens"), "7");
        assert_eq!(field(span, "gen_ai.usage.cache_creation.input_tokens"), "0");
    }
    assert!(spans[0].field("requesty.time_to_first_token_ms").is_none());
    assert!(spans[1].field("requesty.time_to_first_token_ms").is_some());
}

#[tokio::test]
async fn user_ids_can_be_hashed_and_extra_keys_allowlisted() {
    let (recorder, _guard) = Recorder::install();
    let layer = RequestyMetadataLayer::new()
        .hash_user_ids("secret-key")
        .extra_allowlist(["country"])
        .provider("my-gateway");
    let addr = serve(app(layer)).await;
    let body = r#"{"model": "gpt-4o", "messages": [],
        "requesty": {"user_id": "alice@example.com", "extra": {"country": "ca", "email": "alice@example.com"}}}"#;
    call(addr, "/v1/chat/completions", body).await;
    call(addr, "/v1/chat/completions", body).await;
    let spans = recorder.wait_closed(2).await;
    for span in &spans {
        for (name, value) in &span.fields {
            assert!(!value.contains("alice"), "{name} leaks the user: {value}");
        }
        assert_eq!(field(span, "extra"), r#"{"country":"ca"}"#);
        assert_eq!(field(span, "gen_ai.provider.name"), "my-gateway");
        assert_eq!(field(span, "user.hash").len(), 32);
    }
    assert_eq!(spans[0].field("user.hash"), spans[1].field("user.hash"));
}

#[tokio::test]
async fn the_completion_hook_sees_usage_and_timings() {
    let (_recorder, _guard) = Recorder::install();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let layer = RequestyMetadataLayer::new().on_complete(move |done: &Completion<'_>| {
        let response = done.response.cloned();
        sink.lock()
            .unwrap()
            .push((response, done.time_to_first_byte, done.time_to_first_token));
    });
    let addr = serve(app(layer)).await;
    call(
        addr,
        "/v1/chat/completions",
        r#"{"model":"gpt-4o","stream": true,"messages":[]}"#,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let seen = seen.lock().unwrap();
    let (response, first_byte, first_token) = &seen[0];
    let response = response.as_ref().expect("an event stream is read");
    assert_eq!(response.usage.output_tokens, Some(6));
    assert!(response.done);
    assert!(first_byte.unwrap() <= first_token.unwrap());
}

/// Waits (bounded) until `count` client spans have closed.
async fn client_spans(recorder: &Recorder, count: usize) -> Vec<SpanRecord> {
    for _ in 0..200 {
        let closed: Vec<_> = recorder
            .named("llm_client_request")
            .into_iter()
            .filter(|s| s.closed)
            .collect();
        if closed.len() >= count {
            return closed;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("client spans did not close: {:#?}", recorder.spans());
}

fn check_client_span(span: &SpanRecord, addr: std::net::SocketAddr) {
    assert_eq!(field(span, "otel.kind"), "client");
    assert_eq!(field(span, "server.address"), addr.ip().to_string());
    assert_eq!(field(span, "server.port"), addr.port().to_string());
    assert_eq!(field(span, "otel.name"), "chat gpt-4o");
    assert_eq!(field(span, "gen_ai.request.model"), "gpt-4o");
    assert_eq!(field(span, "gen_ai.request.temperature"), "0.5");
    assert_eq!(field(span, "requesty.trace_id"), "client-wf");
    assert_eq!(field(span, "http.response.status_code"), "200");
    assert_eq!(field(span, "gen_ai.response.model"), "gpt-4o-2024-08-06");
    assert_eq!(field(span, "gen_ai.usage.input_tokens"), "19");
    assert_eq!(field(span, "gen_ai.usage.output_tokens"), "6");
    assert_eq!(field(span, "requesty.response.completed"), "true");
}

#[tokio::test]
async fn the_inject_layer_records_a_client_span_with_usage() {
    use http_body_util::BodyExt;
    use hyper_util::rt::TokioExecutor;
    use requesty_metadata::RequestMetadata;
    use tower::{ServiceBuilder, ServiceExt};

    let (recorder, _guard) = Recorder::install();
    let addr = serve(app(RequestyMetadataLayer::new())).await;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let service = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(
            RequestMetadata::new().trace_id("client-wf"),
        ))
        .service(client);
    let request = http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from_static(
            br#"{"model":"gpt-4o","temperature":0.5,"messages":[]}"#,
        )))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert!(recorder
        .named("llm_client_request")
        .iter()
        .all(|s| !s.closed));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, OPENAI_JSON);
    let spans = client_spans(&recorder, 1).await;
    check_client_span(&spans[0], addr);
    // The server saw the injected trace id.
    let server = recorder.wait_closed(1).await;
    assert_eq!(field(&server[0], "trace_id"), "client-wf");
}

/// A client layer that writes a provider's own field calls that provider: its span names it,
/// whatever the model is called, as the server layer's `provider` does.
#[tokio::test]
async fn a_call_straight_to_a_provider_names_it() {
    use http_body_util::BodyExt;
    use hyper_util::rt::TokioExecutor;
    use requesty_metadata::client::{Carrier, Native};
    use requesty_metadata::RequestMetadata;
    use tower::{ServiceBuilder, ServiceExt};

    let (recorder, _guard) = Recorder::install();
    let addr = serve(app(RequestyMetadataLayer::new())).await;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let service = ServiceBuilder::new()
        .layer(
            RequestyMetadataLayer::inject(RequestMetadata::new().user_id("u-1"))
                .provider_native(Native::OpenAi)
                .carrier(Carrier::Headers),
        )
        .service(client);
    let request = http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from_static(
            br#"{"model":"acme-support-v2","messages":[]}"#,
        )))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    response.into_body().collect().await.unwrap();
    let spans = client_spans(&recorder, 1).await;
    assert_eq!(field(&spans[0], "gen_ai.provider.name"), "openai");
    // The server it reached was told nothing of the kind.
    let server = recorder.wait_closed(1).await;
    assert_eq!(server[0].field("gen_ai.provider.name"), None);
}

#[cfg(feature = "reqwest")]
#[tokio::test]
async fn the_reqwest_middleware_records_a_client_span_with_usage() {
    use requesty_metadata::{reqwest::MetadataMiddleware, RequestMetadata};

    let (recorder, _guard) = Recorder::install();
    let addr = serve(app(RequestyMetadataLayer::new())).await;
    let client = reqwest_middleware::ClientBuilder::new(client())
        .with(MetadataMiddleware::new(
            RequestMetadata::new().trace_id("client-wf"),
        ))
        .build();
    let url = format!("http://{addr}/v1/chat/completions");
    let response = client
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"model":"gpt-4o","temperature":0.5,"messages":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.url().as_str(),
        url,
        "the URL survives the body wrapping"
    );
    assert_eq!(response.bytes().await.unwrap(), OPENAI_JSON);
    let spans = client_spans(&recorder, 1).await;
    check_client_span(&spans[0], addr);
}

/// Gemini's and Bedrock's own APIs name the model in the path: client spans take it from there too,
/// through the inject layer and the reqwest middleware, with the operation, the provider and whether
/// the answer streams.
#[tokio::test]
async fn client_spans_read_the_model_a_gemini_or_bedrock_path_names() {
    use http_body_util::BodyExt;
    use hyper_util::rt::TokioExecutor;
    use requesty_metadata::RequestMetadata;
    use tower::{ServiceBuilder, ServiceExt};

    const GEMINI_JSON: &str = r#"{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":1,"totalTokenCount":5},"modelVersion":"gemini-2.5-flash","responseId":"r-1"}"#;
    let (recorder, _guard) = Recorder::install();
    let app = Router::new().route(
        "/{*path}",
        post(|| async {
            answer(
                GEMINI_JSON.as_bytes(),
                "application/json",
                100,
                Duration::ZERO,
            )
        }),
    );
    let addr = serve(app).await;
    let hyper_client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let service = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(
            RequestMetadata::new().trace_id("client-wf"),
        ))
        .service(hyper_client);
    let body = r#"{"contents":[{"role":"user","parts":[{"text":"Hi"}]}]}"#;
    let request = http::Request::post(format!(
        "http://{addr}/v1beta/models/gemini-2.5-flash:generateContent"
    ))
    .header("content-type", "application/json")
    .body(http_body_util::Full::new(Bytes::from_static(
        body.as_bytes(),
    )))
    .unwrap();
    let response = service.oneshot(request).await.unwrap();
    response.into_body().collect().await.unwrap();
    let spans = client_spans(&recorder, 1).await;
    let span = &spans[0];
    assert_eq!(
        field(span, "otel.name"),
        "generate_content gemini-2.5-flash"
    );
    assert_eq!(field(span, "gen_ai.operation.name"), "generate_content");
    assert_eq!(field(span, "gen_ai.provider.name"), "gcp.gemini");
    assert_eq!(field(span, "gen_ai.request.model"), "gemini-2.5-flash");
    assert_eq!(field(span, "gen_ai.request.stream"), "false");
    assert_eq!(field(span, "gen_ai.response.id"), "r-1");
    assert_eq!(field(span, "gen_ai.usage.input_tokens"), "4");

    #[cfg(feature = "reqwest")]
    {
        use requesty_metadata::reqwest::MetadataMiddleware;
        let client = reqwest_middleware::ClientBuilder::new(client())
            .with(MetadataMiddleware::new(
                RequestMetadata::new().trace_id("client-wf"),
            ))
            .build();
        let response = client
            .post(format!(
                "http://{addr}/model/amazon.nova-pro-v1%3A0/converse-stream"
            ))
            .header("content-type", "application/json")
            .body(r#"{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}"#)
            .send()
            .await
            .unwrap();
        response.bytes().await.unwrap();
        let spans = client_spans(&recorder, 2).await;
        let span = &spans[1];
        assert_eq!(field(span, "otel.name"), "chat amazon.nova-pro-v1:0");
        assert_eq!(field(span, "gen_ai.provider.name"), "aws.bedrock");
        assert_eq!(field(span, "gen_ai.request.model"), "amazon.nova-pro-v1:0");
        assert_eq!(field(span, "gen_ai.request.stream"), "true");
    }
}

/// A `5xx` answer ended in an error, so the span that says so (`otel.status_code`) also says which:
/// the GenAI and HTTP conventions require `error.type` then, the provider's error type when the
/// body gave one, else the status code.
#[tokio::test]
async fn a_server_error_answer_records_its_error_type() {
    let (recorder, _guard) = Recorder::install();
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            post(|| async { Response::builder().status(503).body(Body::empty()).unwrap() }),
        )
        .route(
            "/v1/messages",
            post(|| async {
                Response::builder()
                    .status(529)
                    .header("content-type", "application/json")
                    .body(Body::from(
                        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                    ))
                    .unwrap()
            }),
        )
        .layer(RequestyMetadataLayer::new());
    let addr = serve(app).await;
    for path in ["/v1/chat/completions", "/v1/messages"] {
        let response = client()
            .post(format!("http://{addr}{path}"))
            .header("content-type", "application/json")
            .body(r#"{"model": "m", "messages": []}"#)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_server_error());
        response.bytes().await.unwrap();
    }
    let spans = recorder.wait_closed(2).await;
    let span = |path: &str| {
        spans
            .iter()
            .find(|s| s.field("url.path") == Some(path))
            .unwrap_or_else(|| panic!("no span for {path} in {spans:#?}"))
    };
    let (openai, anthropic) = (span("/v1/chat/completions"), span("/v1/messages"));
    for span in [openai, anthropic] {
        assert_eq!(field(span, "otel.status_code"), "ERROR");
        assert_eq!(field(span, "requesty.response.completed"), "true");
    }
    assert_eq!(field(openai, "error.type"), "503");
    assert_eq!(field(anthropic, "error.type"), "overloaded_error");
}

/// An empty key for hashing user ids, most often an unset secret, is said out loud on either side.
#[test]
fn an_empty_user_hash_key_warns() {
    let (recorder, _guard) = Recorder::install();
    // The recorder keeps events that happen inside a request span: each setup runs inside one.
    tracing::info_span!("llm_request").in_scope(|| {
        let _ = RequestyMetadataLayer::new().hash_user_ids("secret-key");
        let _ = RequestyMetadataLayer::inject(Default::default()).hash_user_ids(b"k");
    });
    tracing::info_span!("llm_request").in_scope(|| {
        let _ = RequestyMetadataLayer::new().hash_user_ids("");
        let _ = RequestyMetadataLayer::inject(Default::default()).hash_user_ids(b"");
    });
    let warnings: Vec<usize> = recorder
        .requests()
        .iter()
        .map(|span| {
            span.events
                .iter()
                .filter(|e| e["message"].contains("hashing user ids is empty"))
                .count()
        })
        .collect();
    assert_eq!(warnings, [0, 2]);
}

/// An HTTP method the conventions do not know (any token a client sends) is recorded as `_OTHER`,
/// the method as sent in `http.request.method_original`, and names the span `HTTP`: the span name
/// and the method attribute stay of low cardinality, whatever clients send. A known method is
/// recorded as it is.
#[tokio::test]
async fn an_unknown_http_method_is_recorded_as_other() {
    let (recorder, _guard) = Recorder::install();
    let app = Router::new()
        .route(
            "/v1/files",
            axum::routing::any(|| async { Response::new(Body::empty()) }),
        )
        .layer(RequestyMetadataLayer::new());
    let addr = serve(app).await;
    for method in ["PROPFIND", "GET", "QUERY"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = client()
            .request(method, format!("http://{addr}/v1/files"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }
    let spans = recorder.wait_closed(3).await;
    let fields = |span: &SpanRecord| {
        (
            field(span, "http.request.method").to_owned(),
            span.field("http.request.method_original")
                .map(str::to_owned),
            field(span, "otel.name").to_owned(),
        )
    };
    let seen: Vec<_> = spans.iter().map(fields).collect();
    let want = |method: &str, original: Option<&str>, name: &str| {
        (
            method.to_owned(),
            original.map(str::to_owned),
            name.to_owned(),
        )
    };
    assert_eq!(
        seen,
        [
            want("_OTHER", Some("PROPFIND"), "HTTP"),
            want("GET", None, "GET"),
            want("QUERY", None, "QUERY"),
        ]
    );
}

/// A server layer inside another (one on the router and one on a route, say) finds nothing left to
/// read once the outer one took the metadata out: its span still carries the request's metadata,
/// the outer layer's, as the handler sees it.
#[tokio::test]
async fn an_inner_server_layers_span_carries_the_metadata_the_outer_layer_read() {
    let (recorder, _guard) = Recorder::install();
    let app = app(RequestyMetadataLayer::new()).layer(RequestyMetadataLayer::new());
    let addr = serve(app).await;
    let body = r#"{"model": "gpt-4o", "messages": [], "requesty": {"trace_id": "wf-1", "user_id": "u-9"}}"#;
    call(addr, "/v1/chat/completions", body).await;
    let spans = recorder.wait_closed(2).await;
    for span in &spans {
        assert_eq!(field(span, "requesty.trace_id"), "wf-1");
        assert_eq!(field(span, "gen_ai.conversation.id"), "wf-1");
        assert_eq!(field(span, "user.id"), "u-9");
    }
}

/// Only a `POST` asks a model for something: `GET /v1/chat/completions` lists stored completions (and
/// `DELETE` or `HEAD` on a GenAI path makes no call either), so its span names no GenAI operation and
/// is named by its method, as other HTTP spans are.
#[tokio::test]
async fn only_a_post_names_a_genai_operation() {
    let (recorder, _guard) = Recorder::install();
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            axum::routing::any(|| async {
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from(r#"{"object":"list","data":[]}"#))
                    .unwrap()
            }),
        )
        .layer(RequestyMetadataLayer::new());
    let addr = serve(app).await;
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let response = client()
            .request(method, format!("http://{addr}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(r#"{"model": "gpt-4o", "messages": []}"#)
            .send()
            .await
            .unwrap();
        response.bytes().await.unwrap();
    }
    let spans = recorder.wait_closed(2).await;
    let (get, post) = (&spans[0], &spans[1]);
    assert_eq!(get.field("gen_ai.operation.name"), None, "{get:#?}");
    assert_eq!(field(get, "otel.name"), "GET");
    assert_eq!(field(post, "gen_ai.operation.name"), "chat");
    assert_eq!(field(post, "otel.name"), "chat gpt-4o");
}

/// The HTTP conventions have an instrumentation that records unknown methods as `_OTHER` let its
/// users name the methods they know instead (a WebDAV server's `PROPFIND`, say): the list replaces
/// the default one whole, on either side.
#[tokio::test]
async fn the_known_http_methods_can_be_named() {
    use http_body_util::{BodyExt, Full};
    use requesty_metadata::RequestMetadata;
    use tower::{ServiceBuilder, ServiceExt};

    let (recorder, _guard) = Recorder::install();
    let app = Router::new()
        .route(
            "/dav",
            axum::routing::any(|| async { Response::new(Body::empty()) }),
        )
        .layer(RequestyMetadataLayer::new().known_http_methods(["PROPFIND", "POST"]));
    let addr = serve(app).await;
    for method in ["PROPFIND", "GET"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = client()
            .request(method, format!("http://{addr}/dav"))
            .send()
            .await
            .unwrap();
        response.bytes().await.unwrap();
    }
    let spans = recorder.wait_closed(2).await;
    let methods: Vec<_> = spans
        .iter()
        .map(|s| {
            (
                field(s, "http.request.method"),
                s.field("http.request.method_original"),
            )
        })
        .collect();
    assert_eq!(methods, [("PROPFIND", None), ("_OTHER", Some("GET"))]);

    let upstream = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
    });
    let service = ServiceBuilder::new()
        .layer(
            RequestyMetadataLayer::inject(RequestMetadata::new().trace_id("t"))
                .known_http_methods(["PROPFIND"]),
        )
        .service(upstream);
    let request = http::Request::builder()
        .method("PROPFIND")
        .uri("http://upstream/dav")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    response.into_body().collect().await.unwrap();
    let span = &recorder.named("llm_client_request")[0];
    assert_eq!(field(span, "http.request.method"), "PROPFIND");
    assert_eq!(field(span, "otel.name"), "PROPFIND");
}

/// The completion hook runs once the response body has ended, wherever that is (a server's
/// connection task, outside the request's span): it gets the request's span, so that what it logs
/// (an access-log line, say) names that span as its parent explicitly.
#[tokio::test]
async fn the_completion_hook_can_log_into_the_requests_span() {
    let (recorder, _guard) = Recorder::install();
    let layer = RequestyMetadataLayer::new().on_complete(|done: &Completion<'_>| {
        tracing::info!(parent: &done.span, status = done.status.as_u16(), "access");
    });
    let addr = serve(app(layer)).await;
    call(
        addr,
        "/v1/chat/completions",
        r#"{"model": "gpt-4o", "stream": true, "messages": []}"#,
    )
    .await;
    let spans = recorder.wait_closed(1).await;
    let logged: Vec<_> = spans[0]
        .events
        .iter()
        .filter(|e| e.get("message").map(String::as_str) == Some("access"))
        .collect();
    assert_eq!(logged.len(), 1, "{spans:#?}");
    assert_eq!(logged[0].get("status").map(String::as_str), Some("200"));
}
