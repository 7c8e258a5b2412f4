//! Whether a layer reads bodies or only headers.
//!
//! Reading a JSON body means rebuilding the request's body from bytes afterwards, which needs a body
//! type that is `From<Bytes>` (axum's `Body`, `http_body_util::Full`). gRPC bodies are not, and carry
//! no JSON anyway: [`HeadersOnly`] layers accept any body type and never buffer.

use bytes::Bytes;

mod sealed {
    pub trait Sealed {}
}

/// How a layer treats bodies: [`JsonBodies`] or [`HeadersOnly`].
pub trait BodyMode<B>: sealed::Sealed {
    /// How to rebuild a body of type `B` from bytes, when this mode reads bodies.
    #[doc(hidden)]
    fn rebuild() -> Option<fn(Bytes) -> B>;
}

/// The default: JSON bodies are read (and the body type must be `From<Bytes>`).
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonBodies;

/// Only headers carry metadata; bodies of any type pass through untouched. For tonic and other
/// non-JSON protocols.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeadersOnly;

impl sealed::Sealed for JsonBodies {}
impl sealed::Sealed for HeadersOnly {}

impl<B: From<Bytes>> BodyMode<B> for JsonBodies {
    fn rebuild() -> Option<fn(Bytes) -> B> {
        Some(B::from)
    }
}

impl<B> BodyMode<B> for HeadersOnly {
    fn rebuild() -> Option<fn(Bytes) -> B> {
        None
    }
}
