#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
pub mod codec;
mod current;
mod error;
mod limits;
mod metadata;
pub mod server;

pub use current::{current, in_current, scope, Scoped};
pub use error::{ErrorKind, MetadataError};
pub use limits::Limits;
pub use metadata::RequestMetadata;
pub use server::RequestyMetadataLayer;
