//! axum extractors for the metadata the layer put in the request's extensions.

use crate::error::error_body;
use crate::RequestMetadata;
use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderValue, StatusCode};
use std::convert::Infallible;

/// The request's metadata, for handlers behind [`RequestyMetadataLayer`](crate::RequestyMetadataLayer).
///
/// As `Metadata` it rejects requests that carried none with `400`; as `Option<Metadata>` it never
/// rejects. Any field counts, the origin headers (`HTTP-Referer`, `X-Title`) too: a handler that needs
/// a particular field (tags, a trace id) checks for it.
///
/// ```
/// use axum::{routing::post, Router};
/// use requesty_metadata::{axum::Metadata, RequestyMetadataLayer};
///
/// async fn tagged_only(Metadata(meta): Metadata) -> String {
///     meta.tags.join(",")
/// }
///
/// async fn any(meta: Option<Metadata>) -> String {
///     meta.and_then(|Metadata(m)| m.trace_id).unwrap_or_default()
/// }
///
/// let app: Router = Router::new()
///     .route("/tagged", post(tagged_only))
///     .route("/any", post(any))
///     .layer(RequestyMetadataLayer::new());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata(pub RequestMetadata);

/// The rejection of [`Metadata`] for a request without metadata: `400` with an OpenAI-style body.
///
/// A router without the layer rejects every request this way: the extractor only sees that no
/// metadata is in the request's extensions.
#[derive(Debug)]
pub struct MissingMetadata;

impl MissingMetadata {
    const MESSAGE: &str =
        "this endpoint requires request metadata (a `requesty` body member, `X-Requesty-*` headers, or `HTTP-Referer` / `X-Title`)";
}

impl std::fmt::Display for MissingMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(Self::MESSAGE)
    }
}

impl std::error::Error for MissingMetadata {}

impl IntoResponse for MissingMetadata {
    fn into_response(self) -> Response {
        let body = error_body(Self::MESSAGE, Some("requesty"), "missing_metadata");
        let mut response = (StatusCode::BAD_REQUEST, body).into_response();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Metadata {
    type Rejection = MissingMetadata;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<RequestMetadata>()
            .cloned()
            .map(Metadata)
            .ok_or(MissingMetadata)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Metadata {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestMetadata>()
            .cloned()
            .map(Metadata))
    }
}
