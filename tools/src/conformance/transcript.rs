//! What the kit and the implementation under test said to each other during a case, one
//! redacted line per message, so a failed case's report shows the exchange just before it.
//! Passcodes, escrow tokens, credentials and signatures never appear: only their length does.

use droidfleet_proto::v1 as pb;
use prost::Message as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The last lines a failed case's report shows.
pub const SHOWN_ON_FAILURE: usize = 40;

/// One line of a transcript.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Line {
    /// Milliseconds since the case started.
    pub at_ms: u64,
    /// Who spoke: `kit → device`, `device → kit`, `admin`, `harness`, or `kit` for a note.
    pub who: String,
    pub text: String,
}

/// A case's transcript, shared by every peer the case drives. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Transcript {
    inner: Arc<Mutex<TranscriptInner>>,
}

#[derive(Debug)]
struct TranscriptInner {
    started: Instant,
    lines: Vec<Line>,
    /// Passcodes the kit chose, scrubbed from every line in case a peer echoes one back.
    secrets: Vec<String>,
}

impl Default for Transcript {
    fn default() -> Transcript {
        Transcript {
            inner: Arc::new(Mutex::new(TranscriptInner {
                started: Instant::now(),
                lines: Vec::new(),
                secrets: Vec::new(),
            })),
        }
    }
}

impl Transcript {
    pub fn record(&self, who: &str, text: impl Into<String>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let at_ms = u64::try_from(inner.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut text = text.into();
        for secret in &inner.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "<redacted>");
            }
        }
        inner.lines.push(Line {
            at_ms,
            who: who.to_string(),
            text,
        });
    }

    /// Registers a secret (a passcode the kit chose) that no line may show.
    pub fn secret(&self, secret: &str) {
        if secret.len() >= 4 {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if !inner.secrets.iter().any(|s| s == secret) {
                inner.secrets.push(secret.to_string());
            }
        }
    }

    /// Empties the transcript and restarts its clock, for the next case.
    pub fn restart(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.started = Instant::now();
        inner.lines.clear();
    }

    /// The last `n` lines.
    pub fn tail(&self, n: usize) -> Vec<Line> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let skip = inner.lines.len().saturating_sub(n);
        inner.lines[skip..].to_vec()
    }
}

/// A device's message in one line, secrets replaced by their length.
pub fn device_message(message: &pb::DeviceMessage) -> String {
    use pb::device_message::Body;
    match &message.body {
        None => "DeviceMessage with no body".into(),
        Some(Body::Proof(proof)) => {
            format!("SessionProof signature=<{} bytes>", proof.signature.len())
        }
        Some(Body::Hello(hello)) => format!(
            "Hello device_id={:?} agent_version={:?} status={}",
            hello.device_id,
            hello.agent_version,
            hello
                .status
                .as_ref()
                .map(|s| stores(&s.stores))
                .unwrap_or_else(|| "<missing>".into())
        ),
        Some(Body::Status(status)) => format!("DeviceStatus {}", stores(&status.stores)),
        Some(Body::EscrowToken(update)) => format!(
            "EscrowTokenUpdate scope={} token=<redacted {} bytes>",
            scope(update.scope),
            update.token.len()
        ),
        Some(Body::Ack(ack)) => format!("CommandAck command_id={:?}", ack.command_id),
        Some(Body::Result(result)) => format!(
            "CommandResult command_id={:?} success={} error_code={} completed_at_ms={} reason={:?}",
            result.command_id,
            result.success,
            error_code(result.error_code),
            result.completed_at_ms,
            result.reason
        ),
        Some(Body::UserEvent(event)) => format!(
            "UserEvent kind={} scope={} command_id={:?} at_ms={}",
            pb::user_event::Kind::try_from(event.kind)
                .map(|k| k.as_str_name().to_string())
                .unwrap_or_else(|_| event.kind.to_string()),
            scope(event.scope),
            event.command_id,
            event.at_ms
        ),
        Some(Body::PolicyRefusal(refusal)) => format!(
            "PolicyRefusal scope={} version={} error_code={} reason={:?}",
            scope(refusal.scope),
            refusal.version,
            error_code(refusal.error_code),
            refusal.reason
        ),
    }
}

/// A control plane's message in one line, secrets replaced by their length.
pub fn control_message(message: &pb::ControlMessage) -> String {
    use pb::control_message::Body;
    match &message.body {
        None => "ControlMessage with no body".into(),
        Some(Body::Policy(signed)) => {
            let body = match pb::PolicyBody::decode(signed.body.as_slice()) {
                Ok(body) => format!(
                    "device_id={:?} scope={} version={} policy={}",
                    body.device_id,
                    scope(body.scope),
                    body.version,
                    body.policy
                        .as_ref()
                        .map(policy)
                        .unwrap_or_else(|| "none".into())
                ),
                Err(_) => format!("<{} bytes that do not decode>", signed.body.len()),
            };
            format!(
                "SignedPolicy {body} signature=<{} bytes> key_id={}",
                signed.signature.len(),
                hex(&signed.key_id)
            )
        }
        Some(Body::KeyUpdate(signed)) => {
            let body = match pb::KeyUpdateBody::decode(signed.body.as_slice()) {
                Ok(body) => format!(
                    "device_id={:?} new_key_id={}",
                    body.device_id,
                    hex(&droidfleet_proto::signing::key_id(&body.public_key))
                ),
                Err(_) => format!("<{} bytes that do not decode>", signed.body.len()),
            };
            format!(
                "SignedKeyUpdate {body} signature=<{} bytes> key_id={}",
                signed.signature.len(),
                hex(&signed.key_id)
            )
        }
        Some(Body::Command(signed)) => signed_command(signed),
        Some(Body::EscrowAck(ack)) => format!(
            "EscrowAck scope={} fingerprint={}",
            scope(ack.scope),
            hex(&ack.fingerprint)
        ),
        Some(Body::Challenge(challenge)) => {
            format!("SessionChallenge nonce=<{} bytes>", challenge.nonce.len())
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A signed command: its decoded body (when it decodes) and the signature's length.
pub fn signed_command(signed: &pb::SignedCommand) -> String {
    let body = match pb::CommandBody::decode(signed.body.as_slice()) {
        Ok(body) => command_body(&body),
        Err(_) => format!("<{} bytes that do not decode>", signed.body.len()),
    };
    format!(
        "SignedCommand {body} signature=<{} bytes> key_id={}",
        signed.signature.len(),
        hex(&signed.key_id)
    )
}

pub fn command_body(body: &pb::CommandBody) -> String {
    use pb::command_body::Kind;
    let kind = match &body.kind {
        None => "kind=<none>".to_string(),
        Some(Kind::ResetPasscode(reset)) => format!(
            "reset_passcode scope={} new_passcode=<redacted> escrow_token=<redacted {} bytes> flags={:?}",
            scope(reset.scope),
            reset.escrow_token.len(),
            reset
                .flags
                .iter()
                .map(|f| pb::ResetFlag::try_from(*f)
                    .map(|f| f.as_str_name().to_string())
                    .unwrap_or_else(|_| f.to_string()))
                .collect::<Vec<_>>()
        ),
        Some(Kind::RemoteLock(lock)) => format!("remote_lock scope={}", scope(lock.scope)),
        Some(Kind::Cancel(cancel)) => format!("cancel command_id={:?}", cancel.command_id),
    };
    format!(
        "command_id={:?} device_id={:?} sequence={} not_after_ms={} {kind}",
        body.command_id, body.device_id, body.sequence, body.not_after_ms
    )
}

fn stores(stores: &[pb::StoreStatus]) -> String {
    let each: Vec<String> = stores
        .iter()
        .map(|s| {
            format!(
                "{}(passcode={} locked={} token={} require_entry={} failed={} wiped={})",
                scope(s.scope),
                s.has_passcode,
                s.locked,
                pb::TokenState::try_from(s.token_state)
                    .map(|t| t
                        .as_str_name()
                        .trim_start_matches("TOKEN_STATE_")
                        .to_string())
                    .unwrap_or_else(|_| s.token_state.to_string()),
                s.require_entry,
                s.failed_attempts,
                s.wiped
            )
        })
        .collect();
    format!("[{}]", each.join(", "))
}

pub fn scope(value: i32) -> String {
    pb::CredentialScope::try_from(value)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("CREDENTIAL_SCOPE_")
                .to_string()
        })
        .unwrap_or_else(|_| value.to_string())
}

pub fn error_code(value: i32) -> String {
    pb::ErrorCode::try_from(value)
        .map(|c| {
            c.as_str_name()
                .trim_start_matches("ERROR_CODE_")
                .to_string()
        })
        .unwrap_or_else(|_| value.to_string())
}

pub fn policy(policy: &pb::PasscodePolicy) -> String {
    format!(
        "{} min_length={} complexity={}",
        pb::PasscodeType::try_from(policy.r#type)
            .map(|t| t
                .as_str_name()
                .trim_start_matches("PASSCODE_TYPE_")
                .to_string())
            .unwrap_or_else(|_| policy.r#type.to_string()),
        policy.min_length,
        pb::PasscodeComplexity::try_from(policy.complexity)
            .map(|c| c
                .as_str_name()
                .trim_start_matches("PASSCODE_COMPLEXITY_")
                .to_string())
            .unwrap_or_else(|_| policy.complexity.to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_appear_only_their_length() {
        let body = pb::CommandBody {
            command_id: "act-1".into(),
            device_id: "dev-1".into(),
            sequence: 3,
            not_after_ms: 99,
            kind: Some(pb::command_body::Kind::ResetPasscode(
                pb::ResetPasscodeCommand {
                    scope: pb::CredentialScope::Device as i32,
                    new_passcode: "s3cret-pass".into(),
                    escrow_token: b"token-bytes-token-bytes-token-by".to_vec(),
                    flags: vec![pb::ResetFlag::RequireEntry as i32],
                },
            )),
            traceparent: String::new(),
        };
        let signed = pb::SignedCommand {
            body: body.encode_to_vec(),
            signature: vec![1; 64],
            key_id: vec![2; 8],
        };
        let line = control_message(&pb::ControlMessage {
            body: Some(pb::control_message::Body::Command(signed)),
        });
        assert!(
            !line.contains("s3cret") && !line.contains("token-bytes"),
            "{line}"
        );
        assert!(line.contains("escrow_token=<redacted 32 bytes>"), "{line}");
        assert!(line.contains("RESET_FLAG_REQUIRE_ENTRY"), "{line}");
        let escrow = device_message(&pb::DeviceMessage {
            body: Some(pb::device_message::Body::EscrowToken(
                pb::EscrowTokenUpdate {
                    scope: 2,
                    token: b"another-secret-token-another-sec".to_vec(),
                },
            )),
        });
        assert_eq!(
            escrow,
            "EscrowTokenUpdate scope=WORK_PROFILE token=<redacted 32 bytes>"
        );
    }
}
