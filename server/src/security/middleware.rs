//! Request ids, client addresses, security headers with a per-response CSP nonce, CSRF origin
//! checks and the status codes of server-function errors.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use domain::audit::RequestMeta;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

const MAX_USER_AGENT_CHARS: usize = 256;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id, generated here (never taken from the client, so logs can't be spoofed).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The client's address as this server sees it.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// A random nonce for this response's Content-Security-Policy; the SSR renderer stamps it on
/// the hydration scripts. Shared (`Arc`) by the header middleware and the renderer.
#[derive(Debug, Clone)]
pub struct CspNonce(pub Arc<str>);

pub async fn request_context(
    State(trust_forwarded_for): State<bool>,
    mut request: Request,
    next: Next,
) -> Response {
    // The thread-local CSPRNG (ChaCha, seeded from the OS) rather than a getrandom system call
    // per value: two per request showed in the profile.
    let request_id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut id_text = uuid::Uuid::encode_buffer();
    let request_id: &str = request_id.hyphenated().encode_lower(&mut id_text);
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let ip = client_ip(peer, request.headers(), trust_forwarded_for);
    let user_agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect::<String>());
    let nonce: Arc<str> = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(rand::random::<[u8; 16]>())
        .into();

    let request_id_header = HeaderValue::from_str(request_id).ok();
    if let Some(value) = &request_id_header {
        request.headers_mut().insert(REQUEST_ID, value.clone());
    }
    request.extensions_mut().insert(ClientIp(ip));
    request.extensions_mut().insert(CspNonce(nonce));
    request.extensions_mut().insert(RequestMeta {
        ip: Some(ip.to_string()),
        user_agent,
        request_id: Some(request_id.to_owned()),
    });

    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %request.method(),
        // The path only: query strings may carry values that must not be logged.
        path = request.uri().path(),
        client_ip = %ip,
    );
    let started = std::time::Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "handled"
        );
    });
    if let Some(value) = request_id_header {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// The client's address: the last `X-Forwarded-For` hop when the proxy is trusted, else the
/// peer. Always canonical: an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, as a dual-stack
/// listener or a proxy may write it) is the IPv4 address, so rate limits, login backoff and the
/// audit log count one client once.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trust_forwarded_for: bool) -> IpAddr {
    let forwarded = trust_forwarded_for
        .then(|| last_forwarded_for(headers))
        .flatten();
    canonical_ip(forwarded.or(peer).unwrap_or(IpAddr::from([127, 0, 0, 1])))
}

/// `::ffff:1.2.3.4` as `1.2.3.4`; every other address as it is.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

fn last_forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let last = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .last()?;
    let address = forwarded_address(last.trim());
    if address.is_none() {
        // Falling back to the proxy's own address puts every client in one rate-limit and
        // back-off bucket: worth an operator's attention.
        tracing::warn!("X-Forwarded-For entry is not an address; using the peer's");
    }
    address
}

/// An X-Forwarded-For entry as proxies write it: `1.2.3.4`, `2001:db8::1`, or with a port
/// (`1.2.3.4:5678`, `[2001:db8::1]:443`) or brackets (`[2001:db8::1]`).
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inner| inner.parse().ok())
        })
}

#[derive(Debug, Clone)]
pub struct HeaderPolicy {
    pub https: bool,
}

pub async fn security_headers(
    State(policy): State<Arc<HeaderPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    let nonce = request
        .extensions()
        .get::<CspNonce>()
        .map(|n| n.0.clone())
        .unwrap_or_default();
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let csp = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; style-src 'self' 'nonce-{nonce}'; \
         img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'"
    );
    let fixed: [(HeaderName, &str); 6] = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Same-origin only: plain (no-JS) form posts rely on Referer to return to their page.
        (header::REFERRER_POLICY, "same-origin"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("permissions-policy"),
            "camera=(), microphone=(), geolocation=(), payment=()",
        ),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    // Handed over without a copy (the header bytes are checked all the same).
    if let Ok(value) = HeaderValue::from_maybe_shared(axum::body::Bytes::from(csp)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    if policy.https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        );
    }
    let is_static_asset = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.starts_with("application/wasm")
                || ct.starts_with("text/css")
                || ct.contains("javascript")
                || ct.starts_with("image/")
        });
    if !is_static_asset && !headers.contains_key(header::CACHE_CONTROL) {
        // Pages and API answers carry personal and security data: never cache them.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// CSRF defence for state-changing requests: the Origin must be one of ours; without an Origin
/// header, the browser's `Sec-Fetch-Site` must say same-origin. SameSite=Strict cookies are the
/// second layer.
pub async fn require_same_origin(
    State(allowed): State<Arc<Vec<String>>>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let allowed_request = match origin {
        Some(origin) => allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)),
        None => fetch_site == Some("same-origin"),
    } && fetch_site
        .is_none_or(|site| site == "same-origin" || site == "none");
    if allowed_request {
        next.run(request).await
    } else {
        tracing::warn!(target: "security", event = "security.violation", kind = "csrf_origin", origin = origin.unwrap_or("-"));
        (StatusCode::FORBIDDEN, "Cross-origin request refused.\n").into_response()
    }
}

/// Server functions answer errors with status 500 and the error's JSON; give each error its
/// proper status here, in one place (bad input → 400, not signed in → 401, …).
pub async fn server_fn_status(request: Request, next: Next) -> Response {
    let is_server_fn = request.uri().path().starts_with("/api/");
    let response = next.run(request).await;
    if !is_server_fn || response.status() != StatusCode::INTERNAL_SERVER_ERROR {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match to_bytes(body, 64 * 1024).await {
        Ok(bytes) => bytes,
        Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response(),
    };
    if let Ok(error) = serde_json::from_slice::<app::error::AppError>(&bytes) {
        parts.status =
            StatusCode::from_u16(error.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if let Some(retry_after) = error.retry_after_secs() {
            parts
                .headers
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// Wraps the session layer. A session load or save that meets a database outage after the
/// handler has answered (tower-sessions then replaces the answer with an empty 500) is answered
/// like every other outage: a 503 saying so, as JSON for a server function, as text otherwise.
pub async fn session_store_outage(request: Request, next: Next) -> Response {
    let is_server_fn = request.uri().path().starts_with("/api/");
    let request_id = request
        .extensions()
        .get::<RequestMeta>()
        .and_then(|meta| meta.request_id.clone());
    let (response, outage) = crate::storage::watching_session_outages(next.run(request)).await;
    let Some(outage) = outage.filter(|_| response.status() == StatusCode::INTERNAL_SERVER_ERROR)
    else {
        return response;
    };
    let error = app::error::AppError::store_failure_for(request_id, outage);
    let status =
        StatusCode::from_u16(error.status_code()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    if is_server_fn {
        (status, axum::Json(error)).into_response()
    } else {
        (status, format!("{error}\n")).into_response()
    }
}

/// A request that may change something (every method but GET, HEAD and OPTIONS) runs to its
/// end on a task of its own, even if its client hangs up. axum drops a handler's future when its
/// connection closes: an order could stop between being recorded and being sent (left
/// `submitting`, sent or not), a step-up between spending a code and opening the window, a
/// sign-in before its session is saved. Reads are still dropped: stopping one leaves nothing
/// half-done. The tasks are tracked in `writes`: a stopping server waits for them as it does for
/// open connections, since a write whose client left has no connection to wait for.
pub async fn run_writes_to_completion(
    State(writes): State<TaskTracker>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let run = next.run(request).instrument(tracing::Span::current());
    match writes.spawn(run).await {
        Ok(response) => response,
        // As if it had run here: whatever catches a handler's panic still does.
        Err(failed) => match failed.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // The runtime is shutting down, past the graceful wait for open requests.
            Err(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, HeaderValue::from_static("1"))],
                "The server is shutting down. Try again shortly.\n",
            )
                .into_response(),
        },
    }
}

/// How long a page may take on the server, from the request to the end of its streamed body (a
/// normal render takes milliseconds).
pub const PAGE_RENDER_BUDGET: std::time::Duration = std::time::Duration::from_secs(8);

/// Page GETs get a bounded time: no answer begun within `budget` → 503; an HTML body not
/// finished within it is cut off (the browser sees a broken response, not an endless one). A
/// page is rendered once, streaming as it resolves.
///
/// Renders stalled in the API tests: route-list generation switches resource loading off for
/// the whole process, and each test built its own router (see `app::route_list`, now done
/// once). This stays as a bound, not a retry: a stall is a bug to see in the log.
/// Server functions are never cut off: they may be sending an order.
pub async fn page_render_deadline(
    State(budget): State<std::time::Duration>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if request.method() != Method::GET || path.starts_with("/api/") || path.starts_with("/pkg/") {
        return next.run(request).await;
    }
    // Kept for the log lines only; a `Uri` clone shares its bytes rather than copying them.
    let uri = request.uri().clone();
    let deadline = tokio::time::Instant::now() + budget;
    let Ok(response) = tokio::time::timeout_at(deadline, next.run(request)).await else {
        tracing::error!(path = uri.path(), "page render did not start in time");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, HeaderValue::from_static("1"))],
            "This page took too long to prepare. Reload to try again.\n",
        )
            .into_response();
    };
    let is_page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/html"));
    if !is_page {
        // Files from the assets folder keep their length and are never cut off.
        return response;
    }
    let (parts, body) = response.into_parts();
    let chunks = FinishedOnDrop::new(Box::pin(body_until(deadline, body, uri)));
    Response::from_parts(parts, Body::from_stream(chunks))
}

type PageChunks = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<axum::body::Bytes, axum::BoxError>> + Send>,
>;

/// A page body that, dropped before its end, is read to its end in the background (which
/// `body_until` bounds by the page's deadline). Leptos renders a page on tasks of its own:
/// cut off mid-render (a failed session save makes the session layer drop the page for a 503,
/// or the browser goes away), they outlived the page's reactive owner and panicked reading it
/// (the trading banner's session, `<A/>` outside a router).
struct FinishedOnDrop {
    chunks: Option<PageChunks>,
    /// Set while a poll runs: still set at drop, that poll panicked (a render's panic unwinds
    /// out of it), and the stream cannot be polled again.
    polling: bool,
}

impl FinishedOnDrop {
    fn new(chunks: PageChunks) -> Self {
        Self {
            chunks: Some(chunks),
            polling: false,
        }
    }
}

impl futures::Stream for FinishedOnDrop {
    type Item = Result<axum::body::Bytes, axum::BoxError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(chunks) = this.chunks.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        this.polling = true;
        let next = chunks.as_mut().poll_next(cx);
        this.polling = false;
        if let std::task::Poll::Ready(None) = next {
            this.chunks = None;
        }
        next
    }
}

impl Drop for FinishedOnDrop {
    fn drop(&mut self) {
        use futures::StreamExt as _;
        if self.polling {
            return;
        }
        if let (Some(chunks), Ok(runtime)) =
            (self.chunks.take(), tokio::runtime::Handle::try_current())
        {
            runtime.spawn(chunks.for_each(|_| async {}));
        }
    }
}

/// The page's render did not finish within its budget.
#[derive(Debug, thiserror::Error)]
#[error("page render did not finish in time")]
struct PageRenderTimedOut;

/// `body`'s chunks until it ends, or an error at `deadline` (which ends the response).
fn body_until(
    deadline: tokio::time::Instant,
    body: Body,
    uri: http::Uri,
) -> impl futures::Stream<Item = Result<axum::body::Bytes, axum::BoxError>> {
    use futures::StreamExt as _;
    futures::stream::unfold(Some(body.into_data_stream()), move |chunks| {
        let uri = uri.clone();
        async move {
            let mut chunks = chunks?;
            match tokio::time::timeout_at(deadline, chunks.next()).await {
                Ok(Some(chunk)) => Some((chunk.map_err(axum::BoxError::from), Some(chunks))),
                Ok(None) => None,
                Err(_) => {
                    tracing::error!(
                        path = uri.path(),
                        "page render did not finish in time; response cut off"
                    );
                    Some((Err(PageRenderTimedOut.into()), None))
                }
            }
        }
    })
}

#[cfg(test)]
mod page_render_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use axum::Router;
    use axum::middleware::from_fn_with_state;
    use axum::routing::get;
    use futures::StreamExt as _;
    use tower::ServiceExt as _;

    use super::*;

    const BUDGET: Duration = Duration::from_millis(200);

    /// How a test page behaves.
    #[derive(Clone, Copy)]
    enum Page {
        Whole,
        /// Streams its head, then never finishes.
        StallsMidway,
        /// Never begins its answer.
        NeverAnswers,
    }

    async fn serve(page: Page) -> (Response, Arc<AtomicUsize>) {
        let renders = Arc::new(AtomicUsize::new(0));
        let counted = renders.clone();
        let app = Router::new()
            .route(
                "/page",
                get(move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let body = match page {
                            Page::Whole => Body::from("<html>whole</html>"),
                            Page::StallsMidway => Body::from_stream(
                                futures::stream::once(async {
                                    Ok::<_, std::io::Error>(axum::body::Bytes::from("<html>"))
                                })
                                .chain(futures::stream::pending()),
                            ),
                            Page::NeverAnswers => std::future::pending().await,
                        };
                        ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body)
                    }
                }),
            )
            .layer(from_fn_with_state(BUDGET, page_render_deadline));
        let response = app
            .oneshot(Request::get("/page").body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        (response, renders)
    }

    /// A render that panicked mid-body is not polled again when hyper drops the body: the
    /// stream is poisoned, and a resumed render only panics again ("resumed after panicking").
    #[tokio::test]
    async fn a_body_whose_render_panicked_is_not_read_on_after_the_drop() {
        let polls = Arc::new(AtomicUsize::new(0));
        let counted = polls.clone();
        let render: PageChunks = Box::pin(futures::stream::poll_fn(move |_| {
            if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("a render that panics");
            }
            std::task::Poll::Ready(None)
        }));
        let mut body = FinishedOnDrop::new(render);
        let poll = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            futures::FutureExt::now_or_never(body.next())
        }));
        assert!(poll.is_err(), "the first poll panics");
        drop(body);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(polls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_healthy_page_streams_through_rendered_once() {
        let (response, renders) = serve(Page::Whole).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = to_bytes(response.into_body(), 1024).await.expect("body");
        assert_eq!(&body[..], b"<html>whole</html>");
        assert_eq!(renders.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_page_that_never_answers_gets_503_within_its_budget() {
        let (response, renders) = serve(Page::NeverAnswers).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(renders.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_stalled_body_is_cut_off_rather_than_rendered_again() {
        let (response, renders) = serve(Page::StallsMidway).await;
        assert_eq!(response.status(), StatusCode::OK);
        let whole = tokio::time::timeout(BUDGET * 5, to_bytes(response.into_body(), 1024))
            .await
            .expect("the body ends at the deadline");
        assert!(whole.is_err(), "a cut-off body ends in an error");
        assert_eq!(renders.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_page_dropped_mid_body_is_still_rendered_to_its_end() {
        const CHUNKS: usize = 3;
        let produced = Arc::new(AtomicUsize::new(0));
        let counter = produced.clone();
        let app = Router::new()
            .route(
                "/page",
                get(move || {
                    let counter = counter.clone();
                    async move {
                        let chunks = futures::stream::unfold(0, move |n| {
                            let counter = counter.clone();
                            async move {
                                if n == CHUNKS {
                                    return None;
                                }
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                counter.fetch_add(1, Ordering::SeqCst);
                                Some((
                                    Ok::<_, std::io::Error>(axum::body::Bytes::from("<p>")),
                                    n + 1,
                                ))
                            }
                        });
                        (
                            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                            Body::from_stream(chunks),
                        )
                    }
                }),
            )
            .layer(from_fn_with_state(BUDGET, page_render_deadline));
        let response = app
            .oneshot(Request::get("/page").body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let mut body = response.into_body().into_data_stream();
        assert!(body.next().await.is_some(), "the first chunk");
        drop(body);
        assert_eq!(produced.load(Ordering::SeqCst), 1);
        tokio::time::timeout(BUDGET, async {
            while produced.load(Ordering::SeqCst) < CHUNKS {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the rest of the page is rendered after its body was dropped");
    }
}

#[cfg(test)]
mod run_to_completion_tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use axum::Router;
    use axum::middleware::from_fn_with_state;
    use axum::routing::any;
    use tower::ServiceExt as _;

    use super::*;

    /// Sends `method /write` to a handler that takes 100 ms, hangs up after 10 ms, and says
    /// whether the handler got to its end.
    async fn hang_up_during(method: Method) -> bool {
        let writes = TaskTracker::new();
        let finished = Arc::new(AtomicBool::new(false));
        let flag = finished.clone();
        let app = Router::new()
            .route(
                "/write",
                any(move || {
                    let flag = flag.clone();
                    async move {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        flag.store(true, Ordering::SeqCst);
                        "done"
                    }
                }),
            )
            .layer(from_fn_with_state(writes.clone(), run_writes_to_completion));
        let request = Request::builder()
            .method(method)
            .uri("/write")
            .body(Body::empty())
            .expect("request");
        let cut = tokio::time::timeout(Duration::from_millis(10), app.oneshot(request)).await;
        assert!(cut.is_err(), "the client hung up before the answer");
        // What a stopping server does: the write left behind is waited for, not cut off.
        writes.close();
        tokio::time::timeout(Duration::from_secs(5), writes.wait())
            .await
            .expect("the tracked writes end");
        // Longer than the handler takes: a read that was not dropped would have finished.
        tokio::time::sleep(Duration::from_millis(300)).await;
        finished.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn a_write_whose_client_hangs_up_still_runs_to_its_end() {
        assert!(hang_up_during(Method::POST).await);
        assert!(hang_up_during(Method::DELETE).await);
    }

    #[tokio::test]
    async fn a_read_whose_client_hangs_up_is_dropped() {
        assert!(!hang_up_during(Method::GET).await);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().expect("header"));
        headers
    }

    #[test]
    fn forwarded_addresses_with_a_port_or_brackets_name_the_client_not_the_proxy() {
        let proxy = IpAddr::from([10, 0, 0, 1]);
        for (value, client) in [
            ("203.0.113.7", "203.0.113.7"),
            ("198.51.100.1, 203.0.113.7:51234", "203.0.113.7"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("2001:db8::1", "2001:db8::1"),
            ("::ffff:203.0.113.7", "203.0.113.7"),
        ] {
            let ip = client_ip(Some(proxy), &forwarded(value), true);
            assert_eq!(ip, client.parse::<IpAddr>().expect("ip"), "{value}");
        }
        // Not an address: the peer, as before; and an untrusted header is never read.
        assert_eq!(client_ip(Some(proxy), &forwarded("unknown"), true), proxy);
        assert_eq!(
            client_ip(Some(proxy), &forwarded("203.0.113.7"), false),
            proxy
        );
    }
}
