//! `GET /files/<key>?expires=..&signature=..`: stored files behind links the
//! server signed itself (single-node mode). Range requests work, so a browser
//! can seek in a video. Tampered, expired or foreign links get 403.

use std::sync::Arc;

use anb_domain::ObjectKey;
use anb_files::LocalFileStorage;
use poem::error::{ResponseError, StaticFileError};
use poem::http::StatusCode;
use poem::web::{Path, Query, StaticFileRequest};
use poem::{FromRequest, IntoResponse, Request, Response, handler};
use serde::Deserialize;

use crate::problem::Problem;

#[derive(Debug, Deserialize)]
struct LinkQuery {
    expires: Option<i64>,
    signature: Option<String>,
}

fn forbidden() -> Response {
    Problem::new(StatusCode::FORBIDDEN, "El enlace no es válido o ha expirado.").into_response()
}

/// Serves one stored file if its link is valid now.
#[handler]
pub async fn serve_file(request: &Request, Path(key): Path<String>, Query(link): Query<LinkQuery>) -> Response {
    // With S3 storage links point at S3 and nothing is served here.
    let Some(storage) = request.data::<Arc<LocalFileStorage>>() else {
        return Problem::new(StatusCode::NOT_FOUND, "Recurso no encontrado.").into_response();
    };
    let (Ok(key), Some(expires), Some(signature)) = (ObjectKey::parse(&key), link.expires, link.signature) else {
        return forbidden();
    };
    if storage.signer().verify(&key, expires, &signature, chrono::Utc::now().timestamp()).is_err() {
        return forbidden();
    }
    let file_request = match StaticFileRequest::from_request_without_body(request).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match file_request.create_response(storage.path_of(&key), false, false) {
        Ok(response) => response.into_response(),
        Err(StaticFileError::NotFound) => Problem::new(StatusCode::NOT_FOUND, "El archivo no existe.").into_response(),
        Err(e) => {
            let status = e.status();
            tracing::warn!(error = %e, "serving a stored file failed");
            Problem::new(status, status.canonical_reason().unwrap_or("Error")).into_response()
        }
    }
}
