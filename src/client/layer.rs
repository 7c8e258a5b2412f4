//! [`InjectMetadataLayer`]: options and the tower `Layer`.

use super::egress::{self, Gateway, Native};
use super::service::InjectMetadata;
use crate::current::Inbound;
use crate::error::Size;
use crate::genai::HashKey;
use crate::server::DefaultMakeSpan;
use crate::{HeadersOnly, JsonBodies, Limits, RequestMetadata, RequestyMetadataLayer};
use bytes::Bytes;
use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;
use tower_layer::Layer;

/// Where outgoing metadata travels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Carrier {
    /// The `requesty` body member for JSON bodies of known size; headers for everything else.
    #[default]
    Body,
    /// Always headers. A body is read only to drop fields or to write a provider-native field; a
    /// `requesty` member found there is then removed, and what it held travels in the headers (what
    /// headers cannot carry, such as a non-string `extra` value, is left out with a warning).
    Headers,
    /// Headers always, and the body member too where there is a JSON body.
    Both,
}

/// A metadata field, for [`InjectMetadataLayer::drop_fields`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// `tags`
    Tags,
    /// `user_id`
    UserId,
    /// `trace_id`
    TraceId,
    /// `extra`
    Extra,
    /// `origin_referer` and `origin_title`
    Origin,
    /// Members this version does not know ([`RequestMetadata::other`]).
    Other,
}

impl Field {
    fn clear(self, meta: &mut RequestMetadata) {
        match self {
            Field::Tags => meta.tags.clear(),
            Field::UserId => meta.user_id = None,
            Field::TraceId => meta.trace_id = None,
            Field::Extra => meta.extra.clear(),
            Field::Origin => {
                meta.origin_referer = None;
                meta.origin_title = None;
            }
            Field::Other => meta.other.clear(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct InjectConfig {
    pub(crate) defaults: RequestMetadata,
    pub(crate) carrier: Carrier,
    pub(crate) propagate: bool,
    pub(crate) dropped: Vec<Field>,
    pub(crate) limits: Limits,
    pub(crate) max_body: usize,
    pub(crate) make_span: DefaultMakeSpan,
    pub(crate) native: Option<Native>,
    pub(crate) gateways: Vec<Gateway>,
    pub(crate) hash_key: Option<HashKey>,
    /// Whether bodies may be read at all: not for a layer made
    /// [`headers_only`](InjectMetadataLayer::headers_only), whatever else it was asked (the reqwest
    /// middleware made from one holds to that too).
    pub(crate) bodies: bool,
}

/// What [`InjectConfig::hand_on`] took out of a request's extensions.
#[must_use = "extensions that outlive the call get these back"]
#[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
pub(crate) struct HandedOn {
    own: Option<RequestMetadata>,
    inbound: Option<Inbound>,
}

impl HandedOn {
    /// Puts the caller's extensions back as they were before the call.
    #[cfg(feature = "reqwest")]
    pub(crate) fn restore(self, extensions: &mut http::Extensions) {
        if let Some(own) = self.own {
            extensions.insert(own);
        }
        if let Some(inbound) = self.inbound {
            extensions.insert(inbound);
        }
    }
}

impl InjectConfig {
    /// The metadata a call starts from, before what its request carries: the defaults, then the
    /// request being served (unless propagation is off), then a `RequestMetadata` in the call's
    /// extensions. The tower layer and the reqwest middleware both start here.
    pub(crate) fn starting(&self, extensions: &http::Extensions) -> RequestMetadata {
        let mut metadata = self.defaults.clone();
        if self.propagate {
            if let Some(current) = crate::current() {
                crate::headers::merge_over(&mut metadata, RequestMetadata::clone(&current));
            }
        }
        if let Some(own) = extensions.get::<RequestMetadata>() {
            // A request forwarded as it was received carries the server layer's metadata, marked
            // as the inbound request's: not the call's own, unless the handler changed it.
            let inbound = !self.propagate
                && extensions
                    .get::<Inbound>()
                    .is_some_and(|inbound| *inbound.0 == *own);
            if !inbound {
                crate::headers::merge_over(&mut metadata, own.clone());
            }
        }
        metadata
    }

    /// Applies the boundary: what must not leave through this client.
    pub(crate) fn filter(&self, mut meta: RequestMetadata) -> RequestMetadata {
        for field in &self.dropped {
            field.clear(&mut meta);
        }
        meta
    }

    /// Leaves in the sent request's extensions only what the call carries: a `RequestMetadata`
    /// there becomes the call's final `metadata`, so that a service further in (another inject
    /// layer, an in-process server) reads no field this boundary dropped; the inbound request's
    /// mark goes, the request being a call of its own now. Returns what it replaced, for a caller
    /// whose extensions outlive the call (reqwest-middleware's) to put back.
    pub(crate) fn hand_on(
        metadata: &RequestMetadata,
        extensions: &mut http::Extensions,
    ) -> HandedOn {
        let own = match extensions.get_mut::<RequestMetadata>() {
            Some(own) if own != metadata => Some(std::mem::replace(own, metadata.clone())),
            _ => None,
        };
        HandedOn {
            own,
            inbound: extensions.remove::<Inbound>(),
        }
    }

    /// What services further in take for the request being served while this call is made: the
    /// call's own metadata when this boundary drops fields. An inject layer further in starts from
    /// what is current (the inbound request's metadata), and would put back a field dropped here;
    /// `None` (nothing dropped) leaves what is current.
    pub(crate) fn serving(&self, metadata: &RequestMetadata) -> Option<Arc<RequestMetadata>> {
        (!self.dropped.is_empty()).then(|| Arc::new(metadata.clone()))
    }

    /// Whether a JSON body is read: to carry the member, or to hold the boundary against a member the
    /// caller put there.
    pub(crate) fn reads_body(&self) -> bool {
        self.bodies
            && (self.carrier != Carrier::Headers
                || !self.dropped.is_empty()
                || self.native.is_some())
    }

    /// The metadata the body member should hold, once `metadata` is final: nothing when headers
    /// carry it (the member, if any, is then removed).
    pub(crate) fn in_body<'a>(&self, metadata: &'a RequestMetadata) -> Cow<'a, RequestMetadata> {
        match self.carrier {
            Carrier::Headers => Cow::Owned(RequestMetadata::default()),
            _ => Cow::Borrowed(metadata),
        }
    }

    /// Sets the request's headers for the final `metadata`: the Requesty header form unless the body
    /// carries it (`in_body`), the other gateways' forms configured, and no origin headers when the
    /// boundary drops the origin.
    pub(crate) fn write_headers(
        &self,
        metadata: &RequestMetadata,
        in_body: bool,
        headers: &mut http::HeaderMap,
    ) {
        if !in_body || self.carrier == Carrier::Both {
            crate::headers::write(metadata, headers);
            if !in_body {
                for key in metadata.other.keys() {
                    tracing::warn!(key = %key, "field left out: headers carry only the fields this crate knows");
                }
            }
        } else {
            crate::headers::remove(headers);
        }
        if self.dropped.contains(&Field::Origin) {
            crate::headers::remove_origin(headers);
        }
        egress::hold_boundary(&self.dropped, headers);
        for gateway in &self.gateways {
            egress::write_gateway(metadata, *gateway, headers);
        }
    }

    /// Warns, in the client span, that a JSON body this client did not read (streamed, of unknown
    /// length, content-encoded, over `max_body_bytes`, or any body under `headers_only`) goes out as
    /// it is: a `requesty` member it carries is not removed, whatever
    /// [`drop_fields`](InjectMetadataLayer::drop_fields) says (only when there is such a boundary to
    /// hold), and the provider-native user field is not written (only when there is a user id).
    pub(crate) fn warn_unread_json(&self, headers: &http::HeaderMap, metadata: &RequestMetadata) {
        if !crate::content::is_json(headers) {
            return;
        }
        if !self.dropped.is_empty() {
            tracing::warn!(
                "a JSON body this client does not read (streamed, of unknown length, encoded, over \
                 max_body_bytes, or under headers_only) is sent as it is: a `requesty` member in it \
                 is not removed"
            );
        }
        if self.native.is_some() && metadata.user_id.is_some() {
            tracing::warn!(
                "the provider's user field is left out: a JSON body this client does not read \
                 (streamed, of unknown length, encoded, over max_body_bytes, or under headers_only) \
                 is sent as it is"
            );
        }
    }

    /// Whether a `requesty` member in a body must not leave as it is: fields are to be dropped, or
    /// headers alone are to carry the metadata (a call straight to a provider, which refuses the
    /// member).
    fn holds_a_boundary(&self) -> bool {
        !self.dropped.is_empty() || self.carrier == Carrier::Headers
    }

    /// Warns, in the current span, that a JSON body this client read could not be scanned (it is
    /// not well-formed, or nests deeper than the limits' `max_depth`), so a `requesty` member in
    /// it, if any, is sent as it is. Only when there is a boundary to hold.
    pub(crate) fn warn_unscanned_body(&self) {
        if self.holds_a_boundary() {
            tracing::warn!(
                "the JSON body cannot be read (not well-formed, or nested deeper than max_depth), so \
                 a `requesty` member in it is sent as it is"
            );
        }
    }

    /// Where to cut a `requesty` member this client cannot read out of `body`, when a boundary is
    /// to hold: the fields to drop may be in it, so it goes whole.
    pub(crate) fn cut_unreadable_member(&self, body: &[u8]) -> Option<std::ops::Range<usize>> {
        if !self.holds_a_boundary() {
            return None;
        }
        crate::codec::unread_member(body, &self.limits.own_body())
    }

    /// Warns, in the current span, that a JSON body this client read holds a `requesty` member it
    /// cannot read (of the wrong type, given twice): `removed` whole, or sent as it is, with fields
    /// to drop perhaps in it. Only when there is such a boundary to hold.
    pub(crate) fn warn_unreadable_member(&self, error: &crate::MetadataError, removed: bool) {
        if !self.holds_a_boundary() {
            return;
        }
        if removed {
            tracing::warn!(
                param = error.param(),
                "the body's `requesty` member cannot be read, so it is removed whole: {error}"
            );
        } else {
            tracing::warn!(
                param = error.param(),
                "the body's `requesty` member cannot be read, so it is sent as it is and fields to \
                 drop may leave with it: {error}"
            );
        }
    }

    /// Warns, in the current span, when the metadata about to be sent breaks [`Limits`]: merging
    /// defaults, propagated and per-request metadata can outgrow what each allowed on its own, and a
    /// gateway enforcing the same limits would answer `400`. The request is still sent as it is; the
    /// gateway it goes to decides.
    pub(crate) fn warn_over_limits(&self, metadata: &RequestMetadata) {
        if let Err(error) = crate::codec::check(metadata, &self.limits, true) {
            tracing::warn!(
                param = error.param(),
                "outgoing metadata breaks a limit: {error}"
            );
        }
    }

    /// Warns, in the current span, when the `requesty` member about to be written for `metadata`
    /// nests deeper than the limits' `max_depth` allows (an `extra` value built in code), which makes
    /// a reader with the same limits take the whole body for malformed and pass the member on to the
    /// provider.
    pub(crate) fn warn_member_depth(&self, metadata: &RequestMetadata) {
        let depth = member_depth(metadata);
        if !metadata.is_empty() && depth > self.limits.depth() {
            tracing::warn!(
                param = "requesty",
                "outgoing metadata breaks a limit: `requesty` nests {depth} levels deep in the body; \
                 the limit is {}",
                self.limits.depth()
            );
        }
    }

    /// Warns, in the current span, when the `requesty` member about to be sent, `size` bytes as
    /// written ([`Scan::member_len_after`](crate::codec::Scan::member_len_after)), is over the
    /// limits' `max_member_bytes`, which a gateway enforcing the same limits answers with `400`
    /// though each field fits.
    pub(crate) fn warn_member_size(&self, size: usize) {
        let limit = self.limits.member_bytes();
        if size > limit {
            tracing::warn!(
                param = "requesty",
                "outgoing metadata breaks a limit: `requesty` is {}; the limit is {}",
                Size(size),
                Size(limit)
            );
        }
    }

    /// Warns, in the current span, when the `extra` about to be sent in the body is refused as
    /// sent (`refused`, from
    /// [`Scan::own_extra_error_after`](crate::codec::Scan::own_extra_error_after): a caller's own,
    /// with its spacing and escapes, over `max_extra_bytes`), which a gateway enforcing the same
    /// limits answers with `400`, though the same `extra` written compactly, as
    /// [`warn_over_limits`](Self::warn_over_limits) measures it, is within the limit.
    pub(crate) fn warn_extra_size(
        &self,
        refused: Option<crate::MetadataError>,
        metadata: &RequestMetadata,
    ) {
        let Some(error) = refused else {
            return;
        };
        if crate::codec::json_len(&metadata.extra) <= self.limits.extra_bytes() {
            tracing::warn!(
                param = error.param(),
                "outgoing metadata breaks a limit as sent: {error}"
            );
        }
    }

    /// Writes the provider-native user field configured into a JSON body that already carries its
    /// final `requesty` member.
    pub(crate) fn native_field(&self, metadata: &RequestMetadata, body: Bytes) -> Bytes {
        egress::write_native(
            body,
            metadata,
            self.native,
            self.hash_key.as_ref(),
            &self.limits,
        )
    }
}

/// Adds metadata to outgoing requests; see [the module docs](crate::client) for where it comes from
/// and where it goes.
///
/// ```
/// use requesty_metadata::{RequestMetadata, RequestyMetadataLayer};
/// use tower::ServiceBuilder;
///
/// # fn client<S>(inner: S) {
/// let service = ServiceBuilder::new()
///     .layer(RequestyMetadataLayer::inject(RequestMetadata::new().tag("billing-agent")))
///     .service(inner);
/// # }
/// ```
///
/// Calling a third party (a provider directly rather than your gateway), drop what is internal:
///
/// ```
/// use requesty_metadata::client::Field;
/// use requesty_metadata::{RequestMetadata, RequestyMetadataLayer};
///
/// let to_provider = RequestyMetadataLayer::inject(RequestMetadata::new())
///     .drop_fields([Field::UserId, Field::Extra, Field::Origin]);
/// let nothing_leaves = RequestyMetadataLayer::inject(RequestMetadata::new()).drop_all();
/// ```
#[must_use = "a layer does nothing until it wraps a service"]
pub struct InjectMetadataLayer<R = JsonBodies> {
    pub(crate) config: Arc<InjectConfig>,
    mode: PhantomData<fn() -> R>,
}

impl<R> Clone for InjectMetadataLayer<R> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            mode: PhantomData,
        }
    }
}

impl RequestyMetadataLayer {
    /// The client-side layer, adding `defaults` (and whatever else applies, see
    /// [`client`](crate::client)) to every outgoing request.
    pub fn inject(defaults: RequestMetadata) -> InjectMetadataLayer {
        InjectMetadataLayer {
            config: Arc::new(InjectConfig {
                defaults,
                carrier: Carrier::default(),
                propagate: true,
                dropped: Vec::new(),
                limits: Limits::default(),
                max_body: 32 * 1024 * 1024,
                make_span: DefaultMakeSpan::client(),
                native: None,
                gateways: Vec::new(),
                hash_key: None,
                bodies: true,
            }),
            mode: PhantomData,
        }
    }
}

impl InjectMetadataLayer {
    /// The client-side layer, adding `defaults` to every outgoing request: the same as
    /// [`RequestyMetadataLayer::inject`].
    pub fn new(defaults: RequestMetadata) -> Self {
        RequestyMetadataLayer::inject(defaults)
    }

    /// Where the metadata travels (default [`Carrier::Body`]: the body member where possible).
    /// A [`headers_only`](Self::headers_only) layer always uses the headers, whatever was set here.
    pub fn carrier(mut self, carrier: Carrier) -> Self {
        self.config().carrier = carrier;
        self
    }

    /// The largest body read to add the member (default 32 MiB); larger ones get headers.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.config().max_body = bytes;
        self
    }

    /// Also writes the user id into a provider's own field ([`Native`]): OpenAI's
    /// `safety_identifier` or Anthropic's `metadata.user_id`, for calls that go straight to the
    /// provider. A field the body already sets (to anything but `null`) is left alone. The client span names that provider
    /// (`gen_ai.provider.name`), whatever the model is called.
    ///
    /// A provider answers `400` to a body with a `requesty` member, which the default carrier
    /// writes: for a call straight to a provider, also set
    /// [`carrier(Carrier::Headers)`](Self::carrier).
    ///
    /// ```
    /// use requesty_metadata::client::{Carrier, Native};
    /// use requesty_metadata::{RequestMetadata, RequestyMetadataLayer};
    ///
    /// let to_openai = RequestyMetadataLayer::inject(RequestMetadata::new())
    ///     .provider_native(Native::OpenAi)
    ///     .carrier(Carrier::Headers);
    /// ```
    pub fn provider_native(mut self, native: Native) -> Self {
        let config = self.config();
        config.native = Some(native);
        // The call goes straight to the provider: no need to guess it from the model's name.
        config.make_span = config.make_span.clone().provider(native.provider());
        self
    }
}

impl<R> InjectMetadataLayer<R> {
    fn config(&mut self) -> &mut InjectConfig {
        Arc::make_mut(&mut self.config)
    }

    /// Whether the metadata of the request being served is added (default `true`). Off, it is
    /// also not taken from a request a handler forwards as it received it, from any task (through
    /// reqwest, with the request's extensions passed to `execute_with_extensions`): the
    /// `RequestMetadata` extension the server layer put there, unchanged, is the inbound
    /// request's, not the call's own. The server layer marks it when it makes the metadata current
    /// (its default) or hands it to an `on_complete` hook: behind a server layer with neither,
    /// remove the extension from a request you forward. The metadata a server layer leaves in the
    /// request itself ([`keep_headers`](crate::RequestyMetadataLayer::keep_headers),
    /// [`keep_body_metadata`](crate::RequestyMetadataLayer::keep_body_metadata)) is what the
    /// forwarded request carries, and goes on as its own: remove it too, or hold a boundary with
    /// [`drop_fields`](Self::drop_fields).
    pub fn propagate(mut self, propagate: bool) -> Self {
        self.config().propagate = propagate;
        self
    }

    /// Never sends these fields, whatever their source, including a member already in the body:
    /// the boundary for calls that leave your system.
    ///
    /// Other gateways' metadata headers the request carries lose the dropped fields too, in every
    /// form this crate reads (Helicone's, LiteLLM's, Portkey's, OpenRouter's `x-session-id`; see
    /// [`dialects`](crate::dialects)), whether or not [`gateway_headers`](Self::gateway_headers)
    /// writes that form: a header that carries a dropped field is removed (spelled with underscores
    /// too), and `x-portkey-metadata` loses the keys that carry one (all of it when it is not a JSON
    /// object). Those gateways' other headers (`Helicone-Auth`, `x-portkey-api-key`) stay.
    ///
    /// A body is only edited when it is read: a JSON body that is streamed (of unknown length),
    /// content-encoded, or over [`max_body_bytes`](InjectMetadataLayer::max_body_bytes) goes out as it is, with a
    /// warning in the client span, and a `requesty` member in it is not removed; so does one that
    /// is not well-formed or nests deeper than the limits' `max_depth`, or that has two members. A
    /// member that cannot be read (of the wrong type, say) is removed whole, with a warning.
    pub fn drop_fields(mut self, fields: impl IntoIterator<Item = Field>) -> Self {
        self.config().dropped.extend(fields);
        self
    }

    /// Sends no metadata at all, and removes any the request already carries: the `requesty`
    /// member (only from a body that is read), the `X-Requesty-*` and origin headers, and every
    /// other gateway's metadata headers this crate knows, whatever forms
    /// [`gateway_headers`](Self::gateway_headers) writes; see [`drop_fields`](Self::drop_fields).
    pub fn drop_all(self) -> Self {
        use Field::*;
        self.drop_fields([Tags, UserId, TraceId, Extra, Origin, Other])
    }

    /// Limits the outgoing metadata is checked against (see [`Limits`]): metadata that breaks them is
    /// sent anyway, with a warning in the client span, for the gateway to judge. A member already in
    /// the caller's body is read whatever its size (it is the caller's own); only `max_depth` bounds
    /// reading the body.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config().limits = limits;
        self
    }

    /// Also writes another gateway's header form ([`Gateway`]), for calls that go through it.
    ///
    /// Headers of that form the request already carries are the caller's own and win over the
    /// metadata, field by field; tags are united, the caller's first (see [`Gateway`]). Asking for a
    /// form twice writes it once.
    ///
    /// ```
    /// use requesty_metadata::client::Gateway;
    /// use requesty_metadata::{RequestMetadata, RequestyMetadataLayer};
    ///
    /// // Every call goes out with `Helicone-User-Id: svc-billing` and `Helicone-Property-Team:
    /// // billing`, but for a call that sets its own `Helicone-User-Id`, which keeps it.
    /// let defaults = RequestMetadata::new().user_id("svc-billing").extra("team", "billing");
    /// let through_helicone =
    ///     RequestyMetadataLayer::inject(defaults).gateway_headers(Gateway::Helicone);
    /// ```
    pub fn gateway_headers(mut self, gateway: Gateway) -> Self {
        let gateways = &mut self.config().gateways;
        if !gateways.contains(&gateway) {
            gateways.push(gateway);
        }
        self
    }

    /// Uses a keyed hash of the user id (HMAC-SHA-256 with `key`) instead of the id everywhere but
    /// the metadata itself: the client span records `user.hash` (as the server layer's
    /// [`hash_user_ids`](crate::RequestyMetadataLayer::hash_user_ids) does for its spans), and the
    /// provider-native field gets the hash, as OpenAI advises for `safety_identifier`. The metadata
    /// keeps the id, for the gateway it goes to; [`drop_fields`](Self::drop_fields) leaves it out.
    ///
    /// A gateway that hashes user ids in its server spans and calls onward should set the same key
    /// here: the client spans of its onward calls carry the propagated user id too. The key is a
    /// secret (an empty one logs a warning).
    pub fn hash_user_ids(mut self, key: impl AsRef<[u8]>) -> Self {
        let key = HashKey::new(key.as_ref());
        let config = self.config();
        config.make_span = config.make_span.clone().hashing_with(key.clone());
        config.hash_key = Some(key);
        self
    }

    /// Records only these `extra` keys in the client span (default: all of them), as the server
    /// layer's [`extra_allowlist`](crate::RequestyMetadataLayer::extra_allowlist) does for its
    /// spans. What is sent is not changed.
    pub fn extra_allowlist<I, K>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        let config = self.config();
        config.make_span = config.make_span.clone().extra_allowlist(keys);
        self
    }

    /// Sets the level of the client span (`INFO` unless set).
    pub fn span_level(mut self, level: tracing::Level) -> Self {
        let config = self.config();
        config.make_span = config.make_span.clone().level(level);
        self
    }

    /// The HTTP methods the client span records as they are; any other is recorded as `_OTHER`
    /// ([`DefaultMakeSpan::known_http_methods`]).
    pub fn known_http_methods<I, K>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        let config = self.config();
        config.make_span = config.make_span.clone().known_http_methods(methods);
        self
    }

    /// Header form only, for any body type: wrap a tonic `Channel` with this.
    ///
    /// Such a layer reads no body, so the options about bodies belong to a layer that reads them:
    /// set before this, they have no effect, and after it they do not compile:
    ///
    /// ```compile_fail
    /// use requesty_metadata::client::Native;
    /// use requesty_metadata::{RequestMetadata, RequestyMetadataLayer};
    ///
    /// let layer = RequestyMetadataLayer::inject(RequestMetadata::new())
    ///     .headers_only()
    ///     .provider_native(Native::OpenAi);
    /// ```
    pub fn headers_only(self) -> InjectMetadataLayer<HeadersOnly> {
        let mut layer = InjectMetadataLayer {
            config: self.config,
            mode: PhantomData,
        };
        let config = layer.config();
        config.carrier = Carrier::Headers;
        config.bodies = false;
        // The provider's field is in the body, which is never read: asked for before, it is
        // dropped, so that it neither warns on every call nor names a provider.
        if config.native.take().is_some() {
            config.make_span.provider = None;
        }
        layer
    }
}

impl<S, R> Layer<S> for InjectMetadataLayer<R> {
    type Service = InjectMetadata<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        InjectMetadata::new(inner, self.config.clone())
    }
}

impl<R> std::fmt::Debug for InjectMetadataLayer<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InjectMetadataLayer")
            .field("config", &self.config)
            .finish()
    }
}

/// How deep the `requesty` member for `metadata` nests in a body, counted as the codec counts it:
/// the body's object is level 1, the member 2, `tags` and `extra` 3, and so on into `extra`'s and
/// unknown fields' values.
fn member_depth(metadata: &RequestMetadata) -> usize {
    let mut depth = 2;
    if !metadata.tags.is_empty() || !metadata.extra.is_empty() {
        depth = 3;
    }
    for value in metadata.extra.values() {
        depth = depth.max(3 + nesting(value));
    }
    for value in metadata.other.values() {
        depth = depth.max(2 + nesting(value));
    }
    depth
}

/// How many levels of arrays and objects `value` is (`0` for a scalar), counted without recursion:
/// a value built in code may nest as deep as its builder liked.
fn nesting(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    let children = |value: &Value| -> bool { matches!(value, Value::Array(_) | Value::Object(_)) };
    if !children(value) {
        return 0;
    }
    let mut deepest = 0;
    let mut pending = vec![(value, 1)];
    while let Some((value, level)) = pending.pop() {
        deepest = deepest.max(level);
        let deeper = |v: &&'_ Value| children(v);
        match value {
            Value::Array(items) => {
                pending.extend(items.iter().filter(deeper).map(|v| (v, level + 1)));
            }
            Value::Object(map) => {
                pending.extend(map.values().filter(deeper).map(|v| (v, level + 1)));
            }
            _ => {}
        }
    }
    deepest
}
