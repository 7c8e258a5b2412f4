//! Replacing one byte range of a body, moving as few bytes as possible and copying none when the
//! buffer is ours alone.

use bytes::{Buf, Bytes, BytesMut};
use std::ops::Range;

/// Replaces `body[range]` with `insert`. Every byte outside `range` keeps its value and order.
///
/// When no one else holds the buffer it is edited in place, moving only the shorter side of the
/// range when shrinking and only the tail when growing; otherwise the result is built with one copy.
pub(crate) fn splice(body: Bytes, range: Range<usize>, insert: &[u8]) -> Bytes {
    if range.is_empty() && insert.is_empty() {
        return body;
    }
    match body.try_into_mut() {
        Ok(mut owned) => {
            splice_in_place(&mut owned, range, insert);
            owned.freeze()
        }
        Err(shared) => spliced(&shared, range, insert),
    }
}

/// [`splice`] into a new buffer, for bytes that are borrowed.
pub(crate) fn spliced(body: &[u8], range: Range<usize>, insert: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() - range.len() + insert.len());
    out.extend_from_slice(&body[..range.start]);
    out.extend_from_slice(insert);
    out.extend_from_slice(&body[range.end..]);
    out.freeze()
}

/// [`splice`] on a buffer the caller owns.
pub(crate) fn splice_in_place(buf: &mut BytesMut, range: Range<usize>, insert: &[u8]) {
    let len = buf.len();
    let removed = range.len();
    let added = insert.len();
    let head = range.start;
    let tail = len - range.end;
    if added <= removed && head < tail {
        // Shift the head right over the gap, then drop the bytes now unused at the front.
        let shift = removed - added;
        buf.copy_within(0..head, shift);
        buf[shift + head..shift + head + added].copy_from_slice(insert);
        buf.advance(shift);
    } else {
        if added > removed {
            buf.resize(len + added - removed, 0);
        }
        buf.copy_within(range.end..len, range.start + added);
        buf[range.start..range.start + added].copy_from_slice(insert);
        buf.truncate(len - removed + added);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str, range: Range<usize>, insert: &str) {
        let want = format!("{}{}{}", &body[..range.start], insert, &body[range.end..]);
        let unique = splice(
            Bytes::from(body.to_owned()),
            range.clone(),
            insert.as_bytes(),
        );
        assert_eq!(unique, want.as_bytes());
        let keep = Bytes::from(body.to_owned());
        let shared = splice(keep.clone(), range, insert.as_bytes());
        assert_eq!(shared, want.as_bytes());
        assert_eq!(keep, body.as_bytes(), "a shared buffer is never written");
    }

    #[test]
    fn every_range_and_insert() {
        let body = "0123456789";
        for start in 0..=body.len() {
            for end in start..=body.len() {
                for insert in ["", "a", "abc", "abcdefghijklmnop"] {
                    check(body, start..end, insert);
                }
            }
        }
    }

    /// Shrinking in place moves the bytes on the shorter side of the range only: the others keep
    /// their addresses.
    #[test]
    fn shrinking_in_place_moves_only_the_shorter_side() {
        // The head is shorter: the tail stays put.
        let mut buf = BytesMut::from(&b"0123456789"[..]);
        let last = buf[9..].as_ptr();
        splice_in_place(&mut buf, 1..3, b"a");
        assert_eq!(&buf[..], b"0a3456789");
        assert_eq!(buf[8..].as_ptr(), last);
        // The tail is shorter: the head stays put.
        let mut buf = BytesMut::from(&b"0123456789"[..]);
        let first = buf.as_ptr();
        splice_in_place(&mut buf, 6..8, b"a");
        assert_eq!(&buf[..], b"012345a89");
        assert_eq!(buf.as_ptr(), first);
    }

    /// Growing in place within the buffer's capacity takes no new allocation, however many bytes
    /// the range replaced.
    #[test]
    fn growing_in_place_within_capacity_keeps_the_buffer() {
        let mut buf = BytesMut::with_capacity(16);
        let capacity = buf.capacity();
        // Four bytes replaced by seven: the result fills the buffer exactly.
        let body: Vec<u8> = (0..capacity - 3).map(|i| b'a' + (i % 26) as u8).collect();
        buf.extend_from_slice(&body);
        let ptr = buf.as_ptr();
        splice_in_place(&mut buf, 2..6, b"0123456");
        assert_eq!(&buf[..], [&body[..2], b"0123456", &body[6..]].concat());
        assert_eq!(buf.len(), capacity);
        assert_eq!(buf.as_ptr(), ptr);
    }

    #[test]
    fn untouched_body_is_the_same_buffer() {
        let body = Bytes::from_static(b"{}");
        let ptr = body.as_ptr();
        assert_eq!(splice(body, 1..1, b"").as_ptr(), ptr);
    }
}
