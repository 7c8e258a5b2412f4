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

/// Removes every `X-Requesty-*` header; the origin headers stay (they are ordinary HTTP).
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

fn text<'a>(name: &str, value: &'a HeaderValue) -> Result<&'a str, MetadataError> {
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
        h.insert("HTTP-Referer", HeaderValue::from_static("https://app.example"));
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
    fn non_utf8_value_is_an_error_naming_the_header() {
        let mut h = HeaderMap::new();
        h.insert("x-requesty-team", HeaderValue::from_bytes(b"\xff").unwrap());
        let err = read(&h).unwrap_err();
        assert_eq!(err.param(), "x-requesty-team");
        assert_eq!(err.kind(), ErrorKind::InvalidHeader);
    }
}
