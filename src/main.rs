//! `droidfleet`: the control plane server, the admin CLI, the device agent and a demo, in one
//! binary.
#![forbid(unsafe_code)]

use clap::Parser;
use droidfleet_agent::cli::{LogFormat, init_logging, shutdown_signal};
use droidfleet_control_plane::clock::SystemClock;
use droidfleet_control_plane::disk::DiskLimits;
use droidfleet_control_plane::limits::{Limits, Rate};
use droidfleet_control_plane::service::{
    AdminTokenPolicy, Config, DEFAULT_ADMIN_TOKEN_TTL, MAX_ADMIN_TOKEN_TTL, TlsSource,
};
use droidfleet_tools::{admin, agent_wall, conformance, dashboard, demo, flow, loadtest};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    version,
    about = "Reset Android passcodes remotely: an MDM control plane, its admin CLI and simulated devices",
    long_about = None,
    after_help = "Start here: `droidfleet demo` runs the whole flow on this machine.\n\
                  Three processes: `droidfleet serve`, then `droidfleet-agent run ...` \
                  (or `droidfleet agent run ...`), then `droidfleet admin ...`."
)]
struct Cli {
    /// How log lines are written to stderr: text for people, json (one object per line, with
    /// every span's fields) for log pipelines.
    #[arg(long, global = true, value_enum, default_value_t)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Run the control plane: the device gateway and the admin API on one address.
    Serve(ServeArgs),
    /// Talk to a running control plane as an admin.
    Admin(admin::AdminArgs),
    /// Manage the control plane's keys in its data folder.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Run the device agent (as the `droidfleet-agent` binary does, plus `run --console`).
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// Run the whole flow on this machine: a control plane, one device of each enrollment type,
    /// resets, the user entering the new passcodes, and the refusals.
    Demo(demo::DemoArgs),
    /// Load-test a control plane (embedded by default) with a fleet of simulated devices and
    /// seeded users; writes a report (table on stdout, report.json, report.html).
    Loadtest(loadtest::LoadtestArgs),
    /// Check user journeys written as flow files (a folder is a suite) against a control plane
    /// and a fleet started for each flow, or running ones; writes JUnit and HTML reports.
    Flow(flow::FlowArgs),
    /// Test any control plane or device that speaks droidfleet.v1 against PROTOCOL.md: the kit
    /// plays the other side; writes junit.xml, report.json and report.html.
    Conformance(conformance::ConformanceArgs),
    /// Draw a Grafana dashboard's panels from Prometheus into one SVG (`dashboard render`).
    Dashboard(dashboard::DashboardArgs),
}

#[derive(clap::Subcommand)]
enum AgentCommand {
    /// Host devices that enroll with a control plane, take its commands, and expose a harness;
    /// with --console, a live fleet wall of them. Boxed: far larger than the other command's
    /// arguments.
    Run(Box<agent_wall::AgentRunArgs>),
    /// Hand a device the token from `droidfleet admin re-enroll`; it enrolls again by itself.
    ReEnroll(droidfleet_agent::cli::ReEnrollArgs),
}

#[derive(clap::Subcommand)]
enum KeysCommand {
    /// Make a new command-signing and/or sealing key current (both when neither flag is given),
    /// keeping the old ones so that what they sealed still opens and devices that trust the old
    /// signing key are told the new one. Takes effect when `droidfleet serve` next starts.
    Rotate(RotateArgs),
}

#[derive(clap::Args)]
struct RotateArgs {
    /// The control plane's data folder, as given to `droidfleet serve`.
    #[arg(long, default_value = "droidfleet-data", env = "DROIDFLEET_DATA_DIR")]
    data_dir: PathBuf,
    /// Rotate the key that signs commands and policies.
    #[arg(long)]
    signing: bool,
    /// Rotate the key that seals escrow tokens and passcodes in the database.
    #[arg(long)]
    sealing: bool,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address for the device gateway and the admin API.
    #[arg(long, default_value = "127.0.0.1:7300")]
    listen: SocketAddr,
    /// Where to serve Prometheus metrics (plain HTTP, `GET /metrics`, loopback only); off when
    /// not given.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Serve the web console (sign in with an admin token) on this address; off when not given.
    #[arg(long)]
    console: Option<SocketAddr>,
    /// Serve the console over HTTPS with this certificate chain (PEM) rather than the control
    /// plane's own certificate; needs --console-tls-key.
    #[arg(long, requires = "console_tls_key", requires = "console")]
    console_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --console-tls-cert.
    #[arg(long, requires = "console_tls_cert")]
    console_tls_key: Option<PathBuf>,
    /// Holds the database, the keys, the TLS folder (`tls/ca.pem` is what admins and devices
    /// trust) and on first start the bootstrap admin token.
    #[arg(long, default_value = "droidfleet-data", env = "DROIDFLEET_DATA_DIR")]
    data_dir: PathBuf,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    disk: DiskArgs,
    /// How long an admin token works when its request names no time-to-live (the bootstrap
    /// token's too).
    #[arg(long, value_name = "DURATION", default_value_t = millis(DEFAULT_ADMIN_TOKEN_TTL))]
    admin_token_ttl: humantime::Duration,
    /// The longest time-to-live a CreatePrincipal or RotatePrincipalToken may ask for.
    #[arg(long, value_name = "DURATION", default_value_t = millis(MAX_ADMIN_TOKEN_TTL))]
    max_admin_token_ttl: humantime::Duration,
    /// Serve TLS with this certificate chain (PEM) instead of the control plane's own CA; the
    /// chain's last certificate is the CA devices pin. Needs --tls-key.
    #[arg(long, requires = "tls_key", conflicts_with = "insecure_plaintext")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A host name or IP address devices and admins reach this control plane by, added to the
    /// server certificate the control plane makes (loopback names are always in it). Repeatable;
    /// takes effect when the server certificate is made (delete `tls/server.*` to remake it).
    #[arg(long = "tls-name", conflicts_with_all = ["tls_cert", "insecure_plaintext"])]
    tls_names: Vec<String>,
    /// Serve without TLS (everything in clear text). For tests on one machine: refused unless
    /// --listen is a loopback address.
    #[arg(long)]
    insecure_plaintext: bool,
}

/// The gRPC listener's abuse limits (`droidfleet_control_plane::limits::Limits` says why each).
#[derive(clap::Args)]
#[command(next_help_heading = "Abuse limits")]
struct LimitArgs {
    /// HTTP/2 streams one connection may hold open at once.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_streams_per_connection)]
    max_streams_per_connection: u32,
    /// The largest message a device may send; larger is refused RESOURCE_EXHAUSTED.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_device_message_bytes)]
    max_device_message_bytes: usize,
    /// The largest admin API request; larger is refused RESOURCE_EXHAUSTED.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_admin_message_bytes)]
    max_admin_message_bytes: usize,
    /// The largest HTTP/2 header block a request may carry.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_header_list_bytes)]
    max_header_list_bytes: u32,
    /// How long a call may take to answer (a stream, to start); DEADLINE_EXCEEDED after.
    #[arg(long, value_name = "DURATION", default_value_t = Limits::default().request_timeout.into())]
    request_timeout: humantime::Duration,
    /// How long a new connection may take to complete TLS and send the HTTP/2 preface.
    #[arg(long, value_name = "DURATION", default_value_t = Limits::default().handshake_timeout.into())]
    handshake_timeout: humantime::Duration,
    /// How long a device may take to send its Hello once its session opened.
    #[arg(long, value_name = "DURATION", default_value_t = Limits::default().hello_timeout.into())]
    hello_timeout: humantime::Duration,
    /// How often an idle connection is pinged.
    #[arg(long, value_name = "DURATION", default_value_t = Limits::default().keepalive_interval.into())]
    keepalive_interval: humantime::Duration,
    /// A connection that does not answer a ping within this is closed.
    #[arg(long, value_name = "DURATION", default_value_t = Limits::default().keepalive_timeout.into())]
    keepalive_timeout: humantime::Duration,
    /// Streams a client may open and reset before they were accepted (HTTP/2 rapid reset).
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_pending_reset_streams)]
    max_pending_reset_streams: usize,
    /// Watch streams one admin principal may hold open at once; more is RESOURCE_EXHAUSTED.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_watches_per_principal)]
    max_watches_per_principal: usize,
    /// How long one watch stream may stay open; it ends DEADLINE_EXCEEDED after.
    #[arg(long, value_name = "DURATION", default_value_t = Limits::default().max_watch_lifetime.into())]
    max_watch_lifetime: humantime::Duration,
    /// Enroll calls one peer address may make a second, once its burst is spent.
    #[arg(long, value_name = "N", default_value_t = Limits::default().enroll_rate.per_second,
          value_parser = clap::value_parser!(u32).range(1..))]
    enroll_rate: u32,
    /// Enroll calls one peer address may make at once (a fleet behind one address enrolls in it).
    #[arg(long, value_name = "N", default_value_t = Limits::default().enroll_rate.burst,
          value_parser = clap::value_parser!(u32).range(1..))]
    enroll_burst: u32,
    /// Failed authentications one peer address may make a second, once its burst is spent; then
    /// every call from it is refused RESOURCE_EXHAUSTED until it has one again.
    #[arg(long, value_name = "N", default_value_t = Limits::default().failed_auth_rate.per_second,
          value_parser = clap::value_parser!(u32).range(1..))]
    failed_auth_rate: u32,
    /// Failed authentications one peer address may make at once.
    #[arg(long, value_name = "N", default_value_t = Limits::default().failed_auth_rate.burst,
          value_parser = clap::value_parser!(u32).range(1..))]
    failed_auth_burst: u32,
}

/// What the control plane keeps on disk (`droidfleet_control_plane::disk::DiskLimits` says why).
#[derive(clap::Args)]
#[command(next_help_heading = "Disk limits")]
struct DiskArgs {
    /// Audit rows older than this are deleted (checked every minute).
    #[arg(long, value_name = "DURATION", default_value_t = DiskLimits::default().audit_retention.into())]
    audit_retention: humantime::Duration,
    /// Past this many audit rows the oldest are deleted, whatever their age.
    #[arg(long, value_name = "N", default_value_t = DiskLimits::default().audit_max_rows)]
    audit_max_rows: u64,
    /// Calls that add data (resets, locks, enrollments, tokens, principals, roles) are refused
    /// RESOURCE_EXHAUSTED while the data folder's disk has less free space than this; 0 turns
    /// the check off.
    #[arg(long, value_name = "MIB", default_value_t = DiskLimits::default().disk_reserve_bytes / (1024 * 1024))]
    disk_reserve_mib: u64,
}

impl DiskArgs {
    fn limits(&self) -> DiskLimits {
        DiskLimits {
            audit_retention: self.audit_retention.into(),
            audit_max_rows: self.audit_max_rows,
            disk_reserve_bytes: self.disk_reserve_mib.saturating_mul(1024 * 1024),
        }
    }
}

fn millis(ms: u64) -> humantime::Duration {
    std::time::Duration::from_millis(ms).into()
}

impl ServeArgs {
    fn admin_tokens(&self) -> anyhow::Result<AdminTokenPolicy> {
        let as_millis = |d: humantime::Duration| {
            u64::try_from(std::time::Duration::from(d).as_millis()).unwrap_or(u64::MAX)
        };
        let policy = AdminTokenPolicy {
            default_ttl: as_millis(self.admin_token_ttl),
            max_ttl: as_millis(self.max_admin_token_ttl),
        };
        anyhow::ensure!(
            policy.default_ttl >= 1_000 && policy.default_ttl <= policy.max_ttl,
            "--admin-token-ttl must be at least 1s and at most --max-admin-token-ttl"
        );
        Ok(policy)
    }
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_streams_per_connection: self.max_streams_per_connection,
            max_device_message_bytes: self.max_device_message_bytes,
            max_admin_message_bytes: self.max_admin_message_bytes,
            max_header_list_bytes: self.max_header_list_bytes,
            request_timeout: self.request_timeout.into(),
            handshake_timeout: self.handshake_timeout.into(),
            hello_timeout: self.hello_timeout.into(),
            keepalive_interval: self.keepalive_interval.into(),
            keepalive_timeout: self.keepalive_timeout.into(),
            max_pending_reset_streams: self.max_pending_reset_streams,
            max_watches_per_principal: self.max_watches_per_principal,
            max_watch_lifetime: self.max_watch_lifetime.into(),
            enroll_rate: Rate {
                per_second: self.enroll_rate,
                burst: self.enroll_burst,
            },
            failed_auth_rate: Rate {
                per_second: self.failed_auth_rate,
                burst: self.failed_auth_burst,
            },
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let quiet = matches!(
        cli.command,
        Command::Admin(_)
            | Command::Keys { .. }
            | Command::Demo(_)
            | Command::Loadtest(_)
            | Command::Flow(_)
            | Command::Conformance(_)
            | Command::Dashboard(_)
    );
    init_logging(cli.log_format, if quiet { "warn" } else { "info" });
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Admin(args) => Ok(admin::run(args).await?),
            Command::Keys {
                command: KeysCommand::Rotate(args),
            } => rotate_keys(&args),
            Command::Agent {
                command: AgentCommand::Run(args),
            } => Ok(agent_wall::run(*args, shutdown_signal()).await?),
            Command::Agent {
                command: AgentCommand::ReEnroll(args),
            } => Ok(droidfleet_agent::cli::re_enroll(args).await?),
            Command::Demo(args) => Ok(demo::run(args).await?),
            Command::Loadtest(args) => Ok(loadtest::run(args).await?),
            Command::Flow(args) => Ok(flow::run(args).await?),
            Command::Conformance(args) => Ok(conformance::run(args).await?),
            Command::Dashboard(args) => Ok(dashboard::run(args).await?),
        }
    })
}

fn rotate_keys(args: &RotateArgs) -> anyhow::Result<()> {
    let both = !args.signing && !args.sealing;
    let rotation = droidfleet_control_plane::crypto::Rotation {
        signing: args.signing || both,
        sealing: args.sealing || both,
    };
    let rotated = droidfleet_control_plane::server::rotate_keys(&args.data_dir, rotation)?;
    for (what, ids) in [("signing", rotated.signing), ("sealing", rotated.sealing)] {
        if let Some((old, new)) = ids {
            println!("{what} key rotated: {old} -> {new} (the old key is kept)");
        }
    }
    println!("The new keys take effect when `droidfleet serve` next starts.");
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Read before anything starts, so a bad certificate stops the command at once.
    let console_tls = match (&args.console_tls_cert, &args.console_tls_key) {
        (Some(cert), Some(key)) => Some(droidfleet_console::TlsConfig::from_pem_files(cert, key)?),
        _ => None,
    };
    let mut config = Config::new(&args.data_dir);
    config.limits = args.limits.limits();
    config.disk = args.disk.limits();
    config.admin_tokens = args.admin_tokens()?;
    config.tls = match (args.insecure_plaintext, args.tls_cert, args.tls_key) {
        (true, _, _) => {
            droidfleet_proto::tls::check_plaintext_address(args.listen)?;
            TlsSource::Plaintext
        }
        (false, Some(cert), Some(key)) => TlsSource::Files { cert, key },
        (false, _, _) => TlsSource::Generated {
            extra_names: args.tls_names,
        },
    };
    let opened = droidfleet_control_plane::server::open(config, Arc::new(SystemClock)).await?;
    match &opened.tls {
        Some(tls) => println!("TLS: devices and admins pin CA {}", tls.ca_fingerprint()),
        None => println!("TLS: off (--insecure-plaintext)"),
    }
    if let Some(path) = &opened.bootstrap_token_path {
        println!(
            "no valid admin token could manage roles (first start, or all expired or revoked): \
             a new bootstrap admin token is in {}",
            path.display()
        );
        println!(
            "  use it with: droidfleet admin --token-file {} devices",
            path.display()
        );
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let metrics = match args.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for metrics: {e}"))?;
            println!("metrics on http://{}/metrics", listener.local_addr()?);
            Some(droidfleet_control_plane::server::MetricsEndpoint {
                listener,
                metrics: Default::default(),
            })
        }
        None => None,
    };
    // One Ctrl-C (or SIGTERM) stops the control plane and the console.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stop = Arc::new(stop);
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown_signal().await;
            stop.send_replace(true);
        }
    });
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    // The console serves HTTPS with the user's certificate, else with the control plane's own;
    // plain HTTP only with --insecure-plaintext, on loopback.
    let console_tls = match (console_tls, &opened.tls, args.console) {
        (Some(tls), _, _) => Some(tls),
        (None, Some(tls), _) => {
            let (chain, key) = tls.chain_and_key_pem();
            Some(droidfleet_console::TlsConfig::from_pem(
                chain.as_bytes(),
                key.as_bytes(),
            )?)
        }
        (None, None, Some(addr)) => {
            droidfleet_proto::tls::check_plaintext_address(addr)?;
            None
        }
        (None, None, None) => None,
    };
    let console = match args.console {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for the console: {e}"))?;
            let scheme = if console_tls.is_some() {
                "https"
            } else {
                "http"
            };
            println!("console on {scheme}://{}/", listener.local_addr()?);
            let options = droidfleet_console::ConsoleOptions {
                clock: Arc::new(SystemClock),
                tls: console_tls,
            };
            Some(tokio::spawn(droidfleet_console::serve(
                opened.control_plane.clone(),
                listener,
                options,
                until_stopped(),
            )))
        }
        None => None,
    };
    println!("control plane listening on {}", listener.local_addr()?);
    let served = droidfleet_control_plane::server::serve_with_metrics(
        opened.control_plane,
        opened.tls,
        listener,
        metrics,
        until_stopped(),
    )
    .await;
    // The control plane stopped (or failed): the console stops with it.
    stop.send_replace(true);
    if let Some(console) = console {
        console.await?;
    }
    Ok(served?)
}
