//! Simulated Android devices for droidfleet: the keyguard, the work profile's separate
//! credential, escrow tokens and the user's notifications, driven over gRPC.
//!
//! Layout:
//! - [`device`]: the device model, plain Rust with no I/O (credential stores, token lifecycle,
//!   passcode policy, throttling, the lock screen, signed commands and policies).
//! - [`fleet`]: the runtime hosting many devices: what it is given to host (`fleet/spec.rs`),
//!   each device's Session with the control plane and the protobuf on it (`fleet/session.rs`),
//!   the per-device state files (`fleet/state_file.rs`).
//! - [`faults`]: `--faults`, the seeded decisions to delay, duplicate or drop session messages
//!   and break sessions, without the I/O.
//! - [`harness`]: the `DeviceHarness` gRPC service through which a test plays the user.
//! - `convert` (crate-private): protobuf ⇄ device model, at the gRPC edge; its
//!   [`decode_command`], [`decode_policy`] and [`decode_key_update`] (the bodies of signed
//!   commands, policies and key updates) are public, for fuzzing and other hosts.
//! - [`seeded`]: SplitMix64 and `--mix`, the seeded load shapes shared with the load test.
//! - [`metrics`]: Prometheus counters and the `GET /metrics` endpoint.
//! - [`clock`]: the injected clock the devices read time from.
//! - [`cli`]: `droidfleet-agent run` arguments, shared with `droidfleet agent run`.
#![forbid(unsafe_code)]

pub mod cli;
pub mod clock;
mod convert;
pub mod device;
pub mod faults;
pub mod fleet;
pub mod harness;
pub mod metrics;
pub mod seeded;

pub use convert::{decode_command, decode_key_update, decode_policy};
