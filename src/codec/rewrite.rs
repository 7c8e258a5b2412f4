//! The `requesty` member rewritten to hold new metadata, keeping the bytes of every field whose
//! value did not change: merging into a client's member adds to it without re-spelling its numbers,
//! escapes or key order.

use super::member;
use crate::RequestMetadata;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashSet;

/// The member text for `new`, given the member as sent (`raw`) and what it parsed to (`old`).
///
/// Fields come in the order they were sent, then new ones in the wire order. A field whose value is
/// unchanged keeps its bytes; `tags` (sent without repeats, which a reader counts) and `extra`
/// that only gained entries keep theirs too, with the new entries appended; anything else is
/// written afresh. Whitespace and commas between fields that stay neighbours are kept as well; new
/// neighbours are joined by a bare comma.
pub(crate) fn rewrite(raw: &[u8], old: &RequestMetadata, new: &RequestMetadata) -> Vec<u8> {
    let Some(fields) = member::fields(raw) else {
        return to_json(new);
    };
    let mut out = Members::with_capacity(raw.len() + 64);
    // The string fields in wire order, with whether the member as sent had each.
    let texts = [
        ("user_id", &old.user_id, &new.user_id),
        ("trace_id", &old.trace_id, &new.trace_id),
        ("origin_referer", &old.origin_referer, &new.origin_referer),
        ("origin_title", &old.origin_title, &new.origin_title),
    ];
    let mut texts_sent = [false; 4];
    let (mut tags_sent, mut extra_sent) = (false, false);
    for (i, field) in fields.iter().enumerate() {
        // What separated this field from the one before it (or from the `{`).
        let before = match i.checked_sub(1) {
            Some(previous) => fields[previous].whole.end,
            None => 1,
        };
        out.next_is(i, raw.get(before..field.whole.start).unwrap_or_default());
        let whole = &raw[field.whole.clone()];
        let value = &raw[field.value.clone()];
        let name = field.name.as_str();
        if name == "tags" {
            tags_sent = true;
            out.list(whole, value, name, &old.tags, &new.tags);
        } else if name == "extra" {
            extra_sent = true;
            out.map(whole, value, name, &old.extra, &new.extra);
        } else if let Some(i) = texts.iter().position(|(text, ..)| *text == name) {
            texts_sent[i] = true;
            out.text(whole, name, texts[i].1, texts[i].2);
        } else {
            match new.other.get(name) {
                Some(now) if old.other.get(name) == Some(now) => out.raw(whole),
                Some(now) => out.fresh(name, now),
                None => {}
            }
        }
    }
    // A field sent last but not written leaves no gap for what follows.
    out.next = None;
    // What the member lacked, in wire order: tags, the ids, extra, the origin, unknown fields.
    let fresh_texts = |out: &mut Members<'_>, range: std::ops::Range<usize>| {
        for i in range {
            if let (false, (name, _, Some(value))) = (texts_sent[i], texts[i]) {
                out.fresh(name, value);
            }
        }
    };
    if !tags_sent && !new.tags.is_empty() {
        out.fresh("tags", &new.tags);
    }
    fresh_texts(&mut out, 0..2);
    if !extra_sent && !new.extra.is_empty() {
        out.fresh("extra", &new.extra);
    }
    fresh_texts(&mut out, 2..4);
    if !new.other.is_empty() {
        // Looked up in a set: a caller's own member may hold any number of fields.
        let sent: HashSet<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        for (name, value) in &new.other {
            if !sent.contains(name.as_str()) && !is_known(name) {
                out.fresh(name, value);
            }
        }
    }
    // The whitespace before the closing brace, kept when the last field sent is still last.
    let last = fields.last().map_or(1, |f| f.whole.end);
    let closing = raw.len().saturating_sub(1);
    out.finish(fields.len(), raw.get(last..closing).unwrap_or_default())
}

/// The object being written: `{`, then members separated by commas.
struct Members<'a> {
    buf: Vec<u8>,
    empty: bool,
    /// The field as sent that was written last, by its place; `None` after a new one.
    last: Option<usize>,
    /// The field as sent about to be written, with what separated it from the one before it.
    next: Option<(usize, &'a [u8])>,
}

impl<'a> Members<'a> {
    fn with_capacity(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        buf.push(b'{');
        Self {
            buf,
            empty: true,
            last: None,
            next: None,
        }
    }

    /// The next write is the field sent at place `at`, preceded by `gap` as sent.
    fn next_is(&mut self, at: usize, gap: &'a [u8]) {
        self.next = Some((at, gap));
    }

    fn separate(&mut self) {
        let next = self.next.take();
        let kept = match next {
            Some((0, gap)) if self.empty => Some(gap),
            Some((at, gap)) if at > 0 && self.last == Some(at - 1) => Some(gap),
            _ => None,
        };
        match kept {
            Some(gap) => self.buf.extend_from_slice(gap),
            None if !self.empty => self.buf.push(b','),
            None => {}
        }
        self.empty = false;
        self.last = next.map(|(at, _)| at);
    }

    /// A member copied as it was sent.
    fn raw(&mut self, whole: &[u8]) {
        self.separate();
        self.buf.extend_from_slice(whole);
    }

    /// A member written from its value.
    fn fresh(&mut self, name: &str, value: &impl Serialize) {
        self.separate();
        json_into(&mut self.buf, name);
        self.buf.push(b':');
        json_into(&mut self.buf, value);
    }

    fn text(&mut self, whole: &[u8], name: &str, old: &Option<String>, new: &Option<String>) {
        match new {
            _ if new == old => self.raw(whole),
            Some(value) => self.fresh(name, value),
            None => {}
        }
    }

    /// `tags`: kept, kept with new tags appended, or written afresh.
    fn list(&mut self, whole: &[u8], value: &[u8], name: &str, old: &[String], new: &[String]) {
        if new == old {
            return self.raw(whole);
        }
        if new.is_empty() {
            return;
        }
        match new.strip_prefix(old) {
            // A reader counts the list as sent, repeats included: one with repeats is written afresh,
            // so that only the tags the merge holds count against `max_tags`.
            Some(added) if value.first() == Some(&b'[') && sent_len(value) == Some(old.len()) => {
                self.open(whole, !old.is_empty());
                for (i, tag) in added.iter().enumerate() {
                    if i > 0 {
                        self.buf.push(b',');
                    }
                    json_into(&mut self.buf, tag);
                }
                self.buf.push(b']');
            }
            _ => self.fresh(name, &new),
        }
    }

    /// `extra`: kept, kept with new keys appended, or written afresh.
    fn map(
        &mut self,
        whole: &[u8],
        value: &[u8],
        name: &str,
        old: &Map<String, Value>,
        new: &Map<String, Value>,
    ) {
        if new == old {
            return self.raw(whole);
        }
        if new.is_empty() {
            return;
        }
        let kept = old.iter().all(|(key, value)| new.get(key) == Some(value));
        if !kept || value.first() != Some(&b'{') {
            return self.fresh(name, new);
        }
        self.open(whole, !old.is_empty());
        let mut first = true;
        for (key, value) in new.iter().filter(|(key, _)| !old.contains_key(*key)) {
            if !std::mem::take(&mut first) {
                self.buf.push(b',');
            }
            json_into(&mut self.buf, key);
            self.buf.push(b':');
            json_into(&mut self.buf, value);
        }
        self.buf.push(b'}');
    }

    /// Copies a member whose value is an array or object up to its closing bracket, ready for more
    /// entries (after a comma when it already has some).
    fn open(&mut self, whole: &[u8], has_entries: bool) {
        self.separate();
        self.buf.extend_from_slice(&whole[..whole.len() - 1]);
        if has_entries {
            self.buf.push(b',');
        }
    }

    /// Closes the object; `trailing` followed the last of the `sent` fields.
    fn finish(mut self, sent: usize, trailing: &[u8]) -> Vec<u8> {
        if sent > 0 && self.last == Some(sent - 1) {
            self.buf.extend_from_slice(trailing);
        }
        self.buf.push(b'}');
        self.buf
    }
}

/// How many items the JSON array `value` holds as sent; `None` when it is not one.
fn sent_len(value: &[u8]) -> Option<usize> {
    // Items of a zero-sized type: counting them allocates nothing.
    serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(value)
        .ok()
        .map(|items| items.len())
}

fn json_into(buf: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) {
    // Strings and `serde_json::Value`s serialize into a Vec without error.
    let _ = serde_json::to_writer(&mut *buf, value);
}

/// The whole member written afresh.
pub(crate) fn to_json(metadata: &RequestMetadata) -> Vec<u8> {
    let mut buf = Vec::new();
    if metadata.other.keys().any(|name| is_known(name)) {
        // `other` is public: a known field's name in it would be written twice, and the member
        // refused as a duplicate by the next reader. The field itself wins.
        let mut known_once = metadata.clone();
        known_once.other.retain(|name, _| !is_known(name));
        json_into(&mut buf, &known_once);
    } else {
        json_into(&mut buf, metadata);
    }
    buf
}

/// Whether `name` is one of the fields [`RequestMetadata`] models, which `other` must not repeat.
fn is_known(name: &str) -> bool {
    matches!(
        name,
        "tags" | "user_id" | "trace_id" | "extra" | "origin_referer" | "origin_title"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The member is made to say `new`, whatever `old` said: a field whose value changed is written
    /// afresh, one this crate does not know too, while the others keep their bytes and spacing.
    #[test]
    fn a_changed_field_is_written_afresh_and_an_unchanged_one_kept() {
        let raw = br#"{ "future" : 1.0e0, "user_id" : "a", "later": [1] }"#;
        let old: RequestMetadata = serde_json::from_slice(raw).unwrap();
        let mut new = old.clone();
        new.other.insert("future".into(), json!(2));
        new.user_id = Some("b".into());
        let out = rewrite(raw, &old, &new);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{ "future":2, "user_id":"b", "later": [1] }"#
        );
    }

    /// A field `new` no longer holds goes with what separated it from the field before: the first
    /// field sent leaves no comma after the `{`, and the fields a dropped one stood between are
    /// joined by a bare comma.
    #[test]
    fn a_dropped_field_leaves_no_separator_behind() {
        let raw = br#"{ "gone" : 1 , "user_id" : "a" , "also_gone": 2 , "later" : [1] }"#;
        let old: RequestMetadata = serde_json::from_slice(raw).unwrap();
        let mut new = old.clone();
        new.other.remove("gone");
        new.other.remove("also_gone");
        let out = String::from_utf8(rewrite(raw, &old, &new)).unwrap();
        assert_eq!(out, r#"{"user_id" : "a","later" : [1] }"#);
        let read: RequestMetadata = serde_json::from_str(&out).unwrap();
        assert_eq!(read, new);
    }
}
