//! Contract tests of the repository and queue ports on their SeaORM adapters.
//! Each test runs on a fresh SQLite file and on a fresh PostgreSQL database
//! (on the server `ANB_TEST_DATABASE_URL` names, else a throwaway cluster).

use anb_testkit::contracts;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anb_domain::ports::{
    Deletion, JobQueue, QueueError, UserRepository, UserRepositoryError, VideoRepository, VideoRepositoryError, VoteRepository,
    VoteRepositoryError,
};
use anb_domain::{CityFilter, Email, NewUser, NewVideo, ObjectKey, Page, PasswordHash, TaskId, Title, UserId, VideoId, VideoStatus};
use anb_sql::Database;
use chrono::Utc;

/// A database for one test, removed afterwards.
struct TestDb {
    db: Database,
    _sqlite_dir: Option<tempfile::TempDir>,
    _pg: Option<anb_testkit::TestDatabase>,
}

async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    TestDb { db: Database::connect(&url, 5).await.unwrap(), _sqlite_dir: Some(dir), _pg: None }
}

async fn postgres() -> TestDb {
    let pg = anb_testkit::Postgres::shared().fresh_database().await;
    TestDb { db: Database::connect(&pg.url, 10).await.unwrap(), _sqlite_dir: None, _pg: Some(pg) }
}

/// Every database the suite runs on: SQLite, and PostgreSQL (the server of
/// `ANB_TEST_DATABASE_URL`, else a throwaway cluster).
async fn databases() -> Vec<TestDb> {
    vec![sqlite().await, postgres().await]
}

fn new_user(email: &str, first: &str, city: &str) -> NewUser {
    NewUser {
        first_name: first.into(),
        last_name: "Test".into(),
        email: Email::parse(email).unwrap(),
        password_hash: PasswordHash("$argon2id$x".into()),
        city: city.into(),
        country: "Colombia".into(),
        created_at: Utc::now(),
        signup_network: None,
    }
}

fn new_video(owner: UserId, title: &str) -> NewVideo {
    let task_id = TaskId::random();
    NewVideo { owner, title: Title::parse(title).unwrap(), task_id, original_key: ObjectKey::original(task_id), uploaded_at: Utc::now() }
}

/// Uploads a video and takes it through processing to public.
async fn public_video(db: &Database, owner: UserId, title: &str) -> VideoId {
    let videos = db.videos();
    let video = videos.create_with_job(new_video(owner, title)).await.unwrap();
    videos.mark_processing(video.id).await.unwrap();
    videos.mark_processed(video.id, &ObjectKey::processed(video.task_id), Utc::now()).await.unwrap();
    video.id
}

const ALL: Page = Page { limit: 100, offset: 0 };

#[tokio::test]
async fn emails_are_unique_whatever_their_case() {
    for t in databases().await {
        let users = t.db.users();
        let ana = users.create(new_user("ana@example.com", "Ana", "Bogotá")).await.unwrap();
        assert_eq!(users.create(new_user("ANA@Example.com", "Otra", "Cali")).await, Err(UserRepositoryError::DuplicateEmail));
        assert_eq!(users.by_email(&Email::parse("Ana@EXAMPLE.com").unwrap()).await.unwrap().unwrap().id, ana.id);
        assert_eq!(users.by_id(ana.id).await.unwrap().unwrap().first_name, "Ana");
        assert_eq!(users.by_id(UserId(9999)).await.unwrap(), None);
    }
}

#[tokio::test]
async fn concurrent_sign_ups_with_one_email_create_one_account() {
    for t in databases().await {
        let users = Arc::new(t.db.users());
        let attempts: Vec<_> = (0..10)
            .map(|i| {
                let users = users.clone();
                tokio::spawn(async move { users.create(new_user("race@example.com", &format!("R{i}"), "Cali")).await })
            })
            .collect();
        let mut created = 0;
        for attempt in attempts {
            match attempt.await.unwrap() {
                Ok(_) => created += 1,
                Err(e) => assert_eq!(e, UserRepositoryError::DuplicateEmail),
            }
        }
        assert_eq!(created, 1);
    }
}

#[tokio::test]
async fn an_upload_is_stored_with_its_job_and_listed_newest_first() {
    for t in databases().await {
        let owner = t.db.users().create(new_user("p@example.com", "P", "Cali")).await.unwrap().id;
        let videos = t.db.videos();
        let first = videos.create_with_job(new_video(owner, "uno")).await.unwrap();
        let second = videos.create_with_job(new_video(owner, "dos")).await.unwrap();
        assert_eq!(first.status, VideoStatus::Uploaded);
        let listed: Vec<_> = videos.list_by_owner(owner).await.unwrap().into_iter().map(|v| v.title).collect();
        assert_eq!(listed, ["dos", "uno"]);
        let queue = t.db.queue();
        let a = queue.receive(Duration::from_secs(60)).await.unwrap().unwrap();
        let b = queue.receive(Duration::from_secs(60)).await.unwrap().unwrap();
        assert_eq!((a.job.video_id, b.job.video_id), (first.id, second.id), "jobs come out oldest first");
        assert_eq!(a.job.task_id, first.task_id);
        assert!(queue.receive(Duration::from_secs(60)).await.unwrap().is_none(), "both are hidden while held");
    }
}

#[tokio::test]
async fn status_moves_follow_the_rules() {
    for t in databases().await {
        let owner = t.db.users().create(new_user("s@example.com", "S", "Cali")).await.unwrap().id;
        let videos = t.db.videos();
        let v = videos.create_with_job(new_video(owner, "t")).await.unwrap();
        let key = ObjectKey::processed(v.task_id);
        assert!(matches!(
            videos.mark_processed(v.id, &key, Utc::now()).await,
            Err(VideoRepositoryError::InvalidTransition { from: VideoStatus::Uploaded, to: VideoStatus::Processed })
        ));
        videos.report_progress(v.id, 30).await.unwrap();
        assert_eq!(videos.by_id(v.id).await.unwrap().unwrap().progress, None, "no progress before processing");
        videos.mark_processing(v.id).await.unwrap();
        assert_eq!(videos.by_id(v.id).await.unwrap().unwrap().progress, Some(0));
        videos.report_progress(v.id, 42).await.unwrap();
        assert_eq!(videos.by_id(v.id).await.unwrap().unwrap().progress, Some(42));
        videos.mark_processing(v.id).await.unwrap();
        assert_eq!(videos.by_id(v.id).await.unwrap().unwrap().progress, Some(0), "a redelivered job starts again");
        videos.mark_waiting(v.id, "retry").await.unwrap();
        assert_eq!(videos.by_id(v.id).await.unwrap().unwrap().progress, None);
        assert_eq!(videos.by_id(v.id).await.unwrap().unwrap().failure_reason.as_deref(), Some("retry"));
        videos.mark_processing(v.id).await.unwrap();
        videos.mark_processed(v.id, &key, Utc::now()).await.unwrap();
        let done = videos.by_id(v.id).await.unwrap().unwrap();
        assert_eq!((done.status, done.processed_key, done.failure_reason, done.progress), (VideoStatus::Processed, Some(key), None, None));
        assert!(done.processed_at.is_some());
        assert!(matches!(videos.mark_processing(v.id).await, Err(VideoRepositoryError::InvalidTransition { .. })));
        assert!(matches!(videos.mark_failed(v.id, "late").await, Err(VideoRepositoryError::InvalidTransition { .. })), "final stays final");
        assert_eq!(videos.mark_failed(VideoId(9999), "x").await, Err(VideoRepositoryError::NotFound));

        // A waiting video whose job was dead-lettered fails with its reason.
        let waiting = videos.create_with_job(new_video(owner, "w")).await.unwrap();
        videos.mark_failed(waiting.id, "Se agotaron los intentos de procesamiento.").await.unwrap();
        let failed = videos.by_id(waiting.id).await.unwrap().unwrap();
        assert_eq!(
            (failed.status, failed.failure_reason.as_deref()),
            (VideoStatus::Failed, Some("Se agotaron los intentos de procesamiento."))
        );
    }
}

#[tokio::test]
async fn only_unpublished_videos_are_deleted_with_their_jobs_and_votes() {
    for t in databases().await {
        let owner = t.db.users().create(new_user("d@example.com", "D", "Cali")).await.unwrap().id;
        let videos = t.db.videos();
        let pending = videos.create_with_job(new_video(owner, "pending")).await.unwrap();
        let public = public_video(&t.db, owner, "public").await;
        assert_eq!(videos.delete_unless_public(public).await.unwrap(), Deletion::Public);
        assert!(matches!(videos.delete_unless_public(pending.id).await.unwrap(), Deletion::Deleted(v) if v.id == pending.id));
        assert_eq!(videos.delete_unless_public(pending.id).await.unwrap(), Deletion::NotFound);
        assert_eq!(videos.by_id(pending.id).await.unwrap(), None);
        let queue = t.db.queue();
        let remaining = queue.receive(Duration::from_secs(60)).await.unwrap().unwrap();
        assert_eq!(remaining.job.video_id, public, "the deleted video's job is gone");
    }
}

#[tokio::test]
async fn one_vote_per_person_and_video_counted_once_even_under_a_race() {
    for t in databases().await {
        let users = t.db.users();
        let owner = users.create(new_user("o@example.com", "O", "Cali")).await.unwrap().id;
        let voter = users.create(new_user("v@example.com", "V", "Cali")).await.unwrap().id;
        let video = public_video(&t.db, owner, "v").await;
        let votes = Arc::new(t.db.votes());
        let racers: Vec<_> = (0..30)
            .map(|_| {
                let votes = votes.clone();
                tokio::spawn(async move { votes.cast(voter, video, None, Utc::now()).await })
            })
            .collect();
        let mut accepted = 0;
        for racer in racers {
            match racer.await.unwrap() {
                Ok(()) => accepted += 1,
                Err(e) => assert_eq!(e, VoteRepositoryError::DuplicateVote),
            }
        }
        assert_eq!(accepted, 1);
        assert_eq!(t.db.videos().by_id(video).await.unwrap().unwrap().votes, 1);
        let pending = t.db.videos().create_with_job(new_video(owner, "p")).await.unwrap();
        assert_eq!(votes.cast(voter, pending.id, None, Utc::now()).await, Err(VoteRepositoryError::VideoNotPublic));
        assert_eq!(votes.cast(voter, VideoId(9999), None, Utc::now()).await, Err(VoteRepositoryError::VideoNotPublic));
        assert_eq!(votes.cast(owner, video, None, Utc::now()).await, Err(VoteRepositoryError::OwnVideo), "a self-vote");
        assert_eq!(votes.cast(owner, pending.id, None, Utc::now()).await, Err(VoteRepositoryError::VideoNotPublic), "own but not public");
        assert_eq!(t.db.videos().by_id(video).await.unwrap().unwrap().votes, 1, "a refused vote counts nothing");
    }
}

#[tokio::test]
async fn rankings_sum_public_votes_break_ties_by_first_upload_and_filter_by_city() {
    for t in databases().await {
        let users = t.db.users();
        let ana = users.create(new_user("ana@example.com", "Ana", "Bogotá")).await.unwrap().id;
        let luis = users.create(new_user("luis@example.com", "Luis", "BOGOTÁ")).await.unwrap().id;
        let eva = users.create(new_user("eva@example.com", "Eva", "Cali")).await.unwrap().id;
        let nobody = users.create(new_user("n@example.com", "Nadie", "Cali")).await.unwrap().id;
        let voters: Vec<_> = futures_voters(&t.db, 3).await;

        let luis_video = public_video(&t.db, luis, "luis").await; // uploaded first
        let ana_1 = public_video(&t.db, ana, "ana 1").await;
        let ana_2 = public_video(&t.db, ana, "ana 2").await;
        let eva_video = public_video(&t.db, eva, "eva").await;
        t.db.videos().create_with_job(new_video(nobody, "never processed")).await.unwrap();
        let votes = t.db.votes();
        for (voter, video) in [(0, ana_1), (1, ana_2), (0, luis_video), (1, luis_video), (0, eva_video), (1, eva_video), (2, eva_video)] {
            votes.cast(voters[voter], video, None, Utc::now()).await.unwrap();
        }

        let ranking = votes.rankings(CityFilter::any(), ALL).await.unwrap();
        let rows: Vec<_> = ranking.iter().map(|r| (r.position, r.username.as_str(), r.votes)).collect();
        assert_eq!(rows, [(1, "Eva Test", 3), (2, "Luis Test", 2), (3, "Ana Test", 2)], "Luis uploaded before Ana");

        let bogota = votes.rankings(CityFilter::city("bogotá"), ALL).await.unwrap();
        assert_eq!(bogota.iter().map(|r| r.username.as_str()).collect::<Vec<_>>(), ["Luis Test", "Ana Test"]);
        assert_eq!(bogota.iter().map(|r| r.city.as_str()).collect::<Vec<_>>(), ["BOGOTÁ", "Bogotá"], "as each player wrote it");
        for typed in ["Bogota", "Bogota\u{301}", " BOGOTA "] {
            let found = votes.rankings(CityFilter::city(typed), ALL).await.unwrap();
            assert_eq!(found.len(), 2, "{typed:?} finds both");
            assert_eq!(t.db.videos().list_public(CityFilter::city(typed), ALL).await.unwrap().len(), 3, "{typed:?}: their videos");
        }
        let second_page = votes.rankings(CityFilter::any(), Page { limit: 1, offset: 1 }).await.unwrap();
        assert_eq!((second_page[0].position, second_page[0].username.as_str()), (2, "Luis Test"));

        let public = t.db.videos().list_public(CityFilter::any(), ALL).await.unwrap();
        assert_eq!(public.iter().map(|v| v.id).collect::<Vec<_>>(), [eva_video, luis_video, ana_1, ana_2]);
        let cali = t.db.videos().list_public(CityFilter::city("CALI"), ALL).await.unwrap();
        assert_eq!((cali.len(), cali[0].username.as_str(), cali[0].city.as_str()), (1, "Eva Test", "Cali"));
    }
}

async fn futures_voters(db: &Database, n: usize) -> Vec<UserId> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(db.users().create(new_user(&format!("voter{i}@example.com"), "Voter", "Medellín")).await.unwrap().id);
    }
    ids
}

#[tokio::test]
async fn the_queue_retries_after_a_delay_without_holding_back_the_next() {
    for t in databases().await {
        let owner = t.db.users().create(new_user("d@example.com", "D", "Cali")).await.unwrap().id;
        let mut jobs = Vec::new();
        for title in ["d1", "d2"] {
            let video = t.db.videos().create_with_job(new_video(owner, title)).await.unwrap();
            jobs.push(anb_domain::Job { task_id: video.task_id, video_id: video.id });
        }
        // The uploads queued their jobs already: taken out first, the
        // contract sends them itself.
        let queue = t.db.queue();
        for _ in 0..2 {
            let delivery = queue.receive(Duration::from_secs(30)).await.unwrap().unwrap();
            queue.ack(&delivery.receipt).await.unwrap();
        }
        contracts::queue_retries_after_a_delay_without_holding_back_the_next(&queue, &jobs[0], &jobs[1]).await;
    }
}

#[tokio::test]
async fn the_job_of_a_dead_worker_goes_to_another() {
    for t in databases().await {
        let owner = t.db.users().create(new_user("k@example.com", "K", "Cali")).await.unwrap().id;
        let video = t.db.videos().create_with_job(new_video(owner, "k")).await.unwrap();
        let queue = t.db.queue();
        // The upload queued its job already: taken out first, the contract sends it itself.
        let queued = queue.receive(Duration::from_secs(30)).await.unwrap().unwrap();
        queue.ack(&queued.receipt).await.unwrap();
        // A killed worker says nothing: its job's visibility runs out.
        let crash = |queue: anb_sql::SeaOrmJobQueue, _| async move { drop(queue) };
        let job = anb_domain::Job { task_id: video.task_id, video_id: video.id };
        contracts::queue_redelivers_the_job_of_a_dead_worker(t.db.queue(), crash, &queue, &job).await;
    }
}

#[tokio::test]
async fn the_queue_delivers_at_least_once_and_voids_stale_receipts() {
    for t in databases().await {
        let owner = t.db.users().create(new_user("q@example.com", "Q", "Cali")).await.unwrap().id;
        let video = t.db.videos().create_with_job(new_video(owner, "q")).await.unwrap();
        let queue = t.db.queue();
        let job = anb_domain::Job { task_id: video.task_id, video_id: video.id };
        contracts::queue_delivers_at_least_once(&queue, &job).await;

        // Beyond SQS: a receipt that no longer holds the job is refused.
        queue.send(&job).await.unwrap();
        let short = Duration::from_millis(300);
        let first = queue.receive(short).await.unwrap().unwrap();
        queue.release(&first.receipt, Duration::ZERO).await.unwrap();
        assert_eq!(queue.extend(&first.receipt, short).await, Err(QueueError::ReceiptExpired), "a released receipt is void");
        let second = queue.receive(short).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let third = queue.receive(short).await.unwrap().unwrap();
        assert_eq!(queue.ack(&second.receipt).await, Err(QueueError::ReceiptExpired), "the old holder lost it");

        queue.dead_letter(&third.receipt, "broken").await.unwrap();
        assert!(queue.receive(short).await.unwrap().is_none());
        let dead = queue.dead_letters().await.unwrap();
        assert_eq!((dead.len(), dead[0].0.video_id, dead[0].1.as_str()), (1, video.id, "broken"));

        let job = anb_domain::Job { task_id: TaskId::random(), video_id: video.id };
        queue.send(&job).await.unwrap();
        queue.send(&job).await.unwrap();
        assert_eq!(queue.depth().await.unwrap(), 1, "sending the same job twice queues it once");
        let again = queue.receive(short).await.unwrap().unwrap();
        queue.ack(&again.receipt).await.unwrap();
        assert_eq!(queue.depth().await.unwrap(), 0);
    }
}

#[tokio::test]
async fn concurrent_receivers_never_get_the_same_job() {
    for t in databases().await {
        let owner = t.db.users().create(new_user("c@example.com", "C", "Cali")).await.unwrap().id;
        for i in 0..20 {
            t.db.videos().create_with_job(new_video(owner, &format!("v{i}"))).await.unwrap();
        }
        let queue = Arc::new(t.db.queue());
        let receivers: Vec<_> = (0..8)
            .map(|_| {
                let queue = queue.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    while let Some(d) = queue.receive(Duration::from_secs(60)).await.unwrap() {
                        got.push(d.job.task_id);
                    }
                    got
                })
            })
            .collect();
        let mut all = Vec::new();
        for r in receivers {
            all.extend(r.await.unwrap());
        }
        let unique: HashSet<_> = all.iter().collect();
        assert_eq!((all.len(), unique.len()), (20, 20));
    }
}

#[tokio::test]
async fn a_waiting_receive_is_handed_a_job_of_its_process_at_once_and_others_on_its_next_look() {
    for t in databases().await {
        let owner = t.db.users().create(new_user("w@example.com", "W", "Cali")).await.unwrap().id;
        // Looks at the table only once a minute: only the notice can wake it in time.
        let queue = Arc::new(t.db.queue().with_long_poll(Duration::from_secs(60), Duration::from_secs(60)));
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.receive(Duration::from_secs(60)).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "an empty queue makes the receive wait");
        let video = t.db.videos().create_with_job(new_video(owner, "notified")).await.unwrap();
        let delivery = tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("woken by the upload").unwrap().unwrap();
        assert_eq!(delivery.expect("the new job").job.video_id, video.id);

        // A job another process added (another pool on the same database:
        // no notice) is found on the next look.
        let other = match t._sqlite_dir.as_ref() {
            Some(_) => None,
            None => Some(Database::connect(&t._pg.as_ref().unwrap().url, 2).await.unwrap()),
        };
        if let Some(other) = other {
            let queue = Arc::new(t.db.queue().with_long_poll(Duration::from_secs(30), Duration::from_millis(100)));
            let waiting = tokio::spawn({
                let queue = queue.clone();
                async move { queue.receive(Duration::from_secs(60)).await }
            });
            tokio::time::sleep(Duration::from_millis(200)).await;
            let elsewhere = other.videos().create_with_job(new_video(owner, "elsewhere")).await.unwrap();
            let delivery = tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("found by looking").unwrap().unwrap();
            assert_eq!(delivery.expect("the other process's job").job.video_id, elsewhere.id);
        }

        // With nothing to take, a receive answers None once its wait is over.
        let short = t.db.queue().with_long_poll(Duration::from_millis(300), Duration::from_millis(100));
        assert!(short.receive(Duration::from_secs(60)).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn failed_log_ins_are_counted_per_key_within_their_window_and_cleared() {
    use anb_domain::ports::Counters;
    for t in databases().await {
        let attempts = t.db.counters();
        let (a, b) = ("pair:10.0.0.1|ana@example.com".to_owned(), "account:ana@example.com".to_owned());
        let window = Duration::from_secs(60);
        let now = Utc::now();
        assert!(attempts.counts(&[a.clone(), b.clone()]).await.unwrap().is_empty());
        let first = attempts.record(&[a.clone(), b.clone()], window, now).await.unwrap();
        assert_eq!(first.iter().map(|c| c.count).collect::<Vec<_>>(), [1, 1], "record returns the counts it leaves");
        let second = attempts.record(&[a.clone(), b.clone()], window, now + chrono::Duration::seconds(1)).await.unwrap();
        assert_eq!(second.iter().map(|c| (c.key.as_str(), c.count)).collect::<Vec<_>>(), [(a.as_str(), 2), (b.as_str(), 2)]);
        let mut counts = attempts.counts(&[a.clone(), b.clone()]).await.unwrap();
        counts.sort_by(|x, y| x.key.cmp(&y.key));
        assert_eq!(counts.iter().map(|c| (c.key.as_str(), c.count)).collect::<Vec<_>>(), [(b.as_str(), 2), (a.as_str(), 2)]);
        assert_eq!(counts[0].since.timestamp_millis(), now.timestamp_millis(), "the window starts at the first failure");

        // Past its window a count starts again (and the stale one is swept).
        let later = now + chrono::Duration::seconds(61);
        let restarted = attempts.record(std::slice::from_ref(&a), window, later).await.unwrap();
        assert_eq!(restarted[0].count, 1);
        let counts = attempts.counts(&[a.clone(), b.clone()]).await.unwrap();
        assert_eq!(counts.len(), 1, "the other key's window ended: {counts:?}");
        assert_eq!((counts[0].count, counts[0].since.timestamp_millis()), (1, later.timestamp_millis()));

        attempts.clear(std::slice::from_ref(&a)).await.unwrap();
        assert!(attempts.counts(&[a.clone(), b.clone()]).await.unwrap().is_empty());

        // Counters of different windows share the table: a short one's
        // sweep leaves a longer one's count alone.
        let sign_ups = "signup-address:x".to_owned();
        attempts.record(std::slice::from_ref(&sign_ups), Duration::from_secs(3600), now).await.unwrap();
        attempts.record(std::slice::from_ref(&a), window, now + chrono::Duration::seconds(600)).await.unwrap();
        let kept = attempts.counts(std::slice::from_ref(&sign_ups)).await.unwrap();
        assert_eq!(kept.iter().map(|c| c.count).collect::<Vec<_>>(), [1], "swept by the log-in's shorter window");
        attempts.record(std::slice::from_ref(&a), window, now + chrono::Duration::seconds(3601)).await.unwrap();
        assert!(attempts.counts(std::slice::from_ref(&sign_ups)).await.unwrap().is_empty(), "its own window ended: swept");
        assert!(attempts.counts(&[]).await.unwrap().is_empty());
        attempts.clear(&[]).await.unwrap();
    }
}

/// A queue that counts no redeliveries (Kafka does not) and whose receipts
/// can be lost (a RabbitMQ connection can be).
struct Forgetful {
    inner: anb_sql::SeaOrmJobQueue,
    lost: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl JobQueue for Forgetful {
    async fn send(&self, job: &anb_domain::Job) -> Result<(), QueueError> {
        self.inner.send(job).await
    }

    async fn receive(&self, visibility: Duration) -> Result<Option<anb_domain::Delivery>, QueueError> {
        Ok(self.inner.receive(visibility).await?.map(|d| anb_domain::Delivery { receive_count: 1, ..d }))
    }

    async fn extend(&self, receipt: &anb_domain::Receipt, visibility: Duration) -> Result<(), QueueError> {
        if self.lost.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(QueueError::ReceiptExpired);
        }
        self.inner.extend(receipt, visibility).await
    }

    async fn ack(&self, receipt: &anb_domain::Receipt) -> Result<(), QueueError> {
        self.inner.ack(receipt).await
    }

    async fn release(&self, receipt: &anb_domain::Receipt, delay: Duration) -> Result<(), QueueError> {
        self.inner.release(receipt, delay).await
    }

    async fn dead_letter(&self, receipt: &anb_domain::Receipt, reason: &str) -> Result<(), QueueError> {
        self.inner.dead_letter(receipt, reason).await
    }
}

#[tokio::test]
async fn leases_count_the_takes_of_a_video_and_outlive_a_lost_receipt() {
    use std::sync::atomic::Ordering;
    for t in databases().await {
        let owner = t.db.users().create(new_user("l@example.com", "L", "Cali")).await.unwrap().id;
        let videos = t.db.videos();
        let video = videos.create_with_job(new_video(owner, "l")).await.unwrap();
        let forgetful = Arc::new(Forgetful { inner: t.db.queue(), lost: false.into() });
        let queue = anb_sql::LeasedQueue::new(forgetful.clone(), t.db.clone());
        let short = Duration::from_secs(1);

        // Taken, its worker killed (never settled), taken again, released
        // and taken again: the count grows though the queue says 1 each time.
        let first = queue.receive(short).await.unwrap().unwrap();
        assert_eq!((first.job.video_id, first.receive_count), (video.id, 1));
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        let second = queue.receive(short).await.unwrap().expect("taken again after the visibility");
        assert_eq!(second.receive_count, 2);
        queue.release(&second.receipt, Duration::ZERO).await.unwrap();
        let third = queue.receive(Duration::from_secs(30)).await.unwrap().expect("released, so taken again");
        assert_eq!(third.receive_count, 3, "a release keeps the count");

        // The queue loses the receipt while the lease lives: the worker goes
        // on, and the copy the queue hands out again waits for it.
        forgetful.lost.store(true, Ordering::SeqCst);
        queue.extend(&third.receipt, Duration::from_secs(30)).await.expect("the lease still holds the video");
        forgetful.lost.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        assert!(queue.receive(short).await.unwrap().is_none(), "no second live delivery");
        queue.ack(&third.receipt).await.unwrap();

        // A lost receipt whose lease ran out is lost.
        let other = videos.create_with_job(new_video(owner, "m")).await.unwrap();
        let taken = queue.receive(short).await.unwrap().unwrap();
        assert_eq!((taken.job.video_id, taken.receive_count), (other.id, 1), "another video has a count of its own");
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        forgetful.lost.store(true, Ordering::SeqCst);
        assert_eq!(queue.extend(&taken.receipt, short).await, Err(QueueError::ReceiptExpired));
    }
}

#[tokio::test]
async fn a_failed_video_is_retried_with_a_new_job_and_its_attempts_from_zero() {
    for t in databases().await {
        let owner = t.db.users().create(new_user("r@example.com", "R", "Cali")).await.unwrap().id;
        let videos = t.db.videos();
        let queue = t.db.queue();
        let video = videos.create_with_job(new_video(owner, "otra vez")).await.unwrap();
        let first = queue.receive(Duration::from_secs(60)).await.unwrap().unwrap();
        videos.mark_processing(video.id).await.unwrap();
        videos.mark_failed(video.id, "Error interno al procesar el video.").await.unwrap();
        queue.dead_letter(&first.receipt, "Error interno al procesar el video.").await.unwrap();

        videos.retry_failed(video.id).await.unwrap();
        let retried = videos.by_id(video.id).await.unwrap().unwrap();
        assert_eq!((retried.status, retried.failure_reason), (VideoStatus::Uploaded, None));
        let again = queue.receive(Duration::from_secs(60)).await.unwrap().expect("a new job");
        assert_eq!((again.job.video_id, again.job.task_id, again.receive_count), (video.id, video.task_id, 1));
        assert!(queue.dead_letters().await.unwrap().is_empty(), "the dead job is replaced");

        assert!(matches!(
            videos.retry_failed(video.id).await,
            Err(VideoRepositoryError::InvalidTransition { from: VideoStatus::Uploaded, to: VideoStatus::Uploaded })
        ));
        assert_eq!(videos.retry_failed(VideoId(9999)).await, Err(VideoRepositoryError::NotFound));
    }
}

#[tokio::test]
async fn a_sign_up_queues_its_message_and_a_token_verifies_the_address_once_until_it_expires() {
    use anb_domain::ports::{RedeemError, Verifications};
    use anb_domain::{MailKind, TokenHash};
    for t in databases().await {
        let verifications = t.db.verifications();
        let ana = t.db.users().create(new_user("ana@example.com", "Ana", "Cali")).await.unwrap();
        // The message is due from the account's creation on.
        let now = ana.created_at + chrono::Duration::milliseconds(1);
        assert!(!ana.email_verified);

        // The sign-up's message is due at once, taken by one relay only.
        let lease = Duration::from_secs(60);
        let due = verifications.take_due(now, lease, 10).await.unwrap();
        assert_eq!(due.iter().map(|m| (m.user.id, m.kind, m.attempts)).collect::<Vec<_>>(), [(ana.id, MailKind::Verification, 0)]);
        assert!(verifications.take_due(now, lease, 10).await.unwrap().is_empty(), "hidden while leased");
        verifications.mail_failed(due[0].id, "connection refused", now + chrono::Duration::seconds(10)).await.unwrap();
        assert!(verifications.take_due(now + chrono::Duration::seconds(5), lease, 10).await.unwrap().is_empty());
        let again = verifications.take_due(now + chrono::Duration::seconds(11), lease, 10).await.unwrap();
        assert_eq!(again[0].attempts, 1, "the failure was counted");
        verifications.mail_sent(again[0].id).await.unwrap();
        assert!(verifications.take_due(now + chrono::Duration::hours(1), lease, 10).await.unwrap().is_empty(), "sent: gone");

        let (good, old) = (TokenHash("good".into()), TokenHash("old".into()));
        verifications.store_token(ana.id, &good, now + chrono::Duration::hours(48)).await.unwrap();
        verifications.store_token(ana.id, &old, now + chrono::Duration::seconds(1)).await.unwrap();
        let later = now + chrono::Duration::seconds(2);
        assert_eq!(verifications.redeem(&old, later).await, Err(RedeemError::Expired));
        assert_eq!(verifications.redeem(&TokenHash("forged".into()), later).await, Err(RedeemError::Unknown));
        assert!(!t.db.users().by_id(ana.id).await.unwrap().unwrap().email_verified);
        assert_eq!(verifications.redeem(&good, later).await, Ok(ana.id));
        assert!(t.db.users().by_id(ana.id).await.unwrap().unwrap().email_verified);
        assert_eq!(verifications.redeem(&good, later).await, Err(RedeemError::Used));

        // A request for a new link queues one more message.
        verifications.queue_mail(ana.id, MailKind::Verification, later).await.unwrap();
        assert_eq!(verifications.take_due(later, lease, 10).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn the_audit_finds_accounts_of_one_network_voting_for_one_player_and_voiding_restores_the_ranking() {
    use anb_domain::ports::VoteAudit;
    use anb_domain::{AuditBasis, NetworkTag};
    for t in databases().await {
        let users = t.db.users();
        let honest = users.create(new_user("honest@example.com", "Honesta", "Cali")).await.unwrap().id;
        let cheat = users.create(new_user("cheat@example.com", "Tramposo", "Cali")).await.unwrap().id;
        let honest_video = public_video(&t.db, honest, "h").await;
        let cheat_video = public_video(&t.db, cheat, "c").await;
        let votes = t.db.votes();
        // Three honest fans from three networks.
        for i in 0..3 {
            let fan =
                NewUser { signup_network: Some(NetworkTag(format!("home{i}"))), ..new_user(&format!("fan{i}@example.com"), "Fan", "Cali") };
            let fan = users.create(fan).await.unwrap().id;
            votes.cast(fan, honest_video, Some(NetworkTag(format!("home{i}"))), Utc::now()).await.unwrap();
        }
        // Five accounts made on one network, voting from another.
        let mut stuffed = Vec::new();
        for i in 0..5 {
            let sock =
                NewUser { signup_network: Some(NetworkTag("farm".into())), ..new_user(&format!("sock{i}@example.com"), "Sock", "Cali") };
            let sock = users.create(sock).await.unwrap().id;
            votes.cast(sock, cheat_video, Some(NetworkTag("proxy".into())), Utc::now()).await.unwrap();
            stuffed.push(sock);
        }
        let ranking = |r: Vec<anb_domain::RankingEntry>| r.into_iter().map(|e| (e.username, e.votes)).collect::<Vec<_>>();
        assert_eq!(ranking(votes.rankings(CityFilter::any(), ALL).await.unwrap())[0], ("Tramposo Test".to_owned(), 5));

        let audit = t.db.vote_audit();
        let findings = audit.findings(Utc::now() - chrono::Duration::hours(1), 3).await.unwrap();
        let seen: Vec<_> = findings.iter().map(|f| (f.player, f.basis, f.network.0.as_str(), f.accounts.clone(), f.votes)).collect();
        assert_eq!(
            seen,
            [(cheat, AuditBasis::SignUp, "farm", stuffed.clone(), 5), (cheat, AuditBasis::Vote, "proxy", stuffed.clone(), 5)],
            "the honest fans share no network"
        );
        assert!(audit.findings(Utc::now() + chrono::Duration::hours(1), 3).await.unwrap().is_empty(), "nothing since then");

        let report = audit.void(&stuffed).await.unwrap();
        assert_eq!((report.votes, report.videos), (5, vec![cheat_video]));
        assert_eq!(t.db.videos().by_id(cheat_video).await.unwrap().unwrap().votes, 0);
        assert_eq!(
            ranking(votes.rankings(CityFilter::any(), ALL).await.unwrap()),
            [("Honesta Test".to_owned(), 3), ("Tramposo Test".to_owned(), 0)],
            "the honest order is back"
        );
        assert!(audit.findings(Utc::now() - chrono::Duration::hours(1), 3).await.unwrap().is_empty());
        assert_eq!(audit.void(&[]).await.unwrap().votes, 0);
    }
}
