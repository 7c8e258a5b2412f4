//! An existing axum app that gains request metadata with one `.layer(...)` line.
//!
//! ```text
//! cargo run --example axum_server --features axum -- [--listen ADDR]
//! ```
//!
//! `POST /v1/chat/completions` reads the metadata as an optional `Extension<RequestMetadata>`;
//! `GET /v1/whoami` uses the `Metadata` extractor, which answers `400` to a request without any.

use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use requesty_metadata::axum::Metadata;
use requesty_metadata::{RequestMetadata, RequestyMetadataLayer};
use serde_json::{json, Value};
use std::io::Write;
use std::process::ExitCode;

const USAGE: &str = "usage: axum_server [--listen ADDR]   (default 127.0.0.1:3000)\n";

#[tokio::main]
async fn main() -> ExitCode {
    let listen = match parse_listen(std::env::args().skip(1)) {
        Ok(Some(listen)) => listen,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("axum_server: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/whoami", get(whoami))
        // The one new line: metadata is read, stripped from the body and headers, and handed over.
        .layer(RequestyMetadataLayer::new());

    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("axum_server: cannot listen on {listen}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .expect("a bound listener has a local address");
    println!("axum_server listening on http://{addr}");
    println!(
        "try:\n  curl -s http://{addr}/v1/chat/completions -H 'content-type: application/json' \
         -H 'X-Requesty-Team: platform' \
         -d '{{\"model\":\"gpt-4o\",\"messages\":[],\"requesty\":{{\"tags\":[\"demo\"],\"user_id\":\"u1\"}}}}'\n  \
         curl -s http://{addr}/v1/whoami -H 'X-Requesty-User-Id: u1' -H 'X-Requesty-Tags: a,b'"
    );
    let _ = std::io::stdout().flush();

    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        eprintln!("axum_server: server error: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Echoes what the handler received: the body no longer has its `requesty` member.
async fn chat(meta: Option<Extension<RequestMetadata>>, Json(body): Json<Value>) -> Json<Value> {
    let meta = meta.map(|Extension(meta)| meta);
    Json(json!({
        "model": body.get("model"),
        "body_still_has_requesty": body.get("requesty").is_some(),
        "metadata": meta,
    }))
}

/// Requires metadata: without any, the extractor answers `400` before this runs.
async fn whoami(Metadata(meta): Metadata) -> Json<Value> {
    Json(json!({"user_id": meta.user_id, "tags": meta.tags, "extra": meta.extra}))
}

/// `None` means `--help`.
fn parse_listen(mut args: impl Iterator<Item = String>) -> Result<Option<String>, String> {
    let mut listen = "127.0.0.1:3000".to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--listen" => listen = args.next().ok_or("--listen needs a value")?,
            _ => match arg.strip_prefix("--listen=") {
                Some(value) => listen = value.to_owned(),
                None => return Err(format!("unknown argument {arg:?}")),
            },
        }
    }
    Ok(Some(listen))
}
