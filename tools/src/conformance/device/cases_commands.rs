//! Device cases about enrollment, the session's opening and signed commands: signatures (forged,
//! verified over the bytes received), other devices' and malformed commands, expiry, sequence,
//! redelivery and pipelining. Every command here is harmless to a conforming device (expired,
//! or refused by its store), so the cases leave the device as they found it.

use super::super::catalogue::{CaseInfo, Need};
use super::super::runner::{Case, CaseResult, ensure, fail};
use super::super::transcript::error_code;
use super::commands::{self, SentCommand, non_canonical};
use super::gateway::stores_of;
use super::{DeviceCtx, is_ack};
use droidfleet_proto::v1 as pb;

/// A case's run function: `case!(function)` boxes the future of `async fn function(ctx)`.
macro_rules! case {
    ($function:ident) => {{
        fn run(
            ctx: &mut $crate::conformance::device::DeviceCtx,
        ) -> $crate::conformance::runner::CaseFuture<'_> {
            Box::pin($function(ctx))
        }
        run
    }};
}
pub(super) use case;

pub(super) static CASES: &[Case<DeviceCtx>] = &[
    Case {
        info: CaseInfo {
            id: "dev.enroll",
            title: "The device enrolls once, with its enrollment type and a display name",
            requirements: &["DEV-ENROLL-1"],
            tags: &["enrollment"],
            needs: &[],
            quick: true,
        },
        run: case!(enroll),
    },
    Case {
        info: CaseInfo {
            id: "dev.session.hello",
            title: "Every session opens with a Hello naming the device and reporting every store",
            requirements: &["DEV-SESSION-1", "DEV-SESSION-2"],
            tags: &["session"],
            needs: &[],
            quick: true,
        },
        run: case!(hello),
    },
    Case {
        info: CaseInfo {
            id: "dev.session.proof",
            title: "Every session's challenge is answered with a proof by the key the device \
                    enrolled with",
            requirements: &["DEV-ENROLL-2", "DEV-SESSION-4"],
            tags: &["session", "enrollment"],
            needs: &[],
            quick: true,
        },
        run: case!(session_proof),
    },
    Case {
        info: CaseInfo {
            id: "dev.escrow.each_session",
            title: "After the Hello the device escrows the token of each store that has one",
            requirements: &["DEV-TOKEN-1"],
            tags: &["session", "tokens"],
            needs: &[],
            quick: false,
        },
        run: case!(escrow_each_session),
    },
    Case {
        info: CaseInfo {
            id: "dev.command.forged",
            title: "A forged command is refused, never acknowledged, and does not take its id",
            requirements: &["DEV-CMD-2", "DEV-ACK-1"],
            tags: &["commands", "security"],
            needs: &[],
            quick: true,
        },
        run: case!(forged),
    },
    Case {
        info: CaseInfo {
            id: "dev.command.other_device",
            title: "A command for another device is answered wrong_device, without an ack",
            requirements: &["DEV-CMD-3", "DEV-ACK-1"],
            tags: &["commands", "security"],
            needs: &[],
            quick: false,
        },
        run: case!(other_device),
    },
    Case {
        info: CaseInfo {
            id: "dev.command.malformed",
            title: "A signed body that is not a command is not run and the session goes on",
            requirements: &["DEV-CMD-4"],
            tags: &["commands"],
            needs: &[],
            quick: false,
        },
        run: case!(malformed),
    },
    Case {
        info: CaseInfo {
            id: "dev.command.received_bytes",
            title: "The signature is checked over the bytes received, not a re-encoding",
            requirements: &["DEV-CMD-1"],
            tags: &["commands", "security"],
            needs: &[],
            quick: false,
        },
        run: case!(received_bytes),
    },
    Case {
        info: CaseInfo {
            id: "dev.command.expired",
            title: "An expired command is refused expired and changes nothing",
            requirements: &["DEV-CMD-6", "DEV-RESULT-1"],
            tags: &["commands"],
            needs: &[],
            quick: true,
        },
        run: case!(expired),
    },
    Case {
        info: CaseInfo {
            id: "dev.command.replayed",
            title: "A new command with an old sequence is refused replayed; gaps are fine",
            requirements: &["DEV-CMD-5"],
            tags: &["commands", "security"],
            needs: &[],
            quick: false,
        },
        run: case!(replayed),
    },
    Case {
        info: CaseInfo {
            id: "dev.command.cancel",
            title: "A cancel of an answered command is refused with that answer repeated; a \
                    cancel of one never received is accepted and the command never runs",
            requirements: &["DEV-CANCEL-1"],
            tags: &["commands", "cancel"],
            needs: &[Need::Cancel],
            quick: false,
        },
        run: case!(cancel),
    },
    Case {
        info: CaseInfo {
            id: "dev.command.redelivery",
            title: "A redelivered command is acknowledged again and answered from the record",
            requirements: &["DEV-CMD-7", "DEV-ACK-1"],
            tags: &["commands", "delivery"],
            needs: &[],
            quick: false,
        },
        run: case!(redelivery),
    },
    Case {
        info: CaseInfo {
            id: "dev.command.pipelined",
            title: "Commands sent back to back are acknowledged and answered in order",
            requirements: &["DEV-CMD-8", "DEV-ACK-1"],
            tags: &["commands", "delivery"],
            needs: &[],
            quick: false,
        },
        run: case!(pipelined),
    },
];

async fn enroll(ctx: &mut DeviceCtx) -> CaseResult {
    let requests = &ctx.view.enroll_requests;
    ensure!(
        requests.len() == 1,
        "the device enrolled {} times; it must enroll once and keep its credential (DEV-ENROLL-1)",
        requests.len()
    );
    let request = &requests[0];
    let ownership = pb::Ownership::try_from(request.ownership).unwrap_or_default();
    ensure!(
        ownership != pb::Ownership::Unspecified,
        "enrolled with ownership {}, not an enrollment type",
        request.ownership
    );
    let name = &request.display_name;
    ensure!(
        !name.trim().is_empty() && name.chars().count() <= 128,
        "enrolled with a display name of {} characters; it must have 1 to 128",
        name.chars().count()
    );
    let declared = ctx.capabilities.enrollment_types.clone();
    let kind = ownership
        .as_str_name()
        .trim_start_matches("OWNERSHIP_")
        .to_lowercase();
    ensure!(
        declared.is_empty() || declared.contains(&kind),
        "enrolled as {kind}, which the capability statement does not declare ({})",
        declared.join(", ")
    );
    Ok(())
}

/// Above any Android API level for years to come (PROTOCOL.md DEV-SESSION-1).
const MAX_API_LEVEL: u32 = 99;

async fn hello(ctx: &mut DeviceCtx) -> CaseResult {
    ctx.open_session().await?;
    let device_id = ctx.device_id();
    let wanted: Vec<i32> = stores_of(ctx.ownership())
        .into_iter()
        .map(|s| s as i32)
        .collect();
    ensure!(!ctx.view.sessions.is_empty(), "no session has opened");
    for (session, messages) in &ctx.view.sessions {
        let Some(pb::device_message::Body::Hello(hello)) =
            messages.first().and_then(|m| m.body.as_ref())
        else {
            return Err(fail(format!(
                "session {session} did not open with a Hello (DEV-SESSION-1)"
            )));
        };
        ensure!(
            hello.device_id == device_id,
            "session {session}'s Hello names {:?}, not the device's id {device_id:?}",
            hello.device_id
        );
        ensure!(
            hello.agent_version.chars().count() <= 128
                && !hello.agent_version.chars().any(char::is_control),
            "session {session}'s Hello has an agent_version over 128 characters or with control \
             characters"
        );
        ensure!(
            hello.api_level <= MAX_API_LEVEL,
            "session {session}'s Hello reports API level {}, which no Android has (0 when unknown, \
             26 for Android 8.0 ... 35 for Android 15; DEV-SESSION-1)",
            hello.api_level
        );
        ensure!(
            hello.maker_profile.chars().count() <= 64
                && !hello.maker_profile.chars().any(char::is_control),
            "session {session}'s Hello has a maker_profile over 64 characters or with control \
             characters (DEV-SESSION-1)"
        );
        let Some(status) = &hello.status else {
            return Err(fail(format!(
                "session {session}'s Hello has no status (DEV-SESSION-2)"
            )));
        };
        let mut reported: Vec<i32> = status.stores.iter().map(|s| s.scope).collect();
        reported.sort_unstable();
        ensure!(
            reported == wanted,
            "session {session}'s Hello reports stores {reported:?}; a {:?} device has exactly \
             {wanted:?} (DEV-SESSION-2)",
            ctx.ownership()
        );
    }
    Ok(())
}

async fn session_proof(ctx: &mut DeviceCtx) -> CaseResult {
    // The kit's gateway challenges every session and sends its policies only after a proof that
    // verifies with the key from the device's EnrollRequest; it refuses any other.
    ctx.open_session().await?;
    ctx.barrier().await?;
    let (verified, refused) = {
        let state = ctx.shared.state();
        (state.proofs_verified, state.proofs_refused)
    };
    ensure!(
        refused == 0,
        "{refused} session proof(s) did not verify with the public key the device enrolled with \
         (DEV-SESSION-4)"
    );
    ensure!(
        verified > 0,
        "no session was opened with a proof answering the kit's challenge (DEV-SESSION-4)"
    );
    Ok(())
}

async fn escrow_each_session(ctx: &mut DeviceCtx) -> CaseResult {
    // Whatever the device sends when a session opens has arrived once a barrier is answered.
    ctx.barrier().await?;
    let session = ctx
        .session_number()
        .ok_or_else(|| fail("the device has no session open"))?;
    let messages = ctx.view.sessions.get(&session).cloned().unwrap_or_default();
    let Some(pb::device_message::Body::Hello(hello)) =
        messages.first().and_then(|m| m.body.clone())
    else {
        return Err(fail(format!(
            "session {session} did not open with a Hello (DEV-SESSION-1)"
        )));
    };
    let with_token: Vec<i32> = hello
        .status
        .iter()
        .flat_map(|s| &s.stores)
        .filter(|s| {
            matches!(
                pb::TokenState::try_from(s.token_state),
                Ok(pb::TokenState::Pending | pb::TokenState::Active)
            )
        })
        .map(|s| s.scope)
        .collect();
    ensure!(
        !with_token.is_empty(),
        "the Hello reports no store with a token; a managed device's app sets one per store at \
         enrollment (DEV-TOKEN-3)"
    );
    for scope in with_token {
        let escrow = messages.iter().skip(1).find_map(|m| match &m.body {
            Some(pb::device_message::Body::EscrowToken(e)) if e.scope == scope => Some(e),
            _ => None,
        });
        let Some(escrow) = escrow else {
            return Err(fail(format!(
                "session {session} escrowed no token for store {scope}, which has one \
                 (DEV-TOKEN-1)"
            )));
        };
        ensure!(
            (32..=1024).contains(&escrow.token.len()),
            "escrowed a token of {} bytes; it must be 32 to 1024",
            escrow.token.len()
        );
    }
    Ok(())
}

async fn forged(ctx: &mut DeviceCtx) -> CaseResult {
    let scope = ctx.reset_scope();
    let mut body = ctx.body(commands::reset(scope, "860273", vec![0x55; 32]));
    body.not_after_ms = 1;
    let mut forged = SentCommand::signed(&body, &ctx.forger);
    // Claiming the kit's key id, so only the signature check can refuse it.
    forged.key_id = super::commands::key_id(&ctx.shared.key);
    ctx.transcript.record(
        "kit",
        format!("forges (another key): {}", forged.describe()),
    );
    ctx.send(forged.message()).await?;
    let before = ctx.barrier().await?;
    ensure!(
        !before.iter().any(|m| is_ack(m, &forged.id)),
        "acknowledged a command whose signature does not verify (DEV-CMD-2, DEV-ACK-1)"
    );
    for message in &before {
        if let Some(pb::device_message::Body::Result(result)) = &message.body
            && result.command_id == forged.id
        {
            ensure!(
                !result.success && result.error_code == pb::ErrorCode::BadSignature as i32,
                "answered a forged command {} instead of BAD_SIGNATURE (DEV-CMD-2)",
                if result.success {
                    "success".to_string()
                } else {
                    error_code(result.error_code)
                }
            );
        }
    }
    // The genuine command with that id runs: the forgery did not take it.
    let mut genuine = body;
    genuine.sequence = ctx.take_sequence();
    genuine.not_after_ms = super::now_ms() + 600_000;
    let genuine = ctx.sign(&genuine);
    let (_, result) = ctx.exchange(&genuine, true).await?;
    ensure!(
        result.error_code != pb::ErrorCode::Expired as i32
            && result.error_code != pb::ErrorCode::BadSignature as i32,
        "the genuine command with the forgery's id was answered {}: the forgery took its id \
         (DEV-CMD-2)",
        error_code(result.error_code)
    );
    Ok(())
}

async fn other_device(ctx: &mut DeviceCtx) -> CaseResult {
    let scope = ctx.reset_scope();
    let mut body = ctx.body(commands::reset(scope, "860273", vec![0x55; 32]));
    body.device_id = "someone-elses-device".into();
    let theirs = ctx.sign(&body);
    let (_, result) = ctx.exchange(&theirs, false).await?;
    ensure!(
        !result.success && result.error_code == pb::ErrorCode::WrongDevice as i32,
        "answered another device's command {} instead of WRONG_DEVICE (DEV-CMD-3)",
        if result.success {
            "success".into()
        } else {
            error_code(result.error_code)
        }
    );
    // Not recorded: the same id for this device runs (an expired one: refused EXPIRED).
    let mut ours = body;
    ours.device_id = ctx.device_id();
    ours.sequence = ctx.take_sequence();
    ours.not_after_ms = 1;
    let ours = ctx.sign(&ours);
    let (_, result) = ctx.exchange(&ours, true).await?;
    ensure!(
        result.error_code == pb::ErrorCode::Expired as i32,
        "the device's own command with that id was answered {}, not EXPIRED: the refusal was \
         recorded (DEV-CMD-3)",
        error_code(result.error_code)
    );
    Ok(())
}

async fn malformed(ctx: &mut DeviceCtx) -> CaseResult {
    let scope = ctx.reset_scope();
    let session = ctx.session_number();
    // A body that parses and names the device, but has no kind.
    let mut body = ctx.body(commands::remote_lock(scope));
    body.kind = None;
    let kindless = ctx.sign(&body);
    let (_, result) = ctx.exchange(&kindless, false).await?;
    ensure!(
        !result.success && result.error_code == pb::ErrorCode::MalformedCommand as i32,
        "answered a command without a kind {} instead of MALFORMED_COMMAND (DEV-CMD-4)",
        if result.success {
            "success".into()
        } else {
            error_code(result.error_code)
        }
    );
    // Signed bytes that are not protobuf at all (wire type 7 does not exist).
    let garbage = SentCommand {
        id: String::new(),
        sequence: 0,
        body: vec![0xff, 0xff, 0xff],
        signature: ctx.shared.key.sign(&[0xff, 0xff, 0xff]).as_ref().to_vec(),
        key_id: super::commands::key_id(&ctx.shared.key),
    };
    ctx.send(garbage.message()).await?;
    ctx.barrier().await?;
    ensure!(
        ctx.session_number() == session && session.is_some(),
        "the session did not survive a signed body that does not decode (DEV-CMD-4)"
    );
    // Not recorded: the kindless command's id runs as a real command later.
    let mut proper = body;
    proper.kind = Some(commands::reset(scope, "860273", vec![0x55; 32]));
    proper.sequence = ctx.take_sequence();
    proper.not_after_ms = 1;
    let proper = ctx.sign(&proper);
    let (_, result) = ctx.exchange(&proper, true).await?;
    ensure!(
        result.error_code == pb::ErrorCode::Expired as i32,
        "a proper command with the malformed one's id was answered {}, not EXPIRED: the \
         malformed body was recorded (DEV-CMD-4)",
        error_code(result.error_code)
    );
    Ok(())
}

async fn received_bytes(ctx: &mut DeviceCtx) -> CaseResult {
    let scope = ctx.reset_scope();
    let mut body = ctx.body(commands::reset(scope, "860273", vec![0x55; 32]));
    body.not_after_ms = 1;
    let bytes = non_canonical(&body);
    let command = SentCommand::signed_bytes(&body, bytes, &ctx.shared.key);
    ctx.transcript.record(
        "kit",
        "the next command's body has its fields in reverse order and an unknown field 99",
    );
    ctx.send(command.message()).await?;
    let (before, result) = ctx.answer(&command.id).await?;
    ensure!(
        result.error_code == pb::ErrorCode::Expired as i32,
        "a genuine command encoded in another field order was answered {}, not EXPIRED: the \
         device verified a re-encoding instead of the bytes it received (DEV-CMD-1)",
        error_code(result.error_code)
    );
    ensure!(
        before.iter().any(|m| is_ack(m, &command.id)),
        "did not acknowledge a genuine command before answering it (DEV-ACK-1)"
    );
    Ok(())
}

async fn expired(ctx: &mut DeviceCtx) -> CaseResult {
    // The escrowed token is known once what the device reported so far is in.
    ctx.barrier().await?;
    let scope = ctx.reset_scope();
    let token = ctx.escrowed(scope).unwrap_or_else(|| vec![0x55; 32]);
    let stores_before = ctx.view.stores.clone();
    let passcode = commands::good_passcodes(scope)[0];
    let mut command = ctx.reset_command(passcode, token);
    // A real reset of the store, but its time is long past.
    let mut body = pb::CommandBody::default();
    prost::Message::merge(&mut body, command.body.as_slice())
        .map_err(|_| fail("the kit could not decode its own command"))?;
    body.not_after_ms = 1;
    command = ctx.sign(&body);
    let (before, result) = ctx.exchange(&command, true).await?;
    ensure!(
        !result.success && result.error_code == pb::ErrorCode::Expired as i32,
        "a reset whose not_after_ms passed long ago was answered {} instead of EXPIRED (DEV-CMD-6)",
        if result.success {
            "success: it ran".into()
        } else {
            error_code(result.error_code)
        }
    );
    let after = ctx.barrier().await?;
    ensure!(
        !before
            .iter()
            .chain(&after)
            .any(|m| matches!(m.body, Some(pb::device_message::Body::EscrowToken(_)))),
        "escrowed a new token after refusing an expired reset: the reset ran (DEV-CMD-6)"
    );
    ensure!(
        ctx.view.stores == stores_before,
        "the device's status changed after an expired reset (DEV-CMD-6)"
    );
    Ok(())
}

async fn cancel(ctx: &mut DeviceCtx) -> CaseResult {
    let cancel_of = |ctx: &mut DeviceCtx, target: &str| {
        let mut body = ctx.body(pb::command_body::Kind::Cancel(pb::CancelCommand {
            command_id: target.to_string(),
        }));
        body.command_id = format!("{target}.cancel");
        ctx.sign(&body)
    };
    // An answered command (refused as expired, so harmless): nothing is left to cancel.
    let answered = ctx.probe();
    let (_, first) = ctx.exchange(&answered, true).await?;
    let refused = cancel_of(ctx, &answered.id);
    let (_, result) = ctx.exchange(&refused, true).await?;
    ensure!(
        !result.success && result.error_code == pb::ErrorCode::AlreadyAnswered as i32,
        "a cancel of a command the device had answered was answered {} instead of \
         ALREADY_ANSWERED (DEV-CANCEL-1)",
        if result.success {
            "success".into()
        } else {
            error_code(result.error_code)
        }
    );
    let after = ctx.barrier().await?;
    ensure!(
        after.iter().any(|m| matches!(
            &m.body,
            Some(pb::device_message::Body::Result(repeated))
                if repeated.command_id == answered.id && repeated.error_code == first.error_code
        )),
        "after refusing the cancel of {:?} the device did not repeat that command's recorded \
         result (DEV-CANCEL-1)",
        answered.id
    );
    // A command the device never received (its sequence below the cancel's, as a control plane
    // numbers them): the cancel is accepted, and the command, should it come, never runs. It is
    // a reset with a wrong token, so a device that ran it would answer TOKEN_MISMATCH.
    let scope = ctx.reset_scope();
    let unseen = ctx.body(commands::reset(scope, "860273", vec![0x55; 32]));
    let unseen = ctx.sign(&unseen);
    let accepted = cancel_of(ctx, &unseen.id);
    let (_, result) = ctx.exchange(&accepted, true).await?;
    ensure!(
        result.success,
        "a cancel of a command the device never received was answered {} instead of success \
         (DEV-CANCEL-1)",
        error_code(result.error_code)
    );
    let (_, late) = ctx.exchange(&unseen, true).await?;
    ensure!(
        late.error_code == pb::ErrorCode::Replayed as i32,
        "a command arriving after its cancel was accepted was answered {} instead of REPLAYED: \
         it must never run (DEV-CANCEL-1)",
        if late.success {
            "success".into()
        } else {
            error_code(late.error_code)
        }
    );
    Ok(())
}

async fn replayed(ctx: &mut DeviceCtx) -> CaseResult {
    let first = ctx.probe();
    let (_, result) = ctx.exchange(&first, true).await?;
    ensure!(
        result.error_code == pb::ErrorCode::Expired as i32,
        "an expired command was answered {} instead of EXPIRED (DEV-CMD-6)",
        error_code(result.error_code)
    );
    let with_sequence = |ctx: &mut DeviceCtx, sequence: u64, id: Option<&str>| {
        let mut command = ctx.probe();
        let mut body = pb::CommandBody::default();
        let _ = prost::Message::merge(&mut body, command.body.as_slice());
        body.sequence = sequence;
        if let Some(id) = id {
            body.command_id = id.to_string();
        }
        command = ctx.sign(&body);
        command
    };
    let same = with_sequence(ctx, first.sequence, None);
    let (_, result) = ctx.exchange(&same, true).await?;
    ensure!(
        result.error_code == pb::ErrorCode::Replayed as i32,
        "a new command with the sequence already answered ({}) was answered {} instead of \
         REPLAYED (DEV-CMD-5)",
        first.sequence,
        error_code(result.error_code)
    );
    let older = with_sequence(ctx, first.sequence.saturating_sub(1), None);
    let (_, result) = ctx.exchange(&older, true).await?;
    ensure!(
        result.error_code == pb::ErrorCode::Replayed as i32,
        "a new command with a lower sequence was answered {} instead of REPLAYED (DEV-CMD-5)",
        error_code(result.error_code)
    );
    // A gap is normal, and the refused id was not recorded: it runs with a fresh sequence.
    ctx.next_sequence += 10;
    let next = ctx.next_sequence;
    let after_gap = with_sequence(ctx, next, Some(&same.id));
    let (_, result) = ctx.exchange(&after_gap, true).await?;
    ensure!(
        result.error_code == pb::ErrorCode::Expired as i32,
        "after a gap of 10 in the sequence, the replayed command's id was answered {} instead \
         of running (EXPIRED): gaps are normal and a replayed refusal is not recorded (DEV-CMD-5)",
        error_code(result.error_code)
    );
    Ok(())
}

async fn redelivery(ctx: &mut DeviceCtx) -> CaseResult {
    let scope = ctx.reset_scope();
    // Built in the order they are sent, so neither is refused for its sequence (a refusal for
    // the sequence is not recorded, and would be judged again).
    let probe = ctx.probe();
    let body = ctx.body(commands::reset(scope, "860273", vec![0x55; 32]));
    let refused = ctx.sign(&body);
    for command in [probe, refused] {
        let (_, first) = ctx.exchange(&command, true).await?;
        ctx.transcript
            .record("kit", "delivers the same command again");
        let (_, again) = ctx.exchange(&command, true).await?;
        ensure!(
            again == first,
            "a redelivered command got another answer ({}, completed_at_ms {}) than the first \
             ({}, completed_at_ms {}): it must be answered from the record (DEV-CMD-7)",
            error_code(again.error_code),
            again.completed_at_ms,
            error_code(first.error_code),
            first.completed_at_ms
        );
    }
    Ok(())
}

async fn pipelined(ctx: &mut DeviceCtx) -> CaseResult {
    let commands: Vec<SentCommand> = (0..3).map(|_| ctx.probe()).collect();
    for command in &commands {
        ctx.send(command.message()).await?;
    }
    let last = commands.last().map(|c| c.id.clone()).unwrap_or_default();
    let (mut before, result) = ctx.answer(&last).await?;
    before.push(pb::DeviceMessage {
        body: Some(pb::device_message::Body::Result(result)),
    });
    let order: Vec<(bool, String)> = before
        .iter()
        .filter_map(|m| match &m.body {
            Some(pb::device_message::Body::Ack(a)) => Some((true, a.command_id.clone())),
            Some(pb::device_message::Body::Result(r)) => Some((false, r.command_id.clone())),
            _ => None,
        })
        .collect();
    let expected: Vec<(bool, String)> = commands
        .iter()
        .flat_map(|c| [(true, c.id.clone()), (false, c.id.clone())])
        .collect();
    ensure!(
        order == expected,
        "three commands sent back to back were acknowledged and answered in the order {:?}; \
         expected ack, result for each in turn (DEV-CMD-8, DEV-ACK-1)",
        order
            .iter()
            .map(|(ack, id)| format!("{}:{id}", if *ack { "ack" } else { "result" }))
            .collect::<Vec<_>>()
    );
    Ok(())
}
