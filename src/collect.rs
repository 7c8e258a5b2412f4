//! Reading a request body into memory, bounded, copying as little as possible.

use crate::codec::splice;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body::Body;
use std::ops::Range;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

pub(crate) enum CollectError<E> {
    TooLarge,
    /// The body's own error.
    Read(E),
}

/// The body read so far: the first frame kept as it came (no copy for a one-frame body), later ones
/// appended to one buffer.
#[derive(Default)]
pub(crate) struct Collected {
    first: Option<Bytes>,
    rest: Option<BytesMut>,
    len: usize,
    capacity: usize,
    /// Whether the body ended with trailers, which the rebuilt body cannot carry.
    trailers: bool,
}

impl Collected {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            ..Self::default()
        }
    }

    pub(crate) fn poll_body<B: Body>(
        &mut self,
        mut body: Pin<&mut B>,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<Result<(), CollectError<B::Error>>> {
        loop {
            if body.is_end_stream() {
                return Poll::Ready(Ok(()));
            }
            match ready!(body.as_mut().poll_frame(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Err(error)) => return Poll::Ready(Err(CollectError::Read(error))),
                Some(Ok(frame)) => {
                    // Trailers carry no JSON, and a body rebuilt from bytes cannot carry them:
                    // they are noted, for a warning, and not kept.
                    match frame.into_data() {
                        Ok(mut data) => {
                            self.len += data.remaining();
                            if self.len > max {
                                return Poll::Ready(Err(CollectError::TooLarge));
                            }
                            self.push(&mut data);
                        }
                        Err(frame) => self.trailers |= frame.is_trailers(),
                    }
                }
            }
        }
    }

    fn push(&mut self, data: &mut impl Buf) {
        if self.first.is_none() && self.rest.is_none() {
            self.first = Some(data.copy_to_bytes(data.remaining()));
            return;
        }
        let rest = self.rest.get_or_insert_with(|| {
            let first = self.first.take().unwrap_or_default();
            let mut buf = BytesMut::with_capacity(self.capacity.max(first.len() * 2));
            buf.extend_from_slice(&first);
            buf
        });
        rest.put(data);
    }

    /// Whether trailers came with the body; they are not in what [`Collected::splice`] and
    /// [`Collected::into_bytes`] return.
    pub(crate) fn had_trailers(&self) -> bool {
        self.trailers
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match (&self.rest, &self.first) {
            (Some(rest), _) => rest,
            (None, Some(first)) => first,
            (None, None) => &[],
        }
    }

    /// Replaces `range` with `insert`, in place when the bytes were copied into our own buffer.
    pub(crate) fn splice(self, range: Range<usize>, insert: &[u8]) -> Bytes {
        match self.rest {
            Some(mut rest) => {
                splice::splice_in_place(&mut rest, range, insert);
                rest.freeze()
            }
            None => splice::splice(self.first.unwrap_or_default(), range, insert),
        }
    }

    pub(crate) fn into_bytes(self) -> Bytes {
        match self.rest {
            Some(rest) => rest.freeze(),
            None => self.first.unwrap_or_default(),
        }
    }
}

/// Warns, in the current span, that a body's trailers are not passed on.
pub(crate) fn warn_dropped_trailers() {
    tracing::warn!(
        "the request body's trailers are not passed on: a JSON body is rebuilt from its bytes"
    );
}
