//! Errors that name the offending field and the rule it broke, and their OpenAI-style rendering.

use bytes::Bytes;
use http::StatusCode;
use std::fmt;

/// The rule a piece of metadata broke. Each maps to a stable `code` string in the error body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A value of the wrong JSON type (`tags` not an array of strings, `extra` not an object, ...).
    InvalidType,
    /// More entries than a limit allows (tags, extra keys).
    TooMany,
    /// A string or object longer than a limit allows.
    TooLong,
    /// A member given twice; a downstream parser could read the copy this layer did not.
    Duplicate,
    /// A header value that is not valid text.
    InvalidHeader,
}

impl ErrorKind {
    /// The `code` string of the error body.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidType => "invalid_metadata_type",
            ErrorKind::TooMany => "metadata_limit_exceeded",
            ErrorKind::TooLong => "metadata_too_long",
            ErrorKind::Duplicate => "duplicate_metadata",
            ErrorKind::InvalidHeader => "invalid_metadata_header",
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
