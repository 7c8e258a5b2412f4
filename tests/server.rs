//! The server layer through real stacks: axum on a loopback port, reqwest and hyper clients, a
//! recording tracing subscriber.
//!
//! Every test installs a recorder, even those that read no span: tests run on parallel threads, and
//! a callsite first hit on a thread without a subscriber could otherwise be cached as disabled.

mod support;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::{Extension, Router};
use futures_util::StreamExt;
use requesty_metadata::{Limits, RequestMetadata, RequestyMetadataLayer};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use support::{client, serve, Recorder};

/// Echoes the body it received byte for byte, and reports in headers what else it saw.
async fn echo(
    State(calls): State<Arc<AtomicUsize>>,
    meta: Option<Extension<RequestMetadata>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    calls.fetch_add(1, Ordering::SeqCst);
    tracing::info!(
        handler_trace_id = meta.as_ref().and_then(|m| m.trace_id.as_deref()),
        "handled"
    );
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
    if let Some(len) = headers.get("content-length") {
        h.insert("x-seen-content-length", len.clone());
    }
    response
}

fn app(layer: RequestyMetadataLayer) -> (Router, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route("/v1/{*rest}", any(echo))
        .with_state(calls.clone())
        .layer(layer);
    (router, calls)
}

fn seen_metadata(response: &reqwest::Response) -> Option<RequestMetadata> {
    // Bytes, not text: the metadata may hold characters beyond ASCII.
    let raw = response.headers().get("x-seen-metadata")?.as_bytes();
    (!raw.is_empty()).then(|| serde_json::from_slice(raw).unwrap())
}

const CHAT: &str = r#"{"model":"openai/gpt-4o","requesty":{"tags":["workflow-a"],"user_id":"user_1234","trace_id":"session_abc123","extra":{"country":"canada","tier":"premium"}},"temperature":1.0e0,"messages":[{"role":"user","content":"caf\u00e9 \"hi\""}],"seed":123456789012345678901234567890}"#;
const CHAT_STRIPPED: &str = r#"{"model":"openai/gpt-4o","temperature":1.0e0,"messages":[{"role":"user","content":"caf\u00e9 \"hi\""}],"seed":123456789012345678901234567890}"#;

#[tokio::test]
async fn body_metadata_is_stripped_byte_exactly_and_reaches_the_handler() {
    let (recorder, _guard) = Recorder::install();
    let (app, _) = app(RequestyMetadataLayer::new());
    let addr = serve(app).await;
    let response = client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let meta = seen_metadata(&response).expect("metadata in extensions");
    assert_eq!(
        response.headers()["x-seen-content-length"],
        CHAT_STRIPPED.len().to_string().as_str()
    );
    assert_eq!(response.bytes().await.unwrap(), CHAT_STRIPPED.as_bytes());
    assert_eq!(
        meta,
        RequestMetadata::new()
            .tag("workflow-a")
            .user_id("user_1234")
            .trace_id("session_abc123")
            .extra("country", "canada")
            .extra("tier", "premium")
    );

    let spans = recorder.wait_closed(1).await;
    let span = &spans[0];
    assert_eq!(span.field("trace_id"), Some("session_abc123"));
    assert_eq!(span.field("user_id"), Some("user_1234"));
    assert_eq!(span.field("tags"), Some(r#"["workflow-a"]"#));
    let extra: Value = serde_json::from_str(span.field("extra").unwrap()).unwrap();
    assert_eq!(extra, json!({"country": "canada", "tier": "premium"}));
    assert_eq!(span.field("http.request.method"), Some("POST"));
    assert_eq!(span.field("url.path"), Some("/v1/chat/completions"));
    // As the HTTP conventions take them on a server: from `Host`.
    assert_eq!(span.field("server.address"), Some("127.0.0.1"));
    assert_eq!(
        span.field("server.port"),
        Some(addr.port().to_string().as_str())
    );
    assert_eq!(span.field("http.response.status_code"), Some("200"));
    assert_eq!(span.field("gen_ai.request.model"), Some("openai/gpt-4o"));
    assert_eq!(span.field("gen_ai.operation.name"), Some("chat"));
    assert_eq!(span.field("otel.name"), Some("chat openai/gpt-4o"));
    assert_eq!(span.field("rpc.system.name"), None, "not gRPC");
    assert_eq!(span.field("otel.kind"), Some("server"));
    assert_eq!(span.field("requesty.response.completed"), Some("true"));
    assert_eq!(span.events.len(), 1, "the handler ran inside the span");
}

#[tokio::test]
async fn keep_body_metadata_leaves_the_body_alone() {
    let (_recorder, _guard) = Recorder::install();
    let (app, _) = app(RequestyMetadataLayer::new().keep_body_metadata(true));
    let addr = serve(app).await;
    let response = client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert!(seen_metadata(&response).is_some());
    assert_eq!(response.bytes().await.unwrap(), CHAT.as_bytes());
}

#[tokio::test]
async fn headers_are_read_and_removed_origin_headers_stay() {
    let (_recorder, _guard) = Recorder::install();
    let (app, _) = app(RequestyMetadataLayer::new());
    let addr = serve(app).await;
    let response = client()
        .get(format!("http://{addr}/v1/models"))
        .header("X-Requesty-Trace-Id", "t-1")
        .header("x-requesty-user-id", "u-1")
        .header("X-REQUESTY-TAGS", "a, b")
        .header("X-Requesty-Team", "platform")
        .header("HTTP-Referer", "https://app.example")
        .header("X-Title", "My App")
        .send()
        .await
        .unwrap();
    let meta = seen_metadata(&response).unwrap();
    assert_eq!(
        meta,
        RequestMetadata::new()
            .trace_id("t-1")
            .user_id("u-1")
            .tag("a")
            .tag("b")
            .extra("team", "platform")
            .origin_referer("https://app.example")
            .origin_title("My App")
    );
    let seen = response.headers()["x-seen-headers"].to_str().unwrap();
    assert!(!seen.contains("x-requesty"), "{seen}");
    assert!(
        seen.contains("http-referer") && seen.contains("x-title"),
        "{seen}"
    );
}

/// CGI-style servers (WSGI's environ, Rack, PHP's `$_SERVER`, nginx with `underscores_in_headers`)
/// read `x_requesty_user_id` as `X-Requesty-User-Id`: a name spelled with underscores must not get
/// past the strip either, nor must another gateway's.
#[tokio::test]
async fn metadata_headers_spelled_with_underscores_are_removed_too() {
    let (_recorder, _guard) = Recorder::install();
    let layer = RequestyMetadataLayer::new().sources(requesty_metadata::dialects::Sources::all());
    let (app, calls) = app(layer);
    let addr = serve(app).await;
    let response = client()
        .get(format!("http://{addr}/v1/models"))
        .header("x-requesty-user-id", "alice")
        .header("x_requesty_user_id", "mallory")
        .header("X_Requesty-Tags", "forged")
        .header("helicone_user_id", "mallory")
        .header("Helicone_Property_Team", "forged")
        .header("x_litellm_end_user_id", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let meta = seen_metadata(&response).unwrap();
    assert_eq!(meta.user_id.as_deref(), Some("alice"));
    let seen = response.headers()["x-seen-headers"].to_str().unwrap();
    let seen = seen.replace('_', "-");
    for prefix in ["x-requesty-", "helicone-", "x-litellm-"] {
        assert!(!seen.contains(prefix), "{seen}");
    }
}

/// What headers say about a body is read as a parser further on would: a `Content-Type` parameter
/// with a byte beyond ASCII is still JSON, a list of `identity` codings is no coding, and an origin
/// header in ISO-8859-1 (as Python's `http.client` sends one) is read, not refused.
#[tokio::test]
async fn odd_but_valid_headers_neither_hide_the_member_nor_fail_the_request() {
    let (_recorder, _guard) = Recorder::install();
    let (app, calls) = app(RequestyMetadataLayer::new());
    let addr = serve(app).await;
    let cases: [(&str, &[u8]); 4] = [
        ("content-type", b"application/json; title=\"Caf\xe9\""),
        ("content-encoding", b"identity, identity"),
        ("x-title", b"Caf\xe9 App"),
        ("http-referer", b"https://caf\xe9.example"),
    ];
    for (name, value) in cases {
        let mut request = client()
            .post(format!("http://{addr}/v1/chat/completions"))
            .header(
                name,
                reqwest::header::HeaderValue::from_bytes(value).unwrap(),
            )
            .body(CHAT);
        if name != "content-type" {
            request = request.header("content-type", "application/json");
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{name}");
        let meta = seen_metadata(&response).unwrap_or_default();
        assert_eq!(meta.trace_id.as_deref(), Some("session_abc123"), "{name}");
        assert_eq!(response.text().await.unwrap(), CHAT_STRIPPED, "{name}");
        if name == "x-title" {
            assert_eq!(meta.origin_title.as_deref(), Some("Caf\u{e9} App"));
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), cases.len());
}

/// A header named by the prefix alone (`X-Requesty-`) names no `extra` key: it carries nothing.
#[tokio::test]
async fn the_bare_header_prefix_names_no_extra_key() {
    let (_recorder, _guard) = Recorder::install();
    let (app, _) = app(RequestyMetadataLayer::new());
    let addr = serve(app).await;
    let response = client()
        .get(format!("http://{addr}/v1/models"))
        .header("x-requesty-", "nameless")
        .header("x-requesty-team", "platform")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = seen_metadata(&response).unwrap();
    assert_eq!(seen, RequestMetadata::new().extra("team", "platform"));
}

#[tokio::test]
async fn keep_headers_forwards_them() {
    let (_recorder, _guard) = Recorder::install();
    let (app, _) = app(RequestyMetadataLayer::new().keep_headers(true));
    let addr = serve(app).await;
    let response = client()
        .get(format!("http://{addr}/v1/models"))
        .header("X-Requesty-Trace-Id", "t-1")
        .send()
        .await
        .unwrap();
    assert!(response.headers()["x-seen-headers"]
        .to_str()
        .unwrap()
        .contains("x-requesty-trace-id"));
}

#[tokio::test]
async fn body_wins_over_headers_and_tags_unite_body_first() {
    let (_recorder, _guard) = Recorder::install();
    let (app, _) = app(RequestyMetadataLayer::new());
    let addr = serve(app).await;
    let response = client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json; charset=utf-8")
        .header("X-Requesty-Trace-Id", "from-header")
        .header("X-Requesty-User-Id", "user-header")
        .header("X-Requesty-Tags", "h1,shared")
        .header("X-Requesty-Country", "fr")
        .header("X-Requesty-Team", "infra")
        .body(r#"{"requesty":{"trace_id":"from-body","tags":["b1","shared"],"extra":{"country":"ca"}},"model":"m"}"#)
        .send()
        .await
        .unwrap();
    let meta = seen_metadata(&response).unwrap();
    assert_eq!(meta.trace_id.as_deref(), Some("from-body"));
    assert_eq!(meta.user_id.as_deref(), Some("user-header"));
    assert_eq!(meta.tags, ["b1", "shared", "h1"]);
    assert_eq!(meta.extra["country"], "ca");
    assert_eq!(meta.extra["team"], "infra");
    assert_eq!(response.bytes().await.unwrap(), &br#"{"model":"m"}"#[..]);
}

/// An empty id carries nothing, wherever it comes from: the body's `""` leaves the field to the
/// header, as an empty header leaves it to the next source.
#[tokio::test]
async fn an_empty_body_id_leaves_the_field_to_the_header() {
    let (_recorder, _guard) = Recorder::install();
    let (router, _) = app(RequestyMetadataLayer::new());
    let addr = serve(router).await;
    let response = client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("X-Requesty-User-Id", "user-header")
        .header("X-Requesty-Trace-Id", "trace-header")
        .body(r#"{"requesty":{"user_id":"","trace_id":""},"model":"m"}"#)
        .send()
        .await
        .unwrap();
    let meta = seen_metadata(&response).unwrap();
    assert_eq!(meta.user_id.as_deref(), Some("user-header"));
    assert_eq!(meta.trace_id.as_deref(), Some("trace-header"));
    // Nor does an empty `trace_id` keep a conversation from getting its derived one.
    let (router, _) = app(RequestyMetadataLayer::new().reconstruct_sessions(true));
    let addr = serve(router).await;
    let response = client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(r#"{"requesty":{"trace_id":""},"model":"m","messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    let meta = seen_metadata(&response).unwrap();
    let derived = meta.trace_id.unwrap_or_default();
    assert!(derived.starts_with("conv_"), "{derived:?}");
    // With no other source, an empty id is no id: the handler sees what an empty header gives.
    let (router, _) = app(RequestyMetadataLayer::new());
    let addr = serve(router).await;
    for (body, want) in [
        (
            r#"{"requesty":{"user_id":"","trace_id":"","tags":["a"]}}"#,
            Some(RequestMetadata::new().tag("a")),
        ),
        (r#"{"requesty":{"user_id":"","origin_title":""}}"#, None),
        // An empty tag is no tag either, as in `X-Requesty-Tags: a, , b`.
        (
            r#"{"requesty":{"tags":["","b",""]}}"#,
            Some(RequestMetadata::new().tag("b")),
        ),
        (r#"{"requesty":{"tags":[""]}}"#, None),
    ] {
        let response = client()
            .post(format!("http://{addr}/v1/chat/completions"))
            .header("content-type", "application/json")
            .header("X-Requesty-Trace-Id", "")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(seen_metadata(&response), want, "{body}");
    }
}

#[tokio::test]
async fn no_metadata_means_no_extension_and_the_same_bytes() {
    let (_recorder, _guard) = Recorder::install();
    let (app, _) = app(RequestyMetadataLayer::new());
    let addr = serve(app).await;
    let body = "{\"model\" : \"m\",\n \"n\": 1.50 }\n";
    let response = client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(seen_metadata(&response).is_none());
    assert_eq!(response.bytes().await.unwrap(), body.as_bytes());
}

async fn expect_error(response: reqwest::Response, status: u16, param: Value, code: &str) {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    let error = &body["error"];
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(error["param"], param, "{body}");
    assert_eq!(error["code"], code, "{body}");
    assert!(error["message"].as_str().unwrap().len() > 10);
}

#[tokio::test]
async fn invalid_metadata_is_a_400_naming_the_field_and_the_inner_service_is_not_called() {
    let (recorder, _guard) = Recorder::install();
    let (app, calls) = app(RequestyMetadataLayer::new().limits(Limits::default().max_tags(2)));
    let addr = serve(app).await;
    let client = client();
    let post = |body: &'static str| {
        client
            .post(format!("http://{addr}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
    };
    let cases = [
        (
            r#"{"requesty":{"tags":"a"}}"#,
            "requesty.tags",
            "invalid_metadata_type",
        ),
        (
            r#"{"requesty":{"tags":["a","b","c"]}}"#,
            "requesty.tags",
            "metadata_limit_exceeded",
        ),
        (
            r#"{"requesty":{"user_id":5}}"#,
            "requesty.user_id",
            "invalid_metadata_type",
        ),
        (
            r#"{"requesty":{"extra":[]}}"#,
            "requesty.extra",
            "invalid_metadata_type",
        ),
        (r#"{"requesty":[]}"#, "requesty", "invalid_metadata_type"),
        (
            r#"{"requesty":{},"requ\u0065sty":{}}"#,
            "requesty",
            "duplicate_metadata",
        ),
    ];
    for (body, param, code) in cases {
        expect_error(post(body).send().await.unwrap(), 400, json!(param), code).await;
    }
    // Tags from headers and body together count against the limit.
    let response = post(r#"{"requesty":{"tags":["a","b"]}}"#)
        .header("x-requesty-tags", "c")
        .send()
        .await
        .unwrap();
    expect_error(
        response,
        400,
        json!("requesty.tags"),
        "metadata_limit_exceeded",
    )
    .await;
    // Headers alone too, before the body is read: a few tags too many, thousands of them (refused
    // as soon as the count passes the limit), a tag or an id too long (each naming the header that
    // carried it), and `extra` over the body's size limit.
    let many: Vec<String> = (0..30_000).map(|i| format!("t{i}")).collect();
    let long = "x".repeat(257);
    let header_cases = [
        (
            "x-requesty-tags",
            "a,b,c".to_owned(),
            "x-requesty-tags",
            "metadata_limit_exceeded",
        ),
        (
            "x-requesty-tags",
            many.join(","),
            "x-requesty-tags",
            "metadata_limit_exceeded",
        ),
        (
            "x-requesty-tags",
            format!("a, {long}"),
            "x-requesty-tags",
            "metadata_too_long",
        ),
        (
            "x-requesty-user-id",
            long.clone(),
            "x-requesty-user-id",
            "metadata_too_long",
        ),
        (
            "x-requesty-trace-id",
            long.clone(),
            "x-requesty-trace-id",
            "metadata_too_long",
        ),
        (
            "x-requesty-notes",
            "n".repeat(17 * 1024),
            "requesty.extra",
            "metadata_too_long",
        ),
    ];
    for (name, value, param, code) in header_cases {
        let response = client
            .get(format!("http://{addr}/v1/models"))
            .header(name, value)
            .send()
            .await
            .unwrap();
        expect_error(response, 400, json!(param), code).await;
    }
    // An id too long in a header is refused naming the header when it is the id the request would
    // carry, with or without a body; one the body's member outranks is no one's error.
    let response = post(r#"{"model":"m"}"#)
        .header("x-requesty-user-id", long.as_str())
        .send()
        .await
        .unwrap();
    expect_error(
        response,
        400,
        json!("x-requesty-user-id"),
        "metadata_too_long",
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // Rejected requests are traced too.
    let spans = recorder.wait_closed(cases.len() + 8).await;
    assert!(spans
        .iter()
        .all(|s| s.field("http.response.status_code") == Some("400")));

    let response = post(r#"{"model":"m","requesty":{"user_id":"u"}}"#)
        .header("x-requesty-user-id", long.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// `HTTP-Referer` and `X-Title` are held to `max_origin_len`: at the limit they are carried, one
/// byte over is a `400` naming the header; the body's origin field, which outranks the header, is
/// held to the same limit and, when it is within it, the header's value is no one's error.
#[tokio::test]
async fn origin_headers_are_held_to_the_origin_limit() {
    let (_recorder, _guard) = Recorder::install();
    let (app, calls) =
        app(RequestyMetadataLayer::new().limits(Limits::default().max_origin_len(8)));
    let addr = serve(app).await;
    let client = client();
    let get = |name: &'static str, value: &'static str| {
        client
            .get(format!("http://{addr}/v1/models"))
            .header(name, value)
            .send()
    };
    let post = |body: &'static str| {
        client
            .post(format!("http://{addr}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
    };
    let response = get("http-referer", "https://").await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        seen_metadata(&response).unwrap(),
        RequestMetadata::new().origin_referer("https://")
    );
    for (name, value) in [("http-referer", "https://a"), ("x-title", "My App 2!")] {
        let response = get(name, value).await.unwrap();
        expect_error(response, 400, json!(name), "metadata_too_long").await;
    }
    let response = post(r#"{"requesty":{"origin_title":"012345678"}}"#)
        .send()
        .await
        .unwrap();
    expect_error(
        response,
        400,
        json!("requesty.origin_title"),
        "metadata_too_long",
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let response = post(r#"{"requesty":{"origin_title":"App"}}"#)
        .header("x-title", "a title too long")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        seen_metadata(&response).unwrap(),
        RequestMetadata::new().origin_title("App")
    );
}

/// `extra` keys from headers count against `max_extra_entries`: as many as the limit are carried,
/// one more is a `400` naming `requesty.extra`.
#[tokio::test]
async fn extra_keys_from_headers_are_held_to_the_entry_limit() {
    let (_recorder, _guard) = Recorder::install();
    let (app, calls) =
        app(RequestyMetadataLayer::new().limits(Limits::default().max_extra_entries(2)));
    let addr = serve(app).await;
    let get = |keys: &[&str]| {
        let mut request = client().get(format!("http://{addr}/v1/models"));
        for key in keys {
            request = request.header(format!("x-requesty-{key}"), "v");
        }
        request.send()
    };
    let response = get(&["a", "b"]).await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = seen_metadata(&response).unwrap();
    assert_eq!(seen, RequestMetadata::new().extra("a", "v").extra("b", "v"));
    let response = get(&["a", "b", "c"]).await.unwrap();
    expect_error(
        response,
        400,
        json!("requesty.extra"),
        "metadata_limit_exceeded",
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A header id or tag of exactly the limit's length is carried; the limit refuses only what is
/// longer.
#[tokio::test]
async fn header_values_as_long_as_the_limit_are_carried() {
    let (_recorder, _guard) = Recorder::install();
    let (app, _) = app(RequestyMetadataLayer::new());
    let addr = serve(app).await;
    let (user, trace, tag) = ("u".repeat(256), "t".repeat(256), "g".repeat(256));
    let response = client()
        .get(format!("http://{addr}/v1/models"))
        .header("x-requesty-user-id", user.as_str())
        .header("x-requesty-trace-id", trace.as_str())
        .header("x-requesty-tags", format!("a, {tag}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = seen_metadata(&response).unwrap();
    assert_eq!(seen.user_id, Some(user));
    assert_eq!(seen.trace_id, Some(trace));
    assert_eq!(seen.tags, ["a".to_owned(), tag]);
}

/// `max_extra_bytes` measures a body's `extra` as sent; only `extra` that headers add to is measured
/// again, as compact JSON (which spells `1e15` longer).
#[tokio::test]
async fn extra_is_measured_as_sent_unless_headers_add_to_it() {
    let (_recorder, _guard) = Recorder::install();
    let (app, calls) =
        app(RequestyMetadataLayer::new().limits(Limits::default().max_extra_bytes(40)));
    let addr = serve(app).await;
    let client = client();
    let extra = r#"{"a":1e15,"b":"xxxxxxxxxxxx"}"#;
    assert!(
        extra.len() <= 40
            && serde_json::to_string(&serde_json::from_str::<Value>(extra).unwrap())
                .unwrap()
                .len()
                > 40
    );
    let post = |header: Option<&str>| {
        let mut request = client
            .post(format!("http://{addr}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(format!(r#"{{"model":"m","requesty":{{"extra":{extra}}}}}"#));
        if let Some(value) = header {
            request = request.header("x-requesty-b", value);
        }
        request.send()
    };
    // As sent it fits, and a header that the body overrides adds nothing.
    for header in [None, Some("from-a-header")] {
        let response = post(header).await.unwrap();
        assert_eq!(response.status(), 200, "{header:?}");
        assert_eq!(seen_metadata(&response).unwrap().extra["b"], "xxxxxxxxxxxx");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // A key a header adds makes the whole `extra` measured, compact.
    let response = client
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("x-requesty-c", "1")
        .body(format!(r#"{{"model":"m","requesty":{{"extra":{extra}}}}}"#))
        .send()
        .await
        .unwrap();
    expect_error(response, 400, json!("requesty.extra"), "metadata_too_long").await;
}

#[tokio::test]
async fn body_over_the_limit_is_a_413_declared_or_chunked() {
    let (_recorder, _guard) = Recorder::install();
    let limit = 1024;
    let (app, calls) = app(RequestyMetadataLayer::new().max_body_bytes(limit));
    let addr = serve(app).await;
    let client = client();
    let url = format!("http://{addr}/v1/chat/completions");
    let body_of = |len: usize| {
        let mut body = String::from(r#"{"requesty":{"tags":["t"]},"pad":""#);
        body.push_str(&"x".repeat(len - body.len() - 2));
        body.push_str("\"}");
        assert_eq!(body.len(), len);
        body
    };
    for (len, ok) in [(limit - 1, true), (limit, true), (limit + 1, false)] {
        // Declared length.
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body_of(len))
            .send()
            .await
            .unwrap();
        if ok {
            assert_eq!(response.status(), 200, "{len}");
            assert!(seen_metadata(&response).is_some());
        } else {
            expect_error(response, 413, Value::Null, "request_too_large").await;
        }
        // Chunked: no length up front, limited while reading.
        let chunks: Vec<Result<Bytes, Infallible>> = body_of(len)
            .into_bytes()
            .chunks(100)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )))
            .send()
            .await
            .unwrap();
        if ok {
            assert_eq!(response.status(), 200, "chunked {len}");
            assert!(seen_metadata(&response).is_some());
        } else {
            expect_error(response, 413, Value::Null, "request_too_large").await;
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn non_json_bodies_pass_through_byte_for_byte() {
    let (_recorder, _guard) = Recorder::install();
    let (app, _) = app(RequestyMetadataLayer::new());
    let addr = serve(app).await;
    let client = client();
    let tagged = br#"{"requesty":{"tags":["a"]},"x":1}"#.to_vec();
    let mut binary: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    binary.extend_from_slice(&tagged);
    for (content_type, encoding, body) in [
        (Some("text/plain"), None, tagged.clone()),
        (None, None, tagged.clone()),
        (Some("application/octet-stream"), None, binary),
        (Some("application/json"), Some("gzip"), tagged.clone()),
        (
            Some("application/json"),
            None,
            b"{\"requesty\":{\"tags\":[\"a\"]},".to_vec(),
        ),
        (
            Some("application/json"),
            None,
            b"[1, {\"requesty\":{}}]".to_vec(),
        ),
    ] {
        let mut request = client
            .post(format!("http://{addr}/v1/files"))
            .body(body.clone());
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        if let Some(ce) = encoding {
            request = request.header("content-encoding", ce);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            seen_metadata(&response).is_none(),
            "{content_type:?} {encoding:?}"
        );
        assert_eq!(
            response.bytes().await.unwrap(),
            body,
            "{content_type:?} {encoding:?}"
        );
    }
}

#[tokio::test]
async fn malformed_json_can_be_rejected() {
    let (_recorder, _guard) = Recorder::install();
    let (app, calls) = app(RequestyMetadataLayer::new().reject_malformed(true));
    let addr = serve(app).await;
    let post = |body: &'static [u8]| {
        client()
            .post(format!("http://{addr}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // An object cut short, and text that is not JSON at all or not whole.
    for body in [
        &br#"{"model": "m","#[..],
        b"[1,",
        b"hello world",
        b"\"unterminated",
        b"{} {}",
        // Objects whose own members are fine but whose values are not JSON inside.
        br#"{"model":"m","messages":[1,,2]}"#,
        br#"{"model":"m","messages":[{"role" "user"}]}"#,
        br#"{"model":"m","messages":[tru]}"#,
        b"{\"model\":\"m\",\"messages\":[\"\xff\"]}",
        br#"{"model":"m","messages":["\q"]}"#,
        // Whitespace JSON does not have (a form feed), with nothing else.
        b"\x0c",
        b" \x0c\n",
    ] {
        let response = post(body).await.unwrap();
        assert_eq!(response.status(), 400, "{}", String::from_utf8_lossy(body));
        expect_error(response, 400, Value::Null, "invalid_json").await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // Well-formed JSON that is not an object, and no body, are for the service to judge.
    for body in [
        &b"[1, 2]"[..],
        b" \"text\" ",
        b"",
        b" \r\n\t",
        b"\xEF\xBB\xBF[]",
        br#"{"model":"m","messages":[{"role":"user","content":"caf\u00e9"}]}"#,
    ] {
        let response = post(body).await.unwrap();
        assert_eq!(response.status(), 200, "{}", String::from_utf8_lossy(body));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 6);
}

/// An SSE-like response: `frames` chunks, `gap` apart; endless when `frames` is `None`.
fn sse(frames: Option<usize>, gap: Duration) -> Response {
    let stream = futures_util::stream::unfold(0usize, move |i| async move {
        if frames.is_some_and(|n| i >= n) {
            return None;
        }
        tokio::time::sleep(gap).await;
        Some((
            Ok::<_, Infallible>(Bytes::from(format!("data: {i}\n\n"))),
            i + 1,
        ))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

#[tokio::test]
async fn span_stays_open_until_the_last_chunk_of_a_stream() {
    let (recorder, _guard) = Recorder::install();
    let router = Router::new()
        .route(
            "/v1/chat/completions",
            post(|| async { sse(Some(3), Duration::from_millis(50)) }),
        )
        .layer(RequestyMetadataLayer::new());
    let addr = serve(router).await;
    let response = client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(r#"{"model":"m","stream":true,"requesty":{"trace_id":"s-1"}}"#)
        .send()
        .await
        .unwrap();
    let mut stream = response.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first, &b"data: 0\n\n"[..]);
    let span = &recorder.requests()[0];
    assert!(!span.closed, "the span must outlive the response head");
    assert_eq!(span.field("http.response.status_code"), Some("200"));
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(rest, b"data: 1\n\ndata: 2\n\n");
    let spans = recorder.wait_closed(1).await;
    assert_eq!(spans[0].field("trace_id"), Some("s-1"));
    assert_eq!(spans[0].field("requesty.response.completed"), Some("true"));
}

#[tokio::test]
async fn a_streamed_body_with_a_declared_length_counts_as_completed() {
    // hyper stops polling once it has written `Content-Length` bytes, without asking for the end.
    let (recorder, _guard) = Recorder::install();
    let router = Router::new()
        .route(
            "/v1/chat/completions",
            post(|| async {
                let mut response = sse(Some(3), Duration::from_millis(5));
                response
                    .headers_mut()
                    .insert("content-length", HeaderValue::from_static("27"));
                response
            }),
        )
        .layer(RequestyMetadataLayer::new());
    let addr = serve(router).await;
    let response = client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.bytes().await.unwrap(),
        &b"data: 0\n\ndata: 1\n\ndata: 2\n\n"[..]
    );
    let spans = recorder.wait_closed(1).await;
    assert_eq!(spans[0].field("requesty.response.completed"), Some("true"));
}

#[tokio::test]
async fn client_dropping_mid_stream_is_recorded_as_cut_off() {
    let (recorder, _guard) = Recorder::install();
    let completions = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = completions.clone();
    let layer = RequestyMetadataLayer::new().on_complete(move |done| {
        seen.lock().unwrap().push((done.completed, done.status));
    });
    let router = Router::new()
        .route(
            "/v1/chat/completions",
            post(|| async { sse(None, Duration::from_millis(10)) }),
        )
        .layer(layer);
    let addr = serve(router).await;
    let response = client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(r#"{"model":"m","stream":true,"requesty":{"trace_id":"cut"}}"#)
        .send()
        .await
        .unwrap();
    let mut stream = response.bytes_stream();
    stream.next().await.unwrap().unwrap();
    assert!(!recorder.requests()[0].closed);
    drop(stream);
    let spans = recorder.wait_closed(1).await;
    assert_eq!(spans[0].field("trace_id"), Some("cut"));
    assert_eq!(spans[0].field("requesty.response.completed"), Some("false"));
    assert_eq!(*completions.lock().unwrap(), [(false, StatusCode::OK)]);
}

#[tokio::test]
async fn completion_hook_runs_once_per_request_after_the_body() {
    let (_recorder, _guard) = Recorder::install();
    let completions = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = completions.clone();
    let layer = RequestyMetadataLayer::new().on_complete(move |done| {
        seen.lock().unwrap().push((
            done.metadata.and_then(|m| m.trace_id.clone()),
            done.model.map(str::to_owned),
            done.status,
            done.completed,
        ));
    });
    let (app, _) = app(layer);
    let addr = serve(app).await;
    let client = client();
    let url = format!("http://{addr}/v1/chat/completions");
    let ok = client
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"model":"gpt","requesty":{"trace_id":"t"}}"#)
        .send()
        .await
        .unwrap();
    ok.bytes().await.unwrap();
    let bad = client
        .post(&url)
        .header("content-type", "application/json")
        .header("x-requesty-trace-id", "h")
        .body(r#"{"model":"gpt-bad","requesty":{"tags":1}}"#)
        .send()
        .await
        .unwrap();
    bad.bytes().await.unwrap();
    let twice = client
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"requesty":{},"model":"gpt-twice","requesty":{}}"#)
        .send()
        .await
        .unwrap();
    twice.bytes().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        *completions.lock().unwrap(),
        [
            (Some("t".into()), Some("gpt".into()), StatusCode::OK, true),
            // A rejected body still names its model.
            (
                Some("h".into()),
                Some("gpt-bad".into()),
                StatusCode::BAD_REQUEST,
                true
            ),
            (
                None,
                Some("gpt-twice".into()),
                StatusCode::BAD_REQUEST,
                true
            ),
        ]
    );
}

#[tokio::test]
async fn readied_service_is_called_behind_a_buffer() {
    let (_recorder, _guard) = Recorder::install();
    // `Buffer` hands out one slot per `poll_ready`; calling a clone that was not readied panics.
    let calls = Arc::new(AtomicUsize::new(0));
    let inner = tower::service_fn({
        let calls = calls.clone();
        move |req: axum::http::Request<Body>| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let seen = req.extensions().get::<RequestMetadata>().cloned();
                let body = axum::body::to_bytes(req.into_body(), usize::MAX)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok::<_, Infallible>(
                    format!(
                        "{}|{}",
                        seen.and_then(|m| m.trace_id).unwrap_or_default(),
                        body.len()
                    )
                    .into_response(),
                )
            }
        }
    });
    let service = tower::ServiceBuilder::new()
        .layer(axum::error_handling::HandleErrorLayer::new(
            |_: tower::BoxError| async { StatusCode::SERVICE_UNAVAILABLE },
        ))
        .layer(RequestyMetadataLayer::new())
        .buffer(4)
        .service(inner);
    let router = Router::new().route_service("/v1/chat/completions", service);
    let addr = serve(router).await;
    let client = client();
    let requests = (0..40).map(|i| {
        let client = client.clone();
        async move {
            let response = client
                .post(format!("http://{addr}/v1/chat/completions"))
                .header("content-type", "application/json")
                .body(format!(r#"{{"requesty":{{"trace_id":"b{i}"}},"n":{i}}}"#))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let text = response.text().await.unwrap();
            let want = format!(r#"{{"n":{i}}}"#);
            assert_eq!(text, format!("b{i}|{}", want.len()));
        }
    });
    futures_util::future::join_all(requests).await;
    assert_eq!(calls.load(Ordering::SeqCst), 40);
}

#[tokio::test]
async fn two_hundred_concurrent_requests_do_not_cross_talk() {
    let (recorder, _guard) = Recorder::install();
    let (app, _) = app(RequestyMetadataLayer::new());
    let addr = serve(app).await;
    let client = client();
    let requests = (0..200).map(|i| {
        let client = client.clone();
        async move {
            let body = format!(
                r#"{{"model":"m{i}","requesty":{{"trace_id":"trace-{i}","user_id":"user-{i}","tags":["t{i}"]}}}}"#
            );
            let response = client
                .post(format!("http://{addr}/v1/chat/completions"))
                .header("content-type", "application/json")
                .header("x-requesty-request", i.to_string())
                .body(body)
                .send()
                .await
                .unwrap();
            let meta = seen_metadata(&response).unwrap();
            assert_eq!(meta.trace_id, Some(format!("trace-{i}")));
            assert_eq!(meta.user_id, Some(format!("user-{i}")));
            assert_eq!(meta.tags, [format!("t{i}")]);
            assert_eq!(meta.extra["request"], i.to_string());
            assert_eq!(
                response.text().await.unwrap(),
                format!(r#"{{"model":"m{i}"}}"#)
            );
        }
    });
    futures_util::future::join_all(requests).await;
    let spans = recorder.wait_closed(200).await;
    assert_eq!(spans.len(), 200);
    for span in &spans {
        let trace = span.field("trace_id").unwrap();
        let i = trace.strip_prefix("trace-").unwrap();
        assert_eq!(span.field("user_id"), Some(format!("user-{i}").as_str()));
        assert_eq!(
            span.field("gen_ai.request.model"),
            Some(format!("m{i}").as_str())
        );
        // The handler's event landed in its own request's span.
        assert_eq!(span.events.len(), 1);
        assert_eq!(
            span.events[0].get("handler_trace_id").map(String::as_str),
            Some(trace)
        );
    }
}

#[tokio::test]
async fn works_under_a_plain_hyper_server() {
    let (_recorder, _guard) = Recorder::install();
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;

    let (app, _) = app(RequestyMetadataLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service = TowerToHyperService::new(app);
        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service)
            .await
            .unwrap();
    });
    // A hyper client this time.
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let request = axum::http::Request::post(format!("http://{addr}/v1/embeddings"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from_static(
            br#"{"input":"x","requesty":{"user_id":"u"}}"#,
        )))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["x-seen-metadata"]
        .to_str()
        .unwrap()
        .contains(r#""user_id":"u""#));
    use http_body_util::BodyExt;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, &br#"{"input":"x"}"#[..]);
}

#[tokio::test]
async fn the_request_metadata_is_current_in_the_handler_unless_propagation_is_off() {
    let (_recorder, _guard) = Recorder::install();
    async fn current_trace() -> String {
        requesty_metadata::current()
            .and_then(|m| m.trace_id.clone())
            .unwrap_or_else(|| "none".into())
    }
    for (layer, want) in [
        (RequestyMetadataLayer::new(), "t-cur"),
        (RequestyMetadataLayer::new().propagate(false), "none"),
    ] {
        let router = Router::new()
            .route("/v1/chat/completions", post(current_trace))
            .layer(layer);
        let addr = serve(router).await;
        let response = client()
            .post(format!("http://{addr}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(r#"{"requesty":{"trace_id":"t-cur"}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.text().await.unwrap(), want);
    }
}

/// A server layer inside another (one on the router and one on a route, say) sees a request whose
/// metadata the outer layer already took out: with nothing of its own to make current, it leaves the
/// outer request's metadata current for the handler, its response body, and its onward calls, as it
/// does with propagation off.
#[tokio::test]
async fn an_inner_server_layer_leaves_the_outer_requests_metadata_current() {
    use http_body_util::BodyExt;
    use tower::{Layer, ServiceExt};

    let (_recorder, _guard) = Recorder::install();
    let trace = || {
        requesty_metadata::current()
            .and_then(|m| m.trace_id.clone())
            .unwrap_or_else(|| "none".into())
    };
    for inner in [
        RequestyMetadataLayer::new(),
        RequestyMetadataLayer::new().propagate(false),
    ] {
        let handler = tower::service_fn(move |_: http::Request<Body>| async move {
            let in_future = trace();
            let lazy = futures_util::stream::once(async move {
                Ok::<_, Infallible>(Bytes::from(format!("{in_future} {}", trace())))
            });
            Ok::<_, Infallible>(Response::new(Body::from_stream(lazy)))
        });
        let service = RequestyMetadataLayer::new().layer(inner.layer(handler));
        let request = http::Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(Body::from(
                r#"{"model":"m","requesty":{"trace_id":"t-outer"}}"#,
            ))
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        let seen = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(seen, "t-outer t-outer", "in the future, then in the body");
    }
}

/// What a handler behind a layer inside another (the outer one keeping the headers) finds in its
/// request's extensions, checked to be what is current, for a JSON request with `headers`.
async fn seen_through_nested_layers(
    headers: &[(&str, &str)],
    body: &'static str,
) -> Option<RequestMetadata> {
    use http_body_util::BodyExt;
    use tower::{Layer, ServiceExt};

    let handler = tower::service_fn(|request: http::Request<Body>| async move {
        let seen = request.extensions().get::<RequestMetadata>().cloned();
        let current = requesty_metadata::current().map(|m| RequestMetadata::clone(&m));
        assert_eq!(seen, current, "the extension is what is current");
        let seen = serde_json::to_string(&seen).unwrap();
        Ok::<_, Infallible>(Response::new(Body::from(seen)))
    });
    let service = RequestyMetadataLayer::new()
        .keep_headers(true)
        .layer(RequestyMetadataLayer::new().layer(handler));
    let mut request =
        http::Request::post("/v1/chat/completions").header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Body::from(body)).unwrap();
    let response = service.oneshot(request).await.unwrap();
    let seen = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&seen).unwrap()
}

/// A server layer inside another that kept some of the metadata (its headers, here) adds what it
/// reads to the outer layer's: the handler, the current metadata and the inner span see the whole
/// request's metadata, not only the part left to read.
#[tokio::test]
async fn an_inner_server_layer_adds_to_the_outer_layers_metadata() {
    let (recorder, _guard) = Recorder::install();
    let seen = seen_through_nested_layers(
        &[
            ("x-requesty-trace-id", "t-header"),
            ("x-requesty-tags", "h"),
        ],
        r#"{"model":"m","requesty":{"user_id":"u-body","tags":["b"]}}"#,
    )
    .await;
    let want = RequestMetadata::new()
        .tag("b")
        .tag("h")
        .user_id("u-body")
        .trace_id("t-header");
    assert_eq!(seen, Some(want));
    let spans = recorder.wait_closed(2).await;
    for span in &spans {
        assert_eq!(span.field("user_id"), Some("u-body"));
        assert_eq!(span.field("trace_id"), Some("t-header"));
    }
}

/// The outer layer read the whole request, its body above its headers: an inner layer that reads
/// only the headers the outer one kept does not put them back above the body the outer one
/// stripped. What the inner one reads fills in what the outer one's metadata lacks.
#[tokio::test]
async fn an_inner_server_layer_keeps_the_bodys_rank_over_the_headers() {
    let seen = seen_through_nested_layers(
        &[
            ("x-requesty-user-id", "u-header"),
            ("x-requesty-trace-id", "t-header"),
            ("x-requesty-team", "team-header"),
        ],
        r#"{"model":"m","requesty":{"user_id":"u-body","extra":{"team":"team-body"}}}"#,
    )
    .await;
    let want = RequestMetadata::new()
        .user_id("u-body")
        .trace_id("t-header")
        .extra("team", "team-body");
    assert_eq!(seen, Some(want));
}

/// Notes the current trace id when it is dropped.
struct NoteOnDrop(Arc<std::sync::Mutex<Vec<String>>>);

impl Drop for NoteOnDrop {
    fn drop(&mut self) {
        let trace = requesty_metadata::current()
            .and_then(|m| m.trace_id.clone())
            .unwrap_or_else(|| "none".into());
        self.0.lock().unwrap().push(trace);
    }
}

/// A request given up before its answer (the client went away while the handler ran) drops the
/// handler's future with the request's metadata current, as it was polled; so does a response body
/// dropped mid-stream: a drop guard that calls onward to cancel work upstream carries it.
#[tokio::test]
async fn a_handler_and_its_body_are_dropped_with_the_metadata_current() {
    use http_body_util::BodyExt;
    use tower::{Layer, ServiceExt};

    let (_recorder, _guard) = Recorder::install();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handler = tower::service_fn({
        let seen = seen.clone();
        move |request: http::Request<Body>| {
            let guard = NoteOnDrop(seen.clone());
            async move {
                if request.uri().path() == "/v1/hang" {
                    let _guard = guard;
                    let never: Infallible = std::future::pending().await;
                    match never {}
                }
                let stream = futures_util::stream::once(async {
                    Ok::<_, Infallible>(Bytes::from("data: 1\n\n"))
                })
                .chain(futures_util::stream::once(async move {
                    let _guard = guard;
                    std::future::pending::<Result<Bytes, Infallible>>().await
                }));
                Ok::<_, Infallible>(Response::new(Body::from_stream(stream)))
            }
        }
    });
    let service = RequestyMetadataLayer::new().layer(handler);
    let request = |path: &str| {
        http::Request::post(path)
            .header("content-type", "application/json")
            .body(Body::from(
                r#"{"model":"m","requesty":{"trace_id":"t-gone"}}"#,
            ))
            .unwrap()
    };

    let mut call = Box::pin(service.clone().oneshot(request("/v1/hang")));
    let polled = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await;
    assert!(polled.is_pending());
    drop(call);
    assert_eq!(*seen.lock().unwrap(), ["t-gone"], "the handler's future");

    let response = service.oneshot(request("/v1/stream")).await.unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "data: 1\n\n");
    let mut body = Box::pin(body);
    let polled =
        std::future::poll_fn(|cx| Poll::Ready(http_body::Body::poll_frame(body.as_mut(), cx)))
            .await;
    assert!(polled.is_pending());
    drop(body);
    assert_eq!(
        *seen.lock().unwrap(),
        ["t-gone", "t-gone"],
        "the response body"
    );
    assert!(requesty_metadata::current().is_none());
}

/// A handler that panics while its request's metadata is current (in its future or its body) leaves
/// none behind on the thread: the next request, which carries none, sees none.
#[tokio::test]
async fn a_panicking_handler_leaves_no_metadata_current_for_the_next_request() {
    use http_body_util::BodyExt;
    use tower::{Layer, ServiceExt};

    let (_recorder, _guard) = Recorder::install();
    let trace = || {
        requesty_metadata::current()
            .and_then(|m| m.trace_id.clone())
            .unwrap_or_else(|| "none".into())
    };
    let handler = tower::service_fn(move |request: http::Request<Body>| async move {
        match request.uri().path() {
            "/v1/panic" => panic!("the handler failed"),
            "/v1/panic-in-body" => {
                let stream = futures_util::stream::once(async {
                    panic!("the body failed");
                    #[allow(unreachable_code)]
                    Ok::<Bytes, Infallible>(Bytes::new())
                });
                Ok::<_, Infallible>(Response::new(Body::from_stream(stream)))
            }
            _ => Ok(Response::new(Body::from(trace()))),
        }
    });
    let service = RequestyMetadataLayer::new().layer(handler);
    let request = |path: &str, body: &'static str| {
        http::Request::post(path)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let tagged = r#"{"requesty":{"trace_id":"t-panic"}}"#;
    let failed = tokio::spawn(service.clone().oneshot(request("/v1/panic", tagged))).await;
    assert!(failed.is_err_and(|e| e.is_panic()));
    let body = service
        .clone()
        .oneshot(request("/v1/panic-in-body", tagged))
        .await
        .unwrap()
        .into_body();
    let failed = tokio::spawn(body.collect()).await;
    assert!(failed.is_err_and(|e| e.is_panic()));
    let response = service.oneshot(request("/v1/next", "{}")).await.unwrap();
    let seen = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(seen, "none");
}

/// What a service behind the layer sees of a JSON request announcing trailers, with `data` (if
/// any) then the trailers: its body text, whether trailers reached it, whether they were announced.
async fn seen_with_trailers(data: Option<&'static [u8]>) -> String {
    use http_body_util::BodyExt;
    use tower::{Layer, ServiceExt};

    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", HeaderValue::from_static("abc"));
    let frames: Vec<Result<http_body::Frame<Bytes>, Infallible>> = data
        .map(|data| Ok(http_body::Frame::data(Bytes::from_static(data))))
        .into_iter()
        .chain([Ok(http_body::Frame::trailers(trailers))])
        .collect();
    let body = Body::new(http_body_util::StreamBody::new(futures_util::stream::iter(
        frames,
    )));
    let request = http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("trailer", "x-checksum")
        .body(body)
        .unwrap();
    let service = RequestyMetadataLayer::new().layer(tower::service_fn(
        |request: http::Request<Body>| async move {
            let announced = request.headers().contains_key("trailer");
            let collected = request.into_body().collect().await.unwrap();
            let trailers = collected.trailers().is_some();
            let text = String::from_utf8_lossy(&collected.to_bytes()).into_owned();
            Ok::<_, Infallible>(http::Response::new(Body::from(format!(
                "{text}|{trailers}|{announced}"
            ))))
        },
    ));
    let response = service.oneshot(request).await.unwrap();
    let seen = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&seen).into_owned()
}

/// A JSON body is rebuilt from its bytes, which cannot carry trailers: they are not passed on (nor
/// announced), and the request span says so rather than dropping them silently.
#[tokio::test]
async fn trailers_on_a_json_body_are_dropped_with_a_warning() {
    let (recorder, _guard) = Recorder::install();
    let seen = seen_with_trailers(Some(br#"{"model":"m","requesty":{"tags":["t"]}}"#)).await;
    assert_eq!(seen, r#"{"model":"m"}|false|false"#);
    let spans = recorder.wait_closed(1).await;
    assert!(
        spans[0]
            .events
            .iter()
            .any(|e| e.get("message").is_some_and(|m| m.contains("trailers"))),
        "{spans:#?}"
    );
}

/// A JSON request with trailers but no data (HTTP/2 allows it, with no framing header) goes on
/// without them too, and without the `Trailer` header that announced them.
#[tokio::test]
async fn trailers_on_an_empty_json_body_are_not_announced() {
    let (_recorder, _guard) = Recorder::install();
    assert_eq!(seen_with_trailers(None).await, "|false|false");
}

/// A response whose last frame is trailers (gRPC, or any HTTP/2 or chunked answer with trailers)
/// ends there: hyper writes the trailers and drops the body without polling it again, so the span
/// and the completion hook must count it as completed.
#[tokio::test]
async fn a_response_that_ends_in_trailers_counts_as_completed() {
    let (recorder, _guard) = Recorder::install();
    let completions = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = completions.clone();
    let layer = RequestyMetadataLayer::new().on_complete(move |done| {
        seen.lock().unwrap().push((done.completed, done.failed));
    });
    let router = Router::new()
        .route(
            "/v1/chat/completions",
            post(|| async {
                let mut trailers = HeaderMap::new();
                trailers.insert("x-checksum", HeaderValue::from_static("abc"));
                let frames: Vec<Result<http_body::Frame<Bytes>, Infallible>> = vec![
                    Ok(http_body::Frame::data(Bytes::from_static(b"data: 0\n\n"))),
                    Ok(http_body::Frame::trailers(trailers)),
                ];
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::new(http_body_util::StreamBody::new(
                        futures_util::stream::iter(frames),
                    )))
                    .unwrap()
            }),
        )
        .layer(layer);
    let addr = serve(router).await;
    let response = client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("te", "trailers")
        .body(r#"{"model":"m","requesty":{"trace_id":"tr-1"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.bytes().await.unwrap(), &b"data: 0\n\n"[..]);
    let spans = recorder.wait_closed(1).await;
    assert_eq!(spans[0].field("trace_id"), Some("tr-1"));
    assert_eq!(spans[0].field("requesty.response.completed"), Some("true"));
    assert_eq!(*completions.lock().unwrap(), [(true, false)]);
}

/// A JSON body that an outer limit cuts off (tower-http's `RequestBodyLimitLayer`, which the README
/// recommends, wraps a chunked body in `http_body_util::Limited`) is too large: `413
/// request_too_large`, as axum's own extractors answer, not `400 body_read_error`.
#[tokio::test]
async fn a_body_an_outer_limit_cuts_off_is_a_413() {
    use http_body_util::BodyExt;
    use tower::{Layer, ServiceExt};
    let (_recorder, _guard) = Recorder::install();
    let service =
        RequestyMetadataLayer::new().layer(tower::service_fn(|_: http::Request<Body>| async {
            Ok::<_, Infallible>(http::Response::new(Body::empty()))
        }));
    let frames: Vec<Result<http_body::Frame<Bytes>, Infallible>> = vec![
        Ok(http_body::Frame::data(Bytes::from_static(
            br#"{"model":"m","pad":""#,
        ))),
        Ok(http_body::Frame::data(Bytes::from(vec![b'a'; 100]))),
        Ok(http_body::Frame::data(Bytes::from_static(br#""}"#))),
    ];
    let limited = http_body_util::Limited::new(
        http_body_util::StreamBody::new(futures_util::stream::iter(frames)),
        50,
    );
    let request = http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::new(limited))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "request_too_large");
}

/// The framing headers (`Content-Length`, `Transfer-Encoding`) `request` reaches the service with,
/// through the layer.
async fn framing_seen(request: http::Request<Body>) -> String {
    use http_body_util::BodyExt;
    use tower::{Layer, ServiceExt};
    let service = RequestyMetadataLayer::new().layer(tower::service_fn(
        |request: http::Request<Body>| async move {
            let seen = format!(
                "{:?} {:?}",
                request.headers().get("content-length"),
                request.headers().get("transfer-encoding")
            );
            Ok::<_, Infallible>(http::Response::new(Body::from(seen)))
        },
    ));
    let response = service.oneshot(request).await.unwrap();
    let seen = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&seen).into_owned()
}

/// A JSON body the layer buffers reaches the service with a `Content-Length` and no
/// `Transfer-Encoding`, also when it had no member to strip.
#[tokio::test]
async fn a_buffered_chunked_json_body_gets_a_content_length() {
    let (_recorder, _guard) = Recorder::install();
    let frames: Vec<Result<http_body::Frame<Bytes>, Infallible>> = vec![
        Ok(http_body::Frame::data(Bytes::from_static(br#"{"model":"#))),
        Ok(http_body::Frame::data(Bytes::from_static(br#""m"}"#))),
    ];
    let request = http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked")
        .body(Body::new(http_body_util::StreamBody::new(
            futures_util::stream::iter(frames),
        )))
        .unwrap();
    assert_eq!(framing_seen(request).await, r#"Some("13") None"#);
}

/// A request that came with no body and no framing headers gains none: a proxy behind the layer
/// forwards its head as the client sent it.
#[tokio::test]
async fn a_bodiless_json_request_gains_no_content_length() {
    let (_recorder, _guard) = Recorder::install();
    let request = http::Request::get("/v1/models")
        .header("content-type", "application/json")
        .body(Body::empty())
        .unwrap();
    assert_eq!(framing_seen(request).await, "None None");
    // A stated zero length stays as it was.
    let request = http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("content-length", "0")
        .body(Body::empty())
        .unwrap();
    assert_eq!(framing_seen(request).await, r#"Some("0") None"#);
}

/// The layer's own answer to a HEAD request has no body: hyper's HTTP/2 server would send one as
/// DATA, which the client refuses with a PROTOCOL_ERROR reset instead of reading a clean `400`.
#[tokio::test]
async fn a_refused_head_request_over_http2_is_a_clean_400() {
    use http_body_util::{BodyExt, Full};
    use tower::Layer;
    let (_recorder, _guard) = Recorder::install();
    let inner = tower::service_fn(|_: http::Request<Body>| async {
        Ok::<_, Infallible>(http::Response::new(Body::empty()))
    });
    let service = tower::ServiceBuilder::new()
        .map_request(|r: http::Request<hyper::body::Incoming>| r.map(Body::new))
        .service(RequestyMetadataLayer::new().layer(inner));
    let support::Http2 { addr, mut send, .. } = support::http2(service).await;
    let request = http::Request::head(format!("http://{addr}/v1/chat/completions"))
        .header("x-requesty-trace-id", "t".repeat(300))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = response.into_body().collect().await;
    assert!(body.is_ok(), "the HEAD answer's body: {body:?}");
    assert!(body.unwrap().to_bytes().is_empty());
}

/// The trace ids a completion hook saw, one per request.
type TraceIds = Arc<std::sync::Mutex<Vec<Option<String>>>>;

/// A server layer around a service that answers `200`, and the trace ids its completion hook sees.
fn reporting_trace_ids() -> (
    requesty_metadata::server::ExtractMetadata<
        impl tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + Clone,
    >,
    TraceIds,
) {
    use tower::Layer;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let hook = seen.clone();
    let service = RequestyMetadataLayer::new()
        .on_complete(move |done| {
            hook.lock()
                .unwrap()
                .push(done.metadata.and_then(|m| m.trace_id.clone()))
        })
        .layer(tower::service_fn(|_: http::Request<Body>| async {
            Ok::<_, Infallible>(http::Response::new(Body::empty()))
        }));
    (service, seen)
}

/// A header-only request refused for a header (an id or a tag too long, too many tags) still has
/// what its headers carried in its span and completion report.
#[tokio::test]
async fn a_header_only_request_refused_for_a_long_header_value_keeps_its_metadata() {
    use tower::ServiceExt;
    let (recorder, _guard) = Recorder::install();
    let (service, seen) = reporting_trace_ids();
    let long = "x".repeat(257);
    let many: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
    let cases = [
        // Refused once the headers are combined: an id or a tag too long.
        ("x-requesty-user-id", HeaderValue::from_str(&long).unwrap()),
        (
            "x-requesty-tags",
            HeaderValue::from_str(&format!("a,{long}")).unwrap(),
        ),
        // Refused as the headers are read: too many tags.
        (
            "x-requesty-tags",
            HeaderValue::from_str(&many.join(",")).unwrap(),
        ),
    ];
    for (header, value) in cases.clone() {
        let request = http::Request::get("/v1/models")
            .header("x-requesty-trace-id", "t-1")
            .header(header, value)
            .body(Body::empty())
            .unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        drop(response);
    }
    let spans = recorder.wait_closed(cases.len()).await;
    let traced: Vec<_> = spans.iter().map(|s| s.field("trace_id")).collect();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![Some("t-1".to_owned()); cases.len()],
        "the hook's trace ids; the spans': {traced:?}"
    );
    assert!(traced.iter().all(|t| *t == Some("t-1")), "{traced:?}");
}

/// A layer that reads headers alone, on either side, takes any request body whatever its error
/// type: it never reads one.
#[tokio::test]
async fn headers_only_takes_a_body_whose_error_is_no_error_type() {
    use tower::{Layer, ServiceExt};
    #[derive(Debug)]
    struct NotAnError;
    struct OddBody;
    impl http_body::Body for OddBody {
        type Data = Bytes;
        type Error = NotAnError;
        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, NotAnError>>> {
            std::task::Poll::Ready(None)
        }
    }
    let (_recorder, _guard) = Recorder::install();
    // The server layer strips the header; the client layer writes it.
    let inner = |sent: Option<&'static str>| {
        tower::service_fn(move |req: http::Request<OddBody>| async move {
            let seen = req.headers().get("x-requesty-trace-id");
            assert_eq!(seen.map(|v| v.to_str().unwrap()), sent);
            Ok::<_, Infallible>(http::Response::new(Body::empty()))
        })
    };
    let request = |trace: Option<&str>| {
        let mut request = http::Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(OddBody)
            .unwrap();
        if let Some(trace) = trace {
            request
                .headers_mut()
                .insert("x-requesty-trace-id", HeaderValue::from_str(trace).unwrap());
        }
        request
    };
    let server = RequestyMetadataLayer::new()
        .headers_only()
        .layer(inner(None));
    assert_eq!(
        server.oneshot(request(Some("t-1"))).await.unwrap().status(),
        200
    );
    let client = RequestyMetadataLayer::inject(RequestMetadata::new().trace_id("t-1"))
        .headers_only()
        .layer(inner(Some("t-1")));
    assert_eq!(client.oneshot(request(None)).await.unwrap().status(), 200);
}

/// A JSON request (the usual LLM call) refused, once its body is read, for a tag too long in a
/// header keeps what it carried in its span and completion report too.
#[tokio::test]
async fn a_json_request_refused_for_a_long_header_tag_keeps_its_metadata() {
    use tower::ServiceExt;
    let (recorder, _guard) = Recorder::install();
    let (service, seen) = reporting_trace_ids();
    let long = "x".repeat(257);
    let request = http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-requesty-trace-id", "t-1")
        .header("x-requesty-tags", format!("a,{long}"))
        .body(Body::from(r#"{"model":"m"}"#))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = axum::body::to_bytes(Body::new(response.into_body()), usize::MAX)
        .await
        .unwrap();
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"]["param"], "x-requesty-tags", "{error}");
    let spans = recorder.wait_closed(1).await;
    let traced: Vec<_> = spans.iter().map(|s| s.field("trace_id")).collect();
    assert_eq!(
        *seen.lock().unwrap(),
        [Some("t-1".to_owned())],
        "the hook's trace id; the span's: {traced:?}"
    );
}

/// A request refused for too many tags is reported without them: they are not read a second
/// time, under any bound.
#[tokio::test]
async fn a_refused_requests_report_holds_none_of_the_tags_that_got_it_refused() {
    use std::sync::Mutex;
    use tower::{Layer, ServiceExt};
    let (_recorder, _guard) = Recorder::install();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hook = seen.clone();
    let service = RequestyMetadataLayer::new()
        .on_complete(move |done| {
            hook.lock().unwrap().push(
                done.metadata
                    .map_or((0, false), |m| (m.tags.len(), m.extra.contains_key("tags"))),
            )
        })
        .layer(tower::service_fn(|_: http::Request<Body>| async {
            Ok::<_, Infallible>(http::Response::new(Body::empty()))
        }));
    let prefix = "p".repeat(10);
    for n in [1024, 1025] {
        let tags: Vec<String> = (0..n).map(|i| format!("{prefix}{i:05}")).collect();
        let value = HeaderValue::from_str(&tags.join(",")).unwrap();
        let request = http::Request::get("/v1/models")
            .header("x-requesty-tags", value)
            .body(Body::empty())
            .unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        drop(response);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen = seen.lock().unwrap().clone();
    // Neither as tags nor as an `extra` field named after their header.
    assert_eq!(seen, [(0, false), (0, false)], "tags reported");
}
