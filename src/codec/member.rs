//! Turns the raw `requesty` member into [`RequestMetadata`], checking every field against [`Limits`].

use super::lexer::{key_eq, Lexer, Malformed};
use crate::error::{ErrorKind, MetadataError};
use crate::{Limits, RequestMetadata};
use serde_json::{Map, Value};
use std::ops::Range;

/// Parses the member's value (`raw` is exactly its bytes, already known to be well-formed JSON).
/// `Ok(None)` for `null`.
pub(crate) fn parse(raw: &[u8], limits: &Limits) -> Result<Option<RequestMetadata>, MetadataError> {
    match raw.first() {
        Some(b'n') => return Ok(None),
        Some(b'{') => {}
        _ => {
            return Err(MetadataError::new(
                ErrorKind::InvalidType,
                "requesty",
                "`requesty` must be a JSON object",
            ))
        }
    }
    if raw.len() > limits.member_bytes() {
        return Err(MetadataError::new(
            ErrorKind::TooLong,
            "requesty",
            format!(
                "`requesty` is {} bytes; the limit is {} bytes",
                raw.len(),
                limits.member_bytes()
            ),
        ));
    }
    let mut meta = RequestMetadata::default();
    let mut seen = Seen::default();
    for_each_member(raw, limits.depth(), |key, escaped, value| {
        let field = Field::of(&raw[key.clone()], escaped);
        if let Some(bit) = field.bit() {
            if seen.0 & bit != 0 {
                return Err(duplicate(field.name()));
            }
            seen.0 |= bit;
        }
        let bytes = &raw[value];
        match field {
            Field::Tags => meta.tags = tags(bytes, limits)?,
            Field::UserId => meta.user_id = id(bytes, "user_id", limits)?,
            Field::TraceId => meta.trace_id = id(bytes, "trace_id", limits)?,
            Field::Extra => meta.extra = extra(bytes, limits)?,
            Field::OriginReferer => meta.origin_referer = text(bytes, "origin_referer")?,
            Field::OriginTitle => meta.origin_title = text(bytes, "origin_title")?,
            Field::Other => {
                let name: String = decode_key(&raw[key])?;
                let value: Value = serde_json::from_slice(bytes).map_err(|_| malformed())?;
                if meta.other.insert(name.clone(), value).is_some() {
                    return Err(duplicate(&name));
                }
            }
        }
        Ok(())
    })?;
    Ok(Some(meta))
}

/// Checks header- or code-built metadata against the same limits the body parser applies.
pub(crate) fn check(meta: &RequestMetadata, limits: &Limits) -> Result<(), MetadataError> {
    check_tags(
        meta.tags.iter().map(String::as_str),
        meta.tags.len(),
        limits,
    )?;
    for (name, value) in [("user_id", &meta.user_id), ("trace_id", &meta.trace_id)] {
        if let Some(v) = value {
            check_id(v, name, limits)?;
        }
    }
    if meta.extra.len() > limits.extra_entries() {
        return Err(too_many_extra(meta.extra.len(), limits));
    }
    Ok(())
}

/// Calls `f(key_range, key_escaped, value_range)` for each member of the object `raw` (ranges relative
/// to `raw`, the key's without its quotes).
fn for_each_member(
    raw: &[u8],
    max_depth: usize,
    mut f: impl FnMut(Range<usize>, bool, Range<usize>) -> Result<(), MetadataError>,
) -> Result<(), MetadataError> {
    let mut lx = Lexer::new(raw, max_depth);
    walk(&mut lx, b'{', b'}', |lx| {
        if lx.peek().map_err(m)? != b'"' {
            return Err(malformed());
        }
        let key_start = lx.pos + 1;
        let escaped = lx.skip_string().map_err(m)?;
        let key = key_start..lx.pos - 1;
        lx.skip_ws();
        lx.expect(b':').map_err(m)?;
        lx.skip_ws();
        let value = lx.skip_value(2).map_err(m)?;
        f(key, escaped, value)
    })
}

/// Calls `f(value_range)` for each element of the array `raw`.
fn for_each_element(
    raw: &[u8],
    max_depth: usize,
    mut f: impl FnMut(Range<usize>) -> Result<(), MetadataError>,
) -> Result<(), MetadataError> {
    let mut lx = Lexer::new(raw, max_depth);
    walk(&mut lx, b'[', b']', |lx| f(lx.skip_value(3).map_err(m)?))
}

/// The comma-separated items of a container between `open` and `close`; `item` reads one.
fn walk(
    lx: &mut Lexer<'_>,
    open: u8,
    close: u8,
    mut item: impl FnMut(&mut Lexer<'_>) -> Result<(), MetadataError>,
) -> Result<(), MetadataError> {
    lx.expect(open).map_err(m)?;
    lx.skip_ws();
    if lx.peek().map_err(m)? == close {
        return Ok(());
    }
    loop {
        item(lx)?;
        lx.skip_ws();
        match lx.peek().map_err(m)? {
            b',' => {
                lx.pos += 1;
                lx.skip_ws();
            }
            b if b == close => return Ok(()),
            _ => return Err(malformed()),
        }
    }
}

fn m(_: Malformed) -> MetadataError {
    malformed()
}

#[derive(Default)]
struct Seen(u8);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Tags,
    UserId,
    TraceId,
    Extra,
    OriginReferer,
    OriginTitle,
    Other,
}

impl Field {
    /// The known fields, in discriminant order.
    const KNOWN: [(Field, &'static str); 6] = [
        (Field::Tags, "tags"),
        (Field::UserId, "user_id"),
        (Field::TraceId, "trace_id"),
        (Field::Extra, "extra"),
        (Field::OriginReferer, "origin_referer"),
        (Field::OriginTitle, "origin_title"),
    ];

    fn of(key: &[u8], escaped: bool) -> Field {
        Self::KNOWN
            .iter()
            .find(|(_, name)| key_eq(key, escaped, name.as_bytes()) == Ok(true))
            .map_or(Field::Other, |(field, _)| *field)
    }

    /// The field's bit in [`Seen`]; `None` for unknown members (checked by name instead).
    fn bit(self) -> Option<u8> {
        (self != Field::Other).then(|| 1 << self as u8)
    }

    fn name(self) -> &'static str {
        Self::KNOWN.get(self as usize).map_or("", |(_, name)| name)
    }
}

fn tags(raw: &[u8], limits: &Limits) -> Result<Vec<String>, MetadataError> {
    let wrong = || {
        MetadataError::new(
            ErrorKind::InvalidType,
            "requesty.tags",
            "`requesty.tags` must be an array of strings",
        )
    };
    match raw.first() {
        Some(b'n') => return Ok(Vec::new()),
        Some(b'[') => {}
        _ => return Err(wrong()),
    }
    let mut list: Vec<String> = Vec::new();
    let mut count = 0;
    for_each_element(raw, limits.depth(), |value| {
        let tag = string(&raw[value]).map_err(|_| wrong())?;
        count += 1;
        check_tags(std::iter::once(tag.as_str()), count, limits)?;
        if !list.contains(&tag) {
            list.push(tag);
        }
        Ok(())
    })?;
    Ok(list)
}

fn check_tags<'a>(
    tags: impl Iterator<Item = &'a str>,
    count: usize,
    limits: &Limits,
) -> Result<(), MetadataError> {
    if count > limits.tags() {
        return Err(MetadataError::new(
            ErrorKind::TooMany,
            "requesty.tags",
            format!(
                "`requesty.tags` has {count} tags; the limit is {}",
                limits.tags()
            ),
        ));
    }
    for tag in tags {
        if tag.len() > limits.tag_len() {
            return Err(MetadataError::new(
                ErrorKind::TooLong,
                "requesty.tags",
                format!(
                    "a tag in `requesty.tags` is {} bytes; the limit is {} bytes",
                    tag.len(),
                    limits.tag_len()
                ),
            ));
        }
    }
    Ok(())
}

fn id(raw: &[u8], name: &str, limits: &Limits) -> Result<Option<String>, MetadataError> {
    let value = text(raw, name)?;
    if let Some(v) = &value {
        check_id(v, name, limits)?;
    }
    Ok(value)
}

fn check_id(value: &str, name: &str, limits: &Limits) -> Result<(), MetadataError> {
    if value.len() > limits.id_len() {
        return Err(MetadataError::new(
            ErrorKind::TooLong,
            format!("requesty.{name}"),
            format!(
                "`requesty.{name}` is {} bytes; the limit is {} bytes",
                value.len(),
                limits.id_len()
            ),
        ));
    }
    Ok(())
}

/// A string field; `null` counts as absent.
fn text(raw: &[u8], name: &str) -> Result<Option<String>, MetadataError> {
    if raw.first() == Some(&b'n') {
        return Ok(None);
    }
    string(raw).map(Some).map_err(|_| {
        MetadataError::new(
            ErrorKind::InvalidType,
            format!("requesty.{name}"),
            format!("`requesty.{name}` must be a string"),
        )
    })
}

/// Decodes a JSON string value; `Err` when `raw` is not one (or is not valid text).
fn string(raw: &[u8]) -> Result<String, Malformed> {
    match raw {
        [b'"', inner @ .., b'"'] if !inner.iter().any(|&b| b == b'\\' || b < 0x20) => {
            std::str::from_utf8(inner)
                .map(str::to_owned)
                .map_err(|_| Malformed)
        }
        [b'"', ..] => serde_json::from_slice(raw).map_err(|_| Malformed),
        _ => Err(Malformed),
    }
}

fn extra(raw: &[u8], limits: &Limits) -> Result<Map<String, Value>, MetadataError> {
    if raw.first() == Some(&b'n') {
        return Ok(Map::new());
    }
    if raw.first() != Some(&b'{') {
        return Err(MetadataError::new(
            ErrorKind::InvalidType,
            "requesty.extra",
            "`requesty.extra` must be a JSON object",
        ));
    }
    if raw.len() > limits.extra_bytes() {
        return Err(MetadataError::new(
            ErrorKind::TooLong,
            "requesty.extra",
            format!(
                "`requesty.extra` is {} bytes; the limit is {} bytes",
                raw.len(),
                limits.extra_bytes()
            ),
        ));
    }
    let mut map = Map::new();
    for_each_member(raw, limits.depth(), |key, escaped, value| {
        // Raw control characters are invalid JSON too: let serde_json reject them.
        let name = if escaped || raw[key.clone()].iter().any(|&b| b < 0x20) {
            decode_key(&raw[key])?
        } else {
            std::str::from_utf8(&raw[key])
                .map_err(|_| malformed())?
                .to_owned()
        };
        let raw_value = &raw[value];
        let value = match raw_value.first() {
            Some(b'"') => Value::String(string(raw_value).map_err(m)?),
            _ => serde_json::from_slice(raw_value).map_err(|_| malformed())?,
        };
        if map.len() == limits.extra_entries() {
            return Err(too_many_extra(map.len() + 1, limits));
        }
        match map.entry(name) {
            serde_json::map::Entry::Occupied(entry) => {
                Err(duplicate(&format!("extra.{}", entry.key())))
            }
            serde_json::map::Entry::Vacant(entry) => {
                entry.insert(value);
                Ok(())
            }
        }
    })?;
    Ok(map)
}

fn too_many_extra(count: usize, limits: &Limits) -> MetadataError {
    MetadataError::new(
        ErrorKind::TooMany,
        "requesty.extra",
        format!(
            "`requesty.extra` has {count} keys; the limit is {}",
            limits.extra_entries()
        ),
    )
}

fn decode_key(raw_inner: &[u8]) -> Result<String, MetadataError> {
    // Re-wrap in quotes so serde_json decodes escapes exactly as a downstream parser would.
    let mut quoted = Vec::with_capacity(raw_inner.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw_inner);
    quoted.push(b'"');
    serde_json::from_slice(&quoted).map_err(|_| malformed())
}

fn duplicate(name: &str) -> MetadataError {
    MetadataError::new(
        ErrorKind::Duplicate,
        format!("requesty.{name}"),
        format!("`requesty.{name}` is given more than once"),
    )
}

/// Text inside `requesty` that a strict parser rejects (a bad escape or invalid UTF-8).
fn malformed() -> MetadataError {
    MetadataError::new(
        ErrorKind::InvalidType,
        "requesty",
        "`requesty` is not valid JSON (bad escape or invalid UTF-8)",
    )
}
