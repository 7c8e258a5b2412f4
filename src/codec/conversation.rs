//! The opening of a chat conversation — its system prompt and first user message — found without
//! parsing the messages, for recognizing the turns of one conversation.

use super::lexer::{key_eq, Lexer, Result};
use super::Members;
use std::ops::Range;

/// The raw bytes of the system prompt (top-level `system`, or the first `system`/`developer`
/// message's content) and of the first user message's content.
pub(crate) fn opening<'a>(
    body: &'a [u8],
    members: &Members,
    max_depth: usize,
) -> Option<(&'a [u8], &'a [u8])> {
    let messages = members.messages.clone()?;
    let mut system = members.system.clone().map(|r| &body[r]);
    let mut user = None;
    each(body, messages, b'[', b']', max_depth, |_, element| {
        let (mut role, mut content) = (None, None);
        if body[element.start] != b'{' {
            return Ok(true);
        }
        each(body, element, b'{', b'}', max_depth, |lx, _| {
            let key_start = lx.pos + 1;
            let escaped = lx.skip_string()?;
            let key = &body[key_start..lx.pos - 1];
            lx.skip_ws();
            lx.expect(b':')?;
            lx.skip_ws();
            let value = lx.skip_value(3)?;
            if key_eq(key, escaped, b"role")? {
                role = Some(&body[value]);
            } else if key_eq(key, escaped, b"content")? {
                content = Some(&body[value]);
            }
            Ok(true)
        })?;
        match (role, content) {
            (Some(br#""system""# | br#""developer""#), Some(c)) if system.is_none() => {
                system = Some(c)
            }
            (Some(br#""user""#), Some(c)) => {
                user = Some(c);
                return Ok(false);
            }
            _ => {}
        }
        Ok(true)
    })
    .ok()?;
    Some((system.unwrap_or_default(), user?))
}

/// Walks the items of the container at `range` (opening with `open`), calling `item` with the lexer
/// at each item; `item` returns whether to go on. Array items are skipped here and passed as ranges;
/// object members are read by `item` itself (it gets an empty range).
fn each(
    body: &[u8],
    range: Range<usize>,
    open: u8,
    close: u8,
    max_depth: usize,
    mut item: impl FnMut(&mut Lexer<'_>, Range<usize>) -> Result<bool>,
) -> Result<()> {
    let mut lx = Lexer::new(&body[..range.end], max_depth);
    lx.pos = range.start;
    lx.expect(open)?;
    lx.skip_ws();
    if lx.peek()? == close {
        return Ok(());
    }
    loop {
        let go_on = if open == b'[' {
            let element = lx.skip_value(2)?;
            item(&mut lx, element)?
        } else {
            item(&mut lx, 0..0)?
        };
        if !go_on {
            return Ok(());
        }
        lx.skip_ws();
        match lx.peek()? {
            b',' => {
                lx.pos += 1;
                lx.skip_ws();
            }
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::scan;

    fn opening_of(body: &str) -> Option<(String, String)> {
        let scan = scan(body.as_bytes(), &Default::default()).ok()?;
        let (system, user) = opening(body.as_bytes(), scan.members(), 128)?;
        Some((
            String::from_utf8_lossy(system).into_owned(),
            String::from_utf8_lossy(user).into_owned(),
        ))
    }

    #[test]
    fn finds_the_system_prompt_and_first_user_message() {
        let openai = r#"{"model":"m","messages":[{"role":"system","content":"Be brief."},{"content":"hi","role":"user"},{"role":"assistant","content":"hello"},{"role":"user","content":"more"}]}"#;
        assert_eq!(
            opening_of(openai),
            Some((r#""Be brief.""#.into(), r#""hi""#.into()))
        );
        let anthropic = r#"{"system":[{"type":"text","text":"Be brief."}],"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#;
        assert_eq!(
            opening_of(anthropic),
            Some((
                r#"[{"type":"text","text":"Be brief."}]"#.into(),
                r#"[{"type":"text","text":"hi"}]"#.into()
            ))
        );
        let no_system = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(
            opening_of(no_system),
            Some((String::new(), r#""hi""#.into()))
        );
        assert_eq!(
            opening_of(r#"{"messages":[{"role":"system","content":"x"}]}"#),
            None
        );
        assert_eq!(opening_of(r#"{"messages":[]}"#), None);
        assert_eq!(opening_of(r#"{"messages":"no"}"#), None);
        assert_eq!(opening_of(r#"{"input":"x"}"#), None);
    }

    #[test]
    fn the_first_system_prompt_is_the_one_that_counts() {
        let two = r#"{"messages":[{"role":"system","content":"a"},{"role":"developer","content":"b"},{"role":"user","content":"hi"}]}"#;
        assert_eq!(opening_of(two), Some((r#""a""#.into(), r#""hi""#.into())));
        let top_level = r#"{"system":"a","messages":[{"role":"system","content":"b"},{"role":"user","content":"hi"}]}"#;
        assert_eq!(
            opening_of(top_level),
            Some((r#""a""#.into(), r#""hi""#.into()))
        );
    }
}
