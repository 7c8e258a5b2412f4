//! Shared by the benches: request bodies and a same-run ratio table.
#![allow(dead_code)] // each bench uses a different part

use std::hint::black_box;
use std::time::Instant;

/// A chat request of about `target` bytes: many short messages with escapes, metadata last when
/// `with_metadata`.
pub fn chat_request(target: usize, with_metadata: bool) -> Vec<u8> {
    let mut body = String::from(r#"{"model":"openai/gpt-4o","temperature":0.7,"messages":["#);
    let mut i = 0;
    while body.len() < target.saturating_sub(300) {
        if i > 0 {
            body.push(',');
        }
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        body.push_str(&format!(
            r#"{{"role":"{role}","content":"Turn {i}: caf\u00e9 \"quoted\"\nline two, price 1.0e0"}}"#
        ));
        i += 1;
    }
    body.push(']');
    if with_metadata {
        body.push_str(r#","requesty":{"tags":["bench"],"user_id":"user_1234","trace_id":"session_abc123","extra":{"country":"canada"}}"#);
    }
    body.push('}');
    body.into_bytes()
}

/// A request of about `target` bytes carrying one base64 image, metadata last when `with_metadata`.
pub fn image_request(target: usize, with_metadata: bool) -> Vec<u8> {
    let base64: String = (0..target)
        .map(|i| {
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[i * 7 % 64] as char
        })
        .collect();
    let mut body = format!(
        r#"{{"model":"openai/gpt-4o","messages":[{{"role":"user","content":[{{"type":"text","text":"What is in this image?"}},{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{base64}"}}}}]}}]"#
    );
    if with_metadata {
        body.push_str(
            r#","requesty":{"tags":["bench"],"user_id":"user_1234","trace_id":"session_abc123"}"#,
        );
    }
    body.push('}');
    body.into_bytes()
}

/// Median wall time of `f` in nanoseconds over `runs` runs (after a few warm-up runs).
pub fn median_ns(runs: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..runs.min(10) {
        f();
    }
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_nanos() as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Keeps a value alive past the optimizer.
pub fn keep<T>(value: T) -> T {
    black_box(value)
}
