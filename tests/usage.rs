//! The usage reader against the shapes providers send: Azure's alphabetical JSON, refusals,
//! Anthropic's cache counts, a byte order mark, and event-stream framing split anywhere.

mod support;

use bytes::Bytes;
use requesty_metadata::usage::{ResponseInfo, UsageReader};

/// What a reader for `content_type` made of `frames`, and whether it saw generated text.
fn read(content_type: &str, frames: &[&[u8]]) -> (ResponseInfo, bool) {
    let mut reader = UsageReader::new(content_type).unwrap();
    for frame in frames {
        reader.feed(&Bytes::copy_from_slice(frame));
    }
    let token = reader.saw_token();
    (reader.finish(), token)
}

/// Azure OpenAI writes its JSON keys in alphabetical order: `choices` (with `finish_reason` before
/// `message`) first, `id` and `model` after the generated text.
#[test]
fn a_large_azure_json_answer_keeps_its_id_and_finish_reason() {
    // The prompt's filter results follow `id` and `model`; with a custom blocklist they name it by
    // an `id` of its own, which is not the response's.
    let blocklist = r#"{"custom_blocklists":{"details":[{"filtered":false,"id":"pizza"}],"filtered":false},"hate":{"filtered":false,"severity":"safe"}}"#;
    for prompt_filter in ["{}", blocklist] {
        let azure = |content: &str| {
            format!(
                r#"{{"choices":[{{"content_filter_results":{{"hate":{{"filtered":false,"severity":"safe"}}}},"finish_reason":"length","index":0,"logprobs":null,"message":{{"content":"{content}","refusal":null,"role":"assistant"}}}}],"created":1727000000,"id":"chatcmpl-AZ1","model":"gpt-4o-2024-08-06","object":"chat.completion","prompt_filter_results":[{{"prompt_index":0,"content_filter_results":{prompt_filter}}}],"system_fingerprint":"fp_1","usage":{{"completion_tokens":60000,"prompt_tokens":12,"total_tokens":60012}}}}"#
            )
        };
        // Small: read whole, everything is there.
        let small = read("application/json", &[azure("Hi").as_bytes()]).0;
        assert_eq!(small.id.as_deref(), Some("chatcmpl-AZ1"));
        assert_eq!(small.finish_reasons, ["length"]);
        // Large (over 128 KiB): read at its ends.
        let large = azure(&"x".repeat(200 * 1024));
        let info = read("application/json", &[large.as_bytes()]).0;
        assert_eq!(info.usage.output_tokens, Some(60000));
        assert_eq!(info.model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(
            (info.id.as_deref(), info.finish_reasons),
            (Some("chatcmpl-AZ1"), vec!["length".to_owned()]),
            "prompt filter {prompt_filter}"
        );
    }
}

/// A streamed refusal (structured outputs) is generated text the caller sees: OpenAI's chat
/// completions send it as `delta.refusal`, with `content` null; the Responses API as
/// `response.refusal.delta`.
#[test]
fn a_streamed_refusal_is_the_first_token() {
    let body = concat!(
        "data: {\"id\":\"chatcmpl-R1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"refusal\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-R1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"refusal\":\"I'm sorry, I can't help with that.\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-R1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n",
        "data: [DONE]\n\n",
    );
    let (info, token) = read("text/event-stream", &[body.as_bytes()]);
    assert_eq!(info.finish_reasons, ["stop"]);
    assert!(token, "the refusal text is generated text");
    // The Responses API's equivalent.
    let body = concat!(
        "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-4o\",\"usage\":null}}\n\n",
        "event: response.refusal.delta\ndata: {\"type\":\"response.refusal.delta\",\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"I'm sorry\"}\n\n",
    );
    assert!(
        read("text/event-stream", &[body.as_bytes()]).1,
        "responses refusal"
    );
}

/// OTel GenAI: `gen_ai.usage.input_tokens` "SHOULD include all types of input tokens, including
/// cached tokens", and `cache_read.input_tokens` / `cache_creation.input_tokens` "SHOULD be included
/// in gen_ai.usage.input_tokens". Anthropic's `usage.input_tokens` excludes both (OpenAI's
/// `prompt_tokens` includes its `cached_tokens`), so the span must add them.
#[tokio::test]
async fn anthropic_input_tokens_on_the_span_include_cached_tokens() {
    use axum::routing::post;
    use support::{client, serve, Recorder};

    const JSON: &str = r#"{"id":"msg_01C","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"cache_creation_input_tokens":200,"cache_read_input_tokens":5000,"output_tokens":7}}"#;
    const SSE: &str = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01C\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":3,\"cache_creation_input_tokens\":200,\"cache_read_input_tokens\":5000,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":7}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    let (recorder, _guard) = Recorder::install();
    let app = axum::Router::new()
        .route(
            "/v1/messages",
            post(|body: Bytes| async move {
                let stream = body.windows(6).any(|w| w == b"stream");
                axum::response::Response::builder()
                    .header(
                        "content-type",
                        if stream {
                            "text/event-stream"
                        } else {
                            "application/json"
                        },
                    )
                    .body(axum::body::Body::from(if stream { SSE } else { JSON }))
                    .unwrap()
            }),
        )
        .layer(requesty_metadata::RequestyMetadataLayer::new());
    let addr = serve(app).await;
    for body in [
        r#"{"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": []}"#,
        r#"{"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": true, "messages": []}"#,
    ] {
        let response = client()
            .post(format!("http://{addr}/v1/messages"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        response.bytes().await.unwrap();
    }
    let spans = recorder.wait_closed(2).await;
    for span in &spans {
        assert_eq!(
            span.field("gen_ai.usage.cache_read.input_tokens"),
            Some("5000")
        );
        assert_eq!(
            span.field("gen_ai.usage.cache_creation.input_tokens"),
            Some("200")
        );
        // 3 + 200 + 5000.
        assert_eq!(span.field("gen_ai.usage.input_tokens"), Some("5203"));
    }
}

/// RFC 8259 lets a parser ignore a byte order mark before JSON text.
#[test]
fn a_json_answer_opening_with_a_byte_order_mark_is_read() {
    let body = "\u{FEFF}{\"id\":\"c1\",\"model\":\"m\",\"choices\":[{\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3}}";
    let info = read("application/json", &[body.as_bytes()]).0;
    assert_eq!(info.usage.input_tokens, Some(12));
}

/// A byte order mark, comments, `data:` without a space, a line that is not a field, `id:` and
/// `event:` lines, characters of several bytes, and each kind of line end: the same reading
/// however the stream is cut into frames.
#[test]
fn framing_edge_cases_read_the_same_split_anywhere() {
    let base = "\u{FEFF}: hi\n\nevent: message_start\ndata:{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\n data: x\ndata:\"model\":\"claude-x\",\"usage\":{\"input_tokens\":4,\"cache_read_input_tokens\":7}}}\n\nid: 3\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"h\u{e9}\u{1F600}\"}}\n\n:comment\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":12}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    for ending in ["\n", "\r\n", "\r"] {
        let body = base.replace('\n', ending);
        let whole = read("text/event-stream", &[body.as_bytes()]);
        // 4, and the 7 read from the cache.
        assert_eq!(whole.0.usage.input_tokens, Some(11), "{ending:?}");
        assert_eq!(whole.0.usage.cache_read_input_tokens, Some(7));
        assert_eq!(whole.0.usage.output_tokens, Some(12));
        assert!(whole.1 && whole.0.done);
        let b = body.as_bytes();
        for i in 0..=b.len() {
            for j in i..=b.len().min(i + 40) {
                let got = read("text/event-stream", &[&b[..i], &b[i..j], &b[j..]]);
                assert_eq!(got, whole, "{ending:?} {i} {j}");
            }
        }
    }
}

/// OTel GenAI: `gen_ai.response.finish_reasons` holds a reason "corresponding to each generation
/// received": two choices that both stopped give two, and a choice that repeats its reason (in a
/// stream's usage chunk, say) still gives one.
#[test]
fn finish_reasons_are_one_per_choice() {
    let body = br#"{"id":"chatcmpl-N2","object":"chat.completion","created":1,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"A"},"logprobs":null,"finish_reason":"stop"},{"index":1,"message":{"role":"assistant","content":"B"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
    let info = read("application/json", &[body]).0;
    assert_eq!(info.finish_reasons, ["stop", "stop"]);
    let chunk = |i: u32, delta: &str, reason: &str| {
        format!("data: {{\"id\":\"chatcmpl-N2\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{{\"index\":{i},\"delta\":{delta},\"finish_reason\":{reason}}}]}}\n\n")
    };
    let stream = [
        chunk(0, r#"{"role":"assistant","content":"A"}"#, "null"),
        chunk(1, r#"{"role":"assistant","content":"B"}"#, "null"),
        chunk(1, "{}", r#""length""#),
        chunk(0, "{}", r#""stop""#),
        // The usage chunk repeats the first choice's reason.
        "data: {\"id\":\"chatcmpl-N2\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n".to_owned(),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let streamed = read("text/event-stream", &[stream.as_bytes()]).0;
    assert_eq!(streamed.finish_reasons, ["length", "stop"]);
}

/// A Responses API stream whose request carried many tools (or long instructions): the
/// `response.created` event echoes them and is over 64 KiB, but its id and model sit in its first
/// bytes, as the reader already reads its type there.
/// The Responses API's `response.created` repeats the request's tools, and may be too large to
/// read: its start still names the response.
#[test]
fn a_responses_stream_with_a_large_created_event_keeps_its_id_and_model() {
    let tools: Vec<String> = (0..400)
        .map(|i| format!(r#"{{"type":"function","name":"tool_{i}","description":"{}","parameters":{{"type":"object","properties":{{}}}},"strict":true}}"#, "d".repeat(150)))
        .collect();
    let tools = tools.join(",");
    let response = |status: &str, usage: &str| {
        format!(
            r#"{{"id":"resp_67c9","object":"response","created_at":1,"status":"{status}","error":null,"incomplete_details":null,"instructions":null,"max_output_tokens":null,"model":"gpt-4.1-2025-04-14","output":[],"parallel_tool_calls":true,"tool_choice":"auto","tools":[{tools}],"top_p":1.0,"truncation":"disabled","usage":{usage},"user":null,"metadata":{{}}}}"#
        )
    };
    let body = format!(
        "event: response.created\ndata: {{\"type\":\"response.created\",\"sequence_number\":0,\"response\":{}}}\n\nevent: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi\"}}\n\nevent: response.completed\ndata: {{\"type\":\"response.completed\",\"sequence_number\":6,\"response\":{}}}\n\n",
        response("in_progress", "null"),
        response("completed", r#"{"input_tokens":37,"output_tokens":11,"total_tokens":48}"#),
    );
    assert!(body.len() > 2 * 64 * 1024);
    let frames: Vec<&[u8]> = body.as_bytes().chunks(4096).collect();
    let (info, token) = read("text/event-stream", &frames);
    assert!(token);
    assert_eq!(info.usage.input_tokens, Some(37));
    assert_eq!(
        (info.id.as_deref(), info.model.as_deref()),
        (Some("resp_67c9"), Some("gpt-4.1-2025-04-14"))
    );
}

/// A stream whose first text arrives in one chunk over 64 KiB (a provider or cache that "streams"
/// the whole answer at once): the text is there, so the first token is.
/// A whole answer in one chunk (a cached replay, say) is text all the same, however long.
#[test]
fn a_first_text_chunk_over_64_kib_is_still_the_first_token() {
    let text = "w ".repeat(40 * 1024);
    let body = format!(
        "data: {{\"id\":\"chatcmpl-F1\",\"object\":\"chat.completion.chunk\",\"model\":\"o1-2024-12-17\",\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\"}},\"finish_reason\":null}}]}}\n\ndata: {{\"id\":\"chatcmpl-F1\",\"object\":\"chat.completion.chunk\",\"model\":\"o1-2024-12-17\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":null}}]}}\n\ndata: {{\"id\":\"chatcmpl-F1\",\"object\":\"chat.completion.chunk\",\"model\":\"o1-2024-12-17\",\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}\n\ndata: {{\"id\":\"chatcmpl-F1\",\"choices\":[],\"usage\":{{\"prompt_tokens\":9,\"completion_tokens\":40960}}}}\n\ndata: [DONE]\n\n"
    );
    for split in [4096, body.len()] {
        let frames: Vec<&[u8]> = body.as_bytes().chunks(split).collect();
        let (info, token) = read("text/event-stream", &frames);
        assert_eq!(info.usage.output_tokens, Some(40960));
        assert!(info.done);
        assert!(
            token,
            "frames of {split}: the 80 KiB content delta is generated text"
        );
    }
    // The first token is seen with the first frame of the long event, not once it has all come.
    let mut reader = UsageReader::new("text/event-stream").unwrap();
    let frames: Vec<&[u8]> = body.as_bytes().chunks(1024).collect();
    let seen_at = frames.iter().position(|frame| {
        reader.feed(&Bytes::copy_from_slice(frame));
        reader.saw_token()
    });
    assert_eq!(
        seen_at,
        Some(0),
        "the first KiB holds the start of the text"
    );
}

/// A stream can fail after its `200` head: the body's error event names the error, whatever the
/// provider's shape.
#[test]
fn an_error_event_in_a_stream_is_read() {
    let cases: [(&str, &str); 7] = [
        (
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-x\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
            "overloaded_error",
        ),
        (
            "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\ndata: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n",
            "server_error",
        ),
        (
            "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"id\":\"resp_1\",\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"failed\"},\"usage\":null}}\n\n",
            "server_error",
        ),
        (
            "event: error\ndata: {\"type\":\"error\",\"code\":\"ERR_SOMETHING\",\"message\":\"Something went wrong\",\"param\":null,\"sequence_number\":1}\n\n",
            "ERR_SOMETHING",
        ),
        // OpenRouter: an error in a chunk, its code a number.
        (
            "data: {\"id\":\"gen-1\",\"object\":\"chat.completion.chunk\",\"error\":{\"code\":502,\"message\":\"Provider returned error\"},\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"error\"}]}\n\n",
            "error",
        ),
        // Hugging Face TGI: the error a string, its kind beside it.
        (
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\ndata: {\"error\":\"Request failed during generation: Server error: CUDA out of memory\",\"error_type\":\"generation\"}\n\n",
            "generation",
        ),
        // An error given only as a message.
        (
            "data: {\"error\":\"model 'llama9' not found\"}\n\n",
            "error",
        ),
    ];
    for (stream, error) in cases {
        let info = read("text/event-stream", &[stream.as_bytes()]).0;
        assert_eq!(info.error.as_deref(), Some(error), "{stream}");
    }
    // A stream that went well reports none; `"error": null` is no error, nor is `"error": ""`.
    let fine = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"error\":null}}\n\ndata: [DONE]\n\n";
    assert_eq!(read("text/event-stream", &[fine.as_bytes()]).0.error, None);
    let blank = "data: {\"id\":\"c1\",\"choices\":[],\"error\":\"\"}\n\ndata: [DONE]\n\n";
    assert_eq!(read("text/event-stream", &[blank.as_bytes()]).0.error, None);
    // A JSON answer too (TGI's, with its `4xx`).
    let json = r#"{"error":"Input validation error: `inputs` must have less than 4096 tokens","error_type":"validation"}"#;
    assert_eq!(
        read("application/json", &[json.as_bytes()])
            .0
            .error
            .as_deref(),
        Some("validation")
    );
}

/// The span and the completion hook count a stream that ended in an error event as failed: its
/// body came whole after a `200`, but the answer did not.
#[tokio::test]
async fn a_stream_that_ends_in_an_error_event_is_a_failed_answer() {
    use axum::routing::post;
    use std::sync::{Arc, Mutex};
    use support::{client, serve, Recorder};
    const STREAM: &str = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-x\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n",
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
    );
    let (recorder, _guard) = Recorder::install();
    let hook = Arc::new(Mutex::new(Vec::new()));
    let layer = requesty_metadata::RequestyMetadataLayer::new().on_complete({
        let hook = hook.clone();
        move |done| {
            let error = done.response.and_then(|r| r.error.clone());
            hook.lock()
                .unwrap()
                .push((done.completed, done.failed, error));
        }
    });
    let app = axum::Router::new()
        .route(
            "/v1/messages",
            post(|| async {
                axum::response::Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(axum::body::Body::from(STREAM))
                    .unwrap()
            }),
        )
        .layer(layer);
    let addr = serve(app).await;
    let response = client()
        .post(format!("http://{addr}/v1/messages"))
        .header("content-type", "application/json")
        .body(r#"{"model":"claude-x","stream":true,"messages":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
    let spans = recorder.wait_closed(1).await;
    assert_eq!(spans[0].field("requesty.response.completed"), Some("true"));
    assert_eq!(spans[0].field("error.type"), Some("overloaded_error"));
    assert_eq!(spans[0].field("otel.status_code"), Some("ERROR"));
    assert_eq!(
        *hook.lock().unwrap(),
        [(true, true, Some("overloaded_error".to_owned()))]
    );
}

/// Whether the first text was seen does not depend on how a long `data` line is cut into frames,
/// even before its event ends (a fuzzed input: one frame saw none until the end, three saw it in
/// the line's start).
#[test]
fn the_first_text_in_a_long_line_is_seen_however_it_is_cut() {
    let line = format!(
        "data: {{\"id\":\"c1\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{}\"}}}}]}}\n",
        "word ".repeat(200)
    );
    let body = format!("event: x\r\n{line}");
    for cut in [0, 10, 21, 300, 600, body.len()] {
        let (head, tail) = body.as_bytes().split_at(cut);
        let mut reader = UsageReader::new("text/event-stream").unwrap();
        reader.feed(&Bytes::copy_from_slice(head));
        reader.feed(&Bytes::copy_from_slice(tail));
        assert!(reader.saw_token(), "cut at {cut}");
    }
}

/// An Anthropic stream whose `message_delta` repeats `input_tokens` without the cache fields: the
/// short stream and the long one (read at both ends) must agree on the input tokens.
#[test]
fn long_anthropic_stream_keeps_cache_tokens_in_input() {
    let stream = |deltas: usize| {
        let mut body = String::from(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":10,\"cache_creation_input_tokens\":50,\"cache_read_input_tokens\":1000,\"output_tokens\":1}}}\n\n",
        );
        body.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
        for i in 0..deltas {
            body.push_str(&format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"word{i} \"}}}}\n\n"));
        }
        body.push_str(
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        );
        body.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":10,\"output_tokens\":5000}}\n\n");
        body.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        body
    };
    let short = stream(3);
    let info = read("text/event-stream", &[short.as_bytes()]).0;
    assert_eq!(info.usage.input_tokens, Some(1060), "short stream");
    let long = stream(3000);
    assert!(long.len() > 200 * 1024);
    let frames: Vec<&[u8]> = long.as_bytes().chunks(1024).collect();
    let info = read("text/event-stream", &frames).0;
    assert_eq!(info.usage.cache_read_input_tokens, Some(1000));
    assert_eq!(
        info.usage.input_tokens,
        Some(1060),
        "long stream: {:?}",
        info.usage
    );
}

/// A large Anthropic JSON answer: a tool's input (raw JSON, early in the answer) that has a
/// `finish_reason` key is not the message's finish reason.
#[test]
fn large_anthropic_json_tool_input_is_not_a_finish_reason() {
    let filler = "x".repeat(200 * 1024);
    let body = format!(
        r#"{{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{{"type":"tool_use","id":"toolu_01","name":"label","input":{{"finish_reason":"length"}}}},{{"type":"text","text":"{filler}"}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{{"input_tokens":400,"output_tokens":60000}}}}"#
    );
    let small = body.replace(&filler, "hi");
    assert_eq!(
        read("application/json", &[small.as_bytes()])
            .0
            .finish_reasons,
        ["end_turn"]
    );
    let info = read("application/json", &[body.as_bytes()]).0;
    assert_eq!(info.usage.input_tokens, Some(400));
    assert_eq!(info.finish_reasons, ["end_turn"]);
}

/// A long chunk's first 512 bytes end right after the opening quote of an empty `content`: the
/// chunk (reasoning only) is not the first token, as it is not when it arrives whole.
#[test]
fn a_head_cut_inside_an_empty_content_is_not_the_first_token() {
    let line = |pad: usize| {
        format!(
            "data: {{\"id\":\"gen-1\",\"provider\":\"{}\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\",\"reasoning\":\"{}\"}},\"finish_reason\":null}}]}}",
            "p".repeat(pad),
            "think ".repeat(200)
        )
    };
    let probe = line(0);
    let at = probe.find("\"content\":\"").unwrap() + "\"content\":\"".len();
    let line = line(512 - at);
    assert_eq!(&line[510..513], ":\"\"");
    let event = format!("{line}\n\n");
    let (_, whole) = read("text/event-stream", &[event.as_bytes()]);
    assert!(!whole);
    let b = event.as_bytes();
    let (_, split) = read("text/event-stream", &[&b[..100], &b[100..600], &b[600..]]);
    assert!(
        !split,
        "a reasoning chunk split in frames was taken for the first token"
    );
}

/// Azure's content filter can report that it failed to run (`content_filter_results.error`): the
/// answer itself did not fail. (Expected to pass: checks for a false positive.)
#[test]
fn azure_content_filter_error_is_not_an_answer_error() {
    let body = concat!(
        "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{\"error\":{\"code\":\"content_filter_error\",\"message\":\"The contents are not filtered\"}}}]}\n\n",
        "data: {\"choices\":[{\"content_filter_results\":{\"error\":{\"code\":\"content_filter_error\",\"message\":\"The contents are not filtered\"}},\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null,\"index\":0}],\"created\":1,\"id\":\"chatcmpl-1\",\"model\":\"gpt-4o\",\"object\":\"chat.completion.chunk\"}\n\n",
        "data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{},\"finish_reason\":\"stop\",\"index\":0}],\"created\":1,\"id\":\"chatcmpl-1\",\"model\":\"gpt-4o\",\"object\":\"chat.completion.chunk\",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n",
        "data: [DONE]\n\n",
    );
    let info = read("text/event-stream", &[body.as_bytes()]).0;
    assert_eq!(info.error, None);
    assert_eq!(info.id.as_deref(), Some("chatcmpl-1"));
}

/// A stream whose first usage is Anthropic-shaped and whose last is OpenAI's (`prompt_tokens`, the
/// cache included and detailed): the last count is the total, nothing is added to it.
#[test]
fn a_later_openai_usage_is_not_added_the_cache_again() {
    let stream = concat!(
        "data: {\"id\":\"c1\",\"model\":\"m\",\"choices\":[],\"usage\":{\"input_tokens\":5}}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":2,\"prompt_tokens_details\":{\"cached_tokens\":80}}}\n\n",
        "data: [DONE]\n\n",
    );
    let info = read("text/event-stream", &[stream.as_bytes()]).0;
    assert_eq!(info.usage.cache_read_input_tokens, Some(80));
    assert_eq!(info.usage.input_tokens, Some(100), "{:?}", info.usage);
}

/// A large JSON answer whose `id` is its second member: the small answer and the large one agree.
#[test]
fn a_large_answer_whose_id_is_not_first_keeps_it() {
    let body = |content: &str| {
        format!(
            r#"{{"object":"chat.completion","id":"chatcmpl-2","created":1,"model":"m","choices":[{{"index":0,"message":{{"role":"assistant","content":"{content}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":1,"completion_tokens":2}}}}"#
        )
    };
    let small = read("application/json", &[body("hi").as_bytes()]).0;
    assert_eq!(small.id.as_deref(), Some("chatcmpl-2"));
    let large = body(&"x".repeat(200 * 1024));
    let info = read("application/json", &[large.as_bytes()]).0;
    assert_eq!(info.id.as_deref(), Some("chatcmpl-2"));
}

/// Random streams of the shapes whose first text, reasons and usage the reader looks for (with long
/// lines around the 512 bytes whose start is read early, comments, bare `data`, each line end and a
/// byte order mark), cut at three random points: the same reading as in one frame.
#[test]
fn random_streams_read_the_same_split_anywhere() {
    let mut seed: u64 = 0x1234_5678;
    let mut next = move |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as usize) % n
    };
    let pieces = [
        "data: {\"id\":\"c1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}",
        "data:{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning\":\"PAD\",\"content\":\"x\"}}]}",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\",\"reasoning\":\"PAD\"}}]}",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"PADx\"}}",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"input_tokens\":3,\"cache_read_input_tokens\":4}}",
        // Gemini's: a thought summary, which is not text, and text.
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"PADt\",\"thought\":true}],\"role\":\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":3,\"thoughtsTokenCount\":9}}",
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"PADx\"}],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":3,\"candidatesTokenCount\":2},\"modelVersion\":\"g\",\"responseId\":\"r\"}",
        "data",
        ": comment PAD",
        "event: message_stop",
        "data: [DONE]",
        "",
    ];
    let eols = ["\n", "\r\n", "\r"];
    let mut failures = Vec::new();
    for case in 0..3000 {
        let mut stream = String::new();
        if next(4) == 0 {
            stream.push('\u{feff}');
        }
        for _ in 0..(1 + next(8)) {
            let p = pieces[next(pieces.len())];
            let pad = "p".repeat([0, 400, 440, 470, 480, 490, 500, 505][next(8)]);
            stream.push_str(&p.replace("PAD", &pad));
            stream.push_str(eols[next(3)]);
            if next(2) == 0 {
                stream.push_str(eols[next(3)]);
            }
        }
        let bytes = stream.as_bytes();
        let whole = read("text/event-stream", &[bytes]);
        let mut cuts = vec![
            next(bytes.len() + 1),
            next(bytes.len() + 1),
            next(bytes.len() + 1),
        ];
        cuts.sort();
        let frames = [
            &bytes[..cuts[0]],
            &bytes[cuts[0]..cuts[1]],
            &bytes[cuts[1]..cuts[2]],
            &bytes[cuts[2]..],
        ];
        let split = read("text/event-stream", &frames);
        if whole != split {
            failures.push(format!(
                "case {case} cuts {cuts:?}: {whole:?} vs {split:?}\n{stream:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} differ:\n{}",
        failures.len(),
        failures[..failures.len().min(3)].join("\n")
    );
}

/// Groq streams its usage in the last chunk under `x_groq.usage`, unasked (without
/// `stream_options.include_usage`), as its API reference shows.
#[test]
fn groq_s_streamed_usage_under_x_groq_is_read() {
    let chunk = |delta: &str, reason: &str, extra: &str| {
        format!("data: {{\"id\":\"chatcmpl-g1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"llama-3.1-8b-instant\",\"system_fingerprint\":\"fp_1\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{reason}}}]{extra}}}\n\n")
    };
    let stream = [
        chunk(r#"{"role":"assistant","content":""}"#, "null", r#","x_groq":{"id":"req_01"}"#),
        chunk(r#"{"content":"Hi"}"#, "null", ""),
        chunk("{}", r#""stop""#, r#","x_groq":{"id":"req_01","usage":{"queue_time":0.012,"prompt_tokens":12,"prompt_time":0.001,"completion_tokens":3,"completion_time":0.004,"total_tokens":15,"total_time":0.005}}"#),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let info = read("text/event-stream", &[stream.as_bytes()]).0;
    assert_eq!(info.id.as_deref(), Some("chatcmpl-g1"));
    assert_eq!(info.finish_reasons, ["stop"]);
    assert_eq!(info.usage.input_tokens, Some(12));
    assert_eq!(info.usage.output_tokens, Some(3));
}

/// Gemini gives its usage so far in its responses, and its finish reason with the last candidate:
/// a response that gives either is read, whether or not it gives the other, so a stream cut short
/// keeps the usage of the last response it gave, and a finish reason given without usage is kept.
#[test]
fn gemini_responses_giving_usage_or_a_finish_reason_alone_are_read() {
    let response = |text: &str, reason: &str, usage: &str| {
        format!("data: {{\"candidates\":[{{\"content\":{{\"parts\":[{{\"text\":\"{text}\"}}],\"role\":\"model\"}}{reason},\"index\":0}}]{usage},\"modelVersion\":\"gemini-2.5-flash\"}}\r\n\r\n")
    };
    let usage = |output: u32| {
        format!(",\"usageMetadata\":{{\"promptTokenCount\":5,\"candidatesTokenCount\":{output},\"totalTokenCount\":{}}}", 5 + output)
    };
    let cut_short = [
        response("Once", "", &usage(1)),
        response(" upon", "", &usage(2)),
        response(" a time", "", &usage(4)),
    ]
    .concat();
    let info = read("text/event-stream", &[cut_short.as_bytes()]).0;
    assert_eq!(info.usage.output_tokens, Some(4));
    assert!(info.finish_reasons.is_empty());

    let reason_alone = [
        response("Hi", "", &usage(1)),
        response(" there", ",\"finishReason\":\"STOP\"", ""),
    ]
    .concat();
    let info = read("text/event-stream", &[reason_alone.as_bytes()]).0;
    assert_eq!(info.finish_reasons, ["STOP"]);
    assert_eq!(info.usage.output_tokens, Some(1));
}

/// Only a Gemini response names its model `modelVersion`: in a large Bedrock answer, whose body
/// names no model, a tool input's `modelVersion` at its head is not taken for the model.
#[test]
fn a_large_bedrock_answer_does_not_take_a_tool_input_s_model_version_for_its_model() {
    let body = format!(
        r#"{{"output":{{"message":{{"role":"assistant","content":[{{"toolUse":{{"toolUseId":"t1","name":"deploy","input":{{"modelVersion":"v2","responseId":"job-1"}}}}}},{{"text":"{}"}}]}}}},"stopReason":"tool_use","usage":{{"inputTokens":10,"outputTokens":20,"totalTokens":30}}}}"#,
        "x".repeat(200 * 1024)
    );
    let info = read("application/json", &[body.as_bytes()]).0;
    assert_eq!(info.usage.output_tokens, Some(20));
    assert_eq!(info.model, None);
    assert_eq!(info.id, None);
}

/// DeepSeek counts the prompt tokens its cache served as `prompt_cache_hit_tokens` (its
/// `prompt_tokens` include them, as OpenAI's do), not under `prompt_tokens_details`.
#[test]
fn deepseek_s_cache_hits_are_cache_reads() {
    let body = br#"{"id":"930c60df-bf64-41c9-a88e-3ec75f81e00e","object":"chat.completion","created":1705651092,"model":"deepseek-chat","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":16,"completion_tokens":10,"total_tokens":26,"prompt_cache_hit_tokens":12,"prompt_cache_miss_tokens":4},"system_fingerprint":"fp_1"}"#;
    let info = read("application/json", &[body]).0;
    assert_eq!(info.usage.cache_read_input_tokens, Some(12));
    assert_eq!(info.usage.input_tokens, Some(16), "nothing is added twice");
    let stream = concat!(
        "data: {\"id\":\"d1\",\"object\":\"chat.completion.chunk\",\"model\":\"deepseek-chat\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
        ": keep-alive\n\n",
        "data: {\"id\":\"d1\",\"object\":\"chat.completion.chunk\",\"model\":\"deepseek-chat\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":16,\"completion_tokens\":1,\"total_tokens\":17,\"prompt_cache_hit_tokens\":12,\"prompt_cache_miss_tokens\":4}}\n\n",
        "data: [DONE]\n\n",
    );
    let info = read("text/event-stream", &[stream.as_bytes()]).0;
    assert_eq!(info.usage.cache_read_input_tokens, Some(12));
    assert_eq!(info.usage.input_tokens, Some(16));
}

/// A Responses API stream ends with `response.completed`, which repeats the whole response: with a
/// long answer (or many tools) it is larger than the window kept on the stream's end. Read in
/// ordinary frames, the stream still said it was finished, as it does read in one: whether the
/// event begins in the frame that held the first text (a short answer), or long after it.
#[test]
fn a_responses_stream_whose_last_event_outgrows_the_window_is_done() {
    let text = "w ".repeat(50 * 1024);
    for (deltas, with_event_lines) in [(1, true), (1, false), (2000, true), (2000, false)] {
        let event = |name: &str, data: String| match with_event_lines {
            true => format!("event: {name}\ndata: {data}\n\n"),
            false => format!("data: {data}\n\n"),
        };
        let delta = |i: usize| {
            event(
                "response.output_text.delta",
                format!(
                    r#"{{"type":"response.output_text.delta","sequence_number":{i},"item_id":"msg_1","output_index":0,"content_index":0,"delta":"w "}}"#
                ),
            )
        };
        let body = [
            event("response.created", r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":"response","status":"in_progress","model":"gpt-4.1","usage":null}}"#.to_owned()),
            (1..=deltas).map(delta).collect(),
            event("response.completed", format!(r#"{{"type":"response.completed","sequence_number":{},"response":{{"id":"resp_1","object":"response","status":"completed","model":"gpt-4.1","output":[{{"type":"message","content":[{{"type":"output_text","text":"{text}"}}]}}],"usage":{{"input_tokens":9,"output_tokens":25600,"total_tokens":25609}},"user":null,"metadata":{{}}}}}}"#, deltas + 1)),
        ]
        .concat();
        let whole = read("text/event-stream", &[body.as_bytes()]).0;
        assert!(whole.done);
        for split in [1000, 4096, 16 * 1024] {
            let frames: Vec<&[u8]> = body.as_bytes().chunks(split).collect();
            let info = read("text/event-stream", &frames).0;
            assert_eq!(info.usage.output_tokens, Some(25600));
            assert_eq!(
                info, whole,
                "frames of {split}, {deltas} deltas, event lines: {with_event_lines}"
            );
        }
    }
}

/// A large JSON answer that arrives in tiny frames (a proxy that re-chunks the body): the first
/// 64 KiB are read however small the frames, so the id and model at its start are kept, as when
/// it arrives whole.
#[test]
fn a_large_json_answer_in_tiny_frames_keeps_its_id_and_model() {
    let body = format!(
        r#"{{"id":"chatcmpl-9","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{{"index":0,"message":{{"role":"assistant","content":"{}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":2,"completion_tokens":3}}}}"#,
        "x".repeat(200 * 1024)
    );
    for frame in [7, 100, body.len()] {
        let frames: Vec<&[u8]> = body.as_bytes().chunks(frame).collect();
        let info = read("application/json", &frames).0;
        assert_eq!(info.id.as_deref(), Some("chatcmpl-9"), "{frame}");
        assert_eq!(info.model.as_deref(), Some("gpt-4o"), "{frame}");
        assert_eq!(info.finish_reasons, ["stop"], "{frame}");
        assert_eq!(info.usage.output_tokens, Some(3), "{frame}");
    }
}

/// A large JSON answer cut off in the middle (the connection dropped): it does not parse whole,
/// but its start still names the response and the model.
#[test]
fn a_large_json_answer_cut_short_still_names_its_id_and_model() {
    let body = format!(
        r#"{{"id":"chatcmpl-7","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{{"index":0,"message":{{"role":"assistant","content":"{}"#,
        "x".repeat(200 * 1024)
    );
    for frame in [1000, 16 * 1024] {
        let frames: Vec<&[u8]> = body.as_bytes().chunks(frame).collect();
        let info = read("application/json", &frames).0;
        assert_eq!(info.id.as_deref(), Some("chatcmpl-7"), "{frame}");
        assert_eq!(info.model.as_deref(), Some("gpt-4o"), "{frame}");
        assert_eq!(info.usage.output_tokens, None);
    }
}

/// A large Anthropic answer whose last block is a tool call with an input that names an `id` and
/// then a `model` (a routing tool, say): the message's own id is its first member, and the pair at
/// the end is the tool's, not the response's.
#[test]
fn a_large_anthropic_answer_with_a_tool_input_naming_a_model_keeps_the_message_id() {
    let body = |text: &str| {
        format!(
            r#"{{"id":"msg_01Ab","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{{"type":"text","text":"{text}"}},{{"type":"tool_use","id":"toolu_01","name":"route","input":{{"id":"job-7","model":"gpt-4o-mini"}}}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{{"input_tokens":40,"output_tokens":60000}}}}"#
        )
    };
    let small = read("application/json", &[body("hi").as_bytes()]).0;
    assert_eq!(small.id.as_deref(), Some("msg_01Ab"));
    let large = body(&"x".repeat(200 * 1024));
    let info = read("application/json", &[large.as_bytes()]).0;
    assert_eq!(info.id.as_deref(), Some("msg_01Ab"));
    assert_eq!(info.model.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(info.finish_reasons, ["tool_use"]);
}

/// A Responses API `response.completed` too large to read whole ends with its `usage`, then `user`
/// and the caller's `metadata`: up to 16 pairs of 64-character keys and 512-character values. The
/// usage is read past the largest metadata the API accepts.
#[test]
fn a_large_responses_final_event_gives_its_usage_past_full_metadata() {
    let metadata: Vec<String> = (0..16)
        .map(|i| format!("\"{:k<64}\":\"{}\"", i, "v".repeat(512)))
        .collect();
    let body = format!(
        concat!(
            "event: response.created\ndata: {{\"type\":\"response.created\",\"response\":{{\"id\":\"resp_9\",\"model\":\"gpt-4.1\",\"usage\":null}}}}\n\n",
            "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}}\n\n",
            "event: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{{\"id\":\"resp_9\",\"model\":\"gpt-4.1\",\"output\":[{{\"type\":\"message\",\"content\":[{{\"type\":\"output_text\",\"text\":\"{}\"}}]}}],\"usage\":{{\"input_tokens\":31,\"output_tokens\":40000}},\"user\":\"u-1\",\"metadata\":{{{}}}}}}}\n\n",
        ),
        "w ".repeat(100 * 1024),
        metadata.join(",")
    );
    for frame in [1000, 16 * 1024, body.len()] {
        let frames: Vec<&[u8]> = body.as_bytes().chunks(frame).collect();
        let info = read("text/event-stream", &frames).0;
        assert_eq!(info.usage.input_tokens, Some(31), "{frame}");
        assert_eq!(info.usage.output_tokens, Some(40000), "{frame}");
        assert!(info.done, "{frame}");
    }
}

/// An event's JSON may span many `data` lines (the lines are joined with line feeds): one well
/// under the size limit, in lines of a few hundred bytes, is read whole, however it is framed.
#[test]
fn an_event_spanning_many_data_lines_is_read_whole() {
    let mut event = String::from("data: {\"id\":\"chatcmpl-ml\",\"model\":\"gpt-4o\",\n");
    for i in 0..40 {
        event.push_str(&format!("data: \"pad{i}\":\"{}\",\n", "x".repeat(500)));
    }
    event.push_str("data: \"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\n");
    event.push_str("data: \"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7}}\n\n");
    let body = format!("{event}data: [DONE]\n\n");
    for frame in [1, 700, body.len()] {
        let frames: Vec<&[u8]> = body.as_bytes().chunks(frame).collect();
        let info = read("text/event-stream", &frames).0;
        assert_eq!(info.id.as_deref(), Some("chatcmpl-ml"), "{frame}");
        assert_eq!(info.finish_reasons, ["stop"], "{frame}");
        assert_eq!(info.usage.output_tokens, Some(7), "{frame}");
        assert!(info.done);
    }
}

/// The first event of a stream is always read, for the id and model a server may name only there:
/// also when keep-alives (a blank line, OpenRouter's `: OPENROUTER PROCESSING` comment) come
/// before it.
#[test]
fn a_stream_opening_with_keep_alives_reads_its_first_event() {
    let events = concat!(
        "data: {\"id\":\"gen-1\",\"model\":\"meta-llama/llama-3.1-8b\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: [DONE]\n\n",
    );
    for opening in ["", "\n", ": OPENROUTER PROCESSING\n\n", "\n\n: ping\n\n"] {
        let body = format!("{opening}{events}");
        let (info, token) = read("text/event-stream", &[body.as_bytes()]);
        assert_eq!(info.id.as_deref(), Some("gen-1"), "{opening:?}");
        assert_eq!(info.model.as_deref(), Some("meta-llama/llama-3.1-8b"));
        assert_eq!(info.finish_reasons, ["stop"]);
        assert!(token && info.done);
    }
}

/// A background Responses API stream opens with `response.created`, `response.queued` and
/// `response.in_progress`: none of them ends it (`response.queued` is as long as
/// `response.failed`), so a stream cut after them is not done.
#[test]
fn a_queued_responses_stream_is_not_done_until_it_ends() {
    let opening = concat!(
        "data: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_q\",\"model\":\"o3\",\"status\":\"queued\",\"background\":true,\"usage\":null}}\n\n",
        "data: {\"type\":\"response.queued\",\"sequence_number\":1,\"response\":{\"id\":\"resp_q\",\"model\":\"o3\",\"status\":\"queued\",\"background\":true,\"usage\":null}}\n\n",
        "data: {\"type\":\"response.in_progress\",\"sequence_number\":2,\"response\":{\"id\":\"resp_q\",\"model\":\"o3\",\"status\":\"in_progress\",\"background\":true,\"usage\":null}}\n\n",
    );
    let info = read("text/event-stream", &[opening.as_bytes()]).0;
    assert_eq!(info.id.as_deref(), Some("resp_q"));
    assert!(!info.done, "a stream cut before its end is not done");
    let whole = format!(
        "{opening}data: {{\"type\":\"response.completed\",\"sequence_number\":4,\"response\":{{\"id\":\"resp_q\",\"model\":\"o3\",\"status\":\"completed\",\"usage\":{{\"input_tokens\":3,\"output_tokens\":5}}}}}}\n\n"
    );
    let info = read("text/event-stream", &[whole.as_bytes()]).0;
    assert!(info.done);
    assert_eq!(info.usage.output_tokens, Some(5));
}

/// A Responses API stream from a reasoning model sums its reasoning up before it answers: the
/// summary's `.done` events carry its whole text, but no answer yet, so they are not the first
/// token.
#[test]
fn a_reasoning_summary_is_not_the_first_token() {
    let summary = concat!(
        "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_r\",\"model\":\"o4-mini\",\"usage\":null}}\n\n",
        "event: response.reasoning_summary_text.delta\ndata: {\"type\":\"response.reasoning_summary_text.delta\",\"sequence_number\":3,\"item_id\":\"rs_1\",\"output_index\":0,\"summary_index\":0,\"delta\":\"**Planning**\"}\n\n",
        "event: response.reasoning_summary_text.done\ndata: {\"type\":\"response.reasoning_summary_text.done\",\"sequence_number\":4,\"item_id\":\"rs_1\",\"output_index\":0,\"summary_index\":0,\"text\":\"**Planning** the answer\"}\n\n",
        "event: response.reasoning_summary_part.done\ndata: {\"type\":\"response.reasoning_summary_part.done\",\"sequence_number\":5,\"item_id\":\"rs_1\",\"output_index\":0,\"summary_index\":0,\"part\":{\"type\":\"summary_text\",\"text\":\"**Planning** the answer\"}}\n\n",
    );
    let (_, token) = read("text/event-stream", &[summary.as_bytes()]);
    assert!(!token);
    let answer = format!(
        "{summary}event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"sequence_number\":8,\"item_id\":\"msg_1\",\"output_index\":1,\"content_index\":0,\"delta\":\"Hi\"}}\n\n"
    );
    assert!(read("text/event-stream", &[answer.as_bytes()]).1);
}

/// Some encoders escape `/` in strings (`"openai\/gpt-4o"`). When the Responses API's
/// `response.created` is too large to read, the model is not taken from its start cut at the
/// escape: the whole name comes from the final event.
#[test]
fn an_escaped_model_name_in_a_large_created_event_is_not_cut_short() {
    let tools = format!(
        "[{}]",
        vec![r#"{"type":"function","name":"f","parameters":{}}"#; 2000].join(",")
    );
    let body = format!(
        concat!(
            "data: {{\"type\":\"response.created\",\"response\":{{\"id\":\"resp_e\",\"model\":\"openai\\/gpt-4o\",\"usage\":null,\"tools\":{}}}}}\n\n",
            "data: {{\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}}\n\n",
            "data: {{\"type\":\"response.completed\",\"response\":{{\"id\":\"resp_e\",\"model\":\"openai\\/gpt-4o\",\"usage\":{{\"input_tokens\":2,\"output_tokens\":1}}}}}}\n\n",
        ),
        tools
    );
    assert!(body.len() > 64 * 1024);
    let info = read("text/event-stream", &[body.as_bytes()]).0;
    assert_eq!(info.id.as_deref(), Some("resp_e"));
    assert_eq!(info.model.as_deref(), Some("openai/gpt-4o"));
    assert_eq!(info.usage.input_tokens, Some(2));
}

/// A later finish reason for a choice replaces its earlier one: a chunk that says `stop`, then the
/// final one that says the answer was cut at its length, give `length`.
#[test]
fn a_later_finish_reason_for_a_choice_replaces_the_earlier() {
    let body = concat!(
        "data: {\"id\":\"c1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\n",
        "data: [DONE]\n\n",
    );
    let info = read("text/event-stream", &[body.as_bytes()]).0;
    assert_eq!(info.finish_reasons, ["length"]);
}

/// Only an event stream is read as a stream.
#[test]
fn a_reader_is_a_stream_reader_only_for_event_streams() {
    assert!(UsageReader::new("text/event-stream; charset=utf-8")
        .unwrap()
        .is_stream());
    assert!(!UsageReader::new("application/json").unwrap().is_stream());
}

/// A JSON answer a little over the 64 KiB read at its start is still read whole: the bytes past
/// the start, in whatever frames they come, follow on from it.
#[test]
fn a_json_answer_just_over_the_start_read_is_read_whole_in_any_frames() {
    let body = format!(
        r#"{{"id":"chatcmpl-m","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{{"index":0,"message":{{"role":"assistant","content":"{}"}},"finish_reason":"stop"}},{{"index":1,"message":{{"role":"assistant","content":"{}"}},"finish_reason":"length"}}],"usage":{{"prompt_tokens":4,"completion_tokens":9}}}}"#,
        "x".repeat(65_300),
        "y".repeat(8_000)
    );
    for frame in [1000, 10_000, 16 * 1024, 65_000, body.len()] {
        let frames: Vec<&[u8]> = body.as_bytes().chunks(frame).collect();
        let info = read("application/json", &frames).0;
        assert_eq!(info.id.as_deref(), Some("chatcmpl-m"), "{frame}");
        assert_eq!(info.finish_reasons, ["stop", "length"], "{frame}");
        assert_eq!(info.usage.output_tokens, Some(9), "{frame}");
    }
}

/// Gemini's and Bedrock's own APIs name the model in the path, not in the body: through the layer
/// the span takes the model, the operation, the provider and the stream flag from the path, and the
/// usage from their answers (Gemini's `alt=sse` stream, Vertex AI's JSON, Bedrock's Converse JSON),
/// which pass through unchanged. Bedrock's `converse-stream` answers in AWS's binary event stream,
/// which is passed on untouched and not read.
#[tokio::test]
async fn gemini_and_bedrock_paths_and_answers_on_the_span() {
    use axum::routing::post;
    use support::{client, serve, Recorder};

    const GEMINI_SSE: &str = concat!(
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Paris\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"totalTokenCount\": 57,\"promptTokensDetails\": [{\"modality\": \"TEXT\",\"tokenCount\": 9}],\"thoughtsTokenCount\": 48},\"modelVersion\": \"gemini-2.5-pro\",\"responseId\": \"Q2bLaNbXDsS0z7IP7Nq_qQ8\"}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" is the capital of France.\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"candidatesTokenCount\": 7,\"totalTokenCount\": 64,\"promptTokensDetails\": [{\"modality\": \"TEXT\",\"tokenCount\": 9}],\"thoughtsTokenCount\": 48},\"modelVersion\": \"gemini-2.5-pro\",\"responseId\": \"Q2bLaNbXDsS0z7IP7Nq_qQ8\"}\r\n\r\n",
    );
    const VERTEX_JSON: &str = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hi"}]},"finishReason":"MAX_TOKENS","avgLogprobs":-0.31}],"usageMetadata":{"promptTokenCount":1200,"candidatesTokenCount":1,"totalTokenCount":1201,"trafficType":"ON_DEMAND","cachedContentTokenCount":1024},"modelVersion":"gemini-2.0-flash-001","createTime":"2025-06-01T10:00:00.000000Z","responseId":"vtx-1"}"#;
    const BEDROCK_JSON: &str = r#"{"metrics":{"latencyMs":1149},"output":{"message":{"content":[{"text":"Paris."}],"role":"assistant"}},"stopReason":"end_turn","usage":{"cacheReadInputTokens":1024,"cacheWriteInputTokens":0,"inputTokens":14,"outputTokens":3,"totalTokens":1041}}"#;

    /// One message of AWS's event stream: its prelude (lengths and their CRC-32), its headers,
    /// its payload and the message's CRC-32.
    fn event_message(event_type: &str, payload: &str) -> Vec<u8> {
        fn crc32(bytes: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &byte in bytes {
                crc ^= u32::from(byte);
                for _ in 0..8 {
                    crc = if crc & 1 == 1 {
                        (crc >> 1) ^ 0xEDB8_8320
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        }
        let mut headers = Vec::new();
        for (name, value) in [
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ] {
            headers.push(name.len() as u8);
            headers.extend_from_slice(name.as_bytes());
            headers.push(7); // a string
            headers.extend_from_slice(&(value.len() as u16).to_be_bytes());
            headers.extend_from_slice(value.as_bytes());
        }
        let total = 12 + headers.len() + payload.len() + 4;
        let mut message = Vec::new();
        message.extend_from_slice(&(total as u32).to_be_bytes());
        message.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        let prelude_crc = crc32(&message);
        message.extend_from_slice(&prelude_crc.to_be_bytes());
        message.extend_from_slice(&headers);
        message.extend_from_slice(payload.as_bytes());
        let crc = crc32(&message);
        message.extend_from_slice(&crc.to_be_bytes());
        message
    }
    let event_stream: Vec<u8> = [
        event_message("messageStart", r#"{"p":"abcd","role":"assistant"}"#),
        event_message(
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"Paris."},"p":"abcdefgh"}"#,
        ),
        event_message("messageStop", r#"{"p":"ab","stopReason":"end_turn"}"#),
        event_message(
            "metadata",
            r#"{"metrics":{"latencyMs":402},"p":"abc","usage":{"inputTokens":14,"outputTokens":3,"totalTokens":17}}"#,
        ),
    ]
    .concat();
    let stream_body = Bytes::from(event_stream);

    let (recorder, _guard) = Recorder::install();
    let answers = stream_body.clone();
    let app = axum::Router::new()
        .route(
            "/{*path}",
            post(move |uri: axum::http::Uri| {
                let answers = answers.clone();
                async move {
                    let path = uri.path();
                    let (content_type, body) = if path.ends_with(":streamGenerateContent") {
                        (
                            "text/event-stream",
                            Bytes::from_static(GEMINI_SSE.as_bytes()),
                        )
                    } else if path.ends_with(":generateContent") {
                        (
                            "application/json; charset=UTF-8",
                            Bytes::from_static(VERTEX_JSON.as_bytes()),
                        )
                    } else if path.ends_with("/converse") {
                        (
                            "application/json",
                            Bytes::from_static(BEDROCK_JSON.as_bytes()),
                        )
                    } else {
                        ("application/vnd.amazon.eventstream", answers)
                    };
                    axum::response::Response::builder()
                        .header("content-type", content_type)
                        .body(axum::body::Body::from(body))
                        .unwrap()
                }
            }),
        )
        .layer(requesty_metadata::RequestyMetadataLayer::new());
    let addr = serve(app).await;
    let calls = [
        (
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
            Bytes::from_static(GEMINI_SSE.as_bytes()),
        ),
        (
            "/v1/projects/my-project/locations/us-central1/publishers/google/models/gemini-2.0-flash-001:generateContent",
            Bytes::from_static(VERTEX_JSON.as_bytes()),
        ),
        (
            "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
            Bytes::from_static(BEDROCK_JSON.as_bytes()),
        ),
        (
            "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream",
            stream_body.clone(),
        ),
    ];
    for (path, answer) in &calls {
        let response = client()
            .post(format!("http://{addr}{path}"))
            .header("content-type", "application/json")
            .body(r#"{"contents":[{"role":"user","parts":[{"text":"The capital of France?"}]}], "requesty": {"trace_id": "wf-g"}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(&response.bytes().await.unwrap(), answer, "{path}");
    }
    let spans = recorder.wait_closed(calls.len()).await;
    let span = |path: &str| {
        spans
            .iter()
            .find(|span| span.field("url.path").is_some_and(|p| p.ends_with(path)))
            .unwrap_or_else(|| panic!("no span for {path}: {spans:#?}"))
    };
    let fields = |span: &support::SpanRecord, names: &[&str]| -> Vec<Option<String>> {
        names
            .iter()
            .map(|name| span.field(name).map(str::to_owned))
            .collect()
    };
    let some = |values: &[&str]| -> Vec<Option<String>> {
        values.iter().map(|v| Some((*v).to_owned())).collect()
    };
    let request = [
        "gen_ai.operation.name",
        "gen_ai.provider.name",
        "gen_ai.request.model",
        "gen_ai.request.stream",
        "otel.name",
        "requesty.trace_id",
    ];
    let response = [
        "gen_ai.response.model",
        "gen_ai.response.id",
        "gen_ai.response.finish_reasons",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.reasoning.output_tokens",
        "gen_ai.usage.cache_read.input_tokens",
    ];

    let gemini = span(":streamGenerateContent");
    assert_eq!(
        fields(gemini, &request),
        some(&[
            "generate_content",
            "gcp.gemini",
            "gemini-2.5-pro",
            "true",
            "generate_content gemini-2.5-pro",
            "wf-g"
        ])
    );
    assert_eq!(
        fields(gemini, &response[..6]),
        some(&[
            "gemini-2.5-pro",
            "Q2bLaNbXDsS0z7IP7Nq_qQ8",
            r#"["STOP"]"#,
            "9",
            "55",
            "48"
        ])
    );
    assert!(gemini.field("requesty.time_to_first_token_ms").is_some());

    let vertex = span(":generateContent");
    assert_eq!(
        fields(vertex, &request[..5]),
        some(&[
            "generate_content",
            "gcp.vertex_ai",
            "gemini-2.0-flash-001",
            "false",
            "generate_content gemini-2.0-flash-001"
        ])
    );
    assert_eq!(
        fields(vertex, &response),
        [
            some(&[
                "gemini-2.0-flash-001",
                "vtx-1",
                r#"["MAX_TOKENS"]"#,
                "1200",
                "1"
            ]),
            vec![None, Some("1024".to_owned())],
        ]
        .concat()
    );

    let bedrock = span("/converse");
    let bedrock_stream = span("/converse-stream");
    let model = "anthropic.claude-3-5-sonnet-20240620-v1:0";
    assert_eq!(
        fields(bedrock, &request[..5]),
        some(&[
            "chat",
            "aws.bedrock",
            model,
            "false",
            &format!("chat {model}")
        ])
    );
    // The cache's reads are added to the input: 14 + 1024.
    assert_eq!(
        fields(bedrock, &response),
        [
            vec![None, None],
            some(&[r#"["end_turn"]"#, "1038", "3"]),
            vec![None, Some("1024".to_owned())],
        ]
        .concat()
    );
    assert_eq!(
        fields(bedrock_stream, &request[..5]),
        some(&[
            "chat",
            "aws.bedrock",
            model,
            "true",
            &format!("chat {model}")
        ])
    );
    assert_eq!(
        fields(bedrock_stream, &response),
        vec![None; response.len()]
    );
    assert_eq!(
        bedrock_stream.field("requesty.response.completed"),
        Some("true")
    );
    assert_eq!(bedrock_stream.field("error.type"), None);
}
