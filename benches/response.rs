//! A 1 MB server-sent-event response in 1 KB frames, read to its end through the layer's response body
//! (span kept open, usage read on the side for a completion hook) and bare. Prints the same-run ratio and the allocations per
//! frame once the stream is under way.
//!
//! The in-memory body costs nothing per frame, so that ratio is the wrapper's cost against zero. For
//! scale it also streams the same response over loopback, from an axum server to a hyper client in
//! this process, with and without the layer: what a client of a gateway sees.

mod common;

use axum::body::Bytes;
use criterion::{criterion_group, BatchSize, Criterion};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use requesty_metadata::RequestyMetadataLayer;
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tower::{Layer, ServiceExt};

/// Counts allocations, to show that a warmed-up stream allocates nothing per frame.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A body that hands out prepared frames, always ready: the cost of a stream without I/O.
struct Frames(VecDeque<Bytes>);

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// An OpenAI-style stream of about 1 MB: content deltas, a finish chunk, usage, `[DONE]`, in 1 KiB
/// frames.
fn stream_frames() -> Vec<Bytes> {
    let mut body = String::new();
    let mut i = 0;
    while body.len() < 1 << 20 {
        body.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"token {i} \"}},\"finish_reason\":null}}],\"usage\":null}}\n\n"
        ));
        i += 1;
    }
    body.push_str("data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
    body.push_str("data: {\"id\":\"chatcmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":9000}}\n\ndata: [DONE]\n\n");
    let body = Bytes::from(body);
    (0..body.len())
        .step_by(1024)
        .map(|at| body.slice(at..body.len().min(at + 1024)))
        .collect()
}

fn service(
    frames: Vec<Bytes>,
) -> impl tower::Service<Request<axum::body::Body>, Response = Response<Frames>, Error = Infallible>
       + Clone {
    tower::service_fn(move |_: Request<axum::body::Body>| {
        let frames = frames.clone();
        async move {
            let mut response = Response::new(Frames(frames.into()));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/event-stream"),
            );
            Ok::<_, Infallible>(response)
        }
    })
}

/// The layer with a completion hook that takes the usage: without a consumer (a recording span or a
/// hook) the layer does not read usage at all, and there would be nothing to measure.
fn reading_layer() -> RequestyMetadataLayer {
    RequestyMetadataLayer::new().on_complete(|done| {
        let tokens = done.response.and_then(|r| r.usage.output_tokens);
        assert_eq!(tokens, Some(9000), "the usage was read");
    })
}

fn request() -> Request<axum::body::Body> {
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            r#"{"model":"gpt-4o","stream":true,"requesty":{"trace_id":"t"}}"#,
        ))
        .unwrap_or_default()
}

/// Reads every frame of `body`; returns how many allocations happened from the 64th frame to the one
/// before the last (the last frame's poll also reads the end of the stream, once per response).
fn drain<B: Body + Unpin>(mut body: B) -> usize {
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut frames = 0;
    let mut warm = 0;
    let (mut before_last, mut last) = (0, 0);
    while let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut cx) {
        common::keep(frame.ok());
        frames += 1;
        if frames == 64 {
            warm = ALLOCATIONS.load(Ordering::Relaxed);
        }
        before_last = last;
        last = ALLOCATIONS.load(Ordering::Relaxed);
    }
    drop(body);
    before_last.saturating_sub(warm)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let frames = stream_frames();
    let bare = service(frames.clone());
    let layered = reading_layer().layer(service(frames));
    let mut group = c.benchmark_group("response/1MB-sse-1KB-frames");
    group.bench_function("bare", |b| {
        b.iter_batched(
            || {
                rt.block_on(bare.clone().oneshot(request()))
                    .map(Response::into_body)
            },
            |body| body.map(drain),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("layer", |b| {
        b.iter_batched(
            || {
                rt.block_on(layered.clone().oneshot(request()))
                    .map(Response::into_body)
            },
            |body| body.map(drain),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Streams the response over loopback `runs` times each with and without the layer, alternating;
/// the median nanoseconds from sending the request to the last frame, bare then layered.
fn over_loopback(runs: usize) -> (f64, f64) {
    use axum::routing::post;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let frames = stream_frames();
        let handler = move || {
            let frames = frames.clone();
            async move {
                let mut response = Response::new(axum::body::Body::new(Frames(frames.into())));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/event-stream"),
                );
                response
            }
        };
        let app = axum::Router::new()
            .route("/bare/v1/chat/completions", post(handler.clone()))
            .merge(
                axum::Router::new()
                    .route("/v1/chat/completions", post(handler))
                    .layer(reading_layer()),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let once = |path: &'static str| {
            let client = client.clone();
            async move {
                let request = Request::post(format!("http://{addr}{path}"))
                    .header("content-type", "application/json")
                    .body(Empty::new())
                    .unwrap_or_else(|e| panic!("{e}"));
                let start = std::time::Instant::now();
                let response = client
                    .request(request)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                let mut body = response.into_body();
                let mut len = 0;
                while let Some(frame) = body.frame().await {
                    let frame = frame.unwrap_or_else(|e| panic!("{e}"));
                    len += frame.data_ref().map_or(0, Bytes::len);
                }
                assert!(len > 1 << 20, "the whole stream arrived");
                start.elapsed().as_nanos() as f64
            }
        };
        let (mut bare, mut layer) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            bare.push(once("/bare/v1/chat/completions").await);
            layer.push(once("/v1/chat/completions").await);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        (median(&mut bare), median(&mut layer))
    })
}

/// The ratio the target is stated in, and allocations per frame, measured back to back.
fn ratios() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let frames = stream_frames();
    let count = frames.len();
    let bare = service(frames.clone());
    let layered = reading_layer().layer(service(frames));
    let mut bare_ns = Vec::new();
    let mut layer_ns = Vec::new();
    let mut allocations = 0;
    for _ in 0..200 {
        let body = rt
            .block_on(bare.clone().oneshot(request()))
            .map(Response::into_body);
        let start = std::time::Instant::now();
        common::keep(body.map(drain).ok());
        bare_ns.push(start.elapsed().as_nanos() as f64);
        let body = rt
            .block_on(layered.clone().oneshot(request()))
            .map(Response::into_body);
        let start = std::time::Instant::now();
        allocations = body.map(drain).unwrap_or_default();
        layer_ns.push(start.elapsed().as_nanos() as f64);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (bare, layer) = (median(&mut bare_ns), median(&mut layer_ns));
    println!("\nresponse ratios ({count} frames of 1 KiB, median of same-run samples):");
    println!(
        "  1MB SSE: bare {bare:.0} ns, layer {layer:.0} ns | layer/bare = {:.2}x; allocations from frame 64 to the one before the last: {allocations}",
        layer / bare
    );
    let (bare, layer) = over_loopback(100);
    println!(
        "  for scale, the same stream over loopback (axum server, hyper client): bare {:.0} us, layer {:.0} us | layer/bare = {:.2}x",
        bare / 1000.0,
        layer / 1000.0,
        layer / bare
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    ratios();
}
