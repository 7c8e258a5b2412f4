//! A stand-in provider with the response shapes of OpenAI and Anthropic, so the gateway runs offline.

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
pub const REPLY: [&str; 6] = ["Hello", " from", " the", " mock", " provider", "."];
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
        .map(
            |id| json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": "mock"}),
        )
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
