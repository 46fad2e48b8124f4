//! What a run records, and the three ways it is shown: a console line per step as it runs
//! (`console.rs`), JUnit XML for CI (`junit.rs`), and a self-contained HTML page (`html.rs`)
//! showing each step's phone screens as SVG (`phone.rs`) next to the admin's view of the action.

pub(crate) mod console;
pub(crate) mod html;
pub(crate) mod junit;
mod phone;

use super::model::Pos;
use droidfleet_proto::v1 as pb;
use std::path::PathBuf;
use std::time::Duration;

/// One flow's run.
#[derive(Clone, Debug)]
pub(crate) struct FlowReport {
    pub(crate) path: PathBuf,
    pub(crate) name: String,
    pub(crate) tags: Vec<String>,
    pub(crate) steps: Vec<StepReport>,
    /// Why the flow could not start (its devices, its control plane); its steps then all show
    /// as skipped.
    pub(crate) setup_error: Option<String>,
    pub(crate) duration: Duration,
}

impl FlowReport {
    pub(crate) fn passed(&self) -> bool {
        self.setup_error.is_none() && self.steps.iter().all(|s| s.status == StepStatus::Passed)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StepStatus {
    Passed,
    Failed,
    /// Not run: an earlier step failed.
    Skipped,
}

/// One step's run.
#[derive(Clone, Debug)]
pub(crate) struct StepReport {
    /// 1 for the flow's first step.
    pub(crate) number: usize,
    pub(crate) pos: Pos,
    /// The step as a short line, from the file's own text (a variable is shown by its name,
    /// never by the passcode it may hold).
    pub(crate) label: String,
    pub(crate) status: StepStatus,
    /// What happened, in words.
    pub(crate) detail: String,
    /// For a failed step: what the flow expected and what the runner saw.
    pub(crate) failure: Option<Failure>,
    pub(crate) duration: Duration,
    /// The screens of the devices the step is about, right after it.
    pub(crate) screens: Vec<pb::Screen>,
    /// The action the step is about (or the device's latest), as the admin saw it then.
    pub(crate) action: Option<pb::Action>,
    /// The devices' clock right after the step (moves with `advance` in embedded runs).
    pub(crate) now_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) expected: String,
    pub(crate) observed: String,
}
