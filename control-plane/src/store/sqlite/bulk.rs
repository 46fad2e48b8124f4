//! The writes of the per-message path, run a kind at a time: every write of one kind waiting in
//! a turn goes into one statement, its rows passed as one JSON array that `json_each` unrolls,
//! whatever the number of callers. Every statement is a hop to sqlx's connection thread and
//! back (two thread wake-ups), so a turn of a thousand status reports, audit rows and state
//! changes costs a dozen hops instead of a few thousand.
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
use crate::crypto::hex;
use crate::model::{Action, ActionState, AuditEvent, ErrorCode, Scope, StoreStatus};
use crate::store::{ActionUpdate, Change, NewAction, OpenCommand, StoreError};
use serde_json::{Value, json};
use sqlx::{Row, SqliteConnection};
use std::collections::{HashMap, HashSet};

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

fn time(ms: Millis) -> Value {
    json!(db_time(ms))
}

fn opt_time(ms: Option<Millis>) -> Value {
    ms.map_or(Value::Null, time)
}

/// The action rows a statement returned, by id.
fn returned_actions(
    rows: &[sqlx::sqlite::SqliteRow],
) -> Result<HashMap<String, Action>, StoreError> {
    rows.iter()
        .map(|row| action_from_row(row).map(|a| (a.id.clone(), a)))
        .collect()
}

/// Every action of the round in one INSERT, then the devices' next sequence numbers and the
/// sealed passcodes, each in one statement more.
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
    let rows: Vec<Value> = actions
        .iter()
        .map(|a| {
            let command = !a.state.is_final();
            let offset = if command {
                let next = offsets.entry(a.device_id.as_str()).or_insert(0);
                *next += 1;
                json!(*next - 1)
            } else {
                Value::Null
            };
            json!({
                "id": a.id,
                "device": a.device_id,
                "kind": a.kind.as_str(),
                "scope": a.scope.as_str(),
                "state": a.state.as_str(),
                "error": a.error_code.map(ErrorCode::as_str),
                "reason": a.reason,
                "by": a.requested_by,
                "at": time(a.created_at),
                "not_after": time(a.not_after),
                "offset": offset,
                "visible": opt_time(a.sealed_passcode.as_ref().map(|(_, until)| *until)),
            })
        })
        .collect();
    let inserted = sqlx::query(
        "INSERT INTO actions (id, device_id, kind, scope, state, error_code, reason,
                              requested_by, created_at, updated_at, not_after, sequence,
                              passcode_visible_until)
         SELECT v.value->>'id', v.value->>'device', v.value->>'kind', v.value->>'scope',
                v.value->>'state', v.value->>'error', v.value->>'reason', v.value->>'by',
                v.value->>'at', v.value->>'at', v.value->>'not_after',
                d.next_sequence + (v.value->>'offset'), v.value->>'visible'
         FROM json_each(?) v JOIN devices d ON d.id = v.value->>'device'
         WHERE NOT EXISTS (SELECT 1 FROM actions a WHERE a.id = v.value->>'id')
         ORDER BY v.key
         RETURNING id, sequence",
    )
    .bind(Value::Array(rows).to_string())
    .fetch_all(&mut *connection)
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
    if !next.is_empty() {
        let rows: Vec<Value> = next
            .iter()
            .map(|(device, next)| json!({"id": device, "next": next}))
            .collect();
        sqlx::query(
            "UPDATE devices SET next_sequence = v.value->>'next'
             FROM json_each(?) v WHERE devices.id = v.value->>'id'",
        )
        .bind(Value::Array(rows).to_string())
        .execute(&mut *connection)
        .await?;
    }
    let passcodes: Vec<Value> = actions
        .iter()
        .filter(|a| sequences.contains_key(&a.id))
        .filter_map(|a| {
            let (sealed, until) = a.sealed_passcode.as_ref()?;
            Some(json!({"id": a.id, "sealed": hex(sealed), "until": time(*until)}))
        })
        .collect();
    if !passcodes.is_empty() {
        sqlx::query(
            "INSERT INTO action_passcodes (action_id, sealed, visible_until)
             SELECT v.value->>'id', unhex(v.value->>'sealed'), v.value->>'until'
             FROM json_each(?) v",
        )
        .bind(Value::Array(passcodes).to_string())
        .execute(&mut *connection)
        .await?;
    }
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
            passcode_visible_until: visible_until,
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

/// Every state change of the round in one compare-and-set UPDATE (the state test is in its
/// WHERE clause), then the passcodes the changes that took effect drop.
async fn transitions(
    connection: &mut SqliteConnection,
    round: Vec<BulkWrite>,
) -> Result<Vec<BulkOutcome>, StoreError> {
    let mut purge_of: HashMap<String, bool> = HashMap::new();
    let rows: Vec<Value> = round
        .iter()
        .filter_map(|w| match w {
            BulkWrite::Transition {
                action_id,
                from,
                to,
                update,
                now,
            } => {
                purge_of.insert(action_id.clone(), update.purge_passcode);
                let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
                Some(json!({
                    "id": action_id,
                    "from": from,
                    "to": to.as_str(),
                    "now": time(*now),
                    "error": update.error_code.map(ErrorCode::as_str),
                    "reason": update.reason,
                    "delivered": opt_time(update.delivered_at),
                    "completed": opt_time(update.completed_at),
                    "entered": opt_time(update.user_entered_at),
                }))
            }
            _ => None,
        })
        .collect();
    let changed = sqlx::query(concat!(
        "UPDATE actions SET
             state = v.value->>'to',
             updated_at = v.value->>'now',
             error_code = COALESCE(v.value->>'error', actions.error_code),
             reason = COALESCE(v.value->>'reason', actions.reason),
             delivered_at = COALESCE(v.value->>'delivered', actions.delivered_at),
             completed_at = COALESCE(v.value->>'completed', actions.completed_at),
             user_entered_at = COALESCE(v.value->>'entered', actions.user_entered_at)
         FROM json_each(?) v
         WHERE actions.id = v.value->>'id'
           AND actions.state IN (SELECT value FROM json_each(v.value->'from'))",
        action_returning!()
    ))
    .bind(Value::Array(rows).to_string())
    .fetch_all(&mut *connection)
    .await?;
    let mut changed = returned_actions(&changed)?;
    let purged: Vec<&String> = changed
        .keys()
        .filter(|id| purge_of.get(*id).copied().unwrap_or(false))
        .collect();
    let mut checkpoint = false;
    if !purged.is_empty() {
        let deleted = sqlx::query(
            "DELETE FROM action_passcodes
             WHERE action_id IN (SELECT value FROM json_each(?))",
        )
        .bind(json!(purged).to_string())
        .execute(&mut *connection)
        .await?
        .rows_affected();
        checkpoint = deleted > 0;
        let purged: Vec<String> = purged.into_iter().cloned().collect();
        for id in purged {
            if let Some(action) = changed.get_mut(&id) {
                action.passcode_visible_until = None;
            }
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

/// Every user entry of the round in one UPDATE, each only on the reporting device's action.
async fn user_entries(
    connection: &mut SqliteConnection,
    round: Vec<BulkWrite>,
) -> Result<Vec<BulkOutcome>, StoreError> {
    let rows: Vec<Value> = round
        .iter()
        .filter_map(|w| match w {
            BulkWrite::UserEntered {
                device_id,
                action_id,
                at,
            } => Some(json!({"id": action_id, "device": device_id, "at": time(*at)})),
            _ => None,
        })
        .collect();
    let changed = sqlx::query(concat!(
        "UPDATE actions SET
             user_entered_at = v.value->>'at',
             updated_at = MAX(actions.updated_at, v.value->>'at')
         FROM json_each(?) v
         WHERE actions.id = v.value->>'id' AND actions.device_id = v.value->>'device'",
        action_returning!()
    ))
    .bind(Value::Array(rows).to_string())
    .fetch_all(&mut *connection)
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

/// Every status report of the round in one UPDATE.
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
            rows.push(json!({
                "id": device_id,
                "stores": stores_to_json(stores)?,
                "seen": time(*last_seen),
            }));
        }
    }
    let updated = sqlx::query(
        "UPDATE devices SET stores_json = v.value->>'stores', last_seen = v.value->>'seen'
         FROM json_each(?) v WHERE devices.id = v.value->>'id'
         RETURNING devices.id AS id",
    )
    .bind(Value::Array(rows).to_string())
    .fetch_all(&mut *connection)
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

/// Every escrowed token of the round in one upsert (a known device's only).
async fn escrows(
    connection: &mut SqliteConnection,
    round: Vec<BulkWrite>,
) -> Result<Vec<BulkOutcome>, StoreError> {
    let rows: Vec<Value> = round
        .iter()
        .filter_map(|w| match w {
            BulkWrite::Escrow {
                device_id,
                scope,
                sealed,
            } => Some(json!({"id": device_id, "scope": scope.as_str(), "sealed": hex(sealed)})),
            _ => None,
        })
        .collect();
    let stored = sqlx::query(
        "INSERT INTO escrow_tokens (device_id, scope, sealed)
         SELECT v.value->>'id', v.value->>'scope', unhex(v.value->>'sealed')
         FROM json_each(?) v
         WHERE EXISTS (SELECT 1 FROM devices d WHERE d.id = v.value->>'id')
         ON CONFLICT (device_id, scope) DO UPDATE SET sealed = excluded.sealed
         RETURNING device_id, scope",
    )
    .bind(Value::Array(rows).to_string())
    .fetch_all(&mut *connection)
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

/// Every audit row of the round in one INSERT, in queue order.
async fn audits(
    connection: &mut SqliteConnection,
    round: Vec<BulkWrite>,
) -> Result<Vec<BulkOutcome>, StoreError> {
    let rows: Vec<Value> = round
        .iter()
        .filter_map(|w| match w {
            // The id is the store's to assign; the event's own is ignored.
            BulkWrite::Audit(event) => Some(json!({
                "at": time(event.at),
                "principal": event.principal,
                "operation": event.operation,
                "device": event.device_id,
                "action": event.action_id,
                "result": event.result,
                "detail": event.detail,
            })),
            _ => None,
        })
        .collect();
    sqlx::query(
        "INSERT INTO audit (at, principal, operation, device_id, action_id, result, detail)
         SELECT v.value->>'at', v.value->>'principal', v.value->>'operation',
                v.value->>'device', v.value->>'action', v.value->>'result', v.value->>'detail'
         FROM json_each(?) v ORDER BY v.key",
    )
    .bind(Value::Array(rows).to_string())
    .execute(&mut *connection)
    .await?;
    Ok(round
        .into_iter()
        .map(|_| BulkOutcome::applied(BulkDone::Done, Vec::new()))
        .collect())
}
