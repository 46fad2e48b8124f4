//! The admin API from outside: the typed client every tool shares ([`Client`], with its
//! [`Token`] and [`AdminError`]), the `droidfleet admin` commands, and how answers are shown.
//!
//! - `client.rs`: connect with a bearer token, one method per admin RPC.
//! - `cli.rs`: [`AdminArgs`] and [`run`], the `droidfleet admin` subcommands.
//! - `format.rs`: names for the proto's enum values, lines for people, JSON for programs.

mod cli;
mod client;
pub(crate) mod format;

pub use cli::{AdminArgs, run};
pub use client::{AdminError, Client, Token, trusted_ca};
