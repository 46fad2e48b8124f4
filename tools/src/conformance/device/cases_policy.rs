//! Device cases about signed policies: a policy that is forged, unsigned, signed as a command,
//! for another device, older than the one applied, or for no store the device has is refused
//! with a `PolicyRefusal`, and the store keeps its policy (checked on the harness's screen where
//! the device serves one).

use super::super::catalogue::CaseInfo;
use super::super::runner::{Case, CaseResult, Outcome, ensure};
use super::super::transcript::error_code;
use super::DeviceCtx;
use super::cases_commands::case;
use super::commands::policy_message;
use droidfleet_proto::v1 as pb;
use prost::Message as _;

pub(super) static CASES: &[Case<DeviceCtx>] = &[
    Case {
        info: CaseInfo {
            id: "dev.policy.bad_signature",
            title: "A forged, unsigned, command-signed or unknown-key policy is refused, unchanged",
            requirements: &["DEV-POLICY-2", "DEV-KEY-1"],
            tags: &["policy", "signature", "security"],
            needs: &[],
            quick: true,
        },
        run: case!(bad_signature),
    },
    Case {
        info: CaseInfo {
            id: "dev.policy.misrouted_or_replayed",
            title: "A policy for another device, an older one or one for no store is refused",
            requirements: &["DEV-POLICY-3"],
            tags: &["policy", "security"],
            needs: &[],
            quick: false,
        },
        run: case!(misrouted_or_replayed),
    },
];

/// A policy no conforming device may apply over the kit's: a PIN of 4, looser than either
/// default policy.
fn loose() -> pb::PasscodePolicy {
    pb::PasscodePolicy {
        r#type: pb::PasscodeType::Pin as i32,
        min_length: 4,
        ..pb::PasscodePolicy::default()
    }
}

/// Sends the reset store's current policy again at a new version, so the device and the kit
/// agree on it (and the version is at least 1) before the case tries to change it.
async fn settle(ctx: &mut DeviceCtx) -> Result<(pb::CredentialScope, u64), Outcome> {
    let scope = ctx.reset_scope();
    let (_, policy) = ctx.current_policy(scope);
    ctx.send_policy(scope, policy).await?;
    let (version, _) = ctx.current_policy(scope);
    Ok((scope, version))
}

/// Sends `policy` as it is and reads up to the barrier behind it: the device must answer it with
/// a `PolicyRefusal` carrying `code`, and the harness (if any) must still show the kit's policy.
async fn expect_refused(
    ctx: &mut DeviceCtx,
    policy: pb::SignedPolicy,
    code: pb::ErrorCode,
    what: &str,
    requirement: &str,
) -> CaseResult {
    ctx.send(policy_message(policy)).await?;
    let before = ctx.barrier().await?;
    let refusals: Vec<&pb::PolicyRefusal> = before
        .iter()
        .filter_map(|m| match &m.body {
            Some(pb::device_message::Body::PolicyRefusal(refusal)) => Some(refusal),
            _ => None,
        })
        .collect();
    ensure!(
        refusals.len() == 1 && refusals[0].error_code == code as i32,
        "{what} was answered with {} PolicyRefusal(s) ({:?}), not one {} ({requirement})",
        refusals.len(),
        refusals
            .iter()
            .map(|r| error_code(r.error_code))
            .collect::<Vec<_>>(),
        code.as_str_name()
    );
    ensure!(
        refusals[0].reason.len() <= 1024,
        "the PolicyRefusal's reason has {} bytes, above 1024 ({requirement})",
        refusals[0].reason.len()
    );
    kept(ctx, what, requirement).await
}

/// Where the device serves a harness: the reset store still shows the kit's policy.
async fn kept(ctx: &mut DeviceCtx, what: &str, requirement: &str) -> CaseResult {
    let scope = ctx.reset_scope();
    let (_, expected) = ctx.current_policy(scope);
    let Some(harness) = ctx.harness.as_mut() else {
        return Ok(());
    };
    let screen = harness.screen().await?;
    let shown = screen
        .policies
        .iter()
        .find(|p| p.scope == scope as i32)
        .and_then(|p| p.policy);
    ensure!(
        shown == expected,
        "after {what}, the harness shows the {scope:?} store's policy as {shown:?}, not the \
         kit's {expected:?} ({requirement})"
    );
    Ok(())
}

async fn bad_signature(ctx: &mut DeviceCtx) -> CaseResult {
    let (scope, version) = settle(ctx).await?;
    let genuine = ctx.signed_policy(scope, Some(loose()), version + 1);
    let mut forged = super::commands::signed_policy(
        &ctx.forger,
        &ctx.device_id(),
        scope as i32,
        Some(loose()),
        version + 1,
    );
    // Claiming the kit's key id, so only the signature check can refuse it.
    let forger_id = std::mem::replace(&mut forged.key_id, genuine.key_id.clone());
    // The kit's genuine signature, but under another key's id (DEV-KEY-1).
    let unknown_key = pb::SignedPolicy {
        key_id: forger_id,
        ..genuine.clone()
    };
    let unsigned = pb::SignedPolicy {
        body: genuine.body.clone(),
        signature: Vec::new(),
        key_id: genuine.key_id.clone(),
    };
    // The kit's key over the bare body, as a command is signed: without the policy prefix it
    // is not a policy's signature.
    let command_signed = pb::SignedPolicy {
        body: genuine.body.clone(),
        signature: ctx.shared.key.sign(&genuine.body).as_ref().to_vec(),
        key_id: genuine.key_id.clone(),
    };
    for (policy, what) in [
        (forged, "a policy signed with another key"),
        (unsigned, "an unsigned policy"),
        (
            command_signed,
            "a policy signed as a command (no policy prefix)",
        ),
        (
            unknown_key,
            "a policy under the key id of a key the device does not trust",
        ),
    ] {
        expect_refused(
            ctx,
            policy,
            pb::ErrorCode::BadSignature,
            what,
            "DEV-POLICY-2",
        )
        .await?;
    }
    Ok(())
}

async fn misrouted_or_replayed(ctx: &mut DeviceCtx) -> CaseResult {
    let (scope, version) = settle(ctx).await?;
    let (_, current) = ctx.current_policy(scope);
    let sign = |body: &pb::PolicyBody| {
        let bytes = body.encode_to_vec();
        let signature = ctx
            .shared
            .key
            .sign(&droidfleet_proto::signing::policy_signed_bytes(&bytes));
        pb::SignedPolicy {
            body: bytes,
            signature: signature.as_ref().to_vec(),
            key_id: super::commands::key_id(&ctx.shared.key),
        }
    };
    let body = |version| pb::PolicyBody {
        device_id: ctx.device_id(),
        scope: scope as i32,
        policy: Some(loose()),
        version,
    };
    let elsewhere = pb::PolicyBody {
        device_id: format!("{}-elsewhere", ctx.device_id()),
        ..body(version + 1)
    };
    let mut cases = vec![
        (
            sign(&elsewhere),
            pb::ErrorCode::WrongDevice,
            "a policy for another device",
        ),
        (
            sign(&body(version - 1)),
            pb::ErrorCode::Replayed,
            "a policy older than the one applied",
        ),
        (
            sign(&body(version)),
            pb::ErrorCode::Replayed,
            "another policy at the version applied",
        ),
    ];
    if ctx.ownership() == pb::Ownership::Cosu || ctx.ownership() == pb::Ownership::Aosp {
        let missing = pb::PolicyBody {
            scope: pb::CredentialScope::WorkProfile as i32,
            ..body(version + 1)
        };
        cases.push((
            sign(&missing),
            pb::ErrorCode::StoreMissing,
            "a policy for a work profile the device does not have",
        ));
    }
    for (policy, code, what) in cases {
        expect_refused(ctx, policy, code, what, "DEV-POLICY-3").await?;
    }
    // The same policy at the same version, as every session sends it again: no refusal.
    let again = ctx.signed_policy(scope, current, version);
    ctx.send(policy_message(again)).await?;
    let before = ctx.barrier().await?;
    ensure!(
        !before
            .iter()
            .any(|m| matches!(m.body, Some(pb::device_message::Body::PolicyRefusal(_)))),
        "the policy the device applies, sent again at its version, was refused (DEV-POLICY-3)"
    );
    kept(ctx, "the same policy again", "DEV-POLICY-3").await
}
