//! The client side: add metadata to outgoing requests.
//!
//! [`InjectMetadataLayer`] (made by [`RequestyMetadataLayer::inject`](crate::RequestyMetadataLayer::inject))
//! wraps any HTTP client service (hyper-util's client, a tonic `Channel`, ...). For each request it
//! combines, later sources winning ([`RequestMetadata::merge`](crate::RequestMetadata::merge)):
//!
//! 1. the layer's defaults;
//! 2. the metadata of the request being served, when the call happens inside a server layer's
//!    request ([`current`](crate::current)), unless [`propagate(false)`](InjectMetadataLayer::propagate);
//! 3. a [`RequestMetadata`](crate::RequestMetadata) in the outgoing request's extensions;
//! 4. what the request already carries: `X-Requesty-*` headers, then a `requesty` body member.
//!
//! An `extra` key of a later source among the first three and the headers also replaces a key of
//! an earlier one that names the same `X-Requesty-<Name>` header in another spelling (`Team`,
//! `team_name` for `X-Requesty-Team-Name`): header names have no case, so in the header form they
//! are one field, and the later value is the one sent, in either form.
//!
//! A JSON body whose size is known gets the result as its `requesty` member, spliced in without
//! re-serializing anything else, with `Content-Length` updated. Other bodies (streams, non-JSON,
//! [`HeadersOnly`](crate::HeadersOnly) mode) get the header form. [`Carrier`] chooses.
//!
//! A `RequestMetadata` in the request's extensions goes on as what the call carries (the merged
//! result, within [`drop_fields`](InjectMetadataLayer::drop_fields)): a service further in (a
//! second inject layer, an in-process server) reads no field this layer dropped. A layer that drops
//! fields makes the call's metadata current while it calls further in, so that a second inject
//! layer, which starts from the request being served, does not take a dropped field back from it.
//!
//! Each call runs in an `llm_client_request` span ([`DefaultMakeSpan::client`](crate::server::DefaultMakeSpan::client)):
//! the server span's fields with `otel.kind = client` and the `server.address` and `server.port` the
//! call goes to, open until the response body has ended, with
//! the usage, response model and finish reasons read from the response as it streams.

mod egress;
mod future;
mod layer;
mod portkey;
mod service;

pub use egress::{Gateway, Native};
#[cfg(feature = "reqwest")]
pub(crate) use future::Awaiting;
pub use future::{BoxError, InjectFuture};
pub use layer::{Carrier, Field, InjectMetadataLayer};
#[cfg(feature = "reqwest")]
pub(crate) use layer::{HandedOn, InjectConfig};
pub use service::InjectMetadata;
