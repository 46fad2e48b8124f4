//! `droidfleet flow`: user journeys written as flow files (YAML), run against a control plane and
//! a fleet the runner starts itself (or running ones), with a report a person can read.
//!
//! A flow names its devices, then steps for both actors: the admin (policies, resets, remote
//! locks, reveals, cancels, each as a role), the device's user (passcodes, reboots, airplane
//! mode, user data), time (`advance` on the embedded clocks), and assertions that retry until
//! they hold (notifications, lock state, tokens, throttling, action outcomes, user data, audit).
//! A folder is a suite. Every file is read and checked before anything runs.
//!
//! Layout, in the order a run uses it:
//! - `model.rs`: what a checked flow is (`Flow`, its steps, a [`Pos`] for every one).
//! - `parse/`: YAML with line and column into a `Flow`, and every check before a run
//!   ([`FlowFileError`]).
//! - `stage.rs`: the control plane and devices a flow runs against (`Target`), the principal
//!   per role, the wait until the devices are ready.
//! - `run.rs`: running the steps; `check.rs`: the assertions and their retries.
//! - `report/`: the console lines, JUnit XML, and the HTML page with an SVG phone per step.
//! - `record.rs`: `droidfleet flow record`, a session played by hand kept as a flow;
//!   `write.rs`: a flow written back as a flow file.

mod check;
mod model;
mod parse;
mod record;
mod report;
mod run;
mod stage;
mod write;

pub use model::Pos;
pub use parse::FlowFileError;

use model::Flow;
use parse::{Context, parse_flow};
use record::RecordArgs;
use stage::Target;

use crate::admin::{AdminError, Token};
use crate::embedded::EmbeddedError;
use droidfleet_agent::cli::Argon2Preset;
use droidfleet_agent::fleet::FleetError;
use droidfleet_control_plane::clock::{Clock, SystemClock};
use report::FlowReport;
use report::console::Console;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why `droidfleet flow` stopped. No variant carries a token or a passcode.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// Problems in flow files, each with its file, line and column; nothing ran.
    #[error("{} in the flow files, nothing ran:\n{}", count(.0.len(), "problem"), lines(.0))]
    Invalid(Vec<FlowFileError>),
    #[error("no flow file (*.yaml or *.yml) in {}", paths(.0))]
    NoFlows(Vec<PathBuf>),
    #[error("no flow has the tags asked for (--tag {tags:?}, --exclude-tag {excluded:?})")]
    NoneSelected {
        tags: Vec<String>,
        excluded: Vec<String>,
    },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An option out of place, or at odds with another; the message names it.
    #[error("{0}")]
    InvalidOption(String),
    #[error("cannot create a temporary directory")]
    TempDir(#[source] std::io::Error),
    #[error("cannot listen on a loopback port for the harness")]
    Listen(#[source] std::io::Error),
    #[error("cannot reach the device harness at {address}")]
    Harness {
        address: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("DeviceHarness.{rpc}: {}: {}", parse::grpc_code_name(.status.code()), .status.message())]
    HarnessCall {
        rpc: &'static str,
        status: tonic::Status,
    },
    #[error("{}:{line}:{col}: {problem}", flow.display())]
    DeviceMismatch {
        flow: PathBuf,
        line: usize,
        col: usize,
        problem: String,
    },
    #[error(
        "{}: the devices were not enrolled, connected and escrowed within {}",
        flow.display(),
        humantime::format_duration(*waited)
    )]
    NotReady { flow: PathBuf, waited: Duration },
    #[error(
        "{}:{line}:{col}: cannot create a principal with role {role:?} (the runner's token needs \
         Roles.Manage, and the role must exist)",
        flow.display()
    )]
    Role {
        flow: PathBuf,
        line: usize,
        col: usize,
        role: String,
        // Boxed: an admin error is large, and this variant would make every flow result carry it.
        #[source]
        source: Box<AdminError>,
    },
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error("cannot write {}", path.display())]
    Report {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Some flows failed; the report says where and why.
    #[error("{failed} of {} failed", count(*total, "flow"))]
    Failed { failed: usize, total: usize },
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

fn lines(errors: &[FlowFileError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(clap::Args)]
pub struct FlowArgs {
    #[command(subcommand)]
    command: FlowCommand,
}

#[derive(clap::Subcommand)]
enum FlowCommand {
    /// Run flow files (a folder is a suite) and write the JUnit and HTML reports.
    Run(RunArgs),
    /// Read and check flow files without running them.
    Check(CheckArgs),
    /// Play a session by hand (admin and device commands, one a line on stdin) and write it as
    /// a flow file.
    Record(RecordArgs),
}

#[derive(clap::Args)]
struct CheckArgs {
    /// Flow files, or folders of them.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Check the flows for a running control plane (then `advance` is refused).
    #[arg(long)]
    external: bool,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Flow files, or folders of them (each *.yaml and *.yml inside, in name order).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Run only flows with this tag; repeat for any of several.
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Leave out flows with this tag; repeat for several.
    #[arg(long = "exclude-tag")]
    exclude_tags: Vec<String>,
    /// Set or replace an `env` value of every flow: NAME=VALUE; repeat for more.
    #[arg(long = "env", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// How long an assertion retries when neither the step nor its flow says.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Where the reports go: junit.xml and report.html.
    #[arg(long, default_value = "droidfleet-flow-report")]
    report_dir: PathBuf,
    /// A running control plane (admin API and gateway), instead of one per flow in this process.
    #[arg(long, requires_all = ["token_file", "harness"])]
    control_plane: Option<String>,
    /// With --control-plane: an admin's token; it needs Roles.Manage when flows act as roles.
    #[arg(long, env = "DROIDFLEET_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// With an https:// --control-plane: its CA certificate (default: tls/ca.pem beside
    /// --token-file, else in $DROIDFLEET_DATA_DIR).
    #[arg(long, env = "DROIDFLEET_CA_FILE", requires = "control_plane")]
    ca_file: Option<PathBuf>,
    /// With --control-plane: the running agent's device harness, e.g. http://127.0.0.1:7301.
    #[arg(long, requires = "control_plane")]
    harness: Option<String>,
    /// Cost of the embedded devices' passcode hashing.
    #[arg(long, value_enum, default_value_t = Argon2Preset::Light)]
    argon2: Argon2Preset,
    /// Print only failed steps and the summaries.
    #[arg(long)]
    quiet: bool,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected NAME=VALUE"))?;
    Ok((name.trim().to_string(), value.to_string()))
}

/// Runs `droidfleet flow …`.
pub async fn run(args: FlowArgs) -> Result<(), FlowError> {
    match args.command {
        FlowCommand::Run(args) => run_flows(args).await,
        FlowCommand::Record(args) => record::record(args).await,
        FlowCommand::Check(args) => {
            let context = Context {
                embedded: !args.external,
                env: BTreeMap::new(),
            };
            let flows = load(&args.paths, &context)?;
            println!(
                "{} checked: no problem found",
                count(flows.len(), "flow file")
            );
            Ok(())
        }
    }
}

async fn run_flows(args: RunArgs) -> Result<(), FlowError> {
    let target = match (&args.control_plane, &args.token_file, &args.harness) {
        (Some(control_plane), Some(token_file), Some(harness)) => Target::External {
            control_plane: control_plane.clone(),
            ca: crate::admin::trusted_ca(control_plane, args.ca_file.as_deref(), Some(token_file))?,
            token: Token::from_file(token_file)?,
            harness: harness.clone(),
        },
        (None, _, None) => Target::Embedded {
            kdf: args.argon2.params(),
        },
        _ => {
            return Err(FlowError::InvalidOption(
                "a running control plane needs all three of --control-plane URL, --token-file \
                 FILE and --harness URL"
                    .into(),
            ));
        }
    };
    let context = Context {
        embedded: matches!(target, Target::Embedded { .. }),
        env: args.env.iter().cloned().collect(),
    };
    let flows = load(&args.paths, &context)?;
    let selected: Vec<&Flow> = flows
        .iter()
        .filter(|f| args.tags.is_empty() || f.tags.iter().any(|t| args.tags.contains(t)))
        .filter(|f| !f.tags.iter().any(|t| args.exclude_tags.contains(t)))
        .collect();
    if selected.is_empty() {
        return Err(FlowError::NoneSelected {
            tags: args.tags,
            excluded: args.exclude_tags,
        });
    }
    let console = Console { quiet: args.quiet };
    let mut reports: Vec<FlowReport> = Vec::new();
    for flow in selected {
        reports.push(run::run_flow(flow, &target, args.timeout, &console).await);
    }
    write_reports(&args.report_dir, &reports)?;
    println!("{}", report::console::summary(&reports));
    println!(
        "reports: {} and {}",
        args.report_dir.join("junit.xml").display(),
        args.report_dir.join("report.html").display()
    );
    let failed = reports.iter().filter(|r| !r.passed()).count();
    if failed > 0 {
        return Err(FlowError::Failed {
            failed,
            total: reports.len(),
        });
    }
    Ok(())
}

fn write_reports(dir: &Path, reports: &[FlowReport]) -> Result<(), FlowError> {
    let write = |path: PathBuf, text: String| {
        std::fs::write(&path, text).map_err(|source| FlowError::Report { path, source })
    };
    std::fs::create_dir_all(dir).map_err(|source| FlowError::Report {
        path: dir.to_path_buf(),
        source,
    })?;
    write(dir.join("junit.xml"), report::junit::render(reports))?;
    write(
        dir.join("report.html"),
        report::html::render(reports, SystemClock.now()),
    )
}

/// Reads and checks every flow file under `paths`; any problem in any file stops everything.
fn load(paths: &[PathBuf], context: &Context) -> Result<Vec<Flow>, FlowError> {
    let mut files = Vec::new();
    for path in paths {
        collect(path, &mut files)?;
    }
    if files.is_empty() {
        return Err(FlowError::NoFlows(paths.to_vec()));
    }
    let mut flows = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| FlowError::Read {
            path: file.clone(),
            source,
        })?;
        match parse_flow(&file, &text, context) {
            Ok(flow) => flows.push(flow),
            Err(found) => problems.extend(found),
        }
    }
    if problems.is_empty() {
        Ok(flows)
    } else {
        Err(FlowError::Invalid(problems))
    }
}

/// The flow files at `path`: itself, or the *.yaml and *.yml files under it in name order.
fn collect(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), FlowError> {
    let metadata = std::fs::metadata(path).map_err(|source| FlowError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !metadata.is_dir() {
        files.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|source| FlowError::Read {
            path: path.to_path_buf(),
            source,
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect(&entry, files)?;
        } else if entry.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(entry);
        }
    }
    Ok(())
}
