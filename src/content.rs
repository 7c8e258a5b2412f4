//! What a request's headers say about its body: JSON or not, encoded or not, how long.

use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, TRAILER, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, StatusCode};

/// `application/json` or `application/*+json`, with any parameters, in any of the request's
/// `Content-Type` headers: a parser further on may read any one of them, so the body is read (and
/// the member stripped) when one says JSON. Only the media type must be text; a parameter may hold
/// any byte a header value can.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers.get_all(CONTENT_TYPE).iter().any(|value| {
        let essence = value
            .as_bytes()
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        // Only ASCII whitespace is trimmed, as HTTP parsers trim it.
        std::str::from_utf8(essence).is_ok_and(is_json_type)
    })
}

/// For a gRPC message (`application/grpc`, `application/grpc+proto`, ...) or a gRPC-Web one
/// (`application/grpc-web+proto`, ...), whose client expects errors as a gRPC status, the media type
/// a refusal is answered with, so that the client reads the `grpc-status` of a trailers-only answer;
/// `None` for other messages.
pub(crate) fn grpc_answer_type(headers: &HeaderMap) -> Option<&'static str> {
    match grpc_subtype(headers)? {
        b"" => Some("application/grpc"),
        suffix if suffix.eq_ignore_ascii_case(b"-web") => Some("application/grpc-web"),
        suffix if suffix.eq_ignore_ascii_case(b"-web-text") => Some("application/grpc-web-text"),
        _ => None,
    }
}

/// What follows `application/grpc` in the request's media type, up to a `+format` or parameters:
/// empty for gRPC, `-web` for gRPC-Web.
fn grpc_subtype(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(CONTENT_TYPE)?.as_bytes().trim_ascii();
    let rest = value.get(16..)?;
    if !value[..16].eq_ignore_ascii_case(b"application/grpc") {
        return None;
    }
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'+' | b';'))
        .unwrap_or(rest.len());
    let subtype = rest[..end].trim_ascii_end();
    // Only the subtype's own characters: `application/grpc x` is another type.
    subtype
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
        .then_some(subtype)
}

/// Whether a media type without parameters (`type/subtype`) is JSON.
pub(crate) fn is_json_type(essence: &str) -> bool {
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    let sub = sub.as_bytes();
    // `application/grpc+json` and Connect's `application/connect+json` frame a stream of JSON
    // messages: a stream, which buffering would stall, not a JSON body.
    let starts = |prefix: &[u8]| {
        sub.len() >= prefix.len() && sub[..prefix.len()].eq_ignore_ascii_case(prefix)
    };
    let framed = starts(b"grpc") || starts(b"connect+");
    kind.eq_ignore_ascii_case("application")
        && !framed
        && (sub.eq_ignore_ascii_case(b"json")
            || (sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case(b"+json")))
}

/// A body with a content coding other than `identity`, or a transfer coding other than HTTP/1.1's
/// `chunked` framing (`Transfer-Encoding: gzip, chunked`, whose gzip an HTTP server leaves on the
/// bytes it hands on), is not readable as JSON here. Each header is a comma-separated list of
/// codings, possibly repeated and with empty elements; a transfer coding may have parameters.
pub(crate) fn is_encoded(headers: &HeaderMap) -> bool {
    let coded = |name: http::header::HeaderName, framing: &[u8]| {
        headers.get_all(name).iter().any(|value| {
            value.as_bytes().split(|&b| b == b',').any(|coding| {
                let coding = coding.split(|&b| b == b';').next().unwrap_or_default();
                let coding = coding.trim_ascii();
                !coding.is_empty()
                    && !coding.eq_ignore_ascii_case(b"identity")
                    && !coding.eq_ignore_ascii_case(framing)
            })
        })
    };
    coded(CONTENT_ENCODING, b"identity") || coded(TRANSFER_ENCODING, b"chunked")
}

/// Marks a body that was read whole and rebuilt from its `len` bytes: it has that
/// `Content-Length`, and neither the framing it came in (`Transfer-Encoding`) nor trailers, which
/// a body rebuilt from bytes cannot carry (so no `Trailer` header announcing them either). A request
/// that came with no body and no framing headers gains none: only trailers (HTTP/2 sends them
/// without data and without a length) could have changed about it.
pub(crate) fn set_whole_length(headers: &mut HeaderMap, len: usize) {
    headers.remove(TRAILER);
    if len == 0 && !headers.contains_key(CONTENT_LENGTH) && !headers.contains_key(TRANSFER_ENCODING)
    {
        return;
    }
    headers.remove(TRANSFER_ENCODING);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
}

/// How long a response body is, as far as its head says: nothing for an answer to `HEAD` and for
/// statuses that never have a body (whatever `Content-Length` they state: for these it describes
/// another answer), else its `Content-Length`.
pub(crate) fn response_length(head: bool, status: StatusCode, headers: &HeaderMap) -> Option<u64> {
    let bodiless = head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if bodiless {
        Some(0)
    } else {
        declared_length(headers)
    }
}

pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A header map of static names and values, for tests.
#[cfg(test)]
pub(crate) fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(name, value)| {
            (
                http::HeaderName::from_static(name),
                http::HeaderValue::from_static(value),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        for yes in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.api+json",
        ] {
            assert!(is_json(&headers(&[("content-type", yes)])), "{yes}");
        }
        for no in [
            "text/plain",
            "application/jsonx",
            "multipart/form-data",
            "+json",
            "application/+jso",
            "application/+json",
            "application/octet-stream",
            "text/json",
            "application/grpc+json",
            "application/connect+json",
            "application/Connect+JSON; charset=utf-8",
        ] {
            assert!(!is_json(&headers(&[("content-type", no)])), "{no}");
        }
        assert!(!is_json(&HeaderMap::new()));
        // A parameter may hold bytes beyond ASCII; another `Content-Type` header may say JSON.
        let mut map = HeaderMap::new();
        let odd = http::HeaderValue::from_bytes(b"application/json; title=\"Caf\xe9\"").unwrap();
        map.insert(CONTENT_TYPE, odd);
        assert!(is_json(&map));
        for spaced in [
            &b"application/json\xc2\xa0"[..],
            b"\xe3\x80\x80application/json",
        ] {
            let mut map = HeaderMap::new();
            map.insert(CONTENT_TYPE, http::HeaderValue::from_bytes(spaced).unwrap());
            assert!(!is_json(&map), "{spaced:?}");
        }
        let mut map = headers(&[("content-type", "text/plain")]);
        map.append(
            CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        assert!(is_json(&map));
    }

    #[test]
    fn grpc_content_types() {
        for yes in [
            "application/grpc",
            "Application/gRPC+proto",
            "application/grpc;x=1",
            "application/grpc ; charset=utf-8",
        ] {
            let answer = grpc_answer_type(&headers(&[("content-type", yes)]));
            assert_eq!(answer, Some("application/grpc"), "{yes}");
        }
        for no in [
            "application/grpc-web",
            "application/json",
            "application/grp",
            "application/grpc x",
        ] {
            let answer = grpc_answer_type(&headers(&[("content-type", no)]));
            assert_ne!(answer, Some("application/grpc"), "{no}");
        }
        for (content_type, answer) in [
            ("application/grpc+proto", Some("application/grpc")),
            ("application/grpc-web", Some("application/grpc-web")),
            ("Application/gRPC-Web+proto", Some("application/grpc-web")),
            ("application/grpc-web ;x=1", Some("application/grpc-web")),
            (
                "application/grpc-web-text+proto",
                Some("application/grpc-web-text"),
            ),
            ("application/grpc-webx", None),
            ("application/grpc-web x", None),
            ("application/grpcweb", None),
            ("application/json", None),
        ] {
            let headers = headers(&[("content-type", content_type)]);
            assert_eq!(grpc_answer_type(&headers), answer, "{content_type}");
        }
    }

    #[test]
    fn a_rebuilt_body_has_its_length_and_no_framing_or_trailers() {
        let mut map = headers(&[
            ("transfer-encoding", "chunked"),
            ("trailer", "x-checksum"),
            ("content-type", "application/json"),
        ]);
        set_whole_length(&mut map, 12);
        assert_eq!(map.get(CONTENT_LENGTH).unwrap(), "12");
        assert!(!map.contains_key(TRANSFER_ENCODING));
        assert!(!map.contains_key(TRAILER));
        assert_eq!(map.get(CONTENT_TYPE).unwrap(), "application/json");

        // A stated length is replaced by the bytes' own.
        let mut map = headers(&[("content-length", "40")]);
        set_whole_length(&mut map, 7);
        assert_eq!(map.get(CONTENT_LENGTH).unwrap(), "7");

        // A body with bytes and no framing headers gains its length.
        let mut map = HeaderMap::new();
        set_whole_length(&mut map, 3);
        assert_eq!(map.get(CONTENT_LENGTH).unwrap(), "3");
    }

    #[test]
    fn an_empty_rebuilt_body_gains_a_length_only_when_it_had_framing() {
        let mut map = headers(&[("trailer", "grpc-status")]);
        set_whole_length(&mut map, 0);
        assert!(map.is_empty(), "{map:?}");

        for framing in [
            ("content-length", "5"),
            ("content-length", "0"),
            ("transfer-encoding", "chunked"),
        ] {
            let mut map = headers(&[framing]);
            set_whole_length(&mut map, 0);
            assert_eq!(map.get(CONTENT_LENGTH).unwrap(), "0", "{framing:?}");
            assert!(!map.contains_key(TRANSFER_ENCODING), "{framing:?}");
        }
    }

    #[test]
    fn bodiless_answers_have_no_length_whatever_they_declare() {
        let stated = headers(&[("content-length", "42")]);
        for status in [
            StatusCode::CONTINUE,
            StatusCode::SWITCHING_PROTOCOLS,
            StatusCode::NO_CONTENT,
            StatusCode::NOT_MODIFIED,
        ] {
            assert_eq!(response_length(false, status, &stated), Some(0), "{status}");
        }
        assert_eq!(response_length(true, StatusCode::OK, &stated), Some(0));
        for status in [StatusCode::OK, StatusCode::CREATED, StatusCode::NOT_FOUND] {
            assert_eq!(
                response_length(false, status, &stated),
                Some(42),
                "{status}"
            );
        }
        assert_eq!(
            response_length(false, StatusCode::OK, &HeaderMap::new()),
            None
        );
    }

    #[test]
    fn a_declared_length_is_a_decimal_number_of_bytes() {
        assert_eq!(declared_length(&HeaderMap::new()), None);
        for (value, want) in [
            ("0", Some(0)),
            ("1", Some(1)),
            ("1048576", Some(1_048_576)),
            (" 17 ", Some(17)),
            ("-1", None),
            ("12abc", None),
            ("", None),
        ] {
            let map = headers(&[("content-length", value)]);
            assert_eq!(declared_length(&map), want, "{value:?}");
        }
    }

    #[test]
    fn content_encoding() {
        assert!(is_encoded(&headers(&[("content-encoding", "gzip")])));
        assert!(!is_encoded(&headers(&[("content-encoding", "identity")])));
        assert!(!is_encoded(&HeaderMap::new()));
        for identity in ["identity, identity", "", " , IDENTITY"] {
            assert!(
                !is_encoded(&headers(&[("content-encoding", identity)])),
                "{identity}"
            );
        }
        for encoded in ["identity, gzip", "br,"] {
            assert!(
                is_encoded(&headers(&[("content-encoding", encoded)])),
                "{encoded}"
            );
        }
        // HTTP/1.1's framing is no coding of the bytes; any other transfer coding is.
        for framed in ["chunked", "Chunked", "identity, chunked"] {
            assert!(
                !is_encoded(&headers(&[("transfer-encoding", framed)])),
                "{framed}"
            );
        }
        for coded in ["gzip, chunked", "x-custom;q=1 ,chunked", "deflate"] {
            assert!(
                is_encoded(&headers(&[("transfer-encoding", coded)])),
                "{coded}"
            );
        }
    }
}
