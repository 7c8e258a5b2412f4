//! Forwards `/v1/*` to a real provider and streams its answer back.

use super::*;
use axum::body::HttpBody as _;
use axum::extract::State;
use axum::http::header::{CONNECTION, CONTENT_LENGTH};
use axum::http::HeaderMap;
use axum::routing::any;
use std::sync::Arc;
use std::time::Duration;

struct Upstream {
    client: reqwest::Client,
    /// The base URL without its trailing `/`; the request's path and query are appended.
    base: String,
}

pub fn routes(base: &reqwest::Url) -> Router {
    let client = reqwest::Client::builder()
        // A proxy passes redirects on to its client instead of following them.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("the HTTP client builds once a TLS provider is installed");
    let upstream = Upstream {
        client,
        base: base.as_str().trim_end_matches('/').to_owned(),
    };
    Router::new()
        .route("/v1/{*rest}", any(forward))
        .with_state(Arc::new(upstream))
}

async fn forward(State(upstream): State<Arc<Upstream>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    // The URL parser would resolve `..` (and `%2e%2e`, and `\`) and so reach paths above the
    // upstream's base: such a path is refused, not resolved.
    if climbs(parts.uri.path()) {
        return error_response(
            StatusCode::BAD_REQUEST,
            "the path has `.` or `..` segments or a backslash",
            "invalid_request_error",
            "invalid_path",
        );
    }
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let url = format!("{}{path}", upstream.base);
    // The answer is asked for uncompressed (no `Accept-Encoding` from the client goes on): the
    // layer reads token usage only from bytes it can read, and the OpenAI SDKs ask for gzip.
    let mut headers = copy_headers(
        &parts.headers,
        &["host", "content-length", "accept-encoding"],
    );
    let mut outgoing = upstream.client.request(parts.method, url);
    // The layer rebuilt a JSON body without the `requesty` member, so its exact size is known:
    // send that as Content-Length. Other bodies stream through as they arrive; an empty one
    // (a GET) is not sent at all.
    let size = body.size_hint().exact();
    if size != Some(0) {
        if let Some(len) = size {
            headers.insert(CONTENT_LENGTH, len.into());
        }
        outgoing = outgoing.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    } else if parts.headers.contains_key(CONTENT_LENGTH) {
        // An empty body that said so (a POST without one) says so upstream too.
        headers.insert(CONTENT_LENGTH, 0.into());
    }
    let answer = match outgoing.headers(headers).send().await {
        Ok(answer) => answer,
        Err(error) => {
            // A timeout (the connect timeout) is a 504, as a gateway reports an upstream that
            // did not answer in time; other failures are a 502.
            let (status, code) = if error.is_timeout() {
                (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout")
            } else {
                (StatusCode::BAD_GATEWAY, "upstream_unreachable")
            };
            let message = format!(
                "the upstream provider could not be reached: {}",
                causes(&error)
            );
            tracing::warn!("{message}");
            return error_response(status, &message, "api_error", code);
        }
    };
    let status = answer.status();
    let headers = copy_headers(answer.headers(), &[]);
    // Frame by frame, so server-sent events reach the client as the provider sends them.
    let mut response = Response::new(Body::from_stream(answer.bytes_stream()));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Whether `path` has a segment that a URL parser resolves: `.` or `..`, also percent-encoded,
/// or a backslash (a separator for `http` URLs).
fn climbs(path: &str) -> bool {
    const DOTS: [&str; 6] = [".", "..", "%2e", ".%2e", "%2e.", "%2e%2e"];
    path.contains('\\')
        || path
            .split('/')
            .any(|segment| DOTS.iter().any(|dots| segment.eq_ignore_ascii_case(dots)))
}

/// Copies end-to-end headers: drops hop-by-hop ones, those `Connection` names, and `also`.
fn copy_headers(headers: &HeaderMap, also: &[&str]) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    let keep = |name: &str| {
        !matches!(
            name,
            "connection" | "keep-alive" | "te" | "trailer" | "transfer-encoding" | "upgrade"
        ) && !name.starts_with("proxy-")
            && !also.contains(&name)
            && !named.iter().any(|n| n == name)
    };
    headers
        .iter()
        .filter(|(name, _)| keep(name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// The error and its causes: reqwest's own message alone rarely says what went wrong.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
