//! OpenTelemetry GenAI naming: the operation a path names, the provider a model or path names, and
//! the privacy-preserving form of a user id.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::borrow::Cow;
use std::sync::Arc;

/// The GenAI operation for an OpenAI- or Anthropic-style path (`chat`, `text_completion`,
/// `embeddings`), or a Gemini or Bedrock Converse one (see [`native_path`]).
pub(crate) fn operation(path: &str) -> Option<&'static str> {
    let path = path.trim_end_matches('/');
    if path.ends_with("/chat/completions")
        || anthropic_messages(path)
        || path.ends_with("/responses")
    {
        Some("chat")
    } else if path.ends_with("/completions") {
        Some("text_completion")
    } else if path.ends_with("/embeddings") {
        Some("embeddings")
    } else {
        native_path(path).map(|native| native.operation)
    }
}

/// What the path of a provider's own API says of a request, where that API names the model in the
/// path and not in the body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NativePath<'a> {
    /// The provider, as the GenAI conventions name it.
    pub(crate) provider: &'static str,
    /// The GenAI operation.
    pub(crate) operation: &'static str,
    /// The model, percent-decoded.
    pub(crate) model: Cow<'a, str>,
    /// Whether the answer streams, when the path says.
    pub(crate) stream: Option<bool>,
}

/// Reads a Gemini or Bedrock Converse path:
///
/// - Gemini's (`/v1beta/models/{model}:generateContent`, `:streamGenerateContent`, `/v1/…`), named
///   `gcp.gemini`, and Vertex AI's (`/v1/projects/{p}/locations/{l}/publishers/google/models/{model}:
///   generateContent`, or without the project in express mode), named `gcp.vertex_ai`: the
///   operation is `generate_content` (the conventions name it for Gemini's API), or `embeddings` for
///   `:embedContent` and `:batchEmbedContents`; only `:streamGenerateContent` streams.
/// - Bedrock's Converse API (`/model/{modelId}/converse`, `/converse-stream`), named
///   `aws.bedrock`, with the operation `chat`. Its model ids hold colons and may be ARNs, which
///   clients percent-encode.
///
/// Under any prefix (a gateway's). Other methods (`:countTokens`, Bedrock's `invoke`) are not read.
pub(crate) fn native_path(path: &str) -> Option<NativePath<'_>> {
    let path = path.trim_end_matches('/');
    gemini_path(path).or_else(|| bedrock_path(path))
}

fn gemini_path(path: &str) -> Option<NativePath<'_>> {
    let (collection, last) = path.rsplit_once('/')?;
    if !collection.ends_with("/models") {
        return None;
    }
    // `{model}:{method}`; a client may percent-encode the colon.
    let last = percent_decoded(last)?;
    let colon = last.rfind(':').filter(|&colon| colon > 0)?;
    let (operation, stream) = match &last[colon + 1..] {
        "generateContent" => ("generate_content", Some(false)),
        "streamGenerateContent" => ("generate_content", Some(true)),
        "embedContent" | "batchEmbedContents" => ("embeddings", None),
        _ => return None,
    };
    let model = match last {
        Cow::Borrowed(last) => Cow::Borrowed(&last[..colon]),
        Cow::Owned(mut last) => {
            last.truncate(colon);
            Cow::Owned(last)
        }
    };
    // Vertex AI names the model's publisher; Google AI's API does not.
    let provider = if collection.contains("/publishers/") {
        "gcp.vertex_ai"
    } else {
        "gcp.gemini"
    };
    Some(NativePath {
        provider,
        operation,
        model,
        stream,
    })
}

fn bedrock_path(path: &str) -> Option<NativePath<'_>> {
    let (rest, stream) = if let Some(rest) = path.strip_suffix("/converse") {
        (rest, false)
    } else {
        (path.strip_suffix("/converse-stream")?, true)
    };
    // An ARN sent unencoded holds slashes of its own, never a `/model/`.
    let at = rest.rfind("/model/")?;
    let model = percent_decoded(&rest[at + "/model/".len()..])?;
    if model.is_empty() {
        return None;
    }
    Some(NativePath {
        provider: "aws.bedrock",
        operation: "chat",
        model,
        stream: Some(stream),
    })
}

/// A path segment with its percent-encoded bytes decoded; `None` when an escape is malformed or
/// the bytes are not UTF-8.
fn percent_decoded(segment: &str) -> Option<Cow<'_, str>> {
    if !segment.contains('%') {
        return Some(Cow::Borrowed(segment));
    }
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        if byte != b'%' {
            decoded.push(byte);
            at += 1;
            continue;
        }
        let hex = bytes.get(at + 1..at + 3)?;
        let digit = |b: u8| char::from(b).to_digit(16);
        let (high, low) = (digit(hex[0])?, digit(hex[1])?);
        decoded.push((high * 16 + low) as u8);
        at += 3;
    }
    String::from_utf8(decoded).ok().map(Cow::Owned)
}

/// Anthropic's Messages API, `/v1/messages` (under any prefix); OpenAI's thread messages
/// (`/v1/threads/{id}/messages`) are not it.
fn anthropic_messages(path: &str) -> bool {
    path.ends_with("/v1/messages")
}

/// The provider, from a routed model name (`openai/gpt-4o`), the path, or a well-known model family,
/// named as the GenAI conventions name providers (`gcp.gemini`, `mistral_ai`, `x_ai`, ...).
///
/// Only a known routing prefix names a provider: in `meta-llama/Llama-3.1-8B` or
/// `accounts/fireworks/models/...` the first segment is a model's author or a path, not who serves
/// it, and a wrong provider is worse than none. For the same reason a family (`claude-…`, `gpt-…`)
/// is recognized only in a bare model name.
pub(crate) fn provider(model: Option<&str>, path: &str) -> Option<String> {
    if let Some((prefix, rest)) = model.and_then(|m| m.split_once('/')) {
        let prefix = prefix.to_ascii_lowercase();
        // `google/` routes Gemini; before Google's open models (`google/gemma-2-9b-it`, a Hugging
        // Face id that vLLM or Together serve) it names their maker, not who serves them.
        let gemini = rest
            .get(..6)
            .is_some_and(|name| name.eq_ignore_ascii_case("gemini"));
        let open_model = (prefix == "google" && !gemini) || (prefix == "openai" && gpt_oss(rest));
        if let Some((_, name)) = ROUTES.iter().find(|(route, _)| *route == prefix) {
            if !open_model {
                return Some((*name).to_owned());
            }
        }
    }
    if anthropic_messages(path.trim_end_matches('/')) {
        return Some("anthropic".into());
    }
    // Gemini's, Vertex AI's and Bedrock's own APIs, whichever model they serve.
    if let Some(native) = native_path(path) {
        return Some(native.provider.into());
    }
    // Azure OpenAI's deployments (`/openai/deployments/{name}/chat/completions`): the model a
    // deployment runs may be any family, and its body usually names none.
    if path.contains("/openai/deployments/") {
        return Some("azure.ai.openai".into());
    }
    // A bare model name names its maker, who serves it; in a namespaced id (`org/model`) the maker
    // is not known to be the one serving it.
    let model = model.filter(|m| !m.contains('/'))?.to_ascii_lowercase();
    // A fine-tune (`ft:gpt-4o-mini-…:org::id`, Mistral's `ft:mistral-small-…`) is served by
    // whoever serves its base model.
    let model = model.strip_prefix("ft:").unwrap_or(&model);
    if gpt_oss(model) {
        return None;
    }
    FAMILIES
        .iter()
        .find(|(prefix, _)| model.starts_with(prefix))
        .map(|(_, name)| (*name).to_owned())
}

/// OpenAI's open-weight models (`gpt-oss-120b`), which others serve (Groq, Together, vLLM, Ollama)
/// and OpenAI's API does not: neither the `gpt-` family nor an `openai/` prefix (their maker, in
/// Groq's and OpenRouter's ids) names who serves them.
fn gpt_oss(name: &str) -> bool {
    name.get(..7)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("gpt-oss"))
}

/// Routing prefixes of gateways' model names, and the provider each names.
const ROUTES: [(&str, &str); 22] = [
    ("openai", "openai"),
    ("anthropic", "anthropic"),
    ("google", "gcp.gemini"),
    ("gemini", "gcp.gemini"),
    ("vertex", "gcp.vertex_ai"),
    ("vertex_ai", "gcp.vertex_ai"),
    ("bedrock", "aws.bedrock"),
    ("aws", "aws.bedrock"),
    ("azure", "azure.ai.openai"),
    ("mistral", "mistral_ai"),
    ("mistralai", "mistral_ai"),
    ("xai", "x_ai"),
    ("x-ai", "x_ai"),
    ("deepseek", "deepseek"),
    ("groq", "groq"),
    ("cohere", "cohere"),
    ("perplexity", "perplexity"),
    ("together", "together"),
    ("fireworks", "fireworks"),
    ("cerebras", "cerebras"),
    ("openrouter", "openrouter"),
    ("watsonx", "ibm.watsonx.ai"),
];

/// Model name prefixes of well-known families, and their maker's provider. OpenAI's embedding
/// models are named by generation: Google's `text-embedding-004` and `text-embedding-gecko` share
/// the bare `text-embedding` prefix.
const FAMILIES: [(&str, &str); 14] = [
    ("claude", "anthropic"),
    ("gpt-", "openai"),
    ("chatgpt", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("text-embedding-3", "openai"),
    ("text-embedding-ada", "openai"),
    ("gemini", "gcp.gemini"),
    ("mistral", "mistral_ai"),
    ("mixtral", "mistral_ai"),
    ("command", "cohere"),
    ("deepseek", "deepseek"),
    ("grok", "x_ai"),
];

/// The key user ids are hashed with. Its `Debug` does not show it: a layer printed with `{:?}` in a
/// log must not give the key away.
#[derive(Clone)]
pub(crate) struct HashKey(Arc<[u8]>);

impl HashKey {
    pub(crate) fn new(key: &[u8]) -> Self {
        // Most often a secret read from the environment that was not set: the hashes would then
        // be anyone's to recompute from a list of likely ids.
        if key.is_empty() {
            tracing::warn!("the key for hashing user ids is empty: the hashes are not secret");
        }
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
    fn providers_use_the_conventions_names_and_only_known_routes() {
        let chat = "/v1/chat/completions";
        for (model, want) in [
            ("openai/gpt-4o", Some("openai")),
            ("gemini-2.5-pro", Some("gcp.gemini")),
            ("google/gemini-2.5-pro", Some("gcp.gemini")),
            ("google/gemma-2-9b-it", None),
            ("google/embeddinggemma-300m", None),
            ("Mistral/mistral-large-latest", Some("mistral_ai")),
            ("xai/grok-4", Some("x_ai")),
            ("bedrock/anthropic.claude-3-5-sonnet", Some("aws.bedrock")),
            ("together/meta-llama/Llama-3.1-8B", Some("together")),
            ("meta-llama/Llama-3.1-8B-Instruct", None),
            ("accounts/fireworks/models/llama-v3p1-8b-instruct", None),
            ("deepseek-ai/DeepSeek-V3", None),
            ("accounts/fireworks/models/mixtral-8x7b", None),
            ("deepseek-chat", Some("deepseek")),
            ("llama3", None),
            ("text-embedding-3-small", Some("openai")),
            ("text-embedding-ada-002", Some("openai")),
            // Google's embedding models share OpenAI's prefix: `text-embedding-004` and `-005`
            // (Gemini API, Vertex AI), `text-embedding-gecko@003` (Vertex AI).
            ("text-embedding-004", None),
            ("text-embedding-005", None),
            ("text-embedding-gecko@003", None),
            // OpenAI's open-weight models: others serve them (Groq, Together, vLLM, Ollama), OpenAI's
            // API does not, whatever the prefix (`openai/` names their maker on Groq and
            // OpenRouter).
            ("gpt-oss-120b", None),
            ("GPT-OSS-20B", None),
            ("openai/gpt-oss-120b", None),
            ("gpt-4o-mini", Some("openai")),
            // A fine-tune is served by whoever serves its base model.
            ("ft:gpt-4o-mini-2024-07-18:acme::AbC123", Some("openai")),
            (
                "ft:mistral-small-latest:a1b2c3:20250101:d4e5",
                Some("mistral_ai"),
            ),
            ("ft:llama3", None),
        ] {
            assert_eq!(provider(Some(model), chat).as_deref(), want, "{model}");
        }
        assert_eq!(provider(None, "/v1/messages").as_deref(), Some("anthropic"));
        let azure = "/openai/deployments/prod-gpt4o/chat/completions";
        for model in [None, Some("gpt-4o")] {
            assert_eq!(
                provider(model, azure).as_deref(),
                Some("azure.ai.openai"),
                "{model:?}"
            );
        }
        assert_eq!(operation(azure), Some("chat"));
        assert_eq!(
            provider(Some("my-model"), "/v1/messages").as_deref(),
            Some("anthropic")
        );
        for openai in [
            "/v1/threads/thread_1/messages",
            "/v1/chat/completions/c_1/messages",
        ] {
            assert_eq!(provider(None, openai), None, "{openai}");
            assert_eq!(operation(openai), None, "{openai}");
        }
    }

    #[test]
    fn gemini_and_bedrock_paths_name_the_model_operation_and_provider() {
        let native = |path| {
            native_path(path).map(|n| (n.provider, n.operation, n.model.into_owned(), n.stream))
        };
        let some = |provider, operation, model: &str, stream| {
            Some((provider, operation, model.to_owned(), stream))
        };
        for (path, want) in [
            (
                "/v1beta/models/gemini-2.5-pro:generateContent",
                some("gcp.gemini", "generate_content", "gemini-2.5-pro", Some(false)),
            ),
            (
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
                some("gcp.gemini", "generate_content", "gemini-2.5-flash", Some(true)),
            ),
            (
                "/v1/models/gemini-2.0-flash%3AgenerateContent",
                some("gcp.gemini", "generate_content", "gemini-2.0-flash", Some(false)),
            ),
            (
                "/v1beta/models/gemini-embedding-001:embedContent",
                some("gcp.gemini", "embeddings", "gemini-embedding-001", None),
            ),
            (
                "/v1beta/models/text-embedding-004:batchEmbedContents",
                some("gcp.gemini", "embeddings", "text-embedding-004", None),
            ),
            (
                "/v1/projects/my-project/locations/us-central1/publishers/google/models/gemini-2.5-pro:streamGenerateContent",
                some("gcp.vertex_ai", "generate_content", "gemini-2.5-pro", Some(true)),
            ),
            (
                "/v1/publishers/google/models/gemini-2.5-flash:generateContent",
                some("gcp.vertex_ai", "generate_content", "gemini-2.5-flash", Some(false)),
            ),
            // Behind a gateway's prefix.
            (
                "/google-ai-studio/v1beta/models/gemini-2.5-flash:generateContent",
                some("gcp.gemini", "generate_content", "gemini-2.5-flash", Some(false)),
            ),
            (
                "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
                some("aws.bedrock", "chat", "anthropic.claude-3-5-sonnet-20240620-v1:0", Some(false)),
            ),
            (
                "/model/us.amazon.nova-pro-v1:0/converse-stream",
                some("aws.bedrock", "chat", "us.amazon.nova-pro-v1:0", Some(true)),
            ),
            (
                "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-sonnet-4-20250514-v1%3A0/converse",
                some(
                    "aws.bedrock",
                    "chat",
                    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-20250514-v1:0",
                    Some(false),
                ),
            ),
            // An ARN sent unencoded.
            (
                "/model/arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-text-express-v1/converse",
                some(
                    "aws.bedrock",
                    "chat",
                    "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-text-express-v1",
                    Some(false),
                ),
            ),
            ("/v1beta/models/gemini-2.5-pro:countTokens", None),
            ("/v1beta/models/gemini-2.5-pro", None),
            ("/v1beta/models/:generateContent", None),
            ("/v1beta/files/abc:generateContent", None),
            ("/v1beta/models/gemini%3", None),
            ("/v1beta/models/gemini%zzgenerateContent", None),
            ("/v1beta/models/%FF:generateContent", None),
            ("/model/amazon.titan-text-express-v1/invoke", None),
            ("/model//converse", None),
            ("/converse", None),
        ] {
            assert_eq!(native(path), want, "{path}");
            assert_eq!(
                operation(path),
                want.as_ref().map(|(_, operation, _, _)| *operation),
                "{path}"
            );
            assert_eq!(
                provider(None, path).as_deref(),
                want.as_ref().map(|(provider, _, _, _)| *provider),
                "{path}"
            );
        }
        // A routing prefix in the body still names the provider first, as on any path.
        assert_eq!(
            provider(Some("openai/gpt-4o"), "/model/m/converse").as_deref(),
            Some("openai")
        );
        // The path names the provider of a model no family rule knows.
        assert_eq!(
            provider(
                Some("gemma-3-27b-it"),
                "/v1beta/models/gemma-3-27b-it:generateContent"
            )
            .as_deref(),
            Some("gcp.gemini")
        );
    }

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
    fn openai_responses_paths_are_chat() {
        for path in ["/v1/responses", "/openai/v1/responses/"] {
            assert_eq!(operation(path), Some("chat"), "{path}");
        }
    }

    #[test]
    fn percent_escapes_anywhere_in_a_segment_are_decoded() {
        for (segment, want) in [
            ("plain", Some("plain")),
            ("%3A", Some(":")),
            ("a%3Ab", Some("a:b")),
            (
                "gemini-2.5-pro%3AgenerateContent",
                Some("gemini-2.5-pro:generateContent"),
            ),
            ("%41%62%2f", Some("Ab/")),
            ("%E2%9C%93", Some("\u{2713}")),
            ("a%3", None),
            ("%", None),
            ("%g1", None),
            ("%FF", None),
        ] {
            assert_eq!(percent_decoded(segment).as_deref(), want, "{segment}");
        }
        assert!(matches!(
            percent_decoded("plain"),
            Some(Cow::Borrowed("plain"))
        ));
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
