//! Other gateways' metadata formats, read into the same [`RequestMetadata`].
//!
//! Teams move between gateways and mix SDKs; each gateway reads only its own format, so metadata is
//! lost at every boundary. The server layer can read all of them ([`Sources`]):
//!
//! | source | carrier | `trace_id` | `user_id` | `tags` | `extra` |
//! |---|---|---|---|---|---|
//! | Requesty | body `requesty`, `X-Requesty-*` | `trace_id` | `user_id` | `tags` | `extra`, `X-Requesty-<Name>` |
//! | Helicone | headers | `Helicone-Session-Id` | `Helicone-User-Id` | | `Helicone-Property-<Key>` → `<key>`; `Helicone-Session-Path` → `session_path`, `-Name` → `session_name` |
//! | LiteLLM | body `metadata` (or `litellm_metadata`) | `trace_id`, else `session_id` | `trace_user_id` | `tags` | `generation_name` |
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

use crate::codec::{conversation, Members, Scan};
use crate::error::{ErrorKind, MetadataError};
use crate::RequestMetadata;
use http::header::HeaderMap;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

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

impl<'a> GatewayHeader<'a> {
    /// The one list of the other gateways' header names, read by [`from_headers`] and
    /// [`remove_headers`] alike.
    fn of(name: &'a str, sources: &Sources) -> Option<Self> {
        let header = match name {
            "helicone-user-id" => Self::HeliconeUser,
            "helicone-session-id" => Self::HeliconeSession,
            "helicone-session-path" => Self::HeliconeExtra("session_path"),
            "helicone-session-name" => Self::HeliconeExtra("session_name"),
            "x-litellm-trace-id" => Self::LiteLlmTrace,
            "x-litellm-end-user-id" => Self::LiteLlmUser,
            "x-litellm-tags" => Self::LiteLlmTags,
            "x-portkey-metadata" => Self::Portkey,
            "x-session-id" => Self::OpenRouterSession,
            _ => Self::HeliconeExtra(name.strip_prefix("helicone-property-")?),
        };
        let on = match header {
            Self::HeliconeUser | Self::HeliconeSession | Self::HeliconeExtra(_) => sources.helicone,
            Self::LiteLlmTrace | Self::LiteLlmUser | Self::LiteLlmTags => sources.litellm,
            Self::Portkey => sources.portkey,
            Self::OpenRouterSession => sources.openrouter,
        };
        on.then_some(header)
    }
}

/// The other gateways' headers, in precedence order.
pub(crate) fn from_headers(
    headers: &HeaderMap,
    sources: &Sources,
) -> Result<RequestMetadata, MetadataError> {
    if !sources.foreign_headers() {
        return Ok(RequestMetadata::default());
    }
    // One pass over the headers, each dialect filling its own metadata; later values of a header
    // overwrite earlier ones, as a proxy that keeps the last value would.
    let mut helicone = RequestMetadata::default();
    let mut litellm = RequestMetadata::default();
    let mut portkey = None;
    let mut openrouter = RequestMetadata::default();
    for (name, value) in headers {
        let name = name.as_str();
        let Some(header) = GatewayHeader::of(name, sources) else {
            continue;
        };
        let text = crate::headers::text(name, value)?;
        match header {
            GatewayHeader::HeliconeUser => helicone.user_id = Some(text.to_owned()),
            GatewayHeader::HeliconeSession => helicone.trace_id = Some(text.to_owned()),
            GatewayHeader::HeliconeExtra(key) => {
                helicone.extra.insert(key.to_owned(), text.into());
            }
            GatewayHeader::LiteLlmTrace => litellm.trace_id = Some(text.to_owned()),
            GatewayHeader::LiteLlmUser => litellm.user_id = Some(text.to_owned()),
            GatewayHeader::LiteLlmTags => {
                for tag in text.split(',') {
                    let tag = tag.trim();
                    if !tag.is_empty() && !litellm.tags.iter().any(|t| t == tag) {
                        litellm.tags.push(tag.to_owned());
                    }
                }
            }
            GatewayHeader::Portkey => portkey = Some(text),
            GatewayHeader::OpenRouterSession => openrouter.trace_id = Some(text.to_owned()),
        }
    }
    let portkey = match portkey {
        Some(raw) => portkey_metadata(raw)?,
        None => RequestMetadata::default(),
    };
    Ok(helicone
        .with_fallback(litellm)
        .with_fallback(portkey)
        .with_fallback(openrouter))
}

/// Removes the headers of the foreign sources that are on.
pub(crate) fn remove_headers(headers: &mut HeaderMap, sources: &Sources) {
    if sources.foreign_headers() {
        crate::headers::remove_where(headers, |name| GatewayHeader::of(name, sources).is_some());
    }
}

/// The other dialects' body fields (LiteLLM, then OpenRouter).
pub(crate) fn from_body(body: &[u8], scan: &Scan, sources: &Sources) -> RequestMetadata {
    let members = scan.members();
    let mut meta = RequestMetadata::default();
    if sources.litellm {
        if let Some(fields) = parse::<LiteLlm>(body, members.metadata.clone()) {
            meta.tags = fields.tags.list();
            meta.trace_id = fields.trace_id.text().or(fields.session_id.text());
            meta.user_id = fields.trace_user_id.text();
            if let Some(name) = fields.generation_name.text() {
                meta.extra.insert("generation_name".into(), name.into());
            }
        }
    }
    if sources.openrouter {
        let mut openrouter = RequestMetadata::default();
        if let Some(trace) = parse::<OpenRouterTrace>(body, members.trace.clone()) {
            openrouter.trace_id = trace.trace_id.text();
            for (key, value) in [
                ("trace_name", trace.trace_name),
                ("span_name", trace.span_name),
                ("generation_name", trace.generation_name),
            ] {
                if let Some(value) = value.text() {
                    openrouter.extra.insert(key.into(), value.into());
                }
            }
        }
        if openrouter.trace_id.is_none() {
            openrouter.trace_id =
                parse::<Foreign>(body, members.session_id.clone()).and_then(Foreign::text);
        }
        meta = meta.with_fallback(openrouter);
    }
    meta
}

/// The fields LiteLLM reads from `metadata`; anything else in it is skipped unread. A field of
/// another type means the object is not LiteLLM's (it is also OpenAI's own `metadata`): ignored.
#[derive(Deserialize)]
struct LiteLlm {
    #[serde(default)]
    tags: Foreign,
    #[serde(default)]
    trace_id: Foreign,
    #[serde(default)]
    session_id: Foreign,
    #[serde(default)]
    trace_user_id: Foreign,
    #[serde(default)]
    generation_name: Foreign,
}

/// OpenRouter's `trace` object.
#[derive(Deserialize)]
struct OpenRouterTrace {
    #[serde(default)]
    trace_id: Foreign,
    #[serde(default)]
    trace_name: Foreign,
    #[serde(default)]
    span_name: Foreign,
    #[serde(default)]
    generation_name: Foreign,
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

/// A top-level member's value, when it has the expected shape.
fn parse<'a, T: Deserialize<'a>>(
    body: &'a [u8],
    range: Option<std::ops::Range<usize>>,
) -> Option<T> {
    serde_json::from_slice(&body[range?]).ok()
}

/// The body's native `user` field, as a user id.
pub(crate) fn native_user(body: &[u8], scan: &Scan, sources: &Sources) -> RequestMetadata {
    let user = sources
        .native_user
        .then(|| scan.members().user.clone())
        .flatten()
        .and_then(|r| parse::<Foreign>(body, Some(r)))
        .and_then(Foreign::text);
    RequestMetadata {
        user_id: user,
        ..RequestMetadata::default()
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

/// Portkey's metadata header: a JSON object whose `_user` is the user id.
fn portkey_metadata(raw: &str) -> Result<RequestMetadata, MetadataError> {
    let mut meta = RequestMetadata::default();
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(raw) else {
        return Err(MetadataError::new(
            ErrorKind::InvalidHeader,
            "x-portkey-metadata",
            "header `x-portkey-metadata` must be a JSON object",
        ));
    };
    for (key, value) in fields {
        if key == "_user" {
            meta.user_id = match value {
                Value::String(user) => Some(user),
                _ => None,
            };
        } else {
            meta.extra.insert(key, value);
        }
    }
    Ok(meta)
}
