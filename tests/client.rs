//! The client side through real stacks: a reqwest-middleware client with `MetadataMiddleware` and a
//! hyper-util client wrapped by the inject layer, against axum servers on loopback (a bare echo
//! server to see the wire form, the same server behind `RequestyMetadataLayer` to see what it reads),
//! and propagation from one layered service through its handler's calls to another.
//!
//! Every test installs a recorder, even those that read no span: tests run on parallel threads, and
//! a callsite first hit on a thread without a subscriber could otherwise be cached as disabled.

mod support;

use axum::body::{Body as AxumBody, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use axum::{Extension, Json, Router};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use requesty_metadata::client::{Carrier, Field, InjectMetadata, Native};
use requesty_metadata::reqwest::MetadataMiddleware;
use requesty_metadata::{current, in_current, scope, RequestMetadata, RequestyMetadataLayer};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Next, RequestBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{client, serve, Recorder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Barrier};
use tower::{Service, ServiceBuilder, ServiceExt};

// ---------------------------------------------------------------------------------------------
// Servers

/// What a server received, as its handler saw it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Echo {
    method: String,
    body: String,
    headers: Vec<(String, String)>,
    /// The extension the server layer put on the request (always `None` on the bare server).
    metadata: Option<RequestMetadata>,
}

impl Echo {
    fn header(&self, name: &str) -> Option<&str> {
        let mut values = self.headers.iter().filter(|(n, _)| n == name);
        let value = values.next().map(|(_, v)| v.as_str());
        assert!(values.next().is_none(), "`{name}` sent more than once");
        value
    }

    /// The `x-requesty-*` headers, sorted by name.
    fn requesty_headers(&self) -> Vec<(&str, &str)> {
        let mut found: Vec<(&str, &str)> = self
            .headers
            .iter()
            .filter(|(n, _)| n.starts_with("x-requesty-"))
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        found.sort();
        found
    }
}

fn echo_of(
    method: Method,
    meta: Option<Extension<RequestMetadata>>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Echo {
    Echo {
        method: method.to_string(),
        body: String::from_utf8(body.to_vec()).expect("test bodies are UTF-8"),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        metadata: meta.map(|Extension(m)| m),
    }
}

async fn echo(
    method: Method,
    meta: Option<Extension<RequestMetadata>>,
    headers: HeaderMap,
    body: Bytes,
) -> Json<Echo> {
    Json(echo_of(method, meta, &headers, &body))
}

fn echo_router() -> Router {
    Router::new().route("/{*path}", any(echo))
}

/// An echo server without the layer: what went over the wire.
async fn bare_echo() -> SocketAddr {
    serve(echo_router()).await
}

/// The same server behind the server layer: what it reads, and what its handler is left with.
async fn layered_echo() -> SocketAddr {
    serve(echo_router().layer(RequestyMetadataLayer::new())).await
}

/// A server that answers every request with an empty `200` and reports the request's raw bytes, so
/// the header lines can be checked as they were written.
async fn raw_server() -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut raw = Vec::new();
                let mut buf = [0u8; 4096];
                while !request_complete(&raw) {
                    let n = stream.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    raw.extend_from_slice(&buf[..n]);
                }
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tx.send(raw);
            });
        }
    });
    (addr, rx)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn request_complete(raw: &[u8]) -> bool {
    let Some(end) = find(raw, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let body = &raw[end + 4..];
    if let Some(len) = head
        .split("\r\n")
        .find_map(|line| line.strip_prefix("content-length:"))
    {
        return body.len() >= len.trim().parse::<usize>().unwrap();
    }
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    true
}

/// A raw request split into its header lines (request line excluded) and its body.
fn head_lines(raw: &[u8]) -> (Vec<String>, Vec<u8>) {
    let end = find(raw, b"\r\n\r\n").expect("a complete head");
    let head = std::str::from_utf8(&raw[..end]).expect("an ASCII head");
    // Line breaks come only as CRLF pairs, one per header line.
    assert_eq!(
        head.matches('\r').count(),
        head.matches("\r\n").count(),
        "{head:?}"
    );
    assert_eq!(
        head.matches('\n').count(),
        head.matches("\r\n").count(),
        "{head:?}"
    );
    let lines: Vec<String> = head.split("\r\n").skip(1).map(str::to_owned).collect();
    for line in &lines {
        let (name, _) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("not a header line: {line:?}"));
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)),
            "{line:?}"
        );
    }
    (lines, raw[end + 4..].to_vec())
}

// ---------------------------------------------------------------------------------------------
// Clients

const CHAT: &str = r#"{"model":"openai/gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;

fn defaults() -> RequestMetadata {
    RequestMetadata::new()
        .tag("billing-agent")
        .user_id("svc-user")
        .trace_id("t-default")
        .extra("team", "platform")
}

/// `defaults()` as the member's value.
const DEFAULTS_JSON: &str = r#"{"tags":["billing-agent"],"user_id":"svc-user","trace_id":"t-default","extra":{"team":"platform"}}"#;

/// No `x-requesty-*` header at all.
const NONE: [(&str, &str); 0] = [];

/// `defaults()` in header form, sorted by name.
const DEFAULTS_HEADERS: [(&str, &str); 4] = [
    ("x-requesty-tags", "billing-agent"),
    ("x-requesty-team", "platform"),
    ("x-requesty-trace-id", "t-default"),
    ("x-requesty-user-id", "svc-user"),
];

/// `body` (an object whose last value ends right before its closing brace) with `member` appended as
/// its last member.
fn appended(body: &str, member: &str) -> String {
    let end = body.rfind('}').unwrap();
    format!(r#"{},"requesty":{member}{}"#, &body[..end], &body[end..])
}

/// Checks that `body` is `head`, a JSON value, then `tail`, byte for byte, and returns the value.
fn between(body: &str, head: &str, tail: &str) -> Value {
    assert!(body.starts_with(head) && body.ends_with(tail), "{body}");
    assert!(body.len() >= head.len() + tail.len(), "{body}");
    serde_json::from_str(&body[head.len()..body.len() - tail.len()]).unwrap()
}

fn with_middleware(middleware: MetadataMiddleware) -> ClientWithMiddleware {
    ClientBuilder::new(client()).with(middleware).build()
}

fn json_post(
    client: &ClientWithMiddleware,
    addr: SocketAddr,
    body: impl Into<reqwest::Body>,
) -> RequestBuilder {
    client
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body)
}

/// The JSON answer to a request sent without middleware.
async fn answer<T: serde::de::DeserializeOwned>(request: reqwest::RequestBuilder) -> T {
    request.send().await.unwrap().json().await.unwrap()
}

async fn echoed(request: RequestBuilder) -> Echo {
    let response = request.send().await.expect("the request is sent");
    assert_eq!(response.status(), 200);
    response.json().await.expect("an echo")
}

/// `text` as a streaming body of unknown length.
fn streamed(text: &str) -> reqwest::Body {
    let chunks: Vec<Result<Bytes, Infallible>> = text
        .as_bytes()
        .chunks(7)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

type Hyper = HyperClient<HttpConnector, Full<Bytes>>;

fn hyper_client() -> Hyper {
    HyperClient::builder(TokioExecutor::new()).build_http()
}

fn hyper_json(addr: SocketAddr, body: &str) -> http::Request<Full<Bytes>> {
    http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .unwrap()
}

async fn hyper_echo<S, B, RB>(service: S, request: http::Request<B>) -> Echo
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Error: std::fmt::Debug,
    RB: http_body::Body,
    RB::Error: std::fmt::Debug,
{
    let response = service.oneshot(request).await.expect("the request is sent");
    assert_eq!(response.status(), 200);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).expect("an echo")
}

// ---------------------------------------------------------------------------------------------
// reqwest-middleware

#[tokio::test]
async fn defaults_become_the_last_member_and_the_server_reads_them_back() {
    let (_recorder, _guard) = Recorder::install();
    let (bare, layered) = (bare_echo().await, layered_echo().await);
    let client = with_middleware(MetadataMiddleware::new(defaults()));

    let echo = echoed(json_post(&client, bare, CHAT)).await;
    let want = appended(CHAT, DEFAULTS_JSON);
    assert_eq!(echo.body, want);
    assert_eq!(
        echo.header("content-length"),
        Some(want.len().to_string().as_str())
    );
    assert_eq!(echo.requesty_headers(), NONE);

    let echo = echoed(json_post(&client, layered, CHAT)).await;
    assert_eq!(echo.metadata, Some(defaults()));
    assert_eq!(
        echo.body, CHAT,
        "the server strips exactly what the client added"
    );
    assert_eq!(
        echo.header("content-length"),
        Some(CHAT.len().to_string().as_str())
    );
}

#[tokio::test]
async fn a_per_request_extension_merges_over_the_defaults_for_that_request_only() {
    let (_recorder, _guard) = Recorder::install();
    let (bare, layered) = (bare_echo().await, layered_echo().await);
    let client = with_middleware(MetadataMiddleware::new(defaults()));
    let extension = || {
        RequestMetadata::new()
            .tag("research")
            .tag("billing-agent")
            .trace_id("session-42")
    };

    let echo = echoed(json_post(&client, bare, CHAT).with_extension(extension())).await;
    assert_eq!(
        echo.body,
        appended(
            CHAT,
            r#"{"tags":["billing-agent","research"],"user_id":"svc-user","trace_id":"session-42","extra":{"team":"platform"}}"#
        )
    );

    let echo = echoed(json_post(&client, bare, CHAT)).await;
    assert_eq!(echo.body, appended(CHAT, DEFAULTS_JSON));

    let echo = echoed(json_post(&client, layered, CHAT).with_extension(extension())).await;
    assert_eq!(
        echo.metadata,
        Some(
            RequestMetadata::new()
                .tag("billing-agent")
                .tag("research")
                .user_id("svc-user")
                .trace_id("session-42")
                .extra("team", "platform")
        )
    );
    assert_eq!(echo.body, CHAT);
}

#[tokio::test]
async fn sources_merge_in_order_and_the_body_member_wins() {
    let (_recorder, _guard) = Recorder::install();
    let (bare, layered) = (bare_echo().await, layered_echo().await);
    let level = |name: &str| {
        RequestMetadata::new()
            .tag(name)
            .user_id(format!("u-{name}"))
            .trace_id(format!("t-{name}"))
            .extra("lvl", name)
            .extra(name, "1")
    };
    let client = with_middleware(MetadataMiddleware::new(level("d")));
    let body = r#"{"model":"m","requesty":{"tags":["b"],"trace_id":"t-b","extra":{"lvl":"b"}},"messages":[]}"#;
    let request = |addr| {
        json_post(&client, addr, body)
            .with_extension(level("e"))
            .header("X-Requesty-Tags", "h")
            .header("X-Requesty-User-Id", "u-h")
            .header("X-Requesty-Trace-Id", "t-h")
            .header("X-Requesty-Lvl", "h")
            .header("X-Requesty-H", "1")
    };
    // defaults → current → extension → headers → body member.
    let want = RequestMetadata::new()
        .tag("d")
        .tag("c")
        .tag("e")
        .tag("h")
        .tag("b")
        .user_id("u-h")
        .trace_id("t-b")
        .extra("lvl", "b")
        .extra("d", "1")
        .extra("c", "1")
        .extra("e", "1")
        .extra("h", "1");
    let current = Some(Arc::new(level("c")));

    let echo = scope(current.clone(), echoed(request(bare))).await;
    // The member's value is replaced where it stands; every other byte stays.
    let member = between(
        &echo.body,
        r#"{"model":"m","requesty":"#,
        r#","messages":[]}"#,
    );
    assert_eq!(member, serde_json::to_value(&want).unwrap());
    assert_eq!(echo.requesty_headers(), NONE, "the member carries it all");
    assert_eq!(
        echo.header("content-length"),
        Some(echo.body.len().to_string().as_str())
    );

    let echo = scope(current, echoed(request(layered))).await;
    assert_eq!(echo.metadata, Some(want));
    assert_eq!(echo.body, r#"{"model":"m","messages":[]}"#);
}

#[tokio::test]
async fn every_other_byte_of_the_body_is_kept() {
    let (_recorder, _guard) = Recorder::install();
    let (bare, layered) = (bare_echo().await, layered_echo().await);
    let client = with_middleware(MetadataMiddleware::new(defaults()));
    let member = format!(r#""requesty":{DEFAULTS_JSON}"#);
    // (content type, the body up to where the member goes, the rest, whether it needs a comma)
    let cases = [
        (
            "application/json",
            concat!(
                "{\"model\" : \"m\",\n  \"temperature\":1.0e0, \"seed\":123456789012345678901234567890,\n",
                r#"  "s":"caf\u00e9 \"q\" \\ \/", "raw":"日本語 😀","#,
                "\n  \"nested\":{\"requesty\":{\"tags\":[\"inner\"]}}, \"list\":[{\"requesty\":1}, null, true, -0.0]"
            ),
            " \n}\n",
            true,
        ),
        ("application/vnd.api+json; charset=utf-8", "{", "}", false),
        ("Application/JSON", "\n\t{", " }\r\n", false),
        ("application/json", r#"{"a":{},"b":[],"c":"}""#, "}", true),
    ];
    for (content_type, head, tail, comma) in cases {
        let body = format!("{head}{tail}");
        let request = |addr| {
            client
                .post(format!("http://{addr}/v1/chat/completions"))
                .header("content-type", content_type)
                .body(body.clone())
        };
        let echo = echoed(request(bare)).await;
        let want = format!("{head}{}{member}{tail}", if comma { "," } else { "" });
        assert_eq!(echo.body, want, "{content_type}");
        assert_eq!(
            echo.header("content-length"),
            Some(want.len().to_string().as_str())
        );

        let echo = echoed(request(layered)).await;
        assert_eq!(echo.metadata, Some(defaults()), "{body}");
        assert_eq!(echo.body, body);
    }
}

#[tokio::test]
async fn a_streaming_body_gets_the_header_form() {
    let (_recorder, _guard) = Recorder::install();
    let (bare, layered) = (bare_echo().await, layered_echo().await);
    let defaults = RequestMetadata::new()
        .tag("a")
        .tag("b")
        .user_id("u")
        .trace_id("t")
        .extra("team", "platform")
        .extra("n", 1);
    let client = with_middleware(MetadataMiddleware::new(defaults));
    let extension = || RequestMetadata::new().extra("Region", "eu");

    let echo = echoed(json_post(&client, bare, streamed(CHAT)).with_extension(extension())).await;
    assert_eq!(echo.body, CHAT);
    assert_eq!(echo.header("content-length"), None);
    assert_eq!(echo.header("transfer-encoding"), Some("chunked"));
    assert_eq!(
        echo.requesty_headers(),
        [
            ("x-requesty-region", "eu"),
            ("x-requesty-tags", "a,b"),
            ("x-requesty-team", "platform"),
            ("x-requesty-trace-id", "t"),
            ("x-requesty-user-id", "u"),
        ],
        "a non-string extra value has no header form"
    );

    let echo =
        echoed(json_post(&client, layered, streamed(CHAT)).with_extension(extension())).await;
    assert_eq!(echo.body, CHAT);
    assert_eq!(
        echo.metadata,
        Some(
            RequestMetadata::new()
                .tag("a")
                .tag("b")
                .user_id("u")
                .trace_id("t")
                .extra("region", "eu")
                .extra("team", "platform")
        )
    );
}

#[tokio::test]
async fn bodies_that_cannot_carry_the_member_get_headers_and_stay_as_they_are() {
    let (_recorder, _guard) = Recorder::install();
    let bare = bare_echo().await;
    let client = with_middleware(MetadataMiddleware::new(defaults()));
    let cases: [(Option<&str>, Option<&str>, &str); 7] = [
        (Some("text/plain"), None, CHAT),
        (None, None, CHAT),
        (Some("application/json"), Some("gzip"), CHAT),
        (Some("application/json"), None, r#"[{"model":"m"}]"#),
        (Some("application/json"), None, r#"{"model":"#),
        // The caller's own member is invalid: it is theirs to fix, and left alone.
        (
            Some("application/json"),
            None,
            r#"{"requesty":{"tags":1},"model":"m"}"#,
        ),
        (Some("application/json"), None, ""),
    ];
    for (content_type, encoding, body) in cases {
        let mut request = client
            .post(format!("http://{bare}/v1/files"))
            .body(body.to_owned());
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        if let Some(ce) = encoding {
            request = request.header("content-encoding", ce);
        }
        let echo = echoed(request).await;
        assert_eq!(echo.body, body, "{content_type:?} {encoding:?}");
        assert_eq!(
            echo.requesty_headers(),
            DEFAULTS_HEADERS,
            "{content_type:?} {encoding:?} {body}"
        );
    }

    let echo = echoed(client.get(format!("http://{bare}/v1/models"))).await;
    assert_eq!(echo.method, "GET");
    assert_eq!(echo.requesty_headers(), DEFAULTS_HEADERS);

    // Over the size limit: not read, headers instead.
    let small = with_middleware(
        RequestyMetadataLayer::inject(defaults())
            .max_body_bytes(16)
            .into(),
    );
    let echo = echoed(json_post(&small, bare, CHAT)).await;
    assert_eq!(echo.body, CHAT);
    assert_eq!(echo.requesty_headers(), DEFAULTS_HEADERS);
}

#[tokio::test]
async fn a_line_break_in_a_value_never_becomes_a_header_line() {
    let (_recorder, _guard) = Recorder::install();
    let (addr, mut raw) = raw_server().await;
    let defaults = RequestMetadata::new()
        .tag("ok")
        .trace_id("t\r\nx-injected: 1")
        .extra("evil", "v\r\nx-injected: 2")
        .extra("fine", "yes");
    let extension = || RequestMetadata::new().user_id("u\nx-injected: 3");
    let headers_client = with_middleware(
        RequestyMetadataLayer::inject(defaults.clone())
            .carrier(Carrier::Headers)
            .into(),
    );
    let body_client = with_middleware(MetadataMiddleware::new(defaults));
    let url = format!("http://{addr}/v1/chat/completions");

    let header_form = [
        headers_client.get(&url).with_extension(extension()),
        headers_client
            .post(&url)
            .header("content-type", "application/json")
            .body(CHAT)
            .with_extension(extension()),
        json_post(&body_client, addr, streamed(CHAT)).with_extension(extension()),
    ];
    for request in header_form {
        assert_eq!(request.send().await.unwrap().status(), 200);
        let (lines, _) = head_lines(&raw.recv().await.unwrap());
        let mut requesty: Vec<&str> = lines
            .iter()
            .map(String::as_str)
            .filter(|l| l.to_ascii_lowercase().starts_with("x-requesty-"))
            .collect();
        requesty.sort();
        assert_eq!(
            requesty,
            ["x-requesty-fine: yes", "x-requesty-tags: ok"],
            "{lines:#?}"
        );
        assert!(
            !lines
                .iter()
                .any(|l| l.to_ascii_lowercase().contains("injected")),
            "{lines:#?}"
        );
    }

    // In the body the value is JSON-escaped: no line break reaches the wire at all.
    let request = json_post(&body_client, addr, CHAT).with_extension(extension());
    assert_eq!(request.send().await.unwrap().status(), 200);
    let (lines, body) = head_lines(&raw.recv().await.unwrap());
    assert!(
        !lines
            .iter()
            .any(|l| l.to_ascii_lowercase().contains("requesty")),
        "{lines:#?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.to_ascii_lowercase().contains("injected")),
        "{lines:#?}"
    );
    assert!(!body.contains(&b'\r') && !body.contains(&b'\n'));
    let body = String::from_utf8(body).unwrap();
    assert_eq!(
        body,
        appended(
            CHAT,
            r#"{"tags":["ok"],"user_id":"u\nx-injected: 3","trace_id":"t\r\nx-injected: 1","extra":{"evil":"v\r\nx-injected: 2","fine":"yes"}}"#
        )
    );
}

/// Fails every first attempt of a request (the even-numbered ones), echoes the others.
async fn flaky_echo() -> (SocketAddr, Arc<Mutex<Vec<Echo>>>) {
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let router = Router::new()
        .route(
            "/{*path}",
            any(
                |State(attempts): State<Arc<Mutex<Vec<Echo>>>>,
                 method: Method,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    let echo = echo_of(method, None, &headers, &body);
                    let mut attempts = attempts.lock().unwrap();
                    attempts.push(echo.clone());
                    if attempts.len() % 2 == 1 {
                        StatusCode::INTERNAL_SERVER_ERROR.into_response()
                    } else {
                        Json(echo).into_response()
                    }
                },
            ),
        )
        .with_state(attempts.clone());
    (serve(router).await, attempts)
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A hand-written retry: sends a `try_clone` of the request, and the request itself after a 5xx.
fn retry_once<'a>(
    req: reqwest::Request,
    extensions: &'a mut http::Extensions,
    next: Next<'a>,
) -> BoxFuture<'a, reqwest_middleware::Result<reqwest::Response>> {
    Box::pin(async move {
        let first = req
            .try_clone()
            .expect("the body is still buffered after the metadata middleware");
        let response = next.clone().run(first, extensions).await?;
        if !response.status().is_server_error() {
            return Ok(response);
        }
        next.run(req, extensions).await
    })
}

#[tokio::test]
async fn retries_resend_the_member_on_every_attempt() {
    let (_recorder, _guard) = Recorder::install();
    let (addr, attempts) = flaky_echo().await;
    let policy = || {
        reqwest_retry::policies::ExponentialBackoff::builder()
            .retry_bounds(Duration::from_millis(1), Duration::from_millis(5))
            .build_with_max_retries(3)
    };
    let retry = || reqwest_retry::RetryTransientMiddleware::new_with_policy(policy());
    let clients = [
        // The retry clones the request the metadata middleware already edited.
        ClientBuilder::new(client())
            .with(MetadataMiddleware::new(defaults()))
            .with(retry())
            .build(),
        // Each attempt goes through the metadata middleware again.
        ClientBuilder::new(client())
            .with(retry())
            .with(MetadataMiddleware::new(defaults()))
            .build(),
        ClientBuilder::new(client())
            .with(MetadataMiddleware::new(defaults()))
            .with(retry_once)
            .build(),
    ];
    let member = |trace: &str| {
        format!(
            r#"{{"tags":["billing-agent"],"user_id":"svc-user","trace_id":"{trace}","extra":{{"team":"platform"}}}}"#
        )
    };
    for (i, client) in clients.iter().enumerate() {
        let trace = format!("retry-{i}");
        let response = json_post(client, addr, CHAT)
            .with_extension(RequestMetadata::new().trace_id(&trace))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "client {i}");
        let attempts = std::mem::take(&mut *attempts.lock().unwrap());
        assert_eq!(attempts.len(), 2, "client {i}: one failure, one retry");
        for attempt in &attempts {
            let want = appended(CHAT, &member(&trace));
            assert_eq!(attempt.body, want, "client {i}");
            assert_eq!(
                attempt.header("content-length"),
                Some(want.len().to_string().as_str())
            );
            assert_eq!(attempt.requesty_headers(), NONE);
        }
    }

    // A request builder cloned by hand keeps its extension.
    let client = with_middleware(MetadataMiddleware::new(defaults()));
    let first =
        json_post(&client, addr, CHAT).with_extension(RequestMetadata::new().trace_id("by-hand"));
    let again = first.try_clone().expect("a buffered body clones");
    assert_eq!(first.send().await.unwrap().status(), 500);
    assert_eq!(again.send().await.unwrap().status(), 200);
    let attempts = std::mem::take(&mut *attempts.lock().unwrap());
    assert_eq!(attempts.len(), 2);
    for attempt in &attempts {
        assert_eq!(attempt.body, appended(CHAT, &member("by-hand")));
    }
}

#[tokio::test]
async fn carrier_both_sends_the_member_and_the_headers() {
    let (_recorder, _guard) = Recorder::install();
    let (bare, layered) = (bare_echo().await, layered_echo().await);
    let client = with_middleware(
        RequestyMetadataLayer::inject(defaults())
            .carrier(Carrier::Both)
            .into(),
    );

    let echo = echoed(json_post(&client, bare, CHAT)).await;
    assert_eq!(echo.body, appended(CHAT, DEFAULTS_JSON));
    assert_eq!(echo.requesty_headers(), DEFAULTS_HEADERS);

    // A header the caller set is merged in, and both carriers say the same.
    let echo = echoed(json_post(&client, bare, CHAT).header("X-Requesty-User-Id", "caller")).await;
    assert_eq!(
        echo.body,
        appended(
            CHAT,
            r#"{"tags":["billing-agent"],"user_id":"caller","trace_id":"t-default","extra":{"team":"platform"}}"#
        )
    );
    assert_eq!(echo.header("x-requesty-user-id"), Some("caller"));

    let echo = echoed(json_post(&client, bare, streamed(CHAT))).await;
    assert_eq!(echo.body, CHAT);
    assert_eq!(echo.requesty_headers(), DEFAULTS_HEADERS);

    let echo = echoed(json_post(&client, layered, CHAT)).await;
    assert_eq!(echo.metadata, Some(defaults()));
    assert_eq!(echo.body, CHAT);
    assert_eq!(echo.requesty_headers(), NONE);
}

#[tokio::test]
async fn drop_all_removes_even_what_the_request_already_carries() {
    let (recorder, _guard) = Recorder::install();
    let (bare, layered) = (bare_echo().await, layered_echo().await);
    let client = with_middleware(RequestyMetadataLayer::inject(defaults()).drop_all().into());
    let body = r#"{"model":"m","requesty":{"trace_id":"x","tags":["secret"]},"messages":[]}"#;
    let current = Some(Arc::new(RequestMetadata::new().trace_id("inbound")));
    let request = |addr, body: reqwest::Body| {
        json_post(&client, addr, body)
            .header("X-Requesty-User-Id", "leak")
            .header("X-Requesty-Team", "leak")
            .header("HTTP-Referer", "https://internal.example")
            .header("X-Title", "internal tool")
            .with_extension(RequestMetadata::new().tag("leak"))
    };

    let echo = scope(current.clone(), echoed(request(bare, body.into()))).await;
    assert_eq!(echo.body, r#"{"model":"m","messages":[]}"#);
    assert_eq!(echo.header("content-length"), Some("27"));
    assert_eq!(echo.requesty_headers(), NONE);
    // The origin is metadata too: the headers it comes from do not leave either.
    assert_eq!(echo.header("http-referer"), None);
    assert_eq!(echo.header("x-title"), None);

    // A stream is not read; the headers still go, and the client span says the member may not.
    let warnings = |recorder: &Recorder| {
        recorder
            .named("llm_client_request")
            .iter()
            .flat_map(|s| s.events.clone())
            .filter(|e| e["message"].contains("does not read"))
            .count()
    };
    assert_eq!(warnings(&recorder), 0);
    let echo = scope(current.clone(), echoed(request(bare, streamed(body)))).await;
    assert_eq!(echo.requesty_headers(), NONE);
    assert!(echo.body.contains("secret"));
    assert_eq!(warnings(&recorder), 1);
    // The same through the tower layer around a hyper client.
    let hyper = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(defaults()).drop_all())
        .service(HyperClient::builder(TokioExecutor::new()).build_http::<AxumBody>());
    let frames = futures_util::stream::iter([Ok::<_, Infallible>(Bytes::from(body))]);
    let streamed_request = http::Request::post(format!("http://{bare}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(AxumBody::from_stream(frames))
        .unwrap();
    let echo = hyper_echo(hyper, streamed_request).await;
    assert!(echo.body.contains("secret"));
    assert_eq!(warnings(&recorder), 2);

    let echo = echoed(
        client
            .get(format!("http://{bare}/v1/models"))
            .header("x-requesty-tags", "leak"),
    )
    .await;
    assert_eq!(echo.requesty_headers(), NONE);

    let echo = scope(current, echoed(request(layered, body.into()))).await;
    assert_eq!(echo.metadata, None);
    assert_eq!(echo.body, r#"{"model":"m","messages":[]}"#);
}

/// A boundary that drops the origin removes the origin headers also when their names are spelled
/// with underscores (`x_title`, `http_referer`), which CGI-style servers (WSGI, Rack, PHP) read as
/// `X-Title` and `HTTP-Referer`, as it removes such spellings of every other metadata header.
#[tokio::test]
async fn dropping_the_origin_removes_its_headers_spelled_with_underscores() {
    let (_recorder, _guard) = Recorder::install();
    let bare = bare_echo().await;
    let boundary =
        || RequestyMetadataLayer::inject(RequestMetadata::new()).drop_fields([Field::Origin]);
    let client = with_middleware(boundary().into());
    let echo = echoed(
        json_post(&client, bare, CHAT)
            .header("x_title", "internal tool")
            .header("http_referer", "https://internal.example"),
    )
    .await;
    assert_eq!(echo.header("x_title"), None);
    assert_eq!(echo.header("http_referer"), None);

    let hyper = ServiceBuilder::new()
        .layer(boundary())
        .service(hyper_client());
    let mut request = hyper_json(bare, CHAT);
    let headers = request.headers_mut();
    headers.insert("x_title", "internal tool".parse().unwrap());
    headers.insert("http_referer", "https://internal.example".parse().unwrap());
    let echo = hyper_echo(hyper, request).await;
    assert_eq!(echo.header("x_title"), None);
    assert_eq!(echo.header("http_referer"), None);
}

#[tokio::test]
async fn the_boundary_holds_for_a_buffered_body_sent_with_header_carrier() {
    // `drop_fields` promises that a dropped field never leaves, "including a member already in the
    // body". With `Carrier::Headers` a buffered JSON body is in hand all the same.
    let (_recorder, _guard) = Recorder::install();
    let bare = bare_echo().await;
    let body = r#"{"model":"m","requesty":{"user_id":"end-user-42"}}"#;
    let layer = || {
        RequestyMetadataLayer::inject(defaults())
            .carrier(Carrier::Headers)
            .drop_all()
    };

    let client = with_middleware(layer().into());
    let via_reqwest = echoed(json_post(&client, bare, body)).await;
    let client = ServiceBuilder::new().layer(layer()).service(hyper_client());
    let via_hyper = hyper_echo(client, hyper_json(bare, body)).await;
    for echo in [&via_reqwest, &via_hyper] {
        assert_eq!(echo.requesty_headers(), NONE);
    }
    let leaked: Vec<(&str, &str)> = [("reqwest", &via_reqwest), ("hyper", &via_hyper)]
        .into_iter()
        .filter(|(_, echo)| echo.body.contains("end-user-42"))
        .map(|(how, echo)| (how, echo.body.as_str()))
        .collect();
    assert_eq!(leaked, NONE, "a dropped field left in the body");
}

#[tokio::test]
async fn dropped_fields_leave_from_no_source() {
    let (_recorder, _guard) = Recorder::install();
    let bare = bare_echo().await;
    let client = with_middleware(
        RequestyMetadataLayer::inject(defaults())
            .drop_fields([Field::UserId])
            .into(),
    );
    let request = |body: reqwest::Body| {
        json_post(&client, bare, body)
            .header("X-Requesty-User-Id", "u-header")
            .with_extension(RequestMetadata::new().user_id("u-extension"))
    };
    let body = r#"{"requesty":{"user_id":"u-body","tags":["b"]},"model":"m"}"#;
    let echo = scope(
        Some(Arc::new(RequestMetadata::new().user_id("u-current"))),
        echoed(request(body.into())),
    )
    .await;
    assert_eq!(
        echo.body,
        r#"{"requesty":{"tags":["billing-agent","b"],"trace_id":"t-default","extra":{"team":"platform"}},"model":"m"}"#
    );
    assert_eq!(echo.requesty_headers(), NONE);

    let echo = echoed(request(streamed(body))).await;
    assert_eq!(echo.body, body);
    assert_eq!(
        echo.requesty_headers(),
        [
            ("x-requesty-tags", "billing-agent"),
            ("x-requesty-team", "platform"),
            ("x-requesty-trace-id", "t-default"),
        ]
    );
}

/// A request leaves an inject layer carrying, in its extensions, only what the layer let through:
/// a client stack with a second inject layer inside the first (or an in-process service) reads no
/// field the outer one dropped, and no mark of the inbound request.
#[tokio::test]
async fn what_a_layer_drops_does_not_stay_in_the_requests_extensions() {
    let (_recorder, _guard) = Recorder::install();
    let bare = bare_echo().await;
    let stack = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(RequestMetadata::new()).drop_fields([Field::UserId]))
        .layer(RequestyMetadataLayer::inject(RequestMetadata::new()))
        .service(hyper_client());
    let mut request = hyper_json(bare, r#"{"model":"m"}"#);
    request
        .extensions_mut()
        .insert(RequestMetadata::new().user_id("alice").tag("t"));
    let echo = hyper_echo(stack, request).await;
    assert_eq!(echo.body, r#"{"model":"m","requesty":{"tags":["t"]}}"#);

    // The same for two middlewares of a reqwest client.
    let reqwest = ClientBuilder::new(client())
        .with(MetadataMiddleware::from(
            RequestyMetadataLayer::inject(RequestMetadata::new()).drop_fields([Field::UserId]),
        ))
        .with(MetadataMiddleware::new(RequestMetadata::new()))
        .build();
    let own = RequestMetadata::new().user_id("alice").tag("t");
    let echo =
        echoed(json_post(&reqwest, bare, r#"{"model":"m"}"#).with_extension(own.clone())).await;
    assert_eq!(echo.body, r#"{"model":"m","requesty":{"tags":["t"]}}"#);
    // Extensions the caller keeps after the call are as the caller left them.
    let mut extensions = http::Extensions::new();
    extensions.insert(own.clone());
    let request = json_post(&reqwest, bare, r#"{"model":"m"}"#)
        .build()
        .unwrap();
    let response = reqwest
        .execute_with_extensions(request, &mut extensions)
        .await
        .unwrap();
    let echo: Echo = response.json().await.unwrap();
    assert_eq!(echo.body, r#"{"model":"m","requesty":{"tags":["t"]}}"#);
    assert_eq!(extensions.get::<RequestMetadata>(), Some(&own));
}

/// Inside a served request, a second inject layer (which starts from the inbound request's
/// metadata) does not put back a field the first one dropped either: through tower and through
/// reqwest, with the dropped field in the caller's extensions or not.
#[tokio::test]
async fn a_field_a_layer_drops_is_not_taken_back_from_the_inbound_request() {
    let (_recorder, _guard) = Recorder::install();
    let bare = bare_echo().await;
    let current = || {
        Some(Arc::new(
            RequestMetadata::new().user_id("u-current").tag("c"),
        ))
    };
    let want = r#"{"model":"m","requesty":{"tags":["c"]}}"#;
    let stack = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(RequestMetadata::new()).drop_fields([Field::UserId]))
        .layer(RequestyMetadataLayer::inject(RequestMetadata::new()))
        .service(hyper_client());
    let echo = scope(
        current(),
        hyper_echo(stack, hyper_json(bare, r#"{"model":"m"}"#)),
    )
    .await;
    assert_eq!(echo.body, want);

    let reqwest = ClientBuilder::new(client())
        .with(MetadataMiddleware::from(
            RequestyMetadataLayer::inject(RequestMetadata::new()).drop_fields([Field::UserId]),
        ))
        .with(MetadataMiddleware::new(RequestMetadata::new()))
        .build();
    let echo = scope(
        current(),
        echoed(json_post(&reqwest, bare, r#"{"model":"m"}"#)),
    )
    .await;
    assert_eq!(echo.body, want);
    let own = RequestMetadata::new().user_id("alice");
    let echo = scope(
        current(),
        echoed(json_post(&reqwest, bare, r#"{"model":"m"}"#).with_extension(own)),
    )
    .await;
    assert_eq!(echo.body, want);
}

/// A service between two inject layers may call further in only once its own future runs (an
/// async filter, a retry's later attempts): the field the outer layer dropped stays dropped for the
/// inner one then too, as it does for one called at once.
#[tokio::test]
async fn a_dropped_field_stays_dropped_for_a_layer_called_from_the_outer_calls_future() {
    let (_recorder, _guard) = Recorder::install();
    let bare = bare_echo().await;
    let current = Some(Arc::new(
        RequestMetadata::new().user_id("u-current").tag("c"),
    ));
    let stack = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(RequestMetadata::new()).drop_fields([Field::UserId]))
        .layer(tower::filter::AsyncFilterLayer::new(
            |request: http::Request<Full<Bytes>>| async move { Ok::<_, tower::BoxError>(request) },
        ))
        .layer(RequestyMetadataLayer::inject(RequestMetadata::new()))
        .service(hyper_client());
    let echo = scope(
        current,
        hyper_echo(stack, hyper_json(bare, r#"{"model":"m"}"#)),
    )
    .await;
    assert_eq!(echo.body, r#"{"model":"m","requesty":{"tags":["c"]}}"#);
}

// ---------------------------------------------------------------------------------------------
// hyper-util's client with the inject layer

#[tokio::test]
async fn the_inject_layer_wraps_a_hyper_client() {
    let (_recorder, _guard) = Recorder::install();
    let (bare, layered) = (bare_echo().await, layered_echo().await);
    let inject = |layer: requesty_metadata::InjectMetadataLayer| {
        ServiceBuilder::new().layer(layer).service(hyper_client())
    };
    let client = inject(RequestyMetadataLayer::inject(defaults()));

    let echo = hyper_echo(client.clone(), hyper_json(bare, CHAT)).await;
    let want = appended(CHAT, DEFAULTS_JSON);
    assert_eq!(echo.body, want);
    assert_eq!(
        echo.header("content-length"),
        Some(want.len().to_string().as_str())
    );
    assert_eq!(echo.requesty_headers(), NONE);

    // An extension on the request, a header and a member of the caller's own.
    let mut request = hyper_json(
        bare,
        r#"{"requesty":{"tags":["body"],"trace_id":"t-body"},"model":"m"}"#,
    );
    request
        .extensions_mut()
        .insert(RequestMetadata::new().user_id("u-ext").trace_id("t-ext"));
    request
        .headers_mut()
        .insert("x-requesty-country", "ca".parse().unwrap());
    let echo = hyper_echo(client.clone(), request).await;
    assert_eq!(
        echo.body,
        r#"{"requesty":{"tags":["billing-agent","body"],"trace_id":"t-body","user_id":"u-ext","extra":{"country":"ca","team":"platform"}},"model":"m"}"#
    );
    assert_eq!(echo.requesty_headers(), NONE);

    // Not JSON: headers, the body untouched.
    let mut request = hyper_json(bare, CHAT);
    request
        .headers_mut()
        .insert("content-type", "text/plain".parse().unwrap());
    let echo = hyper_echo(client.clone(), request).await;
    assert_eq!(echo.body, CHAT);
    assert_eq!(echo.requesty_headers(), DEFAULTS_HEADERS);

    // Through the server layer and back out.
    let echo = hyper_echo(client.clone(), hyper_json(layered, CHAT)).await;
    assert_eq!(echo.metadata, Some(defaults()));
    assert_eq!(echo.body, CHAT);

    // The options.
    let headers = inject(RequestyMetadataLayer::inject(defaults()).carrier(Carrier::Headers));
    let echo = hyper_echo(headers, hyper_json(bare, CHAT)).await;
    assert_eq!(echo.body, CHAT);
    assert_eq!(echo.requesty_headers(), DEFAULTS_HEADERS);

    let both = inject(RequestyMetadataLayer::inject(defaults()).carrier(Carrier::Both));
    let echo = hyper_echo(both, hyper_json(bare, CHAT)).await;
    assert_eq!(echo.body, appended(CHAT, DEFAULTS_JSON));
    assert_eq!(echo.requesty_headers(), DEFAULTS_HEADERS);

    let none = inject(RequestyMetadataLayer::inject(defaults()).drop_all());
    let mut request = hyper_json(bare, r#"{"model":"m","requesty":{"user_id":"u"}}"#);
    request
        .headers_mut()
        .insert("x-requesty-trace-id", "t".parse().unwrap());
    let echo = hyper_echo(none, request).await;
    assert_eq!(echo.body, r#"{"model":"m"}"#);
    assert_eq!(echo.header("content-length"), Some("13"));
    assert_eq!(echo.requesty_headers(), NONE);

    let no_user = inject(RequestyMetadataLayer::inject(defaults()).drop_fields([Field::UserId]));
    let echo = hyper_echo(no_user, hyper_json(bare, CHAT)).await;
    assert_eq!(
        echo.body,
        appended(
            CHAT,
            r#"{"tags":["billing-agent"],"trace_id":"t-default","extra":{"team":"platform"}}"#
        )
    );
}

#[tokio::test]
async fn a_hyper_client_streaming_a_body_gets_the_header_form() {
    let (_recorder, _guard) = Recorder::install();
    let bare = bare_echo().await;
    let client = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(defaults()))
        .service(HyperClient::builder(TokioExecutor::new()).build_http::<AxumBody>());
    let chunks: Vec<Result<Bytes, Infallible>> = CHAT
        .as_bytes()
        .chunks(5)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let request = http::Request::post(format!("http://{bare}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(AxumBody::from_stream(futures_util::stream::iter(chunks)))
        .unwrap();
    let echo = hyper_echo(client, request).await;
    assert_eq!(echo.body, CHAT);
    assert_eq!(echo.requesty_headers(), DEFAULTS_HEADERS);
}

/// A request body that declares 40 bytes, yields the first 9, then fails.
struct FailingBody {
    sent: bool,
}

impl http_body::Body for FailingBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        let frame = if std::mem::replace(&mut self.sent, true) {
            Err(std::io::Error::other("the source failed"))
        } else {
            Ok(http_body::Frame::data(Bytes::from_static(br#"{"model":"#)))
        };
        std::task::Poll::Ready(Some(frame))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(40)
    }
}

#[tokio::test]
async fn a_request_body_that_fails_while_read_is_not_sent_short() {
    let (_recorder, _guard) = Recorder::install();
    let received = Arc::new(Mutex::new(Vec::<Bytes>::new()));
    let router = Router::new()
        .route(
            "/{*path}",
            any(
                |State(received): State<Arc<Mutex<Vec<Bytes>>>>, body: Bytes| async move {
                    received.lock().unwrap().push(body);
                    "handled"
                },
            ),
        )
        .with_state(received.clone());
    let addr = serve(router).await;
    let request = || {
        http::Request::post(format!("http://{addr}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(AxumBody::new(FailingBody { sent: false }))
            .unwrap()
    };
    let plain = HyperClient::builder(TokioExecutor::new()).build_http::<AxumBody>();
    assert!(
        plain.clone().oneshot(request()).await.is_err(),
        "without the layer the client reports the failure"
    );

    let client = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(defaults()))
        .service(plain);
    let outcome = tokio::time::timeout(Duration::from_secs(5), client.oneshot(request()))
        .await
        .expect("an outcome in time");
    let handled = received.lock().unwrap().clone();
    assert!(
        outcome.is_err() && handled.is_empty(),
        "the failed body was sent short as a whole request: the server handled {handled:?}, \
         the client got {:?}",
        outcome.map(|r| r.status())
    );
}

// ---------------------------------------------------------------------------------------------
// Propagation: an agent service calls a tool service from its handler

const TOOL_BODY: &str = r#"{"tool":"search","query":"coffee"}"#;

#[derive(Clone)]
struct Agent {
    tool: SocketAddr,
    reqwest: ClientWithMiddleware,
    /// With `propagate(false)`.
    quiet: ClientWithMiddleware,
    hyper: InjectMetadata<Hyper>,
    barrier: Arc<Barrier>,
}

impl Agent {
    fn new(tool: SocketAddr, together: usize) -> Self {
        Self {
            tool,
            reqwest: with_middleware(MetadataMiddleware::new(RequestMetadata::new())),
            quiet: with_middleware(
                RequestyMetadataLayer::inject(RequestMetadata::new())
                    .propagate(false)
                    .into(),
            ),
            hyper: ServiceBuilder::new()
                .layer(RequestyMetadataLayer::inject(RequestMetadata::new()))
                .service(hyper_client()),
            barrier: Arc::new(Barrier::new(together)),
        }
    }

    async fn call_json(&self) -> Echo {
        echoed(json_post(&self.reqwest, self.tool, TOOL_BODY)).await
    }

    async fn call_hyper(&self) -> Echo {
        hyper_echo(self.hyper.clone(), hyper_json(self.tool, TOOL_BODY)).await
    }
}

/// What the tool saw of each of the agent's calls.
#[derive(Debug, Serialize, Deserialize)]
struct Calls {
    inbound: Option<RequestMetadata>,
    reqwest_json: Echo,
    reqwest_get: Echo,
    hyper_json: Echo,
    quiet: Echo,
}

/// The handler: no metadata code, only calls.
async fn agent(
    State(agent): State<Agent>,
    inbound: Option<Extension<RequestMetadata>>,
) -> Json<Calls> {
    Json(Calls {
        inbound: inbound.map(|Extension(m)| m),
        reqwest_json: agent.call_json().await,
        reqwest_get: echoed(
            agent
                .reqwest
                .get(format!("http://{}/v1/models", agent.tool)),
        )
        .await,
        hyper_json: agent.call_hyper().await,
        quiet: echoed(json_post(&agent.quiet, agent.tool, TOOL_BODY)).await,
    })
}

/// Waits until every concurrent request has arrived, then calls the tool twice.
async fn together(State(agent): State<Agent>) -> Json<Vec<Echo>> {
    agent.barrier.wait().await;
    let first = agent.call_json().await;
    tokio::task::yield_now().await;
    let second = agent.call_hyper().await;
    Json(vec![first, second])
}

#[derive(Debug, Serialize, Deserialize)]
struct Spawned {
    in_handler: Option<String>,
    in_plain_task: Option<String>,
    plain_task_call: Echo,
    in_scoped_task: Option<String>,
    scoped_task_calls: Vec<Echo>,
}

async fn spawner(State(agent): State<Agent>) -> Json<Spawned> {
    let trace = || current().and_then(|m| m.trace_id.clone());
    let in_plain_task = tokio::spawn(async move { trace() }).await.unwrap();
    let plain_task_call = tokio::spawn({
        let agent = agent.clone();
        async move { agent.call_json().await }
    })
    .await
    .unwrap();
    let (in_scoped_task, scoped_task_calls) = tokio::spawn(in_current({
        let agent = agent.clone();
        async move {
            tokio::task::yield_now().await;
            let seen = trace();
            let calls = vec![agent.call_json().await, agent.call_hyper().await];
            (seen, calls)
        }
    }))
    .await
    .unwrap();
    Json(Spawned {
        in_handler: trace(),
        in_plain_task,
        plain_task_call,
        in_scoped_task,
        scoped_task_calls,
    })
}

async fn agent_service(tool: SocketAddr, together_count: usize) -> SocketAddr {
    let router = Router::new()
        .route("/v1/agent", post(agent))
        .route("/v1/together", post(together))
        .route("/v1/spawn", get(spawner))
        .with_state(Agent::new(tool, together_count))
        .layer(RequestyMetadataLayer::new());
    serve(router).await
}

fn inbound(i: usize) -> RequestMetadata {
    RequestMetadata::new()
        .tag(format!("t{i}"))
        .tag("agents")
        .user_id(format!("user-{i}"))
        .trace_id(format!("trace-{i}"))
}

fn tagged(addr: SocketAddr, path: &str, meta: &RequestMetadata) -> reqwest::RequestBuilder {
    let body = json!({"model": "m", "requesty": meta});
    client()
        .post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string())
}

#[tokio::test]
async fn a_handler_calling_onward_passes_the_inbound_metadata_along() {
    let (recorder, _guard) = Recorder::install();
    let tool = layered_echo().await;
    let agent = agent_service(tool, 1).await;
    let meta = inbound(1);

    let response = tagged(agent, "/v1/agent", &meta)
        .header("X-Requesty-Team", "search")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let calls: Calls = response.json().await.unwrap();
    let want = meta.clone().extra("team", "search");
    assert_eq!(calls.inbound.as_ref(), Some(&want));
    for (how, echo) in [
        ("reqwest", &calls.reqwest_json),
        ("hyper", &calls.hyper_json),
    ] {
        assert_eq!(echo.metadata.as_ref(), Some(&want), "{how}");
        assert_eq!(
            echo.body, TOOL_BODY,
            "{how}: the tool's layer strips the member"
        );
    }
    assert_eq!(calls.reqwest_get.method, "GET");
    assert_eq!(
        calls.reqwest_get.metadata.as_ref(),
        Some(&want),
        "by headers"
    );
    assert_eq!(calls.quiet.metadata, None, "propagate(false)");
    assert_eq!(calls.quiet.body, TOOL_BODY);

    // One trace across both services: the agent's request span and the tool's three tagged ones.
    let spans = recorder.wait_closed(5).await;
    let traced = spans
        .iter()
        .filter(|s| s.field("trace_id") == Some("trace-1"))
        .count();
    assert_eq!(traced, 4, "{spans:#?}");

    // The next request carries nothing, and nothing is left over from the last one.
    let response = client()
        .post(format!("http://{agent}/v1/agent"))
        .header("content-type", "application/json")
        .body(r#"{"model":"m"}"#)
        .send()
        .await
        .unwrap();
    let calls: Calls = response.json().await.unwrap();
    assert_eq!(calls.inbound, None);
    for echo in [
        &calls.reqwest_json,
        &calls.reqwest_get,
        &calls.hyper_json,
        &calls.quiet,
    ] {
        assert_eq!(echo.metadata, None);
    }
}

#[tokio::test]
async fn a_spawned_task_sees_the_metadata_only_through_in_current() {
    let (_recorder, _guard) = Recorder::install();
    let tool = layered_echo().await;
    let agent = agent_service(tool, 1).await;
    let response = client()
        .get(format!("http://{agent}/v1/spawn"))
        .header("X-Requesty-Trace-Id", "spawn-trace")
        .header("X-Requesty-User-Id", "spawn-user")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let spawned: Spawned = response.json().await.unwrap();
    assert_eq!(spawned.in_handler.as_deref(), Some("spawn-trace"));
    assert_eq!(
        spawned.in_plain_task, None,
        "tokio::spawn starts without it"
    );
    assert_eq!(spawned.plain_task_call.metadata, None);
    assert_eq!(spawned.in_scoped_task.as_deref(), Some("spawn-trace"));
    assert_eq!(spawned.scoped_task_calls.len(), 2);
    for echo in &spawned.scoped_task_calls {
        assert_eq!(
            echo.metadata,
            Some(
                RequestMetadata::new()
                    .user_id("spawn-user")
                    .trace_id("spawn-trace")
            )
        );
    }
}

#[tokio::test]
async fn concurrent_inbound_requests_each_propagate_their_own() {
    let (_recorder, _guard) = Recorder::install();
    const N: usize = 8;
    let tool = layered_echo().await;
    let agent = agent_service(tool, N).await;
    let requests = (0..N).map(|i| async move {
        let response = tagged(agent, "/v1/together", &inbound(i))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let echoes: Vec<Echo> = response.json().await.unwrap();
        assert_eq!(echoes.len(), 2);
        for echo in echoes {
            assert_eq!(echo.metadata, Some(inbound(i)), "request {i}");
        }
    });
    // The barrier holds every handler until all N are in flight, so their calls interleave.
    tokio::time::timeout(
        Duration::from_secs(20),
        futures_util::future::join_all(requests),
    )
    .await
    .expect("all requests answered");
}

/// The metadata stays current while a handler reads the answer of a call made through the inject
/// layer: a service behind it whose response body does its work as it is read (here an in-process
/// one, which looks at the current metadata) sees the request being served, as its future does.
#[tokio::test]
async fn the_metadata_stays_current_while_a_client_response_body_is_read() {
    let (_recorder, _guard) = Recorder::install();
    let trace = || {
        current()
            .and_then(|m| m.trace_id.clone())
            .unwrap_or_default()
    };
    let in_process = tower::service_fn(move |_: http::Request<Full<Bytes>>| {
        let in_future = trace();
        async move {
            let lazy = futures_util::stream::once(async move {
                Ok::<_, Infallible>(Bytes::from(format!("{in_future} {}", trace())))
            });
            Ok::<_, Infallible>(http::Response::new(AxumBody::from_stream(lazy)))
        }
    });
    let onward = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(RequestMetadata::new()))
        .service(in_process);
    let handler = move || {
        let onward = onward.clone();
        async move {
            let request = http::Request::new(Full::new(Bytes::new()));
            let response = onward.oneshot(request).await.unwrap();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            String::from_utf8(bytes.to_vec()).unwrap()
        }
    };
    let agent = serve(
        Router::new()
            .route("/v1/agent", get(handler))
            .layer(RequestyMetadataLayer::new()),
    )
    .await;
    let seen = client()
        .get(format!("http://{agent}/v1/agent"))
        .header("X-Requesty-Trace-Id", "lazy-trace")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        seen, "lazy-trace lazy-trace",
        "in its future, then in its body"
    );
}

/// A service behind the server layer whose handler calls `next` through a reqwest client made from
/// `inject`, and answers with what `next` answered.
async fn hop(next: SocketAddr, inject: requesty_metadata::InjectMetadataLayer) -> SocketAddr {
    let client = with_middleware(inject.into());
    let handler = move || {
        let client = client.clone();
        async move {
            let response = json_post(&client, next, TOOL_BODY).send().await.unwrap();
            Json(response.json::<Value>().await.unwrap())
        }
    };
    serve(
        Router::new()
            .route("/v1/chat/completions", post(handler))
            .layer(RequestyMetadataLayer::new()),
    )
    .await
}

/// Across two hops (server, client, server, client) each service adds its defaults to what it
/// received, and a field the first client drops stays dropped: the second hop's request carries no
/// trace of it to propagate.
#[tokio::test]
async fn two_hops_carry_the_metadata_on_and_what_the_first_drops_stays_dropped() {
    let (_recorder, _guard) = Recorder::install();
    let tool = layered_echo().await;
    let relay = hop(
        tool,
        RequestyMetadataLayer::inject(RequestMetadata::new().tag("relay")),
    )
    .await;
    let agent = hop(
        relay,
        RequestyMetadataLayer::inject(RequestMetadata::new().tag("agent"))
            .drop_fields([Field::UserId]),
    )
    .await;
    let echo: Echo = answer(tagged(agent, "/v1/chat/completions", &inbound(1))).await;
    let want = RequestMetadata::new()
        .tag("relay")
        .tag("agent")
        .tag("t1")
        .tag("agents")
        .trace_id("trace-1");
    assert_eq!(echo.metadata, Some(want));
    assert_eq!(echo.body, TOOL_BODY);
}

/// A streaming handler that calls onward as it streams (each event of an SSE answer from a call)
/// sends the request's metadata from the response body's polls, after its future has ended.
#[tokio::test]
async fn a_streaming_handler_calling_onward_from_its_body_propagates_the_metadata() {
    let (_recorder, _guard) = Recorder::install();
    let tool = layered_echo().await;
    let client = with_middleware(MetadataMiddleware::new(RequestMetadata::new()));
    let handler = move || {
        let client = client.clone();
        async move {
            use futures_util::StreamExt;
            let events = futures_util::stream::iter(0..3).then(move |_| {
                let client = client.clone();
                async move {
                    let echo = echoed(json_post(&client, tool, TOOL_BODY)).await;
                    let trace = echo.metadata.and_then(|m| m.trace_id).unwrap_or_default();
                    Ok::<_, Infallible>(Bytes::from(format!("data: {trace}\n\n")))
                }
            });
            let mut response = AxumBody::from_stream(events).into_response();
            response.headers_mut().insert(
                "content-type",
                http::HeaderValue::from_static("text/event-stream"),
            );
            response
        }
    };
    let agent = serve(
        Router::new()
            .route("/v1/chat/completions", post(handler))
            .layer(RequestyMetadataLayer::new()),
    )
    .await;
    let text = tagged(agent, "/v1/chat/completions", &inbound(2))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, "data: trace-2\n\n".repeat(3));
}

/// The caller's own `X-Requesty-<Name>` header outranks an `extra` key of the layer's defaults or of
/// the request's extension that names the same header in another spelling (`Team`, `team_name` for
/// `X-Requesty-Team-Name`): header names have no case, so the header is that field, and the
/// caller's value is what the gateway reads, in the header form and in the body alike.
#[tokio::test]
async fn the_callers_own_extra_header_outranks_a_key_spelled_otherwise() {
    let (_recorder, _guard) = Recorder::install();
    let (bare, layered) = (bare_echo().await, layered_echo().await);
    let defaults = RequestMetadata::new().extra("Team", "platform");
    let extension = RequestMetadata::new().extra("cost_center", "ops");
    let client = with_middleware(MetadataMiddleware::new(defaults.clone()));
    let send = |addr: SocketAddr, body: reqwest::Body| {
        json_post(&client, addr, body)
            .header("x-requesty-team", "billing")
            .header("x-requesty-cost-center", "research")
            .with_extension(extension.clone())
    };
    // A streamed body: the header form.
    let echo = echoed(send(bare, streamed(CHAT))).await;
    assert_eq!(echo.header("x-requesty-team"), Some("billing"));
    assert_eq!(echo.header("x-requesty-cost-center"), Some("research"));
    assert_eq!(echo.header("x-requesty-cost_center"), None);
    // A buffered one: the member, which the gateway reads the caller's values from.
    let echo = echoed(send(layered, CHAT.into())).await;
    let read = echo.metadata.expect("the gateway read metadata");
    let want = RequestMetadata::new()
        .extra("cost-center", "research")
        .extra("team", "billing");
    assert_eq!(read.extra, want.extra);

    let hyper = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(defaults).carrier(Carrier::Headers))
        .service(hyper_client());
    let mut request = hyper_json(bare, CHAT);
    request.extensions_mut().insert(extension.clone());
    let headers = request.headers_mut();
    headers.insert("x-requesty-team", "billing".parse().unwrap());
    headers.insert("x-requesty-cost-center", "research".parse().unwrap());
    let echo = hyper_echo(hyper, request).await;
    assert_eq!(echo.header("x-requesty-team"), Some("billing"));
    assert_eq!(echo.header("x-requesty-cost-center"), Some("research"));
    assert_eq!(echo.header("x-requesty-cost_center"), None);
}

/// Of the client's own sources, a later one's `extra` key replaces an earlier one's that names the
/// same header in another spelling: a request's `team` over the defaults' `Team`, the request being
/// served's `team_name` over the defaults' `Team-Name`; in the header form, where both would be one
/// header, the later value is the one sent.
#[tokio::test]
async fn a_later_sources_extra_key_replaces_an_earlier_ones_spelled_otherwise() {
    let (_recorder, _guard) = Recorder::install();
    let bare = bare_echo().await;
    let defaults = RequestMetadata::new()
        .extra("Team", "platform")
        .extra("Team-Name", "core");
    let served = RequestMetadata::new().extra("team_name", "search");
    let extension = RequestMetadata::new().extra("team", "billing");
    let client = with_middleware(MetadataMiddleware::new(defaults.clone()));
    let send = json_post(&client, bare, streamed(CHAT)).with_extension(extension.clone());
    let echo = requesty_metadata::scope(Some(Arc::new(served.clone())), echoed(send)).await;
    assert_eq!(echo.header("x-requesty-team"), Some("billing"));
    assert_eq!(echo.header("x-requesty-team_name"), Some("search"));
    assert_eq!(echo.header("x-requesty-team-name"), None);

    let hyper = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(defaults).carrier(Carrier::Headers))
        .service(hyper_client());
    let mut request = hyper_json(bare, CHAT);
    request.extensions_mut().insert(extension);
    let echo = requesty_metadata::scope(Some(Arc::new(served)), hyper_echo(hyper, request)).await;
    assert_eq!(echo.header("x-requesty-team"), Some("billing"));
    assert_eq!(echo.header("x-requesty-team_name"), Some("search"));
}

/// The caller's own headers are kept whatever their count of tags: over the limits they go out with
/// a warning, like any other metadata, rather than being replaced.
#[tokio::test]
async fn the_callers_own_headers_survive_many_tags_latin1_and_unreadable_ones_warn() {
    let (recorder, _guard) = Recorder::install();
    let bare = bare_echo().await;
    let tags = vec!["a"; 65].join(",");
    let client = with_middleware(MetadataMiddleware::new(RequestMetadata::new()));
    let echo = echoed(
        client
            .get(format!("http://{bare}/v1/models"))
            .header("x-requesty-trace-id", "caller-trace")
            .header("x-requesty-tags", &tags),
    )
    .await;
    assert_eq!(echo.header("x-requesty-trace-id"), Some("caller-trace"));
    assert_eq!(echo.header("x-requesty-tags"), Some("a"));
    let hyper = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(RequestMetadata::new()))
        .service(hyper_client());
    let mut request = hyper_json(bare, TOOL_BODY);
    let headers = request.headers_mut();
    headers.insert("x-requesty-trace-id", "caller-trace".parse().unwrap());
    headers.insert("x-requesty-tags", tags.parse().unwrap());
    let echo = hyper_echo(hyper.clone(), request).await;
    let sent: Value = serde_json::from_slice(echo.body.as_bytes()).unwrap();
    assert_eq!(sent["requesty"]["trace_id"], "caller-trace");

    // A value in ISO-8859-1, as Python's `http.client` sends one, is read as the text it is and
    // goes on as UTF-8, as every value the header form writes.
    let latin1 = http::HeaderValue::from_bytes(b"Montr\xe9al").unwrap();
    let echo = echoed(
        client
            .get(format!("http://{bare}/v1/models"))
            .header("x-requesty-city", latin1.clone()),
    )
    .await;
    assert_eq!(echo.header("x-requesty-city"), Some("Montr\u{e9}al"));
    let mut request = hyper_json(bare, TOOL_BODY);
    request.headers_mut().insert("x-requesty-city", latin1);
    let echo = hyper_echo(hyper.clone(), request).await;
    let sent: Value = serde_json::from_slice(echo.body.as_bytes()).unwrap();
    assert_eq!(sent["requesty"]["extra"]["city"], "Montr\u{e9}al");

    // Headers with more tags than even a client reads are replaced by what the layer writes, with
    // a warning in each client span; the other sources still go.
    let thousands = vec!["t"; 16 * 64 + 1].join(",");
    let echo = echoed(
        client
            .get(format!("http://{bare}/v1/models"))
            .header("x-requesty-tags", &thousands)
            .with_extension(RequestMetadata::new().trace_id("own-trace")),
    )
    .await;
    assert_eq!(echo.header("x-requesty-trace-id"), Some("own-trace"));
    assert_eq!(echo.header("x-requesty-tags"), None);
    let mut request = hyper_json(bare, TOOL_BODY);
    request
        .headers_mut()
        .insert("x-requesty-tags", thousands.parse().unwrap());
    request
        .extensions_mut()
        .insert(RequestMetadata::new().trace_id("own-trace"));
    let echo = hyper_echo(hyper, request).await;
    let sent: Value = serde_json::from_slice(echo.body.as_bytes()).unwrap();
    assert_eq!(sent["requesty"]["trace_id"], "own-trace");
    assert_eq!(echo.header("x-requesty-tags"), None);
    let spans = recorder.named("llm_client_request");
    let warned = |span: &support::SpanRecord| {
        span.events
            .iter()
            .any(|e| e["message"].contains("cannot be read"))
    };
    assert_eq!(spans.iter().filter(|s| warned(s)).count(), 2, "{spans:#?}");
}

/// Merging sources can outgrow the limits each met alone: the request still goes out as it is, and
/// the client span carries a warning naming the rule, through reqwest and through the tower layer.
#[tokio::test]
async fn metadata_over_the_limits_is_sent_with_a_warning() {
    let (recorder, _guard) = Recorder::install();
    let bare = bare_echo().await;
    let layer = || {
        RequestyMetadataLayer::inject(RequestMetadata::new().tag("d1").tag("d2"))
            .limits(requesty_metadata::Limits::default().max_tags(2))
    };
    let body = r#"{"model":"m","requesty":{"tags":["b"]}}"#;
    let echo = echoed(json_post(&with_middleware(layer().into()), bare, body)).await;
    let hyper = ServiceBuilder::new().layer(layer()).service(hyper_client());
    let hyper_echoed = hyper_echo(hyper, hyper_json(bare, body)).await;
    for echo in [&echo, &hyper_echoed] {
        let sent: Value = serde_json::from_slice(echo.body.as_bytes()).unwrap();
        assert_eq!(sent["requesty"]["tags"], json!(["d1", "d2", "b"]));
    }
    let spans = recorder.named("llm_client_request");
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let warned: Vec<_> = spans
        .iter()
        .flat_map(|s| &s.events)
        .filter(|e| e.get("param").map(String::as_str) == Some("requesty.tags"))
        .collect();
    assert_eq!(warned.len(), 2, "{spans:#?}");
    assert!(
        warned[0]["message"].contains("the limit is 2"),
        "{warned:?}"
    );
}

/// A gateway that hashes user ids in its spans keeps them out of the client spans of its onward
/// calls too, once its inject layer has the same key; the id itself still travels onward.
#[tokio::test]
async fn hashed_user_ids_stay_out_of_client_spans() {
    let (recorder, _guard) = Recorder::install();
    let tool = layered_echo().await;
    let key = "span-key";
    let onward = || {
        RequestyMetadataLayer::inject(RequestMetadata::new())
            .hash_user_ids(key)
            .extra_allowlist(["tier"])
    };
    let reqwest = with_middleware(onward().into());
    let hyper = ServiceBuilder::new()
        .layer(onward())
        .service(hyper_client());
    let handler = move || {
        let (reqwest, hyper) = (reqwest.clone(), hyper.clone());
        async move {
            let first = echoed(json_post(&reqwest, tool, TOOL_BODY)).await;
            let second = hyper_echo(hyper, hyper_json(tool, TOOL_BODY)).await;
            Json([first, second])
        }
    };
    let router = Router::new().route("/v1/agent", post(handler)).layer(
        RequestyMetadataLayer::new()
            .hash_user_ids(key)
            .extra_allowlist(["tier"]),
    );
    let gateway = serve(router).await;
    let meta = RequestMetadata::new()
        .user_id("alice@example.com")
        .extra("tier", "gold")
        .extra("email", "alice@example.com");
    let echoes: Vec<Echo> = answer(tagged(gateway, "/v1/agent", &meta)).await;
    for echo in &echoes {
        let sent = echo.metadata.as_ref().expect("metadata travelled onward");
        assert_eq!(sent.user_id.as_deref(), Some("alice@example.com"));
    }
    let client_spans = recorder.named("llm_client_request");
    assert_eq!(client_spans.len(), 2, "{client_spans:#?}");
    // The tool is another service, with its own spans; the gateway's are these three.
    let gateway_span = recorder
        .requests()
        .into_iter()
        .find(|s| s.field("url.path") == Some("/v1/agent"))
        .expect("the gateway's span");
    let server_hash = gateway_span.field("user.hash").map(str::to_owned);
    assert!(server_hash.is_some());
    assert!(gateway_span.target.starts_with("requesty_metadata::server"));
    for span in &client_spans {
        assert_eq!(span.target, "requesty_metadata::client");
        assert_eq!(span.field("user.hash").map(str::to_owned), server_hash);
        assert!(span.field("extra").is_some_and(|e| e.contains("gold")));
    }
    for span in client_spans.iter().chain([&gateway_span]) {
        for (field, value) in &span.fields {
            assert!(
                !value.contains("alice@example.com"),
                "{} records the user id in {field}: {value}",
                span.name
            );
        }
    }
}

#[tokio::test]
async fn provider_native_with_the_header_carrier_writes_the_native_field() {
    let (_recorder, _guard) = Recorder::install();
    let bare = bare_echo().await;
    let layer = straight_to_openai;
    let body = r#"{"model":"gpt-4o","messages":[]}"#;
    for (how, echo) in both_ways(layer, bare, body).await {
        let sent: Value = serde_json::from_str(&echo.body).unwrap();
        assert_eq!(sent["safety_identifier"], "user-42", "{how}: {}", echo.body);
    }
}

/// The native field goes out with metadata over the limits too (sent with a warning), and never
/// breaks the body: one too deep to read is sent without it.
#[tokio::test]
async fn the_native_field_survives_metadata_over_the_limits_and_never_breaks_the_body() {
    use requesty_metadata::client::Native;
    let (_recorder, _guard) = Recorder::install();
    let bare = bare_echo().await;
    let layer = || {
        RequestyMetadataLayer::inject(RequestMetadata::new().tag("default").user_id("user-42"))
            .provider_native(Native::OpenAi)
    };
    let mut many = RequestMetadata::new();
    for i in 0..64 {
        many = many.tag(format!("in-{i}"));
    }
    let many = Some(Arc::new(many));
    let body = r#"{"model":"gpt-4o","messages":[]}"#;
    let via_reqwest = scope(
        many.clone(),
        echoed(json_post(&with_middleware(layer().into()), bare, body)),
    )
    .await;
    let hyper = ServiceBuilder::new().layer(layer()).service(hyper_client());
    let via_hyper = scope(many, hyper_echo(hyper, hyper_json(bare, body))).await;
    for (how, echo) in [("reqwest", &via_reqwest), ("hyper", &via_hyper)] {
        let sent: Value = serde_json::from_str(&echo.body).unwrap();
        assert_eq!(sent["requesty"]["tags"].as_array().unwrap().len(), 65);
        assert_eq!(sent["safety_identifier"], "user-42", "{how}");
    }

    let mut deep = json!(1);
    for _ in 0..130 {
        deep = json!([deep]);
    }
    let extension = RequestMetadata::new().extra("deep", deep);
    let via_reqwest = echoed(
        json_post(&with_middleware(layer().into()), bare, body).with_extension(extension.clone()),
    )
    .await;
    let hyper = ServiceBuilder::new().layer(layer()).service(hyper_client());
    let mut request = hyper_json(bare, body);
    request.extensions_mut().insert(extension);
    let via_hyper = hyper_echo(hyper, request).await;
    for (how, echo) in [("reqwest", &via_reqwest), ("hyper", &via_hyper)] {
        assert!(
            echo.body.starts_with(r#"{"model":"gpt-4o","messages":[]"#),
            "{how}: {}",
            &echo.body[..60]
        );
    }
}

/// One value a header cannot hold is left out on its own: the other tags, and the other Portkey
/// fields, still go.
#[tokio::test]
async fn one_value_a_header_cannot_hold_takes_nothing_else_with_it() {
    use requesty_metadata::client::Gateway;
    let (_recorder, _guard) = Recorder::install();
    let bare = bare_echo().await;
    let client = with_middleware(MetadataMiddleware::new(defaults()));
    let inbound = Some(Arc::new(RequestMetadata::new().tag("bell\u{7}")));
    let echo = scope(inbound, echoed(json_post(&client, bare, streamed(CHAT)))).await;
    assert_eq!(echo.body, CHAT);
    assert_eq!(echo.header("x-requesty-tags"), Some("billing-agent"));

    let client = with_middleware(
        RequestyMetadataLayer::inject(defaults())
            .gateway_headers(Gateway::Portkey)
            .into(),
    );
    let inbound = Some(Arc::new(RequestMetadata::new().extra("note", "x\u{7f}")));
    let echo = scope(inbound, echoed(json_post(&client, bare, CHAT))).await;
    let portkey: Value =
        serde_json::from_str(echo.header("x-portkey-metadata").expect("sent")).unwrap();
    assert_eq!(portkey["_user"], "svc-user");
    assert_eq!(portkey["note"], "x\u{7f}");
}

/// In other gateways' headers the core fields win over `extra` keys of the same name, as in the
/// documented precedence.
#[tokio::test]
async fn extra_keys_do_not_override_core_fields_in_gateway_headers() {
    use requesty_metadata::client::Gateway;
    let (_recorder, _guard) = Recorder::install();
    let bare = bare_echo().await;
    let client = with_middleware(
        RequestyMetadataLayer::inject(RequestMetadata::new().tag("billing"))
            .gateway_headers(Gateway::Portkey)
            .gateway_headers(Gateway::Helicone)
            .into(),
    );
    let inbound = Some(Arc::new(
        RequestMetadata::new()
            .extra("_user", "mallory")
            .extra("tags", "free-tier"),
    ));
    let echo = scope(
        inbound,
        echoed(
            json_post(&client, bare, CHAT).with_extension(RequestMetadata::new().user_id("alice")),
        ),
    )
    .await;
    let portkey: Value = serde_json::from_str(echo.header("x-portkey-metadata").unwrap()).unwrap();
    assert_eq!(
        [
            portkey["_user"].as_str(),
            echo.header("helicone-user-id"),
            portkey["tags"].as_str(),
            echo.header("helicone-property-tags"),
        ],
        [
            Some("alice"),
            Some("alice"),
            Some("billing"),
            Some("billing")
        ]
    );
}

/// A member over the limits in a body the client reads is read all the same (it is the caller's
/// own), so `drop_all` holds; one of the wrong type cannot be read, and goes whole (with a
/// warning); one given twice cannot even be cut out, and is sent with a warning.
#[tokio::test]
async fn drop_all_holds_for_a_member_over_the_limits_and_warns_for_one_it_cannot_read() {
    let (recorder, _guard) = Recorder::install();
    let bare = bare_echo().await;
    let tags: Vec<String> = (0..65).map(|i| format!("\"t{i}\"")).collect();
    let over_limits = format!(
        r#"{{"model":"m","requesty":{{"user_id":"end-user-42","tags":[{}]}}}}"#,
        tags.join(",")
    );
    let layer = || RequestyMetadataLayer::inject(defaults()).drop_all();
    let wrong_type = r#"{"model":"m","requesty":{"tags":"secret-tag","user_id":"end-user-42"}}"#;
    for body in [over_limits.as_str(), wrong_type] {
        for (how, echo) in both_ways(layer, bare, body).await {
            assert_eq!(echo.body, r#"{"model":"m"}"#, "{how}: {body}");
        }
    }
    let twice = r#"{"model":"m","requesty":{"user_id":"end-user-42"},"requesty":null}"#;
    for (how, echo) in both_ways(layer, bare, twice).await {
        assert_eq!(echo.body, twice, "{how}");
    }
    let warned = client_warnings(&recorder, "cannot be read");
    assert_eq!(warned, 4);
}

/// `propagate(false)` holds for a handler that forwards the very request it received: the server
/// layer's metadata in its extensions is the inbound request's, not the call's own. What the
/// handler sets as the call's own is kept. The same through the reqwest middleware, the request's
/// extensions passed along (`execute_with_extensions`).
#[tokio::test]
async fn propagate_false_holds_for_a_forwarded_request() {
    let (_recorder, _guard) = Recorder::install();
    for through_reqwest in [false, true] {
        let forwarded = |own| async move {
            if through_reqwest {
                forwarded_through_reqwest_with_propagation_off(own).await
            } else {
                forwarded_with_propagation_off(own).await
            }
        };
        let echo = forwarded(None).await;
        assert!(
            !echo.body.contains("user-7"),
            "{through_reqwest}: {}",
            echo.body
        );
        assert_eq!(echo.requesty_headers(), NONE);
        let echo = forwarded(Some(RequestMetadata::new().tag("proxy-own"))).await;
        assert!(
            !echo.body.contains("user-7"),
            "{through_reqwest}: {}",
            echo.body
        );
        assert!(
            echo.body.contains("proxy-own"),
            "{through_reqwest}: {}",
            echo.body
        );
    }
}

/// A gateway whose handler forwards the request it received (inbound metadata of user 7), after
/// inserting `own` as the call's own metadata, through an inject layer with propagation off; what
/// the provider behind it saw.
async fn forwarded_with_propagation_off(own: Option<RequestMetadata>) -> Echo {
    let bare = bare_echo().await;
    let onward = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(RequestMetadata::new()).propagate(false))
        .service(HyperClient::builder(TokioExecutor::new()).build_http::<AxumBody>());
    let proxy = move |mut req: axum::extract::Request| {
        let (onward, own) = (onward.clone(), own.clone());
        async move {
            *req.uri_mut() = format!("http://{bare}/v1/chat/completions")
                .parse()
                .unwrap();
            if let Some(own) = own {
                req.extensions_mut().insert(own);
            }
            let response = onward.oneshot(req).await.unwrap();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            AxumBody::from(bytes)
        }
    };
    through_gateway(proxy).await
}

/// Serves `proxy` as a gateway's handler behind the server layer, sends it a request carrying
/// user 7's metadata, and returns what the provider behind it saw.
async fn through_gateway<H, T>(proxy: H) -> Echo
where
    H: axum::handler::Handler<T, ()>,
    T: 'static,
{
    let gateway = serve(
        Router::new()
            .route("/v1/chat/completions", post(proxy))
            .layer(RequestyMetadataLayer::new()),
    )
    .await;
    answer(tagged(gateway, "/v1/chat/completions", &inbound(7))).await
}

/// A layer made `headers_only()` reads no body, and neither does the middleware made from it: a
/// JSON body with a member goes as it is, whatever else the layer was asked (to hold a boundary,
/// to write the provider's field). The provider's field, asked for before, has no effect at all:
/// no warning that it was left out, no provider named.
#[tokio::test]
async fn a_headers_only_layer_as_middleware_leaves_bodies_alone() {
    let (recorder, _guard) = Recorder::install();
    let addr = bare_echo().await;
    let layer = RequestyMetadataLayer::inject(RequestMetadata::new().user_id("u1"))
        .provider_native(Native::OpenAi)
        .headers_only()
        .drop_fields([Field::UserId]);
    let client = with_middleware(layer.into());
    let body = r#"{"model":"m","requesty":{"tags":["own"]}}"#;
    let echo = echoed(json_post(&client, addr, body)).await;
    assert_eq!(echo.body, body);
    let spans = recorder.named("llm_client_request");
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].field("gen_ai.provider.name"), None);
    let events = format!("{:?}", spans[0].events);
    assert!(!events.contains("provider's user field"), "{events}");
}

/// [`forwarded_with_propagation_off`] with a reqwest-middleware client: the handler sends the
/// request's method, headers and body to the provider, with the request's extensions.
async fn forwarded_through_reqwest_with_propagation_off(own: Option<RequestMetadata>) -> Echo {
    let bare = bare_echo().await;
    let onward = with_middleware(
        RequestyMetadataLayer::inject(RequestMetadata::new())
            .propagate(false)
            .into(),
    );
    let proxy = move |req: axum::extract::Request| {
        let (onward, own) = (onward.clone(), own.clone());
        async move {
            let (mut parts, body) = req.into_parts();
            if let Some(own) = own {
                parts.extensions.insert(own);
            }
            let body = body.collect().await.unwrap().to_bytes();
            let request = onward
                .request(
                    parts.method.clone(),
                    format!("http://{bare}/v1/chat/completions"),
                )
                .headers(parts.headers.clone())
                .body(body)
                .build()
                .unwrap();
            let response = onward
                .execute_with_extensions(request, &mut parts.extensions)
                .await
                .unwrap();
            AxumBody::from(response.bytes().await.unwrap())
        }
    };
    through_gateway(proxy).await
}

/// With both carriers an `extra` key with capitals travels in the body and (lowercased) in a
/// header: the gateway reads it once, the body's spelling winning.
#[tokio::test]
async fn carrier_both_does_not_duplicate_an_extra_key_with_capitals() {
    let (_recorder, _guard) = Recorder::install();
    let layered = layered_echo().await;
    let sent = RequestMetadata::new().trace_id("t").extra("Region", "eu");
    let client = with_middleware(
        RequestyMetadataLayer::inject(sent.clone())
            .carrier(Carrier::Both)
            .into(),
    );
    let echo = echoed(json_post(&client, layered, CHAT)).await;
    assert_eq!(echo.metadata, Some(sent));
}

/// A client call that fails leaves its span saying so, through tower and through reqwest.
#[tokio::test]
async fn a_failed_client_call_is_marked_in_its_client_span() {
    let (recorder, _guard) = Recorder::install();
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let hyper = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(defaults()))
        .service(hyper_client());
    assert!(hyper.oneshot(hyper_json(closed, CHAT)).await.is_err());
    let reqwest = with_middleware(MetadataMiddleware::new(defaults()));
    assert!(json_post(&reqwest, closed, CHAT).send().await.is_err());
    let spans = recorder.named("llm_client_request");
    assert_eq!(spans.len(), 2);
    for span in spans {
        assert_eq!(span.field("error.type"), Some("service"));
        assert_eq!(span.field("requesty.response.completed"), Some("false"));
    }
}

/// A server that takes requests and never answers; each connection's first bytes are reported.
async fn silent_server() -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut open = Vec::new();
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            if stream.read(&mut buf).await.unwrap() > 0 {
                tx.send(()).unwrap();
            }
            open.push(stream);
        }
    });
    (addr, rx)
}

/// A client call given up before its answer came (a timeout, say) leaves its span saying it did not
/// complete, as a server span does for a request dropped before its answer: through tower and
/// through reqwest.
#[tokio::test]
async fn a_call_given_up_before_its_answer_is_marked_in_its_client_span() {
    let (recorder, _guard) = Recorder::install();
    let (addr, mut arrived) = silent_server().await;
    let hyper = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(defaults()))
        .service(hyper_client());
    tokio::select! {
        _ = hyper.oneshot(hyper_json(addr, CHAT)) => panic!("the server never answers"),
        _ = arrived.recv() => {}
    }
    let reqwest = with_middleware(MetadataMiddleware::new(defaults()));
    tokio::select! {
        _ = json_post(&reqwest, addr, CHAT).send() => panic!("the server never answers"),
        _ = arrived.recv() => {}
    }
    let spans = recorder.named("llm_client_request");
    assert_eq!(spans.len(), 2);
    for span in spans {
        assert!(span.closed);
        assert_eq!(
            span.field("requesty.response.completed"),
            Some("false"),
            "{span:#?}"
        );
    }
}

/// A call given up before its answer came (a timeout, say) gives the caller's extensions back as
/// they were too: its own metadata, not the call's, and the inbound request's mark.
#[tokio::test]
async fn a_call_given_up_gives_the_callers_extensions_back() {
    let (_recorder, _guard) = Recorder::install();
    let (addr, mut arrived) = silent_server().await;
    let reqwest = ClientBuilder::new(client())
        .with(MetadataMiddleware::from(
            RequestyMetadataLayer::inject(RequestMetadata::new()).drop_fields([Field::UserId]),
        ))
        .build();
    let own = RequestMetadata::new().user_id("alice").tag("t");
    let mut extensions = http::Extensions::new();
    extensions.insert(own.clone());
    let request = json_post(&reqwest, addr, CHAT).build().unwrap();
    tokio::select! {
        _ = reqwest.execute_with_extensions(request, &mut extensions) => {
            panic!("the server never answers")
        }
        _ = arrived.recv() => {}
    }
    assert_eq!(extensions.get::<RequestMetadata>(), Some(&own));
}

/// Straight to a provider (headers only, with its own field), a member the client cannot read is
/// removed whole too: the provider would refuse it. The provider's own field still goes in.
#[tokio::test]
async fn the_header_carrier_removes_a_member_it_cannot_read() {
    let (_recorder, _guard) = Recorder::install();
    let bare = bare_echo().await;
    let layer = straight_to_openai;
    let body = r#"{"model":"gpt-4o","requesty":{"tags":"not-an-array"},"messages":[]}"#;
    for (how, echo) in both_ways(layer, bare, body).await {
        assert_eq!(
            echo.body, r#"{"model":"gpt-4o","messages":[],"safety_identifier":"user-42"}"#,
            "{how}"
        );
    }
}

/// A body too deep to read goes as it is, but a boundary to hold gets a warning.
#[tokio::test]
async fn a_body_too_deep_to_read_is_sent_with_a_warning_when_fields_are_dropped() {
    let (recorder, _guard) = Recorder::install();
    let bare = bare_echo().await;
    let mut deep = String::from("1");
    for _ in 0..130 {
        deep = format!("[{deep}]");
    }
    let body = format!(r#"{{"model":"m","requesty":{{"user_id":"u"}},"messages":{deep}}}"#);
    let layer = || RequestyMetadataLayer::inject(RequestMetadata::new()).drop_all();
    both_ways(layer, bare, &body).await;
    let warned = client_warnings(&recorder, "cannot be read");
    assert_eq!(warned, 2);
}

/// `Carrier::Both` keeps every `extra` key in the headers too, so metadata survives a redirect
/// that drops the body (as the reqwest middleware's docs advise).
#[tokio::test]
async fn carrier_both_keeps_metadata_through_a_redirect_that_drops_the_body() {
    let (_recorder, _guard) = Recorder::install();
    let bare = bare_echo().await;
    let redirect = serve(Router::new().route(
        "/v1/chat/completions",
        post(move || async move {
            (
                StatusCode::SEE_OTHER,
                [("location", format!("http://{bare}/v1/result"))],
            )
        }),
    ))
    .await;
    let client = with_middleware(
        RequestyMetadataLayer::inject(RequestMetadata::new().trace_id("t").extra("Region", "eu"))
            .carrier(Carrier::Both)
            .into(),
    );
    let echo = echoed(json_post(&client, redirect, CHAT)).await;
    assert_eq!(echo.method, "GET");
    assert_eq!(echo.header("x-requesty-trace-id"), Some("t"));
    assert_eq!(echo.header("x-requesty-region"), Some("eu"));
}

/// How many events in client spans say `text`.
fn client_warnings(recorder: &Recorder, text: &str) -> usize {
    recorder
        .named("llm_client_request")
        .iter()
        .flat_map(|s| s.events.clone())
        .filter(|e| e.get("message").is_some_and(|m| m.contains(text)))
        .count()
}

/// What `addr` saw of a JSON chat request with `body`, sent through the reqwest middleware and
/// through the tower layer around a hyper client, each made by `layer`: the two must agree.
async fn both_ways(
    layer: impl Fn() -> requesty_metadata::InjectMetadataLayer,
    addr: SocketAddr,
    body: &str,
) -> [(&'static str, Echo); 2] {
    let via_reqwest = echoed(json_post(
        &with_middleware(layer().into()),
        addr,
        body.to_owned(),
    ))
    .await;
    let hyper = ServiceBuilder::new().layer(layer()).service(hyper_client());
    let via_hyper = hyper_echo(hyper, hyper_json(addr, body)).await;
    [("reqwest", via_reqwest), ("hyper", via_hyper)]
}

/// An inject layer for calls straight to OpenAI: headers only, and the user id as the provider's
/// own `safety_identifier`.
fn straight_to_openai() -> requesty_metadata::InjectMetadataLayer {
    use requesty_metadata::client::Native;
    RequestyMetadataLayer::inject(RequestMetadata::new().user_id("user-42"))
        .provider_native(Native::OpenAi)
        .carrier(Carrier::Headers)
}

/// What is left out of the metadata headers is warned about inside the client span of the call it
/// was left out of, whether the body was read or not.
#[tokio::test]
async fn header_warnings_land_in_the_client_span() {
    let (recorder, _guard) = Recorder::install();
    let bare = bare_echo().await;
    let client = with_middleware(MetadataMiddleware::new(defaults()));
    let inbound = || Some(Arc::new(RequestMetadata::new().tag("bell\u{7}")));
    // Not read: a streaming body.
    let echo = scope(inbound(), echoed(json_post(&client, bare, streamed(CHAT)))).await;
    assert_eq!(echo.header("x-requesty-tags"), Some("billing-agent"));
    assert_eq!(client_warnings(&recorder, "tags left out"), 1);
    // Read, but not an object: the headers carry the metadata.
    let echo = scope(inbound(), echoed(json_post(&client, bare, "[1]"))).await;
    assert_eq!(echo.header("x-requesty-tags"), Some("billing-agent"));
    assert_eq!(client_warnings(&recorder, "tags left out"), 2);
    // An object, its member written with the headers alongside.
    let both = with_middleware(
        RequestyMetadataLayer::inject(defaults())
            .carrier(Carrier::Both)
            .into(),
    );
    let echo = scope(inbound(), echoed(json_post(&both, bare, CHAT))).await;
    assert_eq!(echo.header("x-requesty-tags"), Some("billing-agent"));
    assert_eq!(client_warnings(&recorder, "tags left out"), 3);
    // The tower layer around a hyper client: a body it does not read, one that is not an object,
    // and an object whose member is written with the headers alongside.
    let layer = || RequestyMetadataLayer::inject(defaults()).carrier(Carrier::Both);
    let mut plain = hyper_json(bare, "plain text");
    plain
        .headers_mut()
        .insert("content-type", http::HeaderValue::from_static("text/plain"));
    for (request, count) in [
        (plain, 4),
        (hyper_json(bare, "[1]"), 5),
        (hyper_json(bare, CHAT), 6),
    ] {
        let hyper = ServiceBuilder::new().layer(layer()).service(hyper_client());
        let echo = scope(inbound(), hyper_echo(hyper, request)).await;
        assert_eq!(echo.header("x-requesty-tags"), Some("billing-agent"));
        assert_eq!(client_warnings(&recorder, "tags left out"), count);
    }
}

/// An answer to HEAD, and a `304`, carry no body whatever `Content-Length` they state: the client
/// span counts them as completed.
#[tokio::test]
async fn bodiless_answers_complete_the_client_span() {
    let (recorder, _guard) = Recorder::install();
    let router = Router::new().route(
        "/v1/models",
        get(|headers: HeaderMap| async move {
            if headers.contains_key("if-none-match") {
                return (
                    StatusCode::NOT_MODIFIED,
                    [("content-length", "100")],
                    AxumBody::empty(),
                )
                    .into_response();
            }
            "x".repeat(100).into_response()
        }),
    );
    let addr = serve(router).await;
    let url = format!("http://{addr}/v1/models");
    let middleware = with_middleware(MetadataMiddleware::new(defaults()));
    let head = middleware.head(&url).send().await.unwrap();
    assert_eq!(head.headers()["content-length"], "100");
    assert!(head.bytes().await.unwrap().is_empty());
    let cached = middleware
        .get(&url)
        .header("if-none-match", "\"v1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);
    assert!(cached.bytes().await.unwrap().is_empty());
    let hyper = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(defaults()))
        .service(HyperClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let request = http::Request::head(&url).body(Full::default()).unwrap();
    let head = hyper.oneshot(request).await.unwrap();
    assert_eq!(head.headers()["content-length"], "100");
    assert!(head
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .is_empty());
    let spans = recorder.named("llm_client_request");
    assert_eq!(spans.len(), 3);
    for span in spans {
        assert!(span.closed, "{span:#?}");
        assert_eq!(
            span.field("requesty.response.completed"),
            Some("true"),
            "{span:#?}"
        );
    }
}

/// A member that already holds every tag the middleware adds, in another order, needs no change:
/// the body goes as it came.
#[tokio::test]
async fn reqwest_leaves_a_member_that_holds_the_tags_as_it_is() {
    let (_recorder, _guard) = Recorder::install();
    let bare = bare_echo().await;
    let client = with_middleware(MetadataMiddleware::new(
        RequestMetadata::new().tag("a").tag("b"),
    ));
    let body = r#"{"model":"m","requesty":{"tags":["b","a"]}}"#;
    let echo = echoed(json_post(&client, bare, body)).await;
    assert_eq!(echo.body, body);
}

/// A JSON body the client reads but cannot put the provider's user field in (nested deeper than
/// `max_depth`, or not an object) goes as it is, and the client span says the field is left out.
#[tokio::test]
async fn a_body_without_room_for_the_native_field_is_warned_about() {
    let (recorder, _guard) = Recorder::install();
    let bare = bare_echo().await;
    let deep = format!(
        r#"{{"model":"gpt-4o","messages":{}1{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    for body in [deep.as_str(), r#"[{"model":"gpt-4o"}]"#] {
        for (how, echo) in both_ways(straight_to_openai, bare, body).await {
            assert_eq!(echo.body, body, "{how}");
        }
    }
    assert_eq!(
        client_warnings(&recorder, "provider's user field is left out"),
        4
    );
}

/// A request with no body to speak of (a GET with the JSON content type an SDK sets on every call,
/// with no body or one set explicitly but empty or only whitespace) has no user field to leave out:
/// no warning through reqwest or through the tower layer.
#[tokio::test]
async fn a_get_without_a_body_draws_no_user_field_warning() {
    let (recorder, _guard) = Recorder::install();
    let bare = bare_echo().await;
    for body in [None, Some(""), Some(" \r\n\t")] {
        let mut request = with_middleware(straight_to_openai().into())
            .get(format!("http://{bare}/v1/models"))
            .header("content-type", "application/json");
        if let Some(body) = body {
            request = request.body(body);
        }
        assert_eq!(request.send().await.unwrap().status(), 200);
    }
    let reqwest_warnings = client_warnings(&recorder, "provider's user field is left out");
    let hyper = ServiceBuilder::new()
        .layer(straight_to_openai())
        .service(hyper_client());
    let request = http::Request::get(format!("http://{bare}/v1/models"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(hyper.oneshot(request).await.unwrap().status(), 200);
    let all_warnings = client_warnings(&recorder, "provider's user field is left out");
    assert_eq!(
        (reqwest_warnings, all_warnings - reqwest_warnings),
        (0, 0),
        "(reqwest, hyper)"
    );
}

/// `max_member_bytes` is checked through reqwest as through the tower layer: a member over it, each
/// field within its own limit, is sent with a warning.
#[tokio::test]
async fn a_member_over_max_member_bytes_is_sent_with_a_warning_through_reqwest() {
    let (recorder, _guard) = Recorder::install();
    let bare = bare_echo().await;
    let layer = RequestyMetadataLayer::inject(
        RequestMetadata::new()
            .user_id("u".repeat(200))
            .trace_id("t".repeat(200)),
    )
    .limits(requesty_metadata::Limits::default().max_member_bytes(256));
    let echo = echoed(json_post(
        &with_middleware(layer.into()),
        bare,
        r#"{"model":"m"}"#,
    ))
    .await;
    let sent: Value = serde_json::from_slice(echo.body.as_bytes()).unwrap();
    assert_eq!(sent["requesty"]["user_id"], json!("u".repeat(200)));
    let spans = recorder.named("llm_client_request");
    let warned = spans
        .iter()
        .flat_map(|s| &s.events)
        .any(|e| e.get("param").map(String::as_str) == Some("requesty"));
    assert!(warned, "{spans:#?}");
}

/// A caller's own `extra` over `max_extra_bytes` as sent (its escapes counted), within it written
/// compactly, is warned of through reqwest as through the tower layer.
#[tokio::test]
async fn an_extra_over_max_extra_bytes_as_sent_is_warned_of_through_reqwest() {
    let (recorder, _guard) = Recorder::install();
    let bare = bare_echo().await;
    let limits = requesty_metadata::Limits::default().max_extra_bytes(256);
    let layer = RequestyMetadataLayer::inject(RequestMetadata::new().tag("t")).limits(limits);
    let note = r"\u00e9".repeat(45);
    let body = format!(r#"{{"model": "m", "requesty": {{"extra": {{"note": "{note}"}}}}}}"#);
    let echo = echoed(json_post(&with_middleware(layer.into()), bare, body)).await;
    let refused = requesty_metadata::codec::scan(echo.body.as_bytes(), &limits).unwrap_err();
    assert_eq!(refused.param(), "requesty.extra");
    let spans = recorder.named("llm_client_request");
    let warned = spans
        .iter()
        .flat_map(|s| &s.events)
        .any(|e| e.get("param").map(String::as_str) == Some("requesty.extra"));
    assert!(warned, "{spans:#?}");
}
