//! The secrets family: the database URL and the signing key, from the
//! configuration (or a key file made once in the data directory), or from
//! AWS Secrets Manager when the configuration names secrets there.

use crate::StartupError;
use crate::aws::Cloud;
use crate::checked::not_built;
use crate::config::CommonConfig;

/// Checks the secret settings without reading any.
pub(crate) fn check(config: &CommonConfig) -> Result<(), StartupError> {
    if config.database_secret.is_some() && config.database_url.is_some() {
        return Err(StartupError::Config("set ANB_DATABASE_URL or ANB_DATABASE_SECRET, not both".into()));
    }
    if config.jwt_secret.as_ref().is_some_and(|key| key.expose().len() < 32) {
        return Err(StartupError::Config("ANB_JWT_SECRET (--jwt-secret) must be at least 32 characters long".into()));
    }
    if config.jwt_secret_id.is_some() && config.jwt_secret.is_some() {
        return Err(StartupError::Config("set ANB_JWT_SECRET or ANB_JWT_SECRET_ID, not both".into()));
    }
    if !cfg!(feature = "aws") {
        if config.database_secret.is_some() {
            return Err(not_built("ANB_DATABASE_SECRET", "aws"));
        }
        if config.jwt_secret_id.is_some() {
            return Err(not_built("ANB_JWT_SECRET_ID", "aws"));
        }
    }
    Ok(())
}

/// The database URL and the signing key.
#[cfg_attr(not(feature = "aws"), allow(unused_variables))]
pub(crate) async fn read(config: &CommonConfig, cloud: &Cloud) -> Result<(String, Vec<u8>), StartupError> {
    #[cfg(feature = "aws")]
    let database_url = match &config.database_secret {
        Some(id) => anb_aws::secrets::database_url(cloud.config().await, id).await.map_err(StartupError::Secret)?,
        None => config.database_url(),
    };
    #[cfg(not(feature = "aws"))]
    let database_url = config.database_url();
    #[cfg(feature = "aws")]
    if let Some(id) = &config.jwt_secret_id {
        let key = anb_aws::secrets::secret_string(cloud.config().await, id).await.map_err(StartupError::Secret)?;
        if key.trim().len() < 32 {
            return Err(StartupError::Config("the secret of ANB_JWT_SECRET_ID holds a key shorter than 32 characters".into()));
        }
        return Ok((database_url, key.trim().as_bytes().to_vec()));
    }
    Ok((database_url, config.signing_key()?))
}

/// The database URL: `ANB_DATABASE_URL`, or from the secret of
/// `ANB_DATABASE_SECRET` (for `anb-worker migrate` and `retry`).
///
/// # Errors
/// [`StartupError::Secret`] when the secret cannot be read.
pub async fn database_url(config: &CommonConfig) -> Result<String, StartupError> {
    check(config)?;
    #[cfg(feature = "aws")]
    if let Some(id) = &config.database_secret {
        return anb_aws::secrets::database_url(Cloud::new().config().await, id).await.map_err(StartupError::Secret);
    }
    Ok(config.database_url())
}
