//! A JSON response, read with bounded memory: the whole of a small one, the ends of a large one.

use super::{absorb, ResponseInfo};
use serde_json::Value;
use std::collections::VecDeque;

/// How much of each end of a large response is kept.
const KEEP: usize = 64 * 1024;

#[derive(Debug, Default)]
pub(super) struct JsonReader {
    /// The first `KEEP` bytes: `id` and `model` come first in every shape.
    head: Vec<u8>,
    /// The last `KEEP` bytes past the head: `usage` and finish reasons come last.
    tail: VecDeque<u8>,
    overflowed: bool,
}

impl JsonReader {
    pub(super) fn feed(&mut self, mut bytes: &[u8]) {
        let room = KEEP - self.head.len();
        let (to_head, rest) = bytes.split_at(room.min(bytes.len()));
        self.head.extend_from_slice(to_head);
        bytes = rest;
        if bytes.is_empty() {
            return;
        }
        if bytes.len() >= KEEP {
            self.overflowed |= !self.tail.is_empty() || bytes.len() > KEEP;
            self.tail.clear();
            bytes = &bytes[bytes.len() - KEEP..];
        }
        let excess = (self.tail.len() + bytes.len()).saturating_sub(KEEP);
        if excess > 0 {
            self.overflowed = true;
            self.tail.drain(..excess);
        }
        self.tail.extend(bytes);
    }

    pub(super) fn finish(mut self) -> ResponseInfo {
        let mut info = ResponseInfo::default();
        if !self.overflowed {
            // Everything is here: parse it whole.
            self.head.extend(self.tail.drain(..));
            if let Ok(value) = serde_json::from_slice::<Value>(&self.head) {
                absorb(&value, &mut info);
            }
            return info;
        }
        // A large response: read the members that sit at its ends, one value at a time.
        let tail = self.tail.make_contiguous();
        for (bytes, keys) in [(&self.head[..], ["id", "model"]), (&*tail, ["usage", "stop_reason"])] {
            for key in keys {
                if let Some(value) = member_value(bytes, key) {
                    absorb(&serde_json::json!({ key: value }), &mut info);
                }
            }
        }
        for reason in all_values(tail, "finish_reason") {
            absorb(&serde_json::json!({ "stop_reason": reason }), &mut info);
        }
        info
    }
}

/// The value after the first `"key":` in a fragment of JSON that parses on its own.
fn member_value(fragment: &[u8], key: &str) -> Option<Value> {
    all_values(fragment, key).next()
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
    use super::*;

    #[test]
    fn a_large_response_keeps_only_its_ends_and_still_reads_them() {
        let filler = "x".repeat(300 * 1024);
        let body = format!(
            r#"{{"id":"chatcmpl-1","model":"gpt-4o","choices":[{{"message":{{"content":"{filler}"}},"finish_reason":"length"}}],"usage":{{"prompt_tokens":3,"completion_tokens":4}}}}"#
        );
        let mut reader = JsonReader::default();
        for chunk in body.as_bytes().chunks(1000) {
            reader.feed(chunk);
            assert!(reader.head.len() <= KEEP && reader.tail.len() <= KEEP);
        }
        let info = reader.finish();
        assert_eq!(info.id.as_deref(), Some("chatcmpl-1"));
        assert_eq!(info.model.as_deref(), Some("gpt-4o"));
        assert_eq!(info.finish_reasons, ["length"]);
        assert_eq!(info.usage.input_tokens, Some(3));
        assert_eq!(info.usage.output_tokens, Some(4));
    }

    #[test]
    fn feeding_in_any_split_gives_the_same_bytes() {
        let body: Vec<u8> = (0..(3 * KEEP) as u32).map(|i| (i % 251) as u8).collect();
        for chunk in [1, 7, KEEP - 1, KEEP, KEEP + 1, 2 * KEEP + 5] {
            let mut reader = JsonReader::default();
            for piece in body.chunks(chunk) {
                reader.feed(piece);
            }
            assert_eq!(reader.head, body[..KEEP]);
            assert!(reader.tail.iter().eq(body[body.len() - KEEP..].iter()), "chunk {chunk}");
            assert!(reader.overflowed);
        }
    }
}
