//! Skipping a nested array or object 64 bytes at a time.
//!
//! Each block is classified with SIMD compares into bit masks (quotes, backslashes, opening and
//! closing brackets); escapes and string interiors are then resolved with bit arithmetic, so the
//! cost per block does not depend on how many short strings or escapes it holds. Only when the
//! container might close within a block are its brackets walked one by one. A string that spans
//! whole blocks is crossed with `memchr` instead. This is where a chat body spends its bytes
//! (`messages`), so it sets the speed of the whole scan.
//!
//! Inside the container it tracks strings (with escapes) and bracket balance exactly, so it ends
//! where every conforming parser ends the value. It does not check the grammar between brackets
//! (commas, colons, literals, numbers, bracket kinds): a body broken there is left for the
//! downstream parser to reject.
//!
//! On x86-64 CPUs with AVX2 and carry-less multiplication (checked once at run time) the same loop
//! runs with 32-byte compares, a popcount instruction and a one-instruction prefix XOR; see
//! [`avx2`](super::avx2). Elsewhere it uses the portable SSE2-class compares of the `wide` crate.

use super::lexer::Malformed;
use wide::u8x16;

/// Bits at odd positions, for the carry trick that finds odd-length runs of backslashes.
const ODD_BITS: u64 = 0xAAAA_AAAA_AAAA_AAAA;

pub(super) struct Masks {
    pub(super) quote: u64,
    pub(super) backslash: u64,
    pub(super) open: u64,
    pub(super) close: u64,
}

#[inline(always)]
pub(super) fn classify(block: &[u8; 64]) -> Masks {
    let quote = u8x16::splat(b'"');
    let backslash = u8x16::splat(b'\\');
    // `{`/`[` and `}`/`]` differ only in bit 0x20: fold it to test both with one compare.
    let fold = u8x16::splat(0x20);
    let open = u8x16::splat(b'{');
    let close = u8x16::splat(b'}');
    let mut m = Masks {
        quote: 0,
        backslash: 0,
        open: 0,
        close: 0,
    };
    for (k, chunk) in block.chunks_exact(16).enumerate() {
        let mut lanes = [0u8; 16];
        lanes.copy_from_slice(chunk);
        let v = u8x16::new(lanes);
        let folded = v | fold;
        let shift = k * 16;
        m.quote |= u64::from(v.simd_eq(quote).to_bitmask()) << shift;
        m.backslash |= u64::from(v.simd_eq(backslash).to_bitmask()) << shift;
        m.open |= u64::from(folded.simd_eq(open).to_bitmask()) << shift;
        m.close |= u64::from(folded.simd_eq(close).to_bitmask()) << shift;
    }
    m
}

/// Bit `i` of the result is the XOR of bits `0..=i`: with quote bits in, it marks string interiors
/// (opening quote included, closing quote not).
#[inline(always)]
pub(super) fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// Tracks escapes across blocks.
#[derive(Default)]
struct Escapes {
    /// 1 when the first byte of the next block is escaped by a backslash run ending this one.
    carry: u64,
}

impl Escapes {
    /// The bits of bytes escaped by a preceding backslash.
    #[inline(always)]
    fn next(&mut self, backslash: u64) -> u64 {
        if backslash == 0 {
            return std::mem::take(&mut self.carry);
        }
        // A backslash that is itself escaped starts nothing.
        let starts = backslash & !self.carry;
        // Adding a run's start bit to the run carries out just past its end; whether that end is
        // at an odd or even distance tells whether the byte after the run is escaped.
        let codes = ((starts << 1) | ODD_BITS).wrapping_sub(starts) ^ ODD_BITS;
        let escaped = codes ^ (backslash | self.carry);
        let escaping = codes & backslash;
        self.carry = escaping >> 63;
        escaped
    }
}

/// Skips the array or object opening at `buf[start]`, which sits at nesting depth `depth` (the
/// top-level object being 1), and returns the index just past its closing bracket.
pub(crate) fn skip_container(
    buf: &[u8],
    start: usize,
    depth: usize,
    max_depth: usize,
) -> Result<usize, Malformed> {
    #[cfg(target_arch = "x86_64")]
    if let Some(end) = super::avx2::skip_container(buf, start, depth, max_depth) {
        return end;
    }
    skip_with(buf, start, depth, max_depth, classify, prefix_xor)
}

/// The loop of [`skip_container`], given how to classify a block and how to take a prefix XOR.
/// Inlined into each caller, so every instance is compiled with its caller's CPU features.
#[inline(always)]
pub(super) fn skip_with(
    buf: &[u8],
    start: usize,
    depth: usize,
    max_depth: usize,
    classify: impl Fn(&[u8; 64]) -> Masks,
    prefix_xor: impl Fn(u64) -> u64,
) -> Result<usize, Malformed> {
    // Open brackets allowed inside, counting this one.
    let allowed = max_depth.checked_sub(depth).ok_or(Malformed)? as u64;
    let mut open: u64 = 0;
    let mut in_string: u64 = 0;
    let mut escapes = Escapes::default();
    let mut pos = start;
    let mut tail = [b' '; 64];
    while pos < buf.len() {
        let rest = &buf[pos..];
        let block: &[u8; 64] = match rest.first_chunk::<64>() {
            Some(block) => block,
            None => {
                // The last, short block: padded with whitespace, which classifies as nothing.
                tail[..rest.len()].copy_from_slice(rest);
                &tail
            }
        };
        let m = classify(block);
        let escaped = escapes.next(m.backslash);
        let quotes = m.quote & !escaped;
        let strings = prefix_xor(quotes) ^ in_string;
        in_string = ((strings as i64) >> 63) as u64;
        let opens = m.open & !strings;
        let closes = m.close & !strings;
        let (n_open, n_close) = (
            u64::from(opens.count_ones()),
            u64::from(closes.count_ones()),
        );
        if open > n_close && open + n_open <= allowed {
            // Cannot close here, cannot get too deep here: take the block whole.
            open = open + n_open - n_close;
        } else {
            let mut brackets = opens | closes;
            while brackets != 0 {
                let at = brackets.trailing_zeros();
                if opens >> at & 1 == 1 {
                    open += 1;
                    if open > allowed {
                        return Err(Malformed);
                    }
                } else {
                    open = open.checked_sub(1).ok_or(Malformed)?;
                    if open == 0 {
                        return Ok(pos + at as usize + 1);
                    }
                }
                brackets &= brackets - 1;
            }
        }
        pos += 64;
        if in_string != 0 && m.quote == 0 && escapes.carry == 0 {
            // A long string (a base64 image, a document): jump to its next quote or backslash.
            let rest = buf.get(pos..).ok_or(Malformed)?;
            pos += memchr::memchr2(b'"', b'\\', rest).ok_or(Malformed)?;
        }
    }
    Err(Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The escaped bits, one byte at a time.
    fn escaped_slow(bytes: &[u8]) -> Vec<bool> {
        let mut out = vec![false; bytes.len()];
        let mut escape_next = false;
        for (i, &b) in bytes.iter().enumerate() {
            out[i] = escape_next;
            escape_next = !escape_next && b == b'\\';
        }
        out
    }

    #[test]
    fn escapes_match_a_byte_by_byte_reading() {
        // Every pattern of backslashes and letters over three blocks, sampled densely.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        // Fewer under Miri, which interprets every instruction.
        for round in 0..if cfg!(miri) { 40 } else { 4000 } {
            let bytes: Vec<u8> = (0..192)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let density = round % 4 + 1;
                    if seed % 5 < density {
                        b'\\'
                    } else {
                        b'a'
                    }
                })
                .collect();
            let want = escaped_slow(&bytes);
            let mut escapes = Escapes::default();
            for (k, block) in bytes.chunks(64).enumerate() {
                let mut backslash = 0u64;
                for (i, &b) in block.iter().enumerate() {
                    backslash |= u64::from(b == b'\\') << i;
                }
                let got = escapes.next(backslash);
                for i in 0..64 {
                    assert_eq!(
                        got >> i & 1 == 1,
                        want[k * 64 + i],
                        "round {round} byte {}",
                        k * 64 + i
                    );
                }
            }
        }
    }

    fn skip(s: &str) -> Result<usize, Malformed> {
        skip_container(s.as_bytes(), 0, 0, 128)
    }

    #[test]
    fn ends_where_the_container_ends() {
        let long = format!("[\"{}\",{{\"a\":[\"]\\\\\"]}}]  ", "x\\\"".repeat(100));
        for s in [
            "[]",
            "{}",
            "[[],{}] x",
            r#"{"a":"}\"]","b":[1,{"c":"\\"}]}"#,
            long.as_str(),
        ] {
            let end = skip(s).unwrap();
            let value: serde_json::Value = serde_json::from_str(&s[..end]).unwrap();
            assert!(value.is_array() || value.is_object(), "{s}");
            assert!(s[end..].trim() == "" || s[end..].trim() == "x", "{s}");
        }
    }

    #[test]
    fn every_split_of_a_long_value_across_blocks() {
        // The same value starting at every offset of a block, with strings across block edges.
        let value = r#"{"k":"a\"b\\","l":[1,"]]]",{"m":"\\\\\""}],"n":"}"}"#;
        for pad in 0..130 {
            let s = format!("{}{value}, 1]", " ".repeat(pad));
            let end = skip_container(s.as_bytes(), pad, 0, 128).unwrap();
            assert_eq!(&s[pad..end], value, "pad {pad}");
        }
    }

    #[test]
    fn a_long_string_with_an_escape_at_every_offset_ends_at_its_quote() {
        // Whole blocks of string text, an escape at each place in them (across block edges too),
        // and more text before the closing quote.
        for escape in [r"\n", r"\\", r#"\""#] {
            for pad in 0..200 {
                let s = format!(
                    "[\"{}{escape}{}\",\"}}\"] ]",
                    "x".repeat(pad),
                    "y".repeat(100)
                );
                let end = skip(&s).unwrap();
                assert_eq!(&s[end..], " ]", "{escape} after {pad}");
                let value: serde_json::Value = serde_json::from_str(&s[..end]).unwrap();
                assert_eq!(value[1], "}");
            }
        }
    }

    #[test]
    fn unbalanced_truncated_or_too_deep_is_malformed() {
        for s in ["[", "[[]", "{\"a\":\"}", "[\"\\\"]", "]"] {
            assert_eq!(skip(s), Err(Malformed), "{s}");
        }
        // Shorter under Miri, which interprets every byte.
        let deep = "[".repeat(if cfg!(miri) { 1_000 } else { 1_000_000 });
        assert_eq!(skip(&deep), Err(Malformed));
        let at_limit = format!("{}{}", "[".repeat(127), "]".repeat(127));
        assert_eq!(skip_container(at_limit.as_bytes(), 0, 1, 128), Ok(254));
        let over = format!("{}{}", "[".repeat(128), "]".repeat(128));
        assert_eq!(skip_container(over.as_bytes(), 0, 1, 128), Err(Malformed));
    }
}
