//! The typed request metadata and its merge rules.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashSet;

/// Metadata a client attaches to an LLM request so a gateway can attribute cost and group workflows.
///
/// Serialized, it is exactly the wire object a client puts under the top-level `requesty` member of a
/// JSON body:
///
/// ```
/// use requesty_metadata::RequestMetadata;
///
/// let meta = RequestMetadata::new()
///     .tag("workflow-a")
///     .user_id("user_1234")
///     .trace_id("session_abc123")
///     .extra("country", "canada");
/// assert_eq!(
///     serde_json::to_string(&meta).unwrap(),
///     r#"{"tags":["workflow-a"],"user_id":"user_1234","trace_id":"session_abc123","extra":{"country":"canada"}}"#
/// );
/// ```
///
/// Absent fields are omitted. `origin_referer` and `origin_title` come from the `HTTP-Referer` and
/// `X-Title` headers; they serialize only when set. Keys a client sends that this version does not know
/// are kept in [`other`](Self::other) so they survive a strip and a later inject unchanged.
///
/// The wire format may gain fields, and so may this type: build it with [`new`](Self::new) and the
/// setters, or set fields on a default value, rather than with a struct literal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RequestMetadata {
    /// Labels for grouping and cost attribution, in the order first seen. The layers, [`tag`](Self::tag)
    /// and the merges keep them free of duplicates; a list set directly or deserialized with serde
    /// is taken as it is.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<String>,
    /// The end user the request is made for, as the client asserts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The business workflow or session the request belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Free-form fields (`X-Requesty-<Name>` headers land here too, under the lowercased name).
    ///
    /// Values are `serde_json` values: a number is held as an `i64`, `u64` or `f64`, so an integer
    /// beyond 64 bits, or a spelling such as `1e2`, comes back as a double (`1e2` as `100.0`; a
    /// 17-digit fraction as serde_json reads it, which may be one unit in the last place off the
    /// nearest). The body itself is not touched: such ids are best sent as strings.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Map::is_empty"
    )]
    pub extra: Map<String, Value>,
    /// The `HTTP-Referer` header of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_referer: Option<String>,
    /// The `X-Title` header of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_title: Option<String>,
    /// Members of the wire object this version does not know, kept for forward compatibility (as
    /// `serde_json` values, so numbers are held as `extra`'s are).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl RequestMetadata {
    /// Empty metadata; the same as [`Default::default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tag unless it is already present.
    #[must_use = "it returns the changed metadata"]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        push_unique(&mut self.tags, tag.into());
        self
    }

    /// Sets the user id.
    #[must_use = "it returns the changed metadata"]
    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// Sets the trace id.
    #[must_use = "it returns the changed metadata"]
    pub fn trace_id(mut self, trace_id: impl Into<String>) -> Self {
        self.trace_id = Some(trace_id.into());
        self
    }

    /// Sets one `extra` field.
    #[must_use = "it returns the changed metadata"]
    pub fn extra(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// Sets the origin referer (normally read from `HTTP-Referer`).
    #[must_use = "it returns the changed metadata"]
    pub fn origin_referer(mut self, referer: impl Into<String>) -> Self {
        self.origin_referer = Some(referer.into());
        self
    }

    /// Sets the origin title (normally read from `X-Title`).
    #[must_use = "it returns the changed metadata"]
    pub fn origin_title(mut self, title: impl Into<String>) -> Self {
        self.origin_title = Some(title.into());
        self
    }

    /// True when no field carries a value.
    pub fn is_empty(&self) -> bool {
        // Field by field, so a new field cannot be forgotten here.
        let Self {
            tags,
            user_id,
            trace_id,
            extra,
            origin_referer,
            origin_title,
            other,
        } = self;
        tags.is_empty()
            && user_id.is_none()
            && trace_id.is_none()
            && extra.is_empty()
            && origin_referer.is_none()
            && origin_title.is_none()
            && other.is_empty()
    }

    /// Combines `other` into `self`, `other` being the winning side.
    ///
    /// | field | rule |
    /// |---|---|
    /// | `tags` | union: `self`'s tags, then `other`'s new ones, in order, no duplicates |
    /// | `user_id`, `trace_id`, `origin_*` | `other`'s value when it has one (an empty one, `""`, carries nothing), else `self`'s |
    /// | `extra`, unknown members | per key: `other`'s value wins |
    ///
    /// ```
    /// use requesty_metadata::RequestMetadata;
    ///
    /// let mut base = RequestMetadata::new().tag("a").tag("b").user_id("u1").extra("tier", "free");
    /// base.merge(RequestMetadata::new().tag("b").tag("c").trace_id("t").extra("tier", "pro"));
    /// assert_eq!(base.tags, ["a", "b", "c"]);
    /// assert_eq!(base.user_id.as_deref(), Some("u1"));
    /// assert_eq!(base.trace_id.as_deref(), Some("t"));
    /// assert_eq!(base.extra["tier"], "pro");
    /// ```
    pub fn merge(&mut self, other: RequestMetadata) {
        extend_unique(&mut self.tags, other.tags);
        merge_option(&mut self.user_id, other.user_id);
        merge_option(&mut self.trace_id, other.trace_id);
        merge_option(&mut self.origin_referer, other.origin_referer);
        merge_option(&mut self.origin_title, other.origin_title);
        self.extra.extend(other.extra);
        self.other.extend(other.other);
    }

    /// Fills what `self` lacks from `fallback`: the mirror of [`merge`](Self::merge) with `self` as
    /// the winning side, so `self`'s tags come first. An empty id or origin (`""`) is lacking too: it
    /// carries nothing, and leaves the field to the fallback.
    ///
    /// The server layer combines body and header metadata this way, the body winning:
    ///
    /// ```
    /// use requesty_metadata::RequestMetadata;
    ///
    /// let body = RequestMetadata::new().tag("b").trace_id("from-body");
    /// let headers = RequestMetadata::new().tag("h").tag("b").trace_id("from-header").user_id("u");
    /// let combined = body.with_fallback(headers);
    /// assert_eq!(combined.tags, ["b", "h"]);
    /// assert_eq!(combined.trace_id.as_deref(), Some("from-body"));
    /// assert_eq!(combined.user_id.as_deref(), Some("u"));
    ///
    /// let empty = RequestMetadata::new().user_id("");
    /// let combined = empty.with_fallback(RequestMetadata::new().user_id("u"));
    /// assert_eq!(combined.user_id.as_deref(), Some("u"));
    /// ```
    #[must_use = "it returns the changed metadata"]
    pub fn with_fallback(mut self, fallback: RequestMetadata) -> Self {
        self.fill_from(fallback);
        self
    }

    /// [`with_fallback`](Self::with_fallback) in place, for chains of sources that would otherwise
    /// move the whole value in and out at every step.
    pub(crate) fn fill_from(&mut self, fallback: RequestMetadata) {
        // The common case in a chain of sources: most are absent.
        if fallback.is_empty() {
            return;
        }
        extend_unique(&mut self.tags, fallback.tags);
        for (mine, theirs) in [
            (&mut self.user_id, fallback.user_id),
            (&mut self.trace_id, fallback.trace_id),
            (&mut self.origin_referer, fallback.origin_referer),
            (&mut self.origin_title, fallback.origin_title),
        ] {
            if mine.as_deref().is_none_or(str::is_empty) && theirs.is_some() {
                *mine = theirs;
            }
        }
        for (mine, theirs) in [
            (&mut self.extra, fallback.extra),
            (&mut self.other, fallback.other),
        ] {
            if mine.is_empty() {
                *mine = theirs;
            } else {
                for (key, value) in theirs {
                    mine.entry(key).or_insert(value);
                }
            }
        }
    }

    /// [`merge`](Self::merge) by value, for chaining.
    #[must_use = "it returns the changed metadata"]
    pub fn merged(mut self, other: RequestMetadata) -> Self {
        self.merge(other);
        self
    }
}

/// `null` for a list or an object of the wire format is the same as its absence, as the body codec
/// reads it.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Adds `tag` unless `tags` already holds it.
pub(crate) fn push_unique(tags: &mut Vec<String>, tag: String) {
    if !tags.contains(&tag) {
        tags.push(tag);
    }
}

/// Adds the tags of `more` that `tags` does not hold yet, in order: [`push_unique`] for each, in
/// time linear in both lists (a client reads its caller's own member to no limit, and merges it).
pub(crate) fn extend_unique(tags: &mut Vec<String>, more: Vec<String>) {
    // Comparing each with each is quickest for the few tags a request usually has.
    if tags.len() + more.len() <= SMALL {
        for tag in more {
            push_unique(tags, tag);
        }
        return;
    }
    let mut seen: HashSet<String> = tags.iter().cloned().collect();
    for tag in more {
        if !seen.contains(&tag) {
            seen.insert(tag.clone());
            tags.push(tag);
        }
    }
}

/// Up to this many tags, finding one in a list by comparing it with each is the cheapest way.
pub(crate) const SMALL: usize = 64;

/// `theirs` wins when it has a value: an empty one (`""`) carries nothing, as everywhere else.
fn merge_option(mine: &mut Option<String>, theirs: Option<String>) {
    if theirs.as_deref().is_some_and(|value| !value.is_empty()) {
        *mine = theirs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_the_wire_object_and_back() {
        let meta = RequestMetadata::new()
            .tag("a")
            .user_id("u")
            .trace_id("t")
            .extra("country", "ca");
        let json = serde_json::to_string(&meta).unwrap();
        assert_eq!(
            json,
            r#"{"tags":["a"],"user_id":"u","trace_id":"t","extra":{"country":"ca"}}"#
        );
        let back: RequestMetadata = serde_json::from_str(&json).unwrap();
        assert_eq!(back, meta);
        assert_eq!(
            serde_json::to_string(&RequestMetadata::new()).unwrap(),
            "{}"
        );
    }

    #[test]
    fn unknown_members_round_trip() {
        let back: RequestMetadata =
            serde_json::from_str(r#"{"tags":["x"],"future":{"n":1}}"#).unwrap();
        assert_eq!(back.other["future"]["n"], 1);
        assert_eq!(
            serde_json::to_string(&back).unwrap(),
            r#"{"tags":["x"],"future":{"n":1}}"#
        );
    }

    /// The set taken for long lists gives what comparing each with each gives, repeats already in
    /// `tags` (a list set directly) included.
    #[test]
    fn long_tag_lists_merge_as_short_ones_do() {
        for (mine, theirs) in [(3, 200), (200, 3), (150, 150), (0, 100)] {
            let mut tags: Vec<String> = (0..mine).map(|i| format!("t{}", i % 50)).collect();
            let more: Vec<String> = (0..theirs).map(|i| format!("t{}", i % 70 + 20)).collect();
            let mut want = tags.clone();
            for tag in more.clone() {
                push_unique(&mut want, tag);
            }
            extend_unique(&mut tags, more);
            assert_eq!(tags, want, "{mine} and {theirs}");
        }
    }

    #[test]
    fn tag_builder_skips_duplicates() {
        assert_eq!(RequestMetadata::new().tag("a").tag("a").tags, ["a"]);
    }

    #[test]
    fn merge_rules() {
        let mut a = RequestMetadata::new()
            .tag("x")
            .tag("y")
            .user_id("ua")
            .trace_id("ta")
            .extra("k1", 1)
            .extra("k2", "a");
        a.other.insert("o".into(), Value::from(1));
        let mut b = RequestMetadata::new()
            .tag("y")
            .tag("z")
            .user_id("ub")
            .extra("k2", "b");
        b.other.insert("o".into(), Value::from(2));
        a.merge(b);
        assert_eq!(a.tags, ["x", "y", "z"]);
        assert_eq!(a.user_id.as_deref(), Some("ub"));
        assert_eq!(a.trace_id.as_deref(), Some("ta"));
        assert_eq!(a.extra["k1"], 1);
        assert_eq!(a.extra["k2"], "b");
        assert_eq!(a.other["o"], 2);
        assert!(!a.is_empty());
        assert!(RequestMetadata::new().is_empty());
    }
}
