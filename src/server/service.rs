//! [`ExtractMetadata`]: the service the layer wraps around yours.

use super::future::{Pending, ResponseFuture};
use super::layer::Config;
use super::span::{DefaultMakeSpan, MakeSpan};
use super::{headers, ResponseBody};
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Request, Response};
use http_body::Body;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tower_service::Service;

/// The service made by [`RequestyMetadataLayer`](crate::RequestyMetadataLayer).
///
/// The inner service receives the same request body type it would without the layer: a JSON body is
/// rebuilt with `B::from(Bytes)` after the member is stripped; any other body is the original value.
#[derive(Clone)]
pub struct ExtractMetadata<S, M = DefaultMakeSpan> {
    pub(crate) inner: S,
    pub(crate) config: Arc<Config>,
    pub(crate) make_span: M,
}

impl<S, M, ReqBody, ResBody> Service<Request<ReqBody>> for ExtractMetadata<S, M>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ReqBody: Body + From<Bytes>,
    ResBody: Body<Data = Bytes>,
    M: MakeSpan + Clone,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, M>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // Call the instance `poll_ready` readied; leave a fresh clone for the next request.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let (mut parts, body) = req.into_parts();
        let config = self.config.clone();
        let checked = headers::read(&parts.headers)
            .and_then(|meta| crate::codec::check(&meta, &config.limits).map(|()| meta));
        if config.strip_headers {
            headers::remove(&mut parts.headers);
        }
        let read_body = is_json(&parts.headers) && !is_encoded(&parts.headers);
        let declared = declared_length(&parts.headers);
        let (header_metadata, rejection) = match checked {
            Ok(meta) => (meta, None),
            Err(error) => (Default::default(), Some(error)),
        };
        let pending = Pending {
            inner,
            parts,
            header_metadata,
            config,
            make_span: self.make_span.clone(),
            start: Instant::now(),
        };
        if let Some(error) = rejection {
            return ResponseFuture::reject(pending, error.status(), error.to_json());
        }
        if !read_body {
            return ResponseFuture::call(pending, body);
        }
        match declared {
            Some(len) if len > pending.config.max_body as u64 => ResponseFuture::too_large(pending),
            _ => ResponseFuture::collect(pending, body),
        }
    }
}

/// `application/json` or `application/*+json`, with any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    let sub = sub.as_bytes();
    kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case(b"json")
            || (sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case(b"+json")))
}

/// A body with a content coding other than `identity` is not readable as JSON here.
fn is_encoded(headers: &HeaderMap) -> bool {
    headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"))
}

pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

impl<S, M> std::fmt::Debug for ExtractMetadata<S, M>
where
    S: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtractMetadata")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn json_content_types() {
        for yes in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.api+json",
        ] {
            assert!(is_json(&headers(&[("content-type", yes)])), "{yes}");
        }
        for no in ["text/plain", "application/jsonx", "multipart/form-data", "+json", "application/+jso"] {
            assert!(!is_json(&headers(&[("content-type", no)])), "{no}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn content_encoding() {
        assert!(is_encoded(&headers(&[("content-encoding", "gzip")])));
        assert!(!is_encoded(&headers(&[("content-encoding", "identity")])));
        assert!(!is_encoded(&HeaderMap::new()));
    }
}
