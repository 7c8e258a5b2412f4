//! Metadata carried in headers: `X-Requesty-*`, `HTTP-Referer` and `X-Title`.

use crate::error::{ErrorKind, MetadataError};
use crate::RequestMetadata;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

/// The prefix of every Requesty analytics header, as `http` stores names: lowercase.
pub(crate) const PREFIX: &str = "x-requesty-";
const REFERER: &str = "http-referer";
const TITLE: &str = "x-title";

/// Reads the metadata headers. Names match case-insensitively (`http` lowercases them); a repeated
/// `X-Requesty-Trace-Id`, `-User-Id` or extra header keeps its last value, repeated `X-Requesty-Tags`
/// add up.
pub(crate) fn read(headers: &HeaderMap) -> Result<RequestMetadata, MetadataError> {
    let mut meta = RequestMetadata::default();
    for (name, value) in headers {
        let name = name.as_str();
        if let Some(field) = name.strip_prefix(PREFIX) {
            let text = text(name, value)?;
            match field {
                "" => {}
                "trace-id" => meta.trace_id = Some(text.to_owned()),
                "user-id" => meta.user_id = Some(text.to_owned()),
                "tags" => {
                    for tag in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                        if !meta.tags.iter().any(|t| t == tag) {
                            meta.tags.push(tag.to_owned());
                        }
                    }
                }
                other => {
                    meta.extra
                        .insert(other.to_owned(), Value::String(text.to_owned()));
                }
            }
        } else if name == REFERER {
            meta.origin_referer = Some(text(name, value)?.to_owned());
        } else if name == TITLE {
            meta.origin_title = Some(text(name, value)?.to_owned());
        }
    }
    Ok(meta)
}

/// Writes `meta` as headers, replacing any `X-Requesty-*` already there: `X-Requesty-Trace-Id`,
/// `X-Requesty-User-Id`, `X-Requesty-Tags` (comma-joined), `X-Requesty-<Name>` for each string
/// `extra` value, and `HTTP-Referer` / `X-Title` when the request has none.
///
/// Every value is checked so that no input can start a new header line: what cannot be carried
/// (control characters, a tag with a comma, an `extra` name that is not a header token or that would
/// read back as a core field, a non-string `extra` value) is left out, with a warning.
pub(crate) fn write(meta: &RequestMetadata, headers: &mut HeaderMap) {
    remove(headers);
    let missing_origin = [REFERER, TITLE].map(|name| !headers.contains_key(name));
    let mut put = |name: &str, value: &str| match (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_bytes(value.as_bytes()),
    ) {
        (Ok(name), Ok(value)) => {
            headers.insert(name, value);
        }
        _ => tracing::warn!(header = name, "metadata left out: not a valid header"),
    };
    if let Some(trace_id) = &meta.trace_id {
        put("x-requesty-trace-id", trace_id);
    }
    if let Some(user_id) = &meta.user_id {
        put("x-requesty-user-id", user_id);
    }
    let (carried, split): (Vec<&str>, Vec<&str>) = meta
        .tags
        .iter()
        .map(|t| t.as_str())
        .partition(|t| !t.contains(',') && t.trim() == *t && !t.is_empty());
    if !split.is_empty() {
        tracing::warn!(tags = ?split, "tags left out: a comma or edge whitespace cannot travel in X-Requesty-Tags");
    }
    if !carried.is_empty() {
        put("x-requesty-tags", &carried.join(","));
    }
    for (key, value) in &meta.extra {
        let name = format!("{PREFIX}{}", key.to_ascii_lowercase());
        match value.as_str() {
            Some(text)
                if !matches!(&name[PREFIX.len()..], "trace-id" | "user-id" | "tags" | "") =>
            {
                put(&name, text)
            }
            _ => {
                tracing::warn!(key = %key, "extra field left out: only string values travel in headers")
            }
        }
    }
    let origin = [(REFERER, &meta.origin_referer), (TITLE, &meta.origin_title)];
    for ((name, value), missing) in origin.into_iter().zip(missing_origin) {
        if let (Some(value), true) = (value, missing) {
            put(name, value);
        }
    }
}

/// Removes the origin headers (`HTTP-Referer`, `X-Title`).
pub(crate) fn remove_origin(headers: &mut HeaderMap) {
    headers.remove(REFERER);
    headers.remove(TITLE);
}

/// Removes every `X-Requesty-*` header, with all its values; the origin headers stay (they are
/// ordinary HTTP).
pub(crate) fn remove(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(PREFIX))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// A header's value as trimmed text; not UTF-8 is an error naming the header.
pub(crate) fn text<'a>(name: &str, value: &'a HeaderValue) -> Result<&'a str, MetadataError> {
    std::str::from_utf8(value.as_bytes())
        .map(str::trim)
        .map_err(|_| {
            MetadataError::new(
                ErrorKind::InvalidHeader,
                name,
                format!("header `{name}` is not valid UTF-8"),
            )
        })
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
        let meta = read(&h).unwrap();
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
        assert_eq!(read(&h).unwrap(), want);
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
        assert_eq!(read(&h).unwrap().extra["fine"], "caf\u{e9}");
    }

    #[test]
    fn non_utf8_value_is_an_error_naming_the_header() {
        let mut h = HeaderMap::new();
        h.insert("x-requesty-team", HeaderValue::from_bytes(b"\xff").unwrap());
        let err = read(&h).unwrap_err();
        assert_eq!(err.param(), "x-requesty-team");
        assert_eq!(err.kind(), ErrorKind::InvalidHeader);
    }
}
