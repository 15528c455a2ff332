//! The upload form (`multipart/form-data` with `video_file` and `title`),
//! parsed as a stream: the file goes straight to a temporary file in the data
//! directory, and every part of the request is bounded while it is read, so
//! no request makes the server hold more than a few hundred kilobytes:
//! - the whole body: the file limit plus [`FORM_OVERHEAD`] (413, from the
//!   declared length before reading, else as soon as it is passed);
//! - the file: the upload rules' limit (413 as soon as it is passed);
//! - the bytes before the first part and each part's headers:
//!   [`HEADER_BUDGET`] (400; the multipart parser would buffer them whole);
//! - every other field: [`MAX_FIELD_BYTES`] (400 as soon as it is passed);
//! - time: a stall longer than the idle timeout, or, after the first
//!   seconds ([`RATE_GRACE`]), fewer bytes over the last [`RATE_WINDOW`]
//!   than the minimum rate asks, is 408: the whole body counts, every field
//!   and boundary, and a burst early on buys no time later;
//! - the account: at most `per_account` uploads at once (429 past it,
//!   before the body is read).
//!
//! Every way out of here removes the temporary file.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anb_domain::{UploadRules, UserId};
use futures::Stream;
use poem::http::StatusCode;
use poem::{Request, RequestBody};
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use tempfile::TempPath;
use tokio::io::AsyncWriteExt;

use crate::problem::{ApiError, Problem};
use crate::slots::{Slot, Slots};

/// Where and how uploads are received; attached to the route as data.
#[derive(Debug, Clone)]
pub struct UploadLimits {
    /// Directory for uploads in progress.
    pub dir: PathBuf,
    /// The upload rules (the size limit is enforced while receiving).
    pub rules: UploadRules,
    /// Longest wait for the next piece of the body.
    pub idle_timeout: Duration,
    /// Slowest rate accepted after `rate_grace`, bytes per second, over
    /// the last `rate_window`.
    pub min_rate: u64,
    /// Time an upload has before its rate is checked ([`RATE_GRACE`] in
    /// service).
    pub rate_grace: Duration,
    /// The span the rate is measured over ([`RATE_WINDOW`] in service).
    pub rate_window: Duration,
    /// Uploads in progress, per account.
    pub per_account: Slots<UserId>,
}

/// Who the bearer token of this request names, once the security checker
/// has verified it (put on the upload's request by the app, so the form
/// can take the account's upload place before reading the body).
#[derive(Debug, Clone, Default)]
pub struct Authenticated(pub Arc<std::sync::OnceLock<UserId>>);

/// Longest accepted field other than the file, in bytes (the title rule
/// itself is 200 characters; this only stops a client from streaming
/// megabytes into a field).
pub const MAX_FIELD_BYTES: usize = 4096;
/// Bytes a form may have beyond its file: boundaries, part headers, fields.
pub const FORM_OVERHEAD: u64 = 1024 * 1024;
/// Bytes the parser may read while it looks for the next part's start and
/// headers (the preamble before the first part, each part's header block).
pub const HEADER_BUDGET: u64 = 256 * 1024;
/// Time an upload has before its rate is checked, in service.
pub const RATE_GRACE: Duration = Duration::from_secs(10);
/// The span an upload's rate is measured over, in service.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

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
    /// The account's upload place, held until the form drops.
    pub slot: Option<Slot<UserId>>,
}

fn problem(status: StatusCode, detail: &str) -> poem::Error {
    Problem::new(status, detail).into_error()
}

fn too_large() -> poem::Error {
    problem(StatusCode::PAYLOAD_TOO_LARGE, "El cuerpo de la solicitud supera el tamaño permitido.")
}

fn stalled() -> poem::Error {
    problem(StatusCode::REQUEST_TIMEOUT, "El cliente dejó de enviar datos.")
}

fn from_multer(error: &multer::Error) -> poem::Error {
    match error {
        multer::Error::StreamSizeExceeded { .. } => too_large(),
        multer::Error::FieldSizeExceeded { field_name, .. } => {
            let name = match field_name.as_deref() {
                Some("title") => "El título (title)".to_owned(),
                Some(other) => format!("El campo «{other}»"),
                None => "Un campo sin nombre".to_owned(),
            };
            problem(StatusCode::BAD_REQUEST, &format!("{name} supera el tamaño permitido ({MAX_FIELD_BYTES} bytes)."))
        }
        multer::Error::StreamReadFailed(e) if e.is::<HeadersTooLarge>() => {
            problem(StatusCode::BAD_REQUEST, "Las cabeceras del formulario multipart son demasiado grandes.")
        }
        multer::Error::StreamReadFailed(e) if e.is::<TooSlow>() => {
            let TooSlow { rate, min } = e.downcast_ref::<TooSlow>().copied().unwrap_or(TooSlow { rate: 0.0, min: 0.0 });
            problem(StatusCode::REQUEST_TIMEOUT, &format!("El envío es demasiado lento ({rate:.1} KB/s; el mínimo es {min:.0} KB/s)."))
        }
        _ => {
            tracing::debug!(%error, "malformed multipart body");
            problem(StatusCode::BAD_REQUEST, "El cuerpo multipart/form-data no es válido.")
        }
    }
}

/// The idle limit of one upload's parts.
struct Pace {
    idle_timeout: Duration,
}

impl Pace {
    /// The next piece of `field`, within the idle timeout.
    async fn next_chunk(&self, field: &mut multer::Field<'_>) -> poem::Result<Option<bytes::Bytes>> {
        match tokio::time::timeout(self.idle_timeout, field.chunk()).await {
            Ok(Ok(chunk)) => Ok(chunk),
            Ok(Err(e)) => Err(from_multer(&e)),
            Err(_) => Err(stalled()),
        }
    }
}

/// The error a [`Metered`] body ends with when it comes too slowly (KB/s).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("upload at {rate:.1} KB/s over the window, under the minimum {min:.0} KB/s")]
struct TooSlow {
    rate: f64,
    min: f64,
}

/// The bytes a body brought in each of its last seconds.
#[derive(Debug)]
struct Rate {
    started: Instant,
    min_rate: u64,
    grace: Duration,
    window: Duration,
    /// (second since the start, bytes in it), oldest first, within the window.
    seconds: VecDeque<(u64, u64)>,
}

impl Rate {
    fn new(min_rate: u64, grace: Duration, window: Duration) -> Self {
        Self { started: Instant::now(), min_rate, grace, window: window.max(Duration::from_secs(1)), seconds: VecDeque::new() }
    }

    fn received(&mut self, bytes: u64) {
        let second = self.started.elapsed().as_secs();
        match self.seconds.back_mut() {
            Some((last, sum)) if *last == second => *sum += bytes,
            _ => self.seconds.push_back((second, bytes)),
        }
    }

    /// Past the grace time, whether the last window brought at least the
    /// minimum rate's worth of bytes.
    fn check(&mut self) -> Result<(), TooSlow> {
        let elapsed = self.started.elapsed();
        if elapsed < self.grace {
            return Ok(());
        }
        let window = self.window.as_secs();
        let now = elapsed.as_secs();
        // The buckets of the last `window` whole seconds and of this one: at
        // least `window` seconds of sending, so a steady client at the
        // minimum rate always passes.
        while self.seconds.front().is_some_and(|(second, _)| second + window < now) {
            self.seconds.pop_front();
        }
        let bytes: u64 = self.seconds.iter().map(|(_, sum)| sum).sum();
        let span = self.window.as_secs_f64();
        if bytes as f64 >= self.min_rate as f64 * span {
            return Ok(());
        }
        Err(TooSlow { rate: bytes as f64 / span / 1024.0, min: self.min_rate as f64 / 1024.0 })
    }
}

async fn receive_file(field: &mut multer::Field<'_>, limits: &UploadLimits, pace: &Pace) -> poem::Result<ReceivedFile> {
    let internal = |e: std::io::Error| Problem::from(anb_domain::BackendError::io("receiving upload", &e)).into_error();
    let temp = tempfile::Builder::new().prefix("upload-").suffix(".part").tempfile_in(&limits.dir).map_err(internal)?;
    let (file, path) = temp.into_parts();
    let mut file = tokio::io::BufWriter::with_capacity(256 * 1024, tokio::fs::File::from_std(file));
    let mut size: u64 = 0;
    while let Some(chunk) = pace.next_chunk(field).await? {
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

/// A small field, whole (the per-field limit of the parser bounds it).
async fn receive_text(field: &mut multer::Field<'_>, pace: &Pace) -> poem::Result<String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = pace.next_chunk(field).await? {
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| problem(StatusCode::BAD_REQUEST, "El título debe ser texto UTF-8."))
}

impl UploadForm {
    async fn parse(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let limits =
            request.data::<UploadLimits>().ok_or_else(|| problem(StatusCode::INTERNAL_SERVER_ERROR, "Error interno del servidor."))?;
        let content_type = request.content_type().unwrap_or_default();
        let boundary = multer::parse_boundary(content_type).map_err(|_| {
            problem(
                StatusCode::BAD_REQUEST,
                "Se esperaba un formulario multipart/form-data con el archivo de video (video_file) y el título (title).",
            )
        })?;
        let most = limits.rules.max_bytes.saturating_add(FORM_OVERHEAD);
        let declared = request.header(poem::http::header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > most) {
            return Err(too_large());
        }
        let slot = match request.extensions().get::<Authenticated>().and_then(|who| who.0.get().copied()) {
            Some(user) => Some(limits.per_account.try_take(user).ok_or_else(|| {
                let detail = format!(
                    "Ya tienes {} subidas en curso. Espera a que termine alguna para subir otro video.",
                    limits.per_account.per_key()
                );
                ApiError::too_many_requests(detail, Duration::from_secs(10)).into_poem_error()
            })?),
            None => None,
        };
        let in_headers = Arc::new(AtomicBool::new(false));
        let used = Arc::new(AtomicU64::new(0));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stream = Metered {
            inner: body.take()?.into_bytes_stream(),
            in_headers: in_headers.clone(),
            used: used.clone(),
            yield_next: false,
            rate: Rate::new(limits.min_rate, limits.rate_grace, limits.rate_window),
            tick,
        };
        let constraints = multer::Constraints::new().size_limit(
            multer::SizeLimit::new()
                .whole_stream(most)
                .per_field(MAX_FIELD_BYTES as u64)
                // The file's own limit is checked while it is written, with its own message.
                .for_field("video_file", u64::MAX),
        );
        let mut multipart = multer::Multipart::with_constraints(stream, boundary, constraints);
        let pace = Pace { idle_timeout: limits.idle_timeout };
        let mut form = UploadForm { title: None, file: None, slot };
        loop {
            used.store(0, Ordering::Release);
            in_headers.store(true, Ordering::Release);
            let next = tokio::time::timeout(limits.idle_timeout, multipart.next_field()).await;
            in_headers.store(false, Ordering::Release);
            let mut field = match next {
                Ok(Ok(Some(field))) => field,
                Ok(Ok(None)) => break,
                Ok(Err(e)) => return Err(from_multer(&e)),
                Err(_) => return Err(stalled()),
            };
            match field.name() {
                Some("video_file") if form.file.is_some() => {
                    return Err(problem(StatusCode::BAD_REQUEST, "Envía un solo archivo de video (video_file)."));
                }
                Some("video_file") => form.file = Some(receive_file(&mut field, limits, &pace).await?),
                Some("title") if form.title.is_some() => {
                    return Err(problem(StatusCode::BAD_REQUEST, "Envía un solo título (title)."));
                }
                Some("title") => form.title = Some(receive_text(&mut field, &pace).await?),
                // Other fields are read (within the per-field limit) and ignored.
                _ => while pace.next_chunk(&mut field).await?.is_some() {},
            }
        }
        Ok(form)
    }
}

/// The error a [`HeaderBudget`] stream ends with.
#[derive(Debug, thiserror::Error)]
#[error("multipart preamble or part headers over {HEADER_BUDGET} bytes")]
struct HeadersTooLarge;

/// The request body as the multipart parser reads it: one chunk at a time
/// (the parser would otherwise pull every chunk that is ready into its
/// buffer before looking at any, so a fast client could fill it up to the
/// whole-body limit before a field's limit is checked); while the parser
/// looks for a part's start and headers (`in_headers`), at most
/// [`HEADER_BUDGET`] bytes; and at the minimum rate over the window,
/// looked at with each chunk and every second while none comes.
struct Metered<S> {
    inner: S,
    in_headers: Arc<AtomicBool>,
    /// Bytes taken in the current header phase.
    used: Arc<AtomicU64>,
    yield_next: bool,
    rate: Rate,
    tick: tokio::time::Interval,
}

impl<S: Stream<Item = Result<bytes::Bytes, std::io::Error>> + Unpin> Stream for Metered<S> {
    type Item = Result<bytes::Bytes, Box<dyn std::error::Error + Send + Sync>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.yield_next {
            self.yield_next = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.yield_next = true;
                let size = chunk.len() as u64;
                if self.in_headers.load(Ordering::Acquire) && self.used.fetch_add(size, Ordering::AcqRel) + size > HEADER_BUDGET {
                    return Poll::Ready(Some(Err(Box::new(HeadersTooLarge))));
                }
                self.rate.received(size);
                if let Err(slow) = self.rate.check() {
                    return Poll::Ready(Some(Err(Box::new(slow))));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                while self.tick.poll_tick(cx).is_ready() {
                    if let Err(slow) = self.rate.check() {
                        return Poll::Ready(Some(Err(Box::new(slow))));
                    }
                }
                Poll::Pending
            }
        }
    }
}

/// What the OpenAPI document says of the file, from the rules uploads are
/// checked against.
static FILE_RULES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let rules = UploadRules::default();
    format!(
        "The video: MP4 or MOV, H.264 or HEVC, {}–{} s long, its short side at least {} pixels, at most {} MB.",
        rules.min_duration.as_secs(),
        rules.max_duration.as_secs(),
        rules.min_short_side,
        rules.max_bytes / 1_048_576
    )
});

impl<'a> ApiExtractor<'a> for UploadForm {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn request_meta() -> Option<MetaRequest> {
        let file = MetaSchema { format: Some("binary"), description: Some(FILE_RULES.as_str()), ..MetaSchema::new("string") };
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
