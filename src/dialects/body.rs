//! The other gateways' body fields (LiteLLM's `litellm_metadata` and `metadata`, OpenRouter's
//! `trace` and `session_id`), the native `user`, and session ids reconstructed from a conversation.

use super::foreign::Foreign;
use super::Sources;
use crate::codec::{self, conversation, Members, Scan};
use crate::metadata::push_unique;
use crate::RequestMetadata;
use sha2::{Digest, Sha256};
use std::ops::Range;

/// Fills what `meta` still lacks from the other dialects' body fields (LiteLLM, then OpenRouter),
/// which rank below it: tags are added, ids and `extra` keys are only ever filled in. A field that
/// can no longer win is not read.
pub(crate) fn fill_from_body(
    meta: &mut RequestMetadata,
    body: &[u8],
    scan: &Scan,
    sources: &Sources,
) {
    let members = scan.members();
    if sources.litellm {
        // LiteLLM's own object first: `metadata` may be the provider's.
        for range in [&members.litellm_metadata, &members.metadata]
            .into_iter()
            .flatten()
        {
            fill_litellm(meta, body, range.clone());
        }
    }
    if sources.openrouter {
        fill_openrouter(meta, body, members);
    }
}

/// Fills what `meta` lacks from OpenRouter's `trace` object, then its `session_id`.
fn fill_openrouter(meta: &mut RequestMetadata, body: &[u8], members: &Members) {
    if let Some([trace_id, trace_name, span_name, generation_name]) = named(
        body,
        members.trace.clone(),
        ["trace_id", "trace_name", "span_name", "generation_name"],
    ) {
        if meta.trace_id.is_none() {
            meta.trace_id = Foreign::read(trace_id).text();
        }
        for (key, value) in [
            ("trace_name", trace_name),
            ("span_name", span_name),
            ("generation_name", generation_name),
        ] {
            if let Some(value) = Foreign::read(value).text() {
                meta.extra.entry(key).or_insert_with(|| value.into());
            }
        }
    }
    if meta.trace_id.is_none() {
        meta.trace_id = Foreign::read(json_text(body, members.session_id.clone())).text();
    }
}

/// Fills what `meta` lacks from a LiteLLM metadata object at `body[range]`.
fn fill_litellm(meta: &mut RequestMetadata, body: &[u8], range: Range<usize>) {
    let Some([tags, trace_id, session_id, trace_user_id, generation_name]) = named(
        body,
        Some(range),
        [
            "tags",
            "trace_id",
            "session_id",
            "trace_user_id",
            "generation_name",
        ],
    ) else {
        return;
    };
    for tag in Foreign::read(tags).list() {
        push_unique(&mut meta.tags, tag);
    }
    // Only what can still win is decoded.
    if meta.trace_id.is_none() {
        meta.trace_id = Foreign::read(trace_id)
            .text()
            .or_else(|| Foreign::read(session_id).text());
    }
    if meta.user_id.is_none() {
        meta.user_id = Foreign::read(trace_user_id).text();
    }
    if let Some(name) = Foreign::read(generation_name).text() {
        meta.extra
            .entry("generation_name")
            .or_insert_with(|| name.into());
    }
}

/// The JSON text of the fields `names` in the object at `body[range]`, in the order asked; anything
/// else in it is skipped unread. `None` when the value is not an object.
fn named<'a, const N: usize>(
    body: &'a [u8],
    range: Option<Range<usize>>,
    names: [&str; N],
) -> Option<[Option<&'a str>; N]> {
    let mut found = [None; N];
    codec::object_members(json_text(body, range)?, |name, value| {
        if let Some(i) = names.iter().position(|n| *n == name) {
            found[i] = Some(value);
        }
    })?;
    Some(found)
}

/// The JSON text of a top-level member's value.
fn json_text(body: &[u8], range: Option<Range<usize>>) -> Option<&str> {
    std::str::from_utf8(body.get(range?)?).ok()
}

/// Fills the user id from the body's native `user` field, the last-ranked source; it is read only
/// when no other source gave one.
pub(crate) fn fill_native_user(
    meta: &mut RequestMetadata,
    body: &[u8],
    scan: &Scan,
    sources: &Sources,
) {
    if sources.native_user && meta.user_id.is_none() {
        meta.user_id = Foreign::read(json_text(body, scan.members().user.clone())).text();
    }
}

/// A stable id for the conversation a chat request continues: a hash of its system prompt and first
/// user message, which every turn repeats. `None` when the body holds no user message.
pub(crate) fn conversation_id(body: &[u8], members: &Members, max_depth: usize) -> Option<String> {
    let (system, user) = conversation::opening(body, members, max_depth)?;
    let mut hash = Sha256::new();
    hash.update(system);
    hash.update([0]);
    hash.update(user);
    let digest = hash.finalize();
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("conv_{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_body(body: &str) -> RequestMetadata {
        let scan = codec::scan(body.as_bytes(), &crate::Limits::default()).unwrap();
        let mut meta = RequestMetadata::default();
        fill_from_body(&mut meta, body.as_bytes(), &scan, &Sources::all());
        fill_native_user(&mut meta, body.as_bytes(), &scan, &Sources::all());
        meta
    }

    #[test]
    fn body_fields_are_read_leniently_and_only_while_they_can_win() {
        // A field of another type is skipped; escapes decode; LiteLLM outranks OpenRouter.
        let meta = from_body(
            r#"{"metadata":{"trace_id":7,"session_id":"s\u0031","tags":["a",1,"a","b"],"x":{"y":[]}},
                "trace":{"trace_id":"or","trace_name":"n","generation_name":"g"},"session_id":"sid",
                "user":"native"}"#,
        );
        assert_eq!(meta.trace_id.as_deref(), Some("s1"));
        assert_eq!(meta.tags, ["a", "b"]);
        assert_eq!(meta.user_id.as_deref(), Some("native"));
        assert_eq!(meta.extra["trace_name"], "n");
        assert_eq!(meta.extra["generation_name"], "g");
        // OpenRouter's trace, then its `session_id`.
        assert_eq!(
            from_body(r#"{"trace":{"trace_id":"or"},"session_id":"sid"}"#)
                .trace_id
                .as_deref(),
            Some("or")
        );
        assert_eq!(
            from_body(r#"{"trace":{},"session_id":"sid"}"#)
                .trace_id
                .as_deref(),
            Some("sid")
        );
        // LiteLLM's own object outranks `metadata`, which may be the provider's.
        let meta = from_body(
            r#"{"metadata":{"trace_id":"m","tags":["m"]},"litellm_metadata":{"trace_id":"l","tags":["l"]}}"#,
        );
        assert_eq!(meta.trace_id.as_deref(), Some("l"));
        assert_eq!(meta.tags, ["l", "m"]);
        // Not an object: nothing from it.
        assert_eq!(
            from_body(r#"{"metadata":["trace_id"],"trace":"t"}"#),
            RequestMetadata::default()
        ); // A source that is off is not read.
        let body = r#"{"trace":{"trace_id":"or"},"session_id":"sid","metadata":{"tags":["l"]}}"#;
        let scan = codec::scan(body.as_bytes(), &crate::Limits::default()).unwrap();
        let mut meta = RequestMetadata::default();
        let off = Sources::all().openrouter(false).litellm(false);
        fill_from_body(&mut meta, body.as_bytes(), &scan, &off);
        assert_eq!(meta, RequestMetadata::default());
    }
}
