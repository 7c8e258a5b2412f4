//! The other gateways' headers: which they are, reading them in one pass, removing them, and
//! Portkey's JSON object.

use super::foreign;
use super::Sources;
use crate::client::Field;
use crate::codec;
use crate::error::MetadataError;
use crate::headers::{Origins, TagsRead};
use crate::{Limits, RequestMetadata};
use http::header::{HeaderMap, HeaderName};
use serde::de::IgnoredAny;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// A header another gateway reads metadata from, as recognized when its source is on.
#[derive(Clone, Copy)]
enum GatewayHeader<'a> {
    HeliconeUser,
    HeliconeSession,
    /// `Helicone-Property-Tags`: tags, comma-separated, as this crate's client writes them.
    HeliconeTags,
    /// `Helicone-Property-<Key>`, `Helicone-Session-Path`, `Helicone-Session-Name`: an `extra` key.
    HeliconeExtra(&'a str),
    LiteLlmTrace,
    LiteLlmUser,
    LiteLlmTags,
    /// `x-litellm-spend-logs-metadata`: a JSON object whose keys are `extra` keys.
    LiteLlmSpendLogs,
    Portkey,
    PortkeyTrace,
    OpenRouterSession,
}

/// The other gateways' header names but `Helicone-Property-<Key>`, with what each carries: with the
/// property prefix, the one list used for reading and removing them alike.
const FIXED: [(&str, GatewayHeader<'static>); 12] = [
    ("helicone-user-id", GatewayHeader::HeliconeUser),
    ("helicone-session-id", GatewayHeader::HeliconeSession),
    (HELICONE_TAGS, GatewayHeader::HeliconeTags),
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
    (LITELLM_TAGS, GatewayHeader::LiteLlmTags),
    (SPEND_LOGS, GatewayHeader::LiteLlmSpendLogs),
    (PORTKEY, GatewayHeader::Portkey),
    ("x-portkey-trace-id", GatewayHeader::PortkeyTrace),
    ("x-session-id", GatewayHeader::OpenRouterSession),
];

const PROPERTY: &str = "helicone-property-";
const SPEND_LOGS: &str = "x-litellm-spend-logs-metadata";
const LITELLM_TAGS: &str = "x-litellm-tags";
const HELICONE_TAGS: &str = "helicone-property-tags";
const PORTKEY: &str = "x-portkey-metadata";

impl<'a> GatewayHeader<'a> {
    /// What header `name` carries when its source is on, with its place in [`FIXED`] (`None` for a
    /// Helicone property).
    fn of(name: &'a str, sources: &Sources) -> Option<(Self, Option<usize>)> {
        let (header, fixed) = match FIXED.iter().position(|(fixed, _)| *fixed == name) {
            Some(i) => (FIXED[i].1, Some(i)),
            None => (Self::HeliconeExtra(name.strip_prefix(PROPERTY)?), None),
        };
        let on = match header {
            Self::HeliconeUser
            | Self::HeliconeSession
            | Self::HeliconeTags
            | Self::HeliconeExtra(_) => sources.helicone,
            Self::LiteLlmTrace | Self::LiteLlmUser | Self::LiteLlmTags | Self::LiteLlmSpendLogs => {
                sources.litellm
            }
            Self::Portkey | Self::PortkeyTrace => sources.portkey,
            Self::OpenRouterSession => sources.openrouter,
        };
        on.then_some((header, fixed))
    }
}

/// The field gateway header `name` (lowercase) carries, from the list the server reads them by:
/// `Some(None)` for Portkey's object, which carries several; `None` for a header no gateway reads
/// metadata from.
pub(crate) fn gateway_field(name: &str) -> Option<Option<Field>> {
    use GatewayHeader::*;
    let header = match FIXED.iter().find(|(fixed, _)| *fixed == name) {
        Some((_, header)) => *header,
        None => HeliconeExtra(name.strip_prefix(PROPERTY)?),
    };
    Some(match header {
        HeliconeUser | LiteLlmUser => Some(Field::UserId),
        HeliconeSession | LiteLlmTrace | PortkeyTrace | OpenRouterSession => Some(Field::TraceId),
        HeliconeTags | LiteLlmTags => Some(Field::Tags),
        HeliconeExtra(_) | LiteLlmSpendLogs => Some(Field::Extra),
        Portkey => None,
    })
}

/// The headers [`from_headers`] read, for removing them: fixed names by their place in [`FIXED`]
/// (no copy of the name), Helicone properties by name, kept only when they are to be removed. With
/// the `extra` keys that header names gave.
struct Read {
    strip: bool,
    fixed: u16,
    properties: Vec<HeaderName>,
    named: Vec<String>,
    unread: Vec<&'static str>,
}

/// Warns, in the request's span, that another gateway's JSON metadata header held no JSON object
/// and was not read. The request goes on, as it would through that gateway, which passes over what
/// it cannot parse; the header is removed all the same.
pub(crate) fn warn_unread(header: &'static str) {
    tracing::warn!(
        header,
        "another gateway's metadata header is not read: it holds no JSON object"
    );
}

/// What [`take_headers`] read.
pub(crate) struct Taken {
    pub(crate) meta: RequestMetadata,
    /// The headers that carried the ids, and a tag too long.
    pub(crate) origins: Origins,
    /// The `extra` keys that a header's name gave (Helicone's), lowercased as names arrive.
    pub(crate) named: Vec<String>,
    /// The JSON metadata headers that were not read: they held no JSON object.
    pub(crate) unread: Vec<&'static str>,
}

/// Reads the other gateways' headers and, when `strip`, removes them: the pass that reads them
/// notes which to remove (also a JSON metadata header that held no object, which is not read).
pub(crate) fn take_headers(
    headers: &mut HeaderMap,
    sources: &Sources,
    limits: &Limits,
    strip: bool,
) -> Result<Taken, MetadataError> {
    let mut read = Read {
        strip,
        fixed: 0,
        properties: Vec::new(),
        named: Vec::new(),
        unread: Vec::new(),
    };
    let (meta, ids) = from_headers(headers, sources, limits, &mut read)?;
    if strip {
        for (i, (name, _)) in FIXED.iter().enumerate() {
            if read.fixed & (1 << i) != 0 {
                headers.remove(*name);
            }
        }
        for name in read.properties {
            headers.remove(name);
        }
        // A name spelled with underscores is the header it stands for to CGI-style servers: it is
        // removed too (not read: nothing after the strip reads it).
        let spelled_otherwise: Vec<HeaderName> = headers
            .keys()
            .filter(|name| {
                crate::headers::dashed(name.as_str())
                    .is_some_and(|dashed| GatewayHeader::of(&dashed, sources).is_some())
            })
            .cloned()
            .collect();
        for name in spelled_otherwise {
            headers.remove(name);
        }
    }
    Ok(Taken {
        meta,
        origins: ids,
        named: read.named,
        unread: read.unread,
    })
}

/// The other gateways' headers, in precedence order: Helicone, LiteLLM, Portkey, OpenRouter. What
/// was read is noted in `read`.
fn from_headers(
    headers: &HeaderMap,
    sources: &Sources,
    limits: &Limits,
    read: &mut Read,
) -> Result<(RequestMetadata, Origins), MetadataError> {
    let mut meta = RequestMetadata::default();
    if !sources.foreign_headers() {
        return Ok((meta, Origins::default()));
    }
    // One pass over the headers. Ids are noted and copied once the pass is over, only the winner
    // of each; a repeated header keeps its last value, as a proxy that keeps the last value would.
    // Helicone's tags and properties (the first-ranked `extra`) go straight in; LiteLLM's tags
    // follow once the pass is over.
    let mut helicone = Ids::default();
    let mut litellm = Ids::default();
    let mut openrouter_session = None;
    let mut spend_logs = None;
    let mut portkey = None;
    let mut portkey_trace = None;
    let mut tags = TagsRead::default();
    for (name, on) in [
        (HELICONE_TAGS, sources.helicone),
        (LITELLM_TAGS, sources.litellm),
    ] {
        if on {
            crate::headers::check_own_tags(name, crate::headers::lines(headers, name), limits)?;
        }
    }
    // Tags are united in the sources' order, whatever order their headers come in: LiteLLM's are
    // read once the pass is over.
    let mut litellm_tags = false;
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
        let text = crate::headers::text(value);
        if text.is_empty() {
            // Carries nothing (and is removed all the same).
            continue;
        }
        match header {
            GatewayHeader::HeliconeUser => helicone.user = Some((text, fixed_name(fixed))),
            GatewayHeader::HeliconeSession => helicone.trace = Some((text, fixed_name(fixed))),
            GatewayHeader::HeliconeTags => {
                let name = fixed_name(fixed);
                crate::headers::add_tags(&mut meta.tags, &text, name, &mut tags, limits)?
            }
            GatewayHeader::LiteLlmTags => litellm_tags = true,
            // `Helicone-Property-` alone names no key (like `X-Requesty-` alone).
            GatewayHeader::HeliconeExtra("") => {}
            GatewayHeader::HeliconeExtra(key) => {
                if meta.extra.insert(key.to_owned(), text.into()).is_none() {
                    read.named.push(key.to_owned());
                }
            }
            GatewayHeader::LiteLlmTrace => litellm.trace = Some((text, fixed_name(fixed))),
            GatewayHeader::LiteLlmUser => litellm.user = Some((text, fixed_name(fixed))),
            GatewayHeader::LiteLlmSpendLogs => spend_logs = Some(text),
            GatewayHeader::Portkey => portkey = Some(text),
            GatewayHeader::PortkeyTrace => portkey_trace = Some((text, fixed_name(fixed))),
            GatewayHeader::OpenRouterSession => {
                openrouter_session = Some((text, fixed_name(fixed)))
            }
        }
    }
    if litellm_tags {
        for value in headers.get_all(LITELLM_TAGS) {
            let text = crate::headers::text(value);
            crate::headers::add_tags(&mut meta.tags, &text, LITELLM_TAGS, &mut tags, limits)?;
        }
    }
    let user = helicone.user.or(litellm.user);
    let trace = helicone
        .trace
        .or(litellm.trace)
        .or(portkey_trace)
        .or(openrouter_session);
    let mut origins = Origins {
        user: user.as_ref().map(|&(_, name)| name),
        trace: trace.as_ref().map(|&(_, name)| name),
        long_tag: None,
        referer: false,
        title: false,
    };
    meta.user_id = user.map(|(text, _)| text.into_owned());
    meta.trace_id = trace.map(|(text, _)| text.into_owned());
    // One that is not a JSON object is not read (and is removed all the same), as LiteLLM and
    // Portkey themselves pass over it: the request goes on, with a warning in its span.
    if let Some(raw) = spend_logs {
        if json_object(&raw, None, &mut meta).is_none() {
            read.unread.push(SPEND_LOGS);
        }
    }
    if let Some(raw) = portkey {
        // Tags travel as a comma-separated `tags` string in Portkey's metadata, as this crate's
        // client writes them.
        match json_object(&raw, Some("_user"), &mut meta) {
            Some(Some(portkey_tags)) => {
                crate::headers::check_own_tags(PORTKEY, [portkey_tags.as_str()], limits)?;
                crate::headers::add_tags(
                    &mut meta.tags,
                    &portkey_tags,
                    PORTKEY,
                    &mut tags,
                    limits,
                )?;
            }
            Some(None) => {}
            None => read.unread.push(PORTKEY),
        }
        if origins.user.is_none() && meta.user_id.is_some() {
            origins.user = Some(PORTKEY);
        }
    }
    origins.long_tag = tags.long;
    Ok((meta, origins))
}

/// The name of the header at `fixed` in [`FIXED`], for the id and tags headers, which are all
/// there.
fn fixed_name(fixed: Option<usize>) -> &'static str {
    fixed
        .and_then(|i| FIXED.get(i))
        .map_or("", |(name, _)| name)
}

/// The ids one dialect's headers carry, each with its header's name.
#[derive(Default)]
struct Ids<'a> {
    user: Option<(Cow<'a, str>, &'static str)>,
    trace: Option<(Cow<'a, str>, &'static str)>,
}

/// A metadata header holding a JSON object (LiteLLM's spend-logs metadata, Portkey's metadata), read
/// into `extra` key by key; the key `user_key`, when given, is the user id (an empty one is none),
/// and then a string `tags` is the tags, returned. It ranks below the dialects already in `meta`, so
/// it only fills what they left empty. Every value is checked as a JSON parser would; values that
/// cannot win are not built, and a repeated key keeps its last value.
fn json_object(
    raw: &str,
    user_key: Option<&str>,
    meta: &mut RequestMetadata,
) -> Option<Option<String>> {
    let mut user = None;
    let mut tags = None;
    let mut fields = Map::new();
    let mut valid = true;
    let object = codec::object_members(raw, |name, value| {
        let is_user = user_key == Some(name);
        let is_tags = user_key.is_some() && name == "tags";
        let checked = if is_user && meta.user_id.is_none() {
            foreign::checked_text(value)
                .map(|found| user = found.filter(|user| !user.is_empty()))
                .is_ok()
        } else if is_user || (meta.extra.contains_key(name) && !is_tags) {
            // A source above Portkey's already gave it: checked, not built.
            serde_json::from_str::<IgnoredAny>(value).is_ok()
        } else {
            match serde_json::from_str::<Value>(value) {
                // A string `tags` is the tags; any other value under that name is an `extra` key
                // like the rest (one that a source above already gave stays theirs). Repeated, the
                // last is the one value a JSON parser keeps: it is one or the other.
                Ok(Value::String(text)) if is_tags => {
                    tags = Some(text);
                    fields.remove(name);
                    true
                }
                Ok(value) => {
                    if is_tags {
                        tags = None;
                    }
                    fields.insert(name.to_owned(), value);
                    true
                }
                Err(_) => false,
            }
        };
        valid &= checked;
    });
    if object.is_none() || !valid {
        return None;
    }
    if meta.user_id.is_none() {
        meta.user_id = user;
    }
    for (key, value) in fields {
        meta.extra.entry(key).or_insert(value);
    }
    Some(tags)
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
        let Taken {
            meta, origins: ids, ..
        } = take_headers(&mut map, &Sources::all(), &Limits::default(), true).unwrap();
        assert_eq!(meta.user_id.as_deref(), Some("lite-user"));
        assert_eq!(meta.trace_id.as_deref(), Some("lite-trace"));
        // Errors about an id name the header it came from.
        assert_eq!(ids.user, Some("x-litellm-end-user-id"));
        assert_eq!(ids.trace, Some("x-litellm-trace-id"));
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
        let Taken {
            meta, origins: ids, ..
        } = take_headers(&mut map, &Sources::all(), &Limits::default(), false).unwrap();
        assert_eq!(meta.user_id.as_deref(), Some("pk-user"));
        assert_eq!(meta.trace_id.as_deref(), Some("or-session"));
        assert_eq!(ids.user, Some("x-portkey-metadata"));
        assert_eq!(ids.trace, Some("x-session-id"));
        assert_eq!(map.len(), 2, "not stripped when asked not to");
    }

    #[test]
    fn litellm_spend_logs_metadata_fills_extra_below_helicone_and_above_portkey() {
        let mut map = headers(&[
            ("x-portkey-metadata", r#"{"team":"pk","env":"pk"}"#),
            (SPEND_LOGS, r#"{"team":"lite","_user":"not-a-user"}"#),
            ("helicone-property-team", "helicone"),
            ("helicone-property-", "no key"),
        ]);
        let meta = take_headers(&mut map, &Sources::all(), &Limits::default(), true)
            .unwrap()
            .meta;
        assert_eq!(meta.extra["team"], "helicone");
        assert_eq!(meta.extra["_user"], "not-a-user");
        assert_eq!(meta.extra["env"], "pk");
        assert_eq!(meta.extra.len(), 3, "an empty property name is no key");
        assert_eq!(meta.user_id, None);
        assert!(map.is_empty());
        // One that is not an object is not read, and goes all the same.
        let mut map = headers(&[
            (SPEND_LOGS, "[1]"),
            ("x-portkey-metadata", r#"{"env":"pk"}"#),
        ]);
        let taken = take_headers(&mut map, &Sources::all(), &Limits::default(), true).unwrap();
        assert_eq!(taken.unread, [SPEND_LOGS]);
        assert_eq!(taken.meta.extra["env"], "pk");
        assert!(map.is_empty());
    }

    #[test]
    fn portkey_object_is_read_like_a_json_parser_would() {
        let read = |raw: &'static str| {
            let mut map = headers(&[("x-portkey-metadata", raw)]);
            let taken = take_headers(&mut map, &Sources::all(), &Limits::default(), true).unwrap();
            (taken.meta, taken.unread)
        };
        // Escaped keys decode; a repeated key keeps its last value; `_user` must be a string.
        let (meta, _) = read(r#"{"\u0065nv":"a","env":"b","_user":1,"n":{"x":[1]}}"#);
        assert_eq!(meta.extra["env"], "b");
        assert_eq!(meta.extra["n"], serde_json::json!({"x": [1]}));
        assert_eq!(meta.user_id, None);
        // A repeated `tags` keeps its last value too, whichever of the tags or an `extra` key that
        // makes it (Portkey's parser sees that value alone).
        let (meta, _) = read(r#"{"tags":"a,b","tags":["c"]}"#);
        assert_eq!(meta.tags, Vec::<String>::new());
        assert_eq!(meta.extra["tags"], serde_json::json!(["c"]));
        let (meta, _) = read(r#"{"tags":["c"],"tags":"a,b"}"#);
        assert_eq!(meta.tags, ["a", "b"]);
        assert_eq!(meta.extra.get("tags"), None, "{meta:?}");
        for bad in [
            r#"["a"]"#,
            r#"{"a":1} x"#,
            r#"{"a":"#,
            "null",
            r#"{"a":[1,]}"#,
            r#"{"_user":{"x":}}"#,
        ] {
            // Not read at all, as Portkey's gateway passes over what it cannot parse.
            let (meta, unread) = read(bad);
            assert_eq!(unread, ["x-portkey-metadata"], "{bad}");
            assert!(meta.is_empty(), "{bad}: {meta:?}");
        }
    }
}
