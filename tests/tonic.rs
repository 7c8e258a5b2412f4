//! gRPC through real tonic stacks: a tonic server on loopback with the server layer in header-only
//! mode in front of the standard health service, and tonic clients whose `Channel` is wrapped by the
//! inject layer.
//!
//! Every test installs a recorder, even those that read no span: tests run on parallel threads, and
//! a callsite first hit on a thread without a subscriber could otherwise be cached as disabled.

mod support;

use requesty_metadata::client::InjectMetadata;
use requesty_metadata::{HeadersOnly, InjectMetadataLayer, RequestMetadata, RequestyMetadataLayer};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use support::Recorder;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::{Service, ServiceBuilder};

type Client = HealthClient<InjectMetadata<Channel, HeadersOnly>>;

/// One request as a layer of the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: Vec<(String, String)>,
    metadata: Option<RequestMetadata>,
}

impl Seen {
    fn of<B>(req: &http::Request<B>) -> Self {
        Self {
            path: req.uri().path().to_owned(),
            headers: req
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            metadata: req.extensions().get::<RequestMetadata>().cloned(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `x-requesty-*` headers, sorted by name.
    fn requesty_headers(&self) -> Vec<(&str, &str)> {
        let mut found: Vec<(&str, &str)> = self
            .headers
            .iter()
            .filter(|(n, _)| n.starts_with("x-requesty-"))
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        found.sort();
        found
    }
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    fn push(&self, seen: Seen) {
        self.0.lock().unwrap().push(seen);
    }

    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Sits between the server layer and the health service: records what reaches the service and, when
/// it has a client, makes a gRPC call of its own first (with no metadata code).
#[derive(Clone)]
struct Recording<S> {
    inner: S,
    log: Log,
    onward: Option<Client>,
}

impl<S, B> Service<http::Request<B>> for Recording<S>
where
    S: Service<http::Request<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: Send,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.log.push(Seen::of(&req));
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let onward = self.onward.clone();
        Box::pin(async move {
            if let Some(mut onward) = onward {
                let answer = onward
                    .check(HealthCheckRequest::default())
                    .await
                    .expect("the onward call succeeds");
                assert_eq!(answer.into_inner().status(), ServingStatus::Serving);
            }
            inner.call(req).await
        })
    }
}

/// A health server: what arrived on the wire (`outer`, before the layer) and what reached the
/// service (`inner`, after it).
struct Grpc {
    addr: SocketAddr,
    outer: Log,
    inner: Log,
}

async fn grpc_server(onward: Option<Client>) -> Grpc {
    let (outer, inner) = (Log::default(), Log::default());
    let (reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let layers = ServiceBuilder::new()
        .map_request({
            let outer = outer.clone();
            move |req: http::Request<tonic::body::Body>| {
                outer.push(Seen::of(&req));
                req
            }
        })
        .layer(RequestyMetadataLayer::new().headers_only())
        .layer_fn({
            let log = inner.clone();
            move |service| Recording {
                inner: service,
                log: log.clone(),
                onward: onward.clone(),
            }
        });
    let server = Server::builder()
        .layer(layers)
        .add_service(health)
        .serve_with_incoming(TcpIncoming::from(listener));
    tokio::spawn(async move {
        let _reporter = reporter;
        server.await.unwrap();
    });
    Grpc { addr, outer, inner }
}

async fn client(addr: SocketAddr, layer: InjectMetadataLayer<HeadersOnly>) -> Client {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(ServiceBuilder::new().layer(layer).service(channel))
}

async fn check(client: &mut Client, request: tonic::Request<HealthCheckRequest>) -> ServingStatus {
    client
        .check(request)
        .await
        .expect("the health check succeeds")
        .into_inner()
        .status()
}

fn defaults() -> RequestMetadata {
    RequestMetadata::new()
        .tag("grpc")
        .user_id("u-1")
        .trace_id("t-1")
        .extra("team", "platform")
}

const CHECK: &str = "/grpc.health.v1.Health/Check";

#[tokio::test]
async fn metadata_travels_as_grpc_metadata_and_stops_at_the_layer() {
    let (_recorder, _guard) = Recorder::install();
    let server = grpc_server(None).await;
    let mut client = client(
        server.addr,
        RequestyMetadataLayer::inject(defaults()).headers_only(),
    )
    .await;

    let status = check(
        &mut client,
        tonic::Request::new(HealthCheckRequest::default()),
    )
    .await;
    assert_eq!(status, ServingStatus::Serving);
    let [outer] = &server.outer.take()[..] else {
        panic!("one request on the wire")
    };
    assert_eq!(outer.path, CHECK);
    assert_eq!(outer.header("content-type"), Some("application/grpc"));
    assert_eq!(
        outer.requesty_headers(),
        [
            ("x-requesty-tags", "grpc"),
            ("x-requesty-team", "platform"),
            ("x-requesty-trace-id", "t-1"),
            ("x-requesty-user-id", "u-1"),
        ]
    );
    assert_eq!(outer.metadata, None);
    let [inner] = &server.inner.take()[..] else {
        panic!("one request reached the service")
    };
    assert_eq!(inner.path, CHECK);
    assert_eq!(inner.header("content-type"), Some("application/grpc"));
    assert_eq!(inner.header("te"), Some("trailers"));
    assert_eq!(inner.requesty_headers(), [], "stripped before the service");
    assert_eq!(inner.metadata, Some(defaults()));

    // Per call: an extension on the tonic request, and gRPC metadata the caller set (which wins).
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    request
        .extensions_mut()
        .insert(RequestMetadata::new().trace_id("per-call").tag("call"));
    request
        .metadata_mut()
        .insert("x-requesty-user-id", "from-grpc-metadata".parse().unwrap());
    assert_eq!(check(&mut client, request).await, ServingStatus::Serving);
    let [outer] = &server.outer.take()[..] else {
        panic!("one request on the wire")
    };
    assert_eq!(outer.header("x-requesty-trace-id"), Some("per-call"));
    assert_eq!(
        outer.header("x-requesty-user-id"),
        Some("from-grpc-metadata")
    );
    assert_eq!(outer.header("x-requesty-tags"), Some("grpc,call"));
    let [inner] = &server.inner.take()[..] else {
        panic!("one request reached the service")
    };
    assert_eq!(
        inner.metadata,
        Some(
            RequestMetadata::new()
                .tag("grpc")
                .tag("call")
                .user_id("from-grpc-metadata")
                .trace_id("per-call")
                .extra("team", "platform")
        )
    );

    // A gRPC error status passes back through both layers unchanged.
    let error = client
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("an unknown service");
    assert_eq!(error.code(), tonic::Code::NotFound);
    assert_eq!(server.inner.take().len(), 1);
}

#[tokio::test]
async fn a_call_made_while_serving_a_grpc_request_carries_its_metadata() {
    let (_recorder, _guard) = Recorder::install();
    let downstream = grpc_server(None).await;
    let onward = client(
        downstream.addr,
        RequestyMetadataLayer::inject(RequestMetadata::new().tag("relay")).headers_only(),
    )
    .await;
    let upstream = grpc_server(Some(onward)).await;

    let mut caller = client(
        upstream.addr,
        RequestyMetadataLayer::inject(defaults().trace_id("grpc-trace")).headers_only(),
    )
    .await;
    let status = check(
        &mut caller,
        tonic::Request::new(HealthCheckRequest::default()),
    )
    .await;
    assert_eq!(status, ServingStatus::Serving);

    let [upstream_seen] = &upstream.inner.take()[..] else {
        panic!("one request upstream")
    };
    assert_eq!(
        upstream_seen.metadata.as_ref().unwrap().trace_id.as_deref(),
        Some("grpc-trace")
    );
    let [wire] = &downstream.outer.take()[..] else {
        panic!("one onward request")
    };
    assert_eq!(
        wire.requesty_headers(),
        [
            ("x-requesty-tags", "relay,grpc"),
            ("x-requesty-team", "platform"),
            ("x-requesty-trace-id", "grpc-trace"),
            ("x-requesty-user-id", "u-1"),
        ]
    );
    let [onward_seen] = &downstream.inner.take()[..] else {
        panic!("one onward request")
    };
    assert_eq!(onward_seen.requesty_headers(), []);
    assert_eq!(
        onward_seen.metadata,
        Some(
            RequestMetadata::new()
                .tag("relay")
                .tag("grpc")
                .user_id("u-1")
                .trace_id("grpc-trace")
                .extra("team", "platform")
        )
    );

    // A request without metadata: the onward call has the client's defaults only.
    let mut plain = client(
        upstream.addr,
        RequestyMetadataLayer::inject(RequestMetadata::new()).headers_only(),
    )
    .await;
    let status = check(
        &mut plain,
        tonic::Request::new(HealthCheckRequest::default()),
    )
    .await;
    assert_eq!(status, ServingStatus::Serving);
    assert_eq!(upstream.inner.take()[0].metadata, None);
    let [onward_seen] = &downstream.inner.take()[..] else {
        panic!("one onward request")
    };
    assert_eq!(
        onward_seen.metadata,
        Some(RequestMetadata::new().tag("relay"))
    );
}

/// Metadata the layer refuses reaches a gRPC client as a gRPC status naming the field and the rule,
/// not as an HTTP error whose JSON body the client cannot decode; the service is not called.
#[tokio::test]
async fn refused_metadata_is_a_grpc_invalid_argument() {
    let (_recorder, _guard) = Recorder::install();
    let server = grpc_server(None).await;
    let channel = Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    let long = "t".repeat(300).parse().unwrap();
    request.metadata_mut().insert("x-requesty-trace-id", long);
    let status = client
        .check(request)
        .await
        .expect_err("refused by the layer");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status.message(),
        "the trace id in header `x-requesty-trace-id` is 300 bytes; the limit is 256 bytes"
    );
    assert!(
        server.inner.0.lock().unwrap().is_empty(),
        "the service was not called"
    );
    // The connection still serves the next call.
    let ok = client.check(HealthCheckRequest::default()).await.unwrap();
    assert_eq!(ok.into_inner().status(), ServingStatus::Serving);
}

/// The refusal is the whole answer: its head ends the stream (a trailers-only response), with no
/// body and no `content-length`, as every gRPC client expects one.
#[tokio::test]
async fn a_refusal_is_a_trailers_only_response() {
    use http_body::Body as _;
    use http_body_util::Full;
    use tower::{Layer, ServiceExt};
    let (recorder, _guard) = Recorder::install();
    let inner = tower::service_fn(|_: http::Request<Full<bytes::Bytes>>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(bytes::Bytes::new())))
    });
    let service = RequestyMetadataLayer::new().headers_only().layer(inner);
    let request = http::Request::post(CHECK)
        .header("content-type", "application/grpc")
        .header("x-requesty-trace-id", "t".repeat(300))
        .body(Full::new(bytes::Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["grpc-status"], "3");
    assert!(response.body().is_end_stream());
    assert_eq!(response.body().size_hint().exact(), Some(0));
    assert!(!response.headers().contains_key("content-length"));
    drop(response);
    let [span] = &recorder.wait_closed(1).await[..] else {
        panic!("one request span")
    };
    // INVALID_ARGUMENT says the caller asked amiss: recorded, not a server error, and the HTTP
    // status is the one on the wire.
    assert_eq!(span.field("http.response.status_code"), Some("200"));
    assert_eq!(
        span.field("rpc.response.status_code"),
        Some("INVALID_ARGUMENT")
    );
    assert_eq!(span.field("otel.status_code"), None);
}

/// A gRPC-Web call (a browser's, through `tonic-web` behind the layer) is refused in its own kind:
/// a trailers-only answer of its media type, whose head a gRPC-Web client reads the status from.
#[tokio::test]
async fn a_grpc_web_refusal_is_a_grpc_web_answer() {
    use http_body::Body as _;
    use http_body_util::Full;
    use tower::{Layer, ServiceExt};
    let (recorder, _guard) = Recorder::install();
    let inner = tower::service_fn(|_: http::Request<Full<bytes::Bytes>>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(bytes::Bytes::new())))
    });
    let service = RequestyMetadataLayer::new().headers_only().layer(inner);
    for (sent, answered) in [
        ("application/grpc-web+proto", "application/grpc-web"),
        ("application/grpc-web-text", "application/grpc-web-text"),
    ] {
        let request = http::Request::post(CHECK)
            .header("content-type", sent)
            .header("x-requesty-trace-id", "t".repeat(300))
            .body(Full::new(bytes::Bytes::from_static(b"\0\0\0\0\0")))
            .unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200, "{sent}");
        assert_eq!(response.headers()["content-type"], answered);
        assert_eq!(response.headers()["grpc-status"], "3");
        assert!(response.headers()["grpc-message"]
            .to_str()
            .unwrap()
            .contains("x-requesty-trace-id"));
        assert!(response.body().is_end_stream());
    }
    let spans = recorder.wait_closed(2).await;
    for span in &spans {
        assert_eq!(span.field("rpc.system.name"), Some("grpc"));
        assert_eq!(
            span.field("rpc.response.status_code"),
            Some("INVALID_ARGUMENT")
        );
    }
}

/// On the wire too (HTTP/2 through hyper): the head carries the status and ends the stream.
#[tokio::test]
async fn a_refusal_ends_the_stream_with_its_head_on_the_wire() {
    use http_body::Body as _;
    use http_body_util::Full;
    use tower::Layer;
    let (_recorder, _guard) = Recorder::install();
    let inner = tower::service_fn(|_: http::Request<hyper::body::Incoming>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(bytes::Bytes::new())))
    });
    let service = RequestyMetadataLayer::new().headers_only().layer(inner);
    let support::Http2 { addr, mut send, .. } = support::http2(service).await;
    let request = http::Request::post(format!("http://{addr}{CHECK}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-requesty-trace-id", "t".repeat(300))
        .body(Full::new(bytes::Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    assert_eq!(response.headers()["grpc-status"], "3");
    assert!(response.body().is_end_stream(), "HEADERS ended the stream");
    assert!(!response.headers().contains_key("content-length"));
}

/// A gRPC call answers `200` whatever its outcome: the spans record the `grpc-status` from the
/// trailers (or the head of a trailers-only answer), and a client span counts every code but OK as
/// an error while a server span counts only the server's own failures.
#[tokio::test]
async fn spans_record_the_grpc_status() {
    let (recorder, _guard) = Recorder::install();
    let server = grpc_server(None).await;
    let mut client = client(
        server.addr,
        RequestyMetadataLayer::inject(defaults()).headers_only(),
    )
    .await;
    let status = check(
        &mut client,
        tonic::Request::new(HealthCheckRequest::default()),
    )
    .await;
    assert_eq!(status, ServingStatus::Serving);
    let error = client
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("an unknown service");
    assert_eq!(error.code(), tonic::Code::NotFound);
    let servers = recorder.wait_closed(2).await;
    let clients = recorder.named("llm_client_request");
    assert_eq!(clients.len(), 2, "{clients:#?}");
    for (spans, not_found_is_error) in [(&servers, None), (&clients, Some("ERROR"))] {
        let [ok, not_found] = &spans[..] else {
            panic!("two spans: {spans:#?}")
        };
        assert_eq!(ok.field("http.response.status_code"), Some("200"));
        // The RPC conventions' attributes, and the name they give the span.
        assert_eq!(ok.field("rpc.system.name"), Some("grpc"), "{ok:#?}");
        assert_eq!(ok.field("rpc.method"), Some("grpc.health.v1.Health/Check"));
        assert_eq!(ok.field("rpc.system"), None, "only the current names");
        assert_eq!(ok.field("rpc.service"), None, "only the current names");
        assert_eq!(ok.field("otel.name"), Some("grpc.health.v1.Health/Check"));
        assert_eq!(ok.field("rpc.response.status_code"), Some("OK"), "{ok:#?}");
        assert_eq!(ok.field("otel.status_code"), None);
        assert_eq!(not_found.field("http.response.status_code"), Some("200"));
        assert_eq!(
            not_found.field("rpc.response.status_code"),
            Some("NOT_FOUND"),
            "{not_found:#?}"
        );
        assert_eq!(not_found.field("otel.status_code"), not_found_is_error);
        // An error names its code; a server span's NOT_FOUND (the caller's mistake) is none.
        let error_type = not_found_is_error.map(|_| "NOT_FOUND");
        assert_eq!(not_found.field("error.type"), error_type, "{not_found:#?}");
        assert_eq!(ok.field("error.type"), None);
    }
}

/// A response body of frames given in advance, for answers with trailers.
type Frames = http_body_util::StreamBody<
    futures_util::stream::Iter<
        std::vec::IntoIter<Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>>,
    >,
>;

/// Sends a gRPC call of `content_type`, one empty message, through a headers-only layer around
/// `inner` whose completion hook notes the gRPC status it saw in `seen`: the answer's status and
/// its body's bytes.
async fn call_noting_status<S>(
    inner: S,
    content_type: &'static str,
    seen: &Arc<Mutex<Vec<Option<i32>>>>,
) -> (http::StatusCode, bytes::Bytes)
where
    S: Service<
            http::Request<Frames>,
            Response = http::Response<Frames>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    use http_body_util::BodyExt;
    use tower::{Layer, ServiceExt};
    let seen = seen.clone();
    let service = RequestyMetadataLayer::new()
        .headers_only()
        .on_complete(move |done| seen.lock().unwrap().push(done.grpc_status))
        .layer(inner);
    let request = http::Request::post(CHECK)
        .header("content-type", content_type)
        .header("x-requesty-trace-id", "t-1")
        .body(http_body_util::StreamBody::new(futures_util::stream::iter(
            vec![Ok(http_body::Frame::data(bytes::Bytes::from_static(
                b"\0\0\0\0\0",
            )))],
        )))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let status = response.status();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

/// A server span is an error when the code says the server failed, whether it came in a
/// trailers-only head or in trailers after the messages; the completion hook sees the code too.
#[tokio::test]
async fn a_server_failure_in_grpc_status_marks_the_span() {
    use bytes::Bytes;
    use http_body::Frame;
    use http_body_util::StreamBody;
    let (recorder, _guard) = Recorder::install();
    let seen = Arc::new(Mutex::new(Vec::new()));
    // Each case: the head's grpc-status, the trailers' grpc-status, what the span records, whether
    // it is an error.
    let cases = [
        (Some("13"), None, Some("13"), true),
        (None, Some("14"), Some("14"), true),
        (None, Some("3"), Some("3"), false),
        (None, Some("0"), Some("0"), false),
        (Some("x1"), None, None, false),
        (None, Some("+1"), None, false),
    ];
    for (head, trailers, _, _) in cases {
        let inner = tower::service_fn(move |_: http::Request<Frames>| async move {
            let mut frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = Vec::new();
            if let Some(code) = trailers {
                frames.push(Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))));
                let mut map = http::HeaderMap::new();
                map.insert("grpc-status", http::HeaderValue::from_static(code));
                frames.push(Ok(Frame::trailers(map)));
            }
            let mut response =
                http::Response::new(StreamBody::new(futures_util::stream::iter(frames)));
            response.headers_mut().insert(
                "content-type",
                http::HeaderValue::from_static("application/grpc"),
            );
            if let Some(code) = head {
                response
                    .headers_mut()
                    .insert("grpc-status", http::HeaderValue::from_static(code));
            }
            Ok::<_, std::convert::Infallible>(response)
        });
        let (status, _) = call_noting_status(inner, "application/grpc", &seen).await;
        assert_eq!(status, 200);
    }
    let spans = recorder.wait_closed(cases.len()).await;
    for ((head, trailers, recorded, error), span) in cases.iter().zip(&spans) {
        let case = format!("head {head:?}, trailers {trailers:?}: {span:#?}");
        assert_eq!(
            span.field("rpc.response.status_code"),
            recorded.map(status_name),
            "{case}"
        );
        assert_eq!(
            span.field("otel.status_code"),
            error.then_some("ERROR"),
            "{case}"
        );
    }
    let codes: Vec<_> = cases
        .iter()
        .map(|(_, _, recorded, _)| recorded.map(|code| code.parse::<i32>().unwrap()))
        .collect();
    assert_eq!(*seen.lock().unwrap(), codes);
}

/// Only a gRPC response's `grpc-status` is its status: a JSON answer that passes one on (from a
/// transcoder, say) is an HTTP answer like any other.
#[tokio::test]
async fn a_grpc_status_on_a_json_answer_is_not_its_status() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use tower::{Layer, ServiceExt};
    let (recorder, _guard) = Recorder::install();
    let inner = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
        let mut response = http::Response::new(Full::new(Bytes::from_static(b"{}")));
        let headers = response.headers_mut();
        headers.insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
        headers.insert("grpc-status", http::HeaderValue::from_static("13"));
        Ok::<_, std::convert::Infallible>(response)
    });
    let service = RequestyMetadataLayer::new().headers_only().layer(inner);
    let request = http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-requesty-trace-id", "t-1")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    response.into_body().collect().await.unwrap();
    let [span] = &recorder.wait_closed(1).await[..] else {
        panic!("one request span")
    };
    assert_eq!(span.field("rpc.response.status_code"), None, "{span:#?}");
    assert_eq!(span.field("otel.status_code"), None);
}

/// HTTP/2 allows a `content-length` together with trailers; hyper sends the trailers after the
/// declared bytes. Reaching the declared length does not end the request while the server still
/// polls, so the span and the hook see the status the trailers carry.
#[tokio::test]
async fn grpc_status_in_trailers_after_a_declared_length_is_recorded() {
    use bytes::Bytes;
    use http_body::Frame;
    use http_body_util::{BodyExt, Full, StreamBody};
    use tower::Layer;
    let (recorder, _guard) = Recorder::install();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hook = seen.clone();
    let inner = tower::service_fn(|_: http::Request<hyper::body::Incoming>| async {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("13"));
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
            Ok(Frame::trailers(trailers)),
        ];
        let mut response = http::Response::new(StreamBody::new(futures_util::stream::iter(frames)));
        let headers = response.headers_mut();
        headers.insert(
            "content-type",
            http::HeaderValue::from_static("application/grpc"),
        );
        headers.insert("content-length", http::HeaderValue::from_static("5"));
        Ok::<_, std::convert::Infallible>(response)
    });
    let service = RequestyMetadataLayer::new()
        .headers_only()
        .on_complete(move |done| hook.lock().unwrap().push(done.grpc_status))
        .layer(inner);
    let support::Http2 { addr, mut send, .. } = support::http2(service).await;
    let request = http::Request::post(format!("http://{addr}{CHECK}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-requesty-trace-id", "t-1")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    let collected = response.into_body().collect().await.unwrap();
    assert_eq!(
        collected.trailers().unwrap()["grpc-status"],
        "13",
        "the client got INTERNAL"
    );
    let spans = recorder.wait_closed(1).await;
    assert_eq!(*seen.lock().unwrap(), [Some(13)], "the hook's grpc_status");
    assert_eq!(
        spans[0].field("rpc.response.status_code"),
        Some("INTERNAL"),
        "{spans:#?}"
    );
    assert_eq!(spans[0].field("otel.status_code"), Some("ERROR"));
}

/// A gRPC-Web answer with a body has no HTTP trailers: its status travels in a trailers frame at
/// the body's end, which counts as trailers do, wherever the body's data frames split it. The bytes
/// go out untouched. A `-web-text` body is base64, and not read; a body cut inside a frame has no
/// status.
#[tokio::test]
async fn a_grpc_web_status_in_the_body_is_recorded() {
    use bytes::Bytes;
    use http_body::Frame;
    use http_body_util::StreamBody;
    let (recorder, _guard) = Recorder::install();
    let seen = Arc::new(Mutex::new(Vec::new()));
    // A message, and the trailers frame.
    let mut body = b"\x00\x00\x00\x00\x02\x08\x01".to_vec();
    let trailers = b"grpc-status: 14\r\ngrpc-message: upstream down\r\n";
    body.push(0x80);
    body.extend_from_slice(&(trailers.len() as u32).to_be_bytes());
    body.extend_from_slice(trailers);
    // Base64 of the same frames, as `-web-text` sends them.
    let text = b"AAAAAAIIAYAAAAAuZ3JwYy1zdGF0dXM6IDE0DQpncnBjLW1lc3NhZ2U6IHVwc3RyZWFtIGRvd24NCg==";
    // Each case: the answer's type, its body's data frames, the status the span records.
    let cases = [
        ("application/grpc-web+proto", vec![body.clone()], Some("14")),
        // The trailers frame's header split across data frames, and its payload too.
        (
            "application/grpc-web",
            vec![
                body[..9].to_vec(),
                body[9..20].to_vec(),
                body[20..].to_vec(),
            ],
            Some("14"),
        ),
        ("application/grpc-web-text", vec![text.to_vec()], None),
        // Cut inside the trailers frame.
        (
            "application/grpc-web",
            vec![body[..body.len() - 1].to_vec()],
            None,
        ),
    ];
    for (content_type, chunks, _) in &cases {
        let (content_type, answer) = (*content_type, chunks.clone());
        let inner = tower::service_fn(move |_: http::Request<Frames>| {
            let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = answer
                .iter()
                .map(|chunk| Ok(Frame::data(Bytes::from(chunk.clone()))))
                .collect();
            async move {
                let mut response =
                    http::Response::new(StreamBody::new(futures_util::stream::iter(frames)));
                response
                    .headers_mut()
                    .insert("content-type", http::HeaderValue::from_static(content_type));
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let (_, sent) = call_noting_status(inner, content_type, &seen).await;
        assert_eq!(
            sent,
            chunks.concat(),
            "{content_type}: the body passes as it is"
        );
    }
    let spans = recorder.wait_closed(cases.len()).await;
    for ((content_type, _, recorded), span) in cases.iter().zip(&spans) {
        let case = format!("{content_type}: {span:#?}");
        assert_eq!(
            span.field("rpc.response.status_code"),
            recorded.map(status_name),
            "{case}"
        );
        let error = recorded.map(|_| "UNAVAILABLE");
        assert_eq!(span.field("error.type"), error, "{case}");
        let status = recorded.map(|_| "ERROR");
        assert_eq!(span.field("otel.status_code"), status, "{case}");
        assert_eq!(
            span.field("requesty.response.completed"),
            Some("true"),
            "{case}"
        );
    }
    assert_eq!(*seen.lock().unwrap(), [Some(14), Some(14), None, None]);
}

/// A client span reads a gRPC-Web answer's status from its body's trailers frame as a server span
/// does, and counts every code but OK as an error.
#[tokio::test]
async fn a_client_span_records_a_grpc_web_status_in_the_body() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use tower::{Layer, ServiceExt};
    let (recorder, _guard) = Recorder::install();
    let inner = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
        let body = Bytes::from_static(b"\x80\x00\x00\x00\x0fgrpc-status:5\r\n");
        let mut response = http::Response::new(Full::new(body));
        response.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/grpc-web+proto"),
        );
        Ok::<_, std::convert::Infallible>(response)
    });
    let service = RequestyMetadataLayer::inject(defaults())
        .headers_only()
        .layer(inner);
    let request = http::Request::post(format!("http://localhost{CHECK}"))
        .header("content-type", "application/grpc-web+proto")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    response.into_body().collect().await.unwrap();
    let [span] = &recorder.named("llm_client_request")[..] else {
        panic!("one client span: {:#?}", recorder.spans())
    };
    assert!(span.closed, "{span:#?}");
    assert_eq!(
        span.field("rpc.response.status_code"),
        Some("NOT_FOUND"),
        "{span:#?}"
    );
    assert_eq!(span.field("error.type"), Some("NOT_FOUND"));
    assert_eq!(span.field("otel.status_code"), Some("ERROR"));
}

/// The name the RPC conventions give a gRPC status code, for the codes these tests answer with.
fn status_name(code: &str) -> &'static str {
    match code {
        "0" => "OK",
        "3" => "INVALID_ARGUMENT",
        "13" => "INTERNAL",
        "14" => "UNAVAILABLE",
        other => panic!("no name for code {other} in these tests"),
    }
}
