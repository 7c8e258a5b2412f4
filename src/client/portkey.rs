//! The caller's own `x-portkey-metadata` object, edited member by member: the members the metadata
//! neither removes nor changes go on as the caller wrote them (key order, spacing, escapes, number
//! spellings), as body members do.

use crate::codec::member;
use http::HeaderMap;
use serde_json::Value;
use std::ops::Range;

/// Portkey's metadata header.
pub(super) const HEADER: &str = "x-portkey-metadata";

/// One member of the caller's object.
pub(super) struct Member {
    /// The key, decoded.
    pub(super) key: String,
    /// The value, decoded.
    pub(super) value: Value,
    /// From the key's opening quote to the value's end.
    span: Range<usize>,
    /// The value's text.
    value_span: Range<usize>,
}

/// What happens to a member in an edit.
pub(super) enum Edit {
    Keep,
    Drop,
    /// A new value, as JSON text.
    Value(String),
}

/// The caller's object: its text and where each member lies in it.
pub(super) struct Own {
    text: String,
    /// The header was not UTF-8, and was read as ISO-8859-1 (as the server and Portkey read it):
    /// it goes back in those bytes.
    latin1: bool,
    pub(super) members: Vec<Member>,
}

impl Own {
    /// The request's own object (its last line that holds something, as the server reads it: an
    /// empty line carries nothing): `None` when there is none, `Err` when it is not a JSON object.
    pub(super) fn read(headers: &HeaderMap) -> Result<Option<Self>, ()> {
        // Read as the server reads it: a value that is not UTF-8 is ISO-8859-1 (Portkey, on the
        // Fetch API, reads every value so), an object all the same.
        let Some(value) = headers
            .get_all(HEADER)
            .iter()
            .rfind(|value| !crate::headers::text(value).is_empty())
        else {
            return Ok(None);
        };
        let latin1 = std::str::from_utf8(value.as_bytes()).is_err();
        let text = crate::headers::text(value);
        let text = text.as_ref();
        // The whole of it checked as Portkey's parser reads it; the walk below finds the members.
        serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(drop)?;
        let mut members = Vec::new();
        let mut bad = false;
        member::members(text, |key, span, value_span| {
            match text
                .get(value_span.clone())
                .and_then(|raw| serde_json::from_str(raw).ok())
            {
                Some(value) => members.push(Member {
                    key: key.into_owned(),
                    value,
                    span,
                    value_span,
                }),
                None => bad = true,
            }
        })
        .ok_or(())?;
        if bad {
            return Err(());
        }
        Ok(Some(Own {
            text: text.to_owned(),
            latin1,
            members,
        }))
    }

    /// Sets the header to `edited` (from [`edited`](Self::edited)) in the bytes the caller's came
    /// in: ISO-8859-1 for one that was, so that the members kept keep their bytes and read as
    /// before. What the edit added is ASCII, which both read alike.
    pub(super) fn put(&self, out: &mut HeaderMap, edited: &str) {
        if !self.latin1 {
            crate::headers::put(out, HEADER, edited);
            return;
        }
        match crate::headers::latin1(edited) {
            Some(bytes) => crate::headers::put_encoded(out, HEADER, edited, &bytes),
            // Not from the caller's bytes and ASCII additions: as any value is written.
            None => crate::headers::put(out, HEADER, edited),
        };
    }

    /// The object with each member edited by `edit` and `append` (members as JSON text,
    /// `"key":value,...`) added last; `None` when nothing is left in it. What lies between members
    /// goes with the member after it, so every separator left has its one comma.
    pub(super) fn edited(
        &self,
        mut edit: impl FnMut(&Member) -> Edit,
        append: &str,
    ) -> Option<String> {
        let text = self.text.as_str();
        // The object parsed, so its text ends with its closing brace.
        let close = text.len().checked_sub(1)?;
        let first = self.members.first().map_or(close, |m| m.span.start);
        let mut out = String::with_capacity(text.len() + append.len() + 1);
        out.push_str(text.get(..first)?);
        let mut kept = 0;
        for (i, member) in self.members.iter().enumerate() {
            let edit = edit(member);
            if matches!(edit, Edit::Drop) {
                continue;
            }
            if kept > 0 {
                let before = self.members.get(i.checked_sub(1)?)?.span.end;
                out.push_str(text.get(before..member.span.start)?);
            }
            kept += 1;
            match edit {
                Edit::Value(value) => {
                    out.push_str(text.get(member.span.start..member.value_span.start)?);
                    out.push_str(&value);
                }
                _ => out.push_str(text.get(member.span.clone())?),
            }
        }
        if kept == 0 && append.is_empty() {
            return None;
        }
        let last = self.members.last().map_or(close, |m| m.span.end);
        out.push_str(text.get(last..close)?);
        if !append.is_empty() {
            if kept > 0 {
                out.push(',');
            }
            out.push_str(append);
        }
        out.push_str(text.get(close..)?);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(text: &str) -> Own {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER, text.parse().unwrap());
        Own::read(&headers).unwrap().unwrap()
    }

    /// Members that stay keep their bytes; each separator left keeps one comma, whichever members
    /// go; the object's own spacing stays.
    #[test]
    fn edits_keep_the_bytes_of_what_they_do_not_change() {
        let text = r#"{ "a" : 1.50 , "b":"x\u00e9", "c" :[1,2],"d":true }"#;
        let object = own(text);
        let keep = |_: &Member| Edit::Keep;
        assert_eq!(object.edited(keep, "").as_deref(), Some(text));
        let without = |names: &'static [&'static str]| {
            move |m: &Member| {
                if names.contains(&m.key.as_str()) {
                    Edit::Drop
                } else {
                    Edit::Keep
                }
            }
        };
        for (gone, want) in [
            (&["a"][..], r#"{ "b":"x\u00e9", "c" :[1,2],"d":true }"#),
            (&["b"], r#"{ "a" : 1.50, "c" :[1,2],"d":true }"#),
            (&["d"], r#"{ "a" : 1.50 , "b":"x\u00e9", "c" :[1,2] }"#),
            (&["a", "b"], r#"{ "c" :[1,2],"d":true }"#),
            (&["a", "c"], r#"{ "b":"x\u00e9","d":true }"#),
            (&["b", "c", "d"], r#"{ "a" : 1.50 }"#),
        ] {
            let got = object.edited(without(gone), "").unwrap();
            assert_eq!(got, want, "{gone:?}");
            serde_json::from_str::<Value>(&got).unwrap();
        }
        assert_eq!(object.edited(without(&["a", "b", "c", "d"]), ""), None);
        assert_eq!(
            object
                .edited(without(&["a", "b", "c", "d"]), r#""e":"f""#)
                .as_deref(),
            Some(r#"{  "e":"f"}"#)
        );
        let tags = |m: &Member| match m.key.as_str() {
            "b" => Edit::Value(r#""y""#.into()),
            _ => Edit::Keep,
        };
        assert_eq!(
            object.edited(tags, r#""e":"f""#).as_deref(),
            Some(r#"{ "a" : 1.50 , "b":"y", "c" :[1,2],"d":true ,"e":"f"}"#)
        );
        assert_eq!(
            own("{}").edited(keep, r#""e":"f""#).as_deref(),
            Some(r#"{"e":"f"}"#)
        );
        assert_eq!(own(" { } ").edited(keep, ""), None);
    }

    #[test]
    fn what_is_not_an_object_is_not_read() {
        for text in [
            "[1]",
            "\"a\"",
            "{\"a\":}",
            "{\"a\":1",
            "{\"a\":1}x",
            "{\"a\":[}",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(HEADER, text.parse().unwrap());
            assert!(Own::read(&headers).is_err(), "{text}");
        }
        assert!(matches!(Own::read(&HeaderMap::new()), Ok(None)));
    }
}
