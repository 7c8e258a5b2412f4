//! Reading token usage, model, id and finish reasons from responses as they stream by.
//!
//! A [`UsageReader`] is fed the response body frame by frame and never copies more than a bounded
//! part of it. Everything a response says about itself sits at its ends: `id` and `model` first, and
//! `usage` and the finish reasons last. So the reader reads the beginning (the first 64 KiB, or for a
//! stream until the first generated text, looked for up to 1 MiB in), then only keeps a window on the
//! last 64 KiB of frames
//! (shared, not copied) and reads that when the body ends. Per frame in between it does no more than
//! keep a reference, so it costs next to nothing on long streams.
//!
//! It understands the OpenAI shapes (chat completions, completions, embeddings, responses; streams
//! with `stream_options.include_usage`, and the Responses API's events, which wrap the response)
//! and the Anthropic messages shape (JSON and its `message_start` / `message_delta` events), as
//! OpenAI-compatible servers (Azure, vLLM; Groq, whose streams give their usage under `x_groq`)
//! send them too; Gemini's `GenerateContentResponse` (Google AI and Vertex AI: JSON, the
//! `alt=sse` stream of whole responses, each with the usage so far, and the JSON array a stream
//! without `alt=sse` answers with); and the JSON answer of Bedrock's Converse API (its
//! `converse-stream` is AWS's binary event stream, not read). Anything else yields an empty
//! [`ResponseInfo`]. An event too large to read whole (over 64 KiB) is skipped, but the usage at its
//! end is still read.
//!
//! ```
//! use bytes::Bytes;
//! use requesty_metadata::usage::UsageReader;
//!
//! let mut reader = UsageReader::new("text/event-stream").unwrap();
//! reader.feed(&Bytes::from_static(b"data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_"));
//! reader.feed(&Bytes::from_static(b"tokens\":19,\"completion_tokens\":6}}\r\n\r\ndata: [DONE]\n\n"));
//! let info = reader.finish();
//! assert_eq!(info.usage.input_tokens, Some(19));
//! assert_eq!(info.usage.output_tokens, Some(6));
//! assert!(info.done);
//! ```

mod json;
mod sse;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::VecDeque;

/// Token counts, as the provider reported them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Prompt tokens, cached ones included, as the OpenTelemetry GenAI conventions count them
    /// (all types of input tokens): `prompt_tokens`, or `input_tokens` (to which Anthropic's cache
    /// reads and writes are added, since it counts those apart), or Bedrock's `inputTokens` (to
    /// which its `cacheReadInputTokens` and `cacheWriteInputTokens` are added, likewise), or
    /// Gemini's `promptTokenCount` (which already holds its cached content) plus its
    /// `toolUsePromptTokenCount` (the results of the tools it ran itself, such as a search, which it
    /// reads as input but counts apart: its `totalTokenCount` is the sum of all four counts).
    pub input_tokens: Option<u64>,
    /// Generated tokens, reasoning ones included, as the conventions count them
    /// (`completion_tokens`, `output_tokens` or Bedrock's `outputTokens`; Gemini's
    /// `candidatesTokenCount` plus its `thoughtsTokenCount`, which it counts apart).
    pub output_tokens: Option<u64>,
    /// Prompt tokens served from the provider's cache (`prompt_tokens_details.cached_tokens`,
    /// `cache_read_input_tokens`, DeepSeek's `prompt_cache_hit_tokens`, Bedrock's
    /// `cacheReadInputTokens`, Gemini's `cachedContentTokenCount`; where one answer gives several,
    /// the first that is not `0`).
    pub cache_read_input_tokens: Option<u64>,
    /// Prompt tokens written to the provider's cache (`cache_creation_input_tokens`, Bedrock's
    /// `cacheWriteInputTokens`).
    pub cache_creation_input_tokens: Option<u64>,
    /// Generated tokens spent on reasoning, within `output_tokens`
    /// (`completion_tokens_details.reasoning_tokens`, the Responses API's
    /// `output_tokens_details.reasoning_tokens`, Gemini's `thoughtsTokenCount`).
    pub reasoning_output_tokens: Option<u64>,
}

/// What a response said about itself.
#[derive(Clone, Debug, Default, Eq)]
#[non_exhaustive]
pub struct ResponseInfo {
    /// The response id (`chatcmpl-…`, `msg_…`, Gemini's `responseId`; Bedrock's Converse API gives
    /// none).
    pub id: Option<String>,
    /// The model that answered (often more specific than the one requested; Gemini's
    /// `modelVersion`).
    pub model: Option<String>,
    /// Why generation stopped, one entry per choice, in the order choices first gave theirs (`stop`,
    /// `length`, `end_turn`, `tool_use`, Gemini's `STOP` or `MAX_TOKENS`, Bedrock's `stopReason`,
    /// …): two choices that both stopped give `["stop", "stop"]`, and a choice that gives its reason
    /// twice (a stream's usage chunk may repeat it) gives one.
    pub finish_reasons: Vec<String>,
    /// Token usage.
    pub usage: Usage,
    /// Whether a stream said it was finished (`data: [DONE]`, `message_stop`, the Responses API's
    /// `response.completed`, `.incomplete` or `.failed`); `false` for JSON.
    pub done: bool,
    /// The first error the body reported, by its type or code: a stream's error event (Anthropic's
    /// `overloaded_error`, an OpenAI `server_error`, the Responses API's `response.failed` or
    /// `error`, Hugging Face TGI's `error_type`; `"error"` for an error given only as a message),
    /// or a JSON error body's. A stream can fail this way after its `200` head.
    pub error: Option<String>,
    /// The choice each of `finish_reasons` belongs to (its `index`; `0` for a single message).
    reason_choices: Vec<u64>,
    /// The input tokens were counted apart from the cache's (Anthropic's and Bedrock's shapes): the
    /// cache's are added once the whole body is read, since a later event may give one count without
    /// the other.
    input_apart: bool,
}

/// Two readings are equal when they say the same; which choice each reason came from is how they
/// were read.
impl PartialEq for ResponseInfo {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.model == other.model
            && self.finish_reasons == other.finish_reasons
            && self.usage == other.usage
            && self.done == other.done
            && self.error == other.error
    }
}

impl ResponseInfo {
    /// Counts the cache's input tokens into `input_tokens` where the provider counted them apart.
    fn count_cached_input(&mut self) {
        if std::mem::take(&mut self.input_apart) {
            let u = &mut self.usage;
            if let Some(input) = u.input_tokens {
                u.input_tokens = Some(
                    input
                        .saturating_add(u.cache_read_input_tokens.unwrap_or(0))
                        .saturating_add(u.cache_creation_input_tokens.unwrap_or(0)),
                );
            }
        }
    }

    /// Notes `reason` for the choice `choice`: a later reason for the same choice replaces its
    /// earlier one.
    fn note_reason(&mut self, choice: u64, reason: &str) {
        match self.reason_choices.iter().position(|&c| c == choice) {
            Some(at) => {
                if self.finish_reasons[at] != reason {
                    self.finish_reasons[at] = reason.to_owned();
                }
            }
            None => {
                self.reason_choices.push(choice);
                self.finish_reasons.push(reason.to_owned());
            }
        }
    }
}

/// How much of each end of a body is read.
const KEEP: usize = 64 * 1024;

/// Reads a response body on the side; see [the module docs](self).
#[derive(Debug)]
pub struct UsageReader {
    kind: Kind,
    /// Whether the beginning has been read; later frames only go to the window.
    head_read: bool,
    window: Window,
}

// One reader per response, made once: boxing the larger variant would add an allocation to each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Kind {
    Json(json::JsonReader),
    Sse(sse::SseReader),
}

impl UsageReader {
    /// A reader for a response of this `Content-Type`, or `None` when the type is neither JSON nor
    /// server-sent events.
    pub fn new(content_type: &str) -> Option<Self> {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        let kind = if essence.eq_ignore_ascii_case("text/event-stream") {
            Kind::Sse(sse::SseReader::default())
        } else if crate::content::is_json_type(essence) {
            Kind::Json(json::JsonReader::default())
        } else {
            return None;
        };
        Some(Self {
            kind,
            head_read: false,
            window: Window::default(),
        })
    }

    /// Whether this reader reads a stream of events.
    pub fn is_stream(&self) -> bool {
        matches!(self.kind, Kind::Sse(_))
    }

    /// Reads the next frame of the body (cloning a `Bytes` is a reference count, not a copy).
    pub fn feed(&mut self, frame: &Bytes) {
        if self.head_read {
            self.window.push(frame);
            return;
        }
        self.head_read = match &mut self.kind {
            Kind::Json(reader) => {
                let rest = reader.feed(frame);
                if !rest.is_empty() {
                    self.window.push(&frame.slice(frame.len() - rest.len()..));
                }
                reader.full()
            }
            Kind::Sse(reader) => {
                reader.feed(frame);
                if reader.wraps_response {
                    // Its window also keeps the start of the event it may begin inside, which may
                    // follow on from a blank line that ends this frame.
                    self.window
                        .opened
                        .get_or_insert_with(EventStart::default)
                        .follow(frame);
                }
                reader.read_enough()
            }
        };
    }

    /// Whether generated text has been seen yet (streams only).
    pub fn saw_token(&self) -> bool {
        match &self.kind {
            Kind::Json(_) => false,
            Kind::Sse(reader) => reader.saw_token,
        }
    }

    /// What the body said, once it has ended (or as far as it got).
    pub fn finish(self) -> ResponseInfo {
        let (frames, dropped, opened) = self.window.into_frames();
        let mut info = match self.kind {
            Kind::Json(reader) => reader.finish(frames, dropped),
            Kind::Sse(mut reader) if !dropped => {
                // The window continues where the reader stopped: read on.
                for frame in &frames {
                    reader.feed(frame);
                }
                reader.finish()
            }
            Kind::Sse(reader) => {
                // The window starts mid-stream. The last events are the ones that matter (finish
                // reasons, usage, the end): read a short tail first, the whole window only if that
                // was not enough (a Gemini stream never says it ended), or if the window gives
                // finish reasons the tail did not read (another choice's, earlier, or one in the
                // event the tail begins inside).
                let (mut tail, reasons) = read_tail(&frames, SHORT_TAIL);
                if !tail.done || tail.usage == Usage::default() || reasons_in(&frames) > reasons {
                    tail = read_tail(&frames, usize::MAX).0;
                }
                let mut info = reader.finish();
                merge(&mut info, tail);
                // The event the window begins inside may be one that ends the stream (a Responses
                // API `response.completed` that repeats a long answer): its start says so.
                if opened.is_some_and(|start| sse::says_done(&start.bytes)) {
                    info.done = true;
                }
                info
            }
        };
        info.count_cached_input();
        info
    }
}

/// The last frames of a body, at least `KEEP` bytes of them when there are that many.
#[derive(Debug, Default)]
struct Window {
    frames: VecDeque<Bytes>,
    /// Small frames, copied together rather than kept one by one: a stream of tiny frames would
    /// otherwise mean thousands of entries, each holding on to the buffer it came from.
    small: BytesMut,
    /// Bytes in `frames` and `small`.
    len: usize,
    /// Whether frames were let go, so the window no longer follows on from the head.
    dropped: bool,
    /// A Responses API stream's: the start of the last event that began in the bytes let go.
    opened: Option<EventStart>,
}

/// The first bytes of an event whose start a stream's window let go.
#[derive(Debug)]
struct EventStart {
    bytes: Vec<u8>,
    /// Whether the bytes let go next still belong to the start (an event began, and fewer than
    /// [`sse::EVENT_HEAD`] of its bytes are here).
    open: bool,
    /// The last three bytes of the stream before the next ones noted (`\r\n` and the line end
    /// before it): a blank line may end across them, so that an event begins with the next bytes,
    /// or one or two bytes in.
    before: [u8; 3],
}

impl Default for EventStart {
    fn default() -> Self {
        Self {
            // Reserved whole, so that noting costs no allocation once the stream is under way.
            bytes: Vec::with_capacity(sse::EVENT_HEAD),
            open: false,
            before: [0; 3],
        }
    }
}

impl EventStart {
    /// Notes bytes the window lets go, in order: a stream's frames cost a backward search for
    /// their last blank line, which usually ends them.
    fn note(&mut self, bytes: &[u8]) {
        let at = sse::last_event_start(bytes).or_else(|| {
            // A blank line that the bytes before began: looked for in them and the first few here.
            let first = &bytes[..bytes.len().min(3)];
            let mut joint = [0; 6];
            joint[..3].copy_from_slice(&self.before);
            joint[3..3 + first.len()].copy_from_slice(first);
            sse::last_event_start(&joint[..3 + first.len()]).and_then(|at| at.checked_sub(3))
        });
        self.follow(bytes);
        if let Some(at) = at {
            self.bytes.clear();
            self.open = true;
            self.extend(&bytes[at..]);
        } else if self.open {
            self.extend(bytes);
        }
    }

    /// Notes that `bytes` came next in the stream, for where the next ones may begin an event.
    fn follow(&mut self, bytes: &[u8]) {
        let [_, x, y] = self.before;
        self.before = match *bytes {
            [.., a, b, c] => [a, b, c],
            [b, c] => [y, b, c],
            [c] => [x, y, c],
            [] => return,
        };
    }

    fn extend(&mut self, bytes: &[u8]) {
        let room = sse::EVENT_HEAD - self.bytes.len();
        self.bytes
            .extend_from_slice(&bytes[..room.min(bytes.len())]);
        self.open = self.bytes.len() < sse::EVENT_HEAD;
    }
}

/// Frames shorter than this are copied into [`Window::small`].
const SMALL_FRAME: usize = 256;

/// Copied small frames become one entry of [`Window::frames`] at this size.
const SMALL_RUN: usize = 4096;

impl Window {
    fn push(&mut self, frame: &Bytes) {
        if frame.len() < SMALL_FRAME {
            self.small.extend_from_slice(frame);
            self.len += frame.len();
            if self.small.len() >= SMALL_RUN {
                self.seal_small();
            }
            return;
        }
        self.seal_small();
        let frame = if frame.len() > KEEP {
            // Keep a copy of the end only, not the whole allocation behind a large frame.
            if let Some(opened) = &mut self.opened {
                for old in &self.frames {
                    opened.note(old);
                }
                opened.note(&frame[..frame.len() - KEEP]);
            }
            self.frames.clear();
            self.len = 0;
            self.dropped = true;
            Bytes::copy_from_slice(&frame[frame.len() - KEEP..])
        } else {
            frame.clone()
        };
        self.len += frame.len();
        self.frames.push_back(frame);
        self.evict();
    }

    /// Moves the copied small frames into `frames`, as one entry.
    fn seal_small(&mut self) {
        if !self.small.is_empty() {
            self.frames.push_back(self.small.split().freeze());
            self.evict();
        }
    }

    /// Lets go of the oldest frames while the rest still make `KEEP` bytes.
    fn evict(&mut self) {
        while let Some(front) = self.frames.front() {
            if self.len - front.len() < KEEP {
                break;
            }
            self.len -= front.len();
            if let Some(opened) = &mut self.opened {
                opened.note(front);
            }
            self.frames.pop_front();
            self.dropped = true;
        }
    }

    /// The frames in order, whether frames were let go, and a stream's start of the event the
    /// window may begin inside.
    fn into_frames(mut self) -> (VecDeque<Bytes>, bool, Option<EventStart>) {
        self.seal_small();
        (self.frames, self.dropped, self.opened)
    }
}

/// Reads the events in the last `limit` bytes of `frames`, from the first whole one; with how many
/// finish reasons they gave.
fn read_tail(frames: &VecDeque<Bytes>, limit: usize) -> (ResponseInfo, usize) {
    let mut reader = sse::SseReader::resynchronizing();
    let mut skip = frames
        .iter()
        .map(Bytes::len)
        .sum::<usize>()
        .saturating_sub(limit);
    for frame in frames {
        if skip >= frame.len() {
            skip -= frame.len();
            continue;
        }
        reader.feed(&frame[skip..]);
        skip = 0;
    }
    reader.finish_counted()
}

/// The end of a long stream read first: its usage and `[DONE]`, and with one choice its finish.
const SHORT_TAIL: usize = 4096;

/// How many finish reasons `frames` give, also those split between frames (however small).
fn reasons_in(frames: &VecDeque<Bytes>) -> usize {
    /// The longest pattern counted: a reason split between frames lies within this many bytes of
    /// the edge on either side.
    const EDGE: usize = 16;
    debug_assert!(sse::REASON_GIVEN.iter().all(|given| given.len() <= EDGE));
    let mut count = 0;
    // The last bytes before the current frame, however many frames they came from.
    let mut carry = [0u8; EDGE];
    let mut carried = 0;
    for frame in frames {
        count += sse::count_reasons(frame);
        // A reason that starts in `carry` and ends in this frame is counted here, once.
        let mut edge = [0u8; 2 * EDGE];
        let after = &frame[..frame.len().min(EDGE)];
        edge[..carried].copy_from_slice(&carry[EDGE - carried..]);
        edge[carried..carried + after.len()].copy_from_slice(after);
        let joined = &edge[..carried + after.len()];
        count += memchr::memchr_iter(b'_', &joined[..carried])
            .filter(|&at| {
                sse::REASON_GIVEN
                    .iter()
                    .any(|given| joined[at..].starts_with(given) && at + given.len() > carried)
            })
            .count();
        // Slide: the carry now ends with this frame's last bytes.
        let keep = (carried + frame.len()).min(EDGE);
        let mut next = [0u8; EDGE];
        let from_frame = frame.len().min(keep);
        let from_carry = keep - from_frame;
        next[EDGE - keep..EDGE - from_frame].copy_from_slice(&carry[EDGE - from_carry..]);
        next[EDGE - from_frame..].copy_from_slice(&frame[frame.len() - from_frame..]);
        carry = next;
        carried = keep;
    }
    count
}

/// Adds what the end of a stream said to what its beginning said.
fn merge(info: &mut ResponseInfo, tail: ResponseInfo) {
    info.id = info.id.take().or(tail.id);
    info.model = info.model.take().or(tail.model);
    info.error = info.error.take().or(tail.error);
    if tail.usage.input_tokens.is_some() {
        // The tail's input count wins below, and with it its shape.
        info.input_apart = tail.input_apart;
    }
    for (choice, reason) in tail.reason_choices.iter().zip(&tail.finish_reasons) {
        info.note_reason(*choice, reason);
    }
    let (u, t) = (&mut info.usage, tail.usage);
    u.input_tokens = t.input_tokens.or(u.input_tokens);
    u.output_tokens = t.output_tokens.or(u.output_tokens);
    u.cache_read_input_tokens = t.cache_read_input_tokens.or(u.cache_read_input_tokens);
    u.cache_creation_input_tokens = t
        .cache_creation_input_tokens
        .or(u.cache_creation_input_tokens);
    u.reasoning_output_tokens = t.reasoning_output_tokens.or(u.reasoning_output_tokens);
    // The beginning may already have said so: the first text and the start of a last event too
    // large for the window can come in one frame.
    info.done |= tail.done;
}

/// Reads one JSON document (a whole response, or one event) into `info`: through typed fields that
/// skip everything else unbuilt (the generated text is never allocated), or, for a shape they do not
/// fit, through a `serde_json::Value`.
fn read_document(bytes: &[u8], info: &mut ResponseInfo) {
    if bytes.trim_ascii_start().starts_with(b"[") {
        read_array(bytes, info);
        return;
    }
    match serde_json::from_slice::<Document<'_>>(bytes) {
        Ok(document) => document.absorb(info),
        Err(_) => {
            if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
                absorb(&value, info);
            }
        }
    }
}

/// Reads a JSON array of responses: Gemini's `streamGenerateContent` without `alt=sse` answers with
/// its chunks in one array, each a whole response whose usage counts all so far, so the last one
/// read wins. Only elements in Gemini's shape are read (or an error): an array some other API
/// answers with says nothing about a generation.
fn read_array(bytes: &[u8], info: &mut ResponseInfo) {
    match serde_json::from_slice::<Vec<Document<'_>>>(bytes) {
        Ok(documents) => {
            for document in documents {
                if document.is_gemini() || document.error.is_some() {
                    document.absorb(info);
                }
            }
        }
        Err(_) => {
            if let Ok(Value::Array(values)) = serde_json::from_slice::<Value>(bytes) {
                for value in &values {
                    let gemini = ["candidates", "usageMetadata", "modelVersion", "responseId"]
                        .iter()
                        .any(|key| value.get(key).is_some());
                    if gemini || value.get("error").is_some_and(Value::is_object) {
                        absorb(value, info);
                    }
                }
            }
        }
    }
}

/// The fields of a response or event that matter here, borrowed where they need no unescaping.
#[derive(Deserialize)]
struct Document<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    #[serde(default)]
    usage: Option<Counts>,
    /// Groq's extension: its streams give their usage here, in the last chunk.
    #[serde(default)]
    x_groq: Option<Groq>,
    /// Anthropic's `message_start` wraps the message.
    #[serde(borrow, default)]
    message: Option<Box<Document<'a>>>,
    /// The Responses API's stream events wrap the response.
    #[serde(borrow, default)]
    response: Option<Box<Document<'a>>>,
    /// An error object: Anthropic's error event, OpenAI's error body or stream chunk, a failed
    /// Responses API response.
    #[serde(borrow, default)]
    error: Option<ErrorObject<'a>>,
    /// The event's type: the Responses API's `error` event gives its code beside it.
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
    /// Gemini's response id.
    #[serde(borrow, default, rename = "responseId")]
    response_id: Option<Cow<'a, str>>,
    /// Gemini's name for the model that answered.
    #[serde(borrow, default, rename = "modelVersion")]
    model_version: Option<Cow<'a, str>>,
    /// Gemini's candidates, one per requested answer.
    #[serde(borrow, default)]
    candidates: Option<Vec<Candidate<'a>>>,
    /// Gemini's token counts.
    #[serde(default, rename = "usageMetadata")]
    usage_metadata: Option<GeminiCounts>,
    /// Bedrock's Converse API: why its one message ended.
    #[serde(borrow, default, rename = "stopReason")]
    stop_reason_camel: Option<Cow<'a, str>>,
}

/// A Gemini candidate: its `finishReason` (`STOP`, `MAX_TOKENS`, `SAFETY`, …), given with its last
/// chunk.
#[derive(Deserialize)]
struct Candidate<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default, rename = "finishReason")]
    finish_reason: Option<Cow<'a, str>>,
}

/// Gemini's `usageMetadata`. Its counts do not overlap: `totalTokenCount` is the sum of the prompt's,
/// the tool-use prompt's, the candidates' and the thoughts' (the cached content is within the
/// prompt's). A count of `0` may be left out.
#[derive(Deserialize)]
struct GeminiCounts {
    #[serde(rename = "promptTokenCount")]
    prompt: Option<u64>,
    #[serde(rename = "toolUsePromptTokenCount")]
    tool_use_prompt: Option<u64>,
    #[serde(rename = "candidatesTokenCount")]
    candidates: Option<u64>,
    #[serde(rename = "thoughtsTokenCount")]
    thoughts: Option<u64>,
    #[serde(rename = "cachedContentTokenCount")]
    cached_content: Option<u64>,
}

impl GeminiCounts {
    /// Adds one response's counts to what earlier ones said: each chunk of a stream counts all so
    /// far, so a later count replaces an earlier one.
    fn add_to(self, info: &mut ResponseInfo) {
        let sum = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
        };
        let u = &mut info.usage;
        if let Some(input) = sum(self.prompt, self.tool_use_prompt) {
            // The cached content is within the prompt's count.
            info.input_apart = false;
            u.input_tokens = Some(input);
        }
        u.output_tokens = sum(self.candidates, self.thoughts).or(u.output_tokens);
        u.reasoning_output_tokens = self.thoughts.or(u.reasoning_output_tokens);
        u.cache_read_input_tokens = self.cached_content.or(u.cache_read_input_tokens);
    }

    /// The counts of a `usageMetadata` object read as a `Value`.
    fn of(value: &Value) -> Self {
        let count = |key: &str| value.get(key).and_then(Value::as_u64);
        Self {
            prompt: count("promptTokenCount"),
            tool_use_prompt: count("toolUsePromptTokenCount"),
            candidates: count("candidatesTokenCount"),
            thoughts: count("thoughtsTokenCount"),
            cached_content: count("cachedContentTokenCount"),
        }
    }
}

/// Groq's `x_groq` object.
#[derive(Deserialize)]
struct Groq {
    #[serde(default)]
    usage: Option<Counts>,
}

/// What names an error: its `type` (Anthropic, OpenAI), its `code` (the Responses API) or its
/// `status` (Google's, whose `code` is the HTTP status as a number).
#[derive(Deserialize)]
struct ErrorObject<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
}

impl ResponseInfo {
    /// Notes an error the body reported, by the first name it has; the first error is kept.
    fn note_error(&mut self, names: [Option<&str>; 2]) {
        if self.error.is_none() {
            let name = names.into_iter().flatten().find(|name| !name.is_empty());
            self.error = Some(name.unwrap_or("error").to_owned());
        }
    }
}

/// An OpenAI choice. Other fields, such as vLLM's `stop_reason` (the stop string or token that
/// matched, not a reason), are not read.
#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

/// Anthropic's `message_delta.delta`. The Responses API's text deltas are strings, not objects.
#[derive(Deserialize)]
#[serde(untagged)]
enum Delta<'a> {
    Message {
        #[serde(borrow, default)]
        stop_reason: Option<Cow<'a, str>>,
    },
    Other(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct Counts {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    /// DeepSeek's count of the prompt tokens its cache served (within its `prompt_tokens`).
    prompt_cache_hit_tokens: Option<u64>,
    /// Bedrock's Converse API: its input count leaves out the cache's reads and writes, as
    /// Anthropic's does.
    #[serde(rename = "inputTokens")]
    input_tokens_camel: Option<u64>,
    #[serde(rename = "outputTokens")]
    output_tokens_camel: Option<u64>,
    #[serde(rename = "cacheReadInputTokens")]
    cache_read_input_tokens_camel: Option<u64>,
    #[serde(rename = "cacheWriteInputTokens")]
    cache_write_input_tokens_camel: Option<u64>,
    prompt_tokens_details: Option<Details>,
    input_tokens_details: Option<Details>,
    completion_tokens_details: Option<Details>,
    output_tokens_details: Option<Details>,
}

/// A `…_tokens_details` object: the cache's share of the input, the reasoning's of the output.
#[derive(Deserialize)]
struct Details {
    cached_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
}

impl Counts {
    /// Adds one document's counts to what earlier ones said (a later count replaces an earlier).
    fn add_to(self, info: &mut ResponseInfo) {
        let cached = |d: &Option<Details>| d.as_ref().and_then(|d| d.cached_tokens);
        let reasoning = |d: &Option<Details>| d.as_ref().and_then(|d| d.reasoning_tokens);
        // Anthropic's and Bedrock's shape: `input_tokens` without the cache reads and writes,
        // which it gives beside it (OpenAI's counts include theirs, detailed under `…_details`).
        // The input count that counts is the last one given, so its shape is the one that decides.
        let input = self
            .prompt_tokens
            .or(self.input_tokens)
            .or(self.input_tokens_camel);
        if input.is_some() {
            info.input_apart = self.prompt_tokens.is_none() && self.input_tokens_details.is_none();
        }
        let u = &mut info.usage;
        u.output_tokens = self
            .completion_tokens
            .or(self.output_tokens)
            .or(self.output_tokens_camel)
            .or(u.output_tokens);
        // Gateways that translate one shape into another give the cache reads under several
        // names, one of them sometimes a `0` the translation did not fill: a count is what one of
        // them says it is, and a zero only where none says more.
        let reads = [
            cached(&self.prompt_tokens_details),
            cached(&self.input_tokens_details),
            self.cache_read_input_tokens,
            self.prompt_cache_hit_tokens,
            self.cache_read_input_tokens_camel,
        ];
        u.cache_read_input_tokens = reads
            .into_iter()
            .flatten()
            .find(|&n| n > 0)
            .or(reads.into_iter().flatten().next())
            .or(u.cache_read_input_tokens);
        u.cache_creation_input_tokens = self
            .cache_creation_input_tokens
            .or(self.cache_write_input_tokens_camel)
            .or(u.cache_creation_input_tokens);
        u.reasoning_output_tokens = reasoning(&self.completion_tokens_details)
            .or(reasoning(&self.output_tokens_details))
            .or(u.reasoning_output_tokens);
        u.input_tokens = input.or(u.input_tokens);
    }
}

impl Document<'_> {
    /// Whether the document is in Gemini's shape (a `GenerateContentResponse`).
    fn is_gemini(&self) -> bool {
        self.candidates.is_some()
            || self.usage_metadata.is_some()
            || self.model_version.is_some()
            || self.response_id.is_some()
    }

    fn absorb(self, info: &mut ResponseInfo) {
        // Some streams open with an empty id and model (Azure's prompt filter results).
        let named = |text: &Cow<'_, str>| !text.is_empty();
        if info.id.is_none() {
            info.id = self
                .id
                .or(self.response_id)
                .filter(named)
                .map(Cow::into_owned);
        }
        if info.model.is_none() {
            info.model = self
                .model
                .or(self.model_version)
                .filter(named)
                .map(Cow::into_owned);
        }
        let delta = match self.delta {
            Some(Delta::Message { stop_reason }) => stop_reason,
            _ => None,
        };
        for (at, choice) in self.choices.into_iter().flatten().enumerate() {
            if let Some(reason) = choice.finish_reason {
                info.note_reason(choice.index.unwrap_or(at as u64), &reason);
            }
        }
        for (at, candidate) in self.candidates.into_iter().flatten().enumerate() {
            if let Some(reason) = candidate.finish_reason {
                info.note_reason(candidate.index.unwrap_or(at as u64), &reason);
            }
        }
        // Anthropic's one message, Bedrock's.
        for reason in [self.stop_reason, delta, self.stop_reason_camel]
            .into_iter()
            .flatten()
        {
            info.note_reason(0, &reason);
        }
        if let Some(counts) = self.usage.or(self.x_groq.and_then(|groq| groq.usage)) {
            counts.add_to(info);
        }
        if let Some(counts) = self.usage_metadata {
            counts.add_to(info);
        }
        if let Some(error) = &self.error {
            let code = error.code.as_deref().or(error.status.as_deref());
            info.note_error([error.kind.as_deref(), code]);
        } else if self.kind.as_deref() == Some("error") {
            info.note_error([self.code.as_deref(), None]);
        }
        for inner in [self.message, self.response].into_iter().flatten() {
            inner.absorb(info);
        }
    }
}

/// [`read_document`] for a document already parsed, or one whose shape the typed fields do not fit.
/// Later documents override earlier counts: a stream's last usage is its total.
fn absorb(value: &Value, info: &mut ResponseInfo) {
    let text = |v: &Value| v.as_str().filter(|t| !t.is_empty()).map(str::to_owned);
    if info.id.is_none() {
        info.id = value
            .get("id")
            .and_then(text)
            .or_else(|| value.get("responseId").and_then(text));
    }
    if info.model.is_none() {
        info.model = value
            .get("model")
            .and_then(text)
            .or_else(|| value.get("modelVersion").and_then(text));
    }
    // OpenAI's choices and Gemini's candidates.
    for (key, reason_key) in [("choices", "finish_reason"), ("candidates", "finishReason")] {
        if let Some(choices) = value.get(key).and_then(Value::as_array) {
            for (at, choice) in choices.iter().enumerate() {
                if let Some(reason) = choice.get(reason_key).and_then(Value::as_str) {
                    let index = choice.get("index").and_then(Value::as_u64);
                    info.note_reason(index.unwrap_or(at as u64), reason);
                }
            }
        }
    }
    fn name<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
        v.get(key).and_then(Value::as_str)
    }
    if let Some(error) = value.get("error").filter(|e| e.is_object()) {
        let code = name(error, "code").or_else(|| name(error, "status"));
        info.note_error([name(error, "type"), code]);
    } else if value
        .get("error")
        .and_then(Value::as_str)
        .is_some_and(|message| !message.is_empty())
    {
        // Hugging Face TGI's shape: the error a message, its kind in `error_type`.
        info.note_error([name(value, "error_type"), None]);
    } else if name(value, "type") == Some("error") {
        info.note_error([name(value, "code"), None]);
    }
    let delta = value
        .get("delta")
        .and_then(|delta| delta.get("stop_reason"));
    let bedrock = value.get("stopReason");
    for reason in [value.get("stop_reason"), delta, bedrock]
        .into_iter()
        .flatten()
    {
        if let Some(reason) = reason.as_str() {
            info.note_reason(0, reason);
        }
    }
    let usage = value.get("usage").filter(|u| u.is_object()).or_else(|| {
        // Groq's streams give theirs under `x_groq`.
        value
            .get("x_groq")
            .and_then(|groq| groq.get("usage"))
            .filter(|u| u.is_object())
    });
    if let Some(usage) = usage {
        let count = |key: &str| usage.get(key).and_then(Value::as_u64);
        let details = |key: &str| {
            usage.get(key).filter(|d| !d.is_null()).map(|d| Details {
                cached_tokens: d.get("cached_tokens").and_then(Value::as_u64),
                reasoning_tokens: d.get("reasoning_tokens").and_then(Value::as_u64),
            })
        };
        Counts {
            prompt_tokens: count("prompt_tokens"),
            completion_tokens: count("completion_tokens"),
            input_tokens: count("input_tokens"),
            output_tokens: count("output_tokens"),
            cache_read_input_tokens: count("cache_read_input_tokens"),
            cache_creation_input_tokens: count("cache_creation_input_tokens"),
            prompt_cache_hit_tokens: count("prompt_cache_hit_tokens"),
            input_tokens_camel: count("inputTokens"),
            output_tokens_camel: count("outputTokens"),
            cache_read_input_tokens_camel: count("cacheReadInputTokens"),
            cache_write_input_tokens_camel: count("cacheWriteInputTokens"),
            prompt_tokens_details: details("prompt_tokens_details"),
            input_tokens_details: details("input_tokens_details"),
            completion_tokens_details: details("completion_tokens_details"),
            output_tokens_details: details("output_tokens_details"),
        }
        .add_to(info);
    }
    if let Some(usage) = value.get("usageMetadata").filter(|u| u.is_object()) {
        GeminiCounts::of(usage).add_to(info);
    }
    // Anthropic's first event wraps the message; the Responses API's events wrap the response.
    for key in ["message", "response"] {
        if let Some(inner) = value.get(key).filter(|m| m.is_object()) {
            absorb(inner, info);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAI_JSON: &[u8] = include_bytes!("../../tests/data/openai-chat-response.json");
    const OPENAI_SSE: &[u8] = include_bytes!("../../tests/data/openai-chat-stream.sse");
    const ANTHROPIC_JSON: &[u8] =
        include_bytes!("../../tests/data/anthropic-messages-response.json");
    const ANTHROPIC_SSE: &[u8] = include_bytes!("../../tests/data/anthropic-messages-stream.sse");

    fn read(content_type: &str, frames: &[&[u8]]) -> (ResponseInfo, bool) {
        let mut reader = UsageReader::new(content_type).unwrap();
        for frame in frames {
            reader.feed(&Bytes::copy_from_slice(frame));
        }
        let token = reader.saw_token();
        (reader.finish(), token)
    }

    fn openai() -> ResponseInfo {
        ResponseInfo {
            id: Some("chatcmpl-AbC123".into()),
            model: Some("gpt-4o-2024-08-06".into()),
            finish_reasons: vec!["stop".into()],
            usage: Usage {
                input_tokens: Some(19),
                output_tokens: Some(6),
                cache_read_input_tokens: Some(0),
                cache_creation_input_tokens: None,
                reasoning_output_tokens: Some(0),
            },
            done: true,
            ..ResponseInfo::default()
        }
    }

    fn anthropic() -> ResponseInfo {
        ResponseInfo {
            id: Some("msg_01XyZ".into()),
            model: Some("claude-sonnet-4-5-20250929".into()),
            finish_reasons: vec!["end_turn".into()],
            usage: Usage {
                input_tokens: Some(21),
                output_tokens: Some(7),
                cache_read_input_tokens: Some(0),
                cache_creation_input_tokens: Some(0),
                reasoning_output_tokens: None,
            },
            done: true,
            ..ResponseInfo::default()
        }
    }

    /// Readings are compared whole, here and by callers: two that differ in anything they say are
    /// not equal, whichever field it is. Which choice each reason came from, and how the input was
    /// counted, are how they were read, and are not compared.
    #[test]
    fn readings_differ_when_any_field_they_give_differs() {
        let base = openai();
        let changes: [fn(&mut ResponseInfo); 6] = [
            |info| info.id = None,
            |info| info.model = None,
            |info| info.finish_reasons.push("length".into()),
            |info| info.usage.output_tokens = None,
            |info| info.done = false,
            |info| info.error = Some("server_error".into()),
        ];
        for (field, change) in changes.iter().enumerate() {
            let mut other = base.clone();
            change(&mut other);
            assert_ne!(other, base, "field {field}");
            assert_ne!(base, other, "field {field}");
        }
        let same = ResponseInfo {
            reason_choices: vec![3],
            input_apart: true,
            ..base.clone()
        };
        assert_eq!(same, base);
    }

    #[test]
    fn recorded_json_responses() {
        let (info, _) = read("application/json", &[OPENAI_JSON]);
        assert_eq!(
            info,
            ResponseInfo {
                id: Some("chatcmpl-AbC124".into()),
                done: false,
                ..openai()
            }
        );
        let (info, _) = read("application/json; charset=utf-8", &[ANTHROPIC_JSON]);
        assert_eq!(
            info,
            ResponseInfo {
                done: false,
                ..anthropic()
            }
        );
    }

    #[test]
    fn recorded_streams_split_at_every_byte_position() {
        for (stream, want) in [(OPENAI_SSE, openai()), (ANTHROPIC_SSE, anthropic())] {
            let crlf: Vec<u8> = stream
                .split(|&b| b == b'\n')
                .collect::<Vec<_>>()
                .join(&b"\r\n"[..]);
            let cr: Vec<u8> = stream
                .iter()
                .map(|&b| if b == b'\n' { b'\r' } else { b })
                .collect();
            for body in [stream.to_vec(), crlf, cr] {
                for at in 0..=body.len() {
                    let (info, token) = read("text/event-stream", &[&body[..at], &body[at..]]);
                    assert_eq!(info, want, "split at {at}");
                    assert!(token);
                }
                // And one byte per frame.
                let bytes: Vec<&[u8]> = body.chunks(1).collect();
                assert_eq!(read("text/event-stream", &bytes).0, want);
            }
        }
    }

    #[test]
    fn comments_keep_alives_and_unknown_fields_are_skipped() {
        let body = b": keep-alive\n\nid: 7\nretry: 100\nevent: ping\ndata: {\"type\":\"ping\"}\n\n:\n\ndata: [DONE]\n\n";
        let (info, token) = read("text/event-stream", &[body]);
        assert!(info.done && !token);
        assert_eq!(info.usage, Usage::default());
    }

    #[test]
    fn a_stream_cut_mid_event_keeps_what_came_before() {
        let cut = &OPENAI_SSE[..OPENAI_SSE.len() / 2];
        let (info, token) = read("text/event-stream", &[cut]);
        assert!(!info.done && token);
        assert_eq!(info.model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(info.usage.input_tokens, None);
    }

    #[test]
    fn a_long_stream_is_read_at_its_ends() {
        let mut body = String::from("data: {\"id\":\"c9\",\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n");
        for i in 0..2000 {
            body.push_str(&format!("data: {{\"id\":\"c9\",\"choices\":[{{\"delta\":{{\"content\":\"word {i} \"}},\"finish_reason\":null}}],\"usage\":null}}\n\n"));
        }
        body.push_str(
            "data: {\"id\":\"c9\",\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
        );
        body.push_str("data: {\"id\":\"c9\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2000}}\n\ndata: [DONE]\n\n");
        let body = Bytes::from(body);
        assert!(body.len() > 3 * KEEP);
        for frame in [1, 1024, 4096, 100_000] {
            let mut reader = UsageReader::new("text/event-stream").unwrap();
            for at in (0..body.len()).step_by(frame) {
                reader.feed(&body.slice(at..body.len().min(at + frame)));
                assert!(reader.window.len <= 2 * KEEP);
                // Tiny frames are kept a few kilobytes to an entry, not one by one.
                if frame < SMALL_FRAME {
                    assert!(reader.window.frames.len() <= 2 * KEEP / SMALL_RUN + 2);
                }
            }
            assert!(reader.window.dropped);
            let info = reader.finish();
            assert_eq!(info.id.as_deref(), Some("c9"), "{frame}");
            assert_eq!(info.model.as_deref(), Some("gpt-4o"));
            assert_eq!(info.finish_reasons, ["length"]);
            assert_eq!(info.usage.input_tokens, Some(5));
            assert_eq!(info.usage.output_tokens, Some(2000));
            assert!(info.done);
        }
    }

    /// A frame larger than the window is not kept whole: only a copy of its last `KEEP` bytes is,
    /// where the stream's end is read from.
    #[test]
    fn a_frame_larger_than_the_window_keeps_a_copy_of_its_end_only() {
        let mut reader = UsageReader::new("text/event-stream").unwrap();
        reader.feed(&Bytes::from_static(
            b"data: {\"id\":\"c5\",\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        ));
        assert!(reader.saw_token());
        let mut body = String::new();
        while body.len() < 3 * KEEP {
            body.push_str("data: {\"choices\":[{\"delta\":{\"content\":\" w\"}}]}\n\n");
        }
        body.push_str("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":7000}}\n\ndata: [DONE]\n\n");
        let body = Bytes::from(body);
        reader.feed(&body);
        assert_eq!(reader.window.len, KEEP);
        let kept: Vec<u8> = reader.window.frames.iter().flatten().copied().collect();
        assert_eq!(kept, body[body.len() - KEEP..]);
        let info = reader.finish();
        assert_eq!(info.usage.output_tokens, Some(7000));
        assert!(info.done);
    }

    /// The window lets frames go only while the rest still make `KEEP` bytes: a frame of exactly
    /// that size lets none go, and a later one as large all before it.
    #[test]
    fn the_window_keeps_the_last_keep_bytes_and_not_a_frame_more() {
        let mut window = Window::default();
        window.push(&Bytes::from(vec![b'a'; KEEP]));
        window.push(&Bytes::from(vec![b'b'; SMALL_FRAME]));
        assert!(!window.dropped);
        assert_eq!(window.len, KEEP + SMALL_FRAME);
        window.push(&Bytes::from(vec![b'c'; KEEP]));
        assert!(window.dropped);
        assert_eq!(window.len, KEEP);
        assert_eq!(window.frames.len(), 1);
        assert!(window.frames[0].iter().all(|&b| b == b'c'));
    }

    #[test]
    fn the_first_text_is_found_after_a_long_reasoning_preamble() {
        let mut body = String::from(
            "data: {\"id\":\"r1\",\"model\":\"deepseek-r1\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        );
        while body.len() < 3 * KEEP {
            body.push_str(
                "data: {\"choices\":[{\"delta\":{\"reasoning_content\":\"let me think \"}}]}\n\n",
            );
        }
        let mut reader = UsageReader::new("text/event-stream").unwrap();
        reader.feed(&Bytes::from(body));
        assert!(!reader.saw_token());
        reader.feed(&Bytes::from_static(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        ));
        assert!(reader.saw_token());
        // Found, the reader goes back to keeping a window; the end is read as usual.
        reader.feed(&Bytes::from_static(
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":9}}\n\ndata: [DONE]\n\n",
        ));
        let info = reader.finish();
        assert_eq!(info.id.as_deref(), Some("r1"));
        assert_eq!(info.usage.output_tokens, Some(9));
        assert!(info.done);
    }

    #[test]
    fn a_shape_the_typed_fields_do_not_fit_is_read_all_the_same() {
        // A numeric id and a float count do not fit the typed fields; the rest still counts.
        let body = br#"{"id":7,"model":"m","usage":{"prompt_tokens":3,"completion_tokens":2.0},"choices":[{"finish_reason":"stop"}]}"#;
        let (info, _) = read("application/json", &[body]);
        assert_eq!(info.id, None);
        assert_eq!(info.model.as_deref(), Some("m"));
        assert_eq!(info.usage.input_tokens, Some(3));
        assert_eq!(info.usage.output_tokens, None);
        assert_eq!(info.finish_reasons, ["stop"]);
    }

    /// A document the typed fields do not fit is read through a `Value`: its usage must count the
    /// same as through the typed fields, where a `null` token details object is no details at all
    /// (so Anthropic's shape still adds its cache reads to the input).
    #[test]
    fn usage_reads_the_same_whether_or_not_the_typed_fields_fit() {
        for usage in [
            r#"{"input_tokens":10,"cache_read_input_tokens":5,"input_tokens_details":null}"#,
            r#"{"input_tokens":10,"cache_read_input_tokens":5,"prompt_tokens_details":null}"#,
            r#"{"input_tokens":37,"input_tokens_details":{"cached_tokens":5},"output_tokens":11}"#,
            r#"{"prompt_tokens":19,"prompt_tokens_details":{"cached_tokens":3},"completion_tokens":6}"#,
            r#"{"prompt_tokens":19,"prompt_tokens_details":null,"completion_tokens":6}"#,
        ] {
            let typed = format!(r#"{{"id":"msg_1","usage":{usage}}}"#);
            // A numeric id does not fit the typed fields.
            let untyped = format!(r#"{{"id":7,"usage":{usage}}}"#);
            assert!(serde_json::from_str::<Document<'_>>(&untyped).is_err());
            let (want, _) = read("application/json", &[typed.as_bytes()]);
            let (got, _) = read("application/json", &[untyped.as_bytes()]);
            assert_eq!(got.usage, want.usage, "{usage}");
        }
        let anthropic = br#"{"id":7,"usage":{"input_tokens":10,"cache_read_input_tokens":5,"input_tokens_details":null}}"#;
        assert_eq!(
            read("application/json", &[anthropic]).0.usage.input_tokens,
            Some(15)
        );
    }

    /// Reasoning tokens, within the output tokens, as chat completions and the Responses API detail
    /// them; a later document's count replaces an earlier one's, as the other counts do.
    #[test]
    fn reasoning_tokens_are_read_from_the_output_details() {
        for usage in [
            r#"{"prompt_tokens":9,"completion_tokens":50,"completion_tokens_details":{"reasoning_tokens":32}}"#,
            r#"{"input_tokens":9,"output_tokens":50,"output_tokens_details":{"reasoning_tokens":32}}"#,
        ] {
            let typed = format!(r#"{{"id":"r-1","usage":{usage}}}"#);
            let untyped = format!(r#"{{"id":1,"usage":{usage}}}"#);
            for body in [typed, untyped] {
                let usage_read = read("application/json", &[body.as_bytes()]).0.usage;
                assert_eq!(usage_read.reasoning_output_tokens, Some(32), "{body}");
                assert_eq!(usage_read.output_tokens, Some(50), "{body}");
            }
        }
        let plain = br#"{"id":"r-1","usage":{"prompt_tokens":9,"completion_tokens":50}}"#;
        assert_eq!(
            read("application/json", &[plain])
                .0
                .usage
                .reasoning_output_tokens,
            None
        );
    }

    /// One answer naming its cache reads twice (a gateway's translation of Anthropic's answer into
    /// OpenAI's shape, say), once as a `0` left unfilled: the count is the one that says more, in
    /// either order; a zero stands where it is all there is.
    #[test]
    fn a_zero_beside_a_cache_count_under_another_name_does_not_hide_it() {
        for usage in [
            r#"{"prompt_tokens":100,"prompt_tokens_details":{"cached_tokens":0},"cache_read_input_tokens":60,"completion_tokens":5}"#,
            r#"{"prompt_tokens":100,"prompt_tokens_details":{"cached_tokens":60},"cache_read_input_tokens":0,"completion_tokens":5}"#,
            r#"{"prompt_tokens":100,"prompt_tokens_details":{"cached_tokens":0},"prompt_cache_hit_tokens":60,"completion_tokens":5}"#,
        ] {
            let body = format!(r#"{{"id":"chatcmpl-1","usage":{usage}}}"#);
            let usage_read = read("application/json", &[body.as_bytes()]).0.usage;
            assert_eq!(usage_read.cache_read_input_tokens, Some(60), "{usage}");
            assert_eq!(usage_read.input_tokens, Some(100), "{usage}");
        }
        let zero = br#"{"id":"chatcmpl-1","usage":{"prompt_tokens":100,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens":5}}"#;
        assert_eq!(
            read("application/json", &[zero])
                .0
                .usage
                .cache_read_input_tokens,
            Some(0)
        );
    }

    /// A frame of exactly the window's size lets nothing go: a JSON answer of twice the start read,
    /// in two such frames, is still read whole, also a finish reason that straddles them.
    #[test]
    fn a_json_answer_in_two_frames_of_the_start_read_is_read_whole() {
        let open =
            r#"{"id":"chatcmpl-k","model":"gpt-4o","choices":[{"index":0,"message":{"content":""#;
        let reason = r#""},"finish_reason":"stop"}],"usage":{"prompt_tokens":4,"completion_tokens":9},"pad":""#;
        let text = "x".repeat(KEEP - open.len() - 10);
        let pad = "y".repeat(2 * KEEP - open.len() - text.len() - reason.len() - 2);
        let body = format!("{open}{text}{reason}{pad}\"}}");
        assert_eq!(body.len(), 2 * KEEP);
        let (first, second) = body.as_bytes().split_at(KEEP);
        assert!(second.starts_with(b"_reason"));
        let (info, _) = read("application/json", &[first, second]);
        assert_eq!(info.finish_reasons, ["stop"]);
        assert_eq!(info, read("application/json", &[body.as_bytes()]).0);
    }

    #[test]
    fn other_types_are_not_read() {
        assert!(UsageReader::new("text/plain").is_none());
        assert!(UsageReader::new("application/octet-stream").is_none());
        assert!(UsageReader::new("application/problem+json").is_some());
    }

    #[test]
    fn embeddings_usage() {
        let body = br#"{"object":"list","data":[],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        let (info, _) = read("application/json", &[body]);
        assert_eq!(info.usage.input_tokens, Some(8));
        assert_eq!(info.model.as_deref(), Some("text-embedding-3-small"));
    }
    /// A Responses API stream, as OpenAI sends it: the usage, id and model sit in the `response`
    /// the first and last events wrap, and `response.completed` ends it.
    const RESPONSES_SSE: &str = concat!(
        "event: response.created\n",
        "data: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_67c9\",\"object\":\"response\",\"status\":\"in_progress\",\"model\":\"gpt-4.1-2025-04-14\",\"output\":[],\"usage\":null}}\n\n",
        "event: response.output_text.delta\n",
        "data: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"item_id\":\"msg_67c9\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi\",\"logprobs\":[]}\n\n",
        "event: response.completed\n",
        "data: {\"type\":\"response.completed\",\"sequence_number\":6,\"response\":{\"id\":\"resp_67c9\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"gpt-4.1-2025-04-14\",\"output\":[{\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hi\"}]}],\"usage\":{\"input_tokens\":37,\"input_tokens_details\":{\"cached_tokens\":5},\"output_tokens\":11,\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":48},\"user\":null,\"metadata\":{}}}\n\n",
    );

    #[test]
    fn a_responses_api_stream_gives_usage_id_model_first_text_and_its_end() {
        for split in [1, 7, 64, RESPONSES_SSE.len()] {
            let frames: Vec<&[u8]> = RESPONSES_SSE.as_bytes().chunks(split).collect();
            let (info, token) = read("text/event-stream", &frames);
            assert_eq!(info.usage.input_tokens, Some(37), "{split}");
            assert_eq!(info.usage.output_tokens, Some(11));
            assert_eq!(info.usage.cache_read_input_tokens, Some(5));
            assert_eq!(info.id.as_deref(), Some("resp_67c9"));
            assert_eq!(info.model.as_deref(), Some("gpt-4.1-2025-04-14"));
            assert!(info.done && token, "{split}");
        }
    }

    /// A `response.completed` event repeats the whole response: one over the event limit is not
    /// read, but the usage at its end still is.
    #[test]
    fn a_responses_api_final_event_too_large_to_read_still_gives_its_usage() {
        let output = "w ".repeat(100 * 1024);
        let completed = format!(
            "event: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{{\"id\":\"resp_1\",\"output\":[{{\"type\":\"message\",\"content\":[{{\"type\":\"output_text\",\"text\":\"{output}\"}}]}}],\"tools\":[{{\"name\":\"f\",\"parameters\":{{\"usage\":{{\"type\":\"string\"}}}}}}],\"usage\":{{\"input_tokens\":900,\"output_tokens\":51200}},\"user\":null,\"metadata\":{{}}}}}}\n\n"
        );
        let body = format!(
            "{}{completed}",
            &RESPONSES_SSE[..RESPONSES_SSE.find("event: response.completed").unwrap()]
        );
        for split in [1000, 16 * 1024, body.len()] {
            let frames: Vec<&[u8]> = body.as_bytes().chunks(split).collect();
            let (info, _) = read("text/event-stream", &frames);
            assert_eq!(info.usage.input_tokens, Some(900), "{split}");
            assert_eq!(info.usage.output_tokens, Some(51200), "{split}");
            assert_eq!(
                info.id.as_deref(),
                Some("resp_67c9"),
                "from the first event"
            );
            // Its start (its `event:` line, its type) says it ended the stream, also when the
            // window on the stream's end begins inside it.
            assert!(info.done, "{split}");
            let without_event_lines = body.replace("event: response.completed\n", "");
            let whole = read("text/event-stream", &[without_event_lines.as_bytes()]).0;
            assert!(whole.done, "its type says it ended the response");
        }
    }

    /// A `response.completed` too large for the window may begin right where a frame begins, after
    /// the blank line that ended the frame before (one event per frame, as servers write them), or
    /// after a blank line split between two frames (a proxy cuts a stream anywhere): its start is
    /// found in the bytes the window lets go all the same, whatever the line ends.
    #[test]
    fn a_final_event_beginning_at_a_frame_boundary_still_ends_the_stream() {
        let text = "w ".repeat(50 * 1024);
        for eol in ["\n", "\r\n", "\r"] {
            let end = RESPONSES_SSE.find("event: response.completed").unwrap();
            // Created and one delta: the first text is read before the window takes over.
            let head = RESPONSES_SSE[..end].replace('\n', eol);
            let delta = head[head.find("event: response.output_text.delta").unwrap()..].to_owned();
            let done = format!(
                "event: response.output_text.done{eol}data: {{\"type\":\"response.output_text.done\",\"text\":\"{text}\"}}{eol}{eol}"
            );
            let completed = format!(
                "event: response.completed{eol}data: {{\"type\":\"response.completed\",\"response\":{{\"id\":\"resp_1\",\"output\":[{{\"type\":\"message\",\"content\":[{{\"type\":\"output_text\",\"text\":\"{text}\"}}]}}],\"usage\":{{\"input_tokens\":900,\"output_tokens\":51200}}}}}}{eol}{eol}"
            );
            // The blank line before `response.completed` split between two frames.
            let cut = done.len() - eol.len();
            let split = format!("{}{completed}", &done[cut..]);
            let cases: [Vec<&str>; 3] = [
                vec![&head, &completed],
                vec![&head, &delta, &done, &completed],
                vec![&head, &delta, &done[..cut], &split],
            ];
            for frames in cases {
                for size in [1000, usize::MAX] {
                    let frames: Vec<&[u8]> = frames
                        .iter()
                        .flat_map(|frame| frame.as_bytes().chunks(size.min(frame.len())))
                        .collect();
                    let (info, _) = read("text/event-stream", &frames);
                    assert_eq!(info.usage.input_tokens, Some(900), "{eol:?} {size}");
                    assert!(
                        info.done,
                        "{eol:?}, {} frames: its start says it ended the stream",
                        frames.len()
                    );
                }
            }
        }
    }

    /// A frame may end a few bytes into a `response.completed` too large for the window, before its
    /// type: the start kept of it goes on into the frames let go after, up to [`sse::EVENT_HEAD`]
    /// bytes and no further, and says it ended the stream wherever the frame ended.
    #[test]
    fn the_start_of_a_final_event_is_kept_across_frames_wherever_the_first_ends() {
        let text = "w ".repeat(50 * 1024);
        let end = RESPONSES_SSE.find("event: response.completed").unwrap();
        for event_lines in [true, false] {
            let completed = format!(
                "event: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{{\"id\":\"resp_1\",\"output\":[{{\"type\":\"message\",\"content\":[{{\"type\":\"output_text\",\"text\":\"{text}\"}}]}}],\"usage\":{{\"input_tokens\":900,\"output_tokens\":51200}}}}}}\n\n"
            );
            let (head, completed) = match event_lines {
                true => (RESPONSES_SSE[..end].to_owned(), completed),
                false => (
                    RESPONSES_SSE[..end].replace("event: response.output_text.delta\n", ""),
                    completed.replace("event: response.completed\n", ""),
                ),
            };
            // Another text delta opens the frame the start ends, so that no frame is empty.
            let delta = &head[head[..head.len() - 2].rfind("\n\n").unwrap() + 2..];
            for cut in 0..80 {
                let mut reader = UsageReader::new("text/event-stream").unwrap();
                reader.feed(&Bytes::copy_from_slice(head.as_bytes()));
                assert!(reader.saw_token());
                let (start, rest) = completed.as_bytes().split_at(cut);
                reader.feed(&Bytes::copy_from_slice(&[delta.as_bytes(), start].concat()));
                for frame in rest.chunks(1000) {
                    reader.feed(&Bytes::copy_from_slice(frame));
                    let opened = reader.window.opened.as_ref().unwrap();
                    assert!(opened.bytes.len() <= sse::EVENT_HEAD, "cut at {cut}");
                }
                let info = reader.finish();
                assert_eq!(info.usage.input_tokens, Some(900), "cut at {cut}");
                assert!(info.done, "cut at {cut}, event lines: {event_lines}");
            }
        }
    }

    /// A Responses API stream without `event:` lines whose `response.created` is too large to read
    /// (long instructions) is known for one by that event's start: when the first text shows in the
    /// start of the next event, before any event is read whole, the start of a final event too
    /// large for the window is still kept, and says the stream ended.
    #[test]
    fn a_responses_stream_known_only_by_a_skipped_first_event_still_ends() {
        let created = format!(
            "data: {{\"type\":\"response.created\",\"response\":{{\"id\":\"resp_1\",\"model\":\"gpt-4.1\",\"instructions\":\"{}\",\"usage\":null}}}}\n\n",
            "i".repeat(KEEP + 1024)
        );
        let delta = format!(
            "data: {{\"type\":\"response.output_text.delta\",\"delta\":\"{}\"}}\n\n",
            "w ".repeat(400)
        );
        let completed = format!(
            "data: {{\"type\":\"response.completed\",\"response\":{{\"id\":\"resp_1\",\"output\":[{{\"type\":\"message\",\"content\":[{{\"type\":\"output_text\",\"text\":\"{}\"}}]}}],\"usage\":{{\"input_tokens\":900,\"output_tokens\":51200}}}}}}\n\n",
            "w ".repeat(50 * 1024)
        );
        // The first frame ends inside the delta, past the start its first text is seen in.
        let cut = created.len() + sse::EVENT_HEAD + 100;
        let body = format!("{created}{delta}{completed}");
        let mut reader = UsageReader::new("text/event-stream").unwrap();
        reader.feed(&Bytes::copy_from_slice(&body.as_bytes()[..cut]));
        assert!(reader.saw_token());
        for frame in body.as_bytes()[cut..].chunks(1000) {
            reader.feed(&Bytes::copy_from_slice(frame));
        }
        let info = reader.finish();
        assert_eq!(info.usage.input_tokens, Some(900));
        assert!(info.done);
    }

    #[test]
    fn an_azure_stream_opening_with_an_empty_id_and_model_keeps_the_real_ones() {
        let body = concat!(
            "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null,\"index\":0}],\"id\":\"chatcmpl-A1\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\"}\n\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\",\"index\":0}],\"id\":\"chatcmpl-A1\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\"}\n\n",
            "data: {\"choices\":[],\"id\":\"chatcmpl-A1\",\"model\":\"gpt-4o-2024-08-06\",\"usage\":{\"completion_tokens\":1,\"prompt_tokens\":9,\"total_tokens\":10}}\n\n",
            "data: [DONE]\n\n",
        );
        let (info, _) = read("text/event-stream", &[body.as_bytes()]);
        assert_eq!(info.usage.input_tokens, Some(9));
        assert_eq!(info.model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(info.id.as_deref(), Some("chatcmpl-A1"));
    }

    #[test]
    fn a_legacy_completions_stream_gives_its_first_text() {
        let body = concat!(
            "data: {\"id\":\"cmpl-8\",\"object\":\"text_completion\",\"choices\":[{\"text\":\"Hello\",\"index\":0,\"finish_reason\":null}],\"model\":\"gpt-3.5-turbo-instruct\"}\n\n",
            "data: {\"id\":\"cmpl-8\",\"object\":\"text_completion\",\"choices\":[{\"text\":\"\",\"index\":0,\"finish_reason\":\"length\"}],\"model\":\"gpt-3.5-turbo-instruct\"}\n\n",
            "data: [DONE]\n\n",
        );
        let (info, token) = read("text/event-stream", &[body.as_bytes()]);
        assert_eq!(info.finish_reasons, ["length"]);
        assert!(token);
        // Reasoning and tool call deltas are not text.
        for not_text in [
            r#"{"type":"response.reasoning_summary_text.delta","delta":"hmm"}"#,
            r#"{"type":"response.function_call_arguments.delta","delta":"{\"a"}"#,
            r#"{"choices":[{"delta":{"reasoning_content":"hmm"}}]}"#,
        ] {
            let (_, token) = read(
                "text/event-stream",
                &[format!("data: {not_text}\n\n").as_bytes()],
            );
            assert!(!token, "{not_text}");
        }
    }

    #[test]
    fn large_json_reads_the_responses_own_usage_and_an_embeddings_model() {
        let vector = vec!["-0.0069292854"; 1536].join(",");
        let items: Vec<String> = (0..16)
            .map(|i| format!(r#"{{"object":"embedding","index":{i},"embedding":[{vector}]}}"#))
            .collect();
        let body = format!(
            r#"{{"object":"list","data":[{}],"model":"text-embedding-3-small","usage":{{"prompt_tokens":80,"total_tokens":80}}}}"#,
            items.join(",")
        );
        assert!(body.len() > 200 * 1024);
        let (info, _) = read("application/json", &[body.as_bytes()]);
        assert_eq!(info.usage.input_tokens, Some(80));
        assert_eq!(info.model.as_deref(), Some("text-embedding-3-small"));

        // A tool call's input may hold a `usage` key too; the response's own comes last.
        let filler = "x".repeat(200 * 1024);
        let body = format!(
            r#"{{"id":"msg_01","type":"message","model":"claude-sonnet-4-5","content":[{{"type":"text","text":"{filler}"}},{{"type":"tool_use","id":"toolu_01","name":"man","input":{{"command":"tar","usage":"short"}}}}],"stop_reason":"tool_use","usage":{{"input_tokens":400,"output_tokens":60000}}}}"#
        );
        let (info, _) = read("application/json", &[body.as_bytes()]);
        assert_eq!(info.finish_reasons, ["tool_use"]);
        let spaced = body.replace(r#""type":"message""#, r#""type": "message""#);
        assert_eq!(
            read("application/json", &[spaced.as_bytes()])
                .0
                .finish_reasons,
            ["tool_use"]
        );
        assert_eq!(info.usage.input_tokens, Some(400));
        assert_eq!(info.usage.output_tokens, Some(60000));
        assert_eq!(info.model.as_deref(), Some("claude-sonnet-4-5"));
    }

    #[test]
    fn a_long_stream_with_two_choices_keeps_both_finish_reasons() {
        let chunk = |choice: usize, i: usize| {
            format!("data: {{\"id\":\"c2\",\"choices\":[{{\"index\":{choice},\"delta\":{{\"content\":\"w{i} \"}},\"finish_reason\":null}}]}}\n\n")
        };
        let mut body = String::new();
        let mut i = 0;
        while body.len() < 150 * 1024 {
            body.push_str(&chunk(0, i));
            body.push_str(&chunk(1, i));
            i += 1;
        }
        body.push_str("data: {\"id\":\"c2\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
        let stop_at = body.len();
        while body.len() < stop_at + 20 * 1024 {
            body.push_str(&chunk(1, i));
            i += 1;
        }
        body.push_str("data: {\"id\":\"c2\",\"choices\":[{\"index\":1,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n");
        body.push_str("data: {\"id\":\"c2\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":900}}\n\ndata: [DONE]\n\n");
        for split in [1024, 4093] {
            let frames: Vec<&[u8]> = body.as_bytes().chunks(split).collect();
            let (info, _) = read("text/event-stream", &frames);
            assert_eq!(info.usage.output_tokens, Some(900));
            let mut reasons = info.finish_reasons.clone();
            reasons.sort();
            assert_eq!(reasons, ["length", "stop"], "{split}");
        }
    }

    #[test]
    fn finish_reasons_are_counted_across_frame_edges_however_small_the_frames() {
        let event = b"data: {\"choices\":[{\"index\":1,\"finish_reason\": \"stop\"}]}\n\n";
        let frames = |cuts: &[usize]| {
            let mut frames = VecDeque::new();
            let mut from = 0;
            for &cut in cuts.iter().chain([&event.len()]) {
                frames.push_back(Bytes::copy_from_slice(&event[from..cut]));
                from = cut;
            }
            frames
        };
        for a in 0..=event.len() {
            assert_eq!(reasons_in(&frames(&[a])), 1, "cut at {a}");
            for b in a..=event.len().min(a + 9) {
                assert_eq!(reasons_in(&frames(&[a, b])), 1, "cut at {a} and {b}");
            }
        }
        let two = [&event[..], &event[..]].concat();
        assert_eq!(reasons_in(&VecDeque::from([Bytes::from(two)])), 2);
        let null = VecDeque::from([Bytes::from_static(b"{\"finish_reason\":null}")]);
        assert_eq!(reasons_in(&null), 0);
    }

    #[test]
    fn a_byte_order_mark_opening_a_stream_is_not_part_of_its_first_line() {
        let body = "\u{FEFF}data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\ndata: [DONE]\n\n";
        let whole = read("text/event-stream", &[body.as_bytes()]).0;
        assert_eq!(whole.usage.input_tokens, Some(3));
        assert_eq!(whole.id.as_deref(), Some("c1"));
        for at in 0..body.len() {
            let (a, b) = body.as_bytes().split_at(at);
            let split = read(
                "text/event-stream",
                &[b"", &a[..at / 2], b"", &a[at / 2..], b],
            )
            .0;
            assert_eq!(split, whole, "split at {at}");
        }
        // Bytes that only begin like one are the first line's.
        let not_bom = b"\xEF\xBBdata: {\"usage\":{\"prompt_tokens\":3}}\n\n";
        for at in 0..not_bom.len() {
            let (a, b) = not_bom.split_at(at);
            assert_eq!(
                read("text/event-stream", &[a, b]).0.usage.input_tokens,
                None
            );
        }
    }

    #[test]
    fn a_choices_stop_reason_from_vllm_is_not_a_finish_reason() {
        let body = br#"{"id":"cmpl-1","object":"chat.completion","model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop","stop_reason":"\n\n"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
        let (info, _) = read("application/json", &[body]);
        assert_eq!(info.finish_reasons, ["stop"]);
        assert_eq!(info.usage.input_tokens, Some(5));
        let body = String::from_utf8_lossy(body)
            .replace(r#""stop_reason":"\n\n""#, r#""stop_reason":128009"#);
        assert_eq!(
            read("application/json", &[body.as_bytes()])
                .0
                .finish_reasons,
            ["stop"]
        );
    }
    #[test]
    fn a_caller_metadata_key_named_usage_hides_nothing() {
        // The Responses API puts the caller's `metadata` after `usage`.
        let text = "x".repeat(200 * 1024);
        let body = format!(
            r#"{{"id":"resp_1","object":"response","status":"completed","model":"gpt-4.1","output":[{{"type":"message","content":[{{"type":"output_text","text":"{text}"}}]}}],"usage":{{"input_tokens":900,"output_tokens":51200,"total_tokens":52100}},"user":null,"metadata":{{"usage":"nightly-batch"}}}}"#
        );
        let (info, _) = read("application/json", &[body.as_bytes()]);
        assert_eq!(info.usage.input_tokens, Some(900));
        assert_eq!(info.usage.output_tokens, Some(51200));
        let text = "w ".repeat(100 * 1024);
        let body = format!(
            "event: response.created\ndata: {{\"type\":\"response.created\",\"response\":{{\"id\":\"resp_1\",\"model\":\"gpt-4.1\",\"usage\":null}}}}\n\nevent: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{{\"id\":\"resp_1\",\"model\":\"gpt-4.1\",\"output\":[{{\"type\":\"message\",\"content\":[{{\"type\":\"output_text\",\"text\":\"{text}\"}}]}}],\"usage\":{{\"input_tokens\":900,\"output_tokens\":51200}},\"user\":null,\"metadata\":{{\"usage\":\"nightly-batch\"}}}}}}\n\n"
        );
        for split in [1000, 16 * 1024, body.len()] {
            let frames: Vec<&[u8]> = body.as_bytes().chunks(split).collect();
            let (info, _) = read("text/event-stream", &frames);
            assert_eq!(info.usage.input_tokens, Some(900), "{split}");
            assert_eq!(info.usage.output_tokens, Some(51200), "{split}");
        }
    }

    #[test]
    fn a_large_vllm_response_s_stop_reason_is_not_a_finish_reason() {
        let content = "x".repeat(200 * 1024);
        let body = format!(
            r#"{{"id":"chatcmpl-1","object":"chat.completion","model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{{"index":0,"message":{{"role":"assistant","content":"{content}"}},"logprobs":null,"finish_reason":"stop","stop_reason":"</answer>"}}],"usage":{{"prompt_tokens":5,"completion_tokens":60000,"total_tokens":60005}},"prompt_logprobs":null}}"#
        );
        let (info, _) = read("application/json", &[body.as_bytes()]);
        assert_eq!(info.usage.input_tokens, Some(5));
        assert_eq!(info.finish_reasons, ["stop"]);
    }

    #[test]
    fn a_finish_reason_in_the_event_the_short_tail_begins_inside_is_kept() {
        let chunk = |choice: usize, text: &str| {
            format!("data: {{\"id\":\"c2\",\"choices\":[{{\"index\":{choice},\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":null}}]}}\n\n")
        };
        let mut head = String::new();
        let mut i = 0;
        while head.len() < 150 * 1024 {
            head.push_str(&chunk(0, &format!("w{i} ")));
            head.push_str(&chunk(1, &format!("w{i} ")));
            i += 1;
        }
        let stop1 = "data: {\"id\":\"c2\",\"choices\":[{\"index\":1,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n";
        let end = "data: {\"id\":\"c2\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: {\"id\":\"c2\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":900}}\n\ndata: [DONE]\n\n";
        let base = chunk(0, "").len();
        // Filler sized so that the short tail begins before, inside and after choice 1's finish.
        let lo = SHORT_TAIL - end.len() - stop1.len() - base - 10;
        for n in lo..lo + stop1.len() + 20 {
            let body = format!("{head}{stop1}{}{end}", chunk(0, &"y".repeat(n)));
            let frames: Vec<&[u8]> = body.as_bytes().chunks(1024).collect();
            let (info, _) = read("text/event-stream", &frames);
            assert_eq!(info.usage.output_tokens, Some(900));
            let mut reasons = info.finish_reasons.clone();
            reasons.sort();
            assert_eq!(reasons, ["length", "stop"], "filler of {n}");
        }
    }

    /// A Responses API `response.completed` longer than the short tail but within the window: the
    /// short tail begins inside it and reads its usage, but not the type that says it ended the
    /// stream, so the whole window is read for that.
    #[test]
    fn a_final_event_longer_than_the_short_tail_still_ends_the_stream() {
        let text = "w ".repeat(4 * 1024);
        for event_lines in [true, false] {
            let event = |name: &str, data: String| match event_lines {
                true => format!("event: {name}\ndata: {data}\n\n"),
                false => format!("data: {data}\n\n"),
            };
            let mut body = event(
                "response.created",
                r#"{"type":"response.created","response":{"id":"resp_1","model":"gpt-4.1","usage":null}}"#.to_owned(),
            );
            while body.len() < 2 * KEEP {
                body.push_str(&event(
                    "response.output_text.delta",
                    r#"{"type":"response.output_text.delta","delta":"w "}"#.to_owned(),
                ));
            }
            let completed = event(
                "response.completed",
                format!(
                    r#"{{"type":"response.completed","response":{{"id":"resp_1","output":[{{"type":"message","content":[{{"type":"output_text","text":"{text}"}}]}}],"usage":{{"input_tokens":9,"output_tokens":4096}}}}}}"#
                ),
            );
            assert!(SHORT_TAIL < completed.len() && completed.len() < KEEP);
            body.push_str(&completed);
            for split in [1000, 4096] {
                let frames: Vec<&[u8]> = body.as_bytes().chunks(split).collect();
                let (info, _) = read("text/event-stream", &frames);
                assert_eq!(
                    info.usage.output_tokens,
                    Some(4096),
                    "{split} {event_lines}"
                );
                assert!(info.done, "frames of {split}, event lines: {event_lines}");
            }
        }
    }

    /// Events may follow the usage (annotations, say): when the end of a long stream gives none,
    /// the whole window is read for it.
    #[test]
    fn a_usage_followed_by_more_than_the_short_tail_is_still_read() {
        let mut body = String::from("data: {\"id\":\"c3\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n");
        while body.len() < 2 * KEEP {
            body.push_str("data: {\"id\":\"c3\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" w\"}}]}\n\n");
        }
        body.push_str("data: {\"id\":\"c3\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":900}}\n\n");
        let usage_at = body.len();
        for offset in (0..).step_by(100) {
            if body.len() > usage_at + 2 * SHORT_TAIL {
                break;
            }
            body.push_str(&format!("data: {{\"id\":\"c3\",\"choices\":[],\"content_filter_offsets\":{{\"check_offset\":{offset},\"start_offset\":{offset},\"end_offset\":{offset}}}}}\n\n"));
        }
        body.push_str("data: [DONE]\n\n");
        for split in [1000, 4096] {
            let frames: Vec<&[u8]> = body.as_bytes().chunks(split).collect();
            let (info, _) = read("text/event-stream", &frames);
            assert!(info.done);
            assert_eq!(info.usage.input_tokens, Some(5), "frames of {split}");
            assert_eq!(info.usage.output_tokens, Some(900), "frames of {split}");
        }
    }

    #[test]
    fn a_large_last_event_without_a_line_end_still_gives_its_usage() {
        let event = |text: &str| {
            format!(
            "event: response.created\ndata: {{\"type\":\"response.created\",\"response\":{{\"id\":\"resp_1\",\"model\":\"gpt-4.1\",\"usage\":null}}}}\n\nevent: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{{\"id\":\"resp_1\",\"output\":[{{\"type\":\"message\",\"content\":[{{\"type\":\"output_text\",\"text\":\"{text}\"}}]}}],\"usage\":{{\"input_tokens\":900,\"output_tokens\":51200}},\"user\":null,\"metadata\":{{}}}}}}"
        )
        };
        let small = event("Hi");
        assert_eq!(
            read("text/event-stream", &[small.as_bytes()])
                .0
                .usage
                .input_tokens,
            Some(900)
        );
        let large = event(&"w ".repeat(100 * 1024));
        for split in [1, 1000, 16 * 1024, large.len()] {
            let frames: Vec<&[u8]> = large.as_bytes().chunks(split).collect();
            let (info, _) = read("text/event-stream", &frames);
            assert_eq!(info.usage.input_tokens, Some(900), "frames of {split}");
        }
    }

    #[test]
    fn a_responses_stream_that_ends_incomplete_or_failed_is_done_without_event_lines() {
        for end in [
            "response.completed",
            "response.incomplete",
            "response.failed",
        ] {
            let body = format!(
                "data: {{\"type\":\"response.created\",\"response\":{{\"id\":\"resp_1\",\"model\":\"gpt-4.1\",\"usage\":null}}}}\n\ndata: {{\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}}\n\ndata: {{\"type\":\"{end}\",\"response\":{{\"id\":\"resp_1\",\"usage\":{{\"input_tokens\":9,\"output_tokens\":1}}}}}}\n\n"
            );
            let (info, _) = read("text/event-stream", &[body.as_bytes()]);
            assert_eq!(info.usage.input_tokens, Some(9), "{end}");
            assert!(info.done, "{end}");
        }
        let delta =
            "data: {\"type\":\"response.output_text.delta\",\"delta\":\"response.completed\"}\n\n";
        assert!(!read("text/event-stream", &[delta.as_bytes()]).0.done);
    }

    #[test]
    fn reasoning_deltas_with_a_text_key_are_not_the_first_token() {
        let first = r#"data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
        for reasoning in [
            r#"data: {"id":"gen-1","object":"chat.completion.chunk","model":"anthropic/claude-sonnet-4","choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning":"Let me think","reasoning_details":[{"type":"reasoning.text","text":"Let me think","format":"anthropic-claude-v1","index":0}]},"finish_reason":null}]}"#,
            r#"data: {"id":"c1","object":"chat.completion.chunk","model":"magistral-medium-latest","choices":[{"index":0,"delta":{"content":[{"type":"thinking","thinking":[{"type":"text","text":"Let me think"}]}]},"finish_reason":null}]}"#,
            r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me think"}}"#,
        ] {
            let body = format!("{first}\n\n{reasoning}\n\n");
            let (_, token) = read("text/event-stream", &[body.as_bytes()]);
            assert!(!token, "{reasoning}");
        }
        let text = r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#;
        assert!(read("text/event-stream", &[format!("{text}\n\n").as_bytes()]).1);
    }

    #[test]
    fn a_second_long_data_line_reads_the_same_whole_or_split() {
        let text = "w".repeat(70 * 1024);
        let body = format!(
            "data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":null}}],\ndata: \"note\":\"{text}\",\"usage\":{{\"prompt_tokens\":7,\"completion_tokens\":70000}}}}\n\ndata: [DONE]\n\n"
        );
        let whole = read("text/event-stream", &[body.as_bytes()]).0;
        for split in [1000, 4096, 70 * 1024] {
            let frames: Vec<&[u8]> = body.as_bytes().chunks(split).collect();
            let info = read("text/event-stream", &frames).0;
            assert_eq!(info.usage.input_tokens, Some(7), "{split}");
            assert_eq!(info.usage, whole.usage, "{split}");
        }
    }

    /// A Gemini `generateContent` answer (Google AI; Vertex AI's adds `createTime` and its
    /// `trafficType`) from a thinking model: its thoughts are counted apart from the candidates'
    /// tokens, and the tool-use prompt (a search's results) apart from the prompt's.
    const GEMINI_JSON: &str = r#"{
  "candidates": [
    {
      "content": {
        "parts": [
          {
            "text": "The capital of France is Paris."
          }
        ],
        "role": "model"
      },
      "finishReason": "STOP",
      "index": 0
    }
  ],
  "usageMetadata": {
    "promptTokenCount": 812,
    "candidatesTokenCount": 8,
    "totalTokenCount": 1140,
    "cachedContentTokenCount": 768,
    "promptTokensDetails": [
      {
        "modality": "TEXT",
        "tokenCount": 812
      }
    ],
    "cacheTokensDetails": [
      {
        "modality": "TEXT",
        "tokenCount": 768
      }
    ],
    "toolUsePromptTokenCount": 196,
    "thoughtsTokenCount": 124
  },
  "modelVersion": "gemini-2.5-flash",
  "responseId": "mWjLaK2cHdWnz7IPrqW24Ac"
}"#;

    fn gemini() -> ResponseInfo {
        ResponseInfo {
            id: Some("mWjLaK2cHdWnz7IPrqW24Ac".into()),
            model: Some("gemini-2.5-flash".into()),
            finish_reasons: vec!["STOP".into()],
            usage: Usage {
                // The prompt (its cached content within) and the tool-use prompt.
                input_tokens: Some(812 + 196),
                // The candidates' and the thoughts'.
                output_tokens: Some(8 + 124),
                cache_read_input_tokens: Some(768),
                cache_creation_input_tokens: None,
                reasoning_output_tokens: Some(124),
            },
            ..ResponseInfo::default()
        }
    }

    #[test]
    fn a_gemini_answer_counts_its_thoughts_and_tool_use_prompt() {
        let info = read("application/json; charset=UTF-8", &[GEMINI_JSON.as_bytes()]).0;
        assert_eq!(info, gemini());
        let u = info.usage;
        // What its `totalTokenCount` says.
        assert_eq!(u.input_tokens.unwrap() + u.output_tokens.unwrap(), 1140);
        // Read through a `Value` (a numeric id does not fit the typed fields) it counts the same.
        let untyped = GEMINI_JSON.replacen('{', r#"{"id":7,"#, 1);
        let (got, _) = read("application/json", &[untyped.as_bytes()]);
        assert_eq!(got.usage, info.usage);
        assert_eq!(got.finish_reasons, ["STOP"]);
        assert_eq!(got.model.as_deref(), Some("gemini-2.5-flash"));
        // Without thinking, tools or a cache, the counts are the prompt's and the candidates'.
        let plain = r#"{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"finishReason":"MAX_TOKENS","index":0}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":1,"totalTokenCount":5},"modelVersion":"gemini-2.0-flash"}"#;
        let info = read("application/json", &[plain.as_bytes()]).0;
        assert_eq!(info.usage.input_tokens, Some(4));
        assert_eq!(info.usage.output_tokens, Some(1));
        assert_eq!(info.usage.reasoning_output_tokens, None);
        assert_eq!(info.usage.cache_read_input_tokens, None);
        assert_eq!(info.finish_reasons, ["MAX_TOKENS"]);
        assert_eq!(info.id, None);
    }

    /// Gemini's `alt=sse` stream: every event is a whole response, whose usage counts all so far
    /// (the first ones before the candidates' count is known); the last one's is the answer's. The
    /// first text is the first non-thought text part.
    const GEMINI_SSE: &str = concat!(
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"**Weighing the question**\\n\\nThe user asks\",\"thought\": true}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"totalTokenCount\": 57,\"promptTokensDetails\": [{\"modality\": \"TEXT\",\"tokenCount\": 9}],\"thoughtsTokenCount\": 48},\"modelVersion\": \"gemini-2.5-pro\",\"responseId\": \"Q2bLaNbXDsS0z7IP7Nq_qQ8\"}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Paris\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"totalTokenCount\": 57,\"promptTokensDetails\": [{\"modality\": \"TEXT\",\"tokenCount\": 9}],\"thoughtsTokenCount\": 48},\"modelVersion\": \"gemini-2.5-pro\",\"responseId\": \"Q2bLaNbXDsS0z7IP7Nq_qQ8\"}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" is the capital of France.\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"candidatesTokenCount\": 7,\"totalTokenCount\": 64,\"promptTokensDetails\": [{\"modality\": \"TEXT\",\"tokenCount\": 9}],\"thoughtsTokenCount\": 48},\"modelVersion\": \"gemini-2.5-pro\",\"responseId\": \"Q2bLaNbXDsS0z7IP7Nq_qQ8\"}\r\n\r\n",
    );

    fn gemini_stream() -> ResponseInfo {
        ResponseInfo {
            id: Some("Q2bLaNbXDsS0z7IP7Nq_qQ8".into()),
            model: Some("gemini-2.5-pro".into()),
            finish_reasons: vec!["STOP".into()],
            usage: Usage {
                input_tokens: Some(9),
                output_tokens: Some(7 + 48),
                reasoning_output_tokens: Some(48),
                ..Usage::default()
            },
            // Gemini's streams give no sign of their end.
            done: false,
            ..ResponseInfo::default()
        }
    }

    #[test]
    fn a_gemini_stream_reads_its_last_usage_split_anywhere() {
        let body = GEMINI_SSE.as_bytes();
        for at in 0..=body.len() {
            let (info, token) = read("text/event-stream", &[&body[..at], &body[at..]]);
            assert_eq!(info, gemini_stream(), "split at {at}");
            assert!(token, "split at {at}");
        }
        // The thought summary is not the first text; the text after it is.
        let first = GEMINI_SSE.split_inclusive("\r\n\r\n").next().unwrap();
        let (info, token) = read("text/event-stream", &[first.as_bytes()]);
        assert!(!token);
        assert_eq!(info.usage.output_tokens, Some(48));
        // Its thought flag follows the text: a long thought is not taken for text by its start.
        let long = first.replace("The user asks", &"so ".repeat(400));
        for split in [1, 100, 700, long.len()] {
            let frames: Vec<&[u8]> = long.as_bytes().chunks(split).collect();
            assert!(!read("text/event-stream", &frames).1, "frames of {split}");
        }
        let two: String = GEMINI_SSE.split_inclusive("\r\n\r\n").take(2).collect();
        assert!(read("text/event-stream", &[two.as_bytes()]).1);
        // A function call's arguments are not text either.
        let call = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"name\": \"translate\",\"args\": {\"text\": \"bonjour\"}}}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 30,\"candidatesTokenCount\": 12,\"totalTokenCount\": 42},\"modelVersion\": \"gemini-2.5-flash\"}\r\n\r\n";
        let (info, token) = read("text/event-stream", &[call.as_bytes()]);
        assert!(!token);
        assert_eq!(info.finish_reasons, ["STOP"]);
    }

    /// A long Gemini stream is read at its ends: the last usage (read from the window, which a
    /// Gemini stream, saying no end, always has read whole) and the identity its first event gives.
    #[test]
    fn a_long_gemini_stream_keeps_its_last_usage_and_first_identity() {
        let chunk = |text: &str, usage: &str, end: &str| {
            format!("data: {{\"candidates\": [{{\"content\": {{\"parts\": [{{\"text\": \"{text}\"}}],\"role\": \"model\"}}{end},\"index\": 0}}],\"usageMetadata\": {{{usage}}},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r-long\"}}\r\n\r\n")
        };
        let mut body = String::new();
        let mut n = 0;
        while body.len() < 3 * KEEP {
            n += 1;
            body.push_str(&chunk(
                "w w w ",
                &format!("\"promptTokenCount\": 11,\"candidatesTokenCount\": {n},\"totalTokenCount\": {}", 11 + n),
                "",
            ));
        }
        body.push_str(&chunk(
            "end",
            "\"promptTokenCount\": 11,\"candidatesTokenCount\": 5000,\"totalTokenCount\": 5311,\"thoughtsTokenCount\": 300",
            ",\"finishReason\": \"MAX_TOKENS\"",
        ));
        for split in [100, 1000, 4096, 70_000] {
            let frames: Vec<&[u8]> = body.as_bytes().chunks(split).collect();
            let (info, token) = read("text/event-stream", &frames);
            assert!(token);
            assert_eq!(info.id.as_deref(), Some("r-long"), "frames of {split}");
            assert_eq!(info.model.as_deref(), Some("gemini-2.5-flash"));
            assert_eq!(info.finish_reasons, ["MAX_TOKENS"], "frames of {split}");
            assert_eq!(info.usage.input_tokens, Some(11));
            assert_eq!(info.usage.output_tokens, Some(5300), "frames of {split}");
            assert_eq!(info.usage.reasoning_output_tokens, Some(300));
        }
    }

    /// `streamGenerateContent` without `alt=sse` answers with its responses in one JSON array.
    #[test]
    fn a_gemini_stream_as_one_json_array_gives_its_last_usage() {
        let events: Vec<&str> = GEMINI_SSE
            .split_terminator("\r\n\r\n")
            .map(|event| event.strip_prefix("data: ").unwrap())
            .collect();
        let array = format!("[{}]", events.join(",\r\n"));
        let (info, _) = read("application/json; charset=UTF-8", &[array.as_bytes()]);
        assert_eq!(info, gemini_stream());
        // Large, it is read at its ends: the last response's usage and reason at the tail, and
        // the identity each response repeats.
        let text = "w ".repeat(100 * 1024);
        let middle = events[1].replace("Paris", &text);
        let large = format!("[{},\r\n{middle},\r\n{}]", events[0], events[2]);
        assert!(large.len() > 2 * KEEP);
        for split in [1000, 64 * 1024, large.len()] {
            let frames: Vec<&[u8]> = large.as_bytes().chunks(split).collect();
            let (info, _) = read("application/json", &frames);
            assert_eq!(info, gemini_stream(), "frames of {split}");
        }
        // Another API's array of objects is not read as answers.
        let list = br#"[{"id":"file-1","model":"m","usage":{"prompt_tokens":3}}]"#;
        assert_eq!(read("application/json", &[list]).0, ResponseInfo::default());
    }

    #[test]
    fn a_large_gemini_answer_is_read_at_its_ends() {
        let text = "w ".repeat(100 * 1024);
        let body = GEMINI_JSON.replace("The capital of France is Paris.", &text);
        assert!(body.len() > 2 * KEEP);
        for split in [1000, 64 * 1024, body.len()] {
            let frames: Vec<&[u8]> = body.as_bytes().chunks(split).collect();
            let (info, _) = read("application/json", &frames);
            assert_eq!(info, gemini(), "frames of {split}");
        }
        // A function call's `id` at the head is not the response's.
        let call = body.replacen(
            r#""parts": ["#,
            r#""parts": [{"functionCall": {"id": "call-1", "name": "f", "args": {}}},"#,
            1,
        );
        let (info, _) = read("application/json", &[call.as_bytes()]);
        assert_eq!(info.id.as_deref(), Some("mWjLaK2cHdWnz7IPrqW24Ac"));
        let unnamed = call.replace(r#","responseId": "mWjLaK2cHdWnz7IPrqW24Ac""#, "");
        let unnamed = unnamed.replace("\n  \"responseId\": \"mWjLaK2cHdWnz7IPrqW24Ac\"", "");
        let unnamed = unnamed.replace("\"gemini-2.5-flash\",", "\"gemini-2.5-flash\"");
        assert!(!unnamed.contains("responseId"));
        assert_eq!(read("application/json", &[unnamed.as_bytes()]).0.id, None);
    }

    #[test]
    fn a_gemini_error_is_named_by_its_status() {
        let body = r#"{
  "error": {
    "code": 429,
    "message": "You exceeded your current quota, please check your plan and billing details.",
    "status": "RESOURCE_EXHAUSTED"
  }
}"#;
        let (info, _) = read("application/json; charset=UTF-8", &[body.as_bytes()]);
        assert_eq!(info.error.as_deref(), Some("RESOURCE_EXHAUSTED"));
        let stream = format!("data: {}\r\n\r\n", body.replace('\n', ""));
        let (info, _) = read("text/event-stream", &[stream.as_bytes()]);
        assert_eq!(info.error.as_deref(), Some("RESOURCE_EXHAUSTED"));
    }

    /// Bedrock's Converse API, with a prompt cache: its `inputTokens` leave out the cache's reads
    /// and writes (its `totalTokens` adds them), so they are added, as Anthropic's are.
    const BEDROCK_JSON: &str = r#"{"metrics":{"latencyMs":1149},"output":{"message":{"content":[{"text":"Paris is the capital of France."}],"role":"assistant"}},"stopReason":"end_turn","usage":{"cacheReadInputTokens":1024,"cacheWriteInputTokens":312,"inputTokens":14,"outputTokens":9,"totalTokens":1359}}"#;

    #[test]
    fn a_bedrock_converse_answer_adds_its_cache_to_its_input() {
        let want = ResponseInfo {
            finish_reasons: vec!["end_turn".into()],
            usage: Usage {
                input_tokens: Some(14 + 1024 + 312),
                output_tokens: Some(9),
                cache_read_input_tokens: Some(1024),
                cache_creation_input_tokens: Some(312),
                reasoning_output_tokens: None,
            },
            ..ResponseInfo::default()
        };
        let (info, _) = read("application/json", &[BEDROCK_JSON.as_bytes()]);
        assert_eq!(info, want);
        assert_eq!(info.usage.input_tokens.unwrap() + 9, 1359);
        // Through a `Value` too.
        let untyped = BEDROCK_JSON.replacen('{', r#"{"id":7,"#, 1);
        assert_eq!(read("application/json", &[untyped.as_bytes()]).0, want);
        // Large, read at its ends: the reason and usage follow the message.
        let text = "w ".repeat(100 * 1024);
        let large = BEDROCK_JSON.replace("Paris is the capital of France.", &text);
        let frames: Vec<&[u8]> = large.as_bytes().chunks(1000).collect();
        assert_eq!(read("application/json", &frames).0, want);
        // Its answers have no id: a tool input's is not one.
        let large = large.replacen(
            r#""content":["#,
            r#""content":[{"toolUse":{"toolUseId":"tooluse_kZJMlvQmRJ6eAyJE5GIl7Q","name":"lookup","input":{"id":"order-17"}}},"#,
            1,
        );
        assert!(large.contains("order-17"));
        assert_eq!(read("application/json", &[large.as_bytes()]).0, want);
        // Without a cache.
        let plain = r#"{"output":{"message":{"content":[{"text":"Hi"}],"role":"assistant"}},"stopReason":"max_tokens","usage":{"inputTokens":5,"outputTokens":1,"totalTokens":6},"metrics":{"latencyMs":300}}"#;
        let info = read("application/json", &[plain.as_bytes()]).0;
        assert_eq!(info.usage.input_tokens, Some(5));
        assert_eq!(info.finish_reasons, ["max_tokens"]);
    }

    /// `converse-stream` answers in AWS's binary event stream, which is not read.
    #[test]
    fn a_bedrock_event_stream_is_not_read() {
        assert!(UsageReader::new("application/vnd.amazon.eventstream").is_none());
    }

    /// A long stream's end is read apart from its beginning: the reasoning tokens its last usage
    /// gives are kept with the other counts.
    #[test]
    fn a_long_stream_keeps_the_reasoning_tokens_its_end_gives() {
        let mut body = String::from("data: {\"id\":\"c8\",\"model\":\"o4-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n");
        while body.len() < 3 * KEEP {
            body.push_str("data: {\"id\":\"c8\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" w\"}}]}\n\n");
        }
        body.push_str("data: {\"id\":\"c8\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":900,\"completion_tokens_details\":{\"reasoning_tokens\":640}}}\n\ndata: [DONE]\n\n");
        for split in [1000, 4096] {
            let frames: Vec<&[u8]> = body.as_bytes().chunks(split).collect();
            let usage = read("text/event-stream", &frames).0.usage;
            assert_eq!(usage.output_tokens, Some(900), "frames of {split}");
            assert_eq!(
                usage.reasoning_output_tokens,
                Some(640),
                "frames of {split}"
            );
        }
    }
}
