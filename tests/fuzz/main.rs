//! Fuzz targets for the decoders and validators that take remote input, on the stable toolchain
//! (`driver.rs` says how): device reports at the control plane's gateway, signed commands,
//! policies and signing-key updates on the device, admin requests at the admin API. `cargo test
//! --test fuzz` runs each briefly over its committed corpus (`tests/fuzz/corpus/`); the README
//! gives the command of a long run.

mod admin_requests;
mod device_reports;
mod driver;
mod enrolled_kiosk;
mod signed_commands;
mod signed_key_updates;
mod signed_policies;
