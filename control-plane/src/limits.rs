//! The abuse limits of the control plane's gRPC listener, each a named `droidfleet serve` setting
//! with a default sized for a real fleet: simulated fleets multiplex tens of thousands of device
//! sessions on a handful of HTTP/2 connections, so the per-connection limits are wide, while
//! message sizes and timeouts are tight.

use std::time::Duration;

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
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_streams_per_connection: 32_768,
            max_device_message_bytes: 64 * 1024,
            max_admin_message_bytes: 1024 * 1024,
            max_header_list_bytes: 16 * 1024,
            request_timeout: Duration::from_secs(30),
            hello_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(20),
            max_pending_reset_streams: 20,
            max_watches_per_principal: 64,
            max_watch_lifetime: Duration::from_secs(3_600),
        }
    }
}
