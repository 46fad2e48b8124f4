//! Android versions and maker profiles end to end: one reset per API level that differs, the
//! level and profile a device reports reaching the admin, a device too old for escrow-token
//! resets refused at once with API_LEVEL, and a device's API_LEVEL refusal ending the action
//! not_supported.

use crate::support::{RawDevice, World, hello_on, password_policy, pin_policy};
use droidfleet_agent::device::{ApiLevel, Build, Ownership, Profile};
use droidfleet_proto::v1 as pb;
use pb::CredentialScope::{Device as DEVICE, WorkProfile as WORK};

const DEVICE_PIN: &str = "2580";
const WORK_PASSWORD: &str = "orchid42";

fn build(api_level: u32, profile: &str) -> Build {
    Build {
        api_level: ApiLevel::new(api_level).unwrap(),
        profile: profile.parse::<Profile>().unwrap(),
    }
}

fn state(action: &pb::Action) -> pb::ActionState {
    pb::ActionState::try_from(action.state).unwrap()
}

fn error(action: &pb::Action) -> pb::ErrorCode {
    pb::ErrorCode::try_from(action.error_code).unwrap()
}

/// The same work-profile reset on six levels: an admin's passcode "abcd2958" under a policy of
/// an alphanumeric password of 6 at high complexity. An admin can require a complexity bucket
/// only from API level 31 (`setRequiredPasswordComplexity`; before, the Android Management API
/// applies quality alone), and Android 12's `PasswordMetrics` holds a password at high
/// complexity to "no sequence longer than 3": so the reset is done up to 30 and refused from 31.
/// Each device's level and profile reach the admin through its Hello and show on its screen.
#[tokio::test]
async fn one_reset_per_version_that_differs() {
    let levels = [26, 29, 30, 31, 34, 35];
    let names: Vec<String> = levels.iter().map(|l| format!("byod-{l}")).collect();
    let devices: Vec<(&str, Ownership, Build)> = names
        .iter()
        .zip(levels)
        .map(|(name, level)| (name.as_str(), Ownership::Byod, build(level, "aosp")))
        .collect();
    let mut world = World::start_builds(&devices, |_| {}).await;
    let policy = pb::PasscodePolicy {
        r#type: pb::PasscodeType::Alphanumeric as i32,
        min_length: 6,
        complexity: pb::PasscodeComplexity::High as i32,
        ..Default::default()
    };
    for (name, level) in names.iter().zip(levels) {
        let id = world.device_id(name).await;
        world.set_passcode(name, DEVICE, "", DEVICE_PIN).await;
        world
            .set_passcode(name, WORK, DEVICE_PIN, WORK_PASSWORD)
            .await;
        world.admin.wait_escrowed(&id, WORK).await;
        world.admin.assign_policy(&id, WORK, policy).await;
        let device = world.admin.wait_device(&id, |d| d.api_level == level).await;
        assert_eq!(device.maker_profile, "aosp");
        let screen = world.screen(name).await;
        assert_eq!(
            (screen.api_level, screen.maker_profile.as_str()),
            (level, "aosp")
        );

        let request = world.admin.request(pb::ResetPasscodeRequest {
            device_id: id.clone(),
            scope: WORK as i32,
            new_passcode: "abcd2958".into(),
            ..Default::default()
        });
        let action = world
            .admin
            .client
            .reset_passcode(request)
            .await
            .unwrap()
            .into_inner();
        let ended = world.admin.wait_final(&action.action_id).await;
        if level >= 31 {
            assert_eq!(state(&ended), pb::ActionState::Failed, "API {level}");
            assert_eq!(error(&ended), pb::ErrorCode::PasscodePolicyViolation);
            assert!(ended.reason.contains("sequence"), "{}", ended.reason);
        } else {
            assert_eq!(
                state(&ended),
                pb::ActionState::Done,
                "API {level}: {}",
                ended.reason
            );
            assert!(world.enter(name, WORK, "abcd2958").await, "API {level}");
        }
    }
}

/// Escrow-token resets exist from API level 26 (`setResetPasswordToken`,
/// `resetPasswordWithToken`). A control plane that knows the device's level from its Hello ends
/// a reset of an older device at once, `not_supported` with `api_level`, as the Android
/// Management API answers API_LEVEL; the device never hears of it. A device that refuses a
/// command for its level (ERROR_CODE_API_LEVEL) ends the action `not_supported` too.
#[tokio::test]
async fn api_level_refusals_end_the_action_not_supported() {
    let mut world = World::start(&[]).await;
    let token = world.admin.enrollment_token(2, "").await;
    let old = RawDevice::enroll(&world.address, &token, pb::Ownership::Cosu, "old").await;
    let session = old
        .open_with(&old.key, vec![hello_on(&old.device_id, 25)])
        .await
        .unwrap();
    let device = world
        .admin
        .wait_device(&old.device_id, |d| d.api_level == 25)
        .await;
    assert_eq!(device.api_level, 25);
    world
        .admin
        .assign_policy(&old.device_id, DEVICE, pin_policy(6))
        .await;
    let refused = world.admin.reset(&old.device_id, DEVICE).await.unwrap();
    assert_eq!(state(&refused), pb::ActionState::NotSupported);
    assert_eq!(error(&refused), pb::ErrorCode::ApiLevel);
    assert!(
        refused.reason.contains("API level 25") && refused.reason.contains("26"),
        "{}",
        refused.reason
    );
    session.close().await;

    // A device that says its level cannot run the command.
    let newer = RawDevice::enroll(&world.address, &token, pb::Ownership::Cosu, "newer").await;
    newer.escrow(DEVICE).await;
    world
        .admin
        .assign_policy(&newer.device_id, DEVICE, pin_policy(6))
        .await;
    let mut session = newer
        .open_with(&newer.key, vec![hello_on(&newer.device_id, 30)])
        .await
        .unwrap();
    let action = world.admin.reset(&newer.device_id, DEVICE).await.unwrap();
    assert_eq!(state(&action), pb::ActionState::Pending);
    let (command, _) = session.next_command().await;
    session.ack(&command.command_id).await;
    session
        .send(pb::device_message::Body::Result(pb::CommandResult {
            command_id: command.command_id.clone(),
            success: false,
            error_code: pb::ErrorCode::ApiLevel as i32,
            reason: "this Android version cannot run the command".into(),
            completed_at_ms: 1,
            traceparent: String::new(),
        }))
        .await;
    let ended = world.admin.wait_final(&action.action_id).await;
    assert_eq!(state(&ended), pb::ActionState::NotSupported);
    assert_eq!(error(&ended), pb::ErrorCode::ApiLevel);
    session.close().await;

    // A Hello with a level no Android has is malformed, and the field is named.
    let bad = newer
        .open_with(&newer.key, vec![hello_on(&newer.device_id, 100)])
        .await;
    let status = match bad {
        Ok(session) => session.ended().await.unwrap_err(),
        Err(status) => status,
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("hello.api_level"),
        "{}",
        status.message()
    );
}

/// A maker profile reaches the outcome: `short-keyguard` (a synthetic variation) refuses
/// passcodes over 6 characters, so a generated 8-character work password fails with a policy
/// violation naming the maximum, while the same reset on AOSP is done.
#[tokio::test]
async fn a_makers_shorter_lock_screen_fails_a_longer_reset() {
    let mut world = World::start_builds(
        &[
            ("short", Ownership::Byod, build(35, "short-keyguard")),
            ("aosp", Ownership::Byod, build(35, "aosp")),
        ],
        |_| {},
    )
    .await;
    for (name, work_password, expected) in [
        ("short", "wq8r25", pb::ActionState::Failed),
        ("aosp", WORK_PASSWORD, pb::ActionState::Done),
    ] {
        let id = world.device_id(name).await;
        world.set_passcode(name, DEVICE, "", DEVICE_PIN).await;
        world
            .set_passcode(name, WORK, DEVICE_PIN, work_password)
            .await;
        world.admin.wait_escrowed(&id, WORK).await;
        world
            .admin
            .assign_policy(&id, WORK, password_policy(8))
            .await;
        let device = world
            .admin
            .wait_device(&id, |d| !d.maker_profile.is_empty())
            .await;
        assert_eq!(device.maker_profile, name_profile(name));
        let action = world.admin.reset(&id, WORK).await.unwrap();
        let ended = world.admin.wait_final(&action.action_id).await;
        assert_eq!(state(&ended), expected, "{name}: {}", ended.reason);
        if expected == pb::ActionState::Failed {
            assert_eq!(error(&ended), pb::ErrorCode::PasscodePolicyViolation);
            assert!(ended.reason.contains("longer than 6"), "{}", ended.reason);
        }
    }
}

fn name_profile(name: &str) -> &'static str {
    match name {
        "short" => "short-keyguard",
        _ => "aosp",
    }
}
