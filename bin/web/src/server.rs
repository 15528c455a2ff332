//! The HTTP/1.1 server loop in front of the poem endpoint, built on hyper
//! directly for what poem's own server does not give (measured in
//! docs/reliability.md):
//!
//! - **a deadline on every request head** (`ANB_HEADER_TIMEOUT`), which also
//!   closes keep-alive connections idle that long and clients that send their
//!   headers a byte at a time;
//! - **a cap on connections** below the open-files limit: when it is reached,
//!   the connection idle the longest (no request in flight, no bytes moving)
//!   is closed to make room, as nginx reuses idle connections; only when
//!   every connection is busy is a newcomer answered 503 and closed;
//! - **back-off on `EMFILE`** and its kin instead of a spinning accept loop;
//! - **errors hyper answers itself** (a head too large, 431; a malformed
//!   one, 400) carry a problem+json body like every other error;
//! - graceful shutdown: stop accepting, let requests in flight finish within
//!   the drain time.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use poem::Endpoint;
use poem::endpoint::BoxEndpoint;
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;

use crate::problem::Problem;

/// How the server treats its connections.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Longest wait for a request's head, and for the next request on an
    /// idle keep-alive connection.
    pub header_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// How long requests in flight may take to finish at shutdown.
    pub drain: Duration,
}

/// Largest request head accepted (hyper answers 431 past it).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Connections answered 503 at once, at most; past it they are just closed.
const MAX_SHEDDING: usize = 64;
/// A connection this idle (no request in flight, no bytes moving) may be
/// closed to make room for a new one.
const EVICTABLE_AFTER: Duration = Duration::from_millis(500);

/// The open-files limit of this process (`ulimit -n`), when Linux says.
pub fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The connection cap that keeps the server below its open-files limit:
/// each connection may hold two descriptors (its socket and an upload's
/// temporary file), and `reserve` are kept for the database, the workers
/// and the rest.
pub fn connection_cap(open_files: usize, reserve: usize) -> usize {
    (open_files.saturating_sub(reserve) / 2).max(1)
}

/// What the server knows of one connection.
#[derive(Debug)]
struct Connection {
    /// Responses begun (service entered) and not yet fully sent.
    open_responses: AtomicUsize,
    /// Requests that reached the service: each is answered by one response
    /// head of ours.
    requests: AtomicU64,
    /// When bytes last moved either way, in ms since the server started.
    last_io: AtomicU64,
    /// Its place under the cap; taken away when the connection is evicted.
    permit: Mutex<Option<OwnedSemaphorePermit>>,
    task: Mutex<Option<AbortHandle>>,
}

/// Every open connection.
#[derive(Debug, Default)]
struct Registry {
    connections: Mutex<HashMap<u64, Arc<Connection>>>,
}

impl Registry {
    /// Closes the connection idle the longest, if one has been idle long
    /// enough; returns whether one was.
    fn evict_idlest(&self, now: u64) -> bool {
        let chosen = {
            let connections = self.connections.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let threshold = u64::try_from(EVICTABLE_AFTER.as_millis()).unwrap_or(u64::MAX);
            connections
                .iter()
                .filter(|(_, c)| c.open_responses.load(Ordering::Acquire) == 0)
                .map(|(id, c)| (*id, c.clone(), c.last_io.load(Ordering::Acquire)))
                .filter(|(_, _, last)| now.saturating_sub(*last) >= threshold)
                .min_by_key(|(_, _, last)| *last)
        };
        let Some((id, connection, _)) = chosen else { return false };
        self.remove(id);
        connection.permit.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(task) = connection.task.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            task.abort();
        }
        true
    }

    fn insert(&self, id: u64, connection: Arc<Connection>) {
        self.connections.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id, connection);
    }

    fn remove(&self, id: u64) {
        self.connections.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
    }
}

/// Serves `endpoint` on `listener` until `stop` resolves, then drains.
///
/// # Errors
/// When the listener has no local address.
pub async fn serve(
    listener: TcpListener,
    endpoint: BoxEndpoint<'static>,
    settings: ServerSettings,
    stop: impl Future<Output = ()>,
) -> io::Result<()> {
    let local = LocalAddr(listener.local_addr()?.into());
    let endpoint = Arc::new(endpoint);
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder.http1().timer(TokioTimer::new()).header_read_timeout(settings.header_timeout).keep_alive(true).max_buf_size(MAX_HEAD_BYTES);
    let builder = Arc::new(builder);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    let shedding = Arc::new(Semaphore::new(MAX_SHEDDING));
    let registry = Arc::new(Registry::default());
    let started = Instant::now();
    let clock = move || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut backoff = Backoff::default();
    let mut next_id = 0u64;
    let mut stop = std::pin::pin!(stop);

    loop {
        let accepted = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => {
                backoff.reset();
                accepted
            }
            Err(error) if is_out_of_descriptors(&error) => {
                let wait = backoff.next();
                tracing::warn!(%error, wait_ms = wait.as_millis() as u64, "out of file descriptors; accepting again shortly");
                tokio::time::sleep(wait).await;
                continue;
            }
            Err(error) => {
                tracing::debug!(%error, "accept failed");
                continue;
            }
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) if registry.evict_idlest(clock()) => match permits.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    shed(tcp, &shedding);
                    continue;
                }
            },
            Err(_) => {
                shed(tcp, &shedding);
                continue;
            }
        };
        next_id += 1;
        let id = next_id;
        let connection = Arc::new(Connection {
            open_responses: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            last_io: AtomicU64::new(clock()),
            permit: Mutex::new(Some(permit)),
            task: Mutex::new(None),
        });
        registry.insert(id, connection.clone());
        let service = {
            let (endpoint, connection, local) = (endpoint.clone(), connection.clone(), local.clone());
            let remote = RemoteAddr(peer.into());
            hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let (endpoint, connection) = (endpoint.clone(), connection.clone());
                let request: poem::Request = (request, local.clone(), remote.clone(), poem::http::uri::Scheme::HTTP).into();
                connection.open_responses.fetch_add(1, Ordering::AcqRel);
                connection.requests.fetch_add(1, Ordering::AcqRel);
                async move {
                    let response = endpoint.get_response(request).await;
                    let response: hyper::Response<http_body_util::combinators::BoxBody<Bytes, io::Error>> = response.into();
                    // The response is open until its body is fully sent (or dropped).
                    Ok::<_, std::convert::Infallible>(response.map(|body| ResponseBody { body, connection }.boxed()))
                }
            })
        };
        let io = TokioIo::new(TrackedIo {
            inner: tcp,
            connection: connection.clone(),
            clock: Box::new(clock),
            heads: 0,
            rewrite: Rewrite::None,
        });
        let serving = graceful.watch(builder.serve_connection(io, service).into_owned());
        let registry_of_task = registry.clone();
        let task = tokio::spawn(async move {
            if let Err(error) = serving.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            registry_of_task.remove(id);
        });
        *connection.task.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(task.abort_handle());
    }
    drop(listener);
    if tokio::time::timeout(settings.drain, graceful.shutdown()).await.is_err() {
        tracing::warn!(drain_s = settings.drain.as_secs(), "requests still in flight at the end of the drain were cut");
    }
    Ok(())
}

/// `EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM` (Linux numbers): accepting again
/// at once would spin.
fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// Exponential back-off from 10 ms to 1 s.
#[derive(Debug, Default)]
struct Backoff(u32);

impl Backoff {
    fn next(&mut self) -> Duration {
        let wait = Duration::from_millis(10u64 << self.0.min(7)).min(Duration::from_secs(1));
        self.0 += 1;
        wait
    }

    fn reset(&mut self) {
        self.0 = 0;
    }
}

/// Answers 503 and closes, when every connection is busy.
fn shed(mut tcp: TcpStream, shedding: &Arc<Semaphore>) {
    let Ok(permit) = shedding.clone().try_acquire_owned() else { return };
    tokio::spawn(async move {
        let _permit = permit;
        let response = raw_problem(503, "El servidor está ocupado. Inténtalo de nuevo en unos segundos.");
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = tcp.write_all(&response).await;
            let _ = tcp.shutdown().await;
        })
        .await;
    });
}

/// A whole HTTP/1.1 problem response that closes the connection.
fn raw_problem(status: u16, detail: &str) -> Vec<u8> {
    let code = poem::http::StatusCode::from_u16(status).unwrap_or(poem::http::StatusCode::BAD_REQUEST);
    let reason = code.canonical_reason().unwrap_or("Error");
    let json = problem_json(code, detail);
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        json.len()
    )
    .into_bytes();
    out.extend_from_slice(json.as_bytes());
    out
}

/// The body every problem has (see [`Problem`]).
fn problem_json(code: poem::http::StatusCode, detail: &str) -> String {
    use poem_openapi::types::ToJSON;
    Problem::new(code, detail).0.to_json().map(|v| v.to_string()).unwrap_or_default()
}

/// The detail of the errors hyper answers by itself.
fn hyper_error_detail(status: u16) -> &'static str {
    match status {
        431 => "Las cabeceras de la solicitud son demasiado grandes.",
        408 => "El cliente tardó demasiado en enviar la solicitud.",
        505 => "Versión de HTTP no admitida.",
        _ => "La solicitud HTTP no es válida.",
    }
}

/// A response body that tells its connection when it has been sent.
struct ResponseBody {
    body: http_body_util::combinators::BoxBody<Bytes, io::Error>,
    connection: Arc<Connection>,
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.connection.open_responses.fetch_sub(1, Ordering::AcqRel);
    }
}

impl hyper::body::Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<hyper::body::Frame<Bytes>, io::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// What a connection writes instead of what hyper asked.
enum Rewrite {
    None,
    /// Our problem response, and how much of it is out.
    Writing(Vec<u8>, usize),
    /// Sent: anything more hyper writes for its own error is dropped.
    Done,
}

/// The socket, noting when bytes move (for choosing whom to evict) and
/// putting a problem body on the errors hyper answers by itself.
struct TrackedIo {
    inner: TcpStream,
    connection: Arc<Connection>,
    clock: Box<dyn Fn() -> u64 + Send + Sync>,
    /// Response heads written so far.
    heads: u64,
    rewrite: Rewrite,
}

impl TrackedIo {
    fn touch(&self) {
        self.connection.last_io.store((self.clock)(), Ordering::Release);
    }
}

impl AsyncRead for TrackedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        result
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // HTTP/1.1 answers one request at a time, each with one head: a head
        // beyond the requests that reached the service is one hyper made
        // itself (for a head it could not parse).
        if matches!(self.rewrite, Rewrite::None) && buf.starts_with(b"HTTP/1.1 ") {
            if self.heads < self.connection.requests.load(Ordering::Acquire) {
                self.heads += 1;
            } else if let Some(status) = buf
                .get(9..12)
                .and_then(|s| std::str::from_utf8(s).ok())
                .and_then(|s| s.parse::<u16>().ok())
                .filter(|s| (400..500).contains(s))
            {
                self.rewrite = Rewrite::Writing(raw_problem(status, hyper_error_detail(status)), 0);
            }
        }
        let this = &mut *self;
        match &mut this.rewrite {
            Rewrite::None => {
                let result = Pin::new(&mut this.inner).poll_write(cx, buf);
                if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
                    this.touch();
                }
                result
            }
            Rewrite::Writing(response, written) => {
                while *written < response.len() {
                    match Pin::new(&mut this.inner).poll_write(cx, &response[*written..]) {
                        Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                        Poll::Ready(Ok(n)) => *written += n,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                this.rewrite = Rewrite::Done;
                Poll::Ready(Ok(buf.len()))
            }
            Rewrite::Done => Poll::Ready(Ok(buf.len())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_under_the_file_limit() {
        assert_eq!(connection_cap(200, 64), 68);
        assert_eq!(connection_cap(1024, 64), 480);
        assert_eq!(connection_cap(10, 64), 1);
        assert!(open_files_limit().is_some_and(|n| n > 0), "Linux says");
    }

    #[test]
    fn back_off_doubles_up_to_a_second_and_starts_over() {
        let mut backoff = Backoff::default();
        let waits: Vec<u64> = (0..9).map(|_| backoff.next().as_millis() as u64).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.next(), Duration::from_millis(10));
    }

    #[test]
    fn a_raw_problem_is_a_whole_response_that_closes() {
        let text = String::from_utf8(raw_problem(431, hyper_error_detail(431))).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{head}");
        assert!(head.contains("content-type: application/problem+json") && head.contains("connection: close"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            (json["status"].as_u64(), json["detail"].as_str()),
            (Some(431), Some("Las cabeceras de la solicitud son demasiado grandes."))
        );
    }
}
