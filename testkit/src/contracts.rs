//! Behaviour every adapter of a port must show, written once and run by each
//! adapter's test file against its own backend.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use anb_domain::ports::{Cache, JobQueue, ObjectStorage, StorageError};
use anb_domain::{Delivery, Job, ObjectKey, Receipt};

/// Put, get, replace, delete (twice), and a missing object, on `store`;
/// `scratch` is a directory for the test's own files.
pub async fn storage_round_trip(store: &dyn ObjectStorage, scratch: &Path) {
    let key = ObjectKey::parse(&format!("uploaded/{}.mp4", uuid::Uuid::new_v4())).unwrap();
    let source = scratch.join("source.mp4");
    std::fs::write(&source, b"video bytes").unwrap();

    store.put_file(&key, &source).await.unwrap();
    assert_eq!(std::fs::read(&source).unwrap(), b"video bytes", "the source is left as is");
    std::fs::remove_file(&source).unwrap();
    let copy = scratch.join("copy.mp4");
    store.get_to_file(&key, &copy).await.unwrap();
    assert_eq!(std::fs::read(&copy).unwrap(), b"video bytes");

    std::fs::write(&source, b"replaced").unwrap();
    store.put_file(&key, &source).await.unwrap();
    store.get_to_file(&key, &copy).await.unwrap();
    assert_eq!(std::fs::read(&copy).unwrap(), b"replaced", "put replaces");

    store.delete(&key).await.unwrap();
    store.delete(&key).await.unwrap();
    assert_eq!(store.get_to_file(&key, &copy).await, Err(StorageError::NotFound));
    let never = ObjectKey::parse(&format!("processed/{}.mp4", uuid::Uuid::new_v4())).unwrap();
    assert_eq!(store.get_to_file(&never, &copy).await, Err(StorageError::NotFound));
}

/// A file of `size` pseudo-random bytes stored and read back intact.
pub async fn storage_keeps_large_files_intact(store: &dyn ObjectStorage, scratch: &Path, size: usize) {
    let key = ObjectKey::parse(&format!("processed/{}.mp4", uuid::Uuid::new_v4())).unwrap();
    let source = scratch.join("large.mp4");
    let bytes: Vec<u8> = (0..size).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&source, &bytes).unwrap();
    store.put_file(&key, &source).await.unwrap();
    let copy = scratch.join("large-copy.mp4");
    store.get_to_file(&key, &copy).await.unwrap();
    assert!(std::fs::read(&copy).unwrap() == bytes, "{size} bytes come back unchanged");
    store.delete(&key).await.unwrap();
}

/// A missing source file is a backend error, and nothing is stored.
pub async fn storage_refuses_a_missing_source(store: &dyn ObjectStorage, scratch: &Path) {
    let key = ObjectKey::parse(&format!("uploaded/{}.mp4", uuid::Uuid::new_v4())).unwrap();
    assert!(matches!(store.put_file(&key, &scratch.join("nope")).await, Err(StorageError::Backend(_))));
    assert_eq!(store.get_to_file(&key, &scratch.join("out")).await, Err(StorageError::NotFound));
}

/// Visibility, extension, release, redelivery with its count, and
/// acknowledgement, for `job`, which the caller has just enqueued alone.
/// Visibilities are whole seconds, which is what SQS counts in.
pub async fn queue_delivers_at_least_once(queue: &dyn JobQueue, job: &Job) {
    let second = Duration::from_secs(1);
    let first = queue.receive(second).await.unwrap().expect("the job is delivered");
    assert_eq!((&first.job, first.receive_count), (job, 1));
    queue.extend(&first.receipt, Duration::from_secs(30)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(queue.receive(second).await.unwrap().is_none(), "an extended job stays hidden");

    queue.release(&first.receipt, Duration::ZERO).await.unwrap();
    let again = queue.receive(second).await.unwrap().expect("a released job is delivered again");
    assert_eq!((&again.job, again.receive_count), (job, 2));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let third = queue.receive(Duration::from_secs(30)).await.unwrap().expect("a job whose visibility ran out is delivered again");
    assert_eq!((&third.job, third.receive_count), (job, 3));

    queue.ack(&third.receipt).await.unwrap();
    queue.release(&first.receipt, Duration::ZERO).await.ok();
    assert!(queue.receive(second).await.unwrap().is_none(), "an acknowledged job is gone");
}

/// A job given back with a delay (a retry) comes back after the delay, not
/// before, with its count going on, and does not hold back `second`, sent
/// after it; a second retry keeps counting. The queue is empty; delays are
/// whole seconds (SQS's unit). Returns the receipt of the job, acknowledged.
pub async fn queue_retries_after_a_delay_without_holding_back_the_next(queue: &dyn JobQueue, first: &Job, second: &Job) -> Receipt {
    let (long, delay) = (Duration::from_secs(30), Duration::from_secs(3));
    queue.send(first).await.unwrap();
    let got = next_within(queue, long, Duration::from_secs(10)).await.expect("the job is delivered");
    assert_eq!((&got.job, got.receive_count), (first, 1));
    let released = Instant::now();
    queue.release(&got.receipt, delay).await.unwrap();

    queue.send(second).await.unwrap();
    let next_one = next_within(queue, long, Duration::from_secs(10)).await.expect("the next job is not held back");
    assert_eq!(&next_one.job, second);
    assert!(released.elapsed() < delay, "it came before the delay ended: {:?}", released.elapsed());
    queue.ack(&next_one.receipt).await.unwrap();

    let again = next_within(queue, long, Duration::from_secs(15)).await.expect("the delayed job comes back");
    assert!(released.elapsed() >= delay, "not before its delay: {:?}", released.elapsed());
    assert_eq!((&again.job, again.receive_count), (first, 2), "its count goes on");
    // A second delayed round trip keeps counting.
    queue.release(&again.receipt, Duration::from_secs(1)).await.unwrap();
    let third = next_within(queue, long, Duration::from_secs(10)).await.expect("the job comes back again");
    assert_eq!((&third.job, third.receive_count), (first, 3));
    queue.ack(&third.receipt).await.unwrap();
    assert!(next_within(queue, long, Duration::from_secs(2)).await.is_none(), "nothing else");
    third.receipt
}

/// A message that is not a job, which the caller put in the queue first
/// (by the broker's own client: another producer, a person), is never
/// delivered as a job, and does not block `job`, sent after it.
pub async fn queue_sets_aside_messages_that_are_not_jobs(queue: &dyn JobQueue, job: &Job) {
    let long = Duration::from_secs(30);
    queue.send(job).await.unwrap();
    let got = next_within(queue, long, Duration::from_secs(10)).await.expect("the job behind it comes");
    assert_eq!((&got.job, got.receive_count), (job, 1));
    queue.ack(&got.receipt).await.unwrap();
    assert!(next_within(queue, long, Duration::from_secs(2)).await.is_none(), "the stray message is nobody's job");
}

/// A job held by a worker that dies (`crash` ends `crashing`, given what it
/// holds: a killed process, a lost connection) is not delivered twice while
/// held, then goes
/// to `survivor`, a worker of the same queue, as its second delivery. The
/// queue is empty.
pub async fn queue_redelivers_the_job_of_a_dead_worker<Q, C, F>(crashing: Q, crash: C, survivor: &dyn JobQueue, job: &Job)
where
    Q: JobQueue,
    C: FnOnce(Q, Delivery) -> F,
    F: Future<Output = ()>,
{
    // Held for a few seconds (whole seconds: SQS's unit); nobody extends it.
    let held_for = Duration::from_secs(4);
    survivor.send(job).await.unwrap();
    let held = next_within(&crashing, held_for, Duration::from_secs(10)).await.expect("the job is delivered");
    assert_eq!((&held.job, held.receive_count), (job, 1));
    assert!(survivor.receive(held_for).await.unwrap().is_none(), "held, so not delivered twice");
    crash(crashing, held).await;
    let taken_over = next_within(survivor, Duration::from_secs(30), Duration::from_secs(15)).await.expect("redelivered");
    assert_eq!((&taken_over.job, taken_over.receive_count), (job, 2));
    survivor.ack(&taken_over.receipt).await.unwrap();
}

/// Receives until a job comes, for up to `within` (adapters that do not
/// wait for a job themselves answer `None` at once).
pub async fn next_within(queue: &dyn JobQueue, visibility: Duration, within: Duration) -> Option<Delivery> {
    let start = Instant::now();
    while start.elapsed() < within {
        match queue.receive(visibility).await {
            Ok(Some(delivery)) => return Some(delivery),
            Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    None
}

/// Entries round-trip byte for byte and apart from each other, expire after
/// their time to live, and an invalidation changes the generation that
/// lookups report (entries stored before it may stay, marked by the caller
/// with the generation they were built at). `cache` holds nothing yet.
pub async fn cache_keeps_entries_until_they_expire_or_are_invalidated(cache: &dyn Cache) {
    let minute = Duration::from_secs(60);
    let empty = cache.lookup("videos:20:0:").await.unwrap();
    assert_eq!(empty.value, None, "an empty cache has no entry");

    let page: std::sync::Arc<[u8]> = (0..=255u8).cycle().take(300_000).collect::<Vec<_>>().into();
    cache.store("videos:20:0:", page.clone(), minute).await.unwrap();
    cache.store("videos:20:0:bogotá", std::sync::Arc::from(&b"other"[..]), minute).await.unwrap();
    let found = cache.lookup("videos:20:0:").await.unwrap();
    assert_eq!(found.value.as_deref(), Some(&*page), "a stored entry comes back byte for byte");
    assert_eq!(found.generation, empty.generation, "storing does not change the generation");
    assert_eq!(cache.lookup("videos:20:0:bogotá").await.unwrap().value.as_deref(), Some(&b"other"[..]));
    cache.store("videos:20:0:bogotá", std::sync::Arc::from(&b"newer"[..]), minute).await.unwrap();
    assert_eq!(cache.lookup("videos:20:0:bogotá").await.unwrap().value.as_deref(), Some(&b"newer"[..]), "a store replaces");

    cache.store("rankings:10:0:", std::sync::Arc::from(&b"short"[..]), Duration::from_millis(300)).await.unwrap();
    assert!(cache.lookup("rankings:10:0:").await.unwrap().value.is_some());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(cache.lookup("rankings:10:0:").await.unwrap().value, None, "an entry is gone after its time to live");

    cache.invalidate().await.unwrap();
    let after = cache.lookup("videos:20:0:").await.unwrap();
    assert_ne!(after.generation, empty.generation, "an invalidation changes the generation");
    cache.invalidate().await.unwrap();
    let again = cache.lookup("videos:20:0:").await.unwrap().generation;
    assert!(again != after.generation && again != empty.generation, "every invalidation gives a new generation");
}
