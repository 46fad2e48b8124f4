//! A control plane out of file descriptors: `droidfleet serve` started under
//! `prlimit --nofile`, its descriptors used up by idle keep-alive connections to `/metrics`.
//! While it is starved, a scrape and a gRPC connection wait in the listeners' backlogs and the
//! process stays nearly idle (its CPU time read from `/proc/<pid>/stat`: no accept loop spins);
//! once the connections close, the waiting scrape is answered and both endpoints serve again.

use crate::support::{DEADLINE, Process};
use droidfleet_proto::tls::{CaFingerprint, client_endpoint};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The control plane's descriptor limit: room to start (database, keys, listeners, runtime),
/// then a few dozen connections.
const NOFILE: usize = 96;
/// Scrapes sent while the descriptors are used up: more than the descriptors the process may
/// hold for a moment while the test counts them (database and journal files, a TLS read of its
/// key), which free up later and each let one scrape in.
const WAITING_SCRAPES: usize = 16;
/// How long the starved process's CPU time is measured.
const STARVED_WINDOW: Duration = Duration::from_secs(3);
/// The most CPU the starved process may use over the window, in CPU-seconds per second: a
/// spinning accept loop uses a whole core (1.0); a process waiting uses next to nothing.
const STARVED_CPU_BOUND: f64 = 0.10;

/// A connection to `/metrics` (HTTP/1.1 keep-alive): the server holds a descriptor for it until
/// it is dropped here.
struct Connection {
    sender: SendRequest<Empty<Bytes>>,
    driver: JoinHandle<()>,
}

impl Connection {
    async fn open(address: &str) -> Connection {
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Connection { sender, driver }
    }

    /// `GET /metrics` on this connection: the status and whether the body is metrics text.
    async fn scrape(&mut self, address: &str) -> (u16, bool) {
        let request = hyper::Request::get("/metrics")
            .header("host", address)
            .body(Empty::new())
            .unwrap();
        let response = self.sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, body.ends_with(b"# EOF\n"))
    }

    /// Closes the connection, and waits until its socket is closed on this side.
    async fn close(self) {
        drop(self.sender);
        self.driver.await.unwrap();
    }
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// utime + stime of `pid`, in clock ticks (`/proc/<pid>/stat` fields 14 and 15, counted after
/// the command name's closing parenthesis, which may hide spaces).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn clock_ticks_per_second() -> f64 {
    let output = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .unwrap();
    String::from_utf8(output.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_recover_after_descriptor_exhaustion_without_a_busy_loop() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cp");
    let log = dir.path().join("cp.log");
    let nofile = format!("--nofile={NOFILE}:{NOFILE}");
    let control_plane = Process::start_under(
        &["prlimit", &nofile, "--"],
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        "control plane listening on ",
        &log,
        "info",
    );
    let pid = control_plane.pid();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(&NOFILE.to_string())),
        "prlimit set the limit on droidfleet itself:\n{limits}"
    );
    let metrics = control_plane
        .earlier
        .iter()
        .find_map(|line| line.strip_prefix("metrics on http://"))
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .expect("serve prints its metrics address")
        .to_string();

    // Use up the descriptors: each connection is answered once, so the server holds it.
    let mut held = Vec::new();
    while open_descriptors(pid) < NOFILE {
        assert!(
            held.len() < NOFILE,
            "the server holds no descriptor per connection"
        );
        let mut connection = Connection::open(&metrics).await;
        assert_eq!(connection.scrape(&metrics).await, (200, true));
        held.push(connection);
    }
    assert!(
        held.len() > 10,
        "the server started with most of its descriptors free ({} connections held)",
        held.len()
    );

    // Starved: scrapes and a gRPC connection wait in the backlogs; the process stays idle. A
    // descriptor the process held for a moment when the count was read (a database file) may
    // free up and let one scrape in, so many wait.
    let mut waiting_scrapes = Vec::new();
    for _ in 0..WAITING_SCRAPES {
        let mut waiting = Connection::open(&metrics).await;
        let metrics = metrics.clone();
        waiting_scrapes.push(tokio::spawn(async move { waiting.scrape(&metrics).await }));
    }
    let grpc_waiting = tokio::net::TcpStream::connect(&control_plane.address)
        .await
        .unwrap();
    let ticks_before = cpu_ticks(pid);
    let window_started = Instant::now();
    tokio::time::sleep(STARVED_WINDOW).await;
    let cpu_s = (cpu_ticks(pid) - ticks_before) as f64 / clock_ticks_per_second();
    let utilisation = cpu_s / window_started.elapsed().as_secs_f64();
    println!(
        "starved control plane: {cpu_s:.2} CPU-s over {:.1} s ({utilisation:.3} of a core), {} \
         connections held",
        window_started.elapsed().as_secs_f64(),
        held.len()
    );
    assert!(
        waiting_scrapes.iter().any(|scrape| !scrape.is_finished()),
        "scrapes waited while no descriptor was free"
    );
    assert!(
        utilisation < STARVED_CPU_BOUND,
        "a starved control plane used {utilisation:.3} CPU-s per second (bound \
         {STARVED_CPU_BOUND})"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("accept error") && logged.contains("cannot accept a gRPC connection"),
        "both listeners met the shortage and said so:\n{logged}"
    );

    // Descriptors free up: the waiting scrape is answered, and a new one too.
    for connection in held {
        connection.close().await;
    }
    for scrape in waiting_scrapes {
        let answered = tokio::time::timeout(DEADLINE, scrape)
            .await
            .expect("a waiting scrape is answered once descriptors are free")
            .unwrap();
        assert_eq!(answered, (200, true));
    }
    let mut fresh = Connection::open(&metrics).await;
    assert_eq!(fresh.scrape(&metrics).await, (200, true));
    fresh.close().await;
    drop(grpc_waiting);
    let ca = CaFingerprint::of_ca_file(&data.join("tls").join("ca.pem")).unwrap();
    let channel = client_endpoint(&format!("https://{}", control_plane.address), Some(ca))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}
