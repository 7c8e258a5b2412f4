//! Writing metadata in forms other than Requesty's: a provider's native user field, and other
//! gateways' headers, for calls that go straight to a provider or through another gateway.

use super::layer::Field;
use super::portkey::{Edit, Own, HEADER as PORTKEY};
use crate::codec::{self, Scan};
use crate::genai::{self, HashKey};
use crate::headers::put;
use crate::RequestMetadata;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};
use std::ops::Range;

/// A provider's own field for the end user, written from `user_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Native {
    /// OpenAI's top-level `safety_identifier` (at most 64 characters: a longer id is sent hashed).
    OpenAi,
    /// Anthropic's `metadata.user_id` (at most 256 bytes, within Anthropic's 256 characters: a longer
    /// id is sent hashed).
    Anthropic,
}

impl Native {
    /// The provider's name in the GenAI conventions (`gen_ai.provider.name`).
    pub(crate) fn provider(self) -> &'static str {
        match self {
            Native::OpenAi => "openai",
            Native::Anthropic => "anthropic",
        }
    }
}

/// Another gateway's header form, for calls that go through it
/// ([`gateway_headers`](super::InjectMetadataLayer::gateway_headers)).
///
/// The form is written from the final metadata, merged with the headers of that form the request
/// already carries: those are the caller's own, and win field by field, as the request's own
/// carriers win over the layer's other sources. A header the caller set is not replaced (but a
/// blank one, which carries nothing), a key of the caller's `x-portkey-metadata` wins over the
/// metadata's (one that is not a JSON object has none, and the metadata's replaces it, with a
/// warning), and tags are united, the caller's first ([`RequestMetadata::with_fallback`]'s
/// order). The caller's values go as the caller wrote them: the caller's `x-portkey-metadata` is
/// edited, not rewritten, the metadata's keys going last, so each of its members keeps its bytes
/// (order, spacing, escapes, number spellings) unless its tags gain some;
/// [`drop_fields`](super::InjectMetadataLayer::drop_fields) holds for them too, taking out only the
/// members that carry a dropped field.
///
/// What arrives is what was sent: a value of the metadata that the form cannot carry unchanged is
/// left out, with a warning. These gateways read a header's bytes as ISO-8859-1 (Latin-1), as
/// servers on the Fetch API do, so a value past ASCII goes in those bytes, byte for character (as
/// this crate's server reads a value that is not UTF-8), and one with a character past U+00FF,
/// which Latin-1 lacks, only where an escape can carry it (inside `x-portkey-metadata`'s JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Gateway {
    /// `Helicone-User-Id`, `Helicone-Session-Id`, `Helicone-Property-<Key>` (string `extra` values;
    /// tags as `Helicone-Property-Tags`; `extra["session_path"]` and `["session_name"]`, which the
    /// server reads from them, as `Helicone-Session-Path` and `-Name`). Helicone decodes no escape
    /// and reads a header's bytes as Latin-1: a value past ASCII goes in Latin-1, and one with a
    /// character past U+00FF is left out, with a warning.
    Helicone,
    /// `x-portkey-metadata` (`_user`, `tags` comma-separated, and string `extra` values; a value over
    /// Portkey's 128 characters, counted in UTF-16 units as its JavaScript counts them, is left out
    /// whole, with a warning, as are the metadata's tags when united with the request's own they
    /// would pass it; characters past ASCII written as JSON `\u` escapes) and
    /// `x-portkey-trace-id` (in Latin-1, as Helicone's headers are).
    Portkey,
}

/// Portkey's limit on a metadata value, in characters.
const PORTKEY_VALUE: usize = 128;

/// OpenAI's limit on `safety_identifier`, in characters.
const SAFETY_IDENTIFIER_MAX: usize = 64;

/// Anthropic's limit on `metadata.user_id`, in characters (its API schema's `maxLength`).
const ANTHROPIC_USER_ID_MAX: usize = 256;

/// The value a provider-native field gets: the user id, or its keyed hash when hashing is on or the
/// id is too long for the field.
pub(crate) fn native_user_value(
    user_id: &str,
    native: Native,
    hash_key: Option<&HashKey>,
) -> String {
    let max = match native {
        Native::OpenAi => SAFETY_IDENTIFIER_MAX,
        Native::Anthropic => ANTHROPIC_USER_ID_MAX,
    };
    // Anthropic counts characters; counted in bytes here, an id that fits is also one a reader
    // with the default `max_id_len` (256 bytes) takes back.
    let too_long = match native {
        Native::OpenAi => user_id.chars().count() > max,
        Native::Anthropic => user_id.len() > max,
    };
    match (hash_key, too_long) {
        (Some(key), _) => key.hash(user_id),
        (None, true) => genai::user_hash(b"requesty-metadata", user_id),
        (None, false) => user_id.to_owned(),
    }
}

/// The edit that writes the native field into a JSON object body, unless the body already sets it.
pub(crate) fn native_edit(
    body: &[u8],
    scan: &Scan,
    native: Native,
    value: &str,
) -> Option<(Range<usize>, Vec<u8>)> {
    let quoted = serde_json::to_string(value).ok()?;
    match native {
        // A `null` field is no field, as the provider reads it: the value takes its place.
        Native::OpenAi => match scan.members().safety_identifier.clone() {
            None => Some(scan.insert_member("safety_identifier", quoted.as_bytes())),
            Some(range) if &body[range.clone()] == b"null" => Some((range, quoted.into_bytes())),
            Some(_) => None,
        },
        Native::Anthropic => match scan.members().metadata.clone() {
            None => {
                let object = format!(r#"{{"user_id":{quoted}}}"#);
                Some(scan.insert_member("metadata", object.as_bytes()))
            }
            Some(range) if &body[range.clone()] == b"null" => {
                Some((range, format!(r#"{{"user_id":{quoted}}}"#).into_bytes()))
            }
            Some(range) => {
                let object = &body[range.clone()];
                if object.first() != Some(&b'{') {
                    // The caller's own value, of a type the provider refuses: theirs to mend.
                    tracing::warn!(
                        "the provider's user field is left out: the body's `metadata` is not an object"
                    );
                    return None;
                }
                let existing: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(object).ok()?;
                match existing.get("user_id") {
                    // Set to `null`, as no user: the value takes its place, where the key's last
                    // occurrence (the one read) holds it.
                    Some(serde_json::Value::Null) => {
                        let text = std::str::from_utf8(object).ok()?;
                        let mut last = None;
                        codec::members(text, |name, _, value| {
                            if name == "user_id" {
                                last = Some(value);
                            }
                        })?;
                        let value = last?;
                        let at = range.start + value.start..range.start + value.end;
                        return Some((at, quoted.into_bytes()));
                    }
                    Some(_) => return None,
                    None => {}
                }
                // First member of the existing object: nothing else in it is rewritten.
                let at = range.start + 1;
                let insert = if existing.is_empty() {
                    format!(r#""user_id":{quoted}"#)
                } else {
                    format!(r#""user_id":{quoted},"#)
                };
                Some((at..at, insert.into_bytes()))
            }
        },
    }
}

/// Applies the native mapping to a body that already carries its final `requesty` member.
pub(crate) fn write_native(
    body: Bytes,
    metadata: &RequestMetadata,
    native: Option<Native>,
    hash_key: Option<&HashKey>,
    limits: &crate::Limits,
) -> Bytes {
    let (Some(native), Some(user_id)) = (native, metadata.user_id.as_deref()) else {
        return body;
    };
    let value = native_user_value(user_id, native, hash_key);
    // The member is the one just written, whatever it holds: only where the other members are
    // matters here, so it is not read (and its size is not judged).
    let scan = match codec::scan_reading(&body, limits, false) {
        Ok(scan) if scan.kind() == codec::BodyKind::Object => scan,
        _ => {
            tracing::warn!("the provider's user field is left out: the body could not be read");
            return body;
        }
    };
    match native_edit(&body, &scan, native, &value) {
        Some((range, insert)) => codec::splice::splice(body, range, &insert),
        None => body,
    }
}

const HELICONE_TAGS: &str = "helicone-property-tags";
const HELICONE_PROPERTY: &str = "helicone-property-";
const PORTKEY_TRACE: &str = "x-portkey-trace-id";

/// The field a key of Portkey's object carries, as the server reads it: `_user` the user id, a
/// string `tags` the tags, any other key (a `tags` of another type too) an `extra` key.
fn portkey_field(key: &str, value: &Value) -> Field {
    match key {
        "_user" => Field::UserId,
        "tags" if value.is_string() => Field::Tags,
        _ => Field::Extra,
    }
}

/// Holds the boundary on the metadata headers of every other gateway this crate knows (Helicone,
/// LiteLLM, Portkey, OpenRouter's `x-session-id`), whether or not its form is written: a header
/// that carries a `dropped` field is removed (also spelled with underscores, which CGI-style servers
/// read as dashes), and `x-portkey-metadata` loses the keys that carry one (all of it when it
/// cannot be read). Their other headers (credentials, options) stay.
pub(crate) fn hold_boundary(dropped: &[Field], out: &mut HeaderMap) {
    if dropped.is_empty() {
        return;
    }
    let portkey_drops = [Field::UserId, Field::Tags, Field::Extra]
        .iter()
        .any(|field| dropped.contains(field));
    let gone: Vec<HeaderName> = out
        .keys()
        .filter(|name| {
            let dashed = crate::headers::dashed(name.as_str());
            let spelled = dashed.is_some();
            let name = dashed.as_deref().unwrap_or(name.as_str());
            // The headers the server reads, by the same list: each carries one field, but
            // Portkey's object, several.
            match crate::dialects::gateway_field(name) {
                Some(Some(field)) => dropped.contains(&field),
                // Edited below; spelled otherwise, it goes whole.
                Some(None) => spelled && portkey_drops,
                None => false,
            }
        })
        .cloned()
        .collect();
    for name in gone {
        out.remove(name);
    }
    if !portkey_drops {
        return;
    }
    match Own::read(out) {
        Ok(Some(own)) => {
            let edited = own.edited(
                |member| {
                    if dropped.contains(&portkey_field(&member.key, &member.value)) {
                        Edit::Drop
                    } else {
                        Edit::Keep
                    }
                },
                "",
            );
            out.remove(PORTKEY);
            if let Some(edited) = edited {
                own.put(out, &edited);
            }
        }
        Ok(None) => {}
        Err(()) => {
            tracing::warn!("the request's x-portkey-metadata is not a JSON object, so it is removed whole: fields to drop may be in it");
            out.remove(PORTKEY);
        }
    }
}

/// Whether the request already carries header `name` with something in it: the caller's own, which
/// the metadata does not replace. Read as the server reads it ([`text`](crate::headers::text)): a
/// value that trims to nothing there (a no-break space, say) carries nothing.
fn own(out: &HeaderMap, name: &str) -> bool {
    out.get_all(name)
        .iter()
        .any(|value| !crate::headers::text(value).is_empty())
}

/// Writes another gateway's form for the final `metadata` (already within the boundary, as the
/// request's headers are: see [`hold_boundary`]).
///
/// What the request already carries in that form is the caller's own and wins, field by field, as
/// the request's own carriers win over the layer's sources ([`RequestMetadata::merge`]): a header
/// the caller set is not replaced (`Helicone-User-Id`, `-Session-Id`, each `Helicone-Property-<Key>`,
/// `x-portkey-trace-id`), a key of the caller's `x-portkey-metadata` wins over the metadata's, and
/// tags are united, the caller's first (as [`RequestMetadata::with_fallback`] unites them). The
/// caller's values go as the caller wrote them.
pub(crate) fn write_gateway(metadata: &RequestMetadata, gateway: Gateway, out: &mut HeaderMap) {
    for (key, _) in metadata
        .extra
        .iter()
        .filter(|(_, value)| !value.is_string())
    {
        tracing::warn!(key = %key, ?gateway, "extra field left out of the gateway's form: it takes string values only");
    }
    let strings: Vec<(&str, &str)> = metadata
        .extra
        .iter()
        .filter_map(|(key, value)| Some((key.as_str(), value.as_str()?)))
        .collect();
    match gateway {
        Gateway::Helicone => write_helicone(metadata, &strings, out),
        Gateway::Portkey => write_portkey(metadata, &strings, out),
    }
}

/// Helicone's form ([`write_gateway`]).
fn write_helicone(metadata: &RequestMetadata, strings: &[(&str, &str)], out: &mut HeaderMap) {
    for (name, value) in [
        ("helicone-user-id", &metadata.user_id),
        ("helicone-session-id", &metadata.trace_id),
    ] {
        if let Some(value) = value {
            if !own(out, name) {
                latin1_put(out, name, value);
            }
        }
    }
    // The core fields' own headers win over `extra` keys of the same name, and an `extra` key
    // named like one is left out: it would read back as that field.
    let mut written: Vec<String> = Vec::new();
    for &(key, value) in strings {
        let name = helicone_header(key);
        if name == HELICONE_TAGS {
            tracing::warn!(
                key,
                "extra field left out of Helicone's form: its header would read back as the tags"
            );
            continue;
        }
        if name == HELICONE_PROPERTY {
            tracing::warn!(key, "extra field left out of Helicone's form: `Helicone-Property-` alone names no property");
            continue;
        }
        // Header names have no case: the key written first keeps it, as in the `X-Requesty-*`
        // form.
        if written.contains(&name) {
            tracing::warn!(key, "extra field left out of Helicone's form: another key differing only in case names the same header");
            continue;
        }
        if own(out, &name) {
            continue;
        }
        if latin1_put(out, &name, value) {
            written.push(name);
        }
    }
    let (tags, odd) = crate::headers::header_tags(&metadata.tags);
    if !odd.is_empty() {
        tracing::warn!(tags = ?odd, "tags left out of Helicone-Property-Tags: a comma, edge whitespace or a control character cannot travel in it");
    }
    let mut wide = Vec::new();
    let tags: Vec<Vec<u8>> = tags
        .into_iter()
        .filter_map(|tag| {
            let bytes = crate::headers::latin1(tag);
            if bytes.is_none() {
                wide.push(tag);
            }
            bytes
        })
        .collect();
    if !wide.is_empty() {
        tracing::warn!(tags = ?wide, "tags left out of Helicone-Property-Tags: Helicone reads header values as Latin-1, which has no character past U+00FF");
    }
    // The caller's tags first, as sent; then the metadata's others.
    let mut united: Vec<&[u8]> = Vec::new();
    for value in out.get_all(HELICONE_TAGS) {
        for tag in value
            .as_bytes()
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
        {
            if !tag.is_empty() && !united.contains(&tag) {
                united.push(tag);
            }
        }
    }
    let own = united.len();
    for tag in &tags {
        if !united.contains(&tag.as_slice()) {
            united.push(tag);
        }
    }
    // Nothing to add: the caller's header stays as the caller wrote it.
    if united.len() == own {
        return;
    }
    // Tags and commas that were header values, or checked to be: always a header value.
    if let Ok(value) = HeaderValue::from_bytes(&united.join(&b","[..])) {
        out.insert(HELICONE_TAGS, value);
    }
}

/// [`put`] for a gateway that reads a header's bytes as Latin-1 (as servers on the Fetch API do)
/// and decodes no escape, Helicone and Portkey's trace header: the value goes in Latin-1, byte for
/// character, which UTF-8 would not survive; one with a character past U+00FF, which Latin-1
/// lacks, is left out with a warning. Whether the header was written.
fn latin1_put(out: &mut HeaderMap, name: &str, value: &str) -> bool {
    match crate::headers::latin1(value) {
        Some(bytes) => crate::headers::put_encoded(out, name, value, &bytes),
        None => {
            tracing::warn!(header = name, "metadata left out of a gateway's header: it reads header values as Latin-1, which has no character past U+00FF");
            false
        }
    }
}

/// Portkey's form ([`write_gateway`]).
fn write_portkey(metadata: &RequestMetadata, strings: &[(&str, &str)], out: &mut HeaderMap) {
    let mut fields = Map::new();
    let mut field = |key: &str, value: &str| {
        // Portkey accepts string values of at most 128 characters, counted as its JavaScript
        // counts them (UTF-16 units, never fewer than characters): a longer one is left out whole,
        // never cut into another value (another user's id, say).
        if value.encode_utf16().count() > PORTKEY_VALUE {
            tracing::warn!(key, "metadata left out of x-portkey-metadata: Portkey takes values of at most 128 characters (UTF-16 units)");
            fields.remove(key);
            return;
        }
        fields.insert(key.to_owned(), value.into());
    };
    // `extra` first, but for keys that would read back as a core field. The trace id has
    // Portkey's own header.
    for &(key, value) in strings {
        if key == "_user" || key == "tags" {
            tracing::warn!(
                key,
                "extra field left out of x-portkey-metadata: it would read back as a core field"
            );
            continue;
        }
        field(key, value);
    }
    if let Some(user) = &metadata.user_id {
        field("_user", user);
    }
    let (tags, odd) = crate::headers::header_tags(&metadata.tags);
    if !odd.is_empty() {
        tracing::warn!(tags = ?odd, "tags left out of x-portkey-metadata: a comma, edge whitespace or a control character cannot travel in its `tags`");
    }
    if !tags.is_empty() {
        field("tags", &tags.join(","));
    }
    match Own::read(out) {
        Ok(Some(own)) => {
            let ours_tags = match fields.get("tags") {
                Some(Value::String(tags)) => Some(tags.clone()),
                _ => None,
            };
            // A key the caller set is the caller's: the metadata's goes where the caller has none.
            for member in &own.members {
                fields.remove(&member.key);
            }
            let append = Value::Object(fields).to_string();
            let append = append.get(1..append.len() - 1).unwrap_or_default();
            let edited = own.edited(
                |member| match (member.key.as_str(), &member.value, &ours_tags) {
                    ("tags", Value::String(theirs), Some(ours)) => unite_tags(theirs, ours),
                    // The caller's `tags` is an `extra` key to Portkey's readers, and its own: the
                    // object holds one `tags`, so the metadata's cannot go beside it.
                    ("tags", _, Some(_)) => {
                        tracing::warn!("tags left out of x-portkey-metadata: the request's own `tags` there is not a string, and stays");
                        Edit::Keep
                    }
                    _ => Edit::Keep,
                },
                &ascii_json(append),
            );
            if let Some(edited) = edited {
                own.put(out, &edited);
            }
        }
        Ok(None) if fields.is_empty() => {}
        Ok(None) => {
            put(
                out,
                PORTKEY,
                &ascii_json(&Value::Object(fields).to_string()),
            );
        }
        Err(()) if fields.is_empty() => {}
        Err(()) => {
            tracing::warn!("the request's own x-portkey-metadata is not a JSON object: the metadata's replaces it");
            put(
                out,
                PORTKEY,
                &ascii_json(&Value::Object(fields).to_string()),
            );
        }
    }
    // A trace header the caller set is its own.
    let trace = metadata.trace_id.as_deref();
    if let Some(trace) = trace.filter(|_| !own(out, PORTKEY_TRACE)) {
        latin1_put(out, PORTKEY_TRACE, trace);
    }
}

/// The caller's Portkey `tags` united with the metadata's, the caller's first: kept as written when
/// that adds nothing, and held to Portkey's limit as the metadata's values are (past it, the
/// caller's own tags go alone).
fn unite_tags(theirs: &str, ours: &str) -> Edit {
    let mut tags: Vec<&str> = Vec::new();
    push_tags(&mut tags, theirs);
    let own = tags.len();
    push_tags(&mut tags, ours);
    if tags.len() == own {
        return Edit::Keep;
    }
    let united = tags.join(",");
    if united.encode_utf16().count() > PORTKEY_VALUE {
        tracing::warn!("tags left out of x-portkey-metadata: united with the request's own, they would pass Portkey's 128 characters (UTF-16 units)");
        return Edit::Keep;
    }
    Edit::Value(ascii_json(&Value::from(united).to_string()))
}

/// Adds the tags of the comma-separated `list` that `tags` does not hold yet.
fn push_tags<'a>(tags: &mut Vec<&'a str>, list: &'a str) {
    for tag in list.split(',').map(str::trim) {
        if !tag.is_empty() && !tags.contains(&tag) {
            tags.push(tag);
        }
    }
}

/// `json` with every character past ASCII, and DEL, written as a `\u` escape: the same JSON, in
/// bytes every header reader takes alike. (Servers on the Fetch API, as Portkey's are, read a
/// header's bytes as Latin-1, which would turn raw UTF-8 into other characters; and no header value
/// may hold DEL.) A character can only stand inside a JSON string, where an escape means it.
fn ascii_json(json: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() && c != '\u{7f}' {
            out.push(c);
        } else {
            let mut units = [0; 2];
            for unit in c.encode_utf16(&mut units) {
                // Writing to a `String` cannot fail.
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
    out
}

/// The Helicone header an `extra` key goes in: `Helicone-Session-Path` and `-Name` for the keys the
/// server reads them into (`session_path`, `session_name`), where Helicone builds its session tree
/// from them; `Helicone-Property-<key>` for the others.
fn helicone_header(key: &str) -> String {
    let key = key.to_ascii_lowercase();
    match key.as_str() {
        "session_path" => "helicone-session-path".to_owned(),
        "session_name" => "helicone-session-name".to_owned(),
        _ => format!("helicone-property-{key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native(body: &str, native: Native, value: &str) -> String {
        let meta = RequestMetadata::new().user_id(value);
        let out = write_native(
            Bytes::from(body.to_owned()),
            &meta,
            Some(native),
            None,
            &Default::default(),
        );
        String::from_utf8(out.to_vec()).unwrap()
    }

    /// The user id goes into the provider's field unless the body already sets it; `null` sets
    /// nothing, as the providers read it, and is replaced. Nothing else in the body is rewritten.
    #[test]
    fn native_fields_are_added_unless_the_body_sets_them() {
        use Native::{Anthropic, OpenAi};
        let cases = [
            (
                r#"{"model":"m"}"#,
                OpenAi,
                r#"{"model":"m","safety_identifier":"u1"}"#,
            ),
            (
                r#"{"safety_identifier":"keep"}"#,
                OpenAi,
                r#"{"safety_identifier":"keep"}"#,
            ),
            (
                r#"{"safety_identifier":null}"#,
                OpenAi,
                r#"{"safety_identifier":"u1"}"#,
            ),
            (
                r#"{"model":"m"}"#,
                Anthropic,
                r#"{"model":"m","metadata":{"user_id":"u1"}}"#,
            ),
            (
                r#"{"metadata":{}}"#,
                Anthropic,
                r#"{"metadata":{"user_id":"u1"}}"#,
            ),
            (
                r#"{"metadata": {"z":1.50}}"#,
                Anthropic,
                r#"{"metadata": {"user_id":"u1","z":1.50}}"#,
            ),
            (
                r#"{"metadata":{"user_id":"keep"}}"#,
                Anthropic,
                r#"{"metadata":{"user_id":"keep"}}"#,
            ),
            (
                r#"{"metadata": null,"n":1}"#,
                Anthropic,
                r#"{"metadata": {"user_id":"u1"},"n":1}"#,
            ),
            // Anthropic's field is `metadata.user_id`: a `null` there sets nothing either.
            (
                r#"{"metadata":{"z":1,"user_id": null}}"#,
                Anthropic,
                r#"{"metadata":{"z":1,"user_id": "u1"}}"#,
            ),
            // Another value is the caller's, and is left alone.
            (r#"{"metadata":"x"}"#, Anthropic, r#"{"metadata":"x"}"#),
        ];
        for (body, provider, expected) in cases {
            assert_eq!(native(body, provider, "u1"), expected, "{body}");
        }
    }

    #[test]
    fn openai_safety_identifier_is_hashed_past_its_limit() {
        let long = "x".repeat(65);
        let out = native("{}", Native::OpenAi, &long);
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        let id = value["safety_identifier"].as_str().unwrap();
        assert!(id.len() <= 64 && !id.contains("xxxx"), "{id}");
        let hashed = native_user_value("u1", Native::OpenAi, Some(&HashKey::new(b"k")));
        assert_ne!(hashed, "u1");
    }

    #[test]
    fn anthropic_metadata_user_id_is_hashed_past_its_limit() {
        // At most 256 bytes go as they are (fewer than Anthropic's 256 characters, so that a
        // reader's default `max_id_len` takes it back); a longer id goes hashed.
        let fits = "é".repeat(128);
        assert_eq!(native_user_value(&fits, Native::Anthropic, None), fits);
        let long = "é".repeat(129);
        let hashed = native_user_value(&long, Native::Anthropic, None);
        assert!(hashed.len() <= 256 && !hashed.contains('é'), "{hashed}");
    }

    #[test]
    fn gateway_headers() {
        let meta = RequestMetadata::new()
            .user_id("u")
            .trace_id("t")
            .tag("a")
            .tag("b")
            .extra("team", "infra")
            .extra("n", 1);
        let mut h = HeaderMap::new();
        write_gateway(&meta, Gateway::Helicone, &mut h);
        assert_eq!(h["helicone-user-id"], "u");
        assert_eq!(h["helicone-session-id"], "t");
        assert_eq!(h["helicone-property-tags"], "a,b");
        assert_eq!(h["helicone-property-team"], "infra");
        assert!(!h.contains_key("helicone-property-n"));
        let mut h = HeaderMap::new();
        write_gateway(&meta, Gateway::Portkey, &mut h);
        let portkey: serde_json::Value =
            serde_json::from_slice(h["x-portkey-metadata"].as_bytes()).unwrap();
        assert_eq!(
            portkey,
            serde_json::json!({"_user":"u","tags":"a,b","team":"infra"})
        );
        assert_eq!(h["x-portkey-trace-id"], "t");
        // Past ASCII, values travel escaped: the same JSON, in bytes a Latin-1 reader takes alike.
        let meta = RequestMetadata::new()
            .user_id("jürgen")
            .extra("city", "Zürich 🙂")
            .extra("note", "x\u{7f}");
        let mut h = HeaderMap::new();
        write_gateway(&meta, Gateway::Portkey, &mut h);
        let raw = h["x-portkey-metadata"].as_bytes();
        assert!(raw.is_ascii() && !raw.contains(&0x7f), "{raw:?}");
        let portkey: serde_json::Value = serde_json::from_slice(raw).unwrap();
        assert_eq!(
            portkey,
            serde_json::json!({"_user":"jürgen","city":"Zürich 🙂","note":"x\u{7f}"})
        );
    }

    /// Headers of the form that the caller already set are the request's own: they win over the
    /// metadata field by field, tags united (the caller's first), as the request's own carriers win
    /// in `RequestMetadata::merge`.
    #[test]
    fn the_callers_own_gateway_headers_win_over_the_metadata() {
        let meta = RequestMetadata::new()
            .user_id("svc")
            .trace_id("t")
            .tag("a")
            .extra("team", "infra")
            .extra("env", "prod");
        let mut h = HeaderMap::new();
        h.insert("helicone-user-id", "alice".parse().unwrap());
        h.insert("helicone-property-env", "staging".parse().unwrap());
        h.insert("helicone-property-app", "mobile".parse().unwrap());
        h.insert("helicone-property-tags", "b, a".parse().unwrap());
        let mut unchanged = h.clone();
        write_gateway(&meta, Gateway::Helicone, &mut h);
        assert_eq!(h["helicone-user-id"], "alice");
        assert_eq!(h["helicone-session-id"], "t");
        assert_eq!(h["helicone-property-env"], "staging");
        assert_eq!(h["helicone-property-app"], "mobile");
        assert_eq!(h["helicone-property-team"], "infra");
        // Tags the caller already carries leave its header as written; others join them.
        assert_eq!(h["helicone-property-tags"], "b, a");
        let more = RequestMetadata::new().tag("a").tag("x");
        write_gateway(&more, Gateway::Helicone, &mut unchanged);
        assert_eq!(unchanged["helicone-property-tags"], "b,a,x");

        let mut h = HeaderMap::new();
        let own = r#"{"_user":"alice","env":"staging","tags":"b","n":1}"#;
        h.insert("x-portkey-metadata", own.parse().unwrap());
        h.insert("x-portkey-trace-id", "own-trace".parse().unwrap());
        write_gateway(&meta, Gateway::Portkey, &mut h);
        assert_eq!(
            h["x-portkey-metadata"],
            r#"{"_user":"alice","env":"staging","tags":"b,a","n":1,"team":"infra"}"#
        );
        assert_eq!(h["x-portkey-trace-id"], "own-trace");
        assert_eq!(h.get_all("x-portkey-metadata").iter().count(), 1);
    }

    /// Helicone reads header values as a Fetch API server does, as Latin-1, and decodes nothing: a
    /// value past ASCII goes in Latin-1, byte for character, never as UTF-8 bytes that would arrive
    /// as other characters, and one with a character Latin-1 lacks is left out (with a warning).
    /// The same holds for Portkey's trace header, which has no escapes.
    #[test]
    fn values_past_ascii_go_in_latin1_in_plain_gateway_headers() {
        let meta = RequestMetadata::new()
            .user_id("j\u{fc}rgen")
            .trace_id("trace-\u{fc}")
            .tag("caf\u{e9}")
            .tag("ok")
            .tag("\u{1f642}")
            .extra("city", "Z\u{fc}rich")
            .extra("mood", "\u{1f642}")
            .extra("session_name", "\u{dc}nboarding")
            .extra("team", "infra");
        let mut h = HeaderMap::new();
        write_gateway(&meta, Gateway::Helicone, &mut h);
        assert_eq!(h["helicone-user-id"].as_bytes(), b"j\xfcrgen");
        assert_eq!(h["helicone-session-id"].as_bytes(), b"trace-\xfc");
        assert_eq!(h["helicone-session-name"].as_bytes(), b"\xdcnboarding");
        assert_eq!(h["helicone-property-city"].as_bytes(), b"Z\xfcrich");
        assert_eq!(h.get("helicone-property-mood"), None);
        assert_eq!(h["helicone-property-tags"].as_bytes(), b"caf\xe9,ok");
        assert_eq!(h["helicone-property-team"], "infra");
        // This crate's server reads them back as they were.
        let read = |name: &str| crate::headers::text(&h[name]).into_owned();
        assert_eq!(read("helicone-user-id"), "j\u{fc}rgen");
        assert_eq!(read("helicone-property-tags"), "caf\u{e9},ok");
        let mut h = HeaderMap::new();
        write_gateway(&meta, Gateway::Portkey, &mut h);
        assert_eq!(h["x-portkey-trace-id"].as_bytes(), b"trace-\xfc");
        assert!(h["x-portkey-metadata"].as_bytes().is_ascii());
        let mut h = HeaderMap::new();
        write_gateway(
            &RequestMetadata::new().trace_id("\u{1f642}"),
            Gateway::Portkey,
            &mut h,
        );
        assert_eq!(h.get("x-portkey-trace-id"), None);
    }

    /// Portkey's gateway is JavaScript, whose strings count UTF-16 units: a value is measured so,
    /// which is never fewer than its characters, so one that fits fits either way.
    #[test]
    fn portkey_values_are_measured_in_utf16_units() {
        let fits = "🙂".repeat(64);
        let over = "🙂".repeat(65);
        let meta = RequestMetadata::new()
            .extra("fits", &*fits)
            .extra("over", &*over);
        let mut h = HeaderMap::new();
        write_gateway(&meta, Gateway::Portkey, &mut h);
        let portkey: serde_json::Value =
            serde_json::from_slice(h["x-portkey-metadata"].as_bytes()).unwrap();
        assert_eq!(portkey, serde_json::json!({ "fits": fits }));
    }

    /// Tags united with the caller's own in Portkey's object are one value, held to Portkey's limit
    /// like the rest: past it, the caller's tags go as the caller wrote them, with a warning.
    #[test]
    fn united_portkey_tags_keep_to_portkeys_limit() {
        let ours = "a".repeat(100);
        let theirs = "b".repeat(100);
        let mut h = HeaderMap::new();
        let own = format!(r#"{{"tags":"{theirs}"}}"#);
        h.insert(PORTKEY, HeaderValue::from_str(&own).unwrap());
        write_gateway(
            &RequestMetadata::new().tag(&*ours),
            Gateway::Portkey,
            &mut h,
        );
        let portkey: Value = serde_json::from_slice(h[PORTKEY].as_bytes()).unwrap();
        assert_eq!(portkey, serde_json::json!({ "tags": theirs }));
    }

    /// No key or value can start a header line or put a byte no header may hold in either form:
    /// Helicone's are checked as header names and values, Portkey's are JSON-escaped.
    #[test]
    fn no_key_or_value_starts_a_header_line() {
        let meta = RequestMetadata::new()
            .user_id("u\r\nx-evil: 1")
            .trace_id("t\nx-evil: 1")
            .tag("a\r\nx-evil: 1")
            .tag("ok")
            .extra("k\r\nx-evil", "v")
            .extra("team", "x\r\nx-evil: 1")
            .extra("nul", "x\0y");
        for gateway in [Gateway::Helicone, Gateway::Portkey] {
            let mut h = HeaderMap::new();
            write_gateway(&meta, gateway, &mut h);
            for (name, value) in &h {
                let bytes = value.as_bytes();
                assert!(
                    !bytes.iter().any(|&b| b < 0x20 || b == 0x7f),
                    "{gateway:?} {name}: {value:?}"
                );
                assert!(!name.as_str().contains("evil"), "{gateway:?} {name}");
            }
        }
        let mut h = HeaderMap::new();
        write_gateway(&meta, Gateway::Portkey, &mut h);
        let portkey: serde_json::Value =
            serde_json::from_slice(h["x-portkey-metadata"].as_bytes()).unwrap();
        assert_eq!(portkey["team"], "x\r\nx-evil: 1");
        assert_eq!(portkey["k\r\nx-evil"], "v");
    }

    /// The request's own `x-portkey-metadata` is its last line that holds something, as the server
    /// reads it (an empty line carries nothing): an empty line after it neither hides its keys from
    /// the boundary nor lets the metadata's replace the caller's.
    #[test]
    fn an_empty_portkey_line_does_not_hide_the_one_before_it() {
        let lines = |first: &'static str| {
            let mut h = HeaderMap::new();
            h.append(PORTKEY, HeaderValue::from_static(first));
            h.append(PORTKEY, HeaderValue::from_static(""));
            h
        };
        let values = |h: &HeaderMap| -> Vec<Value> {
            h.get_all(PORTKEY)
                .iter()
                .filter(|v| !v.is_empty())
                .map(|v| serde_json::from_slice(v.as_bytes()).unwrap())
                .collect()
        };
        let mut h = lines(r#"{"_user":"alice","env":"prod"}"#);
        hold_boundary(&[Field::UserId], &mut h);
        assert_eq!(values(&h), [serde_json::json!({"env": "prod"})]);

        let mut h = lines(r#"{"_user":"alice"}"#);
        write_gateway(
            &RequestMetadata::new().user_id("svc"),
            Gateway::Portkey,
            &mut h,
        );
        assert_eq!(values(&h), [serde_json::json!({"_user": "alice"})]);
    }

    /// A caller's `x-portkey-metadata` in ISO-8859-1 (`Montr\xe9al`, as Python's `http.client`
    /// sends it) is a JSON object to Portkey and to the server, which read it as Latin-1: it is the
    /// caller's own, edited like any other, its bytes kept.
    #[test]
    fn a_latin1_portkey_object_is_the_callers_own() {
        let latin1 = |bytes: &[u8]| {
            let mut h = HeaderMap::new();
            h.insert(PORTKEY, HeaderValue::from_bytes(bytes).unwrap());
            h
        };
        let own = b"{\"city\":\"Montr\xe9al\", \"_user\":\"alice\"}";
        let mut h = latin1(own);
        let meta = RequestMetadata::new().user_id("svc").extra("team", "infra");
        write_gateway(&meta, Gateway::Portkey, &mut h);
        assert_eq!(
            h[PORTKEY].as_bytes(),
            b"{\"city\":\"Montr\xe9al\", \"_user\":\"alice\",\"team\":\"infra\"}"
        );

        let mut h = latin1(own);
        hold_boundary(&[Field::UserId], &mut h);
        assert_eq!(h[PORTKEY].as_bytes(), b"{\"city\":\"Montr\xe9al\"}");
    }

    /// A header the caller set that the server reads as blank (a no-break space, in ISO-8859-1 or
    /// UTF-8, trimmed as the text it is) carries nothing, and gives way to the metadata's value.
    #[test]
    fn a_header_of_no_break_space_alone_is_blank() {
        let meta = RequestMetadata::new().user_id("svc").trace_id("t");
        for blank in [&b"\xa0"[..], "\u{a0}".as_bytes()] {
            let mut h = HeaderMap::new();
            h.insert("helicone-user-id", HeaderValue::from_bytes(blank).unwrap());
            write_gateway(&meta, Gateway::Helicone, &mut h);
            assert_eq!(h["helicone-user-id"], "svc", "{blank:?}");

            let mut h = HeaderMap::new();
            h.insert(PORTKEY_TRACE, HeaderValue::from_bytes(blank).unwrap());
            write_gateway(&meta, Gateway::Portkey, &mut h);
            assert_eq!(h[PORTKEY_TRACE], "t", "{blank:?}");
        }
    }

    /// The request's own `x-portkey-metadata` that is not a JSON object has no keys to win: the
    /// metadata's object takes its place, with a warning. With nothing to write, it stays.
    #[test]
    fn a_portkey_header_that_is_not_an_object_gives_way_to_the_metadata() {
        let mut h = HeaderMap::new();
        h.insert(PORTKEY, HeaderValue::from_static("not json"));
        write_gateway(
            &RequestMetadata::new().user_id("svc"),
            Gateway::Portkey,
            &mut h,
        );
        assert_eq!(h.get_all(PORTKEY).iter().count(), 1);
        let portkey: Value = serde_json::from_slice(h[PORTKEY].as_bytes()).unwrap();
        assert_eq!(portkey, serde_json::json!({"_user": "svc"}));

        let mut h = HeaderMap::new();
        h.insert(PORTKEY, HeaderValue::from_static("not json"));
        write_gateway(&RequestMetadata::new(), Gateway::Portkey, &mut h);
        assert_eq!(h[PORTKEY], "not json");
    }

    #[test]
    fn a_value_left_out_does_not_leave_a_stale_header_behind() {
        // A header the request carries is the caller's own and stays; an empty one carries
        // nothing, and the metadata's value replaces it.
        let mut h = HeaderMap::new();
        h.insert("helicone-user-id", "own".parse().unwrap());
        h.insert("helicone-session-id", " ".parse().unwrap());
        let meta = RequestMetadata::new().user_id(" padded").trace_id("t");
        write_gateway(&meta, Gateway::Helicone, &mut h);
        assert_eq!(h["helicone-user-id"], "own");
        assert_eq!(h["helicone-session-id"], "t");
        assert_eq!(h.get_all("helicone-session-id").iter().count(), 1);
        // A later value left out does not take away one written before it under the same name.
        let meta = RequestMetadata::new().tag("a").extra("tags", " padded");
        let mut h = HeaderMap::new();
        write_gateway(&meta, Gateway::Helicone, &mut h);
        assert_eq!(h["helicone-property-tags"], "a");
    }
}
