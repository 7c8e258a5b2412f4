//! A server-sent-event stream, read one event at a time with bounded memory.
//!
//! Lines end in LF, CRLF or CR, and may be split across frames anywhere (even between CR and LF).
//! Comments (`:`) and keep-alives are skipped. Most events are content deltas: they are looked at for
//! the first generated text without being parsed; only the rare events that carry an id, usage or a
//! finish reason are parsed. Buffers are reused, so a warmed-up stream allocates nothing per frame.

use super::{read_document, ResponseInfo};
use crate::codec::BOM;
use memchr::memmem::Finder;
use std::sync::LazyLock;

/// The most data in one event that is read; larger events are skipped.
const MAX_EVENT: usize = 64 * 1024;

/// The longest line that is read: a `data: ` line carrying a whole event; longer ones are skipped.
const MAX_LINE: usize = MAX_EVENT + b"data: ".len();

/// How far into a stream the first generated text is looked for, event by event; past it, a
/// stream without any is only kept a window on.
const FIRST_TEXT: usize = 1024 * 1024;

#[derive(Debug, Default)]
pub(super) struct SseReader {
    /// A line begun in an earlier frame.
    line: Vec<u8>,
    /// The current line is too long: drop bytes until its end.
    skipping_line: bool,
    /// The last frame ended in CR: a LF at the start of the next one ends nothing.
    after_cr: bool,
    /// The current event's data lines, joined with LF; while a `data` line too long to read is
    /// skipped, its last [`LONG_TAIL`] bytes, where a large event keeps its usage.
    data: Vec<u8>,
    /// The current event is too large to read.
    skipping_event: bool,
    pub(super) info: ResponseInfo,
    pub(super) saw_token: bool,
    parsed_first: bool,
    /// Bytes read so far.
    read: usize,
    /// Started mid-stream: lines are ignored until the first blank one.
    resync: bool,
    /// The current line is a `data` line too long to read: its last bytes go to `data`.
    tailing: bool,
    /// How many bytes of a byte order mark opening the stream have arrived, or [`SETTLED`] once the
    /// opening is known: one may arrive over several frames.
    opening: u8,
    /// Whether finish reasons are counted (a window's reader: see [`Self::reasons`]).
    counting: bool,
    /// How many finish reasons the events read gave, counted as [`count_reasons`] counts them.
    reasons: usize,
    /// Whether the stream's events are the Responses API's, whose last one repeats the whole
    /// response and may outgrow the window on the stream's end.
    pub(super) wraps_response: bool,
}

/// [`SseReader::opening`] once the stream's first bytes are known to be, or not to be, a BOM.
const SETTLED: u8 = u8::MAX;

/// How much of the start of an event too large to read is looked at: for its type, the response's
/// id and model when no event gave them yet (the Responses API's `response.created` repeats the
/// request's tools and may be this large), and generated text (a whole answer in one chunk).
pub(super) const EVENT_HEAD: usize = 512;

/// How much of the end of a `data` line too long to read is kept. A Responses API
/// `response.completed` event repeats the whole response (instructions, output, tools) and ends
/// with its `usage`, `user` and `metadata` (at most 16 short pairs): this much of its end holds the
/// usage.
const LONG_TAIL: usize = 16 * 1024;

impl SseReader {
    /// A reader for a window that may start in the middle of an event.
    pub(super) fn resynchronizing() -> Self {
        Self {
            resync: true,
            opening: SETTLED,
            counting: true,
            ..Self::default()
        }
    }

    /// Whether the beginning of the stream has told what it will: the response's identity (its first
    /// event, always parsed) and the first generated text. A stream may think at length first
    /// (reasoning deltas are not text), so the first text is looked for up to [`FIRST_TEXT`] in.
    pub(super) fn read_enough(&self) -> bool {
        self.saw_token || self.read >= FIRST_TEXT
    }

    pub(super) fn feed(&mut self, mut bytes: &[u8]) {
        if self.opening != SETTLED && !bytes.is_empty() {
            // A byte order mark may open the stream, and is not part of its first line.
            let seen = usize::from(self.opening);
            let more = (BOM.len() - seen).min(bytes.len());
            if bytes[..more] == BOM[seen..seen + more] {
                self.read += more;
                bytes = &bytes[more..];
                if seen + more < BOM.len() {
                    self.opening = (seen + more) as u8;
                    return;
                }
                self.opening = SETTLED;
            } else {
                // What looked like the start of one was the start of the first line.
                self.opening = SETTLED;
                self.lines(&BOM[..seen]);
            }
        }
        self.lines(bytes);
    }

    /// Reads the next bytes of the stream as lines.
    fn lines(&mut self, mut bytes: &[u8]) {
        if bytes.is_empty() {
            // An empty frame must not forget a CR that the next frame's LF completes.
            return;
        }
        self.read += bytes.len();
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while let Some(end) = memchr::memchr2(b'\n', b'\r', bytes) {
            let (part, rest) = bytes.split_at(end);
            let crlf = rest.starts_with(b"\r\n");
            if rest.len() == 1 && rest[0] == b'\r' {
                self.after_cr = true;
            }
            bytes = &rest[if crlf { 2 } else { 1 }..];
            if self.skipping_line {
                self.skipping_line = false;
                self.line.clear();
                self.keep_tail(part);
                self.long_line_end();
                continue;
            }
            if self.line.is_empty() {
                self.line_end(part);
            } else if self.line.len() + part.len() > MAX_LINE {
                // The end of a line begun earlier makes it too long: skipped like one that is
                // too long before its end is seen, without copying more than its last bytes.
                self.overlong_line(part);
                self.keep_tail(part);
                self.long_line_end();
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(part);
                self.line_end(&line);
                line.clear();
                self.line = line;
            }
        }
        if self.skipping_line {
            self.keep_tail(bytes);
        } else if self.line.len() + bytes.len() > MAX_LINE {
            self.overlong_line(bytes);
            self.keep_tail(bytes);
            self.skipping_line = true;
        } else {
            let before = self.line.len();
            self.line.extend_from_slice(bytes);
            // A long event's first text shows in its start: waiting for its end (or for it to
            // prove too large) would put the first token late.
            if before < EVENT_HEAD && self.line.starts_with(b"data:") {
                let line = std::mem::take(&mut self.line);
                self.text_in_head(&line);
                self.line = line;
            }
        }
    }

    /// Keeps the last [`LONG_TAIL`] bytes of an overlong `data` line, `more` being its next bytes.
    fn keep_tail(&mut self, more: &[u8]) {
        if !self.tailing {
            return;
        }
        if more.len() >= LONG_TAIL {
            self.data.clear();
            self.data.extend_from_slice(&more[more.len() - LONG_TAIL..]);
            return;
        }
        // Up to twice the tail is kept before the oldest bytes go, so tiny frames do not each move
        // the whole tail.
        if self.data.len() + more.len() > 2 * LONG_TAIL {
            let excess = self.data.len() + more.len() - LONG_TAIL;
            self.data.drain(..excess);
        }
        self.data.extend_from_slice(more);
    }

    /// Looks for the first generated text in the first [`EVENT_HEAD`] bytes of a `data` line once
    /// that many have arrived, whether the line comes in one frame or in many (so the two read the
    /// same).
    fn text_in_head(&mut self, line: &[u8]) {
        if !self.saw_token && line.len() >= EVENT_HEAD {
            self.saw_token = has_text(&line[..EVENT_HEAD]);
        }
    }

    /// Reads what the start of an event too large to read says (`start` is its `data` line): a
    /// Responses API event that ends the response names its type first, and the response's id and
    /// model, or the first generated text, come early in an event.
    fn skipped_event_start(&mut self, start: &[u8]) {
        let head = &start[..start.len().min(EVENT_HEAD)];
        self.wraps_response |= RESPONSE.find(head).is_some();
        if ends_response(head) {
            self.info.done = true;
        }
        self.text_in_head(start);
        if self.info.id.is_none() {
            self.info.id = head_string(head, &ID).map(str::to_owned);
        }
        if self.info.model.is_none() {
            self.info.model = head_string(head, &MODEL).map(str::to_owned);
        }
    }

    /// The end of an overlong line: when it was a `data` line, its usage, if its end holds one.
    fn long_line_end(&mut self) {
        if std::mem::take(&mut self.tailing) {
            usage_at_end(&self.data, &mut self.info);
            self.data.clear();
        }
    }

    /// Drops the line being read, `more` being the next of its bytes: longer than [`MAX_LINE`], it
    /// is not read. When it is a `data` line its event cannot be read whole either, so it is
    /// skipped too.
    fn overlong_line(&mut self, more: &[u8]) {
        let mut start = [0; 5];
        for (slot, byte) in start.iter_mut().zip(self.line.iter().chain(more)) {
            *slot = *byte;
        }
        let data = start == *b"data:";
        if data {
            self.skipping_event = true;
            self.data.clear();
            // The event's type is at its start: what is at hand of the line now.
            let mut head = [0; EVENT_HEAD];
            let mut len = 0;
            for (slot, byte) in head.iter_mut().zip(self.line.iter().chain(more)) {
                *slot = *byte;
                len += 1;
            }
            self.skipped_event_start(&head[..len]);
        }
        // Mid-stream, the line the window starts in may be the end of a data line.
        if data || self.resync {
            self.tailing = true;
            let line = std::mem::take(&mut self.line);
            self.keep_tail(&line);
            self.line = line;
        }
        self.line.clear();
    }

    fn line_end(&mut self, line: &[u8]) {
        if line.is_empty() {
            self.resync = false;
            self.dispatch();
            return;
        }
        if self.resync {
            // The end of a line begun before the window: it may be the end of the last event.
            usage_at_end(line, &mut self.info);
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(0) => return, // a comment or keep-alive
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        if field == b"event" {
            self.wraps_response |= value.starts_with(b"response.");
            if TERMINAL_EVENTS.contains(&value) {
                self.info.done = true;
                return;
            }
        }
        if field != b"data" {
            return;
        }
        self.text_in_head(line);
        // A line too long to read, or one that makes its event too large: the event is skipped, but
        // the usage at the line's end is read (as when the line arrives in pieces).
        let overlong = line.len() > MAX_LINE;
        // The event's data with this line: a line feed joins it to the lines before.
        let joined = self.data.len() + usize::from(!self.data.is_empty()) + value.len();
        if overlong || (!self.skipping_event && joined > MAX_EVENT) {
            self.skipping_event = true;
            self.data.clear();
            self.skipped_event_start(line);
            usage_at_end(value, &mut self.info);
            return;
        }
        if self.skipping_event {
            return;
        }
        if !self.data.is_empty() {
            self.data.push(b'\n');
        }
        self.data.extend_from_slice(value);
    }

    fn dispatch(&mut self) {
        let skipped = std::mem::take(&mut self.skipping_event);
        if !skipped && !self.data.is_empty() {
            self.event();
        }
        self.data.clear();
    }

    fn event(&mut self) {
        let data = &self.data[..];
        if data == b"[DONE]" {
            self.info.done = true;
            return;
        }
        if !self.saw_token && (has_text(data) || gemini_text(data)) {
            self.saw_token = true;
        }
        if MESSAGE_STOP.find(data).is_some() || ends_response(data) {
            self.info.done = true;
        }
        if !self.wraps_response {
            self.wraps_response = RESPONSE.find(data).is_some();
        }
        if self.counting {
            self.reasons += count_reasons(data);
        }
        if !self.parsed_first || worth_parsing(data) {
            self.parsed_first = true;
            read_document(data, &mut self.info);
        }
    }

    pub(super) fn finish(self) -> ResponseInfo {
        self.finish_counted().0
    }

    /// [`finish`](Self::finish), with how many finish reasons the events read gave (for a reader
    /// made by [`resynchronizing`](Self::resynchronizing)).
    pub(super) fn finish_counted(mut self) -> (ResponseInfo, usize) {
        // A stream that ends without a blank line still ends its last event.
        if self.skipping_line {
            self.long_line_end();
        } else if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_end(&line);
        }
        self.dispatch();
        (self.info, self.reasons)
    }
}

/// Where the last event that begins in `bytes` (a part of a stream) begins: after its last blank
/// line, however its lines end.
pub(super) fn last_event_start(bytes: &[u8]) -> Option<usize> {
    memchr::memrchr2_iter(b'\n', b'\r', bytes).find_map(|at| {
        // The line end that `bytes[at]` ends, and the one before it: a blank line.
        let before = match &bytes[..=at] {
            [rest @ .., b'\r', b'\n'] | [rest @ .., b'\n' | b'\r'] => rest,
            _ => return None,
        };
        matches!(before.last(), Some(b'\n' | b'\r')).then_some(at + 1)
    })
}

/// Whether the start of an event (the first [`EVENT_HEAD`] bytes from its first line) says it ends
/// the stream, as a reader that skips the event as too large reads its start.
pub(super) fn says_done(start: &[u8]) -> bool {
    let mut reader = SseReader {
        opening: SETTLED,
        ..SseReader::default()
    };
    reader.lines(start);
    if reader.line.starts_with(b"data:") {
        // The event's `data` line goes on past its start.
        let line = std::mem::take(&mut reader.line);
        reader.skipped_event_start(&line);
    }
    reader.info.done
}

/// Reads the usage that the end of a `data` line, `bytes`, holds: an event too large to read
/// whole, or one that began before a window on a stream's end.
fn usage_at_end(bytes: &[u8], info: &mut ResponseInfo) {
    let end = &bytes[bytes.len().saturating_sub(LONG_TAIL)..];
    // Gemini's responses name theirs `usageMetadata`.
    for key in ["usage", "usageMetadata"] {
        if let Some(usage) = super::json::last_value(end, key, serde_json::Value::is_object) {
            super::absorb(&serde_json::json!({ key: usage }), info);
            return;
        }
    }
}

/// Substring searches prepared once: building a searcher costs more than running it on one event.
macro_rules! needles {
    ($($name:ident = $text:literal;)*) => {
        $(static $name: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new($text));)*
    };
}

needles! {
    REASON = b"_reason\"";
    USAGE = b"\"usage\"";
    MESSAGE_START = b"\"message_start\"";
    MESSAGE_STOP = b"\"message_stop\"";
    RESPONSE = b"\"response.";
    TEXT_DELTA = b"\"text_delta\"";
    OUTPUT_TEXT = b"\"response.output_text.delta\"";
    REFUSAL_DELTA = b"\"response.refusal.delta\"";
    REFUSAL = b"\"refusal\"";
    TEXT_COMPLETION = b"\"text_completion\"";
    DELTA = b"\"delta\"";
    CONTENT = b"\"content\"";
    ID = b"\"id\"";
    ERROR = b"\"error\"";
    TYPE = b"\"type\"";
    MODEL = b"\"model\"";
    TEXT = b"\"text\"";
    FINISH_REASON = b"\"finishReason\"";
    USAGE_METADATA = b"\"usageMetadata\"";
    CANDIDATES = b"\"candidates\"";
    THOUGHT = b"\"thought\"";
    FUNCTION_CALL = b"\"functionCall\"";
}

/// Whether some `key` (a quoted name) in `data` has a value for which `test` holds; `test` sees the
/// text after the colon.
fn any_value(key: &Finder<'_>, data: &[u8], test: impl Fn(&[u8]) -> bool) -> bool {
    let len = key.needle().len();
    key.find_iter(data).any(|at| {
        data[at + len..]
            .trim_ascii_start()
            .strip_prefix(b":")
            .is_some_and(|value| test(value.trim_ascii_start()))
    })
}

/// How many finish reasons `bytes` give (strings after some `…_reason` key), written compactly or
/// with one space after the colon as providers write them. Unlike [`worth_parsing`] this runs over
/// many events at once, so it goes from underscore to underscore (rare in stream chunks) rather
/// than through a substring search, which stream chunks' repeated `"finish_reason":null` and
/// frequent quotes and colons keep busy.
pub(super) fn count_reasons(bytes: &[u8]) -> usize {
    memchr::memchr_iter(b'_', bytes)
        .filter(|&at| {
            REASON_GIVEN
                .iter()
                .any(|given| bytes[at..].starts_with(given))
        })
        .count()
}

/// A finish reason given, as [`count_reasons`] finds it.
pub(super) const REASON_GIVEN: [&[u8]; 2] = [b"_reason\":\"", b"_reason\": \""];

/// Events that carry usage, a finish reason, the message's identity or an error. Gemini gives its
/// usage in every response of a stream (each counting all so far), so each of its events is parsed
/// (the first until the first text, then those in the window on the stream's end).
fn worth_parsing(data: &[u8]) -> bool {
    any_value(&REASON, data, |v| v.starts_with(b"\""))
        || any_value(&USAGE, data, |v| v.starts_with(b"{"))
        || any_value(&FINISH_REASON, data, |v| v.starts_with(b"\""))
        || any_value(&USAGE_METADATA, data, |v| v.starts_with(b"{"))
        || MESSAGE_START.find(data).is_some()
        || (ERROR.find(data).is_some()
            && (any_value(&ERROR, data, |v| {
                v.starts_with(b"{") || v.starts_with(b"\"")
            }) || any_value(&TYPE, data, |v| v.starts_with(b"\"error\""))))
}

/// Whether an event's data says a Responses API response ended: its `type` is
/// `"response.completed"`, `"response.incomplete"` or `"response.failed"` (for a stream without
/// `event:` lines).
fn ends_response(data: &[u8]) -> bool {
    RESPONSE.find_iter(data).any(|at| {
        let name = &data[at + 1..];
        let terminal = TERMINAL_EVENTS[1..]
            .iter()
            .any(|end| name.starts_with(end) && name.get(end.len()) == Some(&b'"'));
        let key = data[..at]
            .trim_ascii_end()
            .strip_suffix(b":")
            .map(<[u8]>::trim_ascii_end);
        terminal && key.is_some_and(|key| key.ends_with(b"\"type\""))
    })
}

/// The `event:` names that end a stream: Anthropic's, and the Responses API's (which end it after a
/// response is complete, cut short or failed).
const TERMINAL_EVENTS: [&[u8]; 4] = [
    b"message_stop",
    b"response.completed",
    b"response.incomplete",
    b"response.failed",
];

/// The first string value of `key` (a quoted name) in the start of an event, when it ends there and
/// needs no unescaping: enough for an id or a model name.
fn head_string<'a>(head: &'a [u8], key: &Finder<'_>) -> Option<&'a str> {
    let at = key.find(head)?;
    let value = head[at + key.needle().len()..]
        .trim_ascii_start()
        .strip_prefix(b":")?
        .trim_ascii_start()
        .strip_prefix(b"\"")?;
    let end = memchr::memchr2(b'"', b'\\', value)?;
    let text = std::str::from_utf8(&value[..end]).ok()?;
    (value[end] == b'"' && !text.is_empty()).then_some(text)
}

/// Whether an event carries generated text: a non-empty `content`, `refusal` or `text` delta (chat
/// completions, Anthropic), a Responses API output text or refusal delta, or a legacy completion's
/// `text`. Reasoning and tool call deltas are not text.
fn has_text(data: &[u8]) -> bool {
    if DELTA.find(data).is_some() {
        if OUTPUT_TEXT.find(data).is_some() || REFUSAL_DELTA.find(data).is_some() {
            return any_value(&DELTA, data, non_empty_string);
        }
        // A chat delta's text is its `content` (or, declining, its `refusal`); a `text` elsewhere
        // may be reasoning (OpenRouter's `reasoning_details`), so only Anthropic's `text_delta`
        // counts one.
        any_value(&CONTENT, data, non_empty_string)
            || any_value(&REFUSAL, data, non_empty_string)
            || (TEXT_DELTA.find(data).is_some() && any_value(&TEXT, data, non_empty_string))
    } else {
        TEXT_COMPLETION.find(data).is_some() && any_value(&TEXT, data, non_empty_string)
    }
}

/// A string with a first character (in the start of an event, a cut right after the opening quote
/// tells nothing).
fn non_empty_string(value: &[u8]) -> bool {
    value.starts_with(b"\"") && value.get(1).is_some_and(|&b| b != b'"')
}

/// Whether a whole event is a Gemini response that carries generated text: a non-empty `text` part
/// of a candidate that is not a thought summary (`"thought": true`, which follows the text in its
/// part, so that the start of an event cannot tell) nor beside a function call (whose arguments may
/// name a `text`).
fn gemini_text(data: &[u8]) -> bool {
    CANDIDATES.find(data).is_some()
        && any_value(&TEXT, data, non_empty_string)
        && !any_value(&THOUGHT, data, |v| v.starts_with(b"true"))
        && FUNCTION_CALL.find(data).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_event_start_is_found_whatever_the_line_ends() {
        for eol in ["\n", "\r\n", "\r"] {
            let text = "data: a\n\nevent: response.completed\ndata: {\"x\"".replace('\n', eol);
            let at = text.find("event:").unwrap();
            assert_eq!(last_event_start(text.as_bytes()), Some(at), "{eol:?}");
            assert_eq!(last_event_start(&text.as_bytes()[at..]), None, "{eol:?}");
            assert!(says_done(&text.as_bytes()[at..]), "{eol:?}");
        }
        // One line end is not a blank line, even when it is a CR and a LF.
        assert_eq!(last_event_start(b"data: a\r\ndata: b"), None);
        assert_eq!(last_event_start(b"a\r\n\r\n"), Some(5));
        assert!(says_done(
            b"data: {\"type\":\"response.completed\",\"response\":{\"id\""
        ));
        assert!(!says_done(
            b"data: {\"type\":\"response.output_text.done\",\"text\":\""
        ));
    }

    #[test]
    fn oversized_events_and_lines_are_skipped_with_bounded_memory() {
        let mut reader = SseReader::default();
        let huge = vec![b'x'; 200 * 1024];
        reader.feed(b"data: ");
        for chunk in huge.chunks(1000) {
            reader.feed(chunk);
            assert!(reader.line.capacity() <= 2 * MAX_EVENT);
        }
        reader.feed(b"\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\n");
        // Many lines that together are several times too large for one event.
        for _ in 0..300 {
            reader.feed(&[b"data: ".as_slice(), &huge[..1000], b"\n"].concat());
        }
        reader.feed(b"\n");
        assert!(reader.data.capacity() <= 2 * MAX_EVENT);
        assert_eq!(reader.finish().usage.input_tokens, Some(1));
    }

    #[test]
    fn a_line_that_ends_in_a_huge_frame_is_skipped_without_copying_it() {
        let mut reader = SseReader::default();
        let mut huge = vec![b'x'; 8 << 20];
        huge.extend_from_slice(b"\n\n");
        reader.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"");
        reader.feed(&huge);
        assert!(reader.line.capacity() <= 2 * MAX_EVENT);
        assert!(reader.data.capacity() <= 2 * MAX_EVENT);
        reader.feed(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n\ndata: [DONE]\n\n");
        let info = reader.finish();
        assert!(info.done);
        assert_eq!(info.usage.input_tokens, Some(3));
    }

    #[test]
    fn an_event_just_under_the_limit_reads_the_same_however_it_is_split() {
        let data = |pad: &str| format!(r#"{{"usage":{{"prompt_tokens":9}},"p":"{pad}"}}"#);
        let pad = "x".repeat(MAX_EVENT - 5 - data("").len());
        let event = format!("data: {}\n\n", data(&pad));
        assert!(event.len() - 2 > MAX_EVENT);
        for at in [0, 1, 6, 40_000, event.len() - 3, event.len() - 1] {
            let mut reader = SseReader::default();
            let (a, b) = event.as_bytes().split_at(at);
            reader.feed(a);
            reader.feed(b);
            assert_eq!(reader.finish().usage.input_tokens, Some(9), "split at {at}");
        }
    }

    #[test]
    fn a_long_data_line_in_uneven_frames_keeps_the_usage_at_its_end() {
        let line = format!(
            "data: {{\"type\":\"response.completed\",\"response\":{{\"id\":\"resp_1\",\"output_text\":\"{}\",\"usage\":{{\"input_tokens\":12,\"output_tokens\":34}},\"metadata\":{{\"note\":\"{}\"}}}}}}\n\n",
            "w".repeat(150 * 1024),
            // Metadata after the usage, as much as the API allows.
            "m".repeat(8 * 1024)
        );
        // Frames of every size around the tail's, in several orders, as a proxy may cut them.
        for sizes in [
            [62_000, 4_000, 13_000, 700, 16_384, 9_000],
            [70_000, 1, 16_383, 16_385, 30_000, 3],
            [1_000, 15_000, 32_768, 8_000, 24_000, 500],
        ] {
            let mut reader = SseReader::default();
            let mut rest = line.as_bytes();
            for size in sizes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (frame, more) = rest.split_at((*size).min(rest.len()));
                reader.feed(frame);
                assert!(reader.data.len() <= 2 * LONG_TAIL);
                rest = more;
            }
            let info = reader.finish();
            assert_eq!(info.usage.input_tokens, Some(12), "{sizes:?}");
            assert_eq!(info.usage.output_tokens, Some(34), "{sizes:?}");
            assert!(info.done, "{sizes:?}");
        }
        // One large frame, then the last bytes one at a time, a tail's length and more.
        let mut reader = SseReader::default();
        let (large, last) = line.as_bytes().split_at(line.len() - LONG_TAIL - 101);
        reader.feed(large);
        for byte in last.chunks(1) {
            reader.feed(byte);
            assert!(reader.data.len() <= 2 * LONG_TAIL);
        }
        assert_eq!(reader.finish().usage.output_tokens, Some(34));
    }

    #[test]
    fn an_event_of_exactly_the_limit_is_read_and_one_byte_more_is_not() {
        let data = |pad: usize| {
            let head = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}],"p":""#;
            format!("{head}{}\"}}", "x".repeat(pad - head.len() - 2))
        };
        for (size, read) in [(MAX_EVENT, true), (MAX_EVENT + 1, false)] {
            let event = format!("data: {}\n\n", data(size));
            assert_eq!(event.len(), b"data: ".len() + size + 2);
            for at in [0, 100, event.len() - 2, event.len() - 1] {
                let mut reader = SseReader::default();
                let (a, b) = event.as_bytes().split_at(at);
                reader.feed(a);
                reader.feed(b);
                let reasons = reader.finish().finish_reasons;
                assert_eq!(!reasons.is_empty(), read, "{size} bytes split at {at}");
            }
        }
    }

    /// The limit is on the event's data, its lines joined with line feeds: an event of two `data`
    /// lines is read up to the limit with the line feed between them, and so is a line written
    /// without a space after its colon, which a line of the limit's length can hold one byte over.
    #[test]
    fn an_event_of_two_data_lines_or_an_unspaced_one_is_read_up_to_the_limit() {
        let first = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}],"#;
        for (size, read) in [(MAX_EVENT, true), (MAX_EVENT + 1, false)] {
            let second = format!("\"p\":\"{}\"}}", "x".repeat(size - first.len() - 1 - 7));
            assert_eq!(first.len() + 1 + second.len(), size);
            let unspaced = format!("{first}\"p\":\"{}\"}}", "x".repeat(size - first.len() - 7));
            assert_eq!(unspaced.len(), size);
            for event in [
                format!("data: {first}\ndata: {second}\n\n"),
                format!("data:{unspaced}\n\n"),
            ] {
                let mut reader = SseReader::default();
                reader.feed(event.as_bytes());
                let reasons = reader.finish().finish_reasons;
                assert_eq!(!reasons.is_empty(), read, "{size} bytes");
            }
        }
    }

    #[test]
    fn an_event_with_an_overlong_data_line_is_skipped_whole() {
        let mut reader = SseReader::default();
        // Its first data line alone would parse; with the overlong second one it is not read.
        reader.feed(b"data: {\"usage\":{\"prompt_tokens\":5}}\ndata: ");
        reader.feed(&vec![b'x'; MAX_EVENT]);
        reader.feed(b"\n\n: a comment too long to read is only skipped itself\n");
        assert_eq!(reader.info.usage.input_tokens, None);
        reader.feed(b":");
        reader.feed(&vec![b'c'; MAX_EVENT]);
        reader.feed(b"\ndata: {\"usage\":{\"prompt_tokens\":7}}\n\n");
        assert_eq!(reader.finish().usage.input_tokens, Some(7));
    }

    /// The first text is looked for up to 1 MiB into a stream, a byte order mark opening it
    /// included, and not a byte further; a stream that gave its first text has told all its
    /// beginning will.
    #[test]
    fn the_beginning_is_read_until_the_first_text_or_a_mebibyte_in() {
        let mut reader = SseReader::default();
        reader.feed(BOM);
        let mut fed = BOM.len();
        let first =
            b"data: {\"id\":\"r1\",\"choices\":[{\"delta\":{\"reasoning_content\":\"hm\"}}]}\n\n";
        reader.feed(first);
        fed += first.len();
        let comment = [b":".as_slice(), &[b' '; 998], b"\n"].concat();
        while fed + comment.len() < 1 << 20 {
            reader.feed(&comment);
            fed += comment.len();
        }
        reader.feed(&vec![b':'; (1 << 20) - 1 - fed]);
        assert!(!reader.saw_token);
        assert!(!reader.read_enough());
        reader.feed(b"\n");
        assert!(reader.read_enough());
        assert_eq!(reader.finish().id.as_deref(), Some("r1"));

        let mut reader = SseReader::default();
        reader.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n");
        assert!(reader.read_enough());
    }

    /// A `response.*` event line tells that the stream is the Responses API's as soon as it ends,
    /// before its event's data has arrived (which a frame may cut anywhere).
    #[test]
    fn a_response_event_line_marks_the_stream_before_its_data_ends() {
        let mut reader = SseReader::default();
        reader.feed(b"event: message_start\ndata: {}\n\n");
        assert!(!reader.wraps_response);
        reader.feed(b"event: response.created\ndata: {\"ty");
        assert!(reader.wraps_response);
    }

    /// A `data` line's first [`EVENT_HEAD`] bytes tell whether it carries text before the rest of
    /// it arrives; no other line's do, whether it comes whole or in pieces.
    #[test]
    fn only_a_data_line_gives_the_first_text_before_its_end() {
        let delta = format!(
            "{{\"choices\":[{{\"delta\":{{\"content\":\"Hi\",\"p\":\"{}\"}}}}]}}",
            "x".repeat(2 * EVENT_HEAD)
        );
        let mut reader = SseReader::default();
        reader.feed(format!("data: {delta}").as_bytes());
        assert!(reader.saw_token);
        for field in [": ", "event: ", "id: "] {
            let line = format!("{field}{delta}");
            for at in [0, 100, line.len()] {
                let mut reader = SseReader::default();
                let (a, b) = line.as_bytes().split_at(at);
                reader.feed(a);
                reader.feed(b);
                reader.feed(b"\n\n");
                assert!(!reader.saw_token, "{field:?} split at {at}");
            }
        }
    }
}
