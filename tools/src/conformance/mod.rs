//! `droidfleet conformance`: a kit that plays either side of `droidfleet.v1` against an
//! implementation under test and checks it, case by named case, against the requirements of
//! `PROTOCOL.md`.
//!
//! Layout:
//! - [`catalogue`]: every case as data (id, title, requirements, tags, needs, quick), and the
//!   `--list` and `--list --requirements` listings; `requirements.rs` reads `PROTOCOL.md`.
//! - [`capabilities`]: the capability statement of the implementation under test.
//! - [`select`]: `--case`, `--tag`, `--skip`, `--quick`.
//! - `runner.rs`: runs the selected cases with a time bound and their transcripts.
//! - [`control_plane`]: the suite for a control plane under test (the kit plays devices).
//! - [`device`]: the suite for a device under test (the kit plays the control plane).
//! - `transcript.rs`: the redacted messages of a case, shown when it fails.
//! - [`report`]: console summary, JUnit XML, JSON and a self-contained HTML page.
//! - [`args`]: the command line (`ConformanceArgs`) and [`run`].

pub mod args;
pub mod capabilities;
pub mod catalogue;
pub mod control_plane;
pub mod device;
pub mod report;
mod requirements;
mod runner;
pub mod select;
pub mod transcript;

pub use args::{ConformanceArgs, run};
pub use capabilities::Capabilities;
pub use control_plane::{ControlPlaneSuiteOptions, run_control_plane_suite};
pub use device::{DeviceSuiteOptions, run_device_suite};
pub use report::{Report, Verdict};
pub use requirements::{Requirement, requirements};
pub use select::Selection;

use std::path::PathBuf;

/// Why a conformance run could not run or did not pass. No variant carries a token, a
/// credential or a passcode.
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    #[error("no case matches --case {0:?} (see --list)")]
    NoSuchCase(String),
    /// The kit's own gateway speaks plaintext (a device under test has no CA to pin yet).
    #[error("the kit's gateway: {0}")]
    Plaintext(#[from] droidfleet_proto::tls::TlsError),
    #[error("no case has the tag {0:?} (see --list)")]
    NoSuchTag(String),
    #[error("the selection (--case, --tag, --skip, --quick) leaves no case to run")]
    NothingSelected,
    #[error("capability statement {}: {problem}", path.display())]
    Capabilities { path: PathBuf, problem: String },
    #[error("unknown feature {0:?}: use remote_lock or cancel")]
    UnknownFeature(String),
    #[error("--harness-device needs --harness (and --harness needs --harness-device)")]
    HarnessHalf,
    #[error("cannot write the report {}", path.display())]
    Report {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen for the device under test")]
    Listen {
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no device {} within {waited_s} s",
        if *enrolled { "opened a session after enrolling" } else { "enrolled with the kit" }
    )]
    NoDevice { waited_s: u64, enrolled: bool },
    #[error("cannot reach the device's harness at {address}")]
    Harness {
        address: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    #[error("the kit's gateway failed")]
    Serve(#[source] tonic::transport::Error),
    /// The run finished and at least one case failed; the report says which.
    #[error("{failed} conformance case(s) failed")]
    Failed { failed: usize },
}
