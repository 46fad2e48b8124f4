//! End-to-end tests of droidfleet over real gRPC on loopback, as one test binary (one link step
//! instead of one per file). Each module is one area; `support` holds the in-process world, the
//! admin client, the hand-played raw device and the child-process helper they share.

mod support;

mod admin_rules;
mod architecture;
mod bad_input;
mod crash_fleet;
mod delivery;
mod demo;
mod device_behaviour;
mod device_identity;
mod faults;
mod fleet_options;
mod health_reflection;
mod loadtest;
mod metrics;
mod passcode_agreement;
mod processes;
mod rbac_scopes;
mod remote_lock;
mod reset_flow;
