//! The web page for players and fans (`bin/web/static/`), built into the
//! binary so `anb-web` needs nothing beside it: `GET /` is the page, and its
//! script, style sheet and logo sit next to it. It uses only the public API.
//!
//! Every answer carries a strong `ETag` and `Cache-Control: no-cache`
//! (browsers keep the files and revalidate them: the names carry no
//! version), `X-Content-Type-Options: nosniff`, and the page a Content
//! Security Policy that lets it load nothing but itself, and videos.

use std::hash::{Hash, Hasher};
use std::sync::LazyLock;

use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Request, Response, handler};

/// One file of the page.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: [Asset; 4] = [
    Asset { path: "/", content_type: "text/html; charset=utf-8", bytes: include_bytes!("../static/index.html") },
    Asset { path: "/app.js", content_type: "text/javascript; charset=utf-8", bytes: include_bytes!("../static/app.js") },
    Asset { path: "/app.css", content_type: "text/css; charset=utf-8", bytes: include_bytes!("../static/app.css") },
    Asset { path: "/logo.svg", content_type: "image/svg+xml", bytes: include_bytes!("../static/logo.svg") },
];

/// What the page may load: itself, inline SVG data, videos from here, from
/// the object store's signed links, or from a file the player picked (a
/// `blob:` URL, to read its duration and size before sending), and the API.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     media-src 'self' blob: https: http:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

/// The paths the page answers, for the route table.
pub fn paths() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.path)
}

/// A strong entity tag per file, from its bytes.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            asset.bytes.hash(&mut hasher);
            format!("\"{:016x}-{:x}\"", hasher.finish(), asset.bytes.len())
        })
        .collect()
});

/// Serves the file at the request's path (GET and HEAD).
#[handler]
pub fn serve_asset(request: &Request) -> Response {
    let Some((index, asset)) = ASSETS.iter().enumerate().find(|(_, a)| a.path == request.uri().path()) else {
        return StatusCode::NOT_FOUND.into();
    };
    let etag = &ETAGS[index];
    let mut builder = Response::builder()
        .header(header::ETAG, etag.as_str())
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::CONTENT_TYPE, asset.content_type)
        .header("x-content-type-options", "nosniff")
        .header(header::REFERRER_POLICY, "same-origin");
    if asset.path == "/" {
        builder = builder.header(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    }
    let revalidated = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').map(|t| t.trim().trim_start_matches("W/")).any(|t| t == etag || t == "*"));
    if revalidated {
        return builder.status(StatusCode::NOT_MODIFIED).finish();
    }
    let builder = builder.header(header::CONTENT_LENGTH, asset.bytes.len());
    if request.method() == Method::HEAD { builder.finish() } else { builder.body(asset.bytes) }
}
