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
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::EnvFilter;

// The demo's parts, in a folder of its own so that Cargo does not take them for examples.
#[path = "gateway/access_log.rs"]
mod access_log;
#[path = "gateway/mock.rs"]
mod mock;
#[path = "gateway/proxy.rs"]
mod proxy;
#[cfg(test)]
#[path = "gateway/tests.rs"]
mod tests;

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

    if !args.without_layer {
        access_log::start();
    }
    let app = app(&args, access_log::write_line);

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

/// The gateway's routes, with the layer unless `--without-layer`; `log` takes each access-log line.
fn app(args: &Args, log: fn(&str)) -> Router {
    let log_format = args.log_format;
    let layer = RequestyMetadataLayer::new()
        .keep_body_metadata(args.keep_metadata)
        .keep_headers(args.keep_metadata)
        .on_complete(move |done: &Completion<'_>| log(&access_log::line(log_format, done)));
    let routes = match &args.upstream {
        Some(url) => proxy::routes(url),
        None => mock::routes(args.mock_delay),
    };
    // The layer wraps the provider routes in both modes, so the mock sees exactly what a real
    // provider would.
    let routes = routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    if args.without_layer {
        routes
    } else {
        routes.layer(layer)
    }
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
