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
        for key in ["id", "model"] {
            if let Some(value) = all_values(&self.head, key).next() {
                absorb(&serde_json::json!({ key: value }), &mut info);
            }
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
        let keys: [(&str, Wanted); 3] = [
            ("usage", Value::is_object),
            ("model", Value::is_string),
            ("stop_reason", Value::is_string),
        ];
        for (key, wanted) in keys {
            if key == "stop_reason" && !anthropic {
                continue;
            }
            if let Some(value) = last_value(&tail, key, wanted) {
                absorb(&serde_json::json!({ key: value }), &mut info);
            }
        }
        // Azure writes its keys in alphabetical order: `id` after the choices, so at the tail, and
        // each `finish_reason` before its message, so at the head for the first choice.
        if info.id.is_none() {
            if let Some(id) = last_value(&tail, "id", Value::is_string) {
                absorb(&serde_json::json!({ "id": id }), &mut info);
            }
        }
        // One per choice, in order: which choice each came from is not at hand here.
        let reasons =
            all_values(&self.head, "finish_reason").chain(all_values(&tail, "finish_reason"));
        for (choice, reason) in (0..).zip(reasons) {
            if let Some(reason) = reason.as_str() {
                info.note_reason(choice, reason);
            }
        }
        info
    }
}

/// Which values of a key [`last_value`] takes.
pub(super) type Wanted = fn(&Value) -> bool;

/// The value after the last `"key":` in a fragment of JSON that parses on its own and is `wanted`
/// (a response's own `usage` is its last object under that name: a string under the same name in
/// the caller's `metadata`, after it, is not).
pub(super) fn last_value(fragment: &[u8], key: &str, wanted: Wanted) -> Option<Value> {
    let needle = format!("\"{key}\"");
    memchr::memmem::rfind_iter(fragment, needle.as_bytes()).find_map(|at| {
        let rest = fragment[at + needle.len()..]
            .trim_ascii_start()
            .strip_prefix(b":")?;
        serde_json::Deserializer::from_slice(rest)
            .into_iter::<Value>()
            .next()?
            .ok()
            .filter(wanted)
    })
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
        .filter_map(move |at| {
            let rest = fragment[at + len..].trim_ascii_start().strip_prefix(b":")?;
            serde_json::Deserializer::from_slice(rest)
                .into_iter::<Value>()
                .next()?
                .ok()
        })
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
