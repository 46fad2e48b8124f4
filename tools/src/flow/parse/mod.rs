//! Reading a flow file: YAML (with the line and column of every node) into a checked [`Flow`].
//!
//! Everything a run could trip on is checked here, before anything runs: the YAML itself, every
//! step's name and fields and their types, the devices steps name, the actions they refer to, the
//! variables they read (each defined by an earlier step or by `env`), and steps the target cannot
//! carry out (`advance` against a control plane the runner did not start). Every problem found is
//! reported, each with its file, line and column.

mod steps;
mod values;

use super::model::{Flow, FlowDevice, Pos};
use droidfleet_agent::device::{ApiLevel, Build, Ownership, Profile, Scope};
use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// A problem in a flow file, at a place in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowFileError {
    pub path: PathBuf,
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for FlowFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.pos.line,
            self.pos.col,
            self.message
        )
    }
}

/// What the checks must know about the run the flow is meant for.
#[derive(Clone, Debug, Default)]
pub(crate) struct Context {
    /// The runner starts the control plane and the fleet itself, so it owns their clocks.
    pub embedded: bool,
    /// `--env NAME=VALUE`: replaces or adds to every flow's `env`.
    pub env: BTreeMap<String, String>,
}

/// Every step a flow file may use, in the order the reference lists them.
pub(crate) const STEP_NAMES: [&str; 27] = [
    "assign_policy",
    "remove_policy",
    "reset_passcode",
    "remote_lock",
    "reveal_passcode",
    "cancel",
    "wait_action",
    "set_passcode",
    "enter_passcode",
    "lock",
    "reboot",
    "go_offline",
    "go_online",
    "write_data",
    "read_data",
    "wait",
    "advance",
    "assert_notification",
    "assert_no_notification",
    "assert_locked",
    "assert_unlocked",
    "assert_token",
    "assert_throttled",
    "assert_not_throttled",
    "assert_action",
    "assert_user_data",
    "assert_audit",
];

const TOP_LEVEL: [&str; 6] = ["name", "tags", "env", "devices", "steps", "timeout"];

pub(crate) const ACTION_STATES: [&str; 7] = [
    "pending",
    "active",
    "done",
    "failed",
    "canceled",
    "not_supported",
    "expired",
];

/// Reads and checks one flow file's text. `path` is only named in errors.
pub(crate) fn parse_flow(
    path: &Path,
    text: &str,
    context: &Context,
) -> Result<Flow, Vec<FlowFileError>> {
    let mut reader = Reader {
        chars: text.chars().collect(),
        problems: Vec::new(),
        broken_devices: Vec::new(),
    };
    let flow = reader.flow(path, text, context);
    if reader.problems.is_empty()
        && let Some(flow) = flow
    {
        return Ok(flow);
    }
    let mut problems = reader.problems;
    problems.sort_by_key(|(pos, _)| *pos);
    Err(problems
        .into_iter()
        .map(|(pos, message)| FlowFileError {
            path: path.to_path_buf(),
            pos,
            message,
        })
        .collect())
}

struct Reader {
    /// The file's characters: saphyr's markers count characters, and a variable's column is
    /// found from its scalar's first one.
    chars: Vec<char>,
    problems: Vec<(Pos, String)>,
    /// Devices listed with a problem already reported: steps naming them add no second one.
    broken_devices: Vec<String>,
}

fn pos_of(node: &MarkedYaml<'_>) -> Pos {
    Pos {
        line: node.span.start.line(),
        col: node.span.start.col() + 1,
    }
}

/// What a node is, for "expected X, found Y".
fn describe(node: &MarkedYaml<'_>) -> String {
    match &node.data {
        YamlData::Value(Scalar::String(s)) => format!("the text {s:?}"),
        YamlData::Value(Scalar::Integer(i)) => format!("the number {i}"),
        YamlData::Value(Scalar::FloatingPoint(f)) => format!("the number {f}"),
        YamlData::Value(Scalar::Boolean(b)) => format!("the boolean {b}"),
        YamlData::Value(Scalar::Null) => "nothing".into(),
        YamlData::Sequence(_) => "a list".into(),
        YamlData::Mapping(_) => "a mapping".into(),
        YamlData::Tagged(tag, _) => format!("a node tagged {tag}"),
        YamlData::Alias(_) => "an alias".into(),
        YamlData::Representation(text, ..) => format!("{text:?}"),
        YamlData::BadValue => "a value that is not valid YAML".into(),
    }
}

/// The names a step's value mapping holds, checked against the step's fields.
struct Fields<'a, 'input> {
    /// The step's name, for the messages about a field it lacks.
    step: &'static str,
    /// Each field given: its name, where the name is written, and its value.
    entries: Vec<(String, Pos, &'a MarkedYaml<'input>)>,
    /// Every field the step takes, listed in the messages.
    allowed: &'static [&'static str],
}

impl<'a, 'input> Fields<'a, 'input> {
    fn get(&self, name: &str) -> Option<&'a MarkedYaml<'input>> {
        self.entries
            .iter()
            .find(|(key, ..)| key == name)
            .map(|(_, _, node)| *node)
    }
}

/// What the checks know while they walk the steps in order.
#[derive(Default)]
struct Scopes {
    /// Variables defined so far: `env` values, then what earlier steps defined.
    variables: BTreeSet<String>,
    /// Actions saved so far, with their device and the store they target.
    actions: BTreeMap<String, (String, Option<Scope>)>,
}

impl Reader {
    fn problem(&mut self, pos: Pos, message: impl Into<String>) {
        self.problems.push((pos, message.into()));
    }

    fn flow(&mut self, path: &Path, text: &str, context: &Context) -> Option<Flow> {
        let documents = match MarkedYaml::load_from_str(text) {
            Ok(documents) => documents,
            Err(error) => {
                let marker = error.marker();
                self.problem(
                    Pos {
                        line: marker.line(),
                        col: marker.col() + 1,
                    },
                    format!("not valid YAML: {}", error.info()),
                );
                return None;
            }
        };
        let Some(root) = documents.first() else {
            self.problem(
                Pos { line: 1, col: 1 },
                "the file is empty: a flow needs `devices` and `steps`",
            );
            return None;
        };
        if let Some(extra) = documents.get(1) {
            self.problem(
                pos_of(extra),
                "a flow file holds one YAML document; put each flow in its own file",
            );
        }
        let YamlData::Mapping(top) = &root.data else {
            self.problem(
                pos_of(root),
                format!(
                    "a flow is a mapping with `devices` and `steps`, found {}",
                    describe(root)
                ),
            );
            return None;
        };
        let mut entries = Vec::new();
        for (key, value) in top {
            let Some(name) = self.key(key) else { continue };
            if !TOP_LEVEL.contains(&name.as_str()) {
                self.problem(
                    pos_of(key),
                    format!(
                        "unknown key `{name}` at the top of a flow{}; a flow has {}",
                        suggestion(&name, &TOP_LEVEL),
                        list(&TOP_LEVEL)
                    ),
                );
                continue;
            }
            entries.push((name, value));
        }
        let get = |name: &str| entries.iter().find(|(k, _)| k == name).map(|(_, v)| *v);

        let name = match get("name") {
            Some(node) => self.string(node, "name").unwrap_or_default(),
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let tags = match get("tags") {
            Some(node) => self.string_list(node, "tags"),
            None => Vec::new(),
        };
        let mut env = match get("env") {
            Some(node) => self.env(node),
            None => BTreeMap::new(),
        };
        env.extend(context.env.clone());
        let default_timeout = get("timeout").and_then(|node| self.duration(node, "timeout"));
        let devices = match get("devices") {
            Some(node) => self.devices(node),
            None => {
                self.problem(
                    pos_of(root),
                    "a flow needs `devices`: a list of `{name: NAME, type: cosu|cobo|cope|byod|aosp}`",
                );
                Vec::new()
            }
        };
        let mut scopes = Scopes {
            variables: env.keys().cloned().collect(),
            ..Default::default()
        };
        let steps = match get("steps") {
            Some(node) => self.steps(node, &devices, &mut scopes, context),
            None => {
                self.problem(pos_of(root), "a flow needs `steps`: a list of steps");
                Vec::new()
            }
        };
        let steps = steps
            .into_iter()
            .map(|mut step| {
                if step.timeout.is_none() && step.kind.waits() {
                    step.timeout = default_timeout;
                }
                step
            })
            .collect();
        Some(Flow {
            path: path.to_path_buf(),
            name,
            tags,
            env,
            devices,
            steps,
        })
    }

    fn env(&mut self, node: &MarkedYaml<'_>) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let YamlData::Mapping(map) = &node.data else {
            self.problem(
                pos_of(node),
                format!(
                    "`env` must be a mapping of NAME: text, found {}",
                    describe(node)
                ),
            );
            return env;
        };
        for (key, value) in map {
            let Some(name) = self.key(key) else { continue };
            if !is_variable_name(&name) || name.contains('.') {
                self.problem(
                    pos_of(key),
                    format!(
                        "env name {name:?}: use letters, digits and '_' (dotted names are \
                         the ones steps define)"
                    ),
                );
                continue;
            }
            if let Some(value) = self.string(value, &format!("env.{name}")) {
                env.insert(name, value);
            }
        }
        env
    }

    fn devices(&mut self, node: &MarkedYaml<'_>) -> Vec<FlowDevice> {
        let YamlData::Sequence(items) = &node.data else {
            self.problem(
                pos_of(node),
                format!(
                    "`devices` must be a list of `{{name: NAME, type: TYPE}}`, found {}",
                    describe(node)
                ),
            );
            return Vec::new();
        };
        let mut devices: Vec<FlowDevice> = Vec::new();
        for item in items {
            let Some(fields) = self.fields(item, "device", &["name", "type", "android", "profile"])
            else {
                continue;
            };
            let name = self.required(&fields, "name", item, |r, n| r.string(n, "name"));
            let ownership = self.required(&fields, "type", item, |r, n| {
                let text = r.string(n, "type")?;
                let parsed = Ownership::parse(&text);
                if parsed.is_none() {
                    r.problem(
                        pos_of(n),
                        format!("unknown device type {text:?}; use cosu, cobo, cope, byod or aosp"),
                    );
                }
                parsed
            });
            let api_level = match fields.get("android") {
                Some(node) => self.unsigned(node, "android").and_then(|level| {
                    ApiLevel::new(level)
                        .map_err(|e| self.problem(pos_of(node), e.to_string()))
                        .ok()
                }),
                None => Some(ApiLevel::DEFAULT),
            };
            let profile = match fields.get("profile") {
                Some(node) => self.string(node, "profile").and_then(|text| {
                    text.parse::<Profile>()
                        .map_err(|e| self.problem(pos_of(node), e))
                        .ok()
                }),
                None => Some(Profile::default()),
            };
            let (Some(name), Some(ownership), Some(api_level), Some(profile)) =
                (name.clone(), ownership, api_level, profile)
            else {
                self.broken_devices.extend(name);
                continue;
            };
            let pos = pos_of(item);
            if !is_device_name(&name) {
                self.problem(
                    fields.get("name").map(pos_of).unwrap_or(pos),
                    format!("device name {name:?}: use 1 to 64 letters, digits, '-' or '_'"),
                );
                self.broken_devices.push(name);
                continue;
            }
            if devices.iter().any(|d| d.name == name) {
                self.problem(pos, format!("device {name:?} is listed twice"));
                continue;
            }
            devices.push(FlowDevice {
                name,
                ownership,
                build: Build { api_level, profile },
                pos,
            });
        }
        if devices.is_empty() && self.problems.is_empty() {
            self.problem(pos_of(node), "`devices` lists no device");
        }
        devices
    }
}

/// The gRPC status codes an admin step may expect, by the names flows use.
pub(crate) const GRPC_CODES: [(&str, tonic::Code); 16] = [
    ("cancelled", tonic::Code::Cancelled),
    ("unknown", tonic::Code::Unknown),
    ("invalid_argument", tonic::Code::InvalidArgument),
    ("deadline_exceeded", tonic::Code::DeadlineExceeded),
    ("not_found", tonic::Code::NotFound),
    ("already_exists", tonic::Code::AlreadyExists),
    ("permission_denied", tonic::Code::PermissionDenied),
    ("resource_exhausted", tonic::Code::ResourceExhausted),
    ("failed_precondition", tonic::Code::FailedPrecondition),
    ("aborted", tonic::Code::Aborted),
    ("out_of_range", tonic::Code::OutOfRange),
    ("unimplemented", tonic::Code::Unimplemented),
    ("internal", tonic::Code::Internal),
    ("unavailable", tonic::Code::Unavailable),
    ("data_loss", tonic::Code::DataLoss),
    ("unauthenticated", tonic::Code::Unauthenticated),
];

/// The name a flow uses for a gRPC status code.
pub(crate) fn grpc_code_name(code: tonic::Code) -> &'static str {
    GRPC_CODES
        .iter()
        .find(|(_, c)| *c == code)
        .map(|(n, _)| *n)
        .unwrap_or("ok")
}

/// Every `ErrorCode` of the proto but UNSPECIFIED, as flows write them; a unit test keeps it
/// equal to the proto's list.
pub(crate) const ERROR_CODE_NAMES: [&str; 18] = [
    "no_passcode_policy",
    "scope_not_supported",
    "no_escrowed_token",
    "api_level",
    "token_missing",
    "token_not_active",
    "token_mismatch",
    "passcode_policy_violation",
    "store_wiped",
    "store_missing",
    "no_passcode",
    "bad_signature",
    "wrong_device",
    "replayed",
    "expired",
    "malformed_command",
    "already_answered",
    "internal",
];

fn is_variable_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn is_device_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// ", did you mean `x`?" when a known name is a couple of edits away.
fn suggestion(name: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests;
