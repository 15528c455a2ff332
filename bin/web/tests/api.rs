//! The HTTP API in process: every route's status table, driven through
//! poem's test client against the real routes and middleware, with the
//! application's ports mocked. No socket, no database, no GStreamer: the
//! whole file runs in a few seconds (the upload rate and stall tests wait
//! out their shortened limits). What only a real process shows
//! (start-up, signals, the real adapters) stays in `tests/e2e`.

use std::sync::Arc;
use std::time::Duration;

use anb_application::{
    AccountRules, Accounts, AccountsPorts, LoginLimits, Readiness, Showcase, ShowcasePorts, ShowcaseRules, SignUpLimits, Videos,
    VideosPorts,
};
use anb_domain::fixtures::{MemoryCounters, PlainKeyring, video};
use anb_domain::ports::{
    AccessToken, Deletion, MockHealthCheck, MockObjectStorage, MockPasswordHasher, MockUserRepository, MockVerifications, MockVideoProbe,
    MockVideoRepository, MockVoteRepository, ProbeError, RedeemError, StorageError, TokenError, TokenIssuer, UserRepositoryError,
    VideoRepositoryError, VoteRepositoryError,
};
use anb_domain::{
    BackendError, Email, ObjectKey, PasswordHash, ProbedVideo, PublicVideo, RankingEntry, TaskId, UploadRules, User, UserId, Video,
    VideoId, VideoStatus,
};
use anb_files::{LocalFileStorage, UrlSigner};
use anb_web::slots::Slots;
use anb_web::upload::UploadLimits;
use anb_web::{AppState, endpoint};
use anb_wiring::{SystemClock, UseCases};
use futures::StreamExt;
use poem::endpoint::BoxEndpoint;
use poem::http::StatusCode;
use poem::test::{TestClient, TestForm, TestFormField, TestResponse};
use serde_json::{Value, json};

const PLAYER: &str = "Bearer player-token";
const OTHER: &str = "Bearer other-token";

/// Tokens name users without any cryptography: `player-token` is user 1,
/// `other-token` user 2, `ghost-token` user 99 (who has no account), anything
/// else is refused.
struct FakeTokens;

#[async_trait::async_trait]
impl TokenIssuer for FakeTokens {
    async fn issue(&self, _: UserId) -> Result<AccessToken, BackendError> {
        Ok(AccessToken { token: "issued-token".into(), expires_in: 3600 })
    }

    async fn verify(&self, token: &str) -> Result<UserId, TokenError> {
        match token {
            "player-token" => Ok(UserId(1)),
            "other-token" => Ok(UserId(2)),
            "ghost-token" => Ok(UserId(99)),
            "expired-token" => Err(TokenError::Expired),
            _ => Err(TokenError::Invalid),
        }
    }
}

/// A health check that takes its time.
struct SlowHealth(Duration);

#[async_trait::async_trait]
impl anb_domain::ports::HealthCheck for SlowHealth {
    async fn check(&self) -> Result<(), BackendError> {
        tokio::time::sleep(self.0).await;
        Ok(())
    }
}

/// The mocked ports of one test; each test sets the expectations it needs.
/// Users 1 and 2 exist.
#[derive(Default)]
struct Ports {
    users: MockUserRepository,
    videos: MockVideoRepository,
    votes: MockVoteRepository,
    storage: MockObjectStorage,
    probe: MockVideoProbe,
    hasher: MockPasswordHasher,
    verifications: MockVerifications,
    health: MockHealthCheck,
    /// Whether votes need a verified address (user 2's is verified, user 1's not).
    votes_require_verified_email: bool,
    /// A health check that answers after this long, instead of the mock.
    slow_health: Option<Duration>,
    /// Stored files served under `/files/` from this directory.
    files: Option<std::path::PathBuf>,
    /// Resolves when the server is to stop (never, unless a test sets it).
    stopping: Option<anb_application::Shutdown>,
}

impl Ports {
    fn new() -> Self {
        let mut ports = Self::default();
        ports.users.expect_by_id().returning(|id| Ok([1, 2].contains(&id.0).then(|| User { email_verified: id.0 == 2, ..user(id.0) })));
        ports
    }
}

/// A client of the app on `ports`. Uploads are capped at 1 MiB and stall
/// after 300 ms, so their limits are tested in no time.
fn client(ports: Ports) -> (TestClient<BoxEndpoint<'static>>, tempfile::TempDir) {
    let upload_dir = tempfile::tempdir().unwrap();
    let rules = UploadRules { max_bytes: 1 << 20, ..UploadRules::default() };
    let storage = Arc::new(ports.storage);
    let videos = Arc::new(ports.videos);
    let clock = Arc::new(SystemClock);
    let files = ports.files.map(|dir| Arc::new(LocalFileStorage::new(dir, "", UrlSigner::derive(b"test key"))));
    let users = Arc::new(ports.users);
    let keyring = Arc::new(PlainKeyring::default());
    let showcase = Showcase::new(
        ShowcasePorts {
            videos: videos.clone(),
            votes: Arc::new(ports.votes),
            users: users.clone(),
            storage: storage.clone(),
            keyring: keyring.clone(),
            clock: clock.clone(),
        },
        ShowcaseRules { url_ttl: Duration::from_secs(60), votes_require_verified_email: ports.votes_require_verified_email },
    );
    let rules_of_accounts = AccountRules {
        login: LoginLimits { max_failures: 2, lockout: Duration::from_secs(60) },
        sign_up: SignUpLimits { per_address: 2, per_network: 3, window: Duration::from_secs(3600), resends: 1 },
    };
    let use_cases = UseCases {
        accounts: Accounts::new(
            AccountsPorts {
                users,
                hasher: Arc::new(ports.hasher),
                tokens: Arc::new(FakeTokens),
                clock: clock.clone(),
                counters: Arc::new(MemoryCounters::default()),
                keyring,
                verifications: Arc::new(ports.verifications),
            },
            rules_of_accounts,
        ),
        videos: Videos::new(VideosPorts { videos, storage, probe: Arc::new(ports.probe), clock }, rules.clone(), Duration::from_secs(60)),
        showcase,
        readiness: Readiness::new(Arc::new(SystemClock)).with(
            "database",
            match ports.slow_health {
                Some(delay) => Arc::new(SlowHealth(delay)),
                None => Arc::new(ports.health),
            },
        ),
        files,
    };
    let state = AppState {
        use_cases,
        upload: UploadLimits {
            dir: upload_dir.path().to_owned(),
            rules,
            idle_timeout: Duration::from_millis(300),
            min_rate: 64 * 1024,
            rate_grace: Duration::from_millis(400),
            rate_window: Duration::from_secs(1),
            per_account: Slots::new(2),
        },
        request_timeout: Duration::from_millis(500),
        // The client's address comes from X-Forwarded-For, which tests set.
        behind_proxy: true,
        public_base_url: None,
        stopping: ports.stopping.unwrap_or_else(anb_application::shutdown::never),
        streams_per_account: 4,
    };
    (TestClient::new(endpoint(state)), upload_dir)
}

/// Status and JSON body (`Null` when the body is not JSON).
async fn answer(response: TestResponse) -> (StatusCode, Value) {
    let status = response.0.status();
    let content_type = response.0.content_type().unwrap_or_default().to_owned();
    let body = response.0.into_body().into_string().await.unwrap();
    let value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if !status.is_success() && !status.is_redirection() {
        assert_eq!(content_type, "application/problem+json", "every error is a problem: {status} {body}");
        assert_eq!(value["status"], status.as_u16(), "{body}");
    }
    (status, value)
}

fn detail(body: &Value) -> &str {
    body["detail"].as_str().unwrap_or_default()
}

fn signed_urls(storage: &mut MockObjectStorage) {
    storage.expect_signed_url().returning(|key, _| Ok(format!("https://files.example/{key}?sig=1")));
}

fn unavailable() -> BackendError {
    BackendError::unavailable("connection refused by db.internal:5432")
}

// ---------------------------------------------------------------- health

#[tokio::test]
async fn health_checks_nothing_and_ready_names_each_dependency() {
    let mut ports = Ports::new();
    ports.health.expect_check().times(1).returning(|| Ok(()));
    let (app, _dir) = client(ports);
    let (status, body) = answer(app.get("/api/health").send().await).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    let (status, body) = answer(app.get("/api/ready").send().await).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok", "checks": {"database": "ok"}})));

    // The database away: the load balancer's check still passes, readiness says why not.
    let mut ports = Ports::new();
    ports.health.expect_check().returning(|| Err(unavailable()));
    let (app, _dir) = client(ports);
    let (status, body) = answer(app.get("/api/health").send().await).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    let response = app.get("/api/ready").send().await;
    assert_eq!(response.0.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.0.headers()["cache-control"], "no-store");
    let body = response.0.into_body().into_json::<Value>().await.unwrap();
    assert_eq!(body, json!({"status": "unavailable", "checks": {"database": "unreachable"}}));
}

// ---------------------------------------------------------------- accounts

fn sign_up_body() -> Value {
    json!({"first_name": "Ana", "last_name": "Pérez", "email": "ana@example.com", "password1": "S3cure!pass",
           "password2": "S3cure!pass", "city": "Bogotá", "country": "Colombia"})
}

fn user(id: i64) -> User {
    User {
        id: UserId(id),
        email: Email::parse("ana@example.com").unwrap(),
        first_name: "Ana".into(),
        last_name: "Pérez".into(),
        password_hash: PasswordHash("$argon2id$stored".into()),
        city: "Bogotá".into(),
        country: "Colombia".into(),
        created_at: chrono::Utc::now(),
        email_verified: false,
    }
}

#[tokio::test]
async fn sign_up_answers_201_and_400_for_each_refusal() {
    let mut ports = Ports::new();
    let mut taken = false;
    ports.users.expect_by_email().returning(move |_| {
        let answer = taken.then(|| user(1));
        taken = true;
        Ok(answer)
    });
    ports.users.expect_create().times(1).returning(|_| Ok(user(1)));
    ports.hasher.expect_hash().returning(|_| Ok(PasswordHash("$argon2id$new".into())));
    let (app, _dir) = client(ports);

    let (status, body) = answer(app.post("/api/auth/signup").body_json(&sign_up_body()).send().await).await;
    assert_eq!((status, body), (StatusCode::CREATED, json!({"message": "Usuario creado exitosamente."})));
    let (status, body) = answer(app.post("/api/auth/signup").body_json(&sign_up_body()).send().await).await;
    assert_eq!((status, detail(&body)), (StatusCode::BAD_REQUEST, "El correo electrónico ya está registrado."));

    let mut bad = sign_up_body();
    bad["password2"] = json!("other-pass");
    bad["email"] = json!("not-an-email");
    let (status, body) = answer(app.post("/api/auth/signup").body_json(&bad).send().await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let fields: Vec<&str> = body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["email", "password2"], "{body}");

    let (status, body) = answer(app.post("/api/auth/signup").body_json(&json!({"first_name": "Ana"})).send().await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a missing field: {body}");
    let (status, _) = answer(app.post("/api/auth/signup").content_type("application/json").body("{not json").send().await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = answer(app.post("/api/auth/signup").content_type("text/plain").body("hello").send().await).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = json!({"first_name": "x".repeat(70_000)});
    let (status, _) = answer(app.post("/api/auth/signup").body_json(&huge).send().await).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn sign_ups_past_the_limit_of_an_address_or_network_answer_429_with_retry_after_and_hash_nothing() {
    let mut ports = Ports::new();
    ports.users.expect_by_email().returning(|_| Ok(None));
    ports.users.expect_create().returning(|_| Ok(user(1)));
    // Two sign-ups from one address and one more from its network: three hashes, no more.
    ports.hasher.expect_hash().times(3).returning(|_| Ok(PasswordHash("$argon2id$new".into())));
    let (app, _dir) = client(ports);
    let sign_up = |from: &'static str| app.post("/api/auth/signup").header("x-forwarded-for", from).body_json(&sign_up_body()).send();
    for _ in 0..2 {
        assert_eq!(answer(sign_up("203.0.113.9").await).await.0, StatusCode::CREATED);
    }
    let refused = sign_up("203.0.113.9").await;
    let retry_after: u64 = refused.0.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!((3590..=3600).contains(&retry_after), "{retry_after}");
    let (status, body) = answer(refused).await;
    assert_eq!(
        (status, detail(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "Se crearon demasiadas cuentas desde tu red. Inténtalo de nuevo más tarde.")
    );
    assert_eq!(answer(sign_up("203.0.113.10").await).await.0, StatusCode::CREATED, "another address of the network");
    assert_eq!(answer(sign_up("203.0.113.11").await).await.0, StatusCode::TOO_MANY_REQUESTS, "the network's bound");
}

#[tokio::test]
async fn me_says_who_is_signed_in_and_whether_the_address_is_verified() {
    let (app, _dir) = client(Ports::new());
    let (status, body) = answer(app.get("/api/auth/me").header("authorization", PLAYER).send().await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"first_name": "Ana", "last_name": "Pérez", "email": "ana@example.com", "city": "Bogotá", "country": "Colombia",
               "email_verified": false})
    );
    let (_, body) = answer(app.get("/api/auth/me").header("authorization", OTHER).send().await).await;
    assert_eq!(body["email_verified"], true);
    assert_eq!(answer(app.get("/api/auth/me").send().await).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_verification_link_answers_200_once_and_400_when_used_expired_or_forged() {
    let mut ports = Ports::new();
    ports.verifications.expect_redeem().returning(|hash, _| match hash.0.as_str() {
        "hash:good" => Ok(UserId(1)),
        "hash:used" => Err(RedeemError::Used),
        "hash:old" => Err(RedeemError::Expired),
        _ => Err(RedeemError::Unknown),
    });
    let (app, _dir) = client(ports);
    let verify = |token: &str| app.post("/api/auth/verify-email").body_json(&json!({"token": token})).send();
    let (status, body) = answer(verify("good").await).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"message": "Correo verificado."})));
    for (token, why) in [
        ("used", "El enlace de verificación ya fue usado."),
        ("old", "El enlace de verificación expiró. Pide uno nuevo desde tu cuenta."),
        ("forged", "El enlace de verificación no es válido."),
    ] {
        let (status, body) = answer(verify(token).await).await;
        assert_eq!((status, detail(&body)), (StatusCode::BAD_REQUEST, why), "{token}");
    }
    let (status, _) = answer(app.post("/api/auth/verify-email").body_json(&json!({})).send().await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no token");
}

#[tokio::test]
async fn a_new_link_answers_202_then_429_when_asked_too_often() {
    let mut ports = Ports::new();
    ports.verifications.expect_queue_mail().times(1).returning(|_, _, _| Ok(()));
    let (app, _dir) = client(ports);
    let resend = || app.post("/api/auth/resend-verification").header("authorization", PLAYER).send();
    let (status, body) = answer(resend().await).await;
    assert_eq!((status, detail(&body).is_empty()), (StatusCode::ACCEPTED, true));
    assert!(body["message"].as_str().unwrap().contains("nuevo enlace"), "{body}");
    let refused = resend().await;
    assert!(refused.0.headers().contains_key("retry-after"));
    assert_eq!(answer(refused).await.0, StatusCode::TOO_MANY_REQUESTS);
    let (status, body) = answer(app.post("/api/auth/resend-verification").header("authorization", OTHER).send().await).await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, json!({"message": "Tu correo ya está verificado."})));
    assert_eq!(answer(app.post("/api/auth/resend-verification").send().await).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_vote_for_ones_own_video_answers_400_and_an_unverified_voter_403_when_required() {
    let mut ports = Ports::new();
    ports.votes_require_verified_email = true;
    ports.votes.expect_cast().returning(|voter, _, _, _| match voter.0 {
        2 => Err(VoteRepositoryError::OwnVideo),
        _ => Ok(()),
    });
    let (app, _dir) = client(ports);
    let (status, body) = answer(app.post("/api/public/videos/1/vote").header("authorization", PLAYER).send().await).await;
    assert_eq!((status, detail(&body)), (StatusCode::FORBIDDEN, "Verifica tu correo electrónico para votar."));
    let (status, body) = answer(app.post("/api/public/videos/1/vote").header("authorization", OTHER).send().await).await;
    assert_eq!((status, detail(&body)), (StatusCode::BAD_REQUEST, "No puedes votar por tu propio video."));
}

#[tokio::test]
async fn backend_failures_answer_503_or_500_without_internals() {
    let mut ports = Ports::new();
    ports.users.expect_by_email().times(1).returning(|_| Err(UserRepositoryError::Backend(unavailable())));
    ports.users.expect_by_email().returning(|_| Err(UserRepositoryError::Backend(BackendError::internal("syntax error at /srv/x"))));
    let (app, _dir) = client(ports);
    let (status, body) = answer(app.post("/api/auth/signup").body_json(&sign_up_body()).send().await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!body.to_string().contains("db.internal"), "{body}");
    let (status, body) = answer(app.post("/api/auth/signup").body_json(&sign_up_body()).send().await).await;
    assert_eq!((status, detail(&body)), (StatusCode::INTERNAL_SERVER_ERROR, "Error interno del servidor."));
}

#[tokio::test]
async fn guesses_from_many_addresses_lock_strangers_out_but_not_a_device_that_signed_in_before() {
    let mut ports = Ports::new();
    ports.users.expect_by_email().returning(|_| Ok(Some(user(1))));
    ports.hasher.expect_verify().returning(|password, _| password.expose() == "S3cure!pass");
    let (app, _dir) = client(ports);
    let log_in = |password: &str, from: &str| {
        let body = json!({"email": "ana@example.com", "password": password});
        app.post("/api/auth/login").header("x-forwarded-for", from).body_json(&body)
    };
    let response = log_in("S3cure!pass", "198.51.100.4").send().await;
    let cookie = response.0.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    assert_eq!(response.0.status(), StatusCode::OK);
    // Max failures 2 here: the account locks for strangers at 20, from 10 addresses.
    for n in 0..20 {
        let _ = log_in("wrong", &format!("203.0.113.{}", n % 10)).send().await;
    }
    let (status, _) = answer(log_in("S3cure!pass", "198.51.100.4").send().await).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "an unknown client is locked");
    let (status, _) = answer(log_in("S3cure!pass", "198.51.100.4").header("cookie", format!("theme=dark; {cookie}")).send().await).await;
    assert_eq!(status, StatusCode::OK, "the owner's device is not");
    let (status, _) = answer(log_in("S3cure!pass", "198.51.100.4").header("cookie", "anb_device=token-9.hash:forged").send().await).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "a forged device token is an unknown client");
}

#[tokio::test]
async fn log_in_answers_a_token_401_then_429_with_retry_after() {
    let mut ports = Ports::new();
    ports.users.expect_by_email().returning(|_| Ok(Some(user(1))));
    ports.hasher.expect_verify().returning(|password, _| password.expose() == "S3cure!pass");
    let (app, _dir) = client(ports);
    let log_in = |password: &str| {
        let body = json!({"email": "ana@example.com", "password": password});
        app.post("/api/auth/login").header("x-forwarded-for", "203.0.113.9").body_json(&body)
    };

    let (status, body) = answer(log_in("S3cure!pass").send().await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"access_token": "issued-token", "token_type": "Bearer", "expires_in": 3600}));
    for _ in 0..2 {
        let (status, body) = answer(log_in("wrong").send().await).await;
        assert_eq!((status, detail(&body)), (StatusCode::UNAUTHORIZED, "Correo o contraseña incorrectos."));
    }
    let response = log_in("S3cure!pass").send().await;
    let retry_after: u64 = response.0.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((59..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(answer(response).await.0, StatusCode::TOO_MANY_REQUESTS, "locked even with the right password");
    let elsewhere = json!({"email": "ana@example.com", "password": "S3cure!pass"});
    let response = app.post("/api/auth/login").header("x-forwarded-for", "198.51.100.4").body_json(&elsewhere).send().await;
    let cookie = response.0.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("anb_device=") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    assert_eq!(answer(response).await.0, StatusCode::OK, "the owner, from another address, is not locked out");
    let (status, _) = answer(app.post("/api/auth/login").body_json(&json!({"email": "x"})).send().await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

// ---------------------------------------------------------------- protected routes

#[tokio::test]
async fn protected_routes_refuse_missing_malformed_expired_forged_and_orphaned_tokens() {
    let (app, _dir) = client(Ports::new());
    let routes = [
        (poem::http::Method::GET, "/api/videos"),
        (poem::http::Method::GET, "/api/videos/1"),
        (poem::http::Method::DELETE, "/api/videos/1"),
        (poem::http::Method::POST, "/api/videos/upload"),
        (poem::http::Method::POST, "/api/public/videos/1/vote"),
    ];
    for (method, path) in routes {
        let tokens =
            [None, Some("player-token"), Some("Bearer "), Some("Bearer forged"), Some("Bearer expired-token"), Some("Bearer ghost-token")];
        for token in tokens {
            let mut request = app.request(method.clone(), path);
            if let Some(token) = token {
                request = request.header("authorization", token);
            }
            let (status, _) = answer(request.send().await).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with {token:?}");
        }
    }
}

// ---------------------------------------------------------------- uploads

fn upload_form(title: Option<&str>, file: Option<&[u8]>) -> TestForm {
    let mut form = TestForm::new();
    if let Some(title) = title {
        form = form.field(TestFormField::text(title).name("title"));
    }
    if let Some(bytes) = file {
        form = form.field(TestFormField::bytes(bytes.to_vec()).name("video_file").filename("clip.mp4").content_type("video/mp4"));
    }
    form
}

fn probed(seconds: u64, width: u32, height: u32) -> ProbedVideo {
    ProbedVideo { duration: Duration::from_secs(seconds), width, height, codec: "avc1".into(), frame_rate: Some(30.0) }
}

fn left_in(dir: &tempfile::TempDir) -> usize {
    std::fs::read_dir(dir.path()).unwrap().count()
}

#[tokio::test]
async fn an_accepted_upload_answers_201_with_its_task_and_leaves_no_temporary_file() {
    let mut ports = Ports::new();
    ports.probe.expect_probe().returning(|_| Ok(probed(30, 1920, 1080)));
    ports.storage.expect_put_file().withf(|key, _| key.as_str().starts_with("uploaded/")).times(1).returning(|_, _| Ok(()));
    ports.videos.expect_create_with_job().times(1).returning(|new| {
        let mut stored = video(7, new.owner.0, VideoStatus::Uploaded);
        stored.task_id = new.task_id;
        Ok(stored)
    });
    let (app, dir) = client(ports);
    let (status, body) = answer(
        app.post("/api/videos/upload").header("authorization", PLAYER).multipart(upload_form(Some("Tiro"), Some(b"mp4"))).send().await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["message"], "Video subido correctamente. Procesamiento en curso.");
    assert!(body["task_id"].as_str().unwrap().parse::<uuid::Uuid>().is_ok(), "{body}");
    assert_eq!(left_in(&dir), 0);
}

#[tokio::test]
async fn every_refused_upload_answers_its_status_and_message_and_leaves_nothing() {
    let mut ports = Ports::new();
    let answers = std::sync::Mutex::new(vec![
        Ok(probed(12, 1920, 1080)),
        Ok(probed(30, 1280, 720)),
        Err(ProbeError::NoVideoTrack),
        Err(ProbeError::NotMp4("no ftyp".into())),
    ]);
    ports.probe.expect_probe().returning(move |_| answers.lock().unwrap().pop().unwrap());
    let (app, dir) = client(ports);
    let upload = |form: TestForm| app.post("/api/videos/upload").header("authorization", PLAYER).multipart(form).send();

    let too_large = vec![0u8; (1 << 20) + 1];
    /// Title, file, and the answer it gets.
    type Case<'a> = (Option<&'a str>, Option<&'a [u8]>, StatusCode, &'a str);
    let cases: [Case; 8] = [
        (Some("Tiro"), Some(b"not a video"), StatusCode::BAD_REQUEST, "El archivo no es un video MP4 o MOV válido."),
        (Some("Tiro"), Some(b"audio only"), StatusCode::BAD_REQUEST, "El archivo no contiene una pista de video."),
        (
            Some("Tiro"),
            Some(b"720p"),
            StatusCode::BAD_REQUEST,
            "Resolución 1280x720 insuficiente: el lado menor debe tener al menos 1080 píxeles.",
        ),
        (Some("Tiro"), Some(b"short"), StatusCode::BAD_REQUEST, "Duración 12.0 s fuera del rango permitido (20–60 s)."),
        (None, Some(b"x"), StatusCode::BAD_REQUEST, "El título es obligatorio."),
        (Some("Tiro"), None, StatusCode::BAD_REQUEST, "El archivo de video (video_file) es obligatorio."),
        (Some("   "), Some(b"x"), StatusCode::BAD_REQUEST, "El título es obligatorio."),
        (Some("Tiro"), Some(&too_large), StatusCode::PAYLOAD_TOO_LARGE, "El archivo supera el tamaño máximo permitido (1 MB)."),
    ];
    for (title, file, want_status, want_detail) in cases {
        let (status, body) = answer(upload(upload_form(title, file)).await).await;
        assert_eq!((status, detail(&body)), (want_status, want_detail), "title {title:?}");
        assert_eq!(left_in(&dir), 0, "nothing left after {want_detail}");
    }
    let (status, _) =
        answer(app.post("/api/videos/upload").header("authorization", PLAYER).content_type("application/json").body("{}").send().await)
            .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "not multipart");
}

#[tokio::test]
async fn a_stalled_upload_answers_408_and_a_full_disk_507() {
    let mut ports = Ports::new();
    ports.probe.expect_probe().returning(|_| Ok(probed(30, 1920, 1080)));
    ports.storage.expect_put_file().returning(|_, _| Err(StorageError::Backend(BackendError::storage_full("ENOSPC"))));
    let (app, dir) = client(ports);
    let (status, body) = answer(
        app.post("/api/videos/upload").header("authorization", PLAYER).multipart(upload_form(Some("Tiro"), Some(b"mp4"))).send().await,
    )
    .await;
    assert_eq!((status, detail(&body)), (StatusCode::INSUFFICIENT_STORAGE, "No hay espacio para almacenar el archivo."));

    let head = "--b\r\ncontent-disposition: form-data; name=\"video_file\"; filename=\"a.mp4\"\r\n\r\nfirst bytes";
    let stalled = futures::stream::once(async move { Ok::<_, std::io::Error>(bytes::Bytes::from(head)) }).chain(futures::stream::pending());
    let response = app
        .post("/api/videos/upload")
        .header("authorization", PLAYER)
        .content_type("multipart/form-data; boundary=b")
        .body(poem::Body::from_bytes_stream(stalled))
        .send()
        .await;
    let (status, body) = answer(response).await;
    assert_eq!((status, detail(&body)), (StatusCode::REQUEST_TIMEOUT, "El cliente dejó de enviar datos."));
    assert_eq!(left_in(&dir), 0);
}

// ---------------------------------------------------------------- own videos

#[tokio::test]
async fn the_own_list_shows_links_only_for_processed_videos() {
    let mut ports = Ports::new();
    ports.videos.expect_list_by_owner().returning(|owner| {
        assert_eq!(owner, UserId(1));
        Ok(vec![video(2, 1, VideoStatus::Processed), video(1, 1, VideoStatus::Uploaded)])
    });
    signed_urls(&mut ports.storage);
    let (app, _dir) = client(ports);
    let (status, body) = answer(app.get("/api/videos").header("authorization", PLAYER).send().await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body[0]["status"], "processed");
    assert_eq!(body[0]["processed_at"], "2026-03-01T12:01:10Z");
    assert!(body[0]["processed_url"].as_str().unwrap().starts_with("https://files.example/processed/"));
    assert_eq!((&body[1]["processed_url"], &body[1]["processed_at"]), (&Value::Null, &Value::Null));
    assert_eq!(body[1]["uploaded_at"], "2026-03-01T12:00:00Z");
}

#[tokio::test]
async fn the_detail_answers_200_403_404_and_names_a_bad_id() {
    let mut ports = Ports::new();
    ports.videos.expect_by_id().returning(|id| {
        Ok(match id.0 {
            1 => Some(Video { votes: 3, ..video(1, 1, VideoStatus::Failed) }),
            2 => Some(video(2, 2, VideoStatus::Processed)),
            _ => None,
        })
    });
    signed_urls(&mut ports.storage);
    let (app, _dir) = client(ports);
    let get = |path: &str| app.get(path).header("authorization", PLAYER).send();

    let (status, body) = answer(get("/api/videos/1").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((body["video_id"].as_i64(), body["status"].as_str(), body["votes"].as_i64()), (Some(1), Some("failed"), Some(3)));
    assert_eq!(body["failure_reason"], "No se pudo decodificar el video.");
    assert!(body["original_url"].as_str().unwrap().contains("uploaded/"));
    let (status, body) = answer(get("/api/videos/2").await).await;
    assert_eq!((status, detail(&body)), (StatusCode::FORBIDDEN, "El video pertenece a otro usuario."));
    let (status, body) = answer(get("/api/videos/3").await).await;
    assert_eq!((status, detail(&body)), (StatusCode::NOT_FOUND, "El video no existe."));
    let (status, body) = answer(get("/api/videos/abc").await).await;
    assert_eq!((status, detail(&body)), (StatusCode::BAD_REQUEST, "El identificador del video (video_id) de la ruta no es válido."));
}

#[tokio::test]
async fn delete_answers_200_400_403_and_404() {
    let mut ports = Ports::new();
    ports.videos.expect_by_id().returning(|id| {
        Ok(match id.0 {
            1 => Some(video(1, 1, VideoStatus::Uploaded)),
            2 => Some(video(2, 1, VideoStatus::Processed)),
            3 => Some(video(3, 2, VideoStatus::Uploaded)),
            _ => None,
        })
    });
    ports.videos.expect_delete_unless_public().times(1).returning(|id| Ok(Deletion::Deleted(video(id.0, 1, VideoStatus::Uploaded))));
    ports.storage.expect_delete().times(1).returning(|_| Ok(()));
    let (app, _dir) = client(ports);
    let delete = |path: &str| app.delete(path).header("authorization", PLAYER).send();

    let (status, body) = answer(delete("/api/videos/1").await).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"message": "El video ha sido eliminado exitosamente.", "video_id": 1})));
    let (status, body) = answer(delete("/api/videos/2").await).await;
    assert_eq!((status, detail(&body)), (StatusCode::BAD_REQUEST, "El video ya es público y no puede eliminarse."));
    let (status, _) = answer(delete("/api/videos/3").await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = answer(delete("/api/videos/4").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------- public

#[tokio::test]
async fn the_public_list_pages_and_filters_and_refuses_bad_parameters() {
    let mut ports = Ports::new();
    ports.videos.expect_list_public().returning(|city, page| {
        assert_eq!((city.key(), page.limit, page.offset), (Some("bogota"), 5, 10));
        let key = ObjectKey::processed(TaskId::random());
        Ok(vec![PublicVideo {
            id: VideoId(9),
            title: "<b>Tiro</b>".into(),
            username: "Ana Pérez".into(),
            city: "Bogotá".into(),
            processed_key: key,
            votes: 4,
        }])
    });
    signed_urls(&mut ports.storage);
    let (app, _dir) = client(ports);
    let (status, body) = answer(app.get("/api/public/videos?city=BOGOT%C3%81&limit=5&offset=10").send().await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body[0]["video_id"].as_i64(), body[0]["title"].as_str(), body[0]["votes"].as_i64()),
        (Some(9), Some("<b>Tiro</b>"), Some(4))
    );
    assert_eq!((body[0]["username"].as_str(), body[0]["city"].as_str()), (Some("Ana Pérez"), Some("Bogotá")));
    for query in ["limit=0", "limit=101", "limit=abc", "offset=-1"] {
        let (status, _) = answer(app.get(format!("/api/public/videos?{query}")).send().await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
    }
}

#[tokio::test]
async fn a_vote_answers_200_then_400_and_404_for_a_video_that_is_not_public() {
    let mut ports = Ports::new();
    let mut cast = 0;
    ports.votes.expect_cast().returning(move |voter, video, _, _| {
        assert_eq!(voter, UserId(2));
        cast += 1;
        match (video.0, cast) {
            (1, 1) => Ok(()),
            (1, _) => Err(VoteRepositoryError::DuplicateVote),
            _ => Err(VoteRepositoryError::VideoNotPublic),
        }
    });
    let (app, _dir) = client(ports);
    let vote = |id: i64| app.post(format!("/api/public/videos/{id}/vote")).header("authorization", OTHER).send();
    let (status, body) = answer(vote(1).await).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"message": "Voto registrado exitosamente."})));
    let (status, body) = answer(vote(1).await).await;
    assert_eq!((status, detail(&body)), (StatusCode::BAD_REQUEST, "Ya has votado por este video."));
    let (status, body) = answer(vote(2).await).await;
    assert_eq!((status, detail(&body)), (StatusCode::NOT_FOUND, "El video no existe o no es público."));
    let (status, body) = answer(app.post("/api/public/videos/x/vote").header("authorization", OTHER).send().await).await;
    assert_eq!((status, detail(&body)), (StatusCode::BAD_REQUEST, "El identificador del video (video_id) de la ruta no es válido."));
}

#[tokio::test]
async fn rankings_answer_positions_and_refuse_bad_parameters() {
    let mut ports = Ports::new();
    ports.votes.expect_rankings().returning(|city, page| {
        assert_eq!((city.key(), page.limit, page.offset), (None, 10, 0));
        Ok(vec![RankingEntry { position: 1, username: "Ana Pérez".into(), city: "Bogotá".into(), votes: 1530 }])
    });
    let (app, _dir) = client(ports);
    let (status, body) = answer(app.get("/api/public/rankings").send().await).await;
    assert_eq!((status, body), (StatusCode::OK, json!([{"position": 1, "username": "Ana Pérez", "city": "Bogotá", "votes": 1530}])));
    for query in ["limit=0", "limit=101", "offset=x"] {
        let (status, _) = answer(app.get(format!("/api/public/rankings?{query}")).send().await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
    }
}

#[tokio::test]
async fn a_failing_ranking_backend_answers_503() {
    let mut ports = Ports::new();
    ports.votes.expect_rankings().returning(|_, _| Err(VoteRepositoryError::Backend(unavailable())));
    ports.videos.expect_list_public().returning(|_, _| Err(VideoRepositoryError::Backend(unavailable())));
    let (app, _dir) = client(ports);
    assert_eq!(answer(app.get("/api/public/rankings").send().await).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer(app.get("/api/public/videos").send().await).await.0, StatusCode::SERVICE_UNAVAILABLE);
}

// ---------------------------------------------------------------- files

#[tokio::test]
async fn stored_files_are_served_only_behind_a_valid_signature_with_ranges() {
    let files = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(files.path().join("processed")).unwrap();
    std::fs::write(files.path().join("processed/a.mp4"), b"0123456789").unwrap();
    let signer = UrlSigner::derive(b"test key");
    let key = ObjectKey::parse("processed/a.mp4").unwrap();
    let expires = chrono::Utc::now().timestamp() + 60;
    let link = format!("/files/processed/a.mp4?{}", signer.sign(&key, expires));
    let (app, _dir) = client(Ports { files: Some(files.path().to_owned()), ..Ports::new() });

    let response = app.get(&link).send().await;
    assert_eq!(response.0.status(), StatusCode::OK);
    assert_eq!(response.0.into_body().into_string().await.unwrap(), "0123456789");
    let response = app.get(&link).header("range", "bytes=2-5").send().await;
    assert_eq!(response.0.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.0.headers()["content-range"], "bytes 2-5/10");
    assert_eq!(response.0.into_body().into_string().await.unwrap(), "2345");
    for (range, status, content_range, body) in [
        ("bytes=2-100", StatusCode::PARTIAL_CONTENT, Some("bytes 2-9/10"), "23456789"),
        ("bytes=0-18446744073709551615", StatusCode::PARTIAL_CONTENT, Some("bytes 0-9/10"), "0123456789"),
        ("bytes=-3", StatusCode::PARTIAL_CONTENT, Some("bytes 7-9/10"), "789"),
        ("bytes=5-2", StatusCode::OK, None, "0123456789"),
        ("bytes=1-2,4-5", StatusCode::OK, None, "0123456789"),
    ] {
        let response = app.get(&link).header("range", range).send().await;
        assert_eq!(response.0.status(), status, "{range}");
        assert_eq!(response.0.headers().get("content-range").map(|v| v.to_str().unwrap()), content_range, "{range}");
        assert_eq!(response.0.into_body().into_string().await.unwrap(), body, "{range}");
    }
    for range in ["bytes=10-", "bytes=10-12", "bytes=-0"] {
        let response = app.get(&link).header("range", range).send().await;
        assert_eq!(response.0.headers()["content-range"], "bytes */10", "{range}");
        assert_eq!(answer(response).await.0, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
    }
    let etag = app.get(&link).send().await.0.headers()["etag"].to_str().unwrap().to_owned();
    let stale = app.get(&link).header("range", "bytes=0-1").header("if-range", "\"old\"").send().await;
    assert_eq!(stale.0.status(), StatusCode::OK, "a range of another version is ignored");
    let fresh = app.get(&link).header("range", "bytes=0-1").header("if-range", etag.as_str()).send().await;
    assert_eq!(fresh.0.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(app.get(&link).header("if-none-match", etag.as_str()).send().await.0.status(), StatusCode::NOT_MODIFIED);
    let head = app.head(&link).send().await;
    assert_eq!((head.0.status(), head.0.headers()["content-length"].to_str().unwrap()), (StatusCode::OK, "10"));

    let tampered = link.replace("expires=", "expires=1");
    let signature = link.split("signature=").nth(1).unwrap();
    let malformed = [
        format!("/files/processed/a.mp4?expires=soon&signature={signature}"),
        format!("/files/processed/a.mp4?expires=99999999999999999999999&signature={signature}"),
        format!("/files/processed/a.mp4?expires=&signature={signature}"),
    ];
    let bad_links = [tampered.as_str(), "/files/processed/a.mp4", "/files/processed/a.mp4?expires=1&signature=00"];
    for bad in bad_links.into_iter().chain(malformed.iter().map(String::as_str)) {
        let (status, body) = answer(app.get(bad).send().await).await;
        assert_eq!((status, detail(&body)), (StatusCode::FORBIDDEN, "El enlace no es válido o ha expirado."), "{bad}");
    }
    let gone = format!("/files/processed/b.mp4?{}", signer.sign(&ObjectKey::parse("processed/b.mp4").unwrap(), expires));
    assert_eq!(answer(app.get(&gone).send().await).await.0, StatusCode::NOT_FOUND);

    let (app, _dir) = client(Ports::new());
    assert_eq!(answer(app.get(&link).send().await).await.0, StatusCode::NOT_FOUND, "with S3 storage nothing is served here");
}

// ---------------------------------------------------------------- the rest

#[tokio::test]
async fn unknown_routes_wrong_methods_and_request_ids_answer_as_documented() {
    let (app, _dir) = client(Ports::new());
    let (status, body) = answer(app.get("/api/nothing").send().await).await;
    assert_eq!((status, detail(&body)), (StatusCode::NOT_FOUND, "Recurso no encontrado."));
    for (method, path, allow) in [
        (poem::http::Method::PUT, "/api/videos/1", "GET, DELETE"),
        (poem::http::Method::GET, "/api/videos/upload", "POST"),
        (poem::http::Method::DELETE, "/api/public/rankings", "GET"),
        (poem::http::Method::POST, "/api/health", "GET"),
    ] {
        let response = app.request(method.clone(), path).send().await;
        assert_eq!(response.0.headers().get("allow").map(|v| v.to_str().unwrap().to_owned()).as_deref(), Some(allow), "{method} {path}");
        assert_eq!(answer(response).await.0, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
    }
    let response = app.get("/api/nothing").header("x-request-id", "abc-123").send().await;
    assert_eq!(response.0.headers()["x-request-id"], "abc-123");
    let response = app.get("/api/nothing").send().await;
    assert!(response.0.headers()["x-request-id"].to_str().unwrap().parse::<uuid::Uuid>().is_ok());
}

#[tokio::test]
async fn trailing_slashes_and_the_bare_health_path_are_served_like_the_documented_routes() {
    let mut ports = Ports::new();
    ports.votes.expect_rankings().times(2).returning(|_, page| {
        assert_eq!(page.limit, 5, "the query survives");
        Ok(vec![])
    });
    ports.videos.expect_list_by_owner().times(1).returning(|_| Ok(vec![]));
    let (app, _dir) = client(ports);
    assert_eq!(answer(app.get("/health").send().await).await, (StatusCode::OK, json!({"status": "ok"})));
    assert_eq!(answer(app.get("/api/health/").send().await).await, (StatusCode::OK, json!({"status": "ok"})));
    assert_eq!(answer(app.get("/api/public/rankings/?limit=5").send().await).await, (StatusCode::OK, json!([])));
    assert_eq!(answer(app.get("/api/public/rankings?limit=5").send().await).await, (StatusCode::OK, json!([])));
    assert_eq!(answer(app.get("/api/videos/").header("authorization", PLAYER).send().await).await, (StatusCode::OK, json!([])));
}

#[tokio::test]
async fn links_to_local_files_take_the_host_the_client_used() {
    let mut ports = Ports::new();
    ports.videos.expect_list_by_owner().returning(|_| Ok(vec![video(2, 1, VideoStatus::Processed)]));
    ports.storage.expect_signed_url().returning(|key, _| Ok(format!("/files/{key}?expires=1&signature=ab")));
    let (app, _dir) = client(ports);
    let (_, body) = answer(app.get("/api/videos").header("authorization", PLAYER).header("host", "anb.lan:9000").send().await).await;
    assert!(body[0]["processed_url"].as_str().unwrap().starts_with("http://anb.lan:9000/files/processed/"), "{body}");
}

#[tokio::test]
async fn the_document_names_a_relative_server_so_swagger_ui_works_from_any_host() {
    let (app, _dir) = client(Ports::new());
    let (_, spec) = answer(app.get("/api/openapi.json").send().await).await;
    assert_eq!(spec["servers"], json!([{"url": "/api"}]));
}

/// A multipart body streamed as these pieces, then ended.
fn streamed(pieces: Vec<Vec<u8>>) -> poem::Body {
    poem::Body::from_bytes_stream(futures::stream::iter(pieces.into_iter().map(|p| Ok::<_, std::io::Error>(bytes::Bytes::from(p)))))
}

fn file_part(data: &[u8]) -> Vec<u8> {
    let mut part = b"--b\r\ncontent-disposition: form-data; name=\"video_file\"; filename=\"a.mp4\"\r\n\r\n".to_vec();
    part.extend_from_slice(data);
    part.extend_from_slice(b"\r\n--b--\r\n");
    part
}

#[tokio::test]
async fn every_part_of_an_upload_is_bounded_while_it_is_read() {
    let (app, dir) = client(Ports::new());
    let upload = |body: poem::Body| {
        app.post("/api/videos/upload").header("authorization", PLAYER).content_type("multipart/form-data; boundary=b").body(body).send()
    };
    // 2 MB of junk before the first boundary: the parser would hold it all.
    let preamble = vec![vec![b'p'; 64 * 1024]; 32].into_iter().chain([file_part(b"x")]).collect();
    let (status, body) = answer(upload(streamed(preamble)).await).await;
    assert_eq!((status, detail(&body)), (StatusCode::BAD_REQUEST, "Las cabeceras del formulario multipart son demasiado grandes."));
    // A part whose headers never end.
    let mut head = b"--b\r\ncontent-disposition: form-data; name=\"title\"\r\nx-pad: ".to_vec();
    head.extend(vec![b'h'; 64 * 1024]);
    let headers = std::iter::once(head).chain(vec![vec![b'h'; 64 * 1024]; 32]).collect();
    let (status, body) = answer(upload(streamed(headers)).await).await;
    assert_eq!((status, detail(&body)), (StatusCode::BAD_REQUEST, "Las cabeceras del formulario multipart son demasiado grandes."));
    // An unknown field that goes on and on.
    let mut field = b"--b\r\ncontent-disposition: form-data; name=\"notes\"\r\n\r\n".to_vec();
    field.extend(vec![b'n'; 64 * 1024]);
    let endless = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(field))])
        .chain(futures::stream::repeat_with(|| Ok(bytes::Bytes::from(vec![b'n'; 64 * 1024]))));
    let (status, body) = answer(upload(poem::Body::from_bytes_stream(endless)).await).await;
    assert_eq!((status, detail(&body)), (StatusCode::BAD_REQUEST, "El campo «notes» supera el tamaño permitido (4096 bytes)."));
    // A declared length over the limit is refused before reading.
    let response = app
        .post("/api/videos/upload")
        .header("authorization", PLAYER)
        .header("content-length", "3000000")
        .content_type("multipart/form-data; boundary=b")
        .body(streamed(vec![file_part(b"x")]))
        .send()
        .await;
    let (status, body) = answer(response).await;
    assert_eq!((status, detail(&body)), (StatusCode::PAYLOAD_TOO_LARGE, "El cuerpo de la solicitud supera el tamaño permitido."));
    assert_eq!(left_in(&dir), 0);
}

#[tokio::test]
async fn an_upload_slower_than_the_minimum_rate_answers_408() {
    let (app, dir) = client(Ports::new());
    let head = b"--b\r\ncontent-disposition: form-data; name=\"video_file\"; filename=\"a.mp4\"\r\n\r\n".to_vec();
    // 1 KB every 100 ms: never idle long, but 10 KB/s against 64 KB/s.
    let trickle = futures::stream::iter(std::iter::once(head).chain(std::iter::repeat_n(vec![b'd'; 1024], 100))).then(|piece| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, std::io::Error>(bytes::Bytes::from(piece))
    });
    let response = app
        .post("/api/videos/upload")
        .header("authorization", PLAYER)
        .content_type("multipart/form-data; boundary=b")
        .body(poem::Body::from_bytes_stream(trickle))
        .send()
        .await;
    let (status, body) = answer(response).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert!(detail(&body).starts_with("El envío es demasiado lento"), "{body}");
    assert_eq!(left_in(&dir), 0);
}

#[tokio::test]
async fn a_request_that_takes_too_long_answers_503() {
    let (app, _dir) = client(Ports { slow_health: Some(Duration::from_secs(5)), ..Ports::new() });
    let started = std::time::Instant::now();
    let (status, body) = answer(app.get("/api/ready").send().await).await;
    assert_eq!((status, detail(&body)), (StatusCode::SERVICE_UNAVAILABLE, "La solicitud tardó demasiado. Inténtalo de nuevo."));
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test]
async fn the_page_and_its_files_are_served_with_validators() {
    let (app, _dir) = client(Ports::new());
    for (path, kind, contains) in [
        ("/", "text/html; charset=utf-8", "<title>ANB Rising Stars Showcase</title>"),
        ("/app.js", "text/javascript; charset=utf-8", "/api/videos"),
        ("/app.css", "text/css; charset=utf-8", "{"),
        ("/logo.svg", "image/svg+xml", "<svg"),
    ] {
        let response = app.get(path).send().await;
        assert_eq!(response.0.status(), StatusCode::OK, "{path}");
        assert_eq!(response.0.headers()["content-type"], kind);
        assert_eq!(response.0.headers()["cache-control"], "no-cache");
        assert_eq!(response.0.headers()["x-content-type-options"], "nosniff");
        let etag = response.0.headers()["etag"].to_str().unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        assert!(response.0.into_body().into_string().await.unwrap().contains(contains), "{path}");
        let again = app.get(path).header("if-none-match", etag.as_str()).send().await;
        assert_eq!(again.0.status(), StatusCode::NOT_MODIFIED, "{path}");
        let head = app.head(path).send().await;
        assert_eq!(head.0.status(), StatusCode::OK);
        assert!(head.0.into_body().into_bytes().await.unwrap().is_empty());
    }
    let page = app.get("/").send().await;
    let policy = page.0.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("default-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
}

#[tokio::test]
async fn the_event_stream_sends_each_change_of_progress_and_ends_with_processed() {
    let mut ports = Ports::new();
    let states = std::sync::Mutex::new(vec![
        Video { progress: None, ..video(5, 1, VideoStatus::Processed) },
        Video { progress: Some(60), ..video(5, 1, VideoStatus::Processing) },
        Video { progress: Some(20), ..video(5, 1, VideoStatus::Processing) },
        Video { progress: Some(20), ..video(5, 1, VideoStatus::Processing) },
        Video { progress: None, ..video(5, 1, VideoStatus::Uploaded) },
    ]);
    ports.videos.expect_by_id().returning(move |_| {
        let mut states = states.lock().unwrap();
        Ok(Some(if states.len() > 1 { states.pop().unwrap() } else { states[0].clone() }))
    });
    signed_urls(&mut ports.storage);
    let (app, _dir) = client(ports);
    let response = app.get("/api/videos/5/events").header("authorization", PLAYER).send().await;
    assert_eq!(response.0.status(), StatusCode::OK);
    assert!(response.0.content_type().unwrap().starts_with("text/event-stream"));
    let text = response.0.into_body().into_string().await.unwrap();
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let seen: Vec<(&str, Option<u64>)> = events.iter().map(|e| (e["status"].as_str().unwrap(), e["progress"].as_u64())).collect();
    assert_eq!(
        seen,
        [("uploaded", None), ("processing", Some(20)), ("processing", Some(60)), ("processed", None)],
        "one event a change: {text}"
    );
    assert!(events[3]["processed_url"].as_str().unwrap().contains("processed/"));

    let (app, _dir) = client(Ports::new());
    let (status, _) = answer(app.get("/api/videos/5/events").send().await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_event_stream_follows_the_access_rules() {
    let mut ports = Ports::new();
    ports.videos.expect_by_id().returning(|id| Ok((id.0 == 2).then(|| video(2, 2, VideoStatus::Processing))));
    let (app, _dir) = client(ports);
    let (status, _) = answer(app.get("/api/videos/2/events").header("authorization", PLAYER).send().await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = answer(app.get("/api/videos/3/events").header("authorization", PLAYER).send().await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_account_holds_at_most_four_event_streams_and_gets_its_place_back() {
    let mut ports = Ports::new();
    ports.videos.expect_by_id().returning(|_| Ok(Some(video(5, 1, VideoStatus::Processing))));
    signed_urls(&mut ports.storage);
    let (app, _dir) = client(ports);
    let mut open = Vec::new();
    for _ in 0..4 {
        let response = app.get("/api/videos/5/events").header("authorization", PLAYER).send().await;
        assert_eq!(response.0.status(), StatusCode::OK);
        open.push(response);
    }
    let refused = app.get("/api/videos/5/events").header("authorization", PLAYER).send().await;
    assert_eq!(refused.0.headers()["retry-after"], "5");
    let (status, body) = answer(refused).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(detail(&body).starts_with("Ya tienes 4 transmisiones de estado abiertas"), "{body}");
    let other = app.get("/api/videos/5/events").header("authorization", OTHER).send().await;
    assert_ne!(other.0.status(), StatusCode::TOO_MANY_REQUESTS, "another account has places of its own");
    drop(open.pop());
    let again = app.get("/api/videos/5/events").header("authorization", PLAYER).send().await;
    assert_eq!(again.0.status(), StatusCode::OK, "a closed stream gives its place back");
}

#[tokio::test]
async fn at_shutdown_an_event_stream_sends_a_last_event_and_ends_at_once() {
    let mut ports = Ports::new();
    ports.videos.expect_by_id().returning(|_| Ok(Some(Video { progress: Some(40), ..video(5, 1, VideoStatus::Processing) })));
    signed_urls(&mut ports.storage);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    ports.stopping = Some(anb_application::shutdown_on(async move {
        let _ = stopped.await;
    }));
    let (app, _dir) = client(ports);
    let response = app.get("/api/videos/5/events").header("authorization", PLAYER).send().await;
    assert_eq!(response.0.status(), StatusCode::OK);
    let mut body = response.0.into_body().into_bytes_stream();
    let first = String::from_utf8(body.next().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(first.contains("\"progress\":40"), "{first}");
    let started = std::time::Instant::now();
    stop.send(()).unwrap();
    let mut rest = String::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(3), body.next()).await.expect("the stream ends, not waits") {
        rest.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(started.elapsed() < Duration::from_secs(2), "ended in {:?}", started.elapsed());
    assert_eq!(rest.matches("data:").count(), 1, "one last event, though nothing changed: {rest}");
}

/// A body that sends `head` and then nothing until it is dropped.
fn hanging_body(head: &'static [u8]) -> poem::Body {
    let stream =
        futures::stream::once(async move { Ok::<_, std::io::Error>(bytes::Bytes::from_static(head)) }).chain(futures::stream::pending());
    poem::Body::from_bytes_stream(stream)
}

#[tokio::test]
async fn an_account_sends_at_most_two_uploads_at_once() {
    let (app, _dir) = client(Ports::new());
    let app = Arc::new(app);
    let head: &'static [u8] = b"--b\r\ncontent-disposition: form-data; name=\"video_file\"; filename=\"a.mp4\"\r\n\r\nxxxx";
    let upload = |token: &'static str| {
        let app = app.clone();
        tokio::spawn(async move {
            let response = app
                .post("/api/videos/upload")
                .header("authorization", token)
                .content_type("multipart/form-data; boundary=b")
                .body(hanging_body(head))
                .send()
                .await;
            answer(response).await
        })
    };
    let (first, second) = (upload(PLAYER), upload(PLAYER));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = upload(PLAYER).await.unwrap();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "a third upload of one account: {body}");
    assert!(detail(&body).starts_with("Ya tienes 2 subidas en curso"), "{body}");
    let other = upload(OTHER);
    // The two stall (408) and give their places back.
    assert_eq!(first.await.unwrap().0, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(second.await.unwrap().0, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(other.await.unwrap().0, StatusCode::REQUEST_TIMEOUT, "another account was not refused");
    assert_eq!(upload(PLAYER).await.unwrap().0, StatusCode::REQUEST_TIMEOUT, "places are given back");
}

/// A body sent as `pieces`, each after `every`.
fn paced(pieces: Vec<Vec<u8>>, every: Duration) -> poem::Body {
    poem::Body::from_bytes_stream(futures::stream::iter(pieces).then(move |piece| async move {
        tokio::time::sleep(every).await;
        Ok::<_, std::io::Error>(bytes::Bytes::from(piece))
    }))
}

#[tokio::test]
async fn the_minimum_rate_holds_over_the_whole_body_and_a_sliding_window() {
    let (app, dir) = client(Ports::new());
    // A title sent a byte at a time: never idle 300 ms, never fast enough.
    let mut slow_title = vec![b"--b\r\ncontent-disposition: form-data; name=\"title\"\r\n\r\n".to_vec()];
    slow_title.extend(std::iter::repeat_n(b"a".to_vec(), 100));
    // An unknown field, likewise.
    let mut slow_other = vec![b"--b\r\ncontent-disposition: form-data; name=\"extra\"\r\n\r\n".to_vec()];
    slow_other.extend(std::iter::repeat_n(b"a".to_vec(), 100));
    // 512 KB at once (an average far above the minimum for a long while), then a byte at a time.
    let mut burst = vec![b"--b\r\ncontent-disposition: form-data; name=\"video_file\"; filename=\"a.mp4\"\r\n\r\n".to_vec()];
    burst.push(vec![b'd'; 512 * 1024]);
    burst.extend(std::iter::repeat_n(b"d".to_vec(), 100));
    for (what, pieces) in [("a slow title", slow_title), ("a slow unknown field", slow_other), ("a burst, then a trickle", burst)] {
        let started = std::time::Instant::now();
        let response = app
            .post("/api/videos/upload")
            .header("authorization", PLAYER)
            .content_type("multipart/form-data; boundary=b")
            .body(paced(pieces, Duration::from_millis(100)))
            .send()
            .await;
        let (status, body) = answer(response).await;
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{what}: {body}");
        assert!(detail(&body).starts_with("El envío es demasiado lento"), "{what}: {body}");
        assert!(started.elapsed() < Duration::from_secs(4), "{what}: cut after {:?}", started.elapsed());
    }
    assert_eq!(left_in(&dir), 0);
}

#[tokio::test]
async fn a_panic_in_a_handler_answers_a_500_problem() {
    let mut ports = Ports::new();
    ports.health.expect_check().returning(|| panic!("a bug"));
    let (app, _dir) = client(ports);
    let (status, body) = answer(app.get("/api/ready").send().await).await;
    assert_eq!((status, detail(&body)), (StatusCode::INTERNAL_SERVER_ERROR, "Error interno del servidor."));
}

#[tokio::test]
async fn the_document_lists_every_route_and_swagger_ui_is_served() {
    let (app, _dir) = client(Ports::new());
    let (status, spec) = answer(app.get("/api/openapi.json").send().await).await;
    assert_eq!(status, StatusCode::OK);
    let mut paths: Vec<&str> = spec["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "/auth/login",
            "/auth/me",
            "/auth/resend-verification",
            "/auth/signup",
            "/auth/verify-email",
            "/health",
            "/public/rankings",
            "/public/videos",
            "/public/videos/{video_id}/vote",
            "/ready",
            "/videos",
            "/videos/upload",
            "/videos/{video_id}",
            "/videos/{video_id}/events"
        ]
    );
    let docs = app.get("/docs/").send().await;
    assert_eq!(docs.0.status(), StatusCode::OK);
    let policy = docs.0.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("frame-ancestors 'none'") && policy.contains("default-src 'self'"), "{policy}");
    assert_eq!(docs.0.headers()["x-content-type-options"], "nosniff");
}
