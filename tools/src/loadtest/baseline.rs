//! The two baselines a reset rate is judged against, measured in the same run on the same
//! machine (after the fleet has stopped, so they compete with nothing):
//!
//! - a bare tonic unary round trip: an in-process `droidfleet.v1.Echo` server on a loopback
//!   port, driven by concurrent clients shaped like the load generator's admin calls (the same
//!   number of HTTP/2 connections and calls in flight). A reset is several such calls plus the
//!   device session's messages, durable writes and crypto, so it can only be slower;
//! - a bare streaming echo: `droidfleet.v1.StreamEcho` on the same kind of server, one
//!   long-lived bidirectional stream per simulated device (up to [`MAX_ECHO_STREAMS`]) over as
//!   many shared HTTP/2 connections as the devices use, each stream sending a message and
//!   awaiting its echo in turn: the rate at which a device Session's messages could travel if
//!   nothing handled them;
//! - Argon2-only: the agent's own passcode KDF (`run_passcode_kdf`) with the run's parameters on
//!   every core at once. Each completed reset needs a known number of Argon2id runs on the
//!   device, so hashes/s over runs per reset bounds the resets/s any control plane could reach
//!   with this agent on this machine.
//!
//! Each is a fixed amount of work done three times; the figure is the median round, so one
//! round disturbed by the rest of the machine does not decide it.

use super::error::LoadtestError;
use droidfleet_agent::device::crypto::run_passcode_kdf;
use droidfleet_agent::device::{KdfParams, Passcode};
use droidfleet_proto::tls::{ServerTls, client_endpoint};
use droidfleet_proto::v1::EchoMessage;
use droidfleet_proto::v1::echo_client::EchoClient;
use droidfleet_proto::v1::echo_server::{Echo, EchoServer};
use droidfleet_proto::v1::stream_echo_client::StreamEchoClient;
use droidfleet_proto::v1::stream_echo_server::{StreamEcho, StreamEchoServer};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Rounds of each baseline; the reported figure is their median.
pub(super) const ROUNDS: usize = 3;
/// Bytes each echo call carries each way: about the size of an admin request naming an id.
const ECHO_PAYLOAD_BYTES: usize = 64;
/// Streams of the streaming echo at most: one per device up to this many, so the baseline of a
/// 100,000-device run does not open 100,000 streams for a measurement of a few seconds.
pub(super) const MAX_ECHO_STREAMS: usize = 10_000;

#[derive(Clone, Debug, Serialize)]
pub(super) struct EchoBaseline {
    /// HTTP/2 connections the callers share (as many as the load generator's admin clients).
    pub connections: usize,
    /// Calls in flight at once.
    pub concurrency: usize,
    pub calls_per_round: usize,
    pub rounds_calls_per_s: Vec<f64>,
    /// Median of the rounds.
    pub calls_per_s: f64,
}

#[derive(Clone, Debug, Serialize)]
pub(super) struct StreamEchoBaseline {
    /// HTTP/2 connections the streams share (as many as the devices' `--connections`).
    pub connections: usize,
    /// Bidirectional streams open at once, each with one message in flight.
    pub streams: usize,
    /// Round trips per round (a message out and its echo back: two messages).
    pub round_trips_per_round: usize,
    /// Messages per second, one way (twice the round trips), of each round.
    pub rounds_messages_per_s: Vec<f64>,
    /// Median of the rounds.
    pub messages_per_s: f64,
}

#[derive(Clone, Debug, Serialize)]
pub(super) struct Argon2Baseline {
    /// Blocking threads hashing at once: the machine's available parallelism.
    pub threads: usize,
    pub hashes_per_round: usize,
    pub rounds_hashes_per_s: Vec<f64>,
    /// Median of the rounds.
    pub hashes_per_s: f64,
}

/// Answers every call with its own request.
struct Echoer;

#[tonic::async_trait]
impl Echo for Echoer {
    async fn echo(&self, request: Request<EchoMessage>) -> Result<Response<EchoMessage>, Status> {
        Ok(Response::new(request.into_inner()))
    }
}

/// Answers every message of a stream with itself, in order.
struct StreamEchoer;

#[tonic::async_trait]
impl StreamEcho for StreamEchoer {
    type EchoStream = Streaming<EchoMessage>;

    async fn echo(
        &self,
        request: Request<Streaming<EchoMessage>>,
    ) -> Result<Response<Self::EchoStream>, Status> {
        Ok(Response::new(request.into_inner()))
    }
}

pub(super) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// `calls` echo round trips per round from `concurrency` callers over `connections` HTTP/2
/// connections to an in-process server on 127.0.0.1.
pub(super) async fn echo(
    connections: usize,
    concurrency: usize,
    calls: usize,
) -> Result<EchoBaseline, LoadtestError> {
    let server = EchoServers::start().await?;
    let measured = async {
        // Connected before the clock starts, so a round times calls, not handshakes.
        let mut clients = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            clients.push(EchoClient::new(server.connect().await?));
        }
        let mut rounds = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            rounds.push(echo_round(&clients, concurrency.max(1), calls).await?);
        }
        Ok::<_, LoadtestError>(rounds)
    }
    .await;
    server.stop().await;
    let rounds = measured?;
    Ok(EchoBaseline {
        connections: connections.max(1),
        concurrency: concurrency.max(1),
        calls_per_round: calls,
        calls_per_s: median(rounds.clone()),
        rounds_calls_per_s: rounds,
    })
}

/// `round_trips` echoes per round over `streams` bidirectional streams spread over
/// `connections` HTTP/2 connections to an in-process server on 127.0.0.1, over TLS.
pub(super) async fn stream_echo(
    connections: usize,
    streams: usize,
    round_trips: usize,
) -> Result<StreamEchoBaseline, LoadtestError> {
    let (connections, streams) = (connections.max(1), streams.clamp(1, MAX_ECHO_STREAMS));
    let server = EchoServers::start().await?;
    let measured = async {
        let mut clients = Vec::with_capacity(connections);
        for _ in 0..connections {
            clients.push(StreamEchoClient::new(server.connect().await?));
        }
        // Every stream open before the clock starts, as a connected fleet's sessions are.
        let mut open = Vec::with_capacity(streams);
        for stream in 0..streams {
            let (outbound, rx) = mpsc::channel(1);
            let inbound = clients[stream % connections]
                .clone()
                .echo(ReceiverStream::new(rx))
                .await
                .map_err(LoadtestError::EchoCall)?
                .into_inner();
            open.push(EchoStream { outbound, inbound });
        }
        let mut rounds = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let (rate, back) = stream_echo_round(open, round_trips).await?;
            open = back;
            rounds.push(rate);
        }
        Ok::<_, LoadtestError>(rounds)
    }
    .await;
    server.stop().await;
    let rounds = measured?;
    Ok(StreamEchoBaseline {
        connections,
        streams,
        round_trips_per_round: round_trips,
        messages_per_s: median(rounds.clone()),
        rounds_messages_per_s: rounds,
    })
}

/// One open stream of the streaming echo: what the caller sends, and what comes back.
struct EchoStream {
    outbound: mpsc::Sender<EchoMessage>,
    inbound: Streaming<EchoMessage>,
}

/// One round: the streams share a counter of round trips left, so the round does exactly
/// `round_trips`; gives the messages per second (one way) and the streams back for the next.
async fn stream_echo_round(
    open: Vec<EchoStream>,
    round_trips: usize,
) -> Result<(f64, Vec<EchoStream>), LoadtestError> {
    let claimed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut streams = JoinSet::new();
    for mut stream in open {
        let claimed = claimed.clone();
        streams.spawn(async move {
            while claimed.fetch_add(1, Ordering::Relaxed) < round_trips {
                let message = EchoMessage {
                    payload: vec![0x5a; ECHO_PAYLOAD_BYTES],
                };
                stream
                    .outbound
                    .send(message)
                    .await
                    .map_err(|_| LoadtestError::EchoCall(Status::aborted("stream closed")))?;
                stream
                    .inbound
                    .message()
                    .await
                    .map_err(LoadtestError::EchoCall)?
                    .ok_or_else(|| LoadtestError::EchoCall(Status::aborted("stream ended")))?;
            }
            Ok::<_, LoadtestError>(stream)
        });
    }
    let mut back = Vec::with_capacity(streams.len());
    while let Some(stream) = streams.join_next().await {
        back.push(stream??);
    }
    let messages = 2.0 * round_trips as f64;
    Ok((messages / started.elapsed().as_secs_f64().max(1e-6), back))
}

/// The echo services on a loopback port over TLS, with a CA and certificate made for this
/// measurement, so the ratios against the control plane compare like with like.
struct EchoServers {
    address: String,
    tls: ServerTls,
    /// Holds the CA and certificate files until the measurement ends.
    _tls_dir: tempfile::TempDir,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl EchoServers {
    async fn start() -> Result<EchoServers, LoadtestError> {
        let tls_dir = tempfile::tempdir().map_err(LoadtestError::EchoListen)?;
        let tls =
            ServerTls::load_or_create(tls_dir.path(), &droidfleet_proto::tls::loopback_names())
                .map_err(LoadtestError::EchoTls)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(LoadtestError::EchoListen)?;
        let address = format!(
            "https://{}",
            listener.local_addr().map_err(LoadtestError::EchoListen)?
        );
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .tls_config(tls.server_config())
                .map_err(LoadtestError::EchoConnect)?
                .tcp_nodelay(true)
                .add_service(EchoServer::new(Echoer))
                .add_service(StreamEchoServer::new(StreamEchoer))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    },
                ),
        );
        Ok(EchoServers {
            address,
            tls,
            _tls_dir: tls_dir,
            stop,
            task,
        })
    }

    /// A new HTTP/2 connection to the servers, its TLS handshake done.
    async fn connect(&self) -> Result<tonic::transport::Channel, LoadtestError> {
        client_endpoint(&self.address, Some(self.tls.ca_fingerprint()))
            .map_err(LoadtestError::EchoTls)?
            .connect()
            .await
            .map_err(LoadtestError::EchoConnect)
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// One round: the callers share a counter of calls left, so the round does exactly `calls`.
async fn echo_round(
    clients: &[EchoClient<tonic::transport::Channel>],
    concurrency: usize,
    calls: usize,
) -> Result<f64, LoadtestError> {
    let claimed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut callers = JoinSet::new();
    for caller in 0..concurrency.min(calls.max(1)) {
        let mut client = clients[caller % clients.len()].clone();
        let claimed = claimed.clone();
        callers.spawn(async move {
            while claimed.fetch_add(1, Ordering::Relaxed) < calls {
                client
                    .echo(EchoMessage {
                        payload: vec![0x5a; ECHO_PAYLOAD_BYTES],
                    })
                    .await
                    .map_err(LoadtestError::EchoCall)?;
            }
            Ok::<_, LoadtestError>(())
        });
    }
    while let Some(caller) = callers.join_next().await {
        caller??;
    }
    Ok(calls as f64 / started.elapsed().as_secs_f64().max(1e-6))
}

/// `hashes` Argon2id runs with `kdf` per round, spread over one blocking thread per core.
pub(super) async fn argon2(kdf: KdfParams, hashes: usize) -> Result<Argon2Baseline, LoadtestError> {
    // A fixed, made-up passcode: only the cost of the derivation matters here.
    let passcode = Passcode::new("baseline-7391");
    let salt = [0x17u8; droidfleet_agent::device::crypto::SALT_LEN];
    let (threads, rounds) = on_every_core(hashes, move || {
        run_passcode_kdf(kdf, &passcode, &salt)
            .map(drop)
            .map_err(LoadtestError::Argon2)
    })
    .await?;
    Ok(Argon2Baseline {
        threads,
        hashes_per_round: hashes,
        hashes_per_s: median(rounds.clone()),
        rounds_hashes_per_s: rounds,
    })
}

/// [`ROUNDS`] rounds of `ops` runs of `work` each, spread over one blocking thread per core
/// (the threads share a counter of runs left, so a round does exactly `ops`): the threads, and
/// each round's runs per second.
pub(super) async fn on_every_core(
    ops: usize,
    work: impl Fn() -> Result<(), LoadtestError> + Send + Sync + 'static,
) -> Result<(usize, Vec<f64>), LoadtestError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let work = Arc::new(work);
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let claimed = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut workers = JoinSet::new();
        for _ in 0..threads {
            let (claimed, work) = (claimed.clone(), work.clone());
            workers.spawn_blocking(move || {
                while claimed.fetch_add(1, Ordering::Relaxed) < ops {
                    work()?;
                }
                Ok::<_, LoadtestError>(())
            });
        }
        while let Some(worker) = workers.join_next().await {
            worker??;
        }
        rounds.push(ops as f64 / started.elapsed().as_secs_f64().max(1e-6));
    }
    Ok((threads, rounds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_round() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![5.0]), 5.0);
        assert_eq!(median(Vec::new()), 0.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_baselines_measure_something() {
        let echo = echo(2, 8, 200).await.unwrap();
        assert_eq!(echo.rounds_calls_per_s.len(), ROUNDS);
        assert!(echo.calls_per_s > 0.0);
        let streams = stream_echo(2, 16, 400).await.unwrap();
        assert_eq!(streams.rounds_messages_per_s.len(), ROUNDS);
        assert_eq!((streams.connections, streams.streams), (2, 16));
        assert!(streams.messages_per_s > 0.0);
        let argon2 = argon2(KdfParams::LIGHT, 20).await.unwrap();
        assert_eq!(argon2.rounds_hashes_per_s.len(), ROUNDS);
        assert!(argon2.hashes_per_s > 0.0 && argon2.threads >= 1);
    }
}
