//! A reqwest client that tags its LLM calls with metadata through `MetadataMiddleware`.
//!
//! ```text
//! cargo run --example gateway                                   # in one terminal
//! cargo run --example reqwest_client --features reqwest -- [--base-url URL]
//! ```
//!
//! It sends two chat completions to `URL/v1/chat/completions` (default `http://127.0.0.1:8080`, the
//! gateway example's address): one answered whole, one streamed and printed as it arrives. The
//! client's defaults (a tag, a user id, an `extra` field) go on every request; each request adds its
//! own trace id and tag as an extension. The middleware merges them into the JSON body's `requesty`
//! member, so the gateway's access log shows them, and its mock's `x-mock-saw-requesty: false` header
//! shows that the gateway stripped the member before the provider saw it.

use futures_util::StreamExt;
use requesty_metadata::reqwest::MetadataMiddleware;
use requesty_metadata::RequestMetadata;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use serde_json::json;
use std::io::Write;
use std::process::ExitCode;

const USAGE: &str = "\
usage: reqwest_client [--base-url URL]

  --base-url URL  where the gateway listens (default http://127.0.0.1:8080)
  -h, --help      print this help
";

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    let base = match parse_args(std::env::args().skip(1)) {
        Ok(Some(base)) => base,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("reqwest_client: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&base).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("reqwest_client: {error}");
            eprintln!("is the gateway running? (cargo run --example gateway)");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<String>, String> {
    let mut base = "http://127.0.0.1:8080".to_owned();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--base-url" => {
                base = inline
                    .or_else(|| args.next())
                    .ok_or("--base-url needs a value")?;
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Some(base.trim_end_matches('/').to_owned()))
}

async fn run(base: &str) -> Result<(), Error> {
    // reqwest is built without a default TLS provider; plain HTTP still needs one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client: ClientWithMiddleware = ClientBuilder::new(reqwest::Client::builder().build()?)
        .with(MetadataMiddleware::new(
            RequestMetadata::new()
                .tag("reqwest-example")
                .user_id("user_1234")
                .extra("team", "platform"),
        ))
        .build();
    let url = format!("{base}/v1/chat/completions");

    println!("POST {url}");
    let response = client
        .post(&url)
        .header("content-type", "application/json")
        .body(
            json!({
                "model": "openai/gpt-4o",
                "messages": [{"role": "user", "content": "Describe a coffee maker"}],
            })
            .to_string(),
        )
        // Merged over the defaults, for this request only.
        .with_extension(
            RequestMetadata::new()
                .trace_id("session_abc123")
                .tag("workflow-a"),
        )
        .send()
        .await?;
    print_head(&response);
    println!("{}\n", response.text().await?);

    println!("POST {url} (streaming)");
    let response = client
        .post(&url)
        .header("content-type", "application/json")
        .body(
            json!({
                "model": "openai/gpt-4o",
                "stream": true,
                "messages": [{"role": "user", "content": "Say hello"}],
            })
            .to_string(),
        )
        .with_extension(
            RequestMetadata::new()
                .trace_id("session_abc123")
                .tag("workflow-b"),
        )
        .send()
        .await?;
    print_head(&response);
    let mut stdout = std::io::stdout();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        stdout.write_all(&chunk?)?;
        stdout.flush()?;
    }
    Ok(())
}

fn print_head(response: &reqwest::Response) {
    println!("status: {}", response.status());
    for name in ["x-mock-saw-requesty", "x-mock-saw-requesty-headers"] {
        if let Some(value) = response.headers().get(name) {
            println!("{name}: {}", value.to_str().unwrap_or("?"));
        }
    }
}
