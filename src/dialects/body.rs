//! The other gateways' body fields (LiteLLM's `litellm_metadata` and `metadata`, OpenRouter's
//! `trace` and `session_id`), the native `user`, and session ids reconstructed from a conversation.

use super::foreign;
use super::Sources;
use crate::codec::{self, conversation, Members, Scan};
use crate::{Limits, RequestMetadata};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::ops::Range;

/// Fills what `meta` still lacks from the other dialects' body fields (LiteLLM, then OpenRouter),
/// which rank below it: tags are added, ids and `extra` keys are only ever filled in. A field that
/// can no longer win is not read.
///
/// These fields are the providers' or other gateways' own and stay in the body, so they are read
/// leniently: a value that does not fit `limits` is not taken (its field is named in `left_out`, for
/// a warning), never a reason to refuse the request.
pub(crate) fn fill_from_body(
    meta: &mut RequestMetadata,
    body: &[u8],
    scan: &Scan,
    sources: &Sources,
    limits: &Limits,
    left_out: &mut Vec<String>,
) {
    let members = scan.members();
    if sources.litellm {
        // LiteLLM's own object first: `metadata` may be the provider's.
        for (object, range) in [
            ("litellm_metadata", &members.litellm_metadata),
            ("metadata", &members.metadata),
        ] {
            if let Some(range) = range {
                let fill = Fill {
                    meta,
                    limits,
                    left_out,
                };
                fill.litellm(object, body, range.clone());
            }
        }
    }
    if sources.openrouter {
        let fill = Fill {
            meta,
            limits,
            left_out,
        };
        fill.openrouter(body, members);
    }
}

/// Fills the user id from the body's native `user` field, else OpenAI's `safety_identifier` (which
/// replaces it), else Anthropic's `metadata.user_id` (both written by this crate's client), the
/// last-ranked source; it is read only when no other source gave one (and, like the other body
/// fields, only when it fits `limits`: one that does not gives way to the next).
pub(crate) fn fill_native_user(
    meta: &mut RequestMetadata,
    body: &[u8],
    scan: &Scan,
    sources: &Sources,
    limits: &Limits,
    left_out: &mut Vec<String>,
) {
    if !sources.native_user || meta.user_id.is_some() {
        return;
    }
    let members = scan.members();
    let mut fill = Fill {
        meta,
        limits,
        left_out,
    };
    for (key, range) in [
        ("user", &members.user),
        ("safety_identifier", &members.safety_identifier),
    ] {
        // One that does not fit the limits leaves the field to the next (a client sends OpenAI's
        // `safety_identifier` hashed where its id is too long, so it fits where `user` may not).
        if let Some(user) = fill.id(foreign::text(json_text(body, range.clone())), ("", key)) {
            fill.meta.user_id = Some(user);
            return;
        }
    }
    if let Some([user]) = named(body, members.metadata.clone(), ["user_id"]) {
        fill.meta.user_id = fill.id(foreign::text(user), ("metadata", "user_id"));
    }
}

/// The other formats' body fields this request has that [`fill_from_body`] reads, of the sources
/// that are on. (The native `user` is not among them: one id, checked on its own, it cannot push
/// the whole metadata over a limit.)
pub(crate) fn body_fields(scan: &Scan, sources: &Sources) -> Vec<&'static str> {
    let members = scan.members();
    [
        (
            "litellm_metadata",
            &members.litellm_metadata,
            sources.litellm,
        ),
        ("metadata", &members.metadata, sources.litellm),
        ("trace", &members.trace, sources.openrouter),
        ("session_id", &members.session_id, sources.openrouter),
    ]
    .into_iter()
    .filter(|(_, range, on)| *on && range.is_some())
    .map(|(name, ..)| name)
    .collect()
}

/// Metadata being filled from foreign body fields, within limits; what is not taken is noted.
struct Fill<'a> {
    meta: &'a mut RequestMetadata,
    limits: &'a Limits,
    left_out: &'a mut Vec<String>,
}

impl Fill<'_> {
    /// Fills what `meta` lacks from OpenRouter's `trace` object, then its `session_id`.
    fn openrouter(mut self, body: &[u8], members: &Members) {
        if let Some([trace_id, trace_name, span_name, generation_name]) = named(
            body,
            members.trace.clone(),
            ["trace_id", "trace_name", "span_name", "generation_name"],
        ) {
            if self.meta.trace_id.is_none() {
                self.meta.trace_id = self.id(foreign::text(trace_id), ("trace", "trace_id"));
            }
            for (key, value) in [
                ("trace_name", trace_name),
                ("span_name", span_name),
                ("generation_name", generation_name),
            ] {
                self.extra(("trace", key), value);
            }
        }
        if self.meta.trace_id.is_none() {
            let session = foreign::text(json_text(body, members.session_id.clone()));
            self.meta.trace_id = self.id(session, ("", "session_id"));
        }
    }

    /// Fills what `meta` lacks from a LiteLLM metadata object, `object`, at `body[range]`.
    fn litellm(mut self, object: &str, body: &[u8], range: Range<usize>) {
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
        self.tags((object, "tags"), tags);
        // Only what can still win is decoded.
        if self.meta.trace_id.is_none() {
            self.meta.trace_id = self
                .id(foreign::text(trace_id), (object, "trace_id"))
                .or_else(|| self.id(foreign::text(session_id), (object, "session_id")));
        }
        if self.meta.user_id.is_none() {
            self.meta.user_id = self.id(foreign::text(trace_user_id), (object, "trace_user_id"));
        }
        self.extra((object, "generation_name"), generation_name);
    }

    /// Adds the tags of the foreign list `tags`, as many as fit the limits.
    fn tags(&mut self, field: Field<'_>, tags: Option<&str>) {
        // At most as many are read as could ever be taken, so a long list costs no more than a
        // short one.
        let list = foreign::list(tags, self.limits.tags());
        let mut left_out = list.more;
        for tag in list.items {
            // An empty tag is no tag, as in a tags header.
            if tag.is_empty() || self.meta.tags.contains(&tag) {
                continue;
            }
            if tag.len() > self.limits.tag_len() || self.meta.tags.len() >= self.limits.tags() {
                left_out = true;
                continue;
            }
            self.meta.tags.push(tag);
        }
        if left_out {
            self.leave_out(field);
        }
    }

    /// Adds `extra[key]` unless a higher-ranked source gave it. A value longer than an id may be
    /// (these are names), or one key more than `extra` may hold, is not taken.
    fn extra(&mut self, field: Field<'_>, value: Option<&str>) {
        let key = field.1;
        if self.meta.extra.contains_key(key) {
            return;
        }
        let Some(value) = foreign::text(value) else {
            return;
        };
        if value.len() > self.limits.id_len()
            || self.meta.extra.len() >= self.limits.extra_entries()
        {
            self.leave_out(field);
            return;
        }
        self.meta.extra.insert(key.to_owned(), value.into());
    }

    /// `id` when it fits the id limit; otherwise nothing, and `field` is noted. An empty id carries
    /// nothing (as an empty header does), and leaves the place to a lower-ranked source.
    fn id(&mut self, id: Option<String>, field: Field<'_>) -> Option<String> {
        let id = id.filter(|id| !id.is_empty())?;
        if id.len() > self.limits.id_len() {
            self.leave_out(field);
            return None;
        }
        Some(id)
    }

    fn leave_out(&mut self, (object, key): Field<'_>) {
        self.left_out.push(if object.is_empty() {
            key.to_owned()
        } else {
            format!("{object}.{key}")
        });
    }
}

/// Warns, in the request's span, that another format's body field `field` was not taken as
/// metadata. The request goes on: the field is not ours, and it stays in the body for whoever it
/// belongs to.
pub(crate) fn warn_left_out(field: &str) {
    tracing::warn!(
        field,
        "another format's body field is not taken as metadata: it does not fit the limits"
    );
}

/// A foreign body field: the top-level object it is in (empty for a top-level member) and its key.
type Field<'a> = (&'a str, &'a str);

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

/// A stable id for the conversation a chat request continues: a hash of its system prompt and first
/// user message, which every turn repeats. `None` when the body holds no user message.
pub(crate) fn conversation_id(body: &[u8], members: &Members, max_depth: usize) -> Option<String> {
    let (system, user) = conversation::opening(body, members, max_depth)?;
    let mut hash = Sha256::new();
    hash.update(settled(system));
    hash.update([0]);
    hash.update(settled(user));
    let digest = hash.finalize();
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("conv_{hex}"))
}

/// The largest list of content parts [`settled`] decodes.
const SETTLED_MAX: usize = 64 * 1024;

/// The JSON of a message's content (or a system prompt) as every turn repeats it, whatever marks
/// the client puts on it for one turn only: Anthropic's `cache_control`, which marks the newest
/// message and so moves on each turn, is left out of each part, and a lone text part is its text
/// (Anthropic reads the two alike, and clients turn a text into a part to mark it). Content that
/// cannot be read as JSON is taken as sent.
///
/// Only what may differ is decoded: a string without escapes is its own settled form, and a list
/// of parts larger than [`SETTLED_MAX`] (an opening that carries an image or a document) is taken
/// as sent, so this costs nothing for the usual string and stays bounded for any request.
fn settled(raw: &[u8]) -> Cow<'_, [u8]> {
    let decode = match raw.first() {
        Some(b'"') => memchr::memchr(b'\\', raw).is_some(),
        Some(b'[') => raw.len() <= SETTLED_MAX,
        _ => false,
    };
    if !decode {
        return Cow::Borrowed(raw);
    }
    let Ok(mut content) = serde_json::from_slice::<Value>(raw) else {
        return Cow::Borrowed(raw);
    };
    if let Value::Array(parts) = &mut content {
        for part in parts.iter_mut() {
            if let Value::Object(part) = part {
                part.remove("cache_control");
            }
        }
        let text = match parts.as_mut_slice() {
            [Value::Object(part)]
                if part.len() == 2
                    && part.get("type").and_then(Value::as_str) == Some("text")
                    && part.get("text").is_some_and(Value::is_string) =>
            {
                part.remove("text")
            }
            _ => None,
        };
        if let Some(text) = text {
            content = text;
        }
    }
    serde_json::to_vec(&content).map_or(Cow::Borrowed(raw), Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the body fields give, and the fields left out.
    fn read_body(body: &str) -> (RequestMetadata, Vec<String>) {
        let limits = crate::Limits::default();
        let scan = codec::scan(body.as_bytes(), &limits).unwrap();
        let mut meta = RequestMetadata::default();
        let mut left_out = Vec::new();
        let sources = Sources::all();
        fill_from_body(
            &mut meta,
            body.as_bytes(),
            &scan,
            &sources,
            &limits,
            &mut left_out,
        );
        fill_native_user(
            &mut meta,
            body.as_bytes(),
            &scan,
            &sources,
            &limits,
            &mut left_out,
        );
        (meta, left_out)
    }

    fn from_body(body: &str) -> RequestMetadata {
        let (meta, left_out) = read_body(body);
        assert_eq!(left_out, Vec::<String>::new());
        meta
    }

    #[test]
    fn a_native_user_too_long_gives_way_to_the_next() {
        let body = format!(
            r#"{{"user":"{}","safety_identifier":"s"}}"#,
            "u".repeat(300)
        );
        let (meta, left_out) = read_body(&body);
        assert_eq!(meta.user_id.as_deref(), Some("s"));
        assert_eq!(left_out, ["user"]);
    }

    #[test]
    fn only_openings_that_may_differ_are_decoded() {
        let plain = br#""Be brief.""#;
        assert!(matches!(settled(plain), Cow::Borrowed(b) if b == plain));
        let escaped = br#""caf\u00e9""#;
        assert_eq!(&*settled(escaped), "\"café\"".as_bytes());
        let marked = br#"[{"type":"text","text":"a","cache_control":{"type":"ephemeral"}}]"#;
        assert_eq!(&*settled(marked), br#""a""#);
        // An opening past the bound (an image, say) is hashed as sent.
        let image = format!(
            r#"[{{"type":"text","text":"a","cache_control":{{"type":"ephemeral"}}}},{{"type":"image","source":{{"type":"base64","data":"{}"}}}}]"#,
            "A".repeat(SETTLED_MAX)
        );
        assert!(matches!(settled(image.as_bytes()), Cow::Borrowed(b) if b == image.as_bytes()));
    }

    #[test]
    fn a_conversation_keeps_its_id_whatever_marks_a_turn_puts_on_its_opening() {
        let id = |body: &str| {
            let scan = codec::scan(body.as_bytes(), &crate::Limits::default()).unwrap();
            conversation_id(body.as_bytes(), scan.members(), 128)
        };
        let plain = id(r#"{"system":"Be brief.","messages":[{"role":"user","content":"café"}]}"#);
        assert!(plain.is_some());
        for same in [
            // A lone text part, marked for caching (the first turn), is its text.
            r#"{"system":[{"type":"text","text":"Be brief.","cache_control":{"type":"ephemeral"}}],
                "messages":[{"role":"user","content":[{"type":"text","text":"café",
                "cache_control":{"type":"ephemeral"}}]}]}"#,
            r#"{"system":[{"text":"Be brief.","type":"text"}],"messages":[{"role":"user",
                "content":[{"type":"text","text":"caf\u00e9"}]},{"role":"user","content":"x"}]}"#,
            // Escaped as Python's `json` writes it.
            r#"{"system":"Be brief.","messages":[{"role":"user","content":"caf\u00e9"}]}"#,
        ] {
            assert_eq!(id(same), plain, "{same}");
        }
        for other in [
            r#"{"system":"Be brief.","messages":[{"role":"user","content":"cafe"}]}"#,
            r#"{"messages":[{"role":"user","content":"café"}]}"#,
            r#"{"system":"Be brief.","messages":[{"role":"user","content":[{"type":"text","text":"café"},
                {"type":"image","source":{"type":"url","url":"https://example.com/a.png"}}]}]}"#,
        ] {
            assert_ne!(id(other), plain, "{other}");
        }
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
        // The native user: `user`, else `safety_identifier`, else Anthropic's `metadata.user_id`.
        for (body, user) in [
            (r#"{"metadata":{"user_id":"a"}}"#, Some("a")),
            (
                r#"{"metadata":{"user_id":"a"},"safety_identifier":"s"}"#,
                Some("s"),
            ),
            (r#"{"metadata":{"user_id":"a"},"user":"u"}"#, Some("u")),
            (r#"{"metadata":{"user_id":null}}"#, None),
        ] {
            assert_eq!(from_body(body).user_id.as_deref(), user, "{body}");
        }
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
        let limits = crate::Limits::default();
        fill_from_body(
            &mut meta,
            body.as_bytes(),
            &scan,
            &off,
            &limits,
            &mut Vec::new(),
        );
        assert_eq!(meta, RequestMetadata::default());
    }
}
