//! droidfleet's control plane: the MDM side of the Android "reset passcode" remote action.
//!
//! Layout (see ARCHITECTURE.md for the whole map), bottom up: each module uses only modules on
//! the lines above its own (none on its own line), so the imports run one way.
//! - Leaves: [`clock`] (injected time), [`secret`] (redacted secret types), [`crypto`] (keys on
//!   disk, sealing, signing), [`limits`] (the listener's abuse limits and their defaults),
//!   [`disk`] (audit retention and the disk reserve).
//! - Domain vocabulary, no I/O: [`model`] (devices, actions and their states, error codes,
//!   permissions, roles, audit events).
//! - Domain rules, no I/O: [`action`] (the action state machine), [`rbac`] (built-in roles and
//!   who may do what in which device group), [`passcode_gen`] (passcodes that satisfy a policy),
//!   [`rate_limit`] (per-peer token buckets).
//! - Storage edge: [`store`] (the `Store` trait, and SQLite through sqlx).
//! - Use cases: [`service`] (`ControlPlane`: rules, audit, sessions' bookkeeping; no protobuf).
//! - Observer: [`metrics`] (Prometheus counts fed by the use cases' change broadcasts).
//! - gRPC edge: [`grpc`] (tonic services: protobuf in, use-case calls, protobuf out).
//! - [`server`]: opens the data directory and serves all of it until shutdown.
#![forbid(unsafe_code)]

pub mod action;
pub mod clock;
pub mod crypto;
pub mod disk;
pub mod grpc;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod passcode_gen;
pub mod rate_limit;
pub mod rbac;
pub mod secret;
pub mod server;
pub mod service;
pub mod store;
