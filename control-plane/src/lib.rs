//! droidfleet's control plane: the MDM side of the Android "reset passcode" remote action.
//!
//! Layout (see ARCHITECTURE.md for the whole map):
//! - Domain, no I/O: [`model`] (devices, actions, roles), [`action`] (the action state machine),
//!   [`rbac`] (permissions and built-in roles), [`passcode_gen`] (passcodes that satisfy a
//!   policy), [`secret`] (redacted secret types), [`clock`] (injected time).
//! - Edges: [`store`] (SQLite through sqlx), [`crypto`] (keys on disk, sealing, signing).
#![forbid(unsafe_code)]

pub mod action;
pub mod clock;
pub mod crypto;
pub mod grpc;
pub mod metrics;
pub mod model;
pub mod passcode_gen;
pub mod rbac;
pub mod secret;
pub mod server;
pub mod service;
pub mod store;
