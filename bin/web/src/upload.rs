//! The upload form (`multipart/form-data` with `video_file` and `title`),
//! parsed as a stream: the file goes straight to a temporary file in the data
//! directory, the size limit is enforced while reading (413 as soon as it is
//! passed), a stalled client times out (408), and every way out of here
//! removes the temporary file.

use std::path::PathBuf;
use std::time::Duration;

use anb_domain::UploadRules;
use anb_domain::video::InvalidTitle;
use futures::TryStreamExt;
use poem::http::StatusCode;
use poem::{Request, RequestBody};
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use tempfile::TempPath;
use tokio::io::AsyncWriteExt;

use crate::problem::Problem;

/// Where and how uploads are received; attached to the route as data.
#[derive(Debug, Clone)]
pub struct UploadLimits {
    /// Directory for uploads in progress.
    pub dir: PathBuf,
    /// The upload rules (the size limit is enforced while receiving).
    pub rules: UploadRules,
    /// Longest wait for the next piece of the body.
    pub idle_timeout: Duration,
}

/// Longest accepted `title` field, in bytes (the title rule itself is 200
/// characters; this only stops a client from streaming megabytes into it).
const MAX_TITLE_BYTES: usize = 4096;

/// A file received to disk, removed when dropped.
#[derive(Debug)]
pub struct ReceivedFile {
    pub path: TempPath,
    pub size: u64,
}

/// The parsed upload form.
#[derive(Debug)]
pub struct UploadForm {
    pub title: Option<String>,
    pub file: Option<ReceivedFile>,
}

fn problem(status: StatusCode, detail: &str) -> poem::Error {
    Problem::new(status, detail).into_error()
}

fn from_multer(error: &multer::Error) -> poem::Error {
    tracing::debug!(%error, "malformed multipart body");
    problem(StatusCode::BAD_REQUEST, "El cuerpo multipart/form-data no es válido.")
}

async fn next_chunk(field: &mut multer::Field<'_>, limits: &UploadLimits) -> poem::Result<Option<bytes::Bytes>> {
    match tokio::time::timeout(limits.idle_timeout, field.chunk()).await {
        Ok(Ok(chunk)) => Ok(chunk),
        Ok(Err(e)) => Err(from_multer(&e)),
        Err(_) => Err(problem(StatusCode::REQUEST_TIMEOUT, "El cliente dejó de enviar datos.")),
    }
}

async fn receive_file(field: &mut multer::Field<'_>, limits: &UploadLimits) -> poem::Result<ReceivedFile> {
    let internal = |e: std::io::Error| Problem::from(anb_domain::BackendError::io("receiving upload", &e)).into_error();
    let temp = tempfile::Builder::new().prefix("upload-").suffix(".part").tempfile_in(&limits.dir).map_err(internal)?;
    let (file, path) = temp.into_parts();
    let mut file = tokio::io::BufWriter::with_capacity(256 * 1024, tokio::fs::File::from_std(file));
    let mut size: u64 = 0;
    while let Some(chunk) = next_chunk(field, limits).await? {
        size += chunk.len() as u64;
        if size > limits.rules.max_bytes {
            return Err(problem(StatusCode::PAYLOAD_TOO_LARGE, &limits.rules.too_large().to_string()));
        }
        file.write_all(&chunk).await.map_err(internal)?;
    }
    file.flush().await.map_err(internal)?;
    file.into_inner().sync_data().await.map_err(internal)?;
    Ok(ReceivedFile { path, size })
}

async fn receive_title(field: &mut multer::Field<'_>, limits: &UploadLimits) -> poem::Result<String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = next_chunk(field, limits).await? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_TITLE_BYTES {
            return Err(problem(StatusCode::BAD_REQUEST, &InvalidTitle::TooLong.to_string()));
        }
    }
    String::from_utf8(bytes).map_err(|_| problem(StatusCode::BAD_REQUEST, "El título debe ser texto UTF-8."))
}

impl UploadForm {
    async fn parse(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let limits =
            request.data::<UploadLimits>().ok_or_else(|| problem(StatusCode::INTERNAL_SERVER_ERROR, "Error interno del servidor."))?;
        let content_type = request.content_type().unwrap_or_default();
        let boundary = multer::parse_boundary(content_type)
            .map_err(|_| problem(StatusCode::BAD_REQUEST, "Se esperaba multipart/form-data con los campos video_file y title."))?;
        let stream = body.take()?.into_bytes_stream().map_err(std::io::Error::other);
        let mut multipart = multer::Multipart::new(stream, boundary);
        let mut form = UploadForm { title: None, file: None };
        loop {
            let field = match tokio::time::timeout(limits.idle_timeout, multipart.next_field()).await {
                Ok(Ok(Some(field))) => field,
                Ok(Ok(None)) => break,
                Ok(Err(e)) => return Err(from_multer(&e)),
                Err(_) => return Err(problem(StatusCode::REQUEST_TIMEOUT, "El cliente dejó de enviar datos.")),
            };
            let mut field = field;
            match field.name() {
                Some("video_file") if form.file.is_some() => {
                    return Err(problem(StatusCode::BAD_REQUEST, "Envía un solo archivo en video_file."));
                }
                Some("video_file") => form.file = Some(receive_file(&mut field, limits).await?),
                Some("title") if form.title.is_some() => {
                    return Err(problem(StatusCode::BAD_REQUEST, "Envía un solo campo title."));
                }
                Some("title") => form.title = Some(receive_title(&mut field, limits).await?),
                _ => while next_chunk(&mut field, limits).await?.is_some() {},
            }
        }
        Ok(form)
    }
}

impl<'a> ApiExtractor<'a> for UploadForm {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn request_meta() -> Option<MetaRequest> {
        let file = MetaSchema { format: Some("binary"), description: Some("The MP4 video, at most 100 MB."), ..MetaSchema::new("string") };
        let title = MetaSchema { min_length: Some(1), max_length: Some(200), ..MetaSchema::new("string") };
        let schema = MetaSchema {
            required: vec!["video_file", "title"],
            properties: vec![("video_file", MetaSchemaRef::Inline(Box::new(file))), ("title", MetaSchemaRef::Inline(Box::new(title)))],
            ..MetaSchema::new("object")
        };
        Some(MetaRequest {
            description: Some("The video and its title."),
            content: vec![MetaMediaType { content_type: "multipart/form-data", schema: MetaSchemaRef::Inline(Box::new(schema)) }],
            required: true,
        })
    }

    fn register(_registry: &mut Registry) {}

    async fn from_request(request: &'a Request, body: &mut RequestBody, _: ExtractParamOptions<Self::ParamType>) -> poem::Result<Self> {
        Self::parse(request, body).await
    }
}
