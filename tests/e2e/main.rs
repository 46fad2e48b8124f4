//! End-to-end tests of droidfleet over real gRPC on loopback, as one test binary (one link step
//! instead of one per file). Each module is one area of behaviour (`architecture`: the
//! workspace's layering); a test's name is `module::function`.
//!
//! `support` holds what they share, one module per role: the in-process world (a control plane
//! and an agent in this process, or a control plane alone), the admin client, the raw device
//! played by hand over the DeviceGateway, and the `droidfleet` child process that the crash
//! tests kill.

mod support;

mod abuse;
mod admin_rules;
mod admin_tokens;
mod agent_wall;
mod architecture;
mod bad_input;
mod cancel_expiry;
mod cancel_request;
mod conformance;
mod conformance_catches;
mod console;
mod console_security;
mod crash_fleet;
mod dashboard;
mod delivery;
mod demo;
mod device_behaviour;
mod device_identity;
mod device_search;
mod disk_limits;
mod faults;
mod fd_exhaustion;
mod fleet_options;
mod fleet_wall;
mod flows;
mod health_reflection;
mod key_rotation;
mod loadtest;
mod loadtest_metrics;
mod metrics;
mod move_device;
mod paging;
mod passcode_agreement;
mod processes;
mod python_device;
mod rbac_scopes;
mod recording_relay;
mod remote_lock;
mod reset_flow;
mod token_freshness;
mod trace_context;
mod transport;
mod versions;
