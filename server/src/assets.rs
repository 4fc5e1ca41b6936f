//! The site's static files: where they are (Leptos options baked in from Cargo.toml) and how
//! `/pkg` (the hydration bundle and stylesheet) is served: precompressed variants, year-long
//! immutable caching for content-hashed names.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::extract::Request;
use axum::middleware::{Next, from_fn};
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use leptos::config::LeptosOptions;
use tower_http::services::ServeDir;

/// The workspace manifest, whose `[[workspace.metadata.leptos]]` section is what cargo-leptos
/// passes to the server as `LEPTOS_*` variables. Baked in, so the built binary started on its
/// own finds its site exactly as `cargo leptos serve` would.
const WORKSPACE_MANIFEST: &str = include_str!("../../Cargo.toml");

/// Content-hashed files never change under their name.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Anything else under /pkg may change with the next build: the browser revalidates each use.
const REVALIDATE: &str = "no-cache";

#[derive(Debug, thiserror::Error)]
#[error("site options (Cargo.toml [[workspace.metadata.leptos]] and LEPTOS_* variables): {0}")]
pub struct SiteOptionsError(String);

/// The Leptos options: the workspace metadata, with any `LEPTOS_*` variable overriding its key
/// (cargo-leptos sets them all; a deployment may set `LEPTOS_SITE_ROOT`, for example), and what
/// is wrong with the site they point at, for the operator.
pub fn leptos_options() -> Result<(LeptosOptions, Vec<String>), SiteOptionsError> {
    let mut options = leptos::config::get_config_from_str(WORKSPACE_MANIFEST)
        .map_err(|e| SiteOptionsError(e.to_string()))?;
    let problems = site_problems(&options);
    if options.hash_files && !hash_file_path(&options).is_file() {
        // Leptos panics rendering any page when told of a hash list that is not there (a
        // binary built by plain `cargo build`): serve the unhashed names instead.
        options.hash_files = false;
    }
    Ok((options, problems))
}

/// What is wrong with the site these options point at, if anything: a missing site, or a
/// hash list naming files that are not there (the site was rebuilt by another profile's build).
/// Pages still render without it, but they do not hydrate, so the operator is told at startup.
pub fn site_problems(options: &LeptosOptions) -> Vec<String> {
    let pkg = pkg_dir(options);
    if !pkg.is_dir() {
        return vec![format!(
            "{} does not exist: pages will not hydrate. Build the site \
             (scripts/build-site.sh) or point LEPTOS_SITE_ROOT at it",
            pkg.display()
        )];
    }
    if !options.hash_files {
        return Vec::new();
    }
    let hash_file = hash_file_path(options);
    let Ok(hashes) = std::fs::read_to_string(&hash_file) else {
        return vec![format!(
            "{} is missing: pages will name unhashed files. Build with scripts/build-site.sh \
             (or cargo-leptos), or copy the hash.txt it wrote next to this binary",
            hash_file.display()
        )];
    };
    hashed_file_names(&options.output_name, &hashes)
        .into_iter()
        .filter(|name| !pkg.join(name).is_file())
        .map(|name| {
            format!(
                "{} names {name}, which is not in {}: the site was rebuilt by another build",
                hash_file.display(),
                pkg.display()
            )
        })
        .collect()
}

/// `<output>.<hash>.<ext>` for each `ext: hash` line cargo-leptos wrote (js, wasm, css).
fn hashed_file_names(output_name: &str, hashes: &str) -> Vec<String> {
    hashes
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(ext, _)| matches!(ext.trim(), "js" | "wasm" | "css"))
        .map(|(ext, hash)| format!("{output_name}.{}.{}", hash.trim(), ext.trim()))
        .collect()
}

/// Where Leptos looks for the hash list: beside the running binary.
fn hash_file_path(options: &LeptosOptions) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_default()
        .join(options.hash_file.as_ref())
}

fn pkg_dir(options: &LeptosOptions) -> PathBuf {
    Path::new(options.site_root.as_ref()).join(options.site_pkg_dir.as_ref())
}

/// `/pkg/*` from the site root. A `.br` or `.gz` file beside the original (cargo-leptos
/// `--precompress` writes them in release builds) is sent to browsers that accept it.
/// Outside the session layer: a static file never loads or saves a session.
pub fn router(options: &LeptosOptions) -> Router {
    let route = options.site_pkg_dir_route_base();
    let files = ServeDir::new(pkg_dir(options))
        .precompressed_br()
        .precompressed_gzip();
    Router::new()
        .nest_service(route.trim_end_matches('/'), files)
        .layer(from_fn(cache_headers))
}

async fn cache_headers(request: Request, next: Next) -> Response {
    let cache = cache_control(request.uri().path());
    let mut response = next.run(request).await;
    if matches!(
        response.status(),
        StatusCode::OK | StatusCode::NOT_MODIFIED | StatusCode::PARTIAL_CONTENT
    ) {
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        // The body depends on Accept-Encoding (precompressed variants).
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}

fn cache_control(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or_default();
    if is_content_hashed(name) {
        IMMUTABLE
    } else {
        REVALIDATE
    }
}

/// `name.<hash>.ext` where the hash is cargo-leptos's: 22 base64url characters (an MD5).
fn is_content_hashed(file_name: &str) -> bool {
    let parts: Vec<&str> = file_name.split('.').collect();
    parts.len() >= 3
        && parts[1..parts.len() - 1].iter().any(|part| {
            part.len() == 22
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_content_hashed_names_are_immutable() {
        assert_eq!(
            cache_control("/pkg/cryptopulse.Qb3Ub5Iq-dTwYx_kPlZC0A.wasm"),
            IMMUTABLE
        );
        assert_eq!(
            cache_control("/pkg/cryptopulse.Qb3Ub5Iq-dTwYx_kPlZC0A.js"),
            IMMUTABLE
        );
        for path in [
            "/pkg/cryptopulse.wasm",
            "/pkg/cryptopulse.css",
            "/pkg/snippets/webauthn-1a2b3c/inline0.js",
            // One character short of a hash, or not base64url.
            "/pkg/cryptopulse.Qb3Ub5Iq-dTwYx_kPlZC0.wasm",
            "/pkg/cryptopulse.Qb3Ub5Iq+dTwYx_kPlZC0A.wasm",
            "/pkg/Qb3Ub5Iq-dTwYx_kPlZC0A",
        ] {
            assert_eq!(cache_control(path), REVALIDATE, "{path}");
        }
    }

    #[test]
    fn the_baked_options_are_the_workspace_metadata_unless_a_variable_says_otherwise() {
        let (options, _) = leptos_options().expect("options from Cargo.toml");
        let expected = |key: &str, metadata: &str| std::env::var(key).unwrap_or(metadata.into());
        assert_eq!(
            options.output_name.as_ref(),
            expected("LEPTOS_OUTPUT_NAME", "cryptopulse")
        );
        assert_eq!(
            options.site_root.as_ref(),
            expected("LEPTOS_SITE_ROOT", "target/site")
        );
        assert_eq!(
            options.site_pkg_dir.as_ref(),
            expected("LEPTOS_SITE_PKG_DIR", "pkg")
        );
        // The metadata asks for hashed names, but no hash list sits beside the test binary.
        assert!(!options.hash_files);
        assert_eq!(
            options.site_addr.to_string(),
            expected("LEPTOS_SITE_ADDR", "127.0.0.1:3000")
        );
    }

    #[test]
    fn the_hash_list_names_the_js_wasm_and_css() {
        let names = hashed_file_names(
            "cryptopulse",
            "js: AAAAAAAAAAAAAAAAAAAAAA\nwasm: BBBBBBBBBBBBBBBBBBBBBB\ncss: CCCCCCCCCCCCCCCCCCCCCC\nmanifest: x\n",
        );
        assert_eq!(
            names,
            [
                "cryptopulse.AAAAAAAAAAAAAAAAAAAAAA.js",
                "cryptopulse.BBBBBBBBBBBBBBBBBBBBBB.wasm",
                "cryptopulse.CCCCCCCCCCCCCCCCCCCCCC.css"
            ]
        );
    }
}
