//! The secrets family: the database URL, the access tokens' keys (current
//! and previous) and the keyring's key, from the configuration (or a key
//! file made once in the data directory), or from AWS Secrets Manager when
//! the configuration names secrets there.

use std::sync::Arc;

use anb_auth::{KeySource, SigningKeys};

use crate::StartupError;
use crate::aws::Cloud;
use crate::checked::not_built;
use crate::config::CommonConfig;

/// Checks the secret settings without reading any.
pub(crate) fn check(config: &CommonConfig) -> Result<(), StartupError> {
    if config.database_secret.is_some() && config.database_url.is_some() {
        return Err(StartupError::Config("set ANB_DATABASE_URL or ANB_DATABASE_SECRET, not both".into()));
    }
    for (name, key) in [
        ("ANB_JWT_SECRET (--jwt-secret)", &config.jwt_secret),
        ("ANB_JWT_PREVIOUS_SECRET (--jwt-previous-secret)", &config.jwt_previous_secret),
        ("ANB_KEYRING_SECRET (--keyring-secret)", &config.keyring_secret),
    ] {
        if key.as_ref().is_some_and(|key| key.expose().len() < MIN_KEY_LEN) {
            return Err(StartupError::Config(format!("{name} must be at least {MIN_KEY_LEN} characters long")));
        }
    }
    if config.jwt_secret_id.is_some() && (config.jwt_secret.is_some() || config.jwt_previous_secret.is_some()) {
        return Err(StartupError::Config(
            "set ANB_JWT_SECRET (and ANB_JWT_PREVIOUS_SECRET) or ANB_JWT_SECRET_ID, not both: the secret keeps its previous \
             version itself"
                .into(),
        ));
    }
    if config.jwt_previous_secret.is_some() && config.jwt_secret.is_none() {
        return Err(StartupError::Config("ANB_JWT_PREVIOUS_SECRET is the key before ANB_JWT_SECRET: set both".into()));
    }
    if config.jwt_secret_id.is_some() && config.keyring_secret.is_none() && config.keyring_secret_id.is_none() {
        // The secret rotates whenever someone puts a new value: a keyring
        // on it would change under servers started at different times.
        return Err(StartupError::Config(
            "ANB_JWT_SECRET_ID needs a keyring key of its own, never rotated with it: set ANB_KEYRING_SECRET_ID (or \
             ANB_KEYRING_SECRET)"
                .into(),
        ));
    }
    if config.keyring_secret_id.is_some() && config.keyring_secret.is_some() {
        return Err(StartupError::Config("set ANB_KEYRING_SECRET or ANB_KEYRING_SECRET_ID, not both".into()));
    }
    if !cfg!(feature = "aws") {
        for (set, name) in [
            (config.database_secret.is_some(), "ANB_DATABASE_SECRET"),
            (config.jwt_secret_id.is_some(), "ANB_JWT_SECRET_ID"),
            (config.keyring_secret_id.is_some(), "ANB_KEYRING_SECRET_ID"),
        ] {
            if set {
                return Err(not_built(name, "aws"));
            }
        }
    }
    Ok(())
}

/// Shortest key accepted, in characters.
const MIN_KEY_LEN: usize = 32;

/// The keys of a process, as read at start.
pub(crate) struct Keys {
    /// The access tokens' keys.
    pub(crate) tokens: SigningKeys,
    /// Where the tokens' keys are read again (Secrets Manager), if anywhere.
    pub(crate) source: Option<Arc<dyn KeySource>>,
    /// The keyring's key (pseudonyms, message tokens, file links).
    pub(crate) keyring: Vec<u8>,
}

/// The database URL and the keys.
#[cfg_attr(not(feature = "aws"), allow(unused_variables))]
pub(crate) async fn read(config: &CommonConfig, cloud: &Cloud) -> Result<(String, Keys), StartupError> {
    let database_url = database_url_with(config, cloud).await?;
    #[cfg(feature = "aws")]
    let (tokens, source) = match &config.jwt_secret_id {
        Some(id) => {
            let source = SecretsManagerKeys { config: cloud.config().await.clone(), id: id.clone() };
            let keys = source.read().await?;
            (keys, Some(Arc::new(source) as Arc<dyn KeySource>))
        }
        None => (local_keys(config)?, None),
    };
    #[cfg(not(feature = "aws"))]
    let (tokens, source) = (local_keys(config)?, None);
    #[cfg(feature = "aws")]
    let keyring = match &config.keyring_secret_id {
        Some(id) => key_of(&anb_aws::secrets::secret_string(cloud.config().await, id).await.map_err(StartupError::Secret)?, id)?,
        None => keyring_or(config, &tokens),
    };
    #[cfg(not(feature = "aws"))]
    let keyring = keyring_or(config, &tokens);
    Ok((database_url, Keys { tokens, source, keyring }))
}

/// The token keys of the configuration (or the key file).
fn local_keys(config: &CommonConfig) -> Result<SigningKeys, StartupError> {
    Ok(SigningKeys {
        current: config.signing_key()?,
        previous: config.jwt_previous_secret.as_ref().map(|key| key.expose().as_bytes().to_vec()),
    })
}

/// `ANB_KEYRING_SECRET`, else the current token key.
fn keyring_or(config: &CommonConfig, tokens: &SigningKeys) -> Vec<u8> {
    config.keyring_secret.as_ref().map_or_else(|| tokens.current.clone(), |key| key.expose().as_bytes().to_vec())
}

/// A key held by a secret (trimmed), refused when short.
#[cfg(feature = "aws")]
fn key_of(text: &str, id: &str) -> Result<Vec<u8>, StartupError> {
    let key = text.trim();
    if key.len() < MIN_KEY_LEN {
        return Err(StartupError::Config(format!("the secret {id} holds a key shorter than {MIN_KEY_LEN} characters")));
    }
    Ok(key.as_bytes().to_vec())
}

/// The token keys in Secrets Manager: `AWSCURRENT` and `AWSPREVIOUS`.
#[cfg(feature = "aws")]
struct SecretsManagerKeys {
    config: aws_config::SdkConfig,
    id: String,
}

#[cfg(feature = "aws")]
impl SecretsManagerKeys {
    async fn read(&self) -> Result<SigningKeys, StartupError> {
        let current = key_of(&anb_aws::secrets::secret_string(&self.config, &self.id).await.map_err(StartupError::Secret)?, &self.id)?;
        // A secret never rotated has no previous version.
        let previous = match anb_aws::secrets::previous_secret_string(&self.config, &self.id).await.map_err(StartupError::Secret)? {
            Some(text) => Some(key_of(&text, &self.id)?),
            None => None,
        };
        Ok(SigningKeys { current, previous })
    }
}

#[cfg(feature = "aws")]
#[async_trait::async_trait]
impl KeySource for SecretsManagerKeys {
    async fn keys(&self) -> Result<SigningKeys, anb_domain::BackendError> {
        self.read().await.map_err(|e| match e {
            StartupError::Secret(error) => error,
            other => anb_domain::BackendError::internal(other.to_string()),
        })
    }
}

/// The database URL: `ANB_DATABASE_URL`, or from the secret of
/// `ANB_DATABASE_SECRET` (for `anb-worker migrate` and `retry`).
///
/// # Errors
/// [`StartupError::Secret`] when the secret cannot be read.
pub async fn database_url(config: &CommonConfig) -> Result<String, StartupError> {
    check(config)?;
    database_url_with(config, &Cloud::new()).await
}

/// [`database_url`] through `cloud`, read again each time (after a
/// rotation the secret holds the new password).
#[cfg_attr(not(feature = "aws"), allow(unused_variables, clippy::unused_async))]
pub(crate) async fn database_url_with(config: &CommonConfig, cloud: &Cloud) -> Result<String, StartupError> {
    #[cfg(feature = "aws")]
    if let Some(id) = &config.database_secret {
        return anb_aws::secrets::database_url(cloud.config().await, id).await.map_err(StartupError::Secret);
    }
    Ok(config.database_url())
}
