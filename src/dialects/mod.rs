//! Other gateways' metadata formats, read into the same [`RequestMetadata`](crate::RequestMetadata).
//!
//! Teams move between gateways and mix SDKs; each gateway reads only its own format, so metadata is
//! lost at every boundary. The server layer can read all of them ([`Sources`]):
//!
//! | source | carrier | `trace_id` | `user_id` | `tags` | `extra` |
//! |---|---|---|---|---|---|
//! | Requesty | body `requesty`, `X-Requesty-*`, `HTTP-Referer` and `X-Title` (as `origin_referer`, `origin_title`) | `trace_id` | `user_id` | `tags` | `extra`, `X-Requesty-<Name>` |
//! | Helicone | headers | `Helicone-Session-Id` | `Helicone-User-Id` | `Helicone-Property-Tags` (comma-separated) | `Helicone-Property-<Key>` → `<key>`; `Helicone-Session-Path` → `session_path`, `-Name` → `session_name` |
//! | LiteLLM | body `litellm_metadata`, then `metadata` | `trace_id`, else `session_id` | `trace_user_id` | `tags` | `generation_name` |
//! | LiteLLM | headers | `x-litellm-trace-id` | `x-litellm-end-user-id` | `x-litellm-tags` (comma-separated) | every key of `x-litellm-spend-logs-metadata` (JSON object) |
//! | Portkey | headers `x-portkey-metadata` (a JSON object), `x-portkey-trace-id` | `x-portkey-trace-id` | `_user` | `tags` (a comma-separated string) | every other key |
//! | OpenRouter | body | `trace.trace_id`, else `session_id` | | | `trace.trace_name`, `.span_name`, `.generation_name` |
//! | OpenRouter | header `x-session-id` | the value | | | |
//! | native | body `user` (OpenAI, OpenRouter), else `safety_identifier` (OpenAI), else `metadata.user_id` (Anthropic) | | the value | | |
//!
//! When several are present, earlier sources win, field by field
//! ([`RequestMetadata::with_fallback`](crate::RequestMetadata::with_fallback)): Requesty's body
//! member, Requesty's headers, the other dialects' body fields (LiteLLM, then OpenRouter), their
//! headers (Helicone, LiteLLM, Portkey, OpenRouter), and last the native `user`. Tags are united in
//! that order. An empty id carries nothing and leaves the field to the next source. A Helicone
//! property's name arrives lowercased (as an `X-Requesty-<Name>` does), so a key the body's member
//! spells with capitals is the same key, and the member's wins. What the client
//! side writes in Helicone's and Portkey's forms reads back the same (an `extra` key that would read
//! back as a core field there, such as `tags`, is left out of the form, with a warning, as is a value
//! the form cannot carry: past U+00FF in Helicone's headers or `x-portkey-trace-id`, over Portkey's
//! 128 characters; see [`Gateway`](crate::client::Gateway)).
//!
//! Stripping follows the source: the headers of a source that is on are removed before the inner
//! service (like `X-Requesty-*`, unless the layer keeps headers). Body fields are never removed,
//! because `user` and `metadata` are the providers' own fields and OpenRouter's `session_id` and
//! `trace` are OpenRouter's; only the `requesty` member is stripped.

mod body;
mod foreign;
mod headers;

pub(crate) use body::{
    body_fields, conversation_id, fill_from_body, fill_native_user, warn_left_out,
};
pub(crate) use headers::{gateway_field, take_headers, warn_unread};

/// Which metadata formats the server layer reads; see [the module docs](self) for the mapping.
///
/// ```
/// use requesty_metadata::dialects::Sources;
/// use requesty_metadata::RequestyMetadataLayer;
///
/// let layer = RequestyMetadataLayer::new().sources(Sources::all().native_user(false));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "sources apply only once given to a layer"]
pub struct Sources {
    requesty: bool,
    helicone: bool,
    litellm: bool,
    portkey: bool,
    openrouter: bool,
    native_user: bool,
}

impl Default for Sources {
    /// Requesty only.
    fn default() -> Self {
        Self::requesty_only()
    }
}

macro_rules! switches {
    ($($(#[$doc:meta])* $name:ident;)*) => {
        impl Sources {
            $(
                $(#[$doc])*
                pub fn $name(mut self, on: bool) -> Self {
                    self.$name = on;
                    self
                }
            )*
        }
    };
}

switches! {
    /// Requesty's body member, `X-Requesty-*` headers and origin headers (`HTTP-Referer`, `X-Title`).
    requesty;
    /// Helicone's `Helicone-*` headers.
    helicone;
    /// LiteLLM's body `litellm_metadata` and `metadata`, and `x-litellm-*` headers.
    litellm;
    /// Portkey's `x-portkey-metadata` and `x-portkey-trace-id` headers.
    portkey;
    /// OpenRouter's body `session_id` and `trace`, and `x-session-id` header.
    openrouter;
    /// The body's `user` field (else OpenAI's `safety_identifier`, else Anthropic's
    /// `metadata.user_id`), as the user id.
    native_user;
}

impl Sources {
    /// Requesty's body member and headers (the default).
    pub fn requesty_only() -> Self {
        Self {
            requesty: true,
            helicone: false,
            litellm: false,
            portkey: false,
            openrouter: false,
            native_user: false,
        }
    }

    /// Every format this crate reads.
    pub fn all() -> Self {
        Self {
            requesty: true,
            helicone: true,
            litellm: true,
            portkey: true,
            openrouter: true,
            native_user: true,
        }
    }

    pub(crate) fn reads_requesty(&self) -> bool {
        self.requesty
    }

    fn foreign_headers(&self) -> bool {
        self.helicone || self.litellm || self.portkey || self.openrouter
    }
}
