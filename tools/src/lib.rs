//! Tools that drive a droidfleet control plane and a fleet of simulated devices from outside,
//! through public APIs only: the admin client, the narrated demo and the load test.
//!
//! Layout:
//! - [`admin`]: the admin-API client and the `droidfleet admin` commands (human and JSON output).
//! - [`demo`]: `droidfleet demo`, a control plane and one device of each type, narrated.
//! - [`loadtest`]: `droidfleet loadtest`, the seeded fleet load generator and its report.
#![forbid(unsafe_code)]

pub mod admin;
pub mod demo;
pub mod loadtest;
