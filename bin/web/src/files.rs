//! `GET /files/<key>?expires=..&signature=..`: stored files behind links the
//! server signed itself (single-node mode). Tampered, expired, malformed or
//! foreign links get 403. Range requests follow RFC 9110 §14, so a browser
//! can seek in a video: one range is served (206), its end clamped to the
//! file; a range that starts at or past the end is 416 with the file's
//! size; anything the RFC lets a server ignore (other units, several
//! ranges, an invalid or stale one) gets the whole file.

use std::io::SeekFrom;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use anb_domain::ObjectKey;
use anb_files::LocalFileStorage;
use poem::http::{HeaderMap, HeaderValue, StatusCode, header};
use poem::web::Path;
use poem::{Body, IntoResponse, Request, Response, handler};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::problem::Problem;

fn forbidden() -> Response {
    Problem::new(StatusCode::FORBIDDEN, "El enlace no es válido o ha expirado.").into_response()
}

/// What a `Range` header asks of a file of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// The whole file (no range, or one the server may ignore).
    Full,
    /// Bytes `start..=end` (206).
    Partial { start: u64, end: u64 },
    /// Nothing of the file (416).
    Unsatisfiable,
}

/// Reads a `Range` header against a file of `len` bytes (RFC 9110 §14.1.2).
pub fn range(value: Option<&str>, len: u64) -> RangeAnswer {
    let Some(spec) = value.and_then(|v| v.trim().split_once('=')).filter(|(unit, _)| unit.trim().eq_ignore_ascii_case("bytes")) else {
        return RangeAnswer::Full;
    };
    let spec = spec.1.trim();
    if spec.contains(',') {
        return RangeAnswer::Full; // several ranges: served whole, as the RFC allows
    }
    let Some((first, last)) = spec.split_once('-') else { return RangeAnswer::Full };
    let (first, last) = (first.trim(), last.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    // A number too large for u64 is still a number: past any file's end.
    let number = |s: &str| s.parse::<u64>().unwrap_or(u64::MAX);
    match (digits(first), digits(last), first.is_empty()) {
        // bytes=-N: the last N bytes.
        (false, true, true) => match number(last) {
            0 => RangeAnswer::Unsatisfiable,
            _ if len == 0 => RangeAnswer::Unsatisfiable,
            n => RangeAnswer::Partial { start: len.saturating_sub(n), end: len - 1 },
        },
        // bytes=A- or bytes=A-B.
        (true, last_is_number, _) if last_is_number || last.is_empty() => {
            let start = number(first);
            let end = if last.is_empty() { u64::MAX } else { number(last) };
            if end < start {
                RangeAnswer::Full // invalid: ignored
            } else if start >= len {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Partial { start, end: end.min(len - 1) }
            }
        }
        _ => RangeAnswer::Full,
    }
}

/// Query values of a link, as sent (parsed here, so that a malformed one is
/// a bad link, 403, not a parser's message).
fn link_params(query: &str) -> (Option<&str>, Option<&str>) {
    let mut expires = None;
    let mut signature = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("expires", v)) => expires = Some(v),
            Some(("signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    (expires, signature)
}

/// Serves one stored file if its link is valid now.
#[handler]
pub async fn serve_file(request: &Request, Path(key): Path<String>) -> Response {
    // With S3 storage links point at S3 and nothing is served here.
    let Some(storage) = request.data::<Arc<LocalFileStorage>>() else {
        return Problem::new(StatusCode::NOT_FOUND, "Recurso no encontrado.").into_response();
    };
    let (expires, signature) = link_params(request.uri().query().unwrap_or_default());
    let (Ok(key), Some(Ok(expires)), Some(signature)) = (ObjectKey::parse(&key), expires.map(str::parse::<i64>), signature) else {
        return forbidden();
    };
    let now = chrono::Utc::now().timestamp();
    if storage.signer().verify(&key, expires, signature, now).is_err() {
        return forbidden();
    }
    match serve(request.headers(), &storage.path_of(&key), expires - now).await {
        Ok(response) => response,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Problem::new(StatusCode::NOT_FOUND, "El archivo no existe.").into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "serving a stored file failed");
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "Error interno del servidor.").into_response()
        }
    }
}

async fn serve(headers: &HeaderMap, path: &std::path::Path, valid_for: i64) -> std::io::Result<Response> {
    let mut file = tokio::fs::File::open(path).await?;
    let metadata = file.metadata().await?;
    if !metadata.is_file() {
        return Err(std::io::ErrorKind::NotFound.into());
    }
    let len = metadata.len();
    let modified = metadata.modified().ok();
    let stamp = modified.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
    let etag = format!("\"{len:x}-{stamp:x}\"");
    let header_text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());

    let mut builder = Response::builder()
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, etag.as_str())
        .header(header::CONTENT_TYPE, if path.extension().is_some_and(|e| e == "mp4") { "video/mp4" } else { "application/octet-stream" })
        // Cached by the browser for as long as the link is valid, by nobody else.
        .header(header::CACHE_CONTROL, format!("private, max-age={}", valid_for.max(0)));
    if let Some(modified) = modified {
        builder = builder.header(header::LAST_MODIFIED, httpdate(modified));
    }
    if header_text(header::IF_NONE_MATCH).is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*")) {
        return Ok(builder.status(StatusCode::NOT_MODIFIED).finish());
    }
    // If-Range: the range holds only for this very version of the file.
    let if_range_holds = header_text(header::IF_RANGE).is_none_or(|v| v.trim() == etag);
    let asked = if if_range_holds { range(header_text(header::RANGE), len) } else { RangeAnswer::Full };
    let (status, start, count) = match asked {
        RangeAnswer::Full => (StatusCode::OK, 0, len),
        RangeAnswer::Partial { start, end } => {
            builder = builder.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}"));
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeAnswer::Unsatisfiable => {
            let problem = Problem::new(StatusCode::RANGE_NOT_SATISFIABLE, format!("El rango pedido está fuera del archivo ({len} bytes)."));
            let mut response = problem.into_response();
            response.headers_mut().insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes */{len}")).expect("ASCII"));
            return Ok(response);
        }
    };
    file.seek(SeekFrom::Start(start)).await?;
    Ok(builder.status(status).header(header::CONTENT_LENGTH, count).body(Body::from_async_read(file.take(count))))
}

/// An HTTP date (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
fn httpdate(time: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[cfg(test)]
mod tests {
    use super::RangeAnswer::{Full, Partial, Unsatisfiable};
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        let cases: [(&str, RangeAnswer); 17] = [
            ("bytes=0-0", Partial { start: 0, end: 0 }),
            ("bytes=2-5", Partial { start: 2, end: 5 }),
            ("bytes=2-", Partial { start: 2, end: 9 }),
            ("bytes=2-100", Partial { start: 2, end: 9 }), // an end past the file is clamped
            ("bytes=0-18446744073709551615", Partial { start: 0, end: 9 }),
            ("bytes=0-99999999999999999999999", Partial { start: 0, end: 9 }),
            ("bytes=-3", Partial { start: 7, end: 9 }),
            ("bytes=-30", Partial { start: 0, end: 9 }),
            ("BYTES = 1-1", Partial { start: 1, end: 1 }),
            ("bytes=10-", Unsatisfiable), // a start at the size is past the last byte
            ("bytes=10-12", Unsatisfiable),
            ("bytes=99999999999999999999-", Unsatisfiable),
            ("bytes=-0", Unsatisfiable),
            ("bytes=5-2", Full), // invalid: ignored
            ("bytes=1-2,4-5", Full),
            ("items=0-1", Full),
            ("bytes=a-b", Full),
        ];
        for (header, want) in cases {
            assert_eq!(range(Some(header), 10), want, "{header}");
        }
        assert_eq!(range(None, 10), Full);
        assert_eq!(range(Some("bytes=0-"), 0), Unsatisfiable, "an empty file has no byte to give");
        assert_eq!(range(Some("bytes=-5"), 0), Unsatisfiable);
    }

    #[test]
    fn link_parameters_are_read_as_sent() {
        assert_eq!(link_params("expires=12&signature=ab"), (Some("12"), Some("ab")));
        assert_eq!(link_params("signature=ab&x=1"), (None, Some("ab")));
        assert_eq!(link_params(""), (None, None));
    }
}
