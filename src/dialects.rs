//! Other gateways' metadata formats, read into the same [`RequestMetadata`].
//!
//! Teams move between gateways and mix SDKs; each gateway reads only its own format, so metadata is
//! lost at every boundary. The server layer can read all of them ([`Sources`]):
//!
//! | source | carrier | `trace_id` | `user_id` | `tags` | `extra` |
//! |---|---|---|---|---|---|
//! | Requesty | body `requesty`, `X-Requesty-*` | `trace_id` | `user_id` | `tags` | `extra`, `X-Requesty-<Name>` |
//! | Helicone | headers | `Helicone-Session-Id` | `Helicone-User-Id` | | `Helicone-Property-<Key>` → `<key>`; `Helicone-Session-Path` → `session_path`, `-Name` → `session_name` |
//! | LiteLLM | body `litellm_metadata`, then `metadata` | `trace_id`, else `session_id` | `trace_user_id` | `tags` | `generation_name` |
//! | LiteLLM | headers | `x-litellm-trace-id` | `x-litellm-end-user-id` | `x-litellm-tags` (comma-separated) | |
//! | Portkey | header `x-portkey-metadata` (a JSON object) | | `_user` | | every other key |
//! | OpenRouter | body | `trace.trace_id`, else `session_id` | | | `trace.trace_name`, `.span_name`, `.generation_name` |
//! | OpenRouter | header `x-session-id` | the value | | | |
//! | native | body `user` (OpenAI, OpenRouter) | | the value | | |
//!
//! When several are present, earlier sources win, field by field ([`RequestMetadata::with_fallback`]):
//! Requesty's body member, Requesty's headers, the other dialects' body fields (LiteLLM, then
//! OpenRouter), their headers (Helicone, LiteLLM, Portkey, OpenRouter), and last the native `user`.
//! Tags are united in that order.
//!
//! Stripping follows the source: the headers of a source that is on are removed before the inner
//! service (like `X-Requesty-*`, unless the layer keeps headers). Body fields are never removed,
//! because `user` and `metadata` are the providers' own fields and OpenRouter's `session_id` and
//! `trace` are OpenRouter's; only the `requesty` member is stripped.

use crate::codec::{self, conversation, Members, Scan};
use crate::error::{ErrorKind, MetadataError};
use crate::RequestMetadata;
use http::header::{HeaderMap, HeaderName};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// Which metadata formats the server layer reads; see [the module docs](self) for the mapping.
///
/// ```
/// use requesty_metadata::dialects::Sources;
/// use requesty_metadata::RequestyMetadataLayer;
///
/// let layer = RequestyMetadataLayer::new().sources(Sources::all().native_user(false));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sources {
    requesty: bool,
    helicone: bool,
    litellm: bool,
    portkey: bool,
    openrouter: bool,
    native_user: bool,
}

impl Default for Sources {
    /// Requesty only.
    fn default() -> Self {
        Self::requesty_only()
    }
}

macro_rules! switches {
    ($($(#[$doc:meta])* $name:ident;)*) => {
        impl Sources {
            $(
                $(#[$doc])*
                pub fn $name(mut self, on: bool) -> Self {
                    self.$name = on;
                    self
                }
            )*
        }
    };
}

switches! {
    /// Requesty's body member and `X-Requesty-*` headers.
    requesty;
    /// Helicone's `Helicone-*` headers.
    helicone;
    /// LiteLLM's body `metadata` and `x-litellm-*` headers.
    litellm;
    /// Portkey's `x-portkey-metadata` header.
    portkey;
    /// OpenRouter's body `session_id` and `trace`, and `x-session-id` header.
    openrouter;
    /// The body's `user` field, as the user id.
    native_user;
}

impl Sources {
    /// Requesty's body member and headers (the default).
    pub fn requesty_only() -> Self {
        Self {
            requesty: true,
            helicone: false,
            litellm: false,
            portkey: false,
            openrouter: false,
            native_user: false,
        }
    }

    /// Every format this crate reads.
    pub fn all() -> Self {
        Self {
            requesty: true,
            helicone: true,
            litellm: true,
            portkey: true,
            openrouter: true,
            native_user: true,
        }
    }

    pub(crate) fn reads_requesty(&self) -> bool {
        self.requesty
    }

    fn foreign_headers(&self) -> bool {
        self.helicone || self.litellm || self.portkey || self.openrouter
    }
}

/// A header another gateway reads metadata from, as recognized when its source is on.
#[derive(Clone, Copy)]
enum GatewayHeader<'a> {
    HeliconeUser,
    HeliconeSession,
    /// `Helicone-Property-<Key>`, `Helicone-Session-Path`, `Helicone-Session-Name`: an `extra` key.
    HeliconeExtra(&'a str),
    LiteLlmTrace,
    LiteLlmUser,
    LiteLlmTags,
    Portkey,
    OpenRouterSession,
}

/// The other gateways' header names but `Helicone-Property-<Key>`, with what each carries: with the
/// property prefix, the one list used for reading and removing them alike.
const FIXED: [(&str, GatewayHeader<'static>); 9] = [
    ("helicone-user-id", GatewayHeader::HeliconeUser),
    ("helicone-session-id", GatewayHeader::HeliconeSession),
    (
        "helicone-session-path",
        GatewayHeader::HeliconeExtra("session_path"),
    ),
    (
        "helicone-session-name",
        GatewayHeader::HeliconeExtra("session_name"),
    ),
    ("x-litellm-trace-id", GatewayHeader::LiteLlmTrace),
    ("x-litellm-end-user-id", GatewayHeader::LiteLlmUser),
    ("x-litellm-tags", GatewayHeader::LiteLlmTags),
    ("x-portkey-metadata", GatewayHeader::Portkey),
    ("x-session-id", GatewayHeader::OpenRouterSession),
];

const PROPERTY: &str = "helicone-property-";

impl<'a> GatewayHeader<'a> {
    /// What header `name` carries when its source is on, with its place in [`FIXED`] (`None` for a
    /// Helicone property).
    fn of(name: &'a str, sources: &Sources) -> Option<(Self, Option<usize>)> {
        let (header, fixed) = match FIXED.iter().position(|(fixed, _)| *fixed == name) {
            Some(i) => (FIXED[i].1, Some(i)),
            None => (Self::HeliconeExtra(name.strip_prefix(PROPERTY)?), None),
        };
        let on = match header {
            Self::HeliconeUser | Self::HeliconeSession | Self::HeliconeExtra(_) => sources.helicone,
            Self::LiteLlmTrace | Self::LiteLlmUser | Self::LiteLlmTags => sources.litellm,
            Self::Portkey => sources.portkey,
            Self::OpenRouterSession => sources.openrouter,
        };
        on.then_some((header, fixed))
    }
}

/// The headers [`from_headers`] read, for removing them: fixed names by their place in [`FIXED`]
/// (no copy of the name), Helicone properties by name, kept only when they are to be removed.
struct Read {
    strip: bool,
    fixed: u16,
    properties: Vec<HeaderName>,
}

/// Reads the other gateways' headers and, when `strip`, removes them: the pass that reads them
/// notes which to remove.
pub(crate) fn take_headers(
    headers: &mut HeaderMap,
    sources: &Sources,
    strip: bool,
) -> Result<RequestMetadata, MetadataError> {
    let mut read = Read {
        strip,
        fixed: 0,
        properties: Vec::new(),
    };
    let meta = from_headers(headers, sources, &mut read)?;
    if strip {
        for (i, (name, _)) in FIXED.iter().enumerate() {
            if read.fixed & (1 << i) != 0 {
                headers.remove(*name);
            }
        }
        for name in read.properties {
            headers.remove(name);
        }
    }
    Ok(meta)
}

/// The other gateways' headers, in precedence order: Helicone, LiteLLM, Portkey, OpenRouter. What
/// was read is noted in `read`.
fn from_headers(
    headers: &HeaderMap,
    sources: &Sources,
    read: &mut Read,
) -> Result<RequestMetadata, MetadataError> {
    let mut meta = RequestMetadata::default();
    if !sources.foreign_headers() {
        return Ok(meta);
    }
    // One pass over the headers. Ids are noted and copied once the pass is over, only the winner
    // of each; a repeated header keeps its last value, as a proxy that keeps the last value would.
    // Tags (LiteLLM's alone) and Helicone's properties (the first-ranked `extra`) go straight in.
    let mut helicone = Ids::default();
    let mut litellm = Ids::default();
    let mut openrouter_session = None;
    let mut portkey = None;
    for (header_name, value) in headers {
        let name = header_name.as_str();
        let Some((header, fixed)) = GatewayHeader::of(name, sources) else {
            continue;
        };
        match fixed {
            Some(i) => read.fixed |= 1 << i,
            None if read.strip => read.properties.push(header_name.clone()),
            None => {}
        }
        let text = crate::headers::text(name, value)?;
        match header {
            GatewayHeader::HeliconeUser => helicone.user = Some(text),
            GatewayHeader::HeliconeSession => helicone.trace = Some(text),
            GatewayHeader::HeliconeExtra(key) => {
                meta.extra.insert(key.to_owned(), text.into());
            }
            GatewayHeader::LiteLlmTrace => litellm.trace = Some(text),
            GatewayHeader::LiteLlmUser => litellm.user = Some(text),
            GatewayHeader::LiteLlmTags => {
                for tag in text.split(',') {
                    let tag = tag.trim();
                    if !tag.is_empty() && !meta.tags.iter().any(|t| t == tag) {
                        meta.tags.push(tag.to_owned());
                    }
                }
            }
            GatewayHeader::Portkey => portkey = Some(text),
            GatewayHeader::OpenRouterSession => openrouter_session = Some(text),
        }
    }
    meta.user_id = helicone.user.or(litellm.user).map(str::to_owned);
    meta.trace_id = helicone
        .trace
        .or(litellm.trace)
        .or(openrouter_session)
        .map(str::to_owned);
    if let Some(raw) = portkey {
        portkey_metadata(raw, &mut meta)?;
    }
    Ok(meta)
}

/// The ids one dialect's headers carry.
#[derive(Default)]
struct Ids<'a> {
    user: Option<&'a str>,
    trace: Option<&'a str>,
}

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
    // LiteLLM's own object first: `metadata` may be the provider's.
    for range in [&members.litellm_metadata, &members.metadata] {
        if let (true, Some(range)) = (sources.litellm, range.clone()) {
            fill_litellm(meta, body, range);
        }
    }
    if let (true, Some(range)) = (sources.openrouter, members.trace.clone()) {
        let mut trace_id = None;
        let mut named = [
            ("trace_name", None),
            ("span_name", None),
            ("generation_name", None),
        ];
        let read = codec::object_members(body, range, |name, value| {
            if name == "trace_id" {
                trace_id = Some(value);
            } else if let Some((_, slot)) = named.iter_mut().find(|(key, _)| *key == name) {
                *slot = Some(value);
            }
        });
        if read.is_some() {
            if meta.trace_id.is_none() {
                meta.trace_id = Foreign::read(trace_id).text();
            }
            for (key, value) in named {
                if let Some(value) = Foreign::read(value).text() {
                    meta.extra.entry(key).or_insert_with(|| value.into());
                }
            }
        }
    }
    if sources.openrouter && meta.trace_id.is_none() {
        meta.trace_id = Foreign::read(json_text(body, members.session_id.clone())).text();
    }
}

/// Fills what `meta` lacks from a LiteLLM metadata object at `body[range]`.
fn fill_litellm(meta: &mut RequestMetadata, body: &[u8], range: std::ops::Range<usize>) {
    let mut fields = LiteLlm::default();
    let read = codec::object_members(body, range, |name, value| {
        let slot = match name {
            "tags" => &mut fields.tags,
            "trace_id" => &mut fields.trace_id,
            "session_id" => &mut fields.session_id,
            "trace_user_id" => &mut fields.trace_user_id,
            "generation_name" => &mut fields.generation_name,
            _ => return,
        };
        *slot = Some(value);
    });
    if read.is_none() {
        return;
    }
    for tag in Foreign::read(fields.tags).list() {
        if !meta.tags.contains(&tag) {
            meta.tags.push(tag);
        }
    }
    // Only what can still win is decoded.
    if meta.trace_id.is_none() {
        meta.trace_id = Foreign::read(fields.trace_id)
            .text()
            .or_else(|| Foreign::read(fields.session_id).text());
    }
    if meta.user_id.is_none() {
        meta.user_id = Foreign::read(fields.trace_user_id).text();
    }
    if let Some(name) = Foreign::read(fields.generation_name).text() {
        meta.extra
            .entry("generation_name")
            .or_insert_with(|| name.into());
    }
}

/// The JSON text of a top-level member's value.
fn json_text(body: &[u8], range: Option<std::ops::Range<usize>>) -> Option<&str> {
    std::str::from_utf8(body.get(range?)?).ok()
}

/// The fields LiteLLM reads from `metadata`, as JSON text; anything else in it is skipped unread.
#[derive(Default)]
struct LiteLlm<'a> {
    tags: Option<&'a str>,
    trace_id: Option<&'a str>,
    session_id: Option<&'a str>,
    trace_user_id: Option<&'a str>,
    generation_name: Option<&'a str>,
}

/// A field of a foreign format, read whatever its type: strings and lists of strings are kept, any
/// other JSON value is skipped without being built. It is not ours to refuse.
#[derive(Default)]
enum Foreign {
    Text(String),
    List(Vec<String>),
    #[default]
    Other,
}

impl Foreign {
    /// The field whose JSON text is `json`; a plain string needs no parser.
    fn read(json: Option<&str>) -> Self {
        let Some(json) = json else {
            return Foreign::Other;
        };
        let plain = json
            .strip_prefix('"')
            .and_then(|inner| inner.strip_suffix('"'))
            .filter(|inner| !inner.bytes().any(|b| b == b'\\' || b == b'"' || b < 0x20));
        match plain {
            Some(text) => Foreign::Text(text.to_owned()),
            None => serde_json::from_str(json).unwrap_or_default(),
        }
    }

    fn text(self) -> Option<String> {
        match self {
            Foreign::Text(text) => Some(text),
            _ => None,
        }
    }

    /// The strings of a list, in order, without repeats.
    fn list(self) -> Vec<String> {
        match self {
            Foreign::List(list) => list,
            _ => Vec::new(),
        }
    }
}

impl<'de> Deserialize<'de> for Foreign {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AnyValue)
    }
}

struct AnyValue;

impl<'de> Visitor<'de> for AnyValue {
    type Value = Foreign;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E>(self, text: &str) -> Result<Foreign, E> {
        Ok(Foreign::Text(text.to_owned()))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Foreign, E> {
        Ok(Foreign::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Foreign, E> {
        Ok(Foreign::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Foreign, E> {
        Ok(Foreign::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Foreign, E> {
        Ok(Foreign::Other)
    }

    fn visit_unit<E>(self) -> Result<Foreign, E> {
        Ok(Foreign::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Foreign, A::Error> {
        let mut list = Vec::new();
        while let Some(item) = seq.next_element::<Foreign>()? {
            if let Some(text) = item.text().filter(|t| !list.contains(t)) {
                list.push(text);
            }
        }
        Ok(Foreign::List(list))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Foreign, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Foreign::Other)
    }
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

/// Portkey's metadata header: a JSON object whose `_user` is the user id. It ranks below the
/// dialects already in `meta`, so it only fills what they left empty; values that cannot win are
/// skipped unbuilt.
fn portkey_metadata(raw: &str, meta: &mut RequestMetadata) -> Result<(), MetadataError> {
    let mut fields = Map::new();
    let mut json = serde_json::Deserializer::from_str(raw);
    let read = Portkey {
        meta,
        fields: &mut fields,
    }
    .deserialize(&mut json)
    .and_then(|()| json.end());
    if read.is_err() {
        return Err(MetadataError::new(
            ErrorKind::InvalidHeader,
            "x-portkey-metadata",
            "header `x-portkey-metadata` must be a JSON object",
        ));
    }
    for (key, value) in fields {
        meta.extra.entry(key).or_insert(value);
    }
    Ok(())
}

/// Reads the Portkey object: `_user` into `meta` when it has no user id yet, every other member
/// into `fields` unless `meta.extra` already holds its key (a repeated key keeps its last value).
struct Portkey<'a> {
    meta: &'a mut RequestMetadata,
    fields: &'a mut Map<String, Value>,
}

impl<'de> DeserializeSeed<'de> for Portkey<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Portkey<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut user = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if key.0 == "_user" && self.meta.user_id.is_some() {
                // A header above Portkey's gave the user id: this one cannot win.
                map.next_value::<IgnoredAny>()?;
            } else if key.0 == "_user" {
                user = map.next_value::<Foreign>()?.text();
            } else if self.meta.extra.contains_key(key.0.as_ref()) {
                map.next_value::<IgnoredAny>()?;
            } else {
                let value = map.next_value()?;
                self.fields.insert(key.0.into_owned(), value);
            }
        }
        if self.meta.user_id.is_none() {
            self.meta.user_id = user;
        }
        Ok(())
    }
}

/// An object key, borrowed from the header when it holds no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyText)
    }
}

struct KeyText;

impl<'de> Visitor<'de> for KeyText {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(text)))
    }

    fn visit_str<E>(self, text: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(text.to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::headers;

    #[test]
    fn header_dialects_rank_helicone_litellm_portkey_openrouter() {
        let mut map = headers(&[
            ("x-session-id", "or-session"),
            (
                "x-portkey-metadata",
                r#"{"_user":"pk-user","team":"pk","env":"prod"}"#,
            ),
            ("x-litellm-trace-id", "lite-trace"),
            ("x-litellm-end-user-id", "lite-user"),
            ("helicone-property-team", "helicone"),
            ("content-type", "application/json"),
        ]);
        let meta = take_headers(&mut map, &Sources::all(), true).unwrap();
        assert_eq!(meta.user_id.as_deref(), Some("lite-user"));
        assert_eq!(meta.trace_id.as_deref(), Some("lite-trace"));
        assert_eq!(meta.extra["team"], "helicone");
        assert_eq!(meta.extra["env"], "prod");
        // Every dialect header is gone; the rest stays.
        assert_eq!(map.len(), 1);
        assert!(map.contains_key("content-type"));

        // Portkey fills in a user only when no header above it gave one; OpenRouter the trace.
        let mut map = headers(&[
            ("x-portkey-metadata", r#"{"_user":"pk-user"}"#),
            ("x-session-id", "or-session"),
        ]);
        let meta = take_headers(&mut map, &Sources::all(), false).unwrap();
        assert_eq!(meta.user_id.as_deref(), Some("pk-user"));
        assert_eq!(meta.trace_id.as_deref(), Some("or-session"));
        assert_eq!(map.len(), 2, "not stripped when asked not to");
    }

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
        );
    }

    #[test]
    fn portkey_object_is_read_like_a_json_parser_would() {
        let read = |raw: &'static str| {
            let mut map = headers(&[("x-portkey-metadata", raw)]);
            take_headers(&mut map, &Sources::all(), true)
        };
        // Escaped keys decode; a repeated key keeps its last value; `_user` must be a string.
        let meta = read(r#"{"\u0065nv":"a","env":"b","_user":1,"n":{"x":[1]}}"#).unwrap();
        assert_eq!(meta.extra["env"], "b");
        assert_eq!(meta.extra["n"], serde_json::json!({"x": [1]}));
        assert_eq!(meta.user_id, None);
        for bad in [r#"["a"]"#, r#"{"a":1} x"#, r#"{"a":"#, "null"] {
            let error = read(bad).unwrap_err();
            assert_eq!(error.param(), "x-portkey-metadata", "{bad}");
        }
    }
}
