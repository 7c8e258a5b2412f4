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

/// Median wall time in nanoseconds of each routine over `runs` runs (after a few warm-up runs).
///
/// The routines take turns in ten rounds, so a slow stretch of this noisy machine lands on all of
/// them alike instead of on whichever happened to be measured then: their ratios are what stays
/// meaningful. Within a round a routine runs back to back, on caches it has warmed itself.
pub fn medians_ns<const N: usize>(runs: usize, mut routines: [&mut dyn FnMut(); N]) -> [f64; N] {
    const ROUNDS: usize = 10;
    let per_round = runs.div_ceil(ROUNDS);
    let mut times = [(); N].map(|()| Vec::with_capacity(per_round * ROUNDS));
    for _ in 0..ROUNDS {
        for (f, times) in routines.iter_mut().zip(&mut times) {
            for _ in 0..per_round.min(10) {
                f();
            }
            for _ in 0..per_round {
                let start = Instant::now();
                f();
                times.push(start.elapsed().as_nanos() as f64);
            }
        }
    }
    times.map(|mut times| {
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    })
}

/// Keeps a value alive past the optimizer.
pub fn keep<T>(value: T) -> T {
    black_box(value)
}
