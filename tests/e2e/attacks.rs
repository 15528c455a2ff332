//! Round three of the attacks (docs/reliability.md): clients that try to
//! hold a real server whose open-files limit is 256 (`ulimit -n 256`: a cap
//! of 72 connections and 36 event streams). Each attacker connects from an
//! address of its own (127.x.y.z; Linux answers the whole 127/8), as a
//! botnet would, while health is probed from 127.0.0.1 on a new connection
//! every 200 ms; each test prints the figure the table quotes
//! (`cargo test -p anb-e2e --test e2e attacks -- --nocapture`).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anb_e2e::{Clips, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const OPEN_FILES: u32 = 256;

fn addr(app: &TestApp) -> SocketAddr {
    app.base.trim_start_matches("http://").parse().unwrap()
}

/// The `n`-th attacker's own address in `block`.
fn attacker(block: u8, n: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, block, (n / 200) as u8, (n % 200 + 1) as u8)
}

/// A connection from `source`, with a receive buffer of `buffer` bytes when
/// given (a client that reads nothing then holds the server's data sooner).
async fn connect_from(source: Ipv4Addr, to: SocketAddr, buffer: Option<u32>) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(size) = buffer {
        socket.set_recv_buffer_size(size)?;
    }
    socket.bind(SocketAddr::new(source.into(), 0))?;
    socket.connect(to).await
}

/// Whether health answers 200 within 2 s on a new connection.
async fn health(to: SocketAddr) -> bool {
    let probe = async {
        let mut stream = TcpStream::connect(to).await.ok()?;
        stream.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        Some(answer.starts_with(b"HTTP/1.1 200"))
    };
    tokio::time::timeout(Duration::from_secs(2), probe).await.ok().flatten().unwrap_or(false)
}

/// Probes health every 200 ms for `span`: (answered, probes).
async fn probe_health(to: SocketAddr, span: Duration) -> (usize, usize) {
    let started = Instant::now();
    let (mut answered, mut probes) = (0, 0);
    let mut missed = Vec::new();
    while started.elapsed() < span {
        probes += 1;
        let at = started.elapsed().as_secs_f64();
        if health(to).await {
            answered += 1;
        } else {
            missed.push(format!("{at:.1}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if !missed.is_empty() {
        println!("attacks: probes missed at {} s into the probing", missed.join(", "));
    }
    (answered, probes)
}

fn assert_health_held(attack: &str, (answered, probes): (usize, usize)) {
    assert!(answered * 10 >= probes * 9, "{attack}: health answered {answered} of {probes} probes");
}

/// The sum of a counter's samples whose labels contain `label`.
async fn counter(app: &TestApp, name: &str, label: &str) -> f64 {
    let text = reqwest::get(app.metrics_url()).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |sum, n| sum + n)
}

/// The status code of the answer that starts on `stream`, within `limit`.
async fn status_of(stream: &mut (impl AsyncReadExt + Unpin), limit: Duration) -> Option<u16> {
    let mut head = [0u8; 12];
    tokio::time::timeout(limit, stream.read_exact(&mut head)).await.ok()?.ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

#[tokio::test]
async fn slow_readers_of_a_large_file_cannot_hold_the_server() {
    let clips = Clips::get().await;
    let app = TestApp::spawn_with_open_files(0, &[("ANB_SEND_TIMEOUT", "12")], OPEN_FILES).await;
    let token = app.player("reader@example.com", "Rita", "Cali").await;
    let id = app.upload_video(&token, "Grande", &clips.path("valid.mp4")).await;
    let (_, detail) = app.get(&format!("/api/videos/{id}"), Some(&token)).await;
    let link = detail["original_url"].as_str().unwrap();
    let path = link[link.find("/files/").unwrap()..].to_owned();
    let size = std::fs::metadata(clips.path("valid.mp4")).unwrap().len();
    assert!(size > 1 << 20, "a file larger than the socket buffers: {size} bytes");
    let to = addr(&app);

    // 95 clients ask for the file and never read more than its status
    // line; one refused (the places are full) asks again until it has one.
    let placed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let readers: Vec<_> = (0..95)
        .map(|n| {
            let (path, placed) = (path.clone(), placed.clone());
            tokio::spawn(async move {
                loop {
                    let Ok(mut stream) = connect_from(attacker(1, n), to, Some(4096)).await else { continue };
                    if stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.is_err() {
                        continue;
                    }
                    if status_of(&mut stream, Duration::from_secs(2)).await == Some(200) {
                        placed.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_secs(40)).await;
                        return Some(stream);
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            })
        })
        .collect();
    // Probed once every reader has had a place (some were evicted by those
    // asking again) and the places are held by readers (their first half
    // second of stalling is theirs).
    let started = Instant::now();
    while placed.load(Ordering::Relaxed) < 95 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let answered = probe_health(to, Duration::from_secs(8)).await;
    // The send deadline (12 s here) cuts the readers still held.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let stalled = counter(&app, "http_connections_closed_total", "reason=\"stalled_write\"").await;
    let timed_out = counter(&app, "http_connections_closed_total", "reason=\"send_timeout\"").await;
    let idle = counter(&app, "http_connections_closed_total", "reason=\"idle\"").await;
    let refused = counter(&app, "http_connections_refused_total", "reason=\"full\"").await;
    println!(
        "attacks: 95 slow readers of a {:.1} MB file, open files {OPEN_FILES}: health {}/{}; {stalled} evicted stalled, {timed_out} cut at the send deadline (12 s), {idle} idle evicted, {refused} refused full",
        size as f64 / 1e6,
        answered.0,
        answered.1
    );
    assert_health_held("slow readers", answered);
    assert!(stalled > 0.0, "readers that take nothing make room when the places are full");
    assert!(timed_out > 0.0, "the send deadline cuts a client that takes nothing");
    assert!(app.log().contains("connections refused or closed under load"), "the attack leaves a trace in the log");
    readers.iter().for_each(tokio::task::JoinHandle::abort);
}

#[tokio::test]
async fn dribbled_heads_cannot_hold_the_server_and_one_address_has_its_share() {
    let app = TestApp::spawn_with_open_files(0, &[], OPEN_FILES).await;
    let to = addr(&app);
    let stop = Arc::new(AtomicBool::new(false));
    // 95 clients send a header byte every 0.3 s (never idle, never done),
    // and connect again whenever they are closed.
    let dribblers: Vec<_> = (0..95)
        .map(|n| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut connections = 0;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut stream) = connect_from(attacker(2, n), to, None).await else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    connections += 1;
                    for byte in b"GET /api/health HTTP/1.1\r\nX-Slow: ".iter().chain(std::iter::repeat(&b'a')) {
                        if stop.load(Ordering::Relaxed) || stream.write_all(&[*byte]).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                }
                connections
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let answered = probe_health(to, Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);
    let mut connections = 0;
    for dribbler in dribblers {
        connections += dribbler.await.unwrap();
    }
    let evicted = counter(&app, "http_connections_closed_total", "reason=\"slow_head\"").await;
    println!(
        "attacks: 95 dribbled heads (a byte every 0.3 s, reconnecting), open files {OPEN_FILES}: health {}/{}; {connections} attacker connections, {evicted} evicted as slowest heads",
        answered.0, answered.1
    );
    assert_health_held("dribbled heads", answered);
    assert!(evicted > 0.0);

    // One address opens 30 connections at once: past its share, 429.
    let log = app.log();
    let share: usize =
        log.split("per_client=Some(").nth(1).and_then(|r| r.split(')').next()).and_then(|n| n.parse().ok()).expect("the share is logged");
    let mut opened = Vec::new();
    for _ in 0..30 {
        opened.push(connect_from(Ipv4Addr::new(127, 3, 0, 1), to, None).await.unwrap());
    }
    let mut refused = 0;
    for stream in &mut opened {
        if status_of(stream, Duration::from_millis(300)).await == Some(429) {
            refused += 1;
        }
    }
    println!("attacks: one address opened 30 connections: {refused} answered 429 (its share is {share})");
    assert_eq!(refused, 30 - share, "all but the address's share are refused");
}

#[tokio::test]
async fn slow_upload_fields_hold_no_more_than_the_accounts_share_and_are_cut() {
    let app = TestApp::spawn_with_open_files(0, &[], OPEN_FILES).await;
    let token = app.player("slowpoke@example.com", "Sol", "Cali").await;
    let to = addr(&app);
    // 95 uploads of one account send their title a byte every 2 s.
    let uploads: Vec<_> = (0..95)
        .map(|n| {
            let token = token.clone();
            tokio::spawn(async move {
                let stream = connect_from(attacker(3, n), to, None).await.unwrap();
                let (mut read, mut write) = stream.into_split();
                let head = format!(
                    "POST /api/videos/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
                     Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n\
                     --b\r\ncontent-disposition: form-data; name=\"title\"\r\n\r\n"
                );
                let started = Instant::now();
                let dribble = tokio::spawn(async move {
                    if write.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    while write.write_all(b"a").await.is_ok() {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                });
                let status = status_of(&mut read, Duration::from_secs(25)).await;
                dribble.abort();
                (status, started.elapsed().as_secs_f64())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let answered = probe_health(to, Duration::from_secs(8)).await;
    let mut answers = Vec::new();
    for upload in uploads {
        answers.push(upload.await.unwrap());
    }
    let refused = answers.iter().filter(|(status, _)| *status == Some(429)).count();
    // Those that found every place taken by heads just sent were refused 503 at once.
    let full = answers.iter().filter(|(status, t)| *status == Some(503) && *t < 1.0).count();
    let cut: Vec<f64> = answers.iter().filter(|(status, _)| *status == Some(408)).map(|(_, t)| (t * 10.0).round() / 10.0).collect();
    println!(
        "attacks: 95 uploads of one account with a title a byte every 2 s, open files {OPEN_FILES}: health {}/{}; {refused} refused 429, {full} refused 503 (places full), {} cut 408 after {cut:?} s",
        answered.0,
        answered.1,
        cut.len()
    );
    assert_health_held("slow upload fields", answered);
    assert_eq!((refused + full, cut.len()), (93, 2), "two uploads per account, the rest refused at once: {answers:?}");
    assert!(cut.iter().all(|t| *t < 15.0), "the slow ones are cut after the grace time and window: {cut:?}");
}

/// Opens an event stream of video `id` from `source`; its status, and the
/// stream when it is 200.
async fn open_stream(to: SocketAddr, source: Ipv4Addr, token: &str, id: i64) -> (Option<u16>, Option<TcpStream>) {
    let Ok(mut stream) = connect_from(source, to, None).await else { return (None, None) };
    let head = format!("GET /api/videos/{id}/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n");
    if stream.write_all(head.as_bytes()).await.is_err() {
        return (None, None);
    }
    let status = status_of(&mut stream, Duration::from_secs(5)).await;
    (status, (status == Some(200)).then_some(stream))
}

#[tokio::test]
async fn event_streams_have_places_of_their_own_and_a_share_per_account() {
    let clips = Clips::get().await;
    for (per_account, want_open) in [("4", 4), ("1000", 36)] {
        let app = TestApp::spawn_with_open_files(0, &[("ANB_STREAMS_PER_ACCOUNT", per_account)], OPEN_FILES).await;
        let token = app.player("watcher@example.com", "Wanda", "Cali").await;
        let id = app.upload_video(&token, "Pendiente", &clips.path("light.mp4")).await;
        let to = addr(&app);
        // One pending video, 91 streams of its owner.
        let mut open = Vec::new();
        let mut statuses = std::collections::BTreeMap::new();
        for n in 0..91 {
            let (status, stream) = open_stream(to, attacker(4, n), &token, id).await;
            *statuses.entry(status).or_insert(0) += 1;
            open.extend(stream);
        }
        let answered = probe_health(to, Duration::from_secs(4)).await;
        println!(
            "attacks: 91 event streams of one account (ANB_STREAMS_PER_ACCOUNT={per_account}), open files {OPEN_FILES}: {} open, answers {statuses:?}; health {}/{}",
            open.len(),
            answered.0,
            answered.1
        );
        assert_eq!(open.len(), want_open, "{statuses:?}");
        assert_health_held("event streams", answered);
    }
}

#[tokio::test]
async fn at_shutdown_200_event_streams_end_at_once() {
    let clips = Clips::get().await;
    let mut app = TestApp::spawn(0, &[("ANB_STREAMS_PER_ACCOUNT", "1000")]).await;
    let token = app.player("crowd@example.com", "Cora", "Cali").await;
    let id = app.upload_video(&token, "Pendiente", &clips.path("light.mp4")).await;
    let to = addr(&app);
    let mut streams = Vec::new();
    for n in 0..200 {
        let (status, stream) = open_stream(to, attacker(5, n), &token, id).await;
        assert_eq!(status, Some(200), "stream {n}");
        streams.push(stream.unwrap());
    }
    let started = Instant::now();
    assert!(app.terminate().success());
    let took = started.elapsed();
    let mut last_events = 0;
    for stream in &mut streams {
        let mut text = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut text)).await;
        let text = String::from_utf8_lossy(&text);
        // The first event, then the last one sent at shutdown.
        last_events += usize::from(text.matches("data:").count() >= 2);
    }
    println!(
        "attacks: SIGTERM with 200 event streams open: stopped in {:.2} s; {last_events} streams got a last event",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(2), "no drain spent waiting on streams: {took:?}");
    assert_eq!(last_events, 200);
}
