//! Other gateways' metadata formats through the server layer, egress mapping through the inject
//! layer, and session reconstruction; an axum server on loopback.

mod support;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Extension, Router};
use requesty_metadata::client::{Gateway, Native};
use requesty_metadata::dialects::Sources;
use requesty_metadata::{Limits, RequestMetadata, RequestyMetadataLayer};
use serde_json::{json, Value};
use support::{client, serve, Recorder};

/// Echoes the body and reports the metadata and header names it saw.
async fn echo(
    meta: Option<Extension<RequestMetadata>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = meta.map(|Extension(m)| serde_json::to_string(&m).unwrap());
    let names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(
        "x-seen-metadata",
        HeaderValue::from_str(&seen.unwrap_or_default()).unwrap(),
    );
    h.insert(
        "x-seen-headers",
        HeaderValue::from_str(&names.join(",")).unwrap(),
    );
    response
}

async fn server(layer: RequestyMetadataLayer) -> std::net::SocketAddr {
    serve(Router::new().route("/v1/{*rest}", any(echo)).layer(layer)).await
}

struct Seen {
    metadata: Option<RequestMetadata>,
    headers: String,
    body: Bytes,
}

async fn post(addr: std::net::SocketAddr, headers: &[(&str, &str)], body: &str) -> Seen {
    let mut request = client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "{body}");
    let raw = response.headers()["x-seen-metadata"]
        .to_str()
        .unwrap()
        .to_owned();
    let headers = response.headers()["x-seen-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    Seen {
        metadata: (!raw.is_empty()).then(|| serde_json::from_str(&raw).unwrap()),
        headers,
        body: response.bytes().await.unwrap(),
    }
}

fn all() -> RequestyMetadataLayer {
    RequestyMetadataLayer::new().sources(Sources::all())
}

#[tokio::test]
async fn helicone_headers() {
    let (_r, _g) = Recorder::install();
    let addr = server(all()).await;
    // As Helicone's docs show them: user, session (id, path, name) and custom properties.
    let seen = post(
        addr,
        &[
            ("Helicone-Auth", "Bearer sk-helicone"),
            ("Helicone-User-Id", "alice@example.com"),
            (
                "Helicone-Session-Id",
                "550e8400-e29b-41d4-a716-446655440000",
            ),
            ("Helicone-Session-Path", "/abstract/outline"),
            ("Helicone-Session-Name", "Course Plan"),
            ("Helicone-Property-Environment", "staging"),
            ("Helicone-Property-App", "mobile"),
        ],
        r#"{"model":"gpt-4o","messages":[]}"#,
    )
    .await;
    let meta = seen.metadata.unwrap();
    assert_eq!(meta.user_id.as_deref(), Some("alice@example.com"));
    assert_eq!(
        meta.trace_id.as_deref(),
        Some("550e8400-e29b-41d4-a716-446655440000")
    );
    assert_eq!(meta.extra["session_path"], "/abstract/outline");
    assert_eq!(meta.extra["session_name"], "Course Plan");
    assert_eq!(meta.extra["environment"], "staging");
    assert_eq!(meta.extra["app"], "mobile");
    // The metadata headers are gone; the gateway's own credentials are not ours to drop.
    assert_eq!(
        seen.headers
            .split(',')
            .filter(|h| h.starts_with("helicone-"))
            .collect::<Vec<_>>(),
        ["helicone-auth"]
    );
}

#[tokio::test]
async fn litellm_body_and_headers() {
    let (_r, _g) = Recorder::install();
    let addr = server(all()).await;
    // LiteLLM's proxy docs: `metadata` in the body with tags and trace ids.
    let body = r#"{"model":"gpt-4o","messages":[],"metadata":{"tags":["jobID:214590dsff09fds","taskName:run_page_classification"],"trace_id":"trace-lite","trace_user_id":"user-lite","generation_name":"ishaan-test-generation"}}"#;
    let seen = post(addr, &[], body).await;
    let meta = seen.metadata.unwrap();
    assert_eq!(
        meta.tags,
        ["jobID:214590dsff09fds", "taskName:run_page_classification"]
    );
    assert_eq!(meta.trace_id.as_deref(), Some("trace-lite"));
    assert_eq!(meta.user_id.as_deref(), Some("user-lite"));
    assert_eq!(meta.extra["generation_name"], "ishaan-test-generation");
    assert_eq!(
        seen.body,
        body.as_bytes(),
        "`metadata` is OpenAI's own field: never removed"
    );

    let seen = post(
        addr,
        &[
            ("x-litellm-tags", "team:a, feature:b"),
            ("x-litellm-trace-id", "lt-1"),
            ("x-litellm-end-user-id", "end-user"),
        ],
        r#"{"model":"gpt-4o"}"#,
    )
    .await;
    let meta = seen.metadata.unwrap();
    assert_eq!(meta.tags, ["team:a", "feature:b"]);
    assert_eq!(meta.trace_id.as_deref(), Some("lt-1"));
    assert_eq!(meta.user_id.as_deref(), Some("end-user"));
    assert!(!seen.headers.contains("x-litellm"), "{}", seen.headers);
}

#[tokio::test]
async fn portkey_metadata_header() {
    let (recorder, _g) = Recorder::install();
    let addr = server(all()).await;
    let seen = post(
        addr,
        &[
            ("x-portkey-api-key", "pk"),
            (
                "x-portkey-metadata",
                r#"{"_user":"user_123","environment":"production","session_id":"s-9"}"#,
            ),
        ],
        r#"{"model":"gpt-4o"}"#,
    )
    .await;
    let meta = seen.metadata.unwrap();
    assert_eq!(meta.user_id.as_deref(), Some("user_123"));
    assert_eq!(meta.extra["environment"], "production");
    assert_eq!(meta.extra["session_id"], "s-9");
    assert!(seen.headers.contains("x-portkey-api-key"));
    assert!(!seen.headers.contains("x-portkey-metadata"));

    // Not a JSON object (a `key=value` list, as clients send): not read, as Portkey itself passes
    // over it, and removed all the same; the request goes on, with a warning naming the header in
    // its span, not silently.
    let seen = post(
        addr,
        &[
            ("x-portkey-metadata", "operation=extract,model=gpt-4o"),
            ("x-portkey-trace-id", "pk-trace"),
        ],
        r#"{"model":"gpt-4o"}"#,
    )
    .await;
    let meta = seen.metadata.unwrap();
    assert_eq!(meta.trace_id.as_deref(), Some("pk-trace"));
    assert!(meta.extra.is_empty(), "{meta:?}");
    assert!(!seen.headers.contains("x-portkey-metadata"));
    // The same for a request without a JSON body, where the header was all the metadata.
    let response = client()
        .get(format!("http://{addr}/v1/models"))
        .header("x-portkey-metadata", "not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-seen-metadata"], "");
    let spans = recorder.wait_closed(3).await;
    let warned: Vec<_> = spans
        .iter()
        .flat_map(|s| &s.events)
        .filter(|e| e.get("header").map(String::as_str) == Some("x-portkey-metadata"))
        .collect();
    assert_eq!(warned.len(), 2, "{spans:#?}");
    assert!(
        warned.iter().all(|w| w["message"].contains("not read")),
        "{warned:?}"
    );
}

#[tokio::test]
async fn openrouter_body_and_header_and_native_user() {
    let (_r, _g) = Recorder::install();
    let addr = server(all()).await;
    let body = r#"{"model":"openai/gpt-4o","messages":[],"user":"or-user","session_id":"or-session","trace":{"trace_id":"or-trace","trace_name":"Research","span_name":"search"}}"#;
    let seen = post(addr, &[], body).await;
    let meta = seen.metadata.unwrap();
    assert_eq!(
        meta.trace_id.as_deref(),
        Some("or-trace"),
        "trace.trace_id before session_id"
    );
    assert_eq!(meta.user_id.as_deref(), Some("or-user"));
    assert_eq!(meta.extra["trace_name"], "Research");
    assert_eq!(meta.extra["span_name"], "search");
    assert_eq!(
        seen.body,
        body.as_bytes(),
        "provider fields stay in the body"
    );

    let seen = post(
        addr,
        &[("x-session-id", "hdr-session")],
        r#"{"session_id":"body-session"}"#,
    )
    .await;
    assert_eq!(
        seen.metadata.unwrap().trace_id.as_deref(),
        Some("body-session")
    );
    let seen = post(addr, &[("x-session-id", "hdr-session")], r#"{"model":"m"}"#).await;
    assert_eq!(
        seen.metadata.unwrap().trace_id.as_deref(),
        Some("hdr-session")
    );
    assert!(!seen.headers.contains("x-session-id"));
}

#[tokio::test]
async fn conflicts_resolve_by_precedence_and_tags_unite() {
    let (_r, _g) = Recorder::install();
    let addr = server(all()).await;
    let body = r#"{"requesty":{"tags":["r"]},"user":"native-user","metadata":{"tags":["lite"],"trace_id":"lite-trace"},"messages":[]}"#;
    let seen = post(
        addr,
        &[
            ("x-requesty-user-id", "requesty-user"),
            ("helicone-session-id", "helicone-session"),
            ("helicone-user-id", "helicone-user"),
            ("x-litellm-tags", "lite-hdr"),
        ],
        body,
    )
    .await;
    let meta = seen.metadata.unwrap();
    // Requesty body, Requesty headers, other dialects' body, their headers, native `user`.
    assert_eq!(meta.user_id.as_deref(), Some("requesty-user"));
    assert_eq!(meta.trace_id.as_deref(), Some("lite-trace"));
    assert_eq!(meta.tags, ["r", "lite", "lite-hdr"]);
    // Only the Requesty member is stripped.
    let stripped: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        stripped,
        json!({"user":"native-user","metadata":{"tags":["lite"],"trace_id":"lite-trace"},"messages":[]})
    );
}

#[tokio::test]
async fn sources_that_are_off_are_not_read_or_stripped() {
    let (_r, _g) = Recorder::install();
    let addr = server(RequestyMetadataLayer::new()).await;
    let seen = post(
        addr,
        &[("helicone-user-id", "h")],
        r#"{"user":"u","metadata":{"tags":["t"]}}"#,
    )
    .await;
    assert!(seen.metadata.is_none());
    assert!(seen.headers.contains("helicone-user-id"));

    // Requesty off: its member and headers pass through unread, even an invalid one.
    let addr = server(RequestyMetadataLayer::new().sources(Sources::all().requesty(false))).await;
    let body = r#"{"requesty":{"tags":"not an array"},"user":"u"}"#;
    let seen = post(addr, &[("x-requesty-trace-id", "t")], body).await;
    assert_eq!(seen.body, body.as_bytes());
    assert!(seen.headers.contains("x-requesty-trace-id"));
    assert_eq!(seen.metadata.unwrap(), RequestMetadata::new().user_id("u"));
    // Two members too: a second one is an error only to a reader of the member.
    let body = r#"{"requesty":{},"Requesty":{},"user":"u"}"#;
    let seen = post(addr, &[], body).await;
    assert_eq!(seen.body, body.as_bytes());
    assert_eq!(seen.metadata.unwrap(), RequestMetadata::new().user_id("u"));
}

fn chat(system: &str, turns: &[(&str, &str)]) -> String {
    let mut messages = vec![json!({"role": "system", "content": system})];
    for (role, content) in turns {
        messages.push(json!({"role": role, "content": content}));
    }
    json!({"model": "gpt-4o", "messages": messages}).to_string()
}

#[tokio::test]
async fn sessions_are_reconstructed_from_the_conversation_opening() {
    let (recorder, _g) = Recorder::install();
    let addr = server(RequestyMetadataLayer::new().reconstruct_sessions(true)).await;
    let first = [("user", "Plan a trip to Lisbon")];
    let second = [
        ("user", "Plan a trip to Lisbon"),
        ("assistant", "Day 1: Alfama."),
        ("user", "And day 2?"),
    ];
    let third = [
        ("user", "Plan a trip to Lisbon"),
        ("assistant", "Day 1: Alfama."),
        ("user", "And day 2?"),
        ("assistant", "Belem."),
        ("user", "Restaurants?"),
    ];
    let mut ids = Vec::new();
    for turns in [&first[..], &second[..], &third[..]] {
        let seen = post(addr, &[], &chat("You are a travel agent.", turns)).await;
        ids.push(seen.metadata.unwrap().trace_id.unwrap());
    }
    assert!(ids[0].starts_with("conv_"));
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");

    let other = post(
        addr,
        &[],
        &chat(
            "You are a travel agent.",
            &[("user", "Plan a trip to Porto")],
        ),
    )
    .await;
    assert_ne!(other.metadata.unwrap().trace_id.unwrap(), ids[0]);
    let other_system = post(addr, &[], &chat("You are a poet.", &first)).await;
    assert_ne!(other_system.metadata.unwrap().trace_id.unwrap(), ids[0]);

    // An explicit trace id wins; the spans carry the conversation id.
    let body = r#"{"messages":[{"role":"user","content":"x"}],"requesty":{"trace_id":"explicit"}}"#;
    assert_eq!(
        post(addr, &[], body)
            .await
            .metadata
            .unwrap()
            .trace_id
            .as_deref(),
        Some("explicit")
    );
    let spans = recorder.wait_closed(6).await;
    assert_eq!(
        spans[0].field("gen_ai.conversation.id"),
        Some(ids[0].as_str())
    );
}

#[tokio::test]
async fn egress_writes_provider_fields_and_other_gateways_headers() {
    use http_body_util::BodyExt;
    use hyper_util::rt::TokioExecutor;
    use tower::{ServiceBuilder, ServiceExt};

    let (_r, _g) = Recorder::install();
    // A bare echo server: the wire form as sent.
    let addr = serve(Router::new().route("/v1/{*rest}", any(echo))).await;
    let hyper = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let send = |layer: requesty_metadata::InjectMetadataLayer, body: &'static str| {
        let service = ServiceBuilder::new().layer(layer).service(hyper.clone());
        let request = http::Request::post(format!("http://{addr}/v1/messages"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(Bytes::from_static(
                body.as_bytes(),
            )))
            .unwrap();
        async move {
            let response = service.oneshot(request).await.unwrap();
            let headers = response.headers()["x-seen-headers"]
                .to_str()
                .unwrap()
                .to_owned();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (headers, serde_json::from_slice::<Value>(&body).unwrap())
        }
    };
    let defaults = RequestMetadata::new()
        .user_id("user-42")
        .trace_id("wf")
        .extra("team", "infra");

    let layer = RequestyMetadataLayer::inject(defaults.clone()).provider_native(Native::OpenAi);
    let (_, body) = send(layer, r#"{"model":"gpt-4o"}"#).await;
    assert_eq!(body["safety_identifier"], "user-42");
    assert_eq!(body["requesty"]["user_id"], "user-42");

    let layer = RequestyMetadataLayer::inject(defaults.clone())
        .provider_native(Native::OpenAi)
        .hash_user_ids("key");
    let (_, body) = send(layer, r#"{"model":"gpt-4o"}"#).await;
    let hashed = body["safety_identifier"].as_str().unwrap();
    assert!(hashed.len() <= 64 && hashed != "user-42");

    let layer = RequestyMetadataLayer::inject(defaults.clone())
        .provider_native(Native::Anthropic)
        .drop_fields([requesty_metadata::client::Field::UserId]);
    let (_, body) = send(layer, r#"{"model":"claude","metadata":{"x":1}}"#).await;
    assert!(body.get("safety_identifier").is_none());
    assert!(
        body["metadata"].get("user_id").is_none(),
        "the boundary applies to native fields too"
    );

    let layer = RequestyMetadataLayer::inject(defaults.clone()).provider_native(Native::Anthropic);
    let (_, body) = send(layer, r#"{"model":"claude","metadata":{"x":1}}"#).await;
    assert_eq!(body["metadata"], json!({"user_id": "user-42", "x": 1}));

    let layer = RequestyMetadataLayer::inject(defaults.clone())
        .gateway_headers(Gateway::Helicone)
        .gateway_headers(Gateway::Portkey);
    let (headers, _) = send(layer, r#"{"model":"gpt-4o"}"#).await;
    for name in [
        "helicone-user-id",
        "helicone-session-id",
        "helicone-property-team",
        "x-portkey-metadata",
        "x-portkey-trace-id",
    ] {
        assert!(headers.contains(name), "{name} in {headers}");
    }
}

#[tokio::test]
async fn foreign_fields_of_other_types_are_skipped_not_refused() {
    let (_r, _g) = Recorder::install();
    let addr = server(all()).await;
    // OpenAI's own `metadata` holds strings: `tags` here is not LiteLLM's list.
    let body = r#"{"metadata":{"tags":"a,b","trace_id":"t-1","trace_user_id":7,"generation_name":{"x":[1]}},"trace":[1],"session_id":5,"user":null}"#;
    let seen = post(addr, &[], body).await;
    let meta = seen.metadata.unwrap();
    assert_eq!(meta, RequestMetadata::new().trace_id("t-1"));
    assert_eq!(seen.body, body.as_bytes());
    let body = r#"{"metadata":{"tags":["a",1,null,"b","a"]}}"#;
    assert_eq!(
        post(addr, &[], body).await.metadata.unwrap().tags,
        ["a", "b"]
    );
}

/// Another format's body fields are the provider's or that gateway's, and stay in the body: what
/// does not fit the limits is not taken, with a warning in the request's span, and the request goes
/// on. Reading them costs no more for a huge list than for one at the limit.
#[tokio::test]
async fn foreign_body_fields_beyond_the_limits_are_left_out_not_refused() {
    let (recorder, _g) = Recorder::install();
    let addr = server(all()).await;
    let tags: Vec<String> = (0..20_000).map(|i| format!("\"t{i}\"")).collect();
    let long = "x".repeat(300);
    let body = format!(
        r#"{{"model":"m","metadata":{{"tags":[{}],"trace_id":"{long}","session_id":"s-1"}},"user":"{long}"}}"#,
        tags.join(",")
    );
    let seen = post(addr, &[], &body).await;
    let meta = seen.metadata.unwrap();
    let first: Vec<String> = (0..64).map(|i| format!("t{i}")).collect();
    assert_eq!(meta.tags, first, "the first tags, up to the limit");
    assert_eq!(meta.trace_id.as_deref(), Some("s-1"), "the id that fits");
    assert_eq!(
        meta.user_id, None,
        "a `user` longer than an id is not taken"
    );
    assert_eq!(seen.body, body.as_bytes(), "the fields stay, byte for byte");
    let span = &recorder.wait_closed(1).await[0];
    let warned: Vec<&str> = span
        .events
        .iter()
        .filter_map(|event| event.get("field").map(String::as_str))
        .collect();
    assert_eq!(warned, ["metadata.tags", "metadata.trace_id", "user"]);

    // A native `user` that is a long list is skipped, not read item by item.
    let users: Vec<String> = (0..20_000).map(|i| format!("\"u{i}\"")).collect();
    let body = format!(r#"{{"model":"m","user":[{}]}}"#, users.join(","));
    assert_eq!(post(addr, &[], &body).await.metadata, None);
}

/// LiteLLM's JSON spend-logs header fills `extra` and is removed like LiteLLM's other headers.
#[tokio::test]
async fn litellm_spend_logs_metadata_header() {
    let (_r, _g) = Recorder::install();
    let addr = server(all()).await;
    let seen = post(
        addr,
        &[
            ("x-litellm-trace-id", "t1"),
            (
                "x-litellm-spend-logs-metadata",
                r#"{"hello":"world","n":1}"#,
            ),
        ],
        r#"{"model":"m"}"#,
    )
    .await;
    let meta = seen.metadata.unwrap();
    assert_eq!(meta.extra["hello"], "world");
    assert_eq!(meta.extra["n"], 1);
    assert!(!seen.headers.contains("x-litellm"), "{}", seen.headers);
}

/// Each foreign body field may fit the limits while all of the metadata together does not: then the
/// request goes on without the foreign body fields (with a warning naming them), never a `400`.
#[tokio::test]
async fn foreign_body_fields_never_push_the_whole_over_a_limit() {
    let (recorder, _g) = Recorder::install();
    let addr = server(all()).await;
    // `requesty.extra` of 16,361 bytes of JSON fits alone; OpenRouter's `trace_name` would not.
    let note = "x".repeat(16_350);
    let body = format!(
        r#"{{"model":"m","requesty":{{"extra":{{"note":"{note}"}}}},"trace":{{"trace_name":"nightly-eval"}}}}"#
    );
    let meta = post(addr, &[], &body).await.metadata.unwrap();
    assert_eq!(
        meta.extra.len(),
        1,
        "the member's extra, without trace_name"
    );
    // 60 LiteLLM body tags fit alone; with 8 header tags they would be 68 of 64.
    let tags: Vec<String> = (0..60).map(|i| format!("\"job:{i}\"")).collect();
    let body = format!(
        r#"{{"model":"m","metadata":{{"tags":[{}]}}}}"#,
        tags.join(",")
    );
    let headers = [("x-litellm-tags", "h1,h2,h3,h4,h5,h6,h7,h8")];
    let meta = post(addr, &headers, &body).await.metadata.unwrap();
    assert_eq!(meta.tags, ["h1", "h2", "h3", "h4", "h5", "h6", "h7", "h8"]);
    let spans = recorder.wait_closed(2).await;
    for (span, field) in spans.iter().zip(["trace", "metadata"]) {
        let warned: Vec<&str> = span
            .events
            .iter()
            .filter_map(|event| event.get("field").map(String::as_str))
            .collect();
        assert_eq!(warned, [field]);
    }
    // Over a limit without them, the request is refused as before.
    let headers: Vec<(&str, String)> = vec![(
        "x-litellm-tags",
        (0..70)
            .map(|i| format!("h{i}"))
            .collect::<Vec<_>>()
            .join(","),
    )];
    let response = client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header(headers[0].0, headers[0].1.as_str())
        .body(r#"{"model":"m","user":"u"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

/// Leaving the other formats' body fields out keeps the native `user`: one id, checked on its own,
/// it cannot be what pushed the whole over a limit.
#[tokio::test]
async fn the_fallback_without_foreign_body_fields_keeps_the_native_user() {
    let (recorder, _g) = Recorder::install();
    let addr = server(all()).await;
    let tags: Vec<String> = (0..60).map(|i| format!("\"job:{i}\"")).collect();
    let body = format!(
        r#"{{"model":"m","user":"alice","metadata":{{"tags":[{}]}}}}"#,
        tags.join(",")
    );
    let headers = [("x-litellm-tags", "h1,h2,h3,h4,h5,h6,h7,h8")];
    let meta = post(addr, &headers, &body).await.metadata.unwrap();
    assert_eq!(meta.tags, ["h1", "h2", "h3", "h4", "h5", "h6", "h7", "h8"]);
    assert_eq!(meta.user_id.as_deref(), Some("alice"));
    let spans = recorder.wait_closed(1).await;
    let warned: Vec<&str> = spans[0]
        .events
        .iter()
        .filter_map(|event| event.get("field").map(String::as_str))
        .collect();
    assert_eq!(warned, ["metadata"]);
}

// ---------------------------------------------------------------------------------------------
// Round trips of this crate's own forms, and what each gateway's form carries

/// A bare server (no layer) answering with every header it received, as a JSON list of pairs.
async fn header_echo() -> std::net::SocketAddr {
    async fn handler(headers: HeaderMap) -> axum::Json<Vec<(String, String)>> {
        axum::Json(
            headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
        )
    }
    serve(Router::new().route("/v1/{*rest}", any(handler))).await
}

/// Sends a request through `layer` wrapped around a hyper client, to `addr`; returns the status,
/// the response headers and body.
async fn through(
    layer: requesty_metadata::InjectMetadataLayer,
    addr: std::net::SocketAddr,
    content_type: Option<&str>,
    body: &'static str,
) -> (u16, HeaderMap, Bytes) {
    use http_body_util::BodyExt;
    use hyper_util::rt::TokioExecutor;
    use tower::{ServiceBuilder, ServiceExt};
    let hyper = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let service = ServiceBuilder::new().layer(layer).service(hyper);
    let mut request = http::Request::post(format!("http://{addr}/v1/chat/completions"));
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    let request = request
        .body(http_body_util::Full::new(Bytes::from_static(
            body.as_bytes(),
        )))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

fn seen_metadata(headers: &HeaderMap) -> Option<RequestMetadata> {
    // UTF-8, not only ASCII: `to_str` would refuse it.
    let raw = std::str::from_utf8(headers["x-seen-metadata"].as_bytes()).unwrap();
    (!raw.is_empty()).then(|| serde_json::from_str(raw).unwrap())
}

/// The client's Portkey form (`gateway_headers(Gateway::Portkey)`) read back by the server's
/// Portkey source: the trace id and the tags it wrote must come back as the trace id and tags.
#[tokio::test]
async fn portkey_form_round_trips_trace_id_and_tags() {
    let (_r, _g) = Recorder::install();
    // The server reads Portkey's form alone (Requesty's headers, also sent, are not read).
    let addr = server(
        RequestyMetadataLayer::new()
            .sources(Sources::requesty_only().requesty(false).portkey(true)),
    )
    .await;
    let sent = RequestMetadata::new()
        .user_id("user-42")
        .trace_id("wf-1")
        .tag("a")
        .tag("b")
        .extra("city", "Zürich 🙂");
    let layer = RequestyMetadataLayer::inject(sent).gateway_headers(Gateway::Portkey);
    let (status, headers, _) = through(layer, addr, None, "").await;
    assert_eq!(status, 200);
    let meta = seen_metadata(&headers).unwrap();
    assert_eq!(meta.user_id.as_deref(), Some("user-42"));
    // Written escaped, read back as sent.
    assert_eq!(meta.extra["city"], "Zürich 🙂", "{meta:?}");
    assert_eq!(
        meta.trace_id.as_deref(),
        Some("wf-1"),
        "the trace id the client wrote in Portkey's form: {meta:?}"
    );
    assert_eq!(meta.tags, ["a", "b"], "the tags the client wrote: {meta:?}");
}

/// `x-portkey-trace-id` is Portkey's trace header (the client side writes it): with the Portkey
/// source on it is read as the trace id and removed like the source's other metadata header.
#[tokio::test]
async fn portkey_trace_header_is_read_and_removed() {
    let (_r, _g) = Recorder::install();
    let addr = server(all()).await;
    let seen = post(
        addr,
        &[("x-portkey-trace-id", "pk-trace")],
        r#"{"model":"gpt-4o"}"#,
    )
    .await;
    assert!(
        !seen.headers.contains("x-portkey-trace-id"),
        "Portkey's trace header reached the inner service: {}",
        seen.headers
    );
    assert_eq!(
        seen.metadata.and_then(|m| m.trace_id).as_deref(),
        Some("pk-trace")
    );
}

/// The client's Helicone form writes tags as `Helicone-Property-Tags`; the server's Helicone
/// source reads them back as tags, not as an `extra` string, and values past ASCII, which the form
/// writes in Latin-1, as they were.
#[tokio::test]
async fn helicone_form_round_trips_tags() {
    let (_r, _g) = Recorder::install();
    let addr = server(
        RequestyMetadataLayer::new()
            .sources(Sources::requesty_only().requesty(false).helicone(true)),
    )
    .await;
    // Values past ASCII travel in Latin-1, as Helicone reads them, and read back the same.
    let sent = RequestMetadata::new()
        .trace_id("wf-1")
        .user_id("j\u{fc}rgen")
        .tag("a")
        .tag("caf\u{e9}")
        .extra("city", "Z\u{fc}rich");
    let layer = RequestyMetadataLayer::inject(sent).gateway_headers(Gateway::Helicone);
    let (status, headers, _) = through(layer, addr, None, "").await;
    assert_eq!(status, 200);
    let meta = seen_metadata(&headers).unwrap();
    assert_eq!(meta.trace_id.as_deref(), Some("wf-1"));
    assert_eq!(meta.user_id.as_deref(), Some("j\u{fc}rgen"));
    assert_eq!(meta.tags, ["a", "caf\u{e9}"], "{meta:?}");
    assert_eq!(meta.extra["city"], "Z\u{fc}rich");
    assert!(meta.extra.get("tags").is_none(), "{meta:?}");
}

/// Portkey's form holds values of at most 128 characters: a longer user id must not arrive as a
/// different (cut) id. "What arrives is what was sent": left out (or hashed), never altered.
#[tokio::test]
async fn portkey_form_never_sends_a_cut_user_id() {
    let (_r, _g) = Recorder::install();
    let addr = header_echo().await;
    let long_user = format!("tenant-7/{}", "u".repeat(150));
    let meta = RequestMetadata::new()
        .user_id(long_user)
        .extra("team", "infra");
    let layer = RequestyMetadataLayer::inject(meta).gateway_headers(Gateway::Portkey);
    let (status, _, body) = through(layer, addr, None, "").await;
    assert_eq!(status, 200);
    let seen: Vec<(String, String)> = serde_json::from_slice(&body).unwrap();
    let portkey = seen
        .iter()
        .find(|(n, _)| n == "x-portkey-metadata")
        .map(|(_, v)| serde_json::from_str::<Value>(v).unwrap());
    // Left out whole (with a warning), the rest sent.
    assert_eq!(portkey, Some(json!({"team": "infra"})));
}

/// The client's provider-native fields (`provider_native`: OpenAI's `safety_identifier`,
/// Anthropic's `metadata.user_id`) read back by the server's native source.
#[tokio::test]
async fn native_fields_round_trip() {
    let (_r, _g) = Recorder::install();
    let addr = server(
        RequestyMetadataLayer::new()
            .sources(Sources::requesty_only().requesty(false).native_user(true)),
    )
    .await;
    let cases = [
        (
            Native::OpenAi,
            r#"{"model":"gpt-4o"}"#,
            "/safety_identifier",
        ),
        (
            Native::Anthropic,
            r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#,
            "/metadata/user_id",
        ),
    ];
    for (native, sent, field) in cases {
        let layer = RequestyMetadataLayer::inject(RequestMetadata::new().user_id("user-42"))
            .provider_native(native)
            .carrier(requesty_metadata::client::Carrier::Headers);
        let (status, headers, body) = through(layer, addr, Some("application/json"), sent).await;
        assert_eq!(status, 200);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body.pointer(field), Some(&json!("user-42")), "{native:?}");
        let meta = seen_metadata(&headers);
        assert_eq!(
            meta.and_then(|m| m.user_id).as_deref(),
            Some("user-42"),
            "the user id the client wrote in {native:?}'s own field"
        );
    }
}

/// An empty id in another format's body field carries nothing (as an empty header does): it must
/// not win over a real id from a lower-ranked source.
#[tokio::test]
async fn an_empty_foreign_body_id_does_not_beat_a_real_header_id() {
    let (_r, _g) = Recorder::install();
    let addr = server(all()).await;
    let seen = post(
        addr,
        &[
            ("helicone-user-id", "alice"),
            ("x-litellm-trace-id", "lt-1"),
        ],
        r#"{"model":"m","metadata":{"trace_user_id":"","trace_id":""}}"#,
    )
    .await;
    let meta = seen.metadata.unwrap();
    assert_eq!(meta.user_id.as_deref(), Some("alice"), "{meta:?}");
    assert_eq!(meta.trace_id.as_deref(), Some("lt-1"), "{meta:?}");
    // Portkey's `_user: ""` likewise hides the native `user`.
    let seen = post(
        addr,
        &[("x-portkey-metadata", r#"{"_user":""}"#)],
        r#"{"model":"m","user":"native-user"}"#,
    )
    .await;
    assert_eq!(
        seen.metadata.unwrap().user_id.as_deref(),
        Some("native-user")
    );
}

/// An empty id in the Requesty member carries nothing either: it leaves the field to the other
/// formats' body fields and to the native `user`, which rank below it.
#[tokio::test]
async fn an_empty_member_id_leaves_the_field_to_the_other_body_fields() {
    let (_r, _g) = Recorder::install();
    let addr = server(all()).await;
    let seen = post(
        addr,
        &[],
        r#"{"model":"m","requesty":{"user_id":"","trace_id":""},
            "metadata":{"trace_id":"lite-trace"},"user":"native-user"}"#,
    )
    .await;
    let meta = seen.metadata.unwrap();
    assert_eq!(meta.user_id.as_deref(), Some("native-user"), "{meta:?}");
    assert_eq!(meta.trace_id.as_deref(), Some("lite-trace"), "{meta:?}");
    let seen = post(
        addr,
        &[],
        r#"{"model":"m","requesty":{"trace_id":""},"session_id":"or-session"}"#,
    )
    .await;
    let meta = seen.metadata.unwrap();
    assert_eq!(meta.trace_id.as_deref(), Some("or-session"), "{meta:?}");
}

/// An empty tag is no tag, wherever it comes from: it takes no place under the tag limit, so it
/// neither keeps another source's tag out nor gets the request refused.
#[tokio::test]
async fn an_empty_tag_takes_no_place_under_the_limit() {
    let (_r, _g) = Recorder::install();
    let addr = server(all().limits(Limits::default().max_tags(2))).await;
    for (headers, body) in [
        (
            &[][..],
            r#"{"model":"m","requesty":{"tags":["","a"]},"metadata":{"tags":["x"]}}"#,
        ),
        (
            &[][..],
            r#"{"model":"m","requesty":{"tags":["a"]},"metadata":{"tags":["","x"]}}"#,
        ),
        (
            &[("x-requesty-tags", "x")][..],
            r#"{"model":"m","requesty":{"tags":["","a"]}}"#,
        ),
    ] {
        let meta = post(addr, headers, body).await.metadata.unwrap();
        assert_eq!(meta.tags, ["a", "x"], "{body}");
    }
}

/// A dialect header's id that wins and is too long gets the request refused naming that header
/// (a gateway's own name for it, not `requesty.user_id`), as a tag too long in a dialect's tags
/// header does.
#[tokio::test]
async fn an_overlong_dialect_header_value_that_wins_is_a_400_naming_the_header() {
    let (_r, _g) = Recorder::install();
    let addr = server(all()).await;
    let long = "s".repeat(300);
    let portkey = format!(r#"{{"_user":"{long}"}}"#);
    let tags = format!("a,{long}");
    for (header, value, code) in [
        ("helicone-user-id", long.as_str(), "metadata_too_long"),
        ("x-litellm-end-user-id", &long, "metadata_too_long"),
        ("x-litellm-trace-id", &long, "metadata_too_long"),
        ("x-session-id", &long, "metadata_too_long"),
        ("x-portkey-trace-id", &long, "metadata_too_long"),
        ("x-portkey-metadata", &portkey, "metadata_too_long"),
        ("helicone-property-tags", &tags, "metadata_too_long"),
        ("x-litellm-tags", &tags, "metadata_too_long"),
    ] {
        let response = client()
            .post(format!("http://{addr}/v1/chat/completions"))
            .header("content-type", "application/json")
            .header(header, value)
            .body(r#"{"model":"m"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{header}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["param"], header, "{error}");
        assert_eq!(error["error"]["code"], code, "{error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains("300 bytes"), "{message}");
    }
}

/// A tag too long is named by the header that carried it: another tags header holding a tag of
/// exactly the limit's length, which is carried, takes none of the blame.
#[tokio::test]
async fn a_tag_at_the_limit_in_one_header_does_not_take_the_blame_for_a_longer_one() {
    let (_r, _g) = Recorder::install();
    let addr = server(all()).await;
    let response = client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("x-requesty-tags", "r".repeat(256))
        .header("helicone-property-tags", "h".repeat(257))
        .body(r#"{"model":"m"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["param"], "helicone-property-tags", "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("257 bytes"), "{message}");
}

/// A dialect header's id that loses to a higher-ranked source (here the `requesty` member) is not
/// the request's id: it does not get the request refused, however long.
#[tokio::test]
async fn an_overlong_dialect_header_id_that_loses_does_not_refuse_the_request() {
    let (_r, _g) = Recorder::install();
    let addr = server(all()).await;
    let long = "s".repeat(300);
    for header in ["helicone-user-id", "x-session-id", "x-portkey-trace-id"] {
        let response = client()
            .post(format!("http://{addr}/v1/chat/completions"))
            .header("content-type", "application/json")
            .header(header, long.as_str())
            .body(r#"{"requesty":{"user_id":"u","trace_id":"t"},"model":"m"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "{header}: {}",
            response.text().await.unwrap()
        );
    }
}

/// Tags are united in the documented order of the header sources (Helicone before LiteLLM),
/// whatever order the headers arrive in.
#[tokio::test]
async fn header_tags_unite_helicone_before_litellm() {
    let (_r, _g) = Recorder::install();
    let addr = server(all()).await;
    let seen = post(
        addr,
        &[
            ("x-litellm-tags", "lite"),
            ("helicone-property-tags", "heli"),
        ],
        r#"{"model":"m"}"#,
    )
    .await;
    assert_eq!(seen.metadata.unwrap().tags, ["heli", "lite"]);
}

/// `drop_all()` "sends no metadata at all, and removes any the request already carries": with
/// Helicone's form on, every Helicone header the caller set that Helicone reads as metadata leaves
/// too (its user, its `Helicone-Property-*`, its session's name and path).
#[tokio::test]
async fn drop_all_with_helicone_form_removes_the_callers_helicone_metadata() {
    let (_r, _g) = Recorder::install();
    let addr = header_echo().await;
    let layer = RequestyMetadataLayer::inject(RequestMetadata::new())
        .drop_all()
        .gateway_headers(Gateway::Helicone);
    use http_body_util::BodyExt;
    use hyper_util::rt::TokioExecutor;
    use tower::{ServiceBuilder, ServiceExt};
    let hyper = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let service = ServiceBuilder::new().layer(layer).service(hyper);
    let callers = [
        ("helicone-user-id", "alice"),
        ("helicone-property-email", "alice@example.com"),
        ("helicone-session-name", "alice-onboarding"),
        ("helicone-session-path", "/alice/step-1"),
    ];
    let mut request = http::Request::post(format!("http://{addr}/v1/chat/completions"));
    for (name, value) in callers {
        request = request.header(name, value);
    }
    let request = request
        .header("helicone-auth", "Bearer key")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let seen: Vec<(String, String)> = serde_json::from_slice(&body).unwrap();
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    for (name, _) in callers {
        assert!(
            !names.contains(&name),
            "{name} left despite drop_all: {names:?}"
        );
    }
    assert!(
        names.contains(&"helicone-auth"),
        "credentials stay: {names:?}"
    );
}

/// An `extra` key named like a core field of the gateway's form (`tags`; Portkey's `_user`) would
/// read back as that field: it is left out of the form (with a warning), the other keys are sent.
#[tokio::test]
async fn an_extra_key_named_like_a_core_field_is_left_out_of_a_gateway_form() {
    let (_r, _g) = Recorder::install();
    for gateway in [Gateway::Helicone, Gateway::Portkey] {
        let sources = match gateway {
            Gateway::Helicone => Sources::requesty_only().requesty(false).helicone(true),
            _ => Sources::requesty_only().requesty(false).portkey(true),
        };
        let addr = server(RequestyMetadataLayer::new().sources(sources)).await;
        let sent = RequestMetadata::new()
            .trace_id("t")
            .extra("tags", "nightly")
            .extra("_user", "someone-else")
            .extra("team", "infra");
        let layer = RequestyMetadataLayer::inject(sent).gateway_headers(gateway);
        let (status, headers, _) = through(layer, addr, None, "").await;
        assert_eq!(status, 200);
        let meta = seen_metadata(&headers).unwrap();
        assert!(meta.tags.is_empty(), "{gateway:?}: {meta:?}");
        assert_eq!(meta.user_id, None, "{gateway:?}: {meta:?}");
        assert_eq!(meta.extra.get("tags"), None, "{gateway:?}: {meta:?}");
        assert_eq!(meta.extra.get("team"), Some(&json!("infra")), "{gateway:?}");
    }
}

/// Which header a tag count past the limit names: a tags header whose own tags pass it (over all
/// its lines), whatever was counted before it; `requesty.tags` when only the headers together do.
#[tokio::test]
async fn a_tag_count_past_the_limit_names_the_header_whose_own_tags_pass_it() {
    let (_r, _g) = Recorder::install();
    let addr = server(all()).await;
    let tags = |prefix: &str, n: usize| -> String {
        (0..n)
            .map(|i| format!("{prefix}{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    // The limit is 64.
    let cases = [
        // 40 and 40: only together.
        (vec![tags("h", 40)], vec![tags("l", 40)], "requesty.tags"),
        // LiteLLM's 70 alone, though Helicone's 30 were counted first.
        (vec![tags("h", 30)], vec![tags("l", 70)], "x-litellm-tags"),
        // LiteLLM's two lines of 40: one header, 80 tags.
        (
            vec![tags("h", 30)],
            vec![tags("a", 40), tags("b", 40)],
            "x-litellm-tags",
        ),
    ];
    for (helicone, litellm, named) in cases {
        let mut request = client()
            .post(format!("http://{addr}/v1/chat/completions"))
            .header("content-type", "application/json");
        for line in &helicone {
            request = request.header("helicone-property-tags", line);
        }
        for line in &litellm {
            request = request.header("x-litellm-tags", line);
        }
        let response = request.body(r#"{"model":"m"}"#).send().await.unwrap();
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["param"], named, "{error}");
    }
}

/// A request refused for another gateway's tags header still reports what its `X-Requesty-*`
/// headers say, whether they are stripped or kept.
#[tokio::test]
async fn a_request_refused_for_a_dialect_header_keeps_its_requesty_trace_id() {
    use std::sync::{Arc, Mutex};
    use tower::{Layer, ServiceExt};
    let (_r, _g) = Recorder::install();
    let many: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
    let mut got = Vec::new();
    for keep in [true, false] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let hook = seen.clone();
        let service = RequestyMetadataLayer::new()
            .sources(Sources::all())
            .keep_headers(keep)
            .on_complete(move |done| {
                hook.lock()
                    .unwrap()
                    .push(done.metadata.and_then(|m| m.trace_id.clone()))
            })
            .layer(tower::service_fn(
                |_: http::Request<axum::body::Body>| async {
                    Ok::<_, std::convert::Infallible>(
                        http::Response::new(axum::body::Body::empty()),
                    )
                },
            ));
        let request = http::Request::get("/v1/models")
            .header("x-requesty-trace-id", "t-1")
            .header("x-litellm-tags", many.join(","))
            .body(axum::body::Body::empty())
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 400);
        // The report is made as the answer is dropped.
        drop(response);
        got.push((keep, seen.lock().unwrap().clone()));
    }
    assert_eq!(
        got,
        [
            (true, vec![Some("t-1".to_owned())]),
            (false, vec![Some("t-1".to_owned())])
        ]
    );
}

/// With the Requesty source off, `X-Requesty-*` headers are not metadata: neither an accepted
/// request's report nor a refused one's has them.
#[tokio::test]
async fn a_refused_request_reports_no_requesty_headers_when_that_source_is_off() {
    use std::sync::{Arc, Mutex};
    use tower::{Layer, ServiceExt};
    let (_r, _g) = Recorder::install();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hook = seen.clone();
    let service = RequestyMetadataLayer::new()
        .sources(Sources::requesty_only().requesty(false).helicone(true))
        .on_complete(move |done| {
            hook.lock()
                .unwrap()
                .push(done.metadata.and_then(|m| m.trace_id.clone()))
        })
        .layer(tower::service_fn(
            |_: http::Request<axum::body::Body>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::empty()))
            },
        ));
    let many: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
    for (tags, status) in [("a,b", 200), (many.join(",").as_str(), 400)] {
        let request = http::Request::get("/v1/models")
            .header("x-requesty-trace-id", "t-1")
            .header("helicone-property-tags", tags)
            .body(axum::body::Body::empty())
            .unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), status);
        // The report is made as the answer is dropped.
        drop(response);
    }
    // Accepted: no trace id (the source is off). Refused: the same.
    assert_eq!(*seen.lock().unwrap(), [None, None]);
}

/// Anthropic's `metadata.user_id` holds at most 256 characters (its API schema's `maxLength`): a
/// longer user id sent as it is gets the whole call refused with a `400`. Like OpenAI's
/// `safety_identifier`, it goes hashed instead, and one that fits goes as it is.
#[tokio::test]
async fn native_anthropic_user_id_never_passes_anthropics_limit() {
    let (_r, _g) = Recorder::install();
    // A bare echo server: the body as sent.
    let addr = serve(Router::new().route("/v1/{*rest}", any(echo))).await;
    let long_user = format!("tenant-7/{}", "u".repeat(300));
    for (user, sent_as_is) in [(long_user.as_str(), false), ("user-42", true)] {
        let layer = RequestyMetadataLayer::inject(RequestMetadata::new().user_id(user))
            .provider_native(Native::Anthropic)
            .carrier(requesty_metadata::client::Carrier::Headers);
        let (status, _, body) = through(
            layer,
            addr,
            Some("application/json"),
            r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[]}"#,
        )
        .await;
        assert_eq!(status, 200);
        let body: Value = serde_json::from_slice(&body).unwrap();
        let sent = body["metadata"]["user_id"].as_str().unwrap();
        assert!(sent.chars().count() <= 256, "{} characters", sent.len());
        assert_eq!(sent == user, sent_as_is, "{sent}");
    }
}

/// Anthropic's prompt caching, as its docs show it for a conversation: every turn marks the last
/// block of the last message with `cache_control`, so the marker moves on as the conversation
/// grows, and the first user message carries it on the first turn only. Every turn is still the
/// same conversation, with the same `trace_id`; another opening is another conversation.
#[tokio::test]
async fn sessions_survive_anthropics_moving_cache_marker() {
    let (_r, _g) = Recorder::install();
    let addr = server(RequestyMetadataLayer::new().reconstruct_sessions(true)).await;
    let cached = json!({"type": "ephemeral"});
    let system =
        json!([{"type": "text", "text": "You are a travel agent.", "cache_control": cached}]);
    let user = |text: &str, last: bool| {
        let mut block = json!({"type": "text", "text": text});
        if last {
            block["cache_control"] = cached.clone();
        }
        json!({"role": "user", "content": [block]})
    };
    let assistant = |text: &str| json!({"role": "assistant", "content": text});
    let turns = [
        vec![user("Plan a trip to Lisbon", true)],
        vec![
            user("Plan a trip to Lisbon", false),
            assistant("Day 1: Alfama."),
            user("And day 2?", true),
        ],
        vec![
            user("Plan a trip to Lisbon", false),
            assistant("Day 1: Alfama."),
            user("And day 2?", false),
            assistant("Belem."),
            user("Restaurants?", true),
        ],
    ];
    let mut ids = Vec::new();
    for messages in turns {
        let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 1024, "system": system, "messages": messages});
        let seen = post(addr, &[], &body.to_string()).await;
        ids.push(seen.metadata.unwrap().trace_id.unwrap());
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let other = json!({"model": "claude-sonnet-4-5", "max_tokens": 1024, "system": system, "messages": [user("Plan a trip to Porto", true)]});
    let other = post(addr, &[], &other.to_string()).await;
    assert_ne!(other.metadata.unwrap().trace_id.unwrap(), ids[0]);
}

/// The same tags in two gateways' forms are the same tags: the client writing both Helicone's and
/// Portkey's forms sends each tag twice, and the server counts the tags, not how often they were
/// sent. 40 tags are within the limit of 64, however many forms carry them.
#[tokio::test]
async fn the_same_tags_in_two_gateway_forms_count_once() {
    let (_r, _g) = Recorder::install();
    let addr = server(all()).await;
    // Short enough for Portkey's 128 characters, all together.
    let tags: Vec<String> = ('a'..='z').chain('A'..='N').map(String::from).collect();
    let mut sent = RequestMetadata::new().trace_id("wf-1");
    for tag in &tags {
        sent = sent.tag(tag.as_str());
    }
    let layer = RequestyMetadataLayer::inject(sent)
        .gateway_headers(Gateway::Helicone)
        .gateway_headers(Gateway::Portkey);
    let (status, headers, body) = through(layer, addr, None, "").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let meta = seen_metadata(&headers).unwrap();
    assert_eq!(meta.tags, tags);
}

/// The server reads Helicone's `Helicone-Session-Path` and `-Name` into `extra["session_path"]` and
/// `extra["session_name"]`; a request that goes on through Helicone (the metadata propagated to the
/// client's Helicone form) must carry them back in those headers, where Helicone builds its session
/// tree from them, not as custom properties.
#[tokio::test]
async fn helicone_session_path_and_name_go_back_to_their_own_headers() {
    let (_r, _g) = Recorder::install();
    let addr = header_echo().await;
    let meta = RequestMetadata::new()
        .trace_id("550e8400-e29b-41d4-a716-446655440000")
        .extra("session_path", "/abstract/outline")
        .extra("session_name", "Course Plan")
        .extra("environment", "staging");
    let layer = RequestyMetadataLayer::inject(meta).gateway_headers(Gateway::Helicone);
    let (status, _, body) = through(layer, addr, None, "").await;
    assert_eq!(status, 200);
    let seen: Vec<(String, String)> = serde_json::from_slice(&body).unwrap();
    let helicone: Vec<(&str, &str)> = seen
        .iter()
        .filter(|(n, _)| n.starts_with("helicone-"))
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    for want in [
        (
            "helicone-session-id",
            "550e8400-e29b-41d4-a716-446655440000",
        ),
        ("helicone-session-path", "/abstract/outline"),
        ("helicone-session-name", "Course Plan"),
        ("helicone-property-environment", "staging"),
    ] {
        assert!(helicone.contains(&want), "{want:?} in {helicone:?}");
    }
    assert_eq!(helicone.len(), 4, "{helicone:?}");

    // And the server's Helicone source reads them back as they were.
    let addr = server(
        RequestyMetadataLayer::new()
            .sources(Sources::requesty_only().requesty(false).helicone(true)),
    )
    .await;
    let meta = RequestMetadata::new()
        .extra("session_path", "/a/b")
        .extra("session_name", "n");
    let layer = RequestyMetadataLayer::inject(meta.clone()).gateway_headers(Gateway::Helicone);
    let (status, headers, _) = through(layer, addr, None, "").await;
    assert_eq!(status, 200);
    assert_eq!(seen_metadata(&headers), Some(meta));
}

/// Sends a bodiless request carrying `headers` through `layer` to a bare header echo: the headers
/// that arrived, names lowercase.
async fn headers_through(
    layer: requesty_metadata::InjectMetadataLayer,
    headers: &[(&str, &str)],
) -> Vec<(String, String)> {
    use http_body_util::BodyExt;
    use hyper_util::rt::TokioExecutor;
    use tower::{ServiceBuilder, ServiceExt};
    let addr = header_echo().await;
    let hyper = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let service = ServiceBuilder::new().layer(layer).service(hyper);
    let mut request = http::Request::post(format!("http://{addr}/v1/chat/completions"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

/// `drop_all()` removes the metadata headers of every gateway form this crate reads, not only of
/// the forms `gateway_headers` writes: a call to a third party carries none of them. Credentials
/// and other headers of those gateways stay.
#[tokio::test]
async fn drop_all_removes_every_known_gateways_metadata_headers() {
    let (_r, _g) = Recorder::install();
    let carried = [
        ("helicone-user-id", "alice"),
        ("helicone-session-id", "s-1"),
        ("helicone-property-email", "alice@example.com"),
        ("helicone-property-tags", "vip"),
        ("helicone-session-path", "/alice"),
        ("x-portkey-metadata", r#"{"_user":"alice"}"#),
        ("x-portkey-trace-id", "pk-1"),
        ("x-litellm-end-user-id", "alice"),
        ("x-litellm-trace-id", "lt-1"),
        ("x-litellm-tags", "vip"),
        (
            "x-litellm-spend-logs-metadata",
            r#"{"email":"alice@example.com"}"#,
        ),
        ("x-session-id", "or-1"),
        ("helicone_user_id", "alice"),
    ];
    let kept = [("helicone-auth", "Bearer key"), ("x-portkey-api-key", "pk")];
    let all: Vec<_> = carried.iter().chain(&kept).copied().collect();
    for layer in [
        RequestyMetadataLayer::inject(RequestMetadata::new()).drop_all(),
        RequestyMetadataLayer::inject(RequestMetadata::new())
            .drop_all()
            .gateway_headers(Gateway::Portkey),
    ] {
        let seen = headers_through(layer, &all).await;
        let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
        let left: Vec<&str> = carried
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| names.contains(n))
            .collect();
        assert_eq!(left, Vec::<&str>::new(), "left despite drop_all: {names:?}");
        for (name, _) in kept {
            assert!(names.contains(&name), "{name} stays: {names:?}");
        }
    }
}

/// `drop_fields` takes out only the fields dropped: from Portkey's object the keys that carry them,
/// and the one-field headers that carry them, whichever gateway's form they are.
#[tokio::test]
async fn drop_fields_edits_every_known_gateways_metadata_headers() {
    let (_r, _g) = Recorder::install();
    let layer = RequestyMetadataLayer::inject(RequestMetadata::new())
        .drop_fields([requesty_metadata::client::Field::UserId]);
    let seen = headers_through(
        layer,
        &[
            ("x-portkey-metadata", r#"{"_user":"alice","env":"prod"}"#),
            ("x-litellm-end-user-id", "alice"),
            ("helicone-user-id", "alice"),
            ("helicone-property-env", "prod"),
        ],
    )
    .await;
    let get = |name: &str| {
        seen.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("helicone-user-id"), None);
    assert_eq!(get("x-litellm-end-user-id"), None);
    assert_eq!(get("helicone-property-env"), Some("prod"));
    let portkey: Value = serde_json::from_str(get("x-portkey-metadata").unwrap()).unwrap();
    assert_eq!(portkey, json!({"env": "prod"}));
}

/// The caller's own `x-portkey-metadata` is edited, not rewritten: the keys a drop takes out go, and
/// what the metadata adds goes last, while every other member keeps the caller's bytes (order,
/// spacing, escapes, number spellings), as body members do.
#[tokio::test]
async fn the_callers_portkey_object_keeps_its_bytes_through_edits() {
    let (_r, _g) = Recorder::install();
    let own = r#"{"price": 1.50, "_user":"alice", "env":"pr\u006fd","tags":"b"}"#;
    let get = |seen: &[(String, String)], name: &str| {
        seen.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    };
    let layer = RequestyMetadataLayer::inject(RequestMetadata::new())
        .drop_fields([requesty_metadata::client::Field::UserId]);
    let seen = headers_through(layer, &[("x-portkey-metadata", own)]).await;
    assert_eq!(
        get(&seen, "x-portkey-metadata").as_deref(),
        Some(r#"{"price": 1.50, "env":"pr\u006fd","tags":"b"}"#)
    );

    let layer = RequestyMetadataLayer::inject(
        RequestMetadata::new()
            .user_id("svc")
            .tag("a")
            .extra("team", "infra"),
    )
    .gateway_headers(Gateway::Portkey);
    let seen = headers_through(layer, &[("x-portkey-metadata", own)]).await;
    assert_eq!(
        get(&seen, "x-portkey-metadata").as_deref(),
        Some(r#"{"price": 1.50, "_user":"alice", "env":"pr\u006fd","tags":"b,a","team":"infra"}"#)
    );

    // Tags the caller already carries leave its value as written.
    let layer = RequestyMetadataLayer::inject(RequestMetadata::new().tag("b"))
        .gateway_headers(Gateway::Portkey);
    let seen = headers_through(layer, &[("x-portkey-metadata", own)]).await;
    assert_eq!(get(&seen, "x-portkey-metadata").as_deref(), Some(own));
}

/// The caller's own `x-portkey-metadata` holds one `tags`: when it is not a string, it stays the
/// caller's (an `extra` key to Portkey's readers), and the metadata's tags, which cannot go beside
/// it, are left out with a warning in the client span, not silently.
#[tokio::test]
async fn the_metadatas_tags_left_out_beside_the_callers_own_are_warned_about() {
    let (recorder, _g) = Recorder::install();
    let layer = RequestyMetadataLayer::inject(RequestMetadata::new().tag("a"))
        .gateway_headers(Gateway::Portkey);
    let own = r#"{"tags":["x"]}"#;
    let seen = headers_through(layer, &[("x-portkey-metadata", own)]).await;
    let portkey = seen
        .iter()
        .find(|(n, _)| n == "x-portkey-metadata")
        .map(|(_, v)| v.as_str());
    assert_eq!(portkey, Some(own));
    let spans = recorder.named("llm_client_request");
    let warned = spans
        .iter()
        .flat_map(|s| &s.events)
        .any(|e| e["message"].contains("tags left out of x-portkey-metadata"));
    assert!(warned, "{spans:#?}");
}

/// Through the layer, the caller's own headers of a form it writes win over the metadata (the
/// layer's defaults here), and the server's reader of that form sees the caller's values.
#[tokio::test]
async fn the_callers_own_helicone_headers_survive_the_helicone_form() {
    let (_r, _g) = Recorder::install();
    let layer = RequestyMetadataLayer::inject(
        RequestMetadata::new()
            .user_id("svc")
            .extra("env", "prod")
            .extra("team", "infra"),
    )
    .gateway_headers(Gateway::Helicone);
    let seen = headers_through(
        layer,
        &[
            ("Helicone-User-Id", "alice"),
            ("Helicone-Property-Env", "staging"),
        ],
    )
    .await;
    let get = |name: &str| {
        seen.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("helicone-user-id"), Some("alice"));
    assert_eq!(get("helicone-property-env"), Some("staging"));
    assert_eq!(get("helicone-property-team"), Some("infra"));
}

/// A client that sends the body member and Helicone's form (the inject layer's default carrier with
/// `gateway_headers(Gateway::Helicone)`) carries each `extra` key twice: a header name arrives
/// lowercased, so the body's `Team` comes back from `Helicone-Property-Team` as `team`. It is the
/// same key, and the body's wins, as it does over `X-Requesty-Team`: no second key appears.
#[tokio::test]
async fn a_helicone_property_is_the_body_members_key_whatever_its_case() {
    let (_r, _g) = Recorder::install();
    let addr = server(all()).await;
    let sent = RequestMetadata::new()
        .extra("Team", "infra")
        .extra("env", "prod");
    let layer = RequestyMetadataLayer::inject(sent).gateway_headers(Gateway::Helicone);
    let (status, headers, _) = through(layer, addr, Some("application/json"), "{}").await;
    assert_eq!(status, 200);
    let meta = seen_metadata(&headers).unwrap();
    assert_eq!(
        meta.extra,
        serde_json::Map::from_iter([
            ("Team".to_owned(), json!("infra")),
            ("env".to_owned(), json!("prod")),
        ]),
        "{meta:?}"
    );

    // The same in a request written by hand: the body's spelling wins.
    let seen = post(
        addr,
        &[("helicone-property-team", "header")],
        r#"{"requesty":{"extra":{"Team":"body"}}}"#,
    )
    .await;
    let meta = seen.metadata.unwrap();
    assert_eq!(meta.extra.len(), 1, "{meta:?}");
    assert_eq!(meta.extra["Team"], "body");
}
