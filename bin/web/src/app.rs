//! Assembles the web application: the routes and their middleware
//! ([`endpoint`], from an [`AppState`], so that tests drive it in process),
//! the background work, and a server bound to its port (port 0 picks one;
//! [`Application::port`] says which), shut down gracefully on request.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anb_application::{AccountRules, LoginLimits, Shutdown, SignUpLimits, shutdown_on};
use anb_wiring::config::{CommonConfig, WebConfig};
use anb_wiring::mail::MailConfig;
use anb_wiring::{Checked, Role, Services, StartupError, UseCases, WebRole};
use poem::endpoint::BoxEndpoint;
use poem::http::StatusCode;
use poem::middleware::CatchPanic;
use poem::{Endpoint, EndpointExt, IntoResponse, Middleware, Request, Response, Route, get};
use poem_openapi::OpenApiService;
use tokio::sync::watch;

use crate::api::Api;
use crate::files::serve_file;
use crate::problem::{Problem, problem_for};
use crate::routes::RouteTable;
use crate::server::{ServerSettings, connection_cap, open_files_limit, stream_cap};
use crate::slots::Slots;
use crate::upload::UploadLimits;

/// Largest JSON body accepted outside uploads.
const MAX_JSON_BYTES: usize = 64 * 1024;
/// How long in-flight requests get to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(30);

/// Why `anb-web` could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebStartupError {
    #[error(transparent)]
    Services(#[from] StartupError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("cannot serve the metrics on {addr} (ANB_METRICS_ADDR; another address, port 0 or off): {source}")]
    Metrics { addr: SocketAddr, source: std::io::Error },
}

/// What the routes need: the use cases and the web server's own settings.
#[derive(Clone)]
pub struct AppState {
    pub use_cases: UseCases,
    pub upload: UploadLimits,
    /// Longest a request other than an upload may take (503 past it).
    pub request_timeout: Duration,
    /// Take the client's address from `X-Forwarded-For` (behind a balancer).
    pub behind_proxy: bool,
    /// Resolves when the server begins to stop: event streams then end at
    /// once (a last event, then close) so the drain does not wait on them.
    pub stopping: Shutdown,
    /// Event streams one account may hold open at once (429 past it).
    pub streams_per_account: usize,
    /// Where clients reach this server (`https://host`), when configured:
    /// the OpenAPI document's server URL and the links' base. Without it the
    /// document names `/api` and links follow each request's host.
    pub public_base_url: Option<String>,
}

/// Descriptors kept out of the connection cap: database pool, workers'
/// files, logs and the rest.
const RESERVED_DESCRIPTORS: usize = 64;

/// A bound, not yet running, web application.
pub struct Application {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    app: BoxEndpoint<'static>,
    services: Services,
    server: ServerSettings,
    telemetry: Option<Arc<anb_metrics::Telemetry>>,
    /// The metrics' own port, apart from the public one.
    metrics: Option<tokio::net::TcpListener>,
    /// Tells the routes (event streams) and the background work to stop.
    stop: watch::Sender<bool>,
    stopping: Shutdown,
}

impl Application {
    /// Checks the settings, binds the port, connects the database and builds
    /// every adapter.
    ///
    /// # Errors
    /// A [`WebStartupError`] naming what could not be set up.
    pub async fn build(
        common: CommonConfig,
        web: WebConfig,
        telemetry: Option<Arc<anb_metrics::Telemetry>>,
    ) -> Result<Self, WebStartupError> {
        let checked = Checked::new(common.clone(), Role::Web(Box::new(web_role(&common, &web))))?;
        let listen = |source| WebStartupError::Listen { addr: web.http_addr, source };
        let listener = tokio::net::TcpListener::bind(web.http_addr).await.map_err(listen)?;
        let addr = listener.local_addr().map_err(listen)?;
        // Links in messages need a base a person can open: the configured
        // one, else the address just bound.
        let checked = checked.bound_at(addr);
        let server = server_settings(&web, common.database_pool);
        clean_upload_dir(&common);
        let services = Services::build(&checked).await?;
        let metrics = match (&telemetry, web.metrics_addr.0) {
            (Some(_), Some(addr)) => {
                Some(anb_metrics::bind_prometheus(addr).await.map_err(|source| WebStartupError::Metrics { addr, source })?)
            }
            _ => None,
        };
        let (stop, stopped) = watch::channel(false);
        let stopping = {
            let mut stopped = stopped.clone();
            shutdown_on(async move {
                let _ = stopped.wait_for(|stopped| *stopped).await;
            })
        };
        let state = AppState {
            use_cases: services.use_cases.clone(),
            upload: UploadLimits {
                dir: common.upload_dir(),
                rules: services.use_cases.videos.rules().clone(),
                idle_timeout: Duration::from_secs(web.upload_idle_timeout),
                min_rate: web.upload_min_rate,
                rate_grace: crate::upload::RATE_GRACE,
                rate_window: crate::upload::RATE_WINDOW,
                per_account: Slots::new(web.uploads_per_account as usize),
            },
            request_timeout: Duration::from_secs(web.request_timeout),
            behind_proxy: web.behind_proxy,
            public_base_url: web.public_base_url,
            stopping: stopping.clone(),
            streams_per_account: web.streams_per_account as usize,
        };
        Ok(Self { listener, addr, app: endpoint(state), services, server, telemetry, metrics, stop, stopping })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Serves until `stop` resolves, then stops accepting, lets in-flight
    /// requests finish and gives in-flight jobs back to the queue.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until(self, stop: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let shutdown = self.stopping.clone();
        let background = self.services.start_background(&shutdown);
        let metrics = self.telemetry.clone().map(|telemetry| tokio::spawn(telemetry.run(shutdown.clone())));
        let scrape = match (self.metrics, self.telemetry.clone()) {
            (Some(listener), Some(telemetry)) => {
                Some(tokio::spawn(anb_metrics::serve_prometheus_on(listener, telemetry, shutdown.clone())))
            }
            _ => None,
        };
        tracing::info!(
            addr = %self.addr,
            max_connections = self.server.max_connections,
            max_streams = self.server.max_streams,
            per_client = ?self.server.per_client,
            "serving"
        );
        let tx = self.stop;
        let server_stop = async move {
            stop.await;
            tracing::info!("shutting down");
            let _ = tx.send(true);
        };
        let result = crate::server::serve(self.listener, self.app, self.server, server_stop).await;
        background.join().await;
        if let Some(metrics) = metrics {
            let _ = metrics.await;
        }
        if let Some(Ok(Err(error))) = match scrape {
            Some(scrape) => Some(scrape.await),
            None => None,
        } {
            tracing::warn!(%error, "serving the metrics failed");
        }
        tracing::info!("stopped");
        result
    }
}

/// What the settings ask of this web server.
fn web_role(common: &CommonConfig, web: &WebConfig) -> WebRole {
    let accounts = AccountRules {
        login: LoginLimits { max_failures: web.login_max_failures, lockout: Duration::from_secs(web.login_lockout) },
        sign_up: SignUpLimits { per_address: web.signup_per_address, per_network: web.signup_per_network, ..SignUpLimits::default() },
    };
    let mail = MailConfig {
        kind: web.mail,
        from: web.mail_from.clone(),
        smtp_url: web.smtp_url.clone(),
        dir: common.mail_dir(),
        public_base_url: web.public_base_url.clone().unwrap_or_else(|| format!("http://{}", web.http_addr)),
        token_ttl: Duration::from_secs(web.verification_ttl),
    };
    WebRole {
        public_base_url: web.public_base_url.clone(),
        workers: web.workers,
        accounts,
        mail,
        votes_require_verified_email: web.votes_require_verified_email(),
    }
}

/// The connection limits: the configured cap, else one that keeps the
/// process under its open-files limit, and the streams' places and each
/// client's share beside it.
fn server_settings(web: &WebConfig, database_pool: u32) -> ServerSettings {
    let reserve = RESERVED_DESCRIPTORS + database_pool as usize;
    let fitting = open_files_limit().map(|limit| connection_cap(limit, reserve));
    let max_connections = match (web.max_connections.and_then(|n| usize::try_from(n).ok()), fitting) {
        (Some(asked), Some(fitting)) if asked > fitting => {
            tracing::warn!(asked, fitting, "ANB_MAX_CONNECTIONS is above what the open-files limit allows; using the limit");
            fitting
        }
        (Some(asked), _) => asked,
        (None, Some(fitting)) => fitting,
        (None, None) => 1024,
    };
    let per_client = match web.max_connections_per_client.and_then(|n| usize::try_from(n).ok()) {
        _ if web.behind_proxy => None,
        Some(asked) => Some(asked),
        None => Some((max_connections / 4).clamp(16, 256)),
    };
    ServerSettings {
        header_timeout: Duration::from_secs(web.header_timeout),
        max_connections,
        max_streams: stream_cap(max_connections),
        per_client,
        send_timeout: Duration::from_secs(web.send_timeout),
        drain: DRAIN,
    }
}

/// Reads a (JSON) body of at most `max` bytes before the handler sees it:
/// 413 as soon as it is over (declared or streamed), 408 when the client
/// stops sending for `idle`. Such bodies are small, so holding one is cheap.
async fn limit_body(mut request: Request, max: usize, idle: Duration) -> poem::Result<Request> {
    use futures::StreamExt;
    let too_large = || Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "El cuerpo de la solicitud supera el tamaño permitido.").into_error();
    let declared =
        request.headers().get(poem::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > max) {
        return Err(too_large());
    }
    let mut stream = request.take_body().into_bytes_stream();
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    loop {
        match tokio::time::timeout(idle, stream.next()).await {
            Err(_) => return Err(Problem::new(StatusCode::REQUEST_TIMEOUT, "El cliente dejó de enviar datos.").into_error()),
            Ok(None) => break,
            Ok(Some(chunk)) => {
                let chunk =
                    chunk.map_err(|_| Problem::new(StatusCode::BAD_REQUEST, "No se pudo leer el cuerpo de la solicitud.").into_error())?;
                if body.len() + chunk.len() > max {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
        }
    }
    request.set_body(body);
    Ok(request)
}

/// Uploads interrupted by a crash leave files behind; nothing else uses them.
fn clean_upload_dir(common: &CommonConfig) {
    let Ok(entries) = std::fs::read_dir(common.upload_dir()) else { return };
    for entry in entries.flatten() {
        if let Err(error) = std::fs::remove_file(entry.path()) {
            tracing::warn!(path = %entry.path().display(), %error, "could not remove a stale upload");
        } else {
            tracing::info!(path = %entry.path().display(), "removed a stale upload");
        }
    }
}

/// The whole HTTP application: the API, its document and Swagger UI, the
/// stored files, and the middleware every request goes through.
///
/// # Panics
/// When the API's own OpenAPI document cannot be read (a bug, caught by
/// every test).
pub fn endpoint(state: AppState) -> BoxEndpoint<'static> {
    let api = Api {
        use_cases: state.use_cases.clone(),
        behind_proxy: state.behind_proxy,
        streams: Slots::new(state.streams_per_account),
        stopping: state.stopping.clone(),
    };
    let api_service = OpenApiService::new(api, "ANB Rising Stars Showcase", env!("CARGO_PKG_VERSION"))
        .description("Players upload skill videos; the public votes; the ranking picks the showcase.")
        .server(format!("{}/api", state.public_base_url.as_deref().unwrap_or_default()));
    let mut table = RouteTable::from_openapi(&api_service.spec(), "/api").expect("the API's own OpenAPI document");
    table.add("/api/openapi.json", &["GET"]);
    table.add("/files/*", &["GET", "HEAD"]);
    for path in crate::page::paths() {
        table.add(path, &["GET", "HEAD"]);
    }
    let table = Arc::new(table);
    let table_for_metrics = table.clone();
    let spec = api_service.spec_endpoint();
    let docs = api_service.swagger_ui();
    let upload_route = "/api/videos/upload";
    let idle = state.upload.idle_timeout;
    let request_timeout = state.request_timeout;
    let mut route = Route::new();
    for path in crate::page::paths() {
        route = route.at(path, get(crate::page::serve_asset).head(crate::page::serve_asset));
    }
    let mut route: BoxEndpoint<'static> = route
        .at("/api/openapi.json", get(spec))
        .nest("/docs", docs)
        .at("/files/*key", get(serve_file))
        .nest("/api", api_service)
        .around(move |endpoint, request: Request| async move {
            // JSON bodies are small; the upload enforces its own limits
            // (size, stalls, rate) while streaming.
            if request.uri().path() == upload_route {
                let mut request = request;
                request.extensions_mut().insert(crate::upload::Authenticated::default());
                return endpoint.call(request).await.map(IntoResponse::into_response);
            }
            let answer = async { endpoint.call(limit_body(request, MAX_JSON_BYTES, idle).await?).await.map(IntoResponse::into_response) };
            match tokio::time::timeout(request_timeout, answer).await {
                Ok(answer) => answer,
                Err(_) => {
                    Err(Problem::new(StatusCode::SERVICE_UNAVAILABLE, "La solicitud tardó demasiado. Inténtalo de nuevo.").into_error())
                }
            }
        })
        .data(state.use_cases.accounts.clone())
        .data(state.upload.clone())
        .boxed();
    if let Some(files) = &state.use_cases.files {
        route = route.data(files.clone()).boxed();
    }

    route
        .before(|mut request: Request| async move {
            normalise_path(&mut request);
            Ok(request)
        })
        .around(move |endpoint, request: Request| {
            let table = table.clone();
            async move {
                let path = request.uri().path().to_owned();
                let mut response = match endpoint.call(request).await {
                    Ok(response) => response.into_response(),
                    Err(error) => problem_for(error, |index| table.param_name(&path, index)),
                };
                // RFC 9110: a 405 lists the methods the resource has.
                if response.status() == StatusCode::METHOD_NOT_ALLOWED
                    && let Some(allow) = table.allow(&path).and_then(|a| a.parse().ok())
                {
                    response.headers_mut().insert(poem::http::header::ALLOW, allow);
                }
                security_headers(&path, &mut response);
                Ok(response)
            }
        })
        .with(CatchPanic::new().with_handler(|_| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "Error interno del servidor.")))
        .with(RequestId { routes: table_for_metrics })
        .boxed()
}

/// What the Swagger UI at `/docs` may load (poem-openapi inlines its script
/// and styles) and that no other site may frame it.
const DOCS_POLICY: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; \
                           img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Headers every answer carries: `nosniff` everywhere; `no-store` on the
/// API's answers unless they are public reads or say otherwise (they hold
/// a user's data: tokens, own videos, the account); the docs' policy.
fn security_headers(path: &str, response: &mut Response) {
    use poem::http::HeaderValue;
    use poem::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, X_CONTENT_TYPE_OPTIONS};
    let headers = response.headers_mut();
    headers.entry(X_CONTENT_TYPE_OPTIONS).or_insert(HeaderValue::from_static("nosniff"));
    let public = path.starts_with("/api/public/") || path == "/api/health" || path == "/api/openapi.json";
    if path.starts_with("/api/") && !public {
        headers.entry(CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    }
    if path == "/docs" || path.starts_with("/docs/") {
        headers.entry(CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static(DOCS_POLICY));
    }
}

/// Paths as clients written for other servers send them: `/api/videos/` is
/// `/api/videos` (every API route, both forms), and `/health`, where some
/// load balancers look, is `/api/health`.
fn normalise_path(request: &mut Request) {
    let path = request.uri().path();
    let normal = match path {
        "/health" | "/health/" => "/api/health",
        p if p.starts_with("/api/") && p.len() > "/api/".len() && p.ends_with('/') => p.trim_end_matches('/'),
        _ => return,
    };
    let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    if let Ok(path_and_query) = format!("{normal}{query}").parse::<poem::http::uri::PathAndQuery>() {
        let mut parts = request.uri().clone().into_parts();
        parts.path_and_query = Some(path_and_query);
        if let Ok(uri) = poem::http::Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
}

/// A read that takes this long is logged at info even when it succeeds.
const SLOW_REQUEST: std::time::Duration = std::time::Duration::from_secs(1);

/// Gives every request an id (the client's `x-request-id`, else a new one),
/// logs the request under it with its route, returns the id in
/// `x-request-id`, and counts the request and its time by route and status.
struct RequestId {
    routes: Arc<RouteTable>,
}

impl<E: Endpoint> Middleware<E> for RequestId {
    type Output = RequestIdEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        RequestIdEndpoint(ep, self.routes.clone())
    }
}

struct RequestIdEndpoint<E>(E, Arc<RouteTable>);

impl<E: Endpoint> Endpoint for RequestIdEndpoint<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> poem::Result<Response> {
        use tracing::Instrument;
        let id = request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
        // The route's template (`/api/videos/{video_id}`), not the path: a
        // bounded set of values for logs and metrics.
        let route = self.1.template(request.uri().path()).unwrap_or_else(|| "unmatched".to_owned());
        let read = matches!(*request.method(), poem::http::Method::GET | poem::http::Method::HEAD);
        let span = tracing::info_span!("request", request_id = %id, method = %request.method(), route = %route);
        async move {
            let started = std::time::Instant::now();
            let mut response = match self.0.call(request).await {
                Ok(r) => r.into_response(),
                Err(e) => problem_for(e, |_| None),
            };
            if let Ok(value) = id.parse() {
                response.headers_mut().insert("x-request-id", value);
            }
            let (status, elapsed) = (response.status().as_u16(), started.elapsed());
            metrics::counter!(anb_metrics::names::HTTP_REQUESTS, "route" => route.clone(), "status" => status.to_string()).increment(1);
            metrics::histogram!(anb_metrics::names::HTTP_DURATION, "route" => route).record(elapsed.as_secs_f64() * 1000.0);
            // A line for every read at thousands a second would cost more
            // than the reads: successful reads are at debug, everything
            // else at info (5xx at warn, slow reads at info), each under the
            // request's span and so with its id.
            let millis = elapsed.as_millis() as u64;
            match status {
                500.. => tracing::warn!(status, millis, "handled"),
                _ if !read || status >= 400 || elapsed >= SLOW_REQUEST => tracing::info!(status, millis, "handled"),
                _ => tracing::debug!(status, millis, "handled"),
            }
            Ok(response)
        }
        .instrument(span)
        .await
    }
}
