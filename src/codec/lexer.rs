//! A validating JSON skipper: finds where each value ends without building it.
//!
//! It checks structure (brackets, commas, colons, literals, number grammar) exactly, so its idea of
//! where a member starts and ends matches any conforming parser's. Inside strings it only looks for
//! the closing quote (with `memchr`, so long strings such as base64 images cost little); it does not
//! validate UTF-8 or escapes there, which a downstream parser rejects on its own. Nesting is tracked in
//! a bit stack, never by recursion, so a body cannot drive it into a stack overflow.

use memchr::memchr2;
use std::ops::Range;

/// The body is not well-formed JSON (or nests deeper than allowed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Malformed;

pub(crate) type Result<T> = std::result::Result<T, Malformed>;

/// One bit per open container: set for an object, clear for an array. Two words inline cover the
/// default depth of 128 without allocating.
struct BitStack {
    inline: [u64; 2],
    spill: Vec<u64>,
    len: usize,
}

impl BitStack {
    fn new() -> Self {
        Self {
            inline: [0; 2],
            spill: Vec::new(),
            len: 0,
        }
    }

    fn word(&mut self, index: usize) -> &mut u64 {
        let w = index / 64;
        if w < 2 {
            &mut self.inline[w]
        } else {
            let w = w - 2;
            if self.spill.len() <= w {
                self.spill.resize(w + 1, 0);
            }
            &mut self.spill[w]
        }
    }

    fn push(&mut self, is_object: bool) {
        let index = self.len;
        let bit = 1u64 << (index % 64);
        let word = self.word(index);
        if is_object {
            *word |= bit;
        } else {
            *word &= !bit;
        }
        self.len += 1;
    }

    /// Pops the top; returns whether it was an object. Only called when not empty.
    fn pop(&mut self) -> bool {
        self.len -= 1;
        let index = self.len;
        let bit = 1u64 << (index % 64);
        *self.word(index) & bit != 0
    }

    fn top_is_object(&mut self) -> bool {
        let index = self.len - 1;
        let bit = 1u64 << (index % 64);
        *self.word(index) & bit != 0
    }
}

pub(crate) struct Lexer<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
    max_depth: usize,
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
        }
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
    #[inline]
    pub(crate) fn skip_string(&mut self) -> Result<bool> {
        debug_assert_eq!(self.buf.get(self.pos), Some(&b'"'));
        let mut i = self.pos + 1;
        let mut escaped = false;
        loop {
            let rest = self.buf.get(i..).ok_or(Malformed)?;
            let off = memchr2(b'"', b'\\', rest).ok_or(Malformed)?;
            let j = i + off;
            if self.buf[j] == b'"' {
                self.pos = j + 1;
                return Ok(escaped);
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
        if self.skip_scalar()? {
            return Ok(start..self.pos);
        }
        let mut stack = BitStack::new();
        // Whether the next token may close the innermost container (right after it opened).
        let mut may_close = self.open(&mut stack, depth)?;
        loop {
            self.skip_ws();
            let b = self.peek()?;
            if may_close && (b == b'}' || b == b']') {
                self.close(&mut stack, b)?;
                if stack.len == 0 {
                    return Ok(start..self.pos);
                }
                self.after_value(&mut stack)?;
                if stack.len == 0 {
                    return Ok(start..self.pos);
                }
                may_close = false;
                continue;
            }
            if stack.top_is_object() {
                if b != b'"' {
                    return Err(Malformed);
                }
                self.skip_string()?;
                self.skip_ws();
                self.expect(b':')?;
                self.skip_ws();
            }
            if self.skip_scalar()? {
                self.after_value(&mut stack)?;
                if stack.len == 0 {
                    return Ok(start..self.pos);
                }
                may_close = false;
            } else {
                let enclosing = depth + stack.len;
                may_close = self.open(&mut stack, enclosing)?;
            }
        }
    }

    /// Opens the container at `pos`. Always returns `true` (a fresh container may close at once).
    fn open(&mut self, stack: &mut BitStack, enclosing_depth: usize) -> Result<bool> {
        if enclosing_depth + 1 > self.max_depth {
            return Err(Malformed);
        }
        stack.push(self.buf[self.pos] == b'{');
        self.pos += 1;
        Ok(true)
    }

    fn close(&mut self, stack: &mut BitStack, b: u8) -> Result<()> {
        let was_object = stack.pop();
        if was_object != (b == b'}') {
            return Err(Malformed);
        }
        self.pos += 1;
        Ok(())
    }

    /// After a value inside a container: a comma (then another value follows) or closing brackets
    /// (as many as end here). Leaves `pos` at the next value's key or value.
    fn after_value(&mut self, stack: &mut BitStack) -> Result<()> {
        loop {
            self.skip_ws();
            match self.peek()? {
                b',' => {
                    self.pos += 1;
                    return Ok(());
                }
                b @ (b'}' | b']') => {
                    self.close(stack, b)?;
                    if stack.len == 0 {
                        return Ok(());
                    }
                }
                _ => return Err(Malformed),
            }
        }
    }
}

/// Compares a key's raw bytes (between the quotes) with `name`, decoding escapes when present, without
/// allocating. `Err` when an escape is invalid (a downstream parser would reject the body).
pub(crate) fn key_eq(raw: &[u8], escaped: bool, name: &[u8]) -> Result<bool> {
    if !escaped {
        return Ok(raw == name);
    }
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
            let hex = raw.get(i + 2..i + 6).ok_or(Malformed)?;
            let mut v = 0u32;
            for &h in hex {
                let d = (h as char).to_digit(16).ok_or(Malformed)?;
                v = v * 16 + d;
            }
            return Ok((v, i + 6));
        }
        _ => return Err(Malformed),
    };
    Ok((c, i + 2))
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
    fn rejects_what_serde_rejects() {
        for bad in [
            "", "01", "1.", "-", "1e", "tru", "[1,]", "[1 2]", "{\"a\"}", "{\"a\":1,}", "[}", "{]",
            "{\"a\" 1}", "[", "\"abc", "\"a\\", "{1:2}", "[,1]", "{,}",
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
        assert_eq!(key_eq(br"\ud800", true, b"requesty"), Ok(false));
    }
}
