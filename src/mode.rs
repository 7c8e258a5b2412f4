//! Whether a layer reads bodies or only headers.
//!
//! Reading a JSON body means rebuilding the request's body from bytes afterwards, which needs a body
//! type that is `From<Bytes>` (axum's `Body`, `http_body_util::Full`), and telling why a read
//! failed, which needs its error to convert into a boxed error. gRPC bodies are not `From<Bytes>`,
//! and carry no JSON anyway: [`HeadersOnly`] layers accept any body type and never buffer.

use crate::client::BoxError;
use bytes::Bytes;
use http_body::Body;

mod sealed {
    pub trait Sealed {}
}

/// How a layer treats bodies: [`JsonBodies`] or [`HeadersOnly`].
pub trait BodyMode<B: Body>: sealed::Sealed {
    /// How to read bodies of type `B`, when this mode reads them.
    #[doc(hidden)]
    fn reading() -> Option<Reading<B>>;
}

/// How a mode that reads bodies rebuilds one from bytes, and hands over its read error.
#[doc(hidden)]
pub struct Reading<B: Body> {
    pub(crate) rebuild: fn(Bytes) -> B,
    pub(crate) boxed: fn(B::Error) -> BoxError,
}

impl<B: Body> Clone for Reading<B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: Body> Copy for Reading<B> {}

/// The default: JSON bodies are read (and the body type must be `From<Bytes>`, its error convertible
/// into a boxed error, as axum's `Body` is).
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonBodies;

/// Only headers carry metadata; bodies of any type pass through untouched. For tonic and other
/// non-JSON protocols.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeadersOnly;

impl sealed::Sealed for JsonBodies {}
impl sealed::Sealed for HeadersOnly {}

impl<B> BodyMode<B> for JsonBodies
where
    B: Body + From<Bytes>,
    B::Error: Into<BoxError>,
{
    fn reading() -> Option<Reading<B>> {
        Some(Reading {
            rebuild: B::from,
            boxed: Into::into,
        })
    }
}

impl<B: Body> BodyMode<B> for HeadersOnly {
    fn reading() -> Option<Reading<B>> {
        None
    }
}
