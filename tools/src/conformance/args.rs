//! `droidfleet conformance control-plane|device`: the command line, and [`run`], which lists the
//! catalogue or runs a suite, prints the console summary as cases end and writes the reports.

use super::ConformanceError;
use super::capabilities::{Capabilities, HarnessCapability};
use super::catalogue::{self, Suite};
use super::control_plane::{ControlPlaneSuiteOptions, run_control_plane_suite};
use super::device::{DeviceSuiteOptions, run_device_suite};
use super::report::{CaseReport, Report, Verdict, seconds};
use super::select::Selection;
use crate::admin::Token;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct ConformanceArgs {
    #[command(subcommand)]
    pub suite: SuiteArgs,
}

#[derive(clap::Subcommand)]
pub enum SuiteArgs {
    /// Test a control plane: the kit plays devices (ours, and raw ones that misbehave on
    /// purpose) and drives the admin side through the admin API.
    ControlPlane(ControlPlaneArgs),
    /// Test a device: the kit plays the control plane; point the device at --listen and enroll
    /// it with the token the kit prints.
    Device(DeviceArgs),
}

/// What both suites take.
#[derive(clap::Args)]
pub struct CommonArgs {
    /// Print the catalogue of cases (with --requirements: each requirement and its cases) and
    /// exit.
    #[arg(long)]
    pub list: bool,
    /// With --list: list PROTOCOL.md's requirements and the cases that check each.
    #[arg(long, requires = "list")]
    pub requirements: bool,
    /// Run only these cases: ids or patterns with `*` (repeatable).
    #[arg(long = "case", value_name = "ID|PATTERN")]
    pub cases: Vec<String>,
    /// Run only cases with one of these tags (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Leave out cases by id, tag or pattern (repeatable).
    #[arg(long = "skip", value_name = "ID|TAG|PATTERN")]
    pub skip: Vec<String>,
    /// Quick mode: a few cases, seconds.
    #[arg(long)]
    pub quick: bool,
    /// The capability statement (JSON) of the implementation under test.
    #[arg(long, value_name = "FILE")]
    pub capabilities: Option<PathBuf>,
    /// Declare a feature without a file (repeatable): remote_lock, cancel.
    #[arg(long = "feature", value_name = "FEATURE")]
    pub features: Vec<String>,
    /// Where to write junit.xml, report.json and report.html.
    #[arg(long, default_value = "droidfleet-conformance")]
    pub report_dir: PathBuf,
}

#[derive(clap::Args)]
pub struct ControlPlaneArgs {
    /// The control plane's device gateway, e.g. https://127.0.0.1:7300.
    #[arg(long, value_name = "URL")]
    pub target: String,
    /// Its admin API, if not at --target.
    #[arg(long, value_name = "URL")]
    pub admin: Option<String>,
    /// An admin's bearer token (prefer --token-file: a command line is visible to others).
    #[arg(long, env = "DROIDFLEET_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding an admin's bearer token, such as the bootstrap admin's.
    #[arg(long, env = "DROIDFLEET_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// With an https:// --target: the control plane's CA certificate (default: tls/ca.pem
    /// beside --token-file, else in $DROIDFLEET_DATA_DIR).
    #[arg(long, env = "DROIDFLEET_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(clap::Args)]
pub struct DeviceArgs {
    /// Where the kit's control plane listens for the device under test.
    #[arg(long, default_value = "127.0.0.1:7400")]
    pub listen: SocketAddr,
    /// The enrollment token the device must use; a random one is made (and printed) if absent.
    #[arg(long)]
    pub enrollment_token: Option<String>,
    /// The device's DeviceHarness, e.g. http://127.0.0.1:7301 (also in the capability file).
    #[arg(long, value_name = "URL")]
    pub harness: Option<String>,
    /// The device's name in its harness.
    #[arg(long, value_name = "NAME")]
    pub harness_device: Option<String>,
    /// How long to wait for the device to enroll and connect.
    #[arg(long, default_value_t = 120)]
    pub wait_seconds: u64,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl CommonArgs {
    fn selection(&self) -> Selection {
        Selection {
            cases: self.cases.clone(),
            tags: self.tags.clone(),
            skip: self.skip.clone(),
            quick: self.quick,
        }
    }

    fn capabilities(&self) -> Result<Capabilities, ConformanceError> {
        let mut capabilities = match &self.capabilities {
            Some(path) => Capabilities::from_file(path)?,
            None => Capabilities::default(),
        };
        for feature in &self.features {
            capabilities.declare(feature)?;
        }
        Ok(capabilities)
    }

    /// `--list`: prints the listing and says so.
    fn listed(&self, suite: Suite) -> bool {
        if self.list {
            if self.requirements {
                print!("{}", catalogue::list_requirements());
            } else {
                print!("{}", catalogue::list(suite));
            }
        }
        self.list
    }
}

/// Runs `droidfleet conformance …`; fails with [`ConformanceError::Failed`] when a case failed.
pub async fn run(args: ConformanceArgs) -> Result<(), ConformanceError> {
    let (report, common) = match args.suite {
        SuiteArgs::ControlPlane(args) => {
            if args.common.listed(Suite::ControlPlane) {
                return Ok(());
            }
            let token = Token::resolve(args.token.as_deref(), args.token_file.as_deref())?;
            let ca = crate::admin::trusted_ca(
                &args.target,
                args.ca_file.as_deref(),
                args.token_file.as_deref(),
            )?;
            let options = ControlPlaneSuiteOptions {
                ca,
                admin: args.admin.clone().unwrap_or_else(|| args.target.clone()),
                gateway: args.target.clone(),
                token,
                capabilities: args.common.capabilities()?,
                selection: args.common.selection(),
            };
            println!(
                "droidfleet conformance: control-plane suite against {}",
                args.target
            );
            (
                run_control_plane_suite(options, progress).await?,
                args.common,
            )
        }
        SuiteArgs::Device(args) => {
            if args.common.listed(Suite::Device) {
                return Ok(());
            }
            let mut capabilities = args.common.capabilities()?;
            match (&args.harness, &args.harness_device) {
                (Some(address), Some(device)) => {
                    capabilities.harness = Some(HarnessCapability {
                        address: address.clone(),
                        device: device.clone(),
                    });
                }
                (None, None) => {}
                _ => return Err(ConformanceError::HarnessHalf),
            }
            let enrollment_token = args
                .enrollment_token
                .clone()
                .unwrap_or_else(super::device::random_enrollment_token);
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .map_err(|source| ConformanceError::Listen { source })?;
            let address = listener
                .local_addr()
                .map_err(|source| ConformanceError::Listen { source })?;
            println!("droidfleet conformance: device suite; the kit plays the control plane");
            println!("  point the device under test at http://{address}");
            if args.enrollment_token.is_none() {
                println!("  and enroll it with the token {enrollment_token}");
            }
            println!(
                "  waiting up to {} s for it to enroll and connect",
                args.wait_seconds
            );
            let options = DeviceSuiteOptions {
                enrollment_token,
                capabilities,
                selection: args.common.selection(),
                wait_for_device: Duration::from_secs(args.wait_seconds),
            };
            (
                run_device_suite(options, listener, progress).await?,
                args.common,
            )
        }
    };
    finish(&report, &common)
}

fn progress(case: &CaseReport) {
    let word = match case.verdict {
        Verdict::Passed => "PASS",
        Verdict::Failed { .. } => "FAIL",
        Verdict::NotApplicable { .. } => "N/A ",
    };
    println!(
        "  {word}  {:<34} {:>7}",
        case.info.id,
        seconds(case.duration_ms)
    );
}

fn finish(report: &Report, common: &CommonArgs) -> Result<(), ConformanceError> {
    println!();
    print!("{}", report.console());
    for path in report.write(&common.report_dir)? {
        println!("wrote {}", path.display());
    }
    match report.counts().failed {
        0 => Ok(()),
        failed => Err(ConformanceError::Failed { failed }),
    }
}
