//! A JSON tokenizer for the top level of a body: finds where each value ends without building it.
//!
//! Scalars are checked exactly (literals, number grammar, string ends with escapes); arrays and
//! objects are handed to [`blocks`](super::blocks), which crosses them 64 bytes at a time. Inside
//! strings it looks for the closing quote (with `memchr`, so long strings cost little) and for raw
//! control characters; it does not validate UTF-8 or escapes there, which a downstream parser
//! rejects on its own (keys' escapes are checked where they are compared). Nothing
//! recurses, so a body cannot drive it into a stack overflow.

use super::blocks::skip_container;
use memchr::memchr2;
use std::ops::Range;

/// The body is not well-formed JSON (or nests deeper than allowed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Malformed;

pub(crate) type Result<T> = std::result::Result<T, Malformed>;

pub(crate) struct Lexer<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
    max_depth: usize,
    /// `buf` as text when all of it is known to be UTF-8 (see [`Lexer::over_text`]), else empty.
    text: &'a str,
}

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(buf: &'a [u8], max_depth: usize) -> Self {
        Self {
            buf,
            pos: 0,
            max_depth,
            text: "",
        }
    }

    /// A lexer over text already checked to be UTF-8 as a whole, so that the strings in it can be
    /// handed out by [`Lexer::text`] without checking each again.
    pub(crate) fn over_text(text: &'a str, max_depth: usize) -> Self {
        Self {
            buf: text.as_bytes(),
            pos: 0,
            max_depth,
            text,
        }
    }

    /// The text in `range`, for a lexer made by [`Lexer::over_text`]; `None` when the range does not
    /// fall on character boundaries (or the lexer is over bytes).
    #[inline]
    pub(crate) fn text(&self, range: Range<usize>) -> Option<&'a str> {
        self.text.get(range)
    }

    #[inline]
    pub(crate) fn skip_ws(&mut self) {
        while let Some(&b) = self.buf.get(self.pos) {
            if !is_ws(b) {
                break;
            }
            self.pos += 1;
        }
    }

    #[inline]
    pub(crate) fn peek(&self) -> Result<u8> {
        self.buf.get(self.pos).copied().ok_or(Malformed)
    }

    #[inline]
    pub(crate) fn expect(&mut self, b: u8) -> Result<()> {
        if self.peek()? == b {
            self.pos += 1;
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Skips a string starting at the opening quote. Returns whether it contained a backslash.
    /// A raw control character in it makes it malformed, as every parser has it: a key with one
    /// must not pass for another key (a parser that ends keys at a NUL reads `"requesty\0"` as the
    /// member).
    #[inline]
    pub(crate) fn skip_string(&mut self) -> Result<bool> {
        debug_assert_eq!(self.buf.get(self.pos), Some(&b'"'));
        let mut i = plain_run(self.buf, self.pos + 1);
        if self.buf.get(i) == Some(&b'"') {
            self.pos = i + 1;
            return Ok(false);
        }
        let mut escaped = false;
        loop {
            let rest = self.buf.get(i..).ok_or(Malformed)?;
            let off = memchr2(b'"', b'\\', rest).ok_or(Malformed)?;
            if has_control(&rest[..off]) {
                return Err(Malformed);
            }
            let j = i + off;
            if self.buf[j] == b'"' {
                self.pos = j + 1;
                return Ok(escaped);
            }
            // The escaped byte is not checked (a downstream parser judges escapes), but a raw
            // control character is no escape either.
            if self.buf.get(j + 1).is_some_and(|&b| b < 0x20) {
                return Err(Malformed);
            }
            escaped = true;
            i = j + 2;
        }
    }

    fn skip_literal(&mut self, word: &[u8]) -> Result<()> {
        if self.buf.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    fn skip_digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.buf.get(self.pos), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn skip_number(&mut self) -> Result<()> {
        if self.buf.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.buf.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.skip_digits();
            }
            _ => return Err(Malformed),
        }
        if self.buf.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if self.skip_digits() == 0 {
                return Err(Malformed);
            }
        }
        if matches!(self.buf.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.buf.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.skip_digits() == 0 {
                return Err(Malformed);
            }
        }
        Ok(())
    }

    /// Skips one scalar at `pos`; `Ok(false)` when `pos` holds `{` or `[` instead (not consumed).
    #[inline]
    fn skip_scalar(&mut self) -> Result<bool> {
        match self.peek()? {
            b'"' => self.skip_string().map(|_| true),
            b't' => self.skip_literal(b"true").map(|_| true),
            b'f' => self.skip_literal(b"false").map(|_| true),
            b'n' => self.skip_literal(b"null").map(|_| true),
            b'-' | b'0'..=b'9' => self.skip_number().map(|_| true),
            b'{' | b'[' => Ok(false),
            _ => Err(Malformed),
        }
    }

    /// Skips one value at `pos` (no leading whitespace) whose container sits at `depth` (the
    /// top-level object is depth 1) and returns its byte range.
    pub(crate) fn skip_value(&mut self, depth: usize) -> Result<Range<usize>> {
        let start = self.pos;
        if !self.skip_scalar()? {
            self.pos = skip_container(self.buf, start, depth, self.max_depth)?;
        }
        Ok(start..self.pos)
    }
}

/// Whether `text` holds a control character (below U+0020), which a JSON string may hold only
/// escaped. Branch-free, so it runs at vector speed on long text.
#[inline]
fn has_control(text: &[u8]) -> bool {
    text.iter().fold(false, |seen, &b| seen | (b < 0x20))
}

/// Bytes that end a plain run of string text: the quote, a backslash, control characters and every
/// byte outside ASCII.
const STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b < 0x20 || b >= 0x80 || b == b'"' as usize || b == b'\\' as usize;
        b += 1;
    }
    table
};

/// How far a short string stays plain: from `start` (inside a string), the index of the first byte
/// in [`STOP`], looking at no more than 32 bytes. Keys and ids are short: a table walk ends them
/// sooner than setting up a vector search, which longer text falls back to.
#[inline(always)]
pub(crate) fn plain_run(buf: &[u8], start: usize) -> usize {
    let end = buf.len().min(start.saturating_add(32));
    let mut i = start;
    while i < end && !STOP[usize::from(buf[i])] {
        i += 1;
    }
    i
}

/// Compares a key's raw bytes (between the quotes) with `name`, decoding escapes when present, without
/// allocating. `Err` when an escape is invalid (a downstream parser would reject the body).
#[inline]
pub(crate) fn key_eq(raw: &[u8], escaped: bool, name: &[u8]) -> Result<bool> {
    if escaped {
        escaped_key_eq(raw, name)
    } else {
        Ok(raw == name)
    }
}

fn escaped_key_eq(raw: &[u8], name: &[u8]) -> Result<bool> {
    let mut i = 0;
    let mut n = 0;
    while i < raw.len() {
        let (c, next) = match raw[i] {
            b'\\' => decode_escape(raw, i)?,
            b => (u32::from(b), i + 1),
        };
        if n >= name.len() || c != u32::from(name[n]) {
            // Still validate the rest of the escapes: the answer must not depend on where we stopped.
            return validate_escapes(raw, next).map(|_| false);
        }
        n += 1;
        i = next;
    }
    Ok(n == name.len())
}

/// Whether a key's raw bytes (between the quotes) read as `name` (lowercase ASCII letters) to some
/// parser in use, not only to a conforming one: after decoding escapes, with case folded as Go's
/// `encoding/json` folds it for struct fields (ASCII case, and `\u{17f}` and `\u{212a}`, which fold
/// to `s` and `k`) and cJSON's `cJSON_GetObjectItem` ignores ASCII case, and ended at a NUL, as C
/// parsers that keep keys as C strings end it (cJSON, json-c). `Err` when an escape is invalid,
/// as [`key_eq`].
pub(crate) fn key_reads_as(raw: &[u8], escaped: bool, name: &[u8]) -> Result<bool> {
    // Every top-level key comes here: without escapes, each character of `name` is one to three
    // bytes of the key (ASCII, or a folding sign), so most keys are ruled out by length alone.
    if !escaped {
        if raw.len() == name.len() {
            // As many bytes as characters: all ASCII, where folding is ASCII's.
            return Ok(raw.eq_ignore_ascii_case(name));
        }
        if raw.len() < name.len() || raw.len() > 3 * name.len() || raw.is_ascii() {
            return Ok(false);
        }
    }
    let mut i = 0;
    let mut n = 0;
    while i < raw.len() {
        let (c, next) = match raw[i] {
            b'\\' if escaped => decode_escape(raw, i)?,
            b if b < 0x80 => (u32::from(b), i + 1),
            _ => utf8_char(raw, i),
        };
        if c == 0 {
            return validate_escapes(raw, next).map(|_| n == name.len());
        }
        let folded = match c {
            0x41..=0x5a => c + 0x20,
            0x17f => u32::from(b's'),
            0x212a => u32::from(b'k'),
            _ => c,
        };
        if n >= name.len() || folded != u32::from(name[n]) {
            return validate_escapes(raw, next).map(|_| false);
        }
        n += 1;
        i = next;
    }
    Ok(n == name.len())
}

/// The character whose UTF-8 encoding starts at `raw[i]` (a byte past ASCII), and the index after
/// it; U+FFFD for a byte that starts no valid sequence, as parsers that accept such text read it.
fn utf8_char(raw: &[u8], i: usize) -> (u32, usize) {
    let end = raw.len().min(i + 4);
    for len in 2..=end - i {
        if let Some(c) = std::str::from_utf8(&raw[i..i + len])
            .ok()
            .and_then(|s| s.chars().next())
        {
            return (u32::from(c), i + len);
        }
    }
    (0xfffd, i + 1)
}

fn validate_escapes(raw: &[u8], mut i: usize) -> Result<()> {
    while i < raw.len() {
        i = if raw[i] == b'\\' {
            decode_escape(raw, i)?.1
        } else {
            i + 1
        };
    }
    Ok(())
}

/// Decodes the escape at `raw[i] == b'\\'` into a code point (or a UTF-16 unit for a surrogate, which
/// never equals an ASCII name) and the index after it.
fn decode_escape(raw: &[u8], i: usize) -> Result<(u32, usize)> {
    let c = match raw.get(i + 1).ok_or(Malformed)? {
        b'"' => u32::from(b'"'),
        b'\\' => u32::from(b'\\'),
        b'/' => u32::from(b'/'),
        b'b' => 0x08,
        b'f' => 0x0c,
        b'n' => u32::from(b'\n'),
        b'r' => u32::from(b'\r'),
        b't' => u32::from(b'\t'),
        b'u' => {
            let v = hex4(raw, i + 2)?;
            return match v {
                // A high surrogate is text only as the first half of a pair; a low one never alone.
                0xd800..=0xdbff => {
                    if raw.get(i + 6..i + 8) != Some(&b"\\u"[..]) {
                        return Err(Malformed);
                    }
                    let low = hex4(raw, i + 8)?;
                    if !(0xdc00..=0xdfff).contains(&low) {
                        return Err(Malformed);
                    }
                    Ok((0x10000 + ((v - 0xd800) << 10) + (low - 0xdc00), i + 12))
                }
                0xdc00..=0xdfff => Err(Malformed),
                _ => Ok((v, i + 6)),
            };
        }
        _ => return Err(Malformed),
    };
    Ok((c, i + 2))
}

/// The four hex digits at `raw[at..]` as a number.
fn hex4(raw: &[u8], at: usize) -> Result<u32> {
    let hex = raw.get(at..at + 4).ok_or(Malformed)?;
    let mut v = 0u32;
    for &h in hex {
        let d = (h as char).to_digit(16).ok_or(Malformed)?;
        v = v * 16 + d;
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip(s: &str) -> Result<Range<usize>> {
        let mut lx = Lexer::new(s.as_bytes(), 128);
        let r = lx.skip_value(0)?;
        lx.skip_ws();
        if lx.at_end() {
            Ok(r)
        } else {
            Err(Malformed)
        }
    }

    #[test]
    fn skips_what_serde_accepts() {
        for ok in [
            "1",
            "-0.5e+10",
            "1.0e0",
            "123456789012345678901234567890",
            "\"a\\\"b\"",
            "true",
            "null",
            "[]",
            "{}",
            "[1,[2,{\"a\":[]}],{}]",
            "{ \"a\" : { \"b\" : [ true , false ] } }",
        ] {
            assert!(skip(ok).is_ok(), "{ok}");
            assert!(serde_json::from_str::<serde_json::Value>(ok).is_ok());
        }
    }

    #[test]
    fn rejects_bad_scalars_and_unbalanced_containers() {
        for bad in [
            "",
            "01",
            "1.",
            "-",
            "1e",
            "tru",
            "nul",
            "[",
            "\"abc",
            "\"a\\",
            "[1",
            "{\"a\":[}",
        ] {
            assert!(skip(bad).is_err(), "{bad}");
            assert!(serde_json::from_str::<serde_json::Value>(bad).is_err());
        }
    }

    #[test]
    fn depth_is_bounded_without_recursion() {
        let deep = "[".repeat(1_000_000);
        assert!(skip(&deep).is_err());
        let ok = format!("{}{}", "[".repeat(128), "]".repeat(128));
        assert!(skip(&ok).is_ok());
        let over = format!("{}{}", "[".repeat(129), "]".repeat(129));
        assert!(skip(&over).is_err());
        let mut lx = Lexer::new(over.as_bytes(), 200);
        assert!(lx.skip_value(0).is_ok());
    }

    #[test]
    fn keys_compare_after_unescaping() {
        assert_eq!(key_eq(b"requesty", false, b"requesty"), Ok(true));
        assert_eq!(key_eq(br"requ\u0065sty", true, b"requesty"), Ok(true));
        assert_eq!(key_eq(br"\u0072equesty", true, b"requesty"), Ok(true));
        assert_eq!(key_eq(br"requesty\n", true, b"requesty"), Ok(false));
        assert_eq!(key_eq(br"requ\u00", true, b"requesty"), Err(Malformed));
        assert_eq!(key_eq(br"x\q", true, b"requesty"), Err(Malformed));
        // Lone surrogates are not text: serde_json refuses such a key.
        assert_eq!(key_eq(br"\ud800", true, b"requesty"), Err(Malformed));
        assert_eq!(
            key_eq(br"requ\udc00esty", true, b"requesty"),
            Err(Malformed)
        );
        assert_eq!(key_eq(br"\ud800\u0041", true, b"requesty"), Err(Malformed));
        assert_eq!(key_eq(br"\ud83d\ude00", true, b"requesty"), Ok(false));
    }

    #[test]
    fn keys_read_as_lenient_parsers_read_them() {
        for yes in [
            &b"Requesty"[..],
            "reque\u{17f}ty".as_bytes(),
            br"REQU\u0045STY",
            br"requesty\u0000",
            b"requesty\\u0000\xff\xc5",
        ] {
            let escaped = yes.contains(&b'\\');
            assert_eq!(key_reads_as(yes, escaped, b"requesty"), Ok(true), "{yes:?}");
        }
        for no in [
            &b"requesty\xff"[..],
            b"requ\xc5",
            b"\xf0\x9f",
            b"requestyy",
            b"requ",
            // A first byte that starts no character is no letter of the name.
            b"\xffrequesty",
        ] {
            assert_eq!(key_reads_as(no, false, b"requesty"), Ok(false), "{no:?}");
        }
        // The Kelvin sign folds to `k`, as Go folds it, for a name that has one.
        assert_eq!(
            key_reads_as("\u{212a}ey".as_bytes(), false, b"key"),
            Ok(true)
        );
        assert_eq!(key_reads_as(br"\u212Aey", true, b"key"), Ok(true));
        // Three bytes a letter is as long as a key can be and still read as the name: a key of
        // Kelvin signs alone reads as the `k`s they fold to.
        assert_eq!(
            key_reads_as("\u{212a}\u{212a}".as_bytes(), false, b"kk"),
            Ok(true)
        );
        // Escapes past the point of difference are still checked.
        assert_eq!(
            key_reads_as(br"requesty\u0000\q", true, b"requesty"),
            Err(Malformed)
        );
        assert_eq!(key_reads_as(br"x\ud800", true, b"requesty"), Err(Malformed));
    }
}
