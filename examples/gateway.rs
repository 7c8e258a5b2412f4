//! A small LLM gateway built on `RequestyMetadataLayer`: run it first to see the layer at work.
//!
//! ```text
//! cargo run --example gateway -- [--listen ADDR] [--upstream URL] [--log-format pretty|json] [--keep-metadata]
//!                                  [--without-layer] [--mock-delay-ms N]
//! ```
//!
//! Without `--upstream` it answers from a built-in mock provider (OpenAI chat completions and
//! embeddings, Anthropic messages, models; streaming too), so it runs offline. With `--upstream` it
//! forwards everything under `/v1/` to that base URL and streams the answer back as it arrives
//! (asked for uncompressed: the layer reads token usage only from bytes it can read).
//!
//! Either way the layer reads the request's metadata (a `requesty` body member, `X-Requesty-*`,
//! `HTTP-Referer` and `X-Title` headers), strips it unless `--keep-metadata`, and once the response
//! body has ended writes one access-log line to stdout (in batches, every 10 ms). `--without-layer`
//! serves the same routes without it (no metadata handling, no access log), to measure what the
//! layer costs (`examples/load.rs`). Try:
//!
//! ```text
//! curl -s localhost:8080/v1/chat/completions -H 'content-type: application/json' \
//!   -H 'X-Requesty-Team: platform' -H 'X-Title: My App' \
//!   -d '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],
//!        "requesty":{"tags":["demo"],"user_id":"u1","trace_id":"t1","extra":{"country":"canada"}}}'
//! ```
//!
//! The mock's `x-mock-saw-requesty` response header says whether the body it received still had the
//! `requesty` member. Spans go to stderr at `WARN` unless `RUST_LOG` says otherwise
//! (`RUST_LOG=requesty_metadata=info` prints each request's span when it closes).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use requesty_metadata::server::Completion;
use requesty_metadata::RequestyMetadataLayer;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::EnvFilter;

const USAGE: &str = "\
usage: gateway [--listen ADDR] [--upstream URL] [--log-format pretty|json] [--keep-metadata]
               [--without-layer] [--mock-delay-ms N]

  --listen ADDR        address to listen on (default 127.0.0.1:8080; port 0 picks a free one)
  --upstream URL       forward /v1/* to this base URL, e.g. https://api.openai.com
                       (default: answer from the built-in mock provider)
  --log-format FORMAT  access log on stdout: pretty (default) or json, one line per request
  --keep-metadata      pass the `requesty` body member and X-Requesty-* headers on
                       (default: strip them before the provider sees the request)
  --without-layer      serve the same routes without the metadata layer: nothing is read,
                       stripped or logged (for comparing the layer's cost)
  --mock-delay-ms N    the mock provider's pause before each stream frame (default 20)
  -h, --help           print this help

RUST_LOG sets what goes to stderr (default: warn).
";

#[derive(Clone, Copy)]
enum LogFormat {
    Pretty,
    Json,
}

struct Args {
    listen: String,
    upstream: Option<reqwest::Url>,
    log_format: LogFormat,
    keep_metadata: bool,
    without_layer: bool,
    mock_delay: std::time::Duration,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("gateway: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    // stderr, so spans and warnings never mix with the access log on stdout.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_span_events(FmtSpan::CLOSE)
        .init();
    // reqwest is built without a default crypto provider; pick ring once, before any TLS happens.
    rustls::crypto::ring::default_provider()
        .install_default()
        .expect("no other rustls crypto provider is installed yet");

    let log_format = args.log_format;
    if !args.without_layer {
        access_log::start();
    }
    let layer = RequestyMetadataLayer::new()
        .keep_body_metadata(args.keep_metadata)
        .keep_headers(args.keep_metadata)
        .on_complete(move |done: &Completion<'_>| log_completion(log_format, done));
    let routes = match &args.upstream {
        Some(url) => proxy::routes(url),
        None => mock::routes(args.mock_delay),
    };
    // The layer wraps the provider routes in both modes, so the mock sees exactly what a real
    // provider would.
    let routes = routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    let app = if args.without_layer {
        routes
    } else {
        routes.layer(layer)
    };

    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("gateway: cannot listen on {}: {error}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .expect("a bound listener has a local address");
    println!("gateway listening on http://{addr}");
    // Flushed now: a script waiting for this line may be reading through a pipe.
    let _ = std::io::stdout().flush();
    match &args.upstream {
        Some(url) => eprintln!("forwarding /v1/* to {url}"),
        None => eprintln!("answering /v1/* from the mock provider (no --upstream given)"),
    }
    let strip = if args.without_layer {
        "not read (--without-layer)"
    } else if args.keep_metadata {
        "kept"
    } else {
        "stripped"
    };
    eprintln!("request metadata is {strip}; press Ctrl-C (or send SIGTERM) to stop");

    let shutdown = async {
        stop_signal().await;
        eprintln!("shutting down: finishing requests in flight (Ctrl-C again to stop now)");
        // A stream that never ends (an upstream that hangs) would hold the graceful shutdown
        // forever: a second signal stops at once, with the access log written out.
        tokio::spawn(async {
            stop_signal().await;
            eprintln!("stopping now: requests in flight are cut");
            access_log::flush();
            std::process::exit(130);
        });
    };
    serve(listener, app, shutdown).await;
    access_log::flush();
    ExitCode::SUCCESS
}

/// How long a client has to send a request's head, on a new connection or a kept-alive one.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves `app` until `shutdown`, then waits for the connections' requests in flight. What
/// `axum::serve` does, plus a timeout for reading a request's head: `axum::serve` gives hyper no
/// timer, so a connection that never finishes its head (or sits idle between requests) was held
/// for ever, a file descriptor and some memory each, until the gateway could accept no more.
async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(error) => {
                    // Out of file descriptors, say: wait for some to be freed, as axum::serve does.
                    tracing::error!(%error, "accept error");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Stream frames go out as they are written: with Nagle's algorithm on, a small frame waits
        // for the peer to acknowledge the one before it, up to its delayed-ACK timeout (40 ms on
        // Linux).
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::warn!(%error, "cannot turn off Nagle's algorithm on a connection");
        }
        let service = TowerToHyperService::new(app.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(tcp), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A connection's errors (a client that left, a timed-out head) end only it.
            let _ = connection.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Ctrl-C, or (on Unix) `SIGTERM`, the signal `kill`, systemd and container runtimes stop a service
/// with: without a handler for it the process would die with its queued access-log lines unwritten.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
                return;
            }
            Err(error) => tracing::warn!(%error, "cannot listen for SIGTERM"),
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// `None` means `--help`. Takes `--flag value` and `--flag=value`.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut parsed = Args {
        listen: "127.0.0.1:8080".to_owned(),
        upstream: None,
        log_format: LogFormat::Pretty,
        keep_metadata: false,
        without_layer: false,
        mock_delay: mock::FRAME_DELAY,
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let needs_value = matches!(
            flag.as_str(),
            "--listen" | "--upstream" | "--log-format" | "--mock-delay-ms"
        );
        let value = match (needs_value, inline) {
            (true, Some(value)) => value,
            (true, None) => args.next().ok_or_else(|| format!("{flag} needs a value"))?,
            (false, Some(_)) => return Err(format!("{flag} takes no value")),
            (false, None) => String::new(),
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--listen" => parsed.listen = value,
            "--upstream" => parsed.upstream = Some(parse_upstream(&value)?),
            "--log-format" => {
                parsed.log_format = match value.as_str() {
                    "pretty" => LogFormat::Pretty,
                    "json" => LogFormat::Json,
                    other => return Err(format!("--log-format is pretty or json, not {other:?}")),
                }
            }
            "--keep-metadata" => parsed.keep_metadata = true,
            "--without-layer" => parsed.without_layer = true,
            "--mock-delay-ms" => {
                let ms = value
                    .parse()
                    .map_err(|_| format!("--mock-delay-ms takes milliseconds, not {value:?}"))?;
                parsed.mock_delay = std::time::Duration::from_millis(ms);
            }
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    Ok(Some(parsed))
}

fn parse_upstream(value: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(value).map_err(|e| format!("--upstream {value:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(format!(
            "--upstream {value:?}: expected an http(s) base URL without a query or fragment"
        ));
    }
    Ok(url)
}

/// The `--log-format json` line: a struct rather than `json!` so the fields keep this order.
#[derive(Serialize)]
struct AccessLog<'a> {
    trace_id: Option<&'a str>,
    user_id: Option<&'a str>,
    tags: &'a [String],
    extra: &'a Map<String, Value>,
    origin_referer: Option<&'a str>,
    origin_title: Option<&'a str>,
    method: &'a str,
    path: &'a str,
    status: u16,
    model: Option<&'a str>,
    response_model: Option<&'a str>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cached_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
    finish_reasons: &'a [String],
    latency_ms: f64,
    time_to_first_token_ms: Option<f64>,
    completed: bool,
    /// The response body ended in an error (the upstream cut it), not because the client left.
    failed: bool,
}

/// `value` as JSON for a log line: JSON escapes only the C0 controls, so the other characters a
/// terminal or a log tool may act on (C1 controls such as NEL and CSI, the line and paragraph
/// separators) are escaped too, as `\uXXXX` (still the same JSON).
fn log_json(value: &impl serde::Serialize) -> String {
    let json = serde_json::to_string(value).unwrap_or_default();
    if !json.chars().any(acts_on_terminal) {
        return json;
    }
    let mut escaped = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if acts_on_terminal(c) {
            let _ = write!(escaped, "\\u{:04x}", u32::from(c));
        } else {
            escaped.push(c);
        }
    }
    escaped
}

/// A character that a terminal or a log tool may act on rather than show.
fn acts_on_terminal(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Whether a value in a pretty log line needs quotes: it is empty, or holds whitespace, a quote or
/// a control character.
fn needs_quotes(value: &str) -> bool {
    value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || acts_on_terminal(c) || c == '"')
}

/// One access-log line per request, written after its response body ended (or the client left).
fn log_completion(format: LogFormat, done: &Completion<'_>) {
    let meta = done.metadata;
    let ms = |d: std::time::Duration| (d.as_secs_f64() * 10_000.0).round() / 10.0;
    let latency_ms = ms(done.latency);
    let ttft_ms = done.time_to_first_token.map(ms);
    let response = done.response;
    let usage = response.map(|r| r.usage).unwrap_or_default();
    let line = match format {
        LogFormat::Json => {
            let no_extra = Map::new();
            let line = AccessLog {
                trace_id: meta.and_then(|m| m.trace_id.as_deref()),
                user_id: meta.and_then(|m| m.user_id.as_deref()),
                tags: meta.map_or(&[], |m| m.tags.as_slice()),
                extra: meta.map_or(&no_extra, |m| &m.extra),
                origin_referer: meta.and_then(|m| m.origin_referer.as_deref()),
                origin_title: meta.and_then(|m| m.origin_title.as_deref()),
                method: done.method.as_str(),
                path: done.path,
                status: done.status.as_u16(),
                model: done.model,
                response_model: response.and_then(|r| r.model.as_deref()),
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                cached_tokens: usage.cache_read_input_tokens,
                reasoning_tokens: usage.reasoning_output_tokens,
                finish_reasons: response.map_or(&[], |r| r.finish_reasons.as_slice()),
                latency_ms,
                time_to_first_token_ms: ttft_ms,
                completed: done.completed,
                failed: done.failed,
            };
            log_json(&line)
        }
        LogFormat::Pretty => {
            // One buffer, written into: this runs once per request.
            let mut line = String::with_capacity(256);
            let _ = write!(
                line,
                "{} {} {}",
                done.status.as_u16(),
                done.method,
                done.path
            );
            let mut field = |key: &str, value: Option<&str>| {
                if let Some(value) = value {
                    // Quote (and escape) only what would be ambiguous unquoted: a client's value
                    // must not start a line of its own or send a terminal escape.
                    let _ = if needs_quotes(value) {
                        write!(line, " {key}={value:?}")
                    } else {
                        write!(line, " {key}={value}")
                    };
                }
            };
            field("model", done.model);
            if let Some(m) = meta {
                field("trace_id", m.trace_id.as_deref());
                field("user_id", m.user_id.as_deref());
                field("referer", m.origin_referer.as_deref());
                field("title", m.origin_title.as_deref());
                if m.tags
                    .iter()
                    .any(|tag| needs_quotes(tag) || tag.contains([',', ']']))
                {
                    let tags = log_json(&m.tags);
                    let _ = write!(line, " tags={tags}");
                } else if !m.tags.is_empty() {
                    let _ = write!(line, " tags=[{}]", m.tags.join(","));
                }
                if !m.extra.is_empty() {
                    // JSON delimits itself, so it needs no quoting.
                    line.push_str(" extra=");
                    line.push_str(&log_json(&m.extra));
                }
            }
            if let (Some(input), Some(output)) = (usage.input_tokens, usage.output_tokens) {
                let _ = write!(line, " tokens={input}+{output}");
            }
            if let Some(ttft) = ttft_ms {
                let _ = write!(line, " ttft={ttft}ms");
            }
            let end = if done.completed {
                ""
            } else if done.failed {
                " (the response failed)"
            } else {
                " (client went away)"
            };
            let _ = write!(line, " {latency_ms}ms{end}");
            line
        }
    };
    access_log::write_line(&line);
}

/// The access log's way to stdout. Lines gather in memory and a thread of their own writes them out
/// a few milliseconds later, many at a time: a request never waits on a write to stdout (a blocking
/// call on an async worker, slow when stdout is a slow pipe), and the workers never queue for
/// stdout's lock.
mod access_log {
    use std::io::Write;
    use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
    use std::time::Duration;

    /// The longest a line waits before it is written.
    const INTERVAL: Duration = Duration::from_millis(10);
    /// Past this much waiting text the request that adds to it writes it out itself, so memory stays
    /// bounded when stdout cannot keep up; no line is dropped.
    const MAX_PENDING: usize = 1 << 20;

    static PENDING: Mutex<Vec<u8>> = Mutex::new(Vec::new());
    /// Signalled when the first line lands in an empty buffer.
    static READY: Condvar = Condvar::new();

    fn pending() -> MutexGuard<'static, Vec<u8>> {
        PENDING.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the thread that writes the lines out.
    pub fn start() {
        std::thread::spawn(|| {
            let mut batch = Vec::new();
            loop {
                let mut waiting = pending();
                while waiting.is_empty() {
                    waiting = READY.wait(waiting).unwrap_or_else(PoisonError::into_inner);
                }
                drop(waiting);
                // Let more lines join this write.
                std::thread::sleep(INTERVAL);
                flush_with(&mut batch);
            }
        });
    }

    /// Queues one line.
    pub fn write_line(line: &str) {
        let mut waiting = pending();
        let first = waiting.is_empty();
        waiting.extend_from_slice(line.as_bytes());
        waiting.push(b'\n');
        let full = waiting.len() >= MAX_PENDING;
        drop(waiting);
        if full {
            flush();
        } else if first {
            READY.notify_one();
        }
    }

    /// Writes out every queued line now (at shutdown, and when too much waits).
    pub fn flush() {
        flush_with(&mut Vec::new());
    }

    /// Swaps the queued lines into `batch` and writes them. Holding stdout's lock while taking the
    /// lines keeps batches in order when two flushes race.
    fn flush_with(batch: &mut Vec<u8>) {
        let mut out = std::io::stdout().lock();
        std::mem::swap(&mut *pending(), batch);
        // A closed stdout (e.g. piped into `head`) must not take the server down.
        let _ = out.write_all(batch);
        let _ = out.flush();
        batch.clear();
    }
}

/// An OpenAI-style error, the shape LLM clients know how to show.
fn error_response(status: StatusCode, message: &str, kind: &str, code: &str) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    (status, Json(body)).into_response()
}

async fn not_found(method: Method, uri: Uri) -> Response {
    let message = format!("no route for {method} {}", uri.path());
    error_response(
        StatusCode::NOT_FOUND,
        &message,
        "invalid_request_error",
        "not_found",
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let message = format!("{method} is not allowed on {}", uri.path());
    let status = StatusCode::METHOD_NOT_ALLOWED;
    error_response(
        status,
        &message,
        "invalid_request_error",
        "method_not_allowed",
    )
}

/// Forwards `/v1/*` to a real provider and streams its answer back.
mod proxy {
    use super::*;
    use axum::body::HttpBody as _;
    use axum::extract::State;
    use axum::http::header::{CONNECTION, CONTENT_LENGTH};
    use axum::http::HeaderMap;
    use axum::routing::any;
    use std::sync::Arc;
    use std::time::Duration;

    struct Upstream {
        client: reqwest::Client,
        /// The base URL without its trailing `/`; the request's path and query are appended.
        base: String,
    }

    pub fn routes(base: &reqwest::Url) -> Router {
        let client = reqwest::Client::builder()
            // A proxy passes redirects on to its client instead of following them.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("the HTTP client builds once a TLS provider is installed");
        let upstream = Upstream {
            client,
            base: base.as_str().trim_end_matches('/').to_owned(),
        };
        Router::new()
            .route("/v1/{*rest}", any(forward))
            .with_state(Arc::new(upstream))
    }

    async fn forward(State(upstream): State<Arc<Upstream>>, request: Request) -> Response {
        let (parts, body) = request.into_parts();
        // The URL parser would resolve `..` (and `%2e%2e`, and `\`) and so reach paths above the
        // upstream's base: such a path is refused, not resolved.
        if climbs(parts.uri.path()) {
            return error_response(
                StatusCode::BAD_REQUEST,
                "the path has `.` or `..` segments or a backslash",
                "invalid_request_error",
                "invalid_path",
            );
        }
        let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let url = format!("{}{path}", upstream.base);
        // The answer is asked for uncompressed (no `Accept-Encoding` from the client goes on): the
        // layer reads token usage only from bytes it can read, and the OpenAI SDKs ask for gzip.
        let mut headers = copy_headers(
            &parts.headers,
            &["host", "content-length", "accept-encoding"],
        );
        let mut outgoing = upstream.client.request(parts.method, url);
        // The layer rebuilt a JSON body without the `requesty` member, so its exact size is known:
        // send that as Content-Length. Other bodies stream through as they arrive; an empty one
        // (a GET) is not sent at all.
        let size = body.size_hint().exact();
        if size != Some(0) {
            if let Some(len) = size {
                headers.insert(CONTENT_LENGTH, len.into());
            }
            outgoing = outgoing.body(reqwest::Body::wrap_stream(body.into_data_stream()));
        } else if parts.headers.contains_key(CONTENT_LENGTH) {
            // An empty body that said so (a POST without one) says so upstream too.
            headers.insert(CONTENT_LENGTH, 0.into());
        }
        let answer = match outgoing.headers(headers).send().await {
            Ok(answer) => answer,
            Err(error) => {
                // A timeout (the connect timeout) is a 504, as a gateway reports an upstream that
                // did not answer in time; other failures are a 502.
                let (status, code) = if error.is_timeout() {
                    (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout")
                } else {
                    (StatusCode::BAD_GATEWAY, "upstream_unreachable")
                };
                let message = format!(
                    "the upstream provider could not be reached: {}",
                    causes(&error)
                );
                tracing::warn!("{message}");
                return error_response(status, &message, "api_error", code);
            }
        };
        let status = answer.status();
        let headers = copy_headers(answer.headers(), &[]);
        // Frame by frame, so server-sent events reach the client as the provider sends them.
        let mut response = Response::new(Body::from_stream(answer.bytes_stream()));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }

    /// Whether `path` has a segment that a URL parser resolves: `.` or `..`, also percent-encoded,
    /// or a backslash (a separator for `http` URLs).
    fn climbs(path: &str) -> bool {
        const DOTS: [&str; 6] = [".", "..", "%2e", ".%2e", "%2e.", "%2e%2e"];
        path.contains('\\')
            || path
                .split('/')
                .any(|segment| DOTS.iter().any(|dots| segment.eq_ignore_ascii_case(dots)))
    }

    /// Copies end-to-end headers: drops hop-by-hop ones, those `Connection` names, and `also`.
    fn copy_headers(headers: &HeaderMap, also: &[&str]) -> HeaderMap {
        let named: Vec<String> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(|name| name.trim().to_ascii_lowercase())
            .collect();
        let keep = |name: &str| {
            !matches!(
                name,
                "connection" | "keep-alive" | "te" | "trailer" | "transfer-encoding" | "upgrade"
            ) && !name.starts_with("proxy-")
                && !also.contains(&name)
                && !named.iter().any(|n| n == name)
        };
        headers
            .iter()
            .filter(|(name, _)| keep(name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    }

    /// The error and its causes: reqwest's own message alone rarely says what went wrong.
    fn causes(error: &dyn std::error::Error) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

/// A stand-in provider with the response shapes of OpenAI and Anthropic, so the gateway runs offline.
mod mock {
    use super::*;
    use axum::body::Bytes;
    use axum::extract::{DefaultBodyLimit, FromRequest, State};
    use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
    use axum::http::HeaderValue;
    use axum::routing::{get, post};
    use futures_util::StreamExt;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// The reply, in the pieces a stream sends it in.
    const REPLY: [&str; 6] = ["Hello", " from", " the", " mock", " provider", "."];
    /// The default pause before each stream frame, so a client sees them arrive one by one.
    pub const FRAME_DELAY: Duration = Duration::from_millis(20);

    /// The largest request body the mock reads: the layer's default limit, rather than axum's
    /// 2 MiB, so the layer's `413` is the one a client meets.
    const MAX_BODY: usize = 32 * 1024 * 1024;

    /// The mock's routes; `delay` is the pause before each stream frame.
    pub fn routes(delay: Duration) -> Router {
        Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/messages", post(messages))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/models", get(models))
            .with_state(FrameDelay(delay))
            .layer(DefaultBodyLimit::max(MAX_BODY))
    }

    #[derive(Clone, Copy)]
    struct FrameDelay(Duration);

    /// What the provider received, after the layer did its work.
    struct Received {
        body: Value,
        saw_body_metadata: bool,
        saw_header_metadata: bool,
    }

    impl<S: Send + Sync> FromRequest<S> for Received {
        type Rejection = Response;

        async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
            let saw_header_metadata = request
                .headers()
                .keys()
                .any(|name| name.as_str().starts_with("x-requesty-"));
            let bytes = Bytes::from_request(request, state)
                .await
                .map_err(IntoResponse::into_response)?;
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).map_err(|e| {
                    let message = format!("the request body is not valid JSON: {e}");
                    error_response(
                        StatusCode::BAD_REQUEST,
                        &message,
                        "invalid_request_error",
                        "invalid_json",
                    )
                })?
            };
            Ok(Self {
                saw_body_metadata: body.get("requesty").is_some(),
                saw_header_metadata,
                body,
            })
        }
    }

    impl Received {
        /// The request's `model`, echoed back like a provider does.
        fn model(&self) -> String {
            self.body["model"]
                .as_str()
                .unwrap_or("mock-model")
                .to_owned()
        }

        fn stream(&self) -> bool {
            self.body["stream"].as_bool() == Some(true)
        }

        /// Roughly four bytes per token, the rule of thumb providers quote.
        fn input_tokens(&self, member: &str) -> u64 {
            (self.body[member].to_string().len() as u64 / 4).max(1)
        }

        /// Adds headers that show whether metadata reached the provider.
        fn reply(&self, response: impl IntoResponse) -> Response {
            let mut response = response.into_response();
            let flag = |saw: bool| HeaderValue::from_static(if saw { "true" } else { "false" });
            let headers = response.headers_mut();
            headers.insert("x-mock-saw-requesty", flag(self.saw_body_metadata));
            headers.insert(
                "x-mock-saw-requesty-headers",
                flag(self.saw_header_metadata),
            );
            response
        }
    }

    async fn chat_completions(State(delay): State<FrameDelay>, req: Received) -> Response {
        let id = format!("chatcmpl-mock{}", next_id());
        let model = req.model();
        let prompt_tokens = req.input_tokens("messages");
        let completion_tokens = REPLY.len() as u64;
        let usage = json!({
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        });
        if !req.stream() {
            return req.reply(Json(json!({
                "id": id,
                "object": "chat.completion",
                "created": now(),
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": REPLY.concat(), "refusal": null, "annotations": []},
                    "logprobs": null,
                    "finish_reason": "stop",
                }],
                "usage": usage,
                "system_fingerprint": "fp_mock",
            })));
        }

        let include_usage = req.body["stream_options"]["include_usage"].as_bool() == Some(true);
        let created = now();
        let chunk = |choices: Value, usage: Option<&Value>| {
            let mut chunk = json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_mock",
                "choices": choices,
            });
            // With include_usage, every chunk carries `usage`: null until the last one.
            if include_usage {
                chunk["usage"] = usage.cloned().unwrap_or(Value::Null);
            }
            format!("data: {chunk}\n\n")
        };
        let delta = |delta: Value, finish: Option<&str>| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
        let mut frames = vec![chunk(
            delta(json!({"role": "assistant", "content": ""}), None),
            None,
        )];
        for piece in REPLY {
            frames.push(chunk(delta(json!({"content": piece}), None), None));
        }
        frames.push(chunk(delta(json!({}), Some("stop")), None));
        if include_usage {
            frames.push(chunk(json!([]), Some(&usage)));
        }
        frames.push("data: [DONE]\n\n".to_owned());
        req.reply(sse(frames, delay))
    }

    async fn messages(State(delay): State<FrameDelay>, req: Received) -> Response {
        let id = format!("msg_mock{}", next_id());
        let model = req.model();
        let input_tokens = req.input_tokens("messages");
        let output_tokens = REPLY.len() as u64;
        if !req.stream() {
            return req.reply(Json(json!({
                "id": id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": REPLY.concat()}],
                "stop_reason": "end_turn",
                "stop_sequence": null,
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
            })));
        }

        let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
        let mut frames = vec![
            event(
                "message_start",
                json!({"type": "message_start", "message": {
                    "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
                    "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": input_tokens, "output_tokens": 1},
                }}),
            ),
            event(
                "content_block_start",
                json!({
                    "type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""},
                }),
            ),
            event("ping", json!({"type": "ping"})),
        ];
        for piece in REPLY {
            frames.push(event("content_block_delta", json!({
                "type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece},
            })));
        }
        frames.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ));
        frames.push(event(
            "message_delta",
            json!({
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"output_tokens": output_tokens},
            }),
        ));
        frames.push(event("message_stop", json!({"type": "message_stop"})));
        req.reply(sse(frames, delay))
    }

    async fn embeddings(req: Received) -> Response {
        let inputs: Vec<String> = match &req.body["input"] {
            Value::Array(items) => items.iter().map(Value::to_string).collect(),
            one => vec![one.to_string()],
        };
        let data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(index, text)| json!({"object": "embedding", "index": index, "embedding": embed(text)}))
            .collect();
        let tokens = req.input_tokens("input");
        req.reply(Json(json!({
            "object": "list",
            "data": data,
            "model": req.model(),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })))
    }

    async fn models(req: Received) -> Response {
        let ids = [
            "gpt-4o",
            "gpt-4o-mini",
            "claude-sonnet-4-5",
            "text-embedding-3-small",
        ];
        let data: Vec<Value> = ids
            .iter()
            .map(|id| json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": "mock"}))
            .collect();
        req.reply(Json(json!({"object": "list", "data": data})))
    }

    /// Server-sent events, one frame at a time with a pause before each.
    fn sse(frames: Vec<String>, FrameDelay(delay): FrameDelay) -> Response {
        let stream = futures_util::stream::iter(frames).then(move |frame| async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok::<_, Infallible>(frame)
        });
        let headers = [
            (CONTENT_TYPE, "text/event-stream"),
            (CACHE_CONTROL, "no-cache"),
        ];
        (headers, Body::from_stream(stream)).into_response()
    }

    /// A small vector that depends only on `text`, so the same input always embeds the same way.
    fn embed(text: &str) -> Vec<f64> {
        // FNV-1a for the seed, then xorshift for each dimension.
        let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        (0..8)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let unit = (state >> 11) as f64 / (1_u64 << 53) as f64;
                ((unit * 2.0 - 1.0) * 1e6).round() / 1e6
            })
            .collect()
    }

    fn next_id() -> u64 {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}
