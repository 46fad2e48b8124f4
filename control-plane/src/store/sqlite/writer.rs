//! Group commit: one task owns the write connection and runs the writes of every caller that is
//! waiting, in one `BEGIN IMMEDIATE` transaction per turn, commits once (one fsync), tells the
//! commit observer what changed, and only then answers each caller.
//!
//! A turn takes every write queued when it starts (up to [`MAX_BATCH`]); writes that arrive while
//! it commits wait for the next turn, so the batch grows with the load and a lone write waits for
//! nothing but its own commit. This is PostgreSQL's group commit, without its delay knob: the
//! fsync itself is the window in which the next batch gathers.
//!
//! Each write is still atomic on its own. A write that is one statement needs nothing more: a
//! statement that fails leaves no trace. A write of several statements that can be refused part
//! way (a check that fails after a first change) runs inside a savepoint, rolled back if it is
//! refused, so the batch goes on without it. A write that fails for any other reason (I/O, a full
//! disk) fails the whole turn: it rolls back, and every caller of the turn gets the error.
//!
//! Answers wait for the commit, refusals included: a refusal may rest on an earlier write of the
//! same turn, which is real only once committed.

use super::super::{Change, CommitObserver, StoreError};
use super::bulk::{self, BulkDone, BulkWrite};
use sqlx::SqliteConnection;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, oneshot};

/// Writes per transaction at most. A thousand 200-byte rows commit in about 8 ms here; more
/// would make the first caller of a turn wait longer than an fsync for little gain.
const MAX_BATCH: usize = 1024;

/// The future of one write's statements, borrowing the write connection.
pub(super) type WriteFuture<'c, T> =
    Pin<Box<dyn Future<Output = Result<Written<T>, StoreError>> + Send + 'c>>;

/// What a write produced: the caller's answer, and what the observer is told once it commits.
pub(super) struct Written<T> {
    pub(super) value: T,
    pub(super) changes: Vec<Change>,
    /// After the commit, move the WAL into the main file and truncate it, so deleted bytes leave
    /// the WAL too (see the module above).
    pub(super) checkpoint: bool,
}

impl<T> Written<T> {
    pub(super) fn new(value: T, changes: Vec<Change>) -> Written<T> {
        Written {
            value,
            changes,
            checkpoint: false,
        }
    }
}

/// How a write ended inside its turn.
enum Outcome {
    Applied,
    Refused,
    Failed(Arc<StoreError>),
}

/// A write that ran, waiting for its turn's commit.
struct Ran {
    outcome: Outcome,
    changes: Vec<Change>,
    checkpoint: bool,
    /// Answers the caller, given the turn's outcome.
    answer: Box<dyn FnOnce(Result<(), Arc<StoreError>>) + Send>,
}

/// Runs one write on the connection; given none, answers it with the turn's failure unrun.
type Job = Box<dyn for<'c> FnOnce(Option<&'c mut SqliteConnection>) -> RanFuture<'c> + Send>;
type RanFuture<'c> = Pin<Box<dyn Future<Output = Ran> + Send + 'c>>;

struct Queued {
    /// Runs inside a savepoint (see the module above).
    atomic: bool,
    job: Job,
}

enum Message {
    Write(Queued),
    /// A write of the per-message path, run with the others of its kind (see `bulk.rs`).
    Bulk(BulkWrite, oneshot::Sender<Result<BulkDone, StoreError>>),
    /// Stop after the writes queued before this one; answered once the connection is closed.
    Close(oneshot::Sender<()>),
}

/// The handle callers write through; clones share the one writer.
#[derive(Clone)]
pub(super) struct Writer {
    queue: mpsc::UnboundedSender<Message>,
    /// Shared with the writer task, which tells it each commit's changes.
    observer: Arc<RwLock<Option<Arc<dyn CommitObserver>>>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    /// Starts the writer task on `connection`, which it owns from now on.
    pub(super) fn start(connection: SqliteConnection) -> Writer {
        let (queue, jobs) = mpsc::unbounded_channel();
        let observer: Arc<RwLock<Option<Arc<dyn CommitObserver>>>> = Arc::default();
        tokio::spawn(run(connection, jobs, observer.clone()));
        Writer { queue, observer }
    }

    pub(super) fn observe(&self, observer: Arc<dyn CommitObserver>) {
        *self
            .observer
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(observer);
    }

    /// Runs `write` in the next turn and returns its value once that turn committed. `atomic`
    /// asks for a savepoint: give it for a write that can be refused after a first change.
    pub(super) async fn write<T, F>(&self, atomic: bool, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel::<Result<T, StoreError>>();
        let job: Job = Box::new(move |connection| {
            Box::pin(async move {
                let Some(connection) = connection else {
                    return Ran {
                        outcome: Outcome::Refused,
                        changes: Vec::new(),
                        checkpoint: false,
                        answer: Box::new(move |turn| {
                            let error = turn.err().unwrap_or_else(|| Arc::new(StoreError::Closed));
                            let _ = answer.send(Err(StoreError::NotCommitted(error)));
                        }),
                    };
                };
                let result = write(connection).await;
                let (outcome, changes, checkpoint, result) = match result {
                    Ok(written) => (
                        Outcome::Applied,
                        written.changes,
                        written.checkpoint,
                        Ok(written.value),
                    ),
                    Err(error @ (StoreError::Database(_) | StoreError::Migration(_))) => {
                        let error = Arc::new(error);
                        (
                            Outcome::Failed(error.clone()),
                            Vec::new(),
                            false,
                            Err(StoreError::NotCommitted(error)),
                        )
                    }
                    Err(refusal) => (Outcome::Refused, Vec::new(), false, Err(refusal)),
                };
                Ran {
                    outcome,
                    changes,
                    checkpoint,
                    answer: Box::new(move |turn| {
                        let _ = answer.send(match turn {
                            Ok(()) => result,
                            Err(error) => Err(StoreError::NotCommitted(error)),
                        });
                    }),
                }
            })
        });
        self.queue
            .send(Message::Write(Queued { atomic, job }))
            .map_err(|_| StoreError::Closed)?;
        answered.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `write` with the other writes of its kind in the next turn (see `bulk.rs`) and
    /// returns its outcome once that turn committed.
    pub(super) async fn bulk(&self, write: BulkWrite) -> Result<BulkDone, StoreError> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Message::Bulk(write, answer))
            .map_err(|_| StoreError::Closed)?;
        answered.await.map_err(|_| StoreError::Closed)?
    }

    /// Lets the writes queued so far finish, then closes the connection; later writes fail.
    pub(super) async fn close(&self) {
        let (closed, done) = oneshot::channel();
        if self.queue.send(Message::Close(closed)).is_ok() {
            let _ = done.await;
        }
    }
}

async fn run(
    mut connection: SqliteConnection,
    mut queue: mpsc::UnboundedReceiver<Message>,
    observer: Arc<RwLock<Option<Arc<dyn CommitObserver>>>>,
) {
    let mut closing = None;
    while closing.is_none() {
        let Some(first) = queue.recv().await else {
            break;
        };
        let mut turn = Turn::default();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Write(write) => turn.writes.push(write),
                Message::Bulk(write, answer) => turn.bulk.push((write, answer)),
                Message::Close(closed) => {
                    closing = Some(closed);
                    break;
                }
            }
            if turn.len() < MAX_BATCH {
                next = queue.try_recv().ok();
            }
        }
        if turn.len() > 0 {
            run_turn(&mut connection, turn, &observer).await;
        }
    }
    queue.close();
    // Writes that raced the close are dropped here; their callers see the store closed.
    while queue.try_recv().is_ok() {}
    let _ = sqlx::Connection::close(connection).await;
    if let Some(closed) = closing {
        let _ = closed.send(());
    }
}

/// The writes one turn runs.
#[derive(Default)]
struct Turn {
    writes: Vec<Queued>,
    bulk: Vec<(BulkWrite, oneshot::Sender<Result<BulkDone, StoreError>>)>,
}

impl Turn {
    fn len(&self) -> usize {
        self.writes.len() + self.bulk.len()
    }
}

async fn execute(connection: &mut SqliteConnection, sql: &'static str) -> Result<(), StoreError> {
    sqlx::query(sql).execute(&mut *connection).await?;
    Ok(())
}

/// One turn: every write in one transaction (the one-by-one writes first, then the bulk ones a
/// kind at a time), one commit, then the observer, then the answers.
async fn run_turn(
    connection: &mut SqliteConnection,
    turn: Turn,
    observer: &RwLock<Option<Arc<dyn CommitObserver>>>,
) {
    let Turn { writes, bulk } = turn;
    let started = std::time::Instant::now();
    let (one_by_one, bulk_writes) = (writes.len(), bulk.len());
    let mut ran: Vec<Ran> = Vec::with_capacity(writes.len());
    let mut failure: Option<Arc<StoreError>> = execute(connection, "BEGIN IMMEDIATE")
        .await
        .err()
        .map(Arc::new);
    for Queued { atomic, job } in writes {
        if failure.is_some() {
            ran.push(job(None).await);
            continue;
        }
        if atomic && let Err(error) = execute(connection, "SAVEPOINT write").await {
            failure = Some(Arc::new(error));
            ran.push(job(None).await);
            continue;
        }
        let done = job(Some(&mut *connection)).await;
        let settled = match (&done.outcome, atomic) {
            (Outcome::Applied, true) => execute(connection, "RELEASE write").await,
            (Outcome::Refused, true) => match execute(connection, "ROLLBACK TO write").await {
                Ok(()) => execute(connection, "RELEASE write").await,
                Err(error) => Err(error),
            },
            (Outcome::Failed(error), _) => {
                failure = Some(error.clone());
                Ok(())
            }
            (_, false) => Ok(()),
        };
        if let Err(error) = settled {
            failure = Some(Arc::new(error));
        }
        ran.push(done);
    }
    let (bulk, answers): (Vec<BulkWrite>, Vec<_>) = bulk.into_iter().unzip();
    let mut bulk_outcomes = Vec::new();
    if failure.is_none() && !bulk.is_empty() {
        match bulk::run(connection, bulk).await {
            Ok(outcomes) => bulk_outcomes = outcomes,
            Err(error) => failure = Some(Arc::new(error)),
        }
    }
    let executed = started.elapsed();
    let committed = match failure {
        None => execute(connection, "COMMIT").await.map_err(Arc::new),
        Some(error) => {
            if let Err(rollback) = execute(connection, "ROLLBACK").await {
                tracing::error!(error = %rollback, "rolling back a failed write turn failed");
            }
            Err(error)
        }
    };
    if let Err(error) = &committed {
        tracing::error!(%error, writes = ran.len() + answers.len(), "a write turn failed; none of its writes is stored");
    }
    tracing::debug!(
        one_by_one,
        bulk = bulk_writes,
        micros = started.elapsed().as_micros() as u64,
        commit_micros = (started.elapsed() - executed).as_micros() as u64,
        committed = committed.is_ok(),
        "write turn"
    );
    let checkpoint = committed.is_ok()
        && (ran.iter().any(|r| r.checkpoint) || bulk_outcomes.iter().any(|o| o.checkpoint));
    if committed.is_ok() {
        let changes: Vec<Change> = ran
            .iter_mut()
            .filter(|r| matches!(r.outcome, Outcome::Applied))
            .flat_map(|r| std::mem::take(&mut r.changes))
            .chain(
                bulk_outcomes
                    .iter_mut()
                    .flat_map(|o| std::mem::take(&mut o.changes)),
            )
            .collect();
        let observer = observer
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if let (Some(observer), false) = (observer, changes.is_empty()) {
            observer.committed(changes);
        }
    }
    if checkpoint {
        checkpoint_truncate(connection).await;
    }
    for done in ran {
        (done.answer)(committed.clone());
    }
    let mut outcomes = bulk_outcomes.into_iter();
    for answer in answers {
        let result = match (&committed, outcomes.next()) {
            (Ok(()), Some(outcome)) => outcome.result,
            (Err(error), _) => Err(StoreError::NotCommitted(error.clone())),
            (Ok(()), None) => Err(StoreError::Closed),
        };
        let _ = answer.send(result);
    }
}

/// Moves the WAL's content into the main file and truncates the WAL to zero bytes, so deleted
/// data leaves the WAL too. Best effort: a long-running reader can keep it from completing; the
/// next purge tries again.
async fn checkpoint_truncate(connection: &mut SqliteConnection) {
    let result: Result<(i64, i64, i64), sqlx::Error> =
        sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut *connection)
            .await;
    match result {
        Ok((0, _, _)) => {}
        Ok(_) => tracing::warn!("WAL checkpoint could not complete (readers busy); will retry"),
        Err(error) => tracing::warn!(%error, "WAL checkpoint failed; will retry"),
    }
}
