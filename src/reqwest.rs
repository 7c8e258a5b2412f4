//! Metadata on reqwest calls, as a [`reqwest_middleware::Middleware`].
//!
//! ```no_run
//! use requesty_metadata::{reqwest::MetadataMiddleware, RequestMetadata};
//! use reqwest_middleware::ClientBuilder;
//!
//! # async fn run() -> Result<(), reqwest_middleware::Error> {
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(MetadataMiddleware::new(RequestMetadata::new().tag("research-agent")))
//!     .build();
//! client
//!     .post("http://127.0.0.1:8080/v1/chat/completions")
//!     .header("content-type", "application/json")
//!     .body(r#"{"model":"openai/gpt-4o","messages":[]}"#)
//!     // Per-request metadata, merged over the defaults and the current request's.
//!     .with_extension(RequestMetadata::new().trace_id("session-42"))
//!     .send()
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! Sources and precedence are the inject layer's ([`client`](crate::client)). A buffered JSON body
//! gets the member and stays buffered, so `try_clone` (and retry middleware) keeps working; a
//! streaming body gets the header form.

use crate::client::{Carrier, InjectConfig, InjectMetadataLayer};
use crate::codec::{self, splice::spliced};
use crate::content::{is_encoded, is_json};
use crate::{headers, RequestMetadata};
use http::header::CONTENT_LENGTH;
use http::{Extensions, HeaderValue};
use reqwest_middleware::{Middleware, Next, Result};
use std::sync::Arc;

/// Adds metadata to every request of a `reqwest_middleware` client.
#[derive(Clone, Debug)]
pub struct MetadataMiddleware {
    config: Arc<InjectConfig>,
}

impl MetadataMiddleware {
    /// Adds `defaults` (and the current request's metadata, and per-request extensions).
    pub fn new(defaults: RequestMetadata) -> Self {
        crate::RequestyMetadataLayer::inject(defaults).into()
    }
}

/// The middleware with the inject layer's options (carrier, boundary, propagation, limits).
impl<R> From<InjectMetadataLayer<R>> for MetadataMiddleware {
    fn from(layer: InjectMetadataLayer<R>) -> Self {
        Self {
            config: layer.config,
        }
    }
}

#[async_trait::async_trait]
impl Middleware for MetadataMiddleware {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<reqwest::Response> {
        let config = &self.config;
        let mut metadata = config.defaults.clone();
        if config.propagate {
            if let Some(current) = crate::current() {
                metadata.merge(RequestMetadata::clone(&current));
            }
        }
        if let Some(own) = extensions.get::<RequestMetadata>() {
            metadata.merge(own.clone());
        }
        if let Ok(own) = headers::read(req.headers()) {
            metadata.merge(own);
        }
        let json = config.carrier != Carrier::Headers
            && is_json(req.headers())
            && !is_encoded(req.headers());
        let buffered = req
            .body()
            .and_then(reqwest::Body::as_bytes)
            .filter(|bytes| json && bytes.len() <= config.max_body);
        // `Some(replacement)` when the body carries the metadata; `None` inside when it needs no edit.
        let in_body = buffered.and_then(|bytes| {
            let mut scan = codec::scan(bytes, &config.limits).ok()?;
            if scan.kind() != codec::BodyKind::Object {
                return None;
            }
            if let Some(existing) = scan.take_metadata() {
                metadata.merge(existing);
            }
            let (range, insert) = scan.edit(&config.filter(metadata.clone()));
            Some((!range.is_empty() || !insert.is_empty()).then(|| spliced(bytes, range, &insert)))
        });
        let metadata = config.filter(metadata);
        match in_body {
            Some(replacement) => {
                if let Some(body) = replacement {
                    if req.headers().contains_key(CONTENT_LENGTH) {
                        req.headers_mut()
                            .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
                    }
                    // A body made from bytes stays clonable, for retries.
                    *req.body_mut() = Some(body.into());
                }
                if config.carrier == Carrier::Both {
                    headers::write(&metadata, req.headers_mut());
                } else {
                    headers::remove(req.headers_mut());
                }
            }
            None => headers::write(&metadata, req.headers_mut()),
        }
        next.run(req, extensions).await
    }
}
