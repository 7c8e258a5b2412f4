//! A gRPC-Web answer's status: gRPC-Web has no HTTP trailers, so an answer with a body sends its
//! `grpc-status` in a last frame of the body, which is followed here as the body goes out.
//!
//! The body is a sequence of frames, each a flag byte, a 4-byte big-endian length and that many
//! bytes of payload; the frame whose flag has bit `0x80` set holds the trailers, as HTTP/1 header
//! lines (`grpc-status:0\r\ngrpc-message:...\r\n`). Messages are skipped by counting their bytes;
//! only the trailers frame's payload is kept, up to [`MAX_TRAILERS`].

use http::HeaderMap;

/// The flag of the trailers frame.
const TRAILERS: u8 = 0x80;
/// The flag of a compressed payload: compressed trailers cannot be read.
const COMPRESSED: u8 = 0x01;
/// The largest trailers frame read: a status and a message fit in far less, and a larger one is not
/// kept in memory to find them.
pub(crate) const MAX_TRAILERS: u32 = 8 * 1024;

/// Whether a response head says its body is gRPC-Web frames as they are: `application/grpc-web`
/// with any `+format`, not content-encoded. `application/grpc-web-text` is the same frames in
/// base64, which is not decoded here.
pub(crate) fn is_binary(headers: &HeaderMap) -> bool {
    crate::content::grpc_answer_type(headers) == Some("application/grpc-web")
        && !crate::content::is_encoded(headers)
}

/// Follows a gRPC-Web body's frames, fed as they go out, to the status in its trailers frame. Its
/// memory is constant: a frame header, and the trailers frame's payload once it comes.
#[derive(Default)]
pub(crate) struct Frames {
    state: State,
    /// The frame header being read, split as the body's data frames split it.
    header: [u8; 5],
    /// How much of `header` has come.
    filled: u8,
    /// The trailers frame's payload, as it comes.
    trailers: Vec<u8>,
}

#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// At a frame header.
    #[default]
    Header,
    /// In a message: this many of its bytes to go.
    Message(u32),
    /// In the trailers frame: this many of its bytes to go.
    Trailers(u32),
    /// The trailers frame came whole, with this status; nothing may follow it.
    Ended(Option<i32>),
    /// Not followed any further: the framing is not gRPC-Web's, or the trailers frame is too large
    /// or compressed, or bytes followed it.
    Stopped,
}

impl Frames {
    /// Looks at the next bytes of the body.
    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                State::Header => {
                    let at = usize::from(self.filled);
                    let n = (self.header.len() - at).min(data.len());
                    self.header[at..at + n].copy_from_slice(&data[..n]);
                    data = &data[n..];
                    self.filled += n as u8;
                    if usize::from(self.filled) == self.header.len() {
                        self.filled = 0;
                        self.frame();
                    }
                }
                State::Message(left) => {
                    let n = data.len().min(left as usize);
                    data = &data[n..];
                    self.state = State::Message(left - n as u32);
                    if left as usize == n {
                        self.state = State::Header;
                    }
                }
                State::Trailers(left) => {
                    let n = data.len().min(left as usize);
                    self.trailers.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    self.state = State::Trailers(left - n as u32);
                    if left as usize == n {
                        self.end();
                    }
                }
                // The trailers frame is the last: what follows is not gRPC-Web.
                State::Ended(_) => self.state = State::Stopped,
                State::Stopped => return,
            }
        }
    }

    /// The status of a trailers frame that came whole and was the body's last; `None` before it,
    /// and when the body could not be followed.
    pub(crate) fn status(&self) -> Option<i32> {
        match self.state {
            State::Ended(status) => status,
            _ => None,
        }
    }

    /// Starts the frame whose header has come.
    fn frame(&mut self) {
        let [flag, length @ ..] = self.header;
        let length = u32::from_be_bytes(length);
        self.state = if flag & !(TRAILERS | COMPRESSED) != 0 {
            // Bits gRPC-Web does not define: these are not its frames.
            State::Stopped
        } else if flag & TRAILERS == 0 {
            match length {
                0 => State::Header,
                _ => State::Message(length),
            }
        } else if flag & COMPRESSED != 0 || length > MAX_TRAILERS {
            State::Stopped
        } else {
            self.trailers.reserve_exact(length as usize);
            State::Trailers(length)
        };
        if self.state == State::Trailers(0) {
            self.end();
        }
    }

    /// Reads the status in the trailers frame that came whole, and lets its payload go.
    fn end(&mut self) {
        self.state = State::Ended(status(&self.trailers));
        self.trailers = Vec::new();
    }
}

/// The `grpc-status` among a trailers frame's header lines: the first line of that name (in any
/// case), its value with the whitespace around it trimmed as HTTP/1 header values are.
fn status(block: &[u8]) -> Option<i32> {
    let value = block.split(|&b| b == b'\n').find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = line.split_at(colon);
        name.trim_ascii()
            .eq_ignore_ascii_case(b"grpc-status")
            .then(|| value[1..].trim_ascii())
    })?;
    super::complete::grpc_code(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame: its flag, its length and its payload.
    fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![flag];
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    /// A message and a trailers frame with `trailers` as its payload.
    fn body(trailers: &[u8]) -> Vec<u8> {
        let mut body = frame(0, b"\x0a\x03abc");
        body.extend(frame(TRAILERS, trailers));
        body
    }

    fn status_of(pieces: &[&[u8]]) -> Option<i32> {
        let mut frames = Frames::default();
        for piece in pieces {
            frames.feed(piece);
        }
        frames.status()
    }

    const UNAVAILABLE: &[u8] = b"grpc-status:14\r\ngrpc-message:upstream down\r\n";

    #[test]
    fn the_trailers_frame_gives_the_status_wherever_the_body_is_split() {
        let body = body(UNAVAILABLE);
        assert_eq!(status_of(&[&body]), Some(14));
        for i in 0..=body.len() {
            for j in i..=body.len() {
                let pieces = [&body[..i], &body[i..j], &body[j..]];
                assert_eq!(status_of(&pieces), Some(14), "split at {i} and {j}");
            }
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(status_of(&bytes), Some(14), "byte by byte");
    }

    #[test]
    fn a_body_cut_short_of_the_trailers_frames_end_has_no_status() {
        let body = body(UNAVAILABLE);
        for cut in 0..body.len() {
            assert_eq!(status_of(&[&body[..cut]]), None, "cut at {cut}");
            let bytes: Vec<&[u8]> = body[..cut].chunks(1).collect();
            assert_eq!(status_of(&bytes), None, "cut at {cut}, byte by byte");
        }
    }

    #[test]
    fn messages_are_skipped_by_their_length() {
        let mut body = frame(0, &[0x80; 70_000]);
        body.extend(frame(0, b""));
        body.extend(frame(COMPRESSED, &[TRAILERS; 9]));
        body.extend(frame(TRAILERS, b"grpc-status:5\r\n"));
        assert_eq!(status_of(&[&body]), Some(5));
        let pieces: Vec<&[u8]> = body.chunks(4096).collect();
        assert_eq!(status_of(&pieces), Some(5));
    }

    #[test]
    fn trailer_names_are_read_in_any_case_and_values_trimmed() {
        for (trailers, status) in [
            (&b"Grpc-Status: 3\r\n"[..], Some(3)),
            (b"grpc-message:a:b\r\nGRPC-STATUS:\t0 \r\n", Some(0)),
            (b"grpc-status:7", Some(7)),
            (b"grpc-status:7\n", Some(7)),
            (b"grpc-message:grpc-status:1\r\n", None),
            (
                b"grpc-status-details-bin:AAAA\r\ngrpc-status:2\r\n",
                Some(2),
            ),
            (b"grpc-status:1\r\ngrpc-status:2\r\n", Some(1)),
        ] {
            let body = body(trailers);
            assert_eq!(status_of(&[&body]), status, "{:?}", trailers.escape_ascii());
        }
    }

    #[test]
    fn trailers_without_a_valid_status_give_none() {
        for trailers in [
            &b""[..],
            b"grpc-message:down\r\n",
            b"grpc-status:\r\n",
            b"grpc-status:+1\r\n",
            b"grpc-status:x1\r\n",
            b"grpc-status:1234567890\r\n",
            b"grpc-status\r\n",
        ] {
            let body = body(trailers);
            assert_eq!(status_of(&[&body]), None, "{:?}", trailers.escape_ascii());
        }
    }

    #[test]
    fn bytes_after_the_trailers_frame_withdraw_its_status() {
        let mut body = body(UNAVAILABLE);
        body.extend(frame(0, b"late"));
        assert_eq!(status_of(&[&body]), None);
        let end = body.len() - 9;
        assert_eq!(status_of(&[&body[..end], &[], &body[end..]]), None);
    }

    #[test]
    fn trailers_too_large_or_compressed_are_not_read() {
        let mut large = UNAVAILABLE.to_vec();
        large.resize(MAX_TRAILERS as usize, b' ');
        assert_eq!(status_of(&[&body(&large)]), Some(14), "at the bound");
        large.push(b' ');
        assert_eq!(status_of(&[&body(&large)]), None, "past the bound");
        let compressed = frame(TRAILERS | COMPRESSED, UNAVAILABLE);
        assert_eq!(status_of(&[&compressed]), None);
    }

    #[test]
    fn a_body_that_is_not_grpc_web_frames_is_not_followed() {
        // JSON, say, under a gRPC-Web type: `{` sets flag bits gRPC-Web does not define.
        let mut json = b"{\"error\":1}".to_vec();
        json.extend(frame(TRAILERS, UNAVAILABLE));
        assert_eq!(status_of(&[&json]), None);
        assert_eq!(status_of(&[&frame(0x40, b""), &body(UNAVAILABLE)]), None);
    }

    #[test]
    fn only_binary_grpc_web_answers_are_followed() {
        let head = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = HeaderMap::new();
            for &(name, value) in pairs {
                headers.append(name, http::HeaderValue::from_static(value));
            }
            headers
        };
        for yes in [
            "application/grpc-web",
            "application/grpc-web+proto",
            "Application/gRPC-Web+json; charset=utf-8",
        ] {
            assert!(is_binary(&head(&[("content-type", yes)])), "{yes}");
        }
        for no in [
            "application/grpc-web-text",
            "application/grpc-web-text+proto",
            "application/grpc",
            "application/grpc+proto",
            "application/json",
        ] {
            assert!(!is_binary(&head(&[("content-type", no)])), "{no}");
        }
        let gzipped = head(&[
            ("content-type", "application/grpc-web"),
            ("content-encoding", "gzip"),
        ]);
        assert!(!is_binary(&gzipped));
        assert!(!is_binary(&HeaderMap::new()));
    }
}
