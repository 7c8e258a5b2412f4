//! The server layer through `oneshot`: a 1 KB and a 1 MB chat request with the layer, without it
//! (the bare service, which collects the body itself), and behind a naive layer that buffers, parses
//! to `serde_json::Value`, removes the member and re-serializes. Prints same-run ratios at the end.
//!
//! Bodies arrive in 16 KiB frames, as a server hands them over. No tracing subscriber is installed:
//! this measures the layer's own work, not an exporter's.
//!
//! A third comparison reads a 32 KB request carrying every gateway's dialect (LiteLLM `metadata`,
//! OpenRouter `session_id`, `user`, Helicone and LiteLLM headers) with all sources on, against the
//! same request with only the Requesty source on.

mod common;

use axum::body::{to_bytes, Body, Bytes};
use criterion::{criterion_group, Criterion};
use http::{Request, Response};
use requesty_metadata::dialects::Sources;
use requesty_metadata::RequestyMetadataLayer;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::{Layer, Service, ServiceExt};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The application: reads the whole body, answers with its length.
#[derive(Clone)]
struct Bare;

impl Service<Request<Body>> for Bare {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        Box::pin(async move {
            let body = to_bytes(req.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            Ok(Response::new(Body::from(body.len().to_string())))
        })
    }
}

/// What a gateway without this crate does: buffer, parse, remove, re-serialize.
#[derive(Clone)]
struct Naive<S>(S);

impl<S> Service<Request<Body>> for Naive<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let clone = self.0.clone();
        let mut inner = std::mem::replace(&mut self.0, clone);
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
            let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let meta = value.as_object_mut().and_then(|o| o.remove("requesty"));
            common::keep(meta);
            let body = serde_json::to_vec(&value).unwrap_or_default();
            inner
                .call(Request::from_parts(parts, Body::from(body)))
                .await
        })
    }
}

fn request(body: &Bytes) -> Request<Body> {
    request_with(body, &[])
}

fn request_with(body: &Bytes, headers: &[(&str, &str)]) -> Request<Body> {
    // Zero-copy 16 KiB slices of the shared body, as frames.
    let frames: Vec<Result<Bytes, Infallible>> = (0..body.len())
        .step_by(16 * 1024)
        .map(|i| Ok(body.slice(i..body.len().min(i + 16 * 1024))))
        .collect();
    let mut request = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("content-length", body.len());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .body(Body::from_stream(futures_util::stream::iter(frames)))
        .unwrap_or_default()
}

/// A 32 KB conversation in every dialect at once.
fn dialect_request() -> (Bytes, [(&'static str, &'static str); 4]) {
    let chat = common::chat_request(32 * 1024, true);
    let mut body = br#"{"user":"end-user","session_id":"or-session","metadata":{"tags":["lite"],"trace_user_id":"u"},"#.to_vec();
    body.extend_from_slice(&chat[1..]);
    let headers = [
        ("helicone-user-id", "h-user"),
        ("helicone-property-team", "infra"),
        ("x-litellm-tags", "a,b"),
        ("x-portkey-metadata", r#"{"_user":"p","env":"prod"}"#),
    ];
    (Bytes::from(body), headers)
}

async fn run_with<S, B>(service: S, body: &Bytes, headers: &[(&str, &str)])
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body,
{
    let response = service.oneshot(request_with(body, headers)).await;
    common::keep(response.map(|r| r.status()).ok());
}

async fn run<S, B>(service: S, body: &Bytes)
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body,
{
    let response = service.oneshot(request(body)).await;
    common::keep(response.map(|r| r.status()).ok());
}

type Cases = [(&'static str, Bytes); 2];

fn cases() -> Cases {
    [
        ("1KB", Bytes::from(common::chat_request(1024, true))),
        ("1MB", Bytes::from(common::image_request(1 << 20, true))),
    ]
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let layer = RequestyMetadataLayer::new();
    for (name, body) in cases() {
        let mut group = c.benchmark_group(format!("layer/{name}"));
        group.bench_function("bare", |b| b.iter(|| rt.block_on(run(Bare, &body))));
        group.bench_function("layer", |b| {
            b.iter(|| rt.block_on(run(layer.layer(Bare), &body)))
        });
        group.bench_function("naive", |b| b.iter(|| rt.block_on(run(Naive(Bare), &body))));
        group.finish();
    }
    let (body, headers) = dialect_request();
    let all = RequestyMetadataLayer::new().sources(Sources::all());
    let mut group = c.benchmark_group("layer/32KB-dialects");
    group.bench_function("requesty-only", |b| {
        b.iter(|| rt.block_on(run_with(layer.layer(Bare), &body, &headers)))
    });
    group.bench_function("all-sources", |b| {
        b.iter(|| rt.block_on(run_with(all.layer(Bare), &body, &headers)))
    });
    group.finish();
}

/// The ratios the targets are stated in, measured back to back in this run.
fn ratios() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let layer = RequestyMetadataLayer::new();
    println!("\nlayer ratios (median of same-run samples):");
    for (name, body) in cases() {
        let runs = if body.len() > 100_000 { 200 } else { 5000 };
        let [bare, with, naive] = common::medians_ns(
            runs,
            [
                &mut || rt.block_on(run(Bare, &body)),
                &mut || rt.block_on(run(layer.layer(Bare), &body)),
                &mut || rt.block_on(run(Naive(Bare), &body)),
            ],
        );
        println!(
            "  {name}: bare {bare:.0} ns, layer {with:.0} ns, naive {naive:.0} ns | layer/bare = {:.2}x, naive/layer = {:.1}x",
            with / bare,
            naive / with
        );
    }
    let (body, headers) = dialect_request();
    let all = RequestyMetadataLayer::new().sources(Sources::all());
    let [only, every] = common::medians_ns(
        3000,
        [
            &mut || rt.block_on(run_with(layer.layer(Bare), &body, &headers)),
            &mut || rt.block_on(run_with(all.layer(Bare), &body, &headers)),
        ],
    );
    println!(
        "  32KB, every dialect: requesty-only {only:.0} ns, all sources {every:.0} ns | all/requesty-only = {:.2}x",
        every / only
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    ratios();
}
