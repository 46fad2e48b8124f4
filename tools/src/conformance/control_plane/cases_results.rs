//! Control-plane cases about the commands it sends (signature, ids, sequence, the reset's
//! content) and what it does with the device's acknowledgements, results and user events.

use super::super::catalogue::CaseInfo;
use super::super::runner::{Case, CaseResult, ensure, fail};
use super::super::transcript::error_code;
use super::cases_session::case;
use super::raw::{RawDevice, Synced, expect_status};
use super::{CpCtx, policy, state_name};
use droidfleet_proto::v1 as pb;
use tonic::Code;

const TOKEN: [u8; 32] = [9; 32];

pub(super) static CASES: &[Case<CpCtx>] = &[
    Case {
        info: CaseInfo {
            id: "cp.command.signed",
            title: "Commands are Ed25519-signed over the bytes sent and name the admin's action",
            requirements: &["CP-CMD-1", "CP-CMD-2", "CP-KEY-1"],
            tags: &["commands", "security"],
            needs: &[],
            quick: true,
        },
        run: case!(signed),
    },
    Case {
        info: CaseInfo {
            id: "cp.command.sequence",
            title: "A device's commands are numbered from 1 in the order they were created",
            requirements: &["CP-CMD-3"],
            tags: &["commands"],
            needs: &[],
            quick: false,
        },
        run: case!(sequence),
    },
    Case {
        info: CaseInfo {
            id: "cp.command.reset_body",
            title: "A reset carries the escrowed token, a passcode meeting the policy and REQUIRE_ENTRY, whatever token state was reported",
            requirements: &["CP-CMD-4", "CP-CMD-5"],
            tags: &["commands", "reset"],
            needs: &[],
            quick: false,
        },
        run: case!(reset_body),
    },
    Case {
        info: CaseInfo {
            id: "cp.ack.active",
            title: "An acknowledgement makes the action active, once",
            requirements: &["CP-ACK-1"],
            tags: &["results"],
            needs: &[],
            quick: false,
        },
        run: case!(ack_active),
    },
    Case {
        info: CaseInfo {
            id: "cp.result.requires_ack",
            title: "A result for a command never acknowledged is refused, except the refusals that come without one",
            requirements: &["CP-ACK-2"],
            tags: &["results"],
            needs: &[],
            quick: false,
        },
        run: case!(requires_ack),
    },
    Case {
        info: CaseInfo {
            id: "cp.result.done",
            title: "A success ends the action done with the device's completion time",
            requirements: &["CP-RESULT-1"],
            tags: &["results"],
            needs: &[],
            quick: true,
        },
        run: case!(done),
    },
    Case {
        info: CaseInfo {
            id: "cp.result.failed",
            title: "A failure is recorded with the device's code and reason; expired ends expired, api_level not_supported",
            requirements: &["CP-RESULT-1"],
            tags: &["results"],
            needs: &[],
            quick: false,
        },
        run: case!(failed),
    },
    Case {
        info: CaseInfo {
            id: "cp.result.invalid",
            title: "Results without a time or with inconsistent codes are refused",
            requirements: &["CP-RESULT-2"],
            tags: &["results"],
            needs: &[],
            quick: false,
        },
        run: case!(invalid),
    },
    Case {
        info: CaseInfo {
            id: "cp.result.first_wins",
            title: "Later results for a finished command are accepted and ignored",
            requirements: &["CP-RESULT-3"],
            tags: &["results", "delivery"],
            needs: &[],
            quick: false,
        },
        run: case!(first_wins),
    },
    Case {
        info: CaseInfo {
            id: "cp.report.other_device",
            title: "Reports on another device's (or no) command are refused and change nothing",
            requirements: &["CP-RESULT-4"],
            tags: &["results", "security"],
            needs: &[],
            quick: false,
        },
        run: case!(other_device),
    },
    Case {
        info: CaseInfo {
            id: "cp.user.entry",
            title: "The user's entry is recorded after a done reset, and only then",
            requirements: &["CP-USER-1"],
            tags: &["results", "reset"],
            needs: &[],
            quick: false,
        },
        run: case!(user_entry),
    },
];

/// A ready COSU device with one reset queued and its session open on that command.
async fn delivered(
    ctx: &mut CpCtx,
) -> Result<
    (
        RawDevice,
        super::raw::RawSession,
        pb::Action,
        pb::CommandBody,
    ),
    super::super::runner::Outcome,
> {
    let device = ctx.ready(pb::Ownership::Cosu, &TOKEN).await?;
    let action = ctx.reset(&device, 0).await?;
    let mut session = device.open().await?;
    let (_, command, _) = session.next_command("the queued reset").await?;
    Ok((device, session, action, command))
}

async fn signed(ctx: &mut CpCtx) -> CaseResult {
    let device = ctx.ready(pb::Ownership::Byod, &TOKEN).await?;
    let action = ctx.reset(&device, 0).await?;
    let mut session = device.open().await?;
    let (_, body, signed) = session.next_command("the queued reset").await?;
    ensure!(
        signed.signature.len() == 64,
        "the signature is {} bytes, not a 64-byte Ed25519 signature",
        signed.signature.len()
    );
    let key =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &device.signing_key);
    ensure!(
        key.verify(&signed.body, &signed.signature).is_ok(),
        "the signature does not verify over the body bytes sent with the key given at \
         enrollment (CP-CMD-1)"
    );
    let expected = droidfleet_proto::signing::key_id(&device.signing_key);
    ensure!(
        signed.key_id == expected,
        "the command's key_id is {:02x?}, not {expected:02x?}, the first 8 bytes of the SHA-256 \
         of the key given at enrollment (CP-KEY-1)",
        signed.key_id
    );
    ensure!(
        body.command_id == action.action_id,
        "command_id {:?} is not the admin's action id {:?} (CP-CMD-2)",
        body.command_id,
        action.action_id
    );
    ensure!(
        body.device_id == device.device_id,
        "the command names device {:?}, not {:?} (CP-CMD-2)",
        body.device_id,
        device.device_id
    );
    ensure!(
        body.not_after_ms == action.not_after_ms && body.not_after_ms > 0,
        "not_after_ms is {}, the action's is {} (CP-CMD-2)",
        body.not_after_ms,
        action.not_after_ms
    );
    session.close().await;
    Ok(())
}

async fn sequence(ctx: &mut CpCtx) -> CaseResult {
    let device = ctx.ready(pb::Ownership::Cosu, &TOKEN).await?;
    let mut actions = Vec::new();
    for _ in 0..3 {
        actions.push(ctx.reset(&device, 0).await?.action_id);
    }
    let mut session = device.open().await?;
    let mut sequences = Vec::new();
    for action in &actions {
        let (_, body, _) = session.next_command("the queued resets").await?;
        ensure!(
            &body.command_id == action,
            "got {:?} where the reset created next, {action:?}, was due",
            body.command_id
        );
        sequences.push(body.sequence);
    }
    ensure!(
        sequences.first() == Some(&1),
        "the device's first command has sequence {:?}, not 1 (CP-CMD-3)",
        sequences.first()
    );
    ensure!(
        sequences.windows(2).all(|w| w[0] < w[1]),
        "sequences {sequences:?} do not increase in creation order (CP-CMD-3)"
    );
    session.close().await;
    Ok(())
}

/// The device model's policy type for a protobuf policy, to judge a passcode as a device would.
fn device_policy(policy: &pb::PasscodePolicy) -> droidfleet_agent::device::PasscodePolicy {
    use droidfleet_agent::device::{PasscodeComplexity, PasscodeType};
    droidfleet_agent::device::PasscodePolicy {
        passcode_type: match pb::PasscodeType::try_from(policy.r#type) {
            Ok(pb::PasscodeType::Pin) => PasscodeType::Pin,
            Ok(pb::PasscodeType::NumericComplex) => PasscodeType::NumericComplex,
            Ok(pb::PasscodeType::Alphanumeric) => PasscodeType::Alphanumeric,
            Ok(pb::PasscodeType::Complex) => PasscodeType::Complex,
            _ => PasscodeType::Unspecified,
        },
        min_length: policy.min_length,
        complexity: match pb::PasscodeComplexity::try_from(policy.complexity) {
            Ok(pb::PasscodeComplexity::Low) => PasscodeComplexity::Low,
            Ok(pb::PasscodeComplexity::Medium) => PasscodeComplexity::Medium,
            Ok(pb::PasscodeComplexity::High) => PasscodeComplexity::High,
            _ => PasscodeComplexity::Unspecified,
        },
        min_letters: policy.min_letters,
        min_upper_case: policy.min_upper_case,
        min_lower_case: policy.min_lower_case,
        min_digits: policy.min_digits,
        min_symbols: policy.min_symbols,
        min_non_letters: policy.min_non_letters,
        max_failed_attempts_before_wipe: policy.max_failed_attempts_before_wipe,
    }
}

async fn reset_body(ctx: &mut CpCtx) -> CaseResult {
    for ownership in [pb::Ownership::Cosu, pb::Ownership::Byod] {
        let mut device = ctx.ready(ownership, &TOKEN).await?;
        // The device reports its token pending: the reset still goes out (CP-CMD-5).
        device.token_state = pb::TokenState::Pending;
        let complex = pb::PasscodePolicy {
            r#type: pb::PasscodeType::Complex as i32,
            min_length: 10,
            min_upper_case: 1,
            min_symbols: 2,
            min_digits: 2,
            ..Default::default()
        };
        for assigned in [policy(device.reset_scope()), complex] {
            ctx.assign_policy(&device, Some(assigned)).await?;
            let action = ctx.reset(&device, 0).await?;
            let mut session = device.open().await?;
            let (_, body, _) = session.next_command("the reset").await?;
            ensure!(
                body.command_id == action.action_id,
                "expected the reset {:?}, got {:?}",
                action.action_id,
                body.command_id
            );
            let Some(pb::command_body::Kind::ResetPasscode(reset)) = body.kind else {
                return Err(fail("the reset's command is not a ResetPasscodeCommand"));
            };
            ensure!(
                reset.scope == device.reset_scope() as i32,
                "the reset names store {}, not the action's {:?} (CP-CMD-4)",
                reset.scope,
                device.reset_scope()
            );
            ensure!(
                reset.escrow_token == TOKEN,
                "the reset does not carry the token the device escrowed (CP-CMD-4)"
            );
            ensure!(
                reset.flags == vec![pb::ResetFlag::RequireEntry as i32],
                "the reset's flags are {:?}, not exactly [REQUIRE_ENTRY] (CP-CMD-4)",
                reset.flags
            );
            ctx.transcript.secret(&reset.new_passcode);
            let verdict = droidfleet_agent::device::policy::validate(
                Some(&device_policy(&assigned)),
                &droidfleet_agent::device::Passcode::new(reset.new_passcode),
            );
            ensure!(
                verdict.is_ok(),
                "the generated passcode breaks the store's policy ({}): {} (CP-CMD-4)",
                super::super::transcript::policy(&assigned),
                verdict.err().map(|v| v.to_string()).unwrap_or_default()
            );
            session.ack(&body.command_id).await;
            session.result(&body.command_id, None).await;
            session.close().await;
        }
    }
    Ok(())
}

async fn ack_active(ctx: &mut CpCtx) -> CaseResult {
    let (device, mut session, action, command) = delivered(ctx).await?;
    session.ack(&command.command_id).await;
    ensure!(
        matches!(session.sync(&device, &ctx.admin).await?, Synced::Open),
        "an acknowledgement ended the session"
    );
    let active = ctx.action(&action.action_id).await?;
    ensure!(
        active.state == pb::ActionState::Active as i32 && active.delivered_at_ms > 0,
        "after the ack the action is {} with delivered_at_ms {} (CP-ACK-1)",
        state_name(active.state),
        active.delivered_at_ms
    );
    session.ack(&command.command_id).await;
    ensure!(
        matches!(session.sync(&device, &ctx.admin).await?, Synced::Open),
        "a second acknowledgement ended the session"
    );
    let again = ctx.action(&action.action_id).await?;
    ensure!(
        again == active,
        "a second acknowledgement changed the action (CP-ACK-1)"
    );
    session.close().await;
    Ok(())
}

async fn requires_ack(ctx: &mut CpCtx) -> CaseResult {
    let (device, mut session, action, command) = delivered(ctx).await?;
    session.result(&command.command_id, None).await;
    let ended = session.ended().await?;
    expect_status(
        ended,
        Code::FailedPrecondition,
        "",
        "a result for a command never acknowledged",
    )?;
    let unchanged = ctx.action(&action.action_id).await?;
    ensure!(
        unchanged.state == pb::ActionState::Pending as i32,
        "the unacknowledged result moved the action to {} (CP-ACK-2)",
        state_name(unchanged.state)
    );
    // A refusal the device gives without an ack is accepted.
    let mut session = device.open().await?;
    let (_, again, _) = session.next_command("the redelivered reset").await?;
    session
        .result(&again.command_id, Some(pb::ErrorCode::BadSignature))
        .await;
    ensure!(
        matches!(session.sync(&device, &ctx.admin).await?, Synced::Open),
        "a BAD_SIGNATURE result without an ack ended the session; a device never acknowledges \
         a command it cannot verify (CP-ACK-2)"
    );
    let failed = ctx.action(&action.action_id).await?;
    ensure!(
        failed.state == pb::ActionState::Failed as i32
            && failed.error_code == pb::ErrorCode::BadSignature as i32,
        "after a BAD_SIGNATURE result the action is {} {} (CP-ACK-2)",
        state_name(failed.state),
        error_code(failed.error_code)
    );
    session.close().await;
    Ok(())
}

async fn done(ctx: &mut CpCtx) -> CaseResult {
    let (device, mut session, action, command) = delivered(ctx).await?;
    session.ack(&command.command_id).await;
    let device_clock = 1_600_000_000_123;
    session
        .send(pb::device_message::Body::Result(pb::CommandResult {
            command_id: command.command_id.clone(),
            success: true,
            completed_at_ms: device_clock,
            ..Default::default()
        }))
        .await;
    ensure!(
        matches!(session.sync(&device, &ctx.admin).await?, Synced::Open),
        "a valid result ended the session"
    );
    let finished = ctx.action(&action.action_id).await?;
    ensure!(
        finished.state == pb::ActionState::Done as i32,
        "after a success the action is {} (CP-RESULT-1)",
        state_name(finished.state)
    );
    ensure!(
        finished.completed_at_ms == device_clock,
        "completed_at_ms is {}, not the device's {device_clock} (CP-RESULT-1)",
        finished.completed_at_ms
    );
    session.close().await;
    Ok(())
}

async fn failed(ctx: &mut CpCtx) -> CaseResult {
    for (code, state) in [
        (pb::ErrorCode::TokenMismatch, pb::ActionState::Failed),
        (pb::ErrorCode::Expired, pb::ActionState::Expired),
        (pb::ErrorCode::ApiLevel, pb::ActionState::NotSupported),
    ] {
        let (device, mut session, action, command) = delivered(ctx).await?;
        session.ack(&command.command_id).await;
        session.result(&command.command_id, Some(code)).await;
        ensure!(
            matches!(session.sync(&device, &ctx.admin).await?, Synced::Open),
            "a valid failure ended the session"
        );
        let finished = ctx.action(&action.action_id).await?;
        ensure!(
            finished.state == state as i32 && finished.error_code == code as i32,
            "after a {} failure the action is {} {} (CP-RESULT-1)",
            error_code(code as i32),
            state_name(finished.state),
            error_code(finished.error_code)
        );
        ensure!(
            code == pb::ErrorCode::Expired || finished.reason.contains("raw device says no"),
            "the device's reason was not recorded: {:?}",
            finished.reason
        );
        session.close().await;
    }
    Ok(())
}

async fn invalid(ctx: &mut CpCtx) -> CaseResult {
    let (device, session, action, command) = delivered(ctx).await?;
    session.ack(&command.command_id).await;
    session.close().await;
    let id = command.command_id.clone();
    let variants = [
        (
            "completed_at_ms 0",
            pb::CommandResult {
                command_id: id.clone(),
                success: true,
                ..Default::default()
            },
            "result.completed_at_ms",
        ),
        (
            "a failure without a code",
            pb::CommandResult {
                command_id: id.clone(),
                success: false,
                completed_at_ms: 1,
                ..Default::default()
            },
            "result.error_code",
        ),
        (
            "a success with a code",
            pb::CommandResult {
                command_id: id.clone(),
                success: true,
                error_code: pb::ErrorCode::TokenMismatch as i32,
                completed_at_ms: 1,
                ..Default::default()
            },
            "result.error_code",
        ),
        (
            "a control plane's code",
            pb::CommandResult {
                command_id: id.clone(),
                success: false,
                error_code: pb::ErrorCode::NoPasscodePolicy as i32,
                completed_at_ms: 1,
                ..Default::default()
            },
            "result.error_code",
        ),
    ];
    for (what, result, field) in variants {
        let mut session = device.open().await?;
        let _ = session.next_command("the redelivered reset").await?;
        session.ack(&id).await;
        session.send(pb::device_message::Body::Result(result)).await;
        let ended = session.ended().await?;
        expect_status(ended, Code::InvalidArgument, field, what)?;
        let unchanged = ctx.action(&action.action_id).await?;
        ensure!(
            unchanged.state == pb::ActionState::Active as i32,
            "a result with {what} moved the action to {} (CP-RESULT-2)",
            state_name(unchanged.state)
        );
    }
    Ok(())
}

async fn first_wins(ctx: &mut CpCtx) -> CaseResult {
    let (device, mut session, action, command) = delivered(ctx).await?;
    session.ack(&command.command_id).await;
    session.result(&command.command_id, None).await;
    ensure!(
        matches!(session.sync(&device, &ctx.admin).await?, Synced::Open),
        "a valid result ended the session"
    );
    let first = ctx.action(&action.action_id).await?;
    session.result(&command.command_id, None).await;
    session
        .result(&command.command_id, Some(pb::ErrorCode::TokenMismatch))
        .await;
    ensure!(
        matches!(session.sync(&device, &ctx.admin).await?, Synced::Open),
        "a repeated or conflicting result for a finished command ended the session; it must be \
         accepted and ignored (CP-RESULT-3)"
    );
    let after = ctx.action(&action.action_id).await?;
    ensure!(
        after == first,
        "a later result changed the finished action to {} {} (CP-RESULT-3)",
        state_name(after.state),
        error_code(after.error_code)
    );
    session.close().await;
    Ok(())
}

async fn other_device(ctx: &mut CpCtx) -> CaseResult {
    let victim = ctx.ready(pb::Ownership::Cosu, &TOKEN).await?;
    let action = ctx.reset(&victim, 0).await?;
    let intruder = ctx.enroll(pb::Ownership::Cosu).await?;
    let before = ctx.action(&action.action_id).await?;
    let id = action.action_id.clone();
    let reports: Vec<(&str, pb::device_message::Body)> = vec![
        (
            "an ack",
            pb::device_message::Body::Ack(pb::CommandAck {
                command_id: id.clone(),
                traceparent: String::new(),
            }),
        ),
        (
            "a result",
            pb::device_message::Body::Result(pb::CommandResult {
                command_id: id.clone(),
                success: true,
                completed_at_ms: 1,
                ..Default::default()
            }),
        ),
        (
            "a user event",
            pb::device_message::Body::UserEvent(pb::UserEvent {
                kind: pb::user_event::Kind::NewPasscodeEntered as i32,
                scope: pb::CredentialScope::Device as i32,
                at_ms: 1,
                command_id: id.clone(),
            }),
        ),
        (
            "an ack for a command that does not exist",
            pb::device_message::Body::Ack(pb::CommandAck {
                command_id: "no-such-command".into(),
                traceparent: String::new(),
            }),
        ),
    ];
    for (what, body) in reports {
        let mut session = intruder.open().await?;
        session.send(body).await;
        let ended = session.ended().await?;
        expect_status(
            ended,
            Code::NotFound,
            "",
            &format!("{what} for another device's command"),
        )?;
        let now = ctx.action(&action.action_id).await?;
        ensure!(
            now == before,
            "{what} from another device changed the action to {} (CP-RESULT-4)",
            state_name(now.state)
        );
    }
    Ok(())
}

async fn user_entry(ctx: &mut CpCtx) -> CaseResult {
    let (device, mut session, action, command) = delivered(ctx).await?;
    let scope = device.reset_scope();
    // Before the result: refused.
    session.ack(&command.command_id).await;
    session
        .entered(&command.command_id, scope, 1_600_000_000_000)
        .await;
    let ended = session.ended().await?;
    expect_status(
        ended,
        Code::FailedPrecondition,
        "",
        "a passcode entry before the reset's result",
    )?;
    ensure!(
        ctx.action(&action.action_id).await?.user_entered_at_ms == 0,
        "an entry before the reset's result was recorded (CP-USER-1)"
    );
    let mut session = device.open().await?;
    let _ = session.next_command("the redelivered reset").await?;
    session.ack(&command.command_id).await;
    session.result(&command.command_id, None).await;
    session.entered(&command.command_id, scope, 0).await;
    let ended = session.ended().await?;
    expect_status(
        ended,
        Code::InvalidArgument,
        "at_ms",
        "an entry with at_ms 0",
    )?;
    let mut session = device.open().await?;
    let at = 1_600_000_000_456;
    session.entered(&command.command_id, scope, at).await;
    ensure!(
        matches!(session.sync(&device, &ctx.admin).await?, Synced::Open),
        "a valid entry for a done reset ended the session"
    );
    let entered = ctx.action(&action.action_id).await?;
    ensure!(
        entered.user_entered_at_ms == at,
        "user_entered_at_ms is {}, not the event's at_ms {at} (CP-USER-1)",
        entered.user_entered_at_ms
    );
    session.close().await;
    Ok(())
}
