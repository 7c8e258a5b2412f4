//! A field of another gateway's format, read leniently.

use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// A field of a foreign format, read whatever its type: strings and lists of strings are kept, any
/// other JSON value is skipped without being built. It is not ours to refuse.
#[derive(Default)]
pub(super) enum Foreign {
    Text(String),
    List(Vec<String>),
    #[default]
    Other,
}

impl Foreign {
    /// The field whose JSON text is `json`; a plain string needs no parser.
    pub(super) fn read(json: Option<&str>) -> Self {
        let Some(json) = json else {
            return Foreign::Other;
        };
        let plain = json
            .strip_prefix('"')
            .and_then(|inner| inner.strip_suffix('"'))
            .filter(|inner| !inner.bytes().any(|b| b == b'\\' || b == b'"' || b < 0x20));
        match plain {
            Some(text) => Foreign::Text(text.to_owned()),
            None => serde_json::from_str(json).unwrap_or_default(),
        }
    }

    pub(super) fn text(self) -> Option<String> {
        match self {
            Foreign::Text(text) => Some(text),
            _ => None,
        }
    }

    /// The strings of a list, in order, without repeats.
    pub(super) fn list(self) -> Vec<String> {
        match self {
            Foreign::List(list) => list,
            _ => Vec::new(),
        }
    }
}

impl<'de> Deserialize<'de> for Foreign {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AnyValue)
    }
}

struct AnyValue;

impl<'de> Visitor<'de> for AnyValue {
    type Value = Foreign;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E>(self, text: &str) -> Result<Foreign, E> {
        Ok(Foreign::Text(text.to_owned()))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Foreign, E> {
        Ok(Foreign::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Foreign, E> {
        Ok(Foreign::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Foreign, E> {
        Ok(Foreign::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Foreign, E> {
        Ok(Foreign::Other)
    }

    fn visit_unit<E>(self) -> Result<Foreign, E> {
        Ok(Foreign::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Foreign, A::Error> {
        let mut list = Vec::new();
        while let Some(item) = seq.next_element::<Foreign>()? {
            if let Some(text) = item.text().filter(|t| !list.contains(t)) {
                list.push(text);
            }
        }
        Ok(Foreign::List(list))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Foreign, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Foreign::Other)
    }
}
