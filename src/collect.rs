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

/// What a request body's read error says of the request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadFailure {
    /// A body limit in front of this layer (`http_body_util::Limited`, as tower-http's
    /// `RequestBodyLimitLayer` wraps a body) cut it off: as much a `413` as this layer's own limit.
    TooLarge,
    /// The connection ended mid-body: the client went away, and no answer reaches it. (A layer in
    /// front that decodes the body could end its stream with the same error kinds.)
    ClientGone,
    /// Anything else: the body is broken (bad chunked framing, say).
    Broken,
}

impl ReadFailure {
    /// Reads `error` and its sources for the known causes.
    pub(crate) fn of(error: crate::client::BoxError) -> Self {
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&*error);
        while let Some(error) = cause {
            if error.is::<http_body_util::LengthLimitError>() {
                return Self::TooLarge;
            }
            if let Some(io) = error.downcast_ref::<std::io::Error>() {
                if matches!(
                    io.kind(),
                    UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
                ) {
                    return Self::ClientGone;
                }
            }
            cause = error.source();
        }
        Self::Broken
    }
}

/// The most reserved up front on the word of a declared length alone. A client that declares a large
/// body and then sends a few bytes (or stalls) makes the layer hold at most this much; a body larger
/// than this grows its buffer as it arrives.
const TRUSTED: usize = 256 * 1024;

/// Past [`TRUSTED`], how many times what has arrived the buffer may hold.
const GROWTH: usize = 4;

/// The body read so far: the first frame kept as it came (no copy for a one-frame body), later ones
/// appended to one buffer.
#[derive(Default)]
pub(crate) struct Collected {
    first: Option<Bytes>,
    rest: Option<BytesMut>,
    len: usize,
    /// The length the body declared (its size hint), `0` when unknown.
    declared: usize,
    /// Whether the body ended with trailers, which the rebuilt body cannot carry.
    trailers: bool,
}

impl Collected {
    /// `declared` is the body's declared length (`0` when unknown): it sizes the buffer, within
    /// bounds that keep what a client declares from costing more than what it sends.
    pub(crate) fn new(declared: usize) -> Self {
        Self {
            declared,
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
        let declared = self.declared;
        let rest = self.rest.get_or_insert_with(|| {
            let first = self.first.take().unwrap_or_default();
            let mut buf = BytesMut::with_capacity(declared.min(TRUSTED).max(first.len() * 2));
            buf.extend_from_slice(&first);
            buf
        });
        let needed = rest.len() + data.remaining();
        // Past the declared length (a lower bound, or no length at all), `put` grows the buffer by
        // doubling.
        if needed > rest.capacity() && needed <= declared {
            // Four times what has arrived, or the whole declared length once a quarter of it is
            // here: never more than four times what the client sent, few copies on the way, and
            // a buffer of exactly the declared size at the end.
            let target = if needed.saturating_mul(GROWTH) >= declared {
                declared
            } else {
                needed * GROWTH
            };
            let mut grown = BytesMut::with_capacity(target);
            grown.extend_from_slice(rest);
            *rest = grown;
        }
        rest.put(data);
    }

    /// The bytes the buffer has room for, for tests of how it grows.
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.rest.as_ref().map_or(0, BytesMut::capacity)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `frames` of `size` bytes, checking the buffer after each.
    fn feed(declared: usize, size: usize, frames: usize, check: impl Fn(&Collected, usize)) {
        let mut collected = Collected::new(declared);
        let frame = vec![b'x'; size];
        for n in 1..=frames {
            collected.push(&mut &frame[..]);
            check(&collected, n * size);
        }
    }

    #[test]
    fn a_declared_length_alone_reserves_little() {
        feed(32 << 20, 16, 2, |collected, _| {
            assert!(collected.capacity() <= TRUSTED, "{}", collected.capacity());
        });
    }

    #[test]
    fn the_buffer_grows_with_what_arrives_and_stops_at_the_declared_length() {
        let declared = 1 << 20;
        feed(declared, 16 * 1024, 64, |collected, received| {
            let capacity = collected.capacity();
            assert!(capacity <= declared, "{capacity} > {declared}");
            assert!(
                capacity <= (GROWTH * received).max(TRUSTED),
                "{capacity} for {received}"
            );
        });
        // A small body fits its buffer exactly: one allocation, no copy on growth.
        feed(10_000, 1000, 10, |collected, received| {
            if received > 1000 {
                assert_eq!(collected.capacity(), 10_000);
            }
        });
    }

    #[test]
    fn past_the_declared_length_the_buffer_grows_by_doubling() {
        let mut collected = Collected::new(100);
        let mut growths = 0;
        let mut capacity = 0;
        for _ in 0..1000 {
            collected.push(&mut &[b'z'; 1000][..]);
            if collected.capacity() != capacity {
                capacity = collected.capacity();
                growths += 1;
            }
        }
        assert_eq!(collected.as_slice(), &[b'z'; 1_000_000][..]);
        assert!(growths < 32, "{growths} growths for 1000 frames");
    }

    #[test]
    fn a_body_longer_than_declared_or_of_unknown_length_is_kept_whole() {
        for declared in [0, 100] {
            let mut collected = Collected::new(declared);
            for _ in 0..50 {
                collected.push(&mut &[b'y'; 1000][..]);
            }
            assert_eq!(collected.as_slice(), &[b'y'; 50_000][..]);
        }
    }
}
