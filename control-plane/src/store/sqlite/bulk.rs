//! The writes of the per-message path, run a kind at a time: the writes of one kind waiting in a
//! turn go to SQLite as one query that repeats the kind's statement once per write (up to
//! [`CHUNK_SIZES`]`[0]` at a time), each with its own bound values. Every query is a hop to
//! sqlx's connection thread and back (two thread wake-ups); a query of many statements is one
//! hop, so a turn of a thousand status reports, audit rows and state changes costs a few dozen
//! hops instead of a few thousand, and each row still costs SQLite only its own prepared,
//! cached statement (unrolling a JSON array in SQL instead cost three to four times the CPU).
//!
//! The semantics are those of the same writes run one by one in the order they were queued:
//! a statement takes at most one write per key (device, action, token), so two writes of the
//! same row in one turn run in two rounds, in queue order; a write that finds its row missing
//! (or, for a state change, in another state) is refused alone, as it would be on its own; and
//! the rows a statement returns say which writes took effect. Writes of different kinds in one
//! turn come from callers none of whom has been answered yet, so any order among them is one
//! they could have run in.

use super::rows::{action_from_row, action_returning, db_time, device_not_found, stores_to_json};
use crate::clock::Millis;
use crate::model::{Action, ActionState, AuditEvent, ErrorCode, Scope, StoreStatus};
use crate::store::{ActionUpdate, Change, NewAction, OpenCommand, StoreError};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments, Row, SqliteConnection};
use std::collections::{HashMap, HashSet};

/// How many copies of a statement one query holds: a few fixed sizes, so each kind has only a
/// few query texts in the connection's cache of prepared statements.
const CHUNK_SIZES: [usize; 4] = [64, 16, 4, 1];

/// One write of the per-message path.
#[derive(Debug)]
pub(super) enum BulkWrite {
    CreateAction(NewAction),
    Transition {
        action_id: String,
        from: Vec<ActionState>,
        to: ActionState,
        update: ActionUpdate,
        now: Millis,
    },
    UserEntered {
        device_id: String,
        action_id: String,
        at: Millis,
    },
    Status {
        device_id: String,
        stores: Vec<StoreStatus>,
        last_seen: Millis,
    },
    Escrow {
        device_id: String,
        scope: Scope,
        sealed: Vec<u8>,
    },
    Audit(AuditEvent),
}

/// What a bulk write gives its caller.
#[derive(Debug)]
pub(super) enum BulkDone {
    Done,
    /// A created action, or one whose user entry was recorded.
    Action(Action),
    /// A state change: `None` when the action was not in one of the states it may leave.
    Transitioned(Option<Action>),
}

/// The kinds, in the order a turn runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    CreateAction,
    Transition,
    UserEntered,
    Status,
    Escrow,
    Audit,
}

impl BulkWrite {
    fn kind(&self) -> Kind {
        match self {
            BulkWrite::CreateAction(_) => Kind::CreateAction,
            BulkWrite::Transition { .. } => Kind::Transition,
            BulkWrite::UserEntered { .. } => Kind::UserEntered,
            BulkWrite::Status { .. } => Kind::Status,
            BulkWrite::Escrow { .. } => Kind::Escrow,
            BulkWrite::Audit(_) => Kind::Audit,
        }
    }

    /// The row the write changes: two writes with the same key go in separate rounds.
    fn key(&self) -> Option<String> {
        match self {
            BulkWrite::CreateAction(action) => Some(action.id.clone()),
            BulkWrite::Transition { action_id, .. } | BulkWrite::UserEntered { action_id, .. } => {
                Some(action_id.clone())
            }
            BulkWrite::Status { device_id, .. } => Some(device_id.clone()),
            BulkWrite::Escrow {
                device_id, scope, ..
            } => Some(format!("{device_id}/{scope}")),
            // Appends: no row to share.
            BulkWrite::Audit(_) => None,
        }
    }
}

/// How one bulk write ended: its caller's answer, and what its commit tells the observer.
pub(super) struct BulkOutcome {
    pub(super) result: Result<BulkDone, StoreError>,
    pub(super) changes: Vec<Change>,
    /// A passcode was deleted: the turn ends with a WAL checkpoint (see `writer.rs`).
    pub(super) checkpoint: bool,
}

impl BulkOutcome {
    fn applied(done: BulkDone, changes: Vec<Change>) -> BulkOutcome {
        BulkOutcome {
            result: Ok(done),
            changes,
            checkpoint: false,
        }
    }

    fn refused(error: StoreError) -> BulkOutcome {
        BulkOutcome {
            result: Err(error),
            changes: Vec::new(),
            checkpoint: false,
        }
    }
}

/// Runs `writes` (in queue order) inside the turn's transaction; returns each one's outcome at
/// its index. An error is a failure of the turn, not a refusal.
pub(super) async fn run(
    connection: &mut SqliteConnection,
    writes: Vec<BulkWrite>,
) -> Result<Vec<BulkOutcome>, StoreError> {
    let mut outcomes: Vec<Option<BulkOutcome>> = writes.iter().map(|_| None).collect();
    let mut by_kind: Vec<(Kind, Vec<(usize, BulkWrite)>)> = Vec::new();
    for (index, write) in writes.into_iter().enumerate() {
        let kind = write.kind();
        match by_kind.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, queued)) => queued.push((index, write)),
            None => by_kind.push((kind, vec![(index, write)])),
        }
    }
    by_kind.sort_by_key(|(kind, _)| *kind);
    for (kind, mut queued) in by_kind {
        // Rounds: each takes the first write of every key still waiting, in queue order.
        while !queued.is_empty() {
            let mut keys = HashSet::new();
            let (round, later): (Vec<_>, Vec<_>) = queued
                .into_iter()
                .partition(|(_, write)| write.key().is_none_or(|key| keys.insert(key)));
            queued = later;
            let (indices, round): (Vec<usize>, Vec<BulkWrite>) = round.into_iter().unzip();
            let done = match kind {
                Kind::CreateAction => create_actions(connection, round).await?,
                Kind::Transition => transitions(connection, round).await?,
                Kind::UserEntered => user_entries(connection, round).await?,
                Kind::Status => statuses(connection, round).await?,
                Kind::Escrow => escrows(connection, round).await?,
                Kind::Audit => audits(connection, round).await?,
            };
            for (index, outcome) in indices.into_iter().zip(done) {
                outcomes[index] = Some(outcome);
            }
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| BulkOutcome::refused(StoreError::Closed)))
        .collect())
}

/// The values one statement of a kind binds, added in its parameters' order.
type Bind<'r, R> =
    &'r (dyn Fn(&mut SqliteArguments, &R) -> Result<(), sqlx::error::BoxDynError> + Sync);

/// Runs `statement` (one statement, ending in `;`) once per row of `rows`, in order, as few
/// queries as [`CHUNK_SIZES`] allow; returns the rows every statement returned, in order.
async fn per_row<R: Sync>(
    connection: &mut SqliteConnection,
    statement: &'static str,
    rows: &[R],
    bind: Bind<'_, R>,
) -> Result<Vec<SqliteRow>, StoreError> {
    let mut returned = Vec::new();
    let mut rest = rows;
    while !rest.is_empty() {
        let size = CHUNK_SIZES
            .into_iter()
            .find(|size| *size <= rest.len())
            .unwrap_or(1);
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let mut arguments = SqliteArguments::default();
        for row in chunk {
            bind(&mut arguments, row).map_err(|e| StoreError::Database(sqlx::Error::Encode(e)))?;
        }
        let query = sqlx::AssertSqlSafe(statement.repeat(size));
        returned.extend(
            sqlx::query_with(query, arguments)
                .fetch_all(&mut *connection)
                .await?,
        );
    }
    Ok(returned)
}

/// The action rows statements returned, by id.
fn returned_actions(rows: &[SqliteRow]) -> Result<HashMap<String, Action>, StoreError> {
    rows.iter()
        .map(|row| action_from_row(row).map(|a| (a.id.clone(), a)))
        .collect()
}

/// Every action of the round (a known device's, with an id not taken), then the devices' next
/// sequence numbers and the sealed passcodes.
async fn create_actions(
    connection: &mut SqliteConnection,
    round: Vec<BulkWrite>,
) -> Result<Vec<BulkOutcome>, StoreError> {
    let actions: Vec<NewAction> = round
        .into_iter()
        .filter_map(|w| match w {
            BulkWrite::CreateAction(action) => Some(action),
            _ => None,
        })
        .collect();
    // A device's commands in this round take its next sequence numbers in queue order.
    let mut offsets: HashMap<&str, i64> = HashMap::new();
    let rows: Vec<(&NewAction, Option<i64>)> = actions
        .iter()
        .map(|a| {
            let offset = (!a.state.is_final()).then(|| {
                let next = offsets.entry(a.device_id.as_str()).or_insert(0);
                *next += 1;
                *next - 1
            });
            (a, offset)
        })
        .collect();
    let inserted = per_row(
        connection,
        "INSERT INTO actions (id, device_id, kind, scope, state, error_code, reason,
                              requested_by, created_at, updated_at, not_after, sequence,
                              passcode_visible_until, traceparent)
         SELECT ?, id, ?, ?, ?, ?, ?, ?, ?, ?, ?, next_sequence + ?, ?, ? FROM devices
         WHERE id = ? AND NOT EXISTS (SELECT 1 FROM actions WHERE actions.id = ?)
         RETURNING id, sequence;",
        &rows,
        &|args, (a, offset)| {
            args.add(a.id.as_str())?;
            args.add(a.kind.as_str())?;
            args.add(a.scope.as_str())?;
            args.add(a.state.as_str())?;
            args.add(a.error_code.map(ErrorCode::as_str))?;
            args.add(a.reason.as_str())?;
            args.add(a.requested_by.as_str())?;
            args.add(db_time(a.created_at))?;
            args.add(db_time(a.created_at))?;
            args.add(db_time(a.not_after))?;
            args.add(*offset)?;
            args.add(a.sealed_passcode.as_ref().map(|(_, until)| db_time(*until)))?;
            args.add(a.traceparent.to_string())?;
            args.add(a.device_id.as_str())?;
            args.add(a.id.as_str())
        },
    )
    .await?;
    let mut sequences: HashMap<String, Option<i64>> = HashMap::with_capacity(inserted.len());
    for row in &inserted {
        sequences.insert(row.try_get("id")?, row.try_get("sequence")?);
    }
    // The next number of each device is one above the highest it took.
    let mut next: HashMap<&str, i64> = HashMap::new();
    for action in &actions {
        if let Some(Some(sequence)) = sequences.get(&action.id) {
            let entry = next.entry(action.device_id.as_str()).or_insert(0);
            *entry = (*entry).max(sequence + 1);
        }
    }
    let next: Vec<(&str, i64)> = next.into_iter().collect();
    per_row(
        connection,
        "UPDATE devices SET next_sequence = ? WHERE id = ?;",
        &next,
        &|args, (device, next)| {
            args.add(*next)?;
            args.add(*device)
        },
    )
    .await?;
    let passcodes: Vec<(&str, &[u8], i64)> = actions
        .iter()
        .filter(|a| sequences.contains_key(&a.id))
        .filter_map(|a| {
            let (sealed, until) = a.sealed_passcode.as_ref()?;
            Some((a.id.as_str(), sealed.as_slice(), db_time(*until)))
        })
        .collect();
    per_row(
        connection,
        "INSERT INTO action_passcodes (action_id, sealed, visible_until) VALUES (?, ?, ?);",
        &passcodes,
        &|args, (id, sealed, until)| {
            args.add(*id)?;
            args.add(*sealed)?;
            args.add(*until)
        },
    )
    .await?;
    let mut device_exists: HashMap<String, bool> = HashMap::new();
    let mut outcomes = Vec::with_capacity(actions.len());
    for action in actions {
        let Some(sequence) = sequences.get(&action.id) else {
            // Refused: an unknown device, or an id already taken.
            let known = match device_exists.get(&action.device_id) {
                Some(known) => *known,
                None => {
                    let known = sqlx::query("SELECT 1 FROM devices WHERE id = ?")
                        .bind(&action.device_id)
                        .fetch_optional(&mut *connection)
                        .await?
                        .is_some();
                    device_exists.insert(action.device_id.clone(), known);
                    known
                }
            };
            outcomes.push(BulkOutcome::refused(if known {
                StoreError::AlreadyExists {
                    kind: "action",
                    name: action.id,
                }
            } else {
                device_not_found(&action.device_id)
            }));
            continue;
        };
        let sequence = sequence
            .map(|s| u64::try_from(s).map_err(|_| StoreError::Corrupt("negative sequence".into())))
            .transpose()?;
        let visible_until = action.sealed_passcode.as_ref().map(|(_, until)| *until);
        // What the row holds, without reading it back.
        let created = Action {
            id: action.id,
            device_id: action.device_id,
            kind: action.kind,
            scope: action.scope,
            state: action.state,
            error_code: action.error_code,
            reason: action.reason,
            requested_by: action.requested_by,
            created_at: action.created_at,
            updated_at: action.created_at,
            delivered_at: None,
            completed_at: None,
            user_entered_at: None,
            not_after: action.not_after,
            sequence,
            sent_at: None,
            cancel_requested_at: None,
            cancel_sequence: None,
            cancel_refusal: String::new(),
            passcode_visible_until: visible_until,
            traceparent: Some(action.traceparent),
        };
        let change = Change::ActionCreated(OpenCommand {
            action: created.clone(),
            sealed_passcode: action.sealed_passcode.map(|(sealed, _)| sealed),
        });
        outcomes.push(BulkOutcome::applied(
            BulkDone::Action(created),
            vec![change],
        ));
    }
    Ok(outcomes)
}

/// The states a transition may leave, as the JSON array its statement reads.
fn states_json(states: &[ActionState]) -> String {
    let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
    serde_json::to_string(&names).unwrap_or_else(|_| "[]".to_string())
}

/// Every state change of the round, each a compare-and-set (the state test is in its WHERE
/// clause), then the passcodes the changes that took effect drop.
async fn transitions(
    connection: &mut SqliteConnection,
    round: Vec<BulkWrite>,
) -> Result<Vec<BulkOutcome>, StoreError> {
    let mut purge_of: HashMap<&str, bool> = HashMap::new();
    let mut rows = Vec::with_capacity(round.len());
    for write in &round {
        if let BulkWrite::Transition {
            action_id,
            from,
            to,
            update,
            now,
        } = write
        {
            purge_of.insert(action_id.as_str(), update.purge_passcode);
            rows.push((action_id.as_str(), states_json(from), *to, update, *now));
        }
    }
    let changed = per_row(
        connection,
        concat!(
            "UPDATE actions SET
                 state = ?,
                 updated_at = ?,
                 error_code = CASE WHEN ? THEN NULL ELSE COALESCE(?, error_code) END,
                 reason = COALESCE(?, reason),
                 delivered_at = COALESCE(?, delivered_at),
                 completed_at = COALESCE(?, completed_at),
                 user_entered_at = COALESCE(?, user_entered_at),
                 sent_at = COALESCE(?, sent_at),
                 cancel_requested_at = COALESCE(?, cancel_requested_at),
                 cancel_sequence = CASE
                     WHEN ? IS NOT NULL
                         THEN (SELECT next_sequence FROM devices WHERE id = actions.device_id)
                     WHEN ? THEN NULL
                     ELSE cancel_sequence END,
                 cancel_refusal = COALESCE(?, cancel_refusal)
             WHERE id = ? AND state IN (SELECT value FROM json_each(?))
                 AND (? = 0 OR sent_at IS NULL)
                 AND (? IS NULL OR (sent_at IS NOT NULL AND cancel_requested_at IS NULL))",
            action_returning!(),
            ";"
        ),
        &rows,
        &|args, (id, from, to, update, now)| {
            args.add(to.as_str())?;
            args.add(db_time(*now))?;
            args.add(update.clear_error_code)?;
            args.add(update.error_code.map(ErrorCode::as_str))?;
            args.add(update.reason.as_deref())?;
            args.add(update.delivered_at.map(db_time))?;
            args.add(update.completed_at.map(db_time))?;
            args.add(update.user_entered_at.map(db_time))?;
            args.add(update.sent_at.map(db_time))?;
            args.add(update.request_cancel.map(db_time))?;
            args.add(update.request_cancel.map(db_time))?;
            args.add(update.withdraw_cancel)?;
            args.add(update.cancel_refusal.as_deref())?;
            args.add(*id)?;
            args.add(from.as_str())?;
            args.add(update.only_if_unsent)?;
            args.add(update.request_cancel.map(db_time))
        },
    )
    .await?;
    let mut changed = returned_actions(&changed)?;
    let purged: Vec<String> = changed
        .keys()
        .filter(|id| purge_of.get(id.as_str()).copied().unwrap_or(false))
        .cloned()
        .collect();
    let deleted = per_row(
        connection,
        "DELETE FROM action_passcodes WHERE action_id = ? RETURNING action_id;",
        &purged,
        &|args, id| args.add(id.as_str()),
    )
    .await?;
    let checkpoint = !deleted.is_empty();
    for id in &purged {
        if let Some(action) = changed.get_mut(id) {
            action.passcode_visible_until = None;
        }
    }
    Ok(round
        .into_iter()
        .map(|w| {
            let BulkWrite::Transition { action_id, .. } = w else {
                return BulkOutcome::refused(StoreError::Closed);
            };
            match changed.remove(&action_id) {
                Some(action) => BulkOutcome {
                    result: Ok(BulkDone::Transitioned(Some(action.clone()))),
                    changes: vec![Change::ActionChanged(action)],
                    checkpoint,
                },
                None => BulkOutcome::applied(BulkDone::Transitioned(None), Vec::new()),
            }
        })
        .collect())
}

/// Every user entry of the round, each only on the reporting device's action.
async fn user_entries(
    connection: &mut SqliteConnection,
    round: Vec<BulkWrite>,
) -> Result<Vec<BulkOutcome>, StoreError> {
    let changed = per_row(
        connection,
        concat!(
            "UPDATE actions SET user_entered_at = ?, updated_at = MAX(updated_at, ?)
             WHERE id = ? AND device_id = ?",
            action_returning!(),
            ";"
        ),
        &round,
        &|args, write| {
            if let BulkWrite::UserEntered {
                device_id,
                action_id,
                at,
            } = write
            {
                args.add(db_time(*at))?;
                args.add(db_time(*at))?;
                args.add(action_id.as_str())?;
                args.add(device_id.as_str())?;
            }
            Ok(())
        },
    )
    .await?;
    let mut changed = returned_actions(&changed)?;
    Ok(round
        .into_iter()
        .map(|w| {
            let BulkWrite::UserEntered { action_id, .. } = w else {
                return BulkOutcome::refused(StoreError::Closed);
            };
            match changed.remove(&action_id) {
                Some(action) => BulkOutcome::applied(
                    BulkDone::Action(action.clone()),
                    vec![Change::ActionChanged(action)],
                ),
                None => BulkOutcome::refused(StoreError::NotFound {
                    kind: "action",
                    name: action_id,
                }),
            }
        })
        .collect())
}

/// Every status report of the round.
async fn statuses(
    connection: &mut SqliteConnection,
    round: Vec<BulkWrite>,
) -> Result<Vec<BulkOutcome>, StoreError> {
    let mut rows = Vec::with_capacity(round.len());
    for write in &round {
        if let BulkWrite::Status {
            device_id,
            stores,
            last_seen,
        } = write
        {
            rows.push((
                device_id.as_str(),
                stores_to_json(stores)?,
                db_time(*last_seen),
            ));
        }
    }
    let updated = per_row(
        connection,
        "UPDATE devices SET stores_json = ?, last_seen = ? WHERE id = ? RETURNING id;",
        &rows,
        &|args, (id, stores, seen)| {
            args.add(stores.as_str())?;
            args.add(*seen)?;
            args.add(*id)
        },
    )
    .await?;
    let updated: HashSet<String> = updated
        .iter()
        .map(|row| row.try_get("id"))
        .collect::<Result<_, _>>()?;
    Ok(round
        .into_iter()
        .map(|w| {
            let BulkWrite::Status {
                device_id,
                stores,
                last_seen,
            } = w
            else {
                return BulkOutcome::refused(StoreError::Closed);
            };
            if !updated.contains(&device_id) {
                return BulkOutcome::refused(device_not_found(&device_id));
            }
            let change = Change::Status {
                device_id,
                stores,
                last_seen,
            };
            BulkOutcome::applied(BulkDone::Done, vec![change])
        })
        .collect())
}

/// Every escrowed token of the round, each an upsert of a known device's token.
async fn escrows(
    connection: &mut SqliteConnection,
    round: Vec<BulkWrite>,
) -> Result<Vec<BulkOutcome>, StoreError> {
    let stored = per_row(
        connection,
        "INSERT INTO escrow_tokens (device_id, scope, sealed)
         SELECT id, ?, ? FROM devices WHERE id = ?
         ON CONFLICT (device_id, scope) DO UPDATE SET sealed = excluded.sealed
         RETURNING device_id, scope;",
        &round,
        &|args, write| {
            if let BulkWrite::Escrow {
                device_id,
                scope,
                sealed,
            } = write
            {
                args.add(scope.as_str())?;
                args.add(sealed.as_slice())?;
                args.add(device_id.as_str())?;
            }
            Ok(())
        },
    )
    .await?;
    let stored: HashSet<(String, String)> = stored
        .iter()
        .map(|row| Ok((row.try_get("device_id")?, row.try_get("scope")?)))
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(round
        .into_iter()
        .map(|w| {
            let BulkWrite::Escrow {
                device_id,
                scope,
                sealed,
            } = w
            else {
                return BulkOutcome::refused(StoreError::Closed);
            };
            if !stored.contains(&(device_id.clone(), scope.as_str().to_string())) {
                return BulkOutcome::refused(device_not_found(&device_id));
            }
            let change = Change::EscrowToken {
                device_id,
                scope,
                sealed,
            };
            BulkOutcome::applied(BulkDone::Done, vec![change])
        })
        .collect())
}

/// Every audit row of the round, in queue order.
async fn audits(
    connection: &mut SqliteConnection,
    round: Vec<BulkWrite>,
) -> Result<Vec<BulkOutcome>, StoreError> {
    per_row(
        connection,
        // The id is the store's to assign; the event's own is ignored.
        "INSERT INTO audit (at, principal, operation, device_id, action_id, result, detail)
         VALUES (?, ?, ?, ?, ?, ?, ?);",
        &round,
        &|args, write| {
            if let BulkWrite::Audit(event) = write {
                args.add(db_time(event.at))?;
                args.add(event.principal.as_str())?;
                args.add(event.operation.as_str())?;
                args.add(event.device_id.as_deref())?;
                args.add(event.action_id.as_deref())?;
                args.add(event.result.as_str())?;
                args.add(event.detail.as_str())?;
            }
            Ok(())
        },
    )
    .await?;
    Ok(round
        .into_iter()
        .map(|_| BulkOutcome::applied(BulkDone::Done, Vec::new()))
        .collect())
}
