//! The browser bundle as the server sends it: pages name the content-hashed files listed in
//! cargo-leptos's hash.txt, and /pkg serves them precompressed with year-long immutable caching.

use std::sync::Arc;

use leptos::config::LeptosOptions;
use reqwest::header::{ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use server::startup::Application;

use crate::helpers::{TestClock, TestDatabase, test_settings};

const JS_HASH: &str = "Qb3Ub5Iq-dTwYx_kPlZC0A";
const WASM_HASH: &str = "x9Zk2LmN4pQr6StUvWxY_a";
const CSS_HASH: &str = "c0FfEe-c0FfEe_c0FfEe12";

/// A site as `cargo leptos build --release --precompress` leaves it, with its hash list.
fn write_site(root: &std::path::Path) -> std::path::PathBuf {
    let pkg = root.join("site/pkg");
    std::fs::create_dir_all(pkg.join("snippets/glue-0123")).expect("pkg dir");
    for (hash, ext, body) in [
        (JS_HASH, "js", "export default function init() {}\n"),
        (WASM_HASH, "wasm", "\0asm wasm bytes"),
        (CSS_HASH, "css", "body { margin: 0 }\n"),
    ] {
        let name = pkg.join(format!("cryptopulse.{hash}.{ext}"));
        std::fs::write(&name, body).expect("file");
        // Stand-ins for the compressed variants: the server must send them as they are.
        std::fs::write(format!("{}.br", name.display()), format!("br:{ext}")).expect("br");
        std::fs::write(format!("{}.gz", name.display()), format!("gz:{ext}")).expect("gz");
    }
    std::fs::write(pkg.join("snippets/glue-0123/inline0.js"), "export {}\n").expect("snippet");
    let hash_file = root.join("hash.txt");
    std::fs::write(
        &hash_file,
        format!("js: {JS_HASH}\nwasm: {WASM_HASH}\ncss: {CSS_HASH}\n"),
    )
    .expect("hash file");
    hash_file
}

#[tokio::test]
async fn pages_name_the_hashed_bundle_and_pkg_serves_it_precompressed_and_immutable() {
    let db = TestDatabase::new().await;
    let settings = test_settings(&db);
    let hash_file = write_site(db.dir.path());
    let options = LeptosOptions::builder()
        .output_name("cryptopulse")
        .site_root(db.dir.path().join("site").display().to_string())
        .hash_files(true)
        // Leptos joins this to the binary's directory: an absolute path replaces it.
        .hash_file(hash_file.display().to_string().into())
        .build();
    assert!(
        server::assets::site_problems(&options).is_empty(),
        "{:?}",
        server::assets::site_problems(&options)
    );
    let kms = server::startup::kms_from_settings(&settings)
        .await
        .expect("local KMS");
    let app = Application::build_with_kms(&settings, options, Arc::new(TestClock::default()), kms)
        .await
        .expect("app builds");
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();

    let html = client
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    let files = [
        (
            format!("/pkg/cryptopulse.{JS_HASH}.js"),
            "text/javascript",
            "js",
        ),
        (
            format!("/pkg/cryptopulse.{WASM_HASH}.wasm"),
            "application/wasm",
            "wasm",
        ),
        (
            format!("/pkg/cryptopulse.{CSS_HASH}.css"),
            "text/css",
            "css",
        ),
    ];
    for (path, _, _) in &files {
        assert!(html.contains(path.as_str()), "the page must name {path}");
    }
    assert!(
        !html.contains("/pkg/cryptopulse.css") && !html.contains("/pkg/cryptopulse.wasm"),
        "no unhashed names once hash-files is on"
    );

    for (path, content_type, ext) in &files {
        let plain = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("file");
        assert_eq!(plain.status(), 200, "{path}");
        let headers = plain.headers().clone();
        assert!(
            headers[CONTENT_TYPE]
                .to_str()
                .expect("type")
                .starts_with(content_type),
            "{path}: {:?}",
            headers[CONTENT_TYPE]
        );
        assert_eq!(
            headers[CACHE_CONTROL], "public, max-age=31536000, immutable",
            "{path}"
        );
        assert_eq!(headers[VARY], "accept-encoding", "{path}");
        assert!(!headers.contains_key(CONTENT_ENCODING), "{path}");
        // Static files pass the security headers but never touch the session.
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(headers.contains_key("content-security-policy"));
        assert!(!headers.contains_key("set-cookie"), "{path}");
        assert!(!plain.text().await.expect("body").starts_with("br:"));

        for (accept, encoding) in [("br, gzip", "br"), ("gzip", "gzip")] {
            let compressed = client
                .get(format!("{base}{path}"))
                .header(ACCEPT_ENCODING, accept)
                .send()
                .await
                .expect("file");
            assert_eq!(compressed.status(), 200);
            assert_eq!(compressed.headers()[CONTENT_ENCODING], encoding, "{path}");
            assert!(
                compressed.headers()[CONTENT_TYPE]
                    .to_str()
                    .expect("type")
                    .starts_with(content_type),
                "the type of the original, not of the archive"
            );
            let prefix = if encoding == "br" { "br" } else { "gz" };
            assert_eq!(
                compressed.text().await.expect("body"),
                format!("{prefix}:{ext}")
            );
        }
    }

    let snippet = client
        .get(format!("{base}/pkg/snippets/glue-0123/inline0.js"))
        .send()
        .await
        .expect("snippet");
    assert_eq!(snippet.status(), 200);
    assert_eq!(
        snippet.headers()[CACHE_CONTROL],
        "no-cache",
        "a name without a content hash may change with the next build"
    );
    let missing = client
        .get(format!("{base}/pkg/cryptopulse.AAAAAAAAAAAAAAAAAAAAAA.js"))
        .send()
        .await
        .expect("missing");
    assert_eq!(missing.status(), 404);
    assert_ne!(
        missing
            .headers()
            .get(CACHE_CONTROL)
            .and_then(|v| v.to_str().ok()),
        Some("public, max-age=31536000, immutable"),
        "a 404 must not be cached for a year"
    );

    let _ = stop.send(());
    server.await.expect("server task").expect("server");
}

#[tokio::test]
async fn a_site_that_does_not_match_the_hash_list_is_reported_at_startup() {
    let dir = tempfile::tempdir().expect("dir");
    let options = |root: &std::path::Path| {
        LeptosOptions::builder()
            .output_name("cryptopulse")
            .site_root(root.join("site").display().to_string())
            .hash_files(true)
            .hash_file(root.join("hash.txt").display().to_string().into())
            .build()
    };
    let problems = server::assets::site_problems(&options(dir.path()));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("does not exist"), "{problems:?}");

    let hash_file = write_site(dir.path());
    assert!(server::assets::site_problems(&options(dir.path())).is_empty());

    // A later build of another profile replaced the site: the listed wasm is gone.
    std::fs::remove_file(
        dir.path()
            .join(format!("site/pkg/cryptopulse.{WASM_HASH}.wasm")),
    )
    .expect("remove");
    let problems = server::assets::site_problems(&options(dir.path()));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains(WASM_HASH), "{problems:?}");

    std::fs::remove_file(hash_file).expect("remove");
    let problems = server::assets::site_problems(&options(dir.path()));
    assert!(problems[0].contains("is missing"), "{problems:?}");
}
