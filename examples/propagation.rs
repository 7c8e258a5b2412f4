//! Metadata propagation between services, in one process.
//!
//! ```text
//! cargo run --example propagation --features reqwest
//! ```
//!
//! Two axum services on loopback ports, both behind `RequestyMetadataLayer`:
//!
//! - an "agent", whose handler calls the tool through a reqwest-middleware client with
//!   `MetadataMiddleware`, with no metadata code of its own;
//! - a "tool", which reports the metadata its layer read and the body it was left with.
//!
//! The example sends one tagged request to the agent, prints what arrived at the tool and exits. The
//! agent's layer makes the inbound request's metadata current while its handler runs; the middleware
//! adds it to the outgoing call (with the client's own default tag); the tool's layer reads it and
//! strips it again.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Extension, Json, Router};
use requesty_metadata::reqwest::MetadataMiddleware;
use requesty_metadata::{RequestMetadata, RequestyMetadataLayer};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::ExitCode;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("propagation: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<bool, Error> {
    // reqwest is built without a default TLS provider; plain HTTP still needs one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let tool = serve(
        Router::new()
            .route("/v1/search", post(tool))
            .layer(RequestyMetadataLayer::new()),
    )
    .await?;
    let client = ClientBuilder::new(reqwest::Client::builder().build()?)
        .with(MetadataMiddleware::new(RequestMetadata::new().tag("agent")))
        .build();
    let agent = serve(
        Router::new()
            .route("/v1/agent", post(agent))
            .with_state(Agent { client, tool })
            .layer(RequestyMetadataLayer::new()),
    )
    .await?;
    println!("agent on http://{agent}, tool on http://{tool}");

    let sent = RequestMetadata::new()
        .tag("workflow-a")
        .user_id("user_1234")
        .trace_id("session_abc123");
    let request = json!({
        "model": "openai/gpt-4o",
        "messages": [{"role": "user", "content": "find a coffee maker"}],
        "requesty": sent,
    });
    println!("\nto the agent:   {request}");
    let answer: Value = reqwest::Client::builder()
        .build()?
        .post(format!("http://{agent}/v1/agent"))
        .json(&request)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    println!("at the tool:    metadata {}", answer["metadata"]);
    println!("                body     {}", answer["body"]);

    let arrived: Option<RequestMetadata> = serde_json::from_value(answer["metadata"].clone())?;
    let propagated = arrived.is_some_and(|m| {
        m.trace_id == sent.trace_id
            && m.user_id == sent.user_id
            && m.tags == ["agent", "workflow-a"]
    });
    if propagated {
        println!("\nthe tool saw the agent's inbound trace_id, user_id and tags");
    } else {
        println!("\nthe metadata did not reach the tool");
    }
    Ok(propagated)
}

async fn serve(router: Router) -> Result<SocketAddr, Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            eprintln!("server on {addr}: {error}");
        }
    });
    Ok(addr)
}

#[derive(Clone)]
struct Agent {
    client: ClientWithMiddleware,
    tool: SocketAddr,
}

/// Calls the tool and relays its answer. No metadata is handled here.
async fn agent(State(agent): State<Agent>) -> Result<Json<Value>, (StatusCode, String)> {
    let failed = |e: &dyn std::fmt::Display| (StatusCode::BAD_GATEWAY, e.to_string());
    let answer = agent
        .client
        .post(format!("http://{}/v1/search", agent.tool))
        .header("content-type", "application/json")
        .body(json!({"query": "coffee maker"}).to_string())
        .send()
        .await
        .map_err(|e| failed(&e))?
        .json()
        .await
        .map_err(|e| failed(&e))?;
    Ok(Json(answer))
}

/// Reports what the layer read, and the body it passed on.
async fn tool(metadata: Option<Extension<RequestMetadata>>, body: Bytes) -> Json<Value> {
    let metadata = metadata.map(|Extension(m)| m);
    Json(json!({
        "metadata": metadata,
        "body": String::from_utf8_lossy(&body),
    }))
}
