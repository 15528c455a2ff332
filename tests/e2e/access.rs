//! Who may do what: bad and borrowed tokens, login brute force, racing
//! votes and sign-ups, and signed file links, against the real server.

use std::time::Duration;

use anb_auth::JwtTokenIssuer;
use anb_domain::UserId;
use anb_domain::ports::TokenIssuer;
use anb_e2e::{Clips, TestApp};
use reqwest::Method;
use serde_json::{Value, json};

const SECRET: &str = "access-test-secret-that-is-long-enough";

/// A token for `user` signed with `secret`, valid for `lifetime` seconds.
async fn token_for(user: i64, secret: &str, lifetime: u64) -> String {
    JwtTokenIssuer::new(secret.as_bytes(), Duration::from_secs(lifetime)).issue(UserId(user)).await.unwrap().token
}

#[tokio::test]
async fn every_protected_route_refuses_bad_and_borrowed_tokens_and_nothing_changes() {
    let clips = Clips::get().await;
    let app = TestApp::spawn(0, &[("ANB_JWT_SECRET", SECRET)]).await;
    let ana = app.player("ana@example.com", "Ana", "Bogotá").await; // user 1
    let beto = app.player("beto@example.com", "Beto", "Cali").await;
    let (status, _) = app.upload(&ana, Some("De Ana"), Some(&clips.path("valid.mp4"))).await;
    assert_eq!(status, 201);
    let (_, before) = app.get("/api/videos", Some(&ana)).await;
    let id = before[0]["video_id"].as_i64().unwrap();

    let expired = token_for(1, SECRET, 0).await;
    let other_key = token_for(1, "another-secret-that-is-long-enough-too", 3600).await;
    // Well signed, for an account that does not exist (a database reset with
    // the same key, or another environment sharing it).
    let orphaned = token_for(999, SECRET, 3600).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // `expired` is now past its expiry
    let video = format!("/api/videos/{id}");
    let vote = format!("/api/public/videos/{id}/vote");
    let routes =
        [(Method::GET, "/api/videos"), (Method::GET, video.as_str()), (Method::DELETE, video.as_str()), (Method::POST, vote.as_str())];
    for (method, path) in &routes {
        for (name, token) in [
            ("none", None),
            ("malformed", Some("a.b.c")),
            ("expired", Some(expired.as_str())),
            ("other key", Some(other_key.as_str())),
            ("orphaned", Some(orphaned.as_str())),
        ] {
            let (status, body) = app.call(method.clone(), path, token).await;
            assert_eq!((status, body["status"].as_u64()), (401, Some(401)), "{method} {path} with a {name} token: {body}");
        }
    }
    // A small body: the server refuses before reading, and a large one would
    // meet a closed connection rather than the answer.
    for token in [None, Some(expired.as_str()), Some(other_key.as_str()), Some(orphaned.as_str())] {
        let (status, _) = app.upload_as(token, Some("x"), Some(&clips.path("not-video.mp4"))).await;
        assert_eq!(status, 401, "upload with {token:?}");
    }

    // Beto's own valid token reaches none of Ana's things.
    assert_eq!(app.get(&video, Some(&beto)).await.0, 403);
    assert_eq!(app.call(Method::DELETE, &video, Some(&beto)).await.0, 403);
    assert_eq!(app.get("/api/videos", Some(&beto)).await, (200, json!([])));
    assert_eq!(app.call(Method::POST, &vote, Some(&beto)).await.0, 404, "not public, so not votable");

    let (_, after) = app.get("/api/videos", Some(&ana)).await;
    assert_eq!(after, before, "nothing changed");
    let log = app.log();
    for secret in ["S3cure!pass", SECRET, &ana] {
        assert!(!log.contains(secret), "the log shows a secret");
    }
}

#[tokio::test]
async fn brute_forced_logins_get_429_with_retry_after_until_the_lockout_ends() {
    let app = TestApp::spawn(0, &[("ANB_LOGIN_MAX_FAILURES", "3"), ("ANB_LOGIN_LOCKOUT", "2")]).await;
    app.sign_up("ana@example.com", "Ana", "Bogotá").await;
    let login = |email: &str, password: &str| {
        let request = app.http.post(app.url("/api/auth/login")).json(&json!({"email": email, "password": password}));
        async move { request.send().await.unwrap() }
    };
    for _ in 0..3 {
        assert_eq!(login("ana@example.com", "wrong-password").await.status(), 401);
    }
    let locked = login("ANA@example.com", "S3cure!pass").await;
    assert_eq!(locked.status(), 429, "even the right password waits");
    let retry: u64 = locked.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After: {retry}");
    let body: Value = locked.json().await.unwrap();
    assert_eq!(body["status"], 429);

    tokio::time::sleep(Duration::from_secs(retry) + Duration::from_millis(100)).await;
    assert_eq!(login("ana@example.com", "S3cure!pass").await.status(), 200, "the right password works after the lockout");

    // One address failing on many accounts is stopped too (4 x 3 failures).
    for n in 0..12 {
        assert_eq!(login(&format!("nobody{n}@example.com"), "wrong-password").await.status(), 401, "attempt {n}");
    }
    assert_eq!(login("ana@example.com", "S3cure!pass").await.status(), 429);
}

#[tokio::test]
async fn racing_votes_count_once_and_signed_links_refuse_tampering_and_expiry() {
    let clips = Clips::get().await;
    let app = TestApp::spawn(1, &[("ANB_URL_TTL", "4")]).await;
    let ana = app.player("ana@example.com", "Ana", "Bogotá").await;

    // Ten sign-ups racing for one e-mail: one account.
    let body = json!({"first_name": "Eva", "last_name": "Race", "email": "eva@example.com", "password1": "S3cure!pass",
        "password2": "S3cure!pass", "city": "Cali", "country": "Colombia"});
    let sign_ups = (0..10).map(|_| app.http.post(app.url("/api/auth/signup")).json(&body).send());
    let statuses: Vec<u16> = futures::future::join_all(sign_ups).await.into_iter().map(|r| r.unwrap().status().as_u16()).collect();
    assert_eq!((statuses.iter().filter(|&&s| s == 201).count(), statuses.iter().filter(|&&s| s == 400).count()), (1, 9), "{statuses:?}");
    let eva = app.token("eva@example.com").await;

    let (status, _) = app.upload(&ana, Some("Pública"), Some(&clips.path("valid.mp4"))).await;
    assert_eq!(status, 201);
    let (_, mine) = app.get("/api/videos", Some(&ana)).await;
    let id = mine[0]["video_id"].as_i64().unwrap();
    let video = app.wait_processed(&ana, id, Duration::from_secs(180)).await;
    assert_eq!(video["status"], "processed", "{video}");

    // A hundred identical votes at once: one counts.
    let vote = app.url(&format!("/api/public/videos/{id}/vote"));
    let votes = (0..100).map(|_| app.http.post(&vote).bearer_auth(&eva).send());
    let statuses: Vec<u16> = futures::future::join_all(votes).await.into_iter().map(|r| r.unwrap().status().as_u16()).collect();
    assert_eq!((statuses.iter().filter(|&&s| s == 200).count(), statuses.iter().filter(|&&s| s == 400).count()), (1, 99), "{statuses:?}");
    let (_, public) = app.get("/api/public/videos", None).await;
    assert_eq!(public[0]["votes"], 1);

    // Signed links: the real one works; tampered, moved or expired ones do not.
    let (_, detail) = app.get(&format!("/api/videos/{id}"), Some(&ana)).await;
    let processed = detail["processed_url"].as_str().unwrap().to_owned();
    let original = detail["original_url"].as_str().unwrap().to_owned();
    assert_eq!(app.http.get(&processed).send().await.unwrap().status(), 200);
    let signature = processed.split("signature=").nth(1).unwrap();
    let tampered = format!("{}{}", processed.trim_end_matches(signature), if signature.starts_with('0') { "1" } else { "0" });
    let tampered = format!("{tampered}{}", &signature[1..]);
    let (path, query) = processed.split_once('?').unwrap();
    let (original_path, _) = original.split_once('?').unwrap();
    let no_expiry = format!("{path}?signature={signature}");
    let later = query.replace("expires=", "expires=9");
    for (name, link) in [
        ("tampered signature", tampered),
        ("another file's path", format!("{original_path}?{query}")),
        ("no expiry", no_expiry),
        ("a later expiry", format!("{path}?{later}")),
        ("a traversal", format!("{}/../../anb.db?{query}", path.rsplit_once('/').unwrap().0)),
    ] {
        let status = app.http.get(&link).send().await.unwrap().status();
        assert!(status == 403 || status == 404, "{name}: {link} answered {status}");
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(app.http.get(&processed).send().await.unwrap().status(), 403, "an expired link");
}
