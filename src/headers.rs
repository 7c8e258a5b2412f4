//! Metadata carried in headers: `X-Requesty-*`, `HTTP-Referer` and `X-Title`.

use crate::error::{ErrorKind, MetadataError, Size};
use crate::{Limits, RequestMetadata};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use std::borrow::Cow;

/// The prefix of every Requesty analytics header, as `http` stores names: lowercase.
pub(crate) const PREFIX: &str = "x-requesty-";
const USER_ID: &str = "x-requesty-user-id";
const TAGS: &str = "x-requesty-tags";
const TRACE_ID: &str = "x-requesty-trace-id";
const REFERER: &str = "http-referer";
const TITLE: &str = "x-title";

/// Reads the metadata headers. Names match case-insensitively (`http` lowercases them); a repeated
/// `X-Requesty-Trace-Id`, `-User-Id` or extra header keeps its last value, repeated `X-Requesty-Tags`
/// add up. An empty value carries nothing.
///
/// With the metadata, the header of a tag longer than the limit, if any, for the check of the whole
/// metadata to name.
pub(crate) fn read(
    headers: &HeaderMap,
    limits: &Limits,
) -> Result<(RequestMetadata, Option<&'static str>), MetadataError> {
    read_with(headers, limits, true)
}

/// A lenient reading of the metadata headers: [`read`] within [`own_limits`]. Too many tags are
/// still an error for all of them. For a client reading the headers its caller set.
pub(crate) fn read_own(
    headers: &HeaderMap,
    limits: &Limits,
) -> Result<RequestMetadata, MetadataError> {
    read_with(headers, &own_limits(limits), true).map(|(meta, _)| meta)
}

/// Merges `later` over `metadata` as [`RequestMetadata::merge`] does, for the client, whose sources
/// rank in that order: an `extra` key of `metadata` that names the same `X-Requesty-<Name>` header
/// as one of `later`'s in another spelling (`Team`, or `team_name` for `X-Requesty-Team-Name`:
/// header names have no case, and CGI-style servers read `_` as `-`) is the same field, and goes,
/// so that the later value is the one sent, in the header form (where of two keys naming one
/// header the first would keep it) and in the body alike.
pub(crate) fn merge_over(metadata: &mut RequestMetadata, later: RequestMetadata) {
    if !later.extra.is_empty() {
        metadata.extra.retain(|key, _| {
            later.extra.contains_key(key) || !later.extra.keys().any(|l| same_header(key, l))
        });
    }
    metadata.merge(later);
}

/// Whether two `extra` keys name the same header as [`header_field`] reads names, compared without
/// building either: merging runs on every call.
fn same_header(a: &str, b: &str) -> bool {
    let dashed = |c: u8| {
        if c == b'_' {
            b'-'
        } else {
            c.to_ascii_lowercase()
        }
    };
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| dashed(x) == dashed(y))
}

/// The header an `extra` key names, as CGI-style servers read header names: lowercase, with `_`
/// as `-`.
fn header_field(key: &str) -> String {
    key.to_ascii_lowercase().replace('_', "-")
}

/// What the metadata headers of a request refused as they were read say, for its span and report:
/// all but the tags (what got it refused, or beside it). No limit applies: the request goes
/// nowhere.
pub(crate) fn read_for_report(headers: &HeaderMap) -> RequestMetadata {
    read_with(headers, &Limits::default(), false)
        .map(|(meta, _)| meta)
        .unwrap_or_default()
}

/// [`read`], reading the tags or not.
fn read_with(
    headers: &HeaderMap,
    limits: &Limits,
    with_tags: bool,
) -> Result<(RequestMetadata, Option<&'static str>), MetadataError> {
    let mut meta = RequestMetadata::default();
    let mut tags = TagsRead::default();
    if with_tags {
        check_own_tags(TAGS, lines(headers, TAGS), limits)?;
    }
    for (name, value) in headers {
        let name = name.as_str();
        let slot = if let Some(field) = name.strip_prefix(PREFIX) {
            let text = text(value);
            match field {
                _ if text.is_empty() => {}
                "" => {}
                "trace-id" => meta.trace_id = Some(text.into_owned()),
                "user-id" => meta.user_id = Some(text.into_owned()),
                "tags" if with_tags => add_tags(&mut meta.tags, &text, TAGS, &mut tags, limits)?,
                "tags" => {}
                other => {
                    meta.extra
                        .insert(other.to_owned(), Value::String(text.into_owned()));
                }
            }
            continue;
        } else if name == REFERER {
            &mut meta.origin_referer
        } else if name == TITLE {
            &mut meta.origin_title
        } else {
            continue;
        };
        let text = text(value);
        if !text.is_empty() {
            *slot = Some(text.into_owned());
        }
    }
    Ok((meta, tags.long))
}

/// Warns, in the current span, that metadata headers already on an outgoing request could not be
/// read (too many tags): what the client side writes replaces them.
pub(crate) fn warn_unreadable(error: &MetadataError) {
    tracing::warn!(%error, "metadata headers already on the request that cannot be read are not sent");
}

/// The limits a client reads the caller's own metadata headers with: `limits`, with room for 16
/// times as many tags. Those are the caller's own, so a few over the limit are sent on (with a
/// warning) for the gateway to judge; thousands make the headers unreadable, and they are replaced,
/// before deduplicating them costs much.
fn own_limits(limits: &Limits) -> Limits {
    limits.max_tags(limits.tags().saturating_mul(16))
}

/// What reading a request's tags headers has found so far: the first header with a tag longer than
/// the limit.
#[derive(Default)]
pub(crate) struct TagsRead {
    pub(crate) long: Option<&'static str>,
}

/// Refuses tags header `header` when its own tags, over all its `lines`, pass the limit: the error
/// names it. Counted no further than one past the limit, and before any is read, so that the
/// header is named whatever was read before it.
pub(crate) fn check_own_tags(
    header: &str,
    lines: impl IntoIterator<Item = impl AsRef<str>>,
    limits: &Limits,
) -> Result<(), MetadataError> {
    let limit = limits.tags();
    let mut own = 0;
    for line in lines {
        own += line
            .as_ref()
            .split(',')
            .filter(|tag| !tag.trim().is_empty())
            .take(limit.saturating_add(1) - own)
            .count();
        if own > limit {
            break;
        }
    }
    if own > limit {
        return Err(MetadataError::new(
            ErrorKind::TooMany,
            header,
            format!("header `{header}` carries more tags than the limit of {limit}"),
        ));
    }
    Ok(())
}

/// The lines of header `name`, as text ([`text`]).
pub(crate) fn lines<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = Cow<'a, str>> {
    headers.get_all(name).into_iter().map(text)
}

/// Adds the comma-separated tags of `header`'s value `text` to `tags`, leaving out empty ones and
/// repeats. Each tags header's own tags, repeats included, are bounded by [`check_own_tags`] before
/// any is read (so a request with thousands of them is refused before deduplicating them costs
/// much); across headers the tags are counted once each, since one tag in two gateways' forms is
/// one tag, and this error is the headers' together (`requesty.tags`). A tag longer than the limit
/// is noted in `read`, for the check of the whole metadata to name.
pub(crate) fn add_tags(
    tags: &mut Vec<String>,
    text: &str,
    header: &'static str,
    read: &mut TagsRead,
    limits: &Limits,
) -> Result<(), MetadataError> {
    for tag in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let new = !tags.iter().any(|t| t == tag);
        if new && tags.len() >= limits.tags() {
            let limit = limits.tags();
            return Err(MetadataError::new(
                ErrorKind::TooMany,
                "requesty.tags",
                format!(
                    "the tags headers, `{header}` the last, together carry more tags than the \
                     limit of {limit}"
                ),
            ));
        }
        if tag.len() > limits.tag_len() {
            read.long.get_or_insert(header);
        }
        if new {
            tags.push(tag.to_owned());
        }
    }
    Ok(())
}

/// The headers that carried what limits on single values judge in a request's header metadata: its
/// ids, a tag too long and the origin fields. For errors that name them.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Origins {
    pub(crate) user: Option<&'static str>,
    pub(crate) trace: Option<&'static str>,
    pub(crate) long_tag: Option<&'static str>,
    /// Whether `HTTP-Referer` and `X-Title` gave the origin fields.
    pub(crate) referer: bool,
    pub(crate) title: bool,
}

impl Origins {
    /// The `X-Requesty-*` headers' (`requesty`, with `long_tag` its own) over `others`', as they
    /// rank.
    pub(crate) fn over(
        requesty: &RequestMetadata,
        long_tag: Option<&'static str>,
        others: Origins,
    ) -> Origins {
        Origins {
            user: requesty.user_id.as_ref().map(|_| USER_ID).or(others.user),
            trace: requesty
                .trace_id
                .as_ref()
                .map(|_| TRACE_ID)
                .or(others.trace),
            long_tag: long_tag.or(others.long_tag),
            referer: requesty.origin_referer.is_some() || others.referer,
            title: requesty.origin_title.is_some() || others.title,
        }
    }

    /// Checks the ids and tags of `merged`, the request's whole metadata, naming the header a value
    /// too long came from. Only a header can carry one this far (the body's member is checked as it
    /// is parsed, the other sources skip what does not fit), and only the id that won is checked:
    /// a header another source outranks is no one's error. Tags are united, so each one counts.
    pub(crate) fn check(
        self,
        merged: &RequestMetadata,
        limits: &Limits,
    ) -> Result<(), MetadataError> {
        for (id, header, what) in [
            (&merged.user_id, self.user, "the user id"),
            (&merged.trace_id, self.trace, "the trace id"),
        ] {
            if let (Some(id), Some(header)) = (id, header) {
                if id.len() > limits.id_len() {
                    return Err(too_long(what, header, id.len(), limits.id_len()));
                }
            }
        }
        if let Some(header) = self.long_tag {
            if let Some(tag) = merged.tags.iter().find(|t| t.len() > limits.tag_len()) {
                return Err(too_long("a tag", header, tag.len(), limits.tag_len()));
            }
        }
        // The body's origin fields, which outrank the headers, were held to the same limit.
        for (origin, read, header, what) in [
            (&merged.origin_referer, self.referer, REFERER, "the referer"),
            (&merged.origin_title, self.title, TITLE, "the title"),
        ] {
            match origin {
                Some(text) if read && text.len() > limits.origin_len() => {
                    return Err(too_long(what, header, text.len(), limits.origin_len()))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The error for `what`, carried by `header`, being over `limit` bytes.
fn too_long(what: &str, header: &str, len: usize, limit: usize) -> MetadataError {
    MetadataError::new(
        ErrorKind::TooLong,
        header,
        format!(
            "{what} in header `{header}` is {}; the limit is {}",
            Size(len),
            Size(limit)
        ),
    )
}

/// Writes `meta` as headers, replacing any `X-Requesty-*` already there: `X-Requesty-Trace-Id`,
/// `X-Requesty-User-Id`, `X-Requesty-Tags` (comma-joined), `X-Requesty-<Name>` for each string
/// `extra` value, and `HTTP-Referer` / `X-Title` where the request's own say otherwise (or it has
/// none).
///
/// Every value is checked so that no input can start a new header line, and so that what arrives is
/// what was sent: what cannot be carried (control characters, whitespace at either end, an empty
/// value, a tag with a comma, an `extra` name that is not a header token, that would read back as a
/// core field (also to a server that reads `_` as `-`) or that names the header of a key before it, a non-string `extra` value) is left
/// out, with a warning. Fields this crate does not
/// know ([`RequestMetadata::other`]) have no header form.
pub(crate) fn write(meta: &RequestMetadata, headers: &mut HeaderMap) {
    remove(headers);
    if let Some(trace_id) = &meta.trace_id {
        put(headers, "x-requesty-trace-id", trace_id);
    }
    if let Some(user_id) = &meta.user_id {
        put(headers, "x-requesty-user-id", user_id);
    }
    let (carried, split) = header_tags(&meta.tags);
    if !split.is_empty() {
        tracing::warn!(tags = ?split, "tags left out: a comma, edge whitespace or a control character cannot travel in X-Requesty-Tags");
    }
    if !carried.is_empty() {
        put(headers, "x-requesty-tags", &carried.join(","));
    }
    // The fields written, as a CGI-style server reads their names: lowercase, `_` as `-`.
    let mut written: Vec<String> = Vec::new();
    for (key, value) in &meta.extra {
        let name = format!("{PREFIX}{}", key.to_ascii_lowercase());
        // Read with dashes, as CGI-style servers read a name spelled with underscores.
        let field = header_field(key);
        match value.as_str() {
            _ if matches!(field.as_str(), "trace-id" | "user-id" | "tags" | "") => {
                tracing::warn!(key = %key, "extra field left out: its header would read back as a core field")
            }
            // Header names have no case, and CGI-style servers read `_` as `-`: the key written
            // first keeps the header.
            Some(_) if written.contains(&field) => {
                tracing::warn!(key = %key, "extra field left out: another key differing only in case or in `_` for `-` names the same header")
            }
            Some(text) => {
                put(headers, &name, text);
                written.push(field);
            }
            None => {
                tracing::warn!(key = %key, "extra field left out: only string values travel in headers")
            }
        }
    }
    // The request's own origin headers were read into `meta` beside the other sources: each stays
    // as it is, bytes and all, unless a source above it (a member in the body) says otherwise.
    for (name, value) in [(REFERER, &meta.origin_referer), (TITLE, &meta.origin_title)] {
        let Some(value) = value else { continue };
        let own = headers.get_all(name).iter().next_back().map(text);
        if own.as_deref() != Some(value.as_str()) {
            put(headers, name, value);
        }
    }
}

/// Sets header `name` to `value`, or, when that cannot carry `value` unchanged, leaves it out with a
/// warning: a value that is not a valid header value (no input can start a new header line), and
/// one that would be read back otherwise (read back, a value is trimmed, and an empty one is
/// nothing). Callers remove what a header of that name held before, once, ahead of their writes.
/// Whether it was set.
pub(crate) fn put(headers: &mut HeaderMap, name: &str, value: &str) -> bool {
    put_encoded(headers, name, value, value.as_bytes())
}

/// `text` in ISO-8859-1 (Latin-1), one byte a character, as [`text`] reads a value that is not
/// UTF-8; `None` when a character is past U+00FF.
pub(crate) fn latin1(text: &str) -> Option<Vec<u8>> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect()
}

/// [`put`] with `value` written as `bytes` (its UTF-8, or its ISO-8859-1 for a reader that takes a
/// header's bytes so): checked as the text it is, sent as those bytes.
pub(crate) fn put_encoded(headers: &mut HeaderMap, name: &str, value: &str, bytes: &[u8]) -> bool {
    let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
        tracing::warn!(header = name, "metadata left out: not a valid header name");
        return false;
    };
    if value.is_empty() || value.trim() != value {
        tracing::warn!(
            header = name,
            "metadata left out: an empty value, or one with whitespace at an edge, does not survive a header"
        );
        return false;
    }
    match HeaderValue::from_bytes(bytes) {
        Ok(value) => {
            headers.insert(header, value);
            true
        }
        Err(_) => {
            tracing::warn!(header = name, "metadata left out: not a valid header value");
            false
        }
    }
}

/// The tags that can travel in one comma-separated header, and those that cannot (a comma, edge
/// whitespace, nothing at all, or a byte no header value may hold): each is left out on its own, so
/// one odd tag does not take the others with it.
pub(crate) fn header_tags(tags: &[String]) -> (Vec<&str>, Vec<&str>) {
    tags.iter().map(String::as_str).partition(|t| {
        !t.contains(',')
            && t.trim() == *t
            && !t.is_empty()
            && HeaderValue::from_bytes(t.as_bytes()).is_ok()
    })
}

/// Removes the origin headers (`HTTP-Referer`, `X-Title`), also spelled with underscores (see
/// [`dashed`]), as CGI-style servers read `x_title` as `X-Title`.
pub(crate) fn remove_origin(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let dashed = dashed(name.as_str());
            let name = dashed.as_deref().unwrap_or(name.as_str());
            name == REFERER || name == TITLE
        })
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// Removes every `X-Requesty-*` header, with all its values, also one spelled with underscores
/// (see [`dashed`]); the origin headers stay (they are ordinary HTTP).
pub(crate) fn remove(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            name.starts_with(PREFIX) || dashed(name).is_some_and(|name| name.starts_with(PREFIX))
        })
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// A header name spelled with underscores, with dashes instead: CGI-style servers (WSGI's environ,
/// Rack, PHP, nginx with `underscores_in_headers`) read `x_requesty_user_id` as
/// `X-Requesty-User-Id`, so such a name is removed with the headers it stands for. `None` for a name
/// without underscores.
pub(crate) fn dashed(name: &str) -> Option<String> {
    name.contains('_').then(|| name.replace('_', "-"))
}

/// A header's value as trimmed text: UTF-8 where it is, else ISO-8859-1, byte for character. That
/// is how HTTP historically read bytes past ASCII, and how Python's `http.client` (and so
/// `requests`) and the Fetch API's clients send a character up to U+00FF (`Montr\xe9al`): such a
/// value is the client's text, no reason to refuse its request. Trimmed as the text it decodes to (0xA0 is
/// a no-break space).
pub(crate) fn text(value: &HeaderValue) -> Cow<'_, str> {
    match std::str::from_utf8(value.as_bytes()) {
        Ok(text) => Cow::Borrowed(text.trim()),
        Err(_) => {
            let text: String = value.as_bytes().iter().map(|&b| char::from(b)).collect();
            Cow::Owned(text.trim().to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_core_extra_and_origin_headers() {
        let mut h = HeaderMap::new();
        h.insert("X-Requesty-Trace-Id", HeaderValue::from_static("t1"));
        h.insert("x-requesty-user-id", HeaderValue::from_static("u1"));
        h.append("X-REQUESTY-TAGS", HeaderValue::from_static("a, b,,a"));
        h.append("x-requesty-tags", HeaderValue::from_static("c"));
        h.insert("X-Requesty-Team", HeaderValue::from_static("platform"));
        h.insert(
            "HTTP-Referer",
            HeaderValue::from_static("https://app.example"),
        );
        h.insert("X-Title", HeaderValue::from_static("My App"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        let meta = read(&h, &Limits::default()).unwrap().0;
        assert_eq!(meta.trace_id.as_deref(), Some("t1"));
        assert_eq!(meta.user_id.as_deref(), Some("u1"));
        assert_eq!(meta.tags, ["a", "b", "c"]);
        assert_eq!(meta.extra["team"], "platform");
        assert_eq!(meta.origin_referer.as_deref(), Some("https://app.example"));
        assert_eq!(meta.origin_title.as_deref(), Some("My App"));

        remove(&mut h);
        assert!(h.keys().all(|k| !k.as_str().starts_with(PREFIX)));
        assert!(h.contains_key("x-title") && h.contains_key("content-type"));
    }

    #[test]
    fn an_origin_header_that_is_not_utf8_is_read_as_latin1() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-title",
            HeaderValue::from_bytes(b" Caf\xe9 App ").unwrap(),
        );
        h.insert(
            "http-referer",
            HeaderValue::from_bytes(b"https://\xff.example").unwrap(),
        );
        let meta = read(&h, &Limits::default()).unwrap().0;
        assert_eq!(meta.origin_title.as_deref(), Some("Caf\u{e9} App"));
        assert_eq!(
            meta.origin_referer.as_deref(),
            Some("https://\u{ff}.example")
        );
    }

    #[test]
    fn an_origin_header_read_as_latin1_is_trimmed_as_utf8_text_is() {
        // 0xA0 is a no-break space in ISO-8859-1, trimmed like U+00A0 in UTF-8 text.
        let mut h = HeaderMap::new();
        h.insert("x-title", HeaderValue::from_bytes(b"\xa0App\xa0").unwrap());
        h.insert("http-referer", HeaderValue::from_bytes(b"\xa0").unwrap());
        let meta = read(&h, &Limits::default()).unwrap().0;
        assert_eq!(meta.origin_title.as_deref(), Some("App"));
        assert_eq!(meta.origin_referer, None);
        // So what was read can be written onward as a header.
        let mut onward = HeaderMap::new();
        write(&meta, &mut onward);
        assert_eq!(onward["x-title"], "App");
    }

    #[test]
    fn written_headers_read_back_the_same() {
        let meta = RequestMetadata::new()
            .trace_id("t")
            .user_id("u")
            .tag("a")
            .tag("b c")
            .extra("team", "platform")
            .extra("Region", "eu")
            .origin_title("App");
        let mut h = HeaderMap::new();
        h.insert("x-requesty-stale", HeaderValue::from_static("old"));
        write(&meta, &mut h);
        let mut want = meta.clone();
        want.extra.remove("Region");
        want.extra.insert("region".into(), "eu".into());
        assert_eq!(read(&h, &Limits::default()).unwrap().0, want);
    }

    #[test]
    fn what_headers_cannot_carry_is_left_out_never_injected() {
        let meta = RequestMetadata::new()
            .trace_id("t\r\nx-injected: 1")
            .user_id("u\n")
            .tag("ok")
            .tag("a,b")
            .tag(" padded")
            .extra("bad name", "v")
            .extra("tags", "smuggled")
            .extra("n", 1)
            .extra("fine", "caf\u{e9}");
        let mut h = HeaderMap::new();
        write(&meta, &mut h);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-requesty-tags", "x-requesty-fine"]);
        assert_eq!(h["x-requesty-tags"], "ok");
        assert_eq!(
            read(&h, &Limits::default()).unwrap().0.extra["fine"],
            "caf\u{e9}"
        );
    }

    #[test]
    fn values_that_would_arrive_changed_are_left_out() {
        let meta = RequestMetadata::new()
            .trace_id("session 7 ")
            .user_id("")
            .extra("padded", "\u{a0}eu")
            .extra("spaced", "in the middle is fine")
            .origin_title(" App");
        let mut h = HeaderMap::new();
        write(&meta, &mut h);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-requesty-spaced"]);
        let back = read(&h, &Limits::default()).unwrap().0;
        assert_eq!(back.extra["spaced"], "in the middle is fine");
    }

    #[test]
    fn a_value_left_out_leaves_one_written_before_it_alone() {
        // Two `extra` keys that differ in case name one header; the first value goes.
        let mut meta = RequestMetadata::new();
        meta.extra.insert("Team".into(), "platform".into());
        meta.extra.insert("team".into(), " padded".into());
        let mut h = HeaderMap::new();
        write(&meta, &mut h);
        assert_eq!(h["x-requesty-team"], "platform");
    }

    #[test]
    fn an_extra_key_with_underscores_never_reads_back_as_a_core_field() {
        // CGI-style servers read `x-requesty-user_id` as `X-Requesty-User-Id` (see `dashed`).
        let meta = RequestMetadata::new()
            .user_id("alice")
            .extra("user_id", "mallory")
            .extra("Trace_Id", "t2")
            .extra("team_id", "platform");
        let mut h = HeaderMap::new();
        write(&meta, &mut h);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-requesty-user-id", "x-requesty-team_id"]);
        assert_eq!(h["x-requesty-user-id"], "alice");
    }

    #[test]
    fn extra_keys_differing_only_in_case_keep_the_first() {
        let mut meta = RequestMetadata::new();
        meta.extra.insert("Team".into(), "platform".into());
        meta.extra.insert("team".into(), "billing".into());
        let mut h = HeaderMap::new();
        write(&meta, &mut h);
        assert_eq!(h["x-requesty-team"], "platform");
        assert_eq!(h.get_all("x-requesty-team").iter().count(), 1);
        // Nor do two keys a CGI-style server reads alike (`_` as `-`) both go: it would merge them.
        let meta = RequestMetadata::new()
            .extra("team-id", "a")
            .extra("team_id", "b");
        let mut h = HeaderMap::new();
        write(&meta, &mut h);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-requesty-team-id"]);
        assert_eq!(h["x-requesty-team-id"], "a");
    }

    #[test]
    fn empty_values_carry_nothing() {
        let mut h = HeaderMap::new();
        for name in [
            "x-requesty-trace-id",
            "x-requesty-user-id",
            "x-requesty-team",
        ] {
            h.insert(name, HeaderValue::from_static(""));
        }
        h.insert("x-requesty-tags", HeaderValue::from_static(" , "));
        h.insert("x-title", HeaderValue::from_static("  "));
        h.insert("http-referer", HeaderValue::from_static(""));
        assert!(read(&h, &Limits::default()).unwrap().0.is_empty());
    }

    #[test]
    fn header_tags_are_counted_as_sent_and_stop_at_the_limit() {
        let limits = Limits::default().max_tags(3);
        let mut h = HeaderMap::new();
        h.insert("x-requesty-tags", HeaderValue::from_static("a,a,a"));
        assert_eq!(read(&h, &limits).unwrap().0.tags, ["a"]);
        // A fourth, even a repeat, in another header of the same name.
        h.append("x-requesty-tags", HeaderValue::from_static("a"));
        let err = read(&h, &limits).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooMany);
        assert_eq!(err.param(), "x-requesty-tags");
        assert!(err.to_string().contains("`x-requesty-tags`"), "{err}");
        assert!(err.to_string().contains("limit of 3"), "{err}");
        // Thousands of distinct tags are refused once the limit is passed, not deduplicated first.
        let many: Vec<String> = (0..30_000).map(|i| format!("t{i}")).collect();
        let mut h = HeaderMap::new();
        h.insert("x-requesty-tags", many.join(",").parse().unwrap());
        let err = read(&h, &Limits::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooMany);
        // A client reading the caller's own headers allows more, and still stops.
        let err = read(&h, &own_limits(&Limits::default())).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooMany);
        let mut h = HeaderMap::new();
        h.insert("x-requesty-tags", many[..65].join(",").parse().unwrap());
        assert_eq!(
            read(&h, &own_limits(&Limits::default()))
                .unwrap()
                .0
                .tags
                .len(),
            65
        );
    }

    #[test]
    fn with_no_bound_on_the_tag_count_every_tags_header_is_read() {
        let limits = Limits::default().max_tags(usize::MAX);
        let mut h = HeaderMap::new();
        h.append("x-requesty-tags", HeaderValue::from_static("a,b"));
        h.append("x-requesty-tags", HeaderValue::from_static("c"));
        h.append("x-requesty-tags", HeaderValue::from_static("a,d"));
        assert_eq!(read(&h, &limits).unwrap().0.tags, ["a", "b", "c", "d"]);
    }

    #[test]
    fn a_tag_too_long_is_noted_with_its_header_for_the_whole_check() {
        let limits = Limits::default().max_tag_len(4);
        let mut h = HeaderMap::new();
        h.insert("x-requesty-tags", HeaderValue::from_static("ok, toolong"));
        let (meta, long) = read(&h, &limits).unwrap();
        assert_eq!(meta.tags, ["ok", "toolong"]);
        assert_eq!(long, Some("x-requesty-tags"));
        let origins = Origins::over(&meta, long, Origins::default());
        let err = origins.check(&meta, &limits).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooLong);
        assert_eq!(err.param(), "x-requesty-tags");
        assert_eq!(
            err.to_string(),
            "a tag in header `x-requesty-tags` is 7 bytes; the limit is 4 bytes"
        );
        // Within the limit, nothing is noted.
        assert_eq!(read(&h, &Limits::default()).unwrap().1, None);
    }

    /// Python's `http.client` (and so `requests`) and the Fetch API's clients send a character up
    /// to U+00FF as its one ISO-8859-1 byte: every metadata header reads such a value as that text,
    /// as the origin headers do, while UTF-8 stays UTF-8.
    #[test]
    fn a_metadata_value_that_is_not_utf8_is_read_as_latin1() {
        let sent: [(&str, &[u8]); 4] = [
            ("x-requesty-city", b"Montr\xe9al"),
            ("x-requesty-user-id", b"\xa0j\xfcrgen\xa0"),
            ("x-requesty-tags", b"caf\xe9, th\xe9"),
            ("x-requesty-trace-id", "caf\u{e9}".as_bytes()),
        ];
        let mut h = HeaderMap::new();
        for (name, value) in sent {
            h.insert(name, HeaderValue::from_bytes(value).unwrap());
        }
        let meta = read(&h, &Limits::default()).unwrap().0;
        assert_eq!(meta.extra["city"], "Montr\u{e9}al");
        assert_eq!(meta.user_id.as_deref(), Some("j\u{fc}rgen"));
        assert_eq!(meta.tags, ["caf\u{e9}", "th\u{e9}"]);
        assert_eq!(meta.trace_id.as_deref(), Some("caf\u{e9}"));
    }
}
