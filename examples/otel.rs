//! Request spans to OpenTelemetry: a mock chat completions server whose spans are exported over
//! OTLP/HTTP, one trace per business `trace_id`.
//!
//! ```text
//! cargo run --example otel --features opentelemetry -- [--listen ADDR] [--otlp-endpoint URL]
//! ```
//!
//! With `--otlp-endpoint http://127.0.0.1:4318/v1/traces` the spans go as protobuf to that OTLP/HTTP
//! receiver (Jaeger, Grafana Tempo, an OpenTelemetry Collector); without it each span is printed
//! to stdout as it ends. Ctrl-C stops the server and flushes the spans not yet exported. Try:
//!
//! ```text
//! curl -s localhost:8081/v1/chat/completions -H 'content-type: application/json' \
//!   -d '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],
//!        "requesty":{"user_id":"u1","trace_id":"wf-1","extra":{"country":"canada","step":1}}}'
//! ```
//!
//! Requests with the same `trace_id` land in one trace; one with a W3C `traceparent` header joins
//! its caller's trace instead. `RUST_LOG` picks the spans exported (default
//! `requesty_metadata=info`).

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use requesty_metadata::RequestyMetadataLayer;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

const USAGE: &str = "\
usage: otel [--listen ADDR] [--otlp-endpoint URL]

  --listen ADDR         address to listen on (default 127.0.0.1:8081)
  --otlp-endpoint URL   export spans over OTLP/HTTP (protobuf) to URL,
                        e.g. http://127.0.0.1:4318/v1/traces (default: print them to stdout)
  -h, --help            print this help
";

struct Args {
    listen: String,
    endpoint: Option<String>,
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
            eprintln!("otel: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let provider = match tracer_provider(args.endpoint.as_deref()) {
        Ok(provider) => provider,
        Err(message) => {
            eprintln!("otel: {message}");
            return ExitCode::FAILURE;
        }
    };
    // Only this crate's spans: the exporter's own HTTP client must not trace itself in a loop.
    let spans = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("requesty_metadata=info"));
    tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("requesty-metadata"))
                .with_filter(spans),
        )
        // Warnings, such as failed exports, on stderr.
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(LevelFilter::WARN),
        )
        .init();

    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .layer(RequestyMetadataLayer::new().group_by_trace_id(true));
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("otel: cannot listen on {}: {error}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .map_or(args.listen.clone(), |a| a.to_string());
    // Stream frames go out as they are written, not held back by Nagle's algorithm until the client
    // acknowledges the frame before (its delayed ACK waits up to 40 ms on Linux).
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            eprintln!("otel: cannot turn off Nagle's algorithm on a connection: {error}");
        }
    });
    let sink = args.endpoint.as_deref().unwrap_or("stdout");
    eprintln!("listening on http://{addr}; spans to {sink}; Ctrl-C to stop");

    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    // Shutting down exports what the batch still holds; it blocks, so off the async threads.
    let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    if let Err(error) = served {
        eprintln!("otel: server error: {error}");
        return ExitCode::FAILURE;
    }
    match flushed {
        Ok(Ok(())) => {
            eprintln!("exporter shut down");
            ExitCode::SUCCESS
        }
        Ok(Err(error)) => {
            eprintln!("otel: flushing spans failed: {error}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("otel: flushing spans failed: {error}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut parsed = Args {
        listen: "127.0.0.1:8081".into(),
        endpoint: None,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => parsed.listen = args.next().ok_or("--listen needs an address")?,
            "--otlp-endpoint" => {
                parsed.endpoint = Some(args.next().ok_or("--otlp-endpoint needs a URL")?);
            }
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Some(parsed))
}

/// OTLP/HTTP with a batch processor when there is an endpoint; stdout, span by span, otherwise.
fn tracer_provider(endpoint: Option<&str>) -> Result<SdkTracerProvider, String> {
    let resource = Resource::builder().with_service_name("llm-gateway").build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let Some(endpoint) = endpoint else {
        let stdout = opentelemetry_stdout::SpanExporter::default();
        return Ok(builder.with_simple_exporter(stdout).build());
    };
    // Plain HTTP needs no TLS, but the HTTP client wants a crypto provider installed all the same.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|error| format!("cannot export to {endpoint}: {error}"))?;
    Ok(builder.with_batch_exporter(exporter).build())
}

/// A mock OpenAI chat completion, JSON or streamed, with usage.
async fn chat(Json(request): Json<Value>) -> Response {
    let model = request["model"].as_str().unwrap_or("gpt-4o").to_owned();
    let prompt = request["messages"].to_string().len() / 4 + 1;
    let words = ["Hello", " from", " the", " mock", " provider", "."];
    let usage = json!({
        "prompt_tokens": prompt,
        "completion_tokens": words.len(),
        "total_tokens": prompt + words.len(),
    });
    if request["stream"] != json!(true) {
        let body = json!({
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": words.concat()}}],
            "usage": usage,
        });
        return Json(body).into_response();
    }
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut events: Vec<Value> = words
        .iter()
        .map(|word| chunk(json!({"content": word}), Value::Null))
        .collect();
    events.push(chunk(json!({}), json!("stop")));
    if request["stream_options"]["include_usage"] == json!(true) {
        events.push(
            json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk",
            "model": model, "choices": [], "usage": usage}),
        );
    }
    let mut frames: Vec<String> = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    frames.push("data: [DONE]\n\n".into());
    let stream = futures_util::stream::unfold(frames.into_iter(), |mut frames| async move {
        let frame = frames.next()?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        Some((Ok::<_, Infallible>(frame), frames))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}
