//! Reading one value of a flow file: names, text with variables, numbers, durations, choices,
//! and references to the flow's devices and saved actions, each refusing what does not fit
//! with the value's line and column.

use super::{Fields, Reader, Scopes, describe, is_variable_name, list, pos_of, suggestion};
use crate::flow::model::{FlowDevice, Part, Pos, Text};
use droidfleet_agent::device::{Ownership, Scope};
use saphyr::{MarkedYaml, Scalar, YamlData};
use std::time::Duration;

impl Reader {
    pub(super) fn key(&mut self, key: &MarkedYaml<'_>) -> Option<String> {
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

    pub(super) fn string(&mut self, node: &MarkedYaml<'_>, what: &str) -> Option<String> {
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
    pub(super) fn source_of(&self, node: &MarkedYaml<'_>) -> String {
        let start = node.span.start.index();
        let end = node.span.end.index().max(start);
        self.chars
            .get(start..end.min(self.chars.len()))
            .map(|chars| chars.iter().take_while(|c| **c != '\n').collect())
            .unwrap_or_default()
    }

    pub(super) fn string_list(&mut self, node: &MarkedYaml<'_>, what: &str) -> Vec<String> {
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

    /// The node as a mapping whose keys are all in `allowed`; reports every other key.
    pub(super) fn fields<'a, 'input>(
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

    pub(super) fn required<'a, 'input, T>(
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

    pub(super) fn duration(&mut self, node: &MarkedYaml<'_>, what: &str) -> Option<Duration> {
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

    pub(super) fn unsigned(&mut self, node: &MarkedYaml<'_>, what: &str) -> Option<u32> {
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

    pub(super) fn boolean(&mut self, node: &MarkedYaml<'_>, what: &str) -> Option<bool> {
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
    pub(super) fn choice(
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

    pub(super) fn scope(&mut self, node: &MarkedYaml<'_>) -> Option<Scope> {
        self.choice(node, "scope", &["device", "work_profile"])
            .and_then(Scope::parse)
    }

    /// Text with `${NAME}` variables, each of which must be defined at this point of the flow.
    pub(super) fn text(
        &mut self,
        node: &MarkedYaml<'_>,
        what: &str,
        scopes: &Scopes,
    ) -> Option<Text> {
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

    pub(super) fn device_ref(
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
    pub(super) fn device_scope(
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

    pub(super) fn action_ref(&mut self, node: &MarkedYaml<'_>, scopes: &Scopes) -> Option<String> {
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

    /// A name a step saves something under.
    pub(super) fn name(&mut self, node: &MarkedYaml<'_>, what: &str) -> Option<String> {
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
