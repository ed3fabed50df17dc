//! The group-commit writer: one thread owns every write transaction.
//!
//! Callers submit a job (a closure over the write transaction) and await its result.
//! The thread takes every job that is waiting, applies them all in one transaction,
//! commits it with `Durability::Immediate` (fsync) and only then answers each caller.
//! Under load one fsync covers many webhooks; at idle a lone job commits at once.
//! Throughput comes from batching, never from weakening durability.
//!
//! A job must not change the transaction before it returns an error: `Err` means the
//! storage itself failed, and the whole batch is rolled back and answered with an error
//! (callers answer 5xx and the provider retries). Logical outcomes ("duplicate", "not
//! found") are `Ok` values.
//!
//! A job that changes in-memory state along with the tables registers how to take it
//! back (`Tables::on_rollback`); the writer runs those steps when the batch does not
//! commit, so memory never counts a write the store does not hold.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use redb::{Database, Durability};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use super::tables::Tables;

/// Jobs per transaction at most, so one commit's latency stays bounded under a flood.
const MAX_BATCH: usize = 512;

/// Waiting jobs at most; beyond this `submit` waits, pushing back on webhook handlers
/// instead of growing memory without bound.
const QUEUE_CAPACITY: usize = 8192;

/// A job's result, held until the batch is committed or rolled back.
trait Pending: Send {
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
}

struct Applied<T> {
    value: T,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T: Send> Pending for Applied<T> {
    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        // A caller that gave up (timeout, disconnect) simply does not hear the answer;
        // the write itself is committed either way.
        let Self { value, reply } = *self;
        let _ = reply.send(commit.map(|()| value));
    }
}

struct Failed<T> {
    error: StoreError,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T: Send> Pending for Failed<T> {
    fn finish(self: Box<Self>, _commit: Result<(), StoreError>) {
        let Self { error, reply } = *self;
        let _ = reply.send(Err(error));
    }
}

/// A job applies itself to the transaction and returns its pending answer, and whether
/// it failed (which rolls back the batch).
type Job = Box<dyn for<'t> FnOnce(&mut Tables<'t>) -> (Box<dyn Pending>, bool) + Send>;

/// Counters the writer keeps for status pages and benchmarks.
///
/// The two busy times, read twice and divided by the wall time between, say how
/// saturated the one writer is: near 1, ingest waits on it and more handler threads
/// cannot help; and their split says whether applying the jobs or committing them
/// (mostly the fsync) is the larger share.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub commits: AtomicU64,
    pub jobs: AtomicU64,
    pub failed_commits: AtomicU64,
    /// Microseconds spent opening transactions and applying jobs.
    pub apply_micros: AtomicU64,
    /// Microseconds spent committing (writing pages, fsync) or rolling back.
    pub commit_micros: AtomicU64,
}

/// The submitting side. Cheap to clone; the thread stops when every clone is dropped.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    stats: Arc<WriterStats>,
}

impl Writer {
    /// Starts the writer thread on `db`. Join the handle at shutdown, after dropping
    /// every `Writer`, so the last batch is committed before the database closes.
    pub fn start(db: Arc<Database>) -> std::io::Result<(Self, JoinHandle<()>)> {
        let (jobs, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let stats = Arc::new(WriterStats::default());
        let thread_stats = Arc::clone(&stats);
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(&db, receiver, &thread_stats))?;
        Ok((Self { jobs, stats }, handle))
    }

    /// Applies `job` in the next group commit and returns its value once durable.
    pub async fn submit<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&mut Tables<'t>) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |tables| match job(tables) {
            Ok(value) => (Box::new(Applied { value, reply }), false),
            Err(error) => (Box::new(Failed { error, reply }), true),
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// False once the writer thread has stopped (it only stops at shutdown or on a panic).
    pub fn is_alive(&self) -> bool {
        !self.jobs.is_closed()
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Jobs sent but not yet taken by the writer thread (for tests that arrange a batch).
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }
}

fn run(db: &Database, mut receiver: mpsc::Receiver<Job>, stats: &WriterStats) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = receiver.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let size = batch.len();
        let outcome = commit_batch(db, &mut batch, stats);
        stats.jobs.fetch_add(size as u64, Ordering::Relaxed);
        match outcome {
            Ok(()) => {
                stats.commits.fetch_add(1, Ordering::Relaxed);
            }
            Err(ref error) => {
                stats.failed_commits.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, jobs = size, "group commit failed; the batch was rolled back");
            }
        }
        tracing::trace!(
            jobs = size,
            elapsed_us = started.elapsed().as_micros() as u64,
            "group commit"
        );
    }
    tracing::debug!("store writer stopped: every submitter is gone");
}

/// Applies and commits one batch, answering every job in it.
fn commit_batch(
    db: &Database,
    batch: &mut Vec<Job>,
    stats: &WriterStats,
) -> Result<(), StoreError> {
    let applying = Instant::now();
    let txn = match begin(db) {
        Ok(txn) => txn,
        Err(error) => return fail_unapplied(batch, error),
    };
    let mut tables = match Tables::open(&txn) {
        Ok(tables) => tables,
        Err(error) => return fail_unapplied(batch, error.into()),
    };
    let mut pending = Vec::with_capacity(batch.len());
    let mut any_failed = false;
    for job in batch.drain(..) {
        let (answer, failed) = job(&mut tables);
        any_failed |= failed;
        pending.push(answer);
    }
    let rollback = tables.close();
    let committing = Instant::now();
    add_micros(&stats.apply_micros, committing - applying);
    let outcome = if any_failed {
        let _ = txn.abort();
        Err(StoreError::BatchRolledBack)
    } else {
        txn.commit().map_err(StoreError::from)
    };
    if outcome.is_err() {
        rollback.run();
    }
    add_micros(&stats.commit_micros, committing.elapsed());
    for answer in pending {
        answer.finish(outcome.clone());
    }
    outcome
}

fn add_micros(counter: &AtomicU64, elapsed: std::time::Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    counter.fetch_add(micros, Ordering::Relaxed);
}

/// A write transaction that commits with fsync.
fn begin(db: &Database) -> Result<redb::WriteTransaction, StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| StoreError::Storage(e.to_string()))?;
    Ok(txn)
}

/// Drops jobs that cannot run because no transaction could be opened. Each job owns
/// its reply sender, so its submitter gets an error as the job is dropped.
fn fail_unapplied(batch: &mut Vec<Job>, error: StoreError) -> Result<(), StoreError> {
    tracing::warn!(%error, jobs = batch.len(), "write jobs dropped: no write transaction");
    batch.clear();
    Err(error)
}
