//! Property tests of the body codec on generated JSON whose spelling (whitespace, escapes, number
//! forms, member order) is chosen here, so the byte-exact promises can be checked against the text.

mod codec_oracle;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::select;
use requesty_metadata::codec::{self, BodyKind};
use requesty_metadata::{Limits, RequestMetadata};
use serde_json::{Map, Value};
use std::ops::Range;

// ---- spelling ------------------------------------------------------------------------------------

fn ws() -> impl Strategy<Value = String> {
    prop_oneof![3 => Just(String::new()), 2 => "[ \t\r\n]{1,3}"]
}

fn any_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => proptest::char::range('a', 'z'),
        2 => proptest::char::range(' ', '~'),
        2 => select(vec![
            '"', '\\', '/', '\n', '\t', '\r', '\u{8}', '\u{c}', '\0', '\u{1f}', '\u{7f}', 'é', '日',
            '\u{2028}', '😀', '\u{10ffff}',
        ]),
    ]
}

/// `\uXXXX`, as a surrogate pair above the BMP, in upper or lower case hex.
fn push_u(out: &mut String, c: char, upper: bool) {
    let mut units = [0u16; 2];
    for unit in c.encode_utf16(&mut units) {
        if upper {
            out.push_str(&format!("\\u{unit:04X}"));
        } else {
            out.push_str(&format!("\\u{unit:04x}"));
        }
    }
}

/// Writes `c` inside a JSON string, escaped one of the legal ways `k` picks (raw when allowed).
fn push_char(out: &mut String, c: char, k: u8) {
    let short = match c {
        '"' => Some("\\\""),
        '\\' => Some("\\\\"),
        '\n' => Some("\\n"),
        '\t' => Some("\\t"),
        '\r' => Some("\\r"),
        '\u{8}' => Some("\\b"),
        '\u{c}' => Some("\\f"),
        '/' if k % 3 == 1 => Some("\\/"),
        _ => None,
    };
    let must_escape = c < ' ' || c == '"' || c == '\\';
    match short {
        Some(s) if k.is_multiple_of(2) || !must_escape => out.push_str(s),
        _ if must_escape || k == 0 => push_u(out, c, k % 4 == 1),
        _ => out.push(c),
    }
}

/// A JSON string: what it decodes to and how it is spelled.
#[derive(Clone, Debug)]
struct Str {
    text: String,
    raw: String,
}

fn spell(text: &str, ks: &[u8]) -> String {
    let mut raw = String::from("\"");
    for (i, c) in text.chars().enumerate() {
        push_char(&mut raw, c, ks.get(i).copied().unwrap_or(1));
    }
    raw.push('"');
    raw
}

fn string() -> impl Strategy<Value = Str> {
    proptest::collection::vec((any_char(), 0u8..6), 0..8).prop_map(|chars| {
        let text: String = chars.iter().map(|(c, _)| c).collect();
        let ks: Vec<u8> = chars.iter().map(|(_, k)| *k).collect();
        Str {
            raw: spell(&text, &ks),
            text,
        }
    })
}

/// A fixed name, usually plain, sometimes with some of its letters as `\u` escapes.
fn name(text: &'static str) -> impl Strategy<Value = String> {
    (
        prop::bool::weighted(0.25),
        proptest::collection::vec(0u8..6, 16),
    )
        .prop_map(move |(esc, ks)| {
            if !esc {
                return format!("\"{text}\"");
            }
            // An escape on every letter whose pick is even, and always on the first.
            let ks: Vec<u8> = (0..text.len())
                .map(|i| if i == 0 || ks[i] % 2 == 0 { 0 } else { 2 })
                .collect();
            spell(text, &ks)
        })
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "0",
            "-0",
            "1.0e0",
            "-0.0E+00",
            "1E2",
            "1e-7",
            "0.1",
            "5e-324",
            "1.7976931348623157e308",
            "123456789012345678901234567890",
            "-98765432109876543210.5e-3",
            "18446744073709551616",
            "-9223372036854775809",
            "1E+99",
        ])
        .prop_map(String::from),
        "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,6})?([eE][+-]?[0-9]{1,2})?",
    ]
}

/// Joins `items` inside `open`/`close` with commas; an empty container keeps its whitespace.
fn container(open: char, items: Vec<String>, empty_ws: &str, close: char) -> String {
    if items.is_empty() {
        format!("{open}{empty_ws}{close}")
    } else {
        format!("{open}{}{close}", items.join(","))
    }
}

/// One member: whitespace, key, whitespace, colon, whitespace, value, whitespace.
type Member = (String, String, String, String, String, String);

fn member_text((a, key, b, c, value, d): &Member) -> String {
    format!("{a}{key}{b}:{c}{value}{d}")
}

fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        select(vec!["null", "true", "false"]).prop_map(String::from),
        number(),
        string().prop_map(|s| s.raw),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            (
                proptest::collection::vec((ws(), inner.clone(), ws()), 0..4),
                ws()
            )
                .prop_map(|(items, e)| {
                    let items = items
                        .into_iter()
                        .map(|(a, v, b)| format!("{a}{v}{b}"))
                        .collect();
                    container('[', items, &e, ']')
                }),
            (proptest::collection::vec(member(inner), 0..4), ws()).prop_map(|(members, e)| {
                container('{', members.iter().map(member_text).collect(), &e, '}')
            }),
        ]
    })
}

fn member(value: impl Strategy<Value = String>) -> impl Strategy<Value = Member> {
    let key = string().prop_map(|k| k.raw);
    (ws(), key, ws(), ws(), value, ws())
}

// ---- metadata ------------------------------------------------------------------------------------

const KNOWN: [&str; 6] = [
    "tags",
    "user_id",
    "trace_id",
    "extra",
    "origin_referer",
    "origin_title",
];

/// A string field: absent, `null`, or a string.
fn text_field() -> impl Strategy<Value = Option<Option<Str>>> {
    prop_oneof![2 => Just(None), 1 => Just(Some(None)), 3 => string().prop_map(|s| Some(Some(s)))]
}

fn entries() -> impl Strategy<Value = Vec<(Str, String)>> {
    proptest::collection::vec((string(), value()), 0..4)
}

/// Metadata spelled as a `requesty` value with random field order, key spelling and whitespace,
/// and the [`RequestMetadata`] it must parse to.
fn metadata() -> impl Strategy<Value = (String, RequestMetadata)> {
    let names = (
        name("tags"),
        name("user_id"),
        name("trace_id"),
        name("extra"),
        name("origin_title"),
    );
    (
        proptest::option::weighted(0.7, proptest::collection::vec((ws(), string(), ws()), 0..5)),
        (text_field(), text_field(), text_field()),
        (proptest::option::weighted(0.6, entries()), entries()),
        names,
        proptest::collection::vec((ws(), ws(), ws(), ws()), 8),
        proptest::collection::vec(any::<u32>(), 8),
        ws(),
    )
        .prop_map(
            |(tags, (user, trace, title), (extra, other), names, spaces, order, empty_ws)| {
                let mut meta = RequestMetadata::new();
                let mut fields: Vec<(String, String)> = Vec::new();
                if let Some(tags) = tags {
                    let items = tags
                        .iter()
                        .map(|(a, t, b)| format!("{a}{}{b}", t.raw))
                        .collect();
                    fields.push((names.0.clone(), container('[', items, "", ']')));
                    for (_, t, _) in tags {
                        meta = meta.tag(t.text);
                    }
                }
                for (field, name, slot) in [
                    (user, &names.1, &mut meta.user_id),
                    (trace, &names.2, &mut meta.trace_id),
                    (title, &names.4, &mut meta.origin_title),
                ] {
                    if let Some(value) = field {
                        fields.push((
                            name.clone(),
                            value.as_ref().map_or("null".into(), |s| s.raw.clone()),
                        ));
                        *slot = value.map(|s| s.text);
                    }
                }
                if let Some(extra) = extra {
                    let unique = dedup(extra, |_| true);
                    let items = unique
                        .iter()
                        .map(|(k, v)| format!("{}:{v}", k.raw))
                        .collect();
                    fields.push((names.3.clone(), container('{', items, "", '}')));
                    meta.extra = parsed(&unique);
                }
                let unique = dedup(other, |k| !KNOWN.contains(&k));
                fields.extend(unique.iter().map(|(k, v)| (k.raw.clone(), v.clone())));
                meta.other = parsed(&unique);
                // Shuffle the fields by the random keys.
                let mut keyed: Vec<_> = fields.into_iter().zip(order.iter().cycle()).collect();
                keyed.sort_by_key(|(_, k)| **k);
                let items = keyed
                    .into_iter()
                    .zip(spaces.iter().cycle())
                    .map(|(((key, value), _), (a, b, c, d))| format!("{a}{key}{b}:{c}{value}{d}"))
                    .collect();
                (container('{', items, &empty_ws, '}'), meta)
            },
        )
}

/// Keeps the first entry for each decoded key that `keep` accepts.
fn dedup(entries: Vec<(Str, String)>, keep: impl Fn(&str) -> bool) -> Vec<(Str, String)> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for (k, v) in entries {
        if keep(&k.text) && !seen.contains(&k.text) {
            seen.push(k.text.clone());
            out.push((k, v));
        }
    }
    out
}

fn parsed(entries: &[(Str, String)]) -> Map<String, Value> {
    entries
        .iter()
        .map(|(k, v)| (k.text.clone(), serde_json::from_str(v).unwrap()))
        .collect()
}

// ---- bodies --------------------------------------------------------------------------------------

/// A generated body and what is known about its `requesty` member.
#[derive(Clone, Debug)]
struct Body {
    text: String,
    /// The member's key start to value end, when present.
    member: Option<Range<usize>>,
    /// What the member must parse to (`None` for `null`).
    metadata: Option<RequestMetadata>,
    /// How many other members the top-level object has.
    others: usize,
}

/// Where the `requesty` member sits in its text (offset of the key, length up to the value's end)
/// and what it parses to.
type Found = (usize, usize, Option<RequestMetadata>);

fn requesty_value() -> impl Strategy<Value = (String, Option<RequestMetadata>)> {
    prop_oneof![
        1 => Just(("null".to_owned(), None)),
        6 => metadata().prop_map(|(raw, meta)| (raw, Some(meta))),
    ]
}

fn body() -> impl Strategy<Value = Body> {
    let model = prop_oneof![string().prop_map(|s| s.raw), value(),];
    let stream = select(vec!["true", "false", "null", "1", "\"yes\""]).prop_map(String::from);
    (
        proptest::collection::vec(member(value()), 0..6),
        proptest::option::weighted(0.5, (name("model"), model)),
        proptest::option::weighted(0.3, (name("stream"), stream)),
        proptest::option::weighted(0.8, (name("requesty"), requesty_value())),
        (ws(), ws(), ws(), ws()),
        (any::<prop::sample::Index>(), ws(), ws(), ws()),
    )
        .prop_map(
            |(mut members, model, stream, requesty, spaces, (at, lead, trail, empty_ws))| {
                for (key, value) in [model, stream].into_iter().flatten() {
                    members.push((
                        String::new(),
                        key,
                        String::new(),
                        String::new(),
                        value,
                        String::new(),
                    ));
                }
                // A random key that happens to decode to the name would be a second member.
                for m in &mut members {
                    if serde_json::from_str::<String>(&m.1)
                        .is_ok_and(|k| codec_oracle::reads_as_requesty(k.chars().map(u32::from)))
                    {
                        m.1 = "\"requesty_\"".into();
                    }
                }
                let others = members.len();
                let mut texts: Vec<(String, Option<Found>)> =
                    members.iter().map(|m| (member_text(m), None)).collect();
                if let Some((key, (value, meta))) = requesty {
                    let (a, b, c, d) = spaces;
                    let len = key.len() + b.len() + 1 + c.len() + value.len();
                    let found = Some((a.len(), len, meta));
                    texts.insert(
                        at.index(others + 1),
                        (format!("{a}{key}{b}:{c}{value}{d}"), found),
                    );
                }
                let mut body = Body {
                    text: lead,
                    member: None,
                    metadata: None,
                    others,
                };
                body.text.push('{');
                for (i, (t, found)) in texts.iter().enumerate() {
                    if i > 0 {
                        body.text.push(',');
                    }
                    if let Some((skip, len, meta)) = found {
                        let start = body.text.len() + skip;
                        body.member = Some(start..start + len);
                        body.metadata = meta.clone();
                    }
                    body.text.push_str(t);
                }
                if texts.is_empty() {
                    body.text.push_str(&empty_ws);
                }
                body.text.push('}');
                body.text.push_str(&trail);
                body
            },
        )
}

// ---- properties ----------------------------------------------------------------------------------

/// Pieces of members, mostly well-formed, for member-shaped soup.
const KEYS: &[&str] = &[
    r#""requesty""#,
    r#""requesty""#,
    r#""requ\u0065sty""#,
    r#""Requesty""#,
    r#""requesty\u0000""#,
    r#""model""#,
    r#""m\u006Fdel""#,
    r#""stream""#,
    r#""a""#,
    r#""""#,
    r#""\ud800""#,
    r#""requ\qesty""#,
    r#""a"#,
    "requesty",
    "1",
];
const COLONS: &[&str] = &[":", ":", " : ", "\t:\n", "", "::"];
const VALUES: &[&str] = &[
    r#"{"tags":["a"]}"#,
    r#"{"tags":["a"]}"#,
    r#"{"tags":1}"#,
    "null",
    "1",
    r#""m""#,
    "true",
    "[1,{}]",
    "{}",
    r#"{"user_id":"u","extra":{"k":[1e5,-0]}}"#,
    "01",
    r#""\u00e9""#,
    r#""\q""#,
    "\"",
    "-",
    "1e400",
    r#"{"x":1e400}"#,
    r#"{"tags":["a"],"t\u0061gs":[]}"#,
    "[",
    "{",
    "]",
    "\"a\u{1}\"",
    "tru",
];
const SEPARATORS: &[&str] = &[",", ",", ",", " ,\r\n", "", ",,", "}", "]"];
const CLOSINGS: &[&str] = &["}", "}", " }\n", "", "}}", "]", "} x"];

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn without_requesty(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("requesty");
    v
}

proptest! {
    #![proptest_config(config(384))]

    /// (a) and (b): the stripped body is the input's object without `requesty`, and only the member
    /// with one comma and whitespace is gone.
    #[test]
    fn strip_removes_exactly_the_member(body in body()) {
        let input = body.text.as_bytes();
        let original: Value = serde_json::from_slice(input).unwrap();
        let (out, scan) = codec::extract(Bytes::copy_from_slice(input), &Limits::default()).unwrap();
        prop_assert_eq!(scan.kind(), BodyKind::Object);
        prop_assert_eq!(scan.metadata(), body.metadata.as_ref());
        let stripped: Value = serde_json::from_slice(&out).unwrap();
        prop_assert_eq!(stripped, without_requesty(original.clone()));
        match (scan.member_range(), body.member) {
            (None, None) => prop_assert_eq!(&out[..], input),
            (Some(r), Some(m)) => {
                prop_assert_eq!(&out[..], &[&input[..r.start], &input[r.end..]].concat()[..]);
                prop_assert!(r.start <= m.start && m.end <= r.end, "{:?} does not cover {:?}", r, m);
                let around = [&input[r.start..m.start], &input[m.end..r.end]].concat();
                let commas = around.iter().filter(|&&b| b == b',').count();
                prop_assert!(around.iter().all(|b| b" \t\r\n,".contains(b)), "{:?}", around);
                prop_assert_eq!(commas, usize::from(body.others > 0));
            }
            (r, m) => prop_assert!(false, "range {:?}, member {:?}", r, m),
        }
        prop_assert_eq!(codec_oracle::check(input), Ok(()), "{:?}", body.text);
    }

    /// (c): injecting the metadata into the stripped body gives the original object back (with the
    /// member last, and `null` fields or repeated tags in their canonical form).
    #[test]
    fn strip_then_inject_restores_the_object(body in body()) {
        let input = Bytes::from(body.text.clone());
        let original: Value = serde_json::from_slice(&input).unwrap();
        let (mut out, mut scan) = codec::extract(input, &Limits::default()).unwrap();
        let metadata = scan.take_metadata().unwrap_or_default();
        codec::inject(&mut out, &metadata, &Limits::default()).unwrap();
        let mut want = without_requesty(original.clone());
        if !metadata.is_empty() {
            want["requesty"] = serde_json::to_value(&metadata).unwrap();
        }
        let after: Value = serde_json::from_slice(&out).unwrap();
        prop_assert!(codec_oracle::same(&after, &want), "{} != {}", after, want);
        // Metadata spelled canonically comes back as the very same object.
        if original.get("requesty") == want.get("requesty") {
            prop_assert!(codec_oracle::same(&after, &original), "{} != {}", after, original);
        }
    }

    /// (d): arbitrary bytes never panic and agree with serde_json.
    #[test]
    fn arbitrary_bytes_agree_with_serde_json(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        prop_assert_eq!(codec_oracle::check(&input), Ok(()), "{:?}", String::from_utf8_lossy(&input));
    }

    /// (d) on member-shaped soup, which reaches far deeper into the grammar than random bytes.
    #[test]
    fn member_soup_agrees_with_serde_json(
        members in proptest::collection::vec(
            (select(KEYS), select(COLONS), select(VALUES), select(SEPARATORS)),
            0..6,
        ),
        closing in select(CLOSINGS),
    ) {
        let mut input = String::from("{");
        for (i, (key, colon, value, separator)) in members.iter().enumerate() {
            if i > 0 {
                input.push_str(separator);
            }
            input.push_str(&format!("{key}{colon}{value}"));
        }
        input.push_str(closing);
        prop_assert_eq!(codec_oracle::check(input.as_bytes()), Ok(()), "{:?}", input);
    }

    /// (d) on valid bodies behind one or two byte order marks, which a parser may skip: the codec
    /// reads behind one exactly as without it.
    #[test]
    fn bodies_behind_a_byte_order_mark_read_as_without_it(body in body(), marks in 1usize..3) {
        let mut input = b"\xEF\xBB\xBF".repeat(marks);
        input.extend_from_slice(body.text.as_bytes());
        prop_assert_eq!(codec_oracle::check(&input), Ok(()), "{:?}", String::from_utf8_lossy(&input));
        let scan = codec::scan(&input, &Limits::default()).unwrap();
        prop_assert_eq!(scan.member_range().is_some(), marks == 1 && body.member.is_some());
    }

    /// (d) on valid bodies with one byte changed, inserted or removed, or cut short.
    #[test]
    fn mutated_bodies_agree_with_serde_json(
        body in body(),
        at in any::<prop::sample::Index>(),
        byte in prop_oneof![any::<u8>(), select(b"{}[]:,\"\\ 0-eE.nt".to_vec())],
        how in 0u8..4,
    ) {
        let mut input = body.text.into_bytes();
        let i = at.index(input.len() + 1);
        match how {
            0 => input.truncate(i),
            1 => input.insert(i, byte),
            _ if i == input.len() => input.push(byte),
            2 => input[i] = byte,
            _ => {
                input.remove(i);
            }
        }
        prop_assert_eq!(codec_oracle::check(&input), Ok(()), "{:?}", String::from_utf8_lossy(&input));
    }
}

/// The fuzz seeds (edge cases: deep nesting, huge numbers, lone surrogates, invalid UTF-8, a BOM,
/// duplicate and escaped keys) pass the same check.
#[test]
fn fuzz_seeds_pass_the_differential_check() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/codec");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let input = std::fs::read(&path).unwrap();
        assert_eq!(codec_oracle::check(&input), Ok(()), "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 12);
}
