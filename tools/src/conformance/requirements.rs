//! The requirements of `PROTOCOL.md`, read from the document itself (compiled in), so the kit's
//! catalogue and the specification cannot drift apart unnoticed: a requirement is a list item
//! that opens with its bold id, such as `- **CP-SESSION-1** (MUST) …`.

/// The normative specification, as the kit was built with it.
const PROTOCOL_MD: &str = include_str!("../../../PROTOCOL.md");

/// One numbered requirement of `PROTOCOL.md`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Requirement {
    /// Such as `CP-SESSION-1` or `DEV-RESET-5`.
    pub id: String,
    /// The RFC 2119 word in parentheses after the id: `MUST`, `SHOULD` or `MAY`.
    pub level: String,
    /// The requirement's first sentence, without markdown emphasis, for listings.
    pub summary: String,
}

/// Every requirement of `PROTOCOL.md`, in document order.
pub fn requirements() -> Vec<Requirement> {
    parse(PROTOCOL_MD)
}

fn parse(markdown: &str) -> Vec<Requirement> {
    let mut found = Vec::new();
    let lines: Vec<&str> = markdown.lines().collect();
    for (index, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix("- **") else {
            continue;
        };
        let Some((id, after)) = rest.split_once("**") else {
            continue;
        };
        if !is_requirement_id(id) {
            continue;
        }
        // The item continues on the indented lines below it.
        let mut text = after.trim().to_string();
        for next in &lines[index + 1..] {
            if !next.starts_with("  ") || next.trim().is_empty() {
                break;
            }
            text.push(' ');
            text.push_str(next.trim());
        }
        let (level, body) = match text.strip_prefix('(').and_then(|t| t.split_once(')')) {
            Some((level, body)) => (level.trim().to_string(), body.trim().to_string()),
            None => (String::new(), text),
        };
        found.push(Requirement {
            id: id.to_string(),
            level,
            summary: first_sentence(&body.replace('`', "")),
        });
    }
    found
}

/// `CP-…-N` or `DEV-…-N`, the upper-case area in between.
pub(crate) fn is_requirement_id(id: &str) -> bool {
    let mut parts = id.split('-');
    let (Some(side), Some(area), Some(number), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    matches!(side, "CP" | "DEV")
        && !area.is_empty()
        && area.chars().all(|c| c.is_ascii_uppercase())
        && !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit())
}

fn first_sentence(text: &str) -> String {
    let end = text
        .char_indices()
        .find(|(i, c)| *c == '.' && text[i + 1..].starts_with(' ') && !text[..*i].ends_with("e.g"))
        .map(|(i, _)| i + 1)
        .unwrap_or(text.len());
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requirement_is_a_bold_id_with_its_level_and_continuation_lines() {
        let parsed = parse(
            "intro\n- **CP-SESSION-1** (MUST) The control plane does this. And\n  more here.\n\
             - **not-an-id** (MUST) no\n- **DEV-X-2** (SHOULD) Short\n  one\n\nafter\n",
        );
        assert_eq!(
            parsed,
            vec![
                Requirement {
                    id: "CP-SESSION-1".into(),
                    level: "MUST".into(),
                    summary: "The control plane does this.".into(),
                },
                Requirement {
                    id: "DEV-X-2".into(),
                    level: "SHOULD".into(),
                    summary: "Short one".into(),
                },
            ]
        );
    }

    #[test]
    fn the_protocol_document_has_unique_ids_each_with_an_rfc_2119_level() {
        let all = requirements();
        assert!(all.len() > 40, "only {} requirements found", all.len());
        let mut seen = std::collections::BTreeSet::new();
        for requirement in &all {
            assert!(seen.insert(&requirement.id), "{} twice", requirement.id);
            assert!(
                ["MUST", "SHOULD", "MAY"].contains(&requirement.level.as_str()),
                "{}: level {:?}",
                requirement.id,
                requirement.level
            );
        }
    }
}
