//! Assembles the web application: routes, middleware, embedded workers, and
//! a server bound to its port (port 0 picks one; [`Application::port`] says
//! which), shut down gracefully on request.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use anb_adapters::config::{CommonConfig, WebConfig};
use anb_adapters::wiring::Services;
use anb_application::worker::shutdown_on;
use poem::endpoint::BoxEndpoint;
use poem::listener::{Acceptor, AcceptorExt, Listener, TcpListener};
use poem::middleware::CatchPanic;
use poem::{Endpoint, EndpointExt, IntoResponse, Middleware, Request, Response, Route, Server, get};
use poem_openapi::OpenApiService;
use tokio::sync::watch;

use crate::api::Api;
use crate::files::serve_file;
use crate::problem::problem_for;
use crate::throttle::LoginThrottle;
use crate::upload::UploadLimits;

/// Largest JSON body accepted outside uploads.
const MAX_JSON_BYTES: usize = 64 * 1024;
/// How long in-flight requests get to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(30);

/// A bound, not yet running, web application.
pub struct Application {
    acceptor: poem::listener::BoxAcceptor,
    addr: SocketAddr,
    app: BoxEndpoint<'static>,
    services: Services,
    workers: u32,
}

impl Application {
    /// Binds the port, connects the database and builds every adapter.
    ///
    /// # Errors
    /// A message naming what could not be set up.
    pub async fn build(common: CommonConfig, web: WebConfig) -> Result<Self, String> {
        let acceptor =
            TcpListener::bind(web.http_addr).into_acceptor().await.map_err(|e| format!("cannot listen on {}: {e}", web.http_addr))?;
        let addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .ok_or_else(|| "the listener has no socket address".to_owned())?;
        let base_url = web.public_base_url.clone().unwrap_or_else(|| {
            let host = if addr.ip().is_unspecified() { SocketAddr::new([127, 0, 0, 1].into(), addr.port()) } else { addr };
            format!("http://{host}")
        });
        if common.shared_database() && common.jwt_secret.is_none() {
            return Err(
                "ANB_JWT_SECRET (--jwt-secret) is required with a shared database: every web server must verify the tokens the others sign"
                    .into(),
            );
        }
        clean_upload_dir(&common);
        let services = Services::build(&common, &base_url, web.workers).await?;
        let limits = UploadLimits {
            dir: common.upload_dir(),
            max_file_bytes: services.videos.rules().max_bytes,
            idle_timeout: Duration::from_secs(web.upload_idle_timeout),
        };
        let throttle = Arc::new(LoginThrottle::new(web.login_max_failures, Duration::from_secs(web.login_lockout)));
        let app = routes(&services, &base_url, limits, throttle, web.behind_proxy);
        Ok(Self { acceptor: acceptor.boxed(), addr, app, services, workers: web.workers })
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
        let (tx, rx) = watch::channel(false);
        let shutdown = {
            let mut rx = rx.clone();
            shutdown_on(async move {
                let _ = rx.wait_for(|stopped| *stopped).await;
            })
        };
        let workers: Vec<_> = (0..self.workers)
            .map(|_| {
                let processor = self.services.processor.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move { processor.run(shutdown).await })
            })
            .collect();
        let sweeper = (self.workers > 0).then(|| {
            let (dir, idle) = (self.services.work_dir.clone(), self.services.job_visibility);
            tokio::spawn(anb_adapters::runtime::sweep_scratch_until(dir, idle, shutdown.clone()))
        });
        let relay = self.services.relay.clone().map(|relay| {
            let shutdown = shutdown.clone();
            tokio::spawn(async move { relay.run(shutdown).await })
        });
        tracing::info!(addr = %self.addr, workers = self.workers, relay = relay.is_some(), "serving");
        let server_stop = async move {
            stop.await;
            tracing::info!("shutting down");
            let _ = tx.send(true);
        };
        let result = Server::new_with_acceptor(self.acceptor).run_with_graceful_shutdown(self.app, server_stop, Some(DRAIN)).await;
        drop(rx);
        for task in workers.into_iter().chain(relay).chain(sweeper) {
            let _ = task.await;
        }
        tracing::info!("stopped");
        result
    }
}

/// Refuses a declared body over `max` bytes with 413, and cuts a streamed
/// (chunked) one off past `max`, so no client makes the server buffer more.
fn limit_body(mut request: Request, max: usize) -> poem::Result<Request> {
    use futures::StreamExt;
    let too_large = || poem::Error::from_status(poem::http::StatusCode::PAYLOAD_TOO_LARGE);
    let declared =
        request.headers().get(poem::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    match declared {
        Some(length) if length > max => Err(too_large()),
        Some(_) => Ok(request),
        None => {
            let mut seen = 0usize;
            let stream = request.take_body().into_bytes_stream().map(move |chunk| {
                let chunk = chunk?;
                seen += chunk.len();
                if seen > max { Err(std::io::Error::other("request body over the limit")) } else { Ok(chunk) }
            });
            request.set_body(poem::Body::from_bytes_stream(stream));
            Ok(request)
        }
    }
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

fn routes(
    services: &Services,
    base_url: &str,
    limits: UploadLimits,
    throttle: Arc<LoginThrottle>,
    behind_proxy: bool,
) -> BoxEndpoint<'static> {
    let api = Api {
        database: services.database.clone(),
        accounts: services.accounts.clone(),
        videos: services.videos.clone(),
        showcase: services.showcase.clone(),
        login_throttle: throttle,
        behind_proxy,
    };
    let api_service = OpenApiService::new(api, "ANB Rising Stars Showcase", env!("CARGO_PKG_VERSION"))
        .description("Players upload skill videos; the public votes; the ranking picks the showcase.")
        .server(format!("{base_url}/api"));
    let spec = api_service.spec_endpoint();
    let docs = api_service.swagger_ui();
    let upload_route = "/api/videos/upload";
    let mut route: BoxEndpoint<'static> = Route::new()
        .at("/api/openapi.json", get(spec))
        .nest("/docs", docs)
        .at("/files/*key", get(serve_file))
        .nest("/api", api_service)
        .around(move |endpoint, request: Request| async move {
            // JSON bodies are small; the upload enforces its own limit while streaming.
            if request.uri().path() == upload_route {
                endpoint.call(request).await
            } else {
                endpoint.call(limit_body(request, MAX_JSON_BYTES)?).await
            }
        })
        .data(services.accounts.clone())
        .data(limits)
        .boxed();
    if let Some(files) = &services.files {
        route = route.data(files.clone()).boxed();
    }
    route
        .catch_all_error(|error| async move { problem_for(error) })
        .around(|endpoint, request: Request| async move {
            // RFC 9110: a 405 lists the methods the resource has.
            let path = request.uri().path().to_owned();
            let mut response = endpoint.call(request).await?;
            if response.status() == poem::http::StatusCode::METHOD_NOT_ALLOWED
                && let Some(allow) = allowed_methods(&path)
            {
                response.headers_mut().insert(poem::http::header::ALLOW, poem::http::HeaderValue::from_static(allow));
            }
            Ok(response)
        })
        .with(CatchPanic::new())
        .with(RequestId)
        .boxed()
}

/// The methods each route answers, for the `Allow` header of a 405.
fn allowed_methods(path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    Some(match segments.as_slice() {
        ["api", "health" | "openapi.json" | "videos"] | ["api", "public", "videos" | "rankings"] => "GET",
        ["api", "auth", "signup" | "login"] | ["api", "videos", "upload"] | ["api", "public", "videos", _, "vote"] => "POST",
        ["api", "videos", _] => "GET, DELETE",
        ["files", ..] => "GET, HEAD",
        _ => return None,
    })
}

/// Gives every request an id (the client's `x-request-id`, else a new one),
/// logs the request under it and returns it in `x-request-id`.
struct RequestId;

impl<E: Endpoint> Middleware<E> for RequestId {
    type Output = RequestIdEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        RequestIdEndpoint(ep)
    }
}

struct RequestIdEndpoint<E>(E);

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
        let span = tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path());
        async move {
            let started = std::time::Instant::now();
            let mut response = match self.0.call(request).await {
                Ok(r) => r.into_response(),
                Err(e) => problem_for(e),
            };
            if let Ok(value) = id.parse() {
                response.headers_mut().insert("x-request-id", value);
            }
            tracing::info!(status = response.status().as_u16(), millis = started.elapsed().as_millis() as u64, "handled");
            Ok(response)
        }
        .instrument(span)
        .await
    }
}
