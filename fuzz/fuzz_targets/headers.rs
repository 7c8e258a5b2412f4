#![no_main]
//! The server layer end to end, in process: arbitrary headers and a small body go through
//! `RequestyMetadataLayer` around an echo service, and what the echo saw is checked.
//!
//! Input layout (so seeds can be written by hand):
//!
//! | bytes | meaning |
//! |---|---|
//! | 0 | flags: bit 0 `content-type: application/json` first; bit 1 body sent in frames of unknown total size (chunked), else one frame with `Content-Length`; bit 2 a small body limit; bit 3 the body fails after its last frame; bit 4 the echo answers `text/event-stream` (else `application/json`); bits 5-6 the path; bit 7 every dialect on (`Sources::all()`) |
//! | 1 | the small body limit (× 4 bytes) and the frame size (`% 61 + 1`) |
//! | 2.. | header lines `name: value`, `\n`-separated, up to an empty line; the rest is the body |
//!
//! Checked for every input: no panic; the status is 200, 400 or 413; a rejected request never
//! reaches the echo and gets an OpenAI-style error; an accepted one reaches it once, without any
//! `x-requesty-*` header (nor, with every dialect on, any other gateway's metadata header), with its body byte for byte when it has no `requesty` member (or is not
//! JSON) and with exactly the member cut out when it has one; the echo's answer comes back
//! unchanged; and once the response body is gone no span is left open.

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use requesty_metadata::dialects::Sources;
use requesty_metadata::{codec, Limits, RequestMetadata, RequestyMetadataLayer};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::task::{Context, Poll, Waker};
use tower::{Layer, ServiceExt};

const PATHS: [&str; 4] = [
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/messages",
    "/upload",
];

/// A request body: frames handed out one per poll, then optionally an error.
struct FuzzBody {
    frames: VecDeque<Bytes>,
    exact: Option<u64>,
    fail_at_end: bool,
}

#[derive(Debug)]
struct BodyFailed;

impl std::fmt::Display for BodyFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the body failed")
    }
}

impl std::error::Error for BodyFailed {}

impl From<Bytes> for FuzzBody {
    fn from(bytes: Bytes) -> Self {
        Self {
            exact: Some(bytes.len() as u64),
            frames: VecDeque::from([bytes]),
            fail_at_end: false,
        }
    }
}

impl Body for FuzzBody {
    type Data = Bytes;
    type Error = BodyFailed;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyFailed>>> {
        if let Some(frame) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
        if std::mem::take(&mut self.fail_at_end) {
            return Poll::Ready(Some(Err(BodyFailed)));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && !self.fail_at_end
    }

    fn size_hint(&self) -> SizeHint {
        self.exact
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

/// What the echo service received.
#[derive(Default)]
struct Seen {
    calls: usize,
    headers: HeaderMap,
    body: Vec<u8>,
    metadata: Option<RequestMetadata>,
}

/// Polls a future that never waits on anything outside itself.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..10_000 {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
    panic!("a future that waits on nothing stayed pending");
}

/// A subscriber that enables every span (so the layer records all its fields) and counts the open
/// ones, so a span left open after the response is gone shows up.
struct OpenSpans {
    next: AtomicU64,
    refs: Mutex<BTreeMap<u64, usize>>,
}

static SPANS: OpenSpans = OpenSpans {
    next: AtomicU64::new(1),
    refs: Mutex::new(BTreeMap::new()),
};

struct Subscriber;

struct Visitor;

impl tracing::field::Visit for Visitor {
    fn record_debug(&mut self, _: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        // Formats every value, as a real subscriber would.
        std::hint::black_box(format!("{value:?}"));
    }
}

impl tracing::Subscriber for Subscriber {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attributes: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        attributes.record(&mut Visitor);
        let id = SPANS.next.fetch_add(1, Ordering::Relaxed);
        SPANS.refs.lock().unwrap().insert(id, 1);
        tracing::span::Id::from_u64(id)
    }

    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        values.record(&mut Visitor);
    }

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        event.record(&mut Visitor);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}

    fn clone_span(&self, id: &tracing::span::Id) -> tracing::span::Id {
        *SPANS.refs.lock().unwrap().entry(id.into_u64()).or_default() += 1;
        id.clone()
    }

    fn try_close(&self, id: tracing::span::Id) -> bool {
        let mut refs = SPANS.refs.lock().unwrap();
        let Some(count) = refs.get_mut(&id.into_u64()) else {
            panic!("span {id:?} closed more often than it was opened");
        };
        *count -= 1;
        if *count == 0 {
            refs.remove(&id.into_u64());
            return true;
        }
        false
    }
}

struct Input {
    json: bool,
    chunked: bool,
    limit: Option<usize>,
    fail: bool,
    sse_answer: bool,
    path: &'static str,
    dialects: bool,
    frame: usize,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

fn parse(data: &[u8]) -> Option<Input> {
    let (&flags, rest) = data.split_first()?;
    let (&size, mut rest) = rest.split_first()?;
    let mut headers = Vec::new();
    loop {
        let end = memchr(b'\n', rest).unwrap_or(rest.len());
        let line = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or_default();
        if line.is_empty() {
            break;
        }
        let Some(colon) = memchr(b':', line) else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii_start());
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.push((name, value));
        }
    }
    Some(Input {
        json: flags & 1 != 0,
        chunked: flags & 2 != 0,
        limit: (flags & 4 != 0).then_some(usize::from(size) * 4),
        fail: flags & 8 != 0,
        sse_answer: flags & 16 != 0,
        path: PATHS[usize::from(flags >> 5) & 3],
        dialects: flags & 128 != 0,
        frame: usize::from(size) % 61 + 1,
        headers,
        body: Bytes::copy_from_slice(rest),
    })
}

/// The other gateways' metadata headers, which the layer removes when their source is on.
fn is_dialect_header(name: &str) -> bool {
    name.starts_with("helicone-property-")
        || matches!(
            name,
            "helicone-user-id"
                | "helicone-session-id"
                | "helicone-session-path"
                | "helicone-session-name"
                | "x-litellm-tags"
                | "x-litellm-trace-id"
                | "x-litellm-end-user-id"
                | "x-portkey-metadata"
                | "x-session-id"
        )
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

fn run(input: Input) {
    let seen = Rc::new(RefCell::new(Seen::default()));
    let answer_type = if input.sse_answer {
        "text/event-stream"
    } else {
        "application/json"
    };
    let echo = tower::service_fn({
        let seen = seen.clone();
        move |request: Request<FuzzBody>| {
            let seen = seen.clone();
            async move {
                let (parts, mut body) = request.into_parts();
                let mut bytes = Vec::new();
                while let Some(Ok(frame)) = body.frame().await {
                    if let Ok(data) = frame.into_data() {
                        bytes.extend_from_slice(&data);
                    }
                }
                let mut seen = seen.borrow_mut();
                seen.calls += 1;
                seen.headers = parts.headers;
                seen.body = bytes.clone();
                seen.metadata = parts.extensions.get::<RequestMetadata>().cloned();
                let mut response = Response::new(Full::new(Bytes::from(bytes)));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(answer_type));
                Ok::<_, Infallible>(response)
            }
        }
    });
    let mut layer = RequestyMetadataLayer::new();
    if input.dialects {
        layer = layer.sources(Sources::all());
    }
    if let Some(limit) = input.limit {
        layer = layer.max_body_bytes(limit);
    }
    let limit = input.limit.unwrap_or(32 * 1024 * 1024);
    let service = layer.layer(echo);

    let mut request = Request::post(input.path);
    let headers = request.headers_mut().unwrap();
    if input.json {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    let fuzzed = |name: &HeaderName| input.headers.iter().any(|(n, _)| n == name);
    if !input.chunked && !fuzzed(&CONTENT_LENGTH) {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(input.body.len()));
    }
    for (name, value) in &input.headers {
        headers.append(name.clone(), value.clone());
    }
    let frames: VecDeque<Bytes> = if input.chunked {
        (0..input.body.len())
            .step_by(input.frame)
            .map(|at| input.body.slice(at..input.body.len().min(at + input.frame)))
            .collect()
    } else {
        VecDeque::from([input.body.clone()])
    };
    let body = FuzzBody {
        frames,
        exact: (!input.chunked).then_some(input.body.len() as u64),
        fail_at_end: input.fail,
    };
    let request = request.body(body).unwrap();

    let response = match block_on(service.oneshot(request)) {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let status = response.status();
    let answer = block_on(response.into_body().collect())
        .unwrap_or_else(|never| match never {})
        .to_bytes();
    let seen = seen.borrow();

    // What the layer must have done, where the input says for sure.
    let known_json = input.json && !fuzzed(&CONTENT_ENCODING);
    let known_not_json = !input.json && !fuzzed(&CONTENT_TYPE);
    let scan = codec::scan(&input.body, &Limits::default());

    assert!(
        matches!(status.as_u16(), 200 | 400 | 413),
        "unexpected status {status}"
    );
    if status != StatusCode::OK {
        assert_eq!(seen.calls, 0, "a rejected request reached the service");
        let error: serde_json::Value =
            serde_json::from_slice(&answer).expect("a rejection is JSON");
        assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
        assert!(error["error"]["code"].is_string(), "{error}");
    } else {
        assert_eq!(
            seen.calls, 1,
            "an accepted request reached the service once"
        );
        assert_eq!(answer, seen.body, "the answer changed on its way out");
        if let Some(name) = seen
            .headers
            .keys()
            .find(|n| n.as_str().starts_with("x-requesty-"))
        {
            panic!("{name} reached the service");
        }
        if input.dialects {
            if let Some(name) = seen.headers.keys().find(|n| is_dialect_header(n.as_str())) {
                panic!("{name} reached the service with every dialect on");
            }
        }
        if let Some(metadata) = &seen.metadata {
            assert!(!metadata.is_empty(), "empty metadata in the extensions");
        }
        let member = scan.as_ref().ok().and_then(codec::Scan::member_range);
        if known_not_json || (scan.is_ok() && member.is_none()) {
            assert_eq!(seen.body, input.body, "the body changed");
        } else if let Ok(scan) = &scan {
            let stripped = codec::strip(input.body.clone(), scan);
            if known_json {
                assert_eq!(seen.body, stripped, "the member was not cut out exactly");
            } else {
                assert!(
                    seen.body == input.body || seen.body == stripped,
                    "the body is neither as sent nor stripped"
                );
            }
        }
        if known_json {
            assert!(scan.is_ok(), "a body with invalid metadata was accepted");
            assert!(!input.fail, "a body that failed to read was accepted");
            assert!(
                input.body.len() <= limit,
                "a body over the limit was accepted"
            );
        }
    }
    drop(seen);
    let open = SPANS.refs.lock().unwrap().len();
    assert_eq!(open, 0, "spans left open after the response body is gone");
}

fuzz_target!(|data: &[u8]| {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        tracing::subscriber::set_global_default(Subscriber).expect("the only subscriber");
    });
    if let Some(input) = parse(data) {
        run(input);
    }
});
