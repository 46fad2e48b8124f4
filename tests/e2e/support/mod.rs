//! What the end-to-end tests share, one module per role:
//!
//! - `world`: [`World`], a control plane and an agent in this process talking real gRPC over
//!   loopback, with the agent's harness to play the user; [`Embedded`], a control plane alone.
//! - `admin`: [`Admin`], an admin API client acting as one principal, and the passcode policies.
//! - `raw_device`: [`RawDevice`], a device played by hand over the DeviceGateway, for what the
//!   agent would never do ([`hello`], [`hello_on`] an Android level, [`open_session`] for
//!   sessions with any credential).
//! - `process`: [`Process`], a `droidfleet` child process that tests kill with SIGKILL, and
//!   [`Deployment`], a control plane and an agent as such processes in one directory.
//! - `kiosk_harness`: the harness of such an agent's one `kiosk`: connect, wait until it is
//!   connected, type a passcode.
//! - `browser`: [`Browser`], a real headless Chromium over WebDriver, for what a person sees.
//! - `conformance`: our agent as a device under test for the conformance kit, and running the
//!   kit's device suite on loopback.
//! - `broken`: deliberately broken peers (a gateway and a harness in front of the real ones,
//!   each with one bug) that the conformance kit must catch.
//! - `console`: [`Console`], the web console served in this process over a test's control plane.
//! - `http`: a bare HTTP client (plain or TLS), for status codes, cookies and headers.
//! - `relay`: [`Relay`], a TCP proxy that records every byte it forwards, as an observer on the
//!   network path would.

mod admin;
pub(crate) mod broken;
mod browser;
pub(crate) mod conformance;
mod console;
pub(crate) mod http;
pub(crate) mod kiosk_harness;
mod kiosks;
mod process;
mod raw_device;
mod relay;
mod world;

pub(crate) use admin::{Admin, password_policy, pin_policy};
pub(crate) use browser::Browser;
pub(crate) use console::Console;
pub(crate) use kiosks::Kiosks;
pub(crate) use process::{Deployment, Process};
pub(crate) use raw_device::{RawDevice, hello, hello_on, new_key, open_session};
pub(crate) use relay::{Relay, socket_address};
pub(crate) use world::{Embedded, World};

use std::time::Duration;

/// The longest any test waits for an event before failing.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);
