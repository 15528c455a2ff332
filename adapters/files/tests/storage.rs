//! Contract tests of the `ObjectStorage` port on `LocalFileStorage` (the
//! S3 adapter runs the same contracts in `aws.rs`).

use anb_testkit::contracts;

use std::time::Duration;

use anb_domain::ObjectKey;
use anb_domain::ports::ObjectStorage;
use anb_files::{LocalFileStorage, UrlSigner};

fn storage(root: &std::path::Path) -> LocalFileStorage {
    LocalFileStorage::new(root.join("files"), "http://127.0.0.1:8080/", UrlSigner::derive(b"test key"))
}

#[tokio::test]
async fn put_get_and_delete_round_trip_without_touching_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let store = storage(dir.path());
    contracts::storage_round_trip(&store, dir.path()).await;
    contracts::storage_keeps_large_files_intact(&store, dir.path(), 3 << 20).await;
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("files/uploaded")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(leftovers.is_empty(), "no partial files: {leftovers:?}");
}

#[tokio::test]
async fn signed_urls_carry_a_verifiable_signature_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let store = storage(dir.path());
    let key = ObjectKey::parse("processed/b.mp4").unwrap();
    let url = store.signed_url(&key, Duration::from_secs(60)).await.unwrap();
    let rest = url.strip_prefix("http://127.0.0.1:8080/files/processed/b.mp4?expires=").unwrap();
    let (expires, signature) = rest.split_once("&signature=").unwrap();
    let expires: i64 = expires.parse().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!((now + 55..=now + 61).contains(&expires));
    assert!(store.signer().verify(&key, expires, signature, now).is_ok());
    assert!(store.signer().verify(&key, expires, signature, expires + 1).is_err());
}

#[tokio::test]
async fn a_missing_source_is_an_error_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = storage(dir.path());
    contracts::storage_refuses_a_missing_source(&store, dir.path()).await;
    assert!(std::fs::read_dir(dir.path().join("files/uploaded")).map_or(true, |mut d| d.next().is_none()));
}
