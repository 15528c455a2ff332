//! The log-in limits behind a load balancer: every web server counts the
//! same failures, so N servers do not give an attacker N times the guesses.

use anb_e2e::TestApp;
use anb_testkit::Postgres;
use serde_json::json;

#[tokio::test]
async fn failures_counted_on_one_web_server_lock_log_ins_on_the_other() {
    let database = Postgres::shared().fresh_database().await;
    let env = [
        ("ANB_DATABASE_URL", database.url.as_str()),
        ("ANB_JWT_SECRET", "login-limits-test-secret-of-32-chars-or-more"),
        ("ANB_LOGIN_MAX_FAILURES", "3"),
    ];
    let (a, b) = (TestApp::spawn(0, &env).await, TestApp::spawn(0, &env).await);
    a.sign_up("ana@example.com", "Ana", "Bogotá").await;
    let log_in = |app: &TestApp, password: &str| {
        let request = app.http.post(app.url("/api/auth/login")).json(&json!({"email": "ana@example.com", "password": password}));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(log_in(&a, "wrong-one").await, 401);
    assert_eq!(log_in(&b, "wrong-two").await, 401);
    assert_eq!(log_in(&a, "wrong-three").await, 401);
    assert_eq!(log_in(&b, "S3cure!pass").await, 429, "the third failure, made on the other server, locked this one too");
    assert_eq!(log_in(&a, "S3cure!pass").await, 429);
}
