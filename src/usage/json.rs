//! A JSON response, read with bounded memory: the whole of a small one, the ends of a large one.

use super::{absorb, read_document, ResponseInfo, KEEP};
use bytes::Bytes;
use serde_json::Value;
use std::collections::VecDeque;

#[derive(Debug, Default)]
pub(super) struct JsonReader {
    /// The first `KEEP` bytes: `id` and `model` come first in every shape.
    head: Vec<u8>,
}

impl JsonReader {
    /// Copies what still fits in the head; returns the rest.
    pub(super) fn feed<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        let room = KEEP - self.head.len();
        let (to_head, rest) = bytes.split_at(room.min(bytes.len()));
        self.head.extend_from_slice(to_head);
        rest
    }

    pub(super) fn full(&self) -> bool {
        self.head.len() == KEEP
    }

    /// Reads the head and the window on the last frames; `dropped` says whether bytes between them
    /// were let go.
    pub(super) fn finish(mut self, tail: VecDeque<Bytes>, dropped: bool) -> ResponseInfo {
        let mut info = ResponseInfo::default();
        if !dropped {
            // Everything is here: parse it whole, past a byte order mark (RFC 8259 lets a parser
            // ignore one; serde_json does not).
            for frame in &tail {
                self.head.extend_from_slice(frame);
            }
            let text = self
                .head
                .strip_prefix(b"\xEF\xBB\xBF")
                .unwrap_or(&self.head);
            read_document(text, &mut info);
            return info;
        }
        // A large response: read the members that sit at its ends, one value at a time. At the
        // head the first of each is the response's own; at the tail the last is, since what comes
        // before it (a tool call's input, say) may hold the same names. An embeddings response
        // names its model after the vectors, so the tail is asked for one too.
        let tail: Vec<u8> = tail.iter().flat_map(|f| f.iter().copied()).collect();
        // The response's own id is its first member where the shape names it first (OpenAI,
        // Anthropic, the Responses API); an `"id"` further in may be a tool call's or a filter's.
        if let Some(id) = first_member(&self.head, "id") {
            absorb(&serde_json::json!({ "id": id }), &mut info);
        }
        if let Some(model) = all_values(&self.head, "model").next() {
            absorb(&serde_json::json!({ "model": model }), &mut info);
        }
        // Only Anthropic's message has a top-level `stop_reason`; elsewhere (a vLLM choice) it is
        // the stop string that matched, not a reason.
        let anthropic = memchr::memmem::find_iter(&self.head, b"\"message\"").any(|at| {
            let key = self.head[..at]
                .trim_ascii_end()
                .strip_suffix(b":")
                .map(<[u8]>::trim_ascii_end);
            key.is_some_and(|key| key.ends_with(b"\"type\""))
        });
        // Gemini names its model and response after its candidates and usage, in each response
        // (also in each of a stream's, which it may answer with in one array); Bedrock's Converse
        // API gives its stop reason and usage after its message.
        let keys: [(&str, Wanted); 7] = [
            ("usage", Value::is_object),
            ("model", Value::is_string),
            ("stop_reason", Value::is_string),
            ("usageMetadata", Value::is_object),
            ("modelVersion", Value::is_string),
            ("responseId", Value::is_string),
            ("stopReason", Value::is_string),
        ];
        let (mut gemini, mut bedrock) = (false, false);
        for (key, wanted) in keys {
            if key == "stop_reason" && !anthropic {
                continue;
            }
            if let Some(value) = last_value(&tail, key, wanted) {
                gemini |= key == "usageMetadata";
                bedrock |= key == "stopReason";
                absorb(&serde_json::json!({ key: value }), &mut info);
            }
        }
        // A Gemini array's first response names them too, when the tail did not.
        let unnamed = [info.model.is_none(), info.id.is_none()];
        for (key, missing) in ["modelVersion", "responseId"].into_iter().zip(unnamed) {
            if gemini && missing {
                if let Some(value) = all_values(&self.head, key).find(Value::is_string) {
                    absorb(&serde_json::json!({ key: value }), &mut info);
                }
            }
        }
        // Azure writes its keys in alphabetical order: `id` right before `model`, after the
        // choices, so at the tail (and before `prompt_filter_results`, whose blocklists have ids of
        // their own), and each `finish_reason` before its message, so at the head for the first.
        if info.id.is_none() && !gemini && !bedrock {
            // Failing both, the first `"id"` at the head, as in a body that names it second (not in
            // Gemini's or Bedrock's, where an `"id"` is a function call's or a tool input's).
            let id = id_before_model(&tail).or_else(|| all_values(&self.head, "id").next());
            if let Some(id) = id {
                absorb(&serde_json::json!({ "id": id }), &mut info);
            }
        }
        // OpenAI's choices and Gemini's candidates, one reason each, in order (which choice each
        // came from is not at hand here). An Anthropic message has its `stop_reason`; a
        // `finish_reason` in it is a tool's input.
        if !anthropic {
            let key = if gemini {
                "finishReason"
            } else {
                "finish_reason"
            };
            let reasons = all_values(&self.head, key).chain(all_values(&tail, key));
            for (choice, reason) in (0..).zip(reasons) {
                if let Some(reason) = reason.as_str() {
                    info.note_reason(choice, reason);
                }
            }
        }
        info
    }
}

/// The value of `key` when it is the first member of the object `head` opens.
fn first_member(head: &[u8], key: &str) -> Option<Value> {
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let rest = head
        .trim_ascii_start()
        .strip_prefix(b"{")?
        .trim_ascii_start();
    let rest = rest
        .strip_prefix(b"\"")?
        .strip_prefix(key.as_bytes())?
        .strip_prefix(b"\"")?;
    value_after_colon(rest).filter(Value::is_string)
}

/// The JSON value after the colon that `rest` starts with (whitespace aside), parsed on its own.
fn value_after_colon(rest: &[u8]) -> Option<Value> {
    let rest = rest.trim_ascii_start().strip_prefix(b":")?;
    serde_json::Deserializer::from_slice(rest)
        .into_iter::<Value>()
        .next()?
        .ok()
}

/// The string value of the last `"id"` before the last `"model"` string in a fragment: the
/// response's own, in a body whose keys are in alphabetical order.
fn id_before_model(fragment: &[u8]) -> Option<Value> {
    let model = memchr::memmem::rfind_iter(fragment, b"\"model\"").find(|&at| {
        fragment[at + 7..]
            .trim_ascii_start()
            .strip_prefix(b":")
            .is_some_and(|value| value.trim_ascii_start().starts_with(b"\""))
    })?;
    last_value(&fragment[..model], "id", Value::is_string)
}

/// Which values of a key [`last_value`] takes.
pub(super) type Wanted = fn(&Value) -> bool;

/// The value after the last `"key":` in a fragment of JSON that parses on its own and is `wanted`
/// (a response's own `usage` is its last object under that name: a string under the same name in
/// the caller's `metadata`, after it, is not).
pub(super) fn last_value(fragment: &[u8], key: &str, wanted: Wanted) -> Option<Value> {
    let needle = format!("\"{key}\"");
    memchr::memmem::rfind_iter(fragment, needle.as_bytes())
        .find_map(|at| value_after_colon(&fragment[at + needle.len()..]).filter(wanted))
}

/// Every value after `"key":` in a fragment, in order (a quoted occurrence inside a string gives a
/// value only when the text after it happens to be JSON, which the callers' keys make unlikely).
fn all_values<'a>(fragment: &'a [u8], key: &str) -> impl Iterator<Item = Value> + 'a {
    let needle = format!("\"{key}\"");
    let finder = memchr::memmem::Finder::new(needle.as_bytes()).into_owned();
    let len = needle.len();
    finder
        .find_iter(fragment)
        .collect::<Vec<_>>()
        .into_iter()
        .filter_map(move |at| value_after_colon(&fragment[at + len..]))
}

#[cfg(test)]
mod tests {
    use crate::usage::UsageReader;
    use bytes::Bytes;

    #[test]
    fn a_large_response_keeps_only_its_ends_and_still_reads_them() {
        let filler = "x".repeat(300 * 1024);
        let body = format!(
            r#"{{"id":"chatcmpl-1","model":"gpt-4o","choices":[{{"message":{{"content":"{filler}"}},"finish_reason":"length"}}],"usage":{{"prompt_tokens":3,"completion_tokens":4}}}}"#
        );
        let body = Bytes::from(body);
        for frame in [1000, 64 * 1024, 200 * 1024, body.len()] {
            let mut reader = UsageReader::new("application/json").unwrap();
            for at in (0..body.len()).step_by(frame) {
                reader.feed(&body.slice(at..body.len().min(at + frame)));
            }
            let info = reader.finish();
            assert_eq!(info.id.as_deref(), Some("chatcmpl-1"), "{frame}");
            assert_eq!(info.model.as_deref(), Some("gpt-4o"));
            assert_eq!(info.finish_reasons, ["length"]);
            assert_eq!(info.usage.input_tokens, Some(3));
            assert_eq!(info.usage.output_tokens, Some(4));
        }
    }
}
