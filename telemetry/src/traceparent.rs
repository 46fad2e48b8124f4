//! W3C Trace Context `traceparent` values (https://www.w3.org/TR/trace-context/): a 16-byte
//! trace id shared by every party a reset crosses, the 8-byte id of the span that sent it, and
//! the flags. Version `00` only; a value that is not a well-formed version-00 `traceparent` is
//! refused (a caller then starts a new trace rather than trusting part of it).

use std::fmt;

/// The length of a version-00 `traceparent`: `00-` + 32 + `-` + 16 + `-` + 2.
pub const TRACEPARENT_LEN: usize = 55;
/// The gRPC metadata key (and HTTP header) that carries it.
pub const TRACEPARENT_KEY: &str = "traceparent";

/// A parsed `traceparent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The whole trace's id: what log lines and outputs show to tie the parties together.
    pub trace_id: [u8; 16],
    /// The id of the span (the party's unit of work) that sent this value.
    pub parent_id: [u8; 8],
    /// Bit 0 is "sampled"; the other bits are reserved.
    pub flags: u8,
}

/// Why a `traceparent` value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TraceParentError {
    #[error("a traceparent is {TRACEPARENT_LEN} characters, not {0}")]
    Length(usize),
    #[error("only traceparent version 00 is understood")]
    Version,
    #[error("a traceparent's fields are lowercase hex separated by '-'")]
    Format,
    #[error("a traceparent's trace id and parent id must not be all zeros")]
    Zero,
}

impl TraceParent {
    /// A new trace started here, from 24 random bytes (16 for the trace, 8 for this span), sampled.
    pub fn new_root(random: [u8; 24]) -> TraceParent {
        let mut trace_id = [0u8; 16];
        let mut parent_id = [0u8; 8];
        trace_id.copy_from_slice(&random[..16]);
        parent_id.copy_from_slice(&random[16..]);
        // All zeros is invalid; a random source that produced it is broken, but the value must
        // still be one a peer accepts.
        if trace_id == [0; 16] {
            trace_id[15] = 1;
        }
        if parent_id == [0; 8] {
            parent_id[7] = 1;
        }
        TraceParent {
            trace_id,
            parent_id,
            flags: 1,
        }
    }

    /// The same trace, continued by a new span `span_id` of this party.
    pub fn child(&self, mut span_id: [u8; 8]) -> TraceParent {
        if span_id == [0; 8] {
            span_id[7] = 1;
        }
        TraceParent {
            parent_id: span_id,
            ..*self
        }
    }

    /// Parses a version-00 `traceparent`.
    pub fn parse(value: &str) -> Result<TraceParent, TraceParentError> {
        if value.len() != TRACEPARENT_LEN {
            return Err(TraceParentError::Length(value.len()));
        }
        let mut parts = value.split('-');
        let (Some(version), Some(trace), Some(parent), Some(flags), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TraceParentError::Format);
        };
        if version != "00" {
            return Err(if is_lower_hex(version) && version.len() == 2 {
                TraceParentError::Version
            } else {
                TraceParentError::Format
            });
        }
        let trace_id: [u8; 16] = decode_hex(trace)?;
        let parent_id: [u8; 8] = decode_hex(parent)?;
        let [flags]: [u8; 1] = decode_hex(flags)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return Err(TraceParentError::Zero);
        }
        Ok(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The trace id as 32 lowercase hex digits, as logs and outputs show it.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The sending span's id as 16 lowercase hex digits: what links a party's log lines to the
    /// span of the party before it.
    pub fn parent_id_hex(&self) -> String {
        hex(&self.parent_id)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.parent_id),
            self.flags
        )
    }
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn decode_hex<const N: usize>(text: &str) -> Result<[u8; N], TraceParentError> {
    if text.len() != N * 2 || !is_lower_hex(text) {
        return Err(TraceParentError::Format);
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16)
            .map_err(|_| TraceParentError::Format)?;
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specification_example_round_trips() {
        let parsed = TraceParent::parse(EXAMPLE).unwrap();
        assert_eq!(parsed.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.flags, 1);
        assert_eq!(parsed.to_string(), EXAMPLE);
    }

    #[test]
    fn a_child_keeps_the_trace_and_changes_the_span() {
        let parent = TraceParent::parse(EXAMPLE).unwrap();
        let child = parent.child([7; 8]);
        assert_eq!(child.trace_id, parent.trace_id);
        assert_eq!(child.parent_id, [7; 8]);
        assert_eq!(child.flags, parent.flags);
    }

    #[test]
    fn malformed_values_are_refused_with_the_reason() {
        assert_eq!(TraceParent::parse(""), Err(TraceParentError::Length(0)));
        assert_eq!(
            TraceParent::parse(&EXAMPLE.replacen("00", "01", 1)),
            Err(TraceParentError::Version)
        );
        assert_eq!(
            TraceParent::parse(&EXAMPLE.to_uppercase()),
            Err(TraceParentError::Format)
        );
        assert_eq!(
            TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            Err(TraceParentError::Zero)
        );
        assert_eq!(
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
            Err(TraceParentError::Zero)
        );
        assert_eq!(
            TraceParent::parse("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Err(TraceParentError::Format)
        );
    }

    #[test]
    fn a_root_is_never_all_zeros() {
        let root = TraceParent::new_root([0; 24]);
        assert_ne!(root.trace_id, [0; 16]);
        assert_ne!(root.parent_id, [0; 8]);
        assert_eq!(TraceParent::parse(&root.to_string()), Ok(root));
    }
}
