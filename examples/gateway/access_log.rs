//! The access log: one line per request, written after its response body ended (or the client
//! left), in the format `--log-format` chose.
//!
//! Its way to stdout: lines gather in memory and a thread of their own writes them out a few
//! milliseconds later, many at a time: a request never waits on a write to stdout (a blocking call
//! on an async worker, slow when stdout is a slow pipe), and the workers never queue for stdout's
//! lock.

use crate::LogFormat;
use requesty_metadata::server::Completion;
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The longest a line waits before it is written.
const INTERVAL: Duration = Duration::from_millis(10);
/// Past this much waiting text the request that adds to it writes it out itself, so memory stays
/// bounded when stdout cannot keep up; no line is dropped.
const MAX_PENDING: usize = 1 << 20;

static PENDING: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// Signalled when the first line lands in an empty buffer.
static READY: Condvar = Condvar::new();

fn pending() -> MutexGuard<'static, Vec<u8>> {
    PENDING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts the thread that writes the lines out.
pub fn start() {
    std::thread::spawn(|| {
        let mut batch = Vec::new();
        loop {
            let mut waiting = pending();
            while waiting.is_empty() {
                waiting = READY.wait(waiting).unwrap_or_else(PoisonError::into_inner);
            }
            drop(waiting);
            // Let more lines join this write.
            std::thread::sleep(INTERVAL);
            flush_with(&mut batch);
        }
    });
}

/// Queues one line.
pub fn write_line(line: &str) {
    let mut waiting = pending();
    let first = waiting.is_empty();
    waiting.extend_from_slice(line.as_bytes());
    waiting.push(b'\n');
    let full = waiting.len() >= MAX_PENDING;
    drop(waiting);
    if full {
        flush();
    } else if first {
        READY.notify_one();
    }
}

/// Writes out every queued line now (at shutdown, and when too much waits).
pub fn flush() {
    flush_with(&mut Vec::new());
}

/// Swaps the queued lines into `batch` and writes them. Holding stdout's lock while taking the
/// lines keeps batches in order when two flushes race.
fn flush_with(batch: &mut Vec<u8>) {
    let mut out = std::io::stdout().lock();
    std::mem::swap(&mut *pending(), batch);
    // A closed stdout (e.g. piped into `head`) must not take the server down.
    let _ = out.write_all(batch);
    let _ = out.flush();
    batch.clear();
}

/// The `--log-format json` line: a struct rather than `json!` so the fields keep this order.
#[derive(Serialize)]
struct AccessLog<'a> {
    trace_id: Option<&'a str>,
    user_id: Option<&'a str>,
    tags: &'a [String],
    extra: &'a Map<String, Value>,
    origin_referer: Option<&'a str>,
    origin_title: Option<&'a str>,
    method: &'a str,
    path: &'a str,
    status: u16,
    model: Option<&'a str>,
    response_model: Option<&'a str>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cached_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
    finish_reasons: &'a [String],
    latency_ms: f64,
    time_to_first_token_ms: Option<f64>,
    completed: bool,
    /// The response body ended in an error (the upstream cut it), not because the client left.
    failed: bool,
}

/// `value` as JSON for a log line: JSON escapes only the C0 controls, so the other characters a
/// terminal or a log tool may act on (C1 controls such as NEL and CSI, the line and paragraph
/// separators) are escaped too, as `\uXXXX` (still the same JSON).
fn log_json(value: &impl serde::Serialize) -> String {
    let json = serde_json::to_string(value).unwrap_or_default();
    if !json.chars().any(acts_on_terminal) {
        return json;
    }
    let mut escaped = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if acts_on_terminal(c) {
            let _ = write!(escaped, "\\u{:04x}", u32::from(c));
        } else {
            escaped.push(c);
        }
    }
    escaped
}

/// A character that a terminal or a log tool may act on rather than show.
fn acts_on_terminal(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Whether a value in a pretty log line needs quotes: it is empty, or holds whitespace, a quote or
/// a control character.
fn needs_quotes(value: &str) -> bool {
    value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || acts_on_terminal(c) || c == '"')
}

/// The access-log line for a request whose response body ended (or whose client left).
pub fn line(format: LogFormat, done: &Completion<'_>) -> String {
    let meta = done.metadata;
    let ms = |d: std::time::Duration| (d.as_secs_f64() * 10_000.0).round() / 10.0;
    let latency_ms = ms(done.latency);
    let ttft_ms = done.time_to_first_token.map(ms);
    let response = done.response;
    let usage = response.map(|r| r.usage).unwrap_or_default();
    match format {
        LogFormat::Json => {
            let no_extra = Map::new();
            let line = AccessLog {
                trace_id: meta.and_then(|m| m.trace_id.as_deref()),
                user_id: meta.and_then(|m| m.user_id.as_deref()),
                tags: meta.map_or(&[], |m| m.tags.as_slice()),
                extra: meta.map_or(&no_extra, |m| &m.extra),
                origin_referer: meta.and_then(|m| m.origin_referer.as_deref()),
                origin_title: meta.and_then(|m| m.origin_title.as_deref()),
                method: done.method.as_str(),
                path: done.path,
                status: done.status.as_u16(),
                model: done.model,
                response_model: response.and_then(|r| r.model.as_deref()),
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                cached_tokens: usage.cache_read_input_tokens,
                reasoning_tokens: usage.reasoning_output_tokens,
                finish_reasons: response.map_or(&[], |r| r.finish_reasons.as_slice()),
                latency_ms,
                time_to_first_token_ms: ttft_ms,
                completed: done.completed,
                failed: done.failed,
            };
            log_json(&line)
        }
        LogFormat::Pretty => {
            // One buffer, written into: this runs once per request.
            let mut line = String::with_capacity(256);
            let _ = write!(
                line,
                "{} {} {}",
                done.status.as_u16(),
                done.method,
                done.path
            );
            let mut field = |key: &str, value: Option<&str>| {
                if let Some(value) = value {
                    // Quote (and escape) only what would be ambiguous unquoted: a client's value
                    // must not start a line of its own or send a terminal escape.
                    let _ = if needs_quotes(value) {
                        write!(line, " {key}={value:?}")
                    } else {
                        write!(line, " {key}={value}")
                    };
                }
            };
            field("model", done.model);
            if let Some(m) = meta {
                field("trace_id", m.trace_id.as_deref());
                field("user_id", m.user_id.as_deref());
                field("referer", m.origin_referer.as_deref());
                field("title", m.origin_title.as_deref());
                if m.tags
                    .iter()
                    .any(|tag| needs_quotes(tag) || tag.contains([',', ']']))
                {
                    let tags = log_json(&m.tags);
                    let _ = write!(line, " tags={tags}");
                } else if !m.tags.is_empty() {
                    let _ = write!(line, " tags=[{}]", m.tags.join(","));
                }
                if !m.extra.is_empty() {
                    // JSON delimits itself, so it needs no quoting.
                    line.push_str(" extra=");
                    line.push_str(&log_json(&m.extra));
                }
            }
            // Input and output as `tokens=in+out`; an answer that counts only one side (an
            // embedding has no output) names the side it counts.
            match (usage.input_tokens, usage.output_tokens) {
                (Some(input), Some(output)) => {
                    let _ = write!(line, " tokens={input}+{output}");
                }
                (Some(input), None) => {
                    let _ = write!(line, " input_tokens={input}");
                }
                (None, Some(output)) => {
                    let _ = write!(line, " output_tokens={output}");
                }
                (None, None) => {}
            }
            if let Some(ttft) = ttft_ms {
                let _ = write!(line, " ttft={ttft}ms");
            }
            let end = if done.completed {
                ""
            } else if done.failed {
                " (the response failed)"
            } else {
                " (client went away)"
            };
            let _ = write!(line, " {latency_ms}ms{end}");
            line
        }
    }
}
