//! Object storage in a local directory (single-node mode). Links to files
//! are signed by the web server: `/files/<key>?expires=<unix>&signature=<hex>`
//! with an HMAC-SHA256 over the key and the expiry, checked by [`UrlSigner`].

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anb_domain::ports::{HealthCheck, ObjectStorage, StorageError};
use anb_domain::{BackendError, ObjectKey};
use async_trait::async_trait;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks links to stored files.
#[derive(Clone)]
pub struct UrlSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(<key redacted>)")
    }
}

/// Why a signed link is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link has expired")]
    Expired,
    #[error("the link's signature does not match")]
    BadSignature,
}

impl UrlSigner {
    /// A signer with its own key, derived from `secret` so that file links and
    /// access tokens never share a key.
    pub fn derive(secret: &[u8]) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(b"anb file links v1");
        Self { key: mac.finalize().into_bytes().to_vec() }
    }

    fn mac(&self, key: &ObjectKey, expires: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(key.as_str().as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// The query string (`expires=...&signature=...`) for `key` until `expires`
    /// (Unix seconds).
    pub fn sign(&self, key: &ObjectKey, expires: i64) -> String {
        let signature = hex::encode(self.mac(key, expires).finalize().into_bytes());
        format!("expires={expires}&signature={signature}")
    }

    /// Checks a link's signature (in constant time), then its expiry.
    ///
    /// # Errors
    /// [`LinkError`] when forged, meant for another key, or expired.
    pub fn verify(&self, key: &ObjectKey, expires: i64, signature: &str, now: i64) -> Result<(), LinkError> {
        let bytes = hex::decode(signature).map_err(|_| LinkError::BadSignature)?;
        self.mac(key, expires).verify_slice(&bytes).map_err(|_| LinkError::BadSignature)?;
        if now > expires { Err(LinkError::Expired) } else { Ok(()) }
    }
}

/// Files under a root directory, one file per key.
#[derive(Debug, Clone)]
pub struct LocalFileStorage {
    root: PathBuf,
    base_url: String,
    signer: UrlSigner,
}

impl LocalFileStorage {
    /// Storage under `root`, with links under `base_url` (`https://host`), or
    /// relative links (`/files/...`) when it is empty.
    pub fn new(root: PathBuf, base_url: &str, signer: UrlSigner) -> Self {
        Self { root, base_url: base_url.trim_end_matches('/').to_owned(), signer }
    }

    /// Where the object of `key` lives on disk.
    pub fn path_of(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    /// The signer that checks this storage's links.
    pub fn signer(&self) -> &UrlSigner {
        &self.signer
    }
}

async fn copy_into_place(source: &Path, target: &Path) -> Result<(), BackendError> {
    let parent = target.parent().ok_or_else(|| BackendError::internal("object path has no parent"))?;
    tokio::fs::create_dir_all(parent).await.map_err(|e| BackendError::io("creating storage directory", &e))?;
    let partial = parent.join(format!(".partial-{}", uuid::Uuid::new_v4().simple()));
    // A hard link costs nothing when source and storage share a file system;
    // otherwise copy. Either way the object appears whole, by rename.
    let placed = match tokio::fs::hard_link(source, &partial).await {
        Ok(()) => Ok(()),
        Err(_) => tokio::fs::copy(source, &partial).await.map(|_| ()),
    };
    let result = match placed {
        Ok(()) => tokio::fs::rename(&partial, target).await.map_err(|e| BackendError::io("storing object", &e)),
        Err(e) => Err(BackendError::io("storing object", &e)),
    };
    if result.is_err() {
        let _ = tokio::fs::remove_file(&partial).await;
    }
    result
}

/// Ready when its directory is there (`/api/ready`'s `storage`).
#[async_trait]
impl HealthCheck for LocalFileStorage {
    async fn check(&self) -> Result<(), BackendError> {
        match tokio::fs::metadata(&self.root).await {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(BackendError::internal(format!("{} is not a directory", self.root.display()))),
            Err(e) => Err(BackendError::io(&format!("reading {}", self.root.display()), &e)),
        }
    }
}

#[async_trait]
impl ObjectStorage for LocalFileStorage {
    async fn put_file(&self, key: &ObjectKey, source: &Path) -> Result<(), StorageError> {
        Ok(copy_into_place(source, &self.path_of(key)).await?)
    }

    async fn get_to_file(&self, key: &ObjectKey, target: &Path) -> Result<(), StorageError> {
        match tokio::fs::copy(self.path_of(key), target).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound && !tokio::fs::try_exists(self.path_of(key)).await.unwrap_or(true) => {
                Err(StorageError::NotFound)
            }
            Err(e) => Err(BackendError::io("reading object", &e).into()),
        }
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.path_of(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BackendError::io("deleting object", &e).into()),
        }
    }

    async fn signed_url(&self, key: &ObjectKey, ttl: Duration) -> Result<String, StorageError> {
        let expires = chrono::Utc::now().timestamp().saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        Ok(format!("{}/files/{}?{}", self.base_url, key, self.signer.sign(key, expires)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_link_verifies_until_it_expires() {
        let signer = UrlSigner::derive(b"secret");
        let key = ObjectKey::parse("processed/a.mp4").unwrap();
        let query = signer.sign(&key, 1000);
        let signature = query.split("signature=").nth(1).unwrap();
        assert_eq!(signer.verify(&key, 1000, signature, 999), Ok(()));
        assert_eq!(signer.verify(&key, 1000, signature, 1001), Err(LinkError::Expired));
        assert_eq!(signer.verify(&key, 2000, signature, 999), Err(LinkError::BadSignature), "expiry was extended");
        let other = ObjectKey::parse("processed/b.mp4").unwrap();
        assert_eq!(signer.verify(&other, 1000, signature, 999), Err(LinkError::BadSignature), "replayed for another key");
        assert_eq!(UrlSigner::derive(b"other").verify(&key, 1000, signature, 999), Err(LinkError::BadSignature));
        assert_eq!(signer.verify(&key, 1000, "zz", 999), Err(LinkError::BadSignature));
    }
}
