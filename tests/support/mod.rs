//! Shared test harness: a tracing subscriber that records spans, and an axum server on loopback.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

/// One span as the recorder saw it.
#[derive(Clone, Debug, Default)]
pub struct SpanRecord {
    pub name: String,
    pub target: String,
    pub fields: BTreeMap<String, String>,
    pub closed: bool,
    /// Messages of the events emitted inside the span.
    pub events: Vec<BTreeMap<String, String>>,
}

impl SpanRecord {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// Records every span ever made; span ids are reused after close, so records are kept in creation
/// order and `live` maps an id to its current record.
#[derive(Clone, Default)]
pub struct Recorder {
    inner: Arc<Mutex<Spans>>,
}

#[derive(Default)]
struct Spans {
    all: Vec<SpanRecord>,
    live: HashMap<u64, usize>,
}

impl Spans {
    fn live(&mut self, id: &Id) -> Option<&mut SpanRecord> {
        let index = *self.live.get(&id.into_u64())?;
        self.all.get_mut(index)
    }
}

impl Recorder {
    /// Installs the recorder as this thread's default subscriber (tests run on a current-thread
    /// runtime, so server and client tasks all report here).
    pub fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        let recorder = Recorder::default();
        let subscriber = tracing_subscriber::registry().with(recorder.clone());
        let guard = tracing::subscriber::set_default(subscriber);
        (recorder, guard)
    }

    pub fn spans(&self) -> Vec<SpanRecord> {
        self.inner.lock().unwrap().all.clone()
    }

    /// The spans named `llm_request`.
    pub fn requests(&self) -> Vec<SpanRecord> {
        self.spans()
            .into_iter()
            .filter(|s| s.name == "llm_request")
            .collect()
    }

    /// The spans with this name.
    pub fn named(&self, name: &str) -> Vec<SpanRecord> {
        self.spans()
            .into_iter()
            .filter(|s| s.name == name)
            .collect()
    }

    /// Waits (bounded) until `count` request spans have closed.
    pub async fn wait_closed(&self, count: usize) -> Vec<SpanRecord> {
        for _ in 0..200 {
            let closed: Vec<_> = self.requests().into_iter().filter(|s| s.closed).collect();
            if closed.len() >= count {
                return closed;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("request spans did not close: {:#?}", self.requests());
    }
}

struct FieldVisitor<'a>(&'a mut BTreeMap<String, String>);

impl Visit for FieldVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S> Layer<S> for Recorder
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut record = SpanRecord {
            name: attrs.metadata().name().to_owned(),
            target: attrs.metadata().target().to_owned(),
            ..Default::default()
        };
        attrs.record(&mut FieldVisitor(&mut record.fields));
        let mut spans = self.inner.lock().unwrap();
        spans.all.push(record);
        let index = spans.all.len() - 1;
        spans.live.insert(id.into_u64(), index);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some(record) = self.inner.lock().unwrap().live(id) {
            values.record(&mut FieldVisitor(&mut record.fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.event_span(event) else {
            return;
        };
        let mut fields = BTreeMap::new();
        event.record(&mut FieldVisitor(&mut fields));
        // Attribute the event to the request span (server or client) it sits in, however deep.
        let mut spans = self.inner.lock().unwrap();
        for ancestor in span.scope() {
            if let Some(record) = spans.live(&ancestor.id()) {
                if matches!(record.name.as_str(), "llm_request" | "llm_client_request") {
                    record.events.push(fields);
                    return;
                }
            }
        }
    }

    fn on_close(&self, id: Id, _: Context<'_, S>) {
        let mut spans = self.inner.lock().unwrap();
        if let Some(record) = spans.live(&id) {
            record.closed = true;
        }
        spans.live.remove(&id.into_u64());
    }
}

/// Serves `app` on a loopback port until the test ends.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

/// A reqwest client (plain HTTP; rustls needs a process-wide provider all the same).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().unwrap()
}

/// One HTTP/2 connection on loopback, hyper on both ends: the server side runs `service`, the
/// client side sends with `send`. `connection` drives the client side: abort it to make the client
/// go away.
pub struct Http2<B> {
    pub addr: SocketAddr,
    pub send: hyper::client::conn::http2::SendRequest<B>,
    pub connection: tokio::task::JoinHandle<()>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `service` over one HTTP/2 connection on a loopback port and connects to it.
pub async fn http2<S, ResBody, B>(service: S) -> Http2<B>
where
    S: tower::Service<http::Request<hyper::body::Incoming>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ResBody: http_body::Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service = hyper_util::service::TowerToHyperService::new(service);
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    Http2 {
        addr,
        send,
        connection,
    }
}
