//! The inject layer at its edges: forwarding from other tasks, headers it cannot read, fields the
//! header form cannot carry, extreme declared lengths, where its span belongs, and bodies that need
//! no change. A stand-in client records what the layer hands it.
mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use requesty_metadata::client::{Carrier, Field, Gateway, Native};
use requesty_metadata::{RequestMetadata, RequestyMetadataLayer};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use support::Recorder;
use tower::{Service, ServiceBuilder, ServiceExt};

/// What the wrapped client was handed.
#[derive(Clone, Debug)]
struct Seen {
    headers: http::HeaderMap,
    body: Bytes,
}

type Captured = Arc<Mutex<Vec<Seen>>>;

/// A stand-in HTTP client that records each request it is called with and answers `200 ok`.
fn capture() -> (
    Captured,
    impl Service<
            http::Request<Full<Bytes>>,
            Response = http::Response<Full<Bytes>>,
            Error = Infallible,
            Future = impl Send,
        > + Clone
        + Send,
) {
    let seen: Captured = Default::default();
    let log = seen.clone();
    let svc = tower::service_fn(move |req: http::Request<Full<Bytes>>| {
        let log = log.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            log.lock().unwrap().push(Seen {
                headers: parts.headers,
                body,
            });
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
        }
    });
    (seen, svc)
}

/// An inject layer for calls straight to OpenAI: headers only, and the user id as the provider's own
/// `safety_identifier`.
fn straight_to_openai() -> requesty_metadata::InjectMetadataLayer {
    RequestyMetadataLayer::inject(RequestMetadata::new().user_id("user-42"))
        .provider_native(Native::OpenAi)
        .carrier(Carrier::Headers)
}

/// Whether an event in a client span mentions `text`.
fn warned(recorder: &Recorder, text: &str) -> bool {
    recorder
        .named("llm_client_request")
        .iter()
        .flat_map(|s| &s.events)
        .any(|e| format!("{e:?}").contains(text))
}

fn json_req(body: &'static [u8]) -> http::Request<Full<Bytes>> {
    http::Request::post("http://upstream.test/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body)))
        .unwrap()
}

/// `propagate(false)` keeps the inbound request's metadata off a request a handler forwards as it
/// received it, also from a spawned task, where no metadata is current to compare with.
#[tokio::test]
async fn propagate_false_holds_for_a_request_forwarded_from_a_spawned_task() {
    let (_recorder, _guard) = Recorder::install();
    let (seen, upstream) = capture();
    let onward = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(RequestMetadata::new()).propagate(false))
        .service(upstream);
    let handler = tower::service_fn(move |req: http::Request<Full<Bytes>>| {
        let onward = onward.clone();
        async move {
            let response = tokio::spawn(onward.oneshot(req)).await.unwrap().unwrap();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            Ok::<_, Infallible>(http::Response::new(Full::new(bytes)))
        }
    });
    let gateway = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::new())
        .service(handler);
    let inbound = json_req(br#"{"model":"m","requesty":{"user_id":"user-7","tags":["secret"]}}"#);
    let response = gateway.oneshot(inbound).await.unwrap();
    response.into_body().collect().await.unwrap();
    let sent = seen.lock().unwrap()[0].clone();
    let body = String::from_utf8_lossy(&sent.body).into_owned();
    assert!(
        !body.contains("user-7") && !body.contains("secret"),
        "propagate(false) sent the inbound metadata onward: {body}"
    );
}

/// A handler that forwards the request it received, its `RequestMetadata` extension unchanged,
/// through a propagating client sends the inbound metadata once: the extension and the current
/// metadata are the same, and neither tags nor `extra` are doubled, in the body or the headers.
#[tokio::test]
async fn a_request_forwarded_as_received_carries_the_inbound_metadata_once() {
    let (_recorder, _guard) = Recorder::install();
    let (seen, upstream) = capture();
    let onward = ServiceBuilder::new()
        .layer(
            RequestyMetadataLayer::inject(RequestMetadata::new().tag("gw")).carrier(Carrier::Both),
        )
        .service(upstream);
    let handler = tower::service_fn(move |req: http::Request<Full<Bytes>>| {
        let onward = onward.clone();
        async move {
            let response = onward.oneshot(req).await.unwrap();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            Ok::<_, Infallible>(http::Response::new(Full::new(bytes)))
        }
    });
    let gateway = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::new())
        .service(handler);
    let inbound = json_req(
        br#"{"model":"m","requesty":{"tags":["a","b"],"trace_id":"t","extra":{"k":"v"}}}"#,
    );
    let response = gateway.oneshot(inbound).await.unwrap();
    response.into_body().collect().await.unwrap();
    let sent = seen.lock().unwrap()[0].clone();
    let body: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(
        body["requesty"],
        serde_json::json!({"tags": ["gw", "a", "b"], "trace_id": "t", "extra": {"k": "v"}})
    );
    let header = |name: &str| -> Vec<&str> {
        sent.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    };
    assert_eq!(header("x-requesty-tags").join(","), "gw,a,b");
    assert_eq!(header("x-requesty-k"), ["v"]);
    assert_eq!(header("x-requesty-trace-id"), ["t"]);
}

/// An `X-Requesty-*` header of the caller's that is not UTF-8 is left out alone: the caller's
/// other metadata headers still go.
#[tokio::test]
async fn a_non_utf8_requesty_header_leaves_the_callers_other_headers_alone() {
    let (_recorder, _guard) = Recorder::install();
    let (seen, upstream) = capture();
    let client = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(
            RequestMetadata::new().tag("svc"),
        ))
        .service(upstream);
    let mut req = json_req(br#"{"model":"m"}"#);
    let headers = req.headers_mut();
    headers.insert("x-requesty-trace-id", "caller-trace".parse().unwrap());
    headers.insert("x-requesty-user-id", "caller-user".parse().unwrap());
    headers.insert(
        "x-requesty-note",
        http::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
    );
    client.oneshot(req).await.unwrap();
    let sent = seen.lock().unwrap()[0].clone();
    let body = String::from_utf8_lossy(&sent.body).into_owned();
    assert!(
        body.contains(r#""trace_id":"caller-trace""#)
            && body.contains(r#""user_id":"caller-user""#),
        "the caller's valid metadata headers were dropped: {body} {:?}",
        sent.headers
    );
}

/// What headers cannot carry is left out with a warning: unknown member fields
/// (`RequestMetadata::other`) too.
#[tokio::test]
async fn header_carrier_warns_of_unknown_member_fields_it_leaves_out() {
    let (recorder, _guard) = Recorder::install();
    let (seen, upstream) = capture();
    let client = ServiceBuilder::new()
        .layer(straight_to_openai())
        .service(upstream);
    let req = json_req(
        br#"{"model":"gpt-4o","requesty":{"trace_id":"t","priority":"high","extra":{"n":1}}}"#,
    );
    client.oneshot(req).await.unwrap();
    let sent = seen.lock().unwrap()[0].clone();
    // The member is gone from the body, and `priority` travels nowhere.
    assert_eq!(
        sent.body,
        &br#"{"model":"gpt-4o","safety_identifier":"user-42"}"#[..]
    );
    // `extra.n` (a number) is warned about, and `priority` too.
    assert!(
        warned(&recorder, "priority"),
        "the unknown `priority` field was left out without a warning: {:#?}",
        recorder.named("llm_client_request")
    );
}

/// Other gateways' forms carry string `extra` values only: the rest is left out of them with a
/// warning, as the `X-Requesty-*` form does, while the body member still carries it.
#[tokio::test]
async fn gateway_forms_warn_of_extra_values_they_cannot_carry() {
    for gateway in [Gateway::Helicone, Gateway::Portkey] {
        let (recorder, _guard) = Recorder::install();
        let (seen, upstream) = capture();
        let meta = RequestMetadata::new().extra("team", "infra").extra("n", 1);
        let client = ServiceBuilder::new()
            .layer(RequestyMetadataLayer::inject(meta).gateway_headers(gateway))
            .service(upstream);
        client
            .oneshot(json_req(br#"{"model":"gpt-4o"}"#))
            .await
            .unwrap();
        let sent = seen.lock().unwrap()[0].clone();
        let body = String::from_utf8_lossy(&sent.body);
        assert!(body.contains(r#""n":1"#), "{gateway:?}: {body}");
        assert!(
            warned(&recorder, "takes string values only"),
            "{gateway:?}: `extra.n` left out of the form without a warning: {:#?}",
            recorder.named("llm_client_request")
        );
    }
}

/// A JSON body whose exact size hint is near `u64::MAX` (hyper accepts a `Content-Length` up to
/// `u64::MAX - 2`), with `max_body_bytes` set to no limit, sizes no buffer past what fits.
struct Huge;

impl http_body::Body for Huge {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(None)
    }
    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(u64::MAX - 2)
    }
}

impl From<Bytes> for Huge {
    fn from(_: Bytes) -> Self {
        Huge
    }
}

#[tokio::test]
async fn a_declared_length_near_the_maximum_does_not_panic_in_call() {
    let (_recorder, _guard) = Recorder::install();
    let mut client = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(RequestMetadata::new()).max_body_bytes(usize::MAX))
        .service(tower::service_fn(|_req: http::Request<Huge>| async {
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
        }));
    let req = http::Request::post("http://upstream.test/")
        .header("content-type", "application/json")
        .body(Huge)
        .unwrap();
    let _future = client.ready().await.unwrap().call(req);
}

/// A span's name and its parent's.
type Lineage = (String, Option<String>);

/// Records each new span's parent, by name.
#[derive(Clone, Default)]
struct Parents(Arc<Mutex<Vec<Lineage>>>);

impl<S> tracing_subscriber::Layer<S> for Parents
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let parent = ctx
            .span(id)
            .and_then(|s| s.parent().map(|p| p.name().to_owned()));
        self.0
            .lock()
            .unwrap()
            .push((attrs.metadata().name().to_owned(), parent));
    }
}

/// The client span of a call made inside the caller's span belongs to it whatever the body, though
/// a JSON body's is made only once the body is read, wherever the future is polled then.
#[tokio::test]
async fn the_client_span_is_a_child_of_the_span_call_was_made_in_for_json_bodies_too() {
    use tracing_subscriber::prelude::*;
    let parents = Parents::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(parents.clone()));
    let (_seen, upstream) = capture();
    let mut client = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(
            RequestMetadata::new().tag("t"),
        ))
        .service(upstream);
    let caller = tracing::info_span!("caller");
    for content_type in ["text/plain", "application/json"] {
        let mut req = json_req(br#"{"model":"m"}"#);
        req.headers_mut()
            .insert("content-type", content_type.parse().unwrap());
        let future = {
            let _entered = caller.enter();
            client.ready().await.unwrap().call(req)
        };
        future.await.unwrap();
    }
    let clients: Vec<_> = parents
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(name, _)| name == "llm_client_request")
        .map(|(_, parent)| parent.clone())
        .collect();
    assert_eq!(
        clients,
        [Some("caller".to_owned()), Some("caller".to_owned())]
    );
}

/// A member already in the body outranks the caller's headers: with the header carrier, its
/// `origin_title` replaces the caller's `X-Title`.
#[tokio::test]
async fn header_carrier_keeps_the_body_members_origin_title() {
    let (_recorder, _guard) = Recorder::install();
    let (seen, upstream) = capture();
    let client = ServiceBuilder::new()
        .layer(
            RequestyMetadataLayer::inject(RequestMetadata::new())
                .carrier(Carrier::Headers)
                .drop_fields([Field::Other]),
        )
        .service(upstream);
    let mut req =
        json_req(br#"{"model":"m","requesty":{"origin_title":"Body App","trace_id":"t"}}"#);
    req.headers_mut()
        .insert("x-title", "Header App".parse().unwrap());
    client.oneshot(req).await.unwrap();
    let sent = seen.lock().unwrap()[0].clone();
    assert_eq!(sent.body, &br#"{"model":"m"}"#[..]);
    assert_eq!(sent.headers["x-title"], "Body App");
}

/// A member that already holds every tag the client adds, in another order, needs no change, as
/// `codec::inject` has it.
#[tokio::test]
async fn a_member_that_already_holds_the_tags_is_not_rewritten() {
    let (_recorder, _guard) = Recorder::install();
    let defaults = RequestMetadata::new().tag("a").tag("b");
    let body = br#"{"model":"m","requesty":{"tags":["b","a"]}}"#;
    let mut by_codec = Bytes::from_static(body);
    requesty_metadata::codec::inject(&mut by_codec, &defaults, &Default::default()).unwrap();
    assert_eq!(by_codec, &body[..], "codec::inject leaves it as it is");

    let (seen, upstream) = capture();
    let client = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(defaults))
        .service(upstream);
    client.oneshot(json_req(body)).await.unwrap();
    let sent = seen.lock().unwrap()[0].body.clone();
    assert_eq!(sent, &body[..]);
}

/// A JSON body the client does not read (here: over `max_body_bytes`) cannot get the
/// provider-native user field: it goes as it is, with a warning saying so.
#[tokio::test]
async fn an_unread_body_without_its_native_user_field_is_warned_about() {
    let (recorder, _guard) = Recorder::install();
    let (seen, upstream) = capture();
    let client = ServiceBuilder::new()
        .layer(straight_to_openai().max_body_bytes(8))
        .service(upstream);
    let body = br#"{"model":"gpt-4o"}"#;
    client.oneshot(json_req(body)).await.unwrap();
    let sent = seen.lock().unwrap()[0].clone();
    assert_eq!(sent.body, &body[..]);
    assert_eq!(sent.headers["x-requesty-user-id"], "user-42");
    assert!(
        warned(&recorder, "provider's user field is left out"),
        "{:#?}",
        recorder.named("llm_client_request")
    );
}

/// A request body that fails while the client reads it to add the member fails the call, which
/// is never sent, and still leaves a client span that says so.
#[tokio::test]
async fn a_request_body_that_fails_while_read_leaves_a_failed_client_span() {
    struct Failing;
    impl http_body::Body for Failing {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
            std::task::Poll::Ready(Some(Err(std::io::Error::other("disk gone"))))
        }
        fn size_hint(&self) -> http_body::SizeHint {
            http_body::SizeHint::with_exact(10)
        }
    }
    impl From<Bytes> for Failing {
        fn from(_: Bytes) -> Self {
            Failing
        }
    }
    let (recorder, _guard) = Recorder::install();
    let sent = Arc::new(Mutex::new(0));
    let count = sent.clone();
    let client = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(
            RequestMetadata::new().trace_id("t-9"),
        ))
        .service(tower::service_fn(move |_: http::Request<Failing>| {
            *count.lock().unwrap() += 1;
            async { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new()))) }
        }));
    let req = http::Request::post("http://upstream.test/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Failing)
        .unwrap();
    let error = client.oneshot(req).await.unwrap_err();
    assert!(error.to_string().contains("disk gone"), "{error}");
    assert_eq!(*sent.lock().unwrap(), 0, "nothing is sent");
    let spans = recorder.named("llm_client_request");
    let [span] = &spans[..] else {
        panic!("one client span: {spans:#?}")
    };
    assert!(span.closed);
    assert_eq!(span.field("trace_id"), Some("t-9"));
    assert_eq!(span.field("error.type"), Some("request_body"));
    assert_eq!(span.field("requesty.response.completed"), Some("false"));
    assert_eq!(span.field("otel.status_code"), Some("ERROR"));
}
/// A request body that breaks the exact size it declared fails the call, as hyper fails a body
/// longer or shorter than its length, and is never sent: one that goes on past its size is not
/// buffered without end, and one that ends short does not go out as a whole body of another length.
#[tokio::test]
async fn a_request_body_longer_or_shorter_than_it_declared_fails_the_call() {
    /// Declares `declared` bytes, then sends `frames` frames of 7.
    struct Lying {
        declared: u64,
        frames: usize,
    }
    impl http_body::Body for Lying {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
            if self.frames == 0 {
                return std::task::Poll::Ready(None);
            }
            self.frames -= 1;
            let frame = http_body::Frame::data(Bytes::from_static(b"{\"a\":1 "));
            std::task::Poll::Ready(Some(Ok(frame)))
        }
        fn size_hint(&self) -> http_body::SizeHint {
            http_body::SizeHint::with_exact(self.declared)
        }
    }
    impl From<Bytes> for Lying {
        fn from(_: Bytes) -> Self {
            Lying {
                declared: 0,
                frames: 0,
            }
        }
    }
    let (recorder, _guard) = Recorder::install();
    for (declared, frames, said) in [
        (16, 1000, "longer than the 16 bytes"),
        (100, 1, "ended after 7 of the 100 bytes"),
    ] {
        let sent = Arc::new(Mutex::new(0));
        let count = sent.clone();
        let client = ServiceBuilder::new()
            .layer(RequestyMetadataLayer::inject(
                RequestMetadata::new().trace_id("t-11"),
            ))
            .service(tower::service_fn(move |_: http::Request<Lying>| {
                *count.lock().unwrap() += 1;
                async { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new()))) }
            }));
        let req = http::Request::post("http://upstream.test/v1/chat/completions")
            .header("content-type", "application/json")
            .body(Lying { declared, frames })
            .unwrap();
        let error = client.oneshot(req).await.unwrap_err();
        assert!(error.to_string().contains(said), "{error}");
        assert_eq!(*sent.lock().unwrap(), 0, "nothing is sent");
    }
    let spans = recorder.named("llm_client_request");
    assert_eq!(spans.len(), 2, "{spans:#?}");
    for span in &spans {
        assert_eq!(span.field("error.type"), Some("request_body"));
        assert_eq!(span.field("requesty.response.completed"), Some("false"));
    }
}

/// A call given up while the client still reads its request body to add the member (the body
/// stalls, and the caller times out) is never sent, and leaves a client span that says it did not
/// complete, as a server span does for a request dropped while its body is read.
#[tokio::test]
async fn a_call_given_up_while_its_body_is_read_leaves_a_client_span() {
    struct Stalled {
        sent: bool,
    }
    impl http_body::Body for Stalled {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
            if std::mem::replace(&mut self.sent, true) {
                std::task::Poll::Pending
            } else {
                let frame = http_body::Frame::data(Bytes::from_static(br#"{"model":"#));
                std::task::Poll::Ready(Some(Ok(frame)))
            }
        }
        fn size_hint(&self) -> http_body::SizeHint {
            http_body::SizeHint::with_exact(40)
        }
    }
    impl From<Bytes> for Stalled {
        fn from(_: Bytes) -> Self {
            Stalled { sent: true }
        }
    }
    let (recorder, _guard) = Recorder::install();
    let client = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(
            RequestMetadata::new().trace_id("t-10"),
        ))
        .service(tower::service_fn(|_: http::Request<Stalled>| async {
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
        }));
    let req = http::Request::post("http://upstream.test/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Stalled { sent: false })
        .unwrap();
    let mut call = Box::pin(client.oneshot(req));
    assert!(futures_util::poll!(&mut call).is_pending());
    drop(call);
    let spans = recorder.named("llm_client_request");
    let [span] = &spans[..] else {
        panic!("one client span: {spans:#?}")
    };
    assert!(span.closed);
    assert_eq!(span.field("trace_id"), Some("t-10"));
    assert_eq!(span.field("requesty.response.completed"), Some("false"));
}

/// Of two `extra` keys that differ only in case, the first keeps the header in Helicone's form as
/// in the `X-Requesty-*` one: one request never carries two values for one key.
#[tokio::test]
async fn extra_keys_differing_only_in_case_agree_across_header_forms() {
    use requesty_metadata::client::Gateway;
    let (_recorder, _guard) = Recorder::install();
    let (seen, upstream) = capture();
    let mut meta = RequestMetadata::new();
    meta.extra.insert("Team".into(), "platform".into());
    meta.extra.insert("team".into(), "billing".into());
    let client = ServiceBuilder::new()
        .layer(
            RequestyMetadataLayer::inject(meta)
                .carrier(Carrier::Headers)
                .gateway_headers(Gateway::Helicone),
        )
        .service(upstream);
    client.oneshot(json_req(br#"{"model":"m"}"#)).await.unwrap();
    let sent = seen.lock().unwrap()[0].clone();
    assert_eq!(sent.headers["x-requesty-team"], "platform");
    assert_eq!(sent.headers["helicone-property-team"], "platform");
}

/// The caller's own member is read whatever its size (the client holds it to no limit), and merged
/// whole: 60,000 tags (some repeated) and 60,000 unknown fields keep every one, once. (Merging
/// costs in proportion to the member: deduplicating each against all the others took about a
/// minute for this one; no timing is asserted here.)
#[tokio::test]
async fn a_large_member_of_the_callers_own_is_merged_whole() {
    let (_recorder, _guard) = Recorder::install();
    let n = 60_000;
    // Every tag once, then a few again.
    let tags: Vec<String> = (0..n).chain(0..100).map(|i| format!("\"t{i}\"")).collect();
    let fields: Vec<String> = (0..n).map(|i| format!("\"f{i}\":1")).collect();
    let body = format!(
        r#"{{"model":"m","requesty":{{"tags":[{}],{}}}}}"#,
        tags.join(","),
        fields.join(",")
    );
    let body: &'static [u8] = Box::leak(body.into_bytes().into_boxed_slice());
    let (seen, upstream) = capture();
    let client = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(
            RequestMetadata::new().tag("new"),
        ))
        .service(upstream);
    client.oneshot(json_req(body)).await.unwrap();
    let sent = seen.lock().unwrap()[0].body.clone();
    let unlimited = requesty_metadata::Limits::default()
        .max_tags(usize::MAX)
        .max_member_bytes(usize::MAX);
    let scan = requesty_metadata::codec::scan(&sent, &unlimited).unwrap();
    let read = scan.metadata().unwrap();
    assert_eq!((read.tags.len(), read.other.len()), (n + 1, n));
    assert_eq!(read.tags[0], "new");
}

/// `max_member_bytes` is one of the limits the outgoing metadata is checked against: a member each
/// of whose fields fits, but which is over the size a server with the same limits takes whole, is
/// sent with a warning, as for any other limit.
#[tokio::test]
async fn a_member_over_max_member_bytes_is_sent_with_a_warning() {
    let (recorder, _guard) = Recorder::install();
    let limits = requesty_metadata::Limits::default().max_member_bytes(256);
    let defaults = RequestMetadata::new()
        .user_id("u".repeat(200))
        .trace_id("t".repeat(200));
    let (seen, upstream) = capture();
    let client = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(defaults).limits(limits))
        .service(upstream);
    client.oneshot(json_req(br#"{"model":"m"}"#)).await.unwrap();
    let sent = seen.lock().unwrap()[0].body.clone();
    let refused = requesty_metadata::codec::scan(&sent, &limits).unwrap_err();
    assert_eq!(refused.param(), "requesty");
    assert!(
        warned(&recorder, "the limit is 256 bytes"),
        "no warning for a member a server with these limits refuses"
    );
}

/// An `extra` value built in code may nest past `max_depth`: a reader with the same limits then
/// takes the whole body for malformed and would pass the member on, so it is sent with a warning.
#[tokio::test]
async fn a_member_nested_past_max_depth_is_sent_with_a_warning() {
    let limits = requesty_metadata::Limits::default().max_depth(8);
    let nested =
        |levels: usize| (0..levels).fold(serde_json::json!(1), |v, _| serde_json::json!([v]));
    // The body is level 1, the member 2, `extra` 3: a value of five levels reaches 8.
    for (levels, over) in [(5, false), (6, true)] {
        let (recorder, _guard) = Recorder::install();
        let (seen, upstream) = capture();
        let client = ServiceBuilder::new()
            .layer(
                RequestyMetadataLayer::inject(RequestMetadata::new().extra("deep", nested(levels)))
                    .limits(limits),
            )
            .service(upstream);
        client.oneshot(json_req(br#"{"model":"m"}"#)).await.unwrap();
        let sent = seen.lock().unwrap()[0].body.clone();
        let kind = requesty_metadata::codec::scan(&sent, &limits)
            .unwrap()
            .kind();
        assert_eq!(
            kind == requesty_metadata::codec::BodyKind::Malformed,
            over,
            "{levels}"
        );
        assert_eq!(warned(&recorder, "levels deep"), over, "{levels}");
    }
}

/// The member and its `extra` are measured as they are sent: a caller's own member keeps its bytes
/// (Python's `json` writes `": "` and `", "` and escapes every character past ASCII), so it can be
/// over `max_member_bytes` or `max_extra_bytes` where the same metadata written afresh is well under.
#[tokio::test]
async fn a_member_or_extra_over_its_limit_as_sent_is_warned_of() {
    use requesty_metadata::Limits;
    let cases = [
        (Limits::default().max_member_bytes(256), 40, "requesty"),
        (Limits::default().max_extra_bytes(256), 45, "requesty.extra"),
    ];
    for (limits, escapes, param) in cases {
        let (recorder, _guard) = Recorder::install();
        let note = r"\u00e9".repeat(escapes);
        let body = format!(r#"{{"model": "m", "requesty": {{"extra": {{"note": "{note}"}}}}}}"#);
        let body: &'static [u8] = Box::leak(body.into_bytes().into_boxed_slice());
        let (seen, upstream) = capture();
        let client = ServiceBuilder::new()
            .layer(RequestyMetadataLayer::inject(RequestMetadata::new().tag("t")).limits(limits))
            .service(upstream);
        client.oneshot(json_req(body)).await.unwrap();
        let sent = seen.lock().unwrap()[0].body.clone();
        let refused = requesty_metadata::codec::scan(&sent, &limits).unwrap_err();
        assert_eq!(refused.param(), param);
        assert!(
            warned(&recorder, "the limit is 256 bytes"),
            "no warning for a {param} a server with these limits refuses: {}",
            String::from_utf8_lossy(&sent)
        );
    }
}

/// A body of declared length that ends in trailers, as a client may hand over.
struct WithTrailers(
    Option<http_body::Frame<Bytes>>,
    Option<http_body::Frame<Bytes>>,
);

impl http_body::Body for WithTrailers {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        let next = self.0.take().or_else(|| self.1.take());
        std::task::Poll::Ready(next.map(Ok))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(5)
    }
}

/// A body the client reads whole but does not edit (JSON that is not an object) is rebuilt from its
/// bytes, without the trailers it came with: no `Trailer` header announces them either.
#[tokio::test]
async fn a_body_read_whole_goes_without_its_trailer_header() {
    use axum::body::Body;
    let (_recorder, _guard) = Recorder::install();
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-checksum", http::HeaderValue::from_static("abc"));
    let body = Body::new(WithTrailers(
        Some(http_body::Frame::data(Bytes::from_static(b"[1,2]"))),
        Some(http_body::Frame::trailers(trailers)),
    ));
    let request = http::Request::post("http://upstream.test/v1/embeddings")
        .header("content-type", "application/json")
        .header("trailer", "x-checksum")
        .body(body)
        .unwrap();
    let upstream = tower::service_fn(|request: http::Request<Body>| async move {
        let announced = request.headers().contains_key("trailer");
        let body = request.into_body().collect().await.unwrap().to_bytes();
        Ok::<_, Infallible>(http::Response::new(Body::from(format!(
            "{}|{announced}",
            String::from_utf8_lossy(&body)
        ))))
    });
    let client = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(
            RequestMetadata::new().tag("t"),
        ))
        .service(upstream);
    let response = client.oneshot(request).await.unwrap();
    let seen = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(seen, "[1,2]|false".as_bytes());
}

/// An empty id carries nothing on the client side too: a call's own `user_id: ""` leaves the
/// default (or propagated) one in place, rather than sending `""`.
#[tokio::test]
async fn an_empty_id_of_the_calls_own_leaves_the_default() {
    let (_recorder, _guard) = Recorder::install();
    let (seen, upstream) = capture();
    let client = ServiceBuilder::new()
        .layer(RequestyMetadataLayer::inject(
            RequestMetadata::new().user_id("u-default"),
        ))
        .service(upstream);
    let mut request = json_req(br#"{"model":"m"}"#);
    request
        .extensions_mut()
        .insert(RequestMetadata::new().user_id("").tag("t"));
    client.oneshot(request).await.unwrap();
    let sent = seen.lock().unwrap()[0].body.clone();
    assert_eq!(
        sent,
        &br#"{"model":"m","requesty":{"tags":["t"],"user_id":"u-default"}}"#[..]
    );
}

/// The options are plain values: a set of them, from configuration, needs no conversion.
#[test]
fn options_are_hashable_values() {
    use std::collections::HashSet;
    let fields: HashSet<Field> = [Field::UserId, Field::Extra, Field::UserId].into();
    assert_eq!(fields.len(), 2);
    let carriers: HashSet<Carrier> = [Carrier::Body, Carrier::Headers].into();
    let natives: HashSet<Native> = [Native::OpenAi, Native::Anthropic].into();
    let gateways: HashSet<Gateway> = [Gateway::Helicone, Gateway::Portkey].into();
    assert_eq!(carriers.len() + natives.len() + gateways.len(), 6);
}
