//! OpenTelemetry GenAI naming: the operation a path names, the provider a model or path names, and
//! the privacy-preserving form of a user id.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;

/// The GenAI operation for an OpenAI- or Anthropic-style path (`chat`, `text_completion`,
/// `embeddings`).
pub(crate) fn operation(path: &str) -> Option<&'static str> {
    let path = path.trim_end_matches('/');
    if path.ends_with("/chat/completions")
        || path.ends_with("/messages")
        || path.ends_with("/responses")
    {
        Some("chat")
    } else if path.ends_with("/completions") {
        Some("text_completion")
    } else if path.ends_with("/embeddings") {
        Some("embeddings")
    } else {
        None
    }
}

/// The provider, from a routed model name (`openai/gpt-4o`), the path, or a well-known model family.
pub(crate) fn provider(model: Option<&str>, path: &str) -> Option<String> {
    if let Some((prefix, _)) = model.and_then(|m| m.split_once('/')) {
        if !prefix.is_empty() {
            return Some(prefix.to_ascii_lowercase());
        }
    }
    if path.trim_end_matches('/').ends_with("/messages") {
        return Some("anthropic".into());
    }
    let model = model?.to_ascii_lowercase();
    let family = [
        ("claude", "anthropic"),
        ("gpt-", "openai"),
        ("chatgpt", "openai"),
        ("o1", "openai"),
        ("o3", "openai"),
        ("o4", "openai"),
        ("text-embedding", "openai"),
        ("gemini", "gcp.gemini"),
        ("mistral", "mistral_ai"),
        ("mixtral", "mistral_ai"),
        ("command", "cohere"),
        ("deepseek", "deepseek"),
        ("grok", "x_ai"),
    ];
    family
        .iter()
        .find(|(prefix, _)| model.starts_with(prefix))
        .map(|(_, name)| (*name).to_owned())
}

/// The key user ids are hashed with. Its `Debug` does not show it: a layer printed with `{:?}` in a
/// log must not give the key away.
#[derive(Clone)]
pub(crate) struct HashKey(Arc<[u8]>);

impl HashKey {
    pub(crate) fn new(key: &[u8]) -> Self {
        Self(key.into())
    }

    /// The keyed hash of `user_id` (see [`user_hash`]).
    pub(crate) fn hash(&self, user_id: &str) -> String {
        user_hash(&self.0, user_id)
    }
}

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(<redacted>)")
    }
}

/// A keyed hash of a user id (HMAC-SHA-256, first 16 bytes in hex): stable for grouping, not
/// reversible without the key.
pub(crate) fn user_hash(key: &[u8], user_id: &str) -> String {
    // HMAC takes keys of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(user_id.as_bytes());
    mac.finalize().into_bytes()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_key_never_shows_in_debug_output() {
        let key = HashKey::new(b"SUPER-SECRET-KEY");
        assert_eq!(format!("{key:?}"), "HashKey(<redacted>)");
        assert_eq!(key.hash("u1"), user_hash(b"SUPER-SECRET-KEY", "u1"));
        let layer = crate::RequestyMetadataLayer::new().hash_user_ids("SUPER-SECRET-KEY");
        let client = crate::RequestyMetadataLayer::inject(crate::RequestMetadata::new())
            .hash_user_ids("SUPER-SECRET-KEY");
        let make_span = crate::server::DefaultMakeSpan::new().hash_user_ids("SUPER-SECRET-KEY");
        assert!(format!("{client:?}").contains("<redacted>"));
        for shown in [
            format!("{layer:?}"),
            format!("{client:?}"),
            format!("{make_span:?}"),
        ] {
            // The key's bytes as `Debug` prints a byte slice, and as text.
            assert!(
                !shown.contains("83, 85, 80") && !shown.contains("SECRET"),
                "{shown}"
            );
        }
    }

    #[test]
    fn operations_from_paths() {
        assert_eq!(operation("/v1/chat/completions"), Some("chat"));
        assert_eq!(operation("/v1/messages/"), Some("chat"));
        assert_eq!(operation("/v1/completions"), Some("text_completion"));
        assert_eq!(operation("/v1/embeddings"), Some("embeddings"));
        assert_eq!(operation("/v1/models"), None);
    }

    #[test]
    fn providers_from_models_and_paths() {
        let p = |m: Option<&str>, path| provider(m, path);
        assert_eq!(
            p(Some("openai/gpt-4o"), "/v1/chat/completions").as_deref(),
            Some("openai")
        );
        assert_eq!(
            p(Some("Anthropic/claude-3"), "/x").as_deref(),
            Some("anthropic")
        );
        assert_eq!(
            p(Some("claude-sonnet-4-5"), "/v1/chat/completions").as_deref(),
            Some("anthropic")
        );
        assert_eq!(p(None, "/v1/messages").as_deref(), Some("anthropic"));
        assert_eq!(
            p(Some("gpt-4o-mini"), "/v1/chat/completions").as_deref(),
            Some("openai")
        );
        assert_eq!(p(Some("my-finetune"), "/v1/chat/completions"), None);
    }

    #[test]
    fn user_hash_is_keyed_and_stable() {
        let a = user_hash(b"key-1", "user_1234");
        assert_eq!(a, user_hash(b"key-1", "user_1234"));
        assert_ne!(a, user_hash(b"key-2", "user_1234"));
        assert_ne!(a, user_hash(b"key-1", "user_1235"));
        assert_eq!(a.len(), 32);
        assert!(!a.contains("1234"));
    }
}
