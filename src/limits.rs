//! Bounds on what a request may carry, so a client cannot make the layer do unbounded work.

/// Limits applied to metadata from the body and from headers, and to the body scan itself.
///
/// Every limit has a default that fits real traffic with room to spare; raise one with its setter when
/// your clients need more.
///
/// | limit | default | what happens past it |
/// |---|---|---|
/// | [`max_depth`](Self::max_depth) | 128 | an object body nested deeper is treated as malformed (passed through untouched, or rejected when configured); well-formed JSON that is not an object passes whatever its depth |
/// | [`max_tags`](Self::max_tags) | 64 | `400`, `param: requesty.tags` (or the tags header that passed it) |
/// | [`max_tag_len`](Self::max_tag_len) | 256 bytes | `400`, `param: requesty.tags` (or the header that carried the tag) |
/// | [`max_id_len`](Self::max_id_len) | 256 bytes | `400`, `param: requesty.user_id` / `requesty.trace_id` (or the header that carried the id) |
/// | [`max_origin_len`](Self::max_origin_len) | 4 KiB | `400`, `param: requesty.origin_referer` / `requesty.origin_title` (or `http-referer` / `x-title` for the header) |
/// | [`max_extra_entries`](Self::max_extra_entries) | 64 | `400`, `param: requesty.extra` |
/// | [`max_extra_bytes`](Self::max_extra_bytes) | 16 KiB of JSON | `400`, `param: requesty.extra` |
/// | [`max_member_bytes`](Self::max_member_bytes) | 64 KiB of JSON | `400`, `param: requesty` |
///
/// ```
/// use requesty_metadata::Limits;
///
/// let limits = Limits::default().max_tags(16).max_depth(64);
/// assert_eq!(limits.tags(), 16);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "limits apply only once given to a layer"]
pub struct Limits {
    depth: usize,
    tags: usize,
    tag_len: usize,
    id_len: usize,
    origin_len: usize,
    extra_entries: usize,
    extra_bytes: usize,
    member_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            depth: 128,
            tags: 64,
            tag_len: 256,
            id_len: 256,
            origin_len: 4 * 1024,
            extra_entries: 64,
            extra_bytes: 16 * 1024,
            member_bytes: 64 * 1024,
        }
    }
}

macro_rules! limit {
    ($($(#[$doc:meta])+ $field:ident, $setter:ident;)*) => {
        impl Limits {
            $(
                $(#[$doc])+
                pub fn $setter(mut self, value: usize) -> Self {
                    self.$field = value;
                    self
                }

                #[doc = concat!("The value set by [`", stringify!($setter), "`](Self::", stringify!($setter), ").")]
                pub fn $field(&self) -> usize {
                    self.$field
                }
            )*
        }
    };
}

impl Limits {
    /// These limits without the bounds on the metadata itself (the depth stays): for reading a
    /// caller's own body on the client side, which is not a stranger's input. What goes out over the
    /// limits is sent with a warning, for the gateway to judge.
    pub(crate) fn own_body(&self) -> Limits {
        Limits {
            depth: self.depth,
            tags: usize::MAX,
            tag_len: usize::MAX,
            id_len: usize::MAX,
            origin_len: usize::MAX,
            extra_entries: usize::MAX,
            extra_bytes: usize::MAX,
            member_bytes: usize::MAX,
        }
    }
}

limit! {
    /// Deepest nesting of arrays and objects in a body (the top-level object counts as 1). Raised
    /// past 128, it lets deeper bodies through, but a value inside the `requesty` member may still
    /// nest at most 127 levels of its own (a `400` past that).
    depth, max_depth;
    /// Most tags one request may carry (body and headers together). The body's `tags` array is
    /// counted as sent, repeats included, so the bound holds for the work of reading it too.
    tags, max_tags;
    /// Longest tag, in bytes.
    tag_len, max_tag_len;
    /// Longest `user_id` or `trace_id`, in bytes.
    id_len, max_id_len;
    /// Longest `origin_referer` or `origin_title` (the `HTTP-Referer` and `X-Title` headers), in
    /// bytes. The default leaves room for any URL a browser sends as a referrer (they cap it at
    /// 4,096 bytes) while keeping a span field from holding everything a header may carry.
    origin_len, max_origin_len;
    /// Most keys in `extra`.
    extra_entries, max_extra_entries;
    /// Largest `extra` object, in bytes of JSON as sent; for `extra` from headers, or merged from the
    /// body and headers, in bytes of compact JSON.
    extra_bytes, max_extra_bytes;
    /// Largest `requesty` member value, in bytes of JSON as sent.
    member_bytes, max_member_bytes;
}
