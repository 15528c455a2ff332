//! Hostile input: crafted uploads and malicious strings get a clear 4xx or
//! are kept verbatim, and leave nothing behind.

use std::path::Path;

use anb_e2e::{Clips, TestApp};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

/// The bytes of a box of `kind` around `body`.
fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(body.len() + 8).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    out
}

/// Posts a multipart body built by `form` to the upload route.
async fn post_form(app: &TestApp, token: &str, form: Form) -> (u16, Value) {
    let response = app.http.post(app.url("/api/videos/upload")).bearer_auth(token).multipart(form).send().await.unwrap();
    anb_e2e::json_of(response).await
}

fn file_part(bytes: Vec<u8>) -> Part {
    Part::bytes(bytes).file_name("clip.mp4").mime_str("video/mp4").unwrap()
}

#[tokio::test]
async fn crafted_uploads_get_a_clear_4xx_and_leave_nothing() {
    let clips = Clips::get().await;
    let app = TestApp::spawn(0, &[]).await;
    let token = app.player("h@example.com", "Hugo", "Cali").await;
    let valid = std::fs::read(clips.path("valid.mp4")).unwrap();

    // A 5 s clip whose mdhd claims 30 s: the frames decide.
    let mut claims_more = std::fs::read(clips.path("short.mp4")).unwrap();
    let mdhd = claims_more.windows(4).position(|w| w == b"mdhd").unwrap() + 4;
    let (timescale_at, duration_at) = if claims_more[mdhd] == 1 { (mdhd + 20, mdhd + 24) } else { (mdhd + 12, mdhd + 16) };
    let timescale = u32::from_be_bytes(claims_more[timescale_at..timescale_at + 4].try_into().unwrap());
    let claimed = (timescale * 30).to_be_bytes();
    let width = if claims_more[mdhd] == 1 { 8 } else { 4 };
    claims_more[duration_at + width - 4..duration_at + width].copy_from_slice(&claimed);

    let ftyp = mp4_box(b"ftyp", b"isom\0\0\0\0isomavc1");
    let mut huge_moov = ftyp.clone();
    huge_moov.extend_from_slice(&0x7fff_0000u32.to_be_bytes());
    huge_moov.extend_from_slice(b"moov");
    huge_moov.extend_from_slice(&[0; 4096]);
    let mut big_moov = ftyp.clone();
    big_moov.extend(mp4_box(b"moov", &vec![0; 17 * 1024 * 1024]));
    let no_video = [ftyp.clone(), mp4_box(b"moov", &mp4_box(b"mvhd", &[0; 100])), mp4_box(b"mdat", &[1; 1000])].concat();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", valid[..valid.len() / 2].to_vec(), "MP4"),
        ("a header only", valid[..64].to_vec(), "MP4"),
        ("wrong magic", [b"\x89PNG\r\n\x1a\n".to_vec(), valid[8..].to_vec()].concat(), "MP4"),
        ("a moov claiming 2 GB", huge_moov, "MP4"),
        ("a 17 MB moov", big_moov, "MP4"),
        ("no video track", no_video, "pista de video"),
        ("claims 30 s, holds 5", claims_more, "Duración 5.0 s"),
        ("empty", Vec::new(), "MP4"),
    ];
    for (name, bytes, words) in cases {
        let (status, body) = post_form(&app, &token, Form::new().text("title", "t").part("video_file", file_part(bytes))).await;
        assert_eq!(status, 400, "{name}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(words), "{name}: {body}");
    }

    // Small parts, so the whole body is sent before the server answers: it
    // refuses as soon as it sees the second part, and a client still writing
    // a large body would meet a closed connection rather than the answer.
    let small = || file_part(valid[..4096].to_vec());
    let two_files = Form::new().text("title", "t").part("video_file", small()).part("video_file", small());
    assert_eq!(post_form(&app, &token, two_files).await.0, 400, "two files");
    let two_titles = Form::new().text("title", "a").text("title", "b").part("video_file", small());
    assert_eq!(post_form(&app, &token, two_titles).await.0, 400, "two titles");
    let enormous_title = Form::new().text("title", "x".repeat(100_000)).part("video_file", small());
    let (status, body) = post_form(&app, &token, enormous_title).await;
    assert!(status == 400 || status == 413, "a 100 kB title: {status} {body}");
    let not_multipart = app.http.post(app.url("/api/videos/upload")).bearer_auth(&token).json(&json!({"title": "t"})).send().await;
    assert_eq!(not_multipart.unwrap().status(), 400, "JSON instead of a form");

    assert_eq!(app.get("/api/videos", Some(&token)).await, (200, json!([])));
    assert_eq!(app.files_in("files"), Vec::<std::path::PathBuf>::new(), "stored files left behind");
    assert_eq!(app.files_in("tmp"), Vec::<std::path::PathBuf>::new(), "temporary files left behind");
    assert!(!app.log().contains("panicked"), "{}", app.log());
}

#[tokio::test]
async fn malicious_strings_are_kept_verbatim_or_refused_never_interpreted() {
    let clips = Clips::get().await;
    let app = TestApp::spawn(0, &[]).await;
    let nasty = [
        "Robert'); DROP TABLE users;--",
        "' OR '1'='1",
        "../../etc/passwd",
        "<script>alert(1)</script>",
        "%00%2e%2e%2f",
        "😀 Ñandú \u{202e}",
    ];
    for (n, text) in nasty.iter().enumerate() {
        let email = format!("n{n}@example.com");
        let body = json!({"first_name": text, "last_name": text, "email": email, "password1": "S3cure!pass",
            "password2": "S3cure!pass", "city": text, "country": text});
        let response = app.http.post(app.url("/api/auth/signup")).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 201, "{text}");
        let token = app.token(&email).await;
        let (status, body) = app.upload(&token, Some(text), Some(&clips.path("valid.mp4"))).await;
        assert_eq!(status, 201, "{text}: {body}");
        let (_, mine) = app.get("/api/videos", Some(&token)).await;
        assert_eq!(mine[0]["title"], *text, "titles come back as sent");
        let rankings = app.http.get(app.url("/api/public/rankings")).query(&[("city", text)]).send().await.unwrap();
        assert_eq!(rankings.status(), 200, "city filter {text}");
        assert_eq!(rankings.json::<Value>().await.unwrap(), json!([]), "nothing public yet, whatever the filter says");
    }
    // Control characters are refused in titles rather than stored.
    let token = app.token("n0@example.com").await;
    let (status, _) = app.upload(&token, Some("tab\there\u{7}"), Some(&clips.path("valid.mp4"))).await;
    assert_eq!(status, 400);
    // Query parameters that are not what they should be are 400s, not errors.
    for query in ["limit=1;DROP%20TABLE%20videos", "limit=-1", "limit=99999999999999999999", "offset=abc", "limit=%00"] {
        let (status, body) = app.get(&format!("/api/public/videos?{query}"), None).await;
        assert_eq!(status, 400, "{query}: {body}");
    }
    for path in ["/api/videos/1%20OR%201=1", "/api/videos/..%2F..%2Fanb.db", "/api/public/videos/-1/vote"] {
        let status = app.http.get(app.url(path)).bearer_auth(&token).send().await.unwrap().status().as_u16();
        assert!((400..500).contains(&status), "{path}: {status}");
    }
    // Everyone is still there: nothing was interpreted as SQL.
    let (_, mine) = app.get("/api/videos", Some(&token)).await;
    assert_eq!(mine.as_array().unwrap().len(), 1);
    assert!(Path::new(&app.data.path().join("anb.db")).exists());
    for n in 0..nasty.len() {
        assert_eq!(
            app.http
                .post(app.url("/api/auth/login"))
                .json(&json!({"email": format!("n{n}@example.com"), "password": "S3cure!pass"}))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
}
