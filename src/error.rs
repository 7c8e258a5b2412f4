//! Errors that name the offending field and the rule it broke, and their OpenAI-style rendering.

use bytes::Bytes;
use http::StatusCode;
use std::fmt;

/// The rule a piece of metadata broke. Each maps to a stable `code` string in the error body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A value of the wrong JSON type (`tags` not an array of strings, `extra` not an object, ...),
    /// or a `requesty` member that is not valid JSON itself.
    InvalidType,
    /// More entries than a limit allows (tags, extra keys).
    TooMany,
    /// A string or object longer than a limit allows.
    TooLong,
    /// A member given twice; a downstream parser could read the copy this layer did not.
    Duplicate,
}

impl ErrorKind {
    /// The `code` string of the error body.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidType => "invalid_metadata_type",
            ErrorKind::TooMany => "metadata_limit_exceeded",
            ErrorKind::TooLong => "metadata_too_long",
            ErrorKind::Duplicate => "duplicate_metadata",
        }
    }
}

/// Invalid request metadata: which field (`param`, e.g. `requesty.tags`) and which rule.
///
/// A server turns it into `400 Bad Request` with [`to_json`](Self::to_json) as the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataError {
    kind: ErrorKind,
    param: String,
    message: String,
}

impl MetadataError {
    pub(crate) fn new(
        kind: ErrorKind,
        param: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            param: param.into(),
            message: message.into(),
        }
    }

    /// The rule that was broken.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The field at fault, as a dotted path from the body's top level (`requesty.extra`) or a header name.
    pub fn param(&self) -> &str {
        &self.param
    }

    /// A sentence for people: the field and the rule.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status this error answers with: always `400 Bad Request`.
    pub fn status(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }

    /// The OpenAI-style error body:
    /// `{"error":{"message":"…","type":"invalid_request_error","param":"requesty.tags","code":"…"}}`.
    ///
    /// ```
    /// let err = requesty_metadata::codec::scan(br#"{"requesty":{"tags":"a"}}"#, &Default::default())
    ///     .unwrap_err();
    /// let body: serde_json::Value = serde_json::from_slice(&err.to_json()).unwrap();
    /// assert_eq!(body["error"]["param"], "requesty.tags");
    /// assert_eq!(body["error"]["code"], "invalid_metadata_type");
    /// ```
    pub fn to_json(&self) -> Bytes {
        error_body(&self.message, Some(&self.param), self.kind.code())
    }
}

impl fmt::Display for MetadataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for MetadataError {}

/// A size in an error message: `1 byte`, `2 bytes`, as a limit of one byte reads.
pub(crate) struct Size(pub(crate) usize);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            1 => f.write_str("1 byte"),
            n => write!(f, "{n} bytes"),
        }
    }
}

/// Renders `{"error": {"message", "type", "param", "code"}}` as OpenAI-compatible clients expect it.
pub(crate) fn error_body(message: &str, param: Option<&str>, code: &str) -> Bytes {
    let body = serde_json::json!({
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }
    });
    Bytes::from(body.to_string())
}

/// The answer to a gRPC request the layer refused: a trailers-only response (HTTP 200) whose
/// `grpc-status` is `INVALID_ARGUMENT` (3) for a `400`, `RESOURCE_EXHAUSTED` (8) for a `413`, and
/// whose `grpc-message` is the error body's message, so a gRPC client reports the field and the rule
/// instead of failing to decode a JSON body as a gRPC message. `content_type` is the request's kind
/// of gRPC: a gRPC-Web client reads a trailers-only answer's status from its head as well.
pub(crate) fn grpc_answer(
    status: StatusCode,
    json: &[u8],
    content_type: &'static str,
) -> http::Response<()> {
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "8"
    } else {
        "3"
    };
    let body: serde_json::Value = serde_json::from_slice(json).unwrap_or_default();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    let mut response = http::Response::new(());
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    headers.insert("grpc-status", http::HeaderValue::from_static(code));
    if let Ok(message) = http::HeaderValue::from_str(&grpc_percent_encode(message)) {
        headers.insert("grpc-message", message);
    }
    response
}

/// `grpc-message` encoding: bytes outside printable ASCII, and `%`, as `%XX`.
fn grpc_percent_encode(message: &str) -> String {
    let mut encoded = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A limit of one byte reads as one: "the limit is 1 byte", not "1 bytes".
    #[test]
    fn sizes_of_one_byte_read_as_one() {
        let limits = crate::Limits::default().max_id_len(1);
        let body = br#"{"requesty":{"user_id":"ab"}}"#;
        let err = crate::codec::scan(body, &limits).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`requesty.user_id` is 2 bytes; the limit is 1 byte"
        );
        assert_eq!(Size(0).to_string(), "0 bytes");
    }

    #[test]
    fn a_grpc_answer_carries_the_status_and_the_encoded_message() {
        let json = error_body("`requesty.tags` has 70 tags; 100% over", None, "x");
        let answer = grpc_answer(StatusCode::BAD_REQUEST, &json, "application/grpc");
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.headers()["grpc-status"], "3");
        assert_eq!(
            answer.headers()["grpc-message"],
            "`requesty.tags` has 70 tags; 100%25 over"
        );
        let answer = grpc_answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            &error_body("caf\u{e9}", None, "x"),
            "application/grpc",
        );
        assert_eq!(answer.headers()["grpc-status"], "8");
        assert_eq!(answer.headers()["grpc-message"], "caf%C3%A9");
    }
}
