#![no_main]
//! The response usage reader: arbitrary bytes, cut into frames at arbitrary points, read as an event
//! stream or as JSON.
//!
//! Input layout (so seeds can be made from recorded streams):
//!
//! | bytes | meaning |
//! |---|---|
//! | 0 | flags: bit 0 read as `application/json` (else `text/event-stream`); bit 1 repeat the body `byte 1` times (up to 256 KiB), to reach past the 64 KiB the reader keeps |
//! | 1 | the repeat count |
//! | 2 | `n`: the number of cuts (`% 32`) |
//! | 3..3+2n | the cuts, little-endian `u16`, each taken modulo the body length + 1; equal cuts make empty frames |
//! | rest | the body |
//!
//! Checked: feeding never panics, and a body shorter than 64 KiB reads the same (`ResponseInfo` and
//! whether a token was seen) whether it comes in one frame or in many.

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use requesty_metadata::usage::{ResponseInfo, UsageReader};

const KEEP: usize = 64 * 1024;

fn read(content_type: &str, frames: &[Bytes]) -> (ResponseInfo, bool) {
    let mut reader = UsageReader::new(content_type).expect("a type the reader knows");
    for frame in frames {
        reader.feed(frame);
    }
    let token = reader.saw_token();
    (reader.finish(), token)
}

fuzz_target!(|data: &[u8]| {
    let [flags, repeat, cuts, rest @ ..] = data else {
        return;
    };
    let cuts = usize::from(*cuts % 32);
    if rest.len() < 2 * cuts {
        return;
    }
    let (cuts, body) = rest.split_at(2 * cuts);
    let content_type = if flags & 1 != 0 {
        "application/json"
    } else {
        "text/event-stream"
    };
    let body = if flags & 2 != 0 {
        // Up to 256 KiB: well past the window, without slowing every run down.
        let times = usize::from(*repeat)
            .min(256 * 1024 / body.len().max(1))
            .max(1);
        Bytes::from(body.repeat(times))
    } else {
        Bytes::copy_from_slice(body)
    };
    let mut at: Vec<usize> = cuts
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (body.len() + 1))
        .collect();
    at.sort_unstable();
    let mut frames = Vec::with_capacity(at.len() + 1);
    let mut start = 0;
    for end in at {
        frames.push(body.slice(start..end));
        start = end;
    }
    frames.push(body.slice(start..));

    let split = read(content_type, &frames);
    if body.len() < KEEP {
        let whole = read(content_type, std::slice::from_ref(&body));
        assert_eq!(
            split,
            whole,
            "frames {:?} read differently from one frame",
            frames.iter().map(Bytes::len).collect::<Vec<_>>()
        );
    }
});
