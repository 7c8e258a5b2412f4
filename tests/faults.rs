//! Faults through real stacks: clients that stall or leave, upstreams that fail or cut a stream,
//! inner services that are not ready or fail readiness, and bodies at the size limit sent as odd
//! chunked frames over raw TCP.
//!
//! Every test installs a recorder, even those that read no span: tests run on parallel threads, and
//! a callsite first hit on a thread without a subscriber could otherwise be cached as disabled.
//! Every network wait is bounded, so a fault that hangs fails the test instead of stalling it.

mod support;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::{Extension, Router};
use futures_util::{FutureExt, StreamExt};
use requesty_metadata::usage::UsageReader;
use requesty_metadata::{RequestMetadata, RequestyMetadataLayer};
use serde_json::Value;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use support::{client, serve, Recorder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::{BoxError, Layer, Service, ServiceExt};

/// The longest any single network step may take.
const STEP: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test when it takes longer than [`STEP`].
async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(STEP, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what}: no progress within {STEP:?}"),
    }
}

/// Waits (bounded) until `condition` holds.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: still not the case after {STEP:?}");
}

/// Counts live values: one per guard, decremented when the guard is dropped.
#[derive(Clone, Default)]
struct Live(Arc<AtomicUsize>);

struct Guard(Live);

impl Live {
    fn guard(&self) -> Guard {
        self.0.fetch_add(1, Ordering::SeqCst);
        Guard(self.clone())
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A layer that counts the calls it sees and how many of their futures are still alive, so a test
/// can tell when the server is done with a request it never answered.
#[derive(Clone, Default)]
struct Watch {
    calls: Arc<AtomicUsize>,
    live: Live,
}

impl<S> Layer<S> for Watch {
    type Service = Watched<S>;

    fn layer(&self, inner: S) -> Watched<S> {
        Watched {
            inner,
            watch: self.clone(),
        }
    }
}

#[derive(Clone)]
struct Watched<S> {
    inner: S,
    watch: Watch,
}

impl<S, R> Service<R> for Watched<S>
where
    S: Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.watch.calls.fetch_add(1, Ordering::SeqCst);
        let guard = self.watch.live.guard();
        let future = self.inner.call(request);
        Box::pin(async move {
            let _guard = guard;
            future.await
        })
    }
}

/// Echoes the body it received and the trace id it saw; counts its calls.
async fn echo(
    State(calls): State<Arc<AtomicUsize>>,
    meta: Option<Extension<RequestMetadata>>,
    body: Bytes,
) -> Response {
    calls.fetch_add(1, Ordering::SeqCst);
    let trace = meta.and_then(|Extension(m)| m.trace_id).unwrap_or_default();
    ([("x-trace-id", trace)], body).into_response()
}

/// An echo app behind the layer and a [`Watch`]; returns the echo's call counter too.
fn echo_app(layer: RequestyMetadataLayer) -> (Router, Arc<AtomicUsize>, Watch) {
    let calls = Arc::new(AtomicUsize::new(0));
    let watch = Watch::default();
    let router = Router::new()
        .route("/v1/{*rest}", any(echo))
        .with_state(calls.clone())
        .layer(layer)
        .layer(watch.clone());
    (router, calls, watch)
}

/// A response read off a raw connection.
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn error_code(&self) -> String {
        let body: Value = serde_json::from_slice(&self.body).expect("an error body is JSON");
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Reads more into `buf`; `false` at the end of the stream (or a reset after the server closed).
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match within("reading the response", stream.read(&mut chunk)).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one HTTP/1.1 response: the head, then a body framed by `Content-Length`, chunked, or by
/// the end of the connection.
async fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = find(&buf, b"\r\n\r\n") {
            break at;
        }
        assert!(
            read_more(stream, &mut buf).await,
            "the connection ended before a response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).expect("an ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut rest = buf[head_end + 4..].to_vec();
    let get = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let body = if let Some(len) = get("content-length") {
        let len: usize = len.parse().expect("a numeric Content-Length");
        while rest.len() < len {
            assert!(read_more(stream, &mut rest).await, "the body ended early");
        }
        rest.truncate(len);
        rest
    } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(at) = find(&rest, b"\r\n") {
                    break at;
                }
                assert!(read_more(stream, &mut rest).await, "a chunk ended early");
            };
            let size_text = String::from_utf8_lossy(&rest[..line_end]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                .expect("a chunk size");
            while rest.len() < line_end + 2 + size + 2 {
                assert!(read_more(stream, &mut rest).await, "a chunk ended early");
            }
            body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break body;
            }
        }
    } else {
        while read_more(stream, &mut rest).await {}
        rest
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    within("connecting", TcpStream::connect(addr))
        .await
        .expect("the test server accepts")
}

/// Writes `bytes` and gives the server a turn, so each write tends to arrive as its own read.
async fn try_send(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    within("writing", stream.write_all(bytes)).await?;
    tokio::task::yield_now().await;
    Ok(())
}

/// [`try_send`] to a server that must still be reading.
async fn send(stream: &mut TcpStream, bytes: &[u8]) {
    try_send(stream, bytes).await.expect("the server reads");
}

// ---------------------------------------------------------------------------------------------
// Clients that stall and leave.
// ---------------------------------------------------------------------------------------------

/// What the completion hook reported for each request: status, whether it completed, trace id.
type Reports = Arc<Mutex<Vec<(u16, bool, Option<String>)>>>;

/// `layer` with a completion hook that records what it was told.
fn reporting(layer: RequestyMetadataLayer) -> (RequestyMetadataLayer, Reports) {
    let reports = Reports::default();
    let layer = layer.on_complete({
        let reports = reports.clone();
        move |done| {
            let trace = done.metadata.and_then(|m| m.trace_id.clone());
            let line = (done.status.as_u16(), done.completed, trace);
            reports.lock().unwrap().push(line)
        }
    });
    (layer, reports)
}

#[tokio::test]
async fn a_client_that_leaves_mid_body_is_abandoned_without_calling_the_service() {
    let (recorder, _guard) = Recorder::install();
    let (layer, completions) = reporting(RequestyMetadataLayer::new());
    let (app, calls, watch) = echo_app(layer);
    let addr = serve(app).await;
    let mut stream = connect(addr).await;
    send(
        &mut stream,
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
          x-requesty-trace-id: slow\r\ncontent-length: 100000\r\n\r\n",
    )
    .await;
    // A slow client: the beginning of the JSON, a little at a time, then it goes away.
    for piece in [
        &b"{\"requesty\":{\"tags\":[\"slow\"]},"[..],
        b"\"model\":\"m\",",
        b"\"pad\":\"",
    ] {
        send(&mut stream, piece).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eventually("the request reached the layer", || {
        watch.calls.load(Ordering::SeqCst) == 1
    })
    .await;
    drop(stream);

    eventually("the server let go of the request", || {
        watch.live.count() == 0 && recorder.requests().iter().all(|s| s.closed)
    })
    .await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "an unfinished body reached the service"
    );
    // The body's read failed at the connection's end: it is reported once as a request dropped
    // before its answer (499, not completed), with what its headers said, and no span is left
    // open.
    let reported = completions.lock().unwrap().clone();
    assert_eq!(reported, [(499, false, Some("slow".to_owned()))]);
    let spans = recorder.requests();
    assert_eq!(spans.len(), 1);
    assert!(spans[0].closed);
}

#[tokio::test]
async fn a_huge_chunked_body_stops_being_read_at_the_limit() {
    let (recorder, _guard) = Recorder::install();
    let limit = 64 * 1024;
    let (app, calls, watch) = echo_app(RequestyMetadataLayer::new().max_body_bytes(limit));
    let addr = serve(app).await;
    let stream = connect(addr).await;
    let (mut read, mut write) = stream.into_split();

    // The client would send 64 MiB, 4093 bytes per chunk, pausing now and then.
    const TOTAL: usize = 64 * 1024 * 1024;
    let writer = tokio::spawn(async move {
        let head = "POST /v1/chat/completions HTTP/1.1\r\nhost: test\r\n\
                    content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
        if let Err(error) = write.write_all(head.as_bytes()).await {
            return (0, Some(error));
        }
        let mut chunk = format!("{:x}\r\n", 4093).into_bytes();
        chunk.extend_from_slice(b"{\"pad\":\"");
        chunk.resize(chunk.len() + 4093 - 8, b'x');
        chunk.extend_from_slice(b"\r\n");
        let mut sent = 0;
        while sent < TOTAL {
            if let Err(error) = write.write_all(&chunk).await {
                return (sent, Some(error));
            }
            sent += 4093;
            if sent % (64 * 4093) == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        (sent, None)
    });

    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while find(&answer, b"\r\n\r\n").is_none() {
        match within("the 413", read.read(&mut buf)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&answer).to_string();
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    drop(read);

    // The server stops reading: the writer's next writes fail long before it sent everything. What
    // it got out is the limit plus what the two sockets' buffers hold.
    let (sent, error) = within("the writer to give up", writer)
        .await
        .expect("the writer task ran");
    assert!(
        error.is_some(),
        "the server read all {TOTAL} bytes of a body it had refused"
    );
    assert!(
        sent < TOTAL / 4,
        "{sent} bytes were taken before the server stopped reading"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    eventually("the request's span closed", || {
        watch.live.count() == 0 && recorder.requests().iter().all(|s| s.closed)
    })
    .await;
    let spans = recorder.requests();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].field("http.response.status_code"), Some("413"));
}

/// An endless event stream whose state holds a guard, so a test sees when it is dropped.
async fn endless(State(live): State<Live>) -> Response {
    let guard = live.guard();
    let stream = futures_util::stream::unfold((0usize, guard), |(i, guard)| async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let frame = Bytes::from(format!(
            "data: {{\"choices\":[{{\"delta\":{{\"content\":\"w{i}\"}}}}]}}\n\n"
        ));
        Some((Ok::<_, Infallible>(frame), (i + 1, guard)))
    });
    Response::builder()
        .header(CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// Sends a whole JSON chat request on a raw connection, and hands the connection back to be read
/// or dropped.
async fn post_chat(addr: SocketAddr, body: &[u8]) -> TcpStream {
    let mut stream = connect(addr).await;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    send(&mut stream, head.as_bytes()).await;
    send(&mut stream, body).await;
    stream
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_ends_the_span_and_the_stream() {
    let (recorder, _guard) = Recorder::install();
    let (layer, completions) = reporting(RequestyMetadataLayer::new());
    let streams = Live::default();
    let router = Router::new()
        .route("/v1/chat/completions", post(endless))
        .with_state(streams.clone())
        .layer(layer);
    let addr = serve(router).await;

    let body = br#"{"model":"m","stream":true,"requesty":{"trace_id":"gone"}}"#;
    let mut stream = post_chat(addr, body).await;
    let mut seen = Vec::new();
    while find(&seen, b"w3").is_none() {
        assert!(read_more(&mut stream, &mut seen).await, "the stream ended");
    }
    assert_eq!(streams.count(), 1);
    assert!(!recorder.requests()[0].closed, "the span outlives the head");
    drop(stream);

    eventually("the stream was dropped and every span closed", || {
        streams.count() == 0 && recorder.spans().iter().all(|s| s.closed)
    })
    .await;
    let spans = recorder.requests();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].field("trace_id"), Some("gone"));
    assert_eq!(spans[0].field("requesty.response.completed"), Some("false"));
    assert_eq!(
        spans[0].field("error.type"),
        None,
        "the client left; nothing failed"
    );
    assert_eq!(
        *completions.lock().unwrap(),
        [(200, false, Some("gone".to_owned()))]
    );
}

// ---------------------------------------------------------------------------------------------
// An upstream that fails, through a proxy like the gateway demo's.
// ---------------------------------------------------------------------------------------------

/// A provider that rate-limits, fails, or cuts its stream, by path; it remembers the last body.
fn upstream(last_body: Arc<Mutex<Vec<u8>>>) -> Router {
    let remember = move |body: Bytes| {
        *last_body.lock().unwrap() = body.to_vec();
    };
    let limited = {
        let remember = remember.clone();
        move |body: Bytes| async move {
            remember(body);
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                [(CONTENT_TYPE, "application/json"), (axum::http::header::RETRY_AFTER, "7")],
                r#"{"error":{"message":"slow down","type":"rate_limit_error","param":null,"code":"rate_limited"}}"#,
            )
                .into_response();
            response
                .headers_mut()
                .insert("x-upstream", HeaderValue::from_static("yes"));
            response
        }
    };
    let failed = {
        let remember = remember.clone();
        move |body: Bytes| async move {
            remember(body);
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(CONTENT_TYPE, "text/plain")],
                "upstream exploded\n",
            )
        }
    };
    let cut = move |body: Bytes| async move {
        remember(body);
        let frames = futures_util::stream::iter(0..3).then(|i| async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if i < 2 {
                Ok(Bytes::from(format!("data: {{\"n\":{i}}}\n\n")))
            } else {
                Err(std::io::Error::other("the provider went away"))
            }
        });
        Response::builder()
            .header(CONTENT_TYPE, "text/event-stream")
            .body(Body::from_stream(frames))
            .unwrap()
    };
    Router::new()
        .route("/v1/limited", post(limited))
        .route("/v1/failed", post(failed))
        .route("/v1/cut", post(cut))
}

/// The gateway demo's proxy path, reduced: forward `/v1/*` with reqwest and stream the answer back.
async fn forward(State(base): State<Arc<(reqwest::Client, String)>>, request: Request) -> Response {
    let (client, base) = &*base;
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut headers = parts.headers.clone();
    headers.remove(HOST);
    headers.remove(CONTENT_LENGTH);
    let mut outgoing = client.request(parts.method, format!("{base}{path}"));
    let size = axum::body::HttpBody::size_hint(&body).exact();
    if size != Some(0) {
        if let Some(len) = size {
            headers.insert(CONTENT_LENGTH, len.into());
        }
        outgoing = outgoing.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    }
    let answer = match outgoing.headers(headers).send().await {
        Ok(answer) => answer,
        Err(error) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("upstream unreachable: {error}"),
            )
                .into_response()
        }
    };
    let status = answer.status();
    let headers: HeaderMap = answer
        .headers()
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "connection" | "transfer-encoding"))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let mut response = Response::new(Body::from_stream(answer.bytes_stream()));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

async fn proxy_to_failing_upstream() -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let last_body = Arc::new(Mutex::new(Vec::new()));
    let upstream_addr = serve(upstream(last_body.clone())).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let proxy = Router::new()
        .route("/v1/{*rest}", any(forward))
        .with_state(Arc::new((client, format!("http://{upstream_addr}"))))
        .layer(RequestyMetadataLayer::new().on_complete(|done| {
            let end = (done.path.to_owned(), done.completed, done.failed);
            ENDS.lock().unwrap().push(end);
        }));
    (serve(proxy).await, last_body)
}

/// How each request through the proxy ended, as its completion hook saw it: path, completed,
/// failed.
static ENDS: Mutex<Vec<(String, bool, bool)>> = Mutex::new(Vec::new());

const TAGGED: &str = r#"{"model":"m","stream":true,"requesty":{"trace_id":"up-1"}}"#;

#[tokio::test]
async fn an_upstream_error_reaches_the_client_unchanged() {
    let (recorder, _guard) = Recorder::install();
    let client = client();
    let (addr, last_body) = proxy_to_failing_upstream().await;

    let response = within(
        "the proxied 429",
        client
            .post(format!("http://{addr}/v1/limited"))
            .header("content-type", "application/json")
            .body(TAGGED)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(response.headers()["x-upstream"], "yes");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = within("the 429 body", response.bytes()).await.unwrap();
    assert_eq!(
        body,
        &br#"{"error":{"message":"slow down","type":"rate_limit_error","param":null,"code":"rate_limited"}}"#[..]
    );
    assert_eq!(
        *last_body.lock().unwrap(),
        br#"{"model":"m","stream":true}"#,
        "the upstream got the body without the member"
    );

    let response = within(
        "the proxied 500",
        client
            .post(format!("http://{addr}/v1/failed"))
            .header("content-type", "application/json")
            .body(TAGGED)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(response.headers()["content-type"], "text/plain");
    let body = within("the 500 body", response.bytes()).await.unwrap();
    assert_eq!(body, &b"upstream exploded\n"[..]);

    let spans = within("the spans", recorder.wait_closed(2)).await;
    let statuses: Vec<_> = spans
        .iter()
        .map(|s| {
            (
                s.field("http.response.status_code").unwrap().to_owned(),
                s.field("requesty.response.completed").unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("429".to_owned(), "true".to_owned()),
            ("500".to_owned(), "true".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_cut_upstream_stream_reaches_the_client_as_a_cut_stream() {
    let (recorder, _guard) = Recorder::install();
    let client = client();
    let (addr, _) = proxy_to_failing_upstream().await;
    let response = within(
        "the proxied stream",
        client
            .post(format!("http://{addr}/v1/cut"))
            .header("content-type", "application/json")
            .body(TAGGED)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut received = Vec::new();
    let ended = loop {
        match within("the next frame", stream.next()).await {
            Some(Ok(frame)) => received.extend_from_slice(&frame),
            Some(Err(error)) => break Err(error),
            None => break Ok(()),
        }
    };
    assert_eq!(received, b"data: {\"n\":0}\n\ndata: {\"n\":1}\n\n");
    assert!(
        ended.is_err(),
        "a cut upstream stream reached the client as a clean end"
    );
    let spans = within("the span", recorder.wait_closed(1)).await;
    assert_eq!(spans[0].field("trace_id"), Some("up-1"));
    assert_eq!(spans[0].field("requesty.response.completed"), Some("false"));
    // The upstream cut it, not the client: the span and the hook say so.
    assert_eq!(spans[0].field("error.type"), Some("response_body"));
    let ends = ENDS.lock().unwrap();
    let cut: Vec<_> = ends.iter().filter(|(path, ..)| path == "/v1/cut").collect();
    assert_eq!(cut, [&("/v1/cut".to_owned(), false, true)]);
}

// ---------------------------------------------------------------------------------------------
// Readiness.
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct GateState {
    open: bool,
    failure: Option<&'static str>,
    waker: Option<Waker>,
    calls: usize,
}

/// A service that is ready only once its gate opens (or fails readiness), and panics when called
/// without having been readied.
struct Gated {
    state: Arc<Mutex<GateState>>,
    readied: bool,
}

impl Clone for Gated {
    fn clone(&self) -> Self {
        // A clone has not been readied, whatever the original was.
        Self {
            state: self.state.clone(),
            readied: false,
        }
    }
}

impl Gated {
    fn new() -> (Self, Arc<Mutex<GateState>>) {
        let state = Arc::new(Mutex::new(GateState::default()));
        let gated = Self {
            state: state.clone(),
            readied: false,
        };
        (gated, state)
    }
}

fn open(state: &Mutex<GateState>) {
    let mut state = state.lock().unwrap();
    state.open = true;
    if let Some(waker) = state.waker.take() {
        waker.wake();
    }
}

fn calls(state: &Mutex<GateState>) -> usize {
    state.lock().unwrap().calls
}

impl Service<axum::http::Request<Body>> for Gated {
    type Response = Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let mut state = self.state.lock().unwrap();
        if let Some(failure) = state.failure {
            return Poll::Ready(Err(failure.into()));
        }
        if !state.open {
            state.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        self.readied = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::http::Request<Body>) -> Self::Future {
        assert!(
            std::mem::take(&mut self.readied),
            "called without being ready"
        );
        self.state.lock().unwrap().calls += 1;
        let trace = request
            .extensions()
            .get::<RequestMetadata>()
            .and_then(|m| m.trace_id.clone())
            .unwrap_or_default();
        Box::pin(async move { Ok(trace.into_response()) })
    }
}

fn tagged_request(trace: &str) -> axum::http::Request<Body> {
    axum::http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(format!(
            r#"{{"model":"m","requesty":{{"trace_id":"{trace}"}}}}"#
        )))
        .unwrap()
}

async fn text<B>(response: axum::http::Response<B>) -> String
where
    B: axum::body::HttpBody,
    B::Error: std::fmt::Debug,
{
    use http_body_util::BodyExt;
    let bytes = within("the response body", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn the_layer_waits_for_an_inner_service_that_is_not_ready() {
    let (recorder, _guard) = Recorder::install();
    let (gated, state) = Gated::new();
    let mut service = RequestyMetadataLayer::new().layer(gated);

    // Not ready: the layer says so, and a request sent meanwhile waits without a call.
    let ready = ServiceExt::<axum::http::Request<Body>>::ready(&mut service).now_or_never();
    assert!(ready.is_none(), "ready before the inner service");
    let waiting = tokio::spawn(service.clone().oneshot(tagged_request("r-1")));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished());
    assert_eq!(calls(&state), 0);
    assert!(recorder.requests().is_empty(), "a span before the call");

    open(&state);
    let response = within("the readied call", waiting).await.unwrap().unwrap();
    assert_eq!(text(response).await, "r-1");
    within(
        "ready once the gate is open",
        ServiceExt::<axum::http::Request<Body>>::ready(&mut service),
    )
    .await
    .unwrap();
    let response = within("a direct call", service.call(tagged_request("r-2")))
        .await
        .unwrap();
    assert_eq!(text(response).await, "r-2");
    assert_eq!(calls(&state), 2);
    within("the spans", recorder.wait_closed(2)).await;
}

#[tokio::test]
async fn a_readiness_error_is_the_service_error_and_nothing_is_called() {
    let (recorder, _guard) = Recorder::install();
    let (gated, state) = Gated::new();
    state.lock().unwrap().failure = Some("overloaded");
    let mut service = RequestyMetadataLayer::new().layer(gated);
    let error = within(
        "readiness",
        ServiceExt::<axum::http::Request<Body>>::ready(&mut service),
    )
    .await
    .err()
    .expect("readiness fails");
    assert_eq!(error.to_string(), "overloaded");
    let error = within("oneshot", service.oneshot(tagged_request("f-1")))
        .await
        .expect_err("the call fails");
    assert_eq!(error.to_string(), "overloaded");
    assert_eq!(calls(&state), 0);
    assert!(recorder.requests().is_empty());
}

/// An inner service whose call fails: the error is the service's own, and the request is reported
/// once, as failed (not as a client that went away) and not completed. The hook hears `500`, as a
/// gateway logs it; the span records no status code, since no response went out.
#[tokio::test]
async fn a_failing_call_is_reported_as_failed() {
    let (recorder, _guard) = Recorder::install();
    let failing = tower::service_fn(|_: axum::http::Request<Body>| async {
        Err::<axum::http::Response<Body>, BoxError>("upstream refused".into())
    });
    let ends = Arc::new(Mutex::new(Vec::new()));
    let layer = RequestyMetadataLayer::new().on_complete({
        let ends = ends.clone();
        move |done| {
            ends.lock()
                .unwrap()
                .push((done.status.as_u16(), done.completed, done.failed))
        }
    });
    let error = within(
        "the call",
        layer.layer(failing).oneshot(tagged_request("e-1")),
    )
    .await
    .expect_err("the call fails");
    assert_eq!(error.to_string(), "upstream refused");
    assert_eq!(*ends.lock().unwrap(), [(500, false, true)]);
    let spans = recorder.requests();
    assert_eq!(spans[0].field("error.type"), Some("service"));
    assert_eq!(spans[0].field("otel.status_code"), Some("ERROR"));
    assert_eq!(spans[0].field("http.response.status_code"), None);
}

/// Whether `error` or one of its sources says `text`.
fn says(error: &(dyn std::error::Error + 'static), text: &str) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.to_string().contains(text) {
            return true;
        }
        next = e.source();
    }
    false
}

#[tokio::test]
async fn readiness_passes_through_a_buffer() {
    let (recorder, _guard) = Recorder::install();
    let (gated, state) = Gated::new();
    let service = tower::buffer::Buffer::new(RequestyMetadataLayer::new().layer(gated), 8);
    let waiting: Vec<_> = (0..3)
        .map(|i| tokio::spawn(service.clone().oneshot(tagged_request(&format!("b-{i}")))))
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(waiting.iter().all(|w| !w.is_finished()));
    assert_eq!(calls(&state), 0);

    open(&state);
    for (i, waiting) in waiting.into_iter().enumerate() {
        let response = within("a buffered call", waiting).await.unwrap().unwrap();
        assert_eq!(text(response).await, format!("b-{i}"));
    }
    assert_eq!(calls(&state), 3);
    within("the spans", recorder.wait_closed(3)).await;

    // A failing inner service fails the buffer: its error surfaces to every caller.
    let (gated, state) = Gated::new();
    state.lock().unwrap().failure = Some("overloaded");
    let service = tower::buffer::Buffer::new(RequestyMetadataLayer::new().layer(gated), 8);
    for i in 0..2 {
        let error = within(
            "a call to a failed buffer",
            service.clone().oneshot(tagged_request(&format!("x-{i}"))),
        )
        .await
        .expect_err("the call fails");
        assert!(says(&*error, "overloaded"), "{error}");
    }
    assert_eq!(calls(&state), 0);
}

/// A `Buffer` behind the layer hands out a slot per readiness. A client that stalls mid-upload must
/// not keep one while the layer reads its JSON body: with one slot, every other request would wait
/// for that client, where without the layer the buffer lets the call go as soon as it is made.
#[tokio::test]
async fn a_stalled_upload_keeps_no_slot_of_a_buffer_behind_the_layer() {
    let (_recorder, _guard) = Recorder::install();
    let inner = tower::service_fn(|request: axum::http::Request<Body>| async move {
        let body = axum::body::to_bytes(request.into_body(), usize::MAX).await?;
        Ok::<_, BoxError>(body.into_response())
    });
    let service = tower::ServiceBuilder::new()
        .layer(axum::error_handling::HandleErrorLayer::new(
            |_: BoxError| async { StatusCode::SERVICE_UNAVAILABLE },
        ))
        .layer(RequestyMetadataLayer::new())
        .buffer(1)
        .service(inner);
    let addr = serve(Router::new().route_service("/v1/chat/completions", service)).await;

    // One client declares 100 bytes of JSON, sends 10 and stalls.
    let mut stalled = connect(addr).await;
    let head = "POST /v1/chat/completions HTTP/1.1\r\nhost: test\r\n\
                content-type: application/json\r\ncontent-length: 100\r\n\r\n{\"model\":";
    send(&mut stalled, head.as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Another is served meanwhile.
    let response = within(
        "a request beside a stalled upload",
        client()
            .post(format!("http://{addr}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(r#"{"requesty":{"trace_id":"t"},"n":1}"#)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), r#"{"n":1}"#);
    drop(stalled);
}

/// The readiness given up while a body was read is asked for again before the call: when it fails
/// then, the error is the service's own, nothing is called, and the request is reported once, as
/// failed.
#[tokio::test]
async fn readiness_failing_once_the_body_is_read_is_the_service_error() {
    let (recorder, _guard) = Recorder::install();
    let (gated, state) = Gated::new();
    open(&state);
    let ends = Arc::new(Mutex::new(Vec::new()));
    let layer = RequestyMetadataLayer::new().on_complete({
        let ends = ends.clone();
        move |done| {
            let trace = done.metadata.and_then(|m| m.trace_id.clone());
            ends.lock()
                .unwrap()
                .push((done.status.as_u16(), done.completed, done.failed, trace))
        }
    });
    let (tx, request) = open_json_request(br#"{"model":"m","requesty":{"trace_id":"late"}}"#).await;
    let call = tokio::spawn(layer.layer(gated).oneshot(request));
    tokio::time::sleep(Duration::from_millis(50)).await;
    state.lock().unwrap().failure = Some("overloaded");
    drop(tx);
    let error = within("the call", call)
        .await
        .unwrap()
        .expect_err("readiness fails");
    assert_eq!(error.to_string(), "overloaded");
    assert_eq!(calls(&state), 0);
    assert_eq!(
        *ends.lock().unwrap(),
        [(500, false, true, Some("late".to_owned()))]
    );
    let spans = recorder.requests();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].field("trace_id"), Some("late"));
    assert_eq!(spans[0].field("error.type"), Some("service"));
}

/// A JSON request whose body has `json` as its one frame and stays open until the returned sender
/// is dropped.
async fn open_json_request(
    json: &'static [u8],
) -> (
    tokio::sync::mpsc::Sender<Result<http_body::Frame<Bytes>, Infallible>>,
    axum::http::Request<Body>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let body = http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let request = axum::http::Request::post("/v1/chat/completions")
        .header(CONTENT_TYPE, "application/json")
        .body(Body::new(body))
        .unwrap();
    tx.send(Ok(http_body::Frame::data(Bytes::from_static(json))))
        .await
        .unwrap();
    (tx, request)
}

/// A request whose body is in but whose inner service is not ready again yet, dropped while it
/// waits: reported once, as a request that got no answer, with the metadata its body gave.
#[tokio::test]
async fn a_request_dropped_while_waiting_for_readiness_is_reported_as_499() {
    let (_recorder, _guard) = Recorder::install();
    let (gated, state) = Gated::new();
    open(&state);
    let (layer, reports) = reporting(RequestyMetadataLayer::new());
    let (tx, request) =
        open_json_request(br#"{"model":"m","requesty":{"trace_id":"queued"}}"#).await;
    let call = tokio::spawn(layer.layer(gated).oneshot(request));
    tokio::time::sleep(Duration::from_millis(50)).await;
    state.lock().unwrap().open = false;
    drop(tx);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !call.is_finished(),
        "called an inner service that is not ready"
    );
    assert!(reports.lock().unwrap().is_empty());
    call.abort();
    eventually("the request was reported", || {
        !reports.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(calls(&state), 0);
    assert_eq!(
        *reports.lock().unwrap(),
        [(499, false, Some("queued".to_owned()))]
    );
}

// ---------------------------------------------------------------------------------------------
// Bodies at the limit, over raw TCP.
// ---------------------------------------------------------------------------------------------

/// A JSON body of exactly `len` bytes with a `requesty` member.
fn body_of(len: usize) -> String {
    let mut body = String::from(r#"{"requesty":{"trace_id":"edge"},"pad":""#);
    body.push_str(&"x".repeat(len - body.len() - 2));
    body.push_str("\"}");
    assert_eq!(body.len(), len);
    body
}

/// Sends `body` chunked, in frames of odd sizes, each frame's encoding itself split across two
/// writes at an odd place (inside the size line, the data or the CRLF). Fails when the server stops
/// reading.
async fn send_chunked_oddly(stream: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    const SIZES: [usize; 8] = [1, 7, 13, 333, 2, 64, 5, 127];
    let mut at = 0;
    let mut i = 0;
    while at < body.len() {
        let size = SIZES[i % SIZES.len()].min(body.len() - at);
        let mut frame = format!("{size:x}\r\n").into_bytes();
        frame.extend_from_slice(&body[at..at + size]);
        frame.extend_from_slice(b"\r\n");
        let cut = (i * 3 + 1) % frame.len();
        try_send(stream, &frame[..cut]).await?;
        try_send(stream, &frame[cut..]).await?;
        at += size;
        i += 1;
    }
    try_send(stream, b"0\r").await?;
    try_send(stream, b"\n\r\n").await
}

#[tokio::test]
async fn chunked_bodies_in_odd_frames_at_the_limit() {
    let (_recorder, _guard) = Recorder::install();
    let limit = 1000;
    let (app, calls, _) = echo_app(RequestyMetadataLayer::new().max_body_bytes(limit));
    // Counts the frames the layer is handed, to be sure the body came in many.
    let frames = Arc::new(AtomicUsize::new(0));
    let app = app.layer(tower::util::MapRequestLayer::new({
        let frames = frames.clone();
        move |request: Request| {
            let frames = frames.clone();
            request.map(|body| {
                use http_body_util::BodyExt;
                Body::new(body.map_frame(move |frame| {
                    frames.fetch_add(1, Ordering::SeqCst);
                    frame
                }))
            })
        }
    }));
    let addr = serve(app).await;
    for (len, ok) in [(limit - 1, true), (limit, true), (limit + 1, false)] {
        frames.store(0, Ordering::SeqCst);
        let mut stream = connect(addr).await;
        send(
            &mut stream,
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\
              content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
        )
        .await;
        let body = body_of(len);
        let sent = send_chunked_oddly(&mut stream, body.as_bytes()).await;
        // Refusing, the server may stop reading (and close) before the last frames are written.
        assert!(sent.is_ok() || !ok, "{len}: {sent:?}");
        let response = read_response(&mut stream).await;
        let frames = frames.load(Ordering::SeqCst);
        assert!(frames >= 10, "{len}: only {frames} frames");
        if ok {
            assert_eq!(response.status, 200, "{len}");
            assert_eq!(response.header("x-trace-id"), Some("edge"));
            let stripped = body.replace(r#""requesty":{"trace_id":"edge"},"#, "");
            assert_eq!(response.body, stripped.as_bytes(), "{len}");
        } else {
            assert_eq!(response.status, 413, "{len}");
            assert_eq!(response.error_code(), "request_too_large");
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_the_body_is_sent() {
    let (_recorder, _guard) = Recorder::install();
    let limit = 1000;
    let (app, calls, _) = echo_app(RequestyMetadataLayer::new().max_body_bytes(limit));
    let addr = serve(app).await;
    let head = |len: usize| {
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\
             content-type: application/json\r\ncontent-length: {len}\r\n\r\n"
        )
    };

    // One over: refused on the head alone.
    let mut stream = connect(addr).await;
    send(&mut stream, head(limit + 1).as_bytes()).await;
    let response = read_response(&mut stream).await;
    assert_eq!(response.status, 413);
    assert_eq!(response.error_code(), "request_too_large");

    // At the limit: the server waits for the body, then takes it.
    let mut stream = connect(addr).await;
    send(&mut stream, head(limit).as_bytes()).await;
    let mut early = [0u8; 1];
    let waited = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut early)).await;
    assert!(waited.is_err(), "answered before the body arrived");
    let body = body_of(limit);
    send(&mut stream, body.as_bytes()).await;
    let response = read_response(&mut stream).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-trace-id"), Some("edge"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A body with a transfer coding besides HTTP/1.1's chunked framing (`gzip, chunked`): hyper removes
/// the framing and hands on the coded bytes, with the header that says how to decode them. Like a
/// content-encoded body, it is not JSON text to read here: it passes through unread, header and all,
/// also with `reject_malformed`, rather than being taken for malformed JSON, refused, or stripped
/// of the only header that says what its bytes are.
#[tokio::test]
async fn a_transfer_coded_json_body_passes_through_unread_with_its_coding() {
    let (_recorder, _guard) = Recorder::install();
    // The start of a gzip stream: not JSON text, and not to be read as such.
    let coded: &[u8] = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03{\"requesty\":{}}";
    for reject in [false, true] {
        let calls = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route(
                "/v1/{*rest}",
                any(
                    |State(calls): State<Arc<AtomicUsize>>, headers: HeaderMap, body: Bytes| async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        let coding = headers
                            .get("transfer-encoding")
                            .map(|v| v.to_str().unwrap_or_default().to_owned())
                            .unwrap_or_default();
                        ([("x-transfer-encoding", coding)], body)
                    },
                ),
            )
            .with_state(calls.clone())
            .layer(RequestyMetadataLayer::new().reject_malformed(reject));
        let addr = serve(app).await;
        let mut stream = connect(addr).await;
        let mut request = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\
             content-type: application/json\r\ntransfer-encoding: gzip, chunked\r\n\r\n{:x}\r\n",
            coded.len()
        )
        .into_bytes();
        request.extend_from_slice(coded);
        request.extend_from_slice(b"\r\n0\r\n\r\n");
        send(&mut stream, &request).await;
        let response = read_response(&mut stream).await;
        assert_eq!(response.status, 200, "reject_malformed({reject})");
        assert_eq!(
            response.header("x-transfer-encoding"),
            Some("gzip, chunked"),
            "reject_malformed({reject}): the handler cannot tell how to decode the body"
        );
        assert_eq!(response.body, coded, "reject_malformed({reject})");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}

// ---------------------------------------------------------------------------------------------
// The usage reader at frame boundaries (the `sse` fuzz target checks the same property).
// ---------------------------------------------------------------------------------------------

/// An empty frame between the CR and the LF of one CRLF line ending must not make the LF a second
/// line ending: the two data lines below are one event, `{"id":\n"x"}`, whichever way the bytes are
/// framed. (Bodies do yield empty data frames, e.g. a stream that sends an empty chunk.)
#[tokio::test]
async fn an_empty_frame_between_cr_and_lf_does_not_end_the_event() {
    let (_recorder, _guard) = Recorder::install();
    let read = |frames: &[&'static [u8]]| {
        let mut reader = UsageReader::new("text/event-stream").unwrap();
        for frame in frames {
            reader.feed(&Bytes::from_static(frame));
        }
        reader.finish()
    };
    let whole = read(&[b"data: {\"id\":\r\ndata: \"x\"}\r\n\r\n"]);
    assert_eq!(whole.id.as_deref(), Some("x"));
    let split = read(&[b"data: {\"id\":\r", b"\ndata: \"x\"}\r\n\r\n"]);
    assert_eq!(split, whole);
    let with_empty_frame = read(&[b"data: {\"id\":\r", b"", b"\ndata: \"x\"}\r\n\r\n"]);
    assert_eq!(with_empty_frame, whole, "an empty frame changed the events");
}

// ---------------------------------------------------------------------------------------------
// The end of a request that never got, or never sent, a response body.
// ---------------------------------------------------------------------------------------------

/// A handler that never answers; `live` counts its pending calls.
async fn never(State(live): State<Live>) -> Response {
    let _guard = live.guard();
    std::future::pending::<()>().await;
    unreachable!("a pending future never resolves")
}

#[tokio::test]
async fn a_client_that_leaves_before_the_answer_is_reported_once_as_not_completed() {
    let (recorder, _guard) = Recorder::install();
    let (layer, completions) = reporting(RequestyMetadataLayer::new());
    let waiting = Live::default();
    let router = Router::new()
        .route("/v1/chat/completions", post(never))
        .with_state(waiting.clone())
        .layer(layer);
    let addr = serve(router).await;

    let body = br#"{"model":"m","requesty":{"trace_id":"impatient"}}"#;
    let stream = post_chat(addr, body).await;
    eventually("the handler is waiting", || waiting.count() == 1).await;
    assert!(completions.lock().unwrap().is_empty());
    drop(stream);

    eventually("the server dropped the request and closed its span", || {
        waiting.count() == 0 && recorder.spans().iter().all(|s| s.closed)
    })
    .await;
    assert_eq!(
        *completions.lock().unwrap(),
        [(499, false, Some("impatient".to_owned()))]
    );
    let spans = recorder.requests();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].field("requesty.response.completed"), Some("false"));
    assert_eq!(spans[0].field("http.response.status_code"), None);
}

/// A refusal dropped before it was answered (the client went away first) is reported like any
/// request that got no answer: 499, not completed, not the status it would have had.
#[tokio::test]
async fn a_refusal_dropped_before_it_is_answered_is_reported_as_499() {
    let (_recorder, _guard) = Recorder::install();
    let (layer, completions) = reporting(RequestyMetadataLayer::new());
    let mut service = layer.layer(tower::service_fn(|_: Request| async {
        Ok::<_, Infallible>(Response::new(Body::empty()))
    }));
    let long = "t".repeat(300);
    let request = Request::get("/v1/models")
        .header("x-requesty-trace-id", &long)
        .body(Body::empty())
        .unwrap();
    let future = service.ready().await.unwrap().call(request);
    drop(future);
    // What the headers carried is reported with it, as for any refusal.
    assert_eq!(*completions.lock().unwrap(), [(499, false, Some(long))]);
}

/// Answers every request with a JSON body and the status `status`, whatever the method; hyper then
/// leaves out the body of a HEAD or a 204 response without polling it.
#[derive(Clone)]
struct Fixed {
    status: StatusCode,
}

impl<B> Service<axum::http::Request<B>> for Fixed {
    type Response = axum::http::Response<http_body_util::Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: axum::http::Request<B>) -> Self::Future {
        let mut response = axum::http::Response::new(http_body_util::Full::new(
            Bytes::from_static(br#"{"object":"list","data":[]}"#),
        ));
        *response.status_mut() = self.status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        std::future::ready(Ok(response))
    }
}

#[tokio::test]
async fn bodiless_answers_are_reported_as_completed() {
    // The service's answers, and the layer's own to a header it refuses (the service would answer
    // `200`).
    let tags: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
    let refused = format!("x-requesty-tags: {}\r\n", tags.join(","));
    for (method, header, answer, status) in [
        ("HEAD", "", StatusCode::OK, StatusCode::OK),
        ("GET", "", StatusCode::NO_CONTENT, StatusCode::NO_CONTENT),
        (
            "HEAD",
            refused.as_str(),
            StatusCode::OK,
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let completions = Arc::new(Mutex::new(Vec::new()));
        // Headers only: hyper's own request body cannot be rebuilt from bytes.
        let layer = RequestyMetadataLayer::new().headers_only().on_complete({
            let completions = completions.clone();
            move |done| {
                let line = (done.status.as_u16(), done.completed);
                completions.lock().unwrap().push(line)
            }
        });
        let service = layer.layer(Fixed { status: answer });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let io = hyper_util::rt::TokioIo::new(stream);
            let service = hyper_util::service::TowerToHyperService::new(service);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
        let mut stream = connect(addr).await;
        let request = format!(
            "{method} /v1/models HTTP/1.1\r\nhost: test\r\nx-requesty-trace-id: t\r\n{header}\
             connection: close\r\n\r\n"
        );
        send(&mut stream, request.as_bytes()).await;
        let mut seen = Vec::new();
        while read_more(&mut stream, &mut seen).await {}
        let expected = format!("HTTP/1.1 {}", status.as_u16());
        assert!(
            seen.starts_with(expected.as_bytes()),
            "{method}: {}",
            String::from_utf8_lossy(&seen)
        );
        eventually("the request was reported", || {
            !completions.lock().unwrap().is_empty()
        })
        .await;
        assert_eq!(
            *completions.lock().unwrap(),
            [(status.as_u16(), true)],
            "{method} {status}"
        );
    }
}

/// A request body that sends its first bytes, then never another.
struct Stalled {
    sent: bool,
}

impl From<Bytes> for Stalled {
    fn from(_: Bytes) -> Self {
        Self { sent: true }
    }
}

impl http_body::Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        if std::mem::replace(&mut self.sent, true) {
            Poll::Pending
        } else {
            Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(
                br#"{"model":"m","#,
            )))))
        }
    }
}

#[tokio::test]
async fn a_request_dropped_while_its_body_is_read_is_reported_once_from_its_headers() {
    let (recorder, _guard) = Recorder::install();
    let (layer, completions) = reporting(RequestyMetadataLayer::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let service = layer.layer(tower::service_fn({
        let calls = calls.clone();
        move |_: axum::http::Request<Stalled>| {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok::<_, Infallible>(
                axum::http::Response::new(Body::empty()),
            ))
        }
    }));
    let request = axum::http::Request::post("/v1/chat/completions")
        .header(CONTENT_TYPE, "application/json")
        .header("x-requesty-trace-id", "stalled")
        .body(Stalled { sent: false })
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_millis(50), service.oneshot(request)).await;
    assert!(
        outcome.is_err(),
        "the body never ends, so neither does the request"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(
        *completions.lock().unwrap(),
        [(499, false, Some("stalled".to_owned()))]
    );
    let spans = recorder.requests();
    assert_eq!(spans.len(), 1);
    assert!(spans[0].closed);
    assert_eq!(spans[0].field("requesty.response.completed"), Some("false"));
    assert_eq!(spans[0].field("trace_id"), Some("stalled"));
}

/// Each request's `(completed, failed)`, as the completion hook saw it.
type Ends = Arc<Mutex<Vec<(bool, bool)>>>;

/// A layer whose completion hook notes each request's end.
fn noting_ends() -> (RequestyMetadataLayer, Ends) {
    let ends = Arc::new(Mutex::new(Vec::new()));
    let layer = RequestyMetadataLayer::new().on_complete({
        let ends = ends.clone();
        move |done| ends.lock().unwrap().push((done.completed, done.failed))
    });
    (layer, ends)
}

/// The one request a body short of its declared length answered: failed, not completed, in the
/// span and in the hook alike.
async fn reported_failed(recorder: &Recorder, ends: &Mutex<Vec<(bool, bool)>>) {
    let spans = recorder.wait_closed(1).await;
    let span = &spans[0];
    assert_eq!(
        span.field("requesty.response.completed"),
        Some("false"),
        "{span:#?}"
    );
    assert_eq!(span.field("error.type"), Some("response_body"), "{span:#?}");
    assert_eq!(*ends.lock().unwrap(), [(false, true)]);
}

/// A response body that ends short of the `Content-Length` its head declared does not reach the
/// client whole (hyper closes the connection): the request failed, it did not complete. Trailers
/// after its last data frame do not make it whole either.
#[tokio::test]
async fn a_body_shorter_than_its_declared_length_is_reported_as_failed() {
    use http_body::Frame;
    use http_body_util::StreamBody;
    for trailers in [false, true] {
        let (recorder, _guard) = Recorder::install();
        let (layer, ends) = noting_ends();
        let router = Router::new()
            .route(
                "/v1/chat/completions",
                post(move || async move {
                    let mut frames: Vec<Result<Frame<Bytes>, Infallible>> =
                        vec![Ok(Frame::data(Bytes::from_static(b"{\"id\"")))];
                    if trailers {
                        let mut map = HeaderMap::new();
                        map.insert("x-checksum", HeaderValue::from_static("abc"));
                        frames.push(Ok(Frame::trailers(map)));
                    }
                    Response::builder()
                        .header(CONTENT_TYPE, "application/json")
                        .header(CONTENT_LENGTH, "100")
                        .body(Body::new(StreamBody::new(futures_util::stream::iter(
                            frames,
                        ))))
                        .unwrap()
                }),
            )
            .layer(layer);
        let addr = serve(router).await;
        let sent = within(
            "send",
            client()
                .post(format!("http://{addr}/v1/chat/completions"))
                .header(CONTENT_TYPE, "application/json")
                .body(r#"{"model":"m","requesty":{"trace_id":"short"}}"#)
                .send(),
        )
        .await;
        // The cut shows in the head or in the body, as the server's writes happened to go.
        let read = match sent {
            Ok(response) => within("read", response.bytes()).await.map(drop),
            Err(error) => Err(error),
        };
        assert!(
            read.is_err(),
            "trailers {trailers}: the client sees a cut answer"
        );
        reported_failed(&recorder, &ends).await;
    }
}

/// The same short body, its end told by `is_end_stream` after its last data frame rather than by a
/// final `None`: still 5 of 100 declared bytes, still failed.
#[tokio::test]
async fn a_short_body_that_says_it_has_ended_is_failed() {
    use http_body::{Frame, SizeHint};
    use http_body_util::BodyExt;
    /// One data frame, then at its end (no exact size, as a stream's).
    struct Once(Option<Bytes>);
    impl http_body::Body for Once {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
        }
        fn is_end_stream(&self) -> bool {
            self.0.is_none()
        }
        fn size_hint(&self) -> SizeHint {
            SizeHint::default()
        }
    }
    let (recorder, _guard) = Recorder::install();
    let (layer, ends) = noting_ends();
    let inner = tower::service_fn(|_: http::Request<Body>| async {
        let response = Response::builder()
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_LENGTH, "100")
            .body(Once(Some(Bytes::from_static(b"{\"id\""))))
            .unwrap();
        Ok::<_, Infallible>(response)
    });
    let request = http::Request::post("/v1/chat/completions")
        .header(CONTENT_TYPE, "application/json")
        .body(Body::from(
            r#"{"model":"m","requesty":{"trace_id":"short"}}"#,
        ))
        .unwrap();
    let response = layer.layer(inner).oneshot(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 5, "5 of the 100 declared bytes");
    reported_failed(&recorder, &ends).await;
}

/// Over HTTP/2 a client whose connection ends mid-upload has gone away just as over HTTP/1, though
/// the transport's error does not say why the body ended: the refusal is dropped unsent, so the
/// request got no answer (499, not completed).
#[tokio::test]
async fn an_http2_client_that_leaves_mid_body_is_reported_as_499() {
    let (recorder, _guard) = Recorder::install();
    let (layer, completions) = reporting(RequestyMetadataLayer::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let server_calls = calls.clone();
    let inner = tower::service_fn(move |_: axum::http::Request<Body>| {
        server_calls.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(axum::http::Response::new(Body::empty())) }
    });
    let service = tower::ServiceBuilder::new()
        .map_request(|r: axum::http::Request<hyper::body::Incoming>| r.map(Body::new))
        .service(layer.layer(inner));
    let support::Http2 {
        addr,
        mut send,
        connection,
    } = support::http2(service).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, Infallible>>(4);
    let body = http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let request = axum::http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .header(CONTENT_TYPE, "application/json")
        .header("x-requesty-trace-id", "slow")
        .body(body)
        .unwrap();
    let response = tokio::spawn(send.send_request(request));
    tx.send(Ok(http_body::Frame::data(Bytes::from_static(
        b"{\"model\":\"m\",\"pad\":\"",
    ))))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The client goes away: its connection ends, mid-body.
    connection.abort();
    response.abort();
    eventually("the request was reported", || {
        !completions.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(tx);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let reported = completions.lock().unwrap().clone();
    let spans = recorder.requests();
    assert_eq!(
        reported,
        [(499, false, Some("slow".to_owned()))],
        "{spans:#?}"
    );
}

/// A body of its frames, one per poll, whose size hint is exactly what is left of them.
struct Exact(std::collections::VecDeque<Bytes>);

impl http_body::Body for Exact {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(http_body::Frame::data(b))))
    }
    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.0.iter().map(|b| b.len() as u64).sum())
    }
}

/// A response body that knows its length (an exact size hint) but not, until polled once more, that
/// it has ended. With no `Content-Length` header, hyper declares that length itself, writes that
/// many bytes and drops the body unpolled, as it does one whose head declares the length: the
/// answer went out whole.
#[tokio::test]
async fn a_body_of_exact_size_without_a_length_header_counts_as_completed() {
    let (recorder, _guard) = Recorder::install();
    let (layer, ends) = noting_ends();
    let router = Router::new()
        .route(
            "/v1/chat/completions",
            post(|| async {
                let frames = [
                    &br#"{"id":"r1","usage":{"prompt_"#[..],
                    br#"tokens":3,"completion_tokens":2}}"#,
                ];
                Response::builder()
                    .header(CONTENT_TYPE, "application/json")
                    .body(Body::new(Exact(frames.map(Bytes::from_static).into())))
                    .unwrap()
            }),
        )
        .layer(layer);
    let addr = serve(router).await;
    let response = within(
        "send",
        client()
            .post(format!("http://{addr}/v1/chat/completions"))
            .header(CONTENT_TYPE, "application/json")
            .body(r#"{"model":"m"}"#)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.headers()[CONTENT_LENGTH], "61");
    let body = within("read", response.bytes()).await.unwrap();
    assert_eq!(body.len(), 61);
    let spans = recorder.wait_closed(1).await;
    assert_eq!(spans[0].field("requesty.response.completed"), Some("true"));
    assert_eq!(spans[0].field("gen_ai.usage.input_tokens"), Some("3"));
    assert_eq!(*ends.lock().unwrap(), [(true, false)]);
}

/// A response sent chunked is framed by its last chunk, not by its size hint: dropped after its
/// last data but before its end (the client gone before the closing chunk), it did not complete.
#[tokio::test]
async fn a_chunked_response_dropped_before_its_end_did_not_complete() {
    use http_body::Body as _;
    let (recorder, _guard) = Recorder::install();
    let service =
        RequestyMetadataLayer::new().layer(tower::service_fn(|_: http::Request<Body>| async {
            let frames = [&b"{\"id\":"[..], b"\"r1\"}"];
            let response = http::Response::builder()
                .header(CONTENT_TYPE, "application/json")
                .header("transfer-encoding", "chunked")
                .body(Exact(frames.map(Bytes::from_static).into()))
                .unwrap();
            Ok::<_, Infallible>(response)
        }));
    let request = http::Request::post("/v1/chat/completions")
        .header(CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"model":"m"}"#))
        .unwrap();
    let mut body = service.oneshot(request).await.unwrap().into_body();
    let mut data = 0;
    while data < 11 {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        data += frame.unwrap().unwrap().into_data().unwrap().len();
    }
    drop(body);
    let spans = recorder.wait_closed(1).await;
    assert_eq!(spans[0].field("requesty.response.completed"), Some("false"));
}
