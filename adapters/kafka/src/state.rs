//! What a consuming [`KafkaQueue`](crate::KafkaQueue) knows of the
//! messages it has read: which offsets of each partition are still open,
//! which jobs wait to be handed out (now, or once due), and which are held
//! by a job loop. Pure bookkeeping, no I/O: the queue calls it under a lock
//! and talks to the broker with what it returns.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use anb_domain::ports::QueueError;
use anb_domain::{Delivery, Job, Receipt};

/// A topic and one of its partitions.
pub(crate) type Partition = (String, i32);

/// Where a message sits in the log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl Position {
    fn partition(&self) -> Partition {
        (self.topic.clone(), self.partition)
    }
}

/// A job read from the log and not yet settled.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pending {
    pub at: Position,
    pub job: Job,
    /// Deliveries so far, earlier copies included.
    pub receives: u32,
}

/// A job a job loop holds until `deadline`.
#[derive(Debug)]
struct Held {
    pending: Pending,
    deadline: Instant,
}

/// The open offsets of one partition: each read and not yet settled
/// (`false`) or settled while an earlier one is still open (`true`).
#[derive(Debug, Default)]
struct Track {
    open: BTreeMap<i64, bool>,
    /// Every offset below is settled (and committed, or about to be).
    floor: i64,
}

/// See the [module documentation](self).
#[derive(Debug, Default)]
pub(crate) struct State {
    tracks: HashMap<Partition, Track>,
    /// Partitions taken away by a rebalance that has not ended yet.
    revoked: HashSet<Partition>,
    ready: VecDeque<Pending>,
    /// Copies from the retry topic, by the time they are due (ms since the epoch).
    delayed: BTreeMap<(i64, u64), Pending>,
    held: HashMap<String, Held>,
    serial: u64,
    /// Changes at each assignment, so the reader knows to pause again.
    pub assignments: u64,
}

impl State {
    /// A message read from the log; `false` when it is one already known
    /// (read again from the committed offset after a rebalance gave its
    /// partition back), which is dropped.
    pub fn arrive(&mut self, pending: Pending, due_ms: Option<i64>, now_ms: i64) -> bool {
        let track = self.tracks.entry(pending.at.partition()).or_default();
        let offset = pending.at.offset;
        if offset < track.floor || track.open.contains_key(&offset) {
            return false;
        }
        track.open.insert(offset, false);
        match due_ms {
            Some(due) if due > now_ms => {
                self.serial += 1;
                self.delayed.insert((due, self.serial), pending);
            }
            _ => self.ready.push_back(pending),
        }
        true
    }

    /// Moves the copies due by `now_ms` to the jobs ready; how many moved.
    pub fn promote(&mut self, now_ms: i64) -> usize {
        let later = self.delayed.split_off(&(now_ms.saturating_add(1), 0));
        let due = std::mem::replace(&mut self.delayed, later);
        let moved = due.len();
        self.ready.extend(due.into_values());
        moved
    }

    /// Jobs read and waiting for a job loop.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Hands out the next ready job until `now + visibility`, after giving
    /// back the held jobs whose deadline passed (their receipts end).
    pub fn take(&mut self, now: Instant, visibility: Duration) -> Option<Delivery> {
        let overdue: Vec<String> = self.held.iter().filter(|(_, h)| h.deadline <= now).map(|(r, _)| r.clone()).collect();
        for receipt in overdue {
            if let Some(held) = self.held.remove(&receipt) {
                tracing::info!(video_id = %held.pending.job.video_id, "a job was not extended in time: handed out again");
                self.ready.push_front(held.pending);
            }
        }
        // Jobs of partitions in a rebalance wait for its end (they may move away).
        let index = self.ready.iter().position(|p| !self.revoked.contains(&p.at.partition()))?;
        let mut pending = self.ready.remove(index)?;
        pending.receives = pending.receives.saturating_add(1);
        self.serial += 1;
        let receipt = format!("{}/{}/{}/{}", pending.at.topic, pending.at.partition, pending.at.offset, self.serial);
        let delivery = Delivery { job: pending.job, receipt: Receipt(receipt.clone()), receive_count: pending.receives };
        self.held.insert(receipt, Held { pending, deadline: now + visibility });
        Some(delivery)
    }

    /// Moves a held job's deadline.
    pub fn extend(&mut self, receipt: &Receipt, deadline: Instant) -> Result<(), QueueError> {
        let held = self.held.get_mut(&receipt.0).ok_or(QueueError::ReceiptExpired)?;
        held.deadline = deadline;
        Ok(())
    }

    /// Ends a receipt, returning its job (still open in its partition).
    pub fn settle(&mut self, receipt: &Receipt) -> Result<Pending, QueueError> {
        self.held.remove(&receipt.0).map(|h| h.pending).ok_or(QueueError::ReceiptExpired)
    }

    /// Puts a job back first in line, as it was (a release without delay, or
    /// a failed move to another topic).
    pub fn requeue(&mut self, pending: Pending) {
        self.ready.push_front(pending);
    }

    /// Marks the offset settled; the offset to commit when the partition's
    /// committed point moves (Kafka commits the next offset to read). None
    /// during a rebalance that took the partition: the assignment that ends
    /// it commits the partitions kept ([`State::assign`]).
    pub fn done(&mut self, at: &Position) -> Option<i64> {
        let revoked = self.revoked.contains(&at.partition());
        let track = self.tracks.get_mut(&at.partition())?;
        if let Some(settled) = track.open.get_mut(&at.offset) {
            *settled = true;
        }
        let mut moved = None;
        while let Some(entry) = track.open.first_entry() {
            if !*entry.get() {
                break;
            }
            let offset = *entry.key();
            entry.remove();
            track.floor = offset + 1;
            moved = Some(offset + 1);
        }
        moved.filter(|_| !revoked)
    }

    /// A message that must be dealt with before its partition's committed
    /// point passes it, but never reaches a job loop (one that is not a
    /// job, while it is set aside): `false` when it was known already.
    pub fn hold_open(&mut self, at: &Position) -> bool {
        let track = self.tracks.entry(at.partition()).or_default();
        if at.offset < track.floor || track.open.contains_key(&at.offset) {
            return false;
        }
        track.open.insert(at.offset, false);
        true
    }

    /// Where each partition's settled prefix ends (to commit on close).
    pub fn floors(&self) -> Vec<(Partition, i64)> {
        self.tracks.iter().filter(|(_, t)| t.floor > 0).map(|(p, t)| (p.clone(), t.floor)).collect()
    }

    /// A rebalance takes these partitions away. What we know of them is
    /// kept until the assignment that ends it (they may come back), unless
    /// the assignment was `lost` (our session ended: another worker may own
    /// them already), when it is forgotten at once.
    pub fn revoke(&mut self, partitions: impl IntoIterator<Item = Partition>, lost: bool) {
        if lost {
            self.forget(&partitions.into_iter().collect());
        } else {
            self.revoked.extend(partitions);
        }
    }

    /// The assignment that ends a rebalance: partitions taken away and not
    /// given back are forgotten, with their jobs (held receipts end; the
    /// partition's new owner reads them again from the committed offset).
    /// Returns the committed points of the partitions kept, to commit now
    /// (settles during the rebalance committed nothing).
    pub fn assign(&mut self, assigned: &HashSet<Partition>) -> Vec<(Partition, i64)> {
        self.assignments += 1;
        let gone: HashSet<Partition> = self.revoked.drain().filter(|p| !assigned.contains(p)).collect();
        self.forget(&gone);
        self.floors().into_iter().filter(|(p, _)| assigned.contains(p)).collect()
    }

    fn forget(&mut self, gone: &HashSet<Partition>) {
        if gone.is_empty() {
            return;
        }
        tracing::info!(partitions = gone.len(), "partitions moved to another worker");
        self.revoked.retain(|p| !gone.contains(p));
        self.tracks.retain(|p, _| !gone.contains(p));
        self.ready.retain(|p| !gone.contains(&p.at.partition()));
        self.delayed.retain(|_, p| !gone.contains(&p.at.partition()));
        self.held.retain(|_, h| !gone.contains(&h.pending.at.partition()));
    }

    /// Forgets everything (the consumer is closed).
    pub fn clear(&mut self) {
        *self = Self { serial: self.serial, assignments: self.assignments + 1, ..Self::default() };
    }
}

#[cfg(test)]
mod tests {
    use anb_domain::{TaskId, VideoId};

    use super::*;

    fn pending(offset: i64) -> Pending {
        Pending {
            at: Position { topic: "jobs".into(), partition: 0, offset },
            job: Job { task_id: TaskId::random(), video_id: VideoId(offset) },
            receives: 0,
        }
    }

    fn partition() -> Partition {
        ("jobs".into(), 0)
    }

    #[test]
    fn commits_move_only_over_a_settled_prefix() {
        let mut state = State::default();
        for offset in 5..8 {
            assert!(state.arrive(pending(offset), None, 0));
        }
        assert_eq!(state.done(&pending(6).at), None, "offset 5 is still open");
        assert_eq!(state.done(&pending(5).at), Some(7), "5 and 6 settled: commit 7");
        assert_eq!(state.done(&pending(7).at), Some(8));
        assert_eq!(state.floors(), vec![(partition(), 8)]);
    }

    #[test]
    fn messages_read_again_after_a_rebalance_are_dropped() {
        let mut state = State::default();
        assert!(state.arrive(pending(1), None, 0));
        assert!(state.arrive(pending(2), None, 0));
        state.done(&pending(1).at);
        assert!(!state.arrive(pending(1), None, 0), "settled and committed");
        assert!(!state.arrive(pending(2), None, 0), "still open");
        assert!(state.arrive(pending(3), None, 0));
    }

    #[test]
    fn receipts_hand_out_each_job_once_and_count_deliveries() {
        let mut state = State::default();
        state.arrive(pending(1), None, 0);
        let now = Instant::now();
        let first = state.take(now, Duration::from_secs(10)).unwrap();
        assert_eq!(first.receive_count, 1);
        assert!(state.take(now, Duration::from_secs(10)).is_none(), "held");
        let again = state.take(now + Duration::from_secs(11), Duration::from_secs(10)).unwrap();
        assert_eq!(again.receive_count, 2, "overdue: handed out again");
        assert_ne!(first.receipt, again.receipt);
        assert_eq!(state.settle(&first.receipt), Err(QueueError::ReceiptExpired));
        assert_eq!(state.extend(&first.receipt, now), Err(QueueError::ReceiptExpired));
        let job = state.settle(&again.receipt).unwrap();
        state.requeue(job);
        assert_eq!(state.take(now, Duration::from_secs(1)).unwrap().receive_count, 3);
    }

    #[test]
    fn copies_wait_until_due() {
        let mut state = State::default();
        state.arrive(pending(1), Some(2_000), 1_000);
        state.arrive(pending(2), Some(500), 1_000);
        assert_eq!(state.ready_len(), 1, "already due");
        assert_eq!(state.promote(1_999), 0);
        assert_eq!(state.promote(2_000), 1);
        assert_eq!(state.ready_len(), 2);
    }

    #[test]
    fn partitions_that_move_away_take_their_jobs_along() {
        let mut state = State::default();
        state.arrive(pending(1), None, 0);
        state.arrive(pending(2), None, 0);
        let held = state.take(Instant::now(), Duration::from_secs(10)).unwrap();
        state.revoke([partition()], false);
        assert!(state.take(Instant::now(), Duration::from_secs(10)).is_none(), "nothing handed out during a rebalance");
        let settled = state.settle(&held.receipt).unwrap();
        state.requeue(settled);
        state.assign(&HashSet::from([partition()]));
        let held = state.take(Instant::now(), Duration::from_secs(10)).unwrap();
        assert!(state.extend(&held.receipt, Instant::now()).is_ok(), "given back: kept");
        state.revoke([partition()], false);
        state.assign(&HashSet::new());
        assert_eq!(state.extend(&held.receipt, Instant::now()), Err(QueueError::ReceiptExpired));
        assert_eq!(state.ready_len(), 0);
        assert!(state.arrive(pending(1), None, 0), "the partition is read afresh if it comes back");
        state.take(Instant::now(), Duration::from_secs(10)).unwrap();
        state.revoke([partition()], true);
        assert_eq!(state.ready_len(), 0, "a lost assignment is forgotten at once");
    }

    #[test]
    fn the_partitions_kept_through_a_rebalance_are_committed_at_its_end() {
        let mut state = State::default();
        state.arrive(pending(1), None, 0);
        let held = state.take(Instant::now(), Duration::from_secs(10)).unwrap();
        state.revoke([partition()], false);
        let settled = state.settle(&held.receipt).unwrap();
        assert_eq!(state.done(&settled.at), None);
        assert_eq!(state.assign(&HashSet::from([partition()])), vec![(partition(), 2)]);
    }

    #[test]
    fn an_offset_held_open_stops_the_commits_until_settled() {
        let mut state = State::default();
        assert!(state.hold_open(&pending(1).at));
        assert!(!state.hold_open(&pending(1).at), "known");
        state.arrive(pending(2), None, 0);
        let held = state.take(Instant::now(), Duration::from_secs(10)).unwrap();
        assert_eq!(held.job.video_id.0, 2, "never handed out itself");
        state.settle(&held.receipt).unwrap();
        assert_eq!(state.done(&pending(2).at), None, "1 is still open");
        assert_eq!(state.done(&pending(1).at), Some(3));
    }
}
