//! A ranking no one can buy, across real processes: sign-up limits shared by
//! two web servers on one PostgreSQL, verification end to end with the
//! `file` mailer, and a scripted ballot stuffing found by `anb-worker
//! audit-votes` and undone by `void-votes` on both web servers at once.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anb_e2e::{TestApp, binary};
use anb_testkit::{Postgres, Redis, SmtpServer};
use reqwest::Method;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

const SECRET: &str = "trust-test-secret-of-at-least-32-characters";

/// Signs `email` up from `client` (its `X-Forwarded-For`); the status.
async fn sign_up_from(app: &TestApp, email: &str, client: &str) -> reqwest::Response {
    let body = json!({"first_name": "Fan", "last_name": email.split('@').next().unwrap(), "email": email,
        "password1": "S3cure!pass", "password2": "S3cure!pass", "city": "Cali", "country": "Colombia"});
    app.http.post(app.url("/api/auth/signup")).header("x-forwarded-for", client).json(&body).send().await.unwrap()
}

/// A processed video of the player with this e-mail, made public in the
/// database directly (processing is tested elsewhere); its id.
async fn publish(database_url: &str, email: &str) -> i64 {
    let db = sea_orm::Database::connect(database_url).await.unwrap();
    let backend = db.get_database_backend();
    let task = uuid::Uuid::new_v4().to_string();
    let insert = "INSERT INTO videos (owner_id, title, status, task_id, original_key, processed_key, uploaded_at, processed_at, votes, city_key) \
                  SELECT id, 'Triple', 'processed', $1, $2, $3, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 0, city_key FROM users WHERE email = $4 \
                  RETURNING id";
    let sql = if backend == sea_orm::DatabaseBackend::Sqlite {
        strip_numbers_after_question_marks(&insert.replace('$', "?"))
    } else {
        insert.to_owned()
    };
    let values = [task.clone().into(), format!("uploaded/{task}.mp4").into(), format!("processed/{task}.mp4").into(), email.into()];
    let row = db.query_one(Statement::from_sql_and_values(backend, sql, values)).await.unwrap().expect("the player exists");
    let id: i64 = row.try_get("", "id").unwrap();
    let first = if backend == sea_orm::DatabaseBackend::Sqlite {
        "UPDATE users SET first_public_video = COALESCE(first_public_video, ?) WHERE email = ?"
    } else {
        "UPDATE users SET first_public_video = COALESCE(first_public_video, $1) WHERE email = $2"
    };
    db.execute(Statement::from_sql_and_values(backend, first, [id.into(), email.into()])).await.unwrap();
    id
}

/// `?1` → `?`: SQLite takes plain `?` placeholders in order.
fn strip_numbers_after_question_marks(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut after_mark = false;
    for c in sql.chars() {
        if after_mark && c.is_ascii_digit() {
            continue;
        }
        after_mark = c == '?';
        out.push(c);
    }
    out
}

async fn vote(app: &TestApp, video: i64, token: &str) -> (u16, Value) {
    app.call(Method::POST, &format!("/api/public/videos/{video}/vote"), Some(token)).await
}

/// The verification link's token in the newest message to `email` under
/// `dir`, waiting for the relay to write it.
async fn token_mailed_to(dir: &Path, email: &str, after: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut messages: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".eml"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .map(|m| quoted_printable(&m))
            .filter(|m| {
                m.lines().any(|line| line == format!("To: {email}") || line.starts_with("To: ") && line.ends_with(&format!("<{email}>")))
            })
            .collect();
        messages.sort();
        if messages.len() > after {
            let message = messages.iter().find(|m| m.contains("Confirma tu correo")).expect("a verification message");
            let link = message.split("/#/verificar?token=").nth(1).expect("the message carries a link");
            return link.chars().take_while(char::is_ascii_hexdigit).collect();
        }
        assert!(Instant::now() < deadline, "no message to {email} in {} within 20 s", dir.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of a quoted-printable body (soft line breaks joined, `=XX` decoded for ASCII).
fn quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let mut out = String::with_capacity(joined.len());
    let mut rest = joined.as_str();
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3).and_then(|h| u8::from_str_radix(h, 16).ok()).filter(u8::is_ascii);
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 3..];
            }
            None => {
                out.push('=');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn sign_ups_past_the_limit_of_an_address_are_refused_by_every_web_server_sharing_the_database() {
    let database = Postgres::shared().fresh_database().await;
    let env = [
        ("ANB_DATABASE_URL", database.url.as_str()),
        ("ANB_JWT_SECRET", SECRET),
        ("ANB_BEHIND_PROXY", "true"),
        ("ANB_SIGNUP_PER_ADDRESS", "3"),
        ("ANB_SIGNUP_PER_NETWORK", "5"),
    ];
    let (a, b) = (TestApp::spawn(0, &env).await, TestApp::spawn(0, &env).await);
    for (app, n) in [(&a, 1), (&b, 2), (&a, 3)] {
        assert_eq!(sign_up_from(app, &format!("f{n}@example.com"), "203.0.113.9").await.status(), 201);
    }
    let refused = sign_up_from(&b, "f4@example.com", "203.0.113.9").await;
    assert_eq!(refused.status(), 429, "the third sign-up, on the other server, counted");
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((3500..=3600).contains(&retry_after), "{retry_after}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["detail"], "Se crearon demasiadas cuentas desde tu red. Inténtalo de nuevo más tarde.");
    // The network's wider bound: two more addresses of the /24, then no more.
    assert_eq!(sign_up_from(&a, "g1@example.com", "203.0.113.10").await.status(), 201);
    assert_eq!(sign_up_from(&b, "g2@example.com", "203.0.113.11").await.status(), 201);
    assert_eq!(sign_up_from(&a, "g3@example.com", "203.0.113.12").await.status(), 429);
    assert_eq!(sign_up_from(&b, "h1@example.com", "198.51.100.7").await.status(), 201, "another network is not touched");
    // The refused e-mail was not registered: the same person signs up from elsewhere.
    assert_eq!(sign_up_from(&a, "f4@example.com", "198.51.100.8").await.status(), 201);
}

#[tokio::test]
async fn an_address_is_verified_by_the_link_the_file_mailer_wrote_and_only_then_votes_count() {
    let mut app = TestApp::spawn(0, &[("ANB_VOTE_REQUIRES_VERIFIED_EMAIL", "true")]).await;
    let mail = app.data.path().join("mail");
    let player = app.player("player@example.com", "Ana", "Bogotá").await;
    let fan = app.player("fan@example.com", "Luis", "Cali").await;
    let video = publish(&format!("sqlite://{}?mode=rw", app.data.path().join("anb.db").display()), "player@example.com").await;

    let (status, me) = app.get("/api/auth/me", Some(&fan)).await;
    assert_eq!((status, &me["email"], &me["email_verified"]), (200, &json!("fan@example.com"), &json!(false)));
    let (status, body) = vote(&app, video, &fan).await;
    assert_eq!((status, body["detail"].as_str()), (403, Some("Verifica tu correo electrónico para votar.")));

    let token = token_mailed_to(&mail, "fan@example.com", 0).await;
    assert_eq!(token.len(), 64);
    let verify = |token: String| {
        let request = app.http.post(app.url("/api/auth/verify-email")).json(&json!({"token": token}));
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let forged: String = token.chars().rev().collect();
    assert_eq!(verify(forged).await.0, 400, "a forged token");
    assert_eq!(verify(token.clone()).await, (200, json!({"message": "Correo verificado."})));
    let (status, body) = verify(token).await;
    assert_eq!((status, body["detail"].as_str()), (400, Some("El enlace de verificación ya fue usado.")));
    assert_eq!(app.get("/api/auth/me", Some(&fan)).await.1["email_verified"], true);
    assert_eq!(vote(&app, video, &fan).await.0, 200, "verified: the vote counts");
    assert_eq!(vote(&app, video, &fan).await.0, 400, "once");

    // A new link on request; the player verifies and still cannot vote for himself.
    let (status, _) = app.call(Method::POST, "/api/auth/resend-verification", Some(&player)).await;
    assert_eq!(status, 202);
    let token = token_mailed_to(&mail, "player@example.com", 1).await;
    assert_eq!(verify(token).await.0, 200);
    let (status, body) = vote(&app, video, &player).await;
    assert_eq!((status, body["detail"].as_str()), (400, Some("No puedes votar por tu propio video.")));
    let (_, ranking) = app.get("/api/public/rankings", None).await;
    assert_eq!(ranking[0]["votes"], 1);
    assert!(app.log().contains("mail written"), "{}", app.log());
    app.terminate();
}

#[tokio::test]
async fn thirty_accounts_from_one_network_are_found_by_the_audit_and_voided_on_both_web_servers() {
    let database = Postgres::shared().fresh_database().await;
    let prefix = format!("anb-trust-{}", uuid::Uuid::new_v4().simple());
    let env = [
        ("ANB_DATABASE_URL", database.url.as_str()),
        ("ANB_JWT_SECRET", SECRET),
        ("ANB_BEHIND_PROXY", "true"),
        ("ANB_REDIS_URL", Redis::shared().url()),
        ("ANB_REDIS_PREFIX", prefix.as_str()),
        ("ANB_CACHE_TTL", "300"),
        ("ANB_SIGNUP_PER_ADDRESS", "1000"),
        ("ANB_SIGNUP_PER_NETWORK", "1000"),
    ];
    let (a, b) = (TestApp::spawn(0, &env).await, TestApp::spawn(0, &env).await);
    assert_eq!(sign_up_from(&a, "honest@example.com", "192.0.2.1").await.status(), 201);
    assert_eq!(sign_up_from(&a, "cheat@example.com", "192.0.2.2").await.status(), 201);
    let honest = publish(&database.url, "honest@example.com").await;
    let cheat = publish(&database.url, "cheat@example.com").await;
    let vote_as = |app: &TestApp, email: String, video: i64, client: String| {
        let (http, login, vote) = (app.http.clone(), app.url("/api/auth/login"), app.url(&format!("/api/public/videos/{video}/vote")));
        async move {
            let token: Value =
                http.post(login).json(&json!({"email": email, "password": "S3cure!pass"})).send().await.unwrap().json().await.unwrap();
            let token = token["access_token"].as_str().unwrap().to_owned();
            http.post(vote).bearer_auth(token).header("x-forwarded-for", client).send().await.unwrap().status().as_u16()
        }
    };
    // Ten honest fans, each from a network of their own.
    for i in 0..10 {
        let email = format!("fan{i}@example.com");
        assert_eq!(sign_up_from(&b, &email, &format!("198.51.{i}.20")).await.status(), 201);
        assert_eq!(vote_as(&b, email, honest, format!("198.51.{i}.20")).await, 200);
    }
    // Thirty accounts made from one /24, voting for the cheat on both servers.
    let mut stuffed = Vec::new();
    for i in 0..30 {
        let email = format!("sock{i}@example.com");
        let app = if i % 2 == 0 { &a } else { &b };
        assert_eq!(sign_up_from(app, &email, &format!("203.0.113.{}", 10 + i)).await.status(), 201);
        assert_eq!(vote_as(app, email.clone(), cheat, format!("203.0.113.{}", 10 + i)).await, 200);
        stuffed.push(email);
    }
    for app in [&a, &b] {
        let (_, ranking) = app.get("/api/public/rankings", None).await;
        assert_eq!((ranking[0]["username"].as_str(), ranking[0]["votes"].as_i64()), (Some("Fan cheat"), Some(30)), "bought");
    }

    let worker = |args: &[&str]| {
        let output = Command::new(binary("anb-worker"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ANB_DATA_DIR", a.data.path())
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "anb-worker {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let findings: Vec<Value> =
        worker(&["audit-votes", "--since", "1h", "--min-accounts", "5"]).lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(findings.len(), 2, "one by sign-up network, one by voting network; the honest fans share none: {findings:?}");
    for finding in &findings {
        assert_eq!(
            (finding["player"].as_str(), finding["accounts"].as_u64(), finding["votes"].as_u64()),
            (Some("Fan cheat"), Some(30), Some(30))
        );
        assert!(!finding["network"].as_str().unwrap().contains("203.0.113"), "a pseudonym, never the address");
    }
    let accounts: Vec<String> = findings[0]["account_ids"].as_array().unwrap().iter().map(|id| id.to_string()).collect();
    let mut args = vec!["void-votes"];
    for id in &accounts {
        args.extend(["--account", id.as_str()]);
    }
    let report: Value = serde_json::from_str(worker(&args).trim()).unwrap();
    assert_eq!((report["votes_removed"].as_u64(), report["videos"].clone()), (Some(30), json!([cheat])));

    for app in [&a, &b] {
        let (_, ranking) = app.get("/api/public/rankings", None).await;
        let order: Vec<_> =
            ranking.as_array().unwrap().iter().map(|r| (r["username"].as_str().unwrap().to_owned(), r["votes"].as_i64())).collect();
        assert_eq!(order, [("Fan honest".to_owned(), Some(10)), ("Fan cheat".to_owned(), Some(0))], "the honest order, at once");
    }
    assert!(worker(&["audit-votes", "--since", "1h", "--min-accounts", "5"]).trim().is_empty(), "nothing left to find");
}

#[tokio::test]
async fn a_mail_server_that_is_down_at_sign_up_fails_nothing_and_gets_the_message_once_it_is_back() {
    let smtp = SmtpServer::stopped();
    let url = smtp.url();
    let env = [("ANB_MAIL", "smtp"), ("ANB_SMTP_URL", url.as_str()), ("ANB_MAIL_FROM", "ANB Rising Stars <no-reply@anb.example>")];
    let mut app = TestApp::spawn(0, &env).await;
    let token = app.player("ana@example.com", "Ana", "Cali").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app.log().contains("mail not sent") {
        assert!(Instant::now() < deadline, "the relay never tried: {}", app.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.get("/api/auth/me", Some(&token)).await.1["email_verified"], false);

    smtp.start();
    // The first retry comes 10 s after the failure.
    let messages = tokio::task::spawn_blocking(move || (smtp.wait_for(1, Duration::from_secs(30)), smtp)).await.unwrap().0;
    assert_eq!(messages.len(), 1, "one message, sent once");
    let message = quoted_printable(&messages[0]);
    let link = message.split("/#/verificar?token=").nth(1).expect("the message carries a link");
    let verification: String = link.chars().take_while(char::is_ascii_hexdigit).collect();
    let response = app.http.post(app.url("/api/auth/verify-email")).json(&json!({"token": verification})).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(app.get("/api/auth/me", Some(&token)).await.1["email_verified"], true);
    app.terminate();
}
