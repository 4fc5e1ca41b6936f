//! `/login` and `/signup` for signed-out visitors are rendered once and then served from memory
//! with each response's own CSP nonce (`server::visitor_pages`). These check that what is served
//! is exactly what a render gives, and that no signed-in user's page is ever kept or served.

use crate::helpers::spawn_app;

/// The page's body with its CSP nonce (from the response's own header) replaced by a marker,
/// and that nonce.
async fn page_without_its_nonce(response: reqwest::Response) -> (String, String) {
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("set-cookie").is_none(),
        "a visitor page sets no cookie"
    );
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("nonce in CSP")
        .to_owned();
    let html = response.text().await.expect("html");
    assert!(
        html.contains(&format!("nonce=\"{nonce}\"")),
        "the scripts carry this response's nonce"
    );
    (html.replace(&nonce, "NONCE"), nonce)
}

/// How many visitor pages were served from `source` ("memory" or "render"), from `/metrics`.
async fn visitor_pages_from(address: &str, source: &str) -> u64 {
    let metrics = reqwest::get(format!("{address}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let line = format!("cryptopulse_visitor_pages_total{{source=\"{source}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |n| n.trim().parse().expect("count"))
}

#[tokio::test]
async fn a_visitor_page_from_memory_is_a_fresh_render_with_this_responses_nonce() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    for path in ["/login", "/signup"] {
        let url = format!("{}{path}", app.address);
        let (rendered, first_nonce) =
            page_without_its_nonce(client.get(&url).send().await.expect("page")).await;
        let (kept, kept_nonce) =
            page_without_its_nonce(client.get(&url).send().await.expect("page")).await;
        assert_ne!(first_nonce, kept_nonce, "{path}: nonces are per response");
        assert_eq!(
            rendered, kept,
            "{path}: the kept page differs from its render"
        );
        // A query string is never served from memory: this is a render of its own.
        let (fresh, _) = page_without_its_nonce(
            client
                .get(format!("{url}?utm_source=x"))
                .send()
                .await
                .expect("page"),
        )
        .await;
        assert_eq!(
            fresh, kept,
            "{path}: a fresh render differs from the kept one: the page is not the same for \
             every visitor and must not be listed in VISITOR_PAGES"
        );
        assert!(!kept.contains("Sign out"), "{path}: a visitor's page");
    }
    // Each page rendered once (the query string's renders are not visitor pages), then kept.
    assert_eq!(visitor_pages_from(&app.address, "render").await, 2);
    assert_eq!(visitor_pages_from(&app.address, "memory").await, 2);
    app.stop().await;
}

#[tokio::test]
async fn a_signed_in_users_page_is_never_kept_nor_is_the_visitor_page_served_to_them() {
    let app = spawn_app().await;
    let email = "kept-page@example.com";
    let trader = app.signed_in_as(email, domain::account::Role::Trader).await;
    let url = format!("{}/login", app.address);

    // The first render of the process is a signed-in one: it must not become the visitor page.
    let own = trader.get(&url).send().await.expect("page");
    assert_eq!(own.status(), 200);
    let own = own.text().await.expect("html");
    assert!(own.contains(email), "the signed-in user's own menu");

    for _ in 0..2 {
        let visitor = reqwest::get(&url).await.expect("page");
        let html = visitor.text().await.expect("html");
        assert!(!html.contains(email), "a visitor got a signed-in page");
        assert!(!html.contains("Sign out"), "a visitor got a signed-in page");
    }

    assert_eq!(visitor_pages_from(&app.address, "render").await, 1);
    assert_eq!(visitor_pages_from(&app.address, "memory").await, 1);

    // After the visitor page is kept, the signed-in user still gets their own.
    let again = trader.get(&url).send().await.expect("page");
    assert!(again.text().await.expect("html").contains(email));
    app.stop().await;
}

#[tokio::test]
async fn the_first_visitors_headers_do_not_shape_the_page_everyone_else_gets() {
    let app = spawn_app().await;
    let url = format!("{}/login", app.address);
    // The render kept for everyone: asked for with headers an attacker chooses.
    let poisoned = reqwest::Client::new()
        .get(&url)
        .header("host", "evil.example")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "https")
        .header("accept-language", "xx")
        .header("referer", "https://evil.example/")
        .header("user-agent", "<script>alert(1)</script>")
        .send()
        .await
        .expect("page");
    let (kept, _) = page_without_its_nonce(poisoned).await;
    assert!(!kept.contains("evil.example"), "{kept}");
    assert!(!kept.contains("alert(1)"), "{kept}");
    let (fresh, _) =
        page_without_its_nonce(reqwest::get(format!("{url}?fresh")).await.expect("page")).await;
    assert_eq!(kept, fresh, "the request's headers changed the render");
    app.stop().await;
}
