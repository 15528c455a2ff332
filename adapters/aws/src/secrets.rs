//! Secrets from AWS Secrets Manager: the database's credentials (the JSON
//! an RDS-attached secret holds) and the keys of access tokens (the current
//! and the previous version) and of the keyring, so that none is ever in
//! user data, a unit file or a log.

use anb_domain::BackendError;
use serde::Deserialize;

use crate::sdk_error;

/// The text of the secret `id` (a name or an ARN).
///
/// # Errors
/// When Secrets Manager cannot be reached, has no such secret, or the
/// secret holds no text.
pub async fn secret_string(config: &aws_config::SdkConfig, id: &str) -> Result<String, BackendError> {
    let client = aws_sdk_secretsmanager::Client::new(config);
    let output = client.get_secret_value().secret_id(id).send().await.map_err(|e| sdk_error("reading a secret", &e))?;
    output.secret_string.ok_or_else(|| BackendError::internal(format!("the secret {id} holds no text")))
}

/// The text of the version of secret `id` before its last rotation
/// (`AWSPREVIOUS`); `None` for a secret never rotated.
///
/// # Errors
/// When Secrets Manager cannot be reached, has no such secret, or the
/// version holds no text.
pub async fn previous_secret_string(config: &aws_config::SdkConfig, id: &str) -> Result<Option<String>, BackendError> {
    let client = aws_sdk_secretsmanager::Client::new(config);
    match client.get_secret_value().secret_id(id).version_stage("AWSPREVIOUS").send().await {
        Ok(output) => output.secret_string.map(Some).ok_or_else(|| BackendError::internal(format!("the secret {id} holds no text"))),
        Err(error) if crate::service_code(&error) == Some("ResourceNotFoundException") => Ok(None),
        Err(error) => Err(sdk_error("reading a secret", &error)),
    }
}

/// What an RDS-attached secret holds (`AWS::SecretsManager::SecretTargetAttachment`).
#[derive(Deserialize)]
struct DatabaseSecret {
    username: String,
    password: String,
    host: String,
    port: Option<u16>,
    dbname: Option<String>,
    /// Not written by RDS: `require` unless the secret says otherwise (a
    /// database on a private network without TLS, as in tests).
    sslmode: Option<String>,
}

/// The PostgreSQL URL of the database the secret `id` describes, over TLS
/// (`sslmode=require`, unless the secret has an `sslmode` of its own).
///
/// # Errors
/// When the secret cannot be read or is not such a JSON object.
pub async fn database_url(config: &aws_config::SdkConfig, id: &str) -> Result<String, BackendError> {
    database_url_of(&secret_string(config, id).await?)
}

fn database_url_of(secret: &str) -> Result<String, BackendError> {
    let secret: DatabaseSecret = serde_json::from_str(secret)
        .map_err(|e| BackendError::internal(format!("the database secret is not the expected JSON (username, password, host): {e}")))?;
    Ok(format!(
        "postgres://{}:{}@{}:{}/{}?sslmode={}",
        encode(&secret.username),
        encode(&secret.password),
        secret.host,
        secret.port.unwrap_or(5432),
        encode(secret.dbname.as_deref().unwrap_or("postgres")),
        encode(secret.sslmode.as_deref().unwrap_or("require")),
    ))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rds_secret_becomes_a_tls_url_with_its_parts_encoded() {
        let secret = r#"{"engine":"postgres","username":"anb","password":"p@ss:w/rd%","host":"db.example.internal","port":5432,"dbname":"anb","dbInstanceIdentifier":"x"}"#;
        assert_eq!(database_url_of(secret).unwrap(), "postgres://anb:p%40ss%3Aw%2Frd%25@db.example.internal:5432/anb?sslmode=require");
        assert!(database_url_of(r#"{"username":"a"}"#).is_err());
        let plain = r#"{"username":"a","password":"b","host":"h","sslmode":"disable"}"#;
        assert_eq!(database_url_of(plain).unwrap(), "postgres://a:b@h:5432/postgres?sslmode=disable");
        let message = database_url_of("not json").unwrap_err().message;
        assert!(!message.contains("not json"), "the secret's text never reaches a message");
    }
}
