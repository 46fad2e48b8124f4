//! Control-plane cases about enrollment, opening and ending sessions, policies and escrowed
//! tokens.

use super::super::catalogue::CaseInfo;
use super::super::runner::{Case, CaseResult, ensure, fail};
use super::raw::{Synced, expect_status, message};
use super::{CpCtx, admin_failed, policy};
use droidfleet_proto::v1 as pb;
use tonic::Code;

/// A case's run function: `case!(function)` boxes the future of `async fn function(ctx)`.
macro_rules! case {
    ($function:ident) => {{
        fn run(
            ctx: &mut $crate::conformance::control_plane::CpCtx,
        ) -> $crate::conformance::runner::CaseFuture<'_> {
            Box::pin($function(ctx))
        }
        run
    }};
}
pub(super) use case;

const TOKEN: [u8; 32] = [7; 32];

pub(super) static CASES: &[Case<CpCtx>] = &[
    Case {
        info: CaseInfo {
            id: "cp.enroll",
            title: "Enrollment issues an identity and key, and refuses bad tokens and fields",
            requirements: &["CP-ENROLL-1"],
            tags: &["enrollment"],
            needs: &[],
            quick: true,
        },
        run: case!(enroll),
    },
    Case {
        info: CaseInfo {
            id: "cp.session.auth",
            title: "A session needs a proof of the device's own enrolled key",
            requirements: &["CP-SESSION-1"],
            tags: &["session", "security"],
            needs: &[],
            quick: true,
        },
        run: case!(auth),
    },
    Case {
        info: CaseInfo {
            id: "cp.session.hello_first",
            title: "A session must open with the device's own Hello, once",
            requirements: &["CP-SESSION-2"],
            tags: &["session"],
            needs: &[],
            quick: false,
        },
        run: case!(hello_first),
    },
    Case {
        info: CaseInfo {
            id: "cp.session.hello_status",
            title: "A Hello without the status of every store is refused",
            requirements: &["CP-SESSION-3"],
            tags: &["session"],
            needs: &[],
            quick: false,
        },
        run: case!(hello_status),
    },
    Case {
        info: CaseInfo {
            id: "cp.session.malformed",
            title: "A malformed message ends the session; what came before stays recorded",
            requirements: &["CP-SESSION-4"],
            tags: &["session"],
            needs: &[],
            quick: false,
        },
        run: case!(malformed),
    },
    Case {
        info: CaseInfo {
            id: "cp.session.replaced",
            title: "A second session of a device replaces the first",
            requirements: &["CP-SESSION-5"],
            tags: &["session"],
            needs: &[],
            quick: false,
        },
        run: case!(replaced),
    },
    Case {
        info: CaseInfo {
            id: "cp.session.revoked",
            title: "Re-enrolling a device ends its open session",
            requirements: &["CP-SESSION-6"],
            tags: &["session", "security"],
            needs: &[],
            quick: false,
        },
        run: case!(revoked),
    },
    Case {
        info: CaseInfo {
            id: "cp.policy.session_start",
            title: "Every session starts with a signed policy per store, before any command",
            requirements: &["CP-POLICY-1", "CP-POLICY-3", "CP-DELIVERY-1", "CP-KEY-2"],
            tags: &["policy"],
            needs: &[],
            quick: true,
        },
        run: case!(policy_at_start),
    },
    Case {
        info: CaseInfo {
            id: "cp.policy.change",
            title: "A changed policy reaches the open session, at a higher version, before any later command",
            requirements: &["CP-POLICY-2", "CP-POLICY-3"],
            tags: &["policy"],
            needs: &[],
            quick: false,
        },
        run: case!(policy_change),
    },
    Case {
        info: CaseInfo {
            id: "cp.escrow",
            title: "Escrowed tokens are checked, kept, replaced, acknowledged, and sent back in a reset",
            requirements: &["CP-TOKEN-1", "CP-TOKEN-2"],
            tags: &["tokens"],
            needs: &[],
            quick: false,
        },
        run: case!(escrow),
    },
];

/// The public key the enrollment case's devices send: any 32 bytes are well-formed, and these
/// devices never open a session.
const ENROLLED_KEY: [u8; 32] = [9; 32];

async fn enroll(ctx: &mut CpCtx) -> CaseResult {
    let device = ctx.enroll(pb::Ownership::Byod).await?;
    ensure!(
        !device.device_id.is_empty(),
        "Enroll answered an empty device id"
    );
    ensure!(
        device.signing_key.len() == 32,
        "the command signing key is {} bytes, not a 32-byte Ed25519 public key",
        device.signing_key.len()
    );
    let mut client = ctx.gateway_client().await?;
    let keyed =
        |token: &str, ownership: pb::Ownership, name: &str, key: Vec<u8>| pb::EnrollRequest {
            enrollment_token: token.to_string(),
            ownership: ownership as i32,
            display_name: name.to_string(),
            device_public_key: key,
        };
    let request = |token: &str, ownership: pb::Ownership, name: &str| {
        keyed(token, ownership, name, ENROLLED_KEY.to_vec())
    };
    let unknown = client
        .enroll(request(
            "not-a-token-of-this-control-plane",
            pb::Ownership::Cosu,
            "x",
        ))
        .await;
    ensure!(
        matches!(&unknown, Err(s) if s.code() == Code::PermissionDenied),
        "an unknown enrollment token was answered {:?}, not PERMISSION_DENIED",
        unknown
            .as_ref()
            .map(|_| "an identity")
            .map_err(|s| s.code())
    );
    let token = ctx.enrollment_token().await?;
    for (ownership, name, key, field) in [
        (
            pb::Ownership::Unspecified,
            "conformance-bad",
            ENROLLED_KEY.to_vec(),
            "ownership",
        ),
        (
            pb::Ownership::Cosu,
            "",
            ENROLLED_KEY.to_vec(),
            "display_name",
        ),
        (
            pb::Ownership::Cosu,
            "conformance-bad-key",
            vec![1; 5],
            "device_public_key",
        ),
    ] {
        let refused = client.enroll(keyed(&token, ownership, name, key)).await;
        ensure!(
            matches!(&refused, Err(s) if s.code() == Code::InvalidArgument
                && s.message().contains(field)),
            "an enrollment with a bad {field} was answered {:?}, not INVALID_ARGUMENT naming it",
            refused
                .as_ref()
                .map(|_| "an identity")
                .map_err(|s| (s.code(), s.message().to_string()))
        );
    }
    // The refusals used nothing: the single-use token still enrolls once, and only once.
    let first = client
        .enroll(request(
            &token,
            pb::Ownership::Cosu,
            "conformance-single-use",
        ))
        .await;
    ensure!(
        first.is_ok(),
        "a single-use token refused for bad fields could not enroll afterwards: {:?} (a refused \
         enrollment must create nothing)",
        first.err().map(|s| s.message().to_string())
    );
    let second = client
        .enroll(request(
            &token,
            pb::Ownership::Cosu,
            "conformance-single-use",
        ))
        .await;
    ensure!(
        matches!(&second, Err(s) if s.code() == Code::PermissionDenied),
        "a used-up token enrolled again ({:?})",
        second.as_ref().map(|_| "an identity").map_err(|s| s.code())
    );
    Ok(())
}

async fn auth(ctx: &mut CpCtx) -> CaseResult {
    let device = ctx.enroll(pb::Ownership::Cosu).await?;
    let other = ctx.enroll(pb::Ownership::Cosu).await?;
    let status = message(pb::device_message::Body::Status(device.status(0)));
    let attempts = [
        (
            None,
            vec![device.hello(), status],
            "no proof (a status after the Hello)",
        ),
        (
            Some(&other.key),
            vec![device.hello()],
            "a proof by another device's key",
        ),
        (
            Some(&device.key),
            vec![other.hello()],
            "a Hello naming another device, proven with this device's key",
        ),
    ];
    for (key, first, what) in attempts {
        match device.open_with(key, first).await {
            Err(status) => expect_status(Some(status), Code::Unauthenticated, "", what)?,
            Ok(mut session) => {
                let ended = session.ended().await?;
                expect_status(ended, Code::Unauthenticated, "", what)?;
            }
        }
    }
    let mut session = device.open().await?;
    ensure!(
        matches!(session.sync(&device, &ctx.admin).await?, Synced::Open),
        "a session with a proof of the device's own key and a valid Hello did not stay open"
    );
    session.close().await;
    Ok(())
}

async fn refused_or_ended(
    device: &super::raw::RawDevice,
    first: Vec<pb::DeviceMessage>,
) -> Result<Option<tonic::Status>, super::super::runner::Outcome> {
    match device.open_with(Some(&device.key), first).await {
        Err(status) => Ok(Some(status)),
        Ok(mut session) => session.ended().await,
    }
}

async fn hello_first(ctx: &mut CpCtx) -> CaseResult {
    let device = ctx.enroll(pb::Ownership::Cosu).await?;
    let status_first = message(pb::device_message::Body::Status(device.status(0)));
    let ended = refused_or_ended(&device, vec![status_first]).await?;
    expect_status(
        ended,
        Code::InvalidArgument,
        "Hello",
        "a status before the Hello",
    )?;
    let ended = refused_or_ended(&device, vec![device.hello(), device.hello()]).await?;
    expect_status(ended, Code::InvalidArgument, "hello", "a second Hello")?;
    Ok(())
}

async fn hello_status(ctx: &mut CpCtx) -> CaseResult {
    let device = ctx.enroll(pb::Ownership::Byod).await?;
    let mut without = device.hello();
    if let Some(pb::device_message::Body::Hello(hello)) = &mut without.body {
        hello.status = None;
    }
    let ended = refused_or_ended(&device, vec![without]).await?;
    expect_status(
        ended,
        Code::InvalidArgument,
        "hello.status",
        "a Hello without status",
    )?;
    let mut partial = device.hello();
    if let Some(pb::device_message::Body::Hello(hello)) = &mut partial.body
        && let Some(status) = &mut hello.status
    {
        status
            .stores
            .retain(|s| s.scope == pb::CredentialScope::Device as i32);
    }
    let ended = refused_or_ended(&device, vec![partial]).await?;
    expect_status(
        ended,
        Code::InvalidArgument,
        "hello.status",
        "a BYOD device's Hello without its work profile",
    )?;
    let seen = ctx.device(&device.device_id).await?;
    ensure!(
        seen.last_seen_ms == seen.enrolled_at_ms || seen.stores.is_empty(),
        "a refused Hello was recorded: the device shows {} store statuses",
        seen.stores.len()
    );
    Ok(())
}

async fn malformed(ctx: &mut CpCtx) -> CaseResult {
    let device = ctx.enroll(pb::Ownership::Cosu).await?;
    let mut session = device.open().await?;
    session
        .send(pb::device_message::Body::EscrowToken(
            pb::EscrowTokenUpdate {
                scope: pb::CredentialScope::Device as i32,
                token: TOKEN.to_vec(),
            },
        ))
        .await;
    session
        .send(pb::device_message::Body::Status(pb::DeviceStatus {
            stores: vec![pb::StoreStatus {
                scope: pb::CredentialScope::Device as i32,
                token_state: 99,
                ..Default::default()
            }],
        }))
        .await;
    let ended = session.ended().await?;
    expect_status(
        ended,
        Code::InvalidArgument,
        "token_state",
        "a status with token_state 99",
    )?;
    let recorded = ctx.device(&device.device_id).await?;
    ensure!(
        recorded
            .escrowed_token_scopes
            .contains(&(pb::CredentialScope::Device as i32)),
        "the escrow sent before the malformed message was not recorded"
    );
    ensure!(
        !recorded.stores.iter().any(|s| s.token_state == 99),
        "the malformed status was recorded"
    );
    // A field out of its limits in the Hello itself: no Android has API level 100.
    let mut beyond = device.hello();
    if let Some(pb::device_message::Body::Hello(hello)) = &mut beyond.body {
        hello.api_level = 100;
    }
    let ended = refused_or_ended(&device, vec![beyond]).await?;
    expect_status(
        ended,
        Code::InvalidArgument,
        "hello.api_level",
        "a Hello reporting API level 100",
    )?;
    ensure!(
        ctx.device(&device.device_id).await?.api_level != 100,
        "the malformed Hello's API level was recorded"
    );
    Ok(())
}

async fn replaced(ctx: &mut CpCtx) -> CaseResult {
    let device = ctx.enroll(pb::Ownership::Cosu).await?;
    let mut first = device.open().await?;
    ensure!(
        matches!(first.sync(&device, &ctx.admin).await?, Synced::Open),
        "the first session did not open"
    );
    let mut second = device.open().await?;
    let ended = first.ended().await?;
    expect_status(ended, Code::Aborted, "", "the replaced session")?;
    ensure!(
        matches!(second.sync(&device, &ctx.admin).await?, Synced::Open),
        "the new session did not stay open after replacing the old one"
    );
    second.close().await;
    Ok(())
}

async fn revoked(ctx: &mut CpCtx) -> CaseResult {
    let device = ctx.enroll(pb::Ownership::Cosu).await?;
    let mut session = device.open().await?;
    ensure!(
        matches!(session.sync(&device, &ctx.admin).await?, Synced::Open),
        "the session did not open"
    );
    ctx.admin
        .re_enroll_device(pb::ReEnrollDeviceRequest {
            device_id: device.device_id.clone(),
            ttl_seconds: 0,
        })
        .await
        .map_err(admin_failed)?;
    let ended = session.ended().await?;
    expect_status(
        ended,
        Code::Unauthenticated,
        "",
        "the revoked device's session",
    )?;
    Ok(())
}

async fn policy_at_start(ctx: &mut CpCtx) -> CaseResult {
    let device = ctx.ready(pb::Ownership::Byod, &TOKEN).await?;
    let action = ctx.reset(&device, 0).await?;
    let mut session = device.open().await?;
    let (policies, command, _) = session.next_command("the queued reset").await?;
    let mut scopes: Vec<i32> = policies.iter().map(|p| p.scope).collect();
    scopes.sort_unstable();
    ensure!(
        scopes
            == vec![
                pb::CredentialScope::Device as i32,
                pb::CredentialScope::WorkProfile as i32
            ],
        "before the first command the session carried policies for stores {scopes:?}; a \
         BYOD device needs one for each of its two stores (CP-POLICY-1)"
    );
    let device_policy = policies
        .iter()
        .find(|p| p.scope == pb::CredentialScope::Device as i32)
        .and_then(|p| p.policy);
    let work_policy = policies
        .iter()
        .find(|p| p.scope == pb::CredentialScope::WorkProfile as i32)
        .and_then(|p| p.policy);
    ensure!(
        device_policy.is_none(),
        "the device store has no policy but its SignedPolicy carries one"
    );
    ensure!(
        work_policy == Some(policy(pb::CredentialScope::WorkProfile)),
        "the work profile's SignedPolicy carries {work_policy:?}, not the assigned policy"
    );
    ensure!(
        command.command_id == action.action_id,
        "the first command is {:?}, not the queued reset {:?}",
        command.command_id,
        action.action_id
    );
    session.close().await;
    Ok(())
}

async fn policy_change(ctx: &mut CpCtx) -> CaseResult {
    let device = ctx.ready(pb::Ownership::Cosu, &TOKEN).await?;
    let mut session = device.open().await?;
    ensure!(
        matches!(session.sync(&device, &ctx.admin).await?, Synced::Open),
        "the session did not open"
    );
    let mut version = None;
    for min_length in [7, 8, 9] {
        let changed = pb::PasscodePolicy {
            min_length,
            ..policy(pb::CredentialScope::Device)
        };
        ctx.assign_policy(&device, Some(changed)).await?;
        let action = ctx.reset(&device, 0).await?;
        let (policies, command, _) = session.next_command("the reset after the change").await?;
        ensure!(
            command.command_id == action.action_id,
            "the next command is {:?}, not the reset {:?}",
            command.command_id,
            action.action_id
        );
        ensure!(
            policies.last().and_then(|p| p.policy) == Some(changed),
            "the reset created after the policy changed to min_length {min_length} arrived \
             before that policy (CP-POLICY-2); policies seen before it: {:?}",
            policies
                .iter()
                .map(|p| p.policy.map(|p| p.min_length))
                .collect::<Vec<_>>()
        );
        let changed_version = policies.last().map(|p| p.version);
        ensure!(
            changed_version > version,
            "the policy changed to min_length {min_length} came at version {changed_version:?}, \
             not above {version:?}, the version of the policy before it (CP-POLICY-3)"
        );
        version = changed_version;
        session.ack(&command.command_id).await;
        session.result(&command.command_id, None).await;
    }
    session.close().await;
    Ok(())
}

async fn escrow(ctx: &mut CpCtx) -> CaseResult {
    let device = ctx.enroll(pb::Ownership::Cosu).await?;
    let escrow = |token: Vec<u8>, scope: pb::CredentialScope| {
        pb::device_message::Body::EscrowToken(pb::EscrowTokenUpdate {
            scope: scope as i32,
            token,
        })
    };
    for (token, scope, what) in [
        (vec![1; 31], pb::CredentialScope::Device, "a 31-byte token"),
        (
            vec![1; 1025],
            pb::CredentialScope::Device,
            "a 1025-byte token",
        ),
        (
            vec![1; 32],
            pb::CredentialScope::WorkProfile,
            "a COSU device's work-profile token",
        ),
    ] {
        let mut session = device.open().await?;
        session.send(escrow(token, scope)).await;
        let ended = session.ended().await?;
        expect_status(ended, Code::InvalidArgument, "escrow_token", what)?;
    }
    ensure!(
        ctx.device(&device.device_id)
            .await?
            .escrowed_token_scopes
            .is_empty(),
        "a refused escrow was recorded"
    );
    let mut session = device.open().await?;
    session
        .send(escrow(vec![1; 32], pb::CredentialScope::Device))
        .await;
    session
        .send(escrow(vec![2; 32], pb::CredentialScope::Device))
        .await;
    // The token already held again: changes nothing.
    session
        .send(escrow(vec![2; 32], pb::CredentialScope::Device))
        .await;
    // CP-TOKEN-2: each valid escrow is acknowledged with its token's fingerprint, in order,
    // the token already held included.
    for (token, which) in [
        (vec![1; 32], "the first escrow"),
        (vec![2; 32], "the replacing escrow"),
        (vec![2; 32], "the repeated escrow"),
    ] {
        let ack = session.next_escrow_ack(which).await?;
        ensure!(
            ack.scope == pb::CredentialScope::Device as i32
                && ack.fingerprint == token_fingerprint(&token),
            "{which} was acknowledged for scope {} with fingerprint {:02x?}, not the device \
             store's token (the first 8 bytes of its SHA-256)",
            ack.scope,
            ack.fingerprint
        );
    }
    ensure!(
        matches!(session.sync(&device, &ctx.admin).await?, Synced::Open),
        "valid escrows ended the session"
    );
    ensure!(
        ctx.device(&device.device_id)
            .await?
            .escrowed_token_scopes
            .contains(&(pb::CredentialScope::Device as i32)),
        "the admin API does not list the escrowed store"
    );
    ctx.assign_policy(&device, Some(policy(pb::CredentialScope::Device)))
        .await?;
    ctx.reset(&device, 0).await?;
    let (_, command, _) = session.next_command("the reset").await?;
    let Some(pb::command_body::Kind::ResetPasscode(reset)) = command.kind else {
        return Err(fail("the reset's command is not a ResetPasscodeCommand"));
    };
    ensure!(
        reset.escrow_token == vec![2; 32],
        "the reset carries {} instead of the last token escrowed (CP-TOKEN-1)",
        if reset.escrow_token == vec![1; 32] {
            "the replaced token".to_string()
        } else {
            format!(
                "a {}-byte token the device never escrowed",
                reset.escrow_token.len()
            )
        }
    );
    session.close().await;
    Ok(())
}

/// A token's fingerprint as PROTOCOL.md CP-TOKEN-2 defines it: the first 8 bytes of its SHA-256.
fn token_fingerprint(token: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token).as_ref()[..8].to_vec()
}
