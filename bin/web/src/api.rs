//! The HTTP API of docs/api.md on poem-openapi: one operation per route, one
//! response enum per operation, errors as problem+json through [`ApiError`]
//! (whose `From` impls in `problem.rs` are the status table).

use anb_application::{Accounts, Resent, Shutdown, SignUp, VideoDetail, VideoSummary, Videos};
use anb_domain::{Timestamp, UserId, Video, VideoId};
use anb_wiring::UseCases;
use futures::StreamExt;
use futures::stream::BoxStream;
use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{EventStream, Json};
use poem_openapi::{ApiResponse, Object, OpenApi, SecurityScheme, Tags};

use std::net::IpAddr;
use std::time::Duration;

/// How often an event stream looks at its video.
const EVENTS_POLL: Duration = Duration::from_secs(1);
/// How long an event stream lasts at most.
const EVENTS_LIFETIME: Duration = Duration::from_secs(600);

use crate::nullable::Nullable;
use crate::payload::SerdeJson;
use crate::problem::ApiError;
use crate::slots::{Slot, Slots};
use crate::upload::UploadForm;

#[derive(Tags)]
enum Tag {
    /// Liveness for the load balancer, readiness for operators.
    Health,
    /// Sign-up, e-mail verification and log-in.
    Auth,
    /// The signed-in player's own videos.
    Videos,
    /// Public videos, votes and rankings.
    Public,
}

/// A bearer JWT from `POST /api/auth/login`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_token")]
pub struct BearerAuth(UserId);

async fn check_token(request: &Request, bearer: Bearer) -> poem::Result<UserId> {
    let accounts = request.data::<Accounts>().ok_or_else(|| poem::Error::from_status(poem::http::StatusCode::INTERNAL_SERVER_ERROR))?;
    let user = accounts.authenticate(&bearer.token).await.map_err(|e| ApiError::from(e).into_poem_error())?;
    // An upload takes the account's place before its body is read.
    if let Some(who) = request.extensions().get::<crate::upload::Authenticated>() {
        let _ = who.0.set(user);
    }
    Ok(user)
}

/// Formats a time as RFC 3339 UTC with whole seconds (`2026-03-01T12:00:00Z`).
fn rfc3339(at: Timestamp) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[derive(Object)]
struct HealthBody {
    /// Always `ok`: the process serves.
    status: String,
}

#[derive(ApiResponse)]
enum HealthResponse {
    /// The process serves (no dependency is checked).
    #[oai(status = 200)]
    Ok(Json<HealthBody>),
}

#[derive(Object)]
struct ReadyBody {
    /// `ok` when every dependency answers, else `unavailable`.
    status: String,
    /// Each dependency this process uses (`database`, `storage`, `queue`,
    /// `cache`): `ok` or `unreachable`.
    checks: std::collections::BTreeMap<String, String>,
}

#[derive(ApiResponse)]
enum ReadyResponse {
    /// Every dependency answers.
    #[oai(status = 200)]
    Ok(Json<ReadyBody>),
    /// Some dependency does not answer; `checks` names it.
    #[oai(status = 503)]
    Unavailable(Json<ReadyBody>),
}

#[derive(Object)]
struct SignUpRequest {
    first_name: String,
    last_name: String,
    email: String,
    password1: String,
    password2: String,
    city: String,
    country: String,
}

#[derive(Object)]
struct MessageBody {
    message: String,
}

#[derive(ApiResponse)]
enum SignUpResponse {
    /// The account exists.
    #[oai(status = 201)]
    Created(Json<MessageBody>),
}

#[derive(Object)]
struct VerifyRequest {
    /// The `token` of the link the message carried.
    token: String,
}

#[derive(ApiResponse)]
enum VerifyResponse {
    /// The address is verified.
    #[oai(status = 200)]
    Ok(Json<MessageBody>),
}

#[derive(ApiResponse)]
enum ResendResponse {
    /// A new link is on its way (or the address is verified already).
    #[oai(status = 202)]
    Accepted(Json<MessageBody>),
}

/// Who is signed in.
#[derive(Object)]
struct MeBody {
    first_name: String,
    last_name: String,
    email: String,
    city: String,
    country: String,
    /// Whether the address was verified (its link opened).
    email_verified: bool,
}

#[derive(ApiResponse)]
enum MeResponse {
    #[oai(status = 200)]
    Ok(Json<MeBody>),
}

#[derive(Object)]
struct LogInRequest {
    email: String,
    password: String,
}

#[derive(Object)]
struct TokenBody {
    access_token: String,
    /// Always `Bearer`.
    token_type: String,
    /// Seconds until the token expires.
    expires_in: u64,
}

#[derive(ApiResponse)]
enum LogInResponse {
    /// The token; the cookie `anb_device` marks this client as one that
    /// has signed in to the account (guesses from elsewhere never lock it
    /// out).
    #[oai(status = 200)]
    Ok(Json<TokenBody>, #[oai(header = "set-cookie")] String),
}

/// The cookie that carries a device token.
const DEVICE_COOKIE: &str = "anb_device";
/// How long a device is remembered: 180 days.
const DEVICE_COOKIE_AGE: u64 = 180 * 24 * 3600;

/// The device token the client sent in its cookie, if any.
fn device_cookie(request: &Request) -> Option<&str> {
    request
        .headers()
        .get_all(poem::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(DEVICE_COOKIE)?.strip_prefix('='))
}

#[derive(Object)]
struct UploadAccepted {
    message: String,
    /// Id of the processing job.
    task_id: String,
}

#[derive(ApiResponse)]
enum UploadResponse {
    /// Accepted; processing runs in the background.
    #[oai(status = 201)]
    Created(Json<UploadAccepted>),
}

#[derive(Object)]
struct VideoItem {
    video_id: i64,
    title: String,
    /// `uploaded`, `processing`, `processed` or `failed`.
    status: String,
    uploaded_at: String,
    processed_at: Nullable<String>,
    processed_url: Nullable<String>,
}

#[derive(ApiResponse)]
enum ListResponse {
    #[oai(status = 200)]
    Ok(Json<Vec<VideoItem>>),
}

#[derive(Object)]
struct VideoDetailBody {
    video_id: i64,
    title: String,
    status: String,
    uploaded_at: String,
    processed_at: Nullable<String>,
    original_url: String,
    processed_url: Nullable<String>,
    votes: i64,
    /// Why processing gave up; only for `failed` videos.
    #[oai(skip_serializing_if_is_none)]
    failure_reason: Option<String>,
    /// The share of processing done, 0–100; only while `processing`.
    #[oai(skip_serializing_if_is_none, validator(maximum(value = "100")))]
    progress: Option<u8>,
}

impl VideoDetailBody {
    fn of(detail: VideoDetail, links: &Links) -> Self {
        let video = detail.video;
        Self {
            video_id: video.id.0,
            failure_reason: failure_reason(&video),
            progress: (video.status == anb_domain::VideoStatus::Processing).then(|| video.progress.unwrap_or(0)),
            title: video.title,
            status: video.status.as_str().to_owned(),
            uploaded_at: rfc3339(video.uploaded_at),
            processed_at: video.processed_at.map(rfc3339).into(),
            original_url: links.absolute(detail.original_url),
            processed_url: detail.processed_url.map(|url| links.absolute(url)).into(),
            votes: video.votes,
        }
    }

    /// What a watcher of the video sees change (links are signed anew on
    /// every read, so they do not count).
    fn state(&self) -> (String, Option<u8>, Option<String>, i64) {
        (self.status.clone(), self.progress, self.failure_reason.clone(), self.votes)
    }

    fn is_final(&self) -> bool {
        self.status == "processed" || self.status == "failed"
    }
}

/// One client watching one video for an event stream.
struct Watch {
    videos: Videos,
    owner: UserId,
    id: VideoId,
    links: Links,
    /// What the client was last sent.
    last: Option<(String, Option<u8>, Option<String>, i64)>,
    /// Sent a final status, or out of time.
    ended: bool,
    deadline: tokio::time::Instant,
    /// When the server begins to stop, the stream sends the detail once
    /// more and ends.
    stopping: Shutdown,
    /// The account's place among its streams, given back when it ends.
    _slot: Slot<UserId>,
}

impl Watch {
    /// The next detail that differs from the last one sent (`first`, when
    /// given, is looked at before reading again); `None` when the stream
    /// ends: after a final status, at the deadline, or when the video can
    /// no longer be read.
    async fn next_change(&mut self, mut first: Option<VideoDetailBody>) -> Option<VideoDetailBody> {
        while !self.ended {
            let body = match first.take() {
                Some(body) => body,
                None => {
                    if tokio::time::Instant::now() >= self.deadline {
                        return None;
                    }
                    let stopping = tokio::select! {
                        () = tokio::time::sleep(EVENTS_POLL) => false,
                        () = self.stopping.clone() => true,
                    };
                    let body = VideoDetailBody::of(self.videos.detail(self.owner, self.id).await.ok()?, &self.links);
                    if stopping {
                        // A last event (the client reconnects elsewhere), then the end.
                        self.ended = true;
                        return Some(body);
                    }
                    body
                }
            };
            self.ended = body.is_final();
            if self.last.as_ref() != Some(&body.state()) {
                self.last = Some(body.state());
                return Some(body);
            }
        }
        None
    }
}

/// A stream of video details as Server-Sent Events, documented as one
/// event (OpenAPI 3.2's way for `text/event-stream`): its `data` is a
/// `VideoDetailBody` in JSON. poem-openapi's own "array of events" schema is
/// not what a client or a schema checker reads.
struct DetailEvents(EventStream<BoxStream<'static, VideoDetailBody>>);

impl poem_openapi::payload::Payload for DetailEvents {
    const CONTENT_TYPE: &'static str = "text/event-stream";

    fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
        use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
        let text =
            |description| MetaSchemaRef::Inline(Box::new(MetaSchema { description: Some(description), ..MetaSchema::new("string") }));
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some("One event of the stream."),
            required: vec!["data"],
            properties: vec![
                ("data", text("The video's detail, a VideoDetailBody (as GET /api/videos/{video_id} answers), in JSON.")),
                ("event", text("Always `message`.")),
                ("id", text("The event's number in the stream.")),
            ],
            ..MetaSchema::new("object")
        }))
    }

    fn register(registry: &mut poem_openapi::registry::Registry) {
        <VideoDetailBody as poem_openapi::types::Type>::register(registry);
    }
}

impl poem::IntoResponse for DetailEvents {
    fn into_response(self) -> poem::Response {
        self.0.into_response()
    }
}

#[derive(ApiResponse)]
enum EventsResponse {
    /// A `text/event-stream` whose every event's data is the video's detail:
    /// now, then again on every change, ending after `processed` or `failed`.
    #[oai(status = 200)]
    Ok(DetailEvents),
}

#[derive(ApiResponse)]
enum DetailResponse {
    #[oai(status = 200)]
    Ok(Json<VideoDetailBody>),
}

#[derive(Object)]
struct DeletedBody {
    message: String,
    video_id: i64,
}

#[derive(ApiResponse)]
enum DeleteResponse {
    #[oai(status = 200)]
    Ok(Json<DeletedBody>),
}

#[derive(Object, serde::Serialize)]
struct PublicVideoItem {
    video_id: i64,
    title: String,
    username: String,
    city: String,
    processed_url: String,
    votes: i64,
}

#[derive(ApiResponse)]
enum PublicListResponse {
    #[oai(status = 200)]
    Ok(SerdeJson<Vec<PublicVideoItem>>),
}

#[derive(ApiResponse)]
enum VoteResponse {
    #[oai(status = 200)]
    Ok(Json<MessageBody>),
}

#[derive(Object, serde::Serialize)]
struct RankingItem {
    /// Rank in the whole (filtered) ranking.
    position: i64,
    username: String,
    city: String,
    votes: i64,
}

#[derive(ApiResponse)]
enum RankingResponse {
    #[oai(status = 200)]
    Ok(SerdeJson<Vec<RankingItem>>),
}

fn message(text: &str) -> Json<MessageBody> {
    Json(MessageBody { message: text.to_owned() })
}

fn video_item(summary: VideoSummary, links: &Links) -> VideoItem {
    let VideoSummary { video, processed_url } = summary;
    VideoItem {
        video_id: video.id.0,
        title: video.title,
        status: video.status.as_str().to_owned(),
        uploaded_at: rfc3339(video.uploaded_at),
        processed_at: video.processed_at.map(rfc3339).into(),
        processed_url: processed_url.map(|url| links.absolute(url)).into(),
    }
}

/// The reason label of a refused upload, for the metrics (`None` for a
/// server fault, which is no refusal).
fn rejection_reason(error: &anb_application::UploadError) -> Option<&'static str> {
    use anb_application::UploadError;
    match error {
        UploadError::Rejected(rejection) => Some(rejection.kind()),
        UploadError::InvalidTitle(_) => Some("title"),
        UploadError::Backend(_) => None,
    }
}

/// Makes the links handed to a client absolute. Links to S3, and to local
/// files under `ANB_PUBLIC_BASE_URL`, already are; local links without it
/// are relative (`/files/...`) and take the host this request came to, so
/// they work from whatever name the server is reached by.
struct Links {
    base: Option<String>,
}

impl Links {
    fn of(request: &Request, behind_proxy: bool) -> Self {
        let header =
            |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).map(|v| v.split(',').next_back().unwrap_or(v).trim());
        let forwarded = |name| if behind_proxy { header(name) } else { None };
        let host = forwarded("x-forwarded-host").or_else(|| header("host"));
        let scheme = forwarded("x-forwarded-proto").filter(|p| matches!(*p, "http" | "https")).unwrap_or("http");
        // A host name, an IPv4 or a bracketed IPv6 address, and a port.
        let valid = |h: &&str| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
        Self { base: host.filter(valid).map(|host| format!("{scheme}://{host}")) }
    }

    fn absolute(&self, url: String) -> String {
        match &self.base {
            Some(base) if url.starts_with('/') => format!("{base}{url}"),
            _ => url,
        }
    }
}

fn failure_reason(video: &Video) -> Option<String> {
    (video.status == anb_domain::VideoStatus::Failed).then(|| video.failure_reason.clone().unwrap_or_default())
}

/// The API; each field is a group of use cases.
pub struct Api {
    pub use_cases: UseCases,
    /// Take the client's address from `X-Forwarded-For` (behind a balancer).
    pub behind_proxy: bool,
    /// Event streams open, per account.
    pub streams: Slots<UserId>,
    /// Resolves when the server begins to stop.
    pub stopping: Shutdown,
}

type Answer<T> = Result<T, ApiError>;

/// The client's address: the connection's, or behind a balancer the last
/// `X-Forwarded-For` entry (the one the balancer itself appended; earlier
/// entries come from the client and prove nothing).
fn client_address(request: &Request, behind_proxy: bool) -> Option<IpAddr> {
    if behind_proxy {
        let forwarded = request.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).next_back();
        // An entry that is not an address counts as the balancer's own (the
        // connection's): the limits then hold it with the other such
        // clients rather than not at all.
        if let Some(address) = forwarded.and_then(|v| v.rsplit(',').next()).and_then(|last| last.trim().parse().ok()) {
            return Some(address);
        }
    }
    request.remote_addr().as_socket_addr().map(std::net::SocketAddr::ip)
}

#[OpenApi]
impl Api {
    /// Liveness, for the load balancer: 200 whenever the process serves.
    /// It checks no dependency, so that a database failover never makes
    /// every server look dead (`/api/ready` tells what answers).
    #[oai(path = "/health", method = "get", tag = "Tag::Health")]
    async fn health(&self) -> HealthResponse {
        HealthResponse::Ok(Json(HealthBody { status: "ok".into() }))
    }

    /// Readiness, for operators and monitors: each dependency this process
    /// uses, asked at once (2 s each); 503 when one does not answer.
    #[oai(path = "/ready", method = "get", tag = "Tag::Health")]
    async fn ready(&self) -> ReadyResponse {
        let mut checks = std::collections::BTreeMap::new();
        let mut ready = true;
        for (name, answer) in self.use_cases.readiness.check().await {
            if let Err(error) = &answer {
                tracing::warn!(dependency = name, %error, "not ready");
                ready = false;
            }
            checks.insert(name.to_owned(), if answer.is_ok() { "ok" } else { "unreachable" }.to_owned());
        }
        let body = |status: &str| Json(ReadyBody { status: status.into(), checks: checks.clone() });
        if ready { ReadyResponse::Ok(body("ok")) } else { ReadyResponse::Unavailable(body("unavailable")) }
    }

    /// Creates a player account and sends a message with a link that
    /// verifies the address. At most `ANB_SIGNUP_PER_ADDRESS` sign-ups an
    /// hour from one client address, and `ANB_SIGNUP_PER_NETWORK` from one
    /// network (429 with `Retry-After` past them).
    #[oai(path = "/auth/signup", method = "post", tag = "Tag::Auth")]
    async fn sign_up(&self, request: &Request, body: Json<SignUpRequest>) -> Answer<SignUpResponse> {
        let Json(b) = body;
        let form = SignUp {
            first_name: b.first_name,
            last_name: b.last_name,
            email: b.email,
            password1: b.password1,
            password2: b.password2,
            city: b.city,
            country: b.country,
        };
        self.use_cases.accounts.sign_up(form, client_address(request, self.behind_proxy)).await?;
        Ok(SignUpResponse::Created(message("Usuario creado exitosamente.")))
    }

    /// Verifies an address with the token of the link sent to it (single
    /// use; it expires).
    #[oai(path = "/auth/verify-email", method = "post", tag = "Tag::Auth")]
    async fn verify_email(&self, body: Json<VerifyRequest>) -> Answer<VerifyResponse> {
        self.use_cases.accounts.verify_email(&body.token).await?;
        Ok(VerifyResponse::Ok(message("Correo verificado.")))
    }

    /// Sends the signed-in person a new verification link (a few times an
    /// hour at most: 429 past it).
    #[oai(path = "/auth/resend-verification", method = "post", tag = "Tag::Auth")]
    async fn resend_verification(&self, auth: BearerAuth) -> Answer<ResendResponse> {
        let text = match self.use_cases.accounts.resend_verification(auth.0).await? {
            Resent::Queued => "Te enviamos un nuevo enlace de verificación. Revisa tu correo.",
            Resent::AlreadyVerified => "Tu correo ya está verificado.",
        };
        Ok(ResendResponse::Accepted(message(text)))
    }

    /// Who is signed in, and whether the address is verified.
    #[oai(path = "/auth/me", method = "get", tag = "Tag::Auth")]
    async fn me(&self, auth: BearerAuth) -> Answer<MeResponse> {
        let user = self.use_cases.accounts.me(auth.0).await?;
        Ok(MeResponse::Ok(Json(MeBody {
            first_name: user.first_name,
            last_name: user.last_name,
            email: user.email.address().to_owned(),
            city: user.city,
            country: user.country,
            email_verified: user.email_verified,
        })))
    }

    /// Exchanges e-mail and password for an access token. A client that
    /// has signed in to the account before (its `anb_device` cookie) is
    /// locked only by its own failures, never by guesses from elsewhere.
    #[oai(path = "/auth/login", method = "post", tag = "Tag::Auth")]
    async fn log_in(&self, request: &Request, body: Json<LogInRequest>) -> Answer<LogInResponse> {
        let client = client_address(request, self.behind_proxy);
        let logged_in = self.use_cases.accounts.log_in(&body.email, &body.password, client, device_cookie(request)).await?;
        let https = self.behind_proxy && request.header("x-forwarded-proto") == Some("https");
        let cookie = format!(
            "{DEVICE_COOKIE}={}; Path=/api/auth/login; Max-Age={DEVICE_COOKIE_AGE}; HttpOnly; SameSite=Strict{}",
            logged_in.device,
            if https { "; Secure" } else { "" }
        );
        let token = logged_in.token;
        Ok(LogInResponse::Ok(
            Json(TokenBody { access_token: token.token, token_type: "Bearer".into(), expires_in: token.expires_in }),
            cookie,
        ))
    }

    /// Uploads a video for processing (the rules it must meet: `video_file`).
    #[oai(path = "/videos/upload", method = "post", tag = "Tag::Videos")]
    async fn upload(&self, auth: BearerAuth, form: UploadForm) -> Answer<UploadResponse> {
        let title = form.title.ok_or_else(|| ApiError::bad_request("El título es obligatorio."))?;
        let file = form.file.ok_or_else(|| ApiError::bad_request("El archivo de video (video_file) es obligatorio."))?;
        // The received file is removed when `file` drops, whatever happens.
        let video = self.use_cases.videos.upload(auth.0, &title, &file.path, file.size).await.inspect_err(|error| {
            if let Some(reason) = rejection_reason(error) {
                metrics::counter!(anb_metrics::names::UPLOADS_REJECTED, "reason" => reason).increment(1);
            }
        })?;
        metrics::counter!(anb_metrics::names::UPLOADS_ACCEPTED).increment(1);
        Ok(UploadResponse::Created(Json(UploadAccepted {
            message: "Video subido correctamente. Procesamiento en curso.".into(),
            task_id: video.task_id.to_string(),
        })))
    }

    /// The signed-in player's videos, newest first.
    #[oai(path = "/videos", method = "get", tag = "Tag::Videos")]
    async fn list_own(&self, request: &Request, auth: BearerAuth) -> Answer<ListResponse> {
        let videos = self.use_cases.videos.list_own(auth.0).await?;
        let links = Links::of(request, self.behind_proxy);
        Ok(ListResponse::Ok(Json(videos.into_iter().map(|v| video_item(v, &links)).collect())))
    }

    /// One of the signed-in player's videos.
    #[oai(path = "/videos/:video_id", method = "get", tag = "Tag::Videos")]
    async fn detail(&self, request: &Request, auth: BearerAuth, video_id: Path<i64>) -> Answer<DetailResponse> {
        let detail = self.use_cases.videos.detail(auth.0, VideoId(video_id.0)).await?;
        Ok(DetailResponse::Ok(Json(VideoDetailBody::of(detail, &Links::of(request, self.behind_proxy)))))
    }

    /// Server-Sent Events of one of the player's videos: its detail now, and
    /// again whenever its status, progress or votes change (looked at every
    /// second), ending after `processed` or `failed`, or after ten minutes
    /// (a client then connects again or polls).
    #[oai(path = "/videos/:video_id/events", method = "get", tag = "Tag::Videos")]
    async fn events(&self, request: &Request, auth: BearerAuth, video_id: Path<i64>) -> Answer<EventsResponse> {
        let (videos, owner, id) = (self.use_cases.videos.clone(), auth.0, VideoId(video_id.0));
        let links = Links::of(request, self.behind_proxy);
        // Access is checked now, so a refusal is an answer, not a stream.
        let first = VideoDetailBody::of(videos.detail(owner, id).await?, &links);
        let slot = self.streams.try_take(owner).ok_or_else(|| {
            let detail = format!(
                "Ya tienes {} transmisiones de estado abiertas. Cierra alguna pestaña o consulta el video sin transmisión.",
                self.streams.per_key()
            );
            ApiError::too_many_requests(detail, Duration::from_secs(5))
        })?;
        let watch = Watch {
            videos,
            owner,
            id,
            links,
            last: None,
            ended: false,
            deadline: tokio::time::Instant::now() + EVENTS_LIFETIME,
            stopping: self.stopping.clone(),
            _slot: slot,
        };
        let changes = futures::stream::unfold((watch, Some(first)), |(mut watch, first)| async move {
            let body = watch.next_change(first).await?;
            Some((body, (watch, None)))
        });
        Ok(EventsResponse::Ok(DetailEvents(EventStream::new(changes.boxed()).keep_alive(Duration::from_secs(15)))))
    }

    /// Deletes one of the player's videos that is not public yet, with its files.
    #[oai(path = "/videos/:video_id", method = "delete", tag = "Tag::Videos")]
    async fn delete(&self, auth: BearerAuth, video_id: Path<i64>) -> Answer<DeleteResponse> {
        let id = self.use_cases.videos.delete(auth.0, VideoId(video_id.0)).await?;
        Ok(DeleteResponse::Ok(Json(DeletedBody { message: "El video ha sido eliminado exitosamente.".into(), video_id: id.0 })))
    }

    /// Processed videos, most voted first.
    #[oai(path = "/public/videos", method = "get", tag = "Tag::Public")]
    async fn public_videos(
        &self,
        request: &Request,
        city: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<i64>>,
        #[oai(validator(minimum(value = "0")))] offset: Query<Option<i64>>,
    ) -> Answer<PublicListResponse> {
        let videos = self.use_cases.showcase.list_videos(city.0.as_deref(), limit.0, offset.0).await?;
        let links = Links::of(request, self.behind_proxy);
        Ok(PublicListResponse::Ok(SerdeJson(
            videos
                .into_iter()
                .map(|v| PublicVideoItem {
                    video_id: v.id.0,
                    title: v.title,
                    username: v.username,
                    city: v.city,
                    processed_url: links.absolute(v.processed_url),
                    votes: v.votes,
                })
                .collect(),
        )))
    }

    /// One vote for a public video; one per person and video, never for
    /// one's own, and (when the deployment requires it) only from a
    /// verified address.
    #[oai(path = "/public/videos/:video_id/vote", method = "post", tag = "Tag::Public")]
    async fn vote(&self, request: &Request, auth: BearerAuth, video_id: Path<i64>) -> Answer<VoteResponse> {
        self.use_cases.showcase.vote(auth.0, VideoId(video_id.0), client_address(request, self.behind_proxy)).await?;
        metrics::counter!(anb_metrics::names::VOTES).increment(1);
        Ok(VoteResponse::Ok(message("Voto registrado exitosamente.")))
    }

    /// Players ranked by the votes of their public videos.
    #[oai(path = "/public/rankings", method = "get", tag = "Tag::Public")]
    async fn rankings(
        &self,
        city: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<i64>>,
        #[oai(validator(minimum(value = "0")))] offset: Query<Option<i64>>,
    ) -> Answer<RankingResponse> {
        let entries = self.use_cases.showcase.rankings(city.0.as_deref(), limit.0, offset.0).await?;
        Ok(RankingResponse::Ok(SerdeJson(
            entries.into_iter().map(|e| RankingItem { position: e.position, username: e.username, city: e.city, votes: e.votes }).collect(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_links_take_the_host_of_the_request() {
        let direct = Request::builder().header("host", "anb.local:8080").header("x-forwarded-host", "evil.example").finish();
        assert_eq!(Links::of(&direct, false).absolute("/files/a".into()), "http://anb.local:8080/files/a");
        assert_eq!(Links::of(&direct, false).absolute("https://s3/x".into()), "https://s3/x", "absolute links stay");
        let proxied = Request::builder()
            .header("host", "10.0.0.5:8080")
            .header("x-forwarded-host", "anb.example.com")
            .header("x-forwarded-proto", "https")
            .finish();
        assert_eq!(Links::of(&proxied, true).absolute("/files/a".into()), "https://anb.example.com/files/a");
        let odd = Request::builder().header("host", "a b\"c").finish();
        assert_eq!(Links::of(&odd, false).absolute("/files/a".into()), "/files/a", "an odd host leaves the link relative");
    }

    #[test]
    fn behind_a_proxy_the_client_is_the_last_forwarded_address() {
        let request = Request::builder()
            .header("x-forwarded-for", "1.1.1.1, 2.2.2.2")
            .header("x-forwarded-for", "203.0.113.7, 198.51.100.9")
            .finish();
        assert_eq!(client_address(&request, true), Some("198.51.100.9".parse().unwrap()), "the balancer's own entry");
        assert_eq!(client_address(&request, false), None, "not trusted without a proxy (no socket address here)");
        let garbage = Request::builder().header("x-forwarded-for", "not-an-ip").finish();
        assert_eq!(client_address(&garbage, true), None);
    }
}
