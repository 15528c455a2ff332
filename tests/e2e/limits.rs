//! Resource limits of the real server: slow and idle clients, too many
//! connections for the open-files limit, oversized request heads, and the
//! memory one request can take. Each prints the figure docs/reliability.md
//! quotes (`cargo test -p anb-e2e --test e2e limits -- --nocapture`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anb_e2e::TestApp;

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Seconds from `started` until the server closes `stream` (reads return
/// 0 or fail), waiting at most `limit`; `None` when it is still open then.
fn closed_within(stream: &mut TcpStream, started: Instant, limit: Duration) -> Option<f64> {
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed().as_secs_f64()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return Some(started.elapsed().as_secs_f64()),
        }
    }
    None
}

/// Whether the server still holds `stream` open (a read would wait).
fn is_open(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let open = matches!(stream.read(&mut [0u8; 64]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).unwrap();
    open
}

/// The status line and body of the whole answer on `stream`.
fn read_answer(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn slow_and_idle_clients_are_closed_at_the_header_deadline() {
    let app = TestApp::spawn(0, &[("ANB_HEADER_TIMEOUT", "2")]).await;
    let addr = addr(&app);

    let opened = Instant::now();
    let mut silent = TcpStream::connect(&addr).unwrap();
    let mut half = TcpStream::connect(&addr).unwrap();
    half.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200", "a keep-alive request is answered");
    // One header byte every 400 ms: never quiet for long, never done.
    let dribble_addr = addr.clone();
    let dribbler = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(dribble_addr).unwrap();
        let started = Instant::now();
        for byte in b"GET /api/health HTTP/1.1\r\nX-Slow: ".iter().chain(std::iter::repeat(&b'a')) {
            if stream.write_all(&[*byte]).is_err() || started.elapsed() > Duration::from_secs(15) {
                break;
            }
            std::thread::sleep(Duration::from_millis(400));
        }
        started.elapsed().as_secs_f64()
    });

    let limit = Duration::from_secs(8);
    let closed = [&mut silent, &mut half, &mut idle].map(|s| closed_within(s, opened, limit).map(|t| (t * 10.0).round() / 10.0));
    let dribbled = dribbler.join().unwrap();
    println!(
        "limits: header timeout 2 s: closed after {closed:?} s (silent, half a head, idle keep-alive), a header dribbled a byte every 0.4 s after {dribbled:.1} s"
    );
    assert!(closed.iter().all(Option::is_some), "every slow client is closed: {closed:?}");
    assert!(dribbled < 6.0, "a client dribbling its headers is closed too ({dribbled:.1} s)");
    assert_eq!(app.get("/api/health", None).await.0, 200, "the server serves on");
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn idle_connections_past_the_file_limit_neither_stop_health_nor_spin_the_server() {
    // 200 open files, as `ulimit -n 200`; the cap keeps connections below it.
    let app = TestApp::spawn_with_open_files(0, &[("ANB_HEADER_TIMEOUT", "30")], 200).await;
    let log = app.log();
    let cap: usize = log.split("max_connections=").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap();
    assert!(cap < 100, "the cap leaves room under 200 open files: {cap}");
    let addr = addr(&app);
    let mut idle: Vec<TcpStream> = (0..250).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(800)).await;

    let cpu_before = cpu_seconds(app.pid());
    let mut answered = 0;
    for _ in 0..20 {
        let started = Instant::now();
        let (status, _) = app.get("/api/health", None).await;
        assert_eq!(status, 200, "health answers with 250 idle sockets open");
        assert!(started.elapsed() < Duration::from_secs(2), "promptly: {:?}", started.elapsed());
        answered += 1;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = cpu_seconds(app.pid()) - cpu_before;
    let held = idle.iter_mut().map(is_open).filter(|open| *open).count();
    println!(
        "limits: open files 200 -> cap {cap} connections; 250 idle sockets opened: {held} held, the rest closed to make room; \
         health answered {answered}/20; server CPU {cpu:.2} s over those requests and 2 s more"
    );
    assert!(cpu < 1.0, "the accept loop does not spin: {cpu:.2} s of CPU");
    assert!(held <= cap, "no more connections than the cap: {held}");
    assert!(!app.log().contains("panicked"));
}

#[tokio::test]
async fn a_request_head_too_large_gets_a_problem_body() {
    let app = TestApp::spawn(0, &[]).await;
    let mut stream = TcpStream::connect(addr(&app)).unwrap();
    let huge = "a".repeat(100 * 1024);
    // As a network delivers it: in pieces (a head over 64 KiB is refused).
    for piece in format!("GET /api/health HTTP/1.1\r\nHost: x\r\nX-Huge: {huge}\r\n\r\n").as_bytes().chunks(8192) {
        if stream.write_all(piece).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let answer = read_answer(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 431"), "{}", &answer[..answer.len().min(300)]);
    assert!(answer.contains("content-type: application/problem+json"), "{answer}");
    assert!(answer.contains("\"status\":431") && answer.contains("demasiado grandes"), "{answer}");

    let mut stream = TcpStream::connect(addr(&app)).unwrap();
    stream.write_all(b"NOT A REQUEST\r\n\r\n").unwrap();
    let answer = read_answer(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 400") && answer.contains("\"status\":400"), "{answer}");

    // The limit is 64 KiB, to the byte: a head just under it is served, one just over refused, whatever the pieces.
    for (head_bytes, status) in [(64 * 1024, "200"), (64 * 1024 + 1, "431"), (66 * 1024, "431")] {
        let start = "GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: ";
        let pad = "a".repeat(head_bytes - start.len() - 4);
        let head = format!("{start}{pad}\r\n\r\n");
        assert_eq!(head.len(), head_bytes);
        let mut stream = TcpStream::connect(addr(&app)).unwrap();
        for piece in head.as_bytes().chunks(3000) {
            if stream.write_all(piece).is_err() {
                break;
            }
        }
        let answer = read_answer(&mut stream);
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "a head of {head_bytes} bytes: {}", &answer[..answer.len().min(200)]);
    }

    // HTTP/1.1 requires Host (RFC 9112).
    let mut stream = TcpStream::connect(addr(&app)).unwrap();
    stream.write_all(b"GET /api/health HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    let answer = read_answer(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 400") && answer.contains("Falta la cabecera Host"), "{answer}");
    assert_eq!(app.get("/api/health", None).await.0, 200);
}

#[tokio::test]
async fn oversized_preambles_and_headers_cost_no_memory() {
    // Four uploads of one account at once: past the default share of two.
    let app = TestApp::spawn(0, &[("ANB_UPLOADS_PER_ACCOUNT", "4")]).await;
    let token = app.player("mem@example.com", "Memo", "Cali").await;
    let pid = app.pid();
    let before = status_field(pid, "VmRSS:");
    // Four requests at once, each announcing 200 MB of multipart body that
    // is all preamble (or one endless part header), sent as fast as it goes.
    let attacks: Vec<_> = (0..4)
        .map(|n| {
            let (addr, token) = (addr(&app), token.clone());
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                let head = format!(
                    "POST /api/videos/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
                     Content-Type: multipart/form-data; boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n"
                );
                stream.write_all(head.as_bytes()).unwrap();
                if n % 2 == 1 {
                    let start = b"--b\r\ncontent-disposition: form-data; name=\"video_file\"; filename=\"a\"\r\nx-pad: ";
                    stream.write_all(format!("{:x}\r\n", start.len()).as_bytes()).unwrap();
                    stream.write_all(start).unwrap();
                    stream.write_all(b"\r\n").unwrap();
                }
                let chunk = vec![b'j'; 1 << 20];
                let mut sent = 0u64;
                while sent < 200 << 20 {
                    let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                    if stream.write_all(&framed).is_err() {
                        break;
                    }
                    sent += chunk.len() as u64;
                }
                (sent, read_answer(&mut stream))
            })
        })
        .collect();
    let results: Vec<(u64, String)> = attacks.into_iter().map(|a| a.join().unwrap()).collect();
    let peak = status_field(pid, "VmHWM:");
    println!(
        "limits: 4 x 200 MB of multipart preamble/part headers at once: server RSS {} MB before, peak {} MB; sent before refusal: {:?} MB",
        before / 1024,
        peak / 1024,
        results.iter().map(|(sent, _)| sent >> 20).collect::<Vec<_>>()
    );
    for (_, answer) in &results {
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 400") || answer.starts_with("HTTP/1.1 413"), "{answer}");
    }
    assert!(peak < 100 * 1024, "peak RSS {} MB", peak / 1024);
    assert!(app.files_in("tmp").is_empty(), "no upload left behind");
}

#[tokio::test]
async fn a_client_that_expects_100_continue_gets_the_real_reason_of_a_refusal() {
    let app = TestApp::spawn(0, &[]).await;
    let token = app.player("curl@example.com", "Curl", "Cali").await;
    let body = "--b\r\ncontent-disposition: form-data; name=\"title\"\r\n\r\nTiro\r\n\
                --b\r\ncontent-disposition: form-data; name=\"video_file\"; filename=\"a.mp4\"\r\n\r\n\
                This is plain text pretending to be a video.\r\n--b--\r\n";
    let mut stream = TcpStream::connect(addr(&app)).unwrap();
    // What curl sends for a body over 1 MiB, here with a small one.
    let head = format!(
        "POST /api/videos/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nExpect: 100-continue\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut interim = [0u8; 25];
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.read_exact(&mut interim).unwrap();
    assert!(interim.starts_with(b"HTTP/1.1 100 Continue"), "{}", String::from_utf8_lossy(&interim));
    stream.write_all(body.as_bytes()).unwrap();
    let answer = read_answer(&mut stream);
    assert!(answer.contains("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("no es un video"), "the probe's own reason, not a generic one: {answer}");
}
