//! The database's credentials and the signing key read from AWS Secrets
//! Manager (moto here), as the AWS deployment gives them: nothing secret in
//! the environment, the unit files or the logs.

use anb_e2e::TestApp;
use anb_testkit::{Moto, Postgres};

#[tokio::test]
async fn a_web_server_reads_its_database_and_key_from_secrets_manager() {
    let database = Postgres::shared().fresh_database().await;
    // postgres://USER@HOST:PORT/NAME, as the throwaway server gives it.
    let rest = database.url.strip_prefix("postgres://").unwrap();
    let (user, rest) = rest.split_once('@').unwrap();
    let (host_port, name) = rest.split_once('/').unwrap();
    let (host, port) = host_port.split_once(':').unwrap();
    let password = "not-in-any-log-7f3a";
    let secret = serde_json::json!({"engine": "postgres", "username": user, "password": password, "host": host,
        "port": port.parse::<u16>().unwrap(), "dbname": name, "sslmode": "disable"});
    let key = "a-signing-key-read-from-secrets-manager-of-64-chars-0123456789abc";
    let client = aws_sdk_secretsmanager::Client::new(&Moto::shared().sdk_config().await);
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let create = |name: String, value: String| {
        let client = client.clone();
        async move { client.create_secret().name(name).secret_string(value).send().await.unwrap().arn.unwrap() }
    };
    let database_arn = create(format!("anb/db-{suffix}"), secret.to_string()).await;
    let key_arn = create(format!("anb/jwt-{suffix}"), key.to_owned()).await;

    let mut env: Vec<(String, String)> = Moto::shared().aws_env().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    env.push(("ANB_DATABASE_SECRET".into(), database_arn));
    env.push(("ANB_JWT_SECRET_ID".into(), key_arn));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::spawn(0, &env).await;
    assert_eq!(app.get("/api/health", None).await.0, 200, "{}", app.log());
    let token = app.player("secret@example.com", "Sol", "Quito").await;

    // The token is signed with the key from the secret: another server with
    // the same secrets accepts it.
    let other = TestApp::spawn(0, &env).await;
    assert_eq!(other.get("/api/videos", Some(&token)).await.0, 200);
    for log in [app.log(), other.log()] {
        assert!(!log.contains(password) && !log.contains(key), "a secret reached the log");
    }
}
