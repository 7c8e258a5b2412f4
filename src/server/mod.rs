//! The server side: read metadata from requests, strip it, and trace each request until its response
//! body ends.
//!
//! [`RequestyMetadataLayer`] is the entry point; this module holds the
//! service, future and body types it produces and the span customization hooks.

mod body;
mod complete;
mod future;
mod grpc_web;
mod layer;
mod service;
pub(crate) mod span;

pub use body::ResponseBody;
pub use complete::Completion;
pub(crate) use complete::Tracker;
pub use future::ResponseFuture;
pub use layer::RequestyMetadataLayer;
pub use service::ExtractMetadata;
pub use span::{DefaultMakeSpan, MakeSpan, RequestInfo};
