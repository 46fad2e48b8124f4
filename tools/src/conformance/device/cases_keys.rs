//! Device cases about the control plane's signing key: a command under the id of a key the
//! device does not trust is refused, and the device follows a key update its trusted key signed
//! (and no other). The update case hands the device a second key and back again, so the cases
//! after it find the device trusting the kit's key as before.

use super::super::catalogue::CaseInfo;
use super::super::runner::{Case, CaseResult, Outcome, ensure};
use super::super::transcript::error_code;
use super::cases_commands::case;
use super::commands::{self, SentCommand};
use super::{DeviceCtx, is_ack};
use droidfleet_proto::v1 as pb;
use ring::signature::Ed25519KeyPair;

pub(super) static CASES: &[Case<DeviceCtx>] = &[
    Case {
        info: CaseInfo {
            id: "dev.command.unknown_key",
            title: "A command under the id of a key the device does not trust is refused",
            requirements: &["DEV-KEY-1", "DEV-ACK-1"],
            tags: &["commands", "keys", "security"],
            needs: &[],
            quick: true,
        },
        run: case!(unknown_key),
    },
    Case {
        info: CaseInfo {
            id: "dev.key.update",
            title: "The device follows a key update its trusted key signed, and no other",
            requirements: &["DEV-KEY-1", "DEV-KEY-2"],
            tags: &["keys", "security"],
            needs: &[],
            quick: false,
        },
        run: case!(key_update),
    },
];

fn new_key() -> Ed25519KeyPair {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("the system RNG works");
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("a key just generated parses")
}

/// Sends `command`, then a barrier signed with `trusted` (the key the device should trust by
/// then): the device must not acknowledge `command`, and may answer it only BAD_SIGNATURE
/// (PROTOCOL.md DEV-CMD-2).
async fn expect_refused(
    ctx: &mut DeviceCtx,
    command: &SentCommand,
    trusted: Option<&Ed25519KeyPair>,
    what: &str,
    requirement: &str,
) -> CaseResult {
    ctx.send(command.message()).await?;
    let before = match trusted {
        Some(key) => barrier_with(ctx, key).await?,
        None => ctx.barrier().await?,
    };
    ensure!(
        !before.iter().any(|m| is_ack(m, &command.id)),
        "acknowledged {what} ({requirement}, DEV-ACK-1)"
    );
    for message in &before {
        if let Some(pb::device_message::Body::Result(result)) = &message.body
            && result.command_id == command.id
        {
            ensure!(
                !result.success && result.error_code == pb::ErrorCode::BadSignature as i32,
                "answered {what} {} instead of BAD_SIGNATURE ({requirement})",
                if result.success {
                    "success".to_string()
                } else {
                    error_code(result.error_code)
                }
            );
        }
    }
    Ok(())
}

/// The barrier (an expired probe answered EXPIRED, after everything sent before it), signed with
/// `key` instead of the kit's.
async fn barrier_with(
    ctx: &mut DeviceCtx,
    key: &Ed25519KeyPair,
) -> Result<Vec<pb::DeviceMessage>, Outcome> {
    let probe = probe_signed_with(ctx, key);
    let (before, result) = ctx.exchange(&probe, true).await?;
    ensure!(
        result.error_code == pb::ErrorCode::Expired as i32,
        "an expired command signed with the key the device was told to follow was answered {} \
         instead of EXPIRED: the device did not follow the key update (DEV-KEY-2)",
        error_code(result.error_code)
    );
    Ok(before)
}

/// An expired, harmless command (as the barrier's probe) signed with `key`.
fn probe_signed_with(ctx: &mut DeviceCtx, key: &Ed25519KeyPair) -> SentCommand {
    let scope = ctx.reset_scope();
    let mut body = ctx.body(commands::reset(scope, "860273", vec![0x55; 32]));
    body.not_after_ms = 1;
    SentCommand::signed(&body, key)
}

async fn unknown_key(ctx: &mut DeviceCtx) -> CaseResult {
    ctx.barrier().await?;
    let other = commands::key_id(&ctx.forger);
    for (key_id, what) in [
        (other, "a command under another key's id"),
        (Vec::new(), "a command with no key id"),
    ] {
        // The kit's own valid signature: only the key id is wrong.
        let mut command = ctx.probe();
        command.key_id = key_id;
        expect_refused(ctx, &command, None, what, "DEV-KEY-1").await?;
    }
    Ok(())
}

async fn key_update(ctx: &mut DeviceCtx) -> CaseResult {
    ctx.barrier().await?;
    let device_id = ctx.device_id();
    let next = new_key();
    // Not followed: signed by a key the device does not trust (under its own id, or claiming
    // the kit's), and the kit's key naming the next one for another device.
    let forged = commands::key_update(&ctx.forger, &device_id, &next);
    let mut forged_claiming_kit = forged.clone();
    if let Some(pb::control_message::Body::KeyUpdate(update)) = &mut forged_claiming_kit.body {
        update.key_id = commands::key_id(&ctx.shared.key);
    }
    let misrouted = commands::key_update(&ctx.shared.key, &format!("{device_id}-other"), &next);
    for message in [forged, forged_claiming_kit, misrouted] {
        ctx.send(message).await?;
    }
    let early = probe_signed_with(ctx, &next);
    expect_refused(
        ctx,
        &early,
        None,
        "a command signed with a key only forged or misrouted key updates named",
        "DEV-KEY-2",
    )
    .await?;

    // Followed: the kit's key names the next one, and the old key signs nothing accepted any
    // more (the barrier after it is signed with the next key).
    ctx.send(commands::key_update(&ctx.shared.key, &device_id, &next))
        .await?;
    let old = ctx.probe();
    expect_refused(
        ctx,
        &old,
        Some(&next),
        "a command signed with the key a key update replaced",
        "DEV-KEY-2",
    )
    .await?;

    // Back to the kit's key, signed by the one the device now trusts.
    ctx.send(commands::key_update(&next, &device_id, &ctx.shared.key))
        .await?;
    ctx.barrier().await?;
    Ok(())
}
