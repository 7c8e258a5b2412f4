#![doc = include_str!("../README.md")]
// One module may opt out: src/codec/avx2.rs, which calls into code compiled for CPU features it has
// just detected. Nothing else may.
#![deny(unsafe_code)]
#![warn(missing_docs)]
// docs.rs builds with `--cfg docsrs` on nightly, where the feature badges need this gate.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
pub mod client;
pub mod codec;
mod collect;
mod content;
mod current;
pub mod dialects;
mod error;
mod genai;
mod headers;
mod limits;
mod metadata;
mod mode;
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub mod otel;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;
pub mod server;
pub mod usage;

pub use client::InjectMetadataLayer;
pub use current::{current, in_current, scope, Scoped};
pub use error::{ErrorKind, MetadataError};
pub use limits::Limits;
pub use metadata::RequestMetadata;
pub use mode::{BodyMode, HeadersOnly, JsonBodies};
pub use server::RequestyMetadataLayer;
