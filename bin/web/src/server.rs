//! The HTTP/1.1 server loop in front of the poem endpoint, built on hyper
//! directly for what poem's own server does not give (measured in
//! docs/reliability.md). No client can hold the server:
//!
//! - **a deadline on every request head** (`ANB_HEADER_TIMEOUT`), which also
//!   closes keep-alive connections idle that long;
//! - **a cap on connections** below the open-files limit. When it is reached,
//!   a place is made by closing the connection that has waited longest for
//!   its request head (idle keep-alive, or a head dribbled a byte at a time:
//!   under pressure the header deadline is in effect [`EVICTABLE_AFTER`]),
//!   else the one whose client has stopped reading its response longest;
//!   only when every connection is busy is a newcomer answered 503 and
//!   closed;
//! - **a share per client address** (`ANB_MAX_CONNECTIONS_PER_CLIENT`; IPv6
//!   counted per /64; off behind a balancer, whose address every request
//!   shares): past it a newcomer is answered 429;
//! - **a send deadline** (`ANB_SEND_TIMEOUT`): a client that takes less than
//!   [`MIN_SEND_PROGRESS`] bytes of a response in that long is cut;
//! - **event streams have places of their own** (`text/event-stream`
//!   responses give back their connection's place and take one of
//!   `max_streams`), so streams cannot starve the API;
//! - **back-off on `EMFILE`** and its kin instead of a spinning accept loop;
//! - **errors hyper answers itself** (a head too large, 431; a malformed
//!   one, 400) carry a problem+json body like every other error;
//! - **overload leaves a trace**: every refusal and forced close is counted
//!   ([`names::HTTP_CONNECTIONS_REFUSED`], [`names::HTTP_CONNECTIONS_CLOSED`])
//!   and logged at most every [`OVERLOAD_REPORT`], with counts;
//! - graceful shutdown: stop accepting, let requests in flight finish within
//!   the drain time.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anb_metrics::names;
use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use poem::endpoint::BoxEndpoint;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Endpoint, IntoResponse};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;

use crate::problem::Problem;
use crate::slots::{Slot, Slots};

/// How the server treats its connections.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Longest wait for a request's head, and for the next request on an
    /// idle keep-alive connection.
    pub header_timeout: Duration,
    /// Most connections open at once (event streams aside).
    pub max_connections: usize,
    /// Most event streams open at once.
    pub max_streams: usize,
    /// Most connections from one client address; `None` behind a balancer.
    pub per_client: Option<usize>,
    /// Longest a client may take to read [`MIN_SEND_PROGRESS`] bytes of a
    /// response it is being sent.
    pub send_timeout: Duration,
    /// How long requests in flight may take to finish at shutdown.
    pub drain: Duration,
}

/// Largest request head accepted: 431 past it (hyper's buffer limit, and
/// an exact count of the head's bytes in [`TrackedIo`], since hyper's
/// buffer may grow a read beyond its limit before it checks).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Connections answered 503 or 429 at once, at most; past it they are just closed.
const MAX_SHEDDING: usize = 64;
/// A connection waiting this long for a request head (idle, or its head
/// still coming) may be closed to make room for a new one.
pub const EVICTABLE_AFTER: Duration = Duration::from_millis(500);
/// A connection whose client has not read its response for this long may be
/// closed to make room for a new one.
pub const STALLED_EVICTABLE: Duration = Duration::from_millis(500);
/// Bytes of a response a client must take within the send timeout.
pub const MIN_SEND_PROGRESS: u64 = 64 * 1024;
/// How often refusals and forced closes are logged, at most.
pub const OVERLOAD_REPORT: Duration = Duration::from_secs(10);
/// "Not now" for the times a connection keeps.
const NEVER: u64 = u64::MAX;

/// The open-files limit of this process (`ulimit -n`), when Linux says.
pub fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The connection cap that keeps the server below its open-files limit,
/// with the event streams' places (half as many, [`stream_cap`]) beside it:
/// each connection may hold two descriptors (its socket and an upload's
/// temporary file), each stream one, and `reserve` are kept for the
/// database, the workers and the rest.
pub fn connection_cap(open_files: usize, reserve: usize) -> usize {
    (open_files.saturating_sub(reserve) * 2 / 5).max(1)
}

/// The event streams' places beside `connections`.
pub fn stream_cap(connections: usize) -> usize {
    (connections / 2).max(1)
}

/// The address a client's connections are counted under: IPv4 as it is,
/// IPv6 by its /64 (what one home or phone is given).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// What holds a connection's place: a permit under the cap (or, once it is
/// an event stream, under the streams' cap) and its client's share.
#[derive(Debug, Default)]
struct Place {
    permit: Option<OwnedSemaphorePermit>,
    /// Held for its drop, which gives the client's share back.
    _client: Option<Slot<IpAddr>>,
}

/// What the server knows of one connection. Times are in ms since the
/// server started.
#[derive(Debug)]
struct Connection {
    epoch: Instant,
    /// The client address it counts under ([`client_key`]).
    client: IpAddr,
    /// Responses begun (service entered) and not yet fully sent.
    open_responses: AtomicUsize,
    /// Requests that reached the service: each is answered by one response
    /// head of ours.
    requests: AtomicU64,
    /// When bytes last came from the client.
    last_read: AtomicU64,
    /// Since when it has waited for a request head; [`NEVER`] while a
    /// request is being answered.
    waiting_since: AtomicU64,
    /// Since when its client has been slow to take a response; [`NEVER`]
    /// while it keeps up.
    stalled_since: AtomicU64,
    place: Mutex<Place>,
    /// Whether it holds a place among the event streams (not the cap's).
    streaming: AtomicBool,
    task: Mutex<Option<AbortHandle>>,
}

impl Connection {
    fn now(&self) -> u64 {
        millis_since(self.epoch)
    }

    /// Gives up its place and stops its task.
    fn close(&self) {
        *self.place.lock().unwrap_or_else(PoisonError::into_inner) = Place::default();
        if let Some(task) = self.task.lock().unwrap_or_else(PoisonError::into_inner).take() {
            task.abort();
        }
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Every open connection.
#[derive(Debug)]
struct Registry {
    epoch: Instant,
    connections: Mutex<HashMap<u64, Arc<Connection>>>,
}

impl Registry {
    /// Closes the connection that has waited longest for its request head,
    /// or whose client has stopped reading longest, if one has long enough:
    /// among `only`'s connections when given, else among those under the
    /// cap (an event stream's place is not the cap's); returns why it was
    /// closed (the `reason` of the metric).
    fn evict_one(&self, only: Option<IpAddr>) -> Option<&'static str> {
        let now = millis_since(self.epoch);
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let chosen = {
            let connections = self.connections.lock().unwrap_or_else(PoisonError::into_inner);
            connections
                .iter()
                .filter(|(_, c)| match only {
                    Some(client) => c.client == client,
                    None => !c.streaming.load(Ordering::Acquire),
                })
                .filter_map(|(id, c)| {
                    let waiting = c.waiting_since.load(Ordering::Acquire);
                    if waiting != NEVER && now.saturating_sub(waiting) >= ms(EVICTABLE_AFTER) {
                        let reason = if c.last_read.load(Ordering::Acquire) > waiting { "slow_head" } else { "idle" };
                        return Some((waiting, *id, c.clone(), reason));
                    }
                    let stalled = c.stalled_since.load(Ordering::Acquire);
                    (stalled != NEVER && now.saturating_sub(stalled) >= ms(STALLED_EVICTABLE))
                        .then(|| (stalled, *id, c.clone(), "stalled_write"))
                })
                .min_by_key(|(since, ..)| *since)
        };
        let (_, id, connection, reason) = chosen?;
        self.remove(id);
        connection.close();
        Some(reason)
    }

    fn insert(&self, id: u64, connection: Arc<Connection>) {
        self.connections.lock().unwrap_or_else(PoisonError::into_inner).insert(id, connection);
    }

    fn remove(&self, id: u64) {
        self.connections.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
    }
}

/// Refusals and forced closes since the last report: counted in the
/// metrics at once, logged together at most every [`OVERLOAD_REPORT`].
#[derive(Debug, Default)]
struct Overload {
    since_report: Mutex<BTreeMap<&'static str, u64>>,
}

impl Overload {
    fn refused(&self, reason: &'static str) {
        metrics::counter!(names::HTTP_CONNECTIONS_REFUSED, "reason" => reason).increment(1);
        self.note(reason);
    }

    fn closed(&self, reason: &'static str) {
        metrics::counter!(names::HTTP_CONNECTIONS_CLOSED, "reason" => reason).increment(1);
        self.note(reason);
    }

    fn note(&self, reason: &'static str) {
        *self.since_report.lock().unwrap_or_else(PoisonError::into_inner).entry(reason).or_default() += 1;
    }

    /// Logs what happened in each period that had anything.
    async fn report_every(self: Arc<Self>, period: Duration) {
        loop {
            tokio::time::sleep(period).await;
            let counts = std::mem::take(&mut *self.since_report.lock().unwrap_or_else(PoisonError::into_inner));
            if !counts.is_empty() {
                let counts: Vec<String> = counts.iter().map(|(reason, n)| format!("{reason}={n}")).collect();
                tracing::warn!(period_s = period.as_secs(), counts = %counts.join(" "), "connections refused or closed under load");
            }
        }
    }
}

/// Whether a response is an event stream.
fn is_event_stream<B>(response: &hyper::Response<B>) -> bool {
    response.headers().get(poem::http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
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
    let streams = Arc::new(Semaphore::new(settings.max_streams));
    let clients = settings.per_client.map(Slots::new);
    let shedding = Arc::new(Semaphore::new(MAX_SHEDDING));
    let registry = Arc::new(Registry { epoch: Instant::now(), connections: Mutex::default() });
    let overload = Arc::new(Overload::default());
    let reporter = tokio::spawn(overload.clone().report_every(OVERLOAD_REPORT));
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
        let key = client_key(peer.ip());
        let client = match &clients {
            None => None,
            // At its share, a client's own longest-waiting connection makes room first.
            Some(clients) => match clients.try_take(key).or_else(|| {
                let reason = registry.evict_one(Some(key))?;
                overload.closed(reason);
                clients.try_take(key)
            }) {
                Some(slot) => Some(slot),
                None => {
                    overload.refused("per_client");
                    let detail = "Hay demasiadas conexiones abiertas desde tu dirección. Cierra alguna e inténtalo de nuevo.";
                    refuse(tcp, &shedding, 429, detail);
                    continue;
                }
            },
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => match registry.evict_one(None) {
                Some(reason) => {
                    overload.closed(reason);
                    permits.clone().try_acquire_owned().ok()
                }
                None => None,
            },
        };
        let Some(permit) = permit else {
            overload.refused("full");
            refuse(tcp, &shedding, 503, "El servidor está ocupado. Inténtalo de nuevo en unos segundos.");
            continue;
        };
        next_id += 1;
        let id = next_id;
        let epoch = registry.epoch;
        let connection = Arc::new(Connection {
            epoch,
            client: key,
            open_responses: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            last_read: AtomicU64::new(millis_since(epoch)),
            waiting_since: AtomicU64::new(millis_since(epoch)),
            stalled_since: AtomicU64::new(NEVER),
            place: Mutex::new(Place { permit: Some(permit), _client: client }),
            streaming: AtomicBool::new(false),
            task: Mutex::new(None),
        });
        registry.insert(id, connection.clone());
        let service = {
            let (endpoint, connection, local, streams, overload) =
                (endpoint.clone(), connection.clone(), local.clone(), streams.clone(), overload.clone());
            let remote = RemoteAddr(peer.into());
            hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let (endpoint, connection, streams, overload) = (endpoint.clone(), connection.clone(), streams.clone(), overload.clone());
                // RFC 9112: a server answers 400 to an HTTP/1.1 request without Host.
                let no_host = request.version() == hyper::Version::HTTP_11 && !request.headers().contains_key(hyper::header::HOST);
                let request: poem::Request = (request, local.clone(), remote.clone(), poem::http::uri::Scheme::HTTP).into();
                connection.waiting_since.store(NEVER, Ordering::Release);
                connection.open_responses.fetch_add(1, Ordering::AcqRel);
                connection.requests.fetch_add(1, Ordering::AcqRel);
                async move {
                    let response = if no_host {
                        Problem::new(poem::http::StatusCode::BAD_REQUEST, "Falta la cabecera Host, obligatoria en HTTP/1.1.")
                            .into_response()
                    } else {
                        endpoint.get_response(request).await
                    };
                    let mut response: hyper::Response<BoxBody<Bytes, io::Error>> = response.into();
                    if is_event_stream(&response) {
                        response = stream_place(response, &connection, &streams, &overload);
                    }
                    // The response is open until its body is fully sent (or dropped).
                    Ok::<_, std::convert::Infallible>(response.map(|body| ResponseBody { body, connection }.boxed()))
                }
            })
        };
        let io = TokioIo::new(TrackedIo {
            inner: tcp,
            connection: connection.clone(),
            overload: overload.clone(),
            send_timeout: settings.send_timeout,
            stall: None,
            heads: 0,
            rewrite: Rewrite::None,
            head_bytes: 0,
            head_of: u64::MAX,
        });
        let serving = graceful.watch(builder.serve_connection(io, service).into_owned());
        let registry_of_task = registry.clone();
        let task = tokio::spawn(async move {
            if let Err(error) = serving.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            registry_of_task.remove(id);
        });
        *connection.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task.abort_handle());
    }
    drop(listener);
    if tokio::time::timeout(settings.drain, graceful.shutdown()).await.is_err() {
        tracing::warn!(drain_s = settings.drain.as_secs(), "requests still in flight at the end of the drain were cut");
    }
    reporter.abort();
    Ok(())
}

/// An event stream takes a place among the streams and gives back its
/// connection's, which closes when the stream ends; with every stream place
/// taken it is answered 503 instead.
fn stream_place(
    mut response: hyper::Response<BoxBody<Bytes, io::Error>>,
    connection: &Connection,
    streams: &Arc<Semaphore>,
    overload: &Overload,
) -> hyper::Response<BoxBody<Bytes, io::Error>> {
    let Ok(place) = streams.clone().try_acquire_owned() else {
        overload.refused("streams_full");
        let detail = "Hay demasiadas transmisiones de estado abiertas. Consulta el video de nuevo en unos segundos.";
        return Problem::new(poem::http::StatusCode::SERVICE_UNAVAILABLE, detail).into_response().into();
    };
    connection.place.lock().unwrap_or_else(PoisonError::into_inner).permit = Some(place);
    connection.streaming.store(true, Ordering::Release);
    response.headers_mut().insert(poem::http::header::CONNECTION, poem::http::HeaderValue::from_static("close"));
    response
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

/// Answers `status` with `detail` and closes: a newcomer there is no place for.
fn refuse(mut tcp: TcpStream, shedding: &Arc<Semaphore>, status: u16, detail: &'static str) {
    let Ok(permit) = shedding.clone().try_acquire_owned() else { return };
    tokio::spawn(async move {
        let _permit = permit;
        let response = raw_problem(status, detail);
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
    // A busy server or a client over its share: come back in a moment.
    let retry = match status {
        503 => format!("retry-after: {}\r\n", crate::problem::RETRY_UNAVAILABLE_AFTER),
        429 => "retry-after: 1\r\n".to_owned(),
        _ => String::new(),
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\n{retry}connection: close\r\n\r\n",
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
        // hyper has taken the last frame; it is sent when the socket's
        // flush completes (`TrackedIo::poll_flush`).
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

/// A response its client is slow to take: since when, and how much of it
/// the client has taken since.
struct Stall {
    deadline: Pin<Box<tokio::time::Sleep>>,
    taken: u64,
}

/// The socket, noting when the client sends (for choosing whom to evict),
/// cutting a client that does not take its response (the send deadline),
/// and putting a problem body on the errors hyper answers by itself.
struct TrackedIo {
    inner: TcpStream,
    connection: Arc<Connection>,
    overload: Arc<Overload>,
    send_timeout: Duration,
    /// Set when a write could not go out, cleared once the client has taken
    /// [`MIN_SEND_PROGRESS`] bytes (or sent a new request).
    stall: Option<Stall>,
    /// Response heads written so far.
    heads: u64,
    rewrite: Rewrite,
    /// Bytes read of the head being waited for, and which request's head
    /// it is (the count of requests served before it).
    head_bytes: usize,
    head_of: u64,
}

impl TrackedIo {
    fn read_some(&mut self) {
        let now = self.connection.now();
        self.connection.last_read.store(now, Ordering::Release);
        // A new request's head coming while no response is open.
        if self.connection.open_responses.load(Ordering::Acquire) == 0 {
            let _ = self.connection.waiting_since.compare_exchange(NEVER, now, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Everything hyper had to send is out: the client keeps up, and with
    /// no response open the connection waits for its next head.
    fn flushed(&mut self) {
        self.keeps_up();
        if self.connection.open_responses.load(Ordering::Acquire) == 0 {
            let now = self.connection.now();
            let _ = self.connection.waiting_since.compare_exchange(NEVER, now, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    fn keeps_up(&mut self) {
        self.stall = None;
        self.connection.stalled_since.store(NEVER, Ordering::Release);
    }

    fn wrote(&mut self, n: usize) {
        if let Some(stall) = &mut self.stall {
            stall.taken += n as u64;
            if stall.taken >= MIN_SEND_PROGRESS {
                self.keeps_up();
            } else if n > 0 {
                // Evictable only when it takes nothing: a slow reader is not a stalled one.
                self.connection.stalled_since.store(self.connection.now(), Ordering::Release);
            }
        }
    }

    /// A write could not go out: starts the send deadline, or ends the
    /// connection when it has passed.
    fn blocked(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.stall.is_none() {
            self.connection.stalled_since.store(self.connection.now(), Ordering::Release);
            self.stall = Some(Stall { deadline: Box::pin(tokio::time::sleep(self.send_timeout)), taken: 0 });
        }
        let Some(stall) = &mut self.stall else { return Ok(()) };
        if stall.deadline.as_mut().poll(cx).is_ready() {
            self.overload.closed("send_timeout");
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the client took too little of its response for too long"));
        }
        Ok(())
    }

    /// Writes `buf`, keeping the send deadline.
    fn write_tracked(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                self.wrote(n);
                Poll::Ready(Ok(n))
            }
            Poll::Pending => match self.blocked(cx) {
                Ok(()) => Poll::Pending,
                Err(error) => Poll::Ready(Err(error)),
            },
            other => other,
        }
    }
}

impl AsyncRead for TrackedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        // While a head is awaited, every byte read is the head's (hyper
        // dispatches a request as soon as its head is whole): at most
        // MAX_HEAD_BYTES are read, and a read after that means the head is
        // too large.
        let awaited = self.connection.waiting_since.load(Ordering::Acquire) != NEVER;
        if awaited {
            let served = self.connection.requests.load(Ordering::Acquire);
            if self.head_of != served {
                (self.head_of, self.head_bytes) = (served, 0);
            }
            if self.head_bytes >= MAX_HEAD_BYTES {
                let _ = self.inner.try_write(&raw_problem(431, hyper_error_detail(431)));
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "request head over the limit")));
            }
        }
        let allowed = if awaited { MAX_HEAD_BYTES - self.head_bytes } else { usize::MAX };
        let result = if buf.remaining() <= allowed {
            let before = buf.filled().len();
            let result = Pin::new(&mut self.inner).poll_read(cx, buf);
            result.map_ok(|()| buf.filled().len() - before)
        } else {
            let mut limited = vec![0u8; allowed];
            let mut part = ReadBuf::new(&mut limited);
            let result = Pin::new(&mut self.inner).poll_read(cx, &mut part);
            let read = part.filled().len();
            buf.put_slice(&limited[..read]);
            result.map_ok(|()| read)
        };
        match result {
            Poll::Ready(Ok(read)) => {
                if read > 0 {
                    self.head_bytes += if awaited { read } else { 0 };
                    self.read_some();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // HTTP/1.1 answers one request at a time, each with one head: a head
        // beyond the requests that reached the service is one hyper made
        // itself (for a head it could not parse).
        // An interim head (`100 Continue`, for a client that sent `Expect`)
        // precedes the response and is not one.
        let interim = buf.get(9) == Some(&b'1');
        if matches!(self.rewrite, Rewrite::None) && buf.starts_with(b"HTTP/1.1 ") && !interim {
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
        match std::mem::replace(&mut this.rewrite, Rewrite::Done) {
            Rewrite::None => {
                this.rewrite = Rewrite::None;
                this.write_tracked(cx, buf)
            }
            Rewrite::Writing(response, mut written) => {
                while written < response.len() {
                    match this.write_tracked(cx, &response[written..]) {
                        Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                        Poll::Ready(Ok(n)) => written += n,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => {
                            this.rewrite = Rewrite::Writing(response, written);
                            return Poll::Pending;
                        }
                    }
                }
                Poll::Ready(Ok(buf.len()))
            }
            Rewrite::Done => Poll::Ready(Ok(buf.len())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(result, Poll::Ready(Ok(()))) {
            self.flushed();
        }
        result
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
        assert_eq!(connection_cap(200, 64), 54);
        assert_eq!(connection_cap(1024, 64), 384);
        assert_eq!(connection_cap(10, 64), 1);
        // Two descriptors per connection and one per stream stay under the budget.
        for (open_files, reserve) in [(200, 64), (256, 74), (1024, 64), (65_536, 74)] {
            let (connections, streams) = (connection_cap(open_files, reserve), stream_cap(connection_cap(open_files, reserve)));
            assert!(2 * connections + streams <= open_files - reserve, "{open_files}: {connections} + {streams}");
        }
        assert!(open_files_limit().is_some_and(|n| n > 0), "Linux says");
    }

    #[test]
    fn clients_are_counted_by_address_and_ipv6_by_its_64() {
        let key = |s: &str| client_key(s.parse().unwrap()).to_string();
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7", "an IPv4 client on a dual-stack socket");
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"), "one /64, one client");
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
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
