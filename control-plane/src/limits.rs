//! The abuse limits of the control plane's gRPC listener, each a named `droidfleet serve` setting
//! with a default sized for a real fleet: simulated fleets multiplex tens of thousands of device
//! sessions on a handful of HTTP/2 connections, so the per-connection limits are wide, while
//! message sizes and timeouts are tight.

use std::time::Duration;

/// A rate limit per peer address: `per_second` tokens a second, at most `burst` saved up
/// (the rule is [`crate::rate_limit::PeerBuckets`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

/// The limits, read by the server (transport settings), the gRPC services (message sizes), the
/// device gateway (the Hello timeout) and the admin API (watches).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `--max-streams-per-connection`: HTTP/2 streams one connection may hold open at once
    /// (h2 refuses more). The load test runs 100,000 devices on 4 connections (25,000 each).
    pub max_streams_per_connection: u32,
    /// `--max-device-message-bytes`: the largest message a device may send on the gateway; a
    /// larger one is refused RESOURCE_EXHAUSTED before it is buffered whole. A Hello with two
    /// stores is about 200 bytes.
    pub max_device_message_bytes: usize,
    /// `--max-admin-message-bytes`: the same for admin API requests.
    pub max_admin_message_bytes: usize,
    /// `--max-header-list-bytes`: the largest HTTP/2 header block a request may carry.
    pub max_header_list_bytes: u32,
    /// `--request-timeout`: how long a call may take to answer (for a stream, to start it: a
    /// Session's Hello included); DEADLINE_EXCEEDED after.
    pub request_timeout: Duration,
    /// `--handshake-timeout`: how long a new connection may take to complete TLS and send the
    /// HTTP/2 preface; it is closed after. Without it, a peer that sends nothing (or half a
    /// ClientHello) holds a socket and a task for as long as it likes.
    pub handshake_timeout: Duration,
    /// `--hello-timeout`: how long a device may take to send its Hello once its Session opened.
    pub hello_timeout: Duration,
    /// `--keepalive-interval`: how often the server pings an idle connection.
    pub keepalive_interval: Duration,
    /// `--keepalive-timeout`: a connection that does not answer a ping within this is closed
    /// (a dead peer, or one that stopped reading).
    pub keepalive_timeout: Duration,
    /// `--max-pending-reset-streams`: HTTP/2 streams a client may open and reset before the
    /// server accepted them; more is a rapid-reset flood and ends the connection.
    pub max_pending_reset_streams: usize,
    /// `--max-watches-per-principal`: WatchDevice, WatchDevices and WatchAction streams one
    /// admin principal may hold open at once; one more is refused RESOURCE_EXHAUSTED. Each holds
    /// a task and a follower the control plane wakes on every change it follows.
    pub max_watches_per_principal: usize,
    /// `--max-watch-lifetime`: how long one watch may stay open; it then ends DEADLINE_EXCEEDED
    /// and the client opens it again (with a token that is still valid).
    pub max_watch_lifetime: Duration,
    /// `--enroll-rate` and `--enroll-burst`: Enroll calls one peer address may make (each a
    /// database write and a credential); past them RESOURCE_EXHAUSTED. The burst is wide: a
    /// simulated fleet, or many phones behind one carrier NAT, enrolls from one address.
    pub enroll_rate: Rate,
    /// `--failed-auth-rate` and `--failed-auth-burst`: failed authentications (an unknown or
    /// ended admin token, device credential or enrollment token) one peer address may make; once
    /// spent, every call from it that needs authentication is refused RESOURCE_EXHAUSTED before
    /// any token is looked at, so guessing is slowed to the rate.
    pub failed_auth_rate: Rate,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_streams_per_connection: 32_768,
            max_device_message_bytes: 64 * 1024,
            max_admin_message_bytes: 1024 * 1024,
            max_header_list_bytes: 16 * 1024,
            request_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(20),
            max_pending_reset_streams: 20,
            max_watches_per_principal: 64,
            max_watch_lifetime: Duration::from_secs(3_600),
            enroll_rate: Rate {
                per_second: 100,
                burst: 120_000,
            },
            failed_auth_rate: Rate {
                per_second: 10,
                burst: 1_000,
            },
        }
    }
}
