//! One test per rule of the body codec, through its public API.

use bytes::{Bytes, BytesMut};
use requesty_metadata::codec::{self, BodyKind, InjectError, Scan};
use requesty_metadata::{ErrorKind, Limits, MetadataError, RequestMetadata};
use serde_json::{json, Value};

fn limits() -> Limits {
    Limits::default()
}

/// Scans and strips `body` (a unique buffer), returning the scan and the stripped text.
fn run(body: &str) -> (Scan, String) {
    let (out, scan) = codec::extract(Bytes::from(body.to_owned()), &limits())
        .unwrap_or_else(|e| panic!("{body}: {e}"));
    (scan, String::from_utf8(out.to_vec()).unwrap())
}

fn error(body: &str) -> MetadataError {
    error_with(body, &limits())
}

fn error_with(body: &str, limits: &Limits) -> MetadataError {
    match codec::scan(body.as_bytes(), limits) {
        Ok(scan) => panic!("{body}: expected an error, got {scan:?}"),
        Err(e) => e,
    }
}

fn kind(body: &[u8]) -> BodyKind {
    kind_with(body, &limits())
}

fn kind_with(body: &[u8], limits: &Limits) -> BodyKind {
    let scan = codec::scan(body, limits).unwrap();
    if scan.kind() != BodyKind::Object {
        assert_eq!(scan.metadata(), None);
        assert_eq!(scan.member_range(), None);
        assert_eq!(scan.model(), None);
        assert_eq!(scan.stream(), None);
    }
    scan.kind()
}

/// `body` comes back from `extract` as the very same allocation, and `strip_in_place` leaves it alone.
fn assert_untouched(body: &[u8]) {
    let input = Bytes::copy_from_slice(body);
    let ptr = input.as_ptr();
    let (out, scan) = codec::extract(input, &limits()).unwrap();
    assert_eq!(scan.member_range(), None);
    assert_eq!(out.as_ptr(), ptr, "{}", String::from_utf8_lossy(body));
    assert_eq!(out, body);
    let mut owned = BytesMut::from(body);
    let ptr = owned.as_ptr();
    codec::strip_in_place(&mut owned, &scan);
    assert_eq!((owned.as_ptr(), &owned[..]), (ptr, body));
}

fn value(text: &[u8]) -> Value {
    serde_json::from_slice(text).unwrap()
}

fn without_requesty(text: &str) -> Value {
    let mut v = value(text.as_bytes());
    v.as_object_mut().unwrap().remove("requesty");
    v
}

fn meta(json: Value) -> RequestMetadata {
    serde_json::from_value(json).unwrap()
}

#[test]
fn requesty_inside_a_string_or_nested_object_is_not_the_member() {
    for body in [
        r#"{"note":"\"requesty\": {\"tags\":[\"x\"]}","model":"m"}"#,
        r#"{"a":{"requesty":{"tags":["y"]}},"b":[{"requesty":1},"requesty"]}"#,
        r#"{"messages":[{"role":"user","content":"requesty"}],"requesty_x":1,"request":3}"#,
        r#"{"requesty\n":1,"requ\\esty":2," requesty":3}"#,
    ] {
        let scan = codec::scan(body.as_bytes(), &limits()).unwrap();
        assert_eq!(scan.kind(), BodyKind::Object);
        assert_eq!(scan.metadata(), None);
        assert_untouched(body.as_bytes());
    }
}

#[test]
fn a_key_spelled_with_escapes_is_the_member() {
    for key in [
        r"requ\u0065sty",
        r"\u0072equesty",
        r"r\u0065qu\u0065st\u0079",
        r"\u0072\u0065\u0071\u0075\u0065\u0073\u0074\u0079",
    ] {
        let body = format!(r#"{{"a":1,"{key}":{{"tags":["x"]}},"b":2}}"#);
        let (scan, out) = run(&body);
        assert_eq!(scan.metadata().unwrap().tags, ["x"], "{body}");
        assert_eq!(out, r#"{"a":1,"b":2}"#);
    }
}

#[test]
fn two_members_are_a_duplicate_error() {
    for body in [
        r#"{"requesty":{},"requesty":{}}"#,
        r#"{"requesty":{"tags":["a"]},"model":"m","requesty":null}"#,
        r#"{"requesty":null,"requ\u0065sty":{"tags":["a"]}}"#,
        r#"{"\u0072equesty":1,"requesty":"not even valid metadata"}"#,
    ] {
        let e = error(body);
        assert_eq!(
            (e.kind(), e.param()),
            (ErrorKind::Duplicate, "requesty"),
            "{body}"
        );
        assert!(codec::extract(Bytes::from(body), &limits()).is_err());
        let mut bytes = Bytes::from(body);
        let injected = codec::inject(&mut bytes, &RequestMetadata::new().tag("t"), &limits());
        assert!(
            matches!(injected, Err(InjectError::Metadata(e)) if e.kind() == ErrorKind::Duplicate)
        );
        assert_eq!(bytes, body.as_bytes());
    }
}

/// Parsers that do not compare keys byte for byte still read these keys as `requesty`: Go's
/// `encoding/json` matches struct fields with Unicode case folding (`Requesty`, `REQUESTY`, and
/// `reque\u017fty`, whose long s folds to `s`), cJSON's `cJSON_GetObjectItem` ignores ASCII case,
/// and C parsers that keep keys as C strings (cJSON, json-c) end `requesty\u0000...` at its NUL. A
/// key any of them reads as the member is the member: read and stripped, and beside another one a
/// duplicate.
#[test]
fn a_key_a_lenient_parser_reads_as_requesty_is_the_member() {
    for key in [
        "Requesty",
        "REQUESTY",
        r"Requ\u0065sty",
        "reque\u{17f}ty",
        r"reque\u017fty",
        r"requesty\u0000",
        r"requesty\u0000x",
        r"REQUESTY\u0000",
    ] {
        let body = format!(r#"{{"a":1,"{key}":{{"user_id":"mallory"}},"b":2}}"#);
        let (scan, out) = run(&body);
        assert_eq!(
            scan.metadata().and_then(|m| m.user_id.as_deref()),
            Some("mallory"),
            "{body}"
        );
        assert_eq!(out, r#"{"a":1,"b":2}"#, "{body}");
        let twice =
            format!(r#"{{"requesty":{{"user_id":"alice"}},"{key}":{{"user_id":"mallory"}}}}"#);
        let e = error(&twice);
        assert_eq!(
            (e.kind(), e.param()),
            (ErrorKind::Duplicate, "requesty"),
            "{twice}"
        );
    }
    // Keys that no parser reads as `requesty` stay ordinary keys.
    for key in [
        "requestyx",
        "requesty ",
        r"\u0000requesty",
        r"reque\u0000sty",
        "Requestx",
        "request\u{17f}",
    ] {
        let body = format!(r#"{{"{key}":{{"user_id":"x"}},"requesty":{{"tags":["t"]}}}}"#);
        let (scan, out) = run(&body);
        assert_eq!(scan.metadata().unwrap().tags, ["t"], "{body}");
        assert_eq!(out, format!(r#"{{"{key}":{{"user_id":"x"}}}}"#));
    }
}

/// A member a lenient parser reads as `requesty` is the caller's own: inject merges into it, and
/// spells its key `requesty` when it rewrites it, since a parser that compares keys byte for byte
/// (serde's derived structs, Python's `dict`) reads no other spelling, and what was added would not
/// arrive.
#[test]
fn inject_into_a_member_spelled_otherwise_spells_it_requesty() {
    for key in ["Requesty", r"REQU\u0045STY", r"requesty\u0000x"] {
        let body = format!(r#"{{"model":"m","{key}" : {{"user_id":"u"}},"n":1}}"#);
        let mut out = Bytes::from(body.clone());
        codec::inject(&mut out, &RequestMetadata::new().tag("ours"), &limits()).unwrap();
        let sent = value(&out);
        assert_eq!(
            sent,
            json!({"model":"m","requesty":{"user_id":"u","tags":["ours"]},"n":1}),
            "{body} became {out:?}"
        );
        let again = codec::scan(&out, &limits()).unwrap();
        assert_eq!(again.metadata().unwrap().tags, ["ours"]);
        // What the member already holds leaves the body as it is.
        let mut same = Bytes::from(body.clone());
        codec::inject(&mut same, &RequestMetadata::new().user_id("u"), &limits()).unwrap();
        assert_eq!(same, body.as_bytes());
    }
}

#[test]
fn a_duplicate_in_a_malformed_body_is_passed_through() {
    assert_eq!(
        kind(br#"{"requesty":{},"requesty":{}"#),
        BodyKind::Malformed
    );
    assert_eq!(
        kind(br#"{"requesty":{},"requesty":{}} x"#),
        BodyKind::Malformed
    );
}

#[test]
fn a_null_member_has_no_metadata_but_is_stripped() {
    let (scan, out) = run(r#"{"a":1, "requesty" : null }"#);
    assert_eq!(scan.metadata(), None);
    assert!(scan.member_range().is_some());
    assert_eq!(out, r#"{"a":1 }"#);
    assert_eq!(run(r#"{"requesty":null}"#).1, "{}");
}

#[test]
fn a_byte_order_mark_does_not_hide_the_member() {
    // RFC 8259 lets a parser ignore the mark: one that does reads this member.
    let (scan, out) = run("\u{feff}{\"model\":\"m\",\"requesty\":{\"tags\":[\"a\"]}}");
    assert_eq!(scan.kind(), BodyKind::Object);
    assert_eq!(scan.metadata().unwrap().tags, ["a"]);
    assert_eq!(scan.model(), Some("m"));
    assert_eq!(out, "\u{feff}{\"model\":\"m\"}");
    let mut body = Bytes::from_static(b"\xEF\xBB\xBF {}");
    codec::inject(&mut body, &RequestMetadata::new().tag("b"), &limits()).unwrap();
    assert_eq!(&body[..], b"\xEF\xBB\xBF {\"requesty\":{\"tags\":[\"b\"]}}");
    // Only at the very start, and only one.
    assert_untouched(b" \xEF\xBB\xBF{\"requesty\":{}}");
    assert_untouched(b"\xEF\xBB\xBF\xEF\xBB\xBF{\"requesty\":{}}");
}

#[test]
fn a_member_that_is_not_an_object_is_invalid() {
    for member in [
        "1",
        r#""tags""#,
        "[]",
        r#"[{"tags":["a"]}]"#,
        "true",
        "false",
        "-0.5e1",
    ] {
        let e = error(&format!(r#"{{"requesty":{member}}}"#));
        assert_eq!(
            (e.kind(), e.param()),
            (ErrorKind::InvalidType, "requesty"),
            "{member}"
        );
    }
}

#[test]
fn field_types_are_checked() {
    let cases = [
        (r#"{"tags":"a"}"#, "requesty.tags"),
        (r#"{"tags":[1]}"#, "requesty.tags"),
        (r#"{"tags":["a",null]}"#, "requesty.tags"),
        (r#"{"tags":{"a":"b"}}"#, "requesty.tags"),
        (r#"{"tags":[["a"]]}"#, "requesty.tags"),
        (r#"{"user_id":1}"#, "requesty.user_id"),
        (r#"{"user_id":["u"]}"#, "requesty.user_id"),
        (r#"{"trace_id":true}"#, "requesty.trace_id"),
        (r#"{"trace_id":{}}"#, "requesty.trace_id"),
        (r#"{"extra":[]}"#, "requesty.extra"),
        (r#"{"extra":"k=v"}"#, "requesty.extra"),
        (r#"{"extra":1}"#, "requesty.extra"),
        (r#"{"origin_referer":2}"#, "requesty.origin_referer"),
        (r#"{"t\u0061gs":"a"}"#, "requesty.tags"),
    ];
    for (member, param) in cases {
        let e = error(&format!(r#"{{"model":"m","requesty":{member}}}"#));
        assert_eq!(
            (e.kind(), e.param()),
            (ErrorKind::InvalidType, param),
            "{member}"
        );
    }
    // `null` counts as absent for every field.
    let (scan, _) =
        run(r#"{"requesty":{"tags":null,"user_id":null,"trace_id":null,"extra":null}}"#);
    assert_eq!(scan.metadata(), Some(&RequestMetadata::new()));
}

#[test]
fn a_field_given_twice_inside_the_member_is_a_duplicate() {
    for (member, param) in [
        (r#"{"tags":[],"tags":["a"]}"#, "requesty.tags"),
        (r#"{"user_id":"a","user_\u0069d":"b"}"#, "requesty.user_id"),
        (r#"{"future":1,"future":2}"#, "requesty.future"),
    ] {
        let e = error(&format!(r#"{{"requesty":{member}}}"#));
        assert_eq!(
            (e.kind(), e.param()),
            (ErrorKind::Duplicate, param),
            "{member}"
        );
    }
}

fn strings(n: usize, len: usize) -> String {
    let items: Vec<String> = (0..n).map(|i| format!(r#""{:0>len$}""#, i)).collect();
    format!("[{}]", items.join(","))
}

fn extra_entries(n: usize) -> String {
    let items: Vec<String> = (0..n).map(|i| format!(r#""k{i}":{i}"#)).collect();
    format!("{{{}}}", items.join(","))
}

/// The member `{"k":"xxx…"}` (as `extra`) or `{"note":"xxx…"}` (as the whole member) of exactly `len`
/// bytes.
fn sized_object(key: &str, len: usize) -> String {
    let pad = len - key.len() - 7;
    format!(r#"{{"{key}":"{}"}}"#, "x".repeat(pad))
}

#[test]
fn every_default_limit_is_enforced_at_its_boundary() {
    let d = limits();
    let cases: Vec<(String, String, &str, ErrorKind)> = vec![
        (
            format!(r#"{{"tags":{}}}"#, strings(d.tags(), 3)),
            format!(r#"{{"tags":{}}}"#, strings(d.tags() + 1, 3)),
            "requesty.tags",
            ErrorKind::TooMany,
        ),
        (
            format!(r#"{{"tags":["a",{}]}}"#, json!("x".repeat(d.tag_len()))),
            format!(r#"{{"tags":["a",{}]}}"#, json!("x".repeat(d.tag_len() + 1))),
            "requesty.tags",
            ErrorKind::TooLong,
        ),
        (
            // Lengths count UTF-8 bytes of the decoded text, not bytes as sent.
            format!(r#"{{"tags":["{}"]}}"#, r"\u00e9".repeat(d.tag_len() / 2)),
            format!(r#"{{"tags":["{}"]}}"#, "é".repeat(d.tag_len() / 2 + 1)),
            "requesty.tags",
            ErrorKind::TooLong,
        ),
        (
            format!(r#"{{"user_id":"{}"}}"#, "u".repeat(d.id_len())),
            format!(r#"{{"user_id":"{}"}}"#, "u".repeat(d.id_len() + 1)),
            "requesty.user_id",
            ErrorKind::TooLong,
        ),
        (
            format!(r#"{{"trace_id":"{}"}}"#, "t".repeat(d.id_len())),
            format!(r#"{{"trace_id":"{}"}}"#, "t".repeat(d.id_len() + 1)),
            "requesty.trace_id",
            ErrorKind::TooLong,
        ),
        (
            format!(r#"{{"origin_referer":"{}"}}"#, "r".repeat(d.origin_len())),
            format!(
                r#"{{"origin_referer":"{}"}}"#,
                "r".repeat(d.origin_len() + 1)
            ),
            "requesty.origin_referer",
            ErrorKind::TooLong,
        ),
        (
            format!(r#"{{"origin_title":"{}"}}"#, "t".repeat(d.origin_len())),
            format!(r#"{{"origin_title":"{}"}}"#, "t".repeat(d.origin_len() + 1)),
            "requesty.origin_title",
            ErrorKind::TooLong,
        ),
        (
            format!(r#"{{"extra":{}}}"#, extra_entries(d.extra_entries())),
            format!(r#"{{"extra":{}}}"#, extra_entries(d.extra_entries() + 1)),
            "requesty.extra",
            ErrorKind::TooMany,
        ),
        (
            format!(r#"{{"extra":{}}}"#, sized_object("k", d.extra_bytes())),
            format!(r#"{{"extra":{}}}"#, sized_object("k", d.extra_bytes() + 1)),
            "requesty.extra",
            ErrorKind::TooLong,
        ),
        (
            sized_object("note", d.member_bytes()),
            sized_object("note", d.member_bytes() + 1),
            "requesty",
            ErrorKind::TooLong,
        ),
    ];
    for (ok, over, param, rule) in cases {
        let (scan, out) = run(&format!(r#"{{"model":"m","requesty":{ok}}}"#));
        assert!(scan.metadata().is_some(), "{param} at its limit");
        assert_eq!(out, r#"{"model":"m"}"#);
        let e = error(&format!(r#"{{"model":"m","requesty":{over}}}"#));
        assert_eq!((e.kind(), e.param()), (rule, param));
    }
}

#[test]
fn configured_limits_are_enforced() {
    let l = Limits::default()
        .max_tags(2)
        .max_tag_len(3)
        .max_id_len(2)
        .max_origin_len(3)
        .max_extra_entries(1)
        .max_extra_bytes(13)
        .max_member_bytes(57);
    let ok = r#"{"requesty":{"tags":["abc","d"],"user_id":"ab","extra":{"k":"12345"}}}"#;
    assert!(codec::scan(ok.as_bytes(), &l).unwrap().metadata().is_some());
    // `ok`'s member is exactly 57 bytes.
    let long_member = sized_object("note", 58);
    for (member, param, rule) in [
        (
            r#"{"tags":["a","b","c"]}"#,
            "requesty.tags",
            ErrorKind::TooMany,
        ),
        // Counted as sent: repeats too, so reading a long array is bounded.
        (
            r#"{"tags":["a","a","a"]}"#,
            "requesty.tags",
            ErrorKind::TooMany,
        ),
        (r#"{"tags":["abcd"]}"#, "requesty.tags", ErrorKind::TooLong),
        (
            r#"{"user_id":"abc"}"#,
            "requesty.user_id",
            ErrorKind::TooLong,
        ),
        (
            r#"{"trace_id":"abc"}"#,
            "requesty.trace_id",
            ErrorKind::TooLong,
        ),
        (
            r#"{"origin_referer":"abcd"}"#,
            "requesty.origin_referer",
            ErrorKind::TooLong,
        ),
        (
            r#"{"origin_title":"abcd"}"#,
            "requesty.origin_title",
            ErrorKind::TooLong,
        ),
        (
            r#"{"extra":{"a":1,"b":2}}"#,
            "requesty.extra",
            ErrorKind::TooMany,
        ),
        (
            r#"{"extra":{"k":"123456"}}"#,
            "requesty.extra",
            ErrorKind::TooLong,
        ),
        (long_member.as_str(), "requesty", ErrorKind::TooLong),
    ] {
        let e = error_with(&format!(r#"{{"requesty":{member}}}"#), &l);
        assert_eq!((e.kind(), e.param()), (rule, param), "{member}");
    }
}

/// An `extra` over its size limit is refused as soon as the walk passes the limit, but the message
/// gives the size of the whole object as sent.
#[test]
fn an_extra_too_long_is_reported_at_its_whole_size() {
    let l = Limits::default().max_extra_bytes(10);
    let extra = r#"{"a":"12345678","b":"x"}"#;
    let e = error_with(
        &format!(r#"{{"model":"m","requesty":{{"extra":{extra}}}}}"#),
        &l,
    );
    assert_eq!(
        (e.kind(), e.param()),
        (ErrorKind::TooLong, "requesty.extra")
    );
    assert_eq!(
        e.message(),
        format!(
            "`requesty.extra` is {} bytes; the limit is 10 bytes",
            extra.len()
        )
    );
}

/// A long tag list (past the point where the tags seen are kept in a set) still holds each tag
/// once, in the order first sent, and keeps every new one.
#[test]
fn a_long_tag_list_keeps_each_tag_once_in_order() {
    let l = Limits::default().max_tags(200);
    let mut sent: Vec<String> = (0..100).map(|i| format!("t{i}")).collect();
    sent.extend(["t0", "t99", "t100", "t70", "t101"].map(String::from));
    let body = json!({"requesty": {"tags": sent}}).to_string();
    let scan = codec::scan(body.as_bytes(), &l).unwrap();
    let want: Vec<String> = (0..102).map(|i| format!("t{i}")).collect();
    assert_eq!(scan.metadata().unwrap().tags, want);
}

#[test]
fn errors_render_as_openai_error_bodies() {
    for body in [
        r#"{"requesty":{"tags":"a"}}"#.to_owned(),
        format!(r#"{{"requesty":{{"user_id":"{}"}}}}"#, "u".repeat(300)),
        r#"{"requesty":{},"requesty":{}}"#.to_owned(),
    ] {
        let e = error(&body);
        assert_eq!(e.status().as_u16(), 400);
        assert!(!e.message().is_empty());
        assert_eq!(e.to_string(), e.message());
        assert_eq!(
            value(&e.to_json()),
            json!({"error": {
                "message": e.message(),
                "type": "invalid_request_error",
                "param": e.param(),
                "code": e.kind().code(),
            }})
        );
    }
    let codes = [
        (ErrorKind::InvalidType, "invalid_metadata_type"),
        (ErrorKind::TooMany, "metadata_limit_exceeded"),
        (ErrorKind::TooLong, "metadata_too_long"),
        (ErrorKind::Duplicate, "duplicate_metadata"),
    ];
    for (kind, code) in codes {
        assert_eq!(kind.code(), code);
    }
}

#[test]
fn unknown_keys_in_the_member_are_kept_and_survive_strip_then_inject() {
    let body = r#"{"model":"m","requesty":{"tags":["a"],"future":{"n":[1,2.5,"x"]},"v2":"\u00e9","extra":{"k":true}}}"#;
    let (mut scan, out) = run(body);
    let metadata = scan.take_metadata().unwrap();
    assert_eq!(metadata.other["future"], json!({"n": [1, 2.5, "x"]}));
    assert_eq!(metadata.other["v2"], "é");
    assert_eq!(out, r#"{"model":"m"}"#);
    let mut stripped = Bytes::from(out);
    codec::inject(&mut stripped, &metadata, &limits()).unwrap();
    assert_eq!(value(&stripped), value(body.as_bytes()));
}

#[test]
fn bodies_that_are_not_objects_carry_nothing() {
    for body in [
        "",
        "   \n",
        "[]",
        r#"[{"requesty":{"tags":["a"]}}]"#,
        "1",
        "-0",
        r#""{}""#,
        "true",
        "null",
        "hello",
        "<html></html>",
        "\u{feff}\u{feff}{}",
        "}{",
        "]",
    ] {
        assert_eq!(kind(body.as_bytes()), BodyKind::NotObject, "{body:?}");
        assert_untouched(body.as_bytes());
    }
}

#[test]
fn malformed_bodies_carry_nothing() {
    for body in [
        "{",
        "{ ",
        r#"{"a""#,
        r#"{"a":"#,
        r#"{"a":}"#,
        r#"{"a":1,}"#,
        r#"{"a" 1}"#,
        r#"{"a":1}}"#,
        r#"{"a":1} x"#,
        r#"{"a":1}{}"#,
        r#"{"a":01}"#,
        r#"{"a":1.}"#,
        r#"{"a":.5}"#,
        r#"{"a":+1}"#,
        r#"{"a":1e}"#,
        r#"{"a":tru}"#,
        r#"{"a":True}"#,
        r#"{'a':1}"#,
        r#"{a:1}"#,
        r#"{"a":[}"#,
        r#"{"a":[[]}"#,
        r#"{"a":[]]}"#,
        r#"{"a":"x}"#,
        r#"{"a":["x]}"#,
        "{,}",
        r#"{"a":1,,"b":2}"#,
        "{\"a\":1}\u{0}",
        r#"{"requ\qesty":{}}"#,
        r#"{"requ\u00":{}}"#,
        r#"{"requesty":{"tags":["x"]}"#,
        r#"{"requesty":{"tags":["x"]},}"#,
        "{\"a\":1\u{a0}}",
    ] {
        assert_eq!(kind(body.as_bytes()), BodyKind::Malformed, "{body:?}");
        assert!(codec::scan(body.as_bytes(), &limits()).is_ok());
        assert_untouched(body.as_bytes());
    }
}

/// Inside nested values only strings and bracket balance decide where a member ends; grammar there
/// (and UTF-8 and escapes in ordinary strings) is the downstream parser's to reject.
#[test]
fn grammar_inside_nested_values_is_left_to_the_downstream_parser() {
    for body in [
        r#"{"a":[1,],"requesty":{"tags":["x"]}}"#,
        r#"{"a":[1 2],"requesty":{"tags":["x"]}}"#,
        r#"{"a":{"b"},"requesty":{"tags":["x"]}}"#,
        r#"{"a":[},"requesty":{"tags":["x"]}}"#,
        r#"{"a":{],"requesty":{"tags":["x"]}}"#,
        r#"{"a":[tru, nul],"requesty":{"tags":["x"]}}"#,
        r#"{"a":"\q \ud800","requesty":{"tags":["x"]}}"#,
        // A space is no control character: escaped, it is a bad escape like `\q`.
        r#"{"a":"\ ","requesty":{"tags":["x"]}}"#,
    ] {
        assert!(serde_json::from_str::<Value>(body).is_err());
        let (scan, out) = run(body);
        assert_eq!(scan.kind(), BodyKind::Object, "{body}");
        assert_eq!(scan.metadata().unwrap().tags, ["x"]);
        let (end, _) = body.split_once(r#","requesty""#).unwrap();
        assert_eq!(out, format!("{end}}}"));
    }
}

/// Removing the member must never turn a body a parser rejects into one it accepts, so everything
/// inside it is checked: grammar, UTF-8, escapes, control characters.
#[test]
fn the_member_is_read_strictly() {
    let members: [&[u8]; 16] = [
        br#"{"tags":["x",]}"#,
        br#"{"tags":["x"}}"#,
        br#"{"extra":{"k":1]}"#,
        br#"{"extra":{"k":[1,]}}"#,
        br#"{"future":[1 2]}"#,
        br#"{"future":[{"a":1}}}"#,
        b"{\"tags\":[\"a\x01\"]}",
        b"{\"user_id\":\"\xff\"}",
        br#"{"trace_id":"\ud800"}"#,
        br#"{"tags":["\q"]}"#,
        b"{\"extra\":{\"k\x00\":1}}",
        b"{\"extra\":{\"\xc3\":1}}",
        br#"{"extra":{"\udc00":1}}"#,
        b"{\"extra\":{\"k\":\"\t\"}}",
        b"{\"fu\x1fture\":1}",
        br#"{"future":"\u12"}"#,
    ];
    for member in members {
        let body = [&br#"{"requesty":"#[..], member, b"}"].concat();
        assert!(serde_json::from_slice::<Value>(&body).is_err());
        match codec::scan(&body, &limits()) {
            Err(e) => assert_eq!(
                e.kind(),
                ErrorKind::InvalidType,
                "{}",
                String::from_utf8_lossy(member)
            ),
            Ok(scan) => panic!("{}: {scan:?}", String::from_utf8_lossy(member)),
        }
    }
}

/// A string past the short plain run (longer than 32 bytes, or not ASCII) is still text: a space in
/// it is a character like any other, and only a raw control character is refused.
#[test]
fn a_space_in_a_long_or_non_ascii_string_field_is_text() {
    let long = "a user id of more than thirty-two bytes";
    let body = format!(
        r#"{{"requesty":{{"user_id":"{long}","tags":["café au lait"],"extra":{{"k":"{long}"}}}}}}"#
    );
    let (scan, out) = run(&body);
    let want = RequestMetadata::new()
        .user_id(long)
        .tag("café au lait")
        .extra("k", long);
    assert_eq!(scan.metadata(), Some(&want));
    assert_eq!(out, "{}");
    let control = format!("{{\"requesty\":{{\"user_id\":\"{long}\u{1f}\"}}}}");
    assert_eq!(error(&control).kind(), ErrorKind::InvalidType);
}

/// A number no double holds is well-formed JSON that the typed metadata cannot carry: refused with a
/// message that says so, not as text that is not JSON.
#[test]
fn a_number_out_of_range_is_refused_for_what_it_is() {
    for member in [r#"{"extra":{"n":1e400}}"#, r#"{"future":[-1e999]}"#] {
        let body = format!(r#"{{"requesty":{member}}}"#);
        let error = codec::scan(body.as_bytes(), &limits()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidType);
        assert!(
            error.message().contains("out of the range of a double"),
            "{error}"
        );
    }
}

/// Every strict prefix of a valid body is either empty (not an object) or an unfinished object.
#[test]
fn every_truncation_of_a_valid_body_is_malformed() {
    let body = br#"{ "model" : "openai/gpt-4o", "messages":[{"role":"user","content":"caf\u00e9 \"x\" \\ \/"}],
        "temperature":1.0e-1, "n":-0, "big":123456789012345678901234567890, "stream":true, "stop":null,
        "requesty":{"tags":["a","b"],"user_id":"u","extra":{"k":[1,{"x":false}]}}, "z":{} }"#;
    assert!(codec::scan(body, &limits()).unwrap().metadata().is_some());
    for end in 0..body.len() {
        let prefix = &body[..end];
        let want = if end == 0 {
            BodyKind::NotObject
        } else {
            BodyKind::Malformed
        };
        assert_eq!(kind(prefix), want, "{}", String::from_utf8_lossy(prefix));
        assert_untouched(prefix);
        let mut b = Bytes::copy_from_slice(prefix);
        let injected = codec::inject(&mut b, &RequestMetadata::new().tag("t"), &limits());
        assert!(matches!(injected, Err(InjectError::NotAnObject)));
        assert_eq!(b, prefix);
    }
}

fn nested_arrays(depth: usize) -> String {
    // The top-level object is depth 1; each bracket adds one.
    let n = depth - 1;
    format!(r#"{{"a":{}{}}}"#, "[".repeat(n), "]".repeat(n))
}

fn nested_objects(depth: usize) -> String {
    let n = depth - 1;
    format!(r#"{{{}{}}}"#, r#""a":{"#.repeat(n), "}".repeat(n))
}

#[test]
fn nesting_deeper_than_the_default_limit_is_malformed() {
    assert_eq!(limits().depth(), 128);
    for nested in [nested_arrays, nested_objects] {
        assert_eq!(kind(nested(128).as_bytes()), BodyKind::Object);
        assert_eq!(kind(nested(129).as_bytes()), BodyKind::Malformed);
        assert_untouched(nested(129).as_bytes());
    }
    // The member counts at its place in the body.
    let member = format!(
        r#"{{"requesty":{{"future":{}{}}}}}"#,
        "[".repeat(126),
        "]".repeat(126)
    );
    assert_eq!(kind(member.as_bytes()), BodyKind::Object);
    let member = format!(
        r#"{{"requesty":{{"future":{}{}}}}}"#,
        "[".repeat(127),
        "]".repeat(127)
    );
    assert_eq!(kind(member.as_bytes()), BodyKind::Malformed);
}

#[test]
fn nesting_deeper_than_a_configured_limit_is_malformed() {
    let l = Limits::default().max_depth(4);
    for nested in [nested_arrays, nested_objects] {
        assert_eq!(kind_with(nested(4).as_bytes(), &l), BodyKind::Object);
        assert_eq!(kind_with(nested(5).as_bytes(), &l), BodyKind::Malformed);
    }
    let one = Limits::default().max_depth(1);
    assert_eq!(kind_with(br#"{"a":1}"#, &one), BodyKind::Object);
    assert_eq!(kind_with(br#"{"a":[]}"#, &one), BodyKind::Malformed);
    assert_eq!(
        kind_with(b"{}", &Limits::default().max_depth(0)),
        BodyKind::Malformed
    );
    let deep = Limits::default().max_depth(1000);
    assert_eq!(
        kind_with(nested_arrays(1000).as_bytes(), &deep),
        BodyKind::Object
    );
    assert_eq!(
        kind_with(nested_arrays(1001).as_bytes(), &deep),
        BodyKind::Malformed
    );
}

#[test]
fn a_million_levels_do_not_overflow_the_stack() {
    const N: usize = 1_000_000;
    assert_eq!(kind("[".repeat(N).as_bytes()), BodyKind::NotObject);
    let open = format!(r#"{{"a":{}"#, "[".repeat(N));
    assert_eq!(kind(open.as_bytes()), BodyKind::Malformed);
    let objects = r#"{"a":"#.repeat(N);
    assert_eq!(kind(objects.as_bytes()), BodyKind::Malformed);
    let unbounded = Limits::default().max_depth(usize::MAX);
    assert_eq!(kind_with(open.as_bytes(), &unbounded), BodyKind::Malformed);
    assert_eq!(
        kind_with(nested_arrays(N).as_bytes(), &unbounded),
        BodyKind::Object
    );
    // The member parser is no recursive descent either.
    let unbounded = unbounded.max_member_bytes(usize::MAX);
    let member = format!(
        r#"{{"requesty":{{"future":{}{}}}}}"#,
        "[".repeat(N),
        "]".repeat(N)
    );
    assert!(codec::scan(member.as_bytes(), &unbounded).is_err());
}

#[test]
fn strip_keeps_every_other_byte() {
    let cases = [
        // first
        (
            r#"{"requesty":{"tags":["a"]},"model":"m","n":1.0e0}"#,
            r#"{"model":"m","n":1.0e0}"#,
        ),
        (
            "{ \n  \"requesty\" : { \"tags\" : [ \"a\" ] } ,\n  \"n\" : -0 }",
            "{ \n  \"n\" : -0 }",
        ),
        // middle
        (
            "{\"a\":1.0e0 , \"requesty\":null ,\t\"b\":123456789012345678901234567890}",
            "{\"a\":1.0e0 , \"b\":123456789012345678901234567890}",
        ),
        (
            r#"{"a":[1,2],"requ\u0065sty":{},"b":{"requesty":1}}"#,
            r#"{"a":[1,2],"b":{"requesty":1}}"#,
        ),
        // last
        (
            "{\"s\":\"caf\\u00e9 \\/ \\\"q\\\"\" ,\r\n \"requesty\":{\"user_id\":\"u\"}\n}\n",
            "{\"s\":\"caf\\u00e9 \\/ \\\"q\\\"\"\n}\n",
        ),
        (
            r#"{"n":-0.0E+00,"requesty":{"trace_id":"t"}}"#,
            r#"{"n":-0.0E+00}"#,
        ),
        // only
        (r#"{ "requesty": {} }"#, "{  }"),
        (r#"{"requesty":{}}"#, "{}"),
        (
            "\r\n{\t\"requesty\"\t:\t{\"tags\":[]}\t}\r\n",
            "\r\n{\t\t}\r\n",
        ),
    ];
    for (body, want) in cases {
        let (scan, out) = run(body);
        assert_eq!(out, want, "{body:?}");
        assert_eq!(value(out.as_bytes()), without_requesty(body));
        let range = scan.member_range().unwrap();
        assert_eq!(
            format!("{}{}", &body[..range.start], &body[range.end..]),
            want
        );
        // The same edit on a buffer someone else holds, and on an owned one.
        let shared = Bytes::from(body);
        assert_eq!(codec::strip(shared.clone(), &scan), want.as_bytes());
        assert_eq!(shared, body.as_bytes());
        let mut owned = BytesMut::from(body);
        codec::strip_in_place(&mut owned, &scan);
        assert_eq!(owned, want.as_bytes());
    }
}

#[test]
fn a_body_without_a_member_is_the_same_buffer() {
    for body in [
        "{}",
        r#"{"model":"m","n":1.0e0,"big":123456789012345678901234567890,"z":-0,"s":"\u00e9\/"}"#,
        " {\n\t\"a\" : [ ]\r\n} \n",
    ] {
        assert_untouched(body.as_bytes());
    }
}

const INJECTED: &str = r#""requesty":{"tags":["a"]}"#;

fn injected(body: &str, metadata: &RequestMetadata) -> String {
    let mut bytes = Bytes::from(body.to_owned());
    codec::inject(&mut bytes, metadata, &limits()).unwrap();
    let mut owned = BytesMut::from(body);
    codec::inject_in_place(&mut owned, metadata, &limits()).unwrap();
    assert_eq!(bytes, owned);
    let shared = Bytes::from(body.to_owned());
    let mut copy = shared.clone();
    codec::inject(&mut copy, metadata, &limits()).unwrap();
    assert_eq!(copy, bytes);
    assert_eq!(shared, body.as_bytes());
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn inject_appends_the_member_last() {
    let m = RequestMetadata::new().tag("a");
    for (body, want) in [
        ("{}", format!("{{{INJECTED}}}")),
        ("{ }", format!("{{{INJECTED} }}")),
        (r#"{"a":1}"#, format!(r#"{{"a":1,{INJECTED}}}"#)),
        ("{\"a\":1 }\n", format!("{{\"a\":1,{INJECTED} }}\n")),
        (
            "{\"a\":[1]}\r\n\t ",
            format!("{{\"a\":[1],{INJECTED}}}\r\n\t "),
        ),
        (
            r#" {"a":{"requesty":1}}"#,
            format!(r#" {{"a":{{"requesty":1}},{INJECTED}}}"#),
        ),
    ] {
        assert_eq!(injected(body, &m), want, "{body:?}");
    }
}

/// An empty member in the body is filled in place: its fields written with no comma before the
/// first.
#[test]
fn inject_fills_an_empty_member() {
    let m = RequestMetadata::new().tag("a").trace_id("t");
    assert_eq!(
        injected(r#"{"requesty":{ },"a":1}"#, &m),
        r#"{"requesty":{"tags":["a"],"trace_id":"t"},"a":1}"#
    );
}

/// New tags are appended to the member's list, comma-separated; an `extra` (or a tags list) sent as
/// `null` is written afresh, not appended to.
#[test]
fn inject_appends_tags_and_replaces_a_null_extra() {
    let m = RequestMetadata::new()
        .tag("b")
        .tag("c")
        .tag("d")
        .extra("k", "v");
    assert_eq!(
        injected(r#"{"requesty":{"tags":[ "b" ],"extra":null}}"#, &m),
        r#"{"requesty":{"tags":[ "b" ,"c","d"],"extra":{"k":"v"}}}"#
    );
    assert_eq!(
        injected(r#"{"requesty":{"tags":null,"extra":{"j":1}}}"#, &m),
        r#"{"requesty":{"tags":["b","c","d"],"extra":{"j":1,"k":"v"}}}"#
    );
}

#[test]
fn inject_merges_with_the_member_in_the_body() {
    let body = r#"{"x":1, "requesty" : {"tags":["b","c"],"user_id":"body","extra":{"k":"body","only_body":1},"future":2} ,"y":2}"#;
    let ours = meta(json!({
        "tags": ["a", "b"], "user_id": "ours", "trace_id": "t",
        "extra": {"k": "ours", "only_ours": 3}, "future": 1
    }));
    let want = meta(json!({
        "tags": ["a", "b", "c"], "user_id": "body", "trace_id": "t",
        "extra": {"k": "body", "only_body": 1, "only_ours": 3}, "future": 2
    }));
    let out = injected(body, &ours);
    // Only the member's value is rewritten: its fields in the order sent, then the new ones.
    assert_eq!(
        out,
        r#"{"x":1, "requesty" : {"tags":["a","b","c"],"user_id":"body","extra":{"k":"body","only_body":1,"only_ours":3},"future":2,"trace_id":"t"} ,"y":2}"#
    );
    let scan = codec::scan(out.as_bytes(), &limits()).unwrap();
    assert_eq!(scan.metadata(), Some(&want));
}

/// Merging keeps the bytes of what it does not change inside the member too: a client's numbers,
/// escapes and key order survive, and what the member already holds is not written again.
#[test]
fn inject_keeps_the_bytes_of_member_fields_it_does_not_change() {
    let body = r#"{"requesty":{"note":1.0e0,"tags":["b"], "extra":{"n":123456789012345678901234567890,"s":"caf\u00e9"},"user_id":"u"}}"#;
    let ours = RequestMetadata::new()
        .tag("b")
        .tag("c")
        .trace_id("t")
        .extra("k", "v");
    assert_eq!(
        injected(body, &ours),
        r#"{"requesty":{"note":1.0e0,"tags":["b","c"], "extra":{"n":123456789012345678901234567890,"s":"caf\u00e9","k":"v"},"user_id":"u","trace_id":"t"}}"#
    );
    // Nothing new: the body is left exactly as it was.
    let held = RequestMetadata::new()
        .tag("b")
        .user_id("other")
        .extra("s", "x");
    assert_eq!(injected(body, &held), body);
    // A field the merge changes is written afresh, on its own; the spacing around fields stays.
    let body = r#"{"requesty":{ "tags" : [ "b" ] ,
        "extra":{"n":1.50} }}"#;
    assert_eq!(
        injected(body, &RequestMetadata::new().tag("a")),
        r#"{"requesty":{ "tags":["a","b"] ,
        "extra":{"n":1.50} }}"#
    );
    // Dropped neighbours and new fields are joined by bare commas.
    let body = r#"{"requesty":{ "x" : 1 , "user_id" : "u" }}"#;
    assert_eq!(
        injected(body, &RequestMetadata::new().trace_id("t")),
        r#"{"requesty":{ "x" : 1 , "user_id" : "u","trace_id":"t"}}"#
    );
}

#[test]
fn inject_replaces_a_null_member() {
    let m = RequestMetadata::new().tag("a");
    assert_eq!(
        injected(r#"{"a":1,"requesty":null}"#, &m),
        format!(r#"{{"a":1,{INJECTED}}}"#)
    );
    assert_eq!(
        injected(r#"{"requesty" : null , "a":1}"#, &m),
        r#"{"requesty" : {"tags":["a"]} , "a":1}"#
    );
}

#[test]
fn inject_refuses_bodies_that_are_not_objects() {
    let m = RequestMetadata::new().tag("a");
    for body in [
        "",
        "[1]",
        "1",
        "null",
        r#""{}""#,
        "{",
        r#"{"a":1,}"#,
        r#"{"a":1}x"#,
    ] {
        let mut b = Bytes::from(body);
        let ptr = b.as_ptr();
        let error = codec::inject(&mut b, &m, &limits()).unwrap_err();
        assert!(matches!(error, InjectError::NotAnObject));
        assert_eq!(
            error.to_string(),
            "the body is not a well-formed JSON object"
        );
        assert_eq!((b.as_ptr(), &b[..]), (ptr, body.as_bytes()));
        let mut owned = BytesMut::from(body);
        let result = codec::inject_in_place(&mut owned, &m, &limits());
        assert!(matches!(result, Err(InjectError::NotAnObject)));
        assert_eq!(owned, body.as_bytes());
    }
}

#[test]
fn inject_reports_an_invalid_member_and_leaves_the_body() {
    let body = r#"{"requesty":{"tags":1}}"#;
    let mut b = Bytes::from(body);
    let error = codec::inject(&mut b, &RequestMetadata::new().tag("a"), &limits()).unwrap_err();
    let InjectError::Metadata(e) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(e.param(), "requesty.tags");
    // Shown as the member's own error.
    assert_eq!(error.to_string(), e.message());
    assert_eq!(b, body.as_bytes());
}

#[test]
fn empty_metadata_leaves_a_body_without_a_member_unchanged() {
    for body in ["{}", r#"{"a":1}"#, "{ }\n"] {
        let mut b = Bytes::from(body);
        let ptr = b.as_ptr();
        codec::inject(&mut b, &RequestMetadata::new(), &limits()).unwrap();
        assert_eq!((b.as_ptr(), &b[..]), (ptr, body.as_bytes()));
    }
}

/// With headroom in the buffer the member is appended without moving the body.
#[test]
fn inject_in_place_uses_spare_capacity() {
    let body = br#"{"model":"m","messages":[]}"#;
    let mut buf = BytesMut::with_capacity(body.len() + 512);
    buf.extend_from_slice(body);
    let ptr = buf.as_ptr();
    codec::inject_in_place(&mut buf, &RequestMetadata::new().tag("a"), &limits()).unwrap();
    assert_eq!(buf.as_ptr(), ptr);
    assert_eq!(
        buf,
        format!(r#"{{"model":"m","messages":[],{INJECTED}}}"#).as_bytes()
    );
}

#[test]
fn model_and_stream_are_reported() {
    let cases = [
        (
            r#"{"model":"openai/gpt-4o","stream":true}"#,
            Some("openai/gpt-4o"),
            Some(true),
        ),
        (
            r#"{"stream" : false , "model" : "m"}"#,
            Some("m"),
            Some(false),
        ),
        (
            r#"{"m\u006Fdel":"caf\u00e9 \"x\"","str\u0065am":false}"#,
            Some("café \"x\""),
            Some(false),
        ),
        (r#"{"model":1,"stream":"true"}"#, None, None),
        (r#"{"model":null,"stream":null}"#, None, None),
        (r#"{"model":["m"],"stream":1}"#, None, None),
        (r#"{"x":{"model":"m","stream":true}}"#, None, None),
        (r#"{"requesty":{"tags":[]},"model":"m"}"#, Some("m"), None),
    ];
    for (body, model, stream) in cases {
        let scan = codec::scan(body.as_bytes(), &limits()).unwrap();
        assert_eq!((scan.model(), scan.stream()), (model, stream), "{body}");
    }
}

/// `null` for `tags` or `extra` is their absence, for serde as for the codec.
#[test]
fn serde_reads_null_lists_as_the_codec_does() {
    let member = r#"{"tags":null,"user_id":"u","extra":null}"#;
    let scan = codec::scan(format!(r#"{{"requesty":{member}}}"#).as_bytes(), &limits()).unwrap();
    let read: RequestMetadata = serde_json::from_str(member).unwrap();
    assert_eq!(Some(&read), scan.metadata());
}

/// `other` is public, and may be given a known field's name: inject writes the field once, so the
/// member it writes is one its own scan reads.
#[test]
fn inject_never_writes_a_member_its_own_scan_refuses() {
    let mut ours = RequestMetadata::new().user_id("u");
    ours.other.insert("user_id".into(), json!("x"));
    ours.other.insert("future".into(), json!(1));
    for start in [&b"{}"[..], br#"{"requesty":{"tags":["a"]}}"#] {
        let mut body = Bytes::copy_from_slice(start);
        codec::inject(&mut body, &ours, &limits()).unwrap();
        let again = codec::scan(&body, &limits()).unwrap();
        let read = again.metadata().unwrap();
        assert_eq!(read.user_id.as_deref(), Some("u"), "{body:?}");
        assert_eq!(read.other.get("future"), Some(&json!(1)));
    }
}

/// Tags the member already holds, in another order, leave the body as it is.
#[test]
fn tags_the_member_already_holds_in_another_order_leave_the_body_alone() {
    let body = r#"{"requesty":{"tags":["b","a"]}}"#;
    assert_eq!(injected(body, &RequestMetadata::new().tag("a")), body);
    assert_eq!(
        injected(body, &RequestMetadata::new().tag("a").tag("b")),
        body
    );
}

/// A reader counts the member's `tags` as sent, repeats included: new tags are appended to the list
/// as sent only when it holds no repeats, so a member at the limit that gains one tag (as read)
/// is not refused for one more than it holds.
#[test]
fn tags_appended_to_a_list_with_repeats_stay_within_the_limit() {
    let limits = limits().max_tags(3);
    let body = r#"{"requesty":{"tags":["a","a","a"]}}"#;
    assert_eq!(
        codec::scan(body.as_bytes(), &limits)
            .unwrap()
            .metadata()
            .unwrap()
            .tags,
        ["a"]
    );
    let mut out = Bytes::from(body);
    let ours = RequestMetadata::new().tag("a").tag("b");
    codec::inject(&mut out, &ours, &limits).unwrap();
    let again = codec::scan(&out, &limits).unwrap_or_else(|e| panic!("{out:?}: {e}"));
    assert_eq!(again.metadata().unwrap().tags, ["a", "b"]);
    // A list without repeats still only gains the new tags, its own bytes kept.
    let body = r#"{"requesty":{"tags":["\u0061"]}}"#;
    let mut out = Bytes::from(body);
    codec::inject(&mut out, &ours, &limits).unwrap();
    assert_eq!(out, &br#"{"requesty":{"tags":["\u0061","b"]}}"#[..]);
}

/// A body serde_json refuses that the codec calls malformed too, reading nothing in it.
fn refused_by_both(body: &[u8]) {
    assert!(serde_json::from_slice::<Value>(body).is_err());
    let scan = codec::scan(body, &limits()).unwrap();
    assert_eq!(
        scan.kind(),
        BodyKind::Malformed,
        "{:?}: {scan:?}",
        String::from_utf8_lossy(body)
    );
}

/// A raw control character is never part of a JSON string: a top-level key or string value with
/// one makes the body malformed, as serde_json has it, so `"requesty\0"` is never stripped (nor
/// passed on as another key to a parser that would end it at the NUL).
#[test]
fn a_raw_control_character_in_a_top_level_string_is_malformed() {
    for body in [
        &b"{\"a\x01\":1,\"requesty\":{\"tags\":[\"x\"]}}"[..],
        b"{\"requesty\x00\":{\"tags\":[\"x\"]}}",
        b"{\"model\":\"gpt\x01\",\"requesty\":{\"tags\":[\"x\"]}}",
        b"{\"prompt\":\"a long prompt, long enough to leave the short path\x1f\",\"requesty\":{}}",
        b"{\"prompt\":\"escaped \\\" then a raw tab\t\",\"requesty\":{}}",
        // Two of them as well as one: every byte counts, not whether their number is odd.
        b"{\"prompt\":\"caf\xc3\xa9\t\t\",\"requesty\":{}}",
        // Right after a backslash, a raw control character is no escape either.
        b"{\"model\":\"gpt\\\x01\",\"requesty\":{\"tags\":[\"x\"]}}",
        b"{\"prompt\":\"line\\\nbreak\",\"requesty\":{\"tags\":[\"x\"]}}",
        b"{\"ke\\\ty\":1,\"requesty\":{\"tags\":[\"x\"]}}",
    ] {
        refused_by_both(body);
    }
    // Escaped, they are text.
    let body = br#"{"prompt":"a tab\t and a NUL\u0000, escaped","requesty":{"tags":["x"]}}"#;
    assert_eq!(kind_with(body, &limits()), BodyKind::Object);
}

/// A lone surrogate escape is no text: a top-level key with one makes the body malformed, as it
/// does in the member and for serde_json, while a surrogate pair is a key like any other.
#[test]
fn a_lone_surrogate_in_a_top_level_key_is_malformed() {
    let inside = br#"{"requesty":{"\ud800":1}}"#;
    assert_eq!(
        codec::scan(inside, &limits()).unwrap_err().kind(),
        ErrorKind::InvalidType
    );
    for body in [
        &br#"{"\ud800":1,"requesty":{"tags":["x"]}}"#[..],
        br#"{"requ\ud800esty":{"tags":["x"]}}"#,
        br#"{"\udc00x":1,"requesty":{"tags":["x"]}}"#,
    ] {
        refused_by_both(body);
    }
    let pair = br#"{"\ud83d\ude00":1,"requesty":{"tags":["x"]}}"#;
    assert!(serde_json::from_slice::<Value>(pair).is_ok());
    let scan = codec::scan(pair, &limits()).unwrap();
    assert_eq!(scan.kind(), BodyKind::Object);
    assert!(scan.metadata().is_some());
}

/// With `max_depth` raised, a member value deeper than the metadata can hold is refused for that,
/// not called invalid JSON; within the default limit nothing changes.
#[test]
fn a_member_value_past_what_metadata_holds_is_refused_for_its_depth() {
    let raised = Limits::default().max_depth(200);
    let arrays = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let elsewhere = format!(r#"{{"a":{{"x":{}}}}}"#, arrays(128));
    assert_eq!(kind_with(elsewhere.as_bytes(), &raised), BodyKind::Object);
    for body in [
        format!(r#"{{"requesty":{{"future":{}}}}}"#, arrays(128)),
        format!(r#"{{"requesty":{{"extra":{{"k":{}}}}}}}"#, arrays(128)),
    ] {
        let e = error_with(&body, &raised);
        assert_eq!(e.param(), "requesty");
        assert!(e.message().contains("127 levels"), "{}", e.message());
    }
    let within = format!(r#"{{"requesty":{{"extra":{{"k":{}}}}}}}"#, arrays(127));
    let scan = codec::scan(within.as_bytes(), &raised).unwrap();
    assert!(scan.metadata().is_some());
}

/// Past a count limit the body's reader stops reading, and says so without a count it did not take.
#[test]
fn too_many_says_more_than_the_limit() {
    let tags: Vec<String> = (0..100).map(|i| format!("\"t{i}\"")).collect();
    let e = error(&format!(
        r#"{{"requesty":{{"tags":[{}]}}}}"#,
        tags.join(",")
    ));
    assert_eq!(e.kind(), ErrorKind::TooMany);
    assert_eq!(
        e.message(),
        "`requesty.tags` has more than 64 tags, the limit"
    );
    let extra: Vec<String> = (0..100).map(|i| format!("\"k{i}\":1")).collect();
    let e = error(&format!(
        r#"{{"requesty":{{"extra":{{{}}}}}}}"#,
        extra.join(",")
    ));
    assert_eq!(e.kind(), ErrorKind::TooMany);
    assert_eq!(
        e.message(),
        "`requesty.extra` has more than 64 keys, the limit"
    );
}

/// A syntax error in a typed field is the member's syntax error, not a wrong type.
#[test]
fn syntax_errors_in_typed_fields_are_not_type_errors() {
    for body in [
        r#"{"requesty":{"tags":["a" "b"]}}"#,
        r#"{"requesty":{"tags":["a",]}}"#,
        r#"{"requesty":{"tags":["\ud800"]}}"#,
        r#"{"requesty":{"user_id":"\ud800"}}"#,
        r#"{"requesty":{"extra":,"a":1}}"#,
    ] {
        assert!(serde_json::from_str::<Value>(body).is_err());
        let e = error(body);
        assert_eq!(e.param(), "requesty", "{body}");
        assert!(
            e.message().contains("not valid JSON"),
            "{body}: {}",
            e.message()
        );
    }
    for (body, param) in [
        (r#"{"requesty":{"tags":["a",1]}}"#, "requesty.tags"),
        (r#"{"requesty":{"user_id":7}}"#, "requesty.user_id"),
        (r#"{"requesty":{"extra":[]}}"#, "requesty.extra"),
    ] {
        let e = error(body);
        assert_eq!(e.kind(), ErrorKind::InvalidType);
        assert_eq!(e.param(), param, "{body}");
    }
}

/// A broken scalar where a typed field stands is the member's syntax error too.
#[test]
fn a_broken_scalar_in_a_typed_field_is_a_syntax_error() {
    for body in [
        r#"{"requesty":{"user_id":tru}}"#,
        r#"{"requesty":{"trace_id":-}}"#,
        r#"{"requesty":{"tags":[fals]}}"#,
        r#"{"requesty":{"tags":01}}"#,
        r#"{"requesty":{"tags":[01]}}"#,
        r#"{"requesty":{"extra":tru}}"#,
    ] {
        assert!(serde_json::from_str::<Value>(body).is_err());
        let e = error(body);
        assert_eq!(e.param(), "requesty", "{body}: {}", e.message());
        assert!(
            e.message().contains("not valid JSON"),
            "{body}: {}",
            e.message()
        );
    }
    for (body, param) in [
        (r#"{"requesty":{"tags":[true]}}"#, "requesty.tags"),
        (r#"{"requesty":{"tags":-1.5e3}}"#, "requesty.tags"),
        (r#"{"requesty":{"user_id":false}}"#, "requesty.user_id"),
        (r#"{"requesty":{"extra":"x"}}"#, "requesty.extra"),
    ] {
        assert_eq!(error(body).param(), param, "{body}");
    }
}

/// A typed field holding a container nested as deep as the body may nest is a value of the wrong
/// type, as the same container in an unknown field is a value: not a syntax error.
#[test]
fn a_typed_field_nested_to_the_depth_limit_is_a_wrong_type() {
    // The body is depth 1 and the member 2: 8 brackets reach a limit of 10.
    let l = Limits::default().max_depth(10);
    let arrays = format!("{}{}", "[".repeat(8), "]".repeat(8));
    let future = format!(r#"{{"requesty":{{"future":{arrays}}}}}"#);
    assert!(codec::scan(future.as_bytes(), &l)
        .unwrap()
        .metadata()
        .is_some());
    for (field, param) in [
        ("tags", "requesty.tags"),
        ("user_id", "requesty.user_id"),
        ("trace_id", "requesty.trace_id"),
        ("origin_title", "requesty.origin_title"),
        ("extra", "requesty.extra"),
    ] {
        let body = format!(r#"{{"requesty":{{"{field}":{arrays}}}}}"#);
        assert!(serde_json::from_str::<Value>(&body).is_ok());
        let e = error_with(&body, &l);
        assert_eq!(
            (e.kind(), e.param()),
            (ErrorKind::InvalidType, param),
            "{}",
            e.message()
        );
    }
}

/// A key repeated in a full `extra` is a duplicate, not a key past the limit: the object has no
/// more keys than the limit allows.
#[test]
fn a_repeated_key_in_a_full_extra_is_a_duplicate() {
    let d = limits();
    let full = extra_entries(d.extra_entries());
    let repeated = format!(r#"{},"k0":0}}"#, &full[..full.len() - 1]);
    let body = format!(r#"{{"requesty":{{"extra":{repeated}}}}}"#);
    let e = error(&body);
    assert_eq!(
        (e.kind(), e.param()),
        (ErrorKind::Duplicate, "requesty.extra.k0"),
        "{}",
        e.message()
    );
    let one = Limits::default().max_extra_entries(1);
    let e = error_with(r#"{"requesty":{"extra":{"a":1,"\u0061":2}}}"#, &one);
    assert_eq!(
        (e.kind(), e.param()),
        (ErrorKind::Duplicate, "requesty.extra.a")
    );
}

/// The kinds are plain values: a count of errors per kind, or of bodies per kind, keys a map.
#[test]
fn kinds_key_maps_and_metadata_compares_as_eq() {
    use std::collections::HashMap;
    let mut errors: HashMap<ErrorKind, usize> = HashMap::new();
    for body in [
        r#"{"requesty":{"tags":"a"}}"#,
        r#"{"requesty":{"user_id":1}}"#,
    ] {
        *errors.entry(error(body).kind()).or_default() += 1;
    }
    assert_eq!(errors[&ErrorKind::InvalidType], 2);
    let bodies: HashMap<BodyKind, &str> = [(kind(b"[]"), "[]"), (kind(b"{"), "{")].into();
    assert_eq!(bodies[&BodyKind::NotObject], "[]");
    fn eq<T: Eq>(a: &T, b: &T) -> bool {
        a == b
    }
    let meta = RequestMetadata::new().tag("a").extra("n", 1);
    assert!(eq(&meta, &meta.clone()));
}

/// Each of JSON's two-character escapes is valid in a top-level key, at its start, middle or end:
/// the body stays an object and its member is found.
#[test]
fn every_short_escape_in_a_top_level_key_is_well_formed() {
    for escape in [r#"\""#, r"\\", r"\/", r"\b", r"\f", r"\n", r"\r", r"\t"] {
        for key in [
            format!("{escape}ab"),
            format!("a{escape}b"),
            format!("ab{escape}"),
        ] {
            let body = format!(r#"{{"{key}":1,"requesty":{{"tags":["x"]}}}}"#);
            assert!(serde_json::from_str::<Value>(&body).is_ok(), "{body}");
            let scan = codec::scan(body.as_bytes(), &limits()).unwrap();
            assert_eq!(scan.kind(), BodyKind::Object, "{body}");
            assert_eq!(scan.metadata().unwrap().tags, ["x"], "{body}");
        }
    }
}

/// A bad escape in a top-level key makes the body malformed wherever it stands, also after
/// valid escapes of either length.
#[test]
fn a_bad_escape_after_good_ones_in_a_top_level_key_is_malformed() {
    for body in [
        &br#"{"abc\n\q":1}"#[..],
        br#"{"abc\t\\\q":1}"#,
        br#"{"abc\u0041\q":1}"#,
        br#"{"a\ud83d\ude00\q":1}"#,
    ] {
        refused_by_both(body);
    }
}

/// A surrogate pair in a key is one character past U+FFFF: never a letter of a name nor a NUL
/// that ends the key, so no key spelled with one reads as `requesty`.
#[test]
fn a_surrogate_pair_in_a_key_reads_as_no_letter_of_requesty() {
    for key in [
        // U+10072 and U+20072 end in the bits of `r`.
        r"\ud800\udc72equesty",
        r"\ud840\udc72equesty",
        // U+10000 ends in zero bits, as a NUL.
        r"requesty\ud800\udc00",
        // The last code point.
        r"requesty\udbff\udfff",
    ] {
        let body = format!(r#"{{"{key}":1,"requesty":{{"tags":["x"]}}}}"#);
        assert!(serde_json::from_str::<Value>(&body).is_ok(), "{body}");
        let (scan, out) = run(&body);
        assert_eq!(scan.metadata().unwrap().tags, ["x"], "{body}");
        assert_eq!(out, format!(r#"{{"{key}":1}}"#));
    }
}

/// A top-level string that is empty, or nothing but one escape, ends at its own closing quote, as a
/// key or as a value: the members after it are read as they stand.
#[test]
fn an_empty_or_escape_only_top_level_string_ends_at_its_closing_quote() {
    for body in [
        r#"{"":"","requesty":{"tags":["x"]}}"#,
        r#"{"a":"","b":"c","requesty":{"tags":["x"]}}"#,
        r#"{"\\":"\\","requesty":{"tags":["x"]}}"#,
        r#"{"\"":"\"","requesty":{"tags":["x"]}}"#,
    ] {
        assert!(serde_json::from_str::<Value>(body).is_ok(), "{body}");
        let (scan, out) = run(body);
        assert_eq!(scan.metadata().unwrap().tags, ["x"], "{body}");
        let (end, _) = body.split_once(r#","requesty""#).unwrap();
        assert_eq!(out, format!("{end}}}"));
    }
}
