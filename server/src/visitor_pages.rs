//! The pages a signed-out visitor gets at `/login` and `/signup`: the same HTML for everyone but
//! for the response's CSP nonce. Rendered once per process, then served from memory with this
//! response's nonce put where the render put its own.
//!
//! Why: rendering `/login` costs about 450 µs of CPU here, almost all of it Leptos building and
//! disposing a reactive owner per component (`docs/benchmarks.md`, "Where a signed-out page's
//! time goes"), to produce bytes that differ from the last visitor's only in 22 random
//! characters. Anyone can ask for these pages without signing in, so their cost is also what an
//! unauthenticated flood costs.
//!
//! What keeps it a visitor's page: only a GET of exactly one of [`VISITOR_PAGES`], with no query
//! string (a no-JS form's error comes back in one) and no session cookie (a signed-in user gets
//! their own render, and a stale cookie the normal signed-out one). A render is kept only if it
//! is a complete 200 HTML page that sets no cookie and carries its nonce. Every layer outside
//! this one (rate limits, security headers with the CSP, request ids) still runs per request.
//! `visitor_pages.rs` in the API tests checks that a cached page is byte for byte a fresh render
//! with another nonce.

use std::sync::{Arc, OnceLock};

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use prometheus_client::metrics::counter::Counter;

use crate::metrics::Metrics;
use crate::security::middleware::CspNonce;

/// Paths whose signed-out render is the same for every visitor. A page that shows anything
/// that changes (platform state, a counter) must not be listed: it would be served as first
/// rendered until the process restarts.
pub const VISITOR_PAGES: [&str; 2] = ["/login", "/signup"];

/// Far above a visitor page (about 5 kB); a render larger than this is served but not kept.
const MAX_PAGE_BYTES: usize = 256 * 1024;

/// The kept renders, one slot per entry of [`VISITOR_PAGES`], filled by the first complete render.
#[derive(Clone)]
pub struct VisitorPages {
    session_cookie: &'static str,
    pages: Arc<[OnceLock<KeptPage>; VISITOR_PAGES.len()]>,
    from_memory: Counter,
    rendered: Counter,
}

/// A render split at its nonce: the pieces between the places the nonce stood.
struct KeptPage {
    headers: HeaderMap,
    pieces: Vec<Bytes>,
}

impl VisitorPages {
    /// `session_cookie`: the session layer's cookie name; a request carrying it is not a visitor's.
    pub fn new(session_cookie: &'static str, metrics: &Metrics) -> Self {
        Self {
            session_cookie,
            pages: Arc::new(std::array::from_fn(|_| OnceLock::new())),
            from_memory: metrics.visitor_pages_from("memory"),
            rendered: metrics.visitor_pages_from("render"),
        }
    }

    /// The slot for this request if it asks for a visitor page as a visitor.
    fn slot_for(&self, request: &Request) -> Option<&OnceLock<KeptPage>> {
        if request.method() != Method::GET || request.uri().query().is_some() {
            return None;
        }
        let index = VISITOR_PAGES
            .iter()
            .position(|page| *page == request.uri().path())?;
        if self.carries_session_cookie(request.headers()) {
            return None;
        }
        self.pages.get(index)
    }

    fn carries_session_cookie(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::COOKIE)
            .iter()
            // A header that is not text cannot be parsed by the session layer either; treat it as
            // a session so that request gets the normal render.
            .map(|value| value.to_str().unwrap_or(self.session_cookie))
            .flat_map(|value| value.split(';'))
            .any(|pair| {
                pair.trim()
                    .split('=')
                    .next()
                    .is_some_and(|name| name == self.session_cookie)
            })
    }
}

impl KeptPage {
    /// Splits `body` at `nonce`; `None` if the nonce is not in it (nothing to put a new one in:
    /// the hydration scripts would be refused by the next response's CSP).
    fn from_render(headers: &HeaderMap, body: &Bytes, nonce: &str) -> Option<Self> {
        let mut pieces = Vec::new();
        let mut rest = body.clone();
        while let Some(at) = find(&rest, nonce.as_bytes()) {
            pieces.push(rest.slice(..at));
            rest = rest.slice(at + nonce.len()..);
        }
        if pieces.is_empty() {
            return None;
        }
        pieces.push(rest);
        let mut headers = headers.clone();
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::TRANSFER_ENCODING);
        Some(Self { headers, pieces })
    }

    fn response(&self, nonce: &str) -> Response {
        let length = self.pieces.iter().map(Bytes::len).sum::<usize>()
            + nonce.len() * (self.pieces.len() - 1);
        let mut body = Vec::with_capacity(length);
        for (i, piece) in self.pieces.iter().enumerate() {
            if i > 0 {
                body.extend_from_slice(nonce.as_bytes());
            }
            body.extend_from_slice(piece);
        }
        let mut response = Response::new(Body::from(body));
        *response.headers_mut() = self.headers.clone();
        response
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Serves a visitor page from memory, or renders it (through the layers inside this one) and
/// keeps the render if it qualifies.
pub async fn serve_visitor_pages(
    State(pages): State<VisitorPages>,
    request: Request,
    next: Next,
) -> Response {
    let Some(slot) = pages.slot_for(&request) else {
        return next.run(request).await;
    };
    let Some(CspNonce(nonce)) = request.extensions().get::<CspNonce>().cloned() else {
        return next.run(request).await;
    };
    if let Some(page) = slot.get() {
        pages.from_memory.inc();
        return page.response(&nonce);
    }
    pages.rendered.inc();
    let response = next.run(request).await;
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/html"));
    if response.status() != StatusCode::OK
        || !is_html
        || response.headers().contains_key(header::SET_COOKIE)
    {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_PAGE_BYTES).await else {
        // The render was cut off (its deadline) or is larger than any visitor page: its status
        // line has not been sent yet, so say so properly instead of a truncated page.
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, HeaderValue::from_static("1"))],
            "This page took too long to prepare. Reload to try again.\n",
        )
            .into_response();
    };
    if let Some(page) = KeptPage::from_render(&parts.headers, &bytes, &nonce) {
        // A render finished first by another request may already be there: the same bytes.
        let _ = slot.set(page);
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, cookie: Option<&str>) -> Request {
        let mut builder = Request::builder().uri(path);
        if let Some(cookie) = cookie {
            builder = builder.header(header::COOKIE, cookie);
        }
        builder.body(Body::empty()).expect("request")
    }

    #[test]
    fn only_a_plain_get_of_a_listed_page_without_the_session_cookie_is_a_visitors() {
        let pages = VisitorPages::new("cryptopulse_session", &Metrics::new());
        assert!(pages.slot_for(&request("/login", None)).is_some());
        assert!(pages.slot_for(&request("/signup", None)).is_some());
        assert!(
            pages
                .slot_for(&request("/login", Some("theme=dark; other=1")))
                .is_some()
        );
        for refused in [
            request("/login?server_fn_error=x", None),
            request("/login/", None),
            request("/trade", None),
            request("/login", Some("cryptopulse_session=abc")),
            request("/login", Some("theme=dark; cryptopulse_session=abc")),
        ] {
            assert!(pages.slot_for(&refused).is_none(), "{:?}", refused.uri());
        }
        let mut post = request("/login", None);
        *post.method_mut() = Method::POST;
        assert!(pages.slot_for(&post).is_none());
    }

    #[test]
    fn a_kept_page_is_the_render_with_each_nonce_replaced() {
        let render =
            Bytes::from_static(b"<script nonce=\"N0NCE\">a</script><style nonce=\"N0NCE\">");
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(render.len()));
        let page = KeptPage::from_render(&headers, &render, "N0NCE").expect("nonce present");
        assert_eq!(page.pieces.len(), 3);
        assert!(!page.headers.contains_key(header::CONTENT_LENGTH));
        let response = page.response("fresh");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/html");
        let body =
            futures::executor::block_on(to_bytes(response.into_body(), usize::MAX)).expect("body");
        assert_eq!(
            &body[..],
            b"<script nonce=\"fresh\">a</script><style nonce=\"fresh\">"
        );
    }

    #[test]
    fn a_render_without_its_nonce_is_not_kept() {
        let render = Bytes::from_static(b"<p>no scripts</p>");
        assert!(KeptPage::from_render(&HeaderMap::new(), &render, "N0NCE").is_none());
    }
}
