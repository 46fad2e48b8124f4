//! The protocol ceiling: the work one reset needs, counted unit by unit from the code, each
//! unit's cost measured in the same run on the same machine, and the resets per second this
//! machine could reach if the control plane, the agent and the load generator did nothing
//! beyond those units.
//!
//! Every count is the least the path below performs and every unit is measured bare (an echo
//! that does no work, a key pair in memory, an insert into a table with no index), so the
//! ceiling is an upper bound: no implementation of this flow on this machine can pass it. The
//! units share the same cores, so their costs add: a unit measured at R per second on every
//! core costs 1/R machine-seconds, and the ceiling is 1 / Σ (count × cost).
//!
//! The path counted: a reset that ends `done`, its user entering the new passcode; the load
//! test's typos and reboots add only Argon2 runs, which come from this run's own decisions.
//! Counts are split into what the protocol needs whatever the client, and what this load test
//! and this agent add by their own choice.

use super::baseline::{EchoBaseline, StreamEchoBaseline, median, on_every_core};
use super::error::LoadtestError;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};
use std::sync::Arc;
use tokio::time::Instant;

/// Bytes of a signed command body: about a reset command's (ids, sequence, passcode, token).
const SIGNED_BYTES: usize = 160;
/// Bytes sealed per AES-GCM operation: an escrow token's 32 bytes or a passcode.
const SEALED_BYTES: usize = 32;
/// Rows per commit of the SQLite unit, in multi-row statements of [`ROWS_PER_STATEMENT`], as
/// the control plane's writer batches a busy turn's writes.
pub(super) const ROWS_PER_COMMIT: usize = 256;
const ROWS_PER_STATEMENT: usize = 64;
/// Commits per round of the SQLite unit.
const COMMITS_PER_ROUND: usize = 40;
/// The protocol's Argon2id runs per done reset: the device wraps its store's secret under the
/// new passcode, and unwraps it when the user enters it. Typos and a rebooted work profile's
/// device PIN add more: the load test's decisions.
const PROTOCOL_ARGON2_RUNS: f64 = 2.0;

/// The units measured here (the echoes and Argon2 are the other baselines).
#[derive(Clone, Debug, Serialize)]
pub(super) struct UnitBaselines {
    /// Blocking threads running the crypto units at once: the machine's available parallelism.
    pub threads: usize,
    pub ed25519_signs_per_s: f64,
    pub ed25519_verifies_per_s: f64,
    /// Seals and opens (alternating) per second.
    pub aes_gcm_ops_per_s: f64,
    /// Rows per second inserted by one connection, [`ROWS_PER_COMMIT`] per commit, WAL and
    /// `synchronous = FULL` as the control plane opens its database.
    pub sqlite_rows_per_s: f64,
    pub sqlite_rows_per_commit: usize,
}

/// One unit of work in the ceiling.
#[derive(Debug, Serialize)]
pub(super) struct CeilingUnit {
    pub unit: &'static str,
    /// The baseline its cost comes from.
    pub measured_by: &'static str,
    /// Machine-microseconds per unit: 1,000,000 / the unit's rate on this machine.
    pub cost_us: f64,
    /// Units the protocol needs per reset, whatever the client.
    pub protocol_per_reset: f64,
    /// Units this load test and this agent add per reset by their own choice.
    pub added_per_reset: f64,
    /// What was counted, and which part is whose.
    pub counted: &'static str,
}

impl CeilingUnit {
    fn us_per_reset(&self, with_added: bool) -> f64 {
        let count = self.protocol_per_reset
            + if with_added {
                self.added_per_reset
            } else {
                0.0
            };
        count * self.cost_us
    }
}

/// The ceiling of this run.
#[derive(Debug, Serialize)]
pub(super) struct Ceiling {
    pub units: Vec<CeilingUnit>,
    /// Machine-microseconds per reset of every unit the run performs.
    pub us_per_reset: f64,
    /// 1,000,000 / `us_per_reset`: the bound on resets/s of this load test on this machine.
    pub resets_per_s: f64,
    /// The same over the protocol's units only: the bound of any client on this machine.
    pub protocol_us_per_reset: f64,
    pub protocol_resets_per_s: f64,
    /// Resets reaching a final state per second ÷ `resets_per_s`.
    pub ratio: f64,
}

/// Measures the units not measured by the other baselines: Ed25519, AES-GCM and SQLite.
pub(super) async fn measure_units(crypto_ops: usize) -> Result<UnitBaselines, LoadtestError> {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| LoadtestError::Unit {
        unit: "Ed25519 (key generation)",
    })?;
    let pair =
        Arc::new(
            Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| LoadtestError::Unit {
                unit: "Ed25519 (key generation)",
            })?,
        );
    let body = [0x42u8; SIGNED_BYTES];
    let signer = pair.clone();
    let (threads, signs) = on_every_core(crypto_ops, move || {
        std::hint::black_box(signer.sign(&body));
        Ok(())
    })
    .await?;
    let public = pair.public_key().as_ref().to_vec();
    let signature = pair.sign(&body).as_ref().to_vec();
    let (_, verifies) = on_every_core(crypto_ops, move || {
        UnparsedPublicKey::new(&ED25519, &public)
            .verify(&body, &signature)
            .map_err(|_| LoadtestError::Unit {
                unit: "Ed25519 verify",
            })
    })
    .await?;

    // A key made for this measurement, protecting nothing: the fixed nonce is harmless here.
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[0x5au8; 32]).map_err(|_| {
        LoadtestError::Unit {
            unit: "AES-256-GCM (key)",
        }
    })?);
    let (_, seal_open_pairs) = on_every_core(crypto_ops, move || {
        let mut sealed = vec![0x17u8; SEALED_BYTES];
        let nonce = || Nonce::assume_unique_for_key([7u8; 12]);
        key.seal_in_place_append_tag(nonce(), Aad::from(b"ceiling"), &mut sealed)
            .map_err(|_| LoadtestError::Unit {
                unit: "AES-256-GCM seal",
            })?;
        key.open_in_place(nonce(), Aad::from(b"ceiling"), &mut sealed)
            .map_err(|_| LoadtestError::Unit {
                unit: "AES-256-GCM open",
            })?;
        Ok(())
    })
    .await?;

    Ok(UnitBaselines {
        threads,
        ed25519_signs_per_s: median(signs),
        ed25519_verifies_per_s: median(verifies),
        aes_gcm_ops_per_s: 2.0 * median(seal_open_pairs),
        sqlite_rows_per_s: sqlite_rows_per_s().await?,
        sqlite_rows_per_commit: ROWS_PER_COMMIT,
    })
}

/// Rows per second into a fresh database file in a temporary directory (median of the rounds).
async fn sqlite_rows_per_s() -> Result<f64, LoadtestError> {
    let dir = tempfile::tempdir().map_err(LoadtestError::TempDir)?;
    let mut connection = SqliteConnectOptions::new()
        .filename(dir.path().join("ceiling.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .connect()
        .await
        .map_err(LoadtestError::UnitSqlite)?;
    sqlx::query(
        "CREATE TABLE row_unit (id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, \
         at_ms INTEGER NOT NULL, body TEXT NOT NULL)",
    )
    .execute(&mut connection)
    .await
    .map_err(LoadtestError::UnitSqlite)?;
    let statement = format!(
        "INSERT INTO row_unit (device_id, at_ms, body) VALUES {}",
        vec!["(?, ?, ?)"; ROWS_PER_STATEMENT].join(", ")
    );
    let mut rounds = Vec::with_capacity(super::baseline::ROUNDS);
    for _ in 0..super::baseline::ROUNDS {
        let started = Instant::now();
        for commit in 0..COMMITS_PER_ROUND {
            let mut transaction = connection
                .begin()
                .await
                .map_err(LoadtestError::UnitSqlite)?;
            for part in 0..ROWS_PER_COMMIT / ROWS_PER_STATEMENT {
                // Placeholders only, from constants: no data in the SQL text.
                let mut query = sqlx::query(sqlx::AssertSqlSafe(statement.as_str()));
                for row in 0..ROWS_PER_STATEMENT {
                    let n = (commit * ROWS_PER_COMMIT + part * ROWS_PER_STATEMENT + row) as i64;
                    query = query
                        .bind(format!("cosu-{n}"))
                        .bind(n)
                        .bind(r#"{"state":"done"}"#);
                }
                query
                    .execute(&mut *transaction)
                    .await
                    .map_err(LoadtestError::UnitSqlite)?;
            }
            transaction
                .commit()
                .await
                .map_err(LoadtestError::UnitSqlite)?;
        }
        let rows = (COMMITS_PER_ROUND * ROWS_PER_COMMIT) as f64;
        rounds.push(rows / started.elapsed().as_secs_f64().max(1e-6));
    }
    let _ = connection.close().await;
    Ok(median(rounds))
}

/// The ceiling from the units' measured rates, the run's Argon2 runs per done reset and the
/// run's resets reaching a final state per second.
pub(super) fn ceiling(
    echo: &EchoBaseline,
    stream_echo: &StreamEchoBaseline,
    units: &UnitBaselines,
    argon2_hashes_per_s: f64,
    argon2_runs_per_done_reset: f64,
    finished_per_s: f64,
) -> Ceiling {
    let cost = |per_s: f64| if per_s > 0.0 { 1e6 / per_s } else { 0.0 };
    let units = vec![
        CeilingUnit {
            unit: "admin unary call",
            measured_by: "tonic unary echo (TLS)",
            cost_us: cost(echo.calls_per_s),
            protocol_per_reset: 1.0,
            added_per_reset: 3.0,
            counted: "ResetPasscode (protocol); RevealPasscode and two WatchAction streams, \
                      each opened like a unary call, its further states not counted (load test)",
        },
        CeilingUnit {
            unit: "session message, one way",
            measured_by: "streaming echo (TLS), messages one way",
            cost_us: cost(stream_echo.messages_per_s),
            protocol_per_reset: 8.0,
            added_per_reset: 0.0,
            counted: "to the device SignedCommand and EscrowAck; from it CommandAck, \
                      EscrowTokenUpdate (the token the reset rotated), DeviceStatus, \
                      CommandResult, UserEvent (passcode entered), DeviceStatus (protocol)",
        },
        CeilingUnit {
            unit: "Ed25519 sign",
            measured_by: "ring, every core",
            cost_us: cost(units.ed25519_signs_per_s),
            protocol_per_reset: 1.0,
            added_per_reset: 0.0,
            counted: "the control plane signs the command (protocol)",
        },
        CeilingUnit {
            unit: "Ed25519 verify",
            measured_by: "ring, every core",
            cost_us: cost(units.ed25519_verifies_per_s),
            protocol_per_reset: 1.0,
            added_per_reset: 1.0,
            counted: "the device verifies the command (protocol); the agent verifies it again, \
                      before its CommandAck and in the device model (agent)",
        },
        CeilingUnit {
            unit: "AES-256-GCM seal or open",
            measured_by: "ring, every core",
            cost_us: cost(units.aes_gcm_ops_per_s),
            protocol_per_reset: 8.0,
            added_per_reset: 2.0,
            counted: "control plane: seal the passcode, open the escrowed token and the passcode \
                      to send them, seal the new escrowed token; device: open its store's secret \
                      with the token, seal it under the new passcode and under the new token, \
                      open it with the entered passcode (protocol); the control plane opens the \
                      held token to compare it with the new escrow (implementation) and the \
                      passcode for RevealPasscode (load test)",
        },
        CeilingUnit {
            unit: "Argon2id, the run's preset",
            measured_by: "the Argon2 baseline, every core",
            cost_us: cost(argon2_hashes_per_s),
            protocol_per_reset: PROTOCOL_ARGON2_RUNS,
            added_per_reset: (argon2_runs_per_done_reset - PROTOCOL_ARGON2_RUNS).max(0.0),
            counted: "the device wraps its secret under the new passcode and unwraps it when \
                      the user enters it (protocol); typos and a rebooted work-profile device's \
                      PIN, from this run's decisions (load test)",
        },
        CeilingUnit {
            unit: "SQLite row in a batched commit",
            measured_by: "multi-row inserts, 256 rows per commit, WAL, synchronous=FULL",
            cost_us: cost(units.sqlite_rows_per_s),
            protocol_per_reset: 9.0,
            added_per_reset: 3.0,
            counted: "the action created, sent, delivered, done and its user's entry; the new \
                      escrowed token; two status reports; ResetPasscode's audit row (protocol); \
                      the audit rows of RevealPasscode and two WatchActions (load test)",
        },
    ];
    let us_per_reset: f64 = units.iter().map(|u| u.us_per_reset(true)).sum();
    let protocol_us_per_reset: f64 = units.iter().map(|u| u.us_per_reset(false)).sum();
    let per_s = |us: f64| if us > 0.0 { 1e6 / us } else { 0.0 };
    let resets_per_s = per_s(us_per_reset);
    Ceiling {
        units,
        us_per_reset,
        resets_per_s,
        protocol_us_per_reset,
        protocol_resets_per_s: per_s(protocol_us_per_reset),
        ratio: if resets_per_s > 0.0 {
            finished_per_s / resets_per_s
        } else {
            0.0
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echoes(calls_per_s: f64, messages_per_s: f64) -> (EchoBaseline, StreamEchoBaseline) {
        (
            EchoBaseline {
                connections: 4,
                concurrency: 512,
                calls_per_round: 1,
                rounds_calls_per_s: vec![calls_per_s],
                calls_per_s,
            },
            StreamEchoBaseline {
                connections: 16,
                streams: 100,
                round_trips_per_round: 1,
                rounds_messages_per_s: vec![messages_per_s],
                messages_per_s,
            },
        )
    }

    #[test]
    fn the_ceiling_adds_every_unit_s_cost_times_its_count() {
        // Every unit at 1,000,000/s costs 1 µs: the ceiling is 1e6 over the number of units.
        let (echo, stream) = echoes(1e6, 1e6);
        let units = UnitBaselines {
            threads: 2,
            ed25519_signs_per_s: 1e6,
            ed25519_verifies_per_s: 1e6,
            aes_gcm_ops_per_s: 1e6,
            sqlite_rows_per_s: 1e6,
            sqlite_rows_per_commit: ROWS_PER_COMMIT,
        };
        let ceiling = ceiling(&echo, &stream, &units, 1e6, 2.5, 10_000.0);
        let protocol: f64 = ceiling.units.iter().map(|u| u.protocol_per_reset).sum();
        let added: f64 = ceiling.units.iter().map(|u| u.added_per_reset).sum();
        assert_eq!(protocol, 1.0 + 8.0 + 1.0 + 1.0 + 8.0 + 2.0 + 9.0);
        assert_eq!(added, 3.0 + 1.0 + 2.0 + 0.5 + 3.0);
        assert!((ceiling.protocol_us_per_reset - protocol).abs() < 1e-9);
        assert!((ceiling.us_per_reset - protocol - added).abs() < 1e-9);
        assert!((ceiling.resets_per_s - 1e6 / (protocol + added)).abs() < 1e-6);
        assert!((ceiling.ratio - 10_000.0 / ceiling.resets_per_s).abs() < 1e-9);
    }

    #[test]
    fn a_slow_unit_bounds_the_ceiling_by_its_own_share() {
        // A unary call at 1,000/s costs 1 ms, four per reset (one the protocol's): every other
        // unit free, the ceiling is 250 resets/s and the protocol's 1,000.
        let (echo, stream) = echoes(1_000.0, f64::INFINITY);
        let free = UnitBaselines {
            threads: 2,
            ed25519_signs_per_s: f64::INFINITY,
            ed25519_verifies_per_s: f64::INFINITY,
            aes_gcm_ops_per_s: f64::INFINITY,
            sqlite_rows_per_s: f64::INFINITY,
            sqlite_rows_per_commit: ROWS_PER_COMMIT,
        };
        let ceiling = ceiling(&echo, &stream, &free, f64::INFINITY, 2.0, 125.0);
        assert!((ceiling.resets_per_s - 250.0).abs() < 1e-9);
        assert!((ceiling.protocol_resets_per_s - 1_000.0).abs() < 1e-9);
        assert!((ceiling.ratio - 0.5).abs() < 1e-12);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_unit_measures_something() {
        let units = measure_units(200).await.unwrap();
        assert!(units.threads >= 1);
        for rate in [
            units.ed25519_signs_per_s,
            units.ed25519_verifies_per_s,
            units.aes_gcm_ops_per_s,
            units.sqlite_rows_per_s,
        ] {
            assert!(rate.is_finite() && rate > 0.0, "{units:?}");
        }
    }
}
