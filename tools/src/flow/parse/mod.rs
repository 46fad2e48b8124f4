//! Reading a flow file: YAML (with the line and column of every node) into a checked [`Flow`].
//!
//! Everything a run could trip on is checked here, before anything runs: the YAML itself, every
//! step's name and fields and their types, the devices steps name, the actions they refer to, the
//! variables they read (each defined by an earlier step or by `env`), and steps the target cannot
//! carry out (`advance` against a control plane the runner did not start). Every problem found is
//! reported, each with its file, line and column.

use super::model::{Entry, Flow, FlowDevice, Part, Pos, Step, StepKind, Text, TokenWanted};
use droidfleet_agent::device::{Ownership, Scope};
use droidfleet_proto::v1 as pb;
use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
pub struct Context {
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
pub fn parse_flow(path: &Path, text: &str, context: &Context) -> Result<Flow, Vec<FlowFileError>> {
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
    step: &'static str,
    entries: Vec<(String, Pos, &'a MarkedYaml<'input>)>,
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

    fn key(&mut self, key: &MarkedYaml<'_>) -> Option<String> {
        match &key.data {
            YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
            _ => {
                self.problem(
                    pos_of(key),
                    format!("a key must be a name, found {}", describe(key)),
                );
                None
            }
        }
    }

    fn string(&mut self, node: &MarkedYaml<'_>, what: &str) -> Option<String> {
        match &node.data {
            YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
            YamlData::Value(Scalar::Integer(_) | Scalar::FloatingPoint(_)) => {
                self.problem(
                    pos_of(node),
                    format!(
                        "`{what}` must be text, found {}: quote it (\"{}\") so leading zeros \
                         and digits stay as written",
                        describe(node),
                        self.source_of(node)
                    ),
                );
                None
            }
            _ => {
                self.problem(
                    pos_of(node),
                    format!("`{what}` must be text, found {}", describe(node)),
                );
                None
            }
        }
    }

    /// The node as written in the file (a scalar's first line).
    fn source_of(&self, node: &MarkedYaml<'_>) -> String {
        let start = node.span.start.index();
        let end = node.span.end.index().max(start);
        self.chars
            .get(start..end.min(self.chars.len()))
            .map(|chars| chars.iter().take_while(|c| **c != '\n').collect())
            .unwrap_or_default()
    }

    fn string_list(&mut self, node: &MarkedYaml<'_>, what: &str) -> Vec<String> {
        match &node.data {
            YamlData::Sequence(items) => items
                .iter()
                .filter_map(|item| self.string(item, what))
                .collect(),
            _ => {
                self.problem(
                    pos_of(node),
                    format!("`{what}` must be a list, found {}", describe(node)),
                );
                Vec::new()
            }
        }
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
            let Some(fields) = self.fields(item, "device", &["name", "type"]) else {
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
            let (Some(name), Some(ownership)) = (name.clone(), ownership) else {
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
                pos,
            });
        }
        if devices.is_empty() && self.problems.is_empty() {
            self.problem(pos_of(node), "`devices` lists no device");
        }
        devices
    }

    /// The node as a mapping whose keys are all in `allowed`; reports every other key.
    fn fields<'a, 'input>(
        &mut self,
        node: &'a MarkedYaml<'input>,
        step: &'static str,
        allowed: &'static [&'static str],
    ) -> Option<Fields<'a, 'input>> {
        let YamlData::Mapping(map) = &node.data else {
            self.problem(
                pos_of(node),
                format!(
                    "`{step}` takes a mapping of {}, found {}",
                    list(allowed),
                    describe(node)
                ),
            );
            return None;
        };
        let mut entries = Vec::new();
        for (key, value) in map {
            let Some(name) = self.key(key) else { continue };
            if !allowed.contains(&name.as_str()) {
                self.problem(
                    pos_of(key),
                    format!(
                        "`{step}` has no field `{name}`{}; its fields are {}",
                        suggestion(&name, allowed),
                        list(allowed)
                    ),
                );
                continue;
            }
            entries.push((name, pos_of(key), value));
        }
        Some(Fields {
            step,
            entries,
            allowed,
        })
    }

    fn required<'a, 'input, T>(
        &mut self,
        fields: &Fields<'a, 'input>,
        name: &str,
        parent: &MarkedYaml<'_>,
        read: impl FnOnce(&mut Reader, &'a MarkedYaml<'input>) -> Option<T>,
    ) -> Option<T> {
        match fields.get(name) {
            Some(node) => read(self, node),
            None => {
                self.problem(
                    pos_of(parent),
                    format!(
                        "`{}` needs `{name}` (its fields are {})",
                        fields.step,
                        list(fields.allowed)
                    ),
                );
                None
            }
        }
    }

    fn duration(&mut self, node: &MarkedYaml<'_>, what: &str) -> Option<Duration> {
        let text = match &node.data {
            YamlData::Value(Scalar::String(s)) => s.to_string(),
            _ => {
                self.problem(
                    pos_of(node),
                    format!(
                        "`{what}` must be a duration such as 500ms, 5s, 2m or 6d, found {}",
                        describe(node)
                    ),
                );
                return None;
            }
        };
        match humantime::parse_duration(&text) {
            Ok(duration) => Some(duration),
            Err(error) => {
                self.problem(
                    pos_of(node),
                    format!(
                        "`{what}`: {text:?} is not a duration ({error}); write e.g. 500ms, 5s, \
                         2m or 6d"
                    ),
                );
                None
            }
        }
    }

    fn unsigned(&mut self, node: &MarkedYaml<'_>, what: &str) -> Option<u32> {
        match &node.data {
            YamlData::Value(Scalar::Integer(i)) if (0..=i64::from(u32::MAX)).contains(i) => {
                Some(*i as u32)
            }
            _ => {
                self.problem(
                    pos_of(node),
                    format!("`{what}` must be a whole number, found {}", describe(node)),
                );
                None
            }
        }
    }

    fn boolean(&mut self, node: &MarkedYaml<'_>, what: &str) -> Option<bool> {
        match &node.data {
            YamlData::Value(Scalar::Boolean(b)) => Some(*b),
            _ => {
                self.problem(
                    pos_of(node),
                    format!("`{what}` must be true or false, found {}", describe(node)),
                );
                None
            }
        }
    }

    /// One of `choices`, written as text.
    fn choice(
        &mut self,
        node: &MarkedYaml<'_>,
        what: &str,
        choices: &[&'static str],
    ) -> Option<&'static str> {
        let text = self.string(node, what)?;
        let wanted = text.to_ascii_lowercase().replace('-', "_");
        match choices.iter().find(|c| **c == wanted) {
            Some(choice) => Some(choice),
            None => {
                self.problem(
                    pos_of(node),
                    format!(
                        "`{what}`: {text:?} is not one of {}{}",
                        list(choices),
                        suggestion(&wanted, choices)
                    ),
                );
                None
            }
        }
    }

    fn scope(&mut self, node: &MarkedYaml<'_>) -> Option<Scope> {
        self.choice(node, "scope", &["device", "work_profile"])
            .and_then(Scope::parse)
    }

    /// Text with `${NAME}` variables, each of which must be defined at this point of the flow.
    fn text(&mut self, node: &MarkedYaml<'_>, what: &str, scopes: &Scopes) -> Option<Text> {
        let value = self.string(node, what)?;
        // A variable's column is its scalar's plus its offset, after the opening quote.
        let start = node.span.start.index();
        let quote = matches!(self.chars.get(start), Some('"' | '\''));
        let base = pos_of(node);
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = value.as_str();
        let mut offset = 0;
        while let Some(at) = rest.find("${") {
            literal.push_str(&rest[..at]);
            let var_pos = Pos {
                line: base.line,
                col: base.col + usize::from(quote) + offset + rest[..at].chars().count(),
            };
            let after = &rest[at + 2..];
            let Some(end) = after.find('}') else {
                self.problem(var_pos, format!("`{what}`: `${{` without its closing `}}`"));
                return None;
            };
            let name = after[..end].trim();
            if !is_variable_name(name) {
                self.problem(
                    var_pos,
                    format!(
                        "`{what}`: ${{{name}}} is not a variable name (letters, digits, '_', \
                         '-' and '.')"
                    ),
                );
                return None;
            }
            if !scopes.variables.contains(name) {
                let known = if scopes.variables.is_empty() {
                    "none yet".to_string()
                } else {
                    scopes
                        .variables
                        .iter()
                        .map(|v| format!("${{{v}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let hint = if name.starts_with("revealed.") {
                    " (a reveal_passcode step defines ${revealed.<scope>} and \
                     ${revealed.<device>.<scope>})"
                } else {
                    ""
                };
                self.problem(
                    var_pos,
                    format!(
                        "unknown variable ${{{name}}}: neither `env` nor an earlier step defines \
                         it{hint}; defined here: {known}"
                    ),
                );
                return None;
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Variable {
                name: name.to_string(),
                pos: var_pos,
            });
            let consumed = at + 2 + end + 1;
            offset += rest[..consumed].chars().count();
            rest = &rest[consumed..];
        }
        literal.push_str(rest);
        if !literal.is_empty() || parts.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Some(Text {
            source: value,
            parts,
        })
    }

    fn device_ref(
        &mut self,
        node: &MarkedYaml<'_>,
        devices: &[FlowDevice],
    ) -> Option<(String, Ownership)> {
        let name = self.string(node, "device")?;
        match devices.iter().find(|d| d.name == name) {
            Some(device) => Some((name, device.ownership)),
            None if self.broken_devices.contains(&name) => None,
            None => {
                let names: Vec<&str> = devices.iter().map(|d| d.name.as_str()).collect();
                self.problem(
                    pos_of(node),
                    format!(
                        "no device {name:?} in this flow's `devices` (it has {})",
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    ),
                );
                None
            }
        }
    }

    /// A store of a device the user acts on: it must exist on that device.
    fn device_scope(
        &mut self,
        node: &MarkedYaml<'_>,
        device: Option<&(String, Ownership)>,
    ) -> Option<Scope> {
        let scope = self.scope(node)?;
        if let Some((name, ownership)) = device
            && scope == Scope::WorkProfile
            && !ownership.has_work_profile()
        {
            self.problem(
                pos_of(node),
                format!(
                    "device {name:?} is {} and has no work profile",
                    ownership.as_str().to_uppercase()
                ),
            );
            return None;
        }
        Some(scope)
    }

    fn action_ref(&mut self, node: &MarkedYaml<'_>, scopes: &Scopes) -> Option<String> {
        let name = self.string(node, "action")?;
        if scopes.actions.contains_key(&name) {
            return Some(name);
        }
        let known: Vec<&str> = scopes.actions.keys().map(String::as_str).collect();
        self.problem(
            pos_of(node),
            format!(
                "no earlier reset_passcode or remote_lock step saved an action as {name:?} \
                 (saved so far: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        );
        None
    }

    fn steps(
        &mut self,
        node: &MarkedYaml<'_>,
        devices: &[FlowDevice],
        scopes: &mut Scopes,
        context: &Context,
    ) -> Vec<Step> {
        let YamlData::Sequence(items) = &node.data else {
            self.problem(
                pos_of(node),
                format!("`steps` must be a list, found {}", describe(node)),
            );
            return Vec::new();
        };
        let mut steps = Vec::new();
        for item in items {
            let YamlData::Mapping(map) = &item.data else {
                self.problem(
                    pos_of(item),
                    format!(
                        "a step is `- NAME: ...` (e.g. `- reboot: alice`), found {}",
                        describe(item)
                    ),
                );
                continue;
            };
            if map.len() != 1 {
                self.problem(
                    pos_of(item),
                    format!(
                        "a step names one thing to do, found {} keys; indent a step's fields \
                         under its name",
                        map.len()
                    ),
                );
                continue;
            }
            let Some((key, value)) = map.iter().next() else {
                continue;
            };
            let Some(name) = self.key(key) else { continue };
            let Some(&step_name) = STEP_NAMES.iter().find(|s| **s == name) else {
                self.problem(
                    pos_of(key),
                    format!(
                        "unknown step `{name}`{}; the steps are {}",
                        suggestion(&name, &STEP_NAMES),
                        STEP_NAMES.join(", ")
                    ),
                );
                continue;
            };
            if let Some(step) = self.step(step_name, pos_of(key), value, devices, scopes, context) {
                steps.push(step);
            }
        }
        steps
    }

    /// One step's value: a mapping of its fields, or for some steps a single scalar (the device,
    /// the action or the duration).
    fn step(
        &mut self,
        name: &'static str,
        pos: Pos,
        value: &MarkedYaml<'_>,
        devices: &[FlowDevice],
        scopes: &mut Scopes,
        context: &Context,
    ) -> Option<Step> {
        let shorthand = match name {
            "reboot" | "go_offline" | "go_online" | "reset_passcode" | "remote_lock" => {
                Some("device")
            }
            "reveal_passcode" | "cancel" => Some("action"),
            _ => None,
        };
        if matches!(name, "wait" | "advance") {
            let duration = self.duration(value, name)?;
            if name == "advance" && !context.embedded {
                self.problem(
                    pos,
                    "`advance` moves the clocks of a control plane and fleet the runner started \
                     itself; against --control-plane it cannot (run without --control-plane, \
                     --harness and --token-file)",
                );
                return None;
            }
            let kind = if name == "wait" {
                StepKind::Wait(duration)
            } else {
                StepKind::Advance(duration)
            };
            return Some(Step {
                pos,
                kind,
                timeout: None,
                role: None,
                expect_error: None,
            });
        }
        // `- reboot: alice` is `- reboot: {device: alice}`.
        let single;
        let fields_node = match (shorthand, &value.data) {
            (Some(_), YamlData::Value(_)) => {
                single = true;
                value
            }
            _ => {
                single = false;
                value
            }
        };
        let allowed = fields_of(name);
        let fields = if single {
            Fields {
                step: name,
                entries: vec![(
                    shorthand.unwrap_or_default().to_string(),
                    pos_of(fields_node),
                    fields_node,
                )],
                allowed,
            }
        } else {
            self.fields(fields_node, name, allowed)?
        };
        let before = self.problems.len();
        let timeout = fields
            .get("timeout")
            .and_then(|n| self.duration(n, "timeout"));
        let role = fields.get("as").and_then(|n| self.string(n, "as"));
        let expect_error = fields
            .get("expect_error")
            .and_then(|n| self.choice(n, "expect_error", &GRPC_CODES.map(|(n, _)| n)))
            .and_then(|n| GRPC_CODES.iter().find(|(c, _)| *c == n).map(|(_, c)| *c));
        let device =
            |r: &mut Reader| r.required(&fields, "device", value, |r, n| r.device_ref(n, devices));
        let kind = match name {
            "assign_policy" | "remove_policy" => {
                let device = device(self);
                let scope = self.required(&fields, "scope", value, |r, n| r.scope(n));
                let policy = if name == "assign_policy" {
                    Some(self.policy(&fields))
                } else {
                    None
                };
                StepKind::AssignPolicy {
                    device: device?.0,
                    scope: scope?,
                    policy,
                }
            }
            "reset_passcode" | "remote_lock" => {
                let device = device(self);
                let scope = fields.get("scope").and_then(|n| self.scope(n));
                let ttl_seconds = fields
                    .get("ttl")
                    .and_then(|n| self.duration(n, "ttl"))
                    .map(|d| d.as_secs().max(1));
                let save_as = match fields.get("save_as") {
                    Some(n) => self.name(n, "save_as")?,
                    None => if name == "reset_passcode" {
                        "reset"
                    } else {
                        "lock"
                    }
                    .to_string(),
                };
                let (device, ownership) = device?;
                if expect_error.is_none() {
                    let target = scope.unwrap_or(if ownership.has_work_profile() {
                        Scope::WorkProfile
                    } else {
                        Scope::Device
                    });
                    scopes
                        .actions
                        .insert(save_as.clone(), (device.clone(), Some(target)));
                    scopes.variables.insert(format!("{save_as}.action_id"));
                }
                if name == "reset_passcode" {
                    let passcode = fields
                        .get("passcode")
                        .and_then(|n| self.text(n, "passcode", scopes));
                    StepKind::ResetPasscode {
                        device,
                        scope,
                        passcode,
                        ttl_seconds,
                        save_as,
                    }
                } else {
                    StepKind::RemoteLock {
                        device,
                        scope,
                        ttl_seconds,
                        save_as,
                    }
                }
            }
            "reveal_passcode" | "cancel" => {
                let action =
                    self.required(&fields, "action", value, |r, n| r.action_ref(n, scopes))?;
                if name == "reveal_passcode" {
                    if expect_error.is_none()
                        && let Some((device, Some(scope))) = scopes.actions.get(&action).cloned()
                    {
                        scopes
                            .variables
                            .insert(format!("revealed.{}", scope.as_str()));
                        scopes
                            .variables
                            .insert(format!("revealed.{device}.{}", scope.as_str()));
                    }
                    StepKind::RevealPasscode { action }
                } else {
                    StepKind::Cancel { action }
                }
            }
            "wait_action" | "assert_action" => {
                let action =
                    self.required(&fields, "action", value, |r, n| r.action_ref(n, scopes));
                let state = self.required(&fields, "state", value, |r, n| {
                    r.choice(n, "state", &ACTION_STATES)
                });
                if name == "wait_action" {
                    StepKind::WaitAction {
                        action: action?,
                        state: state?.to_string(),
                    }
                } else {
                    let error_code = fields
                        .get("error_code")
                        .and_then(|n| self.choice(n, "error_code", &ERROR_CODE_NAMES));
                    let user_entered = fields
                        .get("user_entered")
                        .and_then(|n| self.boolean(n, "user_entered"));
                    StepKind::ActionEnded {
                        action: action?,
                        state: state?.to_string(),
                        error_code: error_code.map(str::to_string),
                        user_entered,
                    }
                }
            }
            "set_passcode" => {
                let device = device(self);
                let scope = self.required(&fields, "scope", value, |r, n| {
                    r.device_scope(n, device.as_ref())
                });
                let passcode = self.required(&fields, "passcode", value, |r, n| {
                    r.text(n, "passcode", scopes)
                });
                let current = fields
                    .get("current")
                    .and_then(|n| self.text(n, "current", scopes));
                StepKind::SetPasscode {
                    device: device?.0,
                    scope: scope?,
                    current,
                    passcode: passcode?,
                }
            }
            "enter_passcode" => {
                let device = device(self);
                let scope = self.required(&fields, "scope", value, |r, n| {
                    r.device_scope(n, device.as_ref())
                });
                let passcode = self.required(&fields, "passcode", value, |r, n| {
                    r.text(n, "passcode", scopes)
                });
                let expect = fields
                    .get("expect")
                    .and_then(|n| self.choice(n, "expect", &["unlocked", "refused"]))
                    .map(|e| {
                        if e == "unlocked" {
                            Entry::Unlocked
                        } else {
                            Entry::Refused
                        }
                    });
                let times = match fields.get("times") {
                    Some(n) => match self.unsigned(n, "times")? {
                        0 => {
                            self.problem(pos_of(n), "`times` must be at least 1");
                            return None;
                        }
                        t => t,
                    },
                    None => 1,
                };
                StepKind::EnterPasscode {
                    device: device?.0,
                    scope: scope?,
                    passcode: passcode?,
                    expect,
                    times,
                }
            }
            "lock" | "assert_locked" | "assert_unlocked" | "assert_not_throttled" => {
                let device = device(self);
                let scope = self.required(&fields, "scope", value, |r, n| {
                    r.device_scope(n, device.as_ref())
                });
                let (device, scope) = (device?.0, scope?);
                match name {
                    "lock" => StepKind::Lock { device, scope },
                    "assert_not_throttled" => StepKind::Throttled {
                        device,
                        scope,
                        retry_in: None,
                        throttled: false,
                    },
                    _ => StepKind::Locked {
                        device,
                        scope,
                        locked: name == "assert_locked",
                    },
                }
            }
            "reboot" => StepKind::Reboot {
                device: device(self)?.0,
            },
            "go_offline" | "go_online" => StepKind::SetOnline {
                device: device(self)?.0,
                online: name == "go_online",
            },
            "write_data" | "read_data" | "assert_user_data" => {
                let device = device(self);
                let scope = self.required(&fields, "scope", value, |r, n| {
                    r.device_scope(n, device.as_ref())
                });
                let key = self.required(&fields, "key", value, |r, n| r.string(n, "key"));
                let (device, scope, key) = (device?.0, scope?, key?);
                match name {
                    "write_data" => StepKind::WriteData {
                        device,
                        scope,
                        key,
                        value: self
                            .required(&fields, "value", value, |r, n| r.text(n, "value", scopes))?,
                    },
                    "read_data" => {
                        let save_as =
                            self.required(&fields, "save_as", value, |r, n| r.name(n, "save_as"))?;
                        scopes.variables.insert(save_as.clone());
                        StepKind::ReadData {
                            device,
                            scope,
                            key,
                            save_as,
                        }
                    }
                    _ => StepKind::UserData {
                        device,
                        scope,
                        key,
                        equals: fields
                            .get("equals")
                            .and_then(|n| self.text(n, "equals", scopes)),
                    },
                }
            }
            "assert_notification" | "assert_no_notification" => {
                let device = device(self);
                let title = if name == "assert_notification" {
                    self.required(&fields, "title", value, |r, n| r.text(n, "title", scopes))
                        .map(Some)
                } else {
                    Some(
                        fields
                            .get("title")
                            .and_then(|n| self.text(n, "title", scopes)),
                    )
                };
                StepKind::Notification {
                    device: device?.0,
                    title: title?,
                    shown: name == "assert_notification",
                }
            }
            "assert_token" => {
                let device = device(self);
                let scope = self.required(&fields, "scope", value, |r, n| {
                    r.device_scope(n, device.as_ref())
                });
                let state = self.required(&fields, "state", value, |r, n| {
                    r.choice(n, "state", &["none", "pending", "active"])
                });
                StepKind::Token {
                    device: device?.0,
                    scope: scope?,
                    state: match state? {
                        "none" => TokenWanted::None,
                        "pending" => TokenWanted::Pending,
                        _ => TokenWanted::Active,
                    },
                }
            }
            "assert_throttled" => {
                let device = device(self);
                let scope = self.required(&fields, "scope", value, |r, n| {
                    r.device_scope(n, device.as_ref())
                });
                let retry_in = fields
                    .get("retry_in")
                    .and_then(|n| self.duration(n, "retry_in"));
                StepKind::Throttled {
                    device: device?.0,
                    scope: scope?,
                    retry_in,
                    throttled: true,
                }
            }
            "assert_audit" => {
                let operation =
                    self.required(&fields, "operation", value, |r, n| r.string(n, "operation"));
                let result = fields.get("result").and_then(|n| self.string(n, "result"));
                let by_role = fields.get("by").and_then(|n| self.string(n, "by"));
                let device = fields
                    .get("device")
                    .and_then(|n| self.device_ref(n, devices));
                if fields.get("device").is_some() && device.is_none() {
                    return None;
                }
                StepKind::Audit {
                    operation: operation?,
                    result: result.map(|r| {
                        if r.eq_ignore_ascii_case("ok") {
                            "ok".to_string()
                        } else {
                            r.to_ascii_uppercase()
                        }
                    }),
                    by_role,
                    device: device.map(|d| d.0),
                }
            }
            _ => return None,
        };
        if self.problems.len() > before {
            return None;
        }
        Some(Step {
            pos,
            kind,
            timeout,
            role,
            expect_error,
        })
    }

    fn policy(&mut self, fields: &Fields<'_, '_>) -> pb::PasscodePolicy {
        let kind = fields
            .get("type")
            .and_then(|n| {
                self.choice(
                    n,
                    "type",
                    &["pin", "numeric_complex", "alphanumeric", "complex"],
                )
            })
            .map(|t| match t {
                "numeric_complex" => pb::PasscodeType::NumericComplex,
                "alphanumeric" => pb::PasscodeType::Alphanumeric,
                "complex" => pb::PasscodeType::Complex,
                _ => pb::PasscodeType::Pin,
            })
            .unwrap_or(pb::PasscodeType::Pin);
        let complexity = fields
            .get("complexity")
            .and_then(|n| self.choice(n, "complexity", &["low", "medium", "high"]))
            .map(|c| match c {
                "low" => pb::PasscodeComplexity::Low,
                "medium" => pb::PasscodeComplexity::Medium,
                _ => pb::PasscodeComplexity::High,
            })
            .unwrap_or(pb::PasscodeComplexity::Unspecified);
        let min_length = fields
            .get("min_length")
            .and_then(|n| self.unsigned(n, "min_length"))
            .unwrap_or(4);
        let wipe_after = fields
            .get("wipe_after")
            .and_then(|n| self.unsigned(n, "wipe_after"))
            .unwrap_or(0);
        pb::PasscodePolicy {
            r#type: kind as i32,
            min_length,
            complexity: complexity as i32,
            max_failed_attempts_before_wipe: wipe_after,
            ..Default::default()
        }
    }

    /// A name a step saves something under.
    fn name(&mut self, node: &MarkedYaml<'_>, what: &str) -> Option<String> {
        let name = self.string(node, what)?;
        if is_variable_name(&name) && !name.contains('.') && name != "revealed" {
            Some(name)
        } else {
            self.problem(
                pos_of(node),
                format!(
                    "`{what}`: {name:?} cannot name a saved value: use letters, digits, '_' and \
                     '-' (and not `revealed`)"
                ),
            );
            None
        }
    }
}

/// The fields each step takes.
fn fields_of(step: &str) -> &'static [&'static str] {
    match step {
        "assign_policy" => &[
            "device",
            "scope",
            "type",
            "min_length",
            "complexity",
            "wipe_after",
            "as",
            "expect_error",
        ],
        "remove_policy" => &["device", "scope", "as", "expect_error"],
        "reset_passcode" => &[
            "device",
            "scope",
            "passcode",
            "ttl",
            "save_as",
            "as",
            "expect_error",
        ],
        "remote_lock" => &["device", "scope", "ttl", "save_as", "as", "expect_error"],
        "reveal_passcode" | "cancel" => &["action", "as", "expect_error"],
        "wait_action" => &["action", "state", "timeout"],
        "set_passcode" => &["device", "scope", "passcode", "current"],
        "enter_passcode" => &["device", "scope", "passcode", "expect", "times"],
        "lock" => &["device", "scope"],
        "reboot" | "go_offline" | "go_online" => &["device"],
        "write_data" => &["device", "scope", "key", "value"],
        "read_data" => &["device", "scope", "key", "save_as"],
        "assert_notification" | "assert_no_notification" => &["device", "title", "timeout"],
        "assert_locked" | "assert_unlocked" | "assert_not_throttled" => {
            &["device", "scope", "timeout"]
        }
        "assert_token" => &["device", "scope", "state", "timeout"],
        "assert_throttled" => &["device", "scope", "retry_in", "timeout"],
        "assert_action" => &["action", "state", "error_code", "user_entered", "timeout"],
        "assert_user_data" => &["device", "scope", "key", "equals", "timeout"],
        "assert_audit" => &["operation", "result", "by", "device"],
        _ => &[],
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
pub(crate) const ERROR_CODE_NAMES: [&str; 15] = [
    "no_passcode_policy",
    "scope_not_supported",
    "no_escrowed_token",
    "token_missing",
    "token_not_active",
    "token_mismatch",
    "passcode_policy_violation",
    "store_wiped",
    "store_missing",
    "bad_signature",
    "wrong_device",
    "replayed",
    "expired",
    "malformed_command",
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
