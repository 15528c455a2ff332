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
    let keyring_arn = create(format!("anb/keyring-{suffix}"), "a-keyring-key-read-from-secrets-manager-0123456789".to_owned()).await;
    env.push(("ANB_KEYRING_SECRET_ID".into(), keyring_arn));
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

/// The header of a token (it names the signing key's id).
fn header(token: &str) -> &str {
    token.split('.').next().unwrap()
}

#[tokio::test]
async fn rotating_the_token_key_logs_no_one_out_and_retires_keys_two_rotations_old() {
    let database = Postgres::shared().fresh_database().await;
    let client = aws_sdk_secretsmanager::Client::new(&Moto::shared().sdk_config().await);
    let name = format!("anb/jwt-rotation-{}", uuid::Uuid::new_v4().simple());
    let keys = [
        "first-key-of-the-rotation-test-0123456789",
        "second-key-of-the-rotation-test-0123456789",
        "third-key-of-the-rotation-test-0123456789",
    ];
    let arn = client.create_secret().name(&name).secret_string(keys[0]).send().await.unwrap().arn.unwrap();
    // A rotation: the new value becomes AWSCURRENT, the old one AWSPREVIOUS.
    let rotate = |value: &'static str| {
        let (client, arn) = (client.clone(), arn.clone());
        async move { client.put_secret_value().secret_id(arn).secret_string(value).send().await.unwrap() }
    };
    let mut env: Vec<(String, String)> = Moto::shared().aws_env().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    env.push(("ANB_DATABASE_URL".into(), database.url.clone()));
    env.push(("ANB_JWT_SECRET_ID".into(), arn.clone()));
    // The keyring keeps its own key: pseudonyms and links outlive rotations.
    env.push(("ANB_KEYRING_SECRET".into(), "keyring-key-of-the-rotation-test-0123456789".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    let before = TestApp::spawn(0, &env).await;
    let first = before.player("rota@example.com", "Rosa", "Quito").await;
    rotate(keys[1]).await;
    // A server started after the rotation; `before` has not heard of it.
    let after = TestApp::spawn(0, &env).await;
    assert_eq!(after.get("/api/videos", Some(&first)).await.0, 200, "a token of the previous key is accepted");
    let second = after.token("rota@example.com").await;
    assert_ne!(header(&second), header(&first), "signed with the new key, named in kid");
    assert_eq!(before.get("/api/videos", Some(&second)).await.0, 200, "a server behind reads the keys again and accepts it");
    assert_eq!(header(&before.token("rota@example.com").await), header(&second), "and signs with the new key from then on");
    assert_eq!(before.get("/api/videos", Some(&first)).await.0, 200, "still accepting the previous key");

    // Unknown key ids cause a read at most every 2 s.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    rotate(keys[2]).await;
    let later = TestApp::spawn(0, &env).await;
    let third = later.token("rota@example.com").await;
    assert_eq!(later.get("/api/videos", Some(&first)).await.0, 401, "a key retired two rotations ago");
    assert_eq!(later.get("/api/videos", Some(&second)).await.0, 200);
    assert_eq!(before.get("/api/videos", Some(&third)).await.0, 200);
    assert_eq!(before.get("/api/videos", Some(&first)).await.0, 401, "retired there too once the keys are read again");
    for log in [before.log(), after.log(), later.log()] {
        assert!(keys.iter().all(|key| !log.contains(key)), "a key reached the log");
        assert!(!log.contains("keyring-key"), "a key reached the log");
    }
    assert!(before.log().contains("signing with a new key"), "{}", before.log());
}
