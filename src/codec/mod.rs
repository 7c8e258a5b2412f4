//! Finding, removing and adding the `requesty` member of a JSON body, byte for byte.
//!
//! Pure functions over bytes, with no I/O, usable without the middleware:
//!
//! ```
//! use bytes::Bytes;
//! use requesty_metadata::codec;
//!
//! let body = Bytes::from_static(br#"{"model":"gpt-4o","temperature":1.0e0,"requesty":{"tags":["a"]}}"#);
//! let (body, scan) = codec::extract(body, &Default::default()).unwrap();
//! assert_eq!(body, &br#"{"model":"gpt-4o","temperature":1.0e0}"#[..]);
//! assert_eq!(scan.metadata().unwrap().tags, ["a"]);
//! assert_eq!(scan.model(), Some("gpt-4o"));
//! ```
//!
//! | input | result |
//! |---|---|
//! | `"requesty"` inside a string or a nested object | not the member; untouched |
//! | key spelled with escapes (`"requ\u0065sty"`) | the member: found and stripped |
//! | key another parser reads as `requesty` (`"Requesty"`, `"requesty\u0000x"`) | the member too |
//! | two `requesty` members | error ([`ErrorKind::Duplicate`](crate::ErrorKind)) |
//! | `"requesty": null` | no metadata; stripped |
//! | invalid metadata (wrong type, over a [`Limits`] bound) | error naming the field and the rule |
//! | unknown keys inside `requesty` | kept in [`RequestMetadata::other`] |
//! | not a JSON object; malformed at the top level; unbalanced, truncated or nested too deep | [`BodyKind::NotObject`] / [`BodyKind::Malformed`]: no metadata, body untouched |
//! | a UTF-8 byte order mark before the object (which parsers may ignore) | read behind it, and kept |
//!
//! The scan is one pass. The top level is checked strictly (every key, colon, comma and scalar, with
//! no raw control character in its strings and no lone surrogate escaped in its keys), and
//! nested arrays and objects are crossed 64 bytes at a time with strings, escapes and bracket balance
//! tracked exactly, so where the scan thinks a member ends is where every conforming parser thinks so
//! too. It does not judge what a downstream parser would reject anyway: the grammar inside nested
//! values (commas, colons, literals, bracket kinds, control characters), UTF-8, and escapes in
//! strings other than keys and the `requesty` member. Such a body is treated like a valid one.

#[cfg(target_arch = "x86_64")]
mod avx2;
mod blocks;
pub(crate) mod conversation;
mod lexer;
pub(crate) mod member;
mod rewrite;
pub(crate) mod splice;

pub(crate) use member::{check, json_len, members};

use crate::error::{ErrorKind, MetadataError};
use crate::{Limits, RequestMetadata};
use bytes::{Bytes, BytesMut};
use lexer::{key_eq, key_reads_as, Lexer, Malformed};
use std::ops::Range;

/// What kind of body a scan saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BodyKind {
    /// A well-formed JSON object.
    Object,
    /// Something other than an object: an array, a scalar, empty, or not JSON at all.
    NotObject,
    /// It starts like an object but is not well-formed JSON (or nests deeper than
    /// [`Limits::max_depth`]).
    Malformed,
}

/// What one pass over a body found.
#[derive(Clone, Debug, PartialEq)]
pub struct Scan {
    kind: BodyKind,
    metadata: Option<RequestMetadata>,
    member: Option<Spans>,
    /// Where a new last member goes, and whether it needs a leading comma.
    insert_at: usize,
    has_members: bool,
    model: Option<String>,
    stream: Option<bool>,
    parameters: Parameters,
    members: Members,
}

/// Where other top-level members that carry metadata in some dialect sit: their value ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Members {
    /// `user`: the provider-native end-user id.
    pub(crate) user: Option<Range<usize>>,
    /// `metadata`: OpenAI's and Anthropic's native field; LiteLLM reads tags and ids from it.
    pub(crate) metadata: Option<Range<usize>>,
    /// `litellm_metadata`: LiteLLM's own, where `metadata` is the provider's.
    pub(crate) litellm_metadata: Option<Range<usize>>,
    /// `session_id`: OpenRouter's.
    pub(crate) session_id: Option<Range<usize>>,
    /// `trace`: OpenRouter's.
    pub(crate) trace: Option<Range<usize>>,
    /// `messages` and `system`: the conversation, for reconstructing sessions.
    pub(crate) messages: Option<Range<usize>>,
    pub(crate) system: Option<Range<usize>>,
    /// `safety_identifier`: OpenAI's end-user field.
    pub(crate) safety_identifier: Option<Range<usize>>,
}

/// The request's sampling parameters, when the body sets them as numbers at its top level: the
/// `gen_ai.request.*` span attributes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Parameters {
    /// `temperature`
    pub temperature: Option<f64>,
    /// `top_p`
    pub top_p: Option<f64>,
    /// `max_tokens` (or `max_completion_tokens`, or `max_output_tokens`)
    pub max_tokens: Option<u64>,
    /// `seed`
    pub seed: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Spans {
    value: Range<usize>,
    removal: Range<usize>,
    /// Where the key starts, for a member whose key is not `requesty` as every parser reads it
    /// (`"Requesty"`): an edit that rewrites the member's value spells it `requesty`.
    respell: Option<usize>,
}

impl Scan {
    fn unusable(kind: BodyKind) -> Self {
        Self {
            kind,
            metadata: None,
            member: None,
            insert_at: 0,
            has_members: false,
            model: None,
            stream: None,
            parameters: Parameters::default(),
            members: Members::default(),
        }
    }

    /// The other members that carry metadata in some dialect.
    pub(crate) fn members(&self) -> &Members {
        &self.members
    }

    /// Whether the body was a well-formed object.
    pub fn kind(&self) -> BodyKind {
        self.kind
    }

    /// The parsed `requesty` member; `None` when absent or `null`.
    pub fn metadata(&self) -> Option<&RequestMetadata> {
        self.metadata.as_ref()
    }

    /// Takes the parsed metadata out of the scan.
    pub fn take_metadata(&mut self) -> Option<RequestMetadata> {
        self.metadata.take()
    }

    /// The bytes [`strip`] removes: the member with the comma that goes with it. `None` when the body
    /// has no `requesty` member.
    pub fn member_range(&self) -> Option<Range<usize>> {
        self.member.as_ref().map(|m| m.removal.clone())
    }

    /// The top-level `model`, when it is a string.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Takes the model out of the scan, leaving `None`.
    pub(crate) fn take_model(&mut self) -> Option<String> {
        self.model.take()
    }

    /// The top-level `stream` flag, when it is a boolean.
    pub fn stream(&self) -> Option<bool> {
        self.stream
    }

    /// The top-level sampling parameters.
    pub fn parameters(&self) -> Parameters {
        self.parameters
    }
}

/// Scans `body` once: finds the top-level `requesty` member, parses and checks it, and notes `model`
/// and `stream`.
///
/// A body that is not a well-formed object is not an error: the scan says so in
/// [`Scan::kind`] and carries nothing. Errors are for an object whose metadata breaks a rule, or
/// whose `requesty` member is not valid JSON itself (the scan does not judge the grammar inside other
/// nested values).
pub fn scan(body: &[u8], limits: &Limits) -> Result<Scan, MetadataError> {
    scan_reading(body, limits, true)
}

/// [`scan`], reading the `requesty` member or not: a server that does not read the Requesty format
/// passes the member on untouched and does not judge it.
pub(crate) fn scan_reading(
    body: &[u8],
    limits: &Limits,
    read_member: bool,
) -> Result<Scan, MetadataError> {
    // Filled in place: a scan is a few hundred bytes, and this runs for every request.
    let mut scan = Scan::unusable(BodyKind::Object);
    match scan_object(body, limits.depth(), &mut scan) {
        Ok(Shape::Object) => {}
        Ok(Shape::NotObject) => return Ok(Scan::unusable(BodyKind::NotObject)),
        Err(Malformed) => return Ok(Scan::unusable(BodyKind::Malformed)),
        Ok(Shape::Duplicate) if !read_member => {}
        Ok(Shape::Duplicate) => {
            return Err(MetadataError::new(
                ErrorKind::Duplicate,
                "requesty",
                "the body has more than one `requesty` member",
            ))
        }
    }
    if !read_member {
        scan.member = None;
    } else if let Some(spans) = &scan.member {
        scan.metadata = member::parse(&body[spans.value.clone()], limits)?;
    }
    Ok(scan)
}

/// What to cut out of `body` to remove its `requesty` member without reading it: for a member that
/// cannot be read (of the wrong type, say) yet must not leave. `None` for a body that is not a
/// well-formed object, or that has no member, or several.
pub(crate) fn unread_member(body: &[u8], limits: &Limits) -> Option<Range<usize>> {
    let mut scan = Scan::unusable(BodyKind::Object);
    match scan_object(body, limits.depth(), &mut scan) {
        Ok(Shape::Object) => scan.member_range(),
        _ => None,
    }
}

/// Removes the member `scan` found. A body without one is handed back as the very same buffer.
///
/// Every other byte keeps its value and order. When no other handle shares `body`'s buffer the edit
/// happens in place, moving only the shorter side of the member.
///
/// `scan` must be a scan of `body`: given another body's, it cuts out the bytes where that body's
/// member was.
///
/// # Panics
///
/// When `scan` is another body's and its member lies past `body`'s end.
pub fn strip(body: Bytes, scan: &Scan) -> Bytes {
    match scan.member_range() {
        Some(range) => splice::splice(body, range, b""),
        None => body,
    }
}

/// [`strip`] on a buffer the caller owns; it panics as `strip` does.
pub fn strip_in_place(body: &mut BytesMut, scan: &Scan) {
    if let Some(range) = scan.member_range() {
        splice::splice_in_place(body, range, b"");
    }
}

/// [`scan`] then [`strip`]: the body without its member, and what the scan found.
pub fn extract(body: Bytes, limits: &Limits) -> Result<(Bytes, Scan), MetadataError> {
    let scan = scan(&body, limits)?;
    Ok((strip(body, &scan), scan))
}

/// Why [`inject`] left a body alone.
#[derive(Debug)]
#[non_exhaustive]
pub enum InjectError {
    /// The body is not a well-formed JSON object; send the metadata as headers instead.
    NotAnObject,
    /// The body's own `requesty` member is invalid.
    Metadata(MetadataError),
}

impl std::fmt::Display for InjectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InjectError::NotAnObject => f.write_str("the body is not a well-formed JSON object"),
            InjectError::Metadata(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for InjectError {}

/// Adds `metadata` to the body as its `requesty` member.
///
/// Without a member, `"requesty":{…}` becomes the object's last member. With one, the two merge
/// ([`RequestMetadata::merge`]) with the body's member winning, since it is the most specific source,
/// and only that member's value is rewritten: within it, fields the merge leaves as they were keep
/// their bytes, and `tags` (sent without repeats) and `extra` that only gain entries get them
/// appended. A member whose key only some parsers read as `requesty` (`"Requesty"`) gets that key
/// too, so that a parser comparing keys byte for byte reads what was added. Nothing else is
/// re-serialized. Empty metadata, or metadata the member already holds, leaves the body unchanged.
/// On error `body` is left as it was.
///
/// ```
/// use bytes::Bytes;
/// use requesty_metadata::{codec, RequestMetadata};
///
/// let mut body = Bytes::from_static(b"{\"model\":\"m\", \"n\":1.50}\n");
/// codec::inject(&mut body, &RequestMetadata::new().trace_id("t"), &Default::default()).unwrap();
/// assert_eq!(body, &b"{\"model\":\"m\", \"n\":1.50,\"requesty\":{\"trace_id\":\"t\"}}\n"[..]);
/// ```
pub fn inject(
    body: &mut Bytes,
    metadata: &RequestMetadata,
    limits: &Limits,
) -> Result<(), InjectError> {
    let (range, insert) = plan_inject(body, metadata, limits)?;
    *body = splice::splice(std::mem::take(body), range, &insert);
    Ok(())
}

/// [`inject`] on a buffer the caller owns: appends in place when it has spare capacity.
pub fn inject_in_place(
    body: &mut BytesMut,
    metadata: &RequestMetadata,
    limits: &Limits,
) -> Result<(), InjectError> {
    let (range, insert) = plan_inject(body, metadata, limits)?;
    splice::splice_in_place(body, range, &insert);
    Ok(())
}

/// The range to replace and the bytes to put there.
fn plan_inject(
    body: &[u8],
    metadata: &RequestMetadata,
    limits: &Limits,
) -> Result<(Range<usize>, Vec<u8>), InjectError> {
    let scan = scan(body, limits).map_err(InjectError::Metadata)?;
    if scan.kind != BodyKind::Object {
        return Err(InjectError::NotAnObject);
    }
    if metadata.is_empty() {
        return Ok((0..0, Vec::new()));
    }
    let mut merged = metadata.clone();
    if let Some(existing) = scan.metadata() {
        merge_member(&mut merged, existing);
    }
    Ok(scan.edit(body, &merged))
}

/// Merges a body's `requesty` member over `metadata`, as [`RequestMetadata::merge`] does, but for
/// the order of tags: tags the member already has, in another order, are no change, and keep its
/// order, so that a member holding them all needs no rewrite.
pub(crate) fn merge_member(metadata: &mut RequestMetadata, member: &RequestMetadata) {
    metadata.merge(member.clone());
    // The union holds each of the member's tags once: as many means no others.
    if metadata.tags.len() == member.tags.len() {
        metadata.tags.clone_from(&member.tags);
    }
}

impl Scan {
    /// The edit that makes the member of `body` (the body this scan read) `metadata`: its value
    /// rewritten, a new last member, or, for empty metadata, the member removed. No edit at all when
    /// the member already says exactly that. Meaningful for [`BodyKind::Object`] scans only.
    ///
    /// A rewritten member keeps the bytes of every field `metadata` did not change (see
    /// [`rewrite`](rewrite::rewrite)).
    pub(crate) fn edit(&self, body: &[u8], metadata: &RequestMetadata) -> (Range<usize>, Vec<u8>) {
        match (&self.member, &self.metadata) {
            (Some(spans), _) if metadata.is_empty() => (spans.removal.clone(), Vec::new()),
            (Some(spans), Some(old)) if old == metadata => {
                (spans.value.start..spans.value.start, Vec::new())
            }
            (Some(spans), Some(old)) => {
                let text = match body.get(spans.value.clone()) {
                    Some(raw) => rewrite::rewrite(raw, old, metadata),
                    None => rewrite::to_json(metadata),
                };
                spans.value_edit(text)
            }
            (Some(spans), None) => spans.value_edit(rewrite::to_json(metadata)),
            (None, _) if metadata.is_empty() => (self.insert_at..self.insert_at, Vec::new()),
            (None, _) => self.insert_member("requesty", &rewrite::to_json(metadata)),
        }
    }

    /// The size of the `requesty` member's value once `edit` (this scan's [`edit`](Self::edit) of
    /// its body) is made, as a reader measures it: the bytes a rewrite kept (a caller's spacing and
    /// escapes) included. Zero when the edit removes the member or the body has none.
    pub(crate) fn member_len_after(&self, (range, insert): (&Range<usize>, &[u8])) -> usize {
        match &self.member {
            None if insert.is_empty() => 0,
            None => insert
                .len()
                .saturating_sub(MEMBER_KEY.len() + usize::from(self.has_members)),
            Some(_) if insert.is_empty() && !range.is_empty() => 0,
            Some(spans) if insert.is_empty() => spans.value.len(),
            Some(spans) if range.start < spans.value.start => {
                insert.len().saturating_sub(MEMBER_KEY.len())
            }
            Some(_) => insert.len(),
        }
    }

    /// Why a reader with `limits` refuses the `extra` of the `requesty` member once `edit` (this
    /// scan's [`edit`](Self::edit) of `body`) is made, counted as sent (the bytes a rewrite kept of
    /// a caller's own member included), when the body held a member of the caller's own with an
    /// `extra`: a member written afresh is compact JSON, as [`check`] measures it. `None` otherwise.
    pub(crate) fn own_extra_error_after(
        &self,
        body: &[u8],
        (range, insert): (&Range<usize>, &[u8]),
        limits: &Limits,
    ) -> Option<MetadataError> {
        if self
            .metadata
            .as_ref()
            .is_none_or(|own| own.extra.is_empty())
        {
            return None;
        }
        let spans = self.member.as_ref()?;
        let member = match insert {
            [] if range.is_empty() => body.get(spans.value.clone())?,
            [] => return None,
            _ if range.start < spans.value.start => insert.get(MEMBER_KEY.len()..)?,
            _ => insert,
        };
        member::sent_extra_error(member, limits)
    }

    /// The edit that adds `"key":value` (`value` being JSON text) as the object's last member.
    pub(crate) fn insert_member(&self, key: &str, value: &[u8]) -> (Range<usize>, Vec<u8>) {
        let mut insert = Vec::with_capacity(key.len() + value.len() + 4);
        if self.has_members {
            insert.push(b',');
        }
        insert.push(b'"');
        insert.extend_from_slice(key.as_bytes());
        insert.extend_from_slice(b"\":");
        insert.extend_from_slice(value);
        (self.insert_at..self.insert_at, insert)
    }
}

/// The member's key as every parser reads it, with its colon.
const MEMBER_KEY: &[u8] = b"\"requesty\":";

impl Spans {
    /// The edit that makes the member's value `text`, its key spelled `requesty`.
    fn value_edit(&self, text: Vec<u8>) -> (Range<usize>, Vec<u8>) {
        match self.respell {
            None => (self.value.clone(), text),
            Some(key) => {
                let mut insert = Vec::with_capacity(MEMBER_KEY.len() + text.len());
                insert.extend_from_slice(MEMBER_KEY);
                insert.extend_from_slice(&text);
                (key..self.value.end, insert)
            }
        }
    }
}

impl Members {
    /// Notes a top-level member if it is one some dialect reads.
    fn note(&mut self, key: &[u8], value: &Range<usize>) {
        let slot = match key {
            b"user" => &mut self.user,
            b"metadata" => &mut self.metadata,
            b"litellm_metadata" => &mut self.litellm_metadata,
            b"session_id" => &mut self.session_id,
            b"trace" => &mut self.trace,
            b"messages" => &mut self.messages,
            b"system" => &mut self.system,
            b"safety_identifier" => &mut self.safety_identifier,
            _ => return,
        };
        *slot = Some(value.clone());
    }
}

impl Parameters {
    /// Notes a top-level member if it is a numeric sampling parameter (the value is already known to
    /// be well-formed).
    fn note(&mut self, key: &[u8], value: &[u8]) {
        let number = || std::str::from_utf8(value).ok();
        match key {
            b"temperature" => self.temperature = number().and_then(|n| n.parse().ok()),
            b"top_p" => self.top_p = number().and_then(|n| n.parse().ok()),
            b"max_tokens" | b"max_completion_tokens" | b"max_output_tokens" => {
                self.max_tokens = number().and_then(|n| n.parse().ok())
            }
            b"seed" => self.seed = number().and_then(|n| n.parse().ok()),
            _ => {}
        }
    }
}

/// UTF-8's byte order mark.
pub(crate) const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What the single pass found the body to be.
enum Shape {
    Object,
    NotObject,
    /// An object with a second member: an error for a reader of the member, nothing for others.
    Duplicate,
}

/// A `requesty` member the single pass found, until it knows what follows it: its key's start, the
/// end of the value before it, its value, and whether its key is to be respelled.
type Pending = (usize, Option<usize>, Range<usize>, bool);

/// The single pass: walks the top-level object's members, skipping every value, and records the
/// spans of the members it cares about into `scan`.
fn scan_object(body: &[u8], max_depth: usize, scan: &mut Scan) -> Result<Shape, Malformed> {
    let mut lx = Lexer::new(body, max_depth);
    // JSON text may start with a byte order mark, which parsers may ignore (RFC 8259, section
    // 8.1): one that does would read the member behind it, so it is found behind it too.
    if body.starts_with(BOM) {
        lx.pos = BOM.len();
    }
    lx.skip_ws();
    if lx.peek().ok() != Some(b'{') {
        return Ok(Shape::NotObject);
    }
    if max_depth == 0 {
        return Err(Malformed);
    }
    lx.pos += 1;
    scan.insert_at = lx.pos;
    lx.skip_ws();
    let mut model: Option<(Range<usize>, bool)> = None;
    // The member's key start, the end of the value before it, its value and whether its key is to
    // be respelled, until we know what follows it.
    let mut pending: Option<Pending> = None;
    let mut prev_end: Option<usize> = None;
    let mut duplicate = false;
    if lx.peek()? == b'}' {
        lx.pos += 1;
    } else {
        loop {
            let key_start = lx.pos;
            if lx.peek()? != b'"' {
                return Err(Malformed);
            }
            let escaped = lx.skip_string()?;
            let key = &body[key_start + 1..lx.pos - 1];
            lx.skip_ws();
            lx.expect(b':')?;
            lx.skip_ws();
            let value = lx.skip_value(1)?;
            // Some parsers read keys other than `"requesty"` as the member (a case-insensitive
            // match, a key ended at a NUL): each is the member too, so none gets past a strip.
            if key_reads_as(key, escaped, b"requesty")? {
                if scan.member.is_some() || pending.is_some() {
                    // Reported once the rest is known to be well-formed: a malformed body is passed
                    // through, not rejected.
                    duplicate = true;
                } else {
                    // A key spelled otherwise is respelled by an edit that keeps the member.
                    let respell = !key_eq(key, escaped, b"requesty")?;
                    pending = Some((key_start, prev_end, value.clone(), respell));
                }
            } else if key_eq(key, escaped, b"model")? {
                model = (body[value.start] == b'"')
                    .then(|| (value.clone(), escaped_string(body, &value)));
            } else if key_eq(key, escaped, b"stream")? {
                scan.stream = match body[value.start] {
                    b't' => Some(true),
                    b'f' => Some(false),
                    _ => None,
                };
            } else if !escaped {
                scan.parameters.note(key, &body[value.clone()]);
                scan.members.note(key, &value);
            } else if let Some(key) =
                decode_string(&body[key_start..key_start + key.len() + 2], true)
            {
                // Every parser reads an escaped key as the one it spells (rare, so decoded here).
                scan.parameters.note(key.as_bytes(), &body[value.clone()]);
                scan.members.note(key.as_bytes(), &value);
            }
            prev_end = Some(value.end);
            lx.skip_ws();
            match lx.peek()? {
                b',' => {
                    lx.pos += 1;
                    lx.skip_ws();
                    if let Some((start, _, value, respell)) = pending.take() {
                        scan.member = Some(Spans {
                            value,
                            removal: start..lx.pos,
                            respell: respell.then_some(start),
                        });
                    }
                }
                b'}' => {
                    lx.pos += 1;
                    break;
                }
                _ => return Err(Malformed),
            }
        }
        if let Some((start, before, value, respell)) = pending.take() {
            // The last member takes the comma before it; the only member takes none.
            let removal = before.unwrap_or(start)..value.end;
            scan.member = Some(Spans {
                value,
                removal,
                respell: respell.then_some(start),
            });
        }
        scan.has_members = true;
        scan.insert_at = prev_end.unwrap_or(scan.insert_at);
    }
    finish(&mut lx)?;
    if let Some((range, escaped)) = model {
        scan.model = decode_string(&body[range], escaped);
    }
    Ok(if duplicate {
        Shape::Duplicate
    } else {
        Shape::Object
    })
}

/// Whether the string value in `range` contains an escape (checked only for `model`, which is short).
fn escaped_string(body: &[u8], range: &Range<usize>) -> bool {
    memchr::memchr(b'\\', &body[range.clone()]).is_some()
}

/// Decodes a JSON string value; `None` when it is not valid text.
fn decode_string(raw: &[u8], escaped: bool) -> Option<String> {
    if escaped {
        serde_json::from_slice(raw).ok()
    } else {
        std::str::from_utf8(raw.get(1..raw.len() - 1)?)
            .ok()
            .map(str::to_owned)
    }
}

/// Calls `visit` with each member of the JSON object `text` (a value the scan crossed, or a header
/// holding an object): its key decoded and its value's JSON text. `None` when `text` is not an
/// object with well-formed keys and scalars.
pub(crate) fn object_members<'a>(
    text: &'a str,
    mut visit: impl FnMut(&str, &'a str),
) -> Option<()> {
    member::members(text, |name, _, value| {
        if let Some(value) = text.get(value) {
            visit(&name, value);
        }
    })
}

/// Checks that only whitespace follows the top-level object.
fn finish(lx: &mut Lexer<'_>) -> Result<(), Malformed> {
    lx.skip_ws();
    if lx.at_end() {
        Ok(())
    } else {
        Err(Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The member's size after an edit is that of the member the edited body holds, for every kind
    /// of edit: kept, rewritten (its key respelled or not), added, removed.
    #[test]
    fn the_member_size_after_an_edit_is_the_size_sent() {
        let limits = Limits::default();
        let tag = RequestMetadata::new().tag("t");
        for (body, metadata) in [
            (&br#"{"a": 1}"#[..], tag.clone()),
            (br#"{}"#, tag.clone()),
            (br#"{"requesty": {"tags": ["t"]}, "a": 1}"#, tag.clone()),
            (br#"{"requesty": {"user_id": "\u00e9"}}"#, tag.clone()),
            (br#"{"Requesty" : {"user_id": "u"}}"#, tag.clone()),
            (br#"{"requesty": null}"#, tag.clone()),
            (
                br#"{"a":1, "requesty": {"user_id": "u"}}"#,
                RequestMetadata::new(),
            ),
        ] {
            let scan = scan(body, &limits).unwrap();
            let (range, insert) = scan.edit(body, &metadata);
            let len = scan.member_len_after((&range, &insert));
            let mut sent = body.to_vec();
            sent.splice(range, insert);
            let again = super::scan(&sent, &limits.max_member_bytes(usize::MAX)).unwrap();
            let want = again.member.map_or(0, |spans| spans.value.len());
            assert_eq!(len, want, "{}", String::from_utf8_lossy(&sent));
        }
    }

    /// A caller's own `extra` after an edit is refused as a reader refuses it, by its bytes as
    /// sent: at a limit a byte under the size it is sent at (escapes and spaces included), not at
    /// that size.
    #[test]
    fn the_extra_after_an_edit_is_judged_as_sent() {
        let limits = Limits::default();
        let tag = RequestMetadata::new().tag("t");
        let more = RequestMetadata::new().extra("b", "c");
        for (body, metadata) in [
            (
                &br#"{"requesty": {"extra": {"a": "\u00e9" } }}"#[..],
                tag.clone(),
            ),
            (
                br#"{"requesty": {"extra": {"a": [1, 2] }}, "x": 1}"#,
                more.clone(),
            ),
            (br#"{"Requesty" : {"extra": {"a": "b"}}}"#, more),
            (
                br#"{"requesty": {"extra": {"a": "b"}, "tags": ["t"]}}"#,
                tag,
            ),
        ] {
            let scan = scan(body, &limits).unwrap();
            // Merged with the caller's own member first, as the client does.
            let mut metadata = metadata;
            if let Some(own) = scan.metadata() {
                merge_member(&mut metadata, own);
            }
            let (range, insert) = scan.edit(body, &metadata);
            let mut sent = body.to_vec();
            sent.splice(range.clone(), insert.iter().copied());
            let text = String::from_utf8_lossy(&sent);
            // The size the reader counts: the smallest limit it takes.
            let size = (0..sent.len())
                .find(|&n| super::scan(&sent, &limits.max_extra_bytes(n)).is_ok())
                .unwrap();
            let judged =
                |n| scan.own_extra_error_after(body, (&range, &insert), &limits.max_extra_bytes(n));
            assert!(judged(size).is_none(), "{text}");
            let over = judged(size - 1).expect(&text);
            assert_eq!(over.param(), "requesty.extra", "{text}");
        }
        // No member of the caller's own, or one without `extra`: written afresh, or not at all.
        for body in [&br#"{"a": 1}"#[..], br#"{"requesty": {"tags": ["t"]}}"#] {
            let scan = scan(body, &limits).unwrap();
            let metadata = RequestMetadata::new().extra("a", "b");
            let (range, insert) = scan.edit(body, &metadata);
            let judged =
                scan.own_extra_error_after(body, (&range, &insert), &limits.max_extra_bytes(0));
            assert!(judged.is_none());
        }
        // A member the edit removes sends no `extra` at all, however long the one it held.
        let body = br#"{"requesty": {"extra": {"a": "b"}}, "x": 1}"#;
        let scan = scan(body, &limits).unwrap();
        let (range, insert) = scan.edit(body, &RequestMetadata::new());
        assert!(insert.is_empty() && !range.is_empty());
        let judged =
            scan.own_extra_error_after(body, (&range, &insert), &limits.max_extra_bytes(0));
        assert!(judged.is_none());
    }

    /// A top-level key spelled with escapes is the key every parser reads: the scan notes it as the
    /// member it spells, so nothing adds a second one and the span sees the parameter.
    #[test]
    fn escaped_member_keys_are_noted_as_the_members_they_spell() {
        let limits = Limits::default();
        let body = br#"{"s\u0061fety_identifier":"c","met\u0061data":{},"us\u0065r":"u","temp\u0065rature":0.5}"#;
        let scan = scan(body, &limits).unwrap();
        assert!(scan.members().safety_identifier.is_some());
        assert!(scan.members().metadata.is_some());
        assert!(scan.members().user.is_some());
        assert_eq!(scan.parameters().temperature, Some(0.5));
    }
}
