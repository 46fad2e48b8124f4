//! Tools that drive a droidfleet control plane and a fleet of simulated devices from outside,
//! through public APIs only: the admin client, the narrated demo, the load test and the flow
//! runner.
//!
//! Layout:
//! - [`agent_wall`]: `droidfleet agent run`, the agent with a live fleet wall (`--console`).
//! - [`admin`]: the typed admin-API client every tool shares ([`admin::Client`]), the
//!   `droidfleet admin` commands, and how answers are shown (human lines, JSON).
//! - [`conformance`]: `droidfleet conformance`, the kit that plays either side of the protocol
//!   against an implementation under test, its catalogue of cases and its reports.
//! - [`dashboard`]: `droidfleet dashboard render`, a Grafana dashboard's panels drawn from
//!   Prometheus into one SVG laid out on the dashboard's grid.
//! - [`demo`]: `droidfleet demo`, a control plane and one device of each type, narrated.
//! - [`loadtest`]: `droidfleet loadtest`, the seeded fleet load generator and its report.
//! - [`flow`]: `droidfleet flow`, user journeys in flow files, their runner and reports.
//! - `wall/`: what the load test's and the agent's fleet walls share (serving, live panels,
//!   charts, screens).
//! - `embedded.rs`: a control plane in this process, for the tools that start their own.
//! - `causes.rs`: an error and its causes as one line, where an error is kept as text.
//!
//! Each area has its own error type ([`admin::AdminError`], [`agent_wall::AgentWallError`],
//! [`dashboard::DashboardError`], [`demo::DemoError`], [`loadtest::LoadtestError`], [`flow::FlowError`],
//! [`conformance::ConformanceError`]); none carries a token or a passcode.
#![forbid(unsafe_code)]

pub mod admin;
pub mod agent_wall;
mod causes;
pub mod conformance;
pub mod dashboard;
pub mod demo;
mod embedded;
pub mod flow;
pub mod loadtest;
mod wall;
