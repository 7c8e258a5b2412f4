//! The demo's own behaviour, on loopback: its flags, its access-log line, requests through the mock
//! and through the proxy to an upstream.

use super::*;
use axum::body::Bytes;
use axum::http::HeaderMap;
use requesty_metadata::usage::ResponseInfo;
use requesty_metadata::RequestMetadata;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// How long a test waits for what must happen before it calls it a failure.
const PATIENCE: Duration = Duration::from_secs(10);

fn args(flags: &[&str]) -> Args {
    parse_args(flags.iter().map(|flag| flag.to_string()))
        .expect("the flags parse")
        .expect("not --help")
}

/// The access-log lines written so far, by every test in this process.
static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn keep_line(line: &str) {
    LINES.lock().unwrap().push(line.to_owned());
}

/// The access-log line that holds `marker`, once it has been written.
async fn line_with(marker: &str) -> String {
    let wait = async {
        loop {
            if let Some(line) = LINES.lock().unwrap().iter().find(|l| l.contains(marker)) {
                return line.clone();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| panic!("no access-log line holds {marker:?}"))
}

async fn serve_app(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// The gateway with `flags`, its access log kept in [`LINES`].
async fn gateway(flags: &[&str]) -> SocketAddr {
    // The proxy's client needs a TLS provider, as `main` installs one; a second install fails.
    let _ = rustls::crypto::ring::default_provider().install_default();
    serve_app(app(&args(flags), keep_line)).await
}

#[test]
fn flags_take_a_value_after_a_space_or_an_equals_sign() {
    let parsed = args(&[
        "--listen=127.0.0.1:0",
        "--upstream",
        "http://127.0.0.1:9/base/",
        "--log-format=json",
        "--keep-metadata",
        "--mock-delay-ms",
        "5",
    ]);
    assert_eq!(parsed.listen, "127.0.0.1:0");
    assert_eq!(
        parsed.upstream.as_ref().map(reqwest::Url::as_str),
        Some("http://127.0.0.1:9/base/")
    );
    assert!(matches!(parsed.log_format, LogFormat::Json));
    assert!(parsed.keep_metadata && !parsed.without_layer);
    assert_eq!(parsed.mock_delay, Duration::from_millis(5));

    let defaults = args(&[]);
    assert_eq!(defaults.listen, "127.0.0.1:8080");
    assert!(defaults.upstream.is_none() && !defaults.keep_metadata && !defaults.without_layer);
    assert!(matches!(defaults.log_format, LogFormat::Pretty));
    assert_eq!(defaults.mock_delay, mock::FRAME_DELAY);
}

#[test]
fn help_is_asked_for_and_bad_flags_are_refused_with_a_reason() {
    for help in ["-h", "--help"] {
        assert!(parse_args([help.to_owned()].into_iter()).unwrap().is_none());
    }
    for (flags, reason) in [
        (&["--verbose"][..], "unknown argument"),
        (&["--listen"], "needs a value"),
        (&["--keep-metadata=yes"], "takes no value"),
        (&["--log-format", "xml"], "pretty or json"),
        (&["--mock-delay-ms", "soon"], "milliseconds"),
        (&["--upstream", "ftp://example.com"], "http(s) base URL"),
        (
            &["--upstream", "https://example.com/?key=1"],
            "without a query",
        ),
        (&["--upstream", "not a url"], "--upstream"),
    ] {
        let error = parse_args(flags.iter().map(|f| f.to_string()))
            .err()
            .unwrap_or_else(|| panic!("{flags:?} is refused"));
        assert!(error.contains(reason), "{flags:?}: {error}");
    }
}

/// The JSON line: each tag and each `extra` value is its own JSON value, not a joined string.
#[tokio::test]
async fn a_streamed_answer_from_the_mock_is_stripped_and_logged_as_json_once_it_ended() {
    let addr = gateway(&["--log-format", "json", "--mock-delay-ms", "0"]).await;
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,
        "stream_options":{"include_usage":true},
        "requesty":{"tags":["a,b","c"],"trace_id":"json-line","extra":{"n":1.5,"on":true}}}"#;
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("x-requesty-team", "platform")
        .header("x-title", "My App")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-mock-saw-requesty"], "false");
    assert_eq!(response.headers()["x-mock-saw-requesty-headers"], "false");
    let text = response.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");

    let line: Value = serde_json::from_str(&line_with("json-line").await).unwrap();
    assert_eq!(line["tags"], json!(["a,b", "c"]));
    assert_eq!(
        line["extra"],
        json!({"n": 1.5, "on": true, "team": "platform"})
    );
    assert_eq!(line["origin_title"], "My App");
    assert_eq!(
        (&line["method"], &line["path"], &line["status"]),
        (&json!("POST"), &json!("/v1/chat/completions"), &json!(200))
    );
    assert_eq!(line["model"], "gpt-4o");
    assert_eq!(line["output_tokens"], mock::REPLY.len());
    assert!(
        line["input_tokens"].as_u64().is_some_and(|n| n > 0),
        "{line}"
    );
    assert_eq!(line["finish_reasons"], json!(["stop"]));
    assert_eq!(
        (&line["completed"], &line["failed"]),
        (&json!(true), &json!(false))
    );
}

#[tokio::test]
async fn keep_metadata_lets_the_provider_see_the_member_and_the_headers() {
    let addr = gateway(&["--keep-metadata"]).await;
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/v1/embeddings"))
        .header("content-type", "application/json")
        .header("x-requesty-trace-id", "kept")
        .body(r#"{"model":"m","input":"x","requesty":{"user_id":"u"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-mock-saw-requesty"], "true");
    assert_eq!(response.headers()["x-mock-saw-requesty-headers"], "true");
}

/// The pretty line quotes what would be ambiguous bare, so a client's value cannot start a line of
/// its own; an answer that counts only input tokens (an embedding) names the side it counts.
#[test]
fn the_pretty_line_quotes_values_that_could_break_it() {
    let metadata = RequestMetadata::new()
        .user_id("eve\n200 GET /forged")
        .trace_id("pretty-line")
        .origin_title("My App")
        .tag("a")
        .tag("b c");
    let mut info = ResponseInfo::default();
    info.usage.input_tokens = Some(7);
    let mut done = Completion::new(&Method::POST, "/v1/embeddings", StatusCode::OK);
    done.metadata = Some(&metadata);
    done.model = Some("text-embedding-3-small");
    done.response = Some(&info);
    done.completed = true;
    done.latency = Duration::from_micros(1500);
    let line = access_log::line(LogFormat::Pretty, &done);
    assert_eq!(
        line,
        r#"200 POST /v1/embeddings model=text-embedding-3-small trace_id=pretty-line user_id="eve\n200 GET /forged" title="My App" tags=["a","b c"] input_tokens=7 1.5ms"#
    );
}

/// What the upstream behind the proxy received.
struct Seen {
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

/// An upstream whose answer is an event stream of two frames; the second waits for `go`.
async fn upstream(seen: mpsc::UnboundedSender<Seen>, go: mpsc::Receiver<()>) -> SocketAddr {
    let go = Arc::new(tokio::sync::Mutex::new(Some(go)));
    let handler = move |request: Request| {
        let seen = seen.clone();
        let go = go.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            let _ = seen.send(Seen {
                uri: parts.uri,
                headers: parts.headers,
                body,
            });
            let mut go = go.lock().await.take().expect("one request");
            let frames = async_stream(move |tx: mpsc::Sender<&'static str>| async move {
                let _ = tx
                    .send("data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[]}\n\n")
                    .await;
                let _ = go.recv().await;
                let _ = tx
                    .send("data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n")
                    .await;
            });
            (
                [("content-type", "text/event-stream")],
                Body::from_stream(frames),
            )
                .into_response()
        }
    };
    serve_app(Router::new().route("/v1/{*rest}", axum::routing::any(handler))).await
}

/// A stream of what `produce` sends.
fn async_stream<F, Fut>(
    produce: F,
) -> impl futures_util::Stream<Item = Result<&'static str, std::convert::Infallible>>
where
    F: FnOnce(mpsc::Sender<&'static str>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(produce(tx));
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|frame| (Ok(frame), rx))
    })
}

/// The proxy forwards the path, query and end-to-end headers, not hop-by-hop ones, not the
/// metadata; and it streams each frame on as the upstream sends it: the upstream sends its second
/// frame only once the client has read the first through the gateway.
#[tokio::test]
async fn the_proxy_streams_frames_as_they_come_and_forwards_only_what_it_should() {
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let (go_tx, go_rx) = mpsc::channel(1);
    let up = upstream(seen_tx, go_rx).await;
    let addr = gateway(&["--upstream", &format!("http://{up}/")]).await;
    let body = r#"{"model":"gpt-4o", "stream":true, "requesty":{"trace_id":"proxied"}}"#;
    let request = reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions?api-version=2"))
        .header("content-type", "application/json")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "1")
        .header("x-end", "2")
        .header("x-requesty-team", "platform")
        .header("accept-encoding", "gzip")
        .body(body)
        .send();
    let mut response = tokio::time::timeout(PATIENCE, request)
        .await
        .expect("the upstream's head arrives before the rest of its body")
        .unwrap();
    assert_eq!(response.status(), 200);

    let seen = seen_rx.recv().await.unwrap();
    assert_eq!(seen.uri.path(), "/v1/chat/completions");
    assert_eq!(seen.uri.query(), Some("api-version=2"));
    assert_eq!(&seen.body[..], br#"{"model":"gpt-4o", "stream":true}"#);
    assert_eq!(
        seen.headers["content-length"],
        seen.body.len().to_string().as_str()
    );
    assert_eq!(seen.headers["x-end"], "2");
    for gone in ["x-hop", "x-requesty-team", "accept-encoding"] {
        assert!(!seen.headers.contains_key(gone), "{gone} was forwarded");
    }

    let first = tokio::time::timeout(PATIENCE, response.chunk())
        .await
        .expect("the first frame arrives before the upstream sends the second")
        .unwrap()
        .unwrap();
    assert!(first.starts_with(b"data: {\"id\":\"c1\""), "{first:?}");
    go_tx.send(()).await.unwrap();
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert!(rest.ends_with(b"data: [DONE]\n\n"));
    let line = line_with("trace_id=proxied").await;
    assert!(line.contains(" tokens=3+2 "), "{line}");
}

#[tokio::test]
async fn an_upstream_that_cannot_be_reached_is_a_502_in_the_openai_error_shape() {
    // A port that was just free, so nothing listens on it.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let addr = gateway(&["--upstream", &format!("http://{closed}")]).await;
    let response = reqwest::get(format!("http://{addr}/v1/models"))
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "upstream_unreachable");
    assert_eq!(error["error"]["type"], "api_error");
}

/// Clients normalize `..` away before sending, so the request line is written by hand.
#[tokio::test]
async fn a_path_that_would_climb_above_the_upstream_base_is_refused() {
    let addr = gateway(&["--upstream", "http://127.0.0.1:9/base"]).await;
    for path in [
        "/v1/%2e%2e/admin",
        "/v1/../admin",
        "/v1/.%2E/admin",
        "/v1/a\\..\\b",
    ] {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!("GET {path} HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n");
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("invalid_path"), "{path}: {answer}");
    }
}
