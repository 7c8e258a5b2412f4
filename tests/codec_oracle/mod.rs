//! A differential check of the body codec, shared by the property tests and the fuzz target (which
//! includes this file by path).
//!
//! Two references. [`reference`] is the codec's documented contract written the slow, obvious way:
//! the top level read strictly, nested arrays and objects crossed by bracket balance with strings and
//! escapes skipped; the codec must agree with it on every input. serde_json then anchors that
//! contract: whatever it accepts as an object the reference must accept with the same `requesty`
//! count, and whatever it rejects the reference must reject too, unless the fault lies where the
//! codec deliberately does not look (grammar inside nested values, UTF-8, escapes and control
//! characters in strings).

#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use requesty_metadata::codec::{self, BodyKind, InjectError, Scan};
use requesty_metadata::{ErrorKind, Limits, MetadataError, RequestMetadata};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::fmt;

/// serde_json's view of a body's top level. Member values are skipped with [`IgnoredAny`], which
/// checks structure, number grammar, escapes and control characters, but (like the codec) neither
/// nesting depth, number range nor UTF-8 inside values. Keys are decoded, so they are fully checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Top {
    pub object: bool,
    pub members: usize,
    pub requesty: usize,
}

impl<'de> Deserialize<'de> for Top {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TopVisitor)
    }
}

struct TopVisitor;

const SCALAR: Top = Top {
    object: false,
    members: 0,
    requesty: 0,
};

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let mut top = Top {
            object: true,
            ..SCALAR
        };
        while let Some(key) = map.next_key::<String>()? {
            map.next_value::<IgnoredAny>()?;
            top.members += 1;
            top.requesty += usize::from(key_reads_as_requesty(&key));
        }
        Ok(top)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(SCALAR)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Top, E> {
        Ok(SCALAR)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Top, E> {
        Ok(SCALAR)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Top, E> {
        Ok(SCALAR)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Top, E> {
        Ok(SCALAR)
    }

    fn visit_str<E>(self, _: &str) -> Result<Top, E> {
        Ok(SCALAR)
    }

    fn visit_unit<E>(self) -> Result<Top, E> {
        Ok(SCALAR)
    }
}

/// serde_json's verdict on `input`: `None` when it rejects it.
pub fn serde_top(input: &[u8]) -> Option<Top> {
    serde_json::from_slice(input).ok()
}

/// Whether serde_json's rejection of `input` must be matched by the codec: valid UTF-8, no
/// backslash anywhere, and no control character inside a string.
pub fn comparable(input: &[u8]) -> bool {
    if std::str::from_utf8(input).is_err() || input.contains(&b'\\') {
        return false;
    }
    let mut in_string = false;
    for &b in input {
        match b {
            b'"' => in_string = !in_string,
            b if b < 0x20 && in_string => return false,
            _ => {}
        }
    }
    true
}

/// What the contract says about a body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub kind: BodyKind,
    /// Top-level keys that decode to `requesty` (0 unless an object).
    pub requesty: usize,
    /// The nested arrays and objects that are top-level values.
    pub nested: Vec<std::ops::Range<usize>>,
}

/// The contract, slowly: `NotObject` unless the first non-whitespace byte is `{`; otherwise an
/// object when the top level is well-formed JSON (keys with escapes checked, surrogates paired; no
/// raw control character in a top-level string), nested values are balanced and no deeper than
/// `max_depth`, and only whitespace follows.
pub fn reference(input: &[u8], max_depth: usize) -> Verdict {
    let mut v = Verdict {
        kind: BodyKind::NotObject,
        requesty: 0,
        nested: Vec::new(),
    };
    let start = ws(input, 0);
    if input.get(start) == Some(&b'{') {
        if object(input, start, max_depth, &mut v).is_some() {
            v.kind = BodyKind::Object;
        } else {
            v = Verdict {
                kind: BodyKind::Malformed,
                ..v
            };
            v.requesty = 0;
            v.nested.clear();
        }
    }
    v
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

fn object(b: &[u8], mut i: usize, max_depth: usize, v: &mut Verdict) -> Option<()> {
    if max_depth == 0 {
        return None;
    }
    i = ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            if b.get(i) != Some(&b'"') {
                return None;
            }
            let end = top_string_end(b, i)?;
            let key = &b[i + 1..end - 1];
            v.requesty += usize::from(reads_as_requesty(unescape(key)?));
            i = ws(b, end);
            if b.get(i) != Some(&b':') {
                return None;
            }
            i = ws(b, i + 1);
            i = value(b, i, max_depth, v)?;
            i = ws(b, i);
            match b.get(i) {
                Some(b',') => i = ws(b, i + 1),
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    (ws(b, i) == b.len()).then_some(())
}

/// The index past the string opening at `i`.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match b.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
}

/// The index past the top-level string opening at `i`; `None` when a raw control character is in
/// it, also right after a backslash (escapes in values are not checked otherwise, and a key's are
/// by [`unescape`]).
fn top_string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match b.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' if b.get(j + 1).is_some_and(|&c| c < 0x20) => return None,
            b'\\' => j += 2,
            c if *c < 0x20 => return None,
            _ => j += 1,
        }
    }
}

/// A key's code points and bytes, escapes decoded; `None` for an invalid escape, a lone surrogate
/// among them.
/// Whether a decoded key reads as `requesty` to some parser in use: ended at a NUL (C parsers),
/// with ASCII case and the two non-ASCII letters that fold to `s` and `k` folded (Go's
/// `encoding/json`, cJSON).
pub fn reads_as_requesty(units: impl IntoIterator<Item = u32>) -> bool {
    let folded = units.into_iter().take_while(|&c| c != 0).map(|c| match c {
        0x41..=0x5a => c + 0x20,
        0x17f => u32::from(b's'),
        0x212a => u32::from(b'k'),
        c => c,
    });
    folded.eq(b"requesty".iter().map(|&c| u32::from(c)))
}

/// [`reads_as_requesty`] for a key serde_json decoded.
fn key_reads_as_requesty(key: &str) -> bool {
    reads_as_requesty(key.chars().map(u32::from))
}

fn unescape(raw: &[u8]) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' {
            // Text beyond ASCII as characters; a byte that starts none as U+FFFD.
            let len = (1..=4)
                .find(|&n| {
                    raw.get(i..i + n)
                        .is_some_and(|t| std::str::from_utf8(t).is_ok())
                })
                .unwrap_or(1);
            let c = std::str::from_utf8(&raw[i..i + len])
                .ok()
                .and_then(|s| s.chars().next())
                .map_or(0xfffd, u32::from);
            out.push(c);
            i += len;
            continue;
        }
        let c = *raw.get(i + 1)?;
        match c {
            b'"' | b'\\' | b'/' => out.push(u32::from(c)),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(10),
            b'r' => out.push(13),
            b't' => out.push(9),
            b'u' => {
                let unit = |at: usize| {
                    let hex = std::str::from_utf8(raw.get(at..at + 4)?).ok()?;
                    if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                        return None;
                    }
                    u32::from_str_radix(hex, 16).ok()
                };
                let first = unit(i + 2)?;
                if (0xdc00..0xe000).contains(&first) {
                    return None;
                }
                if (0xd800..0xdc00).contains(&first) {
                    if raw.get(i + 6..i + 8)? != b"\\u" {
                        return None;
                    }
                    let second = unit(i + 8)?;
                    if !(0xdc00..0xe000).contains(&second) {
                        return None;
                    }
                    out.push(0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00));
                    i += 12;
                } else {
                    out.push(first);
                    i += 6;
                }
                continue;
            }
            _ => return None,
        }
        i += 2;
    }
    Some(out)
}

fn value(b: &[u8], i: usize, max_depth: usize, v: &mut Verdict) -> Option<usize> {
    let literal = |word: &[u8]| {
        b.get(i..i + word.len())
            .filter(|w| *w == word)
            .map(|_| i + word.len())
    };
    match *b.get(i)? {
        b'"' => top_string_end(b, i),
        b't' => literal(b"true"),
        b'f' => literal(b"false"),
        b'n' => literal(b"null"),
        b'-' | b'0'..=b'9' => number(b, i),
        b'{' | b'[' => {
            let end = container_end(b, i, max_depth)?;
            v.nested.push(i..end);
            Some(end)
        }
        _ => None,
    }
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
fn number(b: &[u8], mut i: usize) -> Option<usize> {
    let digits = |mut i: usize| {
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i > start).then_some(i)
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    i = match b.get(i)? {
        b'0' => i + 1,
        b'1'..=b'9' => digits(i)?,
        _ => return None,
    };
    if b.get(i) == Some(&b'.') {
        i = digits(i + 1)?;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        i = digits(i)?;
    }
    Some(i)
}

/// The index past the container opening at `i` (at depth 2), counting brackets of either kind.
///
/// A backslash outside a string (never in valid JSON) takes a following quote or backslash with it,
/// as the codec's block scan reads it; either reading leaves a body every conforming parser rejects.
fn container_end(b: &[u8], i: usize, max_depth: usize) -> Option<usize> {
    let mut open = 0usize;
    let mut j = i;
    while j < b.len() {
        match b[j] {
            b'"' => {
                j = string_end(b, j)?;
                continue;
            }
            b'\\' if matches!(b.get(j + 1), Some(b'"' | b'\\')) => j += 1,
            b'{' | b'[' => {
                open += 1;
                if open + 1 > max_depth {
                    return None;
                }
            }
            b'}' | b']' => {
                open -= 1;
                if open == 0 {
                    return Some(j + 1);
                }
            }
            _ => {}
        }
        j += 1;
    }
    None
}

/// Limits that never reject, for re-scanning what the codec itself produced: a merge may legitimately
/// add tags past `max_tags`, and re-serialization may spell a number longer than the client did.
pub fn relaxed() -> Limits {
    Limits::default()
        .max_depth(usize::MAX)
        .max_tags(usize::MAX)
        .max_tag_len(usize::MAX)
        .max_id_len(usize::MAX)
        .max_extra_entries(usize::MAX)
        .max_extra_bytes(usize::MAX)
        .max_member_bytes(usize::MAX)
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// Equality of JSON values that forgives the last-bit error of serde_json's default float parser:
/// without its `float_roundtrip` feature, a float it serialized may parse back one ulp away, so
/// metadata that went through `inject` can differ from the client's spelling in the last bit.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y
                || matches!((x.as_f64(), y.as_f64()), (Some(x), Some(y))
                    if (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs()))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// [`same`] for metadata.
pub fn same_metadata(a: Option<&RequestMetadata>, b: Option<&RequestMetadata>) -> bool {
    let value = |m: Option<&RequestMetadata>| serde_json::to_value(m).unwrap_or_default();
    same(&value(a), &value(b))
}

/// `v` (an object) with its `requesty` member (however spelled) set to `member`, or removed.
fn with_member(mut v: Value, member: Option<&RequestMetadata>) -> Value {
    if let Some(map) = v.as_object_mut() {
        match member {
            Some(m) => {
                // A member spelled otherwise keeps its spelling.
                let key = map
                    .keys()
                    .find(|key| key_reads_as_requesty(key))
                    .map_or_else(|| "requesty".to_owned(), String::clone);
                map.insert(key, serde_json::to_value(m).unwrap_or_default());
            }
            None => map.retain(|key, _| !key_reads_as_requesty(key)),
        }
    }
    v
}

/// Everything the codec promises about `input`, checked against the references and against itself.
/// `Err` describes the first broken promise.
pub fn check(input: &[u8]) -> Result<(), String> {
    if let Some(rest) = input.strip_prefix(BOM) {
        return check_bom(input, rest);
    }
    let unbounded = Limits::default().max_depth(usize::MAX);
    let got = codec::scan(input, &unbounded);
    let want = reference(input, usize::MAX);
    ensure!(
        agree(&got, &want),
        "the codec says {got:?}, the contract {want:?}"
    );
    let bounded = codec::scan(input, &Limits::default());
    let want_bounded = reference(input, Limits::default().depth());
    ensure!(
        agree(&bounded, &want_bounded),
        "with the default depth the codec says {bounded:?}, the contract {want_bounded:?}"
    );
    check_contract_against_serde(input, &want)?;
    check_model_and_stream(input, &got)?;
    let stripped = check_strip(input, &got)?;
    check_inject(input, &got, &unbounded)?;
    if let (Ok(scan), Some(stripped)) = (&got, stripped) {
        check_round_trip(input, scan, stripped)?;
    }
    Ok(())
}

/// UTF-8's byte order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A byte order mark at the start changes nothing but offsets: the body behind it reads, strips and
/// takes an injection exactly as it would alone, and the mark stays. Only one is skipped.
fn check_bom(input: &[u8], rest: &[u8]) -> Result<(), String> {
    let limits = Limits::default();
    let got = codec::scan(input, &limits);
    if rest.starts_with(BOM) {
        ensure!(
            matches!(&got, Ok(s) if s.kind() == BodyKind::NotObject),
            "a second byte order mark: the codec says {got:?}"
        );
        return Ok(());
    }
    let alone = codec::scan(rest, &limits);
    let shifted = |r: std::ops::Range<usize>| r.start + BOM.len()..r.end + BOM.len();
    match (&got, &alone) {
        (Ok(a), Ok(b)) => {
            ensure!(
                a.kind() == b.kind()
                    && a.metadata() == b.metadata()
                    && a.member_range() == b.member_range().map(shifted)
                    && a.model() == b.model()
                    && a.stream() == b.stream(),
                "behind a byte order mark the codec says {a:?}, alone {b:?}"
            );
            let stripped = codec::strip(Bytes::copy_from_slice(input), a);
            let alone_stripped = codec::strip(Bytes::copy_from_slice(rest), b);
            ensure!(
                stripped == [BOM, &alone_stripped[..]].concat(),
                "strip behind a byte order mark differs"
            );
        }
        (Err(a), Err(b)) => ensure!(a == b, "errors differ: {a:?} and {b:?}"),
        _ => return Err(format!("behind a byte order mark {got:?}, alone {alone:?}")),
    }
    let ours = RequestMetadata::new().tag("bom").user_id("u");
    let mut with_mark = Bytes::copy_from_slice(input);
    let mut without = Bytes::copy_from_slice(rest);
    let a = codec::inject(&mut with_mark, &ours, &limits);
    let b = codec::inject(&mut without, &ours, &limits);
    ensure!(
        format!("{a:?}") == format!("{b:?}") && with_mark == [BOM, &without[..]].concat(),
        "inject behind a byte order mark: {a:?} then {with_mark:?}, alone {b:?} then {without:?}"
    );
    check(rest)
}

/// The error for two `requesty` members (not for a field given twice inside one).
fn is_second_member(e: &MetadataError) -> bool {
    e.kind() == ErrorKind::Duplicate && e.param() == "requesty"
}

fn agree(got: &Result<Scan, MetadataError>, want: &Verdict) -> bool {
    match (want.kind, got) {
        (BodyKind::Object, Ok(s)) => {
            s.kind() == BodyKind::Object
                && s.member_range().is_some() == (want.requesty == 1)
                && (want.requesty == 1 || s.metadata().is_none())
                && want.requesty < 2
        }
        (BodyKind::Object, Err(e)) => (want.requesty >= 2) == is_second_member(e),
        (kind, Ok(s)) => s.kind() == kind,
        (_, Err(_)) => false,
    }
}

/// serde_json accepts what the contract accepts, and rejects it too unless the fault is where the
/// codec does not look.
fn check_contract_against_serde(input: &[u8], want: &Verdict) -> Result<(), String> {
    match serde_top(input) {
        Some(Top { object: false, .. }) => ensure!(
            want.kind == BodyKind::NotObject,
            "serde_json reads a non-object, the contract says {want:?}"
        ),
        Some(top) => ensure!(
            want.kind == BodyKind::Object && want.requesty == top.requesty,
            "serde_json reads {top:?}, the contract says {want:?}"
        ),
        None => {
            let nested_valid = || {
                want.nested
                    .iter()
                    .all(|r| serde_json::from_slice::<IgnoredAny>(&input[r.clone()]).is_ok())
            };
            ensure!(
                want.kind != BodyKind::Object || !comparable(input) || !nested_valid(),
                "serde_json rejects the body, the contract accepts it"
            );
        }
    }
    Ok(())
}

fn check_model_and_stream(input: &[u8], got: &Result<Scan, MetadataError>) -> Result<(), String> {
    if let (Ok(scan), Ok(v)) = (got, serde_json::from_slice::<Value>(input)) {
        if scan.kind() == BodyKind::Object {
            let model = v.get("model").and_then(Value::as_str);
            let stream = v.get("stream").and_then(Value::as_bool);
            ensure!(
                (scan.model(), scan.stream()) == (model, stream),
                "model/stream: codec {:?}, serde_json {:?}",
                (scan.model(), scan.stream()),
                (model, stream)
            );
        }
    }
    Ok(())
}

/// `extract`, `strip` on a shared buffer and `strip_in_place` agree and remove exactly the member
/// range; the result is the same object without `requesty`. Returns the stripped body of an object.
fn check_strip(input: &[u8], got: &Result<Scan, MetadataError>) -> Result<Option<Bytes>, String> {
    let unique = Bytes::copy_from_slice(input);
    let ptr = unique.as_ptr();
    let extracted = codec::extract(unique, &Limits::default().max_depth(usize::MAX));
    let (scan, out) = match (got, extracted) {
        (Err(e), Err(e2)) => {
            ensure!(e == &e2, "extract failed with {e2:?}, scan with {e:?}");
            return Ok(None);
        }
        (Ok(scan), Ok((out, scan2))) => {
            ensure!(scan == &scan2, "extract scanned {scan2:?}, scan {scan:?}");
            let want = match scan.member_range() {
                Some(r) => {
                    ensure!(
                        r.start <= r.end && r.end <= input.len(),
                        "range {r:?} out of bounds"
                    );
                    [&input[..r.start], &input[r.end..]].concat()
                }
                None => {
                    ensure!(out.as_ptr() == ptr, "a body without member was copied");
                    input.to_vec()
                }
            };
            ensure!(
                out == want,
                "stripped {out:?}, want {:?}",
                Bytes::from(want)
            );
            let shared = Bytes::copy_from_slice(input);
            let keep = shared.clone();
            ensure!(
                codec::strip(shared, scan) == out,
                "strip on a shared buffer differs"
            );
            ensure!(keep == input, "strip wrote into a shared buffer");
            let mut owned = BytesMut::from(input);
            codec::strip_in_place(&mut owned, scan);
            ensure!(owned == out, "strip_in_place differs");
            if scan.kind() != BodyKind::Object {
                return Ok(None);
            }
            (scan, out)
        }
        (got, extracted) => return Err(format!("scan {got:?} but extract {extracted:?}")),
    };
    let again = codec::scan(&out, &relaxed());
    ensure!(
        matches!(&again, Ok(s) if s.kind() == BodyKind::Object && s.member_range().is_none()
            && s.model() == scan.model() && s.stream() == scan.stream()),
        "the stripped body scans as {again:?}"
    );
    if let Some(top) = serde_top(input) {
        let want = Top {
            members: top.members - usize::from(scan.member_range().is_some()),
            requesty: 0,
            ..top
        };
        ensure!(
            serde_top(&out) == Some(want),
            "serde_json reads the stripped body as {:?}, want {want:?}",
            serde_top(&out)
        );
    }
    // The member is read strictly, so removing it never turns a body serde_json rejects into one it
    // accepts, or the other way round.
    ensure!(
        serde_top(input).is_some() == serde_top(&out).is_some(),
        "strip changed whether serde_json accepts the body"
    );
    match (
        serde_json::from_slice::<Value>(input),
        serde_json::from_slice::<Value>(&out),
    ) {
        (Ok(v), Ok(stripped)) => {
            ensure!(
                stripped == with_member(v, None),
                "the stripped body has other members"
            )
        }
        (Err(_), Err(_)) => {}
        (before, after) => {
            return Err(format!(
                "strip changed serde_json's verdict: {before:?} then {after:?}"
            ))
        }
    }
    Ok(Some(out))
}

/// Injecting fixed metadata: refused with the body untouched for non-objects and invalid members;
/// otherwise merged (the body's member winning) and the rest of the object unchanged.
fn check_inject(
    input: &[u8],
    got: &Result<Scan, MetadataError>,
    limits: &Limits,
) -> Result<(), String> {
    let ours = RequestMetadata::new()
        .tag("fuzz")
        .trace_id("t")
        .extra("k", 1);
    let mut body = Bytes::copy_from_slice(input);
    let result = codec::inject(&mut body, &ours, limits);
    let mut owned = BytesMut::from(input);
    let in_place = codec::inject_in_place(&mut owned, &ours, limits);
    ensure!(body == owned, "inject and inject_in_place differ");
    match (got, result, in_place) {
        (Err(e), Err(InjectError::Metadata(e2)), Err(InjectError::Metadata(_))) => {
            ensure!(e == &e2, "inject failed with {e2:?}, scan with {e:?}");
            ensure!(body == input, "a refused inject changed the body");
        }
        (Ok(scan), Err(InjectError::NotAnObject), Err(InjectError::NotAnObject))
            if scan.kind() != BodyKind::Object =>
        {
            ensure!(body == input, "a refused inject changed the body");
        }
        (Ok(scan), Ok(()), Ok(())) if scan.kind() == BodyKind::Object => {
            let merged = match scan.metadata() {
                Some(existing) => {
                    let mut merged = ours.clone().merged(existing.clone());
                    // Tags the member already has are kept in its order.
                    if merged.tags.len() == existing.tags.len() {
                        merged.tags.clone_from(&existing.tags);
                    }
                    merged
                }
                None => ours,
            };
            if scan.metadata() == Some(&merged) {
                ensure!(
                    body == input,
                    "inject of what the member holds changed the body"
                );
            }
            let again = codec::scan(&body, &relaxed());
            ensure!(
                matches!(&again, Ok(s) if same_metadata(s.metadata(), Some(&merged))),
                "after inject the body scans as {again:?}, want {merged:?}"
            );
            if let Ok(v) = serde_json::from_slice::<Value>(input) {
                // The member itself is checked above, as metadata: a rewrite may keep fields such as
                // `"origin_title":null` that serializing the metadata afresh would leave out.
                let after: Value =
                    serde_json::from_slice(&body).map_err(|e| format!("injected: {e}"))?;
                ensure!(
                    same(&with_member(after, None), &with_member(v, None)),
                    "inject changed other members"
                );
            }
        }
        (got, result, in_place) => {
            return Err(format!(
                "scan {got:?}, inject {result:?}, in place {in_place:?}"
            ))
        }
    }
    Ok(())
}

/// Injecting the metadata the scan found into the stripped body gives it back.
fn check_round_trip(input: &[u8], scan: &Scan, mut stripped: Bytes) -> Result<(), String> {
    let before = stripped.clone();
    let metadata = scan.metadata().cloned().unwrap_or_default();
    codec::inject(&mut stripped, &metadata, &relaxed()).map_err(|e| format!("re-inject: {e}"))?;
    if metadata.is_empty() {
        ensure!(stripped == before, "empty metadata changed the body");
        return Ok(());
    }
    let again = codec::scan(&stripped, &relaxed());
    ensure!(
        matches!(&again, Ok(s) if same_metadata(s.metadata(), Some(&metadata))),
        "strip then inject scans as {again:?}, want {metadata:?}"
    );
    if let Ok(v) = serde_json::from_slice::<Value>(input) {
        let after: Value = serde_json::from_slice(&stripped).map_err(|e| format!("{e}"))?;
        // The member comes back spelled `requesty`, however the original spelled it.
        let want = with_member(with_member(v, None), Some(&metadata));
        ensure!(
            same(&after, &want),
            "strip then inject: {after} is not the original"
        );
    }
    Ok(())
}
