//! Turns the raw `requesty` member into [`RequestMetadata`], checking every field against [`Limits`].

use super::lexer::{key_eq, plain_run, Lexer, Malformed};
use crate::error::{ErrorKind, MetadataError, Size};
use crate::metadata::SMALL;
use crate::{Limits, RequestMetadata};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashSet;
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
                "`requesty` is {}; the limit is {}",
                Size(raw.len()),
                Size(limits.member_bytes())
            ),
        ));
    }
    let mut meta = RequestMetadata::default();
    let mut seen = Seen::default();
    // Every byte of the member is either JSON structure or inside a string that is read below, and a
    // strict parser rejects invalid UTF-8 in any of them: check it once, here, for all strings.
    let whole = std::str::from_utf8(raw).map_err(|_| malformed())?;
    let mut lx = Lexer::over_text(whole, limits.depth());
    // One walk: each field's value is read where it stands, never skipped first and read after.
    walk(&mut lx, b'{', b'}', |lx| {
        let key = key(lx)?;
        let field = Field::of(key.raw, key.escaped);
        if let Some(bit) = field.bit() {
            if seen.0 & bit != 0 {
                return Err(duplicate(field.name()));
            }
            seen.0 |= bit;
        }
        match field {
            Field::Tags => meta.tags = tags(lx, limits)?,
            Field::UserId => meta.user_id = bounded(lx, "user_id", limits.id_len())?,
            Field::TraceId => meta.trace_id = bounded(lx, "trace_id", limits.id_len())?,
            Field::Extra => meta.extra = extra(lx, limits)?,
            Field::OriginReferer => {
                meta.origin_referer = bounded(lx, "origin_referer", limits.origin_len())?
            }
            Field::OriginTitle => {
                meta.origin_title = bounded(lx, "origin_title", limits.origin_len())?
            }
            Field::Other => {
                let name = key.name()?;
                let value = any(lx, 2)?;
                if meta.other.insert(name.clone(), value).is_some() {
                    return Err(duplicate(&name));
                }
            }
        }
        Ok(())
    })?;
    if !lx.at_end() {
        return Err(malformed());
    }
    Ok(Some(meta))
}

/// One field of a member as sent.
pub(crate) struct SentField {
    /// The key, decoded.
    pub(crate) name: String,
    /// From the key's opening quote to the value's end.
    pub(crate) whole: Range<usize>,
    pub(crate) value: Range<usize>,
}

/// The fields of a member value that [`parse`] accepted, in the order sent. `None` when `raw` is not
/// such a value.
pub(crate) fn fields(raw: &[u8]) -> Option<Vec<SentField>> {
    let mut fields = Vec::new();
    members(std::str::from_utf8(raw).ok()?, |name, whole, value| {
        fields.push(SentField {
            name: name.into_owned(),
            whole,
            value,
        })
    })?;
    Some(fields)
}

/// Calls `visit` with each member of the JSON object `whole`, in order: its key decoded, the range
/// from the key's opening quote to the value's end, and the value's range. Keys and scalars are
/// read strictly; nested values only as far as finding their end. `None` (after some calls,
/// perhaps) when `whole` is not such an object.
pub(crate) fn members(
    whole: &str,
    mut visit: impl FnMut(Cow<'_, str>, Range<usize>, Range<usize>),
) -> Option<()> {
    // Crossing nested values takes no recursion, so nesting needs no bound here; whoever reads a
    // value (serde_json) bounds its own.
    let mut lx = Lexer::over_text(whole, usize::MAX);
    walk(&mut lx, b'{', b'}', |lx| {
        let start = lx.pos;
        let key = key(lx)?;
        let name = match key.text {
            Some(text) => Cow::Borrowed(text),
            None => Cow::Owned(key.name()?),
        };
        let value = lx.skip_value(2).map_err(m)?;
        visit(name, start..value.end, value);
        Ok(())
    })
    .ok()?;
    lx.at_end().then_some(())
}

/// Why a reader with `limits` refuses the `extra` of the member value `raw` as sent, its bytes
/// counted as [`parse`] counts them against `max_extra_bytes` (a caller's spacing and escapes
/// included); `None` when it does not, or `raw` has no `extra` object. Only an `extra` longer than
/// the limit is read.
pub(crate) fn sent_extra_error(raw: &[u8], limits: &Limits) -> Option<MetadataError> {
    let whole = std::str::from_utf8(raw).ok()?;
    let mut range = None;
    members(whole, |name, _, value| {
        if name == "extra" {
            range = Some(value);
        }
    })?;
    let text = whole.get(range?)?;
    // The parser counts no more than the object's bytes.
    if text.len() <= limits.extra_bytes() || !text.starts_with('{') {
        return None;
    }
    let bytes_only = limits.max_extra_entries(usize::MAX);
    extra(&mut Lexer::over_text(text, limits.depth()), &bytes_only)
        .err()
        .filter(|error| error.kind() == ErrorKind::TooLong)
}

/// Checks header- or code-built metadata against the same limits the body parser applies.
///
/// `measure_extra` checks the size of `extra` too, as compact JSON: wanted unless `extra` is
/// exactly what a body member held, which the parser measured as sent (serializing respells some
/// numbers longer, `1e6` as `1000000.0`).
pub(crate) fn check(
    meta: &RequestMetadata,
    limits: &Limits,
    measure_extra: bool,
) -> Result<(), MetadataError> {
    check_tags(
        meta.tags.iter().map(String::as_str),
        meta.tags.len(),
        limits,
    )?;
    for (name, value, limit) in [
        ("user_id", &meta.user_id, limits.id_len()),
        ("trace_id", &meta.trace_id, limits.id_len()),
        ("origin_referer", &meta.origin_referer, limits.origin_len()),
        ("origin_title", &meta.origin_title, limits.origin_len()),
    ] {
        if let Some(v) = value {
            check_len(v, name, limit)?;
        }
    }
    if meta.extra.len() > limits.extra_entries() {
        return Err(too_many(
            "extra",
            "keys",
            Some(meta.extra.len()),
            limits.extra_entries(),
        ));
    }
    if !measure_extra {
        return Ok(());
    }
    match oversized(&meta.extra, limits.extra_bytes()) {
        Some(size) => Err(MetadataError::new(
            ErrorKind::TooLong,
            "requesty.extra",
            format!(
                "`requesty.extra` is {} of JSON; the limit is {}",
                Size(size),
                Size(limits.extra_bytes())
            ),
        )),
        None => Ok(()),
    }
}

/// The size of `extra` as compact JSON when it is over `limit`. A quick bound comes first (every
/// byte of a string escaped, at most six times as long), so a usual `extra` is never serialized.
fn oversized(extra: &Map<String, Value>, limit: usize) -> Option<usize> {
    let mut bound = 2;
    for (key, value) in extra {
        let value = match value {
            Value::String(text) => text.len() * 6 + 2,
            other => json_len(other),
        };
        bound += key.len() * 6 + 4 + value;
    }
    if bound <= limit {
        return None;
    }
    let size = json_len(extra);
    (size > limit).then_some(size)
}

/// The length of `value` as compact JSON, counted without building it.
pub(crate) fn json_len(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` or a map of them cannot fail, and `Count` never does.
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// A member's key as it stands between its quotes.
struct Key<'a> {
    raw: &'a [u8],
    escaped: bool,
    /// The key's text when it needs no decoding: no escapes.
    text: Option<&'a str>,
}

impl Key<'_> {
    /// The key's text, decoded as a downstream parser would decode it.
    fn name(&self) -> Result<String, MetadataError> {
        match self.text {
            Some(text) => Ok(text.to_owned()),
            None => decode_key(self.raw),
        }
    }
}

/// Reads a member's key and the colon after it.
fn key<'a>(lx: &mut Lexer<'a>) -> Result<Key<'a>, MetadataError> {
    if lx.peek().map_err(m)? != b'"' {
        return Err(malformed());
    }
    let start = lx.pos + 1;
    let run = plain_run(lx.buf, start);
    let (raw, escaped, text) = if lx.buf.get(run) == Some(&b'"') {
        // Short printable ASCII, the common case.
        lx.pos = run + 1;
        (&lx.buf[start..run], false, lx.text(start..run))
    } else {
        // `skip_string` refuses raw control characters: what it passes needs decoding only when
        // escaped.
        let escaped = lx.skip_string().map_err(m)?;
        let range = start..lx.pos - 1;
        let raw = &lx.buf[range.clone()];
        let text = if escaped { None } else { lx.text(range) };
        (raw, escaped, text)
    };
    lx.skip_ws();
    lx.expect(b':').map_err(m)?;
    lx.skip_ws();
    Ok(Key { raw, escaped, text })
}

/// Any JSON value, for the fields this crate does not interpret; `depth` is that of the object
/// holding it (the body being 1).
fn any(lx: &mut Lexer<'_>, depth: usize) -> Result<Value, MetadataError> {
    let range = lx.skip_value(depth).map_err(m)?;
    serde_json::from_slice(&lx.buf[range]).map_err(|error| {
        // Well-formed, but beyond what the typed metadata can hold: say so, not "not valid JSON".
        let error = error.to_string();
        if error.starts_with("number out of range") {
            MetadataError::new(
                ErrorKind::InvalidType,
                "requesty",
                "`requesty` holds a number out of the range of a double (such as 1e400)",
            )
        } else if error.starts_with("recursion limit exceeded") {
            // Only where `max_depth` was raised past serde_json's own bound.
            MetadataError::new(
                ErrorKind::InvalidType,
                "requesty",
                "`requesty` holds a value nested more than 127 levels deep, past what it can hold",
            )
        } else {
            malformed()
        }
    })
}

/// The comma-separated items of a container between `open` and `close`; `item` reads one. Ends past
/// the closing bracket.
fn walk(
    lx: &mut Lexer<'_>,
    open: u8,
    close: u8,
    mut item: impl FnMut(&mut Lexer<'_>) -> Result<(), MetadataError>,
) -> Result<(), MetadataError> {
    lx.expect(open).map_err(m)?;
    lx.skip_ws();
    if lx.peek().map_err(m)? == close {
        lx.pos += 1;
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
            b if b == close => {
                lx.pos += 1;
                return Ok(());
            }
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

fn tags(lx: &mut Lexer<'_>, limits: &Limits) -> Result<Vec<String>, MetadataError> {
    let wrong = || {
        MetadataError::new(
            ErrorKind::InvalidType,
            "requesty.tags",
            "`requesty.tags` must be an array of strings",
        )
    };
    match lx.peek().map_err(m)? {
        b'n' => return null(lx).map(|()| Vec::new()),
        b'[' => {}
        _ => return Err(not_a(lx, 2, wrong)),
    }
    let mut list: Vec<String> = Vec::new();
    // Past a few tags, the ones seen so far are looked up in a set: a client reads its caller's own
    // member to no limit, and comparing each tag with all the others is quadratic.
    let mut seen: Option<HashSet<String>> = None;
    let mut count = 0;
    walk(lx, b'[', b']', |lx| {
        match lx.peek().map_err(m)? {
            b'"' => {}
            _ => return Err(not_a(lx, 3, wrong)),
        }
        let tag = string(lx).map_err(m)?;
        count += 1;
        if count > limits.tags() {
            return Err(too_many("tags", "tags", None, limits.tags()));
        }
        check_tags(std::iter::once(tag.as_str()), count, limits)?;
        let new = match &mut seen {
            Some(seen) => !seen.contains(&tag) && seen.insert(tag.clone()),
            None => !list.contains(&tag),
        };
        if new {
            list.push(tag);
            if seen.is_none() && list.len() > SMALL {
                seen = Some(list.iter().cloned().collect());
            }
        }
        Ok(())
    })?;
    Ok(list)
}

/// Reads a `null`.
fn null(lx: &mut Lexer<'_>) -> Result<(), MetadataError> {
    lx.skip_value(3).map(|_| ()).map_err(m)
}

fn check_tags<'a>(
    tags: impl Iterator<Item = &'a str>,
    count: usize,
    limits: &Limits,
) -> Result<(), MetadataError> {
    if count > limits.tags() {
        return Err(too_many("tags", "tags", Some(count), limits.tags()));
    }
    for tag in tags {
        if tag.len() > limits.tag_len() {
            return Err(MetadataError::new(
                ErrorKind::TooLong,
                "requesty.tags",
                format!(
                    "a tag in `requesty.tags` is {}; the limit is {}",
                    Size(tag.len()),
                    Size(limits.tag_len())
                ),
            ));
        }
    }
    Ok(())
}

/// A string field held to `limit` bytes; `null` counts as absent.
fn bounded(lx: &mut Lexer<'_>, name: &str, limit: usize) -> Result<Option<String>, MetadataError> {
    let value = text(lx, name)?;
    if let Some(v) = &value {
        check_len(v, name, limit)?;
    }
    Ok(value)
}

/// Refuses string field `name` when it is longer than `limit` bytes.
fn check_len(value: &str, name: &str, limit: usize) -> Result<(), MetadataError> {
    if value.len() > limit {
        return Err(MetadataError::new(
            ErrorKind::TooLong,
            format!("requesty.{name}"),
            format!(
                "`requesty.{name}` is {}; the limit is {}",
                Size(value.len()),
                Size(limit)
            ),
        ));
    }
    Ok(())
}

/// A string field; `null` counts as absent.
fn text(lx: &mut Lexer<'_>, name: &str) -> Result<Option<String>, MetadataError> {
    let wrong = || {
        MetadataError::new(
            ErrorKind::InvalidType,
            format!("requesty.{name}"),
            format!("`requesty.{name}` must be a string"),
        )
    };
    match lx.peek().map_err(m)? {
        b'n' => null(lx).map(|()| None),
        b'"' => string(lx).map(Some).map_err(m),
        _ => Err(not_a(lx, 2, wrong)),
    }
}

/// The error for a value that is not what a field takes: `wrong` when it is a value of another
/// type, the member's syntax error when it is no value at all (`["a",]`, `tru`). Moves past it.
/// `depth` is that of the container holding the value (the member being 2), so a value nested as
/// deep as the body may nest is still a value.
fn not_a(lx: &mut Lexer<'_>, depth: usize, wrong: impl FnOnce() -> MetadataError) -> MetadataError {
    // A value, and one that ends where a value must (`01` is a `0` too much).
    let value = lx.skip_value(depth).is_ok() && {
        lx.skip_ws();
        matches!(lx.peek(), Ok(b',' | b'}' | b']'))
    };
    if value {
        wrong()
    } else {
        malformed()
    }
}

/// Decodes the string at the lexer's position and moves past it; `Err` when it is not valid text.
fn string(lx: &mut Lexer<'_>) -> Result<String, Malformed> {
    let start = lx.pos;
    let inner = start + 1;
    let run = plain_run(lx.buf, inner);
    if lx.buf.get(run) == Some(&b'"') {
        // Short printable ASCII, the common case: nothing left to check.
        let text = lx.text(inner..run).ok_or(Malformed)?;
        lx.pos = run + 1;
        return Ok(text.to_owned());
    }
    let rest = lx.buf.get(inner..).ok_or(Malformed)?;
    let end = memchr::memchr2(b'"', b'\\', rest).ok_or(Malformed)?;
    if rest[end] == b'"' {
        // No escapes: the text is the bytes, once they are known to be valid.
        if rest[..end].iter().any(|&b| b < 0x20) {
            return Err(Malformed);
        }
        let text = lx.text(inner..inner + end).ok_or(Malformed)?;
        lx.pos = inner + end + 1;
        return Ok(text.to_owned());
    }
    lx.skip_string()?;
    serde_json::from_slice(&lx.buf[start..lx.pos]).map_err(|_| Malformed)
}

fn extra(lx: &mut Lexer<'_>, limits: &Limits) -> Result<Map<String, Value>, MetadataError> {
    match lx.peek().map_err(m)? {
        b'n' => return null(lx).map(|()| Map::new()),
        b'{' => {}
        _ => {
            return Err(not_a(lx, 2, || {
                MetadataError::new(
                    ErrorKind::InvalidType,
                    "requesty.extra",
                    "`requesty.extra` must be a JSON object",
                )
            }))
        }
    }
    let start = lx.pos;
    // Checked as the walk goes, so an oversized object is not read to its end first.
    let too_long = |lx: &Lexer<'_>| {
        (lx.pos - start > limits.extra_bytes()).then(|| {
            // The whole object's size, for the message.
            let mut whole = Lexer::new(lx.buf, limits.depth());
            whole.pos = start;
            let size = whole.skip_value(2).map_or(lx.pos, |r| r.end) - start;
            MetadataError::new(
                ErrorKind::TooLong,
                "requesty.extra",
                format!(
                    "`requesty.extra` is {}; the limit is {}",
                    Size(size),
                    Size(limits.extra_bytes())
                ),
            )
        })
    };
    let mut map = Map::new();
    walk(lx, b'{', b'}', |lx| {
        let name = key(lx)?.name()?;
        let value = match lx.peek().map_err(m)? {
            b'"' => Value::String(string(lx).map_err(m)?),
            _ => any(lx, 3)?,
        };
        if let Some(e) = too_long(lx) {
            return Err(e);
        }
        // A repeated key adds no key: it is a duplicate even when the object is full.
        if map.contains_key(&name) {
            return Err(duplicate(&format!("extra.{name}")));
        }
        if map.len() == limits.extra_entries() {
            return Err(too_many("extra", "keys", None, limits.extra_entries()));
        }
        map.insert(name, value);
        Ok(())
    })?;
    match too_long(lx) {
        Some(e) => Err(e),
        None => Ok(map),
    }
}

/// Over the limit of `what` in `requesty.<field>`: `count` of them when known, else (the body's
/// reader stops at the first past the limit) more than the limit.
fn too_many(field: &str, what: &str, count: Option<usize>, limit: usize) -> MetadataError {
    let message = match count {
        Some(count) => format!("`requesty.{field}` has {count} {what}; the limit is {limit}"),
        None => format!("`requesty.{field}` has more than {limit} {what}, the limit"),
    };
    MetadataError::new(ErrorKind::TooMany, format!("requesty.{field}"), message)
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

/// Text inside `requesty` that a strict parser rejects.
fn malformed() -> MetadataError {
    MetadataError::new(
        ErrorKind::InvalidType,
        "requesty",
        "`requesty` is not valid JSON (a syntax error, a bad escape or invalid UTF-8)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metadata_from_headers_or_code_is_held_to_the_extra_size() {
        let limits = Limits::default().max_extra_bytes(64);
        let fits = RequestMetadata::new()
            .extra("team", "platform")
            .extra("n", 1);
        assert_eq!(check(&fits, &limits, true), Ok(()));
        // Within the quick bound's reach but over the limit once counted exactly.
        let over = RequestMetadata::new().extra("notes", "n".repeat(60));
        let err = check(&over, &limits, true).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooLong);
        assert_eq!(err.param(), "requesty.extra");
        assert!(err.to_string().contains("72 bytes"), "{err}");
        // Escapes count as written, and values that are not strings too.
        let quoted = RequestMetadata::new().extra("q", "\"".repeat(30));
        assert_eq!(
            check(&quoted, &limits, true).map_err(|e| e.kind()),
            Err(ErrorKind::TooLong)
        );
        let nested = RequestMetadata::new().extra("deep", json!({"list": vec![1; 40]}));
        assert_eq!(
            check(&nested, &limits, true).map_err(|e| e.kind()),
            Err(ErrorKind::TooLong)
        );
        // Six bytes per character of the bound is not the measure: 13 characters fit.
        let short = RequestMetadata::new().extra("k", "\"".repeat(13));
        assert_eq!(check(&short, &limits, true), Ok(()));
    }

    /// As many `extra` keys as the limit allows pass, measured or not, and one more is refused: at a
    /// small limit and at the default one, whose full `extra` is many entries to bound.
    #[test]
    fn metadata_from_headers_or_code_is_held_to_the_extra_keys_at_the_limit() {
        for limits in [Limits::default().max_extra_entries(2), Limits::default()] {
            let n = limits.extra_entries();
            let full = (0..n).fold(RequestMetadata::new(), |meta, i| {
                meta.extra(format!("k{i}"), i)
            });
            assert_eq!(check(&full, &limits, true), Ok(()), "{n} keys");
            assert_eq!(check(&full, &limits, false), Ok(()), "{n} keys");
            let over = full.extra(format!("k{n}"), n);
            for measure_extra in [true, false] {
                let err = check(&over, &limits, measure_extra).unwrap_err();
                assert_eq!(
                    (err.kind(), err.param()),
                    (ErrorKind::TooMany, "requesty.extra"),
                    "{} keys",
                    n + 1
                );
            }
        }
    }

    /// The quick bound is never under the size: an `extra` one byte over the limit is refused
    /// where the bound is tightest (an empty key, and a value of characters each escaped as six
    /// bytes), and one at the limit is not.
    #[test]
    fn the_quick_bound_on_extra_never_lets_an_oversized_one_through() {
        let tight = RequestMetadata::new().extra("", "\u{1}".repeat(10));
        let size = json_len(&tight.extra);
        assert_eq!(size, 67);
        let at = Limits::default().max_extra_bytes(size);
        assert_eq!(check(&tight, &at, true), Ok(()));
        let under = Limits::default().max_extra_bytes(size - 1);
        let err = check(&tight, &under, true).unwrap_err();
        assert_eq!(
            (err.kind(), err.param()),
            (ErrorKind::TooLong, "requesty.extra")
        );
        // Keys are bounded as escaped too.
        let keyed = RequestMetadata::new().extra("\u{1}".repeat(10), 1);
        let size = json_len(&keyed.extra);
        assert_eq!(size, 66);
        assert_eq!(
            check(&keyed, &Limits::default().max_extra_bytes(size - 1), true).map_err(|e| e.kind()),
            Err(ErrorKind::TooLong)
        );
        // And several entries, each a key escaped whole and a one-digit value.
        let mut entries = RequestMetadata::new();
        for (i, c) in ['\u{1}', '\u{2}', '\u{3}'].into_iter().enumerate() {
            entries = entries.extra(c.to_string(), i);
        }
        let size = json_len(&entries.extra);
        assert_eq!(size, 34);
        assert_eq!(
            check(&entries, &Limits::default().max_extra_bytes(size - 1), true)
                .map_err(|e| e.kind()),
            Err(ErrorKind::TooLong)
        );
        let empty = RequestMetadata::new().extra("", "");
        assert_eq!(
            check(&empty, &Limits::default().max_extra_bytes(6), true).map_err(|e| e.kind()),
            Err(ErrorKind::TooLong)
        );
        // An empty string is measured too.
        let empty = RequestMetadata::new().extra("k", "");
        let two = Limits::default().max_extra_bytes(2);
        assert_eq!(
            check(&empty, &two, true).map_err(|e| e.kind()),
            Err(ErrorKind::TooLong)
        );
    }
}
