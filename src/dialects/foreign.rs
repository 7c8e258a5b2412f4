//! A field of another gateway's format, read leniently and with bounded work.

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// The string a foreign field holds; `None` for any other JSON value, which is skipped without being
/// built (a list or object is not ours to refuse, nor worth reading).
pub(super) fn text(json: Option<&str>) -> Option<String> {
    let json = json?;
    let plain = json
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .filter(|inner| !inner.bytes().any(|b| b == b'\\' || b == b'"' || b < 0x20));
    match plain {
        Some(text) => Some(text.to_owned()),
        None => checked_text(json).ok().flatten(),
    }
}

/// Like [`text`], but tells a value that is not JSON at all (`Err`) from one that is not a string.
pub(super) fn checked_text(json: &str) -> Result<Option<String>, serde_json::Error> {
    serde_json::from_str::<Text>(json).map(|text| text.0)
}

/// The strings of a foreign list field, in order, without repeats; other items are skipped.
pub(super) struct List {
    pub(super) items: Vec<String>,
    /// It held more than the strings read: reading stopped at the bound given to [`list`].
    pub(super) more: bool,
}

/// The first `max` distinct strings of the list field whose JSON text is `json` (none when it is
/// not a list), looked for among its first `16 * max` items. Items past them are skipped unread, so
/// the work of reading a list is bounded by `max`, not by the body, and a few repeats do not crowd
/// out a string that fits.
pub(super) fn list(json: Option<&str>, max: usize) -> List {
    let Some(json) = json else {
        return List::none();
    };
    let mut deserializer = serde_json::Deserializer::from_str(json);
    ListSeed { max }
        .deserialize(&mut deserializer)
        .ok()
        .filter(|_| deserializer.end().is_ok())
        .unwrap_or_else(List::none)
}

/// A JSON value that is a string, or anything else, skipped.
struct Text(Option<String>);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E>(self, text: &str) -> Result<Text, E> {
        Ok(Text(Some(text.to_owned())))
    }

    fn visit_string<E>(self, text: String) -> Result<Text, E> {
        Ok(Text(Some(text)))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Text, E> {
        Ok(Text(None))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Text, E> {
        Ok(Text(None))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Text, E> {
        Ok(Text(None))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Text, E> {
        Ok(Text(None))
    }

    fn visit_unit<E>(self) -> Result<Text, E> {
        Ok(Text(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Text, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| Text(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Text, A::Error> {
        IgnoredAny.visit_map(map).map(|_| Text(None))
    }
}

/// Reads a list's first `max` strings.
struct ListSeed {
    max: usize,
}

impl<'de> DeserializeSeed<'de> for ListSeed {
    type Value = List;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<List, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ListSeed {
    type Value = List;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List, A::Error> {
        let mut items: Vec<String> = Vec::new();
        let mut more = false;
        for _ in 0..self.max.saturating_mul(16) {
            match seq.next_element::<Text>()? {
                Some(Text(Some(item))) if !items.contains(&item) => {
                    if items.len() < self.max {
                        items.push(item);
                    } else {
                        // One string more than could be taken.
                        more = true;
                        break;
                    }
                }
                Some(_) => {}
                None => return Ok(List { items, more }),
            }
        }
        // Past the bound (or past a string too many) the rest is skipped unread: it may hold more.
        while seq.next_element::<IgnoredAny>()?.is_some() {
            more = true;
        }
        Ok(List { items, more })
    }

    // Anything but a list holds no list.
    fn visit_str<E>(self, _: &str) -> Result<List, E> {
        Ok(List::none())
    }

    fn visit_bool<E>(self, _: bool) -> Result<List, E> {
        Ok(List::none())
    }

    fn visit_i64<E>(self, _: i64) -> Result<List, E> {
        Ok(List::none())
    }

    fn visit_u64<E>(self, _: u64) -> Result<List, E> {
        Ok(List::none())
    }

    fn visit_f64<E>(self, _: f64) -> Result<List, E> {
        Ok(List::none())
    }

    fn visit_unit<E>(self) -> Result<List, E> {
        Ok(List::none())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<List, A::Error> {
        IgnoredAny.visit_map(map).map(|_| List::none())
    }
}

impl List {
    fn none() -> Self {
        List {
            items: Vec::new(),
            more: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_a_string_or_nothing() {
        assert_eq!(text(Some(r#""plain""#)).as_deref(), Some("plain"));
        assert_eq!(text(Some(r#""a\u0062c""#)).as_deref(), Some("abc"));
        for other in ["1", "null", "true", r#"["a"]"#, r#"{"a":"b"}"#, r#""open"#] {
            assert_eq!(text(Some(other)), None, "{other}");
        }
        assert_eq!(text(None), None);
    }

    #[test]
    fn a_list_is_read_up_to_its_bound() {
        let read = |json: &str, max| {
            let list = list(Some(json), max);
            (list.items, list.more)
        };
        assert_eq!(
            read(r#"["a",1,"a",["b"],{"c":1},"d"]"#, 8),
            (vec!["a".into(), "d".into()], false)
        );
        // Repeats do not crowd out a string that fits, within sixteen times the bound.
        assert_eq!(
            read(r#"["a","a","b"]"#, 2),
            (vec!["a".into(), "b".into()], false)
        );
        let repeats = format!("[{}\"b\"]", "\"a\",".repeat(40));
        assert_eq!(read(&repeats, 2), (vec!["a".into()], true));
        assert_eq!(
            read(r#"["a","b","c"]"#, 2),
            (vec!["a".into(), "b".into()], true)
        );
        assert_eq!(
            read(r#"["a","b"]"#, 2),
            (vec!["a".into(), "b".into()], false)
        );
        // Repeats after the bound leave nothing out.
        assert_eq!(
            read(r#"["a","b","a",1]"#, 2),
            (vec!["a".into(), "b".into()], false)
        );
        for none in [
            r#""a""#,
            "1",
            "null",
            r#"{"a":["b"]}"#,
            r#"["a","#,
            r#"["a"] x"#,
        ] {
            assert_eq!(read(none, 8), (Vec::new(), false), "{none}");
        }
    }
}
